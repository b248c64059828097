"""Plain HTTP/1.1 to the upstream server for the HTTP fast path (``http_fast``): an ``httpx``
transport on kept-alive sockets of its own, the answers parsed by llhttp (``httptools``, the
parser the front reads requests with) in the connection's read callback as they arrive.

``httpx`` builds the request and decodes the answer as it does for any transport; what this one
does is write the request as it stands (the request line, the headers ``httpx`` built, in their
order, the body) and hand back the answer's head and a stream of its body (``Content-Length``,
chunked, or up to the connection's end), one request at a time per connection. The request's
``timeout`` extension bounds each step as ``httpx`` bounds it (``connect``: opening a connection,
``write``: sending, ``read``: each wait for the answer's bytes; ``pool``: there is no pool to
wait for) and raises the same ``httpx`` timeouts. A connection is reused only when the answer was
read to its end, the server keeps it open, and nothing came after it: bytes nobody asked for (with
the answer or while the connection is idle) or its end drop it, as ``httpcore`` drops one.
"""

from __future__ import annotations

import asyncio
import select
from typing import Any

import httptools

__all__ = ["RawTransport", "header_lines", "read_body", "request_line"]

_MAX_IDLE = 20  # kept-alive connections per host (httpx keeps 20 at most)
_MAX_HEAD = 1 << 20  # an answer's head (status line and headers) larger than this is refused
_HIGH_WATER = 1 << 20  # body bytes buffered and not yet read: reading pauses above this


class _Answer:
    """What one connection has read of the answer under way."""

    __slots__ = ("status", "reason", "version", "headers", "head_done", "chunks", "buffered", "done", "keep")

    def __init__(self) -> None:
        self.status = 0
        self.reason = b""
        self.version = b"HTTP/1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.done = False  # the whole answer is read
        self.keep = False  # the server keeps the connection open after it


