"""``tools/call`` at the ASGI level: the HTTP front (``--listen``) with ``--upstream URL``, without
the SDK's per-request machinery in between.

Through the SDK a call over HTTP crosses the session manager, the transport's memory streams and
message router, the server's dispatcher and handler task, the SSE response's four tasks, then the
upstream ``mcp.Client``'s dispatcher, its transport's writer task and the task of its POST: most of
what the proxy adds to a call. Here the POST that ``RequestIdGate`` has read (for a session's POST
with a small body, straight from the front's protocol once the body is in: ``http.HeldPosts``) is
decided, audited and forwarded by the task that serves it (or, when nothing on the way needs a
wait, already in the protocol's callback that read the body: ``take_now``; the task then only
answers it), and the upstream's answer goes back to the client from that same task (or, for
such a call whose answer is a plain JSON result, from the upstream connection's callback, with
no task at all: ``answer_now``; anything else on the way starts the task there). The upstream request is built by a twin of the session's upstream ``httpx`` client (same
headers, hooks, cookie jar, redirect rule: ``UpstreamWire.bind``) and written by
``raw_transport.RawTransport``, plain HTTP/1.1 on kept-alive sockets of its own, instead of the
connection pool the SDK client shares with its streams.

It is the same call, not a shortcut around the checks. Before anything is decided, the request
must pass every check the SDK makes of it, or it is handed to the SDK path untouched (which then
answers it as it always has): the front's path and method, an era-defining ``MCP-Protocol-Version``
of the handshake era, an ``Mcp-Session-Id`` the SDK's session manager knows, owned by the principal
``TokenGate`` resolved (a session of another identity gets the SDK's 404), a session neither
terminated nor expiring, the Host/Origin/Content-Type checks (``TransportSecurityMiddleware``), the
Accept header, the body limit, and the body validated as the SDK validates it
(``jsonrpc_message_adapter``, then ``validate_client_request`` for the session's protocol version).
It is decided by the same ``Decisions``, recorded by the same audit log before anything is
forwarded (a failure denies: fail closed), and the upstream request is built as the SDK client
builds it (the session's own stamp and ``Mcp-Name`` header, ids from its dispatcher's counter, its
session id, the request ``httpx`` builds, redirects followed as ``stream_within_origin`` follows
them), so the server reads the same bytes. The upstream's answer is read as the SDK's transport reads it (JSON, or an event stream whose
notifications and requests before the answer are handed to that client's dispatcher, as its
transport would hand them: they are relayed, or answered, exactly as on the SDK path), checked and
shaped as the SDK path does, and written to the client as the SDK's transport writes it (the same
event-stream headers and frames, keep-alive pings on a slow call, relays for this call on its own
stream). ``--upstream-timeout`` (standing still while a human answers), a client's
``notifications/cancelled`` (answered ``Request cancelled``, the server told), a session the
upstream forgot (404) and a broken upstream connection give the errors the SDK path gives.

Everything else takes the SDK path, unchanged: every other method and every batch, a call with
``_meta`` or any other parameter, a call that needs a human's approval, a hidden tool under
``default allow``, the first request of a session (its upstream session is opened there), a session
whose upstream session is lost or being re-checked against the pins, the 2026-07-28 era on either
side, a command upstream (one shared server process: relays there need the SDK's bookkeeping), and
every call of a client that can answer the server's own questions (elicitation, sampling, roots).

Where the two paths differ (documented, never a weaker check): a transport failure of the upstream
connection (refused, reset) answers this call ``closed the connection`` and leaves the session's
upstream client open, where the SDK's client transport would die with it; an upstream event stream
that ends before the answer after naming event ids is not resumed (``SSE stream ended without a
response``) where the SDK's client reconnects with ``Last-Event-ID``; a call that times out or is
cancelled also closes its upstream POST; the fast path's requests use a connection of their own
(one more per session upstream); llhttp (``raw_transport``'s parser) refuses some framings of an
upstream answer that the SDK's client reads (both ``Content-Length`` and ``Transfer-Encoding``,
the framing of a smuggled answer; a repeated ``Content-Length``; a folded header; bare line
feeds): such a call is answered ``closed the connection``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from json import JSONEncoder
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import anyio
# (what a call uses is imported here, not in the functions that run for every call: a few µs a call)
import httpx2
import mcp_types as types
import pydantic_core
from mcp.client.streamable_http import DEFAULT_MAX_SSE_EVENT_SIZE, _unfollowed_redirect
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.streamable_http import REQUEST_STREAM_BUFFER_SIZE, EventMessage
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared._httpx_utils import stream_within_origin
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, MCP_PROTOCOL_VERSION_HEADER, encode_header_value
from mcp_types import jsonrpc_message_adapter
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from sse_starlette.event import ensure_bytes

from .audit import encoding_once
from .deciding import ToolCall, new_call_id
from .errors import UpstreamTimeout, map_error, secs
# shortcuts tests/proxy/test_fast_frames.py holds to the SDK's models, shared with the stdio fast path
from .fast_calls import (
    _REQUEST_KEYS,
    _TEXT_KEYS,
    checked_result,
    client_frame,
    plain_call,
    request_parts,
    response_parts,
    server_message,
    trace_context_into,
)
from .forwarding import RAW, _Timer, session_forgotten
from .http import id_key, identity_for_header
from .raw_transport import RawTransport, header_lines, read_body, request_line

if TYPE_CHECKING:
    from .deciding import Decisions
    from .forwarding import Deadlines
    from .options import Background
    from .session_upstreams import SessionUpstreams
    from .sessions import FrontSessions
    from .upstream import SharedUpstream

__all__ = ["HttpFastCalls", "UpstreamWire"]

logger = logging.getLogger("mcp.client.streamable_http")  # the SDK transport's own logger, for its warnings

_PING_INTERVAL = 15.0  # sse_starlette's default, which the SDK's event-stream responses use
# a call answered from the callbacks makes the registrations it needs only once it lasts (pings,
# deadline, the session's idle accounting): most answers of a fast server are in before this
_LASTS = 0.002
_IDLE_NEAR = 1.0  # a session's idle deadline this near: the call is counted in flight at once


def _lasts() -> float:
    """``_LASTS``, or ``PLR_PROXY_LASTS`` seconds (at most 1; for tests that need a call to end
    before it lasts on a busy machine)."""
    try:
        value = float(os.environ.get("PLR_PROXY_LASTS", _LASTS))
    except ValueError:
        return _LASTS
    return value if 0 < value <= 1 else _LASTS


_SEP = "\r\n"


def inert_for_calls(hook: Any) -> Any:
    """Mark an ``httpx`` response hook of a session's upstream client as doing nothing with a
    ``200`` answer to a ``tools/call`` POST, so ``_direct`` may read such an answer without it."""
    hook.plr_inert_for_calls = True
    return hook


class UpstreamWire:
    """What the SDK's streamable HTTP client transport of one front session's upstream client
    knows that a request needs: the URL, the ``httpx`` client (its kept-alive connections, its
    event hooks, its timeouts) and the session id the upstream gave in its ``initialize`` answer."""

    __slots__ = ("url", "http", "session_id", "fast")

    def __init__(self, url: str) -> None:
        self.url = url
        self.http: Any = None
        self.session_id: str | None = None
        self.fast: Any = None  # the client the fast path sends with (``bind``)

    def bind(self, http: Any) -> None:
        """The SDK client's ``httpx`` client is open. The fast path sends with a twin of it: the
        same headers, timeouts, redirect budget, event hooks and cookie jar, so ``httpx`` builds the
        same request and runs the same hooks, but written by ``raw_transport.RawTransport`` (plain
        HTTP/1.1 on kept-alive sockets) instead of the connection pool the SDK shares with its own streams.
        Where that transport would not be the one ``httpx`` picks (https, a proxy from the
        environment, a mounted transport, auth), the fast path sends with the SDK's client itself."""
        self.http = http
        self.fast = http
        try:
            plain = (
                httpx2.URL(self.url).scheme == "http"
                and not any(t is not None for t in http._mounts.values())  # noqa: SLF001 - proxies from the environment
                and http.auth is None
            )
            if plain:
                twin = httpx2.AsyncClient(
                    transport=RawTransport(),
                    headers=http.headers,
                    timeout=http.timeout,
                    follow_redirects=False,
                    max_redirects=http.max_redirects,
                    trust_env=False,
                )
                twin._event_hooks = http._event_hooks  # noqa: SLF001 - the same lists: the same hooks
                twin._cookies = http._cookies  # noqa: SLF001 - the same jar
                self.fast = twin
        except Exception:  # noqa: BLE001 - an httpx without these: the SDK's own client
            self.fast = http

    async def aclose(self) -> None:
        fast, self.fast = self.fast, None
        if fast is not None and fast is not self.http:
            await fast.aclose()

    @inert_for_calls  # (it reads the answer to ``initialize`` only)
    async def on_response(self, response: Any) -> None:
        """An ``httpx`` response hook: the session id, taken where the SDK's transport takes it
        (``_maybe_extract_session_id_from_response``: the answer to ``initialize`` when it is not an
        error, a 202 or a redirect)."""
        request = response.request
        if request.method != "POST" or request.headers.get("mcp-session-id"):
            return
        status = response.status_code
        if status == 202 or status >= 300:
            return
        sid = response.headers.get("mcp-session-id")
        if not sid:
            return
        try:
            import json

            if json.loads(request.content).get("method") != "initialize":
                return
        except Exception:  # noqa: BLE001 - not a JSON-RPC request of the SDK's
            return
        self.session_id = sid


class _Waiting:
    """The fast call as ``FrontLink.inflight`` and ``FrontSessions.link_request`` see a request:
    relays for the session ride its stream (``FrontLink.route``) and its identity is the caller's."""

    __slots__ = ("session", "request_id", "request")

    def __init__(self, session: Any, request_id: Any, request: Any) -> None:
        self.session = session
        self.request_id = request_id
        self.request = request


