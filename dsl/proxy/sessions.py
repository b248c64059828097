"""Front sessions: who is asking, and which client a message from a shared upstream is for.

``FrontSessions`` answers, for each request the front hands the proxy: the session its limits
count against and its audit records name (``session_of``: the one stdio client; over HTTP the
``Mcp-Session-Id``, or identity + client info in the stateless 2026-07-28 era), the caller's
identity (``identity_of``: the bearer token's), and its ``FrontLink`` (a live handshake-era HTTP
session, created on first sight and dropped when the session ends).

It also knows who is waiting on the upstream: each link's requests in flight, the stateless
requests on the shared upstream, the requests the proxy gave up on that the server may still
be working on, and every identity that has called the shared server since it started (a call
that has returned may have left a job running there). From that, ``sole_caller`` and
``answerer`` say which client a server-to-client request of a shared server is for, and only
when that is sure: never a session of another identity than every caller the server has had.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .errors import UpstreamTimeout
from .http import FrontLink

__all__ = ["ABANDONED_WINDOW", "NOT_SUPPORTED", "FrontSessions"]

# how long a request the proxy abandoned (deadline, cancel) keeps the shared server's messages
# from being attributed to another session: a server that ignores the cancellation may still run
ABANDONED_WINDOW = 600.0

# the identity of a caller whose token could not be read: it is nobody else's
_UNKNOWN = object()
_ABSENT = object()  # (no identity noted for a session yet)

# what the SDK's own client answers when it has no callback for a server-to-client request
NOT_SUPPORTED = {
    "elicitation": "Elicitation not supported",
    "sampling": "Sampling not supported",
    "roots": "List roots not supported",
}


class FrontSessions:
    """The clients' sessions as the proxy sees them, and who among them waits on the upstream."""

    def __init__(
        self,
        transport: str,
        *,
        identity: str | None = None,
        tokens: dict[str, str] | None = None,
        on_end: Callable[[FrontLink], None] = lambda link: None,
    ) -> None:
        self.transport = transport
        self.identity = identity  # --identity: everyone's, unless bearer tokens name them
        self.tokens = tokens
        self.on_end = on_end  # a link ended: what it held elsewhere (subscriptions) is let go
        self.process_session = uuid.uuid4().hex
        self.front_session: Any = None  # last handshake-era ServerSession (stdio relay target)
        self.front_version: str | None = None  # ... and the protocol version it speaks
        self.links: dict[str, FrontLink] = {}  # HTTP front: live handshake-era sessions by Mcp-Session-Id
        # HTTP with a shared upstream: stateless requests waiting on it (they have no FrontLink, but a
        # server-to-client request could be meant for them)
        self.stateless_inflight = 0
        # requests the proxy gave up on (timeout, client cancel) that the shared server may still be
        # working on, by front session key ("" for stateless): its messages could be theirs
        self._abandoned: dict[str, float] = {}
        # every identity that has sent the shared server a request since it (re)started, and each
        # live link's identity: a message the server sends on its own is only ever relayed to a
        # session whose identity is the only one the server has served
        self._callers: set[object] = set()
        self._link_identity: dict[str, object] = {}

    # -- who asks ----------------------------------------------------------------------------

    def session_of(self, ctx: Any) -> str:
        if self.transport == "stdio":
            return self.process_session
        conn = getattr(ctx.session, "_connection", None)
        sid = getattr(conn, "session_id", None)
        if sid:
            return str(sid)  # a session the SDK knows (it answers an unknown id with 404)
        # stateless 2026-07-28 era: the client's identity plus the client info it declares. Never
        # an Mcp-Session-Id header the SDK did not vouch for: that would let a caller spend (and
        # sign the audit records of) another session; the prefix keeps the two kinds apart.
        cp = ctx.session.client_params
        info = cp.client_info if cp is not None else None
        who = f"{info.name}/{info.version}" if info is not None else "anonymous"
        return f"stateless:{self.identity_of(ctx) or ''}|{who}"

    def identity_of(self, ctx: Any) -> str | None:
        tokens = self.tokens
        if tokens is not None:
            from .http import identity_for_header

            req = getattr(ctx, "request", None)
            ident = identity_for_header(tokens, req.headers.get("authorization") if req is not None else None)
            if ident is None:  # the HTTP gate lets no such request through; fail closed regardless
                raise PermissionError("request without a known bearer token")
            return ident
        return self.identity

    # -- the sessions ----------------------------------------------------------------------------

    def remember(self, ctx: Any) -> None:
        """Every request: the stdio client's session becomes the relay target; an HTTP session
        becomes a link (so broadcasts reach it)."""
        if self.transport == "stdio" and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self.front_session = ctx.session
            self.front_version = ctx.protocol_version
        else:
            self.link_of(ctx)

    def link_of(self, ctx: Any) -> FrontLink | None:
        """The HTTP front session of ``ctx`` (created on first sight, dropped when the session ends);
        None on stdio and for stateless 2026-07-28 requests."""
        if self.transport == "stdio" or ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        conn = getattr(ctx.session, "_connection", None)
        key = getattr(conn, "session_id", None)
        if conn is None or not key:
            return None
        link = self.links.get(key)
        if link is None:
            link = self.links[key] = FrontLink(str(key), ctx.session)
            # DELETE, a closed transport, the idle timeout and shutdown all unwind this stack
            conn.exit_stack.push_async_callback(self._end, link)
        return link

    async def _end(self, link: FrontLink) -> None:
        """A front session ended: forget it and close its own upstream session, if it has one."""
        if self.links.get(link.key) is link:
            del self.links[link.key]
            self._link_identity.pop(link.key, None)  # its identity stays among the callers
        self.on_end(link)
        await link.close()

    async def close_all(self) -> None:
        """Shutdown: close every front session's upstream session (each sends the upstream a DELETE)."""
        links = list(self.links.values())
        self.links.clear()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for link in links:
                    tg.start_soon(link.close)

    def all_fronts(self) -> list[Any]:
        """The ServerSession of every client (a notification of the proxy's own goes to each)."""
        if self.transport == "stdio":
            return [self.front_session] if self.front_session is not None else []
        return [link.session for link in self.links.values()]

    def live(self) -> list[FrontLink]:
        return [x for x in self.links.values() if not x.ended]

    # -- who waits on the upstream -------------------------------------------------------------

    def _caller(self, ctx: Any) -> object:
        """The identity a request counts as on the shared server (never raises)."""
        try:
            return self.identity_of(ctx)
        except Exception:  # noqa: BLE001 - a request the gate should not have let through
            return _UNKNOWN

    def upstream_restarted(self) -> None:
        """A new server process has no job of any earlier caller: it starts with no callers."""
        if self.stateless_inflight:
            return  # whose they are is not known: keep every caller
        waiting = [x.key for x in self.links.values() if x.inflight]
        self._callers = {self._link_identity.get(key, _UNKNOWN) for key in waiting}
        self._abandoned.clear()

    @contextmanager
    def stateless_request(self, ctx: Any) -> Iterator[None]:
        """A request with no link (stdio, stateless 2026-07-28) waits on the shared upstream."""
        self._callers.add(self._caller(ctx))
        self.stateless_inflight += 1
        try:
            yield
        except BaseException as e:
            self._note_abandoned("", e)
            raise
        finally:
            self.stateless_inflight -= 1

    # the same bookkeeping for a call of the fast path (fast_calls.py: stdio, the shared upstream)
    def fast_call_started(self) -> None:
        self._callers.add(self.identity)
        self.stateless_inflight += 1

    def fast_call_ended(self) -> None:
        self.stateless_inflight -= 1

    def fast_call_abandoned(self) -> None:
        self._abandoned[""] = time.monotonic()  # as _note_abandoned("", ...) after a timeout or cancel

    @contextmanager
    def link_request(self, link: FrontLink, ctx: Any) -> Iterator[None]:
        """A request of ``link`` waits on the upstream: relays for this session ride its stream meanwhile."""
        caller = self._link_identity.get(link.key, _ABSENT)
        if caller is _ABSENT:  # (asked once a session: it cannot change, the session is its owner's)
            caller = self._link_identity[link.key] = self._caller(ctx)
        self._callers.add(caller)
        with link.waiting(ctx):
            try:
                yield
            except BaseException as e:
                self._note_abandoned(link.key, e)
                raise

    def _note_abandoned(self, key: str, e: BaseException) -> None:
        """Remember a request the proxy stopped waiting for (its deadline, or the client cancelled)
        while the server may still be working on it: what that server sends next may be that
        request's, so it must not be taken for another session's (``sole_caller``)."""
        if isinstance(e, (UpstreamTimeout, anyio.get_cancelled_exc_class())):
            self._abandoned[key] = time.monotonic()

    def sole_caller(self) -> FrontLink | None:
        """On a shared upstream over HTTP, the one front session whose request the server can be
        working on now, or None when that is not sure: several sessions (or a stateless caller)
        in flight, another caller's request abandoned in the last ``ABANDONED_WINDOW`` s, or
        another identity among the server's callers since it started (a call of theirs that
        returned may have left a job running that speaks now)."""
        waiting = [x for x in self.links.values() if x.inflight and not x.ended]
        if len(waiting) != 1 or self.stateless_inflight:
            return None
        if self._callers - {self._link_identity.get(waiting[0].key, _UNKNOWN)}:
            return None
        now = time.monotonic()
        for key, at in list(self._abandoned.items()):
            if now - at > ABANDONED_WINDOW:
                del self._abandoned[key]
            elif key != waiting[0].key:
                return None
        return waiting[0]

    def answerer(self, link: FrontLink | None, kind: str, method: str) -> tuple[Any, Any] | types.ErrorData:
        """Who answers a server-to-client request (``link``: the session whose own upstream session
        asks; None: the shared upstream asks): (ServerSession, related request id), or an error."""
        if link is not None:
            if link.ended:
                return types.ErrorData(code=types.INVALID_REQUEST, message="plr: the client session has ended")
            return link.route()
        if self.transport == "stdio":
            s = self.front_session
            if s is None or not s.can_send_request:
                return types.ErrorData(code=types.INVALID_REQUEST, message=NOT_SUPPORTED[kind])
            return s, None
        sole = self.sole_caller()
        if sole is not None:
            return sole.route()
        w = len([x for x in self.links.values() if x.inflight])
        n = w + self.stateless_inflight
        who = f"{n} client sessions have requests" if n else "no client session has a request"
        if w == 1 and not self.stateless_inflight:
            who = ("more than one identity has used this server (a job of another may be asking) "
                   "or a request another client abandoned may still be running, and a client session has one")  # fmt: skip
        return types.ErrorData(
            code=types.INVALID_REQUEST,
            message=f"plr: {method} not relayed: {who} in flight on this shared upstream server, "
            "so which client should answer is ambiguous",
        )