class _Conn(asyncio.Protocol):
    """One upstream connection. The parser runs in ``data_received``; the task that sent the
    request waits (``wait``) for what it needs next: the head, more of the body, or the end. Or,
    with no task waiting, ``on_ready`` is called after each read (and at the connection's end)
    to look at what came (``http_fast.HttpFastCalls.answer_now``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: _Answer | None = None  # the answer of the request in flight (None: idle)
        self.stray = False  # bytes nobody asked for: never reused
        self.eof = False
        self.error: BaseException | None = None
        self.idle: Any = None  # () -> None: drop this idle connection (``RawTransport._reuse``)
        self.on_ready: Any = None  # () -> None: called when something came and no task waits
        self.last_read = 0.0  # the loop's time of the last read (a watchdog tells progress by it)
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._head_bytes = 0
        self._reading_paused = False
        self._write_paused = False
        self._skip_body = False  # the answer to a HEAD request: a head and nothing else

    # -- the socket --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        answer = self.answer
        if answer is None or answer.done:
            self.stray = True  # nobody asked: the connection is not reused
            self._idle_event()
            return
        self.last_read = self.loop.time()
        if not answer.head_done:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as e:
            if self.error is None:  # (an upgrade nobody asked for is as malformed as any)
                self.error = _protocol_error(f"malformed answer: {e!r}")
        if not answer.head_done and self._head_bytes > _MAX_HEAD and self.error is None:
            self.error = _protocol_error("the answer's head is too large")
        self._wake()

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- llhttp's callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        answer = self.answer
        if answer is None or answer.done:
            self.stray = True

    def on_status(self, reason: bytes) -> None:
        if self.answer is not None and not self.answer.head_done:
            self.answer.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        answer = self.answer
        if answer is not None and not answer.head_done:  # (a trailer never joins the headers)
            if len(answer.headers) >= 256:
                raise _TooMany
            answer.headers.append((name, value))

    def on_headers_complete(self) -> None:
        answer = self.answer
        if answer is None or answer.done:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer: the final one follows
            answer.headers = []
            answer.reason = b""
            return
        answer.status = status
        answer.version = b"HTTP/" + self.parser.get_http_version().encode("ascii")
        answer.keep = self.parser.should_keep_alive()
        answer.head_done = True
        if self._skip_body:
            answer.done = True
            answer.keep = False  # (llhttp would read a body announced by its length: not reused)

    def on_body(self, body: bytes) -> None:
        answer = self.answer
        if answer is None or answer.done:
            return
        answer.chunks.append(body)
        answer.buffered += len(body)
        if answer.buffered > _HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        answer = self.answer
        if answer is not None and answer.head_done and not answer.done:
            answer.done = True

    # -- the task's side ---------------------------------------------------------------------------

    def send(self, data: bytes, *, head_only: bool) -> None:
        """Write one request; its answer is read from now on."""
        self.answer = _Answer()
        self._head_bytes = 0
        self._skip_body = head_only
        self.transport.write(data)

    async def drained(self, timeout: float | None) -> None:
        """Wait until the request is handed to the socket (``httpx2.WriteTimeout`` past ``timeout``)."""
        if not self._write_paused or self.transport.is_closing():
            return
        import httpx2

        self._drained = self.loop.create_future()
        try:
            await _bounded(self._drained, timeout, self.loop)
        except TimeoutError:
            raise httpx2.WriteTimeout("timed out sending the request") from None

    def take(self) -> list[bytes]:
        """The body bytes read so far (handed over: the caller owns them)."""
        answer = self.answer
        assert answer is not None
        chunks, answer.chunks, answer.buffered = answer.chunks, [], 0
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        return chunks

    async def wait(self, ready: Any, timeout: float | None) -> None:
        """Wait until ``ready()`` (or a failure), at most ``timeout`` seconds between two reads
        (``httpx2.ReadTimeout`` past it, as httpx), ``RemoteProtocolError`` for a malformed
        answer or a connection that ends before the answer does. What is ready is handed out
        even when bad bytes came after it (the connection is then never reused)."""
        import httpx2

        while True:
            if ready():  # (what is read is handed out, as httpx hands out a head before a bad body)
                return
            if self.error is not None:
                raise self.error
            if self.eof:
                raise _protocol_error("the server closed the connection before the answer ended")
            self._waiter = self.loop.create_future()
            try:
                await _bounded(self._waiter, timeout, self.loop)
            except TimeoutError:
                raise httpx2.ReadTimeout("timed out reading the answer") from None
            finally:
                self._waiter = None

    @property
    def full(self) -> bool:
        """Reading is paused until the body read so far is taken (``take``)."""
        return self._reading_paused

    @property
    def writing(self) -> bool:
        """The request is not all handed to the socket yet (``drained`` would wait)."""
        return self._write_paused and not self.transport.is_closing()

    def reusable(self) -> bool:
        """Free for another request: its answer read to the end, kept open, nothing more sent."""
        answer = self.answer
        return (
            answer is not None
            and answer.done
            and answer.keep
            and not answer.chunks
            and not self.stray
            and not self.eof
            and self.error is None
            and not self.transport.is_closing()
        )

    def fresh(self) -> bool:
        """An idle connection that may carry the next request: not closing, and nothing (bytes or
        its end) readable from the server, asked of the socket as ``httpcore`` asks before reusing
        one (the loop may not have read it yet)."""
        if self.stray or self.eof or self.error is not None or self.transport.is_closing():
            return False
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return True
        try:
            return not select.select([sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def _ended(self) -> None:
        """The server's end of the connection (or the connection itself) is gone."""
        self.eof = True
        answer = self.answer
        if answer is not None and answer.head_done and not answer.done and self._until_close(answer):
            answer.done = True  # a body that ends with the connection
            answer.keep = False
        self._idle_event()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        elif waiter is None and self.on_ready is not None:
            self.on_ready()

    def _idle_event(self) -> None:
        drop, self.idle = self.idle, None
        if drop is not None:
            drop()

    @staticmethod
    def _until_close(answer: _Answer) -> bool:
        """A body with neither a length nor chunks: it ends with the connection."""
        for k, _ in answer.headers:
            if k.lower() in (b"content-length", b"transfer-encoding"):
                return False
        return True


class _TooMany(Exception):
    """More than 256 headers (llhttp then reports the callback's failure: a malformed answer)."""


def _protocol_error(message: str) -> BaseException:
    import httpx2

    return httpx2.RemoteProtocolError(message)


