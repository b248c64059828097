"""`plr proxy --notify/--notify-command/--console-url` and the HTTP front's ``/metrics``, as an
operator starts them: real proxy processes, a real webhook receiver, a real `plr approvals`.

A filed approval is posted to the receiver (with the console link) and handed to the command;
the operator answers the id the message names and the waiting call goes on. The HTTP front
serves ``/metrics`` behind the same bearer tokens as ``/mcp``."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from .conftest import FAKE_SERVER, ProxySetup, base_env, free_port, http_proxy_process, run_proxy_cli
from .helpers import text

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class _Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.posts.append(json.loads(body))
                outer.arrived.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.server.shutdown()


async def test_notify_flags_tell_of_a_filed_request_and_its_id_answers_it(setup: ProxySetup, receiver: _Receiver) -> None:
    told = setup.tmp / "told.txt"
    script = "import json,os,sys; m=json.load(sys.stdin); open(sys.argv[1],'w').write(os.environ['PLR_APPROVAL_ID']+' '+m['approval']['tool'])"
    params = setup.params(
        "--approval", "queue", "--approval-timeout", "30",
        "--notify", receiver.url,
        "--notify-command", f'{sys.executable} -c "{script}" {told}',
        "--console-url", "http://127.0.0.1:8766",
    )  # fmt: skip

    async def operator() -> None:
        assert await anyio.to_thread.run_sync(lambda: receiver.arrived.wait(30))
        [msg] = receiver.posts
        aid = msg["approval"]["id"]
        assert msg["approval"]["tool"] == "cancel-task" and "cancel-task" in msg["text"]
        assert "http://127.0.0.1:8766" in msg["text"]  # the console link, for the human who reads it
        res = await anyio.to_thread.run_sync(lambda: run_proxy_cli("approvals", "--db", str(setup.db), "grant", aid))
        assert res.returncode == 0, res.stderr_text

    errlog = setup.stderr.open("w")
    try:
        with anyio.fail_after(60):
            async with Client(stdio_client(params, errlog=errlog), mode="legacy", cache=None) as c:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(operator)
                    result = await c.call_tool("cancel-task", {"task_id": "t-1"})
    finally:
        errlog.close()
    assert not result.is_error, text(result)
    assert setup.called_tools() == ["cancel-task"]
    aid = receiver.posts[0]["approval"]["id"]
    for _ in range(100):  # the command runs beside the call, not before it
        if told.exists():
            break
        await anyio.sleep(0.05)
    assert told.read_text() == f"{aid} cancel-task"
    assert [r.get("approval_id") for r in setup.records() if r["effect"] == "allow"] == [aid]


async def test_the_http_front_serves_metrics_behind_its_tokens(setup: ProxySetup) -> None:
    tokens = setup.tmp / "tokens.json"
    tokens.write_text(json.dumps({"tok-ops": "ops-bot"}))
    metrics_port = free_port()
    env = base_env(FAKE_CODEX_LOG=str(setup.calls_log))
    extra = ("--auth-tokens", str(tokens), "--metrics", f"127.0.0.1:{metrics_port}", "--approval", "deny")
    with http_proxy_process(setup, *extra, upstream=[sys.executable, str(FAKE_SERVER)], env=env) as url:
        front_metrics = url.removesuffix("/mcp") + "/metrics"
        with anyio.fail_after(40):
            async with httpx2.AsyncClient(headers={"authorization": "Bearer tok-ops"}) as http:
                async with Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None) as c:
                    assert not (await c.call_tool("list-tasks", {})).is_error
                    assert (await c.call_tool("cancel-task", {"task_id": "t-1"})).is_error
                scraped = await http.get(front_metrics)
            async with httpx2.AsyncClient() as anon:
                refused = await anon.get(front_metrics)
                wrong = await anon.get(front_metrics, headers={"authorization": "Bearer nope"})
                own = await anon.get(f"http://127.0.0.1:{metrics_port}/metrics")  # --metrics' own listener
    assert refused.status_code == 401 and wrong.status_code == 401
    assert "plr_decisions" not in refused.text
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    from prometheus_client.parser import text_string_to_metric_families

    for body in (scraped.text, own.text):
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body)
            for s in fam.samples
        }
        assert samples[("plr_decisions_total", (("code", "allowed"), ("effect", "allow"), ("tool", "list-tasks")))] == 1
        denied = [v for (n, labels), v in samples.items() if n == "plr_decisions_total" and ("tool", "cancel-task") in labels]
        assert denied == [1]
        assert samples[("plr_upstream_latency_seconds_count", ())] == 1  # the allowed call's answer, timed
