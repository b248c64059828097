"""Request ids and frames at the proxy's fronts (review findings).

1. Every table of requests in flight (the stdio and HTTP gates, both fast paths, the cancellation
   lookups) keys an id as the SDK's dispatcher keys it (``coerce_request_id``): 7, "7", "07" and
   " 7" are one id there, so a request with an aliasing id is refused as "still in flight", as a
   repeated one is, and a cancel of the first still reaches it.
2. Over HTTP the gate asks whether the SDK serves a request in its session (a handshake-era
   request of the session's owner) before it looks at a slot: another identity gets exactly the
   answer of a session that does not exist, whatever ids are in flight, and touches no slot; a
   2026-07-28 request takes none.
3. A frame with a "method" and a "result" or an "error" is an Invalid Request (answered with its
   id), never read as a response (dropped: the client waited for ever) or as a request.
"""

from __future__ import annotations

import json
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.shared.dispatcher import coerce_request_id

from .conftest import FAKE_SERVER, ProxySetup, base_env, http_proxy_process, http_server, run_proxy_cli
from .test_reliability import Wire
from .test_trust import rpc_body

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
V2025 = "2025-06-18"
ALIASES = ["7", "07", " 7", "+7", "7 "]  # one id with 7 to the SDK's dispatcher


def _approval_id(path: Path, timeout: float = 20) -> str:
    """The id of the queued approval request the proxy names on its stderr."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"grant (\w+)", path.read_text(errors="replace")) if path.exists() else None
        if m:
            return m.group(1)
        time.sleep(0.05)
    raise AssertionError("the call never waited in the approval queue")


async def _approval_id_async(path: Path) -> str:
    return await anyio.to_thread.run_sync(_approval_id, path)


def _grant(setup: ProxySetup, aid: str) -> Any:
    return run_proxy_cli("approvals", "--db", str(setup.db), "grant", aid)


# --- 1. one id as the SDK sees it: units -------------------------------------------------------------

_ids = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.integers(min_value=0, max_value=99).map(lambda i: f"0{i}"),
    st.integers(min_value=0, max_value=99).map(lambda i: f" {i} "),
    st.text(alphabet="0123456789 +-_x٧", max_size=4),
)


@given(rid=st.one_of(
    _ids,
    st.text(max_size=6),
    st.text(alphabet=st.sampled_from("0123456789٧੭\u00a0\u2003\t\n +-_xé"), max_size=6),
    st.integers(),
))
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
def test_id_key_is_the_sdks_coerce_request_id(rid: Any) -> None:
    """``id_key`` (which spares most string ids the ``ValueError`` of ``int()``) gives exactly what
    the SDK's ``coerce_request_id`` gives, value and type."""
    from dsl.proxy.http import id_key

    want = coerce_request_id(rid)
    got = id_key(rid)
    assert got == want and type(got) is type(want)


@given(a=_ids, b=_ids)
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_stdio_gate_keys_ids_as_the_sdk_dispatcher_does(a: Any, b: Any) -> None:
    """A second request is refused exactly when the SDK's dispatcher would file it under the first
    one's key, and a cancellation frees exactly the ids the SDK's would cancel."""
    from dsl.proxy.stdio import _InFlight

    gate = _InFlight()
    assert gate.claim(types.JSONRPCRequest(jsonrpc="2.0", id=a, method="ping"))
    same = coerce_request_id(a) == coerce_request_id(b)
    assert gate.claim(types.JSONRPCRequest(jsonrpc="2.0", id=b, method="ping")) is not same
    cancel = types.JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled", params={"requestId": b})
    gate.claim(cancel)
    assert (coerce_request_id(a) in gate.ids) is not same


