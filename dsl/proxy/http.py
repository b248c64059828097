"""The streamable HTTP front: ``plr proxy --listen 127.0.0.1:PORT (--upstream URL | -- CMD)``.

The SDK's ``Server.streamable_http_app()`` serves both protocol eras (handshake-era clients
get an ``Mcp-Session-Id``, 2026-07-28 clients send self-contained POSTs); uvicorn runs it. The
session a limit counts against is the front's ``Mcp-Session-Id`` (or, in the stateless era,
identity + client info).

Each handshake-era front session is a ``FrontLink``: where the upstream's notifications and
server-to-client requests for that session are relayed. With ``--upstream URL`` a link also owns
its own upstream ``mcp.Client`` (one upstream session per agent, as without the proxy; at most
``--max-sessions``); with a command upstream every link shares the one server process (see
``relay.Relay.upstream_message`` for how its messages are routed). Stateless 2026-07-28 requests
have no link and use the shared upstream client.

With ``--auth-tokens FILE`` (a JSON object ``{"TOKEN": "identity", ...}``) every request must
carry ``Authorization: Bearer TOKEN``; the identity the policy sees is the token's. A request
without a known token is refused with 401 before it reaches the MCP layer (fail closed).

The front's own guards (``HttpFront``): the SDK's Host/Origin checks against the names of the
listener (DNS rebinding), the SDK's idle-session expiry, and ``guarded_protocol``, uvicorn's
httptools (or h11) protocol with a read deadline and a connection cap (slowloris).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import pydantic_core
from mcp.shared.dispatcher import coerce_request_id

from ..listener_names import allowed_names, is_loopback_listener, parse_allow_host

__all__ = [
    "TokenGate",
    "serve_http",
    "load_tokens",
    "identity_for_header",
    "FrontLink",
    "HttpFront",
    "is_loopback_listener",
    "parse_allow_host",
]


def load_tokens(path: str) -> dict[str, str]:
    """Read ``{"token": "identity"}``; ValueError with a readable message on anything else."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError("the tokens file must be a JSON object mapping token strings to identity strings")
    if not data:
        raise ValueError("the tokens file names no token")
    return data


def identity_for_header(tokens: dict[str, str], header: str | None) -> str | None:
    """The identity of ``Authorization: Bearer TOKEN``, compared in constant time; None if unknown."""
    if not header or not header[:7].lower() == "bearer ":
        return None
    given = hashlib.sha256(header[7:].strip().encode()).digest()
    found: str | None = None
    for tok, ident in tokens.items():
        if hmac.compare_digest(given, hashlib.sha256(tok.encode()).digest()):
            found = ident
    return found


@dataclass(eq=False)
class FrontLink:
    """One handshake-era front session (one ``Mcp-Session-Id``) and its way back to the client.

    ``inflight`` holds the session's requests now waiting on the upstream. While there is exactly
    one, a relayed message rides that request's response stream: that is where the upstream sent
    it as far as the proxy can tell, and that stream is surely open, whereas the session's
    standalone stream (its GET) may not be open yet. Otherwise relayed messages take the
    standalone stream.
    """

    key: str
    session: Any  # a ServerSession of this front session: its standalone channel, its capabilities
    inflight: list[Any] = field(default_factory=list)  # request contexts waiting on the upstream
    up: Any = None  # its own upstream mcp.Client (--upstream URL), once opened
    subscriptions: set[str] = field(default_factory=set)  # resource URIs it subscribed to (shared upstream)
    ended: bool = False
    lost: bool = False  # the upstream answered 404 to its session id: it forgot the session
    recheck_pins: bool = False  # the next upstream session is the server coming back: check its tools
    opening: anyio.Lock = field(default_factory=anyio.Lock)
    _generation: int = 0  # of the upstream client: a loss reported by an older one is ignored
    _closing: anyio.Event = field(default_factory=anyio.Event)
    _done: anyio.Event | None = None
    _scope: anyio.CancelScope | None = None
    _relays: set[anyio.Event] = field(default_factory=set)

    def route(self) -> tuple[Any, Any]:
        """(ServerSession, related request id or None) a relayed message for this session takes."""
        if len(self.inflight) == 1:
            ctx = self.inflight[0]
            return ctx.session, ctx.request_id
        return self.session, None

    @contextlib.contextmanager
    def waiting(self, ctx: Any) -> Iterator[None]:
        """Mark the request ``ctx`` as waiting on the upstream (relay routing reads this)."""
        self.inflight.append(ctx)
        try:
            yield
        finally:
            self.inflight.remove(ctx)

    def begin_relay(self) -> anyio.Event:
        """Register a relay in progress. Called before the relay's first await: the SDK runs an
        upstream notification's handler before it reads the next message, so a notification sent
        ahead of a result is registered before that result is handed to the waiting request."""
        done = anyio.Event()
        self._relays.add(done)
        return done

    def end_relay(self, done: anyio.Event) -> None:
        self._relays.discard(done)
        done.set()

    async def settle(self, limit: float = 2.0) -> None:
        """Wait (a bounded time) for the relays begun so far, so a log message the upstream sent
        before its result reaches the client before the result does."""
        pending = list(self._relays)
        if not pending:
            return
        with anyio.move_on_after(limit):
            for done in pending:
                await done.wait()

    def loss_reporter(self) -> Callable[[], None]:
        """For the upstream client about to be opened: called when the upstream answers 404 to
        its session id (the server forgot the session: it restarted, or expired it)."""
        self._generation += 1
        generation = self._generation

        def lost() -> None:
            if generation == self._generation and not self.ended:
                self.lost = True

        return lost

    async def open(
        self,
        client: Any,
        tg: anyio.abc.TaskGroup,
        timeout: float | None,
        on_closed: Callable[[], None],
        prepare: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        """Enter ``client`` (an unentered ``mcp.Client``) in a task of its own that holds it until
        ``close`` or ``drop``; ``on_closed`` runs once when that task ends. ``prepare(client)``
        runs before any request can use it, in that task (a cancelled request does not cut it
        short). Raises if the upstream does not complete its handshake and ``prepare`` (within
        ``timeout`` seconds)."""
        ready = anyio.Event()
        self._done = done = anyio.Event()
        self._scope = scope = anyio.CancelScope()
        self._closing = closing = anyio.Event()
        self.lost = False
        failure: list[BaseException] = []

        async def hold() -> None:
            try:
                with scope:
                    async with client as entered:
                        if prepare is not None:
                            await prepare(entered)
                        self.up = entered
                        ready.set()
                        await closing.wait()
            except Exception as e:  # noqa: BLE001 - handed to the request that opened it
                failure.append(e)
            finally:
                if self._closing is closing:  # not already replaced by a newer upstream session
                    self.up = None
                ready.set()
                done.set()
                on_closed()

        tg.start_soon(hold)
        try:
            with anyio.move_on_after(timeout if timeout else float("inf")):
                await ready.wait()
        except BaseException:  # the request that opens it was cancelled: so is the half-open session
            scope.cancel()
            raise
        if self.up is None:
            scope.cancel()
            raise failure[0] if failure else TimeoutError(f"no upstream handshake within {timeout:g} s")

    async def close(self, grace: float = 3.0) -> None:
        """The front session ended: close its upstream session (the SDK sends the upstream a
        DELETE), cancelling it after ``grace`` seconds."""
        self.ended = True
        await self.drop(grace)

    async def drop(self, grace: float = 3.0) -> None:
        """Close the upstream session but not the front session: the next request opens a new
        one (the upstream forgot this one)."""
        self._generation += 1  # the old client's last words (a 404 to its DELETE) are not a loss
        self.lost = False
        self.up = None  # no new request goes to the old session
        self._closing.set()
        if self._done is None:
            return
        with anyio.move_on_after(grace, shield=True):
            await self._done.wait()
        if not self._done.is_set() and self._scope is not None:
            self._scope.cancel()


def id_key(rid: Any) -> Any:
    """``coerce_request_id(rid)``: the key the SDK's dispatcher files a request in flight under
    (7, "7", "07" and " 7" are one id there), which every table of the client's requests in
    flight uses too (the fronts' gates, both fast paths, their cancellation lookups). Without the
    ``ValueError`` its ``int()`` raises for most string ids (a few µs a call): a string whose
    first character is no digit, sign or space, or whose last is no digit or space, is no integer
    to ``int()``, and the SDK's function returns it unchanged."""
    if rid.__class__ is str and rid:
        a, z = rid[0], rid[-1]
        if not (z.isdecimal() or z.isspace()) or not (a.isdecimal() or a.isspace() or a == "+" or a == "-"):
            return rid
    return coerce_request_id(rid)


_SUSPECT_ID = re.compile(rb'"id"\s*:\s*(?:true|false|null|[\[{]|-?\d+(?:\.\d|[eE]))')
_BODY_PEEK_MAX = 4 * 1024 * 1024  # the SDK refuses larger bodies itself (413)


def _request_of(body: bytes, loads: Callable[[bytes], Any] = json.loads) -> dict[str, Any] | None:
    """The JSON-RPC request (an object with a string method and an id) a frame holds, else None
    (a notification, a response, a batch, or not JSON: the SDK answers those itself)."""
    try:
        obj = loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or "id" not in obj or not isinstance(obj.get("method"), str):
        return None
    return obj


def _bad_id(rid: Any) -> bool:
    return not (isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)))


