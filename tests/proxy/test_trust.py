"""The proxy is never the weak link: attacks on paths around the policy, against real processes.

Each test drives a real `plr proxy` with raw JSON-RPC (the SDK would hide the problem) in front of
a real upstream, and checks that the attack now fails closed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import httpx2
import pytest

from .conftest import FAKE_SERVER, ProxySetup, base_env, http_proxy_process

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def http_proxy(setup: ProxySetup, *extra: str) -> Any:
    return http_proxy_process(
        setup, *extra, upstream=[sys.executable, str(FAKE_SERVER)], env=base_env(FAKE_CODEX_LOG=str(setup.calls_log))
    )


def rpc_body(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC message of a JSON or SSE response."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                return json.loads(line[5:])
        raise AssertionError(f"no data in the event stream: {response.text!r}")
    return response.json()


async def open_session(h: httpx2.AsyncClient, url: str, token: str | None = None) -> str:
    """A handshake-era session opened (with ``token``, if given): its Mcp-Session-Id."""
    auth = {"authorization": f"Bearer {token}"} if token is not None else {}
    init = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }  # fmt: skip
    r = await h.post(url, json=init, headers={**ACCEPT, **auth})
    assert r.status_code == 200, r.text
    sid = r.headers["mcp-session-id"]
    heads = {**ACCEPT, **auth, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}
    r = await h.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=heads)
    assert r.status_code == 202, r.text
    return sid


# --- 2. HTTP sessions are bound to the identity that opened them ---------------------------------


async def test_another_identity_cannot_use_delete_or_listen_on_a_session(setup: ProxySetup) -> None:
    tokens = setup.tmp / "tokens.json"
    tokens.write_text(json.dumps({"tok-a": "alice", "tok-b": "bob"}))
    setup.policy.write_text(setup.policy.read_text() + "\nlimit tool \"get-task\" to 2 per minute per session\n")
    with http_proxy(setup, "--auth-tokens", str(tokens)) as url:
        with anyio.fail_after(60):
            async with httpx2.AsyncClient(timeout=20) as h:
                sid = await open_session(h, url, "tok-a")
                alice = {**ACCEPT, "authorization": "Bearer tok-a", "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}
                bob = {**alice, "authorization": "Bearer tok-b"}
                call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "get-task", "arguments": {"task_id": "t"}}}
                # bob spends nothing of alice's quota, cannot listen on her stream, cannot end her session
                for _ in range(3):
                    r = await h.post(url, json=call, headers=bob)
                    assert r.status_code == 404 and rpc_body(r)["error"]["message"] == "Session not found"
                async with h.stream("GET", url, headers={**bob, "accept": "text/event-stream"}) as g:
                    assert g.status_code == 404
                r = await h.delete(url, headers=bob)
                assert r.status_code == 404
                # alice's session is intact, with her whole quota
                for i in range(2):
                    r = await h.post(url, json={**call, "id": 10 + i}, headers=alice)
                    assert r.status_code == 200 and not rpc_body(r)["result"].get("isError"), r.text
                # a session id bob never had looks exactly like one that does not exist
                r = await h.post(url, json=call, headers={**bob, "mcp-session-id": "0" * 32})
                assert r.status_code == 404 and rpc_body(r)["error"]["message"] == "Session not found"
    records = setup.records()
    assert [(r["identity"], r["tool"]) for r in records if r["session"] == sid] == [("alice", "get-task")] * 2
    assert not [r for r in records if r.get("identity") == "bob"]


# --- 1. integers the upstream cannot represent -------------------------------------------------


async def test_an_integer_a_javascript_server_would_round_is_refused(setup: ProxySetup) -> None:
    setup.policy.write_text(
        setup.policy.read_text() + '\ndeny tool "get-task" if args.task_id == 9007199254740992\n'
    )
    with http_proxy(setup) as url:
        with anyio.fail_after(60):
            async with httpx2.AsyncClient(timeout=20) as h:
                heads = {**ACCEPT, "mcp-session-id": await open_session(h, url), "mcp-protocol-version": "2025-06-18"}
                for i, raw in enumerate(("9007199254740993", "-9007199254740993", "1" + "0" * 400)):
                    body = '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"get-task","arguments":{"task_id":%s}}}' % (i + 2, raw)
                    r = await h.post(url, content=body.encode(), headers=heads)
                    result = rpc_body(r)["result"]
                    assert result["isError"] and result["_meta"]["plr/decision"]["code"] == "invalid_args", result
    assert setup.called_tools() == []  # nothing reached the server
    assert {r["code"] for r in setup.records()} == {"invalid_args"}


# --- 4. the agent cannot approve its own calls by default -------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_by_default_a_self_approving_client_is_never_asked(setup: ProxySetup, mode: str) -> None:
    """A client that declares elicitation and says yes to everything (an autonomous agent's client)
    is not asked: the call waits in the queue, which only a human with `plr approvals` answers."""
    from mcp import Client, StdioServerParameters

    from dsl.state.sqlite import SqliteApprovalQueue

    from .conftest import ROOT
    from .helpers import Human, text

    agent_says_yes = Human([("accept", True)] * 3)
    args = ["-m", "dsl.proxy", "--policy", str(setup.policy), "--audit", str(setup.audit),
            "--approvals-db", str(setup.db), "--approval-timeout", "1.5", "--", sys.executable, str(FAKE_SERVER)]  # fmt: skip
    params = StdioServerParameters(
        command=sys.executable, args=args, env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)), cwd=str(ROOT)
    )
    with anyio.fail_after(60):
        async with Client(params, mode=mode, cache=None, elicitation_callback=agent_says_yes) as c:
            r = await c.call_tool("cancel-task", {"task_id": "t-1"})
    assert agent_says_yes.seen == []
    assert r.is_error and r.meta["plr/decision"]["code"] == "approval_timeout"
    assert "waited in the approval queue" in text(r) and "plr approvals" in text(r) and "grant ID" in text(r)
    assert setup.called_tools() == []
    filed = SqliteApprovalQueue(setup.db, create=False).list(include_done=True)
    assert [a.tool for a in filed] == ["cancel-task"]


# --- 12. --listen on a port in use or a bad address; 14. stdin that is /dev/null --------------


def test_listen_on_a_port_in_use_or_a_bad_address_is_one_line_exit_2(setup: ProxySetup) -> None:
    import socket

    from .conftest import run_proxy_cli

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        for listen, says in ((f"127.0.0.1:{port}", "cannot listen on"), ("nohost.invalid:80", "cannot resolve")):
            proc = run_proxy_cli("--policy", str(setup.policy), "--listen", listen, "--", sys.executable, str(FAKE_SERVER))
            assert proc.returncode == 2, proc.stderr_text
            assert says in proc.stderr_text and "Traceback" not in proc.stderr_text
            assert not [line for line in proc.stderr_text.splitlines() if line.startswith("  |")]


def test_stdin_that_is_dev_null_is_a_closed_client(setup: ProxySetup) -> None:
    import subprocess

    from .conftest import ROOT

    with open("/dev/null", "rb") as devnull:
        proc = subprocess.run(
            [sys.executable, *setup.proxy_args()], stdin=devnull, capture_output=True, timeout=60, cwd=str(ROOT),
            env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"internal error" not in proc.stderr and b"Traceback" not in proc.stderr


# --- 7. hidden tools cannot be enumerated --------------------------------------------------------


async def test_a_hidden_tool_answers_exactly_as_a_tool_that_does_not_exist(setup: ProxySetup) -> None:
    from mcp import Client

    with anyio.fail_after(60):
        async with Client(setup.params(), mode="legacy", cache=None) as c:
            hidden = await c.call_tool("purge-workspace", {"task_id": "t"})
            unknown = await c.call_tool("purge-workspacf", {"task_id": "t"})
    dump = lambda r, name: json.dumps(r.model_dump(mode="json", by_alias=True), sort_keys=True).replace(name, "NAME")  # noqa: E731
    assert dump(hidden, "purge-workspace") == dump(unknown, "purge-workspacf")
    assert hidden.meta["plr/decision"]["code"] == "default"
    codes = {r["tool"]: r["code"] for r in setup.records()}
    assert codes == {"purge-workspace": "hidden", "purge-workspacf": "default"}  # the audit still knows


async def test_under_default_allow_a_hidden_tool_answers_as_the_server_answers_an_absent_one(
    setup: ProxySetup,
) -> None:
    """Under `default allow` an absent tool's call reaches the server, whose own error the agent
    gets; a hidden tool's call gets exactly that error too (the server is asked about a name that
    surely does not exist, without the call's arguments), never "hidden by policy"."""
    from mcp import Client

    setup.policy.write_text('package open\n\ndefault allow\n\nhide tool "purge-workspace"\n')
    with anyio.fail_after(60):
        async with Client(setup.params(), mode="legacy", cache=None) as c:
            hidden = await c.call_tool("purge-workspace", {"secret": "s3cr3t"})
            unknown = await c.call_tool("purge-workspacf", {"secret": "s3cr3t"})
    dump = lambda r, name: json.dumps(r.model_dump(mode="json", by_alias=True), sort_keys=True).replace(name, "NAME")  # noqa: E731
    assert hidden.is_error and dump(hidden, "purge-workspace") == dump(unknown, "purge-workspacf")
    assert "hidden" not in dump(hidden, "purge-workspace") and "plr" not in dump(hidden, "purge-workspace")
    codes = {r["tool"]: r["code"] for r in setup.records()}
    assert codes == {"purge-workspace": "hidden", "purge-workspacf": "default"}  # the audit still knows
    assert "purge-workspace" not in setup.called_tools()


# --- 13. a request id reused while its call is in flight ---------------------------------------


def test_a_request_id_in_flight_cannot_be_reused(setup: ProxySetup) -> None:
    """id 1 waits for approval in the queue; a second request with id 1 is an Invalid Request and
    leaves the first alone: its cancel still reaches it, and the client gets one answer for it."""
    from .test_reliability import Wire

    w = Wire(setup, "--approval", "queue", "--approval-timeout", "60")
    try:
        w.initialize()
        w.call(1, "cancel-task", {"task_id": "t-1"})  # waits for a human
        w.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        dup = w.recv()
        assert dup["id"] == 1 and dup["error"]["code"] == -32600 and "still in flight" in dup["error"]["message"]
        # "1" is the same id to the SDK's dispatcher (``coerce_request_id``): refused just the same
        w.send({"jsonrpc": "2.0", "id": "1", "method": "tools/list"})
        alias = w.recv()
        assert alias["id"] == "1" and alias["error"]["code"] == -32600 and "still in flight" in alias["error"]["message"]
        w.send({"jsonrpc": "2.0", "id": "x1", "method": "tools/list"})  # another id
        assert "result" in w.recv()
        w.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
        w.call(2, "get-task", {"task_id": "after"})
        answers = w.answers(1)
        assert set(answers) == {2}  # nothing more for id 1
        w.quiet(0.5)
        assert w.close() == 0
    finally:
        w.kill()
    assert setup.called_tools() == ["get-task"]


async def test_over_http_a_request_id_in_flight_cannot_be_reused(setup: ProxySetup) -> None:
    """The same over HTTP: the SDK keys a session's answers by request id, so a second POST with
    the id of a call waiting for approval would orphan it. It gets 400 Invalid Request instead,
    and the first call still gets its one answer."""
    with http_proxy(setup, "--approval", "queue", "--approval-timeout", "2") as url:
        with anyio.fail_after(60):
            async with httpx2.AsyncClient(timeout=30) as h:
                heads = {**ACCEPT, "mcp-session-id": await open_session(h, url), "mcp-protocol-version": "2025-06-18"}
                call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                        "params": {"name": "cancel-task", "arguments": {"task_id": "t-1"}}}  # fmt: skip
                first: dict[str, Any] = {}

                async def waiting() -> None:
                    first["r"] = await h.post(url, json=call, headers=heads)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiting)
                    await anyio.sleep(0.7)  # the call waits in the queue
                    dup = await h.post(url, json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, headers=heads)
                    assert dup.status_code == 400, dup.text
                    err = dup.json()
                    assert err["id"] == 7 and err["error"]["code"] == -32600 and "still in flight" in err["error"]["message"]
                    # the SDK keys a session's requests by coerce_request_id: "7" would orphan 7 just the same
                    other = await h.post(url, json={"jsonrpc": "2.0", "id": "7", "method": "tools/list"}, headers=heads)
                    assert other.status_code == 400 and other.json()["id"] == "7", other.text
                answer = rpc_body(first["r"])
                assert answer["id"] == 7 and answer["result"]["_meta"]["plr/decision"]["code"] == "approval_timeout"
                again = await h.post(url, json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, headers=heads)
                assert again.status_code == 200 and "result" in rpc_body(again)  # free once answered
    assert setup.called_tools() == []