def test_the_stdio_gate_is_not_freed_by_a_bool_or_a_float() -> None:
    """The SDK reads no request id out of ``true`` or ``1.0`` (``as_request_id``): neither frees id 1."""
    from dsl.proxy.stdio import _InFlight

    gate = _InFlight()
    gate.claim(types.JSONRPCRequest(jsonrpc="2.0", id=1, method="ping"))
    for rid in (True, 1.0):
        gate.claim(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled", params={"requestId": rid}))
    assert not gate.claim(types.JSONRPCRequest(jsonrpc="2.0", id="01", method="ping"))


@pytest.mark.parametrize("alias", ALIASES)
def test_a_fast_call_is_cancelled_by_an_aliasing_id(alias: str) -> None:
    """The stdio fast path finds its call 7 from a cancel of "07", as the SDK's dispatcher would."""
    from dsl.proxy.fast_calls import FastCalls, _Call as FastCall

    sent: list[bytes] = []
    released: list[Any] = []
    sessions = SimpleNamespace(fast_call_ended=lambda: None, fast_call_abandoned=lambda: None)
    fast = FastCalls.__new__(FastCalls)
    fast.sessions = sessions
    fast.by_front = {}
    lane = SimpleNamespace(calls={}, encoding="utf-8", send_now=sent.append)
    front = SimpleNamespace(release=released.append)
    call = FastCall(owner=fast, front=front, front_id=7, up_id=5, lane=lane, tool="t", version=V2025, decision=object())  # type: ignore[arg-type]
    lane.calls[5] = call
    fast.by_front[coerce_request_id(7)] = call
    fast._cancelled(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled", params={"requestId": alias}))
    assert call.done and not fast.by_front and not lane.calls and released == [7]
    assert json.loads(sent[0])["params"]["requestId"] == 5  # the server is told


# --- 1. stdio, end to end ------------------------------------------------------------------------------


def test_stdio_an_aliasing_id_is_refused_and_the_cancel_still_reaches_the_waiting_call(setup: ProxySetup) -> None:
    """Call 7 waits for a human (the SDK path); requests "7", "07", " 7" are refused as still in
    flight; the client's cancel of 7 reaches it: a grant afterwards runs nothing."""
    w = Wire(setup, "--approval", "queue", "--approval-timeout", "60")
    try:
        w.initialize()
        w.call(7, "cancel-task", {"task_id": "t-1"})
        aid = _approval_id(w.err_path)
        for alias in ALIASES:
            w.send({"jsonrpc": "2.0", "id": alias, "method": "ping"})
            err = w.recv()
            assert err["id"] == alias and err["error"]["code"] == -32600, err
            assert "still in flight" in err["error"]["message"]
        w.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}})
        time.sleep(0.5)
        granted = _grant(setup, aid)
        assert granted.returncode != 0 and "cancelled" in granted.stdout_text + granted.stderr_text
        w.call(8, "get-task", {"task_id": "after"})
        assert set(w.answers(1)) == {8}  # nothing for 7: a cancelled request is never answered
        w.quiet(0.5)
        assert w.close() == 0
    finally:
        w.kill()
    assert setup.called_tools() == ["get-task"]


def test_stdio_fast_path_an_aliasing_id_is_refused_and_its_cancel_reaches_the_call(setup: ProxySetup) -> None:
    """Call 7 on the fast path (the server is working on it): "07" is refused as still in flight,
    and a cancel naming "07" stops call 7 (as the SDK's dispatcher would read it)."""
    w = Wire(setup, env={"PLR_PROXY_FAST": "report"})
    try:
        w.initialize()
        w.call(1, "get-task", {"task_id": "warm"})  # (the session's first call)
        assert set(w.answers(1)) == {1}
        w.call(7, "spawn-task", {"prompt": "sleep:3"})
        time.sleep(0.5)
        w.send({"jsonrpc": "2.0", "id": "07", "method": "tools/list"})
        err = w.recv()
        assert err["id"] == "07" and err["error"]["code"] == -32600 and "still in flight" in err["error"]["message"], err
        w.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "07"}})
        w.call(8, "get-task", {"task_id": "after"})
        assert set(w.answers(1)) == {8}
        w.quiet(3.5)  # no answer for 7, ever
        w.call(7, "get-task", {"task_id": "again"})  # its id is free again
        assert "result" in w.answers(1)[7]
        assert w.close() == 0
    finally:
        w.kill()
    assert re.search(r"the fast path served [1-9]", w.err_path.read_text()), w.err_path.read_text()


# --- 1 and 2. HTTP: the gate, with the SDK's session manager stubbed ---------------------------------


class _Manager:
    """What ``RequestIdGate.routed`` reads of the SDK's StreamableHTTPSessionManager."""

    def __init__(self, owners: dict[str, Any]) -> None:
        self._server_instances = {sid: object() for sid in owners}
        self._session_owners = {sid: owner for sid, owner in owners.items() if owner is not None}


def _user(identity: str) -> Any:
    from dsl.proxy.http import _principal

    return _principal(identity)


