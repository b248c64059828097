"""`plr audit`: read and filter the proxy's audit log.

Every field of a record may have been chosen by the agent or the server, so each is escaped
before it reaches a terminal (text) or a line-based reader (JSON).
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


def _text_line(rec: dict[str, Any]) -> str:
    # every field is shown escaped: a tool name the agent chose must not fake a line or a colour
    if "event" in rec and "effect" not in rec:
        return _event_line(rec)
    eff = shown(rec.get("effect"))
    colour = {"allow": "green", "deny": "red"}.get(eff, "yellow")
    rule = f" {shown(rec['rule'])}" if rec.get("rule") else ""
    return (
        f"{shown(rec.get('ts', '?'))}  {style(f'{eff:<17}', colour)} {shown(rec.get('tool'))}  "
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
    n = 0
    for rec in read_records(paths, errors):
        if not keep.matches(rec):  # an event (no effect) is shown too, unless a filter leaves it out
            continue
        n += 1
        # U+2028/U+2029 end a line for many readers, a lone surrogate (another writer's "\\ud800")
        # cannot be written as UTF-8: both are escaped, which keeps the JSON value the same
        click.echo(_json_line(rec) if fmt == "json" else _text_line(rec))
    for e in errors:
        click.echo(f"plr audit: {shown(e)}", err=True)
    if fmt == "text" and sys.stdout.isatty():
        click.echo(f"{n} record(s)", err=True)
