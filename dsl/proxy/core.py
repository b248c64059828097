"""The enforcing proxy's heart: decide each call, log it, then forward it (or not).

``Proxy`` holds the engine, the audit log, the approval channels and one upstream
``mcp.Client``; ``Proxy.build_server()`` returns a low-level ``mcp`` ``Server`` (the front the
agent's client talks to) whose handlers

- ``tools/list``: forward, then drop hidden tools (``Engine.visible``);
- ``tools/call``: decide first; a denial becomes a ``CallToolResult(is_error=True)`` naming the
  tool, rule and reason, and the upstream server never sees the call; ``approval_required``
  asks a human (MCP elicitation in either protocol era, or the local ``plr approvals`` queue);
  the audit record is written and flushed before anything is forwarded;
- everything else the upstream server offers (resources, prompts, completion, logging level,
  ping) is forwarded with its parameters rebuilt (never the inbound object: it may carry the
  2026-07-28 envelope a handshake-era upstream rejects), and upstream notifications and
  server-to-client requests (elicitation, sampling, roots) are relayed back to the client: on
  stdio to the one client; over HTTP see ``upstream_message`` (a shared upstream) and
  ``_open_link_upstream`` (one upstream session per front session with ``--upstream URL``).

Fail closed: an engine exception, an audit write failure or a broken approval channel denies
the call; an upstream failure is a JSON-RPC error, never a silent success, and so is an upstream
request left unanswered for ``--upstream-timeout`` seconds (``_Timer``: the clock covers the
write too, restarts on progress and stands still while a human answers a relayed elicitation).
A command upstream that dies is restarted by ``upstream.Upstream``, which tells the proxy
(``upstream_lost``, ``upstream_back``, ``upstream_given_up``): requests in flight get an error,
requests that arrive during the restart wait for it (``_upstream``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import mcp_types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter, ValidationError

from ..engine import Decision, Engine, StateUnavailable
from .approvals import args_for_display, cut_marked
from .audit import AuditLog, args_sha256, canonical_args, redact, utc_now
from .http import FrontLink
from .pins import ToolPins
from .reload import LoadedPolicy

__all__ = ["ProxyOptions", "Proxy", "APPROVAL_SCHEMA", "deny_text", "TracebackFilter"]

log = logging.getLogger("plr.proxy")

APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approve": {"type": "boolean"}},
    "required": ["approve"],
}
APPROVAL_KEY = "plr.approval"  # our key in InputRequiredResult.input_requests (kept apart from upstream keys)
STATE_PREFIX = "plr1."
DECISION_META_KEY = "plr/decision"

ApprovalMode = Literal["auto", "elicit", "queue", "deny"]

ELICIT_ARGS_MAX = 8000  # characters of arguments in an approval question (more is named, not dropped)
RELAY_SEND_TIMEOUT = 5.0  # seconds a relayed notification may wait on one client
# how long a request the proxy abandoned (deadline, cancel) keeps the shared server's messages
# from being attributed to another session: a server that ignores the cancellation may still run
ABANDONED_WINDOW = 600.0

# what the SDK's own client answers when it has no callback for a server-to-client request
_NOT_SUPPORTED = {
    "elicitation": "Elicitation not supported",
    "sampling": "Sampling not supported",
    "roots": "List roots not supported",
}

_CallToolAdapter: TypeAdapter[types.CallToolResult | types.InputRequiredResult] = TypeAdapter(
    types.CallToolResult | types.InputRequiredResult
)
_ReadResourceAdapter: TypeAdapter[types.ReadResourceResult | types.InputRequiredResult] = TypeAdapter(
    types.ReadResourceResult | types.InputRequiredResult
)
_GetPromptAdapter: TypeAdapter[types.GetPromptResult | types.InputRequiredResult] = TypeAdapter(
    types.GetPromptResult | types.InputRequiredResult
)
# Results the proxy only passes on are kept as the wire dict: the SDK has validated them against
# the upstream's protocol version, and the front validates them again for the client's version.
_RAW: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


@dataclass
class ProxyOptions:
    """Everything the proxy is told on the command line."""

    policy_path: str
    identity: str | None = None
    server_name: str | None = None
    audit_path: Path | None = None
    log_args: bool = False
    audit_max_bytes: int = 10 * 1024 * 1024
    audit_backups: int = 5
    approval_mode: ApprovalMode = "auto"
    approval_timeout: float = 120.0
    approvals_db: Path | None = None
    # --state: shared limit counters + approval queue (a dsl.state_redis.RedisState); None: in-process + SQLite
    state: Any = None
    watch: bool = False
    upstream_timeout: float | None = 60.0  # seconds; None or 0: wait for ever
    # a command upstream that dies is started again at most this many times in a row (0: never)
    max_restarts: int = 3
    # HTTP front: Authorization bearer token -> identity (None: everyone is ``identity``)
    tokens: dict[str, str] | None = None
    # HTTP front with --upstream URL: at most this many front sessions hold their own upstream session
    max_sessions: int = 64
    # ... and at most this many of them per identity (0: no share), so one identity cannot hold them all
    max_sessions_per_identity: int = 0
    # tool pinning (pins.py); None: pin in memory, withholding changed tools
    pins: ToolPins | None = None
    stderr: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr, flush=True))


def deny_text(tool: str, d: Decision) -> str:
    """``plr: cancel-task denied by policy.plr:11: REASON`` (+ retry hint when rate limited)."""
    where = f" by {d.rule}" if d.rule else " by policy"
    text = f"plr: {tool} denied{where}: {d.reason}"
    if d.retry_after is not None and "retry after" not in d.reason:
        text += f"; retry after {_secs(d.retry_after)} s"
    return text


def _secs(x: float) -> str:
    """Seconds for a human, rounded up (a retry hint must never be too early)."""
    if x >= 10 or float(x).is_integer():
        return str(int(math.ceil(x)))
    return f"{math.ceil(x * 10) / 10:.1f}".rstrip("0").rstrip(".")


def _short(value: str, limit: int = 400) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _why(e: BaseException) -> str:
    """One line about a bad message (a pydantic error's first problem, without the input)."""
    if isinstance(e, ValidationError):
        try:
            errs = e.errors(include_url=False, include_input=False)
        except Exception:  # noqa: BLE001
            errs = []
        if errs:
            first = errs[0]
            where = ".".join(str(x) for x in first.get("loc", ()) if x != "") or "message"
            more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
            return _short(f"{where}: {first.get('msg', 'invalid')}{more}", 300)
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return _short(f"{type(e).__name__}: {text}", 300)


class TracebackFilter(logging.Filter):
    """Log records keep one line about their exception, never the traceback (``PLR_DEBUG=1``
    keeps tracebacks). Installed on the proxy's log handler: an MCP client shows our stderr to
    its user, and a hostile server must not be able to make it scroll with stack dumps."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not os.environ.get("PLR_DEBUG"):
            exc = record.exc_info[1]
            if exc is not None:
                record.msg = f"{record.getMessage()}: {_why(exc)}"
                record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def _describe_failure(e: BaseException) -> str:
    """One line about why an upstream connection failed (the innermost of a group of one)."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return _why(e)


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _clean_meta(meta: Any) -> dict[str, Any] | None:
    """The inbound ``_meta`` minus what the front connection owns (envelope, progress token)."""
    if not meta:
        return None
    out = {
        k: v
        for k, v in dict(meta).items()
        if k != "progressToken"
        and k != "progress_token"
        and not k.startswith("io.modelcontextprotocol/")
        and k not in ("traceparent", "tracestate", "baggage")
    }
    return out or None


def _rebuild(params: Any, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Wire dict of inbound params without front-owned fields (never the inbound object itself)."""
    if params is None:
        return {}
    d = params.model_dump(by_alias=True, mode="json", exclude_none=True)
    meta = _clean_meta(d.pop("_meta", None))
    for k in ("inputResponses", "requestState", "task", *drop):
        d.pop(k, None)
    if meta:
        d["_meta"] = meta
    return d


@dataclass(slots=True)
class ToolCall:
    """One tools/call as the proxy decides and audits it: what is asked, by whom, and the id
    that ties its audit records together (a 2026-07-28 approval retry takes the first round's)."""

    id: str
    tool: str
    args: Any
    session: str
    identity: str | None


def _has_non_finite(value: Any) -> bool:
    """Whether a call's arguments hold NaN or ±Infinity (which Python's JSON reader accepts)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                return True
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


class UpstreamTimeout(MCPError):
    """The proxy's deadline for an upstream request passed: the client got this error, while
    the server may still be working on the request."""


class UpstreamGone(Exception):
    pass


_CLOSED = "plr: the upstream MCP server closed the connection (it exited or crashed)"


class _Timer:
    """The deadline of one upstream request (``--upstream-timeout``): a budget of seconds that
    runs while the request is written and answered, restarts on progress, and stands still while
    a human answers an elicitation the upstream server asked through the proxy."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.scope: anyio.CancelScope | None = None
        self.budget = timeout or 0.0
        self.paused = False

    def attach(self, scope: anyio.CancelScope, proxy: Proxy) -> None:
        self.scope = scope
        if self.timeout is None:
            return
        proxy._timers.add(self)
        if proxy._human_waits:
            self.paused = True
        else:
            scope.deadline = anyio.current_time() + self.timeout

    def detach(self, proxy: Proxy) -> None:
        proxy._timers.discard(self)

    def restart(self) -> None:
        if self.timeout is None or self.scope is None:
            return
        if self.paused:
            self.budget = self.timeout
        else:
            self.scope.deadline = anyio.current_time() + self.timeout

    def pause(self) -> None:
        if self.paused or self.scope is None:
            return
        self.budget = max(0.0, self.scope.deadline - anyio.current_time())
        self.scope.deadline = math.inf
        self.paused = True

    def resume(self) -> None:
        if not self.paused or self.scope is None:
            return
        self.paused = False
        self.scope.deadline = anyio.current_time() + self.budget


class Proxy:
    """One proxy instance: policy, audit, approvals, and the upstream client once connected."""

    def __init__(self, options: ProxyOptions, loaded: LoadedPolicy, *, transport: str = "stdio") -> None:
        self.opt = options
        self.loaded = loaded
        self.engine = Engine(loaded.policy, store=options.state.limit_store if options.state is not None else None)
        self.transport = transport
        self.audit: AuditLog | None = None
        if options.audit_path is not None:
            self.audit = AuditLog(options.audit_path, max_bytes=options.audit_max_bytes, backups=options.audit_backups)
        self._queue: Any = None
        self._secret = os.urandom(32)
        self._used_nonces: dict[str, float] = {}
        self._nonce_prune_at = 4096
        self.process_session = uuid.uuid4().hex
        self.up: Any = None  # mcp.Client
        self.server_name: str | None = options.server_name
        self.front_session: Any = None  # last handshake-era ServerSession (stdio relay target)
        self.links: dict[str, FrontLink] = {}  # HTTP front: live handshake-era sessions by Mcp-Session-Id
        # --upstream URL over HTTP: builds an unentered mcp.Client for one front session (callbacks as
        # keyword arguments); None: every front session shares ``up``
        self.session_client: Callable[..., Any] | None = None
        # per-session upstream clients open or opening, by identity (--max-sessions[-per-identity])
        self._open_by_identity: dict[str | None, int] = {}
        # HTTP with a shared upstream: stateless requests waiting on it (they have no FrontLink, but a
        # server-to-client request could be meant for them), and who subscribed to which resource
        self._stateless_inflight = 0
        # requests the proxy gave up on (timeout, client cancel) that the shared server may still be
        # working on, by front session key ("" for stateless): its messages could be theirs
        self._abandoned: dict[str, float] = {}
        self._subscribers: dict[str, set[str]] = {}
        self._subscribing: dict[str, anyio.Lock] = {}  # one (un)subscribe of a URI at a time
        # a restarted server whose tools could not be re-checked: calls denied until a tools/list
        self._pins_unchecked = False
        self._log_level: str | None = None  # the last logging/setLevel the server accepted, replayed after a restart
        self._last_hidden: frozenset[str] = frozenset(loaded.policy.hide)
        self._schemas: dict[str, Any] = {}
        self.pins: ToolPins = options.pins if options.pins is not None else ToolPins("deny")
        self._timers: set[_Timer] = set()  # deadlines of the upstream requests in flight
        self._human_waits = 0  # relayed elicitations a human is answering (timers stand still)
        # a command upstream that died (serve.CommandUpstream): set while it is being restarted
        # (requests wait on it), and ``_up_gone`` once the restarts are used up
        self._restarting: anyio.Event | None = None
        self._up_gone = False
        self._up_modern = False  # the upstream speaks 2026-07-28 (read while its client is open)

    # -- policy --------------------------------------------------------------------------

    def apply_policy(self, loaded: LoadedPolicy) -> None:
        """Hot reload: prepare fully, then swap (raises and keeps the old policy on failure)."""
        self.engine.replace_policy(loaded.policy)
        self.loaded = loaded
        hidden = frozenset(loaded.policy.hide)
        if hidden != self._last_hidden:
            self._last_hidden = hidden
            self._notify_front(types.ToolListChangedNotification())

    # -- sessions and identity -------------------------------------------------------------

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
        tokens = self.opt.tokens
        if tokens is not None:
            from .http import identity_for_header

            req = getattr(ctx, "request", None)
            ident = identity_for_header(tokens, req.headers.get("authorization") if req is not None else None)
            if ident is None:  # the HTTP gate lets no such request through; fail closed regardless
                raise PermissionError("request without a known bearer token")
            return ident
        return self.opt.identity

    def _remember_front(self, ctx: Any) -> None:
        if self.transport == "stdio" and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self.front_session = ctx.session
        else:
            self._link_of(ctx)

    def _link_of(self, ctx: Any) -> FrontLink | None:
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
            conn.exit_stack.push_async_callback(self._end_link, link)
        return link

    async def _end_link(self, link: FrontLink) -> None:
        """A front session ended: forget it and close its own upstream session, if it has one."""
        if self.links.get(link.key) is link:
            del self.links[link.key]
        for uri in list(link.subscriptions):
            holders = self._subscribers.get(uri)
            if holders is not None:
                holders.discard(link.key)
                if not holders:
                    del self._subscribers[uri]
                    tg = getattr(self, "_tg", None)
                    if tg is not None:
                        tg.start_soon(self._unsubscribe_quietly, uri)
        link.subscriptions.clear()
        await link.close()

    async def _unsubscribe_quietly(self, uri: str) -> None:
        """The last subscriber of ``uri`` left: tell the shared server (best effort, bounded)."""
        with anyio.move_on_after(self.opt.upstream_timeout or RELAY_SEND_TIMEOUT):
            try:
                session = await self._upstream()
                req = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri))
                await session.send_request(req, types.EmptyResult)
            except Exception:  # noqa: BLE001 - the server or the proxy may be going away
                pass

    async def close_links(self) -> None:
        """Shutdown: close every front session's upstream session (each sends the upstream a DELETE)."""
        links = list(self.links.values())
        self.links.clear()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for link in links:
                    tg.start_soon(link.close)

    # -- audit ---------------------------------------------------------------------------

    def record_decision(
        self,
        c: ToolCall,
        d: Decision,
        latency_us: int,
        *,
        effect: str | None = None,
        approval: str | None = None,
        approval_id: str | None = None,
    ) -> None:
        """Write one decision record, outcome from ``d`` (effect may be overridden: an
        ``approval_required`` that was not approved is logged as a deny). Raises OSError if it
        cannot be written."""
        if self.audit is None:
            return
        rec: dict[str, Any] = {
            "ts": utc_now(),
            "session": c.session,
            "identity": c.identity,
            "server": self.server_name,
            "tool": c.tool,
            "args_sha256": args_sha256(c.args),
            "effect": effect or d.effect,
            "code": d.code,
            "rule": d.rule,
            "reason": d.reason,
            "policy_sha256": self.loaded.sha256,
            "latency_us": latency_us,
            "call": c.id,
        }
        if d.retry_after is not None:
            rec["retry_after"] = d.retry_after
        if approval is not None:
            rec["approval"] = approval
        if approval_id is not None:
            rec["approval_id"] = approval_id
        if self.opt.log_args:
            rec["args"] = redact(c.args)
        self.audit.write(rec)

    def decide(self, c: ToolCall, approved: bool) -> tuple[Decision, int]:
        """The decision for ``c`` and how long it took (µs). Never raises: an error is a deny."""
        t0 = time.perf_counter_ns()
        try:
            changed = self.pins.withheld(c.tool)
            if changed is not None:  # before the engine: a withheld tool counts against no limit
                return Decision("deny", "tool_changed", changed.reason()), (time.perf_counter_ns() - t0) // 1000
            if self._pins_unchecked:
                why = "the restarted server's tools could not be checked against their pins; list the tools again"
                return Decision("deny", "tool_changed", why), (time.perf_counter_ns() - t0) // 1000
            if _has_non_finite(c.args):  # decided on NaN, forwarded as null: refuse rather than guess
                why = "the arguments hold NaN or Infinity, which JSON cannot carry; send a number, a string or null"
                return Decision("deny", "invalid_args", why), (time.perf_counter_ns() - t0) // 1000
            d = self.engine.decide(
                c.tool, c.args, identity=c.identity, session=c.session, server=self.server_name, approved=approved
            )
        except Exception as e:  # noqa: BLE001 - the engine promises not to raise; fail closed if it does
            d = Decision("deny", "error", f"internal error while deciding: {type(e).__name__}: {e}")
        return d, (time.perf_counter_ns() - t0) // 1000

    # -- results -------------------------------------------------------------------------

    @staticmethod
    def denied(tool: str, d: Decision, code: str | None = None) -> types.CallToolResult:
        meta = {
            DECISION_META_KEY: {
                "effect": "deny",
                "code": code or d.code,
                "rule": d.rule,
                "reason": d.reason,
                "retry_after": d.retry_after,
            }
        }
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=deny_text(tool, d))], is_error=True, _meta=meta
        )

    # -- the upstream ----------------------------------------------------------------------

    async def _upstream(self) -> Any:
        """The shared upstream session; while a dead server is being restarted, the new one (a
        request that arrives then waits for it, up to ``--upstream-timeout``)."""
        restarting = self._restarting
        if restarting is not None:
            await self._wait_restart(restarting)
        if self._up_gone:
            raise MCPError(code=types.INTERNAL_ERROR, message=_CLOSED)
        if self.up is None:
            raise MCPError(code=types.INTERNAL_ERROR, message="plr: the upstream MCP server is not connected")
        return self.up.session

    async def _wait_restart(self, restarting: anyio.Event) -> None:
        timeout = self.opt.upstream_timeout or None
        with anyio.move_on_after(timeout if timeout is not None else math.inf):
            await restarting.wait()
        if not restarting.is_set():
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message=f"plr: the upstream MCP server is being restarted and was not back within "
                f"{_secs(timeout or 0)} s (--upstream-timeout)",
            )

    # -- the upstream's life (driven by serve.CommandUpstream; the policy, limit counters, audit
    # log, approvals and pins live here, so they carry over to the restarted server) ------------

    def upstream_lost(self, *, restarting: bool) -> None:
        """A command upstream died. Synchronous, called before its session fails the requests in
        flight: those get an error (they may have had effects; never re-sent), while requests that
        arrive from now on wait for the restart, or fail at once when there will be none."""
        if restarting:
            if self._restarting is None:
                self._restarting = anyio.Event()
        else:
            self.upstream_given_up()

    async def prepare_restarted(self, client: Any) -> None:
        """Before a restarted server serves anyone: check its tools against the pins (a tool that
        changed while the server was down is withheld before any call can reach it, even from a
        client that never lists tools again), tell it the log level the clients had set, and
        subscribe it to the resources the sessions had subscribed to. Never raises: what fails is reported, and unchecked pins fail closed."""
        timeout = self.opt.upstream_timeout or None
        await self._recheck_pins(client)
        if self._log_level is not None:
            try:
                with anyio.fail_after(timeout):
                    level = types.SetLevelRequest(params=types.SetLevelRequestParams(level=self._log_level))
                    await client.session.send_request(level, types.EmptyResult)
            except Exception as e:  # noqa: BLE001
                self.opt.stderr(f"plr proxy: could not set the restarted server's log level ({_why(e)})")
        for uri in list(self._subscribers):
            try:
                with anyio.fail_after(timeout):
                    req = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
                    await client.session.send_request(req, types.EmptyResult)
            except Exception as e:  # noqa: BLE001
                self.opt.stderr(f"plr proxy: could not subscribe the restarted server to {_short(uri, 200)} ({_why(e)})")
                for key in self._subscribers.pop(uri, set()):
                    link = self.links.get(key)
                    if link is not None:
                        link.subscriptions.discard(uri)

    async def _recheck_pins(self, client: Any) -> None:
        """List a server's tools (that came back after a restart or a lost session) and check them
        against the pins now, not at the client's next tools/list. Never raises: if the list
        fails, every call is denied (``tool_changed``) until a tools/list succeeds."""
        if self.pins.mode == "off":
            return
        try:
            with anyio.fail_after(self.opt.upstream_timeout or None):
                cursor: str | None = None
                for _ in range(1000):  # pages, bounded
                    req = types.ListToolsRequest(params=types.PaginatedRequestParams(cursor=cursor))
                    res = await client.session.send_request(req, _RAW)
                    self._review_pins(res.get("tools") or [])
                    cursor = res.get("nextCursor")
                    if not isinstance(cursor, str):
                        break
            self._pins_unchecked = False
        except anyio.get_cancelled_exc_class():
            self._pins_unchecked = True  # cut short: unchecked, so calls are denied until a list
            raise
        except Exception as e:  # noqa: BLE001
            self._pins_unchecked = True
            self.opt.stderr(
                f"plr proxy: could not check the server's tools against their pins ({_why(e)}); "
                "calls are denied until a tools/list succeeds"
            )

    def upstream_back(self, client: Any) -> None:
        """The restarted server is ready (``prepare_restarted``): waiting requests go to it, and
        the clients hear ``tools/list_changed`` (its tools may differ)."""
        self.up = client
        self._up_gone = False
        self._up_modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
        self._release_waiters()
        self._notify_front(types.ToolListChangedNotification())

    def upstream_stopping(self) -> None:
        """The proxy stops: requests waiting for a restart get an error now, not at a timeout."""
        if self._restarting is not None:
            self.upstream_given_up()

    def upstream_given_up(self) -> None:
        """No more restarts: calls that need the server get a JSON-RPC error (denials still work)."""
        self._up_gone = True
        self._release_waiters()

    def _release_waiters(self) -> None:
        restarting, self._restarting = self._restarting, None
        if restarting is not None:
            restarting.set()

    def _map_error(self, e: BaseException) -> MCPError:
        if isinstance(e, MCPError):
            if e.error.code == types.CONNECTION_CLOSED:
                more = "; the proxy is restarting it" if self._restarting is not None else ""
                return MCPError(code=types.INTERNAL_ERROR, message=_CLOSED + more)
            if e.error.code == types.REQUEST_TIMEOUT:
                return MCPError(
                    code=types.INTERNAL_ERROR, message="plr: the upstream MCP server did not answer in time"
                )
            return e
        if isinstance(e, ValidationError):
            return MCPError(code=types.INTERNAL_ERROR, message="plr: the upstream MCP server sent an invalid result")
        if isinstance(e, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)):
            return MCPError(code=types.INTERNAL_ERROR, message=_CLOSED)
        log.exception("upstream request failed")
        return MCPError(code=types.INTERNAL_ERROR, message=f"plr: upstream request failed: {type(e).__name__}")

    async def _send(
        self,
        ctx: Any,
        request: Any,
        result_type: Any,
        progress: bool = False,
        *,
        open_session: bool = True,
    ) -> Any:
        """Forward one request upstream: on the front session's own upstream session when it has
        one (opened now if ``open_session``), else on the shared one."""
        link = self._link_of(ctx)
        if link is None:
            self._stateless_inflight += 1
            try:
                with self._noting_abandoned(""):
                    return await self._exchange(ctx, await self._upstream(), request, result_type, progress)
            finally:
                self._stateless_inflight -= 1
        with link.waiting(ctx), self._noting_abandoned(link.key):  # relays for this session ride this request's stream meanwhile
            if self.session_client is not None and open_session:
                await self._ensure_link_upstream(link, ctx)
            session = link.up.session if link.up is not None else await self._upstream()
            try:
                result = await self._exchange(ctx, session, request, result_type, progress)
            except MCPError:
                if not link.lost:
                    raise
                await self._upstream_forgot(link)
                raise MCPError(
                    code=types.INTERNAL_ERROR,
                    message="plr: the upstream MCP server no longer knows this session (did it restart?); "
                    "the request failed and was not re-sent; the next request opens a new upstream session",
                ) from None
        await link.settle()
        return result

    @contextmanager
    def _noting_abandoned(self, key: str) -> Iterator[None]:
        """Remember a request the proxy stopped waiting for (its deadline, or the client cancelled)
        while the server may still be working on it: what that server sends next may be that
        request's, so it must not be taken for another session's (``_sole_caller``)."""
        try:
            yield
        except BaseException as e:
            if isinstance(e, (UpstreamTimeout, anyio.get_cancelled_exc_class())):
                self._abandoned[key] = time.monotonic()
            raise

    def _sole_caller(self) -> FrontLink | None:
        """On a shared upstream over HTTP, the one front session whose request the server can be
        working on now, or None when that is not sure: several sessions (or a stateless caller)
        in flight, or another caller's request abandoned in the last ``ABANDONED_WINDOW`` s."""
        waiting = [x for x in self.links.values() if x.inflight and not x.ended]
        if len(waiting) != 1 or self._stateless_inflight:
            return None
        now = time.monotonic()
        for key, at in list(self._abandoned.items()):
            if now - at > ABANDONED_WINDOW:
                del self._abandoned[key]
            elif key != waiting[0].key:
                return None
        return waiting[0]

    async def _upstream_forgot(self, link: FrontLink) -> None:
        """The upstream answered 404 to this front session's upstream session id (``--upstream
        URL``; it restarted or expired the session): drop that session, so the next request opens
        a new one, as the spec asks of a client; tell the front session its tools may differ.
        What the old session held upstream (subscriptions, log level) is not carried over."""
        async with link.opening:
            if not link.lost:
                return  # another request of this session got here first
            self.opt.stderr(
                f"plr proxy: the upstream server forgot the session of client session {link.key[:12]}; "
                "a new one is opened for its next request"
            )
            await link.drop()
            link.recheck_pins = True
        tg = getattr(self, "_tg", None)
        if tg is not None:
            tg.start_soon(self._notify_quietly, link.session, types.ToolListChangedNotification())

    async def _ensure_link_upstream(self, link: FrontLink, ctx: Any) -> None:
        """The front session's own upstream session, open: a forgotten one dropped first, a
        missing one opened (``--upstream URL``)."""
        if link.lost:
            await self._upstream_forgot(link)
        if link.up is None:
            await self._open_link_upstream(link, self.identity_of(ctx))

    async def _open_link_upstream(self, link: FrontLink, identity: str | None) -> None:
        """Open the front session's own upstream session (``--upstream URL``), within
        ``--max-sessions`` (and ``--max-sessions-per-identity``): beyond it the request gets a
        JSON-RPC error, never a hang."""
        async with link.opening:
            if link.up is not None:  # opened meanwhile, prepared (pins re-checked) before it was
                link.recheck_pins = False
                return
            if link.ended:
                raise MCPError(code=types.INTERNAL_ERROR, message="plr: this session has ended")
            limit = self.opt.max_sessions
            if sum(self._open_by_identity.values()) >= limit:
                self.opt.stderr(
                    f"plr proxy: refused an upstream session to client session {link.key[:12]}: "
                    f"{limit} are open (--max-sessions {limit})"
                )
                raise MCPError(
                    code=types.INTERNAL_ERROR,
                    message=f"plr: too many sessions: the proxy already holds {limit} upstream sessions "
                    f"(--max-sessions {limit}); end a session or try again later",
                )
            share = self.opt.max_sessions_per_identity
            if share and self._open_by_identity.get(identity, 0) >= share:
                who = f"identity {_short(identity, 80)}" if identity is not None else "the anonymous identity"
                self.opt.stderr(
                    f"plr proxy: refused an upstream session to client session {link.key[:12]}: {who} "
                    f"holds {share} (--max-sessions-per-identity {share})"
                )
                raise MCPError(
                    code=types.INTERNAL_ERROR,
                    message=f"plr: too many sessions for {who}: it already holds {share} upstream sessions "
                    f"(--max-sessions-per-identity {share}); end one of them first",
                )
            assert self.session_client is not None
            try:
                client = self.session_client(link.loss_reporter(), **self._link_callbacks(link))
                # given back by _upstream_closed when the client's task ends
                self._open_by_identity[identity] = self._open_by_identity.get(identity, 0) + 1
                await link.open(
                    client,
                    self._tg,  # type: ignore[attr-defined]
                    self.opt.upstream_timeout,
                    functools.partial(self._upstream_closed, identity),
                    # a server that came back may have changed while it was away: its tools are
                    # checked against the pins before any request can reach it
                    prepare=self._recheck_pins if link.recheck_pins else None,
                )
                link.recheck_pins = False
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as e:  # noqa: BLE001
                self.opt.stderr(f"plr proxy: cannot open an upstream session: {_describe_failure(e)}")
                raise MCPError(
                    code=types.INTERNAL_ERROR,
                    message=f"plr: cannot open a session with the upstream MCP server: {_describe_failure(e)}",
                ) from None

    def _upstream_closed(self, identity: str | None) -> None:
        left = self._open_by_identity.get(identity, 0) - 1
        if left > 0:
            self._open_by_identity[identity] = left
        else:
            self._open_by_identity.pop(identity, None)

    async def _exchange(self, ctx: Any, session: Any, request: Any, result_type: Any, progress: bool) -> Any:
        """One request on one upstream session, under ``--upstream-timeout``, progress relayed."""
        timeout = self.opt.upstream_timeout or None
        timer = _Timer(timeout)
        cb = None
        if (
            progress
            and ctx.meta
            and (ctx.meta.get("progressToken") is not None or ctx.meta.get("progress_token") is not None)
        ):
            front = ctx.session

            async def cb(p: float, total: float | None, message: str | None) -> None:
                timer.restart()  # a server that reports progress is working, not hanging
                try:
                    await front.report_progress(p, total, message)
                except Exception:  # noqa: BLE001 - progress is best effort
                    pass

        # Our own deadline, not the SDK's read timeout: the SDK starts its clock only once the
        # request is written, so a server that stops reading (a full pipe) would hang the call
        # for ever; ours also covers the write, and stands still while a human answers a relayed
        # elicitation. On expiry the client is answered at once; the SDK tells the upstream server
        # to cancel in the background.
        with anyio.CancelScope() as scope:
            timer.attach(scope, self)
            try:
                result = await self._request(session, request, result_type, cb, detach=timeout is not None)
            except Exception as e:  # noqa: BLE001
                raise self._map_error(e) from None
            finally:
                timer.detach(self)
        if scope.cancelled_caught:
            raise UpstreamTimeout(
                code=types.INTERNAL_ERROR,
                message=f"plr: the upstream MCP server did not answer within {_secs(timeout or 0)} s "
                "(--upstream-timeout)",
            )
        needs_input = isinstance(result, types.InputRequiredResult) or (
            isinstance(result, dict) and result.get("resultType") == "input_required"
        )
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        if needs_input and not modern:
            # a 2026-07-28 upstream asks for input; a handshake-era client cannot take that result
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message="plr: the upstream server asked for input that cannot be relayed to a 2025-era client",
            )
        if modern and isinstance(result, dict) and "resultType" not in result:
            result["resultType"] = "complete"  # required from 2026-07-28 on; a 2025-era upstream omits it
        return result

    async def _request(self, session: Any, request: Any, result_type: Any, cb: Any, *, detach: bool) -> Any:
        """``session.send_request``, run in the proxy's task group when ``detach``: abandoning it
        (timeout, or the client cancelled) then returns at once, while the SDK's attempt to send
        the upstream server a cancellation (up to 5 s when its input pipe is full) goes on apart."""
        tg = getattr(self, "_tg", None)
        if not detach or tg is None:
            return await session.send_request(request, result_type, progress_callback=cb)
        # one task per request, spawned without waiting for it to start (a pre-made scope we can
        # cancel even before the task enters it) and an Event instead of a memory stream
        done = anyio.Event()
        box: list[tuple[bool, Any]] = []
        inner = anyio.CancelScope()

        async def run() -> None:
            try:
                with inner:
                    try:
                        box.append((True, await session.send_request(request, result_type, progress_callback=cb)))
                    except Exception as e:  # noqa: BLE001 - handed to the waiting handler
                        box.append((False, e))
            finally:
                done.set()

        tg.start_soon(run)
        try:
            await done.wait()
        finally:
            if not done.is_set():  # abandoned (timeout, or the client cancelled); cancel() formats a repr: not per call
                inner.cancel()
        if not box:  # the task was cancelled (the proxy is shutting down)
            raise MCPError(code=types.INTERNAL_ERROR, message="plr: the upstream request was abandoned")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    # -- handlers: tools -------------------------------------------------------------------

    async def list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
        self._remember_front(ctx)
        res: dict[str, Any] = await self._send(
            ctx, types.ListToolsRequest(params=types.PaginatedRequestParams.model_validate(_rebuild(params))), _RAW
        )
        tools = self._review_pins(res.get("tools") or [])
        if self._pins_unchecked:  # a failed check ends only when every tool has been seen again
            if (params is None or params.cursor is None) and not res.get("nextCursor"):
                self._pins_unchecked = False  # this one page was the whole list
            else:
                link = self._link_of(ctx)
                client = link.up if link is not None and link.up is not None else self.up
                if client is not None:
                    await self._recheck_pins(client)
        for t in tools:
            if isinstance(t, dict) and isinstance(t.get("name"), str):
                self._schemas[t["name"]] = t.get("inputSchema")
        visible = set(self.engine.visible([t.get("name") for t in tools if isinstance(t, dict)]))
        res["tools"] = [t for t in tools if isinstance(t, dict) and t.get("name") in visible]
        return res

    def _review_pins(self, tools: list[Any]) -> list[Any]:
        """Tool pinning on one ``tools/list`` page from the server; reports changes on stderr."""
        shown, changes = self.pins.review(tools)
        for change in changes:
            served = "still served (--pin-tools warn)"
            self.opt.stderr(f"plr proxy: {change.summary()}: " + (served if self.pins.mode == "warn" else "withheld"))
        if self.pins.write_error is not None:
            self.opt.stderr(f"plr proxy: {self.pins.write_error}; pins kept in memory only")
            self.pins.write_error = None
        return shown

    async def call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        self._remember_front(ctx)
        args = params.arguments if params.arguments is not None else {}
        c = ToolCall(uuid.uuid4().hex[:16], params.name, args, session="?", identity=None)
        link = self._link_of(ctx)
        if link is not None and self.session_client is not None and (link.lost or link.recheck_pins):
            # the upstream forgot this session: open the new one (its tools checked against the
            # pins) before deciding, so the decision sees what the call would reach
            with link.waiting(ctx):
                await self._ensure_link_upstream(link, ctx)
        try:
            c.session = self.session_of(ctx)
            c.identity = self.identity_of(ctx)
            d, us = self.decide(c, False)
            approval = approval_id = None
            if d.effect == "approval_required":
                outcome = await self._approve(ctx, params, c, d, us)
                if isinstance(outcome, types.InputRequiredResult | types.CallToolResult):
                    return outcome
                d, us, approval, approval_id = outcome
            if d.effect != "allow":
                self.record_decision(c, d, us, effect="deny", approval=approval, approval_id=approval_id)
                return self.denied(c.tool, d)
            self.record_decision(c, d, us, approval=approval, approval_id=approval_id)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as e:  # noqa: BLE001 - fail closed: nothing is forwarded
            return self._fail_closed(c, e)
        # -- allowed and logged: forward ------------------------------------------------
        fwd = _rebuild(params)
        fwd["arguments"] = params.arguments
        if params.arguments is None:
            fwd.pop("arguments", None)
        extra = {k: v for k, v in (params.input_responses or {}).items() if k != APPROVAL_KEY}
        if extra:  # a 2026-07-28 upstream's own input round, passed through
            fwd["inputResponses"] = {
                k: v.model_dump(by_alias=True, mode="json", exclude_none=True) for k, v in extra.items()
            }
            if params.request_state and not params.request_state.startswith(STATE_PREFIX):
                fwd["requestState"] = params.request_state
        req = types.CallToolRequest(params=types.CallToolRequestParams.model_validate(fwd))
        return await self._send(ctx, req, _RAW, progress=True)

    def _fail_closed(self, c: ToolCall, e: BaseException) -> types.CallToolResult:
        d = Decision("deny", "error", f"internal error in the proxy: {type(e).__name__}: {_short(str(e), 200)}")
        log.error("plr proxy: denying %s: %s", c.tool, d.reason)
        self.opt.stderr(f"plr proxy: denied {c.tool} after an internal error: {type(e).__name__}: {e}")
        try:
            self.record_decision(c, d, 0)
        except Exception as e2:  # noqa: BLE001
            self.opt.stderr(f"plr proxy: could not write the audit record: {e2}")
        return self.denied(c.tool, d)

    # -- approvals --------------------------------------------------------------------------

    def _approval_message(self, c: ToolCall, d: Decision) -> str:
        # the client already holds these arguments: shown whole (up to a bound that is named)
        return f"Allow {c.tool}({cut_marked(canonical_args(c.args), ELICIT_ARGS_MAX)})? {d.reason}"

    @staticmethod
    def _form_capable(ctx: Any) -> bool:
        caps = ctx.session.client_capabilities
        el = getattr(caps, "elicitation", None) if caps is not None else None
        if el is None:
            return False
        return el.form is not None or el.url is None  # `{}` means form (2025-06-18 wording)

    async def _approve(self, ctx: Any, params: types.CallToolRequestParams, c: ToolCall, d: Decision, us: int) -> Any:
        """Ask a human. Returns a final (Decision, latency, channel, id), or a result to return as is."""
        mode = self.opt.approval_mode
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        can_elicit = self._form_capable(ctx) and (modern or ctx.session.can_send_request)
        if mode == "deny" or (mode == "elicit" and not can_elicit):
            nd = Decision(
                "deny", d.code, f"{d.reason} (approval required, but no approval channel is available)", d.rule
            )
            return nd, us, "unavailable", None
        # a call its limit would refuse once approved is refused now: a human is not asked for it
        # (an agent looping on a limited tool must not flood the approver); a retry of an
        # InputRequiredResult round is let through to be decided with its answer
        if not (modern and params.input_responses):
            limited = self.engine.rate_limit_if_approved(c.tool, identity=c.identity, session=c.session)
            if limited is not None:
                return limited, us, None, None
        use_elicit = mode == "elicit" or (mode == "auto" and can_elicit)
        if use_elicit and modern:
            return await self._approve_modern(ctx, params, c, d, us)
        # ask-record first (the operator's tail -f sees the pending call)
        self.record_decision(c, d, us, approval="elicitation" if use_elicit else "queue")
        if use_elicit:
            answer = await self._elicit_legacy(ctx, c, d)
            channel, aid = "elicitation", None
        else:
            answer, aid = await self._ask_queue(c, d)
            channel = "queue"
        return self._after_answer(answer, c, d, channel, aid)

    def _after_answer(
        self, answer: str, c: ToolCall, d: Decision, channel: str, aid: str | None
    ) -> tuple[Decision, int, str, str | None]:
        if answer == "granted":
            nd, us2 = self.decide(c, True)
            if nd.effect == "approval_required":  # cannot happen with approved=True; fail closed anyway
                nd = Decision("deny", nd.code, nd.reason, nd.rule)
            return nd, us2, channel, aid
        why = {
            "denied": "a human declined this call",
            "expired": f"no approval within {_secs(self.opt.approval_timeout)} s",
            "unavailable": "approval required, but the approval channel failed",
            "state_unavailable": "approval required, but the shared approval queue is unreachable",
        }.get(answer, "not approved")
        codes = {"denied": "approval_declined", "expired": "approval_timeout", "state_unavailable": "state_unavailable"}
        code = codes.get(answer, "approval_unavailable")
        return Decision("deny", code, f"{d.reason} ({why})", d.rule), 0, channel, aid  # type: ignore[arg-type]

    async def _elicit_legacy(self, ctx: Any, c: ToolCall, d: Decision) -> str:
        msg = self._approval_message(c, d)
        try:
            with anyio.fail_after(self.opt.approval_timeout):
                res = await ctx.session.elicit_form(msg, APPROVAL_SCHEMA, related_request_id=ctx.request_id)
        except TimeoutError:
            return "expired"
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as e:  # noqa: BLE001 - the client failed to answer: not approved
            self.opt.stderr(f"plr proxy: elicitation failed for {c.tool}: {type(e).__name__}: {e}")
            return "unavailable"
        ok = res.action == "accept" and (res.content or {}).get("approve") is True
        return "granted" if ok else "denied"

    def _queue_obj(self) -> Any:
        if self._queue is None:
            from .approvals import default_db_path, open_queue

            self._queue = open_queue(self.opt.state, self.opt.approvals_db or default_db_path(self.opt.audit_path))
        return self._queue

    async def _ask_queue(self, c: ToolCall, d: Decision) -> tuple[str, str | None]:
        try:
            q = self._queue_obj()
            shown = args_for_display(c.args, redact)
            h = args_sha256(c.args)
            aid = await anyio.to_thread.run_sync(
                lambda: q.file(
                    tool=c.tool,
                    args_text=shown,
                    args_hash=h,
                    timeout=self.opt.approval_timeout,
                    session=c.session,
                    identity=c.identity,
                    server=self.server_name,
                    rule=d.rule,
                    reason=d.reason,
                )
            )
        except anyio.get_cancelled_exc_class():
            raise
        except StateUnavailable:  # a shared queue that cannot be reached (reported once, not per call)
            return "state_unavailable", None
        except Exception as e:  # noqa: BLE001
            self.opt.stderr(f"plr proxy: cannot file an approval request: {type(e).__name__}: {e}")
            return "unavailable", None
        db = q.cli_hint
        self.opt.stderr(
            f"plr proxy: approval needed for {c.tool} ({d.reason}); "
            f"run `plr approvals{db} grant {aid}` or `plr approvals{db} deny {aid}` "
            f"within {_secs(self.opt.approval_timeout)} s"
        )
        try:
            return await q.wait(aid, h, self.opt.approval_timeout), aid
        except anyio.get_cancelled_exc_class():
            raise
        except StateUnavailable:
            return "state_unavailable", aid
        except Exception as e:  # noqa: BLE001
            self.opt.stderr(f"plr proxy: approval queue failed: {type(e).__name__}: {e}")
            return "unavailable", aid

    # 2026-07-28: return InputRequiredResult; the retried call carries the answer
    def _fingerprint(self, c: ToolCall) -> str:
        return hashlib.sha256(f"{c.tool}\x00{canonical_args(c.args)}".encode("utf-8", "surrogatepass")).hexdigest()

    def _seal(self, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        mac = _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
        return f"{STATE_PREFIX}{body}.{mac}"

    def _unseal(self, state: str | None) -> dict[str, Any] | None:
        if not state or not state.startswith(STATE_PREFIX):
            return None
        try:
            body, mac = state[len(STATE_PREFIX) :].split(".", 1)
            want = _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(want, mac):
                return None
            out = json.loads(_unb64(body))
            return out if isinstance(out, dict) else None
        except (ValueError, TypeError):
            return None

    def _spend_nonce(self, nonce: str, expires: float) -> bool:
        now = time.time()
        if len(self._used_nonces) > self._nonce_prune_at:  # amortised: not a rebuild per retry
            self._used_nonces = {k: v for k, v in self._used_nonces.items() if v > now}
            self._nonce_prune_at = max(4096, 2 * len(self._used_nonces))
        if nonce in self._used_nonces:
            return False
        self._used_nonces[nonce] = expires
        return True

    async def _approve_modern(
        self, ctx: Any, params: types.CallToolRequestParams, c: ToolCall, d: Decision, us: int
    ) -> Any:
        fp = self._fingerprint(c)
        responses = params.input_responses or {}
        resp = responses.get(APPROVAL_KEY)
        if resp is None:
            # first round: ask, bound to this exact call, this session and a deadline
            nonce = uuid.uuid4().hex
            state = self._seal({"fp": fp, "sess": c.session, "iat": time.time(), "n": nonce, "call": c.id})
            self.record_decision(c, d, us, approval="elicitation")
            req = types.ElicitRequest(
                params=types.ElicitRequestFormParams(
                    message=self._approval_message(c, d), requested_schema=APPROVAL_SCHEMA
                )
            )
            return types.InputRequiredResult(input_requests={APPROVAL_KEY: req}, request_state=state)
        # the retry: request_state is attacker-controlled until verified
        st = self._unseal(params.request_state)
        if st is None or st.get("fp") != fp or st.get("sess") != c.session:
            why = f"{d.reason} (the approval does not match this call)"
            return Decision("deny", "approval_unavailable", why, d.rule), 0, "elicitation", None
        c.id = str(st.get("call") or c.id)  # the retry's records join the first round's
        issued = float(st.get("iat", 0))
        if time.time() - issued > self.opt.approval_timeout:
            answer = "expired"
        elif not self._spend_nonce(str(st.get("n")), issued + self.opt.approval_timeout):
            why = f"{d.reason} (this approval was already used)"
            return Decision("deny", "approval_unavailable", why, d.rule), 0, "elicitation", None
        else:
            ok = (
                isinstance(resp, types.ElicitResult)
                and resp.action == "accept"
                and (resp.content or {}).get("approve") is True
            )
            answer = "granted" if ok else "denied"
        nd, us2, channel, aid = self._after_answer(answer, c, d, "elicitation", None)
        if nd.effect != "allow":
            self.record_decision(c, nd, us2, effect="deny", approval=channel)
            return self.denied(c.tool, nd)
        return nd, us2, channel, aid

    # -- handlers: everything else (forwarded) ---------------------------------------------

    def _forwarder(
        self, request_cls: Any, params_cls: Any, result_type: Any, *, progress: bool = False
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def handler(ctx: Any, params: Any) -> Any:
            self._remember_front(ctx)
            p = _rebuild(params)
            req = request_cls(params=params_cls.model_validate(p)) if (p or params_cls is not None) else request_cls()
            return await self._send(ctx, req, result_type, progress=progress)

        return handler

    async def _set_level(self, ctx: Any, params: Any) -> types.EmptyResult:
        """logging/setLevel, forwarded; the level the server accepted is kept, so a restarted
        server is told it again (``prepare_restarted``)."""
        self._remember_front(ctx)
        req = types.SetLevelRequest(params=types.SetLevelRequestParams.model_validate(_rebuild(params)))
        result = await self._send(ctx, req, types.EmptyResult)
        self._log_level = req.params.level
        return result

    async def ping(self, ctx: Any, params: Any) -> types.EmptyResult:
        # answered by the proxy, but only while the upstream server answers too
        if self.up is not None and not self._up_modern:
            # the session's own upstream session if it has one; never opens one for a ping
            await self._send(ctx, types.PingRequest(), types.EmptyResult, open_session=False)
        return types.EmptyResult()

    def build_server(self) -> tuple[Server[Any], Any]:
        """The front server, mirroring what the upstream server offers."""
        up = self.up
        # kept, not read per request: a dead server's client is closed, and a restart keeps the era
        self._up_modern = up is not None and up.protocol_version in MODERN_PROTOCOL_VERSIONS
        caps: types.ServerCapabilities = up.server_capabilities if up is not None else types.ServerCapabilities()
        info = up.server_info if up is not None else None
        if self.server_name is None:
            self.server_name = info.name if info is not None else None
        from mcp.server.caching import CACHEABLE_METHODS, CacheHint

        server: Server[Any] = Server(
            info.name if info is not None else "plr-proxy",
            # lists depend on the policy (hot reload) and on who asks: never cacheable, never shared
            cache_hints={m: CacheHint(ttl_ms=0, scope="private") for m in CACHEABLE_METHODS},
            version=(info.version if info is not None else "") or "",
            title=info.title if info is not None else None,
            instructions=up.instructions if up is not None else None,
            # Mcp-Param header checks (2026-07-28 HTTP) read the last listing, not a fresh upstream one
            get_tool_input_schema=self._schemas.get,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_ping=self.ping,
        )
        server.add_notification_handler(
            "notifications/roots/list_changed", types.NotificationParams, self.front_roots_changed
        )
        if self.transport != "stdio":
            server.add_notification_handler("notifications/initialized", types.NotificationParams, self.front_initialized)
        f = self._forwarder
        if caps.resources is not None:
            server.add_request_handler(
                "resources/list",
                types.PaginatedRequestParams,
                f(types.ListResourcesRequest, types.PaginatedRequestParams, _RAW),
            )
            server.add_request_handler(
                "resources/templates/list",
                types.PaginatedRequestParams,
                f(types.ListResourceTemplatesRequest, types.PaginatedRequestParams, _RAW),
            )
            server.add_request_handler(
                "resources/read",
                types.ReadResourceRequestParams,
                f(types.ReadResourceRequest, types.ReadResourceRequestParams, _RAW, progress=True),
            )
            if caps.resources.subscribe:
                server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self._subscription(True))
                server.add_request_handler(
                    "resources/unsubscribe", types.UnsubscribeRequestParams, self._subscription(False)
                )
        if caps.prompts is not None:
            server.add_request_handler(
                "prompts/list",
                types.PaginatedRequestParams,
                f(types.ListPromptsRequest, types.PaginatedRequestParams, _RAW),
            )
            server.add_request_handler(
                "prompts/get",
                types.GetPromptRequestParams,
                f(types.GetPromptRequest, types.GetPromptRequestParams, _RAW, progress=True),
            )
        if caps.completions is not None:
            server.add_request_handler(
                "completion/complete",
                types.CompleteRequestParams,
                f(types.CompleteRequest, types.CompleteRequestParams, _RAW),
            )
        if caps.logging is not None:
            server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_level)
        init = server.create_initialization_options(
            NotificationOptions(
                prompts_changed=bool(caps.prompts and caps.prompts.list_changed),
                resources_changed=bool(caps.resources and caps.resources.list_changed),
                tools_changed=True,
            ),
            experimental_capabilities=caps.experimental,
        )
        return server, init

    # -- upstream -> front relay ---------------------------------------------------------------
    #
    # stdio: everything goes to the one client. HTTP with a shared upstream (a command after `--`,
    # or a 2026-07-28 upstream): notifications are broadcast to every live handshake-era session,
    # and a server-to-client request goes to the one session with a request in flight (ambiguous
    # otherwise). HTTP with --upstream URL: each front session's own upstream session relays to that
    # session only. Progress is relayed per request everywhere (``_exchange``).

    def _notify_front(self, notification: Any) -> None:
        """A notification of the proxy's own (a reload changed the hidden tools) to every client."""
        if self.transport == "stdio":
            sessions = [self.front_session] if self.front_session is not None else []
        else:
            sessions = [link.session for link in self.links.values()]
        tg = getattr(self, "_tg", None)
        if tg is None:
            return
        for s in sessions:
            tg.start_soon(self._notify_quietly, s, notification)

    @staticmethod
    async def _notify_quietly(session: Any, notification: Any, related: Any = None) -> None:
        # bounded: a client that stopped reading must not stall the relay for every other session
        with anyio.move_on_after(RELAY_SEND_TIMEOUT):
            try:
                await session.send_notification(notification, related_request_id=related)
            except Exception:  # noqa: BLE001 - the front may be gone; relay is best effort
                pass

    def _relayable(self, message: Any) -> bool:
        """Whether an upstream message is a notification to relay (a malformed one is reported)."""
        if isinstance(message, Exception):
            self.opt.stderr(f"plr proxy: ignored a malformed message from the upstream server: {_why(message)}")
            return False
        if isinstance(message, (types.ProgressNotification, types.CancelledNotification)):
            return False  # progress is relayed per request (token mapping); cancellation is per connection
        return isinstance(message, types.ServerNotification) or isinstance(message, types.Notification)

    async def upstream_message(self, message: Any) -> None:
        """``message_handler`` of the shared upstream client."""
        if not self._relayable(message):
            return
        if self.transport == "stdio":
            if self.front_session is not None:
                await self._notify_quietly(self.front_session, message)
        elif self.session_client is None:
            await self._relay_to(self._shared_audience(message), message)
        # else: each session has its own upstream session; the shared one serves only stateless
        # 2026-07-28 requests, which have no channel for notifications

    def _shared_audience(self, message: Any) -> list[FrontLink]:
        """Who hears a notification of the one server every HTTP session shares. Sessions may be
        different identities, so nothing goes to a session it may not concern: list_changed
        (about the server, not a caller) to every session; resources/updated to the sessions that
        subscribed to that URI; anything else (a log message) only to the one session with a
        request in flight, and to nobody when that is not known."""
        links = [x for x in self.links.values() if not x.ended]
        changed = (types.ToolListChangedNotification, types.ResourceListChangedNotification,
                   types.PromptListChangedNotification)  # fmt: skip
        if isinstance(message, changed):
            return links
        if isinstance(message, types.ResourceUpdatedNotification):
            holders = self._subscribers.get(str(message.params.uri), set())
            return [x for x in links if x.key in holders]
        sole = self._sole_caller()
        return [sole] if sole is not None else []

    def _subscription(self, subscribe: bool) -> Callable[[Any, Any], Awaitable[Any]]:
        """resources/(un)subscribe. On a shared upstream over HTTP the proxy keeps who subscribed
        (resources/updated goes to them only) and forwards only the first subscribe and the last
        unsubscribe of a URI, so one session leaving does not unsubscribe the others."""
        if subscribe:
            forward = self._forwarder(types.SubscribeRequest, types.SubscribeRequestParams, types.EmptyResult)
        else:
            forward = self._forwarder(types.UnsubscribeRequest, types.UnsubscribeRequestParams, types.EmptyResult)

        async def handler(ctx: Any, params: Any) -> Any:
            self._remember_front(ctx)
            link = self._link_of(ctx)
            if link is None or self.session_client is not None:
                return await forward(ctx, params)
            uri = str(params.uri)
            lock = self._subscribing.setdefault(uri, anyio.Lock())
            try:
                async with lock:
                    holders = self._subscribers.get(uri, set())
                    if subscribe:
                        if link.ended:
                            return types.EmptyResult()
                        if not holders:
                            await forward(ctx, params)  # raises: nothing recorded
                        if link.ended:  # it ended meanwhile: hold nothing for it
                            if not self._subscribers.get(uri) and getattr(self, "_tg", None) is not None:
                                self._tg.start_soon(self._unsubscribe_quietly, uri)  # type: ignore[attr-defined]
                            return types.EmptyResult()
                        self._subscribers.setdefault(uri, set()).add(link.key)
                        link.subscriptions.add(uri)
                    elif link.key in holders:  # an unsubscribe of what this session never held is a no-op
                        if holders == {link.key}:
                            await forward(ctx, params)
                            self._subscribers.pop(uri, None)
                        else:
                            holders.discard(link.key)
                        link.subscriptions.discard(uri)
                return types.EmptyResult()
            finally:  # a lock per URI only while it is held or awaited, not for every URI ever named
                if not lock.locked() and not lock.statistics().tasks_waiting:
                    self._subscribing.pop(uri, None)

        return handler

    async def _link_message(self, link: FrontLink, message: Any) -> None:
        """``message_handler`` of a front session's own upstream client: to that session only."""
        if self._relayable(message):
            await self._relay_to([link], message)

    async def _relay_to(self, links: list[FrontLink], message: Any) -> None:
        # every relay is registered before the first await (see FrontLink.begin_relay)
        plans = [(link, *link.route(), link.begin_relay()) for link in links if not link.ended]
        for link, session, related, done in plans:
            try:
                await self._notify_quietly(session, message, related)
            finally:
                link.end_relay(done)

    @contextmanager
    def _human_wait(self) -> Iterator[None]:
        """While a human answers, no upstream request's deadline runs (the server is waiting too)."""
        self._human_waits += 1
        if self._human_waits == 1:
            for t in list(self._timers):
                t.pause()
        try:
            yield
        finally:
            self._human_waits -= 1
            if self._human_waits == 0:
                for t in list(self._timers):
                    t.resume()

    async def upstream_elicitation(self, context: Any, params: Any, *, link: FrontLink | None = None) -> Any:
        """The upstream server asks the user something (``elicitation/create``)."""
        return await self._ask_front(link, "elicitation", types.ElicitRequest(params=params), types.ElicitResult)

    async def upstream_sampling(self, context: Any, params: Any, *, link: FrontLink | None = None) -> Any:
        """The upstream server asks the client's model (``sampling/createMessage``)."""
        tools = params.tools is not None or params.tool_choice is not None
        result = types.CreateMessageResultWithTools if tools else types.CreateMessageResult
        return await self._ask_front(link, "sampling", types.CreateMessageRequest(params=params), result)

    async def upstream_roots(self, context: Any, *, link: FrontLink | None = None) -> Any:
        """The upstream server asks for the client's roots (``roots/list``)."""
        return await self._ask_front(link, "roots", types.ListRootsRequest(), types.ListRootsResult)

    def shared_callbacks(self) -> dict[str, Any]:
        """Callbacks of the shared upstream client (stdio, or a command upstream over HTTP)."""
        return {
            "elicitation_callback": self.upstream_elicitation,
            "sampling_callback": self.upstream_sampling,
            "list_roots_callback": self.upstream_roots,
        }

    def _link_callbacks(self, link: FrontLink) -> dict[str, Any]:
        """Callbacks of a front session's own upstream client. It declares to the upstream only the
        capabilities this client declared, so the server sees what it would see without the proxy."""

        async def message(m: Any) -> None:
            await self._link_message(link, m)

        out: dict[str, Any] = {"message_handler": message}
        caps = link.session.client_capabilities
        if caps is not None and caps.elicitation is not None:
            out["elicitation_callback"] = functools.partial(self.upstream_elicitation, link=link)
        if caps is not None and caps.sampling is not None:
            out["sampling_callback"] = functools.partial(self.upstream_sampling, link=link)
            out["sampling_capabilities"] = caps.sampling
        if caps is not None and caps.roots is not None:
            out["list_roots_callback"] = functools.partial(self.upstream_roots, link=link)
        return out

    def _ask_target(self, link: FrontLink | None, kind: str, method: str) -> tuple[Any, Any] | types.ErrorData:
        """Who answers a server-to-client request: (ServerSession, related request id), or an error."""
        if link is not None:
            if link.ended:
                return types.ErrorData(code=types.INVALID_REQUEST, message="plr: the client session has ended")
            return link.route()
        if self.transport == "stdio":
            s = self.front_session
            if s is None or not s.can_send_request:
                return types.ErrorData(code=types.INVALID_REQUEST, message=_NOT_SUPPORTED[kind])
            return s, None
        sole = self._sole_caller()
        if sole is not None:
            return sole.route()
        w = len([x for x in self.links.values() if x.inflight])
        n = w + self._stateless_inflight
        who = f"{n} client sessions have requests" if n else "no client session has a request"
        if w == 1 and not self._stateless_inflight:
            who = "a request another client abandoned may still be running, and a client session has one"
        return types.ErrorData(
            code=types.INVALID_REQUEST,
            message=f"plr: {method} not relayed: {who} in flight on this shared upstream server, "
            "so which client should answer is ambiguous",
        )

    async def _ask_front(self, link: FrontLink | None, kind: str, request: Any, result_type: Any) -> Any:
        """Relay a server-to-client request to the client that should answer it, when it can."""
        target = self._ask_target(link, kind, request.method)
        if isinstance(target, types.ErrorData):
            return target
        session, related = target
        caps = session.client_capabilities
        if caps is None or getattr(caps, kind, None) is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message=_NOT_SUPPORTED[kind])
        metadata = ServerMessageMetadata(related_request_id=related) if related is not None else None
        try:
            with self._human_wait(), anyio.fail_after(self.opt.approval_timeout):
                return await session.send_request(request, result_type, metadata=metadata)
        except TimeoutError:
            if kind == "elicitation":
                return types.ElicitResult(action="cancel")
            return types.ErrorData(
                code=types.REQUEST_TIMEOUT,
                message=f"plr: the client did not answer {request.method} within {_secs(self.opt.approval_timeout)} s",
            )
        except MCPError as e:
            return e.error
        except Exception as e:  # noqa: BLE001
            return types.ErrorData(code=types.INTERNAL_ERROR, message=f"relay failed: {type(e).__name__}")

    # -- front -> upstream notifications ------------------------------------------------------

    async def front_initialized(self, ctx: Any, params: Any) -> None:
        """HTTP: a session is known from its handshake on, so broadcasts reach it before its first request."""
        self._remember_front(ctx)

    async def front_roots_changed(self, ctx: Any, params: Any) -> None:
        """The client's roots changed: tell the upstream session that serves it (which then asks)."""
        link = self._link_of(ctx)
        client = self.up if self.session_client is None else (link.up if link is not None else None)
        if client is None:
            return
        try:
            await client.session.send_notification(types.RootsListChangedNotification())
        except Exception:  # noqa: BLE001 - best effort, like every notification
            pass
