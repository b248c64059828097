"""The engine's decision for one tool, as a z3 term: the order of checks of dsl/engine/core.py.

``ToolView`` reads, from the canonical policy dump, what the engine checks for a call of one
tool (``prepare.py`` decides the same things the same way): hidden, the default, ``action``,
the tool's own then ``all_tools`` ``deny_if``, ``require`` (with ``all_tools.allow_if`` as the
first requirement of an ungoverned tool under ``default: deny``), approval. ``decision`` builds
an ``If`` chain over those checks giving the index of an (effect, code) pair in ``OUTCOMES``.

Two parts of the engine are deliberately outside the term: limits (stateful; compared as
parameters by ``limits.py``), and step 3b, arguments holding NaN or integers beyond 2^53
(the symbolic call carries only values a server reads as decided: a change there shows on
every call of the tool, so on the calls modelled too). Both only ever deny, and only a call
the term allows meets the limits. What the limits do to that call on fresh counters is
modelled apart (``Limits``, ``FirstCall``): a counter (max >= 1) never refuses a first call,
but a spend cap refuses a call whose amount is no valid amount or alone passes the cap, on
any counters. ``plr query`` and ``plr diff`` read it so that the calls they show are decided
as the term says, and ``plr analyze`` to find a tool no call gets past (query.py, diff.py,
analyze.py). A condition whose evaluation raises (a regex given a
lone surrogate) is in the term: a ``deny_if`` fires, a ``require`` fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .encode import Context

__all__ = ["OUTCOMES", "ToolView", "Case", "tool_view", "cases", "decision_term", "Limits", "LimitFacts", "FirstCall"]

OUTCOMES: tuple[tuple[str, str], ...] = (
    ("allow", "allowed"),
    ("allow", "default"),
    ("deny", "hidden"),
    ("deny", "default"),
    ("deny", "denied"),
    ("deny", "deny_if"),
    ("deny", "require"),
    ("approval_required", "require"),
)
_INDEX = {o: i for i, o in enumerate(OUTCOMES)}


@dataclass
class ToolView:
    """What the engine checks for one tool of one policy, in order."""

    fixed: tuple[str, str] | None = None  # hidden / default / denied: decided before any condition
    deny_if: list[dict[str, Any]] = field(default_factory=list)
    require: list[dict[str, Any]] = field(default_factory=list)
    approval: bool = False  # action require_approval
    allowed_code: str = "allowed"
    fixed_rule: str | None = None
    entry: dict[str, Any] | None = None  # the tool's own entry, when governed

    def conditions(self) -> list[dict[str, Any]]:
        return [*self.deny_if, *self.require]


def tool_view(data: dict[str, Any], tool: str | None) -> ToolView:
    """The checks of ``tool`` (None: a tool the policy names nowhere), as prepare.py builds them."""
    hide = set(data.get("hide", ()))
    if "*" in hide or (tool is not None and tool in hide):
        return ToolView(fixed=("deny", "hidden"))
    top = data.get("all_tools", {})
    default_allow = data["default"] == "allow"
    t = data.get("tools", {}).get(tool) if tool is not None else None
    if t is None:
        grants = [] if default_allow else list(top.get("allow_if", ()))
        conditional = top.get("deny_if") or top.get("require")
        if not grants and not (default_allow and conditional):
            return ToolView(fixed=("allow", "default") if default_allow else ("deny", "default"))
        require = list(top.get("require", ()))
        if grants:
            require.insert(0, grants[0] if len(grants) == 1 else {"any": grants})
        return ToolView(
            deny_if=list(top.get("deny_if", ())),
            require=require,
            allowed_code="default" if default_allow else "allowed",
        )
    action = t.get("action", "allow")
    if action == "deny":
        return ToolView(fixed=("deny", "denied"), fixed_rule=t.get("rule"), entry=t)
    return ToolView(
        deny_if=[*t.get("deny_if", ()), *top.get("deny_if", ())],
        require=[*t.get("require", ()), *top.get("require", ())],
        approval=action == "require_approval",
        entry=t,
    )


@dataclass
class Case:
    """One way a decision is reached: when it happens (given the call) and what it gives."""

    when: Any
    outcome: tuple[str, str]
    step: str  # hidden, default, denied, deny_if[i], require[i], approval, allow
    index: int | None = None


def cases(ctx: Context, view: ToolView) -> list[Case]:
    """The mutually exclusive cases of the decision, in the engine's order."""
    z = ctx.z
    if view.fixed is not None:
        return [Case(z.BoolVal(True), view.fixed, view.fixed[1])]
    out: list[Case] = []
    earlier: list[Any] = []  # the conditions of the steps before: none of them decided
    for i, c in enumerate(view.deny_if):
        hit = ctx.fires(c)  # holds, or raises: the engine fails closed
        out.append(Case(z.And(*earlier, hit), ("deny", "deny_if"), "deny_if", i))
        earlier.append(z.Not(hit))
    approved = ctx.approved
    if view.require:
        holds = [ctx.passes(c) for c in view.require]  # holds and does not raise
        with_approval = [ctx.passes(c, lookahead=True) for c in view.require]
        failing = z.Or(*[z.Not(h) for h in holds])
        helps = z.And(*[z.Or(h, a) for h, a in zip(holds, with_approval, strict=True)])
        # the first failing requirement names the deny (approved, or approval would not help)
        for i, h in enumerate(holds):
            first = z.And(*earlier, *holds[:i], z.Not(h))
            out.append(Case(z.And(first, z.Or(approved, z.Not(helps))), ("deny", "require"), "require", i))
            out.append(Case(z.And(first, z.Not(approved), helps), ("approval_required", "require"), "require", i))
        earlier.append(z.Not(failing))
    if view.approval:
        out.append(Case(z.And(*earlier, z.Not(approved)), ("approval_required", "require"), "approval"))
        earlier.append(approved)
    out.append(Case(z.And(*earlier) if earlier else z.BoolVal(True), ("allow", view.allowed_code), "allow"))
    return out


