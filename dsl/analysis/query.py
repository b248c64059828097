"""``plr query``: a call that gets a given decision, or a proof that none does.

The decision term (dsl/analysis/decision.py) leaves out two things that also deny: limits
(stateful: call counters and spend caps) and step 3b (``invalid_args``: arguments a server
would read as another value). Both only ever turn a decision into a deny, and only a call the
term allows meets the limits, so "no call needs approval" stays a proof; but a call can always
be denied through them. ``--can allow`` asks for a call the term allows that every spend cap
takes on its first run (``FirstCall.fits``: a valid amount within each cap that applies), so the
engine allows it on fresh counters; a call that does not fit is refused on any counters, so
"no" stays a proof. ``--can deny`` answers from the term first (a deny by a rule), then from
each limit of the tool, then from invalid arguments.

Limits are modelled, not re-played call by call. The same call made again and again at one
instant is allowed while every counter it touches has room: a limit of N calls refuses the
(N+1)-th (sooner when a smaller limit counts the call too), a spend cap of M refuses the call
whose amount no longer fits, and a call whose amount alone passes a cap, or is no valid amount,
is refused the first time. The real engine decides every answer: a single call on fresh
counters, or for a limit reached, the last call allowed and the call refused, on a store whose
counters already hold the calls before them (``_Tally``: MemoryLimitStore's answers when every
hit is at one instant). So a limit of 2^53 - 1 calls is shown as exactly as a limit of 1.

A question the solver or the engine cannot settle is never answered as settled: ``via:
"invalid_args"`` (no rule and no limit denies a call) is given only when every rule and every
limit has been proven never to deny; otherwise that call is shown without that claim, and the
reason says what is open. Blocking a candidate that leaned on a regex or value function the
analysis does not model makes a later ``unsat`` no proof: it is reported as undecided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..engine import Engine
from .decision import OUTCOMES, LimitFacts, Limits, decision_term, tool_view
from .diff import tool_names
from .encode import MISSING, NUM, STR, Context, string_val
from .solver import z3 as load_z3
from .witness import Engines, TooLarge, call_of, decide

__all__ = ["QueryResult", "query_policy"]

_MAX_SUMMED = 100_000  # the most additions of a fractional spend-cap amount worked out one by one
_OPAQUE = "the rules use regexes or value functions the analysis does not model exactly"


@dataclass
class QueryResult:
    possible: bool | None  # None: could not be settled
    call: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    reason: str = ""
    # how the decision comes, when not by the call alone: "limit" (the call repeated ``repeat``
    # times in a row, the last one refused by a limit) or "invalid_args" (no rule and no limit
    # denies a call: proven)
    via: str | None = None
    repeat: int = 1


Confirm = Callable[[dict[str, Any]], "QueryResult | None"]


def _rule(lim: dict[str, Any]) -> str:
    return str(lim.get("rule") or f"{lim['max']} per {lim['window']} s")


def query_policy(data: dict[str, Any], effect: str, tool: str, identity: str | None = None) -> QueryResult:
    """Can a call of ``tool`` (with ``identity``, when given) get ``effect``?"""
    z = load_z3("plr query")
    view = tool_view(data, tool)
    # approval_required is decided before the limits; a first call meets only the spend caps
    limits = Limits.of(data, tool)
    limits = limits if effect == "deny" else limits.caps() if effect == "allow" else Limits([], [])
    ctx = Context(z, [*view.conditions(), *limits.conditions()], tool, set(tool_names(data)))
    term = decision_term(ctx, view)
    lims = limits.facts(ctx)
    first = limits.first_call(ctx, lims)
    who = []
    if identity is not None:
        me = ctx.roots["identity"]  # the whole string: a head ``s`` with no pad run or tail after it
        who = [me.kind == STR, me.gap == 0, me.s == string_val(z, identity)]
    tiers = _tiers(z, ctx, limits.data, identity)
    engines = Engines(data)

    def gets(e: str) -> Any:
        return z.Or(*[term == i for i, o in enumerate(OUTCOMES) if o[0] == e])

    if effect == "allow":  # allowed by the rules, and with an amount every spend cap takes
        r = _search(z, ctx, [*who, gets("allow"), first.fits], engines, "allow", tiers=tiers)
        if r.possible is False and any(f.amount is not None for f in lims) and _sat(z, ctx, [*who, gets("allow")]):
            r.reason = (
                "every call the rules allow is refused by a spend cap, on any counters: "
                "it has no valid amount or more than the cap"
            )
        return r
    r = _search(z, ctx, [*who, gets(effect)], engines, effect)
    if effect != "deny" or r.possible:
        return r
    # no rule denies a call (or none could be shown): a limit or invalid arguments still do
    open_: list[str] = [] if r.possible is False else [f"whether a rule denies a call: {r.reason}"]
    # a call gets as far as the counters only with a valid amount within every cap that applies
    fits = [first.fits]
    for lim in lims:
        found = _by_limit(z, ctx, [*who, gets("allow"), lim.applies], fits, lim, data, engines, tiers)
        if found.possible:
            return found
        if found.possible is None:
            open_.append(f"whether the limit {_rule(lim.data)} denies a call: {found.reason}")
    return _invalid_args(data, tool, identity, r, open_)


def _sat(z: Any, ctx: Context, facts: list[Any]) -> bool:
    """Whether some call satisfies ``facts`` (False also when the solver cannot tell)."""
    s = z.Solver()
    s.set("timeout", 20_000)
    s.add(*ctx.constraints, *facts)
    return str(s.check()) == "sat"


def _tiers(z: Any, ctx: Context, limits: list[dict[str, Any]], identity: str | None) -> list[list[Any]]:
    """Assumptions tried first, in order, for a readable call to repeat: no session, server
    (or identity, unless asked for) the rules do not need; spend-cap amounts that are whole
    numbers, then multiples of 1/1024. Such sums are exact in doubles, so how many calls fit
    under a cap is a division, not a run of additions to replay."""
    plain = z.Bool("plain!")
    roots = ["session", "server", *(["identity"] if identity is None else [])]
    ctx.constraints.append(z.Implies(plain, z.And(*[ctx.roots[r].kind == MISSING for r in roots])))
    paths = sorted({lim["of"] for lim in limits if lim.get("of") is not None})
    amounts = []
    for name, scale in (("whole-amounts!", 1), ("exact-amounts!", 1024)):
        if not paths:
            break
        flag = z.Bool(name)
        ctx.constraints.append(
            z.Implies(flag, z.And(*[z.Implies(ctx.value(p).kind == NUM, z.IsInt(ctx.value(p).n * scale)) for p in paths]))
        )
        amounts.append(flag)
    return [*([plain, a] for a in amounts), [plain], *([a] for a in amounts)]


def _by_limit(
    z: Any, ctx: Context, base: list[Any], fits: list[Any], lim: LimitFacts, data: dict[str, Any], engines: Engines,
    tiers: list[list[Any]],
) -> QueryResult:
    """A call that ``lim`` denies (or, once it is reached, a smaller limit counting the same
    call): possible False when the rules allow no call that it could ever refuse."""

    def reached(call: dict[str, Any]) -> QueryResult | None:
        return _reached(data, call)

    if lim.amount is None:  # a call counter: any call that reaches it, repeated
        return _search(z, ctx, [*base, *fits], engines, "allow", reached, tiers)
    a = lim.amount
    tries: list[tuple[list[Any], str, Confirm | None]] = [
        ([*base, a["over"]], "deny", None),  # an amount past the cap on its own: refused at once
        ([*base, *fits, a["positive"]], "allow", reached),  # repeated until the amount no longer fits
        ([*base, z.Not(a["valid"])], "deny", None),  # no valid amount (missing, negative, text): refused at once
    ]
    unsettled = []
    for facts, effect, confirm in tries:
        r = _search(z, ctx, facts, engines, effect, confirm, tiers)
        if r.possible:
            return r
        if r.possible is None:
            unsettled.append(r.reason)
    return QueryResult(None, reason="; ".join(unsettled)) if unsettled else QueryResult(False)


def _search(
    z: Any, ctx: Context, facts: list[Any], engines: Engines, effect: str, confirm: Confirm | None = None,
    tiers: Sequence[Sequence[Any]] = (),
) -> QueryResult:
    """A call satisfying ``facts`` that the engine decides with ``effect`` (and, given
    ``confirm``, that it shows: None from it asks for another call). ``tiers``: sets of
    assumptions tried first, in order, for a readable call."""
    s = z.Solver()
    s.set("timeout", 20_000)
    s.add(*ctx.constraints, *facts)
    blocked = False  # a candidate was ruled out by hand: unsat is then no proof
    for _ in range(8):
        # a readable call first; the tiers only ever pick among calls, never decide the answer
        if not any(str(s.check(ctx.small_flag, *ctx.prefer, *t)) == "sat" for t in tiers):
            answer = str(s.check(ctx.small_flag, *ctx.prefer))
        else:
            answer = "sat"
        if answer == "unsat":
            answer = str(s.check(ctx.small_flag))
        if answer == "unsat":
            answer = str(s.check())
            if answer == "sat":
                return QueryResult(None, reason="only calls too large to show get it")
        if answer == "unsat":
            return QueryResult(None, reason=_OPAQUE) if blocked else QueryResult(False)
        if answer != "sat":
            return QueryResult(None, reason=f"the solver could not decide ({s.reason_unknown()})")
        m = s.model()
        try:
            call = call_of(ctx, m)
        except TooLarge as e:
            return QueryResult(None, reason=str(e))
        d = decide(engines, call)
        if d["effect"] == effect:
            shown = QueryResult(True, call, d) if confirm is None else confirm(call)
            if shown is not None:
                return shown
            if not ctx.opaque:
                return QueryResult(None, reason="no limit refuses the call found, repeated (please report this)")
        elif not ctx.opaque:  # limits are modelled too: a call that fits them is not refused by them
            return QueryResult(
                None, reason=f"the analysis and the engine disagree on the call found ({d['code']}, "
                f"{d.get('rule') or 'no rule'}) (please report this)",
            )
        # a candidate that leaned on a regex or value function: ask for another one
        blocked = True
        s.add(z.Not(z.And(*[ctx.atoms[k] == m.eval(a, model_completion=True) for k, a in ctx.atoms.items()])))
    return QueryResult(None, reason=_OPAQUE)


# --- a limit reached, without re-playing every call before it ---------------------------------


class _Tally:
    """A limit store at one instant whose counters can be set: what MemoryLimitStore answers
    when every hit has the same time (nothing leaves a window; every refusal waits one whole
    window; the entry that waits longest, the first of equals, is named). The engine can then
    decide a call as the (N+1)-th in a row without N calls. ``last``: what the last call let
    through took, as (key, max, amount; None for a counted call)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.spent: dict[str, float] = {}
        self.last: list[tuple[str, float, Any]] = []

    def acquire(self, keys: Sequence[tuple[str, int, float]], now: float) -> float | None:
        r = self.acquire_which(keys, now)
        return None if r is None else r[0]

    def acquire_which(self, keys: Sequence[tuple[str, int, float]], now: float) -> tuple[float, int] | None:
        r = self.spend([(k, mx, w, None) for k, mx, w in keys], now, "")
        return None if r is None else (r[0], r[1])

    def spend(
        self, entries: Sequence[tuple[str, float, float, Any]], now: float, token: str
    ) -> tuple[float, int, float] | None:
        worst: tuple[float, int, float] | None = None
        for i, (key, mx, window, amount) in enumerate(entries):
            if amount is None:
                full, left = self.calls.get(key, 0) >= mx, 0.0
            else:
                used = self.spent.get(key, 0.0)
                full, left = used + amount > mx, mx - used
            if full and (worst is None or window > worst[0]):
                worst = (float(window), i, left)
        if worst is not None:
            return worst
        self.last = []
        for key, mx, _window, amount in entries:
            if amount is None:
                self.calls[key] = self.calls.get(key, 0) + 1
            else:
                self.spent[key] = self.spent.get(key, 0.0) + float(amount)
            self.last.append((key, mx, amount))
        return None

    def fill(self, took: list[tuple[str, float, Any]], n: int) -> None:
        """The counters as ``n`` calls that each took ``took`` leave them (nothing else counted)."""
        self.calls, self.spent = {}, {}
        for key, _mx, amount in took:
            if amount is None:
                self.calls[key] = n
            else:
                self.spent[key] = _added(float(amount), n)


