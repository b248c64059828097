"""The ``Engine``: decides each MCP tool call against a prepared policy, in microseconds.

The decision order is the one in ``spec/policy-json.md`` ("Decision"). Two promises hold for
any input: evaluating a condition never raises (a condition that does is treated as the
denying outcome: a ``deny_if`` holds, a ``require`` fails), and ``decide`` never raises (an
unexpected error is a ``deny`` with code ``error``). Nothing fails open.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..state.base import LimitStore, StateUnavailable
from ..state.memory import MemoryLimitStore
from ..validate import Data, check_data
from .arguments import argument_problem
from .calendar import period
from .conditions import _EMPTY_ARGS, MISSING, Ctx
from .decision import Decision, TraceStep
from .describe import _secs, _short
from .prepare import OTHER, _Cond, _default_allow, _default_deny, _hidden, _Lim, _Prepared, _refused, _Tool, prepare
from .records import Record, _set

if TYPE_CHECKING:
    from ..policy import Policy

__all__ = ["Engine", "Charge"]


class Charge(Record, dataclass=True):
    """What an allowed call took from its `refund on error` limits: the counter keys and the
    token the store recorded them under. ``Engine.refund(decision)`` gives it back."""

    __slots__ = ("keys", "token")  # a frozen dataclass, written out (records.py)
    keys: tuple[str, ...]
    token: str

    def __init__(self, keys: tuple[str, ...], token: str) -> None:
        _set(self, "keys", keys)
        _set(self, "token", token)


def amount_problem(v: Any) -> str | None:
    """Why ``v`` cannot be added to a spend cap (None if it can): a spend cap counts only a
    finite number >= 0; anything else (missing, text, true, NaN, infinity, negative) is denied,
    never counted as 0."""
    if v is MISSING:
        return "is missing"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"is not a number ({_short(v)})"
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return f"is not a finite number ({v})"
    if v < 0:
        return f"is negative ({_short(v)})"
    return None


def _scope_value(v: Any) -> str:
    """The counter-key part for a session or identity (callers should pass str or None)."""
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    try:
        return f"\x01{type(v).__name__}:{v!r}"  # kept apart from ordinary names
    except Exception:  # noqa: BLE001 - e.g. repr of a 5000-digit int
        return f"\x01{type(v).__name__}:{id(v)}"


def _applying(lims: tuple[_Lim, ...], ctx: Ctx) -> tuple[_Lim, ...]:
    """The limits that apply to this call: those without `if`, and those whose `if` holds (or
    raises: a limit that cannot tell is applied, failing closed)."""
    out = []
    for lim in lims:
        if lim.cond is not None:
            try:
                if not lim.cond(ctx):
                    continue
            except Exception:  # noqa: BLE001 - fail closed: the limit applies
                pass
        out.append(lim)
    return tuple(out)


def _granted(r: Decision | Charge, allowed: Decision) -> Decision:
    """The answer of ``_acquire`` that is not None: its refusal, or ``allowed`` carrying the
    ``Charge`` of the call's `refund on error` limits."""
    if r.__class__ is Decision:
        return r  # type: ignore[return-value]
    return allowed._replace(charge=r)  # type: ignore[no-any-return]


def _amount(x: Any) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    return f"{x:g}" if isinstance(x, float) else str(x)


def _named(d: Decision, tool: Any) -> Decision:
    """A decision of ``other`` with the called tool's name in its reason."""
    if OTHER not in d.reason:
        return d
    return Decision(d.effect, d.code, d.reason.replace(OTHER, _short(tool)), d.rule, d.retry_after, d.trace, d.charge)


def _witness(c: _Cond, ctx: Ctx, trace: list[TraceStep]) -> None:
    """Trace steps naming the item that decided each `every`/`some` of the condition."""
    if c.witness is None:
        return
    notes: list[tuple[str, bool]] = []
    try:
        c.witness(ctx, notes)
    except Exception:  # noqa: BLE001 - a trace never changes or breaks the decision
        return
    trace.extend(TraceStep(f"  {text}", value, c.rule) for text, value in notes)


