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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

__all__ = ["TokenGate", "serve_http", "load_tokens", "identity_for_header", "FrontLink"]


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


_SUSPECT_ID = re.compile(rb'"id"\s*:\s*(?:true|false|null|[\[{]|-?\d+(?:\.\d|[eE]))')
_BODY_PEEK_MAX = 4 * 1024 * 1024  # the SDK refuses larger bodies itself (413)


def bad_request_id(body: bytes) -> bool:
    """Whether a JSON-RPC request carries an id that is not a string or an integer (``true``,
    ``1.5``, ``null``, a list or an object): the SDK would take it for a notification (over HTTP
    answered 202, over stdio not at all), leaving the client waiting for ever. Both fronts ask
    this. A cheap scan first; the frame is parsed only when it looks so."""
    if not _SUSPECT_ID.search(body) and b"\\u" not in body:  # (an escape may spell the "id" key)
        return False
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return False  # the SDK answers a parse error itself
    if not isinstance(obj, dict) or "id" not in obj or not isinstance(obj.get("method"), str):
        return False
    rid = obj["id"]
    return not (isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)))


class RequestIdGate:
    """ASGI middleware: a POST whose JSON-RPC request has an id that is not a string or an
    integer gets a 400 with a JSON-RPC Invalid Request error (id null), not a silent 202."""

    def __init__(self, app: Any) -> None:
        self.app = app

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
        if complete and bad_request_id(b"".join(m.get("body", b"") for m in chunks)):
            body = json.dumps(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32600,
                 "message": "Invalid Request: the id must be a string or an integer"}}  # fmt: skip
            ).encode()
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return

        async def replay() -> Any:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)


class TokenGate:
    """ASGI middleware: 401 unless the request carries a known bearer token."""

    def __init__(self, app: Any, tokens: dict[str, str]) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        auth = None
        for k, v in scope.get("headers") or []:
            if k.lower() == b"authorization":
                auth = v.decode("latin-1")
                break
        identity = identity_for_header(self.tokens, auth)
        if identity is None:
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
        await self.app({**scope, "user": _principal(identity)}, receive, send)


def _principal(identity: str) -> Any:
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken

    return AuthenticatedUser(AccessToken(token="", client_id=identity, scopes=[]))


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
) -> None:
    """Serve ``server`` until cancelled (or until uvicorn stops on a signal)."""
    import uvicorn

    app: Any = RequestIdGate(server.streamable_http_app(streamable_http_path=path, host=host))
    if tokens is not None:
        app = TokenGate(app, tokens)
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
