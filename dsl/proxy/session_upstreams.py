"""One upstream session per front session (``--listen`` with ``--upstream URL``).

As without the proxy, each handshake-era client gets its own session with the upstream server,
so the server's notifications and requests for that client are relayed to it alone. Sessions are
opened on a client's first request that needs one, within ``--max-sessions`` (and
``--max-sessions-per-identity``): beyond that the request gets a JSON-RPC error, never a hang.
When the upstream answers 404 to a session's id it forgot the session (it restarted, or expired
it): the session is dropped, the next request opens a new one, and the tools of that server are
checked against the pins before any call can reach it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError

from .errors import short, why_failed
from .http import FrontLink
from .options import Background

__all__ = ["SessionUpstreams"]


class SessionUpstreams:
    """Opens, counts and drops the front sessions' own upstream sessions."""

    def __init__(
        self,
        *,
        max_sessions: int,
        max_per_identity: int,
        start_timeout: float | None,
        identity_of: Callable[[Any], str | None],
        callbacks: Callable[[FrontLink], dict[str, Any]],
        recheck: Callable[[Any], Awaitable[None]],
        notify: Callable[[Any, Any], Awaitable[None]],
        tasks: Background,
        report: Callable[[str], None],
    ) -> None:
        self.max_sessions = max_sessions
        self.max_per_identity = max_per_identity  # 0: no share
        self.start_timeout = start_timeout
        self.identity_of = identity_of  # of a request context
        self.callbacks = callbacks  # a link's upstream client's callbacks (relay to that session)
        self.recheck = recheck  # a returned server's tools, checked against the pins
        self.notify = notify  # (session, notification), best effort
        self.tasks = tasks
        self.report = report
        # builds an unentered mcp.Client for one front session (``make(on_lost, **callbacks)``);
        # None: every front session shares the one upstream client
        self.make_client: Callable[..., Any] | None = None
        # per-session upstream clients open or opening, by identity
        self._open_by_identity: dict[str | None, int] = {}

    @property
    def enabled(self) -> bool:
        return self.make_client is not None

    async def ensure(self, link: FrontLink, ctx: Any) -> None:
        """The front session's own upstream session, open: a forgotten one dropped first, a
        missing one opened."""
        if link.lost:
            await self.forgot(link)
        if link.up is None:
            await self.open(link, self.identity_of(ctx))

    async def forgot(self, link: FrontLink) -> None:
        """The upstream answered 404 to this front session's upstream session id (it restarted or
        expired the session): drop that session, so the next request opens a new one, as the spec
        asks of a client; tell the front session its tools may differ. What the old session held
        upstream (subscriptions, log level) is not carried over."""
        async with link.opening:
            if not link.lost:
                return  # another request of this session got here first
            self.report(
                f"plr proxy: the upstream server forgot the session of client session {link.key[:12]}; "
                "a new one is opened for its next request"
            )
            await link.drop()
            link.recheck_pins = True
        self.tasks.spawn(self.notify, link.session, types.ToolListChangedNotification())

    async def open(self, link: FrontLink, identity: str | None) -> None:
        """Open the front session's own upstream session, within the session quotas."""
        async with link.opening:
            if link.up is not None:  # opened meanwhile, prepared (pins re-checked) before it was
                link.recheck_pins = False
                return
            if link.ended:
                raise MCPError(code=types.INTERNAL_ERROR, message="plr: this session has ended")
            self._check_quota(link, identity)
            assert self.make_client is not None
            try:
                client = self.make_client(link.loss_reporter(), **self.callbacks(link))
                # given back by _closed when the client's task ends
                self._open_by_identity[identity] = self._open_by_identity.get(identity, 0) + 1
                await link.open(
                    client,
                    self.tasks.tg,
                    self.start_timeout,
                    functools.partial(self._closed, identity),
                    # a server that came back may have changed while it was away: its tools are
                    # checked against the pins before any request can reach it
                    prepare=self.recheck if link.recheck_pins else None,
                )
                link.recheck_pins = False
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as e:  # noqa: BLE001
                self.report(f"plr proxy: cannot open an upstream session: {why_failed(e)}")
                raise MCPError(
                    code=types.INTERNAL_ERROR,
                    message=f"plr: cannot open a session with the upstream MCP server: {why_failed(e)}",
                ) from None

    def _check_quota(self, link: FrontLink, identity: str | None) -> None:
        """Raise the JSON-RPC error of a refused session: ``--max-sessions`` are open, or this
        identity holds its ``--max-sessions-per-identity`` share."""
        limit = self.max_sessions
        if sum(self._open_by_identity.values()) >= limit:
            self.report(
                f"plr proxy: refused an upstream session to client session {link.key[:12]}: "
                f"{limit} are open (--max-sessions {limit})"
            )
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message=f"plr: too many sessions: the proxy already holds {limit} upstream sessions "
                f"(--max-sessions {limit}); end a session or try again later",
            )
        share = self.max_per_identity
        if share and self._open_by_identity.get(identity, 0) >= share:
            who = f"identity {short(identity, 80)}" if identity is not None else "the anonymous identity"
            self.report(
                f"plr proxy: refused an upstream session to client session {link.key[:12]}: {who} "
                f"holds {share} (--max-sessions-per-identity {share})"
            )
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message=f"plr: too many sessions for {who}: it already holds {share} upstream sessions "
                f"(--max-sessions-per-identity {share}); end one of them first",
            )

    def _closed(self, identity: str | None) -> None:
        left = self._open_by_identity.get(identity, 0) - 1
        if left > 0:
            self._open_by_identity[identity] = left
        else:
            self._open_by_identity.pop(identity, None)