def _scope(sid: str, identity: str | None, version: str = V2025) -> dict[str, Any]:
    headers = [(b"mcp-session-id", sid.encode()), (b"mcp-protocol-version", version.encode())]
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/mcp", "headers": headers}
    if identity is not None:
        scope["user"] = _user(identity)
    return scope


class _App:
    """The SDK app behind the gate: answers 404 to a session the caller does not own, else holds
    the request until ``release`` (a call waiting for a human), then answers 200."""

    def __init__(self, manager: _Manager) -> None:
        self.manager = manager
        self.release = anyio.Event()
        self.seen: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from mcp.server.auth.middleware.bearer_auth import authorization_context

        body = (await receive())["body"]
        self.seen.append(json.loads(body)["id"])
        sid = dict(scope["headers"])[b"mcp-session-id"].decode()
        user = scope.get("user")
        who = authorization_context(user) if user is not None else None
        if sid not in self.manager._server_instances or who != self.manager._session_owners.get(sid):
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}'})
            return
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})


async def _post(gate: Any, scope: dict[str, Any], frame: dict[str, Any]) -> tuple[int, list[Any], bytes]:
    body = json.dumps(frame).encode()
    out: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        out.append(message)

    await gate.serve(scope, body, receive, send)
    return out[0]["status"], out[0]["headers"], b"".join(m.get("body", b"") for m in out[1:])


def _ping(rid: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "ping"}


@pytest.mark.anyio
async def test_http_gate_refuses_an_aliasing_id_in_flight() -> None:
    from dsl.proxy.http import RequestIdGate

    manager = _Manager({"s1": None})
    app = _App(manager)
    gate = RequestIdGate(app, None, manager)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_post, gate, _scope("s1", None), _ping(7))
        await anyio.sleep(0.05)
        for alias in ALIASES:
            status, _, body = await _post(gate, _scope("s1", None), _ping(alias))
            err = json.loads(body)
            assert status == 400 and err["id"] == alias and "still in flight" in err["error"]["message"]
        app.release.set()
    assert app.seen == [7] and not gate._inflight


@pytest.mark.anyio
async def test_http_gate_another_identity_learns_nothing_and_touches_no_slot() -> None:
    """Bob sends alice's session id: for her id in flight and for a free one he gets the same
    answer, the one of a session that does not exist; her slot stays hers."""
    from mcp.server.auth.middleware.bearer_auth import authorization_context

    from dsl.proxy.http import RequestIdGate

    manager = _Manager({"s1": authorization_context(_user("alice"))})
    app = _App(manager)
    gate = RequestIdGate(app, None, manager)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_post, gate, _scope("s1", "alice"), _ping(7))
        await anyio.sleep(0.05)
        slots = dict(gate._inflight)
        in_flight = await _post(gate, _scope("s1", "bob"), _ping(7))
        free = await _post(gate, _scope("s1", "bob"), _ping(8))
        unknown = await _post(gate, _scope("nope", "bob"), _ping(7))
        assert in_flight == free == unknown and in_flight[0] == 404
        assert gate._inflight == slots  # untouched: neither looked at nor taken
        status, _, body = await _post(gate, _scope("s1", "alice"), _ping("07"))
        assert status == 400 and "still in flight" in body.decode()  # still hers
        app.release.set()
    assert app.seen == [7, 7, 8, 7] and not gate._inflight


@pytest.mark.anyio
async def test_http_gate_a_2026_request_takes_no_slot() -> None:
    """A 2026-07-28 request is served by no session (the manager's modern entry): its id is no
    session's, whoever sends it, so it is neither refused for an id in flight nor holds one."""
    from mcp.server.auth.middleware.bearer_auth import authorization_context

    from dsl.proxy.http import RequestIdGate

    manager = _Manager({"s1": authorization_context(_user("alice"))})
    app = _App(manager)
    gate = RequestIdGate(app, None, manager)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_post, gate, _scope("s1", "alice"), _ping(7))
        await anyio.sleep(0.05)
        slots = dict(gate._inflight)
        for who in ("alice", "bob"):
            seen = len(app.seen)
            tg.start_soon(_post, gate, _scope("s1", who, "2026-07-28"), _ping(7))
            await anyio.sleep(0.05)
            assert len(app.seen) == seen + 1 and gate._inflight == slots
        app.release.set()


# --- 1 and 2. HTTP, end to end ------------------------------------------------------------------------


