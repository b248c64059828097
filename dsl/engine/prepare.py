"""A policy prepared for deciding: everything ``decide`` needs, computed once per policy.

``prepare`` turns the canonical dump into a frozenset of hidden names, a dict from tool name to
a prepared tool (or straight to its fixed ``Decision`` when nothing is left to check), one
closure per condition, and every reason text, so a decision does no parsing and no string
dispatch, and formats text only for a tool the policy does not name or a rate limit's retry
time. A hot reload swaps one ``_Prepared`` for another in a single assignment.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..validate import Data
from .conditions import Ctx, Explainer, Pred, _getter, compile_condition, compile_explainer, has_quantifier
from .decision import Decision
from .describe import _secs, _short, describe
from .records import Record, _set

if TYPE_CHECKING:
    from ..errors import PlrError
    from ..policy import Policy

__all__ = ["prepare"]

_SCOPE_INDEX = {"global": 0, "session": 1, "identity": 2}


def _refused(message: str) -> PlrError:
    from ..errors import PlrError  # only when a policy is refused: not on the path of `plr eval`

    return PlrError.at(message)


# The records below are frozen dataclasses written out (records.py): the engine is imported by
# every `plr eval`, and generating them took most of its import time.


class _Lim(Record):
    __slots__ = (
        "prefix", "scope", "max", "window", "text", "rule", "cond", "cond_text", "amount", "of", "calendar", "tz",
        "refund", "ledger",
    )  # fmt: skip
    prefix: str  # counter key without the scope value
    scope: int  # index into (global "", session, identity)
    max: int
    window: float
    text: str  # "at most 10 calls per 60 s per session"
    rule: str | None
    cond: Pred | None  # `if`: the limit applies (checks and counts) only where this holds
    cond_text: str
    # plr extensions (docs/policy-json.md, "Limits"): a spend cap's amount getter and its path,
    # a calendar window (unit, zone), and `refund: "error"`. A spend cap or a refundable limit
    # is kept in the store's ledger (amounts and tokens), which a plain counter cannot refund.
    amount: Callable[[Ctx], Any] | None
    of: str | None
    calendar: str | None
    tz: str | None
    refund: bool
    ledger: bool

    def __init__(
        self, prefix: str, scope: int, max: int, window: float, text: str, rule: str | None,
        cond: Pred | None = None, cond_text: str = "", amount: Callable[[Ctx], Any] | None = None,
        of: str | None = None, calendar: str | None = None, tz: str | None = None, refund: bool = False,
        ledger: bool = False,
    ) -> None:  # fmt: skip
        _set(self, "prefix", prefix)
        _set(self, "scope", scope)
        _set(self, "max", max)
        _set(self, "window", window)
        _set(self, "text", text)
        _set(self, "rule", rule)
        _set(self, "cond", cond)
        _set(self, "cond_text", cond_text)
        _set(self, "amount", amount)
        _set(self, "of", of)
        _set(self, "calendar", calendar)
        _set(self, "tz", tz)
        _set(self, "refund", refund)
        _set(self, "ledger", ledger)


class _Cond(Record):
    __slots__ = ("pred", "text", "rule", "decision", "approval", "witness")
    pred: Pred
    text: str
    rule: str | None
    decision: Decision  # when this condition denies
    approval: Decision | None  # require only: when approval would satisfy it
    witness: Explainer | None  # for traces: which item decided each every/some

    def __init__(
        self, pred: Pred, text: str, rule: str | None, decision: Decision, approval: Decision | None,
        witness: Explainer | None = None,
    ) -> None:  # fmt: skip
        _set(self, "pred", pred)
        _set(self, "text", text)
        _set(self, "rule", rule)
        _set(self, "decision", decision)
        _set(self, "approval", approval)
        _set(self, "witness", witness)


class _Tool(Record):
    __slots__ = (
        "name", "rule", "action", "deny_if", "require", "limits", "denied", "needs_approval", "allowed",
        "deny_checks", "require_preds", "approval", "cond_limits",
    )  # fmt: skip
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
    deny_checks: tuple[tuple[Pred, Decision], ...]
    require_preds: tuple[Pred, ...]
    approval: bool
    cond_limits: bool  # some limit has an `if`: which apply depends on the call

    def __init__(
        self, name: str, rule: str | None, action: str, deny_if: tuple[_Cond, ...], require: tuple[_Cond, ...],
        limits: tuple[_Lim, ...], denied: Decision, needs_approval: Decision, allowed: Decision,
        deny_checks: tuple[tuple[Pred, Decision], ...] = (), require_preds: tuple[Pred, ...] = (),
        approval: bool = False, cond_limits: bool = False,
    ) -> None:  # fmt: skip
        _set(self, "name", name)
        _set(self, "rule", rule)
        _set(self, "action", action)
        _set(self, "deny_if", deny_if)
        _set(self, "require", require)
        _set(self, "limits", limits)
        _set(self, "denied", denied)
        _set(self, "needs_approval", needs_approval)
        _set(self, "allowed", allowed)
        _set(self, "deny_checks", deny_checks)
        _set(self, "require_preds", require_preds)
        _set(self, "approval", approval)
        _set(self, "cond_limits", cond_limits)


class _Prepared(Record):
    __slots__ = ("data", "source", "default", "hide", "hide_all", "fast", "tools", "default_allow", "all_limits", "other")
    data: Data | None  # the canonical dump, kept only when there is no model to answer `.policy`
    source: "Policy | None"  # the validated model, when the engine was given one
    default: str
    hide: frozenset[str]
    hide_all: bool
    fast: dict[str, Decision | _Tool]  # tools whose decision is fixed map straight to it
    tools: dict[str, _Tool]
    default_allow: bool
    all_limits: tuple[_Lim, ...]
    # The checks of a tool not under `tools` when `all_tools` has conditions (deny_if, require,
    # allow_if, a limit's `if`); its reasons name the tool as OTHER, replaced per call.
    other: _Tool | None

    def __init__(
        self, data: Data | None, source: Policy | None, default: str, hide: frozenset[str], hide_all: bool,
        fast: dict[str, Decision | _Tool], tools: dict[str, _Tool], default_allow: bool, all_limits: tuple[_Lim, ...],
        other: _Tool | None = None,
    ) -> None:  # fmt: skip
        _set(self, "data", data)
        _set(self, "source", source)
        _set(self, "default", default)
        _set(self, "hide", hide)
        _set(self, "hide_all", hide_all)
        _set(self, "fast", fast)
        _set(self, "tools", tools)
        _set(self, "default_allow", default_allow)
        _set(self, "all_limits", all_limits)
        _set(self, "other", other)


OTHER = "\x00tool\x00"  # stands for the called tool's name in the reasons of `other`


def _limit_text(lim: Data, any_tool: bool) -> str:
    # `global` is one counter for every caller, not one across tools: a limit on several tools
    # counts each on its own (language.md), so "in total" would promise a total there is not
    scope = {"session": "per session", "identity": "per identity", "global": "shared by all callers"}[lim["per"]]
    calendar = lim.get("calendar")
    if calendar is not None:
        period = f"per calendar {calendar}" + (f" ({lim['tz']})" if lim.get("tz") else " (UTC)")
    else:
        period = f"per {_secs(float(lim['window']))} s"
    if lim.get("of") is not None:
        what = f"{_amount_text(lim['max'])} of {lim['of']}" + (" across all tools" if any_tool else "")
        return f"at most {what} {period} {scope}"
    calls = "call" if lim["max"] == 1 else "calls"
    what = f"{calls} to any tool" if any_tool else calls
    return f"at most {lim['max']} {what} {period} {scope}"


def _amount_text(x: Any) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    return f"{x:g}" if isinstance(x, float) else str(x)


def _counting(lim: Data) -> str:
    """What a limit counts, in its counters' key: calls (``c``), refundable calls (``r``) or the
    amounts of an argument (``s`` and its path), so a counter never mixes calls with amounts
    when a reload changes a limit's kind. Not its window: a reload that changes the window (say
    from `per hour` to `per day`, tightening it during an incident) keeps the calls counted so
    far. Different policies sharing a store are kept apart by the store's namespace (the SQLite
    file of a machine: one per policy source)."""
    if lim.get("of") is not None:
        return f"s{json.dumps(lim['of'], sort_keys=True)}"
    return "r" if lim.get("refund") == "error" else "c"


def _prepare_limit(lim: Data, prefix: str) -> _Lim:
    per = lim["per"]
    cond = lim.get("if")
    of = lim.get("of")
    refund = lim.get("refund") == "error"
    return _Lim(
        prefix=f"{prefix}\x00{_counting(lim)}\x00{per}\x00",
        scope=_SCOPE_INDEX[per],
        max=lim["max"],
        window=float(lim["window"]),
        text=_limit_text(lim, prefix.startswith("a\x00")),
        rule=lim.get("rule"),
        cond=compile_condition(cond) if cond is not None else None,
        cond_text=describe(cond) if cond is not None else "",
        amount=_getter(of) if of is not None else None,
        of=of,
        calendar=lim.get("calendar"),
        tz=lim.get("tz"),
        refund=refund,
        ledger=of is not None or refund,
    )


class _Compiled(Record):
    """A condition compiled once (the same `all_tools` condition binds every tool)."""

    __slots__ = ("data", "pred", "text", "witness")
    data: Data
    pred: Pred
    text: str
    witness: Explainer | None

    def __init__(self, data: Data, pred: Pred, text: str, witness: Explainer | None) -> None:
        _set(self, "data", data)
        _set(self, "pred", pred)
        _set(self, "text", text)
        _set(self, "witness", witness)


def _compiled(c: Data, where: str) -> _Compiled:
    try:
        pred = compile_condition(c)
    except ValueError as e:
        raise _refused(f"{where}: {e}") from None
    return _Compiled(c, pred, describe(c), compile_explainer(c) if has_quantifier(c) else None)


def _prepare_tool(
    name: str,
    t: Data,
    all_limits: tuple[_Lim, ...],
    where: str,
    all_deny_if: tuple[_Compiled, ...] = (),
    all_require: tuple[_Compiled, ...] = (),
) -> _Tool:
    n = _short(name)
    action: str = t.get("action", "allow")
    t_reason: str | None = t.get("reason")
    t_rule: str | None = t.get("rule")
    # The tool-level reason explains the tool's action; for an `allow` tool it is the only
    # reason the author wrote, so conditions without their own reason fall back to it.
    fallback = t_reason if action == "allow" else None

    def cond(cc: _Compiled, kind: str, own: bool) -> _Cond:
        c, text = cc.data, cc.text
        rule = c.get("rule") or (t_rule if own else None)
        reason = c.get("reason") or (fallback if own else None)
        if kind == "deny_if":
            why = reason or f"`{n}`: denied because {text}"
            return _Cond(cc.pred, text, rule, Decision("deny", "deny_if", why, rule), None, cc.witness)
        deny = Decision("deny", "require", reason or f"`{n}`: requirement not met: {text}", rule)
        ask = Decision(
            "approval_required",
            "require",
            reason or f"`{n}`: requirement not met without approval: {text}",
            rule,
        )
        return _Cond(cc.pred, text, rule, deny, ask, cc.witness)

    def own(kind: str) -> list[_Cond]:
        return [cond(_compiled(c, f"{where}.{kind}[{i}]"), kind, True) for i, c in enumerate(t.get(kind, ()))]

    # the tool's own checks first, then those of every tool
    deny_if = (*own("deny_if"), *(cond(cc, "deny_if", False) for cc in all_deny_if))
    require = (*own("require"), *(cond(cc, "require", False) for cc in all_require))
    mine = t.get("limits", ())
    limits = tuple(_prepare_limit(lim, f"t\x00{name}\x00{i}") for i, lim in enumerate(mine)) + all_limits
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
        cond_limits=any(lim.cond is not None for lim in limits),
    )


def _prepare_other(
    top: Data, default_allow: bool, all_limits: tuple[_Lim, ...], all_deny_if: tuple[_Compiled, ...],
    all_require: tuple[_Compiled, ...],
) -> _Tool | None:
    """The checks of a tool not under ``tools``, or None when the default decides it alone
    (no `all_tools` condition, and under `default: deny` no ``allow_if`` to grant it)."""
    grants = [] if default_allow else list(top.get("allow_if", ()))
    conditional = all_deny_if or all_require or any(lim.cond is not None for lim in all_limits)
    if not grants and not (default_allow and conditional):
        return None
    require = all_require
    if grants:  # the OR of the grants is the first requirement, as a tool's own `allow … if` group
        group = grants[0] if len(grants) == 1 else {"any": grants}
        require = (_compiled(group, "all_tools.allow_if"), *all_require)
    t = _prepare_tool(OTHER, {}, all_limits, "all_tools", all_deny_if, require)
    if default_allow:
        allowed = Decision("allow", "default", f"tool `{OTHER}` is allowed by policy (default allow)")
    else:
        rule = grants[0].get("rule")
        allowed = Decision("allow", "allowed", f"tool `{OTHER}` is allowed by policy", rule)
    return t._replace(allowed=allowed, rule=None)  # type: ignore[no-any-return]


def prepare(data: Data, source: Policy | None = None) -> _Prepared:
    """Everything ``decide`` needs, computed once per policy (raises PlrError on a bad path).

    ``data`` is the canonical dump of a validated policy (``Policy.to_dict()``): the engine
    trusts its shape, so callers get it from the loader or from the compiled-policy cache.
    """
    default = data.get("default")
    if default not in ("allow", "deny"):
        raise _refused("policy data is not in the canonical form: `default` must be allow or deny")
    try:
        top = data.get("all_tools", {})
        all_limits = tuple(_prepare_limit(lim, f"a\x00{i}") for i, lim in enumerate(top.get("limits", ())))
        all_deny_if = tuple(_compiled(c, f"all_tools.deny_if[{i}]") for i, c in enumerate(top.get("deny_if", ())))
        all_require = tuple(_compiled(c, f"all_tools.require[{i}]") for i, c in enumerate(top.get("require", ())))
        tools = {
            name: _prepare_tool(name, t, all_limits, f"tools.{name}", all_deny_if, all_require)
            for name, t in data.get("tools", {}).items()
        }
        other = _prepare_other(top, default == "allow", all_limits, all_deny_if, all_require)
    except RecursionError:
        raise _refused("policy conditions are nested too deeply") from None
    except (KeyError, TypeError, AttributeError, ValueError) as e:  # not the canonical shape: refuse
        raise _refused(f"policy data is not in the canonical form: {type(e).__name__}: {e}") from None
    hide = frozenset(data.get("hide", ()))
    fast: dict[str, Decision | _Tool] = {}
    for name, pt in tools.items():
        trivial = pt.action == "allow" and not (pt.deny_if or pt.require or pt.limits)
        fast[name] = pt.allowed if trivial else pt.denied if pt.action == "deny" else pt
    for name in hide:
        fast[name] = _hidden(name)
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
        other=other,
    )


# The answers to a tool no rule names, made once per name: a Decision is immutable, and building
# one is most of what deciding such a call costs (~0.8 of ~1 us). Bounded, and only for names of
# a sane length, since agents choose the names.
_CACHED_NAME = 256


def _per_name(make: Callable[[Any], Decision]) -> Callable[[Any], Decision]:
    """``make``, its answers kept for names of a sane length (``.cached``: the cache)."""
    cached = lru_cache(maxsize=4096)(make)

    def answer(tool: Any) -> Decision:
        return cached(tool) if tool.__class__ is str and len(tool) <= _CACHED_NAME else make(tool)

    answer.cached = cached  # type: ignore[attr-defined]
    return answer


@_per_name
def _hidden(tool: Any) -> Decision:
    return Decision("deny", "hidden", f"tool `{_short(tool)}` is hidden by policy")


@_per_name
def _default_deny(tool: Any) -> Decision:
    return Decision("deny", "default", f"tool `{_short(tool)}` is not allowed by policy (default deny)")


@_per_name
def _default_allow(tool: Any) -> Decision:
    return Decision("allow", "default", f"tool `{_short(tool)}` is allowed by policy (default allow)")
