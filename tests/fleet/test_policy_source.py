"""One policy for a fleet: ``--policy`` from a Redis key or an http(s) URL, hot swapped with the
same atomic rules as a file, and the ``policy_sha256`` of every audit record says which decided."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from dsl.compiler import compile_source
from tests.proxy.conftest import run_proxy_cli

from .conftest import Replica, replicas
from .helpers import agent, code_of

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

V1 = 'default deny\nallow tool "list-tasks"\n'
V2 = 'default deny\nallow tool "list-tasks"\nallow tool "get-task"\n'
V3 = 'default deny\nallow tool "get-task"\n'
BROKEN = 'default deny\nallow tool "list-tasks" if args.x ==\n'


def sha_of(text: str, name: str) -> str:
    return hashlib.sha256(compile_source(text, name).to_json().encode()).hexdigest()


async def wait_code(client, tool: str, want: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = code_of(await client.call_tool(tool, {"task_id": "t"} if tool == "get-task" else {}))
        if code == want:
            return
        assert time.monotonic() < deadline, f"{tool}: still {code}, wanted {want}"
        await anyio.sleep(0.05)


def hashes_in_order(r: Replica) -> list[str]:
    out: list[str] = []
    for rec in r.records():
        assert rec["policy_sha256"], rec
        if not out or out[-1] != rec["policy_sha256"]:
            out.append(rec["policy_sha256"])
    return out


async def test_policy_from_a_redis_key_hot_swaps_on_notification(tmp_path: Path, redis_server) -> None:
    r = redis_server.client()
    key = "fleet/policy.plr"
    r.set(key, V1)
    r.config_set("notify-keyspace-events", "K$")  # SET -> a keyspace event wakes every replica
    spec = f"{redis_server.url}#{key}"
    # a long poll: every swap below is driven by a notification, not by polling
    with replicas(tmp_path, spec, "--watch", "--policy-poll", "60", "--state", redis_server.url) as (a, b):
        with anyio.fail_after(40):
            async with agent(a.url) as ca, agent(b.url) as cb:
                for c in (ca, cb):
                    assert code_of(await c.call_tool("list-tasks", {})) == "allowed"
                    assert code_of(await c.call_tool("get-task", {"task_id": "t"})) == "default"
                r.set(key, V2)  # .plr text
                for c in (ca, cb):
                    await wait_code(c, "get-task", "allowed")
                # compiled JSON works too; without keyspace events, `PUBLISH KEY ...` wakes the replicas
                r.config_set("notify-keyspace-events", "")
                r.set(key, compile_source(V3, key).to_json())
                r.publish(key, "changed")
                for c in (ca, cb):
                    await wait_code(c, "list-tasks", "default")
                # a broken policy keeps the one in force (and says why, once)
                r.set(key, BROKEN)
                r.publish(key, "changed")
                a.wait_stderr("policy reload failed")
                b.wait_stderr("policy reload failed")
                for c in (ca, cb):
                    assert code_of(await c.call_tool("get-task", {"task_id": "t"})) == "allowed"
                # the key vanishes: keep the policy in force, say so once
                r.delete(key)
                r.publish(key, "changed")
                a.wait_stderr("keeping the policy in force")
                assert code_of(await ca.call_tool("get-task", {"task_id": "t"})) == "allowed"
    want = [sha_of(V1, key), sha_of(V2, key), sha_of(V3, key)]
    for rep in (a, b):
        assert hashes_in_order(rep) == want, rep.stderr()
        assert rep.stderr().count("reloaded policy") == 2
        assert rep.stderr().count("policy reload failed") == 1
        assert "Traceback" not in rep.stderr()


class PolicyServer:
    """A tiny HTTP server in a thread: serves ``body`` with an ETag (304 on a match), or ``status``."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.requests = 0
        self.not_modified = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests += 1
                if outer.status != 200:
                    self.send_error(outer.status)
                    return
                etag = '"' + hashlib.sha256(outer.body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    outer.not_modified += 1
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/policies/fleet.plr"

    @contextmanager
    def running(self) -> Iterator["PolicyServer"]:
        t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        t.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()
            t.join(5)


async def test_policy_from_an_http_url_hot_swaps_by_polling(tmp_path: Path, redis_server) -> None:
    srv = PolicyServer()
    srv.body = V1.encode()
    with srv.running(), replicas(tmp_path, srv.url, "--watch", "--policy-poll", "0.1", n=1) as (a,):
        with anyio.fail_after(30):
            async with agent(a.url) as c:
                assert code_of(await c.call_tool("get-task", {"task_id": "t"})) == "default"
                srv.body = V2.encode()
                await wait_code(c, "get-task", "allowed")
                srv.status = 503  # the policy server fails: keep the policy in force, say so once
                a.wait_stderr("keeping the policy in force")
                await anyio.sleep(0.5)
                assert code_of(await c.call_tool("get-task", {"task_id": "t"})) == "allowed"
                srv.body, srv.status = V3.encode(), 200
                await wait_code(c, "list-tasks", "default")
                a.wait_stderr("is reachable again")
                await anyio.sleep(0.3)
    assert hashes_in_order(a) == [sha_of(V1, "fleet.plr"), sha_of(V2, "fleet.plr"), sha_of(V3, "fleet.plr")]
    err = a.stderr()
    assert err.count("keeping the policy in force") == 1 and "HTTP 503" in err
    assert err.count("reloaded policy") == 2 and "Traceback" not in err
    assert srv.not_modified > 0  # unchanged polls cost a 304, not a download and a compile


def test_unreachable_policy_source_means_no_proxy(tmp_path: Path, redis_server) -> None:
    audit = str(tmp_path / "audit.jsonl")
    for spec, why in [
        ("http://127.0.0.1:9/policy.plr", "cannot fetch the policy"),
        (f"{redis_server.url}#missing", "does not exist"),
        (redis_server.url, "names its key"),
    ]:
        out = run_proxy_cli("proxy", "--policy", spec, "--audit", audit, "--", "true", timeout=30)
        assert out.returncode == 2, (spec, out.stderr_text)
        assert why in out.stderr_text and "not starting" in out.stderr_text and "Traceback" not in out.stderr_text
    bad = run_proxy_cli("proxy", "--policy", "x.plr", "--state", "redis://h:1/0#k", "--", "true", timeout=30)
    assert bad.returncode == 2 and "--state" in bad.stderr_text and "Traceback" not in bad.stderr_text
