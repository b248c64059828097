"""``plr analyze``: rules that can never matter, and tools that can never be allowed, proven.

Each finding is an ``unsat`` answer of z3 over the symbolic call (so it holds for every call),
named by the rule's ``file:line``:

- ``never``: a ``deny_if`` or ``require`` whose condition no call satisfies;
- ``always``: a condition every call satisfies (a ``deny_if`` that denies the whole tool, a
  ``require`` that checks nothing);
- ``shadowed``: a rule that can never decide a call because an earlier check always wins
  (a ``deny_if`` that holds only where an earlier ``deny_if`` already denied, a ``require``
  that fails only where a ``deny_if`` already denied, a tool entry for a hidden tool);
- ``never_allowed``: a tool that the policy means to allow (or to allow with approval) that no
  call, approved or not, gets allowed.

A rule of ``all_tools`` is reported only when the finding holds for every tool it binds.
Opaque parts (regexes, value functions) are free booleans here, so they can hide a finding but
never invent one.
"""

from __future__ import annotations

from typing import Any

from .decision import OUTCOMES, ToolView, decision_term, tool_view
from .diff import tool_names
from .encode import Context
from .solver import z3 as load_z3
from .witness import Engines, TooLarge, call_of, decide

__all__ = ["analyze_policy"]

TIMEOUT_MS = 20_000


def _origin(view: ToolView, kind: str, i: int, tool: str | None) -> tuple[Any, ...]:
    """Who owns the i-th deny_if/require of a view: the tool's entry, or all_tools (shared)."""
    own = len(view.entry.get(kind, ())) if view.entry is not None else 0
    if view.entry is None and kind == "require" and view.allowed_code == "allowed":
        own = 1  # the allow_if grants of an ungoverned tool
        if i == 0:
            return ("all", "allow_if", 0)
    if i < own:
        return ("tool", tool, kind, i)
    return ("all", kind, i - own)


class _Finder:
    def __init__(self, z: Any, data: dict[str, Any]) -> None:
        self.z = z
        self.data = data
        self.engines = Engines(data)
        self.known = set(tool_names(data))
        self.findings: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.shared: dict[tuple[Any, ...], dict[str, Any]] = {}  # all_tools findings per kind
        self.shared_seen: dict[tuple[Any, ...], int] = {}

    def unsat(self, ctx: Context, *facts: Any) -> tuple[bool, Any]:
        s = self.z.Solver()
        s.set("timeout", TIMEOUT_MS)
        s.add(*ctx.constraints, *facts)
        answer = str(s.check(ctx.small_flag))
        if answer == "sat":
            return False, s.model()
        if answer == "unsat":
            answer = str(s.check())
        return answer == "unsat", None

    def witness(self, ctx: Context, m: Any) -> dict[str, Any] | None:
        if m is None:
            return None
        try:
            call = call_of(ctx, m)
        except TooLarge:
            return None
        return {**call, "decision": decide(self.engines, call)}

    def add(self, origin: tuple[Any, ...], kind: str, finding: dict[str, Any], holds: bool) -> None:
        if origin[0] == "tool":
            if holds:
                self.findings[(*origin, kind)] = finding
            return
        key = (*origin, kind)
        self.shared_seen[key] = self.shared_seen.get(key, 0) + 1
        if holds:
            self.shared.setdefault(key, {**finding, "tool": None, "count": 0})["count"] += 1

    def tool(self, tool: str | None) -> None:
        data, z = self.data, self.z
        view = tool_view(data, tool)
        label = tool if tool is not None else "any other tool"
        entry = data.get("tools", {}).get(tool) if tool is not None else None
        if view.fixed == ("deny", "hidden") and entry is not None:
            self.findings[("tool", tool, "entry", "shadowed")] = {
                "kind": "shadowed",
                "tool": tool,
                "rule": entry.get("rule"),
                "message": f"the rules for `{tool}` never decide a call: the tool is hidden",
            }
        if view.fixed is not None:
            return
        ctx = Context(z, view.conditions(), tool, self.known)
        earlier: list[Any] = []
        for i, c in enumerate(view.deny_if):
            origin = _origin(view, "deny_if", i, tool)
            hit = ctx.cond(c)
            never, _ = self.unsat(ctx, hit)
            self.add(origin, "never", {"kind": "never", "tool": tool, "rule": c.get("rule"),
                                       "message": f"deny_if on `{label}` can never hold"}, never)
            if not never and earlier:
                shadowed, _ = self.unsat(ctx, hit, *earlier)
                m = None if shadowed else None
                if shadowed:
                    _, m = self.unsat(ctx, hit)
                self.add(origin, "shadowed", {"kind": "shadowed", "tool": tool, "rule": c.get("rule"),
                         "message": f"deny_if on `{label}` never decides: an earlier deny_if holds on every call where it does",
                         "call": self.witness(ctx, m)}, shadowed)
            always, _ = self.unsat(ctx, z.Not(hit))
            self.add(origin, "always", {"kind": "always", "tool": tool, "rule": c.get("rule"),
                     "message": f"deny_if on `{label}` holds on every call: `{label}` is always denied"}, always)
            earlier.append(z.Not(hit))
        for i, c in enumerate(view.require):
            origin = _origin(view, "require", i, tool)
            holds = z.Or(ctx.cond(c), ctx.cond(c, lookahead=True))
            never, _ = self.unsat(ctx, holds)
            self.add(origin, "never", {"kind": "never", "tool": tool, "rule": c.get("rule"),
                     "message": f"requirement on `{label}` can never hold, even with approval: `{label}` is never allowed"}, never)
            fails = z.Not(ctx.cond(c))
            always, _ = self.unsat(ctx, fails)
            self.add(origin, "always", {"kind": "always", "tool": tool, "rule": c.get("rule"),
                     "message": f"requirement on `{label}` holds on every call: it checks nothing"}, always)
            if not always and earlier:
                shadowed, _ = self.unsat(ctx, fails, *earlier)
                self.add(origin, "shadowed", {"kind": "shadowed", "tool": tool, "rule": c.get("rule"),
                         "message": f"requirement on `{label}` never decides: a deny_if denies every call it would fail"}, shadowed)
        if view.entry is not None or view.allowed_code == "allowed":
            term = decision_term(ctx, view)
            allowed = z.Or(*[term == i for i, o in enumerate(OUTCOMES) if o[0] == "allow"])
            never_allowed, _ = self.unsat(ctx, allowed)
            if never_allowed:
                rule = view.entry.get("rule") if view.entry is not None else None
                key = ("tool", tool, "never_allowed") if tool is not None else ("all", "never_allowed")
                self.findings[key] = {"kind": "never_allowed", "tool": tool, "rule": rule,
                                      "message": f"`{label}` is never allowed, whatever the call, approved or not"}


def analyze_policy(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every finding of the policy (canonical dump), in rule order."""
    finder = _Finder(load_z3("plr analyze"), data)
    for tool in [*tool_names(data), None]:
        finder.tool(tool)
    out = list(finder.findings.values())
    for key, f in finder.shared.items():
        if f.pop("count") == finder.shared_seen[key]:
            out.append(f)
    for f in out:
        f.setdefault("call", None)
    return sorted(out, key=lambda f: (_line_key(f.get("rule")), f["kind"], f.get("tool") or ""))


def _line_key(rule: str | None) -> tuple[str, int]:
    if not rule or ":" not in rule:
        return ("~", 0)
    file, _, line = rule.rpartition(":")
    return (file, int(line) if line.isdigit() else 0)
