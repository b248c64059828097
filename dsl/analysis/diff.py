"""``plr diff``: every kind of call whose decision changes between two policies, with proof.

For each tool (every name either policy mentions, plus one name neither does) the two
decision terms (dsl/analysis/decision.py) go to z3 with "they differ". Each model is one
(old decision -> new decision) class: its call is re-run on both real engines, and the class
blocked, until the solver proves no other class exists. "Equivalent" is therefore an
``unsat`` answer, never a search that gave up; anything the solver or the engine re-run cannot
settle is listed under ``unknown``.

Limits are compared as parameters (limits.py), but the example call of a class must also get
past them where a policy allows it: a spend cap refuses, on its first run, a call whose amount
is missing, invalid or over the cap (decision.py, ``FirstCall``). So the call is sought among
those every limit lets through on fresh counters (a valid amount within each cap, a whole one
first); when the class holds none, no call of it is ever allowed by that policy, and the call
is shown as the engine decides it (say deny_if -> invalid_args), or, when the engine decides
every call of the class alike, the class is no difference (a proof, as above).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .decision import OUTCOMES, FirstCall, Limits, decision_term, tool_view
from .encode import MISSING, NUM, Context, strip_meta
from .limits import limit_changes
from .solver import z3 as load_z3
from .witness import Engines, TooLarge, call_of, decide

__all__ = ["DiffResult", "FolderDiff", "PolicyDiff", "diff_policies", "diff_folders", "fails", "change_kind", "tool_names"]

_MAX_CLASSES = len(OUTCOMES) ** 2
_UNSAT = "unsat"  # from _shown: no call satisfies the facts (a proof), not a reason
TIMEOUT_MS = 20_000


@dataclass
class DiffResult:
    changes: list[dict[str, Any]] = field(default_factory=list)
    limits: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[dict[str, Any]] = field(default_factory=list)

    @property
    def equivalent(self) -> bool:
        return not (self.changes or self.limits or self.unknown)

    def to_dict(self) -> dict[str, Any]:
        return {"equivalent": self.equivalent, "changes": self.changes, "limits": self.limits, "unknown": self.unknown}


@dataclass
class PolicyDiff:
    """One policy of a folder: ``status`` is changed, unchanged, added or removed; ``result`` is
    its diff when it is on both sides."""

    name: str
    status: str
    result: DiffResult | None = None


@dataclass
class FolderDiff:
    """Two folders of policies paired by path. A removed policy counts as loosening (the calls it
    decided are no longer decided by it); an added one is a change (a new policy denies by
    default, and nothing it allows was decided before by it)."""

    policies: list[PolicyDiff] = field(default_factory=list)

    @property
    def equivalent(self) -> bool:
        return all(p.status == "unchanged" for p in self.policies)

    def to_dict(self) -> dict[str, Any]:
        def tagged(attr: str) -> list[dict[str, Any]]:
            return [{"policy": p.name, **x} for p in self.policies if p.result for x in getattr(p.result, attr)]

        return {
            "equivalent": self.equivalent,
            "policies": [{"policy": p.name, "status": p.status} for p in self.policies],
            "changes": tagged("changes"),
            "limits": tagged("limits"),
            "unknown": tagged("unknown"),
        }


def fails(result: DiffResult | FolderDiff, fail_on: str) -> bool:
    """Whether ``plr diff --fail-on FAIL_ON`` exits 1: ``any`` on any change; ``loosen`` when
    something becomes more permissive, a limit loosens or changes shape, something cannot be
    decided, or a policy is removed."""
    if isinstance(result, FolderDiff):
        return any(
            (p.status == "removed") or (p.status == "added" and fail_on == "any") or (p.result is not None and fails(p.result, fail_on))
            for p in result.policies
        )
    if fail_on != "loosen":
        return not result.equivalent
    return (
        any(c["kind"] == "loosen" for c in result.changes)
        or any(x["kind"] in ("loosen", "change") for x in result.limits)
        or bool(result.unknown)
    )


def diff_folders(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> FolderDiff:
    """Pair the policies of two folders by name (``inputs.load_policies``) and diff each pair."""
    out = FolderDiff()
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            out.policies.append(PolicyDiff(name, "removed"))
        elif name not in old:
            out.policies.append(PolicyDiff(name, "added"))
        else:
            result = diff_policies(old[name], new[name])
            out.policies.append(PolicyDiff(name, "unchanged" if result.equivalent else "changed", result))
    return out


def change_kind(old: tuple[str, str], new: tuple[str, str]) -> str:
    """loosen (more permissive), tighten, or change (same effect, another code)."""
    if old[1] == "hidden" and new[1] != "hidden":
        return "loosen"
    if new[1] == "hidden" and old[1] != "hidden":
        return "tighten"
    rank = {"deny": 0, "approval_required": 1, "allow": 2}
    ro, rn = rank[old[0]], rank[new[0]]
    return "loosen" if rn > ro else "tighten" if rn < ro else "change"


def tool_names(*policies: dict[str, Any]) -> list[str]:
    names: set[str] = set()
    for p in policies:
        names |= set(p.get("tools", {}))
        names |= {h for h in p.get("hide", ()) if h != "*"}
    return sorted(names)


def _view_key(v: Any) -> Any:
    return strip_meta([v.fixed, v.deny_if, v.require, v.approval, v.allowed_code])


def diff_policies(old: dict[str, Any], new: dict[str, Any]) -> DiffResult:
    """The decision changes and limit changes from ``old`` to ``new`` (canonical dumps)."""
    z = load_z3("plr diff")
    engines = (Engines(old), Engines(new))
    names = tool_names(old, new)
    result = DiffResult(limits=_moot(limit_changes(old, new), new))
    for tool in [*names, None]:
        vo, vn = tool_view(old, tool), tool_view(new, tool)
        if _view_key(vo) == _view_key(vn):
            continue  # the same checks in the same order: the same decision for every call
        limits = (Limits.of(old, tool).caps(), Limits.of(new, tool).caps())  # what can refuse a first call
        _diff_tool(z, tool, vo, vn, limits, set(names), engines, result)
    return result


def _moot(limits: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    """A limit loosened or dropped on a tool the new policy never allows is no loosening: no call
    of it is let through to count (``kind: moot``, proven by ``plr query --can allow``'s search;
    `--fail-on loosen` then passes a change that only tightens)."""
    from .query import query_policy  # (query imports this module)

    never: dict[str, bool] = {}
    for x in limits:
        tool = x["tool"]
        if x["kind"] not in ("loosen", "change") or tool is None:
            continue
        if tool not in never:
            never[tool] = query_policy(new, "allow", tool).possible is False
        if never[tool]:
            x["kind"] = "moot"
            x["note"] = f"`{tool}` is never allowed by the new policy: no call is let through to count"
    return limits


def _diff_tool(
    z: Any, tool: str | None, vo: Any, vn: Any, limits: tuple[Limits, Limits], known: set[str],
    engines: tuple[Engines, Engines], result: DiffResult,
) -> None:
    lo, ln = limits
    ctx = Context(z, [*vo.conditions(), *vn.conditions(), *lo.conditions(), *ln.conditions()], tool, known)
    to, tn = decision_term(ctx, vo), decision_term(ctx, vn)
    firsts = (lo.first_call(ctx), ln.first_call(ctx))
    tiers = _readable(z, ctx, [*lo.data, *ln.data])
    s = z.Solver()
    s.set("timeout", TIMEOUT_MS)
    s.add(*ctx.constraints)
    s.add(to != tn)
    label = tool if tool is not None else "(any other tool)"
    for _ in range(_MAX_CLASSES):
        answer = ctx.check(s)  # a printable call first
        if answer == "unsat":
            return
        if answer != "sat":
            result.unknown.append({"tool": label, "reason": f"the solver could not decide ({s.reason_unknown()})"})
            return
        m = s.model()
        oi, ni = m.eval(to, model_completion=True).as_long(), m.eval(tn, model_completion=True).as_long()
        pair = (OUTCOMES[oi], OUTCOMES[ni])
        why = _class_call(ctx, s, m, [to == oi, tn == ni], pair, firsts, engines, tiers)
        s.add(z.Not(z.And(to == oi, tn == ni)))
        if why is None:
            continue  # every call of the class is refused alike by limits of both policies
        if isinstance(why, str):
            result.unknown.append({"tool": label, "old": _ec(pair[0]), "new": _ec(pair[1]), "reason": why})
            continue
        call, do, dn = why
        shown = ((do["effect"], do["code"]), (dn["effect"], dn["code"]))
        change = {"tool": call["tool"], "kind": change_kind(*shown), "call": call, "old": do, "new": dn}
        if tool is None:
            change["other_tool"] = True  # the class of every tool neither policy names; call["tool"] is one
        result.changes.append(change)


def _ec(o: tuple[str, str]) -> dict[str, str]:
    return {"effect": o[0], "code": o[1]}


def _readable(z: Any, ctx: Context, limits: list[dict[str, Any]]) -> list[list[Any]]:
    """Assumptions tried first, in order, for a readable example call under spend caps (whose
    call is sought afresh): whole amounts, and no identity, session or server the rules do not
    need. Empty without spend caps: the call that found the class is shown, as it always was."""
    paths = sorted({lim["of"] for lim in limits if lim.get("of") is not None})
    if not paths:
        return []
    whole, plain = z.Bool("whole-amounts!"), z.Bool("plain!")
    amounts = [ctx.value(p) for p in paths]
    ctx.constraints.append(z.Implies(whole, z.And(*[z.Implies(a.kind == NUM, z.IsInt(a.n)) for a in amounts])))
    unused = [ctx.roots[r].kind == MISSING for r in ("identity", "session", "server")]
    ctx.constraints.append(z.Implies(plain, z.And(*unused)))
    return [[whole, plain], [whole], [plain]]


def _class_call(
    ctx: Context, s: Any, m: Any, cls: list[Any], pair: tuple[tuple[str, str], tuple[str, str]],
    firsts: tuple[FirstCall, FirstCall], engines: tuple[Engines, Engines], tiers: list[list[Any]],
) -> Any:
    """The example call of one class (``m``: the model that found it; ``cls``: its facts;
    ``pair``: its decisions by the terms), as (call, old decision, new decision); a reason when
    none can be shown; None when the engine decides every call of the class alike (proven)."""
    z = ctx.z
    allows = [f for f, o in zip(firsts, pair, strict=True) if o[0] == "allow"]
    fits = [f.fits for f in allows]
    # a call every limit of a policy that allows it lets through: the engines show the pair itself
    # (without spend caps every call is one, and the model's call is shown as it is)
    first = m if not tiers and all(z.is_true(m.eval(f, model_completion=True)) for f in fits) else None
    why = _shown(ctx, s, [*cls, *fits], lambda _m: pair, engines, tiers, first)
    if why != _UNSAT:
        return why

    def refused(model: Any) -> tuple[tuple[str, str], ...]:
        """The decisions of the model's call: a policy that allows it refuses it at its limits."""
        out = []
        for o, f in zip(pair, firsts, strict=True):
            if o[0] != "allow" or z.is_true(model.eval(f.fits, model_completion=True)):
                out.append(o)
            else:
                invalid = z.is_true(model.eval(f.invalid, model_completion=True))
                out.append(("deny", "invalid_args" if invalid else "rate_limited"))
        return tuple(out)

    # no call of the class gets past those limits: one the engines decide differently, if any
    differs = z.BoolVal(True)
    if len(allows) == 2:
        fo, fn = allows
        differs = z.Not(z.Or(z.And(fo.invalid, fn.invalid), z.And(fo.over, fn.over)))
    why = _shown(ctx, s, [*cls, differs], refused, engines, tiers)
    return None if why == _UNSAT else why


