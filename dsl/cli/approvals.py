"""`plr approvals list / show / grant / deny`: a human answers the proxy's approval queue
(SQLite next to the audit log, or a fleet's Redis with --state).

Only the proxy creates a queue; these commands read and answer one, never make one. No queue at
the place they look (a wrong path, or a proxy that never asked for an approval there) is an
error, exit 2, whichever subcommand: a script can tell it from an empty queue (`list` exit 0).
Every field the agent or the server chose is escaped before it is shown.

Which queue: the options --db, --audit and --state are taken before the subcommand or after it
(`plr approvals --db F list` == `plr approvals list --db F`); `list` says on stderr which queue
it read, and the proxy names its own when it starts, so the two can be matched.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from .output import EXIT_FAIL, EXIT_INPUT, shown, style


def open_state(url: str, who: str) -> Any:
    """``--state URL`` -> a RedisState (exit 2 with a clear message on a bad URL or no redis-py).

    Shared by `plr proxy` and `plr approvals`, which name the same fleet state."""
    try:
        import redis  # noqa: F401
    except ImportError:
        from ..extras import install_hint

        click.echo(f"{who}: --state needs redis-py; install it with: {install_hint('fleet')}", err=True)
        sys.exit(EXIT_INPUT)
    from ..state.redis import RedisState

    try:
        # the proxy reports outages once (and recovery); a one-shot command just says it failed
        report = (lambda s: click.echo(s, err=True)) if who == "plr proxy" else None
        return RedisState(url, report=report)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--state") from None


def _options(ctx: click.Context) -> dict[str, Any]:
    """The queue options given so far: the group's (from the command line or the environment)
    and the subcommand's (command line), each as (value, from the command line?)."""
    obj = ctx.ensure_object(dict)
    opts: dict[str, Any] = obj.setdefault("queue_options", {})
    return opts


