"""What every part of the proxy is given: the command line (``ProxyOptions``) and, once the proxy
serves, the task group it runs in (``Background``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..vocab import terminal_text

if TYPE_CHECKING:
    from .pins import ToolPins

__all__ = ["ApprovalMode", "Background", "ProxyOptions"]

ApprovalMode = Literal["auto", "elicit", "queue", "deny"]


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
    # secure by default: the queue, a channel the agent does not control (elicit/auto trust the client)
    approval_mode: ApprovalMode = "queue"
    max_pending_approvals: int = 20  # per identity and per session; 0: no cap
    approval_timeout: float = 120.0
    approvals_db: Path | None = None
    # --state: shared limit counters + approval queue (a dsl.state.redis.RedisState); None: in-process + SQLite
    state: Any = None
    # the limit counters when --state is not Redis (a dsl.state LimitStore: SQLite by default when the
    # policy has a limit, memory with --state memory); None: the engine's in-process counters
    limit_store: Any = None
    watch: bool = False
    upstream_timeout: float | None = 60.0  # seconds; None or 0: wait for ever
    # the upstream's start (spawn + MCP handshake, or opening an upstream session): a server fetched by
    # npx or a busy machine takes longer to start than to answer, so the two bounds are separate
    start_timeout: float | None = 60.0
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
    # --strict-tools: a policy naming a tool the server does not offer does not start (nor replace
    # the policy in force on reload); without it the mismatch is only reported (tool_check.py)
    strict_tools: bool = False
    # --notify URL / --notify-command CMD (notify.Notifier, or None): told when a request is filed
    notifier: Any = None
    # --metrics HOST:PORT (metrics.ProxyMetrics, or None): also served as /metrics by the HTTP front
    metrics: Any = None
    # every line escaped: a tool name with a newline and ANSI codes must not forge a line of ours
    stderr: Callable[[str], None] = field(default=lambda s: print(terminal_text(s), file=sys.stderr, flush=True))


class Background:
    """The task group the proxy serves in (``None`` until ``serve`` sets it, or in a test that
    never serves): where a part starts work that must outlive the request that began it."""

    __slots__ = ("tg",)

    def __init__(self) -> None:
        self.tg: Any = None  # anyio.abc.TaskGroup

    def spawn(self, fn: Callable[..., Any], *args: Any) -> bool:
        """``tg.start_soon(fn, *args)``; False (and nothing started) before the proxy serves."""
        tg = self.tg
        if tg is None:
            return False
        tg.start_soon(fn, *args)
        return True
