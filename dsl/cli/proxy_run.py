"""Starting `plr proxy`: its flags (a ``ProxyCommandOptions``) are checked in a fixed order,
cheapest and likeliest mistake first, so a typo is reported before anything is opened or
started; then the proxy core's ``ProxyOptions`` is built and the proxy runs.

The ``mcp`` SDK is imported only once every check has passed: the rest of the CLI starts fast
and works without it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .approvals import open_state
from .listen_flags import load_tokens, parse_allow_host, parse_listen
from .output import EXIT_FAIL, EXIT_INPUT


@dataclass(frozen=True)
class ProxyCommandOptions:
    """`plr proxy`'s flags as click parses them (one field per option, same name); see the
    options of ``proxy.proxy_cmd`` for what each means. A flag added there needs its field here."""

    policy: str
    audit: str | None
    identity: str | None
    server_name: str | None
    watch: bool
    policy_poll: float
    state: str | None
    log_args: bool
    approval: str
    approval_timeout: float
    max_pending_approvals: int
    approvals_db: str | None
    listen: str | None
    upstream: str | None
    upstream_mode: str
    pin_mode: str
    strict_tools: bool
    pins_path: str | None
    max_sessions: int
    max_sessions_per_identity: int
    auth_tokens: str | None
    allow_host: tuple[str, ...]
    insecure_no_auth: bool
    read_timeout: float
    max_connections: int
    session_idle_timeout: float
    upstream_timeout: float
    start_timeout: float
    max_restarts: int
    audit_max_bytes: int
    audit_backups: int
    notify: tuple[str, ...]
    notify_command: str | None
    console_url: str | None
    metrics: str | None
    command: tuple[str, ...]

    def server_command(self) -> list[str]:
        """The upstream command after `--` (click may pass the `--` itself on)."""
        cmd = list(self.command)
        return cmd[1:] if cmd and cmd[0] == "--" else cmd


def _need_mcp() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        click.echo("plr proxy: the MCP SDK is not installed (it comes with plr): reinstall it with: pip install --force-reinstall plr", err=True)
        sys.exit(EXIT_INPUT)


def _check_upstream(url: str) -> None:
    """--upstream must be an http(s) URL with a host (and a valid port): checked before starting."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError as e:
        raise click.BadParameter(f"`{url}` is not a valid URL: {e}", param_hint="--upstream") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"`{url}` is not an http(s) URL; expected e.g. http://127.0.0.1:9000/mcp", param_hint="--upstream"
        )


def run_proxy(o: ProxyCommandOptions) -> None:
    """Check every flag, then start the proxy and run it until its front closes.

    Fails closed: no policy, no audit log, no proxy. Usage mistakes exit 2 before anything is
    opened; a server that cannot be started exits 1."""
    from ..proxy.audit import default_audit_path

    cmd = o.server_command()
    host_port = _check_front_and_upstream(o, cmd)
    front = _http_front(o, host_port)
    tokens = load_tokens(o.auth_tokens, "plr proxy") if o.auth_tokens else None
    fleet = _is_redis(o.state)
    if fleet and o.approvals_db:
        raise click.UsageError("--approvals-db and --state name two different approval queues; give one")
    pins = _load_pins(o)
    shared = open_state(o.state, "plr proxy") if fleet and o.state else None
    loaded = _load_policy(o.policy)  # fail closed: no policy, no proxy
    audit_path = Path(o.audit) if o.audit else default_audit_path()
    _need_mcp()
    opts = _proxy_options(o, audit_path=audit_path, shared=shared, tokens=tokens, pins=pins)
    _create_audit_log(audit_path)
    counters = None if fleet else _open_limit_store(o, loaded, opts)
    front = _notify_and_metrics(o, opts, loaded, front)
    _log_without_tracebacks()
    _announce(o, cmd, loaded, audit_path, shared)
    if counters is not None:
        click.echo(f"plr proxy: limit counters: {counters}", err=True)
    _serve(o, opts, loaded, cmd, host_port, front)


def _is_redis(state: str | None) -> bool:
    """Whether ``--state`` names a fleet's Redis (counters and approval queue shared there) rather
    than a local limit store (``memory``, ``sqlite``, ``sqlite:PATH``)."""
    return bool(state) and str(state).split(":", 1)[0].lower() in ("redis", "rediss", "unix")


def _has_limits(policy: Any) -> bool:
    return bool(policy.all_tools.limits) or any(t.limits for t in policy.tools.values())


