"""Requests forwarded upstream: on which upstream session, under which deadline, and what the
client gets back.

``Forwarder.send`` sends one request on the front session's own upstream session when it has
one (``--upstream URL`` over HTTP, opened on demand by ``SessionUpstreams``), else on the shared
one (``SharedUpstream``, which waits out a restart), relays its progress to the client, and maps
a failure to a JSON-RPC error (``errors.map_error``). Parameters are rebuilt from the inbound
ones (``rebuild``), never the inbound object: it may carry the 2026-07-28 envelope a
handshake-era upstream rejects.

The deadline (``--upstream-timeout``) is the proxy's own, not the SDK's read timeout: it covers
the write too, restarts on progress, and stands still while a human answers an elicitation the
upstream server asked through the proxy (``Deadlines.human_wait``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter

from .errors import UpstreamAbandoned, UpstreamTimeout, map_error, secs
from .options import Background
from .sessions import FrontSessions
from .upstream import SharedUpstream

if TYPE_CHECKING:
    from .session_upstreams import SessionUpstreams

__all__ = ["RAW", "Deadlines", "Forwarder", "rebuild"]

# Results the proxy only passes on are kept as the wire dict: the SDK has validated them against
# the upstream's protocol version, and the front validates them again for the client's version.
RAW: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def _clean_meta(meta: Any) -> dict[str, Any] | None:
    """The inbound ``_meta`` minus what the front connection owns (envelope, progress token)."""
    if not meta:
        return None
    out = {
        k: v
        for k, v in dict(meta).items()
        if k != "progressToken"
        and k != "progress_token"
        and not k.startswith("io.modelcontextprotocol/")
        and k not in ("traceparent", "tracestate", "baggage")
    }
    return out or None


def rebuild(params: Any, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Wire dict of inbound params without front-owned fields (never the inbound object itself)."""
    if params is None:
        return {}
    d = params.model_dump(by_alias=True, mode="json", exclude_none=True)
    meta = _clean_meta(d.pop("_meta", None))
    for k in ("inputResponses", "requestState", "task", *drop):
        d.pop(k, None)
    if meta:
        d["_meta"] = meta
    return d


class _Timer:
    """The deadline of one upstream request (``--upstream-timeout``): a budget of seconds that
    runs while the request is written and answered, restarts on progress, and stands still while
    a human answers an elicitation the upstream server asked through the proxy."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.scope: anyio.CancelScope | None = None
        self.budget = timeout or 0.0
        self.paused = False

    def restart(self) -> None:
        if self.timeout is None or self.scope is None:
            return
        if self.paused:
            self.budget = self.timeout
        else:
            self.scope.deadline = anyio.current_time() + self.timeout

    def pause(self) -> None:
        if self.paused or self.scope is None:
            return
        self.budget = max(0.0, self.scope.deadline - anyio.current_time())
        self.scope.deadline = math.inf
        self.paused = True

    def resume(self) -> None:
        if not self.paused or self.scope is None:
            return
        self.paused = False
        self.scope.deadline = anyio.current_time() + self.budget


def session_forgotten() -> MCPError:
    """The answer to a request the upstream failed because it no longer knows its session."""
    return MCPError(
        code=types.INTERNAL_ERROR,
        message="plr: the upstream MCP server no longer knows this session (did it restart?); "
        "the request failed and was not re-sent; the next request opens a new upstream session",
    )


class Deadlines:
    """The deadlines of the upstream requests in flight, and the human waits that stop them all."""

    def __init__(self) -> None:
        self._timers: set[_Timer] = set()
        self._human_waits = 0  # relayed elicitations a human is answering (timers stand still)
        # other keepers of deadlines (the fast path's calls): ``pause()`` and ``resume()`` with ours
        self.listeners: list[Any] = []

    @property
    def human_waiting(self) -> bool:
        return self._human_waits > 0

    def start(self, timer: _Timer, scope: anyio.CancelScope) -> None:
        timer.scope = scope
        if timer.timeout is None:
            return
        self._timers.add(timer)
        if self._human_waits:
            timer.paused = True
        else:
            scope.deadline = anyio.current_time() + timer.timeout

    def stop(self, timer: _Timer) -> None:
        self._timers.discard(timer)

    @contextmanager
    def human_wait(self) -> Iterator[None]:
        """While a human answers, no upstream request's deadline runs (the server is waiting too)."""
        self._human_waits += 1
        if self._human_waits == 1:
            for t in list(self._timers):
                t.pause()
            for keeper in self.listeners:
                keeper.pause()
        try:
            yield
        finally:
            self._human_waits -= 1
            if self._human_waits == 0:
                for t in list(self._timers):
                    t.resume()
                for keeper in self.listeners:
                    keeper.resume()