async def _bounded(future: asyncio.Future[None], timeout: float | None, loop: asyncio.AbstractEventLoop) -> None:
    """``await future``, or ``TimeoutError`` after ``timeout`` seconds (a timer, not a cancel scope:
    most of what waiting for an answer cost)."""
    if timeout is None:
        await future
        return

    def expire() -> None:
        if not future.done():
            future.set_exception(TimeoutError())

    timer = loop.call_later(timeout, expire)
    try:
        await future
    finally:
        timer.cancel()


def request_line(method: bytes, raw_path: bytes) -> bytes:
    return method + b" " + raw_path + b" HTTP/1.1\r\n"


def header_lines(headers: Any) -> bytes:
    """``name: value`` lines of ``(name, value)`` byte pairs, in their order and spelling."""
    return b"".join(k + b": " + v + b"\r\n" for k, v in headers)


class RawTransport:
    """The ``httpx`` transport of the fast path's twin client (``UpstreamWire.bind``)."""

    def __init__(self) -> None:
        self._idle: dict[tuple[bytes, int], list[_Conn]] = {}
        self._open: set[_Conn] = set()
        self.heads: dict[Any, Any] = {}  # the requests' header lists, for ``http_fast._build_post``

    async def __aenter__(self) -> RawTransport:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.transport.close()
        self._open.clear()
        self._idle.clear()

    async def _connect(self, key: tuple[bytes, int], timeout: float | None) -> _Conn:
        import httpx2

        loop = asyncio.get_running_loop()
        conn = _Conn(loop)
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: conn, key[0].decode("ascii"), key[1])
        except TimeoutError:
            raise httpx2.ConnectTimeout("timed out connecting to the upstream server") from None
        except OSError as e:
            raise httpx2.ConnectError(str(e)) from None
        self._open.add(conn)
        return conn

    async def handle_async_request(self, request: Any) -> Any:
        url = request.url
        key = (url.raw_host, url.port or 80)
        timeouts = request.extensions.get("timeout") or {}
        body = await request.aread()
        data = request_line(request.method.encode("ascii"), url.raw_path) + header_lines(request.headers.raw) + b"\r\n" + body
        conn = await self.send(key, data, timeouts, head_only=request.method == "HEAD")
        return self.response(key, conn, request, timeouts.get("read"))

    async def send(self, key: tuple[bytes, int], data: bytes, timeouts: dict[str, Any], *, head_only: bool = False) -> _Conn:
        """Write a whole request (``data``) on a kept-alive connection to ``key`` (or a new one)
        and wait for the head of its answer (``conn.answer``); the connection is dropped if that
        fails. The answer's body is then read by ``response`` (for ``httpx``) or ``body``."""
        conn = self.idle_conn(key)
        if conn is None:
            conn = await self._connect(key, timeouts.get("connect"))
        try:
            conn.send(data, head_only=head_only)
        except BaseException:
            self.drop(conn)
            raise
        await self.head(conn, timeouts)
        return conn

    def idle_conn(self, key: tuple[bytes, int]) -> _Conn | None:
        """A kept-alive connection to ``key`` that may carry the next request, taken from the idle
        ones (None: there is none; ``send`` then connects). Given back unused with ``park``."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            conn.idle = None
            if conn.fresh():
                return conn
            self.drop(conn)
        return None

    async def head(self, conn: _Conn, timeouts: dict[str, Any]) -> None:
        """After ``conn.send``: wait until the request is handed to the socket and the head of its
        answer is in (``conn.answer``); the connection is dropped if that fails."""
        try:
            await conn.drained(timeouts.get("write"))
            answer = conn.answer
            await conn.wait(lambda: answer.head_done, timeouts.get("read"))  # type: ignore[union-attr]
        except BaseException:
            self.drop(conn)
            raise

    def response(self, key: tuple[bytes, int], conn: _Conn, request: Any, read_timeout: float | None) -> Any:
        """The ``httpx`` response of ``send``'s answer, its body a stream off the connection."""
        import httpx2

        answer = conn.answer
        assert answer is not None
        stream = _raw_body_class()(self, key, conn, read_timeout)
        return httpx2.Response(answer.status, headers=answer.headers, stream=stream, request=request,
                               extensions={"http_version": answer.version, "reason_phrase": answer.reason})  # fmt: skip

    async def body(self, key: tuple[bytes, int], conn: _Conn, read_timeout: float | None) -> bytes:
        """All of ``send``'s answer's body (``read_timeout`` bounding each wait), the connection
        then kept for the next request or dropped, as after ``httpx`` has read a response."""
        answer = conn.answer
        assert answer is not None
        chunks: list[bytes] = []
        try:
            while True:  # (taking what came resumes a read paused at the high-water mark)
                await conn.wait(lambda: answer.chunks or answer.done, read_timeout)
                chunks += conn.take()
                if answer.done and not answer.chunks:
                    break
        except BaseException:
            self.drop(conn)
            raise
        self._reuse(key, conn)
        return b"".join(chunks)

    def body_now(self, key: tuple[bytes, int], conn: _Conn) -> bytes:
        """``body`` of an answer that is all read already (``conn.answer.done``), without waiting."""
        answer = conn.answer
        assert answer is not None and answer.done
        content = b"".join(conn.take())
        self._reuse(key, conn)
        return content

    def drop(self, conn: _Conn) -> None:
        """Close ``conn`` for good (one that failed, or one taken with ``idle_conn`` and not used)."""
        self._open.discard(conn)
        conn.idle = None
        conn.transport.close()

    def _reuse(self, key: tuple[bytes, int], conn: _Conn) -> None:
        if conn not in self._open or not conn.reusable():
            self.drop(conn)
            return
        conn.answer = None
        self.park(key, conn)

    def park(self, key: tuple[bytes, int], conn: _Conn) -> None:
        """Keep ``conn``, free for the next request, among the idle connections to ``key``."""
        idle = self._idle.setdefault(key, [])
        if len(idle) >= _MAX_IDLE:
            self.drop(conn)
            return
        idle.append(conn)

        def dropped() -> None:  # the server wrote to it, or closed it, while it was idle
            try:
                idle.remove(conn)
            except ValueError:
                pass
            self.drop(conn)

        conn.idle = dropped


