"""The fast path for ``tools/call`` (dsl/proxy/fast_calls.py) against the SDK path it stands in for.

Two real proxies in front of the same recording server, one with the fast path and one without
(``PLR_PROXY_FAST=0``), are sent the same generated calls one after another: valid, denied,
hostile, oversized, odd ids and parameters, tools that fail, answer nonsense or need a human.
The client must get the same answers, the audit log the same records, and the server the same
bytes. The failure paths (a deadline, a cancellation, a server that dies) are compared the same
way. Each run also checks that the fast path really served calls, or the comparison would prove
nothing.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import ROOT, base_env

pytestmark = pytest.mark.slow

SERVER = Path(__file__).parent / "servers" / "raw_echo.py"
POLICY = """default deny
hide tool "secret"
allow tool "echo" if len(args.text) <= 2000
deny tool "echo" if args.text contains "DROP"
limit tool "echo" to 25 per hour
allow tool "fail"
allow tool "bad"
allow tool "ask"
allow tool "slow"
allow tool "die"
allow tool "wait" if approved
"""
# what differs between two runs of the same calls: when, how long, and random ids
VOLATILE = ("ts", "latency_us", "call", "session")


class _Run:
    """One proxy process with a line-oriented client on its pipes."""

    def __init__(self, tmp: Path, fast: bool, *extra: str, policy: str = POLICY) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "policy.plr").write_text(policy)
        self.audit = tmp / "audit.jsonl"
        self.upstream_log = tmp / "upstream.jsonl"
        self.stderr_path = tmp / "stderr.txt"
        env = base_env(RAW_ECHO_LOG=str(self.upstream_log), PLR_PROXY_FAST="report" if fast else "0")
        cmd = [sys.executable, "-m", "dsl.proxy", "--policy", str(tmp / "policy.plr"), "--audit", str(self.audit),
               "--approvals-db", str(tmp / "approvals.sqlite"), "--approval", "deny", *extra,
               "--", sys.executable, str(SERVER)]  # fmt: skip
        self.stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env, cwd=ROOT)
        self.answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            if "result" in msg or "error" in msg:  # answers only (a restart also says tools/list_changed)
                self.answers.put(msg)
        self.answers.put(None)

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def send(self, msg: dict[str, Any]) -> None:
        self.send_raw(json.dumps(msg).encode())

    def recv(self, timeout: float = 30) -> dict[str, Any] | None:
        return self.answers.get(timeout=timeout)

    def silent_for(self, seconds: float) -> bool:
        try:
            self.answers.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def start(self) -> None:
        self.send({"jsonrpc": "2.0", "id": "init", "method": "initialize",
                   "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})  # fmt: skip
        assert self.recv() is not None
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.send({"jsonrpc": "2.0", "id": "list", "method": "tools/list"})
        assert self.recv() is not None  # the session is known from here on: the fast path may serve

    def close(self) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        return self.stderr_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        lines = self.audit.read_text().splitlines() if self.audit.exists() else []
        recs = [json.loads(x) for x in lines if x.strip()]
        return [{k: v for k, v in r.items() if k not in VOLATILE} for r in recs if "event" not in r]

    def upstream_lines(self) -> list[bytes]:
        return self.upstream_log.read_bytes().splitlines() if self.upstream_log.exists() else []


# what the fast run of the last ``_both`` reported: calls served, and of those answered in the
# server pipe's read callback (lane.tap)
_REPORT: dict[str, int] = {}


def _served(stderr: str) -> int:
    for line in stderr.splitlines():
        if "the fast path served" in line:
            m = re.search(r"served (\d+) tools/call requests \((\d+) answered as the server's output came in\)", line)
            assert m is not None, line
            _REPORT.update(served=int(m[1]), answered_now=int(m[2]))
            return int(m[1])
    raise AssertionError(f"no fast-path report in the proxy's stderr:\n{stderr[-2000:]}")


def _timeless(value: Any) -> Any:
    """``value`` without the seconds a rate-limited call is told to wait (they run on a clock)."""
    text = json.dumps(value)
    text = re.sub(r"retry after [0-9.]+ s", "retry after N s", text)
    text = re.sub(r'"retry_after": [0-9.e+-]+', '"retry_after": "N"', text)
    return json.loads(text)


def _both(tmp: Path, script: Any, *extra: str) -> tuple[list[Any], list[Any], int]:
    """Run ``script(run) -> observations`` against both paths; returns both and the fast count."""
    out = []
    served = 0
    for fast in (True, False):
        run = _Run(tmp / ("fast" if fast else "sdk"), fast, *extra)
        try:
            run.start()
            seen = script(run)
        finally:
            stderr = run.close()
        if fast:
            served = _served(stderr)
        out.append((_timeless(seen), _timeless(run.records()), run.upstream_lines()))
    (fa, fr, fu), (sa, sr, su) = out
    assert fa == sa, "the client's answers differ"
    assert fr == sr, "the audit records differ"
    assert fu == su, "the server read different bytes"
    return fa, fr, served


# -- generated calls ---------------------------------------------------------------------------

_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["DROP TABLE x", "x" * 2001, "\u202e\x00\x1b[31m", "é" * 50, "<script>", "a\nb"]),
)
_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.floats(allow_nan=False, allow_infinity=False), _text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)
_args = st.one_of(
    st.fixed_dictionaries({"text": _text}),
    st.fixed_dictionaries({"text": _text}, optional={"extra": _value}),
    st.dictionaries(st.text(max_size=6), _value, max_size=3),
)
_tool = st.sampled_from(["echo", "echo", "echo", "fail", "bad", "ask", "nope", "secret", "wait", "Echo"])
_rid = st.one_of(st.integers(-(2**31), 2**53 - 1), st.text(min_size=0, max_size=8))


@st.composite
def _call(draw: Any) -> bytes:
    """One tools/call line: mostly plain; sometimes without arguments, with null or odd ones,
    extra parameters, a progress token, or a name that is not a string."""
    params: dict[str, Any] = {"name": draw(_tool)}
    shape = draw(st.integers(0, 9))
    if shape == 0:
        pass  # no arguments
    elif shape == 1:
        params["arguments"] = None
    elif shape == 2:
        params["arguments"] = draw(st.sampled_from([[1, 2], "text", 7]))
    elif shape == 3:
        params.update(arguments={"text": "hi"}, _meta={"progressToken": draw(_rid)})
    elif shape == 4:
        params.update(arguments={"text": "hi"}, task={"ttl": 1000})
    elif shape == 5:
        params["name"] = draw(st.sampled_from([None, 7, ["echo"]]))
    elif shape == 6:
        params["arguments"] = {"text": "n", "big": draw(st.sampled_from([2**53, -(2**53) - 5, 2**70]))}
    else:
        params["arguments"] = draw(_args)
    msg = {"jsonrpc": "2.0", "id": draw(_rid), "method": "tools/call", "params": params}
    return json.dumps(msg, ensure_ascii=draw(st.booleans())).encode()


@given(calls=st.lists(_call(), min_size=30, max_size=45))
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_calls_get_the_same_answers_records_and_upstream_bytes(tmp_path_factory: pytest.TempPathFactory, calls: list[bytes]) -> None:
    tmp = tmp_path_factory.mktemp("fast")

    def script(run: _Run) -> list[Any]:
        seen = []
        for line in calls:
            run.send_raw(line)
            seen.append(run.recv())
        return seen

    answers, _, served = _both(tmp, script)
    assert len(answers) == len(calls) and None not in answers
    assert served >= 5, f"the fast path served only {served} of {len(calls)} calls"


def test_every_kind_of_answer_is_the_same_on_both_paths(tmp_path: Path) -> None:
    """A fixed script that surely reaches each outcome: allowed, deny_if, require, rate limit,
    hidden, default, an upstream error, an invalid upstream result (twice), a call needing approval (the SDK path, both times)."""
    calls = [("echo", {"text": "hi"}), ("echo", {"text": "DROP"}), ("echo", {"text": "x" * 3000}),
             ("fail", {}), ("bad", {}), ("ask", {}), ("secret", {}), ("nope", {}), ("wait", {}),
             ("echo", {"n": 2**53 + 1, "text": "big"}), *[("echo", {"text": str(i)}) for i in range(30)]]  # fmt: skip

    def script(run: _Run) -> list[Any]:
        seen = []
        for i, (name, args) in enumerate(calls):
            run.send({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": args}})
            seen.append(run.recv())
        return seen

    answers, records, served = _both(tmp_path, script)
    codes = [r["code"] for r in records]
    for code in ("allowed", "deny_if", "require", "rate_limited", "hidden", "default", "invalid_args"):
        assert code in codes, code
    assert answers[3]["error"]["message"] == "boom"  # the server's own error, passed on
    assert "invalid result" in answers[4]["error"]["message"]
    # a 2025-era server has no input requests: its `input_required` is no CallToolResult either
    assert "invalid result" in answers[5]["error"]["message"]
    assert served == len(calls) - 1  # all but the one that needs a human
    # every successful result (plain text, a small frame, one call at a time: the client's pipe
    # always takes it whole) was answered as the server's output came in, with the same bytes
    ok = [a for a in answers if "result" in a and a["result"].get("isError") is False]
    assert len(ok) >= 20 and _REPORT["answered_now"] == len(ok), _REPORT


def test_a_deadline_answers_the_client_and_cancels_upstream_alike(tmp_path: Path) -> None:
    def script(run: _Run) -> list[Any]:
        run.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 2.5}}})
        first = run.recv()
        time.sleep(2)  # the server wakes, answers the abandoned call (dropped), reads the cancel
        run.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "after"}}})
        return [first, run.recv()]

    answers, _, served = _both(tmp_path, script, "--upstream-timeout", "1")
    assert "did not answer within 1 s" in answers[0]["error"]["message"]
    assert answers[1]["result"]["isError"] is False
    assert served == 2


def test_a_cancelled_call_is_never_answered_and_the_server_is_told_alike(tmp_path: Path) -> None:
    def script(run: _Run) -> list[Any]:
        run.send({"jsonrpc": "2.0", "id": "c", "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 1}}})
        time.sleep(0.3)
        run.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "c", "reason": "user"}})
        quiet = run.silent_for(2)
        # the id is free again: reusing it is not "still in flight"
        run.send({"jsonrpc": "2.0", "id": "c", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "again"}}})
        return [quiet, run.recv()]

    answers, _, served = _both(tmp_path, script)
    assert answers[0] is True
    assert answers[1]["result"]["isError"] is False
    assert served == 2


def test_a_server_that_dies_mid_call_fails_it_and_comes_back_alike(tmp_path: Path) -> None:
    def script(run: _Run) -> list[Any]:
        run.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "die", "arguments": {}}})
        died = run.recv()
        run.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "back"}}})
        back = run.recv()
        run.send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "again"}}})
        return [died, back, run.recv()]

    answers, _, served = _both(tmp_path, script)
    assert "restarting" in answers[0]["error"]["message"]
    assert answers[1]["result"]["isError"] is False and answers[2]["result"]["isError"] is False
    assert served >= 2  # the first call, and the calls once the new server is ready
