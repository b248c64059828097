"""Approval notifications (to a local HTTP receiver and a local command) and the proxy's
Prometheus metrics (scraped and parsed with prometheus_client's own parser)."""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from dsl.proxy.audit import AuditLog
from dsl.proxy.notify import Notifier
from tests.proxy.conftest import ProxySetup, free_port, inprocess
from tests.proxy.helpers import text


class Receiver:
    """A local webhook receiver: ``/ok`` accepts, ``/flaky`` fails twice then accepts, ``/down`` fails."""

    def __init__(self) -> None:
        self.hits: dict[str, list[dict[str, Any]]] = {}
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hits = receiver.hits.setdefault(self.path, [])
                hits.append(body)
                ok = self.path == "/ok" or (self.path == "/flaky" and len(hits) > 2)
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if ok:
                    receiver.arrived.set()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


REQUEST = {
    "id": "3f9c2a1b",
    "tool": "cancel-task",
    "reason": "a human must approve",
    "rule": "policy.plr:9",
    "identity": "ops",
    "session": "s1",
    "server": "codex",
    "expires": 1.0,
    "args_sha256": "ab",
}


def test_webhooks_are_retried_with_backoff_and_failures_reported(tmp_path: Path, receiver: Receiver) -> None:
    said: list[str] = []
    audit = AuditLog(tmp_path / "audit.jsonl")
    n = Notifier(
        [f"{receiver.url}/ok", f"{receiver.url}/flaky", f"{receiver.url}/down/SECRET"],
        console_url="http://127.0.0.1:8766/",
        report=said.append,
        backoff=(0.01, 0.01, 0.01),
    )
    n.filed(dict(REQUEST), audit=audit)
    assert n.drain(30)
    [msg] = receiver.hits["/ok"]
    assert msg["event"] == "approval_requested" and msg["approval"]["id"] == "3f9c2a1b"
    assert msg["console_url"] == "http://127.0.0.1:8766/#req-3f9c2a1b"
    assert msg["text"].startswith("plr: approval needed for `cancel-task`: `a human must approve` (identity `ops`")
    assert "args" not in msg["approval"]  # arguments never leave the machine in a notification
    assert len(receiver.hits["/flaky"]) == 3  # two failures, then delivered: no report for it
    assert len(receiver.hits["/down/SECRET"]) == 4
    [line] = said
    assert "could not notify" in line and "after 4 attempts" in line and "SECRET" not in line
    [event] = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert (event["event"], event["approval_id"]) == ("approval_notify_failed", "3f9c2a1b")


def test_notify_command_gets_the_message(tmp_path: Path) -> None:
    out = tmp_path / "got.txt"
    script = "import json,os,sys; m=json.load(sys.stdin); open(sys.argv[1],'w').write(os.environ['PLR_APPROVAL_ID']+' '+m['approval']['tool'])"
    cmd = f"{sys.executable} -c \"{script}\" {out}"
    n = Notifier(command=cmd, report=print, backoff=())
    n.filed(dict(REQUEST), cli_hint=" --db /x/q.sqlite")
    assert n.drain(30)
    assert out.read_text() == "3f9c2a1b cancel-task"


@pytest.mark.anyio
async def test_a_call_waiting_in_the_queue_is_notified_and_answered_by_its_id(
    setup: ProxySetup, receiver: Receiver
) -> None:
    """The notification carries the queue's id: an operator acting on it answers that very call.
    (The proxy core hands ``ProxyOptions.notifier`` to its ``ApprovalFlow``; set here directly.)"""
    from mcp import Client

    from dsl.state.sqlite import SqliteApprovalQueue

    notifier = Notifier([f"{receiver.url}/ok"], report=print, backoff=(0.01,))
    async with inprocess(setup, approval_mode="queue", approval_timeout=60) as ip:
        ip.proxy.approvals.notifier = notifier

        async def operator() -> None:
            await anyio.to_thread.run_sync(lambda: receiver.arrived.wait(30))
            [msg] = receiver.hits["/ok"]
            assert "plr approvals --db" in msg["text"]  # no console URL: the CLI line that answers it
            done, _ = SqliteApprovalQueue(setup.db, create=False).answer(msg["approval"]["id"], True, who="pager")
            assert done

        async with Client(ip.server, mode="legacy") as c:
            async with anyio.create_task_group() as tg:
                tg.start_soon(operator)
                with anyio.fail_after(60):
                    result = await c.call_tool("cancel-task", {"task_id": "t-1"})
    assert not result.is_error, text(result)
    assert setup.called_tools() == ["cancel-task"]


