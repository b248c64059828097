"""The decision engine: a loaded policy, prepared once, decides each MCP tool call in microseconds.

``Engine(policy)`` (or ``Engine.from_data(policy.to_dict())``, the path that never imports
pydantic: the compiled-policy cache feeds it) turns the policy into closures up front (a frozenset of
hidden names, a dict from tool name to a prepared tool, one closure per condition with its path
split, its regex compiled and its operator chosen), so ``decide`` does no parsing, no string
dispatch and no work for tools that have nothing to check. The decision order is the one in
``spec/policy-json.md`` ("Decision"); condition meaning is ``spec/language.md`` ("Conditions").

Two promises hold for any input: evaluating a condition never raises (a condition that does
is treated as the denying outcome: a ``deny_if`` holds, a ``require`` fails), and ``decide``
never raises (an unexpected error is a ``deny`` with code ``error``). Nothing fails open.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from .errors import PlrError
from .regex import re2_search_test
from .vocab import MAX_LIMIT_COUNT, MAX_WINDOW_SECONDS, OPS, VALUELESS_OPS
from .vocab import parse_path as _parse_path

if TYPE_CHECKING:
    from .policy import Policy

# A condition, limit, tool or whole policy in the canonical dump form (``Policy.to_dict()``):
# the engine prepares from this plain data, so deciding never needs pydantic.
Data = dict[str, Any]

__all__ = [
    "Engine",
    "Decision",
    "TraceStep",
    "LimitStore",
    "MemoryLimitStore",
    "StateUnavailable",
    "MISSING",
    "Effect",
    "Code",
]

Effect = Literal["allow", "deny", "approval_required"]
# "allowed" (a governed tool passed every check) is not in the spec's list, which names only the
# codes of refusals and of the default; an allowed call still needs a code to print and log.
# "tool_changed" is the proxy's (dsl/proxy/pins.py): a pinned tool's definition changed.
Code = Literal[
    "allowed", "hidden", "denied", "default", "deny_if", "require", "rate_limited", "error", "state_unavailable",
    "tool_changed",
]  # fmt: skip


class StateUnavailable(Exception):
    """A shared ``LimitStore`` cannot be reached: the call is denied (``state_unavailable``)."""


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One check made while deciding; ``result`` is a bool, or text when there is more to say."""

    check: str
    result: bool | str
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one call, why, and (with ``explain=True``) every check that was made."""

    effect: Effect
    code: Code
    reason: str
    rule: str | None = None
    retry_after: float | None = None
    trace: tuple[TraceStep, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable form (``plr eval --format json``, audit log)."""
        return {
            "effect": self.effect,
            "code": self.code,
            "reason": self.reason,
            "rule": self.rule,
            "retry_after": self.retry_after,
        }


# --- limit counters -----------------------------------------------------------------------


@runtime_checkable
class LimitStore(Protocol):
    """Sliding-window counters shared by every decision (and kept across policy reloads).

    One atomic method so a shared store (Redis) can implement it with a script. A store may
    also offer ``acquire_which(keys, now) -> (retry_after, index) | None`` (same contract,
    plus the index of the key that set ``retry_after``) so the engine can name the limit hit.
    """

    def acquire(self, keys: Sequence[tuple[str, int, float]], now: float) -> float | None:
        """Record one hit at ``now`` on every ``(key, max, window)`` if all have room.

        A hit at ``t`` counts while ``now - t < window``. If every key has fewer than ``max``
        counted hits, record the hit on all of them and return None; otherwise record nothing
        and return the seconds until every key has room for one more call.
        """
        ...


