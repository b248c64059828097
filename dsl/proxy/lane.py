"""The fast path's side of one command server (``fast_calls.py``): its stdin for requests of
ours, and those of them it has not answered yet, whose answers ``upstream._read_output`` hands to
the fast path before the SDK's session can see them. Its own module: ``upstream`` and
``fast_calls`` both need it, and neither may import the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.shared.dispatcher import coerce_request_id

log = logging.getLogger("plr.proxy")

__all__ = ["UpstreamLane", "forget_lane", "lane_of", "register_lane"]


class UpstreamLane:
    """One command server's stdin for the fast path's requests, and those of its requests it has
    not answered yet (their answers are taken before the SDK's session sees them)."""

    def __init__(self) -> None:
        self.pipe: Any = None  # the server's stdin (an anyio byte stream)
        self.encoding = "utf-8"
        self._next_id: Callable[[], int] | None = None
        self._writer: Any = None
        self.calls: dict[Any, Any] = {}
        self.open = False

    def attach(self, pipe: Any, encoding: str) -> None:
        """The server process is spawned: its stdin. Written without waiting (the task that writes
        is the one reading the client): through the asyncio writer under anyio's wrapper, whose
        buffer says when the server is not keeping up."""
        self.pipe, self.encoding = pipe, encoding
        writer = getattr(pipe, "_stream", None)  # anyio's StreamWriterWrapper (asyncio backend)
        self._writer = writer if hasattr(writer, "write") and hasattr(writer, "transport") else None

    def bind(self, client: Any) -> None:
        """The client's handshake is done: request ids come from its own counter, so the two
        paths never pick the same id. An SDK without that counter leaves the lane closed (every
        call then takes the SDK path)."""
        try:
            allocate = client.session._dispatcher._allocate_id  # noqa: SLF001 - mcp==2.3.0 is pinned
        except AttributeError:
            return
        if self._writer is not None and callable(allocate):
            self._next_id = allocate
            self.open = True

    def next_id(self) -> int:
        assert self._next_id is not None
        return self._next_id()

    def congested(self) -> bool:
        """Bytes of ours still wait for the server to read them (or it is gone): the SDK path
        then, whose writes wait in tasks of their own, under the call's deadline."""
        transport = self._writer.transport
        return transport.is_closing() or transport.get_write_buffer_size() > 0

    def send_now(self, data: bytes) -> None:
        """Write a whole frame now (what the pipe does not take at once is buffered: one frame at
        most, since a congested lane takes no new call)."""
        if self._writer.transport.is_closing():
            raise BrokenPipeError("the server's stdin is closed")
        self._writer.write(data)

    def take(self, message: Any) -> Any:
        """The fast call ``message`` answers (removed from the lane), if it is one."""
        if not self.calls or not isinstance(message, (types.JSONRPCResponse, types.JSONRPCError)):
            return None
        rid = message.id
        return self.calls.pop(coerce_request_id(rid), None) if rid is not None else None

    def tap(self, stdout: Any, encoding: str) -> bool:
        """Answer the fast path's calls as the server's output arrives, in the pipe's own read
        callback: no task wakes up for them (``upstream._read_output`` otherwise takes each
        line in a task of its own). ``stdout``: anyio's wrapper of the asyncio reader of the
        server's output. Every other line, and an answer that cannot be written to the client at
        once, goes on to that reader unchanged and whole lines only, so ``_read_output`` sees the
        same lines, in the same order, minus those answered here. UTF-8 only (a line is cut at
        its newline byte); False: not tapped (another encoding, another backend)."""
        reader = getattr(stdout, "_stream", None)
        if encoding.replace("-", "").lower() != "utf8" or not callable(getattr(reader, "feed_data", None)):
            return False
        feed_data, feed_eof = reader.feed_data, reader.feed_eof
        pending = bytearray()  # the start of a line whose newline has not come yet

        def on_data(chunk: bytes) -> None:
            if not pending and not self.calls and chunk.endswith(b"\n"):
                feed_data(chunk)  # nothing of ours in flight: whole lines straight on
                return
            start = len(pending)
            pending.extend(chunk)
            end = pending.rfind(b"\n", start)
            if end < 0:
                return
            whole = bytes(pending[: end + 1])
            del pending[: end + 1]
            if self.calls:
                whole = b"".join(line for line in whole.splitlines(keepends=True) if not self._answered(line))
            if whole:
                feed_data(whole)

        def on_eof() -> None:
            if pending:
                feed_data(bytes(pending))
                pending.clear()
            feed_eof()

        reader.feed_data, reader.feed_eof = on_data, on_eof
        return True

    def _answered(self, line: bytes) -> bool:
        """Was ``line`` the answer to a fast call, now written to its client? Never raises (it
        runs inside the pipe's read callback): anything unexpected leaves the line to the task."""
        try:
            if b'"result"' not in line:
                return False  # an error answer, a request, a notification: the task's
            from .fast_calls import server_message  # (fast_calls imports this module)

            message = server_message(line.decode("utf-8"))
            if not isinstance(message, types.JSONRPCResponse) or message.id is None:
                return False
            key = coerce_request_id(message.id)
            call = self.calls.get(key)
            if call is None or not call.owner.finish_now(call, message):
                return False
            self.calls.pop(key, None)
            return True
        except Exception:  # noqa: BLE001
            log.exception("plr proxy: the fast path failed on a server's answer")
            return False

    def close(self) -> None:
        """The server's output ended: no new call uses this lane; the waiting ones are failed."""
        self.open = False
        calls, self.calls = list(self.calls.values()), {}
        for call in calls:
            call.owner.upstream_closed(call)


_LANES: dict[int, UpstreamLane] = {}


def register_lane(client: Any, lane: UpstreamLane) -> None:
    _LANES[id(client)] = lane


def forget_lane(client: Any) -> None:
    _LANES.pop(id(client), None)


def lane_of(client: Any) -> UpstreamLane | None:
    return _LANES.get(id(client)) if client is not None else None
