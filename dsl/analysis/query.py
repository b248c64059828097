"""``plr query``: a call that gets a given decision, or a proof that none does.

The decision term (dsl/analysis/decision.py) leaves out two things that also deny: limits
(stateful) and step 3b (``invalid_args``: arguments a server would read as another value).
Both only ever turn a decision into a deny, so "no call gets allow" and "no call needs
approval" stay proofs; but a call can always be denied through them. ``--can deny`` therefore
answers from the term first (a deny by a rule), then from the tool's limits (a call the policy
allows, repeated until its limit is reached), then from invalid arguments; each answer is a
call the real engine has decided (repeated on a fresh counter store for a limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine import Engine
from ..state.memory import MemoryLimitStore
from .decision import OUTCOMES, decision_term, tool_view
from .diff import tool_names
from .encode import STR, Context, string_val
from .solver import z3 as load_z3
from .witness import Engines, TooLarge, call_of, decide

__all__ = ["QueryResult", "query_policy"]

_MAX_REPEAT = 100_000  # the longest run of calls re-played to show a limit being reached


@dataclass
class QueryResult:
    possible: bool | None  # None: could not be settled
    call: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    reason: str = ""
    # how the decision comes, when not by the call alone: "limit" (the call repeated ``repeat``
    # times in a row, the last one refused by a limit) or "invalid_args"
    via: str | None = None
    repeat: int = 1


def _limits_of(data: dict[str, Any], tool: str) -> list[dict[str, Any]]:
    """The limits that count calls of ``tool`` (its own, then those of every tool)."""
    own = data.get("tools", {}).get(tool, {}).get("limits", ())
    return [*own, *data.get("all_tools", {}).get("limits", ())]


def query_policy(data: dict[str, Any], effect: str, tool: str, identity: str | None = None) -> QueryResult:
    """Can a call of ``tool`` (with ``identity``, when given) get ``effect``?"""
    z = load_z3("plr query")
    view = tool_view(data, tool)
    limits = _limits_of(data, tool) if effect == "deny" else []
    ifs = [lim["if"] for lim in limits if lim.get("if") is not None]
    ctx = Context(z, [*view.conditions(), *ifs], tool, set(tool_names(data)))
    term = decision_term(ctx, view)
    who = []
    if identity is not None:
        who = [ctx.roots["identity"].kind == STR, ctx.roots["identity"].s == string_val(z, identity)]
    r = _search(z, ctx, [*who, z.Or(*[term == i for i, o in enumerate(OUTCOMES) if o[0] == effect])], Engines(data), effect)
    if effect != "deny" or r.possible:
        return r
    # no rule denies a call (or none could be shown): a limit or invalid arguments still do
    allowed = z.Or(*[term == i for i, o in enumerate(OUTCOMES) if o[0] == "allow"])
    for lim in limits:
        if lim["max"] >= _MAX_REPEAT:
            continue
        applies = ctx.fires(lim["if"]) if lim.get("if") is not None else z.BoolVal(True)
        found = _search(z, ctx, [*who, allowed, applies], Engines(data), "allow")
        if found.possible and found.call is not None:
            hit = _repeat(data, found.call, lim["max"] + 1)
            if hit is not None:
                n, d = hit
                return QueryResult(True, found.call, d, via="limit", repeat=n)
    return _invalid_args(data, tool, identity, r)


def _search(z: Any, ctx: Context, facts: list[Any], engines: Engines, effect: str) -> QueryResult:
    """A call satisfying ``facts`` that the engine decides with ``effect``."""
    s = z.Solver()
    s.set("timeout", 20_000)
    s.add(*ctx.constraints, *facts)
    for _ in range(8):
        answer = str(s.check(ctx.small_flag, *ctx.prefer))
        if answer == "unsat":
            answer = str(s.check(ctx.small_flag))
        if answer == "unsat":
            answer = str(s.check())
            if answer == "sat":
                return QueryResult(None, reason="only calls too large to show get it")
        if answer == "unsat":
            return QueryResult(False)
        if answer != "sat":
            return QueryResult(None, reason=f"the solver could not decide ({s.reason_unknown()})")
        m = s.model()
        try:
            call = call_of(ctx, m)
        except TooLarge as e:
            return QueryResult(None, reason=str(e))
        d = decide(engines, call)
        if d["effect"] == effect:
            return QueryResult(True, call, d)
        if d["code"] in ("rate_limited", "invalid_args", "state_unavailable"):
            return QueryResult(
                None, call, d,
                reason=f"the call found is refused by a limit or its arguments ({d['code']}, {d.get('rule') or 'no rule'}): "
                "the analysis does not model limits",
            )
        if not ctx.opaque:
            return QueryResult(None, reason="the analysis and the engine disagree (please report this)")
        # a candidate that leaned on a regex or value function: ask for another one
        s.add(z.Not(z.And(*[ctx.atoms[k] == m.eval(a, model_completion=True) for k, a in ctx.atoms.items()])))
    return QueryResult(None, reason="the rules use regexes or value functions the analysis does not model exactly")


def _repeat(data: dict[str, Any], call: dict[str, Any], times: int) -> tuple[int, dict[str, Any]] | None:
    """The same call made ``times`` times at one instant on a fresh engine: the number of the
    first call denied and its decision, or None when none is."""
    engine = Engine.from_data(data, clock=lambda: 0.0, store=MemoryLimitStore())
    for i in range(1, times + 1):
        d = engine.decide(
            call["tool"], call["args"], identity=call["identity"], session=call["session"],
            server=call["server"], approved=call["approved"],
        )
        if d.effect == "deny":
            return (i, {"effect": d.effect, "code": d.code, "rule": d.rule}) if i > 1 else None
    return None


def _invalid_args(data: dict[str, Any], tool: str, identity: str | None, before: QueryResult) -> QueryResult:
    """A call whose arguments hold an integer beyond 2^53 (a server may read it as another
    number): the engine denies it before any rule (``invalid_args``)."""
    call = {"tool": tool, "args": {"n": 2**60}, "identity": identity, "session": None, "server": None, "approved": False}
    d = decide(Engines(data), call)
    if d["effect"] == "deny":
        return QueryResult(True, call, d, via="invalid_args")
    return before
