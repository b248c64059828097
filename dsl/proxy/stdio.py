"""The stdio front: the agent's MCP client starts ``plr proxy ... -- SERVER_CMD`` as its server.

The framing of valid messages is the SDK's (``jsonrpc_message_adapter``, one JSON object per
line). What the SDK's own ``stdio_server`` does not do, and the proxy must: a line that is not
valid JSON-RPC gets a JSON-RPC error back (``-32700`` parse error, or ``-32600`` invalid
request with the request's id when one can be read) instead of being dropped silently, and the
proxy stays up. While serving, file descriptor 1 points at stderr so stray prints (ours or a
library's) can never corrupt the wire.

Every call crosses this module twice, so it avoids task hops: stdin is read by a callback that
stays registered with the asyncio loop and lines are parsed and handed to the session inline;
an answer is written by the task that sends it (one ``os.write`` when the pipe takes it whole,
else the rest under a lock, shielded, so a frame is never cut in half).
"""

from __future__ import annotations

import json
import os
import select
import stat
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import mcp_types as types
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params
from mcp.shared.message import SessionMessage

from .errors import log
from .http import MIXED_MESSAGE, bad_request_id, id_key, is_mixed, mixed_frame

MAX_LINE = 32 * 1024 * 1024  # a longer line is answered with a parse error, not buffered forever
# At the end of the client's input, how long its requests still in flight may take to be answered
# before the session ends (and the SDK answers what is left with "Connection closed"): a client
# that pipes its requests in (`printf ... | plr proxy ...`) gets its answers; one that leaves
# mid-call is not kept waiting long (the MCP SDK's client sends SIGTERM 2 s after closing stdin).
EOF_GRACE = 3.0


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
        if is_mixed(obj):
            why = MIXED_MESSAGE
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
    """A pipe, socket or terminal: the event loop can wait on it (a regular file it cannot, nor
    a character device such as /dev/null, which epoll refuses: those are read by a thread)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd))


def _read_lines(fd: int, splitter: _Lines) -> tuple[list[bytes | None], bool] | None:
    """One read of ``fd``, split into lines, and whether it was the end (a read error counts as
    the end); None when there was nothing to read after all (interrupted, or would block)."""
    try:
        chunk = os.read(fd, 65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        chunk = b""
    return (splitter.feed(chunk), False) if chunk else (splitter.eof(), True)


async def pump_lines(fd: int, splitter: _Lines, deliver_now: Any, deliver: Any) -> bool:
    """Read ``fd`` from a reader callback that stays registered with the asyncio loop (no
    add/remove of the fd per message, as ``anyio.wait_readable`` does), splitting lines and
    handing each to ``deliver_now(line) -> bool`` (synchronous; False: it needs to wait); what
    cannot be handed on at once goes, in order, through ``await deliver(line) -> bool`` (False:
    stop), with reading paused meanwhile. Returns False when the loop has no reader callbacks
    (the caller then falls back to ``wait_readable``)."""
    import asyncio
    from collections import deque

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not on asyncio (trio): the caller uses anyio.wait_readable
        return False
    backlog: deque[bytes | None] = deque()
    wake = asyncio.Event()
    eof = False

    def on_readable() -> None:
        nonlocal eof
        got = _read_lines(fd, splitter)
        if got is None:
            return
        lines, eof = got
        for line in lines:
            if backlog or not deliver_now(line):
                backlog.append(line)
        if backlog or eof:
            loop.remove_reader(fd)  # paused until the backlog is handed on
            wake.set()

    try:
        loop.add_reader(fd, on_readable)
    except (NotImplementedError, PermissionError):  # not pollable after all: wait_readable's turn
        return False
    try:
        while True:
            await wake.wait()
            wake.clear()
            while backlog:
                if not await deliver(backlog.popleft()):
                    return True
            if eof:
                return True
            loop.add_reader(fd, on_readable)
    finally:
        loop.remove_reader(fd)


class _Writer:
    """Whole frames onto the client's pipe (``out_fd``), written by the task that sends them.

    Fast path: the pipe takes the frame at once, no await at all (so no task hop and nothing to
    cancel). Otherwise the rest is written under the lock, shielded (a frame cut in half by a
    cancelled handler would corrupt the wire)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        try:  # a pipe takes a write of up to PIPE_BUF bytes whole or not at all
            self.atomic = stat.S_ISFIFO(os.fstat(fd).st_mode) and not os.get_blocking(fd)
        except OSError:
            self.atomic = False
        self.lock = anyio.Lock()
        self.slow_writes: set[anyio.CancelScope] = set()  # frames still being written

    def write_now(self, data: bytes) -> bool:
        """Write a whole frame without waiting, or nothing at all (False): only a frame a
        non-blocking pipe takes whole or refuses, and only while no other frame is half written.
        A client that is gone counts as written (as ``write``'s callers ignore it)."""
        if not self.atomic or len(data) > select.PIPE_BUF or self.lock.locked():
            return False
        try:
            os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            pass  # the client is gone; the reader sees the end of its input
        return True

    async def write(self, data: bytes) -> None:
        lock = self.lock
        if not lock.locked():
            try:
                n = os.write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            if n == len(data):
                return
            data = data[n:]
            # the rest of this frame goes before anyone else's: take the lock without yielding
            lock.acquire_nowait()
        else:
            await lock.acquire()
        try:
            with anyio.CancelScope(shield=True) as scope:
                self.slow_writes.add(scope)
                try:
                    view = memoryview(data)
                    while view:
                        try:
                            n = os.write(self.fd, view)
                        except BlockingIOError:
                            await anyio.wait_writable(self.fd)
                            continue
                        except InterruptedError:
                            continue
                        view = view[n:]
                finally:
                    self.slow_writes.discard(scope)
        finally:
            lock.release()

    async def drain(self, limit: float = 2.0) -> None:
        """Let a last response stuck in a slow write reach the client (for ``limit`` seconds), then stop."""
        with anyio.move_on_after(limit, shield=True):
            while self.slow_writes:
                await anyio.sleep(0.01)
        for scope in list(self.slow_writes):
            scope.cancel()


