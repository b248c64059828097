"""Wiring: policy + upstream client(s) + front (stdio or HTTP) + optional hot reload.

One upstream ``mcp.Client`` is opened at start: it gives the front its capabilities and serves
stdio, a command upstream (one server process shared by every HTTP session: its state stays
shared, and a flood of sessions never becomes a flood of processes) and stateless 2026-07-28
requests. With ``--listen`` and ``--upstream URL`` each handshake-era front session also gets an
upstream session of its own (``session_upstreams.SessionUpstreams``), so the upstream's messages
for it are relayed to it alone.

A command upstream is supervised and restarted when it dies (``upstream.Upstream``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
from mcp.shared.message import SessionMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ..vocab import terminal_text
from .core import Proxy, ProxyOptions
from .reload import LoadedPolicy, watch_policy_source
from .tool_check import StrictToolsError
from .upstream import Upstream, UpstreamStartError, describe_failure

if TYPE_CHECKING:
    from mcp import StdioServerParameters

    from .http import HttpFront

__all__ = ["serve", "UpstreamStartError"]

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
    http_front: HttpFront | None = None,
) -> None:
    """Run one proxy until the front closes (stdio EOF) or the process is stopped.

    ``policy_poll``: with ``--watch``, how often a URL or Redis policy source is re-read.
    ``http_front``: with ``listen``, the HTTP front's guards (Host checks, timeouts, caps).
    """
    from mcp import StdioServerParameters

    proxy = Proxy(options, loaded, transport="http" if listen else "stdio")
    params: StdioServerParameters | None = None
    if command:
        # 'replace': one invalid byte from the server must not kill the upstream reader
        params = StdioServerParameters(
            command=command[0], args=list(command[1:]), env=dict(os.environ), encoding_error_handler="replace"
        )
    elif not upstream_url:
        raise UpstreamStartError("no upstream server: give a command after `--` or --upstream URL")
    info = types.Implementation(name="plr-proxy", version=_version())
    refused: UpstreamStartError | StrictToolsError | None = None  # raised once the front is closed
    async with contextlib.AsyncExitStack() as stack:
        front_streams: tuple[Any, Any] | None = None
        hello: _Hello | None = None
        if listen is None:
            from .stdio import front_stdio

            fast = proxy.fast if params is not None else None  # a command upstream: its stdin is ours too
            front_streams = await stack.enter_async_context(front_stdio(stdin, stdout, fast))
            hello = await _read_hello(front_streams[0], options.stderr)
            if hello is None:
                return  # the client left before saying anything: nothing to start
        # over stdio the upstream is told exactly what the client declared in its `initialize`
        # (a server that believes the client has roots asks for them and logs a failure); over
        # HTTP a command upstream serves every session, so it declares what any of them may
        # answer (the relay refuses a session that cannot); --upstream URL over HTTP: sessions
        # get their own upstream clients, and the shared one serves stateless requests only
        if hello is not None and hello.capabilities is not None:
            kwargs: dict[str, Any] = proxy.relay.declared_callbacks(hello.capabilities)
        elif listen is None or command:
            kwargs = proxy.relay.shared_callbacks()
        else:
            kwargs = {}
        try:
            await _run(proxy, options, loaded, info, kwargs, params, upstream_url, upstream_mode, listen,
                       front_streams, hello, policy_poll, http_front)  # fmt: skip
        except (UpstreamStartError, StrictToolsError) as e:
            if hello is not None and front_streams is not None:
                await hello.refuse(front_streams[1], str(e))
            refused = e  # not raised in here: the front's task group would wrap it
    if proxy.fast is not None and os.environ.get("PLR_PROXY_FAST") == "report":
        options.stderr(
            f"plr proxy: the fast path served {proxy.fast.taken} tools/call requests"
            f" ({proxy.fast.answered_now} answered as the server's output came in)"
        )
    if refused is not None:
        raise refused


async def _run(
    proxy: Proxy,
    options: ProxyOptions,
    loaded: LoadedPolicy,
    info: types.Implementation,
    kwargs: dict[str, Any],
    params: StdioServerParameters | None,
    upstream_url: str | None,
    upstream_mode: str,
    listen: tuple[str, int] | None,
    front_streams: tuple[Any, Any] | None,
    hello: _Hello | None,
    policy_poll: float,
    http_front: HttpFront | None,
) -> None:
    """Start the upstream, check its tools against the policy, serve the front until it ends."""
    from mcp import Client

    def make_client(target: Any) -> Any:
        """The same client info, capabilities and callbacks for the first server and every restart."""
        return Client(
            target,
            mode=upstream_mode,
            cache=None,
            message_handler=proxy.relay.upstream_message,
            client_info=info,
            **kwargs,
        )

    upstream = Upstream(proxy, make_client, params=params, url=upstream_url)
    failure: BaseException | None = None
    strict: StrictToolsError | None = None
    try:
        async with anyio.create_task_group() as tg:
            proxy.tasks.tg = tg
            try:
                try:
                    first = await upstream.start(tg)
                except Exception as e:  # noqa: BLE001 - exit 1 with one line, never a traceback
                    failure = e
                else:
                    proxy.up = client = first.client
                    if listen is not None and upstream_url and client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                        proxy.session_upstreams.make_client = _session_client_factory(upstream_url, info)
                    try:
                        await proxy.check_tools_at_start(client)
                    except StrictToolsError as e:
                        strict = e  # raised below, once the server is stopped
                    else:
                        if params is not None:
                            tg.start_soon(upstream.supervise, first)
                        if front_streams is not None and hello is not None:
                            front_streams = (hello.replayed(front_streams[0]), front_streams[1])
                        await _serve_front(
                            proxy, options, loaded, tg, listen, front_streams, policy_poll, upstream.stop, http_front
                        )
            finally:
                upstream.stopping = True  # the server exits because we stop it: not a death to restart
                tg.cancel_scope.cancel()
        if strict is not None:
            raise strict
        if failure is not None:
            raise UpstreamStartError(describe_failure(failure))
    finally:
        if proxy.audit is not None:
            proxy.audit.close()
        if options.state is not None:
            options.state.close()
        close = getattr(options.limit_store, "close", None)
        if close is not None:
            close()


async def _read_hello(stream: Any, report: Callable[[str], None]) -> _Hello | None:
    """``_Hello.read``, given up (None) on SIGTERM/SIGINT/SIGHUP: a proxy whose client has not
    spoken yet stops as cleanly as one serving."""
    result: _Hello | None = None
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            stopping = anyio.Event()
            await _on_signals(stopping, report)
            if stopping.is_set():
                tg.cancel_scope.cancel()

        tg.start_soon(on_signal)
        result = await _Hello.read(stream)
        tg.cancel_scope.cancel()
    return result


class _Hello:
    """What the stdio client said before the upstream is started: its first message(s), kept to
    be handed to the front server as if never read, and the capabilities its `initialize` declared."""

    def __init__(self, held: list[Any], capabilities: types.ClientCapabilities | None, request_id: Any) -> None:
        self.held = held  # what was read, in order (malformed lines included: the front answers them)
        self.capabilities = capabilities  # None: the first request was not an `initialize`
        self.request_id = request_id  # of that first request (None: a notification)

    @classmethod
    async def read(cls, stream: Any) -> _Hello | None:
        """Read up to the client's first request or notification; None if it closed first."""
        held: list[Any] = []
        try:
            while True:
                item = await stream.receive()
                held.append(item)
                if isinstance(item, SessionMessage):
                    break
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None
        msg = held[-1].message
        caps: types.ClientCapabilities | None = None
        if isinstance(msg, types.JSONRPCRequest) and msg.method == "initialize":
            try:
                caps = types.ClientCapabilities.model_validate((msg.params or {}).get("capabilities") or {})
            except Exception:  # noqa: BLE001 - a malformed initialize declares nothing (the front refuses it)
                caps = types.ClientCapabilities()
        return cls(held, caps, getattr(msg, "id", None))

    def replayed(self, stream: Any) -> Any:
        return _Replay(self.held, stream)

    async def refuse(self, write: Any, why: str) -> None:
        """The proxy cannot serve: the waiting request gets the reason as its error, not silence."""
        if self.request_id is None:
            return
        err = types.JSONRPCError(
            jsonrpc="2.0", id=self.request_id, error=types.ErrorData(code=types.INTERNAL_ERROR, message=f"plr proxy: {why}")
        )
        with contextlib.suppress(Exception):
            await write.send(SessionMessage(err))


