"""Fault injection with real processes: the proxy answers every request and loses no audit record."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

from mcp import Client, MCPError
from mcp.client.stdio import stdio_client

from tests.conftest import ROOT

from .conftest import CODEX_POLICY, ProxySetup, base_env, stop
from .helpers import text

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_server_exits_mid_call(setup: ProxySetup) -> None:
    with anyio.fail_after(30):
        params = setup.params("--max-restarts", "0", env={"FAKE_CODEX_EXIT_ON": "get-task"})
        async with Client(params, mode="legacy", cache=None) as c:
            assert not (await c.call_tool("list-tasks", {})).is_error
            t0 = anyio.current_time()
            with pytest.raises(MCPError, match="upstream MCP server closed the connection"):
                await c.call_tool("get-task", {"task_id": "t-1"})
            assert anyio.current_time() - t0 < 10  # an error, not a hang
            # the proxy lives on and keeps answering, with errors
            with pytest.raises(MCPError, match="closed the connection"):
                await c.call_tool("list-tasks", {})
            with pytest.raises(MCPError, match="closed the connection"):
                await c.list_tools()
            denied = await c.call_tool("purge-workspace", {})  # decided locally, still enforced
            assert denied.is_error and "not allowed by policy (default deny)" in text(denied)  # hidden, as if absent
    assert [(r["tool"], r["effect"]) for r in setup.records()] == [
        ("list-tasks", "allow"),
        ("get-task", "allow"),
        ("list-tasks", "allow"),
        ("purge-workspace", "deny"),
    ]
    assert setup.called_tools() == ["list-tasks", "get-task"]


async def test_garbage_on_server_stdout_is_skipped(setup: ProxySetup) -> None:
    errlog = (setup.tmp / "stderr.txt").open("w")
    with anyio.fail_after(30):
        params = setup.params(env={"FAKE_CODEX_GARBAGE_ON": "list-tasks"})
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", cache=None) as c:
            for _ in range(3):
                r = await c.call_tool("list-tasks", {})
                assert not r.is_error and json.loads(text(r)) == []
            assert not (await c.call_tool("spawn-task", {"prompt": "still fine"})).is_error
    errlog.close()
    assert "malformed message from the upstream server" in (setup.tmp / "stderr.txt").read_text()
    assert len(setup.records()) == 4


class RawClient:
    """Speaks bytes to `plr proxy` over stdio, with bounded waits for each answer."""

    def __init__(self, setup: ProxySetup) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *setup.proxy_args()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=str(ROOT),
            env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)),
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(b"")

    def send(self, data: bytes | dict) -> None:
        assert self.proc.stdin
        raw = json.dumps(data).encode() if isinstance(data, dict) else data
        self.proc.stdin.write(raw + b"\n")
        self.proc.stdin.flush()

    def handshake(self) -> dict:
        """initialize (id 1, handshake era) + initialized; returns the initialize result."""
        self.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            }
        )
        result = self.recv(20)["result"]
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return result

    def recv(self, timeout: float = 10) -> dict:
        line = self.lines.get(timeout=timeout)
        assert line, "the proxy closed its stdout"
        return json.loads(line)


def test_arguments_with_nan_or_infinity_are_refused_not_decided(setup: ProxySetup) -> None:
    """`NaN`, `Infinity` and `1e400` are not JSON, yet the SDK's reader takes them; every
    comparison with NaN is false (a `deny … if args.x > 10` would not fire) and the server would
    get null: the proxy refuses such a call, audited, never forwarded."""
    raw = RawClient(setup)
    try:
        raw.handshake()
        frames = [
            b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-task","arguments":{"task_id":NaN}}}',
            b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get-task","arguments":{"task_id":"t","n":[1,-Infinity]}}}',
            b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get-task","arguments":{"task_id":"t","n":1e400}}}',
            b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get-task","arguments":{"task_id":"t","n":2.5}}}',
        ]
        results = {}
        for frame in frames:
            raw.send(frame)
            msg = raw.recv(20)
            results[msg["id"]] = msg["result"]
    finally:
        stop(raw.proc)
    for i in (2, 3, 4):
        assert results[i]["isError"] and results[i]["_meta"]["plr/decision"]["code"] == "invalid_args", results[i]
    assert not results[5].get("isError")
    assert setup.called_tools() == ["get-task"]  # only the last one
    assert [r["code"] for r in setup.records()] == ["invalid_args"] * 3 + ["allowed"]


def test_malformed_frames_from_the_client_get_json_rpc_errors(setup: ProxySetup) -> None:
    raw = RawClient(setup)
    try:
        assert raw.handshake()["serverInfo"]["name"] == "mcp-codex-worker"
        answers = {}
        bad = [
            (b"this is not json", None, -32700),
            (b'{"jsonrpc": "2.0", "id": 7, "method": 5}', 7, -32600),
            (b"[1, 2, 3]", None, -32600),
            (b'\xff\xfe{"half', None, -32700),
            (
                b'{"jsonrpc": "2.0", "id": "s", "method": "tools/call", "params": {"name": "list-tasks", "arguments": "oops"}}',
                "s",
                -32602,
            ),
            (b'{"jsonrpc": "2.0", "id": 10, "method": "no/such/method"}', 10, -32601),
            # ids that are not a string or an integer: a request all the same, so it gets an answer
            (b'{"jsonrpc": "2.0", "id": true, "method": "tools/call", "params": {"name": "get-task"}}', None, -32600),
            (b'{"jsonrpc": "2.0", "id": 1.5, "method": "tools/call", "params": {"name": "get-task"}}', None, -32600),
            (b'{"jsonrpc": "2.0", "id": null, "method": "tools/call", "params": {"name": "get-task"}}', None, -32600),
            (b'{"jsonrpc": "2.0", "\\u0069d": true, "method": "tools/call", "params": {"name": "get-task"}}', None, -32600),
            (b'{"jsonrpc": "2.0", "id": [1], "method": "tools/call", "params": {"name": "get-task"}}', None, -32600),
        ]
        for frame, _, _ in bad:
            raw.send(frame)
        raw.send(b'{"jsonrpc": "2.0", "method": "notifications/bogus", "params": 3}')  # nothing to answer
        raw.send(b"")  # a blank line is ignored
        raw.send({"jsonrpc": "2.0", "id": 11, "method": "tools/list"})
        for _ in range(len(bad) + 1):
            msg = raw.recv()
            answers.setdefault(msg.get("id"), []).append(msg)
        for _, rid, code in bad:
            assert any(m.get("error", {}).get("code") == code for m in answers[rid]), (rid, answers.get(rid))
        assert [m["error"]["code"] for m in answers[None]].count(-32600) == 6  # [1,2,3] and the five ids
        assert [t["name"] for t in answers[11][0]["result"]["tools"]] == [
            "spawn-task",
            "get-task",
            "list-tasks",
            "cancel-task",
        ]
        raw.send(
            {"jsonrpc": "2.0", "id": 12, "method": "tools/call", "params": {"name": "list-tasks", "arguments": {}}}
        )
        assert json.loads(raw.recv()["result"]["content"][0]["text"]) == []
        raw.proc.stdin.close()  # EOF: the proxy stops its server and exits cleanly
        assert raw.proc.wait(timeout=15) == 0
    finally:
        stop(raw.proc)
    assert setup.called_tools() == ["list-tasks"]


async def test_broken_policy_written_while_calls_are_in_flight(setup: ProxySetup) -> None:
    errpath = setup.tmp / "stderr.txt"
    errlog = errpath.open("w")
    old_sha = __import__("dsl.proxy.reload", fromlist=["x"]).load_policy_file(setup.policy).sha256
    issued = answered = 0
    denied_after_switch = anyio.Event()
    stop_calls = anyio.Event()

    async def caller(c: Client) -> None:
        nonlocal issued, answered
        while not stop_calls.is_set():
            issued += 1
            r = await c.call_tool("list-tasks", {})
            answered += 1
            if r.is_error and "not allowed by policy (default deny)" in text(r):  # hidden, as if absent
                denied_after_switch.set()

    async def wait_for(pattern: str) -> None:
        while pattern not in errpath.read_text():
            await anyio.sleep(0.02)

    with anyio.fail_after(40):
        async with Client(stdio_client(setup.params("--watch"), errlog=errlog), mode="legacy", cache=None) as c:
            await c.list_tools()
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(caller, c)
                await anyio.sleep(0.3)
                setup.policy.write_text("this is { not a policy\n")
                await wait_for("policy reload failed")
                await anyio.sleep(0.2)  # calls keep flowing under the old policy
                assert not denied_after_switch.is_set()
                tmp = setup.tmp / "policy.plr.new"
                tmp.write_text(
                    CODEX_POLICY.replace('hide tool "purge-workspace"', 'hide tools ["purge-workspace", "list-tasks"]')
                )
                tmp.replace(setup.policy)  # an editor's atomic save
                await wait_for("reloaded policy")
                await denied_after_switch.wait()
                stop_calls.set()
    errlog.close()
    assert issued == answered > 10
    recs = setup.records()
    assert len(recs) == answered  # no audit record lost
    shas = [r["policy_sha256"] for r in recs]
    assert shas[0] == old_sha and shas[-1] != old_sha
    assert set(shas) == {old_sha, shas[-1]}
    switch = shas.index(shas[-1])
    assert all(s == shas[-1] for s in shas[switch:])  # swapped once, atomically
    assert {r["effect"] for r in recs[:switch]} == {"allow"} and {r["code"] for r in recs[switch:]} == {"hidden"}
    assert "this is { not a policy" not in json.dumps(recs)


def test_sigterm_stops_the_proxy_and_its_server(setup: ProxySetup) -> None:
    import os

    raw = RawClient(setup)
    try:
        raw.handshake()
        raw.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list-tasks", "arguments": {}}})
        assert "result" in raw.recv()
        server_pid = setup.calls()[0]["pid"]
        raw.proc.terminate()
        assert raw.proc.wait(timeout=15) == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the upstream server outlived the proxy")
    finally:
        stop(raw.proc)


async def test_a_policy_written_in_place_in_chunks_is_loaded_whole_not_by_its_prefix(tmp_path) -> None:
    """An editor or a script that writes the file in place, in chunks: its first chunk may well
    compile on its own (here: `default allow`, before the `hide` line arrives). --watch loads
    the file once it has been left alone a moment, so that prefix is never swapped in."""
    from dsl.proxy.reload import watch_policy

    path = tmp_path / "policy.plr"
    path.write_text("default deny\n")
    applied: list[Any] = []
    reports: list[str] = []
    stop_event = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: watch_policy(str(path), applied.append, reports.append, stop_event=stop_event))
            await anyio.sleep(0.5)  # the watcher is up
            with open(path, "w", encoding="utf-8") as f:
                f.write("default allow\n")  # a prefix that compiles, and would allow purge
                f.flush()
                await anyio.sleep(0.05)
                f.write('hide tool "purge"\n')
            while not applied:
                await anyio.sleep(0.05)
            await anyio.sleep(1.0)  # any later reload (of the prefix) would have happened by now
            stop_event.set()
    assert [(p.policy.default, list(p.policy.hide)) for p in applied] == [("allow", ["purge"])], reports