class MemoryLimitStore:
    """In-process ``LimitStore``: a deque of hit times per key behind one lock."""

    __slots__ = ("_lock", "_hits", "_windows", "_sweep_at")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._windows: dict[str, float] = {}
        self._sweep_at = 1024

    def acquire(self, keys: Sequence[tuple[str, int, float]], now: float) -> float | None:
        """See ``LimitStore.acquire``."""
        r = self.acquire_which(keys, now)
        return None if r is None else r[0]

    def acquire_which(self, keys: Sequence[tuple[str, int, float]], now: float) -> tuple[float, int] | None:
        """``acquire`` that also says which key (index into ``keys``) set ``retry_after``."""
        if len(keys) == 1:
            return self._acquire_one(keys[0], now)
        with self._lock:
            hits = self._hits
            queues: list[deque[float]] = []
            worst: float | None = None
            worst_i = -1
            for i, (key, mx, window) in enumerate(keys):
                dq = hits.get(key)
                if dq is None:
                    dq = hits[key] = deque()
                    self._windows[key] = window
                while dq and now - dq[0] >= window:  # exactly `window` later it no longer counts
                    dq.popleft()
                n = len(dq)
                if n >= mx:
                    # one more call fits once the (n - mx + 1) oldest counted hits have expired
                    wait = dq[n - mx] + window - now
                    if worst is None or wait > worst:
                        worst, worst_i = wait, i
                queues.append(dq)
            if worst is not None:
                return (max(worst, 0.0), worst_i)
            for dq, (key, _mx, window) in zip(queues, keys, strict=True):
                dq.append(now)
                self._windows[key] = window
            if len(hits) > self._sweep_at:
                self._sweep(now)
            return None

    def peek_which(self, keys: Sequence[tuple[str, int, float]], now: float) -> tuple[float, int] | None:
        """What ``acquire_which`` would answer now, recording nothing."""
        worst: tuple[float, int] | None = None
        with self._lock:
            for i, (key, mx, window) in enumerate(keys):
                counted = [t for t in self._hits.get(key, ()) if now - t < window]
                if len(counted) >= mx:
                    wait = max(counted[len(counted) - mx] + window - now, 0.0)
                    if worst is None or wait > worst[0]:
                        worst = (wait, i)
        return worst

    def _acquire_one(self, entry: tuple[str, int, float], now: float) -> tuple[float, int] | None:
        """``acquire_which`` for the common single key, without the bookkeeping for several."""
        key, mx, window = entry
        with self._lock:
            dq = self._hits.get(key)
            if dq is None:
                dq = self._hits[key] = deque()
                self._windows[key] = window
            while dq and now - dq[0] >= window:  # exactly `window` later it no longer counts
                dq.popleft()
            n = len(dq)
            if n >= mx:
                return (max(dq[n - mx] + window - now, 0.0), 0)
            dq.append(now)
            self._windows[key] = window
            if len(self._hits) > self._sweep_at:
                self._sweep(now)
            return None

    def _sweep(self, now: float) -> None:
        """Forget keys with no counted hit, so idle sessions do not pile up (amortised O(1))."""
        hits, windows = self._hits, self._windows
        for key in [k for k, dq in hits.items() if not dq or now - dq[-1] >= windows.get(k, 0.0)]:
            del hits[key]
            windows.pop(key, None)
        self._sweep_at = max(1024, 2 * len(hits))


# --- conditions ---------------------------------------------------------------------------


