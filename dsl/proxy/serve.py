"""Wiring: policy + upstream client(s) + front (stdio or HTTP) + optional hot reload.

One upstream ``mcp.Client`` is opened at start: it gives the front its capabilities and serves
stdio, a command upstream (one server process shared by every HTTP session: its state stays
shared, and a flood of sessions never becomes a flood of processes) and stateless 2026-07-28
requests. With ``--listen`` and ``--upstream URL`` each handshake-era front session also gets an
upstream session of its own (``Proxy.session_client``), so the upstream's messages for it are
relayed to it alone.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .core import Proxy, ProxyOptions
from .reload import LoadedPolicy, watch_policy_source

__all__ = ["serve", "UpstreamStartError"]


class UpstreamStartError(Exception):
    """The upstream server could not be started or did not complete the handshake."""


def _version() -> str:
    try:
        from .. import __version__

        return __version__
    except Exception:  # noqa: BLE001
        return "0"


async def serve(
    options: ProxyOptions,
    loaded: LoadedPolicy,
    *,
    command: list[str] | None = None,
    upstream_url: str | None = None,
    upstream_mode: str = "legacy",
    listen: tuple[str, int] | None = None,
    stdin: Any = None,
    stdout: Any = None,
    policy_poll: float = 2.0,
) -> None:
    """Run one proxy until the front closes (stdio EOF) or the process is stopped.

    ``policy_poll``: with ``--watch``, how often a URL or Redis policy source is re-read.
    """
    from mcp import Client, StdioServerParameters

    proxy = Proxy(options, loaded, transport="http" if listen else "stdio")
    if command:
        # 'replace': one invalid byte from the server must not kill the upstream reader
        target: Any = StdioServerParameters(
            command=command[0], args=list(command[1:]), env=dict(os.environ), encoding_error_handler="replace"
        )
    elif upstream_url:
        target = upstream_url
    else:
        raise UpstreamStartError("no upstream server: give a command after `--` or --upstream URL")
    info = types.Implementation(name="plr-proxy", version=_version())
    # --upstream URL over HTTP: sessions get their own upstream clients, which relay server-to-client
    # requests; the shared one then serves stateless requests only, which cannot be asked anything
    kwargs: dict[str, Any] = proxy.shared_callbacks() if listen is None or command else {}
    client = Client(
        target, mode=upstream_mode, cache=None, message_handler=proxy.upstream_message, client_info=info, **kwargs
    )
    entered = False
    timed_out = False

    async def handshake_deadline(seconds: float) -> None:
        """A server that never answers `initialize` must not keep the proxy waiting for ever."""
        nonlocal timed_out
        await anyio.sleep(seconds)
        if not entered:
            timed_out = True
            tg.cancel_scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            proxy._tg = tg  # type: ignore[attr-defined]
            if options.upstream_timeout:
                tg.start_soon(handshake_deadline, options.upstream_timeout)
            try:
                async with client:
                    entered = True
                    proxy.up = client
                    if listen is not None and upstream_url and client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                        proxy.session_client = _session_client_factory(upstream_url, info)
                    server, init = proxy.build_server()
                    if options.watch:
                        tg.start_soon(
                            lambda: watch_policy_source(
                                options.policy_path,
                                proxy.apply_policy,
                                options.stderr,
                                initial=loaded,
                                poll_interval=policy_poll,
                            )
                        )
                    stopping = anyio.Event()
                    tg.start_soon(_on_signals, stopping, options.stderr)
                    if listen is not None:
                        from .http import serve_http

                        try:
                            await serve_http(
                                server, listen[0], listen[1], tokens=options.tokens, report=options.stderr, stop=stopping
                            )
                        finally:
                            await proxy.close_links()  # normally done already, as each front session ended
                    else:
                        from .stdio import front_stdio

                        with anyio.CancelScope() as front:
                            tg.start_soon(_cancel_on, stopping, front)
                            async with front_stdio(stdin, stdout) as (r, w):
                                await server.run(r, w, init)
            finally:
                tg.cancel_scope.cancel()
        if timed_out:
            raise UpstreamStartError(
                f"the server did not complete the MCP handshake within {options.upstream_timeout:g} s"
            )
    except UpstreamStartError:
        raise
    except Exception as e:  # noqa: BLE001
        if not entered:
            raise UpstreamStartError(_describe(e)) from None
        raise
    finally:
        if proxy.audit is not None:
            proxy.audit.close()
        if options.state is not None:
            options.state.close()


def _session_client_factory(url: str, info: types.Implementation) -> Any:
    """Builds one front session's own upstream client (handshake era: the shared client found the
    upstream speaks it, so no probe); the proxy passes the callbacks that relay to that session."""
    from mcp import Client

    def make(**callbacks: Any) -> Any:
        return Client(url, mode="legacy", cache=None, client_info=info, **callbacks)

    return make


async def _on_signals(stopping: anyio.Event, report: Any) -> None:
    """SIGTERM/SIGINT/SIGHUP: stop the front gracefully, so the upstream server is shut down too
    (it runs in its own process group and would otherwise outlive the proxy)."""
    import signal

    sigs = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    try:
        with anyio.open_signal_receiver(*sigs) as received:
            async for num in received:
                report(f"plr proxy: received {signal.Signals(num).name}; shutting down")
                stopping.set()
                return
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
        return


async def _cancel_on(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _describe(e: BaseException) -> str:
    if isinstance(e, BaseExceptionGroup):
        inner = [x for x in e.exceptions]
        if len(inner) == 1:
            return _describe(inner[0])
    if isinstance(e, FileNotFoundError):
        return f"command not found: {e.filename or e}"
    if isinstance(e, OSError):
        return f"{e.strerror or e}"
    msg = str(e) or type(e).__name__
    return f"{type(e).__name__}: {msg}" if not msg.startswith(type(e).__name__) else msg


def report(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
