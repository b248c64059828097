"""Upstream -> front: the server's notifications and server-to-client requests, relayed to the
client they are for, and resource subscriptions on a shared server.

Who hears what (``Relay``): on stdio, the one client. Over HTTP with a shared upstream (a command
after ``--``, or a 2026-07-28 upstream), notifications about the server (``list_changed``) go to
every live handshake-era session, ``resources/updated`` to the sessions that subscribed to that
URI, anything else (a log message) and server-to-client requests (elicitation, sampling, roots)
only to the one session with a request in flight, and to nobody when that is not sure
(``FrontSessions.sole_caller``). Over HTTP with ``--upstream URL`` each front session's own
upstream session relays to that session only. Progress is relayed per request
(``Forwarder.exchange``).

``Subscriptions`` keeps, on a shared upstream over HTTP, who subscribed to which resource, and
forwards only the first subscribe and the last unsubscribe of a URI, so one session leaving does
not unsubscribe the others; a restarted server is subscribed again.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata

from .errors import secs, short, why
from .forwarding import Deadlines
from .http import FrontLink
from .options import Background
from .sessions import NOT_SUPPORTED, FrontSessions
from .upstream import SharedUpstream

__all__ = ["RELAY_SEND_TIMEOUT", "Relay", "Subscriptions", "notify_quietly"]

RELAY_SEND_TIMEOUT = 5.0  # seconds a relayed notification may wait on one client


async def notify_quietly(session: Any, notification: Any, related: Any = None) -> None:
    """Send a notification to one client; bounded: a client that stopped reading must not stall
    the relay for every other session."""
    with anyio.move_on_after(RELAY_SEND_TIMEOUT):
        try:
            await session.send_notification(notification, related_request_id=related)
        except Exception:  # noqa: BLE001 - the front may be gone; relay is best effort
            pass


class Subscriptions:
    """Who subscribed to which resource on a shared upstream over HTTP (by front session key)."""

    def __init__(
        self,
        *,
        links: Mapping[str, FrontLink],
        shared: SharedUpstream,
        timeout: float | None,
        tasks: Background,
        report: Callable[[str], None],
    ) -> None:
        self.links = links  # the live front sessions by key
        self.shared = shared
        self.timeout = timeout  # --upstream-timeout
        self.tasks = tasks
        self.report = report
        self._subscribers: dict[str, set[str]] = {}
        self._subscribing: dict[str, anyio.Lock] = {}  # one (un)subscribe of a URI at a time

    def holders(self, uri: str) -> set[str]:
        return self._subscribers.get(uri, set())

    async def change(self, link: FrontLink, uri: str, subscribe: bool, forward: Callable[[], Awaitable[Any]]) -> None:
        """``link`` (un)subscribes ``uri``; ``forward()`` sends the request upstream, which happens
        for the first subscriber and the last unsubscriber only."""
        lock = self._subscribing.setdefault(uri, anyio.Lock())
        try:
            async with lock:
                holders = self._subscribers.get(uri, set())
                if subscribe:
                    if link.ended:
                        return
                    if not holders:
                        await forward()  # raises: nothing recorded
                    if link.ended:  # it ended meanwhile: hold nothing for it
                        if not self._subscribers.get(uri):
                            self.tasks.spawn(self._unsubscribe_quietly, uri)
                        return
                    self._subscribers.setdefault(uri, set()).add(link.key)
                    link.subscriptions.add(uri)
                elif link.key in holders:  # an unsubscribe of what this session never held is a no-op
                    if holders == {link.key}:
                        await forward()
                        self._subscribers.pop(uri, None)
                    else:
                        holders.discard(link.key)
                    link.subscriptions.discard(uri)
        finally:  # a lock per URI only while it is held or awaited, not for every URI ever named
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._subscribing.pop(uri, None)

    def forget(self, link: FrontLink) -> None:
        """A front session ended: it holds nothing any more; a URI nobody holds is unsubscribed."""
        for uri in list(link.subscriptions):
            holders = self._subscribers.get(uri)
            if holders is not None:
                holders.discard(link.key)
                if not holders:
                    del self._subscribers[uri]
                    self.tasks.spawn(self._unsubscribe_quietly, uri)
        link.subscriptions.clear()

    async def _unsubscribe_quietly(self, uri: str) -> None:
        """The last subscriber of ``uri`` left: tell the shared server (best effort, bounded)."""
        with anyio.move_on_after(self.timeout or RELAY_SEND_TIMEOUT):
            try:
                session = await self.shared.session()
                req = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri))
                await session.send_request(req, types.EmptyResult)
            except Exception:  # noqa: BLE001 - the server or the proxy may be going away
                pass

    async def resubscribe(self, client: Any) -> None:
        """A restarted server: subscribe it to what the sessions had subscribed to (a URI it
        refuses is reported and dropped)."""
        for uri in list(self._subscribers):
            try:
                with anyio.fail_after(self.timeout):
                    req = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
                    await client.session.send_request(req, types.EmptyResult)
            except Exception as e:  # noqa: BLE001
                self.report(f"plr proxy: could not subscribe the restarted server to {short(uri, 200)} ({why(e)})")
                for key in self._subscribers.pop(uri, set()):
                    link = self.links.get(key)
                    if link is not None:
                        link.subscriptions.discard(uri)


class Relay:
    """Relays what the upstream sends to the client it is for."""

    def __init__(
        self,
        *,
        sessions: FrontSessions,
        subscriptions: Subscriptions,
        deadlines: Deadlines,
        own_upstreams: Callable[[], bool],
        answer_timeout: float,
        tasks: Background,
        report: Callable[[str], None],
        tools_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.tools_changed = tools_changed  # the shared server said its tools changed: compare them with the policy
        self.subscriptions = subscriptions
        self.deadlines = deadlines  # stood still while a client answers a relayed request
        self.own_upstreams = own_upstreams  # whether front sessions have upstream sessions of their own
        self.answer_timeout = answer_timeout  # --approval-timeout: how long a client may take to answer
        self.tasks = tasks
        self.report = report

    # -- notifications -------------------------------------------------------------------------

    def notify_all(self, notification: Any) -> None:
        """A notification of the proxy's own (a reload changed the hidden tools) to every client."""
        for s in self.sessions.all_fronts():
            self.tasks.spawn(notify_quietly, s, notification)

    def _relayable(self, message: Any) -> bool:
        """Whether an upstream message is a notification to relay (a malformed one is reported)."""
        if isinstance(message, Exception):
            self.report(f"plr proxy: ignored a malformed message from the upstream server: {why(message)}")
            return False
        if isinstance(message, (types.ProgressNotification, types.CancelledNotification)):
            return False  # progress is relayed per request (token mapping); cancellation is per connection
        return isinstance(message, types.ServerNotification) or isinstance(message, types.Notification)

    async def upstream_message(self, message: Any) -> None:
        """``message_handler`` of the shared upstream client."""
        if not self._relayable(message):
            return
        if isinstance(message, types.ToolListChangedNotification):
            self.tools_changed()
        if self.sessions.transport == "stdio":
            front = self.sessions.front_session
            if front is not None:
                await notify_quietly(front, message)
        elif not self.own_upstreams():
            await self._relay_to(self._shared_audience(message), message)
        # else: each session has its own upstream session; the shared one serves only stateless
        # 2026-07-28 requests, which have no channel for notifications

    def _shared_audience(self, message: Any) -> list[FrontLink]:
        """Who hears a notification of the one server every HTTP session shares. Sessions may be
        different identities, so nothing goes to a session it may not concern: list_changed
        (about the server, not a caller) to every session; resources/updated to the sessions that
        subscribed to that URI; anything else (a log message) only to the one session with a
        request in flight, and to nobody when that is not known."""
        links = self.sessions.live()
        changed = (types.ToolListChangedNotification, types.ResourceListChangedNotification,
                   types.PromptListChangedNotification)  # fmt: skip
        if isinstance(message, changed):
            return links
        if isinstance(message, types.ResourceUpdatedNotification):
            holders = self.subscriptions.holders(str(message.params.uri))
            return [x for x in links if x.key in holders]
        sole = self.sessions.sole_caller()
        return [sole] if sole is not None else []

    async def _link_message(self, link: FrontLink, message: Any) -> None:
        """``message_handler`` of a front session's own upstream client: to that session only."""
        if self._relayable(message):
            await self._relay_to([link], message)

    async def _relay_to(self, links: list[FrontLink], message: Any) -> None:
        # every relay is registered before the first await (see FrontLink.begin_relay)
        plans = [(link, *link.route(), link.begin_relay()) for link in links if not link.ended]
        for link, session, related, done in plans:
            try:
                await notify_quietly(session, message, related)
            finally:
                link.end_relay(done)

    # -- server-to-client requests ---------------------------------------------------------------

    async def elicitation(self, context: Any, params: Any, *, link: FrontLink | None = None) -> Any:
        """The upstream server asks the user something (``elicitation/create``)."""
        return await self._ask_front(link, "elicitation", types.ElicitRequest(params=params), types.ElicitResult)

    async def sampling(self, context: Any, params: Any, *, link: FrontLink | None = None) -> Any:
        """The upstream server asks the client's model (``sampling/createMessage``)."""
        tools = params.tools is not None or params.tool_choice is not None
        result = types.CreateMessageResultWithTools if tools else types.CreateMessageResult
        return await self._ask_front(link, "sampling", types.CreateMessageRequest(params=params), result)

    async def roots(self, context: Any, *, link: FrontLink | None = None) -> Any:
        """The upstream server asks for the client's roots (``roots/list``)."""
        return await self._ask_front(link, "roots", types.ListRootsRequest(), types.ListRootsResult)

    def shared_callbacks(self) -> dict[str, Any]:
        """Callbacks of the shared upstream client (stdio, or a command upstream over HTTP)."""
        return {
            "elicitation_callback": self.elicitation,
            "sampling_callback": self.sampling,
            "list_roots_callback": self.roots,
        }

    def link_callbacks(self, link: FrontLink) -> dict[str, Any]:
        """Callbacks of a front session's own upstream client. It declares to the upstream only the
        capabilities this client declared, so the server sees what it would see without the proxy."""

        async def message(m: Any) -> None:
            await self._link_message(link, m)

        return {"message_handler": message, **self.declared_callbacks(link.session.client_capabilities, link)}

    def declared_callbacks(self, caps: types.ClientCapabilities | None, link: FrontLink | None = None) -> dict[str, Any]:
        """The server-to-client callbacks (hence the capabilities the SDK declares upstream) for
        a client that declared ``caps``: exactly those, so the server never believes the client
        can answer what it cannot (server-filesystem would ask for roots and log a failure)."""
        out: dict[str, Any] = {}
        if caps is not None and caps.elicitation is not None:
            out["elicitation_callback"] = functools.partial(self.elicitation, link=link)
        if caps is not None and caps.sampling is not None:
            out["sampling_callback"] = functools.partial(self.sampling, link=link)
            out["sampling_capabilities"] = caps.sampling
        if caps is not None and caps.roots is not None:
            out["list_roots_callback"] = functools.partial(self.roots, link=link)
        return out

    async def _ask_front(self, link: FrontLink | None, kind: str, request: Any, result_type: Any) -> Any:
        """Relay a server-to-client request to the client that should answer it, when it can."""
        target = self.sessions.answerer(link, kind, request.method)
        if isinstance(target, types.ErrorData):
            return target
        session, related = target
        caps = session.client_capabilities
        if caps is None or getattr(caps, kind, None) is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message=NOT_SUPPORTED[kind])
        metadata = ServerMessageMetadata(related_request_id=related) if related is not None else None
        try:
            with self.deadlines.human_wait(), anyio.fail_after(self.answer_timeout):
                return await session.send_request(request, result_type, metadata=metadata)
        except TimeoutError:
            if kind == "elicitation":
                return types.ElicitResult(action="cancel")
            return types.ErrorData(
                code=types.REQUEST_TIMEOUT,
                message=f"plr: the client did not answer {request.method} within {secs(self.answer_timeout)} s",
            )
        except MCPError as e:
            return e.error
        except Exception as e:  # noqa: BLE001
            return types.ErrorData(code=types.INTERNAL_ERROR, message=f"relay failed: {type(e).__name__}")
