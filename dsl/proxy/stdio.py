"""The stdio front: the agent's MCP client starts ``plr proxy ... -- SERVER_CMD`` as its server.

The framing of valid messages is the SDK's (``jsonrpc_message_adapter``, one JSON object per
line). What the SDK's own ``stdio_server`` does not do, and the proxy must: a line that is not
valid JSON-RPC gets a JSON-RPC error back (``-32700`` parse error, or ``-32600`` invalid
request with the request's id when one can be read) instead of being dropped silently, and the
proxy stays up. While serving, file descriptor 1 points at stderr so stray prints (ours or a
library's) can never corrupt the wire.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import mcp_types as types
from mcp.shared.message import SessionMessage

MAX_LINE = 32 * 1024 * 1024  # a longer line is answered with a parse error, not buffered forever


def error_for_bad_line(line: bytes) -> types.JSONRPCError | None:
    """The JSON-RPC error answering a line that failed validation (None: nothing to answer)."""
    text = line.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        line.decode("utf-8")
        why = "not a valid JSON-RPC message"
    except UnicodeDecodeError:
        why = "the message is not valid UTF-8"
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return types.JSONRPCError(
            jsonrpc="2.0", id=None, error=types.ErrorData(code=types.PARSE_ERROR, message="Parse error")
        )
    rid: Any = None
    if isinstance(obj, dict):
        rid = obj.get("id")
        if not (isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool))):
            rid = None
        if "method" not in obj and ("result" in obj or "error" in obj):
            return None  # a malformed response: there is nobody to answer
        if rid is None and "id" not in obj and isinstance(obj.get("method"), str):
            return None  # a malformed notification: JSON-RPC never answers notifications
    return types.JSONRPCError(
        jsonrpc="2.0",
        id=rid,
        error=types.ErrorData(code=types.INVALID_REQUEST, message=f"Invalid Request: {why}"),
    )


def _claim_stdout() -> tuple[int, int | None]:
    """A private duplicate of fd 1 for the wire; fd 1 itself then points at stderr."""
    try:
        wire = os.dup(1)
    except OSError:
        return 1, None
    try:
        os.dup2(2, 1)
    except OSError:
        return wire, None
    return wire, wire


class _Lines:
    """Splits a byte stream into lines; a line longer than MAX_LINE becomes one None."""

    def __init__(self) -> None:
        self.buf = b""
        self.skipping = False

    def feed(self, chunk: bytes) -> list[bytes | None]:
        out: list[bytes | None] = []
        self.buf += chunk
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > MAX_LINE:
                    if not self.skipping:
                        out.append(None)
                    self.skipping, self.buf = True, b""
                return out
            line, self.buf = self.buf[: nl + 1], self.buf[nl + 1 :]
            if self.skipping:
                self.skipping = False
            elif len(line) > MAX_LINE:
                out.append(None)
            else:
                out.append(line)

    def eof(self) -> list[bytes | None]:
        rest, self.buf = self.buf, b""
        return [rest] if rest and not self.skipping else []


def _pollable(fd: int) -> bool:
    """A pipe, socket or terminal: the event loop can wait on it (a regular file it cannot)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