# --- 5. the approver sees the values that will run ------------------------------------------------


def test_the_approver_sees_every_value_that_will_run(setup: ProxySetup) -> None:
    from dsl.state.sqlite import SqliteApprovalQueue

    from .conftest import run_proxy_cli
    from .test_reliability import Wire

    w = Wire(setup, "--approval", "queue", "--approval-timeout", "60")
    try:
        w.initialize()
        w.call(1, "cancel-task", {"task_id": "t-1", "key": "prod-db", "token_id": "tk-42", "secret_name": "s3"})
        import time

        for _ in range(600):
            if setup.db.exists() and SqliteApprovalQueue(setup.db, create=False).list():
                break
            time.sleep(0.05)
        (pending,) = SqliteApprovalQueue(setup.db, create=False).list()
        shown = run_proxy_cli("approvals", "--db", str(setup.db), "show", pending.id).stdout_text
        for value in ("prod-db", "tk-42", "s3"):
            assert value in shown, shown
        assert "REDACTED" not in shown
    finally:
        w.kill()
    assert oct(setup.db.stat().st_mode & 0o777) == "0o600"


# --- 6. an agent cannot bury its approver ------------------------------------------------------


def test_pending_approvals_are_capped_per_session(setup: ProxySetup) -> None:
    from dsl.state.sqlite import SqliteApprovalQueue

    from .test_reliability import Wire, result_text

    w = Wire(setup, "--approval", "queue", "--approval-timeout", "60", "--max-pending-approvals", "2")
    try:
        w.initialize()
        for i in range(1, 4):
            w.call(i, "cancel-task", {"task_id": f"t-{i}"})
        third = w.answers(1)  # the first two wait for a human; the third is refused at once
        assert set(third) == {3}, third
        text = result_text(third[3])
        assert "2 calls of this identity already wait for a human (--max-pending-approvals)" in text or \
            "2 calls of this session already wait for a human (--max-pending-approvals)" in text, text
        assert third[3]["result"]["_meta"]["plr/decision"]["code"] == "approval_unavailable"
        import time

        deadline = time.monotonic() + 30  # the two are filed by a thread each: wait, do not race it
        while len(SqliteApprovalQueue(setup.db, create=False).list()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(SqliteApprovalQueue(setup.db, create=False).list()) == 2  # the approver sees two
    finally:
        w.kill()


async def test_junk_input_responses_do_not_switch_off_the_limit_look_ahead(setup: ProxySetup) -> None:
    """A call its limit would refuse once approved is refused at once, not filed for a human;
    input responses that are not plr's own approval answer must not switch that check off."""
    from mcp import Client, StdioServerParameters

    from dsl.state.sqlite import SqliteApprovalQueue

    from .conftest import ROOT

    setup.policy.write_text(setup.policy.read_text() + "\nlimit all tools to 1 per minute per identity\n")
    args = ["-m", "dsl.proxy", "--policy", str(setup.policy), "--audit", str(setup.audit),
            "--approvals-db", str(setup.db), "--approval-timeout", "30", "--", sys.executable, str(FAKE_SERVER)]  # fmt: skip
    params = StdioServerParameters(
        command=sys.executable, args=args, env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)), cwd=str(ROOT)
    )
    junk = {"junk": {"action": "accept", "content": {"ok": True}}}
    with anyio.fail_after(60):
        async with Client(params, mode="2026-07-28", cache=None) as c:
            assert not (await c.call_tool("get-task", {"task_id": "t"})).is_error  # spends the limit
            answers = [
                await c.call_tool("cancel-task", {"task_id": f"t-{i}"}, input_responses=junk)  # type: ignore[arg-type]
                for i in range(5)
            ]
    assert all(r.is_error and r.meta["plr/decision"]["code"] == "rate_limited" for r in answers), answers
    # nobody was asked (the queue is created with its first request)
    assert not setup.db.exists() or SqliteApprovalQueue(setup.db, create=False).list(include_done=True) == []
    assert setup.called_tools() == ["get-task"]