def _given(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """A subcommand's --db/--audit/--state: the same as the group's; one named twice with two
    different values is a usage error (which queue would a grant answer?)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is None:
            return
        opts = _options(ctx)
        before = opts.get(name)
        if before is not None and before[1] and before[0] != value:
            raise click.UsageError(f"--{name} is given twice ({before[0]} and {value}); give it once")
        opts[name] = (value, True)

    return remember


def _chosen(ctx: click.Context) -> tuple[str | None, str | None, str | None]:
    """(db, audit, state) as given, wherever they were given; --db and --state both given on the
    command line name two different queues (from the environment, --state wins as it did)."""
    opts = _options(ctx)
    db, db_cli = opts.get("db") or (None, False)
    state, state_cli = opts.get("state") or (None, False)
    audit, _ = opts.get("audit") or (None, False)
    if db_cli and audit and Path(db) != Path(audit).parent / "approvals.sqlite":
        raise click.UsageError("--db and --audit name two different approval queues; give one")
    if db and state:
        if db_cli and state_cli:
            raise click.UsageError("--db and --state name two different approval queues; give one")
        if db_cli:  # --db on the command line beats PLR_STATE from the environment
            state = None
        else:
            db = None
    return db, audit, state


def _queue(ctx: click.Context) -> Any:
    """The queue to read or answer. Only the proxy creates a queue, so no queue where we look is
    an error (exit 2), never an empty queue: `list` exiting 0 must mean "a queue, and this is
    what it holds", or a script reading the wrong place would believe nothing is pending."""
    import sqlite3

    from ..state.sqlite import SqliteApprovalQueue, default_db_path

    db, audit, state = _chosen(ctx)
    if state:
        return open_state(state, "plr approvals").approval_queue()
    path = Path(db) if db else default_db_path(audit)
    try:
        return SqliteApprovalQueue(path, create=False)
    except FileNotFoundError:
        _no_queue(path, _how_found(ctx, db, audit))
    except (sqlite3.DatabaseError, OSError) as e:
        _bad_queue(path, e)


def _how_found(ctx: click.Context, db: str | None, audit: str | None) -> str:
    """Which option chose the queue's path, for the message that says no queue is there."""
    if db:
        return "named by --db" if _options(ctx).get("db", (None, False))[1] else "named by PLR_APPROVALS_DB"
    return "next to the --audit log" if audit else "the default place"


def _no_queue(path: Path, how: str) -> NoReturn:
    """No queue at ``path``: say where we looked, why a queue may be missing, and how to point at
    the right one; exit 2 (nothing is created: only the proxy makes a queue)."""
    click.echo(
        f"plr approvals: no approval queue at {shown(str(path))} ({how}). A proxy creates its queue at its "
        "first approval request and names it when it starts (`plr proxy: approvals queue FILE`); check the "
        "path, or point at that queue with --db FILE (env PLR_APPROVALS_DB), --audit FILE (the queue next to "
        "a proxy's audit log) or --state redis://HOST:PORT/DB.",
        err=True,
    )
    sys.exit(EXIT_INPUT)


def _place(q: Any) -> str:
    """Where ``q`` is, for a message: ``at FILE`` or ``in redis at URL``."""
    where = shown(q.where)
    return f"in redis at {where}" if where.startswith(("redis://", "rediss://", "unix://")) else f"at {where}"


def _say_which(q: Any) -> None:
    """Which queue was read, on stderr (stdout stays the listing): an operator whose proxy runs
    with another --audit, --approvals-db or --state sees that this is not its queue."""
    click.echo(f"plr approvals: queue {_place(q)}", err=True)


def _bad_queue(path: Any, e: Exception) -> NoReturn:
    import sqlite3

    why = "it is not an SQLite database" if type(e) is sqlite3.DatabaseError else (getattr(e, "strerror", None) or str(e))
    click.echo(f"plr approvals: cannot read the approval queue {shown(str(path))}: {shown(why)}", err=True)
    sys.exit(EXIT_INPUT)


@contextmanager
def _answering(q: Any) -> Iterator[None]:
    """Around a read or answer of ``q``: an unreachable fleet queue exits 1 (try again), a file
    that is not a queue exits 2 (fix the path)."""
    import sqlite3

    from ..engine import StateUnavailable

    try:
        yield
    except StateUnavailable as e:
        click.echo(f"plr approvals: the approval queue is unreachable: {e}", err=True)
        sys.exit(EXIT_FAIL)
    except sqlite3.DatabaseError as e:
        _bad_queue(q.where, e)


_DB_HELP = (
    "The queue file: the --approvals-db a proxy was given, else approvals.sqlite next to its audit log "
    "(`plr proxy` names its queue when it starts). Only the proxy creates it; no queue at FILE is an error "
    "(exit 2). Env: PLR_APPROVALS_DB."
)
_AUDIT_HELP = "The proxy's audit log (its --audit); the queue is approvals.sqlite next to it."
_STATE_HELP = "The fleet's queue in Redis (the proxies' --state). Env: PLR_STATE."


@click.group("approvals")
@click.option("--db", type=click.Path(dir_okay=False), envvar="PLR_APPROVALS_DB", help=_DB_HELP)
@click.option("--audit", type=click.Path(dir_okay=False), help=_AUDIT_HELP)
@click.option("--state", metavar="redis://HOST:PORT/DB", envvar="PLR_STATE", help=_STATE_HELP)
@click.pass_context
def approvals_group(ctx: click.Context, db: str | None, audit: str | None, state: str | None) -> None:
    """Answer the proxy's approval requests (when the MCP client cannot ask the human itself).

    Which queue: the one `plr proxy` names when it starts (`plr proxy: approvals queue FILE
    (plr approvals --db FILE list)`). Without options: PLR_APPROVALS_DB, else approvals.sqlite
    next to the default audit log (~/.local/state/plr); a proxy started with --audit,
    --approvals-db or --state keeps its queue elsewhere. `list` says on stderr which queue it
    read. No queue where it looks (a wrong path, or no proxy has asked for an approval there) is
    an error, exit 2, never an empty list. --db, --audit and --state go before or after the
    subcommand.

    \b
    Examples:
      plr approvals list
      plr approvals show 3f9c2a1b                # the whole call, and who answered it
      plr approvals grant 3f9c2a1b
      plr approvals deny 3f9c2a1b --note "not during the release"
      plr approvals list --db /var/lib/plr/approvals.sqlite --all
      plr approvals --audit /var/log/plr/audit.jsonl list
      plr approvals grant 3f9c2a1b --state redis://10.0.0.5:6379/0
    """
    from click.core import ParameterSource

    opts = _options(ctx)
    for name, value in (("db", db), ("audit", audit), ("state", state)):
        if value is not None:
            opts[name] = (value, ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE)


def _queue_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--db, --audit and --state on a subcommand, as on the group: `plr approvals list --db F`
    reads as well as `plr approvals --db F list`."""
    for name, kw in (
        ("state", {"metavar": "redis://HOST:PORT/DB", "help": "The fleet's queue in Redis (the proxies' --state)."}),
        ("audit", {"type": click.Path(dir_okay=False), "help": _AUDIT_HELP}),
        ("db", {"type": click.Path(dir_okay=False), "help": _DB_HELP}),
    ):
        f = click.option(f"--{name}", expose_value=False, callback=_given(name), **kw)(f)  # type: ignore[arg-type]
    return f


def _span(d: float) -> str:
    return f"{d:.0f}s" if d < 120 else f"{d / 60:.0f}m" if d < 7200 else f"{d / 3600:.0f}h"


def _ago(t: float) -> str:
    import time

    return _span(max(0.0, time.time() - t))


def _when(t: float | None) -> str:
    """A time for `show`: UTC to the second, and how long ago (or from now) that is."""
    import datetime as dt
    import time

    if t is None:
        return ""
    try:
        stamp = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(t)
    d = t - time.time()
    return f"{stamp} (in {_span(d)})" if d > 0 else f"{stamp} ({_span(-d)} ago)"


def _format_option(json_help: str) -> Any:
    """`--format text|json` of the commands that print requests."""
    return click.option(
        "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help=json_help
    )


@approvals_group.command("list")
@_queue_options
@click.option("--all", "show_all", is_flag=True, help="Also answered, expired and used requests (newest first).")
@_format_option("json: one JSON array on stdout (every field, `decided_by`, `decided_at` and `note` included).")
@click.pass_context
def approvals_list(ctx: click.Context, show_all: bool, fmt: str) -> None:
    """Pending approval requests (id, tool, arguments, why, time left).

    Which queue was read goes to stderr (`plr approvals: queue at FILE`), so a queue other than
    your proxy's (it names its own when it starts) shows; stdout is only the listing. Exit 0: a
    queue was read (an empty one too); exit 2: there is no queue there (nothing is printed on
    stdout, not even `[]`).
    """
    import time

    from ..proxy.approvals import short_args

    q = _queue(ctx)
    with _answering(q):
        items = q.list(include_done=show_all)
    _say_which(q)
    if fmt == "json":
        click.echo(json.dumps([a.to_dict() for a in items], ensure_ascii=False))
        return
    if not items:
        click.echo("no pending approval requests" if not show_all else "no approval requests")
        return
    for a in items:
        status = a.effective_status()
        left = max(0, int(a.expires - time.time()))
        state = style(status, {"pending": "yellow", "granted": "green", "used": "green"}.get(status, "red"))
        extra = f"{left}s left" if status == "pending" else f"{_ago(a.created)} ago"
        if a.decided_by and status != "pending":
            extra += f", {status if status != 'used' else 'granted'} by {shown(a.decided_by)}"
        # every field the agent or the server chose is escaped: it must not fake a line or hide text
        args = short_args(shown(a.args)).replace("plr approvals show ID", f"plr approvals show {a.id}")
        click.echo(f"{style(a.id, 'cyan', True)}  {state}  {shown(a.tool)}({args})  {extra}")
        who = ", ".join(
            x
            for x in (f"identity {shown(a.identity)}" if a.identity else "", f"server {shown(a.server)}" if a.server else "")
            if x
        )
        click.echo(f"    {shown(a.reason or '')}" + (f"  [{shown(a.rule)}]" if a.rule else "") + (f"  ({who})" if who else ""))


def _no_request(q: Any, aid: str) -> NoReturn:
    click.echo(f"plr approvals: no approval request {shown(aid)} in the queue {_place(q)}", err=True)
    sys.exit(EXIT_INPUT)


@approvals_group.command("show")
@_queue_options
@click.argument("approval_id")
@_format_option("json: the request as one JSON object (the fields of `list --format json`).")
@click.pass_context
def approvals_show(ctx: click.Context, approval_id: str, fmt: str) -> None:
    """One approval request in full: the whole call (arguments pretty-printed), why, whose call,
    its status, and who answered it, when, with what note.

    Read this before `grant`: `list` shows only the start of long arguments. The arguments are
    exactly the values that run on a grant, secret-looking keys included (the queue is readable
    by its owner only; the audit log is where they are redacted).

    \b
    Examples:
      plr approvals show 3f9c2a1b
      plr approvals show 3f9c2a1b --format json | jq .decided_by
    """
    q = _queue(ctx)
    with _answering(q):
        a = q.get(approval_id)
    if a is None:
        _no_request(q, approval_id)
    if fmt == "json":
        click.echo(json.dumps(a.to_dict(), ensure_ascii=False))
        return
    try:
        args = json.dumps(json.loads(a.args), ensure_ascii=False, indent=2, sort_keys=True)
    except ValueError:  # stored cut (the note of what is missing is at its end) or unprintable
        args = a.args
    status = a.effective_status()
    answered = a.decided_at is not None and status not in ("pending", "expired", "cancelled")
    fields = [
        ("id", a.id),
        ("status", status),
        ("tool", a.tool),
        ("reason", a.reason or ""),
        ("rule", a.rule or ""),
        ("identity", a.identity or ""),
        ("session", a.session or ""),
        ("server", a.server or ""),
        ("args sha256", a.args_sha256),
        ("created", _when(a.created)),
        ("expires", _when(a.expires)),
        ("decided by", (a.decided_by or "(unknown)") if answered else "-"),
        ("decided at", _when(a.decided_at) if answered else "-"),
        ("note", a.note or ""),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<13}{shown(value)}")
    click.echo("arguments:")
    for line in args.splitlines():
        click.echo(f"  {shown(line)}")
    from ..proxy.approvals import args_lookalikes

    warning = args_lookalikes(a.args)
    if warning is not None:  # (after the arguments: the last thing read before `grant`)
        click.echo(click.style(f"warning: {shown(warning)}", fg="red", bold=True))


def _answer(ctx: click.Context, aid: str, grant: bool, note: str | None, unseen: bool = False) -> None:
    q = _queue(ctx)
    with _answering(q):
        if grant and not unseen:
            # secure by default, as the console: nobody approves arguments they cannot see
            from ..proxy.approvals import SHOWN_MAX, args_cut

            a = q.get(aid)
            cut = args_cut(a.args) if a is not None and a.status == "pending" else None
            if cut is not None:
                click.echo(
                    f"plr approvals: not granted: the arguments of {shown(aid)} were cut at {SHOWN_MAX:,} "
                    f"characters ({cut:,} more not kept), so nobody can see all of what would run; deny it, or "
                    "grant it with --unseen-arguments if you know what the rest is",
                    err=True,
                )
                sys.exit(EXIT_FAIL)
        done, status = q.answer(aid, grant, note)
    if done:
        click.echo(f"{'granted' if grant else 'denied'} {shown(aid)}")
        return
    if status == "unknown":
        _no_request(q, aid)
    click.echo(f"plr approvals: {shown(aid)} is not pending (it is {status})", err=True)
    sys.exit(EXIT_FAIL)


def _answer_options(f: Callable[..., None]) -> Callable[..., None]:
    """What `grant` and `deny` both take: the request's id, a --note, and the queue options."""
    f = click.pass_context(f)
    f = click.option("--note", help="Why (kept in the queue; `plr approvals show ID` prints it).")(f)
    f = click.argument("approval_id")(f)
    return _queue_options(f)


@approvals_group.command("grant")
@click.option(
    "--unseen-arguments",
    is_flag=True,
    help="Grant even when the request's arguments were cut at 64 KiB in the queue (refused by default: "
    "the rest cannot be shown to anyone).",
)
@_answer_options
def approvals_grant(ctx: click.Context, approval_id: str, note: str | None, unseen_arguments: bool) -> None:
    """Approve one pending call (exactly that call: same tool and arguments).

    \b
    Example:
      plr approvals show 3f9c2a1b     # read every argument first
      plr approvals grant 3f9c2a1b --note "release window"

    A request whose arguments were cut at 64 KiB in the queue is refused (exit 1): nobody can see
    all of what would run. Deny it, or pass --unseen-arguments if you know what the rest is."""
    _answer(ctx, approval_id, True, note, unseen_arguments)


@approvals_group.command("deny")
@_answer_options
def approvals_deny(ctx: click.Context, approval_id: str, note: str | None) -> None:
    """Refuse one pending call."""
    _answer(ctx, approval_id, False, note)