def _exact(a: float, n: int) -> bool:
    """Whether ``n`` times ``a`` and every sum on the way are doubles: ``a`` is m / 2^k (every
    double is), so its multiples up to ``n`` are exact while n * m stays within 2^53."""
    return n * Fraction(a).numerator <= 2**53


def _added(a: float, n: int) -> float:
    """``n`` amounts ``a`` added up one IEEE addition at a time, as every store adds them
    (``state.base.added_up``); a product when no addition on the way rounds."""
    if _exact(a, n):
        return n * a
    used = 0.0
    for _ in range(n):  # _room keeps n within _MAX_SUMMED here
        used += a
    return used


class _Unsettled(Exception):
    """How many calls fit cannot be worked out exactly (a fractional amount added too often)."""


def _fit(mx: float, a: float, bound: int | None) -> int:
    """How many amounts ``a`` (> 0) in a row a spend cap of ``mx`` lets through (the store
    refuses the call when ``used + a > mx``), or ``bound`` when at least that many."""
    n = int(Fraction(mx) // Fraction(a))
    if _exact(a, n + 1):  # no sum up to the refused call rounds: a division
        return n if bound is None else min(n, bound)
    n, used = 0, 0.0
    while used + a <= mx and (bound is None or n < bound):
        if n >= _MAX_SUMMED:
            raise _Unsettled(f"an amount of {a!r} added up more than {_MAX_SUMMED:,} times")
        used += a
        n += 1
    return n


def _room(took: list[tuple[str, float, Any]]) -> int | None:
    """How many calls in a row, each taking ``took``, fit before one is refused (None: none
    ever is: every counter it touches is a spend cap it adds 0 to)."""
    counters = [int(mx) for _key, mx, amount in took if amount is None]  # max N: the (N+1)-th is refused
    bound = min(counters, default=None)
    caps = sorted(((float(mx), float(a)) for _key, mx, a in took if a is not None and a != 0), key=lambda c: c[0] / c[1])
    for mx, a in caps:  # the tightest first: later ones only need to be known up to it
        bound = _fit(mx, a, bound)
    return bound


def _reached(data: dict[str, Any], call: dict[str, Any]) -> QueryResult | None:
    """``call`` made again and again at one instant until a limit refuses it: the engine's
    decision of the refused call and its number in the row; None when no limit ever refuses it
    (QueryResult(None) when that number cannot be worked out exactly)."""
    tally = _Tally()
    engine = Engine.from_data(data, clock=lambda: 0.0, store=tally)
    first = _run(engine, call)
    if first.effect != "allow":
        return QueryResult(None, reason=f"the call found is not allowed on fresh counters ({first.code}) (please report this)")
    took = list(tally.last)
    try:
        room = _room(took)
    except _Unsettled as e:
        return QueryResult(None, call, reason=f"how many calls fit under the limit is not worked out ({e})")
    if room is None:
        return None
    tally.fill(took, room - 1)
    last = _run(engine, call)
    tally.fill(took, room)
    refused = _run(engine, call)
    if last.effect != "allow" or (refused.effect, refused.code) != ("deny", "rate_limited"):
        return QueryResult(None, reason="the counters and the engine disagree (please report this)")
    d = {"effect": refused.effect, "code": refused.code, "rule": refused.rule}
    return QueryResult(True, call, d, via="limit", repeat=room + 1)


def _run(engine: Engine, call: dict[str, Any]) -> Any:
    return engine.decide(
        call["tool"], call["args"], identity=call["identity"], session=call["session"],
        server=call["server"], approved=call["approved"],
    )


def _invalid_args(data: dict[str, Any], tool: str, identity: str | None, before: QueryResult, open_: list[str]) -> QueryResult:
    """A call whose arguments hold an integer beyond 2^53 (a server may read it as another
    number): the engine denies it before any rule (``invalid_args``). Shown as the way a call
    is denied (``via``) only when no rule and no limit can deny one: proven, not assumed."""
    call = {"tool": tool, "args": {"n": 2**60}, "identity": identity, "session": None, "server": None, "approved": False}
    d = decide(Engines(data), call)
    unsettled = "not settled: " + "; ".join(open_)
    if d["effect"] != "deny":
        return QueryResult(None, reason=unsettled) if open_ else before
    if open_:
        return QueryResult(True, call, d, reason=f"denied for its arguments; whether a rule or a limit denies a call is {unsettled}")
    return QueryResult(True, call, d, via="invalid_args")
