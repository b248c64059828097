"""Concrete calls from solver models, and their confirmation on the real engine.

A model of the symbolic call becomes one call (tool, args, identity, session, server,
approved) that a user can paste into ``plr eval``. Nothing the solver proposes is printed
before :func:`decide` has run it through ``dsl.engine.Engine`` of each policy: a model that
leans on an opaque atom (a regex, a value function) can be wrong, and a wrong witness is
worse than "unknown".
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ..engine import MISSING as ABSENT, Engine, compile_condition  # the engine's sentinel; encode's MISSING is a kind number
from ..engine.arguments import MAX_SAFE_INTEGER
from ..state.memory import MemoryLimitStore
from .encode import SMALL as _MAX_ITEMS
from .encode import BOOL, LIST, MISSING, NULL, NUM, OBJ, STR, Context, Sym, string_of

__all__ = ["call_of", "decide", "Engines", "TooLarge", "holds"]


class TooLarge(Exception):
    """The model's call is too large to print (a list of millions of items)."""


def _number(fr: Fraction) -> int | float:
    if fr.denominator == 1 and abs(fr.numerator) <= MAX_SAFE_INTEGER:
        return int(fr.numerator)
    return float(fr)  # the engine re-run says whether the rounding mattered


def _value(m: Any, v: Sym, pad: str) -> Any:
    import z3 as z

    kind = m.eval(v.kind, model_completion=True).as_long()
    if kind == NULL:
        return None
    if kind == BOOL:
        return z.is_true(m.eval(v.b, model_completion=True))
    if kind == NUM:
        r = m.eval(v.n, model_completion=True)
        return _number(Fraction(r.numerator_as_long(), r.denominator_as_long()))
    if kind == STR:
        gap = m.eval(v.gap, model_completion=True).as_long()
        head = string_of(m.eval(v.s, model_completion=True))
        return head + pad * gap + string_of(m.eval(v.tail, model_completion=True)) if gap else head
    if kind == LIST:
        n = m.eval(v.len, model_completion=True).as_long()
        if n > _MAX_ITEMS:
            raise TooLarge(f"a list of {n} items")
        out = [_value(m, s, pad) for s in v.slots[:n]]
        if n > len(v.slots):
            filler = _value(m, v.filler, pad) if v.filler is not None else None
            out += [filler] * (n - len(v.slots))
        return out
    if kind == OBJ:
        obj = {}
        for key, child in v.keys.items():
            if m.eval(child.kind, model_completion=True).as_long() != MISSING:
                obj[key] = _value(m, child, pad)
        extra = m.eval(v.extra, model_completion=True).as_long()
        if extra > _MAX_ITEMS:
            raise TooLarge(f"an object of {extra} keys")
        i = 0
        while extra:
            name = f"extra{i}"
            i += 1
            if name not in obj:
                obj[name] = None
                extra -= 1
        return obj
    return None


def call_of(ctx: Context, m: Any) -> dict[str, Any]:
    """The call a model describes, in the JSON shape of a report."""
    import z3

    out: dict[str, Any] = {"tool": string_of(m.eval(ctx.roots["tool"].s, model_completion=True))}
    out["args"] = _value(m, ctx.roots["args"], ctx.pad)
    for r in ("identity", "session", "server"):
        sym = ctx.roots[r]
        present = m.eval(sym.kind, model_completion=True).as_long() == STR
        out[r] = _value(m, sym, ctx.pad) if present else None
    out["approved"] = z3.is_true(m.eval(ctx.approved, model_completion=True))
    return out


class Engines:
    """A policy's canonical data, decided afresh for each witness (a fresh limit store, so a
    limit never refuses the one call being shown)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        # each shown call is decided on a clock one longest window (and more) after the last,
        # so no limit counter remembers an earlier witness: every call meets empty limits
        windows = [float(x["window"]) for x in _limits(data)]
        self._step = 2.0 * max(windows, default=1.0) + 1.0
        self._now = 0.0
        self._engine = Engine.from_data(data, clock=self._clock, store=MemoryLimitStore())

    def _clock(self) -> float:
        return self._now

    def decide(self, call: dict[str, Any]) -> Any:
        self._now += self._step
        engine = self._engine
        return engine.decide(
            call["tool"],
            call["args"],
            identity=call["identity"],
            session=call["session"],
            server=call["server"],
            approved=call["approved"],
        )


def _limits(data: dict[str, Any]) -> list[dict[str, Any]]:
    out = list(data.get("all_tools", {}).get("limits", ()))
    for t in data.get("tools", {}).values():
        out += t.get("limits", ())
    return out


def decide(engines: Engines, call: dict[str, Any]) -> dict[str, Any]:
    """The real engine's decision of ``call`` as report fields."""
    d = engines.decide(call)
    return {"effect": d.effect, "code": d.code, "rule": d.rule}


def holds(cond: dict[str, Any], call: dict[str, Any]) -> bool | None:
    """Whether ``cond`` holds on ``call``, by the engine's own evaluator (``compile_condition``,
    the closure the engine runs): how a finding's claim about one rule is checked on a witness.
    None when the evaluation raises: the engine then fails closed (a deny_if that raises
    denies, a require that raises fails), so callers read None as the engine does."""
    args = call["args"]
    ctx = (
        {} if args is None else args,
        *(ABSENT if call[r] is None else call[r] for r in ("identity", "session", "server")),
        call["tool"],
        call["approved"] is True,
    )
    try:
        return bool(compile_condition(cond)(ctx))
    except Exception:  # noqa: BLE001 - a raising condition confirms nothing
        return None
