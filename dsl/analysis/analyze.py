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
  call, approved or not, gets allowed: by its checks, or because every call they allow is
  refused by a spend cap (no valid amount, or more than the cap: refused on any counters).

A rule of ``all_tools`` is reported only when the finding holds for every tool it binds.
Opaque parts (what the encoding cannot model exactly) are free booleans here, so they can hide
a finding but never invent one.

A finding that comes with a call (a shadowed rule, a ``deny_if`` that always holds, a hidden
tool's rules) shows that call only after the real engine has decided it and the engine's own
condition evaluator has confirmed the claim on it (the rule holds, or fails, and an earlier
check decides). A witness that does not reproduce moves the finding to ``unknown``: it is never
printed as fact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .decision import OUTCOMES, Limits, ToolView, decision_term, tool_view
from .diff import tool_names
from .encode import Context
from .solver import z3 as load_z3
from .witness import Engines, TooLarge, call_of, decide, holds

__all__ = ["AnalyzeResult", "analyze_policy"]

TIMEOUT_MS = 20_000
_RETRIES = 4  # other assignments of the opaque atoms tried before a witness is given up

Check = Callable[[dict[str, Any], dict[str, Any]], bool]  # (call, engine decision) -> confirmed


@dataclass
class AnalyzeResult:
    """The proven findings, and those whose witness the engine did not confirm (``unknown``)."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"findings": self.findings, "unknown": self.unknown}


def _is(d: dict[str, Any], effect: str, code: str) -> bool:
    return d["effect"] == effect and d["code"] == code


def _decided_earlier(earlier: list[dict[str, Any]]) -> Check:
    """The engine denied the call by a deny_if, and one of ``earlier`` holds on it (the first
    that holds is the check the engine stopped at)."""
    return lambda call, d: _is(d, "deny", "deny_if") and any(holds(e, call) is not False for e in earlier)


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
        self.unknown: list[dict[str, Any]] = []
        self.shared: dict[tuple[Any, ...], dict[str, Any]] = {}  # all_tools findings per kind
        self.shared_seen: dict[tuple[Any, ...], int] = {}

    def unsat(self, ctx: Context, *facts: Any) -> bool:
        """Whether no call satisfies ``facts`` (a proof); False also when z3 cannot tell."""
        s = self.z.Solver()
        s.set("timeout", TIMEOUT_MS)
        s.add(*ctx.constraints, *facts)
        answer = str(s.check(ctx.small_flag))
        if answer == "unsat":
            answer = str(s.check())
        return answer == "unsat"

    def witness(self, ctx: Context, facts: list[Any], check: Check) -> dict[str, Any] | str:
        """A call satisfying ``facts`` that the engine confirms with ``check`` (with its decision),
        or why there is none to show."""
        z = self.z
        s = z.Solver()
        s.set("timeout", TIMEOUT_MS)
        s.add(*ctx.constraints, *facts)
        for _ in range(1 + (_RETRIES if ctx.opaque else 0)):
            answer = ctx.check(s)
            if answer != "sat":
                break
            m = s.model()
            try:
                call = call_of(ctx, m)
            except TooLarge as e:
                return f"the smallest call found is too large to show ({e})"
            d = decide(self.engines, call)
            if check(call, d):
                return {**call, "decision": d}
            if not ctx.opaque or not ctx.atoms:
                break
            s.add(z.Not(z.And(*[a == m.eval(a, model_completion=True) for a in ctx.atoms.values()])))
        if ctx.opaque:
            return (
                "no call the engine confirms was found: the rules use parts the analysis does not "
                "model exactly (normpath, dirname, some regexes)"
            )
        return "internal error: the engine does not confirm the solver's call (please report this)"

    def add(self, origin: tuple[Any, ...], kind: str, finding: dict[str, Any], holds_: bool,
            show: Callable[[], dict[str, Any] | str] | None = None) -> None:
        """Record a finding (``holds_``: proven for this tool); ``show`` finds its witness."""
        if origin[0] == "tool":
            if not holds_:
                return
            w = show() if show is not None else None
            if isinstance(w, str):
                self.unknown.append({**finding, "reason": w})
            else:
                self.findings[(*origin, kind)] = {**finding, "call": w}
            return
        key = (*origin, kind)
        self.shared_seen[key] = self.shared_seen.get(key, 0) + 1
        if holds_:
            entry = self.shared.setdefault(key, {**finding, "tool": None, "count": 0, "call": None})
            entry["count"] += 1
            if show is not None and entry["call"] is None:  # one confirmed call, from any tool it binds
                w = show()
                if isinstance(w, str):
                    entry.setdefault("reason", w)
                else:
                    entry["call"] = w
                    entry.pop("reason", None)

    def tool(self, tool: str | None) -> None:
        data, z = self.data, self.z
        view = tool_view(data, tool)
        label = tool if tool is not None else "any other tool"
        entry = data.get("tools", {}).get(tool) if tool is not None else None
        if view.fixed == ("deny", "hidden") and entry is not None:
            call = {"tool": tool, "args": {}, "identity": None, "session": None, "server": None, "approved": True}
            d = decide(self.engines, call)
            finding = {"kind": "shadowed", "tool": tool, "rule": entry.get("rule"),
                       "message": f"the rules for `{tool}` never decide a call: the tool is hidden"}
            if _is(d, "deny", "hidden"):
                self.findings[("tool", tool, "entry", "shadowed")] = {**finding, "call": {**call, "decision": d}}
            else:
                self.unknown.append({**finding, "reason": "internal error: the engine does not hide the tool (please report this)"})
        if view.fixed is not None:
            return
        ctx = Context(z, view.conditions(), tool, self.known)
        earlier: list[Any] = []
        earlier_conds: list[dict[str, Any]] = []
        for i, c in enumerate(view.deny_if):
            origin = _origin(view, "deny_if", i, tool)
            hit = ctx.fires(c)
            never = self.unsat(ctx, hit)
            self.add(origin, "never", {"kind": "never", "tool": tool, "rule": c.get("rule"),
                                       "message": f"deny_if on `{label}` can never hold"}, never)
            if not never and earlier:
                before = list(earlier_conds)
                self.add(origin, "shadowed", {"kind": "shadowed", "tool": tool, "rule": c.get("rule"),
                         "message": f"deny_if on `{label}` never decides: an earlier deny_if holds on every call where it does"},
                         self.unsat(ctx, hit, *earlier),
                         lambda c=c, hit=hit, before=before: self.witness(
                             ctx, [hit], lambda call, d: holds(c, call) is not False and _decided_earlier(before)(call, d)))
            self.add(origin, "always", {"kind": "always", "tool": tool, "rule": c.get("rule"),
                     "message": f"deny_if on `{label}` holds on every call: `{label}` is always denied"},
                     self.unsat(ctx, z.Not(hit)),
                     lambda c=c: self.witness(ctx, [], lambda call, d: _is(d, "deny", "deny_if") and holds(c, call) is not False))
            earlier.append(z.Not(hit))
            earlier_conds.append(c)
        for i, c in enumerate(view.require):
            origin = _origin(view, "require", i, tool)
            ok = z.Or(ctx.passes(c), ctx.passes(c, lookahead=True))
            self.add(origin, "never", {"kind": "never", "tool": tool, "rule": c.get("rule"),
                     "message": f"requirement on `{label}` can never hold, even with approval: `{label}` is never allowed"},
                     self.unsat(ctx, ok))
            fails = z.Not(ctx.passes(c))
            always = self.unsat(ctx, fails)
            self.add(origin, "always", {"kind": "always", "tool": tool, "rule": c.get("rule"),
                     "message": f"requirement on `{label}` holds on every call: it checks nothing"}, always)
            if not always and earlier:
                before = list(earlier_conds)
                self.add(origin, "shadowed", {"kind": "shadowed", "tool": tool, "rule": c.get("rule"),
                         "message": f"requirement on `{label}` never decides: a deny_if denies every call it would fail"},
                         self.unsat(ctx, fails, *earlier),
                         lambda c=c, fails=fails, before=before: self.witness(
                             ctx, [fails], lambda call, d: holds(c, call) is not True and _decided_earlier(before)(call, d)))
        if view.entry is not None or view.allowed_code == "allowed":
            term = decision_term(ctx, view)
            allowed = z.Or(*[term == i for i, o in enumerate(OUTCOMES) if o[0] == "allow"])
            message = f"`{label}` is never allowed, whatever the call, approved or not"
            never = self.unsat(ctx, allowed)
            if not never and (capped := self.capped(view, tool)) is not None:
                never = capped
                message += ": every call its rules allow is refused by a spend cap (no valid amount, or more than the cap)"
            if never:
                rule = view.entry.get("rule") if view.entry is not None else None
                key = ("tool", tool, "never_allowed") if tool is not None else ("all", "never_allowed")
                self.findings[key] = {"kind": "never_allowed", "tool": tool, "rule": rule, "call": None, "message": message}

    def capped(self, view: ToolView, tool: str | None) -> bool | None:
        """Whether no call the rules allow gets past the tool's spend caps (a valid amount within
        each cap that applies): such a call is refused on any counters, so the tool is never
        allowed. None without spend caps. A context of its own, so the other findings' calls
        stay as they are."""
        limits = Limits.of(self.data, tool).caps()
        if not limits.data:
            return None
        ctx = Context(self.z, [*view.conditions(), *limits.conditions()], tool, self.known)
        term = decision_term(ctx, view)
        allowed = self.z.Or(*[term == i for i, o in enumerate(OUTCOMES) if o[0] == "allow"])
        return self.unsat(ctx, allowed, limits.first_call(ctx).fits)


def analyze_policy(data: dict[str, Any]) -> AnalyzeResult:
    """Every finding of the policy (canonical dump), in rule order; findings whose witness the
    engine did not confirm are under ``unknown``."""
    finder = _Finder(load_z3("plr analyze"), data)
    for tool in [*tool_names(data), None]:
        finder.tool(tool)
    out = list(finder.findings.values())
    unknown = list(finder.unknown)
    for key, f in finder.shared.items():
        if f.pop("count") == finder.shared_seen[key]:
            reason = f.pop("reason", None)
            if reason is not None and f["call"] is None:
                unknown.append({**f, "reason": reason})
            else:
                out.append(f)

    def order(f: dict[str, Any]) -> tuple[Any, ...]:
        return (_line_key(f.get("rule")), f["kind"], f.get("tool") or "")

    return AnalyzeResult(sorted(out, key=order), sorted(unknown, key=order))


def _line_key(rule: str | None) -> tuple[str, int]:
    if not rule or ":" not in rule:
        return ("~", 0)
    file, _, line = rule.rpartition(":")
    return (file, int(line) if line.isdigit() else 0)