@contextmanager
def _codex_proxy(setup: ProxySetup, *extra: str, url_upstream: bool = False) -> Any:
    env = base_env(FAKE_CODEX_LOG=str(setup.calls_log))
    if url_upstream:
        with http_server(FAKE_SERVER, env) as up:
            with http_proxy_process(setup, *extra, upstream=up, env=env) as url:
                yield url
    else:
        with http_proxy_process(setup, *extra, upstream=[sys.executable, str(FAKE_SERVER)], env=env) as url:
            yield url


async def _open(h: httpx2.AsyncClient, url: str, token: str | None = None) -> dict[str, str]:
    auth = {"authorization": f"Bearer {token}"} if token else {}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": V2025, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}  # fmt: skip
    r = await h.post(url, json=init, headers={**ACCEPT, **auth})
    assert r.status_code == 200, r.text
    heads = {**ACCEPT, **auth, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": V2025}
    assert (await h.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=heads)).status_code == 202
    return heads


def _call(rid: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": tool, "arguments": args}}


@pytest.mark.anyio
@pytest.mark.slow
async def test_http_an_aliasing_id_is_refused_and_the_cancel_still_reaches_the_waiting_call(setup: ProxySetup) -> None:
    with _codex_proxy(setup, "--approval", "queue", "--approval-timeout", "60") as url:
        with anyio.fail_after(90):
            async with httpx2.AsyncClient(timeout=60) as h:
                heads = await _open(h, url)
                first: dict[str, Any] = {}

                async def waiting() -> None:
                    first["r"] = await h.post(url, json=_call(7, "cancel-task", {"task_id": "t-1"}), headers=heads)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiting)
                    aid = await _approval_id_async(setup.stderr)
                    for alias in ALIASES:
                        r = await h.post(url, json=_ping(alias), headers=heads)
                        assert r.status_code == 400 and r.json()["id"] == alias, r.text
                        assert "still in flight" in r.json()["error"]["message"]
                    r = await h.post(url, json={"jsonrpc": "2.0", "method": "notifications/cancelled",
                                                "params": {"requestId": 7}}, headers=heads)  # fmt: skip
                    assert r.status_code == 202
                answer = rpc_body(first["r"])
                assert answer["id"] == 7 and answer["error"]["message"] == "Request cancelled", answer
                granted = await anyio.to_thread.run_sync(_grant, setup, aid)
                assert granted.returncode != 0 and "cancelled" in granted.stdout_text + granted.stderr_text
    assert setup.called_tools() == []


@pytest.mark.anyio
@pytest.mark.slow
async def test_http_fast_path_an_aliasing_id_is_refused(setup: ProxySetup) -> None:
    with _codex_proxy(setup, url_upstream=True) as url:
        with anyio.fail_after(90):
            async with httpx2.AsyncClient(timeout=60) as h:
                heads = await _open(h, url)
                r = await h.post(url, json=_call(1, "get-task", {"task_id": "warm"}), headers=heads)
                assert "result" in rpc_body(r)
                first: dict[str, Any] = {}

                async def slow() -> None:
                    first["r"] = await h.post(url, json=_call(7, "spawn-task", {"prompt": "sleep:2"}), headers=heads)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(slow)
                    await anyio.sleep(0.7)
                    for alias in ("07", " 7"):
                        r = await h.post(url, json=_call(alias, "get-task", {"task_id": "x"}), headers=heads)
                        assert r.status_code == 400 and "still in flight" in r.json()["error"]["message"], r.text
                assert rpc_body(first["r"])["id"] == 7 and "result" in rpc_body(first["r"])
                r = await h.post(url, json=_call("07", "get-task", {"task_id": "y"}), headers=heads)
                assert rpc_body(r)["id"] == "07" and "result" in rpc_body(r)  # free once answered
    assert [c["args"] for c in setup.calls()] == [{"task_id": "warm"}, {"prompt": "sleep:2"}, {"task_id": "y"}]