def _open_limit_store(o: ProxyCommandOptions, loaded: Any, opts: Any) -> str | None:
    """The limit counters of a proxy without a fleet's Redis: ``--state memory|sqlite|sqlite:PATH``,
    by default the SQLite file of this machine when the policy has a limit (or may gain one: --watch),
    so a `per day` limit does not restart from zero with the client. Sets ``opts.limit_store``;
    returns where the counters live (None: the policy has no limit and none was asked for)."""
    from ..state import StateUnavailable, limit_store_spec, open_limit_store
    from ..vocab import terminal_text

    spec = limit_store_spec(o.state, has_limits=_has_limits(loaded.policy) or o.watch)
    if spec == "memory" and not o.state:
        return None
    try:
        opts.limit_store, where = open_limit_store(spec, policy_source=o.policy)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--state") from None
    except StateUnavailable as e:
        click.echo(terminal_text(f"plr proxy: cannot open the limit counters: {e}; not starting (--state memory keeps them in this process)"), err=True)
        sys.exit(EXIT_INPUT)
    return terminal_text(where)


def _check_front_and_upstream(o: ProxyCommandOptions, cmd: list[str]) -> tuple[str, int] | None:
    """Exactly one upstream (a command or --upstream URL), a valid --listen, the HTTP-only flags
    only with --listen, and no unauthenticated listener beyond loopback unless the operator says
    so: the HOST:PORT to listen on, or None for stdio."""
    if bool(cmd) == bool(o.upstream):
        raise click.UsageError(
            "give the upstream server either as a command after `--` or as --upstream URL (not both)"
        )
    if o.upstream is not None:
        _check_upstream(o.upstream)
    http_only = {"--auth-tokens": o.auth_tokens, "--allow-host": o.allow_host, "--insecure-no-auth": o.insecure_no_auth}
    for flag, given in http_only.items():
        if given and not o.listen:
            raise click.UsageError(f"{flag} applies to the HTTP front only (use it with --listen)")
    if o.insecure_no_auth and o.auth_tokens:
        raise click.UsageError("--insecure-no-auth and --auth-tokens contradict each other: give one")
    for value in o.allow_host:
        parse_allow_host(value)
    host_port = parse_listen(o.listen) if o.listen else None
    if host_port and not o.auth_tokens:
        _check_unauthenticated_listener(host_port[0], o.insecure_no_auth)
    return host_port


def _check_unauthenticated_listener(host: str, insecure: bool) -> None:
    """Without --auth-tokens only loopback is served (any spelling: LOCALHOST, 127.0.0.2, ::1),
    unless --insecure-no-auth says the operator means it: then one warning line."""
    from ..proxy.http import is_loopback_listener
    from ..vocab import terminal_text

    if is_loopback_listener(host):
        return
    if not insecure:
        click.echo(
            terminal_text(
                f"plr proxy: refusing to listen on {host} without --auth-tokens: anyone who can reach it would "
                "call tools as --identity; give --auth-tokens FILE, listen on 127.0.0.1, or pass --insecure-no-auth"
            ),
            err=True,
        )
        sys.exit(EXIT_INPUT)
    click.echo(
        terminal_text(
            f"plr proxy: warning: listening on {host} without --auth-tokens (--insecure-no-auth): anyone who can "
            "reach this port acts as --identity"
        ),
        err=True,
    )


def _http_front(o: ProxyCommandOptions, host_port: tuple[str, int] | None) -> Any:
    """The HTTP front's guards. Host/Origin checks (DNS rebinding): always without tokens. With
    tokens the token is what a rebinding page lacks, so the check is defence in depth, kept where
    it costs nothing: on a loopback listener (whose names are known) and whenever --allow-host
    names the accepted hosts; a public listener with tokens is otherwise reached by any name (a
    reverse proxy's, a DNS name, an address), so there it is off."""
    if host_port is None:
        return None
    from ..proxy.http import HttpFront, is_loopback_listener

    _ensure_open_files(o.max_connections)
    allow = tuple(dict.fromkeys(parse_allow_host(v) for v in o.allow_host))
    return HttpFront(
        check_hosts=not o.auth_tokens or bool(allow) or is_loopback_listener(host_port[0]),
        allow_hosts=allow,
        read_timeout=o.read_timeout,
        max_connections=o.max_connections,
        session_idle_timeout=o.session_idle_timeout,
    )


_SPARE_FILES = 256  # besides client connections: the server, upstream sessions, logs, the queue