class _Replay(anyio.abc.ObjectReceiveStream[Any]):
    """The front's read stream with what ``_Hello`` read put back in front: no extra hop per message."""

    def __init__(self, held: list[Any], stream: Any) -> None:
        self._held = list(held)
        self._stream = stream

    async def receive(self) -> Any:
        if self._held:
            return self._held.pop(0)
        return await self._stream.receive()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _serve_front(
    proxy: Proxy,
    options: ProxyOptions,
    loaded: LoadedPolicy,
    tg: anyio.abc.TaskGroup,
    listen: tuple[str, int] | None,
    front_streams: tuple[Any, Any] | None,
    policy_poll: float,
    on_stop: Callable[[], None],
    http_front: HttpFront | None = None,
) -> None:
    """The front (stdio or HTTP) and the policy watcher, until the client leaves or a signal
    (which also stops restarts at once: the HTTP front may take a moment to close its sessions)."""
    server, init = proxy.build_server()
    if options.watch:
        tg.start_soon(
            lambda: watch_policy_source(
                options.policy_path,
                proxy.apply_policy,
                options.stderr,
                initial=loaded,
                poll_interval=policy_poll,
                reloaded=options.metrics.policy_reloaded if options.metrics is not None else None,
            )
        )
    stopping = anyio.Event()
    tg.start_soon(_on_signals, stopping, options.stderr)

    async def stop_upstream() -> None:
        await stopping.wait()
        on_stop()

    tg.start_soon(stop_upstream)
    if listen is not None:
        from .http import serve_http

        fast = _http_fast(proxy, options)
        try:
            await serve_http(
                server,
                listen[0],
                listen[1],
                tokens=options.tokens,
                report=options.stderr,
                stop=stopping,
                front=http_front,
                fast=fast,
            )
        finally:
            await proxy.close_links()  # normally done already, as each front session ended
            if fast is not None and os.environ.get("PLR_PROXY_FAST") == "report":
                options.stderr(
                    f"plr proxy: the fast path served {fast.taken} tools/call requests"
                    f" ({fast.direct} answers read without httpx, {fast.held} from the front's protocol,"
                    f" {fast.early} taken in its callback, {fast.now} answered from callbacks,"
                    f" {fast.quick} before they lasted)"
                )
    else:
        assert front_streams is not None
        with anyio.CancelScope() as front:
            tg.start_soon(_cancel_on, stopping, front)
            await server.run(front_streams[0], front_streams[1], init)