def bad_request_id(body: bytes) -> bool:
    """Whether a JSON-RPC request carries an id that is not a string or an integer (``true``,
    ``1.5``, ``null``, a list or an object): the SDK would take it for a notification (over HTTP
    answered 202, over stdio not at all), leaving the client waiting for ever. Both fronts ask
    this. A cheap scan first; the frame is parsed only when it looks so."""
    if not _SUSPECT_ID.search(body) and b"\\u" not in body:  # (an escape may spell the "id" key)
        return False
    req = _request_of(body)
    return req is not None and _bad_id(req["id"])


def mixed_frame(body: bytes) -> bool:
    """Whether the JSON object ``body`` has a ``"method"`` and a ``"result"`` or an ``"error"``:
    neither a request nor a response, though the SDK reads one of them (with an ``"error"``, a
    response it drops: the client would wait for ever; with a ``"result"``, a request). An
    Invalid Request, never forwarded. Parses ``body`` as the SDK parses it: for a frame a cheap
    scan did not clear (the stdio front's ``_parsed``; the HTTP front's ``_refusal`` scans too)."""
    try:
        obj = pydantic_core.from_json(body)
    except ValueError:
        return False
    return is_mixed(obj)


def is_mixed(obj: Any) -> bool:
    """Is the parsed JSON value ``obj`` an object with a method and a result or an error? (A
    ``null`` one is none: the SDK serves such a frame as the request it is, as it always did.)"""
    return obj.__class__ is dict and "method" in obj and answers_too(obj)


def answers_too(req: dict[str, Any]) -> bool:
    """Whether a request also carries a result or an error that is not ``null``."""
    return req.get("result") is not None or req.get("error") is not None


MIXED_MESSAGE = "a request or a notification carries no result and no error"


def _refusal(body: bytes) -> bytes | None:
    """The Invalid Request answering a POST the SDK would misread (a request whose id is not a
    string or an integer, or a frame with a method and a result or an error: ``mixed_frame``),
    with its id when it has a usable one; None: the SDK reads it right. A cheap scan first; the
    frame is parsed only when it looks so."""
    if not (
        _SUSPECT_ID.search(body)
        or body.find(b"\\u") >= 0
        or body.find(b'"method"') >= 0 and (body.find(b'"result"') >= 0 or body.find(b'"error"') >= 0)
    ):
        return None
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if is_mixed(obj):
        rid = obj.get("id")
        return _invalid_request(None if _bad_id(rid) else rid, f"Invalid Request: {MIXED_MESSAGE}")
    if obj.__class__ is dict and "id" in obj and isinstance(obj.get("method"), str) and _bad_id(obj["id"]):
        return _invalid_request(None, _BAD_ID_MESSAGE)
    return None


_BAD_ID_MESSAGE = "Invalid Request: the id must be a string or an integer"