def _ensure_open_files(max_connections: int) -> None:
    """--max-connections is a real cap only below the open-files limit (past it the listener
    cannot accept anyone): raise the soft limit as far as needed, or refuse in one line."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    need = max_connections + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError):
        pass
    if soft < need:
        click.echo(
            f"plr proxy: --max-connections {max_connections} needs {need} open files, but this process may open "
            f"only {soft} (ulimit -n); lower --max-connections or raise the limit",
            err=True,
        )
        sys.exit(EXIT_INPUT)


def _load_pins(o: ProxyCommandOptions) -> Any:
    """The tool pins; a pins file that cannot be trusted stops the start (exit 2)."""
    from ..proxy.pins import PinsFileError, ToolPins

    try:
        return ToolPins(o.pin_mode, o.pins_path)  # type: ignore[arg-type]
    except PinsFileError as e:
        click.echo(f"plr proxy: {e}; not starting (delete it to pin afresh)", err=True)
        sys.exit(EXIT_INPUT)


def _load_policy(policy: str) -> Any:
    from ..errors import PlrError
    from ..proxy.reload import load_policy_source

    try:
        return load_policy_source(policy)
    except PlrError as e:
        click.echo(str(e), err=True)
        click.echo("plr proxy: the policy could not be loaded; not starting", err=True)
        sys.exit(EXIT_INPUT)


def _proxy_options(o: ProxyCommandOptions, *, audit_path: Path, shared: Any, tokens: Any, pins: Any) -> Any:
    """The proxy core's ``ProxyOptions``: the flags, plus what the checks opened and loaded."""
    from ..proxy.core import ProxyOptions

    return ProxyOptions(
        policy_path=o.policy,
        identity=o.identity,
        server_name=o.server_name,
        audit_path=audit_path,
        log_args=o.log_args,
        audit_max_bytes=o.audit_max_bytes,
        audit_backups=o.audit_backups,
        approval_mode=o.approval,  # type: ignore[arg-type]
        approval_timeout=o.approval_timeout,
        max_pending_approvals=o.max_pending_approvals,
        approvals_db=Path(o.approvals_db) if o.approvals_db else None,
        state=shared,
        watch=o.watch,
        upstream_timeout=o.upstream_timeout or None,
        start_timeout=o.start_timeout or None,
        max_restarts=o.max_restarts,
        tokens=tokens,
        max_sessions=o.max_sessions,
        max_sessions_per_identity=o.max_sessions_per_identity,
        pins=pins,
        strict_tools=o.strict_tools,
    )


def _notify_and_metrics(o: ProxyCommandOptions, opts: Any, loaded: Any, front: Any) -> Any:
    """--notify/--notify-command/--console-url -> ``opts.notifier``; --metrics -> ``opts.metrics``,
    served from a thread at once, and the HTTP front (returned) serving it at /metrics too. Bad
    values exit 2."""
    from ..proxy.notify import Notifier, check_notify_url

    for url in (*o.notify, *((o.console_url,) if o.console_url else ())):
        try:
            check_notify_url(url)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--console-url" if url == o.console_url else "--notify") from None
    if o.notify or o.notify_command:
        if o.approval not in ("queue", "auto"):
            raise click.UsageError("--notify and --notify-command tell of calls waiting in the approval queue: use them with --approval queue or auto")
        opts.notifier = Notifier(o.notify, o.notify_command, console_url=o.console_url, report=opts.stderr)
    elif o.console_url:
        raise click.UsageError("--console-url is the link in notifications: give it with --notify or --notify-command")
    if not o.metrics:
        return front
    from ..proxy.metrics import MetricsMissing, ProxyMetrics, need_prometheus

    try:
        need_prometheus()
    except MetricsMissing as e:
        click.echo(f"plr proxy: {e}", err=True)
        sys.exit(EXIT_INPUT)
    try:
        host, port = parse_listen(o.metrics)
    except click.BadParameter as e:
        raise click.BadParameter(e.message, param_hint="--metrics") from None
    from ..state import open_queue
    from ..state.sqlite import queue_db_path

    def pending() -> int:
        if o.approval not in ("queue", "auto"):
            return 0
        return len(open_queue(opts.state, queue_db_path(opts.approvals_db, opts.audit_path)).list())

    metrics = ProxyMetrics(opts.audit_path, policy_sha256=loaded.sha256, pending=pending)
    metrics.serve(host, port)
    opts.metrics = metrics
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"plr proxy: metrics at http://{shown}:{port}/metrics", err=True)
    if front is None:
        return None
    import dataclasses

    return dataclasses.replace(front, metrics=metrics)