def decision_term(ctx: Context, view: ToolView) -> Any:
    """The index in ``OUTCOMES`` of the decision, as a z3 integer term."""
    z = ctx.z
    cs = cases(ctx, view)
    term = z.IntVal(_INDEX[cs[-1].outcome])
    for c in reversed(cs[:-1]):
        term = z.If(c.when, z.IntVal(_INDEX[c.outcome]), term)
    return term


# --- the limit step, for the first call on fresh counters --------------------------------------


@dataclass
class LimitFacts:
    """One limit over the symbolic call: when it applies (its ``if`` holds, or raises: the
    engine applies a limit that cannot tell), and for a spend cap when its amount is valid
    (a finite number >= 0, what the engine adds up), positive, and over the cap on its own."""

    data: dict[str, Any]
    applies: Any
    amount: dict[str, Any] | None  # "valid", "positive", "over"; None for a call counter


@dataclass
class FirstCall:
    """What the limit step does, on fresh counters, to a call the term allows: ``invalid`` (an
    applying spend cap gets no valid amount: deny ``invalid_args``), else ``over`` (an amount
    alone passes its applying cap: deny ``rate_limited``), else ``fits`` (allowed). Both
    refusals hold on any counters (used amounts are >= 0), so a call that does not fit is
    never allowed."""

    invalid: Any
    over: Any
    fits: Any


@dataclass
class Limits:
    """The limits that count a call of one tool, in the engine's order (the tool's own, then
    those of every tool), with a spend cap's amount tests as conditions the encoding reads
    exactly. ``conditions()`` go to the ``Context``; the same objects are then encoded (the
    context memoizes by identity, so they are kept here)."""

    data: list[dict[str, Any]]
    leaves: list[dict[str, dict[str, Any]] | None]

    @classmethod
    def of(cls, data: dict[str, Any], tool: str | None) -> "Limits":
        """The limits of ``tool`` in a canonical dump (None: a tool the policy names nowhere)."""
        own = data.get("tools", {}).get(tool, {}).get("limits", ()) if tool is not None else ()
        lims = [*own, *data.get("all_tools", {}).get("limits", ())]
        return cls(lims, [_amount_leaves(lim) for lim in lims])

    def caps(self) -> "Limits":
        """Only the spend caps: the limits that can refuse a first call on fresh counters."""
        kept = [(lim, lv) for lim, lv in zip(self.data, self.leaves, strict=True) if lv is not None]
        return Limits([lim for lim, _ in kept], [lv for _, lv in kept])

    def conditions(self) -> list[dict[str, Any]]:
        """What the ``Context`` must be built with: each ``if``, and each cap's amount tests."""
        out = [lim["if"] for lim in self.data if lim.get("if") is not None]
        return out + [c for lv in self.leaves if lv is not None for c in lv.values()]

    def facts(self, ctx: Context) -> list[LimitFacts]:
        """Each limit over the call of ``ctx`` (built with ``conditions()``)."""
        z = ctx.z
        return [
            LimitFacts(
                lim,
                ctx.fires(lim["if"]) if lim.get("if") is not None else z.BoolVal(True),
                {k: ctx.cond(c) for k, c in lv.items()} if lv is not None else None,
            )
            for lim, lv in zip(self.data, self.leaves, strict=True)
        ]

    def first_call(self, ctx: Context, facts: list[LimitFacts] | None = None) -> FirstCall:
        """The limit step on fresh counters: any applying cap without a valid amount answers
        ``invalid_args`` before the store is asked (the engine's order); then a cap whose
        amount alone passes it answers ``rate_limited``."""
        z = ctx.z
        caps = [f for f in (self.facts(ctx) if facts is None else facts) if f.amount is not None]
        invalid = z.Or(z.BoolVal(False), *[z.And(f.applies, z.Not(f.amount["valid"])) for f in caps])
        over = z.And(z.Not(invalid), z.Or(z.BoolVal(False), *[z.And(f.applies, f.amount["over"]) for f in caps]))
        return FirstCall(invalid, over, z.And(z.Not(invalid), z.Not(over)))


def _amount_leaves(lim: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """A spend cap's amount tests (``gte 0`` is what the engine accepts as an amount: a
    number, finite, not negative); None for a counter."""
    of = lim.get("of")
    if of is None:
        return None
    return {
        "valid": {"path": of, "op": "gte", "value": 0},
        "positive": {"path": of, "op": "gt", "value": 0},
        "over": {"path": of, "op": "gt", "value": lim["max"]},
    }