class _Missing:
    """The value of a path that leads nowhere (distinct from JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

# The evaluation context: (args, identity, session, server, tool, approved); absent -> MISSING.
Ctx = tuple[Any, Any, Any, Any, Any, bool]
Pred = Callable[[Ctx], bool]
_ROOT_INDEX = {"args": 0, "identity": 1, "session": 2, "server": 3, "tool": 4, "approved": 5}
_EMPTY_ARGS: dict[str, Any] = {}

def parse_path(path: str) -> tuple[int, tuple[str | int, ...]]:
    """``args.a[2].b`` -> (root index, ("a", 2, "b")); ValueError on anything else."""
    root, steps = _parse_path(path)
    return _ROOT_INDEX[root], steps


def _getter(path: str) -> Callable[[Ctx], Any]:
    """A closure resolving ``path`` in a context: dicts by str key, lists by index, else MISSING."""
    ri, steps = parse_path(path)
    if not steps:
        return lambda c: c[ri]
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]

        def get1(c: Ctx) -> Any:
            v = c[ri]
            return v.get(key, MISSING) if isinstance(v, dict) else MISSING

        return get1
    plan: tuple[tuple[Any, bool], ...] = tuple((s, isinstance(s, int)) for s in steps)

    def get(c: Ctx) -> Any:
        v = c[ri]
        for s, is_index in plan:
            if is_index:
                if isinstance(v, list) and s < len(v):
                    v = v[s]
                else:
                    return MISSING
            elif isinstance(v, dict):
                v = v.get(s, MISSING)
                if v is MISSING:
                    return MISSING
            else:
                return MISSING
        return v

    return get


_NUM = (int, float)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(v: Any) -> int:
    """0 null, 1 bool, 2 number, 3 string, 4 list, 5 object, 6 anything else (never equal)."""
    if v is None:
        return 0
    if isinstance(v, bool):
        return 1
    if isinstance(v, (int, float)):
        return 2
    if isinstance(v, str):
        return 3
    if isinstance(v, list):
        return 4
    if isinstance(v, dict):
        return 5
    return 6


def strict_eq(a: Any, b: Any) -> bool:
    """Equality without JSON-unlike coercions: ``True`` is not ``1``, ``"1"`` is not ``1``, NaN
    equals nothing.

    Recursion is bounded by the shallower operand, and policy literals are at most 32 deep.
    """
    k = _kind(a)
    if k != _kind(b) or k == 6:
        return False
    if k == 4:
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b, strict=True))
    if k == 5:
        return len(a) == len(b) and all(k2 in b and strict_eq(v, b[k2]) for k2, v in a.items())
    return bool(a == b)


def _test(op: str, lit: Any) -> Callable[[Any], bool]:
    """The comparison for ``op`` against the literal, chosen once; the value is never MISSING."""
    if op == "eq" or op == "neq":
        k = _kind(lit)
        eq: Callable[[Any], bool]
        if k == 0:
            eq = lambda v: v is None  # noqa: E731
        elif k == 1:
            eq = lambda v: isinstance(v, bool) and v == lit  # noqa: E731
        elif k == 2:
            eq = lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v == lit  # noqa: E731
        elif k == 3:
            eq = lambda v: isinstance(v, str) and v == lit  # noqa: E731
        else:
            eq = lambda v: strict_eq(v, lit)  # noqa: E731
        if op == "eq":
            return eq
        # `neq` holds only between values of the same JSON type that differ (spec: comparing
        # values of different types is false): `"1" != 1`, `true != 1` and `x != null` are false.
        if k == 0:
            return lambda v: False  # null is its own type, and null equals null
        if k == 1:
            return lambda v: v.__class__ is bool and v is not lit
        if k == 2:
            return lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v != lit
        if k == 3:
            return lambda v: isinstance(v, str) and v != lit
        return lambda v: _kind(v) == k and not strict_eq(v, lit)
    if op in ("lt", "lte", "gt", "gte"):
        import operator

        cmp = getattr(operator, {"lte": "le", "gte": "ge"}.get(op, op))
        if _is_num(lit):
            if op == "gt":
                return lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v > lit
            if op == "gte":
                return lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v >= lit
            if op == "lt":
                return lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v < lit
            return lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v <= lit
        if isinstance(lit, str):
            return lambda v: isinstance(v, str) and cmp(v, lit)
        return lambda v: False
    if op == "in" or op == "not_in":
        items = list(lit) if isinstance(lit, list) else []
        # Hash lookups per kind keep `in` O(1) and strict (a set would find True in {1}).
        strs = frozenset(x for x in items if isinstance(x, str))
        nums = frozenset(x for x in items if _is_num(x) and not (isinstance(x, float) and math.isnan(x)))
        bools = frozenset(x for x in items if isinstance(x, bool))
        has_null = any(x is None for x in items)
        nested = tuple(x for x in items if isinstance(x, (list, dict)))

        def member(v: Any) -> bool:
            if isinstance(v, str):
                return v in strs
            if isinstance(v, bool):
                return v in bools
            if isinstance(v, (int, float)):
                return v in nums
            if v is None:
                return has_null
            if isinstance(v, (list, dict)):
                return any(strict_eq(v, x) for x in nested)
            return False

        if op == "in":
            return member
        # `not_in` holds only when the value has the type of at least one item and equals none.
        has_str, has_num = any(isinstance(x, str) for x in items), any(_is_num(x) for x in items)
        has_bool = any(isinstance(x, bool) for x in items)
        has_list, has_dict = any(isinstance(x, list) for x in items), any(isinstance(x, dict) for x in items)

        def not_member(v: Any) -> bool:
            if isinstance(v, str):
                return has_str and v not in strs
            if isinstance(v, bool):
                return has_bool and v not in bools
            if isinstance(v, (int, float)):
                return has_num and v not in nums
            if isinstance(v, list):
                return has_list and not any(strict_eq(v, x) for x in nested)
            if isinstance(v, dict):
                return has_dict and not any(strict_eq(v, x) for x in nested)
            return False  # null (`null not in [...]` never holds) or not a JSON value

        return not_member
    if op == "contains":

        def contains(v: Any) -> bool:
            if isinstance(v, str):
                return isinstance(lit, str) and lit in v
            if isinstance(v, list):
                return any(strict_eq(x, lit) for x in v)
            return False

        return contains
    if op == "starts_with":
        return lambda v: isinstance(v, str) and isinstance(lit, str) and v.startswith(lit)
    if op == "ends_with":
        return lambda v: isinstance(v, str) and isinstance(lit, str) and v.endswith(lit)
    if op == "regex":
        found = re2_search_test(lit)  # once, at prepare time
        # A str RE2 cannot encode (lone surrogate) raises: the caller fails closed.
        return lambda v: isinstance(v, str) and found(v)
    raise ValueError(f"unknown op `{op}`")


def _fused_leaf(c: Data) -> Pred | None:
    """The common leaf ``root`` or ``root.key`` without ``fn``, as one closure that looks the
    value up itself (one Python call fewer per leaf than getter + test); None otherwise."""
    ri, steps = parse_path(c["path"])
    if c.get("fn") is not None or len(steps) > 1 or (steps and not isinstance(steps[0], str)):
        return None
    op = c["op"]
    if not steps:
        if op == "exists":
            return lambda ctx: ctx[ri] is not MISSING
        if op == "missing":
            return lambda ctx: ctx[ri] is MISSING
        test0 = _test(op, c.get("value"))

        def leaf0(ctx: Ctx) -> bool:
            v = ctx[ri]
            return v is not MISSING and test0(v)

        return leaf0
    key = steps[0]
    if op == "exists":
        return lambda ctx: isinstance(ctx[ri], dict) and key in ctx[ri]
    if op == "missing":
        return lambda ctx: not (isinstance(ctx[ri], dict) and key in ctx[ri])
    test1 = _test(op, c.get("value"))

    def leaf1(ctx: Ctx) -> bool:
        v = ctx[ri]
        if isinstance(v, dict):
            v = v.get(key, MISSING)
            return v is not MISSING and test1(v)
        return False

    return leaf1


def compile_condition(c: Data) -> Pred:
    """A condition (canonical dump form) as a closure over the context. It may raise on
    pathological input; callers decide what an exception means (fail closed)."""
    if "all" in c:
        parts = tuple(compile_condition(x) for x in c["all"])
        if len(parts) == 1:
            return parts[0]

        def all_of(ctx: Ctx) -> bool:
            for p in parts:
                if not p(ctx):
                    return False
            return True

        return all_of
    if "any" in c:
        parts = tuple(compile_condition(x) for x in c["any"])
        if len(parts) == 1:
            return parts[0]

        def any_of(ctx: Ctx) -> bool:
            for p in parts:
                if p(ctx):
                    return True
            return False

        return any_of
    if "not" in c:
        inner = compile_condition(c["not"])
        return lambda ctx: not inner(ctx)
    if "path" in c:
        fused = _fused_leaf(c)
        if fused is not None:
            return fused
        get = _getter(c["path"])
        op, fn = c["op"], c.get("fn")
        if op == "exists":
            return lambda ctx: get(ctx) is not MISSING
        if op == "missing":
            return lambda ctx: get(ctx) is MISSING
        test = _test(op, c.get("value"))
        if fn == "count":

            def count_leaf(ctx: Ctx) -> bool:
                v = get(ctx)
                return test(len(v) if isinstance(v, list) else 0 if v is MISSING else 1)

            return count_leaf
        if fn == "len":

            def len_leaf(ctx: Ctx) -> bool:
                v = get(ctx)
                return isinstance(v, (str, list, dict)) and test(len(v))

            return len_leaf

        def leaf(ctx: Ctx) -> bool:
            v = get(ctx)
            return v is not MISSING and test(v)

        return leaf
    raise ValueError(f"not a condition: {_lit(c)}")


# --- human-readable text ------------------------------------------------------------------

_OP_TEXT = {
    "eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=",
    "in": "in", "not_in": "not in", "contains": "contains",
    "starts_with": "starts_with", "ends_with": "ends_with", "regex": "matches",
}  # fmt: skip


def _lit(v: Any) -> str:
    try:
        text = json.dumps(v, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        text = "<value>"
    return text if len(text) <= 200 else text[:197] + "..."


def _short(name: Any) -> str:
    """A tool name for a message: agents choose unknown names, so keep them bounded."""
    s = name if isinstance(name, str) else repr(name)
    return s if len(s) <= 120 else s[:117] + "..."


def describe(c: Data) -> str:
    """A condition in the rule language's syntax, for reasons and traces."""
    if "all" in c:
        return " and ".join(_nested(x) for x in c["all"]) if c["all"] else "true"
    if "any" in c:
        return " or ".join(_nested(x) for x in c["any"]) if c["any"] else "false"
    if "not" in c:
        inner = c["not"]
        if "path" in inner and describe(inner) == "approved":
            return "not approved"
        return f"not {describe(inner)}" if "not" in inner else f"not ({describe(inner)})"
    path, op, fn = c["path"], c["op"], c.get("fn")
    if path == "approved" and op == "eq" and fn is None and c.get("value") is True:
        return "approved"
    lhs = f"{fn}({path})" if fn else path
    if op in ("exists", "missing"):
        return f"{lhs} {op}"
    return f"{lhs} {_OP_TEXT[op]} {_lit(c.get('value'))}"


