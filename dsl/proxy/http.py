"""The streamable HTTP front: ``plr proxy --listen 127.0.0.1:PORT (--upstream URL | -- CMD)``.

The SDK's ``Server.streamable_http_app()`` serves both protocol eras (handshake-era clients
get an ``Mcp-Session-Id``, 2026-07-28 clients send self-contained POSTs); uvicorn runs it. One
upstream client is shared by every front session; the session a limit counts against is the
front's ``Mcp-Session-Id`` (or, in the stateless era, identity + client info).

With ``--auth-tokens FILE`` (a JSON object ``{"TOKEN": "identity", ...}``) every request must
carry ``Authorization: Bearer TOKEN``; the identity the policy sees is the token's. A request
without a known token is refused with 401 before it reaches the MCP layer (fail closed).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from typing import Any

import anyio

__all__ = ["TokenGate", "serve_http", "load_tokens", "identity_for_header"]


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
        if identity_for_header(self.tokens, auth) is None:
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
        await self.app(scope, receive, send)


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

    app: Any = server.streamable_http_app(streamable_http_path=path, host=host)
    if tokens is not None:
        app = TokenGate(app, tokens)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", access_log=False)
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
