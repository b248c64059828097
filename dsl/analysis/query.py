"""``plr query``: a call that gets a given decision, or a proof that none does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .decision import OUTCOMES, decision_term, tool_view
from .diff import tool_names
from .encode import STR, Context, string_val
from .solver import z3 as load_z3
from .witness import Engines, TooLarge, call_of, decide

__all__ = ["QueryResult", "query_policy"]


@dataclass
class QueryResult:
    possible: bool | None  # None: could not be settled
    call: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    reason: str = ""


def query_policy(data: dict[str, Any], effect: str, tool: str, identity: str | None = None) -> QueryResult:
    """Can a call of ``tool`` (with ``identity``, when given) get ``effect``?"""
    z = load_z3("plr query")
    view = tool_view(data, tool)
    ctx = Context(z, view.conditions(), tool, set(tool_names(data)))
    term = decision_term(ctx, view)
    s = z.Solver()
    s.set("timeout", 20_000)
    s.add(*ctx.constraints)
    s.add(z.Or(*[term == i for i, o in enumerate(OUTCOMES) if o[0] == effect]))
    if identity is not None:
        s.add(ctx.roots["identity"].kind == STR, ctx.roots["identity"].s == string_val(z, identity))
    engines = Engines(data)
    for _ in range(8):
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
        if not ctx.opaque:
            return QueryResult(None, reason="the analysis and the engine disagree (please report this)")
        # a candidate that leaned on a regex or value function: ask for another one
        s.add(z.Not(z.And(*[ctx.atoms[k] == m.eval(a, model_completion=True) for k, a in ctx.atoms.items()])))
    return QueryResult(None, reason="the rules use regexes or value functions the analysis does not model exactly")