@asynccontextmanager
async def front_stdio(stdin: Any = None, stdout: Any = None) -> AsyncIterator[tuple[Any, Any]]:
    """(read_stream, write_stream) over this process's stdin/stdout, answering malformed lines.

    Pipes (what an MCP client gives its server) are read and written from the event loop
    (``wait_readable``/``wait_writable``), with no thread hop per message; anything else falls
    back to a daemon reader thread and blocking writes.
    """
    restore: int | None = None
    in_fd = stdin.fileno() if stdin is not None else 0
    if stdout is None:
        out_fd, restore = _claim_stdout()
    else:
        out_fd = stdout.fileno()
    # non-blocking writes on a pipe/socket, so a slow client never blocks the event loop
    out_nonblocking = False
    try:
        mode = os.fstat(out_fd).st_mode
        if (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) and os.get_blocking(out_fd):
            os.set_blocking(out_fd, False)
            out_nonblocking = True
    except OSError:
        pass

    lines_send, lines_recv = anyio.create_memory_object_stream[bytes | None](16)
    splitter = _Lines()

    async def loop_pump() -> None:
        """Read stdin from the event loop (the fd stays blocking; we only read once it is readable)."""
        async with lines_send:
            while True:
                try:
                    await anyio.wait_readable(in_fd)
                    chunk = os.read(in_fd, 65536)
                except InterruptedError:
                    continue
                except OSError:
                    chunk = b""
                items = splitter.feed(chunk) if chunk else [*splitter.eof(), b""]
                for item in items:
                    await lines_send.send(item)
                if not chunk:
                    return

    token = anyio.lowlevel.current_token()

    def thread_pump() -> None:
        """Fallback for a non-pollable stdin: a daemon thread (never joined at exit) with os.read."""
        try:
            while True:
                try:
                    chunk = os.read(in_fd, 65536)
                except InterruptedError:
                    continue
                except OSError:
                    chunk = b""
                items = splitter.feed(chunk) if chunk else [*splitter.eof(), b""]
                for item in items:
                    anyio.from_thread.run(lines_send.send, item, token=token)
                if not chunk:
                    return
        except Exception:  # noqa: BLE001 - the loop is gone (shutdown): just stop
            return

    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    raw_send, raw_recv = anyio.create_memory_object_stream[bytes](64)

    reader_done = anyio.Event()

    async def reader() -> None:
        try:
            await _read_frames()
        finally:
            reader_done.set()

    async def _read_frames() -> None:
        async with read_send, raw_send:
            async for line in lines_recv:
                if line == b"":
                    break
                if line is None:
                    err = types.JSONRPCError(
                        jsonrpc="2.0",
                        id=None,
                        error=types.ErrorData(code=types.PARSE_ERROR, message="Parse error: message too large"),
                    )
                    await raw_send.send(err.model_dump_json(by_alias=True).encode() + b"\n")
                    continue
                try:
                    msg = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception:  # noqa: BLE001 - any invalid frame
                    err = error_for_bad_line(line)
                    if err is not None:
                        await raw_send.send(err.model_dump_json(by_alias=True).encode() + b"\n")
                    continue
                try:
                    await read_send.send(SessionMessage(msg))
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    break

    lock = anyio.Lock()

    async def write_bytes(data: bytes) -> None:
        view = memoryview(data)
        async with lock:
            while view:
                try:
                    n = os.write(out_fd, view)
                except BlockingIOError:
                    await anyio.wait_writable(out_fd)
                    continue
                except InterruptedError:
                    continue
                view = view[n:]

    writer_done = anyio.Event()

    async def writer() -> None:
        try:
            async with write_recv:
                async for sm in write_recv:
                    data = sm.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
                    await write_bytes(data)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass
        finally:
            writer_done.set()

    raw_done = anyio.Event()

    async def raw_writer() -> None:
        try:
            async with raw_recv:
                async for data in raw_recv:
                    await write_bytes(data)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass
        finally:
            raw_done.set()

    try:
        async with anyio.create_task_group() as tg:
            if _pollable(in_fd):
                tg.start_soon(loop_pump)
            else:
                threading.Thread(target=thread_pump, name="plr-stdin", daemon=True).start()
            tg.start_soon(reader)
            tg.start_soon(writer)
            tg.start_soon(raw_writer)
            try:
                yield read_recv, write_send
            finally:
                # let the last responses reach the client, then stop
                with anyio.move_on_after(2, shield=True):
                    await write_send.aclose()
                    await writer_done.wait()
                    if reader_done.is_set():  # at EOF the reader closed raw_send: flush its answers
                        await raw_done.wait()
                tg.cancel_scope.cancel()
    finally:
        if out_nonblocking:
            try:
                os.set_blocking(out_fd, True)
            except OSError:
                pass
        if restore is not None:
            try:
                os.dup2(restore, 1)
            except OSError:
                pass
