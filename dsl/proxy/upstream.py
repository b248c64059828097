"""The upstream server's life: start it, hold its client, and restart a command that dies.

A command upstream is supervised (``Upstream``): when its server dies unexpectedly it is started
again with the same command, environment, client info and callbacks, after a backoff (0.5 s,
1 s, 2 s, ... capped at 10 s), at most ``--max-restarts`` times in a row (the count starts
afresh once a server has stayed up for a minute), and swapped in as ``Proxy.up``. Requests in
flight when it died get an error and are never re-sent (a tool call may have had its effect);
requests that arrive during a restart wait for it. A URL upstream has no process to restart.

The server runs under a transport of our own (``_server_process``), built from the SDK's own
spawn, stop and parse functions (``mcp==2.3.0`` is pinned): the SDK's ``stdio_client`` keeps
the process to itself, and the supervisor needs its pid, its exit code, and to learn that its
output ended before the session fails the requests in flight.

``SharedUpstream`` is that client as requests see it: the one every request without an upstream
session of its own goes to (stdio, a command upstream over HTTP, stateless 2026-07-28 requests);
while its server is being restarted a request waits for the new one (up to
``--upstream-timeout``), and once the restarts are used up it gets an error at once.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .errors import CLOSED, secs
from .lane import UpstreamLane, forget_lane, register_lane

if TYPE_CHECKING:
    from mcp import StdioServerParameters


class UpstreamOwner(Protocol):
    """What the upstream tells the proxy about its server's life (``Proxy`` implements it); a
    protocol, so this module needs nothing of ``core``."""

    opt: Any  # ProxyOptions: start_timeout, max_restarts, stderr

    def upstream_lost(self, *, restarting: bool) -> None: ...

    async def prepare_restarted(self, client: Any) -> None: ...

    def upstream_back(self, client: Any) -> None: ...

    def upstream_stopping(self) -> None: ...

    def upstream_given_up(self) -> None: ...

__all__ = ["Upstream", "SharedUpstream", "RestartBudget", "UpstreamStartError", "describe_failure"]

# a server that stayed up this long has earned a fresh --max-restarts budget
STABLE_AFTER = 60.0
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 10.0


class UpstreamStartError(Exception):
    """The upstream server could not be started or did not complete the handshake."""


def describe_failure(e: BaseException) -> str:
    if isinstance(e, UpstreamStartError):
        return str(e)
    if isinstance(e, BaseExceptionGroup):
        inner = [x for x in e.exceptions]
        if len(inner) == 1:
            return describe_failure(inner[0])
    if isinstance(e, FileNotFoundError):
        return f"command not found: {e.filename or e}"
    if isinstance(e, OSError):
        return f"{e.strerror or e}"
    msg = str(e) or type(e).__name__
    return f"{type(e).__name__}: {msg}" if not msg.startswith(type(e).__name__) else msg



@dataclass
class RestartBudget:
    """``--max-restarts N``: how many restarts in a row are left, and how long to wait before each.

    The count is of consecutive restarts: a server that stayed up ``STABLE_AFTER`` seconds before
    dying gets the full budget again, so a server that crashes once a day is always restarted,
    while one that crashes at every start is given up after N tries instead of spinning."""

    limit: int
    used: int = 0

    def on_death(self, uptime: float) -> int | None:
        """A running server died: the number of the restart attempt to make (None: used up)."""
        if uptime >= STABLE_AFTER:
            self.used = 0
        return self.on_failed_start()

    def on_failed_start(self) -> int | None:
        """A restart failed (exited at once, no handshake in time): it counts as an attempt."""
        if self.used >= self.limit:
            return None
        self.used += 1
        return self.used

    @staticmethod
    def delay(attempt: int) -> float:
        """0.5 s, 1 s, 2 s, ... capped at 10 s: a crash loop never hammers the machine."""
        return min(BACKOFF_FIRST * 2 ** (attempt - 1), BACKOFF_CAP)


class SharedUpstream:
    """The shared upstream client, as the requests that use it see it through restarts."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout  # --upstream-timeout: how long a request waits for a restart (None: for ever)
        self.client: Any = None  # mcp.Client, once connected
        self.modern = False  # the upstream speaks 2026-07-28 (read while its client is open)
        # a command upstream that died: set while it is being restarted (requests wait on it), and
        # ``_gone`` once the restarts are used up
        self._restarting: anyio.Event | None = None
        self._gone = False

    @property
    def restarting(self) -> bool:
        return self._restarting is not None

    async def session(self) -> Any:
        """The shared upstream session; while a dead server is being restarted, the new one (a
        request that arrives then waits for it, up to ``--upstream-timeout``)."""
        restarting = self._restarting
        if restarting is not None:
            await self._wait_restart(restarting)
        if self._gone:
            raise MCPError(code=types.INTERNAL_ERROR, message=CLOSED)
        if self.client is None:
            raise MCPError(code=types.INTERNAL_ERROR, message="plr: the upstream MCP server is not connected")
        return self.client.session

    async def _wait_restart(self, restarting: anyio.Event) -> None:
        timeout = self.timeout
        with anyio.move_on_after(timeout if timeout is not None else math.inf):
            await restarting.wait()
        if not restarting.is_set():
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message=f"plr: the upstream MCP server is being restarted and was not back within "
                f"{secs(timeout or 0)} s (--upstream-timeout)",
            )

    def lost(self, *, restarting: bool) -> None:
        """The server died: requests that arrive from now on wait for the restart, or fail at once
        when there will be none."""
        if restarting:
            if self._restarting is None:
                self._restarting = anyio.Event()
        else:
            self.given_up()

    def back(self, client: Any) -> None:
        """The restarted server is ready: waiting requests go to it."""
        self.client = client
        self._gone = False
        self.modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
        self._release_waiters()

    def stopping(self) -> None:
        """The proxy stops: requests waiting for a restart get an error now, not at a timeout."""
        if self._restarting is not None:
            self.given_up()

    def given_up(self) -> None:
        """No more restarts: requests that need the server get a JSON-RPC error."""
        self._gone = True
        self._release_waiters()

    def _release_waiters(self) -> None:
        restarting, self._restarting = self._restarting, None
        if restarting is not None:
            restarting.set()