def _create_audit_log(audit_path: Path) -> None:
    """The audit log exists and is writable (owner only) before any call is decided."""
    try:
        audit_path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))  # owner only
    except OSError as e:
        click.echo(f"plr proxy: cannot write the audit log {audit_path}: {e.strerror or e}; not starting", err=True)
        sys.exit(EXIT_INPUT)


def _log_without_tracebacks() -> None:
    """Warnings to stderr, one line each: the client shows the proxy's stderr to its user."""
    import logging

    from ..proxy.core import TracebackFilter

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="plr proxy: %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(TracebackFilter())  # never a traceback on the client's stderr


def _announce(o: ProxyCommandOptions, cmd: list[str], loaded: Any, audit_path: Path, shared: Any) -> None:
    """What the proxy enforces, where it logs, and where a human answers its approval requests:
    the queue's place and the `plr approvals` options that reach it (an operator's defaults, its
    environment or another --audit, may name another queue)."""
    from ..proxy.reload import show_source
    from ..state import queue_location
    from ..vocab import terminal_text

    target = " ".join(cmd) if cmd else o.upstream
    click.echo(
        terminal_text(
            f"plr proxy: enforcing {show_source(o.policy)} (sha256 {loaded.sha256[:12]}) in front of {target}; "
            f"audit log {audit_path}"
        ),
        err=True,
    )
    for w in loaded.warnings:  # a desktop-client user sees only this stderr: never drop a warning
        click.echo(terminal_text(f"plr proxy: policy warning: {w.location()}: {w.message}"), err=True)
    if shared is not None:
        _watch_eviction(shared)
    if o.approval in ("queue", "auto"):
        where, hint = queue_location(shared, o.approvals_db, audit_path)
        place = f"in {where}" if shared is not None else where
        click.echo(terminal_text(f"plr proxy: approvals queue {place} (plr approvals{hint} list)"), err=True)


def _watch_eviction(shared: Any) -> None:
    """A fleet's Redis that may evict plr's keys makes limits fail open (an evicted counter starts
    from zero), and one that will not say (an ACL without INFO) may: refuse to start (exit 2)
    unless the operator accepted it (``?allow_eviction=1`` in --state: then a warning), and keep
    looking while running (``EvictionWatch``: a later ``CONFIG SET`` denies the calls that need
    Redis until it is undone, or warns if accepted). A Redis that does not answer at start is
    looked at as soon as it does; until then the calls that need it are denied."""
    from ..vocab import terminal_text

    watch = shared.eviction_watch()
    if shared.ping():
        click.echo(terminal_text(f"plr proxy: limit counters shared in redis at {shared.display}"), err=True)
        if (risk := watch.look(quiet=True)) is not None:
            if not shared.allow_eviction:
                click.echo(
                    terminal_text(
                        f"plr proxy: {risk}; not starting (to accept the risk: --state {shared.allow_eviction_hint()})"
                    ),
                    err=True,
                )
                shared.close()
                sys.exit(EXIT_INPUT)
            click.echo(terminal_text(f"plr proxy: warning: {risk}; accepted (allow_eviction=1 in --state): calls go on"), err=True)
        elif not watch.read:  # it answered PING, then not INFO (gone meanwhile): as if unreachable
            click.echo(
                terminal_text(
                    f"plr proxy: redis at {shared.display} did not answer whether it evicts keys; denying every call "
                    "that needs it (state_unavailable) until it does"
                ),
                err=True,
            )
    # else: the state's health monitor has said it is unreachable. Either way the watch refuses
    # every command until Redis has answered what it evicts, and looks at once and often until then
    watch.start()


def _serve(
    o: ProxyCommandOptions, opts: Any, loaded: Any, cmd: list[str], host_port: tuple[str, int] | None, front: Any
) -> None:
    import anyio

    from ..proxy.serve import UpstreamStartError, serve
    from ..proxy.tool_check import StrictToolsError
    from ..vocab import terminal_text

    try:
        anyio.run(
            lambda: serve(
                opts,
                loaded,
                command=cmd or None,
                upstream_url=o.upstream,
                upstream_mode=o.upstream_mode,
                listen=host_port,
                policy_poll=o.policy_poll,
                http_front=front,
            )
        )
    except UpstreamStartError as e:
        click.echo(f"plr proxy: cannot start the upstream MCP server: {e}", err=True)
        sys.exit(EXIT_FAIL)
    except StrictToolsError as e:
        click.echo(terminal_text(f"plr proxy: {e}; not starting"), err=True)
        sys.exit(EXIT_INPUT)
    except KeyboardInterrupt:
        sys.exit(130)
