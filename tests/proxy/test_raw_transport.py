"""The HTTP fast path's upstream transport (dsl/proxy/raw_transport.py) against httpx's own.

The same requests go to small asyncio servers through an ``httpx`` client on ``RawTransport``
and through one on httpx's default transport; both must read the same answers and raise the same
``httpx`` errors. What llhttp decides there (interim answers, trailers, bodies framed every way,
a malformed answer) and what the transport adds (timeouts, never reusing a connection with bytes
nobody asked for, the whole answer read without httpx's iterators) are held here.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

def _raw_clients(**kw: Any) -> list[Any]:
    """An httpx client on the fast path's transport (``RawTransport``) and one on httpx's own."""
    import httpx2

    from dsl.proxy.raw_transport import RawTransport

    return [httpx2.AsyncClient(transport=RawTransport(), **kw), httpx2.AsyncClient(**kw)]


async def _serve(handle: Any) -> tuple[Any, int]:
    import asyncio

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _read_request(reader: Any) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    size = re.search(rb"(?i)content-length: *(\d+)", head)
    return head + (await reader.readexactly(int(size.group(1))) if size else b"")


def test_the_fast_paths_transport_honours_httpxs_timeouts_as_httpx_does() -> None:
    """The request's timeout extension: a server that never answers, one that stops mid-body and
    one that never reads the request raise httpx's ReadTimeout, ReadTimeout and WriteTimeout, on
    both transports (before, the fast path's waited for ever: with ``--upstream-timeout`` above
    the SDK client's 300 s read timeout, a silent server hung the call past it)."""
    import asyncio

    import httpx2

    async def main() -> list[list[str]]:
        async def silent(reader: Any, writer: Any) -> None:
            await _read_request(reader)
            await asyncio.sleep(10)

        async def stops(reader: Any, writer: Any) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            await asyncio.sleep(10)

        async def deaf(reader: Any, writer: Any) -> None:
            await asyncio.sleep(10)

        seen = []
        for handle, body in ((silent, b"x"), (stops, b"x"), (deaf, b"y" * (64 * 2**20))):
            server, port = await _serve(handle)
            row = []
            for client in _raw_clients(timeout=httpx2.Timeout(5.0, read=0.3, write=0.3)):
                t0 = time.monotonic()
                try:
                    await asyncio.wait_for(client.post(f"http://127.0.0.1:{port}/mcp", content=body), 6)
                    row.append("answered")
                except httpx2.TimeoutException as e:
                    row.append(type(e).__name__)
                except TimeoutError:
                    row.append("waited on")
                assert time.monotonic() - t0 < 4 or row[-1] == "waited on"
                await client.aclose()
            server.close()
            seen.append(row)
        return seen

    assert asyncio.run(main()) == [["ReadTimeout"] * 2, ["ReadTimeout"] * 2, ["WriteTimeout"] * 2]


def test_the_fast_paths_transport_never_reuses_a_connection_with_stray_bytes_or_closed() -> None:
    """A kept-alive connection on which the server wrote bytes nobody asked for (with its answer,
    or later) is dropped, not reused: the next request gets its own answer, not the stray bytes
    (as with httpx's own pool, for bytes that come later). One the server closed while idle is dropped when it closes: none
    accumulate."""
    import asyncio

    import httpx2

    stray = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray"

    async def main() -> None:
        conns = [0]

        async def handle(reader: Any, writer: Any) -> None:
            conns[0] += 1
            n = 0
            try:
                while True:
                    head = await _read_request(reader)
                    n += 1
                    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    if b"/with" in head:
                        writer.write(ok + stray)
                    elif b"/later" in head:
                        writer.write(ok)
                        await writer.drain()
                        await asyncio.sleep(0.1)
                        writer.write(stray)
                    elif b"/close" in head:
                        writer.write(ok)
                        await writer.drain()
                        writer.close()
                        return
                    else:
                        writer.write(ok)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server, port = await _serve(handle)
        raw, own = _raw_clients(timeout=httpx2.Timeout(5.0))
        # (httpx's own pool drops a connection the server wrote to while it was idle, but reads
        # bytes that came with the answer as the next answer: the fast path's transport is stricter)
        for client, paths in ((raw, ("/with", "/later")), (own, ("/later",))):
            for path in paths:
                assert (await client.get(f"http://127.0.0.1:{port}{path}")).content == b"ok"
                await asyncio.sleep(0.3)
                conns[0] = 0
                assert (await client.get(f"http://127.0.0.1:{port}/plain")).content == b"ok"
                assert conns[0] == 1, path  # on a new connection
            await client.aclose()
        client = _raw_clients(timeout=httpx2.Timeout(5.0))[0]
        transport = client._transport
        for _ in range(30):
            assert (await client.get(f"http://127.0.0.1:{port}/close")).content == b"ok"
        await asyncio.sleep(0.3)
        assert not transport._open, len(transport._open)  # each closed by the server: none kept
        assert not any(transport._idle.values())
        conns[0] = 0
        assert (await client.get(f"http://127.0.0.1:{port}/plain")).content == b"ok"
        assert (await client.get(f"http://127.0.0.1:{port}/plain")).content == b"ok"
        assert conns[0] == 1 and len(transport._open) == 1  # a live one is kept and reused
        await client.aclose()
        server.close()

    asyncio.run(main())


def test_an_answer_read_whole_is_what_httpx_reads() -> None:
    """``_read_body`` reads an answer ``_RawTransport`` has all of without httpx's iterators: the
    same content, the response consumed and closed and its connection reused, as ``aread`` leaves
    them; an answer still arriving, chunked or compressed is read by ``aread`` (its read timeout
    still holds)."""
    import asyncio
    import gzip

    import httpx2

    from dsl.proxy.http_fast import _sent
    from dsl.proxy.raw_transport import read_body as _read_body

    payload = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}).encode()
    zipped = gzip.compress(payload)

    async def main() -> None:
        conns = [0]

        async def handle(reader: Any, writer: Any) -> None:
            conns[0] += 1
            try:
                while True:
                    head = await _read_request(reader)
                    if b"/late" in head:  # the head, then the body a little later
                        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload[:5])
                        await writer.drain()
                        await asyncio.sleep(0.1)
                        writer.write(payload[5:])
                    elif b"/stuck" in head:  # half the body, then nothing
                        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload[:5])
                    elif b"/gzip" in head:
                        writer.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(zipped) + zipped)
                    elif b"/chunked" in head:
                        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
                    elif b"/empty" in head:
                        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    else:
                        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server, port = await _serve(handle)
        client = httpx2.AsyncClient(transport=_RawTransport_(), timeout=httpx2.Timeout(5.0, read=0.5))
        assert (await client.get(f"http://127.0.0.1:{port}/plain")).content == payload  # the connection kept
        for path, expected in (("/plain", payload), ("/late", payload), ("/gzip", payload), ("/chunked", payload),
                               ("/empty", b""), ("/plain", payload)):  # fmt: skip
            conns[0] = 0
            for reader in (_read_body, lambda r: r.aread()):
                async with _sent(client, f"http://127.0.0.1:{port}{path}", {"x": 1}, {}) as response:
                    if reader is _read_body and path in ("/plain", "/empty"):
                        await asyncio.sleep(0.05)  # (all of it there: read without httpx's iterators)
                        response.aread = None  # type: ignore[method-assign]
                    assert await reader(response) == expected, path
                    assert response.content == expected and response.is_stream_consumed and response.is_closed
                    assert response.num_bytes_downloaded == len(zipped if path == "/gzip" else expected)
            assert conns[0] == 0, path  # both on the connection kept from before: each was reused
        async with _sent(client, f"http://127.0.0.1:{port}/stuck", {"x": 1}, {}) as response:
            with pytest.raises(httpx2.ReadTimeout):
                await _read_body(response)
        await client.aclose()
        server.close()

    def _RawTransport_() -> Any:  # noqa: N802
        from dsl.proxy.raw_transport import RawTransport

        return RawTransport()

    asyncio.run(main())


