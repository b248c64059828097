"""The enforcing proxy's coordinator: ``Proxy`` builds the parts, wires them together, and
tells them about the upstream server's life.

What each part owns is in ``dsl/proxy/__init__.py``. The path of a ``tools/call``: the front
(``stdio.py`` or ``http.py``) hands it to the ``Server`` that ``Proxy.build_server()`` returns
(``FrontServer``), whose ``ToolMethods.call_tool`` decides it (``Decisions``), asks a human when
the policy says ``approval_required`` (``ApprovalFlow``), writes the audit record, and only then
forwards it (``Forwarder``, on the session ``FrontSessions`` and ``SessionUpstreams`` /
``SharedUpstream`` say). What the server sends back unasked goes through ``Relay``.

Fail closed: an engine exception, an audit write failure or a broken approval channel denies
the call; an upstream failure is a JSON-RPC error, never a silent success, and so is an upstream
request left unanswered for ``--upstream-timeout`` seconds. A command upstream that dies is
restarted by ``upstream.Upstream``, which tells the proxy (``upstream_lost``,
``prepare_restarted``, ``upstream_back``, ``upstream_given_up``): requests in flight get an
error, requests that arrive during the restart wait for it (``SharedUpstream``), and the policy,
limit counters, audit log, approvals and pins carry over to the restarted server.

``ProxyOptions`` (``options.py``), ``deny_text``, ``ToolCall`` (``deciding.py``),
``APPROVAL_SCHEMA`` (``approval_flow.py``) and ``TracebackFilter`` (``errors.py``) are importable
from here too.
"""

from __future__ import annotations

import os
from typing import Any

import mcp_types as types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .approval_flow import APPROVAL_SCHEMA, ApprovalFlow
from .audit import AuditLog
from .deciding import Decisions, ToolCall, deny_text
from .errors import TracebackFilter, why
from .fast_calls import FastCalls
from .forwarding import Deadlines, Forwarder
from .front_server import FrontServer
from .options import ApprovalMode, Background, ProxyOptions
from .pins import PinCheck, ToolPins
from .relay import Relay, Subscriptions, notify_quietly
from .reload import LoadedPolicy
from .session_upstreams import SessionUpstreams
from .sessions import FrontSessions
from .tool_check import StrictToolsError, ToolsReport, compare, list_server_tools
from .tools import ToolMethods
from .upstream import SharedUpstream

__all__ = ["ProxyOptions", "Proxy", "APPROVAL_SCHEMA", "deny_text", "TracebackFilter", "ToolCall", "ApprovalMode"]