def _http_fast(proxy: Proxy, options: ProxyOptions) -> Any:
    """tools/call over HTTP without the SDK's per-request machinery (``--upstream URL``: the front
    sessions' own upstream sessions), unless ``PLR_PROXY_FAST=0``."""
    if os.environ.get("PLR_PROXY_FAST", "1") == "0":
        return None
    from mcp.server.caching import CACHEABLE_METHODS

    from .http_fast import HttpFastCalls

    return HttpFastCalls(
        decisions=proxy.decisions,
        sessions=proxy.sessions,
        own=proxy.session_upstreams,
        shared=proxy.shared,
        timeout=options.upstream_timeout or None,
        deadlines=proxy.deadlines,
        tasks=proxy.tasks,
        cacheable="tools/call" in CACHEABLE_METHODS,
    )


def _session_client_factory(url: str, info: types.Implementation) -> Any:
    """Builds one front session's own upstream client (handshake era: the shared client found the
    upstream speaks it, so no probe); the proxy passes the callbacks that relay to that session,
    and ``on_lost``, called when the upstream answers 404 to the session's id (it forgot it)."""
    from mcp import Client

    def make(on_lost: Callable[[], None], **callbacks: Any) -> Any:
        from .http_fast import UpstreamWire

        wire = UpstreamWire(url)
        client = Client(_watched_http(url, on_lost, wire), mode="legacy", cache=None, client_info=info, **callbacks)
        client.plr_wire = wire  # type: ignore[attr-defined] - the HTTP fast path's way to this session
        return client

    return make


@contextlib.asynccontextmanager
async def _watched_http(url: str, on_lost: Callable[[], None], wire: Any = None) -> AsyncIterator[Any]:
    """The SDK's streamable HTTP transport, watching for the one answer that means the server no
    longer knows the session: HTTP 404 to a request that carries its ``Mcp-Session-Id`` (the SDK
    turns it into a JSON-RPC error whose wording depends on the server). ``wire``
    (``http_fast.UpstreamWire``): told the ``httpx`` client and the session id, for the fast path."""
    from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

    from .http_fast import inert_for_calls

    @inert_for_calls  # (a 404 only)
    async def watch(response: Any) -> None:
        if response.status_code == 404 and response.request.headers.get("mcp-session-id"):
            on_lost()

    async with create_mcp_http_client() as http:
        http.event_hooks["response"].append(watch)
        if wire is not None:
            http.event_hooks["response"].append(wire.on_response)
        async with streamable_http_client(url, http_client=http) as streams:
            if wire is not None:
                wire.bind(http)
            try:
                yield streams
            finally:
                if wire is not None:
                    await wire.aclose()


async def _on_signals(stopping: anyio.Event, report: Any) -> None:
    """SIGTERM/SIGINT/SIGHUP: stop the front gracefully, so the upstream server is shut down too
    (it runs in its own process group and would otherwise outlive the proxy)."""

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


def report(msg: str) -> None:
    """A line on stderr, escaped: server-chosen text in it must not forge a line of ours."""
    print(terminal_text(msg), file=sys.stderr, flush=True)