def _unevaluated(d: Decision, text: str, what: str) -> Decision:
    """``d`` for a condition whose evaluation raised (``what``: the trace's "error (ValueError):
    treated as ..."), its reason saying so: the generated "denied because COND" would claim
    that COND held. Only the reason changes, never the decision. (The only raise a JSON call
    can cause today: a regex given a string with a lone surrogate, which RE2 cannot read.)"""
    err = what.split(":", 1)[0]  # "error (ValueError)"
    note = f"{text} could not be evaluated ({err.removeprefix('error ').strip('()')}), so it is {what.split(': ', 1)[-1]}"
    reason = d.reason
    for generated in (f"denied because {text}", f"requirement not met without approval: {text}", f"requirement not met: {text}"):
        if reason.endswith(generated):
            lead = "denied" if generated.startswith("denied") else generated.rsplit(": ", 1)[0].removesuffix(f": {text}")
            return d._replace(reason=f"{reason[: -len(generated)]}{lead}: {note}")  # type: ignore[no-any-return]
    return d._replace(reason=f"{reason} ({note})")  # type: ignore[no-any-return]


def _error(e: BaseException) -> Decision:
    """The deny for a bug: bounded text, even from an exception whose ``str()`` raises."""
    try:
        detail = f"{type(e).__name__}: {e}"
    except Exception:  # an exception whose str() raises
        detail = type(e).__name__
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return Decision("deny", "error", f"internal error while deciding: {detail}")


