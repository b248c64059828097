"""`plr approvals list / show / grant / deny`: a human answers the proxy's approval queue
(SQLite next to the audit log, or a fleet's Redis with --state).

Only the proxy creates a queue; these commands read and answer one, never make one. Every
field the agent or the server chose is escaped before it is shown.
"""

from __future__ import annotations

import json
import os
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
        click.echo(f"{who}: --state needs redis-py; install it with: pip install 'plr[fleet]'", err=True)
        sys.exit(EXIT_INPUT)
    from ..state.redis import RedisState

    try:
        # the proxy reports outages once (and recovery); a one-shot command just says it failed
        report = (lambda s: click.echo(s, err=True)) if who == "plr proxy" else None
        return RedisState(url, report=report)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--state") from None


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
    import sqlite3

    from ..state.sqlite import SqliteApprovalQueue, default_db_path

    if ctx.obj.get("state"):
        return open_state(ctx.obj["state"], "plr approvals").approval_queue()
    db = ctx.obj.get("db")
    audit = ctx.obj.get("audit")
    path = Path(db) if db else default_db_path(audit)
    try:
        return SqliteApprovalQueue(path, create=False)
    except FileNotFoundError:
        named = bool(db or os.environ.get("PLR_APPROVALS_DB")) or (audit is not None and not Path(audit).exists())
        if named:
            click.echo(
                f"plr approvals: no approval queue at {shown(str(path))} (check the path; the proxy creates "
                "it when it first needs an approval)",
                err=True,
            )
            sys.exit(EXIT_INPUT)
        return _NoQueue(path)
    except (sqlite3.DatabaseError, OSError) as e:
        _bad_queue(path, e)


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

    from ..proxy.approvals import short_args

    q = _queue(ctx)
    with _answering(q):
        items = q.list(include_done=show_all)
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
        # every field the agent or the server chose is escaped: it must not fake a line or hide text
        args = short_args(shown(a.args)).replace("plr approvals show ID", f"plr approvals show {a.id}")
        click.echo(f"{style(a.id, 'cyan', True)}  {state}  {shown(a.tool)}({args})  {extra}")
        who = ", ".join(
            x
            for x in (f"identity {shown(a.identity)}" if a.identity else "", f"server {shown(a.server)}" if a.server else "")
            if x
        )
        click.echo(f"    {shown(a.reason or '')}" + (f"  [{shown(a.rule)}]" if a.rule else "") + (f"  ({who})" if who else ""))


@approvals_group.command("show")
@_state_here
@click.argument("approval_id")
@click.pass_context
def approvals_show(ctx: click.Context, approval_id: str) -> None:
    """One approval request in full: the whole call (arguments pretty-printed), why, who, status.

    Read this before `grant`: `list` shows only the start of long arguments. Values under
    secret-looking keys are stored and shown as "[REDACTED]"; the call carries the real ones.
    """
    q = _queue(ctx)
    with _answering(q):
        a = q.get(approval_id)
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
        click.echo(f"{name + ':':<13}{shown(value)}")
    click.echo("arguments:")
    for line in args.splitlines():
        click.echo(f"  {shown(line)}")


def _answer(ctx: click.Context, aid: str, grant: bool, note: str | None) -> None:
    q = _queue(ctx)
    with _answering(q):
        done, status = q.answer(aid, grant, note)
    if done:
        click.echo(f"{'granted' if grant else 'denied'} {aid}")
        return
    if status == "unknown":
        click.echo(f"plr approvals: no approval request {aid}", err=True)
        sys.exit(EXIT_INPUT)
    click.echo(f"plr approvals: {aid} is not pending (it is {status})", err=True)
    sys.exit(EXIT_FAIL)


def _answer_options(f: Callable[..., None]) -> Callable[..., None]:
    """What `grant` and `deny` both take: the request's id, a --note, and --state."""
    f = click.pass_context(f)
    f = click.option("--note", help="Why (kept in the queue).")(f)
    f = click.argument("approval_id")(f)
    return _state_here(f)


@approvals_group.command("grant")
@_answer_options
def approvals_grant(ctx: click.Context, approval_id: str, note: str | None) -> None:
    """Approve one pending call (exactly that call: same tool and arguments)."""
    _answer(ctx, approval_id, True, note)


@approvals_group.command("deny")
@_answer_options
def approvals_deny(ctx: click.Context, approval_id: str, note: str | None) -> None:
    """Refuse one pending call."""
    _answer(ctx, approval_id, False, note)