_ANSWERS: dict[bytes, bytes] = {
    # an interim answer, then the final one
    b"/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    # chunked, split oddly, with trailers that never join the headers
    b"/trailers": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\nx-trailer: no\r\n\r\n",
    # neither a length nor chunks: the body ends with the connection
    b"/until-close": b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it",
    # an HTTP/1.0 answer
    b"/old": b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold",
    b"/no-content": b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n",
    b"/error": b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 4\r\n\r\nbusy",
}
_CLOSES = {b"/until-close", b"/old"}
_BROKEN: dict[bytes, bytes] = {
    b"/garbage": b"SMTP ready\r\n\r\n",
    b"/bad-header": b"HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 2\r\n\r\nok",
    b"/short": b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",  # then the server closes
    b"/both": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
}


async def _answering(answers: dict[bytes, bytes], closes: set[bytes]) -> tuple[Any, int, list[int]]:
    """A server answering each path with its canned bytes (closing after those in ``closes`` and
    after any of ``_BROKEN``); counts the connections it accepted."""
    conns = [0]

    async def handle(reader: Any, writer: Any) -> None:
        import asyncio

        conns[0] += 1
        try:
            while True:
                head = await _read_request(reader)
                path = head.split(b" ", 2)[1]
                writer.write(answers[path])
                await writer.drain()
                if path in closes or path in _BROKEN:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError, KeyError):
            writer.close()

    server, port = await _serve(handle)
    return server, port, conns