def _nested(c: Data) -> str:
    parts = c.get("all", c.get("any"))
    if parts is not None and len(parts) > 1:
        return f"({describe(c)})"
    return describe(c)


def _secs(x: float) -> str:
    """Seconds for a message, rounded up to the millisecond so `retry after 0 s` never shows."""
    if not math.isfinite(x):
        return str(x)
    return f"{math.ceil(x * 1000) / 1000:.3f}".rstrip("0").rstrip(".")


# --- the prepared policy ------------------------------------------------------------------

_SCOPE_INDEX = {"global": 0, "session": 1, "identity": 2}


@dataclass(frozen=True, slots=True)
class _Lim:
    prefix: str  # counter key without the scope value
    scope: int  # index into (global "", session, identity)
    max: int
    window: float
    text: str  # "at most 10 calls per 60 s per session"
    rule: str | None


@dataclass(frozen=True, slots=True)
class _Cond:
    pred: Pred
    text: str
    rule: str | None
    decision: Decision  # when this condition denies
    approval: Decision | None  # require only: when approval would satisfy it


@dataclass(frozen=True, slots=True)
class _Tool:
    name: str
    rule: str | None
    action: str
    deny_if: tuple[_Cond, ...]
    require: tuple[_Cond, ...]
    limits: tuple[_Lim, ...]
    denied: Decision
    needs_approval: Decision
    allowed: Decision
    # The same checks flattened for Engine._check: (predicate, decision if it holds) per
    # deny_if, the bare predicates of require, and whether approval is the tool's action.
    deny_checks: tuple[tuple[Pred, Decision], ...] = ()
    require_preds: tuple[Pred, ...] = ()
    approval: bool = False