class _InFlight:
    """The ids of the client's requests that have no answer yet. A second request with the id of
    one still in flight (a call waiting for approval, say) would orphan the first: its cancel
    could no longer reach it, and a later grant would answer twice. It is an Invalid Request.

    Ids are keyed as the SDK's dispatcher keys its requests in flight (``coerce_request_id``, by
    ``http.id_key``): 7, "7", "07" and " 7" are one id there, so they are one id here too."""

    def __init__(self) -> None:
        self.ids: set[Any] = set()

    def claim(self, msg: Any) -> bool:
        """False: ``msg`` is a request whose id is in flight; else it is now (if a request).
        A cancellation frees its request's id: a cancelled request is never answered."""
        if isinstance(msg, types.JSONRPCRequest):
            key = id_key(msg.id)
            if key in self.ids:
                return False
            self.ids.add(key)
        elif isinstance(msg, types.JSONRPCNotification) and msg.method == "notifications/cancelled":
            # read as the SDK's dispatcher reads it (a bool or a float names no request: True
            # and 1.0 would free id 1 in a set)
            rid = cancelled_request_id_from_params(msg.params)
            if rid is not None:
                self.ids.discard(id_key(rid))
        return True

    def unclaim(self, msg: Any) -> None:
        if isinstance(msg, types.JSONRPCRequest):
            self.ids.discard(id_key(msg.id))

    def release(self, msg: Any) -> None:
        if isinstance(msg, (types.JSONRPCResponse, types.JSONRPCError)) and msg.id is not None:
            self.ids.discard(id_key(msg.id))


def _duplicate_id(msg: Any) -> types.JSONRPCError:
    return types.JSONRPCError(
        jsonrpc="2.0",
        id=msg.id,
        error=types.ErrorData(
            code=types.INVALID_REQUEST,
            message=f"Invalid Request: a request with id {json.dumps(msg.id)} is still in flight "
            '(7, "7" and "07" are one id to the MCP SDK); use a new id',
        ),
    )


