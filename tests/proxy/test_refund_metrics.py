"""What the proxy does once the server has answered an allowed call, on both paths (the stdio
fast path and the SDK's, ``PLR_PROXY_FAST=0``):

- `refund on error` gives back what the call took when the server says it failed (its own
  JSON-RPC error, or a result with ``isError``), and only then: a success, or a call the server
  never answered (it died: it may have acted), stays counted;
- ``--metrics`` times the server's answers (``plr_upstream_latency_seconds``) and counts policy
  reloads by result, with the policy's sha256 following the reloads.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import free_port
from .test_fast_path import _Run, _served

pytestmark = pytest.mark.slow

PATHS = pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "sdk-path"])

REFUNDS = """default deny
allow tool "echo"
allow tool "fail"
allow tool "oops"
allow tool "die"
limit tool "echo" to 2 per hour per global refund on error
limit tool "fail" to 2 per hour per global refund on error
limit tool "oops" to 2 per hour per global refund on error
limit tool "die" to 2 per hour per global refund on error
"""


def _call(run: _Run, rid: int, tool: str, args: dict[str, Any] | None = None) -> str:
    """The outcome of one call: "ok", "error" (a JSON-RPC error), "isError" or the deny code."""
    run.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": tool, "arguments": args or {}}})
    answer = run.recv()
    assert answer is not None and answer.get("id") == rid, answer
    if "error" in answer:
        return "error"
    result = answer["result"]
    decision = (result.get("_meta") or {}).get("plr/decision")
    if decision is not None:
        return str(decision["code"])
    return "isError" if result.get("isError") else "ok"


@PATHS
def test_refund_on_error_gives_back_only_what_failed(tmp_path: Path, fast: bool) -> None:
    run = _Run(tmp_path, fast, "--state", "memory", policy=REFUNDS)
    try:
        run.start()
        seen = {tool: [_call(run, 100 * i + n, tool) for n in range(3)] for i, tool in enumerate(("fail", "oops", "echo"))}
        seen["die"] = [_call(run, 900 + n, "die") for n in range(3)]
    finally:
        stderr = run.close()
    assert seen["fail"] == ["error", "error", "error"]  # each failure given back: never limited
    assert seen["oops"] == ["isError", "isError", "isError"]
    assert seen["echo"] == ["ok", "ok", "rate_limited"]  # a success stays counted
    assert seen["die"] == ["error", "error", "rate_limited"]  # no answer: the server may have acted
    if fast:
        assert _served(stderr) >= 6
    assert "Traceback" not in stderr


def _scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def _until(what: Any, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@PATHS
def test_metrics_time_the_server_and_count_reloads(tmp_path: Path, fast: bool) -> None:
    port = free_port()
    policy = 'default deny\nallow tool "echo"\nallow tool "fail"\n'
    run = _Run(tmp_path, fast, "--metrics", f"127.0.0.1:{port}", "--watch", "--state", "memory", policy=policy)
    try:
        run.start()
        outcomes = [_call(run, n, "echo", {"text": "hi"}) for n in range(3)] + [_call(run, 9, "fail"), _call(run, 10, "nope")]
        assert outcomes == ["ok", "ok", "ok", "error", "default"]
        got = _scrape(port)
        # the three successes and the server's error answer were timed; the denied call never left
        assert got["plr_upstream_latency_seconds_count{}"] == 4
        assert 0 < got["plr_upstream_latency_seconds_sum{}"] < 30
        assert got["plr_policy_reloads_total{result=ok}"] == 0 and got["plr_policy_reloads_total{result=failed}"] == 0
        first_sha = run.records()[0]["policy_sha256"]
        assert got[f"plr_policy_info{{sha256={first_sha}}}"] == 1

        (tmp_path / "policy.plr").write_text(policy + "allow tool (\n")  # broken: refused, the old one stays
        _until(lambda: _scrape(port)["plr_policy_reloads_total{result=failed}"] == 1)
        (tmp_path / "policy.plr").write_text(policy + 'allow tool "oops"\n')
        _until(lambda: _scrape(port)["plr_policy_reloads_total{result=ok}"] == 1)
        assert _call(run, 11, "oops") == "isError"  # the new policy decides
        got = _scrape(port)
        new_sha = run.records()[-1]["policy_sha256"]
        assert new_sha != first_sha and got[f"plr_policy_info{{sha256={new_sha}}}"] == 1
        assert got["plr_upstream_latency_seconds_count{}"] == 5
    finally:
        stderr = run.close()
    if fast:
        assert _served(stderr) >= 4
    assert "Traceback" not in stderr
