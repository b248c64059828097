"""The MCP server the fronts serve (``stdio.py``, ``http.py``): it mirrors what the upstream server
offers, hands ``tools/list`` and ``tools/call`` to ``ToolMethods``, and forwards everything else.

Resources, prompts, completion and the logging level are forwarded with their parameters rebuilt
(``forwarding.rebuild``); ``resources/(un)subscribe`` on a shared upstream over HTTP go through
``Subscriptions``; ``ping`` is answered by the proxy while the upstream server answers too; the
level a client set is kept (``log_level``) so a restarted server is told it again
(``replay_log_level``). Every request is first shown to ``FrontSessions.remember``, so relays
know the client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import NotificationOptions, Server

from .errors import why
from .forwarding import RAW, Forwarder, rebuild
from .relay import Subscriptions
from .session_upstreams import SessionUpstreams
from .sessions import FrontSessions
from .tools import ToolMethods
from .upstream import SharedUpstream

__all__ = ["FrontServer"]

# what an upstream may offer besides tools, forwarded as it is: (capability, method, params, request,
# whether its progress is relayed)
_FORWARDED: tuple[tuple[str, str, Any, Any, bool], ...] = (
    ("resources", "resources/list", types.PaginatedRequestParams, types.ListResourcesRequest, False),
    ("resources", "resources/templates/list", types.PaginatedRequestParams, types.ListResourceTemplatesRequest, False),
    ("resources", "resources/read", types.ReadResourceRequestParams, types.ReadResourceRequest, True),
    ("prompts", "prompts/list", types.PaginatedRequestParams, types.ListPromptsRequest, False),
    ("prompts", "prompts/get", types.GetPromptRequestParams, types.GetPromptRequest, True),
    ("completions", "completion/complete", types.CompleteRequestParams, types.CompleteRequest, False),
)


class FrontServer:
    """Builds the front ``Server`` and holds its handlers for the methods the policy does not govern."""

    def __init__(
        self,
        tools: ToolMethods,
        forwarding: Forwarder,
        *,
        transport: str,
        timeout: float | None,
        report: Callable[[str], None],
        sessions: FrontSessions,
        subscriptions: Subscriptions,
        own: SessionUpstreams,
        shared: SharedUpstream,
    ) -> None:
        self.tools = tools  # tools/list and tools/call
        self.forwarding = forwarding  # everything else
        self.transport = transport
        self.timeout = timeout  # --upstream-timeout
        self.report = report
        self.sessions = sessions
        self.subscriptions = subscriptions
        self.own = own  # the front sessions' own upstream sessions (--upstream URL over HTTP)
        self.shared = shared
        self.log_level: str | None = None  # the last logging/setLevel the server accepted

    def _forwarder(
        self, request_cls: Any, params_cls: Any, result_type: Any, *, progress: bool = False
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def handler(ctx: Any, params: Any) -> Any:
            self.sessions.remember(ctx)
            p = rebuild(params)
            req = request_cls(params=params_cls.model_validate(p)) if (p or params_cls is not None) else request_cls()
            return await self.forwarding.send(ctx, req, result_type, progress=progress)

        return handler

    def _subscription(self, subscribe: bool) -> Callable[[Any, Any], Awaitable[Any]]:
        """resources/(un)subscribe: on a shared upstream over HTTP through ``Subscriptions`` (which
        forwards only the first subscribe and the last unsubscribe of a URI), else forwarded."""
        if subscribe:
            forward = self._forwarder(types.SubscribeRequest, types.SubscribeRequestParams, types.EmptyResult)
        else:
            forward = self._forwarder(types.UnsubscribeRequest, types.UnsubscribeRequestParams, types.EmptyResult)

        async def handler(ctx: Any, params: Any) -> Any:
            self.sessions.remember(ctx)
            link = self.sessions.link_of(ctx)
            if link is None or self.own.enabled:
                return await forward(ctx, params)
            await self.subscriptions.change(link, str(params.uri), subscribe, lambda: forward(ctx, params))
            return types.EmptyResult()

        return handler

    async def _set_level(self, ctx: Any, params: Any) -> types.EmptyResult:
        """logging/setLevel, forwarded; the level the server accepted is kept, so a restarted
        server is told it again (``Proxy.prepare_restarted``)."""
        self.sessions.remember(ctx)
        req = types.SetLevelRequest(params=types.SetLevelRequestParams.model_validate(rebuild(params)))
        result = await self.forwarding.send(ctx, req, types.EmptyResult)
        self.log_level = req.params.level
        return result

    async def replay_log_level(self, client: Any) -> None:
        """Tell a restarted server the log level the clients had set (a failure is reported)."""
        if self.log_level is None:
            return
        try:
            with anyio.fail_after(self.timeout):
                level = types.SetLevelRequest(params=types.SetLevelRequestParams(level=self.log_level))
                await client.session.send_request(level, types.EmptyResult)
        except Exception as e:  # noqa: BLE001
            self.report(f"plr proxy: could not set the restarted server's log level ({why(e)})")

    async def ping(self, ctx: Any, params: Any) -> types.EmptyResult:
        # answered by the proxy, but only while the upstream server answers too
        if self.shared.client is not None and not self.shared.modern:
            # the session's own upstream session if it has one; never opens one for a ping
            await self.forwarding.send(ctx, types.PingRequest(), types.EmptyResult, open_session=False)
        return types.EmptyResult()

    # -- front -> upstream notifications ---------------------------------------------------------

    async def front_initialized(self, ctx: Any, params: Any) -> None:
        """HTTP: a session is known from its handshake on, so broadcasts reach it before its first request."""
        self.sessions.remember(ctx)

    async def front_roots_changed(self, ctx: Any, params: Any) -> None:
        """The client's roots changed: tell the upstream session that serves it (which then asks)."""
        link = self.sessions.link_of(ctx)
        if not self.own.enabled:
            client = self.shared.client
        else:
            client = link.up if link is not None else None
        if client is None:
            return
        try:
            await client.session.send_notification(types.RootsListChangedNotification())
        except Exception:  # noqa: BLE001 - best effort, like every notification
            pass

    # -- the server --------------------------------------------------------------------------------

    def build(self, up: Any) -> tuple[Server[Any], Any]:
        """The front server, mirroring what the upstream server (its client ``up``, None: not
        connected) offers, and its initialization options."""
        caps: types.ServerCapabilities = up.server_capabilities if up is not None else types.ServerCapabilities()
        info = up.server_info if up is not None else None
        from mcp.server.caching import CACHEABLE_METHODS, CacheHint

        server: Server[Any] = Server(
            info.name if info is not None else "plr-proxy",
            # lists depend on the policy (hot reload) and on who asks: never cacheable, never shared
            cache_hints={m: CacheHint(ttl_ms=0, scope="private") for m in CACHEABLE_METHODS},
            version=(info.version if info is not None else "") or "",
            title=info.title if info is not None else None,
            instructions=up.instructions if up is not None else None,
            # Mcp-Param header checks (2026-07-28 HTTP) read the last listing, not a fresh upstream
            # one, and only the tools the policy shows (a hidden tool is checked as an absent one)
            get_tool_input_schema=self.tools.input_schema,
            on_list_tools=self.tools.list_tools,
            on_call_tool=self.tools.call_tool,
            on_ping=self.ping,
        )
        server.add_notification_handler(
            "notifications/roots/list_changed", types.NotificationParams, self.front_roots_changed
        )
        if self.transport != "stdio":
            server.add_notification_handler("notifications/initialized", types.NotificationParams, self.front_initialized)
        self._mirror(server, caps)
        init = server.create_initialization_options(
            NotificationOptions(
                prompts_changed=bool(caps.prompts and caps.prompts.list_changed),
                resources_changed=bool(caps.resources and caps.resources.list_changed),
                tools_changed=True,
            ),
            experimental_capabilities=caps.experimental,
        )
        return server, init

    def _mirror(self, server: Server[Any], caps: types.ServerCapabilities) -> None:
        """Forwarding handlers for what the upstream offers besides tools."""
        for capability, method, params_cls, request_cls, progress in _FORWARDED:
            if getattr(caps, capability) is not None:
                handler = self._forwarder(request_cls, params_cls, RAW, progress=progress)
                server.add_request_handler(method, params_cls, handler)
        if caps.resources is not None and caps.resources.subscribe:
            server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self._subscription(True))
            server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, self._subscription(False))
        if caps.logging is not None:
            server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_level)