def _session_of(scope: Any, headers: dict[bytes, bytes] | None = None) -> str | None:
    """The request's session id (its first ``Mcp-Session-Id``). ``headers``: the request's headers
    by lower-case name, when the front read them once with none repeated (``HeldPosts``)."""
    if headers is not None:
        v = headers.get(b"mcp-session-id")
        return None if v is None else v.decode("latin-1")
    for k, v in scope.get("headers") or []:
        if k.lower() == b"mcp-session-id":
            return v.decode("latin-1")
    return None


def _session_request(sid: str | None, body: bytes, loads: Callable[[bytes], Any] = json.loads) -> dict[str, Any] | None:
    """The request a session's POST holds (``_request_of``), when there is a session and the
    body may hold an id (spelled out, or with an escape that may spell it); else None."""
    # (``find``: ``in`` on bytes first tries the needle as an int, an exception raised and cleared)
    return _request_of(body, loads) if sid and (body.find(b'"id"') >= 0 or body.find(b"\\u") >= 0) else None


def _invalid_request(rid: Any, message: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": -32600, "message": message}}).encode()


async def _refuse(send: Any, body: bytes) -> None:
    """A 400 with a JSON-RPC error body."""
    await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


class RequestIdGate:
    """ASGI middleware: a POST whose JSON-RPC request has an id that is not a string or an
    integer, or whose frame has a method and a result or an error (``mixed_frame``), gets a 400
    with a JSON-RPC Invalid Request error, not a silent 202; one that reuses the id of a request
    of the same session still in flight gets a 400 Invalid Request with that id: the SDK keys a
    session's answers by request id, so the first request would be orphaned (a cancel no longer
    reaching it, a later grant still running it). Ids are keyed as the SDK's dispatcher keys its
    requests in flight (``id_key``: 7, "7", "07" and " 7" are one id there).

    Only a request the SDK serves in that session takes a slot (``routed``): one of another
    identity (or for a session that does not exist, or of the 2026-07-28 era, which no session
    serves) goes to the SDK untouched, which answers it as without the gate (another identity
    gets exactly the 404 of a session that does not exist, whatever ids are in flight)."""

    def __init__(self, app: Any, fast: Any = None, manager: Any = None) -> None:
        self.app = app
        # http_fast.HttpFastCalls (or None): takes a session's tools/call once its id is in flight here
        self.fast = fast
        self._inflight: dict[tuple[str, Any], list[Any]] = {}  # (session, coerced id) -> [the id in flight]
        # the SDK's StreamableHTTPSessionManager (its sessions and their owners), for ``routed``;
        # None (a bare gate): every session's request takes a slot
        self.manager = manager
        if manager is not None:
            from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
            from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
            from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

            self._user_class, self._principal_of = AuthenticatedUser, authorization_context
            self._version_header = MCP_PROTOCOL_VERSION_HEADER.encode("ascii")
            self._handshake_versions = HANDSHAKE_PROTOCOL_VERSIONS

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[Any] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body") or size > _BODY_PEEK_MAX:
                break
        complete = chunks and chunks[-1]["type"] == "http.request" and not chunks[-1].get("more_body")
        body = b"".join(m.get("body", b"") for m in chunks) if complete else None

        async def replay() -> Any:
            return chunks.pop(0) if chunks else await receive()

        await self.serve(scope, body, replay, send)

    async def serve(self, scope: Any, body: bytes | None, receive: Any, send: Any, held: bool = False) -> None:
        """The checks, then the fast path or the app, for a POST whose body was read (``body``;
        None: not whole, too large or the client left), ``receive`` handing it out again
        (``held``: started by ``HeldPosts``)."""
        complete = body is not None
        body = body or b""
        sid = _session_of(scope) if complete else None
        # a session's request is parsed once, for both checks; any other frame only when it looks
        # as if it were to be refused
        req = _session_request(sid, body)
        if req is not None:
            if _bad_id(req["id"]):
                await _refuse(send, _invalid_request(None, _BAD_ID_MESSAGE))
                return
            if answers_too(req):
                await _refuse(send, _invalid_request(req["id"], f"Invalid Request: {MIXED_MESSAGE}"))
                return
        elif complete:
            refusal = _refusal(body)
            if refusal is not None:
                await _refuse(send, refusal)
                return
        if req is None or sid is None or not self.routed(scope, sid):
            fast = self.fast
            if fast is not None and req is None and fast.cancelling(sid, body):
                await fast.cancel(scope, sid, body)  # a fast call it names stops; the SDK sees it too
            await self.app(scope, receive, send)
            return
        rid = req["id"]
        slot = (sid, id_key(rid))
        if slot in self._inflight:
            await _refuse(send, _invalid_request(
                rid,
                f"Invalid Request: id {json.dumps(self._inflight[slot][0])} is still in flight in this session "
                "(7, \"7\" and \"07\" are one id to the MCP SDK)",
            ))  # fmt: skip
            return
        free = self.hold(slot, rid)
        send_and_free = _freeing(send, free)
        try:
            fast = self.fast
            if fast is None or not await fast.take(scope, body, req, sid, send_and_free, held):
                await self.app(scope, receive, send_and_free)
        finally:
            free()

    def routed(self, scope: Any, sid: str) -> bool:
        """Whether the SDK serves this POST in session ``sid`` itself: a handshake-era POST (no
        ``MCP-Protocol-Version``, or one of that era, read as the session manager reads it) for a
        live session whose owner is the request's principal. Asked before any slot is looked at:
        a request of another identity never touches or learns a slot of the session."""
        manager = self.manager
        if manager is None:
            return True
        header = self._version_header
        for k, v in scope.get("headers") or ():
            if k == header:
                if v.decode("latin-1") not in self._handshake_versions:
                    return False  # the manager's 2026-07-28 entry: no session serves it
                break
        if sid not in manager._server_instances:  # noqa: SLF001 - mcp==2.3.0 is pinned
            return False  # the SDK answers 404
        user = scope.get("user")
        requestor = self._principal_of(user) if isinstance(user, self._user_class) else None
        return requestor == manager._session_owners.get(sid)  # noqa: SLF001

    def begin(
        self, scope: Any, body: bytes, headers: dict[bytes, bytes] | None = None
    ) -> tuple[dict[str, Any], str, tuple[str, Any]] | None:
        """For ``HeldPosts.start``: the request, session and slot of a POST (its whole ``body``)
        that ``serve`` would hand to the fast path, its id not in flight. None: ``serve`` is
        the one to answer it.

        The request is parsed as the SDK (and the fast path after this) parses it, by
        ``pydantic_core``, once for both: where that parser and ``json.loads`` both read a body they
        read the same value (duplicate keys included); a body only ``json.loads`` reads (a lone
        surrogate escape, a byte-order mark) is never the fast path's, and gets None here.
        ``headers``: as ``_session_of``'s. (The session's owner is not asked here: the fast path
        takes no request of another identity, and ``serve`` asks before it looks at a slot.)"""
        sid = _session_of(scope, headers)
        req = _session_request(sid, body, pydantic_core.from_json)
        if sid is None or req is None or _bad_id(req["id"]) or answers_too(req):
            return None
        slot = (sid, id_key(req["id"]))
        if slot in self._inflight:
            return None
        return req, sid, slot

    def hold(self, slot: tuple[str, Any], rid: Any) -> Callable[[], None]:
        """Mark the request id ``rid`` in flight in its session; the function that frees it."""
        mine = self._inflight[slot] = [rid]  # (a list: this request's own entry, by identity)

        def free() -> None:
            if self._inflight.get(slot) is mine:  # not a later request that reused the id
                del self._inflight[slot]

        return free


def _freeing(send: Any, free: Callable[[], None]) -> Any:
    """``send``, calling ``free`` as the end of the response goes out: the client may use the id
    again at once."""

    async def send_and_free(message: Any) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            free()
        await send(message)

    return send_and_free


class TokenGate:
    """ASGI middleware: 401 unless the request carries a known bearer token."""

    def __init__(self, app: Any, tokens: dict[str, str]) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user_scope = self.user_scope(scope)
        if user_scope is None:
            body = json.dumps(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": "plr: unauthorized"}}
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        # The SDK binds a session to the principal that opened it and answers any other one exactly
        # as for a session that does not exist (404), for POST, GET and DELETE alike: the token's
        # identity is that principal, so token B cannot spend, end or listen on token A's session.
        await self.app(user_scope, receive, send)

    def user_scope(self, scope: Any, headers: dict[bytes, bytes] | None = None) -> Any:
        """``scope`` with the principal of the request's bearer token (its first
        ``Authorization``) as ``user``; None when the token is not a known one. ``headers``: as
        ``_session_of``'s."""
        auth = None
        if headers is not None:
            v = headers.get(b"authorization")
            auth = None if v is None else v.decode("latin-1")
        else:
            for k, v in scope.get("headers") or []:
                if k.lower() == b"authorization":
                    auth = v.decode("latin-1")
                    break
        identity = identity_for_header(self.tokens, auth)
        return None if identity is None else {**scope, "user": _principal(identity)}


def _principal(identity: str) -> Any:
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken

    return AuthenticatedUser(AccessToken(token="", client_id=identity, scopes=[]))


_HELD_BODY_MAX = 64 * 1024  # uvicorn's HIGH_WATER_LIMIT: over it the protocol stops reading until the app reads
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})  # what uvicorn's ProxyHeadersMiddleware reads
_NOT_HELD = _FORWARDED | {b"transfer-encoding", b"expect"}  # (``HeldPosts.wants``)


