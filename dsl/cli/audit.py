"""`plr audit`: read and filter the proxy's audit log.

Every field of a record may have been chosen by the agent or the server, so each is escaped
before it reaches a terminal (text) or a line-based reader (JSON).

A call a human answered through the queue names its request (``approval_id``) in the log; who
answered it is kept in the queue. The text form joins the two, reading the queue the proxy used
beside that log (never creating or writing it), so the line says who approved the call.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .output import EXIT_INPUT, shown, style

if TYPE_CHECKING:
    from ..audit_filters import AuditFilter


def _json_line(rec: Any) -> str:
    """One JSON line: U+2028/U+2029 and lone surrogates written as escapes (the same JSON value)."""
    import re

    text = json.dumps(rec, ensure_ascii=False)
    return re.sub("[\u2028\u2029\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)


def _filter(
    tools: tuple[str, ...],
    effects: tuple[str, ...],
    codes: tuple[str, ...],
    session: str | None,
    identity: str | None,
    since: str | None,
) -> AuditFilter:
    """The options as the filter the console's Audit page uses too; a --since it cannot read is
    a usage error naming --since."""
    from ..audit_filters import AuditFilter

    try:
        return AuditFilter.of(since or "", tool=tools, effect=effects, code=codes, session=session, identity=identity)
    except ValueError as e:
        raise click.BadParameter(shown(str(e)), param_hint="--since") from None


def _event_line(rec: dict[str, Any]) -> str:
    """A record that is not a decision: the proxy's comparison of the policy's tools with the server's."""
    parts = [shown(rec.get("when", ""))]
    if rec.get("policy_tools_missing"):
        parts.append("policy tools the server lacks: " + ", ".join(shown(t) for t in rec["policy_tools_missing"]))
    if rec.get("server_tools_unmentioned"):
        parts.append("server tools no rule names: " + ", ".join(shown(t) for t in rec["server_tools_unmentioned"]))
    event = shown(rec.get("event"))
    return f"{shown(rec.get('ts', '?'))}  {style(f'{event:<17}', 'yellow')} " + "; ".join(parts)


class _Answers:
    """Who answered the queue's requests, read from the queue beside the log (``default_db_path``:
    where a proxy run with this ``--audit`` keeps it). Opened once, read-only, on the first
    record that names a request; no queue there (or one that cannot be read) leaves the lines
    with what the records say. A request is taken as the record's only if its tool and
    arguments' hash match too: another queue's request with the same id is not this call's."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._queue: Any = None
        self._opened = False
        self._seen: dict[str, Any] = {}

    def _open(self) -> Any:
        if not self._opened:
            self._opened = True
            from ..state.sqlite import SqliteApprovalQueue, default_db_path

            try:
                self._queue = SqliteApprovalQueue(default_db_path(self.log), create=False)
            except Exception:  # noqa: BLE001 - no queue to join: the lines say what the log says
                self._queue = None
        return self._queue

    def of(self, rec: dict[str, Any]) -> Any:
        """The queue's request the record names (an ``Approval``), or None."""
        aid = rec.get("approval_id")
        if not isinstance(aid, str) or rec.get("approval") != "queue":
            return None
        if aid not in self._seen:
            q = self._open()
            try:
                self._seen[aid] = q.get(aid) if q is not None else None
            except Exception:  # noqa: BLE001 - an unreadable queue: the line says what the log says
                self._seen[aid] = None
        a = self._seen[aid]
        if a is None or a.tool != rec.get("tool") or a.args_sha256 != rec.get("args_sha256"):
            return None
        return a


# what a human's answer was, from an outcome record's code when the queue does not say
_ANSWERED_BY_CODE = {"approval_declined": "declined", "approval_timeout": "unanswered"}


def _approval_note(rec: dict[str, Any], answers: _Answers | None) -> str:
    """How a human was asked about this call, and what they answered, for the text line:
    ``approved by alice via queue 3f9c2a1b``, ``declined via elicitation``, ``asked via queue
    3f9c2a1b`` (the ask itself); "" for a record that asked nobody."""
    channel = rec.get("approval")
    if channel is None:
        return ""
    if channel == "unavailable":
        return "no approval channel"
    eff = rec.get("effect")
    aid = rec.get("approval_id")
    via = f" via {shown(channel)}" + (f" {shown(aid)}" if aid is not None else "")
    if eff == "approval_required":
        return f"asked{via}"
    verb = "approved" if eff == "allow" else _ANSWERED_BY_CODE.get(str(rec.get("code")), "asked")
    by = rec.get("decided_by")
    if isinstance(by, str) and by:
        # the proxy wrote who answered into the outcome record: no queue needed to name them
        # (a grant the policy then denied, a limit reached meanwhile, was still approved)
        verb = "declined" if rec.get("code") == "approval_declined" else "approved"
        return f"{verb} by {shown(by)}{via}"
    a = answers.of(rec) if answers is not None else None
    if a is not None and a.status in ("granted", "used", "denied"):
        # the queue's answer: a grant the policy then denied (a limit reached meanwhile) was approved
        verb = "declined" if a.status == "denied" else "approved"
        if a.decided_by:
            return f"{verb} by {shown(a.decided_by)}{via}"
    return f"{verb}{via}"


def _text_line(rec: dict[str, Any], answers: _Answers | None = None) -> str:
    # every field is shown escaped: a tool name the agent chose must not fake a line or a colour
    if "event" in rec and "effect" not in rec:
        return _event_line(rec)
    eff = shown(rec.get("effect"))
    colour = {"allow": "green", "deny": "red"}.get(eff, "yellow")
    # how a human answered goes with the effect, before the first field the agent chose (the tool)
    note = _approval_note(rec, answers)
    cell = f"{eff} ({note})" if note else eff
    rule = f" {shown(rec['rule'])}" if rec.get("rule") else ""
    return (
        f"{shown(rec.get('ts', '?'))}  {style(f'{cell:<17}', colour)} {shown(rec.get('tool'))}  "
        f"({shown(rec.get('code'))}){rule}: {shown(rec.get('reason', ''))}"
    )


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

    A call a human answered shows it after its effect, e.g. `allow (approved by alice via queue
    3f9c2a1b)`: who answered is read from the approval queue beside FILE (approvals.sqlite, or
    PLR_APPROVALS_DB), which is only read; without it the line names the request.

    \b
    Examples:
      plr audit audit.jsonl --effect deny --since 1h
      plr audit audit.jsonl --tool cancel-task --format json | jq .reason
    """
    from ..proxy.audit import default_audit_path, read_records, rotated_paths

    path = Path(file) if file else default_audit_path()
    if not path.exists():
        click.echo(f"plr audit: {shown(str(path))}: no such file", err=True)
        sys.exit(EXIT_INPUT)
    keep = _filter(tools, effects, codes, session, identity, since)
    paths = rotated_paths(path) if rotated else [path]
    errors: list[str] = []
    answers = _Answers(path) if fmt == "text" else None
    n = 0
    for rec in read_records(paths, errors):
        if not keep.matches(rec):  # an event (no effect) is shown too, unless a filter leaves it out
            continue
        n += 1
        # U+2028/U+2029 end a line for many readers, a lone surrogate (another writer's "\\ud800")
        # cannot be written as UTF-8: both are escaped, which keeps the JSON value the same
        click.echo(_json_line(rec) if fmt == "json" else _text_line(rec, answers))
    for e in errors:
        click.echo(f"plr audit: {shown(e)}", err=True)
    if fmt == "text" and sys.stdout.isatty():
        click.echo(f"{n} record(s)", err=True)