# --- 15. over stdio the upstream is told exactly the client's capabilities -------------------------


@pytest.mark.parametrize(
    ("declares", "expected"),
    [((), []), (("roots",), ["roots"]), (("elicitation", "sampling", "roots"), ["elicitation", "sampling", "roots"])],
)
async def test_over_stdio_the_server_sees_exactly_the_clients_capabilities(
    setup: ProxySetup, declares: tuple[str, ...], expected: list[str]
) -> None:
    """A client that declares no roots must not be presented to the server as one that does
    (server-filesystem would ask for them and log a failure)."""
    from mcp import Client, StdioServerParameters, types

    from .conftest import HERE, ROOT
    from .helpers import text

    setup.policy.write_text('package caps\n\ndefault deny\n\nallow tool "caps"\n')
    relay = HERE / "servers" / "relay_server.py"
    args = ["-m", "dsl.proxy", "--policy", str(setup.policy), "--audit", str(setup.audit),
            "--approval", "deny", "--", sys.executable, str(relay)]  # fmt: skip
    params = StdioServerParameters(command=sys.executable, args=args, env=base_env(), cwd=str(ROOT))

    async def roots(context: Any) -> Any:
        return types.ListRootsResult(roots=[])

    async def elicit(context: Any, p: Any) -> Any:
        return types.ElicitResult(action="decline")

    async def sample(context: Any, p: Any) -> Any:
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="x"), model="m")

    callbacks: dict[str, Any] = {}
    if "roots" in declares:
        callbacks["list_roots_callback"] = roots
    if "elicitation" in declares:
        callbacks["elicitation_callback"] = elicit
    if "sampling" in declares:
        callbacks["sampling_callback"] = sample
    with anyio.fail_after(60):
        async with Client(params, mode="legacy", cache=None, **callbacks) as c:
            r = await c.call_tool("caps", {})
    assert not r.is_error and json.loads(text(r)) == expected


# --- 11. server-chosen text cannot forge a line on the proxy's stderr -------------------------------


def test_every_stderr_sink_of_the_proxy_escapes_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The proxy writes to stderr through three sinks (its report function, ProxyOptions.stderr,
    and the log handler's filter); each escapes control, ANSI and bidi characters."""
    import logging

    from dsl.proxy.errors import TracebackFilter
    from dsl.proxy.options import ProxyOptions
    from dsl.proxy.serve import report

    forged = "evil\n\x1b[2Kplr proxy: reloaded policy\u202e"
    report(f"plr proxy: tool {forged} changed")
    ProxyOptions(policy_path="p").stderr(f"plr proxy: denied {forged}")
    record = logging.LogRecord("mcp", logging.WARNING, __file__, 1, "upstream said %s", (forged,), None)
    assert TracebackFilter().filter(record)
    lines = [*capsys.readouterr().err.splitlines(), record.getMessage()]
    assert len(lines) == 3, lines
    for line in lines:
        assert "\x1b" not in line and "\u202e" not in line and "\\u000a" in line and "\\u001b" in line