class Forwarder:
    """Sends the clients' requests upstream."""

    def __init__(
        self,
        *,
        timeout: float | None,
        sessions: FrontSessions,
        shared: SharedUpstream,
        own: SessionUpstreams,
        deadlines: Deadlines,
        tasks: Background,
    ) -> None:
        self.timeout = timeout  # --upstream-timeout (None: wait for ever)
        self.sessions = sessions
        self.shared = shared
        self.own = own
        self.deadlines = deadlines
        self.tasks = tasks

    async def send(
        self,
        ctx: Any,
        request: Any,
        result_type: Any,
        progress: bool = False,
        *,
        open_session: bool = True,
    ) -> Any:
        """Forward one request upstream: on the front session's own upstream session when it has
        one (opened now if ``open_session``), else on the shared one."""
        link = self.sessions.link_of(ctx)
        if link is None:
            with self.sessions.stateless_request(ctx):
                return await self.exchange(ctx, await self.shared.session(), request, result_type, progress)
        with self.sessions.link_request(link, ctx):
            if self.own.enabled and open_session:
                await self.own.ensure(link, ctx)
            session = link.up.session if link.up is not None else await self.shared.session()
            try:
                result = await self.exchange(ctx, session, request, result_type, progress)
            except MCPError:
                if not link.lost:
                    raise
                await self.own.forgot(link)
                raise session_forgotten() from None
        await link.settle()
        return result

    async def reopen_forgotten(self, ctx: Any) -> None:
        """Before a call is decided: when the upstream forgot the front session's own upstream
        session (or that session is the server coming back), open the new one now, its tools
        checked against the pins, so the decision sees what the call would reach."""
        link = self.sessions.link_of(ctx)
        if link is not None and self.own.enabled and (link.lost or link.recheck_pins):
            with link.waiting(ctx):
                await self.own.ensure(link, ctx)

    def client_of(self, ctx: Any) -> Any:
        """The upstream client that serves ``ctx``: its session's own, else the shared one."""
        link = self.sessions.link_of(ctx)
        return link.up if link is not None and link.up is not None else self.shared.client

    async def exchange(self, ctx: Any, session: Any, request: Any, result_type: Any, progress: bool) -> Any:
        """One request on one upstream session, under ``--upstream-timeout``, progress relayed."""
        timeout = self.timeout
        timer = _Timer(timeout)
        cb = None
        if (
            progress
            and ctx.meta
            and (ctx.meta.get("progressToken") is not None or ctx.meta.get("progress_token") is not None)
        ):
            front = ctx.session

            async def cb(p: float, total: float | None, message: str | None) -> None:
                timer.restart()  # a server that reports progress is working, not hanging
                try:
                    await front.report_progress(p, total, message)
                except Exception:  # noqa: BLE001 - progress is best effort
                    pass

        # Our own deadline, not the SDK's read timeout: the SDK starts its clock only once the
        # request is written, so a server that stops reading (a full pipe) would hang the call
        # for ever; ours also covers the write, and stands still while a human answers a relayed
        # elicitation. On expiry the client is answered at once; the SDK tells the upstream server
        # to cancel in the background.
        with anyio.CancelScope() as scope:
            self.deadlines.start(timer, scope)
            try:
                result = await self._request(session, request, result_type, cb, detach=timeout is not None)
            except Exception as e:  # noqa: BLE001
                raise map_error(e, restarting=self.shared.restarting) from None
            finally:
                self.deadlines.stop(timer)
        if scope.cancelled_caught:
            raise UpstreamTimeout(
                code=types.INTERNAL_ERROR,
                message=f"plr: the upstream MCP server did not answer within {secs(timeout or 0)} s "
                "(--upstream-timeout)",
            )
        needs_input = isinstance(result, types.InputRequiredResult) or (
            isinstance(result, dict) and result.get("resultType") == "input_required"
        )
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        if needs_input and not modern:
            # a 2026-07-28 upstream asks for input; a handshake-era client cannot take that result
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message="plr: the upstream server asked for input that cannot be relayed to a 2025-era client",
            )
        if modern and isinstance(result, dict) and "resultType" not in result:
            result["resultType"] = "complete"  # required from 2026-07-28 on; a 2025-era upstream omits it
        return result

    async def _request(self, session: Any, request: Any, result_type: Any, cb: Any, *, detach: bool) -> Any:
        """``session.send_request``, run in the proxy's task group when ``detach``: abandoning it
        (timeout, or the client cancelled) then returns at once, while the SDK's attempt to send
        the upstream server a cancellation (up to 5 s when its input pipe is full) goes on apart."""
        tg = self.tasks.tg
        if not detach or tg is None:
            return await session.send_request(request, result_type, progress_callback=cb)
        # one task per request, spawned without waiting for it to start (a pre-made scope we can
        # cancel even before the task enters it) and an Event instead of a memory stream
        done = anyio.Event()
        box: list[tuple[bool, Any]] = []
        inner = anyio.CancelScope()

        async def run() -> None:
            try:
                with inner:
                    try:
                        box.append((True, await session.send_request(request, result_type, progress_callback=cb)))
                    except Exception as e:  # noqa: BLE001 - handed to the waiting handler
                        box.append((False, e))
            finally:
                done.set()

        tg.start_soon(run)
        try:
            await done.wait()
        finally:
            if not done.is_set():  # abandoned (timeout, or the client cancelled); cancel() formats a repr: not per call
                inner.cancel()
        if not box:  # the task was cancelled (the proxy is shutting down)
            raise UpstreamAbandoned(code=types.INTERNAL_ERROR, message="plr: the upstream request was abandoned")
        ok, value = box[0]
        if not ok:
            raise value
        return value