class _StartFailed(UpstreamStartError):
    """A start that produced no usable server (its message is shown as is)."""


@dataclass(eq=False)
class _ServerRun:
    """One start of the upstream: its client, and for a command its process and fate."""

    on_lost: Callable[[_ServerRun], None]
    client: Any = None
    process: Any = None  # the server's process (a command upstream), once spawned
    live: bool = False  # the handshake completed; from then on a death is a death to restart
    up_since: float = 0.0
    lost: anyio.Event = field(default_factory=anyio.Event)  # its connection ended
    stopped: anyio.Event = field(default_factory=anyio.Event)  # its client is closed, its process reaped
    died: bool = False  # it died while serving (not at our shutdown, not during its start)
    next_attempt: int | None = None  # decided when it died: the restart to make (None: none)
    lane: UpstreamLane = field(default_factory=UpstreamLane)  # the fast path's requests (fast_calls.py)

    def output_ended(self) -> None:
        self.on_lost(self)


class Upstream:
    """Starts the upstream client and holds it in a task of its own; for a command upstream it
    also brings back a server that died (``supervise``).

    Each client lives in its own task (``_hold``) because a client must be closed by the task
    that opened it, and a restarted one outlives the code that started it."""

    def __init__(
        self,
        proxy: UpstreamOwner,
        make_client: Callable[[Any], Any],
        *,
        params: StdioServerParameters | None = None,
        url: str | None = None,
    ) -> None:
        self.proxy = proxy
        self.make_client = make_client
        self.params = params  # a command upstream (else ``url``)
        self.url = url
        self.timeout = proxy.opt.start_timeout or None
        self.budget = RestartBudget(proxy.opt.max_restarts)
        self.report = proxy.opt.stderr
        self.stopping = False
        self._tg: anyio.abc.TaskGroup | None = None

    async def start(self, tg: anyio.abc.TaskGroup) -> _ServerRun:
        """Start the upstream once (spawn, handshake within ``--start-timeout``); raises if
        that fails. The client then lives in ``tg`` until its server is lost or the proxy stops."""
        self._tg = tg
        run = _ServerRun(self._lost)
        try:
            return await self._start(run)
        except Exception as e:  # noqa: BLE001 - one line for the user, never a traceback
            raise UpstreamStartError(self._failure_text(run, e)) from None

    async def _start(self, run: _ServerRun) -> _ServerRun:
        assert self._tg is not None
        target = _server_process(self.params, run) if self.params is not None else self.url
        run.client = self.make_client(target)
        await self._tg.start(self._hold, run)
        return run

    async def _hold(self, run: _ServerRun, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Open the client (its handshake bounded by ``--start-timeout``: a server that never
        answers `initialize` must not keep anyone waiting for ever), then keep it open until its
        server is lost or the proxy stops. A failure before the handshake completed goes to the
        starter; after it, the server is gone either way and the supervisor reports it."""
        try:
            with anyio.CancelScope() as scope:
                if self.timeout is not None:
                    scope.deadline = anyio.current_time() + self.timeout
                async with run.client:
                    if run.lost.is_set():
                        raise _StartFailed(f"the server {self._exit_text(run)} during the MCP handshake")
                    scope.deadline = math.inf
                    run.live, run.up_since = True, anyio.current_time()
                    run.lane.bind(run.client)
                    register_lane(run.client, run.lane)
                    try:
                        task_status.started()
                        await run.lost.wait()
                    finally:
                        forget_lane(run.client)
            if not run.live:
                raise _StartFailed(f"the server did not complete the MCP handshake within {self.timeout:g} s")
        except Exception:
            if not run.live:
                raise
            # closing the client of a dead server failed: it is gone all the same
        finally:
            if run.live and not run.lost.is_set():
                self._lost(run)  # the client ended some other way: the supervisor must hear of it
            run.stopped.set()

    def stop(self) -> None:
        """The proxy is stopping (a signal): no more restarts; requests waiting for one get an error."""
        if not self.stopping:
            self.stopping = True
            self.proxy.upstream_stopping()

    def _lost(self, run: _ServerRun) -> None:
        """The server's output ended (it exited, crashed or was killed). Called by the transport
        before the session fails the requests in flight, so the proxy knows first: requests from
        now on wait for the restart (or fail at once if there will be none)."""
        if run.lost.is_set():
            return
        run.lost.set()
        if self.stopping or not run.live:
            return  # our own shutdown, or a start that failed (the starter counts that)
        run.died = True
        run.next_attempt = self.budget.on_death(anyio.current_time() - run.up_since)
        self.proxy.upstream_lost(restarting=run.next_attempt is not None)

    async def supervise(self, run: _ServerRun) -> None:
        """Watch the command upstream; each time its server dies, report it and start it again,
        until ``--max-restarts`` restarts in a row are used up."""
        current: _ServerRun | None = run
        while current is not None:
            await current.lost.wait()
            with anyio.CancelScope(shield=True):  # (bounded: the SDK bounds every wait in a stop)
                await current.stopped.wait()  # the old process is reaped: its exit code is known
            if not current.died:
                return  # it was stopped by our own shutdown
            what = f"the server {self._exit_text(current)}"
            if current.next_attempt is None:
                self._give_up(what)  # said even if the proxy is stopping by now: it happened before
                return
            if self.stopping:
                return
            self._announce(what, current.next_attempt)
            current = await self._restart(current.next_attempt)

    async def _restart(self, attempt: int) -> _ServerRun | None:
        """Start the server again after the backoff; a failed start counts as an attempt.
        Returns the new run (None: given up)."""
        while True:
            await anyio.sleep(self.budget.delay(attempt))
            if self.stopping:
                return None
            run = _ServerRun(self._lost)
            try:
                await self._start(run)
            except Exception as e:  # noqa: BLE001 - reported in one line, then retried or given up
                what = f"restart failed: {self._failure_text(run, e)}"
                nxt = self.budget.on_failed_start()
                if nxt is None:
                    self._give_up(what)
                    return None
                self._announce(what, nxt)
                attempt = nxt
                continue
            if not run.lost.is_set() and not self.stopping:
                await self.proxy.prepare_restarted(run.client)  # pins re-checked before any call
            if not run.lost.is_set() and not self.stopping:  # (else the supervisor sees to it)
                self.proxy.upstream_back(run.client)
                self.report(f"plr proxy: the server is back (pid {getattr(run.process, 'pid', '?')})")
            return run

    def _announce(self, what: str, attempt: int) -> None:
        self.report(f"plr proxy: {what}; restarting it (attempt {attempt} of {self.budget.limit})")

    def _give_up(self, what: str) -> None:
        self.proxy.upstream_given_up()
        n = self.budget.limit
        why = "--max-restarts 0" if n == 0 else f"--max-restarts {n}: {n} restart(s) in a row used up"
        self.report(
            f"plr proxy: {what}; not restarting it ({why}); calls that need the server get an error, "
            "the policy is still enforced"
        )

    @staticmethod
    def _exit_text(run: _ServerRun) -> str:
        """``exited (code 3)``, ``exited (signal SIGKILL)``: how the server's process ended."""
        rc = getattr(run.process, "returncode", None)
        if rc is None:
            return "closed the connection"
        if rc < 0:
            try:
                return f"exited (signal {signal.Signals(-rc).name})"
            except ValueError:
                return f"exited (signal {-rc})"
        return f"exited (code {rc})"

    def _failure_text(self, run: _ServerRun, e: BaseException) -> str:
        """Why a start failed, in one line (the holder has closed the client and reaped the
        process by the time its failure reaches the starter, so the exit code is known)."""
        if isinstance(e, UpstreamStartError):
            return str(e)
        if getattr(run.process, "returncode", None) is not None:
            return f"the server {self._exit_text(run)} during the MCP handshake"
        return describe_failure(e)


@asynccontextmanager
async def _server_process(params: StdioServerParameters, run: _ServerRun) -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's ``stdio_client`` (mcp 2.3.0) with two additions a supervisor needs: it hands
    ``run`` the process (its pid and exit code, for the messages), and it tells ``run`` when the
    server's output ends, *before* the session hears of it, so a request that arrives from then on
    waits for the restart instead of failing. Spawning (own process group) and stopping (close
    stdin, wait, kill the tree) are the SDK's own functions."""
    from mcp.client import stdio as sdk

    process = await sdk._create_platform_compatible_process(  # noqa: SLF001
        command=await sdk._get_executable_command(params.command),  # noqa: SLF001
        args=params.args,
        env=sdk.get_default_environment() | (params.env or {}),
        errlog=sys.stderr,
        cwd=params.cwd,
    )
    run.process = process
    assert process.stdin is not None and process.stdout is not None, "spawned with pipes"
    stdin_pipe = process.stdin
    lane = run.lane
    lane.attach(stdin_pipe, params.encoding)
    lane.tap(process.stdout, params.encoding)
    # no awaits until the task group is entered, or a cancellation would leak the process
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    shutting_down = False
    writer_done = anyio.Event()

    def ended() -> None:
        if not shutting_down:
            run.output_ended()
        lane.close()  # after output_ended: the fast path's calls get the error the SDK path gives

    async def exit_watcher() -> None:
        """A server whose child keeps its pipes open would never end its output: its own exit is
        the death. Then its process group goes too (children of a crashed server outlive it)."""
        await process.wait()
        if shutting_down:
            return
        ended()
        await read_send.aclose()  # the session fails the requests in flight now, not at a timeout
        _kill_group(process.pid, signal.SIGTERM)
        try:
            await anyio.sleep(1.0)
        finally:
            _kill_group(process.pid, signal.SIGKILL)

    async def stdin_writer() -> None:
        try:
            async with write_recv:
                async for message in write_recv:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await stdin_pipe.send(data.encode(params.encoding, params.encoding_error_handler))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            ended()  # the server stopped reading: the connection is as good as gone
            await read_send.aclose()
        finally:
            writer_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(_read_output, process, params, read_send, ended, lane)
        tg.start_soon(stdin_writer)
        tg.start_soon(exit_watcher)
        try:
            yield read_recv, write_send
        finally:
            shutting_down = True
            with anyio.CancelScope(shield=True):
                read_recv.close()
                write_send.close()
                with anyio.move_on_after(sdk._WRITER_FLUSH_TIMEOUT):  # noqa: SLF001
                    await writer_done.wait()
                await sdk._stop_server_process(process)  # noqa: SLF001
                _kill_group(process.pid, signal.SIGKILL)  # whatever the server left behind
                await sdk._aclose_all(read_recv, write_send, read_send, write_recv)  # noqa: SLF001
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()


async def _read_output(
    process: Any, params: StdioServerParameters, read_send: Any, ended: Callable[[], None], lane: UpstreamLane
) -> None:
    """The server's output, line by line, to the session (``_server_process``); ``ended()`` is
    called before ``read_send`` closes, since that close is the session's cue. An answer to a
    call of the fast path goes to it, never to the session (which did not send that call)."""
    from anyio.streams.text import TextReceiveStream
    from mcp.client import stdio as sdk

    stdout = TextReceiveStream(process.stdout, encoding=params.encoding, errors=params.encoding_error_handler)
    try:
        async with read_send:
            try:
                buffer = ""
                async for chunk in stdout:
                    lines = (buffer + chunk).split("\n")
                    buffer = lines.pop()
                    for line in lines:
                        item = sdk._parse_line(line)  # noqa: SLF001
                        call = lane.take(item.message) if isinstance(item, SessionMessage) else None
                        if call is not None:
                            await call.owner.finish(call, item.message)
                            continue
                        try:
                            await read_send.send(item)
                        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                            return
            finally:
                ended()  # before read_send closes: that is the session's cue
                await sdk._drain_stdout(process)  # noqa: SLF001
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError):
        pass


def _kill_group(pid: int, sig: int) -> None:
    """Signal the server's process group (it was spawned in a session of its own), best effort."""
    if os.name != "posix":
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass
