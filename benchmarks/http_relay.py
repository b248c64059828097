"""The floor of an HTTP relay written in Python, for the proxy's HTTP row to be read against.

A transparent HTTP/1.1 relay that checks nothing, decides nothing and records nothing: each
front connection gets one kept-alive connection to the upstream; a request is parsed with
httptools (llhttp, as the proxy's front reads it), its head written again with the upstream's
``Host`` and its whole body, and the answer parsed the same way and written back in one send.
Both sides run in the protocols' read callbacks (no task per request), on the standard asyncio
loop the proxy uses (asyncio sets ``TCP_NODELAY`` on both sockets). Whatever the proxy adds over what this relay adds is the cost of what the
proxy does for a call (the checks, the decision, the audit record, the SDK's session rules),
not of being a Python process between two sockets.
Run: ``python benchmarks/http_relay.py FRONT_PORT UPSTREAM_PORT`` (prints ``ready`` once listening).
"""

from __future__ import annotations

import asyncio
import sys

import httptools

_HOP = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})


class _Messages(asyncio.Protocol):
    """One side of the relay: the message under way, as httptools hands it over."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def on_message_begin(self) -> None:
        self.headers, self.body = [], []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def _again(self, first: bytes, body: bytes) -> bytes:
        """The message written again after its first line: its own headers, its body's length."""
        head = [first] + [k + b": " + v + b"\r\n" for k, v in self.headers if k.lower() not in _HOP]
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        return b"".join(head) + body


class _Upstream(_Messages):
    def __init__(self, front: _Front) -> None:
        super().__init__()
        self.front = front
        self.parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.close()

    def on_message_complete(self) -> None:
        self.front.answer(self._again(b"HTTP/1.1 %d OK\r\n" % self.parser.get_status_code(), b"".join(self.body)))


class _Front(_Messages):
    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__()
        self.upstream = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.up: _Upstream | None = None
        self.pending: list[bytes] = []  # what the client sent before the upstream connection was up
        self.url = b"/"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, up = await loop.create_connection(lambda: _Upstream(self), *self.upstream)
        except OSError:
            self.close()
            return
        self.up = up
        pending, self.pending = self.pending, []
        for data in pending:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self.up is None:
            self.pending.append(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        host, port = self.upstream
        first = self.parser.get_method() + b" " + self.url + b" HTTP/1.1\r\nhost: %s:%d\r\n" % (host.encode(), port)
        assert self.up is not None and self.up.transport is not None
        self.up.transport.write(self._again(first, b"".join(self.body)))

    def answer(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)


async def _serve(front: int, upstream: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Front(("127.0.0.1", upstream)), "127.0.0.1", front)
    print("ready", flush=True)
    await server.serve_forever()


def main() -> None:
    asyncio.run(_serve(int(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