def test_every_framing_of_an_answer_reads_as_httpx_reads_it() -> None:
    """Interim answers, chunked bodies with trailers, bodies ending with the connection, HTTP/1.0,
    204 and error statuses: the same status, headers and content as httpx's own transport; a
    connection is reused after a kept-alive answer and never after one that ended with it."""
    import asyncio

    import httpx2

    async def main() -> list[list[Any]]:
        server, port, conns = await _answering(_ANSWERS, _CLOSES)
        seen: list[list[Any]] = []
        for client in _raw_clients(timeout=httpx2.Timeout(5.0)):
            row = []
            for path in _ANSWERS:
                r = await client.get(f"http://127.0.0.1:{port}{path.decode()}")
                row.append((r.status_code, r.http_version, r.reason_phrase, dict(r.headers), r.content))
            conns[0] = 0
            for path in (b"/trailers", b"/trailers", b"/until-close", b"/trailers"):
                await client.get(f"http://127.0.0.1:{port}{path.decode()}")
            row.append(conns[0])
            seen.append(row)
            await client.aclose()
        server.close()
        return seen

    raw, own = asyncio.run(main())
    assert raw == own
    assert raw[:2] == [(200, "HTTP/1.1", "OK", {"content-length": "2"}, b"ok"),
                          (200, "HTTP/1.1", "OK", {"transfer-encoding": "chunked"}, b"ok!!!")]  # fmt: skip
    assert raw[-1] == 1  # the kept one up to the answer that ended with it, then one new one


def test_a_malformed_answer_is_a_protocol_error_and_its_connection_is_dropped() -> None:
    """Not HTTP, a malformed header, a body cut short by the server, both a length and chunks:
    httpx's ``RemoteProtocolError``, as httpx's own transport raises for the first three, and the
    connection is never reused."""
    import asyncio

    import httpx2

    async def main() -> tuple[list[str], list[str], Any]:
        server, port, _ = await _answering(_BROKEN, set())
        rows = []
        transport = None
        for client in _raw_clients(timeout=httpx2.Timeout(2.0)):
            row = []
            for path in _BROKEN:
                try:
                    r = await client.get(f"http://127.0.0.1:{port}{path.decode()}")
                    row.append(f"answered {r.status_code}")
                except httpx2.HTTPError as e:
                    row.append(type(e).__name__)
            rows.append(row)
            if transport is None:
                transport = client._transport
                opened = (len(transport._open), sum(map(len, transport._idle.values())))
            await client.aclose()
        server.close()
        return rows[0], rows[1], opened

    raw, own, opened = asyncio.run(main())
    assert raw == ["RemoteProtocolError"] * 4, raw
    # httpx's own transport (h11) reads an answer with both a length and chunks by its chunks;
    # llhttp refuses it, as RFC 9112 lets a client (the framing a smuggled answer would use)
    assert own == ["RemoteProtocolError"] * 3 + ["answered 200"], own
    assert opened == (0, 0)  # none kept


