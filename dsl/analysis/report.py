"""What ``plr diff`` and ``plr analyze`` print: text for a terminal, JSON for scripts, and
Markdown for a pull-request comment. Pure functions from results to text."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["diff_text", "diff_json", "diff_markdown", "findings_text", "findings_json"]

_RERUN = "Each example call was re-run on both policies with the real engine (`plr eval`)."
_STATUS = {"added": "added (a new policy)", "removed": "removed (its calls are no longer decided by it)"}


_SURROGATE = re.compile("[\ud800-\udfff]")


def _printable(text: str) -> str:
    """``text`` with each lone surrogate written as its JSON escape (``\\ud800``): a terminal
    cannot print one, and ``plr eval --args`` reads the escape back as the same string."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _dumps(x: Any, **kw: Any) -> str:
    return _printable(json.dumps(x, ensure_ascii=False, **kw))


def _decision(d: dict[str, Any]) -> str:
    rule = f" by {d['rule']}" if d.get("rule") else ""
    return f"{d['effect']} ({d['code']}){rule}"


def _tool(c: dict[str, Any]) -> str:
    """A change's tool: its name, or for the class of tools neither policy names, that class."""
    if c.get("other_tool"):
        return f"any tool neither policy names (e.g. `{c['tool']}`)"
    return f"`{c['tool']}`"


def _call(call: dict[str, Any]) -> str:
    parts = [f"--tool {json.dumps(call['tool'])}", f"--args '{_dumps(call['args'])}'"]
    for k in ("identity", "session", "server"):
        if call.get(k) is not None:
            parts.append(f"--{k} {_dumps(call[k])}")
    if call.get("approved"):
        parts.append("--approved")
    text = " ".join(parts)
    return text if len(text) <= 400 else text[:397] + "..."


def _limit(lim: dict[str, Any] | None) -> str:
    if lim is None:
        return "none"
    extra = "".join(f", {k} {json.dumps(v)}" for k, v in lim.items() if k not in ("max", "window", "per"))
    return f"{lim.get('max')} per {lim.get('window')} s per {lim.get('per', 'session')}{extra}"


def _limit_line(x: dict[str, Any]) -> str:
    scope = f"`{x['tool']}`" if x["tool"] else "all tools"
    rules = " ".join(r for r in (x.get("old_rule"), x.get("new_rule")) if r)
    note = f" ({x['note']})" if x.get("note") else ""
    return f"{x['kind']}: limit on {scope}: {_limit(x['old'])} -> {_limit(x['new'])}{note}" + (f"  [{rules}]" if rules else "")


def diff_json(result: Any) -> str:
    return _dumps(result.to_dict(), indent=2) + "\n"


def diff_text(result: Any) -> str:
    if hasattr(result, "policies"):
        return _folder_text(result)
    if result.equivalent:
        return "equivalent: no call changes decision, and no limit changes\n"
    lines = []
    for c in result.changes:
        lines.append(f"{c['kind']}: {_tool(c)}: {_decision(c['old'])} -> {_decision(c['new'])}")
        lines.append(f"  e.g. {_call(c['call'])}")
    lines += [_limit_line(x) for x in result.limits]
    for u in result.unknown:
        what = f" ({u['old']['effect']} -> {u['new']['effect']})" if "old" in u else ""
        lines.append(f"unknown: `{u['tool']}`{what}: {u['reason']}")
    n = len(result.changes)
    lines.append(f"{n} decision change{'s' if n != 1 else ''}, {len(result.limits)} limit change(s), {len(result.unknown)} unknown")
    return "\n".join(lines) + "\n"


def _folder_text(result: Any) -> str:
    out = []
    for p in result.policies:
        if p.status == "changed":
            out.append(f"== {p.name}\n" + "".join("  " + line + "\n" for line in diff_text(p.result).splitlines()))
        else:
            out.append(f"== {p.name}: {_STATUS.get(p.status, 'equivalent')}\n")
    out.append(_folder_summary(result) + "\n")
    return "".join(out)


def _folder_summary(result: Any) -> str:
    counts = {k: sum(1 for p in result.policies if p.status == k) for k in ("changed", "added", "removed", "unchanged")}
    n = len(result.policies)
    return f"{n} polic{'ies' if n != 1 else 'y'}: " + ", ".join(f"{v} {k}" for k, v in counts.items())


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def diff_markdown(result: Any) -> str:
    if hasattr(result, "policies"):
        return _folder_markdown(result)
    if result.equivalent:
        return "### plr diff: no decision changes\n\nEvery call gets the same decision under both policies (proven by z3).\n"
    loosen = sum(1 for c in result.changes if c["kind"] == "loosen") + sum(1 for x in result.limits if x["kind"] == "loosen")
    head = f"### plr diff: {len(result.changes)} decision change(s)"
    if loosen:
        head += f", {loosen} more permissive"
    out = [head, ""]
    if result.changes:
        out += ["| kind | tool | before | after | example call |", "|---|---|---|---|---|"]
        for c in result.changes:
            icon = {"loosen": "🔓 loosen", "tighten": "🔒 tighten"}.get(c["kind"], c["kind"])
            out.append(
                f"| {icon} | {_md(_tool(c))} | {_md(_decision(c['old']))} | {_md(_decision(c['new']))} | "
                f"<code>{_md(_call(c['call']))}</code> |"
            )
        out.append("")
    if result.limits:
        out += ["**Limits**", ""] + [f"- {_md(_limit_line(x))}" for x in result.limits] + [""]
    if result.unknown:
        out += ["**Not decided** (review these by hand)", ""]
        out += [f"- `{_md(u['tool'])}`: {_md(u['reason'])}" for u in result.unknown] + [""]
    out.append(_RERUN)
    return "\n".join(out) + "\n"


def _folder_markdown(result: Any) -> str:
    if result.equivalent:
        return f"### plr diff: no decision changes\n\n{_folder_summary(result)}: every call gets the same decision under both versions (proven by z3).\n"
    out = [f"### plr diff: {_folder_summary(result)}", ""]
    for p in result.policies:
        if p.status == "changed":
            head, _, body = diff_markdown(p.result).partition("\n\n")
            body = body.replace(_RERUN, "").strip("\n")
            out += [f"#### `{_md(p.name)}`: {head.removeprefix('### plr diff: ')}", "", body, ""]
        elif p.status != "unchanged":
            out += [f"#### `{_md(p.name)}`: {_STATUS[p.status]}", ""]
    out.append(_RERUN)
    return "\n".join(out) + "\n"


def findings_json(result: Any) -> str:
    return _dumps(result.to_dict(), indent=2) + "\n"


def findings_text(result: Any) -> str:
    if not result.findings and not result.unknown:
        return "no findings: every rule can decide some call\n"
    lines = []
    for f in result.findings:
        where = f"{f['rule']}: " if f.get("rule") else ""
        lines.append(f"{where}{f['kind']}: {f['message']}")
        if f.get("call"):
            lines.append(f"  e.g. {_call(f['call'])} -> {_decision(f['call']['decision'])}")
    for u in result.unknown:
        where = f"{u['rule']}: " if u.get("rule") else ""
        lines.append(f"{where}unknown: {u['kind']} not confirmed: {u['reason']}")
    n = len(result.findings)
    tail = f", {len(result.unknown)} unknown" if result.unknown else ""
    lines.append(f"{n} finding{'s' if n != 1 else ''}{tail}")
    return "\n".join(lines) + "\n"