class _ScopedSession:
    """The front session as a relay to this call's stream sees it: ``ServerSession`` with this
    request's outbound channel (what the SDK builds for each request it handles)."""

    __slots__ = ("_front", "_dispatcher", "_rid", "_call")

    def __init__(self, front: Any, dispatcher: Any, rid: Any, call: _Call) -> None:
        self._front = front
        self._dispatcher = dispatcher
        self._rid = rid
        self._call = call

    @property
    def client_capabilities(self) -> Any:
        return self._front.client_capabilities

    @property
    def protocol_version(self) -> str:
        return str(self._front.protocol_version)

    @property
    def can_send_request(self) -> bool:
        return False  # never asked: a fast call's client declared no capability the server could use

    async def send_notification(self, notification: Any, related_request_id: Any = None) -> None:
        if related_request_id is None:
            await self._front.send_notification(notification)
            return
        data = notification.model_dump(by_alias=True, mode="json", exclude_none=True)
        self._call.relaying()  # streamed to the client as it comes; the answer then follows it
        await self._dispatcher.notify(data["method"], data.get("params"), _related_request_id=self._rid)

    async def send_request(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - see can_send_request
        raise MCPError(code=types.INVALID_REQUEST, message="plr: no back-channel for this request")


class _Reply:
    """The event-stream answer to one POST, written as the SDK's ``EventSourceResponse`` writes it:
    the head when there is something to send, ``: ping`` comments every 15 s while the call waits,
    events, then the end of the body (the last event and the end in one message: the same bytes)."""

    __slots__ = ("send", "headers", "started", "done", "lock", "timer")

    def __init__(self, send: Any, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.send = send
        self.headers = headers
        self.started = False
        self.done = False
        self.lock: anyio.Lock | None = None  # made by the first ping: a ping and the answer never interleave
        self.timer: asyncio.TimerHandle | None = None

    async def _start(self) -> None:
        if not self.started:
            self.started = True
            await self.send({"type": "http.response.start", "status": 200, "headers": self.headers})

    async def event(self, chunk: bytes) -> None:
        """One event now, the answer still to come (a message relayed for the call)."""
        if self.done:
            return
        if self.lock is None:
            self.lock = anyio.Lock()
        async with self.lock:
            if self.done:
                return
            await self._start()
            await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def events(self, chunks: list[bytes]) -> None:
        """The last events of the answer, and its end."""
        self.stop_pings()
        if self.done:
            return
        self.done = True  # (before any await: a ping due now sends nothing)
        lock = self.lock
        if lock is None:
            await self._write(chunks)
            return
        async with lock:
            await self._write(chunks)

    async def _write(self, chunks: list[bytes]) -> None:
        await self._start()
        send = self.send
        for chunk in chunks[:-1]:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": chunks[-1] if chunks else b"", "more_body": False})

    def arm_pings(self, tasks: Background) -> None:
        loop = asyncio.get_running_loop()

        def due() -> None:
            self.timer = None
            if not self.done and tasks.spawn(self._ping):
                self.timer = loop.call_later(_PING_INTERVAL, due)

        self.timer = loop.call_later(_PING_INTERVAL, due)

    def stop_pings(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    async def _ping(self) -> None:
        from sse_starlette.event import ServerSentEvent

        if self.done:
            return
        chunk = ServerSentEvent(comment=f"ping - {datetime.now(timezone.utc)}", sep=_SEP).encode()
        if self.lock is None:
            self.lock = anyio.Lock()
        async with self.lock:
            if self.done:
                return
            try:
                await self._start()
                await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
            except Exception:  # noqa: BLE001 - the client left: the call goes on, as on the SDK path
                pass


class _Call:
    """One fast call on its way through the upstream server."""

    __slots__ = ("scope", "cancelled", "rid", "relayed", "open", "streams", "stream", "streamed", "final_written", "over", "kick")

    def __init__(self, rid: Any) -> None:
        self.rid = rid
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False
        self.relayed = False  # something was relayed on this call's stream
        self.open: Any = None  # () -> streams: make this call's stream at the front (``_forward``)
        self.streams: Any = None  # that stream (send, receive), once something is relayed on it
        self.stream: Any = None  # () -> bool: start the writer of this call's stream (``_forward``)
        self.streamed: anyio.Event | None = None  # set when that writer has ended
        self.final_written = False  # that writer wrote the answer (and the end of the body)
        self.over = False  # the answer is on its way: a late relay starts nothing
        self.kick: Any = None  # () -> None: the call is answered from callbacks: its task takes over

    def relaying(self) -> None:
        """A message is about to be relayed on this call's stream: from now on a writer forwards
        that stream to the client as it comes, as the SDK's ``_run_sse_writer`` drains it, so the
        session's message router never waits on this call. The stream itself is made here: only
        a relay (this method first) sends anything for a fast call's request id, so a call that
        relays nothing, the common one, needs none."""
        self.relayed = True
        if self.kick is not None:
            self.kick()  # (the task answers after the relays, as on the SDK path)
        if self.streams is None and not self.over and self.open is not None:
            self.streams = self.open()
        if self.streamed is None and not self.over and self.stream is not None:
            self.streamed = anyio.Event()
            if not self.stream():
                self.streamed = None


class _Flight:
    """A taken call's registrations while it waits on the upstream (``HttpFastCalls._board``),
    undone by ``_land``: made by the task that answers the call, or by ``answer_now`` in the
    front's callback (then its call's ``kick`` starts that task when the call needs one after all)."""

    __slots__ = ("call", "ckey", "key", "reply", "timer", "scope", "linked", "t0", "idle", "watch", "later")

    def __init__(self, call: _Call, ckey: tuple[str, Any], key: str, reply: _Reply, timer: _Timer) -> None:
        self.call = call
        self.ckey = ckey  # its key in ``HttpFastCalls.calls``
        self.key = key  # its request stream's key in the SDK's transport
        self.reply = reply
        self.timer = timer
        # (made by ``_enlist``; entered by ``_exchange``: its deadline runs from ``_enlist``)
        self.scope: anyio.CancelScope | None = None
        self.linked: Any = None  # ``FrontSessions.link_request``, entered
        self.t0 = 0.0
        self.idle: Any = None  # ``_in_flight``'s, when ``answer_now`` counted the call in flight
        self.watch: asyncio.TimerHandle | None = None  # ``answer_now``'s deadline
        self.later: asyncio.TimerHandle | None = None  # ``answer_now``'s registrations once the call lasts

    def unlink(self, e: BaseException | None) -> None:
        """Leave ``link_request`` (once), with the exception the wait ended with."""
        linked, self.linked = self.linked, None
        if linked is not None:
            if e is None:
                linked.__exit__(None, None, None)
            else:
                linked.__exit__(type(e), e, e.__traceback__)


class HttpFastCalls:
    """Takes the ``tools/call`` POSTs of the HTTP front that need nothing of the SDK."""

    def __init__(
        self,
        *,
        decisions: Decisions,
        sessions: FrontSessions,
        own: SessionUpstreams,
        shared: SharedUpstream,
        timeout: float | None,
        deadlines: Deadlines,
        tasks: Background,
        cacheable: bool,
    ) -> None:
        self.decisions = decisions
        self.sessions = sessions
        self.own = own
        self.shared = shared
        self.timeout = timeout or None  # --upstream-timeout (None: wait for ever)
        self.deadlines = deadlines
        self.tasks = tasks
        # a cache hint on tools/call results would change the answer's shape: the SDK path then
        self.enabled = not cacheable
        self.manager: Any = None  # the SDK's StreamableHTTPSessionManager (``attach``)
        self.path = "/mcp"
        self.calls: dict[tuple[str, Any], _Call] = {}  # (session, ``id_key`` of its id) -> fast call in flight
        self._heads: dict[str, tuple[tuple[bytes, bytes], ...]] = {}  # session -> event-stream head
        self._passed: set[tuple[Any, ...]] = set()  # request headers and settings the SDK's checks passed (``_admitted``)
        self.taken = 0  # calls served here (PLR_PROXY_FAST=report prints it at exit, for tests)
        self.direct = 0  # of which sent and answered without httpx (``_direct``, ``_plain_json``)
        self.held = 0  # of which started from the front's protocol (``http.HeldPosts``)
        self.early = 0  # of which taken in its callback (``take_now``)
        self.now = 0  # of which answered from the upstream connection's callback (``answer_now``)
        self.quick = 0  # of which answered before they lasted: none of ``_enlist``'s registrations made
        self.lasts = _lasts()

    def attach(self, manager: Any, path: str) -> None:
        """The front's SDK app is built: its session manager and endpoint path. A manager that is not
        the one the fast path was written for (stateless, JSON answers, an event store for resuming
        streams) leaves the fast path off."""
        self.path = path
        if (
            manager is None
            or getattr(manager, "stateless", True)
            or getattr(manager, "json_response", True)
            or getattr(manager, "event_store", None) is not None
            or not hasattr(manager, "_server_instances")
            or not hasattr(manager, "_session_owners")
        ):
            return
        self.manager = manager

    # -- the client's POST -----------------------------------------------------------------------

    async def take(self, scope: Any, body: bytes, req: dict[str, Any], sid: str, send: Any, held: bool = False) -> bool:
        """Serve the POST ``body`` (its request ``req`` already parsed by ``RequestIdGate``, its id
        in flight there) here (True), or leave it to the SDK path (False: nothing was done).
        ``held``: started by ``http.HeldPosts``, not through the middleware."""
        if self.manager is None or not self.enabled or req.get("method") != "tools/call":
            return False
        ready = await self._ready(scope, body, sid)
        if ready is None:
            return False
        parsed = self._parsed(body, ready, sid)
        if parsed is None:
            return False
        rid, p, c = parsed
        decisions = self.decisions
        d, us = decisions.decide(c, False)
        if decisions.needs_the_sdk_path(d):
            return False
        # -- from here on the call is ours -----------------------------------------------------
        self.taken += 1
        self.held += held
        call = _Taken(sid, ready, rid, p, d)
        call.result = decisions.record_taken(c, d, us)
        await self.finish(call, scope, send)
        return True

    def take_now(
        self, scope: Any, body: bytes, req: dict[str, Any], sid: str, headers: dict[bytes, bytes] | None = None
    ) -> _Taken | None:
        """``take`` for a POST ``http.HeldPosts`` holds, in the front protocol's callback that read
        its body, when nothing on the way needs a wait: the SDK's header checks passed this set of
        headers before, and the upstream POST can be written at once (``_direct``'s bytes on an
        idle kept-alive connection). Decided, recorded and written upstream before this returns,
        so the server works on the call while the task that answers it (``finish``) starts.
        None: nothing was done (not even decided), and ``take`` runs in that task as for any POST.
        ``req``: ``body`` as ``RequestIdGate.begin`` parsed it, the one parse of it here;
        ``headers``: the request's headers by lower-case name, none repeated, when the front read
        them so (``http.HeldPosts``)."""
        if self.manager is None or not self.enabled or req.get("method") != "tools/call" or not self.timeout:
            return None
        admitted = self._admitted_now(scope, body, sid, headers)
        ready = None if admitted is None else self._servable(admitted, sid)
        if ready is None:
            return None
        wire = ready[3]
        if wire.fast is wire.http:
            return None
        parsed = self._parsed(body, ready, sid, req)
        if parsed is None:
            return None
        rid, p, c = parsed
        session = ready[2].session
        data, http_headers = self._upstream_head(session, wire, p)
        direct = _direct_head(wire.fast, wire.url, http_headers)
        if direct is None:
            return None
        raw = wire.fast._transport  # noqa: SLF001 - the RawTransport it was made with
        key = direct[0]
        conn = raw.idle_conn(key)
        if conn is None:
            return None  # (a new connection is made by the task: ``take``)
        decisions = self.decisions
        d, us = decisions.decide(c, False)
        if decisions.needs_the_sdk_path(d):
            raw.park(key, conn)
            return None
        # -- from here on the call is ours (as in ``take``) --------------------------------------
        self.taken += 1
        self.held += 1
        self.early += 1
        call = _Taken(sid, ready, rid, p, d)
        # nothing below may raise out of here: the caller would take the call a second time
        try:
            call.result = decisions.record_taken(c, d, us)
            if call.result is not None:
                raw.park(key, conn)
                return call
            up_id, frame = self._upstream_frame(session._dispatcher, data)  # noqa: SLF001
            sent = _Sent(up_id, frame, http_headers, key, conn, direct[3])
            data_out = _direct_bytes(direct, frame)
        except BaseException as e:  # noqa: BLE001 - raised in the task, as ``take`` raises it there
            raw.park(key, conn)
            call.failed = e
            return call
        call.sent = sent
        try:
            conn.send(data_out, head_only=False)
        except BaseException as e:  # noqa: BLE001 - raised where the task's own write would raise (``_post``)
            sent.error = e
        return call

    def answer_now(self, call: _Taken, scope: Any, front: Any) -> Any:
        """For a call ``take_now`` wrote upstream: answer it from the callbacks, with no task,
        when all it needs is the upstream's plain JSON answer. The registrations a cancel or a
        relay must find are made now (``_embark``: the calls table, the session's waiting request);
        the rest of what its task would make (``_enlist``: its cancel scope, pings and deadline, and
        the call counted in flight for the session's idle deadline) once it lasts ``_LASTS`` or
        needs its task, so an answer that comes before never makes them (``_unflight`` then moves
        the idle deadline as the end of a counted request would); the upstream connection's callback then
        (``_Conn.on_ready``) reads the answer, and when it is a plain ``200`` JSON result for this
        request, with nothing relayed or pending, the client's answer is written through
        ``front.send`` (the request's ASGI send, run to its end at once: ``front.writable()`` says
        it will not wait). Anything else (an event stream, an error, a relay, a cancel, a ping,
        the deadline or the read timeout, the server stopping) ``front.start()``s the task that
        answers the call as ``finish`` always has, from where the callbacks left it: nothing was
        read off the connection. ``front.free()``: the request's id is no longer in flight
        (``front.send`` calls it as the answer's end goes out; called again when the callbacks
        are done with the call); ``front.abort()`` closes the client's connection;
        ``front.queued()``: the client pipelined another request behind this one;
        ``front.answer(headers, body)``: the whole answer in one write (False: the sends write it).

        Returns the call's "kick" (start its task now, if it has none yet; the front calls it when
        the server stops, so a call answered from callbacks is one uvicorn's shutdown waits for
        and cancels), or None: nothing was done, or the call was boarded (``call.flight``) and the
        task's ``finish`` goes on with it."""
        sent = call.sent
        if sent is None or sent.error is not None or call.result is not None or call.failed is not None:
            return None
        conn = sent.conn
        if conn.writing or self.deadlines.human_waiting:
            return None  # (the task waits for the socket, or for the human)
        transport, link, up, wire, _, version = call.ready
        loop = asyncio.get_running_loop()
        raw = wire.fast._transport  # noqa: SLF001 - the RawTransport it was made with
        session = up.session
        read = sent.timeouts.get("read")  # (httpx's: at most this long between two reads)
        idle = transport.idle_scope if transport._idle_timeout is not None else None  # noqa: SLF001
        counted = None
        if idle is not None and idle.deadline - loop.time() < _IDLE_NEAR:
            counted = self._in_flight(transport)  # (the session must not end before ``lasts`` counts it)
        try:
            flight = self._embark(scope, transport, link, call.rid, _Reply(front.send, self._head(call.sid)))
        except Exception:  # noqa: BLE001 - the task boards it again, and fails as it fails there
            self._out_of_flight(transport, counted)
            return None
        flight.idle = counted
        call.flight = flight
        inf = float("inf")
        deadline = inf

        def enlist() -> None:
            # the rest of ``_board``'s registrations, and the call counted in flight as the SDK's
            # transport counts a request: made once the call lasts (``lasts``) or needs its task
            if flight.later is not None:
                flight.later.cancel()
                flight.later = None
            self._catch_up(flight, transport)

        def leave() -> None:
            flight.call.kick = conn.on_ready = None
            if flight.watch is not None:
                flight.watch.cancel()
                flight.watch = None
            if flight.later is not None:
                flight.later.cancel()
                flight.later = None

        def kick() -> None:
            if flight.call.kick is None:
                return
            leave()
            try:
                enlist()  # (the task finds the call as ``_board`` leaves it)
            except Exception:  # noqa: BLE001 - its task makes them (``finish``)
                logger.exception("plr proxy: a fast call's registrations failed")
            try:
                front.start()
            except Exception:  # noqa: BLE001 - (a closed loop) nothing can answer it: undo it all
                logger.exception("plr proxy: a fast call's task could not start")
                raw.drop(conn)
                self._land(flight, transport)
                self._unflight(transport, flight.idle)
                front.free()
                front.abort()

        def lasts() -> None:
            nonlocal deadline
            flight.later = None
            if flight.call.kick is None:
                return
            if self.deadlines.human_waiting:
                kick()  # (its deadline stands still until the human answers: its task keeps it, as from the start)
                return
            try:
                enlist()
                assert flight.scope is not None
                deadline = flight.scope.deadline
                watch(deadline)
            except Exception:  # noqa: BLE001 - its task answers it, as from the start
                logger.exception("plr proxy: a fast call's registrations failed")
                kick()

        def ready() -> None:
            if flight.call.kick is None:
                return
            answer = conn.answer
            if conn.error is not None or answer is None:
                kick()
            elif not answer.head_done or not answer.done:
                if conn.eof or conn.full or (answer.head_done and not _plain_json(answer)):
                    kick()
            else:
                try:
                    chunk, outcome = self._final_now(call, flight, answer, session, link, version, front)
                except Exception:  # noqa: BLE001 - not one for here: the task reads it again and answers it
                    logger.debug("answering a fast call from its callbacks failed", exc_info=True)
                    chunk = None
                if chunk is None:
                    kick()
                    return
                leave()
                self._done_now(call, flight, raw, transport, chunk, outcome, front)

        def due() -> None:
            # the deadline, or no byte of the answer for the read timeout (as the task's waits)
            flight.watch = None
            if flight.call.kick is None:
                return
            now = loop.time()
            if read is not None and now >= conn.last_read + read:
                conn.error = httpx2.ReadTimeout("timed out reading the answer")
                kick()
            elif flight.scope is None or flight.scope.deadline != deadline or now >= deadline:
                kick()  # (the deadline passed, or moved: a human's wait, a restart; the task keeps it)
            else:
                watch(deadline)

        def watch(deadline: float) -> None:
            at = min(deadline, conn.last_read + read if read is not None else inf)
            if at != inf:
                flight.watch = loop.call_at(at, due)

        try:
            conn.last_read = now = loop.time()
            flight.call.kick = kick
            conn.on_ready = ready
            flight.later = loop.call_at(now + self.lasts, lasts)
        except Exception:  # noqa: BLE001 - the task goes on with the flight (``finish``), or boards anew
            leave()
            try:
                enlist()
            except Exception:  # noqa: BLE001
                self._land(flight, transport)
                self._unflight(transport, flight.idle)
                call.flight = None
            return None
        ready()  # (what came already)
        return kick

    def _final_now(
        self, call: _Taken, flight: _Flight, answer: Any, session: Any, link: Any, version: str, front: Any
    ) -> tuple[bytes | None, Any]:
        """The answer's event for the client when ``answer_now`` may write it now (else None):
        the upstream's whole answer is a plain JSON result for this request, and nothing the
        task would wait on or write first is pending (a relay, a cancel, a ping, a paused socket)."""
        c = flight.call
        if c.cancelled or c.relayed or link._relays or flight.reply.started or flight.reply.lock is not None:  # noqa: SLF001
            return None, None
        if not front.writable():
            return None, None
        parts = response_parts(b"".join(answer.chunks))  # (its id and result are all it needs)
        sent = call.sent
        assert sent is not None
        if parts is None or not _same_id(parts[0], sent.up_id):
            return None, None
        result = parts[1]
        outcome, shaped = self._upstream_result(session, result, version)
        rid = c.rid
        if shaped is not None:
            return _result_event(rid, shaped), outcome
        final = self._result_message(rid, version, outcome)
        return self._event(call.ready[0], final), outcome

    def _done_now(
        self, call: _Taken, flight: _Flight, raw: Any, transport: Any, chunk: bytes, outcome: Any, front: Any
    ) -> None:
        """``answer_now``'s end: the answer noted (a refund given back), written, and the
        connection kept for the next call, the registrations undone (``_settle_now``).

        The note comes first, always: a refund may be read by other processes (the limits' SQLite
        file or Redis store) as soon as the client has its answer, as on the task path. The rest
        is this process's own, and nothing else runs in this one callback but for one thing: the
        answer's end starts a request the client pipelined behind this one at once (uvicorn's
        ``on_response``, taken in that same callback), which must find it all done: the answer
        goes out before it only when no such request is queued. Both run whatever raises."""
        sent = call.sent
        assert sent is not None
        sent.read = True
        try:
            self.decisions.answered(call.d, time.perf_counter() - flight.t0, result=outcome)
        except Exception:  # noqa: BLE001 - (it never raises) the answer goes out all the same
            logger.exception("plr proxy: noting a fast call's answer failed")
        if front.queued():
            try:
                self._settle_now(flight, raw, sent, transport)
            finally:
                self._write_now(flight, chunk, front)
        else:
            try:
                self._write_now(flight, chunk, front)
            finally:
                self._settle_now(flight, raw, sent, transport)

    def _settle_now(self, flight: _Flight, raw: Any, sent: _Sent, transport: Any) -> None:
        """The connection kept for the next call (or dropped), the registrations undone."""
        try:
            raw.body_now(sent.key, sent.conn)
            self.direct += 1
            self.now += 1
        except Exception:  # noqa: BLE001 - the answer goes out all the same
            logger.exception("plr proxy: the bookkeeping of a fast call failed")
        finally:
            try:
                self.quick += flight.scope is None
                self._land(flight, transport)
            finally:
                self._unflight(transport, flight.idle)

    @staticmethod
    def _write_now(flight: _Flight, chunk: bytes, front: Any) -> None:
        """The answer, ``chunk`` its one event: in one write when the front can (nothing of it
        sent yet), else through the ASGI sends, run to their end at once."""
        reply = flight.reply
        try:
            if not reply.started and reply.lock is None and not reply.done:
                try:
                    whole = front.answer(reply.headers, chunk)
                except Exception:  # noqa: BLE001 - never into the upstream connection's callback
                    logger.exception("plr proxy: writing an answer failed")
                    reply.done = True
                    front.abort()  # (a half-written answer: the client's connection cannot be used again)
                    return
                if whole:
                    reply.stop_pings()
                    reply.started = reply.done = True
                    return
            if not _run_now(reply.events([chunk])):
                front.abort()
        finally:
            front.free()

    def _parsed(
        self, body: bytes, ready: tuple[Any, ...], sid: str, raw: Any = None
    ) -> tuple[Any, dict[str, Any], ToolCall] | None:
        """The request, parsed and validated as the SDK's transport and runner do: its id, its
        params and the call to decide; None when it is not a plain ``tools/call`` (or the caller has no known
        token: ``TokenGate`` lets no such request through, the SDK path fails it closed).
        ``raw``: ``body`` parsed already by ``pydantic_core.from_json`` (``RequestIdGate.begin``),
        not by any other parser."""
        headers, version = ready[4], ready[5]
        try:
            if raw is None:
                raw = pydantic_core.from_json(body)
            if not isinstance(raw, dict) or raw.keys() != _REQUEST_KEYS:
                return None
            parts = request_parts(raw)
            if parts is None or parts[1] != "tools/call":
                return None
            rid, _, p = parts
            if not plain_call(p, version):
                return None
            name, args = p["name"], p.get("arguments")
        except Exception:  # noqa: BLE001 - invalid: the SDK path answers it as it always has
            return None
        identity = self.sessions.identity
        if self.sessions.tokens is not None:
            identity = identity_for_header(self.sessions.tokens, headers.get(b"authorization", b"").decode("latin-1"))
            if identity is None:
                return None
        return rid, p, ToolCall(new_call_id(), name, args if args is not None else {}, sid, identity)

    @staticmethod
    def _in_flight(transport: Any) -> Any:
        """A request in flight holds the session open, as the SDK's transport counts it: the
        transport's idle scope (None: it has none), to give back with ``_out_of_flight``."""
        idle = transport.idle_scope if transport._idle_timeout is not None else None  # noqa: SLF001
        if idle is not None:
            transport._requests_in_flight += 1  # noqa: SLF001 - mcp==2.3.0 is pinned
            idle.deadline = float("inf")
        return idle

    @classmethod
    def _unflight(cls, transport: Any, idle: Any) -> None:
        """``answer_now``'s end of a call: ``_out_of_flight`` when it was counted in flight (``idle``);
        else (answered before it lasted) the session's idle deadline runs from now, as the SDK's
        transport sets it when a request ends with none other in flight, or a little later: moved
        only when it would come early, then a 64th of the idle timeout (at most a second) past it,
        so a session that keeps calling is not moved on every call and never ends early."""
        if idle is not None:
            cls._out_of_flight(transport, idle)
            return
        timeout = transport._idle_timeout  # noqa: SLF001
        scope = transport.idle_scope
        if timeout is None or scope is None or transport._requests_in_flight:  # noqa: SLF001
            return
        due = asyncio.get_running_loop().time() + timeout
        if scope.deadline < due:
            scope.deadline = due + min(1.0, timeout / 64)

    @staticmethod
    def _out_of_flight(transport: Any, idle: Any) -> None:
        if idle is not None:
            transport._requests_in_flight -= 1  # noqa: SLF001
            if not transport._requests_in_flight:  # noqa: SLF001
                idle.deadline = asyncio.get_running_loop().time() + transport._idle_timeout  # noqa: SLF001

    async def finish(self, call: _Taken, scope: Any, send: Any) -> None:
        """Answer a call ``take`` or ``take_now`` took: its denial (or failure to record), or
        the upstream's answer (sent now, or already by ``take_now``)."""
        transport, link, up, wire, _, version = call.ready
        flight = call.flight
        if flight is not None and flight.scope is None:  # (``answer_now``'s ``enlist`` failed: made here)
            self._catch_up(flight, transport)
        idle = self._in_flight(transport) if flight is None else flight.idle
        try:
            if call.failed is not None:
                raise call.failed
            reply = _Reply(send, self._head(call.sid)) if flight is None else flight.reply
            if call.result is not None:
                dumped = call.result.model_dump(by_alias=True, mode="json", exclude_none=True)
                await reply.events([self._event(transport, self._result_message(call.rid, version, dumped))])
                return
            await self._forward(scope, transport, link, up, wire, call.rid, version, call.p, call.d, reply, call.sent, flight)
        finally:
            self._out_of_flight(transport, idle)
            sent = call.sent
            if sent is not None and not sent.read:  # written, never read: not for another request
                wire.fast._transport.drop(sent.conn)  # noqa: SLF001

    async def _admitted(self, scope: Any, body: bytes, sid: str) -> tuple[Any, dict[bytes, bytes]] | None:
        """The SDK's transport of session ``sid`` and the request's headers, when every check the
        SDK makes of a POST before it reads the message passes (else None: the SDK path answers)."""
        got = self._admission(scope, body, sid)
        if got is None:
            return None
        transport, headers, pending = got
        if pending is not None and not await self._headers_pass(scope, transport, *pending):
            return None
        return transport, headers

    def _admitted_now(
        self, scope: Any, body: bytes, sid: str, headers: dict[bytes, bytes] | None = None
    ) -> tuple[Any, dict[bytes, bytes]] | None:
        """``_admitted`` without waiting: None also when the SDK's header checks have yet to be
        asked of this set of headers (only ``_admitted`` asks them). ``headers``: as ``take_now``'s."""
        got = self._admission(scope, body, sid, headers)
        if got is None or got[2] is not None:
            return None
        return got[0], got[1]

    def _admission(
        self, scope: Any, body: bytes, sid: str, read: dict[bytes, bytes] | None = None
    ) -> tuple[Any, dict[bytes, bytes], Any] | None:
        """``_admitted``'s checks but the SDK's header checks, which are left to ask (the third
        item: what ``_headers_pass`` needs) unless this set of headers and settings passed them
        before (None). ``read``: the request's headers as ``take_now``'s ``headers``."""
        if scope.get("path") != self.path or scope.get("root_path"):
            return None
        if read is not None:
            headers = read
        else:
            headers = {}
            for k, v in scope.get("headers") or ():
                k = k.lower()
                if k in headers:
                    return None  # a repeated header: which one the SDK reads is its business
                headers[k] = v
        pv = headers.get(b"mcp-protocol-version")
        if pv is not None and pv.decode("latin-1") not in HANDSHAKE_PROTOCOL_VERSIONS:
            return None  # the manager routes this to its 2026-07-28 entry
        manager = self.manager
        transport = manager._server_instances.get(sid)  # noqa: SLF001 - mcp==2.3.0 is pinned
        if transport is None or transport.is_terminated:
            return None
        user = scope.get("user")
        requestor = authorization_context(user) if isinstance(user, AuthenticatedUser) else None
        if requestor != manager._session_owners.get(sid):  # noqa: SLF001
            return None  # another principal's session: the SDK answers 404, as for no session at all
        idle = transport.idle_scope
        if idle is not None and idle.cancel_called:
            return None
        size = headers.get(b"content-length")
        limit = manager.max_request_body_size
        if len(body) > limit or (size is not None and (not size.isdigit() or int(size) > limit)):
            return None
        # the SDK's header checks read four headers and the transport's settings: a set of them
        # that passed once passes again (only passes are kept: a refusal is the SDK path's to answer)
        security = transport._security  # noqa: SLF001
        settings = security.settings
        kept = type(security) is TransportSecurityMiddleware  # (one of another kind: asked every time)
        seen = (
            headers.get(b"host"), headers.get(b"origin"), headers.get(b"content-type"), headers.get(b"accept"),
            settings.enable_dns_rebinding_protection, tuple(settings.allowed_hosts), tuple(settings.allowed_origins),
        )  # fmt: skip
        if kept and seen in self._passed:
            return transport, headers, None
        return transport, headers, (seen, kept)

    async def _headers_pass(self, scope: Any, transport: Any, seen: Any, kept: bool) -> bool:
        """The SDK's header checks (Host, Origin, Accept, Content-Type) of this POST; a pass is kept."""
        from mcp.server.streamable_http import check_accept_headers
        from starlette.requests import Request

        lowered = [(k, v.lower() if k in (b"host", b"origin") else v) for k, v in scope.get("headers") or ()]
        request = Request({**scope, "headers": lowered})
        if await transport._security.validate_request(request, is_post=True) is not None:  # noqa: SLF001
            return False
        has_json, has_sse = check_accept_headers(request)
        if not (has_json and has_sse) or not transport._check_content_type(request):  # noqa: SLF001
            return False
        if kept:
            if len(self._passed) >= 256:
                self._passed.clear()
            self._passed.add(seen)
        return True

    async def _ready(self, scope: Any, body: bytes, sid: str) -> tuple[Any, ...] | None:
        """What a fast call of session ``sid`` needs, when every check the SDK would make of this
        POST passes and the session can be served here (else None: the SDK path)."""
        admitted = await self._admitted(scope, body, sid)
        return None if admitted is None else self._servable(admitted, sid)

    def _servable(self, admitted: tuple[Any, dict[bytes, bytes]], sid: str) -> tuple[Any, ...] | None:
        """``_ready`` once the request is admitted: whether the session can be served here."""
        transport, headers = admitted
        link = self.sessions.links.get(sid)
        if link is None or link.ended or link.lost or link.recheck_pins or not self.own.enabled or self.shared.modern:
            return None
        up = link.up
        wire = getattr(up, "plr_wire", None)
        if wire is None or wire.fast is None:
            return None
        conn = getattr(link.session, "_connection", None)
        if conn is None or getattr(conn, "session_id", None) != sid or not conn.initialized.is_set():
            return None
        version = conn.protocol_version
        if version in MODERN_PROTOCOL_VERSIONS:
            return None
        caps = conn.client_capabilities
        if caps is not None and (caps.elicitation is not None or caps.sampling is not None or caps.roots is not None):
            return None  # the server may ask this client something during the call: the SDK path
        session = getattr(up, "session", None)
        dispatcher = getattr(session, "_dispatcher", None)
        outbound = getattr(link.session, "_request_outbound", None)
        if (
            dispatcher is None
            or not getattr(dispatcher, "_running", False)
            or getattr(session, "_session_read_timeout_seconds", None) is not None
            or getattr(session, "_negotiated_version", None) in MODERN_PROTOCOL_VERSIONS
            or getattr(outbound, "_dispatcher", None) is None
        ):
            return None
        return transport, link, up, wire, headers, version

    def _head(self, sid: str) -> tuple[tuple[bytes, bytes], ...]:
        """The event-stream head the SDK's transport gives this session's POSTs."""
        head = self._heads.get(sid)
        if head is None:
            from sse_starlette import EventSourceResponse

            async def nothing() -> Any:
                yield b""

            headers = {
                "Cache-Control": "no-cache, no-transform",
                "Connection": "keep-alive",
                "Content-Type": "text/event-stream",
                "mcp-session-id": sid,
            }
            content = nothing()
            # (a tuple: nothing on the way can change it in place, and the whole-answer write keeps
            # the bytes of its head by its identity: http._answer_head)
            head = tuple(EventSourceResponse(content=content, headers=headers).raw_headers)
            if len(self._heads) >= 1024:
                self._heads.clear()
            self._heads[sid] = head
        return head

    # -- upstream ----------------------------------------------------------------------------------

    @staticmethod
    def _upstream_head(session: Any, wire: Any, p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The upstream request as ``ClientSession.send_request`` dumps it (``upstream_body``
        without the models), and the HTTP headers its POST carries: the session's stamp and
        ``Mcp-Name``, as the SDK client's transport writes them (nothing is allocated yet)."""
        data = _request_dump(p["name"], p.get("arguments"))
        opts: dict[str, Any] = {}
        session._stamp(data, opts)  # noqa: SLF001
        stamped = opts.setdefault("headers", {})
        if (key := types.CallToolRequest.name_param) is not None and MCP_NAME_HEADER not in stamped:
            stamped[MCP_NAME_HEADER] = encode_header_value((data.get("params") or {})[key])
        # StreamableHTTPTransport._prepare_headers, then the message's own headers
        http_headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if wire.session_id:
            http_headers["mcp-session-id"] = wire.session_id
        if MCP_PROTOCOL_VERSION_HEADER in stamped:
            http_headers[MCP_PROTOCOL_VERSION_HEADER] = stamped[MCP_PROTOCOL_VERSION_HEADER]
        http_headers.update(stamped)
        return data, http_headers

    @staticmethod
    def _upstream_frame(dispatcher: Any, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The request's id from the session's dispatcher and its frame
        (``JSONRPCDispatcher.send_raw_request``)."""
        up_id = dispatcher._allocate_id()  # noqa: SLF001
        while up_id in dispatcher._pending:  # noqa: SLF001
            up_id = dispatcher._allocate_id()  # noqa: SLF001
        out_params = dict(data.get("params") or {})
        meta = dict(out_params.get("_meta") or {})
        trace_context_into(meta)
        if meta:
            out_params["_meta"] = meta
        else:
            out_params.pop("_meta", None)
        return up_id, _frame_dump(up_id, out_params)

    async def _forward(
        self, scope: Any, transport: Any, link: Any, up: Any, wire: Any, rid: Any, version: str,
        p: dict[str, Any], d: Any, reply: _Reply, sent: Any = None, flight: _Flight | None = None,
    ) -> None:  # fmt: skip
        """Send the call upstream, built as the SDK client builds it, and answer the client.
        ``sent``: ``_Taken.sent``, the POST ``take_now`` wrote already; ``flight``: the call's
        registrations, made already (``answer_now``)."""
        session = up.session
        dispatcher = session._dispatcher  # noqa: SLF001 - mcp==2.3.0 is pinned
        if sent is None:
            data, http_headers = self._upstream_head(session, wire, p)
            up_id, body = self._upstream_frame(dispatcher, data)
        else:
            up_id, body, http_headers = sent.up_id, sent.frame, sent.headers
        if flight is None:
            flight = self._board(scope, transport, link, rid, reply)
        call = flight.call
        try:
            outcome: Any = None
            shaped: dict[str, Any] | None = None  # the result shaped for the client (``_upstream_result``)
            took = 0.0
            error: BaseException | None = None
            try:
                try:
                    try:
                        outcome, shaped = await self._exchange(
                            wire, dispatcher, session, up_id, body, http_headers, version, sent, flight
                        )
                    except MCPError:
                        if not link.lost:
                            raise
                        await self.own.forgot(link)
                        raise session_forgotten() from None
                    finally:
                        took = time.perf_counter() - flight.t0
                except BaseException as e:
                    flight.unlink(e)
                    raise
                flight.unlink(None)
                await link.settle()
            except _ClientCancelled:
                # noted as the SDK path's cancellation is: the server may still be working on it
                self.sessions._note_abandoned(link.key, anyio.get_cancelled_exc_class()())  # noqa: SLF001
            except MCPError as e:
                error = e
            if call.cancelled:
                # the client's notifications/cancelled: never answered with a result, as the SDK's
                # dispatcher settles a cancelled request on this era's wire
                from mcp.server.streamable_http import REQUEST_CANCELLED

                err = types.ErrorData(code=REQUEST_CANCELLED, message="Request cancelled")
                final: Any = types.JSONRPCError(jsonrpc="2.0", id=rid, error=err)
            elif error is not None:
                self.decisions.answered(d, took, error=error)
                final = self._error_message(rid, error)
            else:
                self.decisions.answered(d, took, result=outcome)
                final = self._result_message(rid, version, outcome) if shaped is None else _Shaped(rid, shaped)
            call.over = True
            await self._answer(transport, call.streams, reply, call, final)
        finally:
            self._land(flight, transport)

    def _board(self, scope: Any, transport: Any, link: Any, rid: Any, reply: _Reply) -> _Flight:
        """A call's registrations while it waits on the upstream: in the calls table (a cancel
        finds it), as the session's waiting request (relays for it ride its stream), its keep-alive
        pings and its deadline (``--upstream-timeout``, kept by ``Deadlines``)."""
        flight = self._embark(scope, transport, link, rid, reply)
        try:
            self._enlist(flight)
        except BaseException:
            self._land(flight, transport)
            raise
        return flight

    def _enlist(self, flight: _Flight) -> None:
        """``_board``'s registrations after ``_embark``'s: the call's cancel scope (cancelled at
        once when a cancel came first), its keep-alive pings and its deadline."""
        call = flight.call
        scope = anyio.CancelScope()
        if call.cancelled:
            scope.cancel()
        try:
            flight.reply.arm_pings(self.tasks)
            self.deadlines.start(flight.timer, scope)
        except BaseException:
            flight.reply.stop_pings()
            self.deadlines.stop(flight.timer)
            raise
        flight.scope = call.scope = scope

    def _catch_up(self, flight: _Flight, transport: Any) -> None:
        """What ``_board`` leaves that ``answer_now`` has not made yet of a flight it embarked: the
        call counted in flight, then ``_enlist``'s registrations (each once)."""
        if flight.idle is None:
            flight.idle = self._in_flight(transport)
        if flight.scope is None:
            self._enlist(flight)

    def _embark(self, scope: Any, transport: Any, link: Any, rid: Any, reply: _Reply) -> _Flight:
        """``_board``'s registrations that cannot wait: in the calls table and as the session's
        waiting request, and the time it started (``answer_now`` makes the rest once it lasts)."""
        server_dispatcher = link.session._request_outbound._dispatcher  # noqa: SLF001
        call = _Call(rid)
        waiting = _Waiting(_ScopedSession(link.session, server_dispatcher, rid, call), rid, _RequestHeaders(scope))
        flight = _Flight(call, (link.key, id_key(rid)), str(rid), reply, _Timer(self.timeout))
        self.calls[flight.ckey] = call
        key = flight.key

        def open_stream() -> Any:
            # this request's own stream at the front: what the server session relays for it lands here
            streams = anyio.create_memory_object_stream[EventMessage](REQUEST_STREAM_BUFFER_SIZE)
            transport._request_streams[key] = streams  # noqa: SLF001
            return streams

        call.open = open_stream
        call.stream = lambda: self.tasks.spawn(self._stream, transport, call.streams[1], reply, call)
        try:
            linked = self.sessions.link_request(link, waiting)
            linked.__enter__()
            flight.linked = linked
            flight.t0 = time.perf_counter()
        except BaseException:
            self._land(flight, transport)
            raise
        return flight

    def _land(self, flight: _Flight, transport: Any) -> None:
        """Undo ``_board`` (what is left of it: the task's steps undo the link and the deadline as
        they end)."""
        call = flight.call
        call.over = True
        flight.reply.stop_pings()
        flight.unlink(None)
        self.deadlines.stop(flight.timer)
        if self.calls.get(flight.ckey) is call:
            del self.calls[flight.ckey]
        streams = call.streams
        if streams is not None:
            if transport._request_streams.get(flight.key) is streams:  # noqa: SLF001
                del transport._request_streams[flight.key]  # noqa: SLF001
            streams[0].close()
            streams[1].close()

    async def _exchange(
        self, wire: Any, dispatcher: Any, session: Any, up_id: int, body: Any, headers: dict[str, str],
        client_version: str, sent: Any, flight: _Flight,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:  # fmt: skip
        """One request on the session's upstream session, under ``--upstream-timeout`` (the
        flight's deadline, running since ``_enlist``): the result as ``Forwarder.exchange`` hands it
        on (and shaped for the client: ``_upstream_result``), or the ``MCPError`` it raises."""
        call, timer = flight.call, flight.timer
        outcome: Any = None
        assert flight.scope is not None  # (``_board``, or ``answer_now``'s ``enlist`` before its task starts)
        with flight.scope as scope:
            try:
                outcome = await self._post(wire, dispatcher, session, up_id, body, headers, sent)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception:  # noqa: BLE001 - the SDK's client transport would die with it: closed
                logger.debug("fast call's upstream POST failed", exc_info=True)
                outcome = types.ErrorData(code=types.CONNECTION_CLOSED, message="Connection closed")
            finally:
                self.deadlines.stop(timer)
        if scope.cancelled_caught or call.cancelled:
            self.tasks.spawn(self._courtesy_cancel, dispatcher, up_id)
            if call.cancelled:
                raise _ClientCancelled
            raise UpstreamTimeout(
                code=types.INTERNAL_ERROR,
                message=f"plr: the upstream MCP server did not answer within {secs(self.timeout or 0)} s "
                "(--upstream-timeout)",
            )
        if isinstance(outcome, types.ErrorData):
            raise map_error(MCPError(code=outcome.code, message=outcome.message, data=outcome.data),
                            restarting=self.shared.restarting)  # fmt: skip
        try:
            return self._upstream_result(session, outcome, client_version)
        except MCPError:
            raise
        except Exception as e:  # noqa: BLE001 - as Forwarder.exchange maps it
            raise map_error(e, restarting=self.shared.restarting) from None

    @staticmethod
    def _upstream_result(session: Any, raw: Any, client_version: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """What ``ClientSession.send_request`` and ``Forwarder.exchange`` make of the server's
        result, and, when the client's protocol version has the same result model as the
        server's (every 2025-era pair), that result already shaped for the client, as the runner
        shapes it (``_result_message``): the model ignores unknown keys, so validating it once
        gives what validating it, dropping the later revisions' keys and shaping it gives (as
        ``FastCalls._upstream_result``; held to the two steps by tests/proxy/test_fast_frames.py).
        None: ``_result_message`` shapes it."""
        version = session._negotiated_version or "2025-11-25"  # noqa: SLF001
        raw, shaped = checked_result(raw, version, client_version)
        if shaped is not None and raw.keys() <= _TEXT_KEYS:
            return raw, shaped  # (what RAW makes of it: a copy, which ``raw`` is; and no resultType)
        result: dict[str, Any] = RAW.validate_python(raw, by_name=False)
        if result.get("resultType") == "input_required":
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message="plr: the upstream server asked for input that cannot be relayed to a 2025-era client",
            )
        return result, shaped

    async def _post(
        self, wire: Any, dispatcher: Any, session: Any, up_id: int, body: Any, headers: dict[str, str], sent: Any = None
    ) -> Any:
        """The POST, and its answer read as ``StreamableHTTPTransport._handle_post_request`` reads it:
        the result (a dict), or the ``ErrorData`` the SDK's client would resolve the request with.
        ``sent``: ``_Taken.sent``, the POST was written already (``take_now``): its answer is read."""
        # without --upstream-timeout, the SDK client's own read timeout is the only bound on the
        # upstream: its client then (the twin's transport has none)
        opened = None
        conn = None  # a connection the POST went out on, written as ``httpx`` would write it
        if sent is not None:
            transport = wire.fast._transport  # noqa: SLF001 - the RawTransport it was made with
            sent.read = True  # (from here on this reads it, or drops it)
            key, conn, timeouts = sent.key, sent.conn, sent.timeouts
            if sent.error is not None:
                transport.drop(conn)
                raise sent.error
            await transport.head(conn, timeouts)
        elif wire.fast is not wire.http and self.timeout:
            direct = _direct(wire.fast, wire.url, body, headers)
            if direct is None:
                opened = _sent(wire.fast, wire.url, body, headers)
            else:
                transport = wire.fast._transport  # noqa: SLF001
                key, data, timeouts = direct
                conn = await transport.send(key, data, timeouts)
        if conn is not None:
            if _plain_json(conn.answer):  # all httpx would do is read it: read here
                content = await transport.body(key, conn, timeouts.get("read"))
                self.direct += 1
                return await self._json_answer(content, up_id, dispatcher, session)
            opened = _sent(wire.fast, wire.url, body, headers, sent=(key, conn))
        if opened is None:
            opened = stream_within_origin(wire.http, "POST", wire.url, json=body, headers=headers)
        async with opened as response:
            status = response.status_code
            if status == 202:
                return types.ErrorData(code=types.INVALID_REQUEST, message="server answered a request with 202 Accepted")
            if (redirect := _unfollowed_redirect(response)) is not None:
                logger.warning(redirect)
                return types.ErrorData(code=types.INVALID_REQUEST, message=redirect)
            ctype = response.headers.get("content-type", "").lower()
            if status >= 400:
                if ctype.startswith("application/json"):
                    try:
                        parsed = jsonrpc_message_adapter.validate_json(await read_body(response), by_name=False)
                        if isinstance(parsed, types.JSONRPCError):
                            return parsed.error
                    except (httpx2.StreamError, ValidationError):
                        pass
                if status == 404:
                    if wire.session_id is None:
                        return types.ErrorData(code=types.METHOD_NOT_FOUND, message="Not Found")
                    return types.ErrorData(code=types.INVALID_REQUEST, message="Session terminated")
                return types.ErrorData(code=types.INTERNAL_ERROR, message="Server returned an error response")
            if ctype.startswith("application/json"):
                try:
                    content = await read_body(response)
                except httpx2.StreamError as exc:
                    return types.ErrorData(code=types.PARSE_ERROR, message=f"Failed to parse JSON response: {exc}")
                return await self._json_answer(content, up_id, dispatcher, session)
            if ctype.startswith("text/event-stream"):
                from httpx2 import EventSource

                try:
                    async for sse in EventSource(response, max_event_size=DEFAULT_MAX_SSE_EVENT_SIZE):
                        if sse.event != "message":
                            logger.warning(f"Unknown SSE event: {sse.event}")
                            continue
                        if not sse.data:
                            continue  # a priming event
                        try:
                            message = jsonrpc_message_adapter.validate_json(sse.data, by_name=False)
                        except Exception as exc:  # noqa: BLE001 - as _handle_sse_event answers it
                            return types.ErrorData(code=types.PARSE_ERROR, message=f"Failed to parse SSE message: {exc}")
                        if isinstance(message, types.JSONRPCResponse):
                            return message.result  # (the SDK's transport takes any answer here for this request's)
                        if isinstance(message, types.JSONRPCError):
                            return message.error
                        await self._hand_over(dispatcher, session, message)
                except httpx2.SSEError as exc:
                    return types.ErrorData(code=types.CONNECTION_CLOSED, message=f"SSE stream failed: {exc}")
                except Exception:  # noqa: BLE001 - as the SDK's transport: the stream ended
                    logger.debug("SSE stream ended", exc_info=True)
                return types.ErrorData(code=types.CONNECTION_CLOSED, message="SSE stream ended without a response")
            logger.error(f"Unexpected content type: {ctype}")
            return types.ErrorData(code=types.INVALID_REQUEST, message=f"Unexpected content type: {ctype}")

    async def _json_answer(self, content: bytes, up_id: int, dispatcher: Any, session: Any) -> Any:
        """A JSON answer to the POST, read as the SDK's transport reads it: this request's result
        or error, or else a message for the SDK's client (and this request waits on)."""
        try:
            message = server_message(content)
        except ValidationError as exc:
            return types.ErrorData(code=types.PARSE_ERROR, message=f"Failed to parse JSON response: {exc}")
        if isinstance(message, (types.JSONRPCResponse, types.JSONRPCError)) and _same_id(message.id, up_id):
            return message.result if isinstance(message, types.JSONRPCResponse) else message.error
        # not this request's answer: the SDK's client handles it, and this request waits on
        await self._hand_over(dispatcher, session, message)
        await anyio.sleep_forever()

    @staticmethod
    async def _hand_over(dispatcher: Any, session: Any, message: Any) -> None:
        """A message the upstream sent on this call's stream that is not its answer (a log message,
        a request of the server's): to the upstream client's dispatcher, as its transport hands it,
        so it is relayed, or answered, exactly as on the SDK path."""
        from mcp.shared.message import SessionMessage

        await dispatcher._dispatch(SessionMessage(message), session._on_request, session._on_notify, None)  # noqa: SLF001
        # let the handler it spawned begin (a relay registers before its first await: FrontLink.settle)
        await anyio.lowlevel.checkpoint()

    @staticmethod
    async def _courtesy_cancel(dispatcher: Any, up_id: int) -> None:
        """What the SDK's dispatcher tells the server about a request it abandoned."""
        with anyio.move_on_after(5.0, shield=True):
            try:
                await dispatcher._cancel_outbound(up_id, "caller cancelled", None)  # noqa: SLF001
            except Exception:  # noqa: BLE001 - the server is gone: nothing to cancel
                pass

    # -- cancellation ------------------------------------------------------------------------------

    def cancelling(self, sid: str | None, body: bytes) -> bool:
        """Whether the POST ``body`` of session ``sid`` (not a request) is to be read for a
        cancellation of a fast call (``cancel``): any such POST of a session while fast calls are
        in flight, however its JSON is spelled; none otherwise."""
        return bool(self.calls) and sid is not None

    async def cancel(self, scope: Any, sid: str, body: bytes) -> None:
        """A POST of session ``sid`` that is no request: when it is a ``notifications/cancelled``
        the SDK would take from this sender (the same checks as for a call: the session's owner,
        Host/Origin, ...), the fast call it names stops. The SDK path still gets the notification
        (it answers 202 and knows no such request of its own)."""
        try:
            raw = pydantic_core.from_json(body)
        except ValueError:
            return  # the SDK refuses it (400): it cancels nothing
        if not isinstance(raw, dict) or raw.get("method") != "notifications/cancelled":
            return  # (the JSON parsed: its escapes are undone, "notifications\\/cancelled" included)
        if self.manager is None or await self._admitted(scope, body, sid) is None:
            return
        from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params

        try:
            msg = jsonrpc_message_adapter.validate_python(raw, by_name=False)
        except Exception:  # noqa: BLE001 - the SDK refuses it (400): it cancels nothing
            return
        if not isinstance(msg, types.JSONRPCNotification) or msg.method != "notifications/cancelled":
            return
        rid = cancelled_request_id_from_params(msg.params)
        if rid is None:
            return
        call = self.calls.get((sid, id_key(rid)))
        if call is None or call.cancelled:
            return
        call.cancelled = True
        if call.scope is not None:
            call.scope.cancel()
        if call.kick is not None:
            call.kick()  # (its task answers it cancelled)

    # -- answers to the client ---------------------------------------------------------------------

    @staticmethod
    def _event(transport: Any, message: Any) -> bytes:
        return ensure_bytes(transport._create_event_data(EventMessage(message)), _SEP)  # noqa: SLF001

    @staticmethod
    def _result_message(rid: Any, version: str, dumped: dict[str, Any]) -> Any:
        """A result, shaped for the client's protocol version as the SDK's runner shapes it."""
        from mcp_types import methods

        try:
            dumped = methods.serialize_server_result("tools/call", version, dumped)
        except Exception:  # noqa: BLE001 - the runner's answer to an invalid handler result
            err = types.ErrorData(code=types.INTERNAL_ERROR, message="Handler returned an invalid result")
            return types.JSONRPCError(jsonrpc="2.0", id=rid, error=err)
        return types.JSONRPCResponse(jsonrpc="2.0", id=rid, result=dumped)

    @staticmethod
    def _error_message(rid: Any, e: BaseException) -> Any:
        from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data

        err = handler_exception_to_error_data(e) or types.ErrorData(code=0, message=str(e))
        return types.JSONRPCError(jsonrpc="2.0", id=rid, error=err)

    async def _stream(self, transport: Any, reader: Any, reply: _Reply, call: _Call) -> None:
        """This call's stream, forwarded to the client as it comes (``_run_sse_writer``), up to and
        including the answer, which ends the body. A client that left does not stop it: the
        stream is still drained, so the transport's message router never waits on it."""
        done = call.streamed
        try:
            while True:
                try:
                    message = (await reader.receive()).message
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                chunk = self._event(transport, message)
                last = isinstance(message, (types.JSONRPCResponse, types.JSONRPCError))
                try:
                    if last:
                        call.final_written = True
                        await reply.events([chunk])
                        return
                    await reply.event(chunk)
                except Exception:  # noqa: BLE001 - the client left: drained all the same
                    if last:
                        return
        except Exception:  # noqa: BLE001 - never the proxy's task group's failure
            logger.debug("fast call's stream writer failed", exc_info=True)
        finally:
            if done is not None:
                done.set()

    async def _answer(self, transport: Any, streams: Any, reply: _Reply, call: _Call, final: Any) -> None:
        """End the answer with ``final``. When something was relayed on this call's stream (its
        writer runs), ``final`` takes the way the relayed messages took (the transport's router,
        one message after the other) and the writer writes it after them, as on the SDK path;
        otherwise it is written at once, after anything already on the stream (``streams``: None
        when there is none)."""
        done = call.streamed
        if done is not None:
            from mcp.shared.message import SessionMessage

            if final.__class__ is _Shaped:
                final = types.JSONRPCResponse(jsonrpc="2.0", id=final.rid, result=final.result)
            try:
                await transport._write_stream.send(SessionMessage(final))  # noqa: SLF001
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                streams[0].close()  # the session is closing: the writer ends with what it has
            await done.wait()
            if call.final_written:
                return
        out: list[bytes] = []
        while streams is not None:  # (None: nothing was relayed, so nothing can be on it)
            try:
                out.append(self._event(transport, streams[1].receive_nowait().message))
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                break
        out.append(_result_event(final.rid, final.result) if final.__class__ is _Shaped else self._event(transport, final))
        await reply.events(out)


class _Taken:
    """A call ``HttpFastCalls.take`` or ``take_now`` took (decided and recorded), to ``finish``."""

    __slots__ = ("sid", "ready", "rid", "p", "d", "result", "sent", "failed", "flight")

    def __init__(self, sid: str, ready: tuple[Any, ...], rid: Any, p: dict[str, Any], d: Any) -> None:
        self.sid = sid
        self.ready = ready  # ``_ready``'s answer
        self.rid = rid  # the client's request id
        self.p = p
        self.d = d
        self.result: Any = None  # ``record_taken``'s: the answer instead of the server's
        self.sent: _Sent | None = None  # the POST ``take_now`` wrote
        self.failed: BaseException | None = None  # raised after the call was taken, before it was written
        self.flight: _Flight | None = None  # boarded by ``answer_now``


class _Sent:
    """The upstream POST of a call ``take_now`` wrote (or tried to: ``error``), for ``_post``."""

    __slots__ = ("up_id", "frame", "headers", "key", "conn", "timeouts", "error", "read")

    def __init__(self, up_id: int, frame: Any, headers: dict[str, str], key: Any, conn: Any, timeouts: Any) -> None:
        self.up_id = up_id
        self.frame = frame
        self.headers = headers
        self.key = key
        self.conn = conn
        self.timeouts = timeouts
        self.error: BaseException | None = None
        self.read = False  # ``_post`` took the connection over


class _Shaped:
    """A result shaped for the client (``_upstream_result``): the answer ``_result_message`` would
    make of it, written without the model (``_result_event``)."""

    __slots__ = ("rid", "result")

    def __init__(self, rid: Any, result: dict[str, Any]) -> None:
        self.rid = rid
        self.result = result


def _run_now(coro: Any) -> bool:
    """Run ``coro`` now, from a callback: one that does not wait (uvicorn's ASGI ``send`` when
    writing is not paused) ends before this returns. Should it wait on a future after all, it
    goes on when that future is done, as a task would step it. False: it failed (logged)."""

    def step(_: Any = None) -> bool:
        try:
            waited = coro.send(None)
            if waited is None:
                asyncio.get_running_loop().call_soon(step)  # (a bare yield: a task steps it again)
            else:
                waited._asyncio_future_blocking = False
                waited.add_done_callback(step)
        except StopIteration:
            return True
        except BaseException:  # noqa: BLE001 - no task to raise it in
            logger.exception("plr proxy: writing an answer failed")
            coro.close()
            return False
        return True

    return step()


def _result_event(rid: Any, result: dict[str, Any]) -> bytes:
    """``HttpFastCalls._event`` of ``JSONRPCResponse(jsonrpc="2.0", id=rid, result=result)``: the
    event ``sse_starlette`` writes of the message's ``model_dump_json(by_alias=True,
    exclude_unset=True)`` (``client_frame``'s bytes, held equal to that dump by
    tests/proxy/test_fast_frames.py; a JSON text holds no line break), and no event id."""
    return b"event: message\r\ndata: " + client_frame(rid, result)[:-1] + b"\r\n\r\n"


def _sent(client: Any, url: str, body: Any, headers: dict[str, str], sent: Any = None) -> Any:
    """``stream_within_origin(client, "POST", url, json=body, headers=headers)`` for the twin client
    of ``UpstreamWire.bind``, with ``httpx``'s ``send`` written out for it (no auth, redirects not
    followed by ``httpx``): the request ``httpx`` builds, its request and response hooks, its cookie
    jar; a redirect within the origin followed as ``stream_within_origin`` follows it. ``sent``:
    the ``(key, connection)`` ``_direct``'s bytes went out on (the request was sent: its answer is
    taken from there, and everything ``httpx`` does after sending is done with it)."""
    from contextlib import asynccontextmanager, suppress

    from mcp.shared._httpx_utils import next_request_within_origin

    transport = client._transport  # noqa: SLF001 - the RawTransport it was made with
    hooks = client._event_hooks  # noqa: SLF001

    @asynccontextmanager
    async def opened() -> Any:
        pending = sent
        try:
            request = _build_post(client, url, body, headers)
        except BaseException:
            if pending is not None:  # (the answer under way is never read: its connection goes)
                transport.drop(pending[1])
            raise
        followed = 0
        while True:
            if pending is not None:  # (``_direct`` runs no request hook: there is none)
                response = transport.response(*pending, request, client.timeout.read)
                pending = None
            else:
                for hook in hooks["request"]:
                    await hook(request)
                response = await transport.handle_async_request(request)
            response.request = request
            try:
                client.cookies.extract_cookies(response)
                response.default_encoding = client._default_encoding  # noqa: SLF001
                for hook in hooks["response"]:
                    await hook(response)
                if response.has_redirect_location:
                    with suppress(httpx2.RemoteProtocolError):
                        response.next_request = client._build_redirect_request(request, response)  # noqa: SLF001
            except BaseException:
                await response.aclose()
                raise
            next_request = next_request_within_origin(response)
            if next_request is None or followed == client.max_redirects:
                break
            try:
                await response.aread()
            finally:
                await response.aclose()
            request = next_request
            followed += 1
        try:
            yield response
        finally:
            await response.aclose()

    return opened()


def _build_post(client: Any, url: str, body: Any, headers: dict[str, str]) -> Any:
    """``client.build_request("POST", url, json=body, headers=headers)`` for the twin client of
    ``UpstreamWire.bind``: the same request (method, URL, headers in their order and spelling, the
    body as ``httpx`` encodes it, the timeout extension). Merging the client's headers with the
    request's is most of what that costs, and for one URL, the same headers and client headers
    it gives the same list every time but for ``Content-Length``: the list ``httpx`` built for the
    first such request is kept (per client transport) and reused with this body's length. A
    client with cookies or query parameters: ``httpx`` builds every request (the jar changes).
    The kept head is also kept as the bytes ``RawTransport`` writes for it, around the length
    (for ``_direct``). tests/proxy/test_http_fast_frames.py holds the two equal."""
    from httpx2._content import encode_json

    transport = client._transport  # noqa: SLF001
    heads = getattr(transport, "heads", None)
    if heads is None or client.params or client.cookies:
        return client.build_request("POST", url, json=body, headers=headers)
    key = (url, tuple(headers.items()), tuple(client.headers.raw))
    made = heads.get(key)
    if made is None:
        request = client.build_request("POST", url, json=body, headers=headers)
        raw = request.headers.raw
        found = [i for i, (k, _) in enumerate(raw) if k.lower() == b"content-length"]
        if len(found) == 1 and raw[found[0]][1] == str(len(request.content)).encode("ascii"):
            if len(heads) >= 64:
                heads.clear()
            at = found[0]
            target = request.url
            # the same head as bytes around its length, for ``_direct``
            before = request_line(b"POST", target.raw_path) + header_lines(raw[:at]) + raw[at][0] + b": "
            after = b"\r\n" + header_lines(raw[at + 1 :]) + b"\r\n"
            wire = ((target.raw_host, target.port or 80), before, after, client.timeout.as_dict())
            heads[key] = (target, raw, at, wire)
        return request
    target, raw, at, _ = made
    sized, stream = encode_json(body)
    raw = list(raw)
    raw[at] = (raw[at][0], sized["Content-Length"].encode("ascii"))
    request = httpx2.Request("POST", target, headers=raw, stream=stream, extensions={"timeout": client.timeout.as_dict()})
    request.read()
    return request


def _direct(client: Any, url: str, body: Any, headers: dict[str, str]) -> tuple[tuple[bytes, int], bytes, dict[str, Any]] | None:
    """Where to send this POST of the twin client, the bytes ``_sent`` would write for it
    (``_build_post``'s request, written as ``RawTransport`` writes it) and its timeouts, when
    ``_direct_head`` has a head for it. Else None."""
    head = _direct_head(client, url, headers)
    if head is None:
        return None
    return head[0], _direct_bytes(head, body), head[3]


def _has_cookies(jar: Any) -> bool:
    """``bool(cookies)`` (a cookie in the jar) without iterating the jar through its generators:
    its table, domain -> path -> name -> cookie, holds one (a path's table may be left empty
    when its last cookie goes). A jar of another make is taken to hold some."""
    table = getattr(jar, "_cookies", None)
    if table.__class__ is not dict:
        return True
    return bool(table) and any(names for paths in table.values() for names in paths.values())


def _direct_head(client: Any, url: str, headers: dict[str, str]) -> tuple[Any, bytes, bytes, dict[str, Any]] | None:
    """Where to send a POST of the twin client with these headers (the server's address), its
    head as bytes around its length, and the client's timeouts, when ``httpx`` would do nothing
    with it but build and send it: no cookies in the jar, no query parameters, no request
    hook, and only response hooks that leave a ``200`` answer to a ``tools/call`` alone
    (``inert_for_calls``; ``_plain_json`` says when an answer is one), and ``_build_post`` has
    kept the head of such a request. Else None."""
    transport = client._transport  # noqa: SLF001
    heads = getattr(transport, "heads", None)
    hooks = client._event_hooks  # noqa: SLF001
    if heads is None or client.params or _has_cookies(client.cookies.jar) or hooks["request"]:
        return None
    for hook in hooks["response"]:
        if not getattr(hook, "plr_inert_for_calls", False):
            return None
    made = heads.get((url, tuple(headers.items()), tuple(client.headers.raw)))
    if made is None:
        return None
    return made[3]  # type: ignore[no-any-return]


# what httpx encodes a request's JSON with (``json.dumps`` with these options), made once: the
# function makes a new encoder on every call
_HTTPX_JSON = encoding_once(JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def _direct_bytes(head: tuple[Any, bytes, bytes, dict[str, Any]], body: Any) -> bytes:
    """The bytes of a POST of ``body`` with the head ``_direct_head`` kept."""
    _, before_length, after_length, _ = head
    content = _HTTPX_JSON(body).encode("utf-8")
    return before_length + str(len(content)).encode("ascii") + after_length + content


def _plain_json(answer: Any) -> bool:
    """A ``200`` JSON answer that ``httpx`` would only read: not encoded, no cookie to keep."""
    if answer.status != 200:
        return False
    ctype = None
    for k, v in answer.headers:
        k = k.lower()
        if k == b"content-type":
            if ctype is not None:
                return False
            ctype = v
        elif k in (b"content-encoding", b"set-cookie", b"set-cookie2"):
            return False
    return ctype is not None and ctype.lower().startswith(b"application/json")


def _request_dump(name: str, arguments: dict[str, Any] | None) -> dict[str, Any]:
    """``CallToolRequest(params=...).model_dump(by_alias=True, mode="json", exclude_none=True)``
    of a str name and JSON-parsed arguments (a dict or None), without the models: such values
    pass through them unchanged but for a float that is not finite (NaN, 1e400), which becomes
    None: then the models themselves (tests/proxy/test_http_fast_frames.py holds the two equal)."""
    if arguments is None:
        return {"method": "tools/call", "params": {"name": name}}
    try:
        plain = _json_native(arguments)
    except RecursionError:
        plain = False
    if plain:
        return {"method": "tools/call", "params": {"name": name, "arguments": arguments}}
    return request_dump_of_models(name, arguments)


def request_dump_of_models(name: str, arguments: dict[str, Any] | None) -> dict[str, Any]:
    """``_request_dump`` as the SDK path makes it."""
    fwd: dict[str, Any] = {"name": name}
    if arguments is not None:
        fwd["arguments"] = arguments
    request = types.CallToolRequest(params=types.CallToolRequestParams.model_validate(fwd))
    return request.model_dump(by_alias=True, mode="json", exclude_none=True)


def _frame_dump(up_id: int, params: dict[str, Any]) -> dict[str, Any]:
    """``JSONRPCRequest(jsonrpc="2.0", id=up_id, method="tools/call", params=params)`` dumped
    (``by_alias=True, mode="json", exclude_unset=True``), for params that ``_request_dump`` made
    (JSON-native values: unchanged by the model) and the dispatcher's ``_meta``; else the model."""
    meta = params.get("_meta")
    if up_id.__class__ is int and (meta is None or _json_native(meta)):
        return {"jsonrpc": "2.0", "id": up_id, "method": "tools/call", "params": params}
    frame = types.JSONRPCRequest(jsonrpc="2.0", id=up_id, method="tools/call", params=params)
    return frame.model_dump(by_alias=True, mode="json", exclude_unset=True)


_NATIVE = frozenset({str, int, bool, type(None)})


def _json_native(value: Any) -> bool:
    """Is ``value`` made of what ``model_dump(mode="json")`` passes on as it is: dicts with str
    keys, lists, str, int, bool, None and finite floats (no NaN or infinity)?"""
    cls = value.__class__
    if cls is dict:
        for k, v in value.items():
            if k.__class__ is not str or not (v.__class__ in _NATIVE or _json_native(v)):
                return False
        return True
    if cls is list:
        return all(v.__class__ in _NATIVE or _json_native(v) for v in value)
    if cls is float:
        return value - value == 0.0  # (inf - inf and nan - nan are nan)
    return cls in _NATIVE


class _RequestHeaders:
    """``ctx.request`` as ``FrontSessions.identity_of`` reads it: the request's headers (made when
    first read: a session's identity is asked once)."""

    __slots__ = ("scope", "_headers")

    def __init__(self, scope: Any) -> None:
        self.scope = scope
        self._headers: Any = None

    @property
    def headers(self) -> Any:
        if self._headers is None:
            from starlette.datastructures import Headers

            self._headers = Headers(scope=self.scope)
        return self._headers


def _same_id(a: Any, b: Any) -> bool:
    return a is not None and coerce_request_id(a) == coerce_request_id(b)


class _ClientCancelled(Exception):
    """The client cancelled the call (``HttpFastCalls.cancel``)."""
