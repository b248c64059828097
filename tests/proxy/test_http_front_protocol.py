"""The HTTP front's two protocols (``dsl.proxy.http.guarded_protocol``): uvicorn's httptools one
(the default when httptools is importable) and its h11 one (``PLR_PROXY_HTTP=h11``) read requests
alike where it matters: the same raw requests, sent to an echo app behind each, get the same
status and the app sees the same request (method, path, query, headers, body). What llhttp checks
and h11 does not (``Host``, ``Transfer-Encoding``, the size of an incomplete head, trailers,
absolute-form targets, Upgrade) is done by the httptools protocol itself; these cases pin it.
The guards themselves (read deadline, connection cap) are tested on both protocols against the
real proxy in test_http_hardening.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("httptools")
uvicorn = pytest.importorskip("uvicorn")

from dsl.proxy.http import front_protocol, guarded_protocol  # noqa: E402


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen = {
        "method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"), "version": scope["http_version"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body": body.decode("latin-1"),
    }  # fmt: skip
    out = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


async def _answers(port: int, pieces: list[bytes], count: int) -> list[tuple[int, Any]]:
    """Send ``pieces`` (each its own write, so each its own read at the server), then read up to
    ``count`` answers (fewer if the server closes): (status, what the app saw)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.05)  # apart: one read each
    got: list[tuple[int, Any]] = []
    try:
        while len(got) < count:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                break
            status = int(head.split(b" ", 2)[1])
            if status == 100:
                continue
            lines = [line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line]
            length = next((int(v) for k, v in lines if k.strip().lower() == b"content-length"), None)
            body = await reader.readexactly(length) if length is not None else await reader.read()
            got.append((status, json.loads(body) if status == 200 else None))
            if length is None:
                break
    finally:
        writer.close()
    return got