@dataclass(frozen=True, slots=True)
class _Prepared:
    data: Data | None  # the canonical dump, kept only when there is no model to answer `.policy`
    source: "Policy | None"  # the validated model, when the engine was given one
    default: str
    hide: frozenset[str]
    hide_all: bool
    fast: dict[str, Decision | _Tool]  # tools whose decision is fixed map straight to it
    tools: dict[str, _Tool]
    default_allow: bool
    all_limits: tuple[_Lim, ...]


def _limit_text(lim: Data, any_tool: bool) -> str:
    calls = "call" if lim["max"] == 1 else "calls"
    scope = {"session": "per session", "identity": "per identity", "global": "in total"}[lim["per"]]
    what = f"{calls} to any tool" if any_tool else calls
    return f"at most {lim['max']} {what} per {_secs(float(lim['window']))} s {scope}"


def _prepare_limit(lim: Data, prefix: str) -> _Lim:
    per = lim["per"]
    return _Lim(
        prefix=f"{prefix}\x00{per}\x00",
        scope=_SCOPE_INDEX[per],
        max=lim["max"],
        window=float(lim["window"]),
        text=_limit_text(lim, prefix.startswith("a\x00")),
        rule=lim.get("rule"),
    )


def _prepare_tool(name: str, t: Data, all_limits: tuple[_Lim, ...], where: str) -> _Tool:
    n = _short(name)
    action: str = t.get("action", "allow")
    t_reason: str | None = t.get("reason")
    t_rule: str | None = t.get("rule")
    # The tool-level reason explains the tool's action; for an `allow` tool it is the only
    # reason the author wrote, so conditions without their own reason fall back to it.
    fallback = t_reason if action == "allow" else None

    def cond(c: Data, kind: str, i: int) -> _Cond:
        try:
            pred = compile_condition(c)
        except ValueError as e:
            raise PlrError.at(f"{where}.{kind}[{i}]: {e}") from None
        text = describe(c)
        rule = c.get("rule") or t_rule
        reason = c.get("reason") or fallback
        if kind == "deny_if":
            why = reason or f"`{n}`: denied because {text}"
            return _Cond(pred, text, rule, Decision("deny", "deny_if", why, rule), None)
        deny = Decision("deny", "require", reason or f"`{n}`: requirement not met: {text}", rule)
        ask = Decision(
            "approval_required",
            "require",
            reason or f"`{n}`: requirement not met without approval: {text}",
            rule,
        )
        return _Cond(pred, text, rule, deny, ask)

    deny_if = tuple(cond(c, "deny_if", i) for i, c in enumerate(t.get("deny_if", ())))
    require = tuple(cond(c, "require", i) for i, c in enumerate(t.get("require", ())))
    own = t.get("limits", ())
    limits = tuple(_prepare_limit(lim, f"t\x00{name}\x00{i}") for i, lim in enumerate(own)) + all_limits
    return _Tool(
        name=name,
        rule=t_rule,
        action=action,
        deny_if=deny_if,
        require=require,
        limits=limits,
        denied=Decision("deny", "denied", t_reason or f"tool `{n}` is denied by policy", t_rule),
        needs_approval=Decision(
            "approval_required", "require", t_reason or f"tool `{n}` requires human approval", t_rule
        ),
        allowed=Decision("allow", "allowed", f"tool `{n}` is allowed by policy", t_rule),
        deny_checks=tuple((c.pred, c.decision) for c in deny_if),
        require_preds=tuple(c.pred for c in require),
        approval=action == "require_approval",
    )