def test_a_large_answer_arrives_whole_and_its_connection_is_reused() -> None:
    """A body many times the transport's read buffer (reading pauses while it is not read and
    resumes as it is): all of it, in order, streamed or read whole, and then the connection serves
    the next request."""
    import asyncio

    import httpx2

    from dsl.proxy.raw_transport import read_body

    big = bytes(range(256)) * (12 * 4096)  # 12 MiB

    async def main() -> None:
        answers = {b"/big": b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big,
                   b"/small": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"}  # fmt: skip
        server, port, conns = await _answering(answers, set())
        client = _raw_clients(timeout=httpx2.Timeout(5.0))[0]
        async with client.stream("GET", f"http://127.0.0.1:{port}/big") as r:
            await asyncio.sleep(0.3)  # the server writes on; the transport stops reading
            got = b"".join([chunk async for chunk in r.aiter_raw()])
        assert got == big
        async with client.stream("GET", f"http://127.0.0.1:{port}/big") as r:
            await asyncio.sleep(0.3)
            assert await read_body(r) == big
        assert (await client.get(f"http://127.0.0.1:{port}/small")).content == b"ok"
        assert conns[0] == 1
        await client.aclose()
        server.close()

    asyncio.run(main())


def test_too_many_headers_or_too_large_a_head_is_refused() -> None:
    """More than 256 headers, or a head that never ends: ``RemoteProtocolError``, not a wait for
    ever or an unbounded buffer."""
    import asyncio

    import httpx2

    many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-%d: 1\r\n" % i for i in range(300)) + b"content-length: 0\r\n\r\n"
    endless = b"HTTP/1.1 200 OK\r\nx-long: " + b"a" * (2 << 20)

    async def main() -> list[str]:
        server, port, _ = await _answering({b"/many": many, b"/endless": endless}, set())
        client = _raw_clients(timeout=httpx2.Timeout(5.0))[0]
        out = []
        for path in ("/many", "/endless"):
            try:
                await client.get(f"http://127.0.0.1:{port}{path}")
                out.append("answered")
            except httpx2.HTTPError as e:
                out.append(type(e).__name__)
        await client.aclose()
        server.close()
        return out

    assert asyncio.run(main()) == ["RemoteProtocolError", "RemoteProtocolError"]


def test_a_whole_body_read_for_the_direct_path_arrives_past_the_high_water_mark() -> None:
    """``RawTransport.body`` (the fast path's plain JSON answers) reads a body many times the
    buffer at which reading pauses: taking what came resumes it (before, a body over 1 MiB
    waited until the read timeout)."""
    import asyncio

    from dsl.proxy.raw_transport import RawTransport

    big = b'{"jsonrpc":"2.0","id":1,"result":{"t":"' + b"x" * (5 << 20) + b'"}}'

    async def main() -> None:
        answers = {b"/big": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(big) + big,
                   b"/small": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"}  # fmt: skip
        server, port, conns = await _answering(answers, set())
        transport = RawTransport()
        key = (b"127.0.0.1", port)
        timeouts = {"connect": 5.0, "read": 2.0, "write": 5.0}
        for path in (b"/big", b"/small", b"/big"):
            conn = await transport.send(key, b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n" % path, timeouts)
            assert await transport.body(key, conn, 2.0) == (big if path == b"/big" else b"ok")
        assert conns[0] == 1  # each connection handed back and reused
        await transport.aclose()
        server.close()

    asyncio.run(main())


def test_what_was_read_before_bad_bytes_is_handed_out_as_httpx_hands_it() -> None:
    """A head followed in the same read by a malformed body: the head is the response (its hooks
    run: a 404 that ends a session is seen), then reading the body fails. A whole answer followed
    by garbage: the answer, and the connection is not reused (httpx's own pool reuses it and reads
    the garbage as the next answer). A 101 nobody asked for: a protocol error."""
    import asyncio

    import httpx2

    answers = {
        b"/bad-body": b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"/garbage-after": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\x00\x01garbage\r\n\r\n",
        b"/upgrade": b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n",
        b"/plain": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    }

    async def main() -> list[list[Any]]:
        server, port, conns = await _answering(answers, set())
        rows = []
        for client in _raw_clients(timeout=httpx2.Timeout(2.0)):
            hooked: list[int] = []

            async def hook(r: Any, hooked: list[int] = hooked) -> None:
                hooked.append(r.status_code)

            client.event_hooks = {"request": [], "response": [hook]}
            row: list[Any] = []
            for path in (b"/bad-body", b"/garbage-after"):
                try:
                    r = await client.get(f"http://127.0.0.1:{port}{path.decode()}")
                    row.append((r.status_code, r.content))
                except httpx2.HTTPError as e:
                    row.append(type(e).__name__)
            row.append(list(hooked))
            if not rows:  # RawTransport: the connection the garbage came on is not reused
                conns[0] = 0
                row += [(await client.get(f"http://127.0.0.1:{port}/plain")).content, conns[0]]
            rows.append(row)
            await client.aclose()
        raw = _raw_clients(timeout=httpx2.Timeout(2.0))[0]
        with pytest.raises(httpx2.RemoteProtocolError):
            await raw.get(f"http://127.0.0.1:{port}/upgrade")
        await raw.aclose()
        server.close()
        return rows

    raw, own = asyncio.run(main())
    assert raw[:3] == own == ["RemoteProtocolError", (200, b"ok"), [404, 200]], (raw, own)
    # (httpx's own pool would read that garbage as the next answer)
    assert raw[3:] == [b"ok", 1]