class Proxy:
    """One proxy instance: its parts, wired together."""

    def __init__(self, options: ProxyOptions, loaded: LoadedPolicy, *, transport: str = "stdio") -> None:
        self.opt = options  # (upstream.Upstream reads its start timeout, restart budget and stderr)
        self.tasks = Background()
        self._policy_parts(options, loaded)
        self._traffic_parts(options, transport)
        # the server's tool names at the last comparison with the policy (None: not listed yet)
        self.server_tools: list[str] | None = None
        self.tools = ToolMethods(self.sessions, self.decisions, self.approvals, self.pin_check, self.forwarding)
        self.front = FrontServer(
            self.tools,
            self.forwarding,
            transport=transport,
            timeout=options.upstream_timeout or None,
            report=options.stderr,
            sessions=self.sessions,
            subscriptions=self.subscriptions,
            own=self.session_upstreams,
            shared=self.shared,
        )
        # tools/call over stdio without the SDK's per-request machinery (a command upstream only:
        # serve.py hands it to the stdio front when there is one)
        self.fast: FastCalls | None = None
        if transport == "stdio" and os.environ.get("PLR_PROXY_FAST", "1") != "0":
            from mcp.server.caching import CACHEABLE_METHODS

            self.fast = FastCalls(
                decisions=self.decisions,
                sessions=self.sessions,
                shared=self.shared,
                timeout=options.upstream_timeout or None,
                deadlines=self.deadlines,
                tasks=self.tasks,
                cacheable="tools/call" in CACHEABLE_METHODS,
            )

    def _policy_parts(self, options: ProxyOptions, loaded: LoadedPolicy) -> None:
        """What decides a call: the pins, the engine with its audit log, the approval flow."""
        audit = None
        if options.audit_path is not None:
            audit = AuditLog(options.audit_path, max_bytes=options.audit_max_bytes, backups=options.audit_backups)
        pins = options.pins if options.pins is not None else ToolPins("deny")
        self.pin_check = PinCheck(pins, timeout=options.upstream_timeout or None, report=options.stderr)
        self.decisions = Decisions(
            loaded,
            self.pin_check,
            limit_store=options.state.limit_store if options.state is not None else options.limit_store,
            audit=audit,
            server_name=options.server_name,
            log_args=options.log_args,
            report=options.stderr,
            metrics=options.metrics,
        )
        self.approvals = ApprovalFlow(
            self.decisions,
            options.approval_mode,
            options.approval_timeout,
            state=options.state,
            approvals_db=options.approvals_db,
            audit_path=options.audit_path,
            report=options.stderr,
            max_pending=options.max_pending_approvals,
            notifier=options.notifier,  # --notify / --notify-command: told when a request is filed
        )

    def _traffic_parts(self, options: ProxyOptions, transport: str) -> None:
        """What carries messages: the front sessions, the upstream sessions, forwarding and relay."""
        timeout = options.upstream_timeout or None
        report = options.stderr
        self.sessions = FrontSessions(
            transport,
            identity=options.identity,
            tokens=options.tokens,
            on_end=lambda link: self.subscriptions.forget(link),
        )
        self.shared = SharedUpstream(timeout)
        self.deadlines = Deadlines()
        self.subscriptions = Subscriptions(
            links=self.sessions.links, shared=self.shared, timeout=timeout, tasks=self.tasks, report=report
        )
        self.relay = Relay(
            sessions=self.sessions,
            subscriptions=self.subscriptions,
            deadlines=self.deadlines,
            own_upstreams=lambda: self.session_upstreams.enabled,
            answer_timeout=options.approval_timeout,
            tasks=self.tasks,
            report=report,
            tools_changed=self._tools_changed,
        )
        self.session_upstreams = SessionUpstreams(
            max_sessions=options.max_sessions,
            max_per_identity=options.max_sessions_per_identity,
            start_timeout=options.start_timeout,
            identity_of=self.sessions.identity_of,
            callbacks=self.relay.link_callbacks,
            recheck=self.pin_check.recheck,
            notify=notify_quietly,
            tasks=self.tasks,
            report=report,
        )
        self.forwarding = Forwarder(
            timeout=timeout,
            sessions=self.sessions,
            shared=self.shared,
            own=self.session_upstreams,
            deadlines=self.deadlines,
            tasks=self.tasks,
        )

    # -- what serve.py (and tests) set and read: also ``tasks.tg`` (the task group it serves in) and
    # ``session_upstreams.make_client`` (``--upstream URL`` over HTTP: a client per front session) --

    @property
    def up(self) -> Any:
        """The shared upstream ``mcp.Client`` (None until connected)."""
        return self.shared.client

    @up.setter
    def up(self, client: Any) -> None:
        self.shared.client = client

    @property
    def audit(self) -> AuditLog | None:
        """The audit log (closed by ``serve`` at the end)."""
        return self.decisions.audit

    def apply_policy(self, loaded: LoadedPolicy) -> None:
        """Hot reload: prepare fully, then swap (raises and keeps the old policy on failure).
        The new policy's tools are compared with the server's last listing first: with
        --strict-tools, one naming a tool the server lacks is refused."""
        report = compare(loaded.policy, self.server_tools) if self.server_tools is not None else None
        if report is not None and report.missing and self.opt.strict_tools:
            from ..errors import PlrError

            raise PlrError.at(
                f"--strict-tools: the new policy names tools the server does not offer: {', '.join(report.missing)}",
                loaded.path,
            )
        if self.decisions.apply_policy(loaded):
            self.relay.notify_all(types.ToolListChangedNotification())
        if report is not None:
            self._tell(report, "after a policy reload")

    # -- the policy's tools against the server's ---------------------------------------------------

    async def compare_tools(self, client: Any, when: str) -> ToolsReport | None:
        """List the server's tools and say how they differ from the policy's (stderr and audit).
        None when the server could not be listed (reported)."""
        try:
            names = await list_server_tools(client, self.opt.upstream_timeout or None)
        except Exception as e:  # noqa: BLE001 - reported; the proxy goes on
            self.opt.stderr(f"plr proxy: {when}, could not list the server's tools to compare them with the policy: {why(e)}")
            return None
        self.server_tools = names
        report = compare(self.decisions.loaded.policy, names)
        self._tell(report, when)
        return report

    async def check_tools_at_start(self, client: Any) -> None:
        """At start: compare; with --strict-tools, a policy naming a tool the server lacks (or a
        server whose tools cannot be listed) stops the start (``StrictToolsError``)."""
        report = await self.compare_tools(client, "at start")
        if not self.opt.strict_tools:
            return
        if report is None:
            raise StrictToolsError("--strict-tools: the server's tools could not be listed to check the policy against them")
        if report.missing:
            raise StrictToolsError(
                f"--strict-tools: the policy names {len(report.missing)} tool(s) the server does not offer: "
                + ", ".join(report.missing)
            )

    def _tools_changed(self) -> None:
        """The server said its tools changed: compare again (in the background)."""
        client = self.shared.client
        if client is not None:
            self.tasks.spawn(self.compare_tools, client, "after the server's tools/list_changed")

    def _tell(self, report: ToolsReport, when: str) -> None:
        for line in report.lines(when):
            self.opt.stderr(line)
        if report.clean or self.audit is None:
            return
        try:
            rec = report.record(when, server=self.decisions.server_name, policy_sha256=self.decisions.loaded.sha256)
            self.audit.write(rec)
        except OSError as e:
            self.opt.stderr(f"plr proxy: could not write the tools comparison to the audit log: {why(e)}")

    async def close_links(self) -> None:
        """Shutdown: close every front session's upstream session (each sends the upstream a DELETE)."""
        await self.sessions.close_all()

    # -- the upstream's life (driven by upstream.Upstream; the policy, limit counters, audit log,
    # approvals and pins live in the parts, so they carry over to the restarted server) ---------

    def upstream_lost(self, *, restarting: bool) -> None:
        """A command upstream died. Synchronous, called before its session fails the requests in
        flight: those get an error (they may have had effects; never re-sent), while requests that
        arrive from now on wait for the restart, or fail at once when there will be none."""
        self.shared.lost(restarting=restarting)

    async def prepare_restarted(self, client: Any) -> None:
        """Before a restarted server serves anyone: check its tools against the pins (a tool that
        changed while the server was down is withheld before any call can reach it, even from a
        client that never lists tools again), tell it the log level the clients had set, and
        subscribe it to the resources the sessions had subscribed to. Never raises: what fails is
        reported, and unchecked pins fail closed."""
        await self.pin_check.recheck(client)
        await self.front.replay_log_level(client)
        await self.subscriptions.resubscribe(client)

    def upstream_back(self, client: Any) -> None:
        """The restarted server is ready (``prepare_restarted``): waiting requests go to it, and
        the clients hear ``tools/list_changed`` (its tools may differ)."""
        self.shared.back(client)
        self.sessions.upstream_restarted()
        self.relay.notify_all(types.ToolListChangedNotification())

    def upstream_stopping(self) -> None:
        """The proxy stops: requests waiting for a restart get an error now, not at a timeout."""
        self.shared.stopping()

    def upstream_given_up(self) -> None:
        """No more restarts: calls that need the server get a JSON-RPC error (denials still work)."""
        self.shared.given_up()

    # -- the front server --------------------------------------------------------------------------

    def build_server(self) -> tuple[Any, Any]:
        """The front server (an ``mcp`` low-level ``Server`` and its initialization options),
        mirroring what the upstream server offers."""
        up = self.shared.client
        # kept, not read per request: a dead server's client is closed, and a restart keeps the era
        self.shared.modern = up is not None and up.protocol_version in MODERN_PROTOCOL_VERSIONS
        info = up.server_info if up is not None else None
        if self.decisions.server_name is None:
            self.decisions.server_name = info.name if info is not None else None
        return self.front.build(up)