class Engine:
    """Decides MCP tool calls against a policy; thread-safe if its ``LimitStore`` is."""

    def __init__(
        self,
        policy: Policy,
        clock: Callable[[], float] = time.monotonic,
        store: LimitStore | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self._attach(prepare(policy.to_dict(), policy), clock, store, wall)

    def _attach(
        self, p: _Prepared, clock: Callable[[], float], store: LimitStore | None, wall: Callable[[], float] | None = None
    ) -> None:
        self._clock = clock
        # calendar windows need the date: the wall clock (an injected clock serves as both)
        self._wall: Callable[[], float] = wall if wall is not None else (time.time if clock is time.monotonic else clock)
        self._store: LimitStore = store if store is not None else MemoryLimitStore()
        self._acquire_which: Callable[..., tuple[float, int] | None] | None = getattr(
            self._store, "acquire_which", None
        )
        self._peek_which: Callable[..., tuple[float, int] | None] | None = getattr(self._store, "peek_which", None)
        self._p = p

    @classmethod
    def from_data(
        cls,
        data: Data,
        clock: Callable[[], float] = time.monotonic,
        store: LimitStore | None = None,
        wall: Callable[[], float] | None = None,
    ) -> "Engine":
        """An engine from the canonical dump of an already validated policy (``Policy.to_dict()``,
        e.g. read back from the compiled-policy cache): no pydantic on this path."""
        try:
            check_data(data)
        except ValueError as e:
            raise _refused(f"policy data is not in the canonical form: {e}") from None
        except RecursionError:
            raise _refused("policy conditions are nested too deeply") from None
        engine = cls.__new__(cls)
        engine._attach(prepare(data), clock, store, wall)
        return engine

    @property
    def policy(self) -> Policy:
        """The policy currently in force (validated from the data on first use if need be)."""
        p = self._p
        if p.source is not None:
            return p.source
        from ..policy import load_policy

        assert p.data is not None
        return load_policy(p.data)

    @property
    def store(self) -> LimitStore:
        return self._store

    def replace_policy(self, policy: Policy) -> None:
        """Hot reload: prepare the new policy fully, then swap it in with one assignment.

        Limit counters are kept (keys name the tool, the limit's position and its scope). If
        preparing fails the old policy stays in force and the error propagates.
        """
        self._p = prepare(policy.to_dict(), policy)

    def visible(self, tool_names: Iterable[str]) -> list[str]:
        """A server's ``tools/list`` names minus the hidden ones, order kept."""
        p = self._p
        if p.hide_all:
            return []
        hide = p.hide
        return [n for n in tool_names if n not in hide]

    def decide(
        self,
        tool: str,
        args: Any = None,
        *,
        identity: str | None = None,
        session: str | None = None,
        server: str | None = None,
        approved: bool = False,
        explain: bool = False,
    ) -> Decision:
        """Decide one call; never raises (an internal failure is a ``deny`` with code ``error``)."""
        try:
            p = self._p  # one read: a concurrent replace_policy never mixes two policies
            if explain:
                return self._explain(p, tool, args, identity, session, server, approved)
            t = p.fast.get(tool)
            if t is None:
                if p.hide_all or tool in p.hide:
                    return _hidden(tool)
                if p.other is not None:  # `all_tools` has conditions (or grants) for it
                    return _named(self._check(p.other, tool, args, identity, session, server, approved), tool)
                if not p.default_allow:
                    return _default_deny(tool)
                # None and {} hold nothing to refuse; anything else that is not an object is refused
                if args is not None and (args.__class__ is not dict or args) and (bad := argument_problem(args)):
                    return Decision("deny", "invalid_args", bad)
                if p.all_limits:
                    refused = self._acquire(p.all_limits, session, identity, None, args=args)
                    if refused is not None:
                        return _granted(refused, _default_allow(tool))
                return _default_allow(tool)
            if t.__class__ is Decision:
                if (
                    args is not None
                    and (args.__class__ is not dict or args)
                    and t.effect != "deny"  # type: ignore[union-attr]
                    and (bad := argument_problem(args)) is not None
                ):
                    return Decision("deny", "invalid_args", bad)
                return t
            return self._check(t, tool, args, identity, session, server, approved)  # type: ignore[arg-type]
        except Exception as e:  # noqa: BLE001 - the one place that turns bugs into a deny
            return _error(e)

    def _check(
        self, t: _Tool, tool: str, args: Any, identity: Any, session: Any, server: Any, approved: bool
    ) -> Decision:
        """``_run`` without a trace, for the common outcomes; a failing ``require`` (whose
        answer depends on approval and names a requirement) is left to ``_run``."""
        if t.action == "deny":
            return t.denied
        if args is not None and (args.__class__ is not dict or args):  # None and {} hold nothing to refuse
            bad = argument_problem(args)
            if bad is not None:
                return Decision("deny", "invalid_args", bad)
        ctx: Ctx = (
            _EMPTY_ARGS if args is None else args,
            MISSING if identity is None else identity,
            MISSING if session is None else session,
            MISSING if server is None else server,
            tool,
            approved is True,
        )
        for pred, denied in t.deny_checks:
            try:
                if pred(ctx):
                    return denied
            except Exception:  # noqa: BLE001 - fail closed: the deny_if holds (_run says why)
                return self._run(t, tool, args, identity, session, server, approved)
        for pred in t.require_preds:
            try:
                ok = pred(ctx)
            except Exception:  # noqa: BLE001 - fail closed: the require fails
                ok = False
            if not ok:
                return self._run(t, tool, args, identity, session, server, approved)
        if t.approval and approved is not True:
            return t.needs_approval
        if t.limits:
            lims = _applying(t.limits, ctx) if t.cond_limits else t.limits
            refused = self._acquire(lims, session, identity, None, args=args) if lims else None
            if refused is not None:
                return _granted(refused, t.allowed)
        return t.allowed

    # -- the checks of one governed tool (steps 3-8) -------------------------------------

    def _run(
        self,
        t: _Tool,
        tool: str,
        args: Any,
        identity: Any,
        session: Any,
        server: Any,
        approved: bool,
        trace: list[TraceStep] | None = None,
    ) -> Decision:
        if t.action == "deny":
            if trace is not None:
                trace.append(TraceStep("action == deny", True, t.rule))
            return t.denied
        bad = argument_problem(args)
        if bad is not None:
            if trace is not None:
                trace.append(TraceStep("arguments a server reads as decided", bad))
            return Decision("deny", "invalid_args", bad)
        approved = approved is True
        ctx: Ctx = (
            _EMPTY_ARGS if args is None else args,
            MISSING if identity is None else identity,
            MISSING if session is None else session,
            MISSING if server is None else server,
            tool,
            approved,
        )
        for c in t.deny_if:
            try:
                hit: bool | str = bool(c.pred(ctx))
            except Exception as e:  # noqa: BLE001 - fail closed: the deny_if holds
                hit = f"error ({type(e).__name__}): treated as holding"
            if trace is not None:
                trace.append(TraceStep(f"deny_if {c.text}", hit, c.rule))
                _witness(c, ctx, trace)
            if hit:
                return c.decision if hit is True else _unevaluated(c.decision, c.text, hit)
        if t.require:
            failing: list[_Cond] = []
            raised: dict[int, str] = {}  # id of a requirement that raised -> what the trace says
            for c in t.require:
                try:
                    ok: bool | str = bool(c.pred(ctx))
                except Exception as e:  # noqa: BLE001 - fail closed: the require fails
                    ok = raised[id(c)] = f"error ({type(e).__name__}): treated as failing"
                if trace is not None:
                    trace.append(TraceStep(f"require {c.text}", ok, c.rule))
                    _witness(c, ctx, trace)
                if ok is not True:
                    failing.append(c)
            if failing:
                if approved:
                    c = failing[0]
                    return _unevaluated(c.decision, c.text, raised[id(c)]) if id(c) in raised else c.decision
                actx: Ctx = ctx[:5] + (True,)
                for c in failing:
                    try:
                        ok = bool(c.pred(actx))
                    except Exception as e:  # noqa: BLE001
                        ok = raised[id(c)] = f"error ({type(e).__name__}): treated as failing"
                    if trace is not None:
                        trace.append(TraceStep(f"require {c.text} (if approved)", ok, c.rule))
                    if ok is not True:  # approval would not help: name this requirement
                        return _unevaluated(c.decision, c.text, raised[id(c)]) if id(c) in raised else c.decision
                c = failing[0]
                approval: Decision = c.approval  # type: ignore[assignment]
                return _unevaluated(approval, c.text, raised[id(c)]) if id(c) in raised else approval
        if t.action == "require_approval":
            if trace is not None:
                trace.append(TraceStep("action == require_approval: approved", approved, t.rule))
            if not approved:
                return t.needs_approval
        if t.limits:
            lims = t.limits
            if t.cond_limits:
                lims = _applying(t.limits, ctx)
                if trace is not None:
                    for lim in t.limits:
                        if lim.cond is not None:
                            trace.append(TraceStep(f"limit {lim.text} if {lim.cond_text}: applies", lim in lims, lim.rule))
            refused = self._acquire(lims, session, identity, trace, args=args) if lims else None
            if refused is not None:
                return _granted(refused, t.allowed)
        return t.allowed

    def rate_limit_if_approved(
        self, tool: str, *, identity: str | None = None, session: str | None = None
    ) -> Decision | None:
        """The ``rate_limited`` (or ``state_unavailable``) deny that ``tool`` would get now if a
        human approved it, counting nothing; None when its limits have room or it has none (or
        the store cannot look without counting). The proxy asks this before it asks a human:
        approving a call that its limit refuses anyway only spends the human's attention."""
        t = self._p.fast.get(tool)
        if t is None or t.__class__ is Decision or not t.limits or self._peek_which is None:  # type: ignore[union-attr]
            return None
        # A limit with an `if` may not apply to the call once approved (its arguments are not
        # known here): looked at, it could refuse a call it would not limit, so it is left to the
        # decision after approval, which counts it.
        # A spend cap's answer depends on the amount, which may change: left to the decision too.
        lims = tuple(lim for lim in t.limits if lim.cond is None and not lim.ledger)  # type: ignore[union-attr]
        return self._acquire(lims, session, identity, None, peek=True) if lims else None

    def _acquire(
        self,
        lims: tuple[_Lim, ...],
        session: Any,
        identity: Any,
        trace: list[TraceStep] | None,
        *,
        peek: bool = False,
        args: Any = None,
    ) -> Decision | Charge | None:
        """Step 7 and the counting of step 8, in one atomic store call (``peek``: count nothing).
        None (or, for `refund on error` limits, the ``Charge`` taken) when the call has room."""
        if any(lim.ledger or lim.calendar is not None for lim in lims):
            return self._acquire_general(lims, session, identity, trace, peek, args)
        if len(lims) == 1:
            lim0 = lims[0]
            scope = lim0.scope
            who = "" if scope == 0 else _scope_value(session if scope == 1 else identity)
            keys = [(lim0.prefix + who, lim0.max, lim0.window)]
        else:
            scopes = ("", _scope_value(session), _scope_value(identity))
            keys = [(lim.prefix + scopes[lim.scope], lim.max, lim.window) for lim in lims]
        now = self._clock()
        which = self._peek_which if peek else self._acquire_which
        try:
            return self._acquired(lims, keys, now, which, trace)
        except StateUnavailable as e:
            if trace is not None:
                trace.append(TraceStep("limits", f"state unavailable: {e}"))
            return Decision("deny", "state_unavailable", f"limit counters unavailable ({e}); denied to stay safe")

    def _acquired(
        self,
        lims: tuple[_Lim, ...],
        keys: list[tuple[str, int, float]],
        now: float,
        which: Callable[..., tuple[float, int] | None] | None,
        trace: list[TraceStep] | None,
    ) -> Decision | None:
        if which is not None:
            r = which(keys, now)
            if r is None:
                if trace is not None:
                    trace.extend(TraceStep(f"limit {x.text}: room left", True, x.rule) for x in lims)
                return None
            retry, i = r
            lim: _Lim | None = lims[i] if 0 <= i < len(lims) else None
        else:
            ra = self._store.acquire(keys, now)
            if ra is None:
                if trace is not None:
                    trace.extend(TraceStep(f"limit {x.text}: room left", True, x.rule) for x in lims)
                return None
            retry = ra
            lim = lims[0] if len(lims) == 1 else None
        what = lim.text if lim is not None else "limit reached"
        reason = f"rate limit: {what}; retry after {_secs(retry)} s"
        rule = lim.rule if lim is not None else None
        if trace is not None:
            trace.append(TraceStep(f"limit {what}", f"reached; retry after {_secs(retry)} s", rule))
        return Decision("deny", "rate_limited", reason, rule, float(retry))

    def _acquire_general(
        self,
        lims: tuple[_Lim, ...],
        session: Any,
        identity: Any,
        trace: list[TraceStep] | None,
        peek: bool,
        args: Any,
    ) -> Decision | Charge | None:
        """``_acquire`` with calendar windows, spend caps or refunds: a calendar limit's key names
        its period (so the store needs nothing new, and ``retry_after`` is the next boundary); a
        spend cap or refundable limit goes to the store's ledger (``spend``) with its amount."""
        scopes = ("", _scope_value(session), _scope_value(identity))
        wall = self._wall() if any(lim.calendar is not None for lim in lims) else 0.0
        ends: list[float | None] = []
        entries: list[tuple[str, Any, float, Any]] = []
        for lim in lims:
            key = lim.prefix + scopes[lim.scope]
            window = lim.window
            end: float | None = None
            if lim.calendar is not None:
                start, end = period(lim.calendar, wall, lim.tz)
                key += f"\x00@{start:.0f}"
                window = max(end - start, 1.0)
            amount: Any = None
            if lim.amount is not None:
                v = lim.amount((_EMPTY_ARGS if args is None else args,))
                bad = amount_problem(v)
                if bad is not None:
                    reason = f"spend cap {lim.text}: {lim.of} {bad}; a spend cap needs a finite number >= 0"
                    if trace is not None:
                        trace.append(TraceStep(f"limit {lim.text}", f"{lim.of} {bad}", lim.rule))
                    return Decision("deny", "invalid_args", reason, lim.rule)
                amount = v
            elif lim.ledger:
                amount = 1
            ends.append(end)
            entries.append((key, lim.max, window, amount))
        now = self._clock()
        ledger = any(e[3] is not None for e in entries)
        try:
            if ledger:
                spend = getattr(self._store, "spend", None)
                if spend is None or peek:
                    raise StateUnavailable(f"the {type(self._store).__name__} keeps no spend caps or refunds")
                token = os.urandom(12).hex()
                r = spend(entries, now, token)
                if r is None:
                    if trace is not None:
                        trace.extend(TraceStep(f"limit {x.text}: room left", True, x.rule) for x in lims)
                    refundable = tuple(e[0] for e, lim in zip(entries, lims, strict=True) if lim.refund)
                    return Charge(refundable, token) if refundable else None
                retry, i, left = r
            else:
                which = self._peek_which if peek else self._acquire_which
                keys = [(k, mx, w) for k, mx, w, _ in entries]
                if which is not None:
                    r2 = which(keys, now)
                else:
                    ra = self._store.acquire(keys, now)
                    r2 = None if ra is None else (ra, 0)
                if r2 is None:
                    if trace is not None:
                        trace.extend(TraceStep(f"limit {x.text}: room left", True, x.rule) for x in lims)
                    return None
                retry, i = r2
                left = None
        except StateUnavailable as e:
            if trace is not None:
                trace.append(TraceStep("limits", f"state unavailable: {e}"))
            return Decision("deny", "state_unavailable", f"limit counters unavailable ({e}); denied to stay safe")
        lim = lims[i] if 0 <= i < len(lims) else lims[0]
        end = ends[i] if 0 <= i < len(ends) else None
        if end is not None:  # a calendar period: room again at its end, whatever the store says
            retry = max(end - self._wall(), 0.0)
        if lim.amount is not None:
            shown = max(float(left or 0.0), 0.0)
            reason = (
                f"spend cap: {lim.text}; {_amount(shown)} left, this call asks {_amount(entries[i][3])}; "
                f"retry after {_secs(retry)} s"
            )
        else:
            reason = f"rate limit: {lim.text}; retry after {_secs(retry)} s"
        if trace is not None:
            trace.append(TraceStep(f"limit {lim.text}", f"reached; retry after {_secs(retry)} s", lim.rule))
        return Decision("deny", "rate_limited", reason, lim.rule, float(retry))

    def refund(self, decision: Decision) -> bool:
        """Give back what an allowed call took from its `refund on error` limits (the proxy
        calls this when the upstream answers the call with an error). True if given back;
        False when there was nothing to give or the store could not (the quota then stays
        spent: the safe side). Never raises."""
        charge = decision.charge
        if not isinstance(charge, Charge):
            return False
        refund = getattr(self._store, "refund", None)
        if refund is None:
            return False
        try:
            refund(charge.keys, charge.token)
        except Exception:  # noqa: BLE001 - a refund that fails leaves the quota spent
            return False
        return True

    # -- explain: the same steps, recording each check -----------------------------------

    def _explain(
        self, p: _Prepared, tool: str, args: Any, identity: Any, session: Any, server: Any, approved: bool
    ) -> Decision:
        trace: list[TraceStep] = []
        hidden = p.hide_all or tool in p.hide
        trace.append(TraceStep("hidden (tool in hide)" if not p.hide_all else 'hidden ("*" in hide)', hidden))
        if hidden:
            d = _hidden(tool)
        else:
            t = p.tools.get(tool)
            trace.append(TraceStep("governed (tool in tools)", t is not None, t.rule if t else None))
            if t is None and p.other is not None:
                trace.append(TraceStep("all_tools conditions (tool not in tools)", True))
                d = _named(self._run(p.other, tool, args, identity, session, server, approved, trace), tool)
                trace[:] = [TraceStep(x.check.replace(OTHER, _short(tool)), x.result, x.rule) for x in trace]
            elif t is None:
                trace.append(TraceStep("default", p.default))
                bad = None if not p.default_allow else argument_problem(args)
                if not p.default_allow:
                    d = _default_deny(tool)
                elif bad is not None:
                    trace.append(TraceStep("arguments a server reads as decided", bad))
                    d = Decision("deny", "invalid_args", bad)
                else:
                    refused = self._acquire(p.all_limits, session, identity, trace, args=args) if p.all_limits else None
                    d = _granted(refused, _default_allow(tool)) if refused is not None else _default_allow(tool)
            else:
                d = self._run(t, tool, args, identity, session, server, approved, trace)
        return Decision(d.effect, d.code, d.reason, d.rule, d.retry_after, tuple(trace), d.charge)