class _HoldAll:
    """A ``held`` for ``guarded_protocol`` that holds every request with a ``Content-Length``, then
    runs the app (``chain``), keeping the bodies it was given."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def wants(self, scope: Any, headers: Any = None) -> bool:
        return any(k == b"content-length" for k, _ in scope["headers"])

    def start(self, scope: Any, body: bytes) -> Any:
        return None  # nothing taken in the callback: ``serve`` runs

    async def serve(self, scope: Any, receive: Any, send: Any, *, chain: Any, body: bytes) -> None:
        self.bodies.append(body)
        await chain(scope, receive, send)


async def _both(pieces: list[bytes], count: int = 1, held: Any = None) -> dict[str, list[tuple[int, Any]]]:
    servers = {}
    try:
        for kind in ("h11", "httptools"):
            config = uvicorn.Config(
                _echo, host="127.0.0.1", port=0, log_level="critical", log_config=None, lifespan="on", ws="none",
                http=guarded_protocol(10, 64, lambda line: None, kind, held if kind == "httptools" else None),
            )  # fmt: skip
            server = uvicorn.Server(config)
            task = asyncio.ensure_future(server.serve())
            while not server.started:
                assert not task.done()
                await asyncio.sleep(0.01)
            servers[kind] = (server, task)
        ports = {k: s.servers[0].sockets[0].getsockname()[1] for k, (s, _) in servers.items()}
        return {k: await _answers(p, pieces, count) for k, p in ports.items()}
    finally:
        for server, _ in servers.values():
            server.should_exit = True
        await asyncio.gather(*(t for _, t in servers.values()))


REQ = b"POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
CHUNKED = b"POST /mcp HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
BIG = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 20000

# name: (pieces, what both must answer: a status per response, or None for "served, the same way")
CASES: dict[str, tuple[list[bytes], list[int]]] = {
    "plain": ([REQ], [200]),
    "keep-alive": ([REQ, REQ], [200, 200]),
    "pipelined": ([REQ + REQ], [200, 200]),
    "body in pieces": ([REQ[:-2], b"bc"], [200]),
    "chunked": ([CHUNKED + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"], [200]),
    "chunked in pieces": ([CHUNKED + b"3\r\nab", b"c\r\n0\r\n", b"\r\n"], [200]),
    "trailers never join the headers": ([CHUNKED + b"3\r\nabc\r\n0\r\nHost: evil\r\nAuthorization: x\r\n\r\n"], [200]),
    "expect 100-continue": ([b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", b"abc"], [200]),
    "HTTP/1.0 without Host": ([b"GET / HTTP/1.0\r\n\r\n"], [200]),
    "HTTP/1.1 without Host": ([b"GET / HTTP/1.1\r\n\r\n"], [400]),
    "two Hosts": ([b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"], [400]),
    "Transfer-Encoding not chunked": ([b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"], [400]),
    "two Content-Lengths that differ": ([b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"], [400]),
    "a bad Content-Length": ([b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc"], [400]),
    "a bad chunk size": ([CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n"], [400]),
    "a header line without a colon": ([b"GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n"], [400]),
    "a space before the colon": ([b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"], [400]),
    "a CR in a value": ([b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"], [400]),
    "a NUL in the target": ([b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n"], [400]),
    "not HTTP": ([b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"], [400]),
    "a 20 KiB head in one read": ([BIG + b"\r\n\r\n"], [200]),
    "a 20 KiB head still incomplete after two reads": ([BIG, b"\r\n\r\n"], [400]),
    "10 KiB of head then 10 KiB more": ([BIG[:10000], BIG[10000:], b"\r\n\r\n"], [400]),
    "a 20 KiB trailer section": ([CHUNKED + b"0\r\n", b"X: " + b"a" * 20000, b"\r\n\r\n"], [400]),
    "absolute form": ([b"POST http://evil/mcp?q HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"], [200]),
    "a fragment": ([b"GET /mcp#x HTTP/1.1\r\nHost: a\r\n\r\n"], [200]),
    "percent-encoded path": ([b"GET /a%2Fb%20c?x=%20 HTTP/1.1\r\nHost: a\r\n\r\n"], [200]),
    "Upgrade, then the next request": (
        [b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"],
        [200, 200],
    ),
    "Connection: close": ([b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + REQ], [200]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_both_protocols_read_requests_alike(name: str) -> None:
    pieces, statuses = CASES[name]
    got = asyncio.run(_both(pieces, len(statuses)))
    assert [s for s, _ in got["h11"]] == statuses, got["h11"]
    assert got["httptools"] == got["h11"]  # same statuses, and the app saw the same requests


@pytest.mark.parametrize("name", list(CASES))
def test_a_request_held_until_its_body_is_in_is_read_alike(name: str) -> None:
    """``held``: the request starts once its body is in, with that body, and the app then reads the
    same request (the body too) as without holding it."""
    pieces, statuses = CASES[name]
    held = _HoldAll()
    got = asyncio.run(_both(pieces, len(statuses), held))
    assert [s for s, _ in got["h11"]] == statuses, got["h11"]
    assert got["httptools"] == got["h11"]
    served = [seen["body"].encode("latin-1") for status, seen in got["httptools"] if status == 200 and seen["headers"]
              and any(k == "content-length" for k, _ in seen["headers"]) and seen["method"] == "POST"
              and not any(k == "expect" for k, _ in seen["headers"])
              and seen["path"].startswith("/")]  # fmt: skip (an absolute-form target is not held)
    assert held.bodies == served


def test_a_held_request_whose_client_leaves_before_its_body_never_starts() -> None:
    held = _HoldAll()
    got = asyncio.run(_both([REQ[:-2]], 1, held))
    assert got == {"h11": [], "httptools": []} and held.bodies == []
    got = asyncio.run(_both([REQ[:-2], b"bc" + REQ[:-1], b"c"], 2, held))
    assert [s for s, _ in got["httptools"]] == [200, 200] and held.bodies == [b"abc", b"abc"]


def test_the_trailers_and_the_absolute_form_are_what_h11_makes_of_them() -> None:
    got = asyncio.run(_both([CASES["trailers never join the headers"][0][0]]))["httptools"]
    assert got[0][1]["headers"] == [["host", "a"], ["transfer-encoding", "chunked"]] and got[0][1]["body"] == "abc"
    got = asyncio.run(_both(CASES["absolute form"][0]))["httptools"]
    assert (got[0][1]["path"], got[0][1]["query"]) == ("http://evil/mcp", "q")  # not /mcp: no route


def test_httptools_is_the_default_and_plr_proxy_http_h11_forces_h11(monkeypatch: pytest.MonkeyPatch) -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    monkeypatch.delenv("PLR_PROXY_HTTP", raising=False)
    assert front_protocol() == "httptools"
    assert issubclass(guarded_protocol(10, 64, print), HttpToolsProtocol)
    monkeypatch.setenv("PLR_PROXY_HTTP", "h11")
    assert front_protocol() == "h11"
    cls = guarded_protocol(10, 64, print)
    assert issubclass(cls, H11Protocol) and not issubclass(cls, HttpToolsProtocol)


class _Recorder:
    """A transport that keeps what is written (and reads nothing: uvicorn's flow control may
    pause and resume it)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_a_held_requests_answer_goes_out_with_its_head_in_one_write() -> None:
    """``_Corked``: the head waits for what the same step writes next; alone, it goes out at the
    end of the step (an event stream's head is not held back until its first event); a close
    writes it first."""
    from dsl.proxy.http import _Corked

    async def main() -> None:
        rec = _Recorder()
        corked = _Corked(rec, asyncio.get_running_loop())
        corked.write(b"HEAD\r\n\r\n")
        corked.write(b"5\r\nhello\r\n0\r\n\r\n")
        assert rec.writes == [b"HEAD\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]
        await asyncio.sleep(0)
        assert len(rec.writes) == 1  # nothing left to flush

        rec = _Recorder()
        corked = _Corked(rec, asyncio.get_running_loop())
        corked.write(b"HEAD\r\n\r\n")
        assert rec.writes == []
        await asyncio.sleep(0)  # the end of the step
        assert rec.writes == [b"HEAD\r\n\r\n"]
        corked.write(b"later")
        assert rec.writes == [b"HEAD\r\n\r\n", b"later"]

        rec = _Recorder()
        corked = _Corked(rec, asyncio.get_running_loop())
        corked.write(b"HEAD\r\n\r\n")
        corked.close()
        assert rec.writes == [b"HEAD\r\n\r\n"] and rec.closed and corked.is_closing()
        await asyncio.sleep(0)
        assert rec.writes == [b"HEAD\r\n\r\n"]

    asyncio.run(main())


async def _at_shutdown(held: Any, rest: bytes | None) -> tuple[bytes, list[bytes]]:
    """A POST whose body is not all in when the server is told to stop; ``rest``: the rest of the
    body, sent during the graceful shutdown (None: never). What the client gets, and what
    ``held`` was given."""
    config = uvicorn.Config(
        _echo, host="127.0.0.1", port=0, log_level="critical", log_config=None, lifespan="on", ws="none",
        timeout_graceful_shutdown=1, http=guarded_protocol(10, 64, lambda line: None, "httptools", held),
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQ[:-2])
    await writer.drain()
    await asyncio.sleep(0.1)
    server.should_exit = True
    if rest is not None:
        await asyncio.sleep(0.2)
        writer.write(rest)
        await writer.drain()
    await task
    try:
        got = await asyncio.wait_for(reader.read(300), 2)
    finally:
        writer.close()
    return got, list(held.bodies) if held is not None else []


@pytest.mark.parametrize("rest", [None, b"bc"], ids=["the body never comes", "the body comes during the shutdown"])
def test_a_request_held_when_the_server_stops_is_started_as_any_other(rest: bytes | None) -> None:
    """At shutdown a request still waiting for its body starts as uvicorn starts any request: it
    is served if its body comes within the graceful shutdown, else cancelled (500), alike with
    and without holding; it never starts after the server has stopped."""
    plain, _ = asyncio.run(_at_shutdown(None, rest))
    held = _HoldAll()
    got, bodies = asyncio.run(_at_shutdown(held, rest))
    status = b"200" if rest else b"500"
    assert plain.split(b"\r\n")[0] == got.split(b"\r\n")[0] == b"HTTP/1.1 " + status + (b" OK" if rest else b" Internal Server Error")
    assert bodies == []  # started the ordinary way, not through ``held``


# -- a whole answer in one write (``http._CycleFront.answer``) -----------------------------------


def _cycle(loop: Any, *, keep_alive: bool = True, access_log: bool = False, method: str = "POST") -> tuple[Any, _Recorder, list[str]]:
    import logging

    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from dsl.proxy.http import _Corked

    raw = _Recorder()
    seen: list[str] = []
    cycle = RequestResponseCycle(
        scope={"method": method, "http_version": "1.1", "path": "/mcp", "query_string": b"", "client": None},
        transport=_Corked(raw, loop), flow=FlowControl(raw), logger=logging.getLogger("t"),  # type: ignore[arg-type]
        access_logger=logging.getLogger("t.access"), access_log=access_log,
        default_headers=[(b"date", b"Mon, 07 Dec 2026 01:00:00 GMT"), (b"server", b"uvicorn")],
        message_event=asyncio.Event(), expect_100_continue=False, keep_alive=keep_alive,
        on_response=lambda: seen.append("on_response"),
    )  # fmt: skip
    return cycle, raw, seen


_SSE_HEAD = ((b"cache-control", b"no-cache, no-transform"), (b"connection", b"keep-alive"),
             (b"content-type", b"text/event-stream"), (b"mcp-session-id", b"abc"), (b"x-accel-buffering", b"no"))  # fmt: skip


@pytest.mark.parametrize("body", [b'event: message\r\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\r\n\r\n', b""])
def test_a_whole_answer_in_one_write_is_what_uvicorns_two_sends_write(body: bytes) -> None:
    """The same bytes, in one write instead of a held head and a body, and the same state after:
    the response started and complete, ``on_response`` called once, the request id freed."""
    from dsl.proxy.http import _CycleFront

    async def main() -> None:
        loop = asyncio.get_running_loop()
        cycle, raw, seen = _cycle(loop)
        await cycle.send({"type": "http.response.start", "status": 200, "headers": list(_SSE_HEAD)})
        await cycle.send({"type": "http.response.body", "body": body, "more_body": False})
        await asyncio.sleep(0)
        mine, raw2, seen2 = _cycle(loop)
        freed: list[int] = []
        front = _CycleFront(mine, lambda: freed.append(1), lambda: None, ())
        assert front.answer(_SSE_HEAD, body) is True
        assert b"".join(raw2.writes) == b"".join(raw.writes) and len(raw2.writes) == 1, (raw2.writes, raw.writes)
        for attr in ("response_started", "response_complete", "chunked_encoding", "keep_alive", "waiting_for_100_continue"):
            assert getattr(mine, attr) == getattr(cycle, attr), attr
        assert mine.message_event.is_set() and seen2 == seen == ["on_response"] and freed == [1]
        await asyncio.sleep(0)
        assert len(raw2.writes) == 1  # (nothing held back to flush later)

    asyncio.run(main())


@pytest.mark.parametrize("case", ["started", "closing", "access log", "HEAD", "paused", "gone", "length", "close", "bad value", "a list"])
def test_a_whole_answer_is_left_to_the_sends_when_uvicorn_would_do_more_or_otherwise(case: str) -> None:
    """Anything the two sends would write or do differently: nothing written, nothing changed."""
    from dsl.proxy.http import _CycleFront

    async def main() -> None:
        loop = asyncio.get_running_loop()
        cycle, raw, seen = _cycle(loop, keep_alive=case != "closing", access_log=case == "access log",
                                  method="HEAD" if case == "HEAD" else "POST")  # fmt: skip
        head = list(_SSE_HEAD)
        if case == "started":
            cycle.response_started = True
        elif case == "paused":
            cycle.flow.write_paused = True
        elif case == "gone":
            cycle.disconnected = True
        elif case == "length":
            head.append((b"content-length", b"3"))
        elif case == "close":
            head.append((b"Connection", b"Keep-Alive, close"))
        elif case == "bad value":
            head.append((b"x-bad", b"a\r\nb"))
        freed: list[int] = []
        front = _CycleFront(cycle, lambda: freed.append(1), lambda: None, ())
        # (a list may change in place after its head is kept: only a tuple's head is written whole)
        assert front.answer(head if case == "a list" else tuple(head), b"data") is False
        assert raw.writes == [] and seen == [] and freed == []
        assert not cycle.response_complete and cycle.response_started is (case == "started")

    asyncio.run(main())


def test_aborting_an_answer_closes_the_clients_connection() -> None:
    """``_CycleFront.abort`` (a call answered from the callbacks that cannot be answered whole):
    what the cycle holds goes out, then the client's connection is closed."""
    from dsl.proxy.http import _CycleFront

    async def main() -> None:
        cycle, raw, _ = _cycle(asyncio.get_running_loop())
        await cycle.send({"type": "http.response.start", "status": 200, "headers": list(_SSE_HEAD)})
        _CycleFront(cycle, lambda: None, lambda: None, ()).abort()
        assert raw.closed and raw.writes and raw.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")

    asyncio.run(main())


class _HoldNames(_HoldAll):
    """``_HoldAll``, keeping the head by name that the protocol hands to ``wants`` and ``start``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, Any, Any]] = []

    def wants(self, scope: Any, headers: Any = None) -> bool:
        self.seen.append(("wants", list(scope["headers"]), headers))
        return super().wants(scope)

    def start(self, scope: Any, body: bytes, cycle: Any = None, start: Any = None, pipeline: Any = (), headers: Any = None) -> Any:
        self.seen.append(("start", list(scope["headers"]), headers))
        return None


HEADS = {
    "plain": b"POST /mcp HTTP/1.1\r\nHost: a\r\nMcp-Session-Id: s1\r\nAuthorization: Bearer t\r\nContent-Length: 3\r\n\r\nabc",
    "a name repeated": b"POST /mcp HTTP/1.1\r\nHost: a\r\nMcp-Session-Id: s1\r\nmcp-session-id: s2\r\nContent-Length: 3\r\n\r\nabc",
    "a repeat that differs in case only": b"POST /mcp HTTP/1.1\r\nHost: a\r\nAuthorization: x\r\nAUTHORIZATION: y\r\nContent-Length: 3\r\n\r\nabc",
    "blanks after a value": b"POST /mcp HTTP/1.1\r\nHost: a\r\nMcp-Session-Id: s1 \t\r\nContent-Length: 3\r\n\r\nabc",
    "the body in its own read": b"POST /mcp HTTP/1.1\r\nHost: a\r\nMcp-Session-Id: s1\r\nContent-Length: 3\r\n\r\n",
}


def test_a_pipelined_request_is_never_handed_the_head_of_a_later_one() -> None:
    """Requests pipelined behind one being answered start only when it is (uvicorn's
    ``on_response_complete``), after the heads of later ones were read: each must be handed its
    own head by name (or none: its readers then walk its own list), never the last one read, or
    the request of one session (and token) would be checked and served as another's."""
    def req(sid: str, token: str) -> bytes:
        return (f"POST /mcp HTTP/1.1\r\nHost: a\r\nMcp-Session-Id: {sid}\r\nAuthorization: Bearer {token}\r\n"
                "Content-Length: 3\r\n\r\nabc").encode()

    held = _HoldNames()
    got = asyncio.run(_both([req("s1", "t1") + req("s2", "t2") + req("s3", "t3")], 3, held))
    assert [s for s, _ in got["httptools"]] == [200, 200, 200]
    asked = [(headers, names) for what, headers, names in held.seen if what == "wants"]
    assert [dict(h)[b"mcp-session-id"] for h, _ in asked] == [b"s1", b"s2", b"s3"]
    for headers, names in asked:
        assert names is None or names == dict(headers), (headers, names)
    assert asked[0][1] == dict(asked[0][0])  # (the first, started as its head was read, has its own)


@pytest.mark.parametrize("odd", [b"POST http://evil/mcp HTTP/1.1", b"POST /mcp#x HTTP/1.1"])
def test_a_pipelined_request_is_held_or_not_by_its_own_target(odd: bytes) -> None:
    """A pipelined request whose target is not a path (absolute form) or holds a ``#`` is never
    held, as when it comes alone, even when the request read after it is an ordinary one: the
    target judged is its own, not the last one read."""
    plain = b"POST /mcp HTTP/1.1\r\nHost: a\r\nMcp-Session-Id: s\r\nContent-Length: 3\r\n\r\nabc"
    strange = odd + b"\r\nHost: a\r\nMcp-Session-Id: s\r\nContent-Length: 3\r\n\r\nabc"
    held = _HoldNames()
    got = asyncio.run(_both([plain + strange + plain], 3, held))
    assert [s for s, _ in got["httptools"]] == [200, 200, 200]
    assert got["httptools"] == got["h11"]
    assert [what for what, _, _ in held.seen] == ["wants", "start", "wants", "start"]  # (the two plain ones only)


@pytest.mark.parametrize("name", list(HEADS))
def test_the_head_by_name_handed_on_is_the_heads_headers_or_none_when_a_name_repeats(name: str) -> None:
    """The protocol reads a held request's head once into a dict by name, for ``wants``, ``start``
    and the fast path's checks (``_session_of``, ``user_scope``, ``_admission``): it holds exactly
    the scope's headers (the values uvicorn keeps), and is None when a name repeats, so that every
    reader falls back to reading the list itself (and the fast path leaves the request to the SDK)."""
    head = HEADS[name]
    pieces = [head, b"abc"] if head.endswith(b"\r\n\r\n") else [head]
    held = _HoldNames()
    got = asyncio.run(_both(pieces, 1, held))
    assert [s for s, _ in got["httptools"]] == [200]
    assert [what for what, _, _ in held.seen] == ["wants", "start"]
    for _, headers, names in held.seen:
        repeated = len({k for k, _ in headers}) != len(headers)
        assert names == (None if repeated else dict(headers))
    assert (held.seen[0][2] is None) == (name.startswith("a repeat") or name == "a name repeated")


@pytest.mark.parametrize("name", [n for n in HEADS if "repeat" not in n])
def test_the_readers_of_the_head_answer_alike_with_it_by_name_and_without(name: str) -> None:
    """``_session_of``, ``TokenGate.user_scope`` and ``HeldPosts.wants`` give the same answer from
    the head by name as from the scope's list, for every head that has one."""
    from types import SimpleNamespace

    from dsl.proxy.http import HeldPosts, TokenGate, _session_of

    held = _HoldNames()
    asyncio.run(_both([HEADS[name], b"abc"] if HEADS[name].endswith(b"\r\n\r\n") else [HEADS[name]], 1, held))
    _, headers, names = held.seen[0]
    assert names is not None
    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": headers}
    assert _session_of(scope, names) == _session_of(scope) is not None
    gate = TokenGate(None, {"t": "alice"})
    by_name, by_list = gate.user_scope(scope, names), gate.user_scope(scope)
    assert (by_name is None) == (by_list is None)
    if by_list is not None:
        assert by_name["user"].access_token.client_id == by_list["user"].access_token.client_id == "alice"
    fast = SimpleNamespace(manager=object(), enabled=True, path="/mcp")
    posts = HeldPosts(None, fast, None)  # type: ignore[arg-type]
    assert posts.wants(scope, names) == posts.wants(scope)
    for extra in ([(b"expect", b"100-continue")], [(b"x-forwarded-for", b"1.2.3.4")], [(b"transfer-encoding", b"chunked")],
                  [(b"content-length", b"70000")]):  # fmt: skip
        changed = {**scope, "headers": [*(h for h in headers if h[0] != extra[0][0]), *extra]}
        changed_names = {k: v for k, v in changed["headers"]}
        assert posts.wants(changed, changed_names) == posts.wants(changed) is False
    no_session = {**scope, "headers": [h for h in headers if h[0] != b"mcp-session-id"]}
    assert posts.wants(no_session, dict(no_session["headers"])) == posts.wants(no_session) is False