class _RawBody:  # an httpx2.AsyncByteStream (made one in ``_raw_body_class``)
    """One answer's body off a ``RawTransport`` connection; the connection is reused once the
    body was read to its end (and the server keeps it open), closed otherwise."""

    def __init__(self, owner: RawTransport, key: Any, conn: _Conn, timeout: float | None) -> None:
        self.owner, self.key, self.conn = owner, key, conn
        self.answer = conn.answer
        self.timeout = timeout  # for each wait for the body's bytes (httpx's read timeout)
        self.finished = False
        self.closed = False

    async def __aiter__(self) -> Any:
        conn, answer = self.conn, self.answer
        while True:
            await conn.wait(lambda: answer.chunks or answer.done, self.timeout)
            for chunk in conn.take():
                yield chunk
            if answer.done and not answer.chunks:
                break
        self.finished = True

    def whole(self) -> bytes | None:
        """The whole body when it is all read already and not yet handed out, else None."""
        answer = self.answer
        if self.finished or not answer.done or self.closed:
            return None
        self.finished = True
        return b"".join(self.conn.take())

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.finished:
            self.owner._reuse(self.key, self.conn)  # noqa: SLF001
        else:
            self.owner.drop(self.conn)


_RAW_BODY: Any = None


def _raw_body_class() -> Any:
    """``_RawBody`` as an ``httpx2.AsyncByteStream`` (httpx checks; imported only when used)."""
    global _RAW_BODY
    if _RAW_BODY is None:
        import httpx2

        _RAW_BODY = type("RawBody", (_RawBody, httpx2.AsyncByteStream), {"__slots__": ()})
    return _RAW_BODY


async def read_body(response: Any) -> bytes:
    """``await response.aread()``. For an answer of ``RawTransport`` that is all read already and
    not encoded (the bytes are the content), the same without ``httpx``'s chunk iterators: the
    content kept, the stream consumed, the response closed (the connection reused) as ``aread``
    leaves them; any other answer: ``aread``."""
    stream = response.stream
    if (
        not isinstance(stream, _RawBody)
        or response.is_stream_consumed
        or response.is_closed
        or hasattr(response, "_content")
        or "content-encoding" in response.headers
    ):
        return await response.aread()
    content = stream.whole()
    if content is None:
        return await response.aread()
    response.is_stream_consumed = True
    response._num_bytes_downloaded = len(content)  # noqa: SLF001
    response._content = content  # noqa: SLF001
    await response.aclose()
    return content