# --- metrics --------------------------------------------------------------------------------------


def _scrape(url: str) -> dict[str, Any]:
    """{sample name + sorted labels: value} of one scrape, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read().decode()
    out: dict[str, Any] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[s.name + json.dumps(dict(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_the_audit_log_across_a_rotation(tmp_path: Path) -> None:
    from dsl.proxy.metrics import ProxyMetrics

    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=0)
    log.write({"ts": "t", "tool": "old", "effect": "allow", "code": "allowed", "latency_us": 5})  # before the start
    pending = [3]
    m = ProxyMetrics(path, policy_sha256="aa11", pending=lambda: pending[0])
    server = m.serve("127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        for rec in (
            {"tool": "get-task", "effect": "allow", "code": "allowed", "latency_us": 12, "policy_sha256": "aa11"},
            {"tool": "get-task", "effect": "deny", "code": "rate_limited", "latency_us": 30, "policy_sha256": "aa11"},
            {"event": "approval_notify_failed", "approval_id": "x"},
        ):
            log.write(rec)
        got = _scrape(url)
        assert got['plr_decisions_total{"code": "allowed", "effect": "allow", "tool": "get-task"}'] == 1
        assert 'plr_decisions_total{"code": "allowed", "effect": "allow", "tool": "old"}' not in got
        assert got['plr_limit_rejections_total{"tool": "get-task"}'] == 1
        assert got["plr_decision_latency_seconds_count{}"] == 2
        assert got["plr_approvals_pending{}"] == 3
        assert got["plr_approval_notifications_failed_total{}"] == 1
        assert got['plr_policy_info{"sha256": "aa11"}'] == 1
        # rotated by another writer: what was written before the rotation is still counted once
        log.write({"tool": "get-task", "effect": "allow", "code": "allowed", "latency_us": 1, "policy_sha256": "bb22"})
        os.replace(path, f"{path}.1")
        AuditLog(path).write({"tool": "get-task", "effect": "allow", "code": "allowed", "latency_us": 1, "policy_sha256": "bb22"})
        pending[0] = 0
        got = _scrape(url)
        assert got['plr_decisions_total{"code": "allowed", "effect": "allow", "tool": "get-task"}'] == 3
        assert got['plr_policy_info{"sha256": "bb22"}'] == 1 and got["plr_approvals_pending{}"] == 0
        m.policy_reloaded(False)
        m.observe_upstream(0.2)
        got = _scrape(url)
        assert got['plr_policy_reloads_total{"result": "failed"}'] == 1
        assert got["plr_upstream_latency_seconds_count{}"] == 1
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
@pytest.mark.anyio
async def test_plr_proxy_metrics_flag(setup: ProxySetup) -> None:
    """`plr proxy --metrics HOST:PORT`: a real proxy's decisions, scraped."""
    from mcp import Client

    port = free_port()
    params = setup.params("--approval", "deny", "--metrics", f"127.0.0.1:{port}")
    with anyio.fail_after(60):
        async with Client(params, mode="legacy", cache=None) as c:
            await c.call_tool("list-tasks", {})
            await c.call_tool("cancel-task", {"task_id": "t-1"})
            got = await anyio.to_thread.run_sync(_scrape, f"http://127.0.0.1:{port}/metrics")
    assert got['plr_decisions_total{"code": "allowed", "effect": "allow", "tool": "list-tasks"}'] == 1
    denied = [k for k in got if k.startswith("plr_decisions_total") and '"cancel-task"' in k and '"deny"' in k]
    assert denied and got[denied[0]] == 1
    assert got[f'plr_policy_info{{"sha256": "{setup.records()[0]["policy_sha256"]}"}}'] == 1


def test_bad_notify_and_metrics_flags_are_usage_errors(setup: ProxySetup) -> None:
    from tests.proxy.conftest import run_proxy_cli

    for extra, want in (
        (("--notify", "ftp://x"), "is not an http(s) URL"),
        (("--console-url", "http://127.0.0.1:8766"), "--console-url is the link in notifications"),
        (("--notify", "http://127.0.0.1:1/x", "--approval", "deny"), "use them with --approval queue or auto"),
        (("--metrics", "nonsense"), "--metrics"),
    ):
        args = [a for a in setup.proxy_args(*extra) if a != "-m" and a != "dsl.proxy"]
        res = run_proxy_cli(*args, timeout=60)
        assert res.returncode == 2, (extra, res.stderr_text)
        assert want in res.stderr_text and "Traceback" not in res.stderr_text