@pytest.mark.anyio
@pytest.mark.slow
@pytest.mark.parametrize("url_upstream", [False, True], ids=["command", "url"])
async def test_http_another_identity_gets_the_answer_of_no_session_whatever_is_in_flight(
    setup: ProxySetup, url_upstream: bool
) -> None:
    """Bob, with alice's session id: her id in flight and a free id give him byte-identical
    answers (those of a session that does not exist); her call and her slot are untouched."""
    tokens = setup.tmp / "tokens.json"
    tokens.write_text(json.dumps({"tok-a": "alice", "tok-b": "bob"}))
    with _codex_proxy(setup, "--auth-tokens", str(tokens), "--approval", "queue", "--approval-timeout", "60",
                      url_upstream=url_upstream) as url:  # fmt: skip
        with anyio.fail_after(90):
            async with httpx2.AsyncClient(timeout=60) as h:
                alice = await _open(h, url, "tok-a")
                bob = {**alice, "authorization": "Bearer tok-b"}
                first: dict[str, Any] = {}

                async def waiting() -> None:
                    first["r"] = await h.post(url, json=_call(7, "cancel-task", {"task_id": "t-1"}), headers=alice)

                def seen(r: httpx2.Response) -> tuple[Any, ...]:
                    return r.status_code, r.headers.get("content-type"), r.headers.get("content-length"), r.content

                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiting)
                    aid = await _approval_id_async(setup.stderr)
                    for frame in (_ping, lambda rid: _call(rid, "get-task", {"task_id": "b"})):
                        answers = [seen(await h.post(url, json=frame(rid), headers=bob)) for rid in (7, "07", 8)]
                        answers.append(seen(await h.post(url, json=frame(7), headers={**bob, "mcp-session-id": "0" * 32})))
                        assert answers[0][0] == 404 and all(a == answers[0] for a in answers), answers
                    # a 2026-07-28 request under her session id is not refused for her id in flight
                    r = await h.post(url, json=_ping(7), headers={**bob, "mcp-protocol-version": "2026-07-28"})
                    assert "still in flight" not in r.text, r.text
                    r = await h.post(url, json=_ping("07"), headers=alice)  # her slot is still hers
                    assert r.status_code == 400 and "still in flight" in r.json()["error"]["message"]
                    assert (await anyio.to_thread.run_sync(_grant, setup, aid)).returncode == 0
                answer = rpc_body(first["r"])
                assert answer["id"] == 7 and not answer["result"].get("isError"), answer
    assert setup.called_tools() == ["cancel-task"]
    assert not [r for r in setup.records() if r.get("identity") == "bob"]


# --- 3. a method with a result or an error ------------------------------------------------------------

MIXED = [
    (b'{"jsonrpc":"2.0","id":28,"method":"tools/call","params":{"name":"get-task","arguments":{"task_id":"x"}},"error":{"code":1,"message":"x"}}', 28),
    (b'{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"get-task","arguments":{"task_id":"x"}},"result":{}}', "a"),
    (b'{"jsonrpc":"2.0","id":30,"method":"tools/list","\\u0065rror":{"code":1,"message":"x"}}', 30),
    (b'{"jsonrpc":"2.0","id":31,"method":"tools/list","r\\u0065sult":{},"error":{"code":1,"message":"x"}}', 31),
    (b'{"jsonrpc":"2.0","id":32,"method":5,"result":{}}', 32),
    (b'{"jsonrpc":"2.0","id":null,"method":"tools/list","error":{"code":1,"message":"x"}}', None),
    (b'{"jsonrpc":"2.0","id":true,"method":"tools/list","result":{}}', None),
]  # fmt: skip
MIXED_NOTIFICATIONS = [
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7},"error":{"code":1,"message":"x"}}',
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7},"result":{}}',
]
PLAIN = [  # "result" and "error" elsewhere than as keys of the frame: read as they always were
    b'{"jsonrpc":"2.0","id":40,"method":"tools/call","params":{"name":"get-task","arguments":{"task_id":"error","result":"\\u00e9"}}}',
    b'{"jsonrpc":"2.0","id":41,"result":{"method":"x"}}',
]


@pytest.mark.parametrize(("frame", "rid"), MIXED)
def test_stdio_a_frame_with_a_method_and_a_result_or_an_error_is_an_invalid_request(frame: bytes, rid: Any) -> None:
    from dsl.proxy.stdio import _parsed, error_for_bad_line

    assert _parsed(frame + b"\n") is None
    err = error_for_bad_line(frame + b"\n")
    assert err is not None and err.id == rid and err.error.code == types.INVALID_REQUEST