class Answering:
    """``HeldPosts.start``'s answer for a call answered from the callbacks (``answer_now``):
    ``kick()`` starts the task that answers it, if it has none yet (the server is stopping)."""

    __slots__ = ("kick",)

    def __init__(self, kick: Callable[[], None]) -> None:
        self.kick = kick


class _CycleFront:
    """uvicorn's request-response cycle of a held request, as ``HttpFastCalls.answer_now`` writes
    through it: ``send`` (its ASGI send, freeing the request id as the answer's end goes out),
    ``writable()`` (a send will not wait: writing is not paused), ``start()`` (the request's
    task, answering the call), ``free()``, ``abort()`` (close the client's connection) and
    ``queued()`` (a request the client pipelined behind this one waits: the protocol's)."""

    __slots__ = ("cycle", "send", "free", "start", "pipeline")

    def __init__(self, cycle: Any, free: Callable[[], None], start: Callable[[], None], pipeline: Any) -> None:
        self.cycle = cycle
        self.send = _freeing(cycle.send, free)
        self.free = free
        self.start = start
        self.pipeline = pipeline  # (uvicorn's queue of the connection's pipelined requests)

    def writable(self) -> bool:
        return not self.cycle.flow.write_paused

    def queued(self) -> bool:
        return bool(self.pipeline)

    def abort(self) -> None:
        self.cycle.transport.close()

    def answer(self, headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> bool:
        """The whole answer, a ``200`` with ``headers`` and ``body``, written at once as the
        cycle's ASGI ``send`` writes an ``http.response.start`` and one last ``http.response.body``
        (the same bytes, in one write, and the same state after: complete, ``on_response`` called,
        the id freed first), without the two messages. False, nothing done: the sends are to write
        it (a response already started, a client gone, writing paused, a connection to close after
        it, an access log, a head this does not write as uvicorn would: ``_answer_head``)."""
        cycle = self.cycle
        if (
            cycle.response_started
            or cycle.disconnected
            or cycle.flow.write_paused
            or not cycle.keep_alive
            or cycle.access_log
            or cycle.scope["method"] == "HEAD"
            or cycle.transport.__class__ is not _Corked
        ):
            return False
        head = _answer_head(cycle.default_headers, headers)
        if head is None:
            return False
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        cycle.chunked_encoding = True
        self.free()
        cycle.transport.write_whole(head + (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n")
        cycle.response_complete = True
        cycle.message_event.set()
        cycle.on_response()
        return True


_ANSWER_HEADS: dict[int, tuple[Any, Any, bytes]] = {}  # id(headers) -> (default headers, headers, head)


def _answer_head(default: list[tuple[bytes, bytes]], headers: tuple[tuple[bytes, bytes], ...]) -> bytes | None:
    """The head uvicorn's ``RequestResponseCycle.send`` writes for a ``200`` with ``headers`` on
    a kept-alive connection, when it is a chunked one with nothing uvicorn would act on (no
    length, no ``Connection: close``, valid names and values); else None. Kept per ``headers``
    (a tuple: it cannot change in place) and per default headers (uvicorn makes a new default
    list when its ``Date`` changes, and never changes one in place)."""
    if headers.__class__ is not tuple:
        return None  # (a list may change after its head is kept)
    kept = _ANSWER_HEADS.get(id(headers))
    if kept is not None and kept[0] is default and kept[1] is headers:
        return kept[2]
    from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE

    content = [STATUS_LINE[200]]
    chunked = False
    for name, value in [*default, *headers]:
        if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
            return None  # (uvicorn raises)
        name = name.lower()
        if name == b"content-length":
            return None
        if name == b"transfer-encoding" and value.lower() == b"chunked":
            chunked = True
        elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
            return None
        content.extend([name, b": ", value, b"\r\n"])
    if not chunked:
        content.append(b"transfer-encoding: chunked\r\n")
    content.append(b"\r\n")
    head = b"".join(content)
    if len(_ANSWER_HEADS) >= 1024:
        _ANSWER_HEADS.clear()
    _ANSWER_HEADS[id(headers)] = (default, headers, head)
    return head


class HeldPosts:
    """The POSTs of a session to the MCP endpoint, served from the front's protocol once their body
    is in (``guarded_protocol``'s ``held``) instead of through uvicorn's middleware and ours.

    Such a request needs nothing of the outer layers: uvicorn's ``ProxyHeadersMiddleware`` changes
    nothing without ``X-Forwarded-*`` headers, ``/metrics`` is a GET, and ``TokenGate``'s work is
    done here (a request without a known token takes the whole chain, which answers it 401). So
    ``RequestIdGate.serve`` gets the body at once, and either the fast path answers or the chain
    runs as it always does, reading the same body from the protocol."""

    def __init__(self, gate: RequestIdGate, fast: Any, tokens: TokenGate | None) -> None:
        self.gate = gate
        self.fast = fast  # (its ``path``: the endpoint's)
        self.tokens = tokens

    def wants(self, scope: Any, headers: dict[bytes, bytes] | None = None) -> bool:
        """Whether the request whose head is in is held until its body is: a POST to the endpoint
        with a session id and a ``Content-Length`` of at most 64 KiB, nothing the outer layers act
        on, and a fast path that is on. ``headers``: as ``_session_of``'s."""
        fast = self.fast
        if fast.manager is None or not fast.enabled or scope["method"] != "POST" or scope["path"] != fast.path:
            return False
        if headers is not None:
            v = headers.get(b"content-length")
            return (
                v is not None and v.isdigit() and int(v) <= _HELD_BODY_MAX and b"mcp-session-id" in headers
                and _NOT_HELD.isdisjoint(headers)
            )  # fmt: skip
        session = length = False
        for k, v in scope["headers"]:  # (lower case: uvicorn's protocols lower the names)
            if k == b"content-length":
                if length or not v.isdigit() or int(v) > _HELD_BODY_MAX:
                    return False
                length = True
            elif k == b"mcp-session-id":
                session = True
            elif k in _FORWARDED or k == b"transfer-encoding" or k == b"expect":
                return False
        return session and length

    def start(
        self, scope: Any, body: bytes, cycle: Any = None, start: Any = None, pipeline: Any = (),
        headers: dict[bytes, bytes] | None = None,
    ) -> Any:  # fmt: skip
        """For the protocol's callback that read the whole ``body``: when the fast path takes the
        call there (``HttpFastCalls.take_now``: decided, recorded and written upstream), the app
        that answers it (run as the request's task), or an ``Answering`` when it is answered from the
        callbacks (``answer_now`` writes through ``cycle``, uvicorn's request-response cycle, whose
        task ``start(app)`` starts if the call needs one after all); None: nothing was done,
        ``serve`` runs. ``headers``: as ``_session_of``'s."""
        if self.tokens is not None:
            scope = self.tokens.user_scope(scope, headers)
            if scope is None:
                return None
        gate = self.gate
        begun = gate.begin(scope, body, headers)
        if begun is None:
            return None
        req, sid, slot = begun
        fast = self.fast
        call = fast.take_now(scope, body, req, sid, headers)
        if call is None:
            return None
        free = gate.hold(slot, req["id"])
        user_scope = scope

        async def answer(scope: Any, receive: Any, send: Any) -> None:
            try:
                await fast.finish(call, user_scope, _freeing(send, free))
            finally:
                free()

        if cycle is not None and start is not None:
            try:
                kick = fast.answer_now(call, user_scope, _CycleFront(cycle, free, lambda: start(answer), pipeline))
            except Exception:  # noqa: BLE001 - nothing raises there once the call is boarded: its task
                logging.getLogger(__name__).debug("answering a held call from the callbacks failed", exc_info=True)
                kick = None
            if kick is not None:
                return Answering(kick)
        return answer

    async def serve(self, scope: Any, receive: Any, send: Any, *, chain: Any, body: bytes) -> None:
        """``body``: the request's whole body, which ``receive`` still hands out (to ``chain``, the
        app uvicorn would have run, when this request is not served here)."""
        if self.tokens is not None:
            user_scope = self.tokens.user_scope(scope)
            if user_scope is None:
                await chain(scope, receive, send)  # TokenGate answers it
                return
            scope = user_scope
        await self.gate.serve(scope, body, receive, send, True)


# --- the front's guards: Host/Origin names, read deadline, connection cap -----------------------


@dataclass(frozen=True)
class HttpFront:
    """How the HTTP front guards itself (``plr proxy --listen``; docs/proxy.md, "Over HTTP").

    ``check_hosts``: the SDK's DNS-rebinding protection: a request whose ``Host`` (or ``Origin``)
    names anything but the listener (or an ``allow_hosts`` entry) gets 421 (403). The CLI turns it
    on without ``--auth-tokens`` always, and with tokens on a loopback listener or when
    ``--allow-host`` is given. ``read_timeout``: see ``guarded_protocol``.
    ``session_idle_timeout``: the SDK ends a session with no request in flight (and no open
    stream) for this long; its id then answers 404."""

    check_hosts: bool = True
    allow_hosts: tuple[str, ...] = ()  # "name", "name:port", "[v6]" or "[v6]:port", lower case
    read_timeout: float = 10.0
    max_connections: int = 512
    session_idle_timeout: float = 30 * 60.0
    metrics: Any = None  # --metrics: a metrics.ProxyMetrics also served at GET /metrics (behind the tokens)


_BODY_RATE = 64 * 1024  # bytes a second: a body earns its sender this much more time to send it
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 26\r\n\r\nplr: too many connections\n"
)


def front_protocol() -> str:
    """Which HTTP/1.1 parser serves the front: ``"httptools"`` (llhttp, in C: a fraction of h11's
    cost per request) when it is importable, else ``"h11"``; ``PLR_PROXY_HTTP=h11`` forces h11."""
    if os.environ.get("PLR_PROXY_HTTP", "").strip().lower() == "h11":
        return "h11"
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


_HEAD_LIMIT = 16 * 1024  # h11's limit on an incomplete request head (uvicorn keeps h11's default)
_INVALID = "Invalid HTTP request received."


def guarded_protocol(
    read_timeout: float,
    max_connections: int,
    report: Callable[[str], None],
    kind: str | None = None,
    held: HeldPosts | None = None,
) -> type:
    """uvicorn's HTTP protocol (``kind``: ``"h11"`` or ``"httptools"``, by default
    ``front_protocol()``) with the two guards it lacks (it never times out a half-sent request,
    and its ``limit_concurrency`` counts stalled connections, so at its limit it answers the valid
    clients 503 while the stalled ones stay):

    - a read deadline: while a connection waits on its client for a request (from connecting, or
      from the end of its previous response, until the headers are in) it has ``read_timeout``
      seconds, then again for the body (plus a second per 64 KiB it carries); a connection that
      misses its deadline is closed;
    - a cap of ``max_connections``: at the cap a new connection closes the connection that has
      waited longest on its client (a stalled one; a client whose request is being served or
      streamed is never chosen), or, when none is waiting, is itself answered 503 and closed.

    Both protocols wait in the same phases: ``HEAD`` (h11's client state ``IDLE``) and ``BODY``
    (``SEND_BODY``); ``None`` while the request is served. The httptools one also keeps what h11
    checks and llhttp does not: an incomplete request head (or trailer section) over 16 KiB, an
    HTTP/1.1 request without exactly one ``Host``, a ``Transfer-Encoding`` other than ``chunked``,
    an HTTP version other than 1.0 and 1.1 get 400; trailers never join the request's headers; a
    request target that is not a path (absolute form) or holds a ``#`` is the ASGI path as given,
    as h11 passes it; after an ``Upgrade`` request (never served: no WebSocket) the connection
    goes on reading requests, as with h11 (one that carries a body gets 400: llhttp would take the
    body for the new protocol's bytes).

    ``held`` (httptools only): a request it ``wants`` starts once its body is in, as
    ``held.serve`` (which runs the app itself when it does not serve the request).
    """
    kind = kind or front_protocol()
    last_report = [0.0]
    HEAD, BODY = "head", "body"

    def tell(what: str) -> None:  # at most one line in 10 s: an attack must not flood the log
        now = time.monotonic()
        if now - last_report[0] >= 10:
            last_report[0] = now
            report(f"plr proxy: {max_connections} HTTP connections open (--max-connections): {what}")

    class Guarded:
        """The guards, over a uvicorn protocol whose ``_state()`` says what it waits on."""

        _phase: Any = None  # HEAD or BODY while the connection waits on its client, else None
        _since = 0.0  # when it started waiting on its client
        _deadline = 0.0
        _timer: asyncio.TimerHandle | None = None
        _closing = False  # evicted or refused: no longer counted
        _refused = False

        def _state(self) -> Any:
            raise NotImplementedError

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            live = [c for c in self.connections if not getattr(c, "_closing", False)]  # type: ignore[attr-defined]
            if len(live) >= max_connections:
                waiting = [c for c in live if isinstance(c, Guarded) and c._phase is not None]
                if waiting:
                    victim = min(waiting, key=lambda c: c._since)
                    victim._closing = True
                    victim.transport.close()  # type: ignore[attr-defined]
                    tell("closing the ones that wait longest on their clients")
                else:
                    self._refused = self._closing = True
                    transport.write(_REFUSED)
                    transport.close()
                    tell("all busy, refusing new ones (503)")
                    return
            super().connection_made(transport)  # type: ignore[misc]
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()  # type: ignore[misc]
            self._watch()

        def pause_writing(self) -> None:
            if not self._refused:
                super().pause_writing()  # type: ignore[misc]

        def resume_writing(self) -> None:
            if not self._refused:
                super().resume_writing()  # type: ignore[misc]

        def connection_lost(self, exc: Exception | None) -> None:
            self._phase = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._refused:
                super().connection_lost(exc)  # type: ignore[misc]

        def _received(self, was_body: bool, n: int) -> None:
            """After ``n`` bytes were read: a body earns more time; then the phase is looked at."""
            if was_body and self._phase is BODY and self._state() is BODY:
                self._deadline += n / _BODY_RATE
            self._watch()

        def _watch(self) -> None:
            """(Re)arm the deadline when the connection starts waiting on its client for a request's
            headers or body; disarm it while the request is served."""
            state = self._state()
            if state is None:
                self._phase = None
                return
            if state is self._phase:
                return
            self._phase = state
            loop = self.loop  # type: ignore[attr-defined]
            self._since = loop.time()
            self._deadline = self._since + read_timeout
            timer = self._timer
            if timer is not None and timer.when() > self._deadline:  # (a body's extension)
                timer.cancel()
                timer = None
            if timer is None:  # (an armed timer firing before the deadline: ``_expire`` re-arms it)
                self._timer = loop.call_at(self._deadline, self._expire)

        def _expire(self) -> None:
            self._timer = None
            transport = self.transport  # type: ignore[attr-defined]
            if self._phase is None or transport is None or transport.is_closing():
                return
            loop = self.loop  # type: ignore[attr-defined]
            if loop.time() < self._deadline:
                self._timer = loop.call_at(self._deadline, self._expire)
                return
            self._closing = True
            transport.close()

    if kind == "httptools":
        return _guarded_httptools(Guarded, HEAD, BODY, held)
    if kind != "h11":
        raise ValueError(f"unknown HTTP protocol {kind!r}")

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    client_waits = {h11.IDLE: HEAD, h11.SEND_BODY: BODY}

    class GuardedH11Protocol(Guarded, H11Protocol):
        def _state(self) -> Any:
            return client_waits.get(self.conn.their_state)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            was_body = self._phase is BODY
            super().data_received(data)
            self._received(was_body, len(data))

    return GuardedH11Protocol


def _guarded_httptools(Guarded: type, HEAD: str, BODY: str, held: HeldPosts | None) -> type:
    """``guarded_protocol`` over uvicorn's httptools protocol (see there for what it adds)."""
    from functools import partial
    from urllib.parse import unquote

    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class _Invalid(Exception):
        pass

    class GuardedHttpToolsProtocol(Guarded, HttpToolsProtocol):  # type: ignore[misc, valid-type]
        _in_body = False  # the current message's headers are in, the message is not complete
        _trailers = False  # a chunk header with no data after it (the last chunk): trailers follow
        _marks = 0  # parser events that end or start a head or trailer section
        _pending = 0  # bytes counted of the incomplete head (or trailer section)
        _held: Any = None  # (cycle, app) of a request ``held`` waits on the body of, not started yet
        _answering: Any = None  # the kick of a call answered from the callbacks (``HeldPosts.start``)
        _stopping = False  # the server is stopping: every request gets its task at once
        # the last head read: (its scope, its headers by lower-case name or None when a name repeats,
        # its target, its Expect: 100-continue); a pipelined request starts later, when another
        # head may have been read since
        _names: tuple[Any, dict[bytes, bytes] | None, bytes, bool] | None = None

        def _state(self) -> Any:
            # what h11's client state would be for the request being answered (or the next one):
            # a queued pipelined request means the one answered is complete, as is one being served
            if self.pipeline:
                return None
            if self._in_body:
                return BODY
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return None
            return HEAD

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            was_body = self._phase is BODY
            open_before = not self._in_body or self._trailers
            marks = self._marks
            self._unset_keepalive_if_required()
            chunk = data
            while True:
                try:
                    self.parser.feed_data(chunk)
                    break
                except httptools.HttpParserUpgrade as upgrade:
                    # not served (no WebSocket): the request was answered as any other, and what
                    # follows it is the next request, as h11 reads it
                    self._unsupported_upgrade_warning()
                    chunk = chunk[upgrade.args[0] :]
                    self.parser = httptools.HttpRequestParser(self)
                    with contextlib.suppress(AttributeError):
                        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
                    self._in_body = self._trailers = False
                    self._marks += 1
                except httptools.HttpParserError:
                    self._bad()
                    return
            # a head or trailer section still incomplete: as h11, at most 16 KiB of it (those
            # bytes of the read it began in that follow what came before are not known: a read
            # that ends one section and begins the next counts nothing)
            if not self._in_body or self._trailers:
                if open_before and marks == self._marks:
                    self._pending += len(data)
                    if self._pending > _HEAD_LIMIT:
                        self._bad()
                        return
                else:
                    self._pending = 0
            else:
                self._pending = 0
            self._received(was_body, len(data))

        def _bad(self) -> None:
            self.logger.warning(_INVALID)
            self.send_400_response(_INVALID)

        def on_header(self, name: bytes, value: bytes) -> None:
            if not self._in_body:  # a trailer never joins the headers (h11 drops trailers)
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._marks += 1
            parser = self.parser
            version = parser.get_http_version()
            hosts = 0
            te = None
            framed = False
            names = {}
            for name, value in self.headers:
                names[name] = value
                if name == b"host":
                    hosts += 1
                elif name == b"transfer-encoding":
                    te = value
                    framed = True
                elif name == b"content-length":
                    framed = framed or value.strip(b" \t0") != b""
            if version not in ("1.0", "1.1") or hosts > 1 or (hosts == 0 and version == "1.1"):
                raise _Invalid
            if te is not None and te.lower() != b"chunked":
                raise _Invalid
            if framed and parser.should_upgrade():
                raise _Invalid  # llhttp would hand the body to the new protocol
            self._names = (self.scope, names if len(names) == len(self.headers) else None, self.url, self.expect_100_continue)
            super().on_headers_complete()
            self._in_body = True
            url = self.url
            if url[:1] != b"/" or b"#" in url:  # the target as h11 passes it
                raw_path, _, query = url.partition(b"?")
                self.scope["path"] = self.root_path + unquote(raw_path.decode("ascii"))
                self.scope["raw_path"] = self.root_path.encode("ascii") + raw_path
                self.scope["query_string"] = query

        def on_body(self, body: bytes) -> None:
            self._marks += 1
            self._trailers = False
            super().on_body(body)

        def on_chunk_header(self) -> None:
            self._marks += 1
            self._trailers = True

        def on_chunk_complete(self) -> None:
            self._marks += 1
            self._trailers = False

        def on_message_complete(self) -> None:
            self._marks += 1
            self._in_body = self._trailers = False
            super().on_message_complete()
            waiting = self._held
            if waiting is not None and waiting[0] is self.cycle:
                self._held = None
                self._start_held(*waiting)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            # (uvicorn calls this when a request's head is in, or when a queued one's turn comes)
            # (an absolute-form target or a "#" in it: the path is rewritten after this; not held)
            seen = self._names
            if seen is not None and seen[0] is cycle.scope:
                _, names, url, expect = seen
            else:  # a pipelined request, its turn come after later heads were read: its own scope
                names, url, expect = None, cycle.scope.get("raw_path") or b"", cycle.waiting_for_100_continue
            if (
                held is None
                or self._stopping
                or app is not self.app
                or expect
                or url[:1] != b"/"
                or b"#" in url
                or not held.wants(cycle.scope, names)
            ):
                super()._start_asgi_task(cycle, app)
            elif cycle.more_body:
                self._held = (cycle, app, names)  # its task starts with the body (``on_message_complete``)
            else:
                self._start_held(cycle, app, names)

        def _start_held(self, cycle: Any, app: Any, names: dict[bytes, bytes] | None = None) -> None:
            cycle.transport = _Corked(cycle.transport, self.loop)
            body = bytes(cycle.body)

            def start(answer: Any) -> None:  # (the task of a call answered from the callbacks, if it needs one)
                HttpToolsProtocol._start_asgi_task(self, cycle, answer)

            try:
                answer = held.start(cycle.scope, body, cycle, start, self.pipeline, names)
            except Exception:  # noqa: BLE001 - nothing was taken: the task does it all, as for any request
                logging.getLogger(__name__).debug("taking a held call in the callback failed", exc_info=True)
                answer = None
            if isinstance(answer, Answering):
                self._answering = answer.kick
                return
            super()._start_asgi_task(cycle, answer or partial(held.serve, chain=app, body=body))

        def connection_lost(self, exc: Exception | None) -> None:
            self._held = None  # never started: nothing to stop
            self._answering = None  # (its call goes on: the upstream's answer ends it)
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            self._answering = None  # (its call is answered; a pipelined request may start now)
            super().on_response_complete()

        def shutdown(self) -> None:
            # the server stops: a request still waiting for its body starts now, as uvicorn would
            # have started it, so it is served or cancelled (500) within the graceful shutdown as
            # every other request; it must not start after the server has stopped
            waiting = self._held
            if waiting is not None:
                self._held = None
                super()._start_asgi_task(waiting[0], waiting[1])
            # a call answered from the callbacks gets its task now, for the same reason: the
            # graceful shutdown waits for it, and cancels it when its time is up
            self._stopping = True  # (a pipelined request started later: the same, see _start_asgi_task)
            kick, self._answering = self._answering, None
            if kick is not None:
                try:
                    kick()
                except Exception:  # noqa: BLE001 - the other connections are still to be told
                    logging.getLogger(__name__).exception("plr proxy: starting a call's task at shutdown failed")
            super().shutdown()

    return GuardedHttpToolsProtocol


class _Corked:
    """The transport as a held request's ``RequestResponseCycle`` sees it. uvicorn writes a
    response's head and its body apart, two TCP segments (and two system calls) for an answer
    that fits one; here the head waits for what the same step of the task writes next and goes out
    with it, or alone at the end of that step (a response whose body comes later, e.g. an event
    stream, still has its head sent at once)."""

    __slots__ = ("_transport", "_loop", "_head", "_wrote")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._wrote = False

    def write(self, data: bytes) -> None:
        if not self._wrote:  # the head (the cycle writes nothing before it: no 100 Continue here)
            self._wrote = True
            self._head = data
            self._loop.call_soon(self._flush)
            return
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        self._transport.write(data)

    def write_whole(self, data: bytes) -> None:
        """A whole response, head and body, in one write (``_CycleFront.answer``)."""
        self._wrote = True
        self._flush()
        self._transport.write(data)

    def _flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())


class LowerCaseHost:
    """ASGI middleware: ``Host`` and ``Origin`` in lower case (host names are case-insensitive;
    the SDK compares them as strings), so ``Host: LOCALHOST:8765`` is the listener's name too."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(k, v.lower() if k in (b"host", b"origin") else v) for k, v in scope.get("headers") or []]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def _with_metrics(app: Any, metrics_app: Any) -> Any:
    """``GET /metrics`` to the Prometheus exposition, everything else to ``app``."""

    async def route(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics" and scope["method"] == "GET":
            await metrics_app(scope, receive, send)
        else:
            await app(scope, receive, send)

    return route


class _NotShutdownCancellation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


async def serve_http(
    server: Any,
    host: str,
    port: int,
    *,
    tokens: dict[str, str] | None,
    report: Any,
    path: str = "/mcp",
    stop: anyio.Event | None = None,
    front: HttpFront | None = None,
    fast: Any = None,
) -> None:
    """Serve ``server`` until cancelled (or until uvicorn stops on a signal). ``fast``: an
    ``http_fast.HttpFastCalls`` that serves the ``tools/call`` POSTs it can (None: the SDK all)."""
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    front = front or HttpFront()
    # Always explicit: the SDK would switch the checks on by itself only for three spellings of
    # loopback. The lists are filled once the port is known (now, or after binding port 0); until
    # then every request is refused (421).
    security = TransportSecuritySettings(enable_dns_rebinding_protection=front.check_hosts)
    if port:
        security.allowed_hosts[:], security.allowed_origins[:] = allowed_names(host, {port}, front.allow_hosts)
    sdk_app = server.streamable_http_app(
        streamable_http_path=path,
        host=host,
        transport_security=security,
        session_idle_timeout=front.session_idle_timeout,
    )
    if fast is not None:
        fast.attach(getattr(server, "_session_manager", None), path)
    manager = getattr(server, "_session_manager", None)
    gate = RequestIdGate(LowerCaseHost(sdk_app), fast, manager if hasattr(manager, "_session_owners") else None)
    app: Any = gate
    if front.metrics is not None:
        app = _with_metrics(app, front.metrics.asgi_app())
    token_gate = None
    if tokens is not None:
        app = token_gate = TokenGate(app, tokens)
    held = HeldPosts(gate, fast, token_gate) if fast is not None else None
    # A signal must stop the proxy even while clients hold sessions (streams) open: after 3 s
    # uvicorn cancels what still runs. Its log goes through the proxy's handler (one line, never a
    # traceback), and the cancellations of that shutdown are not errors worth a line at all.
    logging.getLogger("uvicorn.error").addFilter(_NotShutdownCancellation())
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=3,
        http=guarded_protocol(front.read_timeout, front.max_connections, report, held=held),
        ws="none",  # the MCP endpoint is plain HTTP: no WebSocket upgrade path
    )
    userver = uvicorn.Server(config)
    # signals are ours (serve.py): uvicorn would re-raise them after its shutdown and skip our cleanup
    userver.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]

    async def stopper() -> None:
        if stop is not None:
            await stop.wait()
            userver.should_exit = True

    async def announce() -> None:
        while not userver.started:
            await anyio.sleep(0.02)
        if not port:  # bound to a port of the system's choosing: now it has a number
            ports = {sock.getsockname()[1] for s in userver.servers for sock in s.sockets}
            security.allowed_hosts[:], security.allowed_origins[:] = allowed_names(host, ports, front.allow_hosts)
        for s in userver.servers:
            for sock in s.sockets:
                h, p = sock.getsockname()[:2]
                shown = f"[{h}]" if ":" in h else h
                report(f"plr proxy: listening on http://{shown}:{p}{path}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        tg.start_soon(stopper)
        await userver.serve()
        tg.cancel_scope.cancel()
