"""The fast path's side of one command server (``fast_calls.py``): its stdin for requests of
ours, and those of them it has not answered yet, whose answers ``upstream._read_output`` hands to
the fast path before the SDK's session can see them. Its own module: ``upstream`` and
``fast_calls`` both need it, and neither may import the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.shared.dispatcher import coerce_request_id

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