@pytest.mark.parametrize("frame", MIXED_NOTIFICATIONS)
def test_stdio_such_a_notification_is_dropped_unanswered(frame: bytes) -> None:
    from dsl.proxy.stdio import _parsed, error_for_bad_line

    assert _parsed(frame + b"\n") is None and error_for_bad_line(frame + b"\n") is None


@pytest.mark.parametrize("frame", PLAIN)
def test_stdio_result_or_error_elsewhere_is_read_as_before(frame: bytes) -> None:
    from dsl.proxy.stdio import _parsed

    sm = _parsed(frame + b"\n")
    assert sm is not None and sm.message == types.jsonrpc_message_adapter.validate_json(frame, by_name=False)


@pytest.mark.parametrize(("frame", "rid"), MIXED)
def test_http_a_frame_with_a_method_and_a_result_or_an_error_is_refused(frame: bytes, rid: Any) -> None:
    from dsl.proxy.http import _refusal, mixed_frame

    assert mixed_frame(frame)
    err = json.loads(_refusal(frame) or b"null")
    assert err["id"] == rid and err["error"]["code"] == -32600


def test_stdio_end_to_end_mixed_frames_are_answered_and_never_forwarded(setup: ProxySetup) -> None:
    """On the fast path (a plain tools/call) and the SDK path alike: answered with the frame's id,
    never forwarded; a mixed notification is dropped (its cancel cancels nothing) and the proxy
    reads on."""
    w = Wire(setup)
    try:
        w.initialize()
        w.call(1, "get-task", {"task_id": "warm"})
        assert set(w.answers(1)) == {1}
        for frame, rid in MIXED:
            w.send(frame)
            err = w.recv()
            assert err["id"] == rid and err["error"]["code"] == -32600, (frame, err)
        for frame in MIXED_NOTIFICATIONS:
            w.send(frame)
        w.send(PLAIN[0])
        assert "result" in w.answers(1)[40]
        w.quiet(0.3)
        assert w.close() == 0
    finally:
        w.kill()
    assert [c["args"] for c in setup.calls()] == [{"task_id": "warm"}, {"task_id": "error"}]  # (the server records the task id)


@pytest.mark.anyio
@pytest.mark.slow
async def test_http_end_to_end_mixed_frames_are_refused_and_never_forwarded(setup: ProxySetup) -> None:
    """Held by the front's protocol (a small body with a length), read through the middleware (a
    chunked body), and without a session: a 400 Invalid Request with the frame's id, not a 202."""
    with _codex_proxy(setup, url_upstream=True) as url:
        with anyio.fail_after(90):
            async with httpx2.AsyncClient(timeout=60) as h:
                heads = await _open(h, url)
                r = await h.post(url, json=_call(1, "get-task", {"task_id": "warm"}), headers=heads)
                assert "result" in rpc_body(r)
                for frame, rid in MIXED:

                    async def chunked(frame: bytes = frame) -> Any:
                        yield frame

                    for how in ({"content": frame}, {"content": chunked()}):
                        r = await h.post(url, headers=heads, **how)
                        assert r.status_code == 400 and r.json()["id"] == rid, (frame, r.text)
                        assert r.json()["error"]["code"] == -32600
                    r = await h.post(url, content=frame, headers=ACCEPT)  # no session
                    assert r.status_code == 400 and r.json()["id"] == rid, (frame, r.text)
                for frame in MIXED_NOTIFICATIONS:
                    r = await h.post(url, content=frame, headers=heads)
                    assert r.status_code == 400 and r.json()["id"] is None, r.text
                r = await h.post(url, content=PLAIN[0], headers=heads)
                assert "result" in rpc_body(r)
    assert [c["args"] for c in setup.calls()] == [{"task_id": "warm"}, {"task_id": "error"}]  # (the server records the task id)


@pytest.mark.parametrize("member", ['"error":null', '"result":null'])
def test_a_null_result_or_error_beside_a_method_is_no_answer(member: str) -> None:
    """A JSON-RPC 1.0 habit: `"error": null` in a request. The SDK serves it as the request it
    is, and so does the proxy: only a result or an error that is there makes a frame mixed."""
    from dsl.proxy.http import is_mixed, mixed_frame

    frame = f'{{"jsonrpc":"2.0","id":1,"method":"tools/list",{member}}}'.encode()
    assert not mixed_frame(frame) and not is_mixed(json.loads(frame))
    assert mixed_frame(frame.replace(b"null", b'{"code":1,"message":"x"}' if b"error" in frame else b"{}"))
