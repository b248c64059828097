"""The `plr proxy`, `plr approvals` and `plr audit` commands.

Kept apart from ``cli.py`` (and importing the ``mcp`` SDK only inside the commands) so the
rest of the CLI starts fast and works without the ``proxy`` extra. ``register(cli)`` adds the
three commands to the ``plr`` group.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2

__all__ = ["register", "proxy_cmd", "approvals_group", "audit_cmd"]


def _color() -> bool:
    return not os.environ.get("NO_COLOR") and sys.stdout.isatty()


def _style(text: str, fg: str, bold: bool = False) -> str:
    return click.style(text, fg=fg, bold=bold) if _color() else text


def _need_mcp() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        click.echo("plr proxy: the MCP SDK is not installed; install it with: pip install 'plr[proxy]'", err=True)
        sys.exit(EXIT_INPUT)


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise click.BadParameter("expected HOST:PORT, e.g. 127.0.0.1:8765", param_hint="--listen")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        p = int(port)
    except ValueError:
        raise click.BadParameter(f"port `{port}` is not a number", param_hint="--listen") from None
    if not 0 <= p <= 65535:
        raise click.BadParameter(f"port {p} is out of range", param_hint="--listen")
    return host, p


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


# --- plr proxy ------------------------------------------------------------------------------


@click.command(
    "proxy",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--policy",
    "-p",
    "policy",
    required=True,
    type=click.Path(),
    help="A .plr file (or directory), a compiled .json policy, an http(s):// URL, or a Redis key "
    "redis://HOST:PORT/DB#KEY holding policy JSON or .plr text (one policy for a fleet).",
)
@click.option(
    "--audit",
    "audit",
    type=click.Path(dir_okay=False),
    help="Audit log (JSON Lines). Default: ~/.local/state/plr/audit.jsonl.",
)
@click.option("--identity", help="Who the agent acts for (the policy's `identity`).")
@click.option(
    "--server-name", help="The policy's `server` and the audit log's `server` (default: the upstream server's name)."
)
@click.option(
    "--watch",
    is_flag=True,
    help="Reload the policy when it changes: files on save, URLs and Redis keys by polling (--policy-poll) "
    "and Redis pub/sub; a broken or unreachable policy keeps the old one.",
)
@click.option(
    "--policy-poll",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="With --watch: how often a URL or Redis policy is re-read.",
)
@click.option(
    "--state",
    metavar="redis://HOST:PORT/DB",
    envvar="PLR_STATE",
    help="Share limit counters and the approval queue with other replicas in this Redis "
    "(default: in-process counters, SQLite queue). Redis unreachable -> calls needing it are denied "
    "(state_unavailable) until it returns. Env: PLR_STATE.",
)
@click.option(
    "--log-args",
    is_flag=True,
    help="Store call arguments in the audit log (secret-looking keys redacted); default: only a hash.",
)
@click.option(
    "--approval",
    "approval",
    type=click.Choice(["auto", "elicit", "queue", "deny"]),
    default="auto",
    show_default=True,
    help="How to ask a human: MCP elicitation when the client supports it, else the local queue (auto); always elicitation; always the queue; never (deny).",
)
@click.option(
    "--approval-timeout",
    type=click.FloatRange(min=0.1),
    default=120.0,
    show_default=True,
    metavar="SECONDS",
    help="No answer in time -> deny.",
)
@click.option(
    "--approvals-db",
    type=click.Path(dir_okay=False),
    help="The approval queue (SQLite). Default: approvals.sqlite next to the audit log.",
)
@click.option("--listen", metavar="HOST:PORT", help="Serve streamable HTTP here instead of stdio.")
@click.option(
    "--upstream", metavar="URL", help="The upstream server's streamable HTTP URL (instead of a command after --)."
)
@click.option(
    "--upstream-mode",
    type=click.Choice(["legacy", "auto", "2026-07-28"]),
    default="legacy",
    show_default=True,
    help="Protocol era towards the upstream server (auto probes server/discover first).",
)
@click.option(
    "--pin-tools",
    "pin_mode",
    type=click.Choice(["deny", "warn", "off"]),
    default="deny",
    show_default=True,
    help="A tool whose definition (description, schema, annotations) changes after the proxy first saw it: "
    "deny = withhold it from tools/list and deny its calls (code tool_changed); warn = only report it.",
)
@click.option(
    "--pins",
    "pins_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Keep the pinned tool definitions in FILE so they survive restarts (created on first use). "
    "To accept a changed tool, delete its entry and restart.",
)
@click.option(
    "--max-sessions",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    metavar="N",
    help="With --listen and --upstream URL: at most N client sessions hold their own upstream session; "
    "beyond that a new session's requests get a JSON-RPC error until one ends.",
)
@click.option(
    "--max-sessions-per-identity",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="With --max-sessions: at most N of them per identity (with --auth-tokens), so one identity "
    "cannot hold them all; 0: no per-identity share.",
)
@click.option(
    "--auth-tokens",
    type=click.Path(dir_okay=False, exists=True),
    help='HTTP only: JSON {"TOKEN": "identity"}; requests need "Authorization: Bearer TOKEN".',
)
@click.option(
    "--upstream-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="A request the upstream server has not answered after this long gets a JSON-RPC error (the server "
    "is sent a cancellation); progress restarts the clock, a human answering a relayed elicitation stops "
    "it. 0: wait for ever.",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    metavar="N",
    help="A server started after -- that dies is started again (backoff 0.5 s, 1 s, 2 s, ... up to 10 s) at "
    "most N times in a row; the count resets once it stays up 60 s. Calls in flight when it died get an "
    "error, never a silent resend. 0: never restart.",
)
@click.option(
    "--audit-max-bytes",
    type=click.IntRange(min=0),
    default=10 * 1024 * 1024,
    show_default=True,
    help="Rotate the audit log at this size (0: never).",
)
@click.option(
    "--audit-backups", type=click.IntRange(min=1), default=5, show_default=True, help="Rotated audit files to keep."
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def proxy_cmd(
    policy: str,
    audit: str | None,
    identity: str | None,
    server_name: str | None,
    watch: bool,
    policy_poll: float,
    state: str | None,
    log_args: bool,
    approval: str,
    approval_timeout: float,
    approvals_db: str | None,
    listen: str | None,
    upstream: str | None,
    upstream_mode: str,
    pin_mode: str,
    pins_path: str | None,
    max_sessions: int,
    max_sessions_per_identity: int,
    auth_tokens: str | None,
    upstream_timeout: float,
    max_restarts: int,
    audit_max_bytes: int,
    audit_backups: int,
    command: tuple[str, ...],
) -> None:
    """Enforce a policy in front of one MCP server (stdio, or streamable HTTP with --listen).

    Every tools/call is decided before the server sees it: denied calls get a tool error naming
    the rule and reason, hidden tools vanish from tools/list, approval_required asks a human, and
    one audit record per decision is written and flushed before anything is forwarded.

    \b
    Examples:
      plr proxy --policy policy.plr -- npx -y @modelcontextprotocol/server-memory
      plr proxy --policy policy.json --audit audit.jsonl --watch -- python server.py
      plr proxy --policy policy.plr --listen 127.0.0.1:8765 --upstream http://127.0.0.1:9000/mcp

    \b
    In an MCP client's config (e.g. claude_desktop_config.json):
      {"mcpServers": {"memory": {"command": "plr", "args": ["proxy", "--policy",
        "/path/policy.plr", "--", "npx", "-y", "@modelcontextprotocol/server-memory"]}}}
    """
    from .errors import PlrError
    from .proxy.audit import default_audit_path
    from .proxy.reload import load_policy_source, show_source

    cmd = list(command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if bool(cmd) == bool(upstream):
        raise click.UsageError(
            "give the upstream server either as a command after `--` or as --upstream URL (not both)"
        )
    if upstream is not None:
        _check_upstream(upstream)
    host_port = _parse_listen(listen) if listen else None
    if host_port and host_port[0] not in ("127.0.0.1", "localhost", "::1") and not auth_tokens:
        click.echo(
            f"plr proxy: warning: listening on {host_port[0]} without --auth-tokens: anyone who can reach this "
            "port acts with --identity",
            err=True,
        )
    if auth_tokens and not listen:
        raise click.UsageError("--auth-tokens applies to the HTTP front only (use it with --listen)")
    tokens = None
    if auth_tokens:
        from .proxy.http import load_tokens

        try:
            tokens = load_tokens(auth_tokens)
        except (OSError, ValueError) as e:
            click.echo(f"plr proxy: {auth_tokens}: {e}", err=True)
            sys.exit(EXIT_INPUT)
    if state and approvals_db:
        raise click.UsageError("--approvals-db and --state name two different approval queues; give one")
    from .proxy.pins import PinsFileError, ToolPins

    try:
        pins = ToolPins(pin_mode, pins_path)  # type: ignore[arg-type]
    except PinsFileError as e:
        click.echo(f"plr proxy: {e}; not starting (delete it to pin afresh)", err=True)
        sys.exit(EXIT_INPUT)
    shared = _open_state(state, "plr proxy") if state else None
    # fail closed: no policy, no proxy
    try:
        loaded = load_policy_source(policy)
    except PlrError as e:
        click.echo(str(e), err=True)
        click.echo("plr proxy: the policy could not be loaded; not starting", err=True)
        sys.exit(EXIT_INPUT)
    audit_path = Path(audit) if audit else default_audit_path()
    _need_mcp()
    import anyio

    from .proxy.core import ProxyOptions
    from .proxy.serve import UpstreamStartError, serve

    opts = ProxyOptions(
        policy_path=policy,
        identity=identity,
        server_name=server_name,
        audit_path=audit_path,
        log_args=log_args,
        audit_max_bytes=audit_max_bytes,
        audit_backups=audit_backups,
        approval_mode=approval,  # type: ignore[arg-type]
        approval_timeout=approval_timeout,
        approvals_db=Path(approvals_db) if approvals_db else None,
        state=shared,
        watch=watch,
        upstream_timeout=upstream_timeout or None,
        max_restarts=max_restarts,
        tokens=tokens,
        max_sessions=max_sessions,
        max_sessions_per_identity=max_sessions_per_identity,
        pins=pins,
    )
    try:
        audit_path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))  # owner only
    except OSError as e:
        click.echo(f"plr proxy: cannot write the audit log {audit_path}: {e.strerror or e}; not starting", err=True)
        sys.exit(EXIT_INPUT)
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="plr proxy: %(name)s: %(message)s")
    from .proxy.core import TracebackFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(TracebackFilter())  # never a traceback on the client's stderr
    target = " ".join(cmd) if cmd else upstream
    click.echo(
        f"plr proxy: enforcing {show_source(policy)} (sha256 {loaded.sha256[:12]}) in front of {target}; "
        f"audit log {audit_path}",
        err=True,
    )
    if shared is not None:
        if shared.ping():
            click.echo(f"plr proxy: limit counters and approval queue shared in redis at {shared.display}", err=True)
        # else: the state's health monitor has said it is unreachable; calls needing it are denied until it returns
    try:
        anyio.run(
            lambda: serve(
                opts,
                loaded,
                command=cmd or None,
                upstream_url=upstream,
                upstream_mode=upstream_mode,
                listen=host_port,
                policy_poll=policy_poll,
            )
        )
    except UpstreamStartError as e:
        click.echo(f"plr proxy: cannot start the upstream MCP server: {e}", err=True)
        sys.exit(EXIT_FAIL)
    except KeyboardInterrupt:
        sys.exit(130)


def _open_state(url: str, who: str) -> Any:
    """``--state URL`` -> a RedisState (exit 2 with a clear message on a bad URL or no redis-py)."""
    try:
        import redis  # noqa: F401
    except ImportError:
        click.echo(f"{who}: --state needs redis-py; install it with: pip install 'plr[fleet]'", err=True)
        sys.exit(EXIT_INPUT)
    from .state_redis import RedisState

    try:
        # the proxy reports outages once (and recovery); a one-shot command just says it failed
        report = (lambda s: click.echo(s, err=True)) if who == "plr proxy" else None
        return RedisState(url, report=report)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--state") from None


# --- plr approvals ----------------------------------------------------------------------------


class _NoQueue:
    """The default queue before any proxy filed a request: empty, and never created here."""

    def __init__(self, path: Path) -> None:
        self.where = str(path)

    def list(self, *, include_done: bool = False, limit: int = 200) -> list[Any]:
        return []

    def get(self, aid: str) -> None:
        return None

    def answer(self, aid: str, grant: bool, note: str | None = None, who: str | None = None) -> tuple[bool, str]:
        return False, "unknown"


def _queue(ctx: click.Context) -> Any:
    """The queue to read or answer. Only the proxy creates a queue: a path the user named
    (--db, PLR_APPROVALS_DB, or --audit naming a log that does not exist either) with no queue
    is an error, exit 2; the default place with no queue yet is an empty queue."""
    from .proxy.approvals import SqliteApprovalQueue, default_db_path

    if ctx.obj.get("state"):
        return _open_state(ctx.obj["state"], "plr approvals").approval_queue()
    db = ctx.obj.get("db")
    audit = ctx.obj.get("audit")
    path = Path(db) if db else default_db_path(audit)
    try:
        return SqliteApprovalQueue(path, create=False)
    except FileNotFoundError:
        named = bool(db or os.environ.get("PLR_APPROVALS_DB")) or (audit is not None and not Path(audit).exists())
        if named:
            click.echo(
                f"plr approvals: no approval queue at {_shown(str(path))} (check the path; the proxy creates "
                "it when it first needs an approval)",
                err=True,
            )
            sys.exit(EXIT_INPUT)
        return _NoQueue(path)
    except (sqlite3.DatabaseError, OSError) as e:
        _bad_queue(path, e)


def _bad_queue(path: Any, e: Exception) -> NoReturn:
    why = "it is not an SQLite database" if type(e) is sqlite3.DatabaseError else (getattr(e, "strerror", None) or str(e))
    click.echo(f"plr approvals: cannot read the approval queue {_shown(str(path))}: {_shown(why)}", err=True)
    sys.exit(EXIT_INPUT)


def _unreachable(e: Exception) -> NoReturn:
    click.echo(f"plr approvals: the approval queue is unreachable: {e}", err=True)
    sys.exit(EXIT_FAIL)


@click.group("approvals")
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    envvar="PLR_APPROVALS_DB",
    help="The queue file (default: approvals.sqlite next to the audit log). Only the proxy creates it; "
    "a FILE that does not exist is an error.",
)
@click.option("--audit", type=click.Path(dir_okay=False), help="The proxy's audit log; the queue is next to it.")
@click.option(
    "--state",
    metavar="redis://HOST:PORT/DB",
    envvar="PLR_STATE",
    help="The fleet's queue in Redis (the proxies' --state). Env: PLR_STATE.",
)
@click.pass_context
def approvals_group(ctx: click.Context, db: str | None, audit: str | None, state: str | None) -> None:
    """Answer the proxy's approval requests (when the MCP client cannot ask the human itself).

    \b
    Examples:
      plr approvals list
      plr approvals grant 3f9c2a1b
      plr approvals deny 3f9c2a1b --note "not during the release"
      plr approvals --db /var/lib/plr/approvals.sqlite list --all
      plr approvals --state redis://10.0.0.5:6379/0 grant 3f9c2a1b
    """
    from click.core import ParameterSource

    if state and db and ctx.get_parameter_source("db") == ParameterSource.COMMANDLINE:
        raise click.UsageError("--db and --state name two different approval queues; give one")
    ctx.ensure_object(dict)
    ctx.obj["db"] = db
    ctx.obj["audit"] = audit
    ctx.obj["state"] = state


def _set_state(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(dict)
        ctx.obj["state"] = value


# `plr approvals grant ID --state URL` reads as well as `plr approvals --state URL grant ID`
_state_here = click.option(
    "--state",
    metavar="redis://HOST:PORT/DB",
    expose_value=False,
    callback=_set_state,
    help="The fleet's queue in Redis (same as `plr approvals --state`).",
)


def _ago(t: float) -> str:
    import time

    d = max(0.0, time.time() - t)
    return f"{d:.0f}s" if d < 120 else f"{d / 60:.0f}m" if d < 7200 else f"{d / 3600:.0f}h"


@approvals_group.command("list")
@_state_here
@click.option("--all", "show_all", is_flag=True, help="Also answered, expired and used requests (newest first).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def approvals_list(ctx: click.Context, show_all: bool, fmt: str) -> None:
    """Pending approval requests (id, tool, arguments, why, time left)."""
    import time

    from .proxy.approvals import short_args

    from .engine import StateUnavailable

    q = _queue(ctx)
    try:
        items = q.list(include_done=show_all)
    except StateUnavailable as e:
        _unreachable(e)
    except sqlite3.DatabaseError as e:
        _bad_queue(q.where, e)
    if fmt == "json":
        click.echo(json.dumps([a.to_dict() for a in items], ensure_ascii=False))
        return
    if not items:
        click.echo("no pending approval requests" if not show_all else "no approval requests")
        return
    for a in items:
        status = a.effective_status()
        left = max(0, int(a.expires - time.time()))
        state = _style(status, {"pending": "yellow", "granted": "green", "used": "green"}.get(status, "red"))
        extra = f"{left}s left" if status == "pending" else f"{_ago(a.created)} ago"
        # every field the agent or the server chose is escaped: it must not fake a line or hide text
        args = short_args(_shown(a.args)).replace("plr approvals show ID", f"plr approvals show {a.id}")
        click.echo(f"{_style(a.id, 'cyan', True)}  {state}  {_shown(a.tool)}({args})  {extra}")
        who = ", ".join(
            x
            for x in (f"identity {_shown(a.identity)}" if a.identity else "", f"server {_shown(a.server)}" if a.server else "")
            if x
        )
        click.echo(f"    {_shown(a.reason or '')}" + (f"  [{_shown(a.rule)}]" if a.rule else "") + (f"  ({who})" if who else ""))


@approvals_group.command("show")
@_state_here
@click.argument("approval_id")
@click.pass_context
def approvals_show(ctx: click.Context, approval_id: str) -> None:
    """One approval request in full: the whole call (arguments pretty-printed), why, who, status.

    Read this before `grant`: `list` shows only the start of long arguments. Values under
    secret-looking keys are stored and shown as "[REDACTED]"; the call carries the real ones.
    """
    from .engine import StateUnavailable

    q = _queue(ctx)
    try:
        a = q.get(approval_id)
    except StateUnavailable as e:
        _unreachable(e)
    except sqlite3.DatabaseError as e:
        _bad_queue(q.where, e)
    if a is None:
        click.echo(f"plr approvals: no approval request {approval_id}", err=True)
        sys.exit(EXIT_INPUT)
    try:
        args = json.dumps(json.loads(a.args), ensure_ascii=False, indent=2, sort_keys=True)
    except ValueError:  # stored cut (the note of what is missing is at its end) or unprintable
        args = a.args
    fields = [
        ("id", a.id),
        ("status", a.effective_status()),
        ("tool", a.tool),
        ("reason", a.reason or ""),
        ("rule", a.rule or ""),
        ("identity", a.identity or ""),
        ("session", a.session or ""),
        ("server", a.server or ""),
        ("args sha256", a.args_sha256),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<13}{_shown(value)}")
    click.echo("arguments:")
    for line in args.splitlines():
        click.echo(f"  {_shown(line)}")


def _answer(ctx: click.Context, aid: str, grant: bool, note: str | None) -> None:
    from .engine import StateUnavailable

    q = _queue(ctx)
    try:
        done, status = q.answer(aid, grant, note)
    except StateUnavailable as e:
        _unreachable(e)
    except sqlite3.DatabaseError as e:
        _bad_queue(q.where, e)
    if done:
        click.echo(f"{'granted' if grant else 'denied'} {aid}")
        return
    if status == "unknown":
        click.echo(f"plr approvals: no approval request {aid}", err=True)
        sys.exit(EXIT_INPUT)
    click.echo(f"plr approvals: {aid} is not pending (it is {status})", err=True)
    sys.exit(EXIT_FAIL)


@approvals_group.command("grant")
@_state_here
@click.argument("approval_id")
@click.option("--note", help="Why (kept in the queue).")
@click.pass_context
def approvals_grant(ctx: click.Context, approval_id: str, note: str | None) -> None:
    """Approve one pending call (exactly that call: same tool and arguments)."""
    _answer(ctx, approval_id, True, note)


@approvals_group.command("deny")
@_state_here
@click.argument("approval_id")
@click.option("--note", help="Why (kept in the queue).")
@click.pass_context
def approvals_deny(ctx: click.Context, approval_id: str, note: str | None) -> None:
    """Refuse one pending call."""
    _answer(ctx, approval_id, False, note)


# --- plr audit --------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    """A field for the terminal: control, format (bidi), line-separator characters and lone
    surrogates (which no terminal encoding can carry) escaped."""
    import unicodedata

    text = value if isinstance(value, str) else str(value)
    return "".join(
        c if c == " " or unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") else f"\\u{ord(c):04x}"
        for c in text
    )


def _json_line(rec: Any) -> str:
    """One JSON line: U+2028/U+2029 and lone surrogates written as escapes (the same JSON value)."""
    import re

    text = json.dumps(rec, ensure_ascii=False)
    return re.sub("[\u2028\u2029\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)


@click.command("audit")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--tool", "tools", multiple=True, help="Only these tools (repeatable).")
@click.option(
    "--effect",
    "effects",
    multiple=True,
    type=click.Choice(["allow", "deny", "approval_required"]),
    help="Only these effects (repeatable).",
)
@click.option("--code", "codes", multiple=True, help="Only these codes, e.g. rate_limited (repeatable).")
@click.option("--session", help="Only this session.")
@click.option("--identity", help="Only this identity.")
@click.option("--since", help="Only records newer than this: 90s, 15m, 1h, 2d or an ISO time.")
@click.option(
    "--rotated/--no-rotated", default=True, show_default=True, help="Also read rotated files (FILE.1, FILE.2, ...)."
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def audit_cmd(
    file: str | None,
    tools: tuple[str, ...],
    effects: tuple[str, ...],
    codes: tuple[str, ...],
    session: str | None,
    identity: str | None,
    since: str | None,
    rotated: bool,
    fmt: str,
) -> None:
    """Read and filter the proxy's audit log (a torn last line is skipped, never fatal).

    \b
    Examples:
      plr audit audit.jsonl --effect deny --since 1h
      plr audit audit.jsonl --tool cancel-task --format json | jq .reason
    """
    from .proxy.audit import default_audit_path, parse_since, read_records, record_time, rotated_paths

    path = Path(file) if file else default_audit_path()
    if not path.exists():
        click.echo(f"plr audit: {_shown(str(path))}: no such file", err=True)
        sys.exit(EXIT_INPUT)
    cutoff = None
    if since:
        try:
            cutoff = parse_since(since)
        except ValueError as e:
            why = str(e) if "before the year" in str(e) else "expected 90s, 15m, 1h, 2d or an ISO timestamp"
            raise click.BadParameter(_shown(why), param_hint="--since") from None
    paths = rotated_paths(path) if rotated else [path]
    errors: list[str] = []
    n = 0
    for rec in read_records(paths, errors):
        if tools and rec.get("tool") not in tools:
            continue
        if effects and rec.get("effect") not in effects:
            continue
        if codes and rec.get("code") not in codes:
            continue
        if session is not None and rec.get("session") != session:
            continue
        if identity is not None and rec.get("identity") != identity:
            continue
        if cutoff is not None:
            t = record_time(rec)
            if t is None or t < cutoff:
                continue
        n += 1
        if fmt == "json":
            # U+2028/U+2029 end a line for many readers, a lone surrogate (another writer's "\\ud800")
            # cannot be written as UTF-8: both are escaped, which keeps the JSON value the same
            click.echo(_json_line(rec))
            continue
        # every field is shown escaped: a tool name the agent chose must not fake a line or a colour
        eff = _shown(rec.get("effect"))
        colour = {"allow": "green", "deny": "red"}.get(eff, "yellow")
        rule = f" {_shown(rec['rule'])}" if rec.get("rule") else ""
        click.echo(
            f"{_shown(rec.get('ts', '?'))}  {_style(f'{eff:<17}', colour)} {_shown(rec.get('tool'))}  "
            f"({_shown(rec.get('code'))}){rule}: {_shown(rec.get('reason', ''))}"
        )
    for e in errors:
        click.echo(f"plr audit: {_shown(e)}", err=True)
    if fmt == "text" and sys.stdout.isatty():
        click.echo(f"{n} record(s)", err=True)


def register(cli: click.Group) -> None:
    """Add `proxy`, `approvals` and `audit` to the `plr` command group."""
    cli.add_command(proxy_cmd, "proxy")
    cli.add_command(approvals_group, "approvals")
    cli.add_command(audit_cmd, "audit")