def _shown(
    ctx: Context, s: Any, facts: list[Any], expect: Any, engines: tuple[Engines, Engines], tiers: list[list[Any]],
    first: Any | None = None,
) -> Any:
    """A call satisfying ``facts`` that both engines decide as ``expect(model)`` says, as
    (call, old decision, new decision); ``_UNSAT`` when no call satisfies them (a proof); else
    why none is shown. ``tiers``: assumptions tried first, in order, for a readable call (they
    pick among calls, never decide the answer). ``first``: a model known to satisfy the facts,
    shown first. A candidate that leaned on an opaque atom is replaced by another assignment of
    the atoms, a few times; ``unsat`` after that is no proof, so the reason is kept."""
    z = ctx.z
    s.push()
    try:
        s.add(*facts)
        why: Any = _UNSAT
        for _ in range(1 + (4 if ctx.opaque else 0)):
            if first is not None:
                m, first = first, None
            else:
                readable = any(str(s.check(ctx.small_flag, *ctx.prefer, *t)) == "sat" for t in tiers)
                answer = "sat" if readable else ctx.check(s)
                if answer == "unsat":
                    return why
                if answer != "sat":
                    return f"the solver could not decide ({s.reason_unknown()})"
                m = s.model()
            why = _confirm(ctx, m, expect(m), engines)
            if not isinstance(why, str) or not ctx.opaque or not ctx.atoms:
                return why
            s.add(z.Not(z.And(*[a == m.eval(a, model_completion=True) for a in ctx.atoms.values()])))  # another assignment
        return why
    finally:
        s.pop()


def _confirm(ctx: Context, m: Any, pair: Any, engines: tuple[Engines, Engines]) -> Any:
    """(call, old decision, new decision) when both engines show the pair; else why not."""
    try:
        call = call_of(ctx, m)
    except TooLarge as e:
        return f"the smallest call found is too large to show ({e})"
    do, dn = decide(engines[0], call), decide(engines[1], call)
    if (do["effect"], do["code"]) == pair[0] and (dn["effect"], dn["code"]) == pair[1]:
        return call, do, dn
    if ctx.opaque:
        return (
            "a candidate call was not confirmed by the engine: the rules use regexes or value functions "
            "(lower, normpath, ...), which the analysis does not model exactly"
        )
    return "a candidate call was not confirmed by the engine (please report this: the analysis and engine disagree)"