class _FrontWrite:
    """The SDK's write stream: each message serialized and written by the task that sends it."""

    def __init__(self, writer: _Writer, in_flight: _InFlight) -> None:
        self.writer = writer
        self.in_flight = in_flight
        self.closed = False

    async def send(self, sm: SessionMessage) -> None:
        # the id is free once its answer is out of the session, written or not: a client gone
        # both ways must not hold the end-of-input grace (``_Reader.settle``) for its full length
        self.in_flight.release(sm.message)
        if self.closed:
            raise anyio.ClosedResourceError
        data = sm.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
        try:
            await self.writer.write(data)
        except OSError:
            self.closed = True  # the client is gone
            raise anyio.BrokenResourceError from None

    async def aclose(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> _FrontWrite:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.closed = True


def _parsed(line: bytes) -> SessionMessage | None:
    """A valid JSON-RPC message (None: any invalid frame, which the caller answers)."""
    try:
        msg = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except Exception:  # noqa: BLE001 - any invalid frame: the caller answers it
        return None
    cls = msg.__class__
    # a frame with a "method" and a "result" or an "error" (``mixed_frame``): read by the SDK as a
    # request when it has a "result", as a response it drops when it has an "error"; answered
    # (with its id) as an Invalid Request instead, never forwarded. Only a key can make a request
    # or a notification so (a response: a "method" key), spelled out or with an escape. (``find``:
    # ``in`` on bytes first tries the needle as an int, an exception raised and cleared each time.)
    if cls is types.JSONRPCNotification and bad_request_id(line):
        return None  # a request whose id is not a string or an integer: answered, not dropped
    if cls is types.JSONRPCRequest or cls is types.JSONRPCNotification:
        if (
            line.find(b'"result"') >= 0 or line.find(b'"error"') >= 0 or line.find(b"\\") >= 0 and line.find(b"\\u") >= 0
        ) and mixed_frame(line):
            return None
    elif (line.find(b'"method"') >= 0 or line.find(b"\\u") >= 0) and mixed_frame(line):
        return None
    return SessionMessage(msg)


class _Reader:
    """Lines from the client's stdin (``in_fd``), parsed and handed to the session's read stream;
    a line that is not valid JSON-RPC is answered with an error (through ``writer``)."""

    def __init__(self, fd: int, writer: _Writer, read_send: Any, in_flight: _InFlight, fast: Any = None) -> None:
        self.fd = fd
        self.writer = writer
        self.read_send = read_send
        self.in_flight = in_flight
        self.splitter = _Lines()
        self.fast = fast  # FastCalls: tools/call without the SDK's machinery (fast_calls.py), or None
        # deliver_now's parse and what is left to do, for handle_line: None (all of it), False
        # (hand it to the session) or the answer the fast path owes the client
        self._parsed: tuple[bytes, SessionMessage, Any] | None = None

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Pipes are read from the event loop, with no thread hop per message; anything else by a
        daemon reader thread (never joined at exit) whose lines cross over a memory stream."""
        if _pollable(self.fd):
            tg.start_soon(self.loop_pump)
            return
        lines_send, lines_recv = anyio.create_memory_object_stream[bytes | None](16)
        token = anyio.lowlevel.current_token()
        threading.Thread(target=self.thread_pump, args=(lines_send, token), name="plr-stdin", daemon=True).start()
        tg.start_soon(self.thread_reader, lines_recv)

    async def answer(self, err: types.JSONRPCError) -> bool:
        """Our own error answer to a bad line (False: the client stopped reading, stop too)."""
        try:
            await self.writer.write(err.model_dump_json(by_alias=True).encode() + b"\n")
        except OSError:
            return False
        return True

    async def reply(self, msg: Any, rid: Any) -> None:
        """The fast path's answer to the client's request ``rid`` (its id is free again)."""
        await self.reply_frame(msg.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n", rid)

    def reply_now(self, data: bytes, rid: Any) -> bool:
        """``reply_frame`` if the client's pipe takes the whole line at once (False: nothing was
        written, nor freed)."""
        if not self.writer.write_now(data):
            return False
        self.in_flight.ids.discard(id_key(rid))
        return True

    async def reply_frame(self, data: bytes, rid: Any) -> None:
        """``reply`` of a message the fast path has written already (one line)."""
        self.in_flight.ids.discard(id_key(rid))
        try:
            await self.writer.write(data)
        except OSError:
            pass  # the client is gone; the reader sees the end of its input

    def release(self, rid: Any) -> None:
        """A request of the fast path that will not be answered (the client cancelled it)."""
        self.in_flight.ids.discard(id_key(rid))

    async def settle(self) -> None:
        """The input ended: wait (at most ``EOF_GRACE`` s) until every request read has been
        answered, before the read stream closes and the session cancels what is still running.
        (When the front is closing instead, its task group cancels this wait.)"""
        with anyio.move_on_after(EOF_GRACE):
            while self.in_flight.ids:
                await anyio.sleep(0.01)

    async def handle_line(self, line: bytes | None) -> bool:
        """Parse one line and hand it on (False: the session is gone, stop reading)."""
        if line is None:
            return await self.answer(
                types.JSONRPCError(
                    jsonrpc="2.0",
                    id=None,
                    error=types.ErrorData(code=types.PARSE_ERROR, message="Parse error: message too large"),
                )
            )
        cached, self._parsed = self._parsed, None
        if cached is not None and cached[0] is line:
            sm, owed = cached[1], cached[2]
        else:
            sm, owed = _parsed(line), None
        if sm is None:
            bad = error_for_bad_line(line)
            return await self.answer(bad) if bad is not None else True
        if owed is None:
            if not self.in_flight.claim(sm.message):
                return await self.answer(_duplicate_id(sm.message))
            fast = self.fast
            if fast is not None and fast.wants(sm.message):
                owed = self._take(fast, sm.message)
        if owed is True:
            return True
        if owed is not None and owed is not False:
            return await owed() is not False  # the answer the fast path owes the client (False: gone)
        try:
            try:
                self.read_send.send_nowait(sm)  # the session is waiting for it: no extra checkpoint
            except anyio.WouldBlock:
                await self.read_send.send(sm)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    def _take(self, fast: Any, msg: Any) -> Any:
        """``fast.take_now`` (True, False or the answer owed), a bug in it answered with an
        internal error: it must neither kill the front nor forward anything."""
        try:
            return fast.take_now(msg, self)
        except Exception:  # noqa: BLE001
            log.exception("plr proxy: the fast path failed on a tools/call")
            self.in_flight.unclaim(msg)
            err = types.ErrorData(code=types.INTERNAL_ERROR, message="plr: internal error in the proxy")
            return partial(self.answer, types.JSONRPCError(jsonrpc="2.0", id=msg.id, error=err))

    def deliver_now(self, line: bytes | None) -> bool:
        """The synchronous path, run by the reader callback; False: ``handle_line`` takes it (a bad
        line, a full stream, an answer the fast path owes the client: written by a task)."""
        sm = _parsed(line) if line is not None else None
        if sm is None:
            return False  # a bad line: handle_line answers it
        msg = sm.message
        if not self.in_flight.claim(msg):
            return False  # an id in flight: handle_line answers it
        fast = self.fast
        if fast is not None and fast.wants(msg):
            owed = self._take(fast, msg)
            if owed is True:
                return True
            if owed is not False:
                self._parsed = (line, sm, owed)  # type: ignore[assignment]
                return False
        try:
            self.read_send.send_nowait(sm)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._parsed = (line, sm, False)  # type: ignore[assignment]  # handle_line sends it
            return False
        return True

    async def loop_pump(self) -> None:
        """Read stdin from the event loop and parse inline (no task hop per message)."""
        async with self.read_send:
            if await pump_lines(self.fd, self.splitter, self.deliver_now, self.handle_line):
                await self.settle()
                return
            while True:
                try:
                    await anyio.wait_readable(self.fd)
                except OSError:
                    pass  # the read below reports the end
                got = _read_lines(self.fd, self.splitter)
                if got is None:
                    continue
                items, end = got
                for item in items:
                    if not await self.handle_line(item):
                        return
                if end:
                    await self.settle()
                    return

    def thread_pump(self, lines_send: Any, token: Any) -> None:
        """Fallback for a non-pollable stdin: a daemon thread (never joined at exit) with os.read."""
        try:
            while True:
                got = _read_lines(self.fd, self.splitter)
                if got is None:
                    continue
                items, end = got
                for item in [*items, b""] if end else items:  # b"": the end, for thread_reader
                    anyio.from_thread.run(lines_send.send, item, token=token)
                if end:
                    return
        except Exception:  # noqa: BLE001 - the loop is gone (shutdown): just stop
            return

    async def thread_reader(self, lines_recv: Any) -> None:
        """Lines from the fallback thread."""
        async with self.read_send:
            async for line in lines_recv:
                if line == b"":
                    await self.settle()
                    break
                if not await self.handle_line(line):
                    break


def _nonblocking(fd: int) -> bool:
    """Non-blocking writes on a pipe/socket, so a slow client never blocks the event loop
    (True: switched, to be switched back)."""
    try:
        mode = os.fstat(fd).st_mode
        if (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) and os.get_blocking(fd):
            os.set_blocking(fd, False)
            return True
    except OSError:
        pass
    return False


@asynccontextmanager
async def front_stdio(stdin: Any = None, stdout: Any = None, fast: Any = None) -> AsyncIterator[tuple[Any, Any]]:
    """(read_stream, write_stream) over this process's stdin/stdout, answering malformed lines.

    Pipes (what an MCP client gives its server) are read and written from the event loop (a
    reader callback, ``wait_readable`` off asyncio, ``wait_writable``), with no thread hop per
    message; anything else falls back to a daemon reader thread and blocking writes.
    """
    restore: int | None = None
    in_fd = stdin.fileno() if stdin is not None else 0
    if stdout is None:
        out_fd, restore = _claim_stdout()
    else:
        out_fd = stdout.fileno()
    out_nonblocking = _nonblocking(out_fd)
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    writer = _Writer(out_fd)
    in_flight = _InFlight()
    write_send = _FrontWrite(writer, in_flight)
    try:
        async with anyio.create_task_group() as tg:
            _Reader(in_fd, writer, read_send, in_flight, fast).start(tg)
            try:
                yield read_recv, write_send
            finally:
                write_send.close()
                await writer.drain()
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