_TOP_KEYS = frozenset({"version", "package", "default", "hide", "all_tools", "tools"})
_TOOL_KEYS = frozenset({"action", "reason", "require", "deny_if", "limits", "rule"})
_LIMIT_KEYS = frozenset({"max", "window", "per", "rule"})
_LEAF_KEYS = frozenset({"path", "op", "value", "fn", "reason", "rule"})
_ACTIONS = ("allow", "deny", "require_approval")


def _shape(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise ValueError(f"{where}: {what}")


def _check_meta(d: Data, where: str) -> None:
    for key in ("reason", "rule"):
        _shape(d.get(key) is None or isinstance(d[key], str), f"{where}.{key}", "must be a string")


def _check_condition(c: Any, where: str, depth: int = 0) -> None:
    _shape(isinstance(c, dict), where, "a condition must be an object")
    _shape(depth <= 200, where, "nested too deeply")
    kinds = [k for k in ("all", "any", "not") if k in c]
    if kinds:
        k = kinds[0]
        _shape(len(kinds) == 1 and set(c) <= {k, "reason", "rule"}, where, f"unexpected keys {sorted(c)}")
        if k == "not":
            _check_condition(c["not"], f"{where}.not", depth + 1)
        else:
            _shape(isinstance(c[k], list), f"{where}.{k}", "must be a list")
            for i, x in enumerate(c[k]):
                _check_condition(x, f"{where}.{k}[{i}]", depth + 1)
    else:
        _shape(set(c) <= _LEAF_KEYS, where, f"unexpected keys {sorted(set(c) - _LEAF_KEYS)}")
        _shape(isinstance(c.get("path"), str), f"{where}.path", "must be a string")
        _shape(c.get("op") in OPS, f"{where}.op", f"unknown op {_lit(c.get('op'))}")
        _shape(c.get("fn") in (None, "count", "len"), f"{where}.fn", f"unknown fn {_lit(c.get('fn'))}")
        _shape(("value" in c) == (c["op"] not in VALUELESS_OPS), where, f"op `{c['op']}` and value do not match")
    _check_meta(c, where)


def _check_limit(lim: Any, where: str) -> None:
    _shape(isinstance(lim, dict) and set(lim) <= _LIMIT_KEYS, where, "a limit is {max, window, per}")
    m, w = lim.get("max"), lim.get("window")
    _shape(
        isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= MAX_LIMIT_COUNT,
        f"{where}.max",
        f"must be an integer from 1 to {MAX_LIMIT_COUNT}",
    )
    _shape(
        _is_num(w) and math.isfinite(w) and 0 < w <= MAX_WINDOW_SECONDS,
        f"{where}.window",
        f"must be a number of seconds > 0 and <= {MAX_WINDOW_SECONDS}",
    )
    _shape(lim.get("per") in _SCOPE_INDEX, f"{where}.per", "must be session, identity or global")
    _check_meta(lim, where)


def check_data(data: Any) -> None:
    """Refuse anything that is not the canonical dump (``Policy.to_dict()``) instead of guessing:
    a typo'd key, an unknown action or a bare seed ``rate_limit`` would otherwise be ignored.
    Pydantic-free, so ``Engine.from_data`` stays on the fast path; ValueError naming the spot."""
    _shape(isinstance(data, dict), "(document)", "a policy must be an object")
    _shape(set(data) <= _TOP_KEYS, "(document)", f"unexpected keys {sorted(set(data) - _TOP_KEYS)}")
    _shape(data.get("version") == "1", "version", 'must be "1"')
    _shape(data.get("default") in ("allow", "deny"), "default", "must be allow or deny")
    hide = data.get("hide", [])
    _shape(isinstance(hide, list) and all(isinstance(h, str) for h in hide), "hide", "must be a list of names")
    top = data.get("all_tools", {})
    _shape(isinstance(top, dict) and set(top) <= {"limits"}, "all_tools", "must be {limits: [...]}")
    _shape(isinstance(top.get("limits", []), list), "all_tools.limits", "must be a list")
    for i, lim in enumerate(top.get("limits", [])):
        _check_limit(lim, f"all_tools.limits[{i}]")
    tools = data.get("tools", {})
    _shape(isinstance(tools, dict), "tools", "must be an object")
    for name, t in tools.items():
        where = f"tools.{name}"
        _shape(isinstance(t, dict), where, "must be an object")
        _shape(set(t) <= _TOOL_KEYS, where, f"unexpected keys {sorted(set(t) - _TOOL_KEYS)}")
        _shape(t.get("action", "allow") in _ACTIONS, f"{where}.action", f"unknown action {_lit(t.get('action'))}")
        for kind in ("require", "deny_if", "limits"):
            _shape(isinstance(t.get(kind, []), list), f"{where}.{kind}", "must be a list")
        for kind in ("require", "deny_if"):
            for i, c in enumerate(t.get(kind, [])):
                _check_condition(c, f"{where}.{kind}[{i}]")
        for i, lim in enumerate(t.get("limits", [])):
            _check_limit(lim, f"{where}.limits[{i}]")
        _check_meta(t, where)


def prepare(data: Data, source: Policy | None = None) -> _Prepared:
    """Everything ``decide`` needs, computed once per policy (raises PlrError on a bad path).

    ``data`` is the canonical dump of a validated policy (``Policy.to_dict()``): the engine
    trusts its shape, so callers get it from the loader or from the compiled-policy cache.
    """
    try:
        top_limits = data.get("all_tools", {}).get("limits", ())
        all_limits = tuple(_prepare_limit(lim, f"a\x00{i}") for i, lim in enumerate(top_limits))
        tools = {
            name: _prepare_tool(name, t, all_limits, f"tools.{name}") for name, t in data.get("tools", {}).items()
        }
    except RecursionError:
        raise PlrError.at("policy conditions are nested too deeply") from None
    except (KeyError, TypeError, AttributeError, ValueError) as e:  # not the canonical shape: refuse
        raise PlrError.at(f"policy data is not in the canonical form: {type(e).__name__}: {e}") from None
    hide = frozenset(data.get("hide", ()))
    fast: dict[str, Decision | _Tool] = {}
    for name, pt in tools.items():
        trivial = pt.action == "allow" and not (pt.deny_if or pt.require or pt.limits)
        fast[name] = pt.allowed if trivial else pt.denied if pt.action == "deny" else pt
    for name in hide:
        fast[name] = _hidden(name)
    default = data.get("default")
    if default not in ("allow", "deny"):
        raise PlrError.at("policy data is not in the canonical form: `default` must be allow or deny")
    return _Prepared(
        data=None if source is not None else data,
        source=source,
        default=default,
        hide=hide,
        hide_all="*" in hide,
        fast={} if "*" in hide else fast,
        tools=tools,
        default_allow=default == "allow",
        all_limits=all_limits,
    )


def _hidden(tool: Any) -> Decision:
    return Decision("deny", "hidden", f"tool `{_short(tool)}` is hidden by policy")


def _default_deny(tool: Any) -> Decision:
    return Decision("deny", "default", f"tool `{_short(tool)}` is not allowed by policy (default deny)")


def _default_allow(tool: Any) -> Decision:
    return Decision("allow", "default", f"tool `{_short(tool)}` is allowed by policy (default allow)")


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


def _error(e: BaseException) -> Decision:
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
    ) -> None:
        self._attach(prepare(policy.to_dict(), policy), clock, store)

    def _attach(self, p: _Prepared, clock: Callable[[], float], store: LimitStore | None) -> None:
        self._clock = clock
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
    ) -> "Engine":
        """An engine from the canonical dump of an already validated policy (``Policy.to_dict()``,
        e.g. read back from the compiled-policy cache): no pydantic on this path."""
        try:
            check_data(data)
        except ValueError as e:
            raise PlrError.at(f"policy data is not in the canonical form: {e}") from None
        except RecursionError:
            raise PlrError.at("policy conditions are nested too deeply") from None
        engine = cls.__new__(cls)
        engine._attach(prepare(data), clock, store)
        return engine

    @property
    def policy(self) -> Policy:
        """The policy currently in force (validated from the data on first use if need be)."""
        p = self._p
        if p.source is not None:
            return p.source
        from .policy import load_policy

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
                if not p.default_allow:
                    return _default_deny(tool)
                if p.all_limits:
                    refused = self._acquire(p.all_limits, session, identity, None)
                    if refused is not None:
                        return refused
                return _default_allow(tool)
            if t.__class__ is Decision:
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
            except Exception:  # noqa: BLE001 - fail closed: the deny_if holds
                return denied
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
            refused = self._acquire(t.limits, session, identity, None)
            if refused is not None:
                return refused
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
            if hit:
                return c.decision
        if t.require:
            failing: list[_Cond] = []
            for c in t.require:
                try:
                    ok: bool | str = bool(c.pred(ctx))
                except Exception as e:  # noqa: BLE001 - fail closed: the require fails
                    ok = f"error ({type(e).__name__}): treated as failing"
                if trace is not None:
                    trace.append(TraceStep(f"require {c.text}", ok, c.rule))
                if ok is not True:
                    failing.append(c)
            if failing:
                if approved:
                    return failing[0].decision
                actx: Ctx = ctx[:5] + (True,)
                for c in failing:
                    try:
                        ok = bool(c.pred(actx))
                    except Exception as e:  # noqa: BLE001
                        ok = f"error ({type(e).__name__}): treated as failing"
                    if trace is not None:
                        trace.append(TraceStep(f"require {c.text} (if approved)", ok, c.rule))
                    if ok is not True:
                        return c.decision  # approval would not help: name this requirement
                return failing[0].approval  # type: ignore[return-value]
        if t.action == "require_approval":
            if trace is not None:
                trace.append(TraceStep("action == require_approval: approved", approved, t.rule))
            if not approved:
                return t.needs_approval
        if t.limits:
            refused = self._acquire(t.limits, session, identity, trace)
            if refused is not None:
                return refused
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
        return self._acquire(t.limits, session, identity, None, peek=True)  # type: ignore[union-attr]

    def _acquire(
        self,
        lims: tuple[_Lim, ...],
        session: Any,
        identity: Any,
        trace: list[TraceStep] | None,
        *,
        peek: bool = False,
    ) -> Decision | None:
        """Step 7 and the counting of step 8, in one atomic store call (``peek``: count nothing)."""
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
            if t is None:
                trace.append(TraceStep("default", p.default))
                if not p.default_allow:
                    d = _default_deny(tool)
                else:
                    refused = self._acquire(p.all_limits, session, identity, trace) if p.all_limits else None
                    d = refused or _default_allow(tool)
            else:
                d = self._run(t, tool, args, identity, session, server, approved, trace)
        return Decision(d.effect, d.code, d.reason, d.rule, d.retry_after, tuple(trace))
