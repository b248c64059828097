"""The decision engine: decision order, condition meaning, limits, hostile input, explain.

Policies are built as dicts and loaded through ``dsl.policy.load_policy`` so every test runs
on exactly what a compiled JSON policy would load to.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.compiler import compile_files
from dsl.engine import MISSING, Decision, Engine, TraceStep, compile_condition, describe, parse_path
from dsl.engine.arguments import argument_problem
from dsl.errors import PlrError
from dsl.policy import Leaf, Policy, Tool, load_policy
from dsl.state import LimitStore, MemoryLimitStore
from tests.conftest import EXAMPLES, SPEC_JSON

EXAMPLE = SPEC_JSON


class Clock:
    """A virtual clock: tests advance ``t``; nothing sleeps."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def policy(tools: dict[str, Any] | None = None, **top: Any) -> Policy:
    doc: dict[str, Any] = {"version": "1", "default": "deny", "tools": tools or {}}
    doc.update(top)
    return load_policy(doc)


def engine(tools: dict[str, Any] | None = None, clock: Clock | None = None, **top: Any) -> Engine:
    return Engine(policy(tools, **top), clock=clock or Clock())


def holds(cond: dict[str, Any], args: Any = None, **ctx: Any) -> bool:
    """Whether ``cond`` holds, asked two ways (as a deny_if and as a require) that must agree.

    Arguments a server could read as other values (NaN, Infinity, integers beyond ±(2^53 - 1))
    are refused by ``decide`` before any condition (``invalid_args``); what the condition means
    for them is still defined, and asked of the compiled condition itself."""
    if argument_problem(args) is not None:
        assert engine({"t": {"deny_if": [cond]}}).decide("t", args, **ctx).code == "invalid_args"
        pred = compile_condition(cond)
        return bool(pred((args, *(ctx.get(k, MISSING) for k in ("identity", "session", "server")), "t", False)))
    as_deny = engine({"t": {"deny_if": [cond]}}).decide("t", args, **ctx)
    as_require = engine({"t": {"require": [cond]}}).decide("t", args, **{**ctx, "approved": True})
    assert as_deny.code in ("deny_if", "allowed"), as_deny
    assert as_require.code in ("require", "allowed"), as_require
    assert (as_deny.code == "deny_if") == (as_require.code == "allowed"), (as_deny, as_require)
    return as_deny.code == "deny_if"


def leaf(path: str, op: str, value: Any = None, fn: str | None = None, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"path": path, "op": op, **kw}
    if op not in ("exists", "missing"):
        d["value"] = value
    if fn:
        d["fn"] = fn
    return d


# --- the decision order -------------------------------------------------------------------


def test_hidden_beats_everything() -> None:
    e = engine(
        {"x": {"action": "deny", "deny_if": [leaf("tool", "eq", "x")]}, "y": {}},
        hide=["x", "z"],
        default="allow",
    )
    d = e.decide("x")
    assert (d.effect, d.code) == ("deny", "hidden")
    assert d.reason == "tool `x` is hidden by policy"
    assert e.decide("z").code == "hidden"  # hidden though ungoverned under default allow
    assert e.decide("y").effect == "allow"


def test_hide_star_hides_every_tool() -> None:
    e = engine({"a": {}}, hide=["*"], default="allow")
    assert e.decide("a").code == "hidden"
    assert e.decide("anything").code == "hidden"
    assert e.decide("a", explain=True).code == "hidden"
    assert e.visible(["a", "b"]) == []


def test_visible_keeps_order_and_removes_hidden() -> None:
    e = engine({"a": {"action": "deny"}, "b": {}}, hide=["purge", "c"])
    assert e.visible(["c", "b", "purge", "a", "unknown"]) == ["b", "a", "unknown"]
    assert e.visible(iter(["b"])) == ["b"]


def test_denied_beats_deny_if() -> None:
    e = engine({"x": {"action": "deny", "reason": "never", "rule": "p.plr:3",
                      "deny_if": [leaf("args.a", "exists", rule="p.plr:4")]}})  # fmt: skip
    d = e.decide("x", {"a": 1})
    assert (d.effect, d.code, d.reason, d.rule) == ("deny", "denied", "never", "p.plr:3")
    d = engine({"x": {"action": "deny"}}).decide("x")
    assert d.reason == "tool `x` is denied by policy" and d.rule is None


def test_deny_if_beats_require() -> None:
    e = engine({"x": {"deny_if": [leaf("args.a", "gt", 5)], "require": [leaf("args.b", "exists")]}})
    assert e.decide("x", {"a": 6}).code == "deny_if"
    assert e.decide("x", {"a": 1}).code == "require"
    assert e.decide("x", {"a": 1, "b": 0}).code == "allowed"


def test_deny_if_beats_approval() -> None:
    e = engine({"x": {"action": "require_approval", "deny_if": [leaf("args.n", "gt", 5)]}})
    assert e.decide("x", {"n": 9}).code == "deny_if"
    assert e.decide("x", {"n": 9}, approved=True).code == "deny_if"
    assert e.decide("x", {"n": 1}).effect == "approval_required"


def test_deny_if_reason_and_rule() -> None:
    e = engine(
        {
            "x": {
                "rule": "p.plr:1",
                "deny_if": [
                    leaf("args.a", "eq", 1, reason="a is one", rule="p.plr:7"),
                    leaf("args.a", "eq", 2),
                ],
            },
            "y": {"reason": "y's own reason", "deny_if": [leaf("args.a", "eq", 1)]},
            "z": {"action": "require_approval", "reason": "needs a human", "deny_if": [leaf("args.a", "eq", 1)]},
        }
    )
    d = e.decide("x", {"a": 1})
    assert (d.reason, d.rule) == ("a is one", "p.plr:7")
    d = e.decide("x", {"a": 2})
    assert (d.reason, d.rule) == ("`x`: denied because args.a == 2", "p.plr:1")
    # an allow tool's reason is the author's text for its conditions
    assert e.decide("y", {"a": 1}).reason == "y's own reason"
    # a require_approval tool's reason explains the approval, not the condition
    assert e.decide("z", {"a": 1}).reason == "`z`: denied because args.a == 1"


def test_require_fails_is_deny() -> None:
    e = engine({"x": {"require": [leaf("args.ok", "eq", True, rule="p.plr:2")], "rule": "p.plr:1"}})
    d = e.decide("x", {"ok": False})
    assert (d.effect, d.code, d.rule) == ("deny", "require", "p.plr:2")
    assert d.reason == "`x`: requirement not met: args.ok == true"
    assert e.decide("x", {"ok": False}, approved=True).effect == "deny"  # approval does not help
    d = e.decide("x", {"ok": True})
    assert (d.effect, d.code, d.rule) == ("allow", "allowed", "p.plr:1")


def test_require_that_approval_satisfies() -> None:
    approved = {"path": "approved", "op": "eq", "value": True}
    cond = {"any": [leaf("args.amount", "lt", 100), approved], "reason": "big amounts need a human"}
    e = engine({"pay": {"require": [cond]}})
    assert e.decide("pay", {"amount": 5}).code == "allowed"
    d = e.decide("pay", {"amount": 500})
    assert (d.effect, d.code, d.reason) == ("approval_required", "require", "big amounts need a human")
    assert e.decide("pay", {"amount": 500}, approved=True).effect == "allow"
    # without a reason the generated text says what approval would satisfy
    bare = engine({"pay": {"require": [{"any": [leaf("args.amount", "lt", 100), approved]}]}})
    d = bare.decide("pay", {"amount": 500})
    assert d.reason == "`pay`: requirement not met without approval: args.amount < 100 or approved"


def test_require_mixed_approvable_and_not_is_deny_naming_the_hard_one() -> None:
    approved = {"path": "approved", "op": "eq", "value": True}
    e = engine(
        {
            "x": {
                "require": [
                    {"any": [leaf("args.a", "eq", 1), approved], "rule": "p.plr:1"},
                    {**leaf("args.b", "eq", 1), "rule": "p.plr:2"},
                ]
            }
        }
    )
    d = e.decide("x", {"a": 0, "b": 0})
    assert (d.effect, d.code, d.rule) == ("deny", "require", "p.plr:2")
    assert e.decide("x", {"a": 0, "b": 1}).effect == "approval_required"
    assert e.decide("x", {"a": 0, "b": 1}, approved=True).effect == "allow"
    assert e.decide("x", {"a": 0, "b": 0}, approved=True).rule == "p.plr:2"  # the approved one holds
    two = engine({"x": {"require": [leaf("args.a", "eq", 1, rule="r1"), leaf("args.b", "eq", 1, rule="r2")]}})
    assert two.decide("x", {}, approved=True).rule == "r1"  # the first failing one
    assert two.decide("x", {"a": 1}).rule == "r2"


def test_action_require_approval() -> None:
    e = engine({"x": {"action": "require_approval", "reason": "ask first", "rule": "p.plr:9"}})
    d = e.decide("x")
    assert (d.effect, d.code, d.reason, d.rule) == ("approval_required", "require", "ask first", "p.plr:9")
    d = e.decide("x", approved=True)
    assert (d.effect, d.code, d.rule) == ("allow", "allowed", "p.plr:9")
    assert engine({"x": {"action": "require_approval"}}).decide("x").reason == "tool `x` requires human approval"


def test_require_failure_comes_before_action_approval() -> None:
    e = engine({"x": {"action": "require_approval", "reason": "ask", "require": [leaf("args.a", "exists")]}})
    assert e.decide("x", {}).effect == "deny"
    assert e.decide("x", {}).code == "require"
    assert e.decide("x", {"a": 1}).reason == "ask"


def test_default_deny_and_allow() -> None:
    d = engine({"a": {}}).decide("b")
    assert (d.effect, d.code, d.reason, d.rule) == (
        "deny", "default", "tool `b` is not allowed by policy (default deny)", None,
    )  # fmt: skip
    d = engine({"a": {}}, default="allow").decide("b")
    assert (d.effect, d.code, d.reason) == ("allow", "default", "tool `b` is allowed by policy (default allow)")


def test_default_allow_is_under_all_tools_limits() -> None:
    clock = Clock()
    e = engine({}, clock, default="allow", all_tools={"limits": [{"max": 2, "window": 10, "rule": "p.plr:5"}]})
    assert e.decide("u1", session="s").effect == "allow"
    assert e.decide("u2", session="s").effect == "allow"
    d = e.decide("u3", session="s")
    assert (d.effect, d.code, d.rule, d.retry_after) == ("deny", "rate_limited", "p.plr:5", 10.0)
    assert "at most 2 calls to any tool per 10 s per session" in d.reason
    # default deny: nothing to count, never rate limited
    e2 = engine({}, clock, all_tools={"limits": [{"max": 1, "window": 10}]})
    assert [e2.decide("u", session="s").code for _ in range(3)] == ["default"] * 3


def test_decision_shape() -> None:
    d = engine({"a": {}}).decide("a")
    assert d.to_dict() == {
        "effect": "allow", "code": "allowed", "reason": "tool `a` is allowed by policy",
        "rule": None, "retry_after": None,
    }  # fmt: skip
    assert d.trace is None
    with pytest.raises(AttributeError):
        d.effect = "deny"  # type: ignore[misc]
    assert not hasattr(d, "__dict__")  # slots


def test_decide_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    e = engine({"x": {"deny_if": [leaf("args.a", "exists")]}, "y": {}})

    def boom(*a: Any, **k: Any) -> Decision:
        raise RuntimeError("boom")

    monkeypatch.setattr(Engine, "_run", boom)
    monkeypatch.setattr(Engine, "_check", boom)  # the trace-free path of decide
    for explain in (False, True):
        d = e.decide("x", {"a": 1}, explain=explain)
        assert (d.effect, d.code) == ("deny", "error")
        assert d.reason == "internal error while deciding: RuntimeError: boom"
    assert e.decide("y").effect == "allow"  # prebuilt: never reaches _run
    assert e.decide(["unhashable"]).code == "error"  # type: ignore[arg-type]


def test_failing_store_is_an_error_deny() -> None:
    class Broken:
        def acquire(self, keys: Any, now: float) -> float | None:
            raise ConnectionError("redis down")

    e = Engine(policy({"x": {"limits": [{"max": 5, "window": 1}]}}), store=Broken())
    d = e.decide("x")
    assert (d.effect, d.code) == ("deny", "error") and "redis down" in d.reason


def test_condition_error_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    class BadList(list):  # type: ignore[type-arg]
        def __len__(self) -> int:
            raise RuntimeError("hostile")

    cond = leaf("args.ids", "gt", 1, fn="count")
    assert engine({"t": {"deny_if": [cond]}}).decide("t", {"ids": BadList()}).code == "deny_if"
    e = engine({"t": {"require": [cond]}})
    assert e.decide("t", {"ids": BadList()}, approved=True).code == "require"
    assert e.decide("t", {"ids": BadList()}).effect == "deny"  # approval cannot fix an error
    d = engine({"t": {"deny_if": [cond]}}).decide("t", {"ids": BadList()}, explain=True)
    assert d.code == "deny_if"
    assert d.trace is not None and any(isinstance(s.result, str) and "error" in s.result for s in d.trace)


def test_regex_on_unencodable_string_fails_closed() -> None:
    s = "rm -rf /\ud800"  # a lone surrogate RE2 cannot take: fail closed either way
    assert engine({"t": {"deny_if": [leaf("args.c", "regex", "nomatch")]}}).decide("t", {"c": s}).code == "deny_if"
    assert engine({"t": {"require": [leaf("args.c", "regex", ".")]}}).decide("t", {"c": s}).effect == "deny"


# --- paths --------------------------------------------------------------------------------


def test_parse_path() -> None:
    assert parse_path("args") == (0, ())
    assert parse_path("args.a.b") == (0, ("a", "b"))
    assert parse_path("args.items[0]") == (0, ("items", 0))
    assert parse_path("args.a[2].b") == (0, ("a", 2, "b"))
    assert parse_path("args.task-id[10][0]") == (0, ("task-id", 10, 0))
    assert parse_path("identity") == (1, ())
    assert parse_path("approved") == (5, ())
    for bad in ("args..a", "args.a[", "args.a[-1]", "args.a[x]", "args.", "nope.a", "args a"):
        with pytest.raises(ValueError):
            parse_path(bad)


def test_bad_path_is_refused_by_the_loader_and_at_prepare_and_reload_keeps_old_policy() -> None:
    good = policy({"x": {}})
    with pytest.raises(PlrError, match=r"tools\.x\.deny_if\[0\]\.path: invalid path"):
        policy({"x": {"deny_if": [leaf("args..a", "exists")]}})
    # A policy built without validation (model_construct) is still refused when prepared.
    bad_leaf = Leaf.model_construct(path="args..a", op="exists", _fields_set={"path", "op"})
    bad = good.model_copy(update={"tools": {"x": Tool.model_construct(deny_if=[bad_leaf], require=[], limits=[], action="allow", reason=None, rule=None)}})
    with pytest.raises(PlrError, match=r"tools\.x\.deny_if\[0\]: invalid path"):
        Engine(bad)
    e = Engine(good)
    with pytest.raises(PlrError):
        e.replace_policy(bad)
    assert e.policy is good
    assert e.decide("x").effect == "allow"


@pytest.mark.parametrize(
    "path, args, present",
    [
        pytest.param("args.a.b", {"a": {"b": 1}}, True, id="nested key"),
        pytest.param("args.a.b", {"a": {"c": 1}}, False, id="missing nested key"),
        pytest.param("args.a.b", {"a": [1]}, False, id="key on a list"),
        pytest.param("args.a.b", {"a": "str"}, False, id="key on a string"),
        pytest.param("args.items[0]", {"items": [None]}, False, id="index; null counts as absent"),
        pytest.param("args.a", {"a": None}, False, id="key; null counts as absent"),
        pytest.param("args.a.b", {"a": {"b": None}}, False, id="nested key; null counts as absent"),
        pytest.param("args.a", {"a": False}, True, id="false is present"),
        pytest.param("args.a", {"a": ""}, True, id="empty string is present"),
        pytest.param("args.items[1]", {"items": [1]}, False, id="index out of range"),
        pytest.param("args.items[0]", {"items": {"0": 1}}, False, id="index on a dict"),
        pytest.param("args.items[0]", {"items": "abc"}, False, id="index on a string"),
        pytest.param("args.a[2].b", {"a": [0, 0, {"b": False}]}, True, id="mixed"),
        pytest.param("args.task-id", {"task-id": 1}, True, id="dash in key"),
        pytest.param("args.1", {1: "x"}, False, id="non-string key does not match"),
        pytest.param("args.1", {"1": "x"}, True, id="digit string key"),
        pytest.param("args.a", ["a"], False, id="args is a list"),
        pytest.param("args.a", "a", False, id="args is a string"),
        pytest.param("args.a", None, False, id="no args"),
        pytest.param("args", None, True, id="no args is empty args"),
    ],
)
def test_path_resolution(path: str, args: Any, present: bool) -> None:
    assert holds(leaf(path, "exists"), args) is present
    assert holds(leaf(path, "missing"), args) is not present
    assert holds(leaf(path, "missing"), args) is not present


def test_roots() -> None:
    assert holds(leaf("identity", "eq", "ops"), identity="ops")
    assert not holds(leaf("identity", "exists"))  # None -> missing
    assert not holds(leaf("identity", "neq", "ops"))  # comparisons on missing are false
    assert holds(leaf("session", "starts_with", "s-"), session="s-1")
    assert holds(leaf("server", "eq", "github"), server="github")
    assert not holds(leaf("server", "exists"))
    assert holds(leaf("tool", "eq", "t"))
    with pytest.raises(PlrError, match="single value"):  # identity, session, ... have no fields
        policy({"t": {"deny_if": [leaf("identity.name", "missing")]}})
    e = engine({"t": {"deny_if": [leaf("approved", "eq", True)]}})
    assert e.decide("t", approved=True).code == "deny_if"
    assert e.decide("t").code == "allowed"
    assert e.decide("t", approved=1).code == "allowed"  # type: ignore[arg-type] # only True approves


# --- operators ------------------------------------------------------------------------------

NAN = float("nan")
INF = float("inf")
HUGE = 10**5000


@pytest.mark.parametrize(
    "op, value, arg, expected",
    [
        # eq / neq: strict kinds, deep lists
        ("eq", "a", "a", True),
        ("eq", "a", "b", False),
        ("eq", 1, 1.0, True),
        ("eq", 1.5, 1.5, True),
        ("eq", 1, True, False),
        ("eq", True, 1, False),
        ("eq", False, 0, False),
        ("eq", True, True, True),
        ("eq", 0, "0", False),
        ("eq", None, None, True),
        ("eq", None, 0, False),
        ("eq", [1, "a"], [1, "a"], True),
        ("eq", [1], [True], False),
        ("eq", [1, [2]], [1, [2.0]], True),
        ("eq", [1], [1, 1], False),
        ("eq", [1], (1,), False),  # a tuple is not a list
        ("eq", 1, NAN, False),
        ("eq", 1, HUGE, False),
        ("eq", 1, b"1", False),
        ("eq", "a", object(), False),
        # neq: the same JSON type and a different value; across types it is false, like eq
        ("neq", "a", "b", True),
        ("neq", "a", "a", False),
        ("neq", 1, 2, True),
        ("neq", 1, 1.0, False),
        ("neq", 1, 2.5, True),
        ("neq", 1, True, False),  # a boolean is not a number
        ("neq", True, 1, False),
        ("neq", True, False, True),
        ("neq", False, False, False),
        ("neq", 5, "x", False),
        ("neq", "1", 1, False),
        ("neq", "root", ["root"], False),  # a list is not a string
        ("neq", None, None, False),
        ("neq", None, 0, False),  # null is its own type: `!= null` never holds
        ("neq", 0, None, False),
        ("neq", [1], [2], True),
        ("neq", [1], [1.0], False),
        ("neq", [1], "1", False),
        ("neq", [1], (2,), False),  # a tuple is not a JSON list
        ("neq", 1, NAN, True),  # NaN is a number that equals nothing
        ("neq", 1, HUGE, True),
        ("neq", "a", object(), False),
        ("neq", "a", b"b", False),
        # order: both numbers or both strings
        ("lt", 5, 4, True),
        ("lt", 5, 5, False),
        ("lte", 5, 5, True),
        ("gt", 5, 5.5, True),
        ("gte", 5, 5.0, True),
        ("gt", 5, True, False),
        ("lt", 5, False, False),
        ("gt", 5, "6", False),
        ("lt", "b", "a", True),
        ("gt", "b", "ba", True),
        ("lt", "b", 1, False),
        ("gt", 5, NAN, False),
        ("lt", 5, NAN, False),
        ("gte", 5, NAN, False),
        ("gt", 5, INF, True),
        ("lt", 5, -INF, True),
        ("gt", 5, HUGE, True),
        ("lt", 1.5, HUGE, False),
        ("lt", 1.5, -HUGE, True),
        ("gt", 5, None, False),
        ("gt", 5, [6], False),
        # in / not_in
        ("in", ["a", "b"], "a", True),
        ("in", ["a", "b"], "c", False),
        ("in", [1], True, False),
        ("in", [True], 1, False),
        ("in", [1], 1.0, True),
        ("in", [0], False, False),
        ("in", [False], False, True),
        ("in", [None], None, True),
        ("in", [[1, 2]], [1, 2], True),
        ("in", [[1, 2]], [1, True], False),
        ("in", ["a"], ["a"], False),
        ("in", [1], NAN, False),
        ("in", [1], HUGE, False),
        ("in", ["a"], {"a": 1}, False),
        ("in", ["a"], b"a", False),
        # not_in: the type of at least one item, and equal to none of them
        ("not_in", ["a", "b"], "c", True),
        ("not_in", ["a", "b"], "a", False),
        ("not_in", [1], True, False),  # no item is a boolean
        ("not_in", [True], 1, False),
        ("not_in", [True], False, True),
        ("not_in", [1], 2, True),
        ("not_in", [1], 1.0, False),
        ("not_in", ["a", 1], "b", True),
        ("not_in", ["a", 1], 2, True),
        ("not_in", ["a"], 2, False),
        ("not_in", ["root"], ["root"], False),  # a list, and no item is one
        ("not_in", [["a"]], ["b"], True),
        ("not_in", [["a"]], ["a"], False),
        ("not_in", [None], None, False),
        ("not_in", ["a"], None, False),  # null is its own type
        ("not_in", [None, "a"], "b", True),
        ("not_in", [], "a", False),  # no item, so no type to share
        ("not_in", [1], NAN, True),
        ("not_in", ["a"], {"a": 1}, False),
        ("not_in", ["a"], b"b", False),
        # contains: substring or strict list membership
        ("contains", "rm", "rm -rf", True),
        ("contains", "rm", "ls", False),
        ("contains", "a", ["a", "b"], True),
        ("contains", "a", ["ab"], False),
        ("contains", 1, [True], False),
        ("contains", 1, [1.0], True),
        ("contains", True, [1], False),
        ("contains", [1], [[1], 2], True),
        ("contains", 1, "1", False),
        ("contains", "a", {"a": 1}, False),
        ("contains", "a", 5, False),
        ("contains", "a", b"a", False),
        # starts_with / ends_with
        ("starts_with", "ab", "abc", True),
        ("starts_with", "ab", "cab", False),
        ("ends_with", "bc", "abc", True),
        ("ends_with", "ab", "abc", False),
        ("starts_with", "a", ["a"], False),
        ("ends_with", "1", 1, False),
        # regex: unanchored RE2 search on strings only
        ("regex", "b+", "abbbc", True),
        ("regex", "^b", "abc", False),
        ("regex", "(?i)RM\\s+-RF", "sudo rm  -rf /", True),
        ("regex", "a", ["a"], False),
        ("regex", "1", 1, False),
        ("regex", "a", b"a", False),
        ("regex", "a", None, False),
    ],
    ids=lambda v: "huge" if isinstance(v, int) and abs(v) > 10**100 else None,
)
def test_ops(op: str, value: Any, arg: Any, expected: bool) -> None:
    assert holds(leaf("args.v", op, value), {"v": arg}) is expected


@pytest.mark.parametrize(
    "op, value",
    [("eq", 1), ("neq", 1), ("lt", 1), ("gte", 1), ("in", [1]), ("not_in", [1]), ("contains", "a"),
     ("starts_with", "a"), ("ends_with", "a"), ("regex", ".*")],
)  # fmt: skip
def test_every_comparison_on_a_missing_path_is_false(op: str, value: Any) -> None:
    assert not holds(leaf("args.v", op, value), {})
    assert not holds(leaf("args.v", op, value), {"w": 1})


@pytest.mark.parametrize(
    "arg, op, value, expected",
    [
        (["a", "b", "c"], "eq", 3, True),
        ([], "eq", 0, True),
        ("one-id", "eq", 1, True),
        ({"a": 1, "b": 2}, "eq", 1, True),
        (None, "eq", 0, True),  # an explicit null is missing, as to `missing`
        (None, "eq", 1, False),
        (MISSING, "eq", 0, True),
        (MISSING, "neq", 1, True),  # count is never missing
        (MISSING, "not_in", [1, 2], True),
        (["a", "b"], "neq", "2", False),  # count is a number: never unequal to a string
        (["a", "b"], "not_in", ["1", "3"], False),
        (["a", "b"], "not_in", ["1", 3], True),
        (list(range(6)), "gt", 5, True),
        (["a"] * 5, "gt", 5, False),
    ],
)
def test_fn_count(arg: Any, op: str, value: Any, expected: bool) -> None:
    args = {} if arg is MISSING else {"v": arg}
    assert holds(leaf("args.v", op, value, fn="count"), args) is expected


@pytest.mark.parametrize(
    "arg, op, value, expected",
    [
        ("héllo", "eq", 5, True),
        ("", "eq", 0, True),
        ("x" * 20001, "lte", 20000, False),
        ([1, 2], "eq", 2, True),
        ({"a": 1, "b": 2, "c": 3}, "eq", 3, True),
        ({1: "x", None: 2}, "eq", 2, True),
        (12345, "eq", 5, False),
        (12345, "neq", 5, False),  # len of a number: every comparison is false
        (12345, "not_in", [1], False),
        (True, "gte", 0, False),
        (None, "gte", 0, False),
        (b"abc", "eq", 3, False),
        (MISSING, "eq", 0, False),
        (MISSING, "neq", 0, False),
        (MISSING, "lte", 10, False),
    ],
)
def test_fn_len(arg: Any, op: str, value: Any, expected: bool) -> None:
    args = {} if arg is MISSING else {"v": arg}
    assert holds(leaf("args.v", op, value, fn="len"), args) is expected


def test_combinators() -> None:
    t, f = leaf("args.a", "eq", 1), leaf("args.a", "eq", 2)
    a = {"a": 1}
    assert holds({"all": []}, a)
    assert not holds({"any": []}, a)
    assert holds({"all": [t, t]}, a) and not holds({"all": [t, f]}, a)
    assert holds({"any": [f, t]}, a) and not holds({"any": [f, f]}, a)
    assert holds({"not": f}, a) and not holds({"not": t}, a)
    assert holds({"not": leaf("args.b", "eq", 1)}, a)  # not over a missing comparison
    assert holds({"all": [{"any": [f, {"not": f}]}, {"not": {"all": [t, f]}}]}, a)


def test_deeply_nested_policy_conditions() -> None:
    c: dict[str, Any] = leaf("args.a", "eq", 1)
    for _ in range(100):
        c = {"not": {"not": c}}
    assert holds(c, {"a": 1}) and not holds(c, {"a": 2})


def test_describe() -> None:
    p = policy(
        {
            "x": {
                "deny_if": [
                    leaf("args.task_id", "gt", 5, fn="count"),
                    {"any": [leaf("args.a", "in", ["a", 1]), {"not": {"path": "approved", "op": "eq", "value": True}}]},
                    {"all": [leaf("args.r", "exists"), {"not": leaf("args.p", "regex", "^x")}]},
                ]
            }
        }
    )
    texts = [describe(c) for c in p.to_dict()["tools"]["x"]["deny_if"]]
    assert texts == [
        "count(args.task_id) > 5",
        'args.a in ["a", 1] or not approved',
        'args.r exists and not (args.p matches "^x")',
    ]


# --- limits -----------------------------------------------------------------------------------


def test_sliding_window_boundaries_and_retry_after() -> None:
    clock = Clock(1000.0)
    e = engine({"x": {"limits": [{"max": 2, "window": 10, "rule": "p.plr:17"}]}}, clock)
    assert e.decide("x", session="s").effect == "allow"  # hit at 1000
    clock.t = 1004.0
    assert e.decide("x", session="s").effect == "allow"  # hit at 1004
    clock.t = 1005.0
    d = e.decide("x", session="s")
    assert (d.effect, d.code, d.rule) == ("deny", "rate_limited", "p.plr:17")
    assert d.retry_after == pytest.approx(5.0)
    assert d.reason == "rate limit: at most 2 calls per 10 s per session; retry after 5 s"
    clock.t = 1010.0 - 1e-9  # the hit at 1000 still counts
    assert e.decide("x", session="s").code == "rate_limited"
    clock.t = 1010.0  # exactly `window` later it no longer counts
    assert e.decide("x", session="s").effect == "allow"
    clock.t = 1010.5
    d = e.decide("x", session="s")
    assert d.retry_after == pytest.approx(3.5)  # the oldest counted hit is now 1004
    assert d.to_dict()["retry_after"] == pytest.approx(3.5)


def test_limit_scopes() -> None:
    clock = Clock()
    e = engine(
        {
            "s": {"limits": [{"max": 1, "window": 60}]},  # per session by default
            "i": {"limits": [{"max": 1, "window": 60, "per": "identity"}]},
            "g": {"limits": [{"max": 1, "window": 60, "per": "global"}]},
        },
        clock,
    )
    assert e.decide("s", session="s1", identity="a").effect == "allow"
    assert e.decide("s", session="s1", identity="b").code == "rate_limited"
    assert e.decide("s", session="s2", identity="a").effect == "allow"
    assert e.decide("s").effect == "allow"  # no session: its own bucket
    assert e.decide("s").code == "rate_limited"

    assert e.decide("i", session="s1", identity="a").effect == "allow"
    assert e.decide("i", session="s2", identity="a").code == "rate_limited"
    assert e.decide("i", session="s1", identity="b").effect == "allow"

    assert e.decide("g", session="s1", identity="a").effect == "allow"
    d = e.decide("g", session="s9", identity="z")
    assert d.code == "rate_limited" and "shared by all callers" in d.reason


def test_limits_are_per_tool_and_per_limit() -> None:
    clock = Clock()
    e = engine(
        {
            "a": {"limits": [{"max": 1, "window": 60}]},
            "b": {"limits": [{"max": 3, "window": 60}, {"max": 2, "window": 5, "rule": "p.plr:2"}]},
        },
        clock,
    )
    assert e.decide("a", session="s").effect == "allow"
    assert e.decide("b", session="s").effect == "allow"  # a's quota is a's
    assert e.decide("b", session="s").effect == "allow"
    d = e.decide("b", session="s")
    assert d.rule == "p.plr:2" and "at most 2 calls per 5 s" in d.reason
    clock.t += 5
    assert e.decide("b", session="s").effect == "allow"
    d = e.decide("b", session="s")
    assert "at most 3 calls per 60 s" in d.reason and d.retry_after == pytest.approx(55.0)


def test_denied_and_approval_required_calls_consume_no_quota() -> None:
    clock = Clock()
    e = engine(
        {
            "x": {
                "action": "require_approval",
                "deny_if": [leaf("args.n", "gt", 5)],
                "require": [leaf("args.n", "exists")],
                "limits": [{"max": 2, "window": 60}],
            }
        },
        clock,
        all_tools={"limits": [{"max": 2, "window": 60}]},
    )
    for _ in range(5):
        assert e.decide("x", {"n": 9}, approved=True, session="s").code == "deny_if"
        assert e.decide("x", {}, approved=True, session="s").code == "require"
        assert e.decide("x", {"n": 1}, session="s").effect == "approval_required"
    assert e.decide("x", {"n": 1}, approved=True, session="s").effect == "allow"
    assert e.decide("x", {"n": 1}, approved=True, session="s").effect == "allow"
    assert e.decide("x", {"n": 1}, approved=True, session="s").code == "rate_limited"
    # rate-limited calls are refused, so they do not count either
    clock.t += 60
    assert e.decide("x", {"n": 1}, approved=True, session="s").effect == "allow"


def test_all_tools_and_tool_limits_are_one_atomic_acquire() -> None:
    clock = Clock(0.0)
    e = engine(
        {"c": {"limits": [{"max": 2, "window": 100, "rule": "tool"}]}, "x": {}},
        clock,
        all_tools={"limits": [{"max": 1, "window": 10, "rule": "all"}]},
    )
    assert e.decide("x", session="s").effect == "allow"  # all_tools: 1/1
    d = e.decide("c", session="s")
    assert (d.code, d.rule, d.retry_after) == ("rate_limited", "all", 10.0)
    assert "to any tool" in d.reason
    clock.t = 10.0
    assert e.decide("c", session="s").effect == "allow"  # c: 1/2 (the refusal did not count)
    clock.t = 20.0
    assert e.decide("c", session="s").effect == "allow"  # c: 2/2
    clock.t = 30.0
    d = e.decide("c", session="s")
    assert (d.code, d.rule, d.retry_after) == ("rate_limited", "tool", 80.0)
    # and that refusal consumed no all_tools quota
    assert e.decide("x", session="s").effect == "allow"


def test_retry_after_is_the_largest_wait() -> None:
    clock = Clock(0.0)
    e = engine(
        {"c": {"limits": [{"max": 1, "window": 30, "rule": "long"}, {"max": 1, "window": 5, "rule": "short"}]}},
        clock,
    )
    assert e.decide("c").effect == "allow"
    clock.t = 1.0
    d = e.decide("c")
    assert (d.retry_after, d.rule) == (29.0, "long")


def test_limits_survive_replace_policy() -> None:
    clock = Clock()
    doc = {"x": {"limits": [{"max": 2, "window": 60}]}}
    e = engine(doc, clock)
    assert [e.decide("x", session="s").effect for _ in range(3)] == ["allow", "allow", "deny"]
    e.replace_policy(policy(doc))
    assert e.decide("x", session="s").code == "rate_limited"
    e.replace_policy(policy({"x": {"limits": [{"max": 3, "window": 60}]}}))
    assert e.decide("x", session="s").effect == "allow"  # the two earlier hits still count
    assert e.decide("x", session="s").code == "rate_limited"
    e.replace_policy(policy({"x": {}}, hide=["x"]))
    assert e.decide("x").code == "hidden"
    assert e.policy.hide == ["x"]


def test_example_policy_limits_reset_after_a_minute() -> None:
    clock = Clock()
    e = Engine(load_policy(EXAMPLE), clock=clock)
    for _ in range(10):
        assert e.decide("cancel-task", {"task_id": "t"}, approved=True, session="s1").effect == "allow"
    d = e.decide("cancel-task", {"task_id": "t"}, approved=True, session="s1")
    assert (d.effect, d.code) == ("deny", "rate_limited")
    assert d.reason == "rate limit: at most 10 calls per 60 s per session; retry after 60 s"
    assert e.decide("cancel-task", {"task_id": "t"}, approved=True, session="s2").effect == "allow"
    clock.t += 60
    assert e.decide("cancel-task", {"task_id": "t"}, approved=True, session="s1").effect == "allow"


def test_memory_store_contract() -> None:
    s = MemoryLimitStore()
    assert isinstance(s, LimitStore)
    k1, k2 = ("k1", 2, 10.0), ("k2", 1, 10.0)
    assert s.acquire([k1], 0.0) is None
    assert s.acquire([k1, k2], 1.0) is None  # k1: 2/2, k2: 1/1
    assert s.acquire([k1], 2.0) == 8.0  # the oldest counted hit (0.0) expires at 10
    assert s.acquire([k1, k2], 2.0) == 9.0  # largest over the keys
    assert s.acquire_which([k2, k1], 2.0) == (9.0, 0)
    assert s.acquire([("k3", 1, 10.0), k2], 3.0) == 8.0
    assert s.acquire([("k3", 1, 10.0)], 3.0) is None  # the refusal recorded nothing on k3
    assert s.acquire([k1], 10.0) is None  # exactly window: 0.0 expired
    # a smaller max after a reload: wait until enough hits expire for one more
    assert s.acquire([("k1", 1, 10.0)], 10.5) == pytest.approx(9.5)  # both hits (1, 10) must go


def test_memory_store_forgets_idle_keys() -> None:
    s = MemoryLimitStore()
    for i in range(3000):
        assert s.acquire([(f"s{i}", 1, 1.0)], 0.0) is None
    assert s.acquire([("late", 1, 1.0)], 5.0) is None
    for i in range(3000):
        s.acquire([(f"t{i}", 1, 1.0)], 5.0)
    assert not any(k.startswith("s") for k in s._hits)  # swept once they had expired


def test_memory_store_is_thread_safe() -> None:
    e = Engine(policy({"x": {"limits": [{"max": 50, "window": 1000}]}}), clock=Clock())
    results: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        out = [e.decide("x", session="s").effect for _ in range(100)]
        with lock:
            results.extend(out)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("allow") == 50 and results.count("deny") == 750


def test_a_store_with_only_acquire() -> None:
    class Plain:
        def __init__(self) -> None:
            self.inner = MemoryLimitStore()
            self.calls: list[list[tuple[str, int, float]]] = []

        def acquire(self, keys: Any, now: float) -> float | None:
            self.calls.append(list(keys))
            return self.inner.acquire(keys, now)

    store = Plain()
    e = Engine(policy({"x": {"limits": [{"max": 1, "window": 60, "rule": "p:1"}]}}), clock=Clock(), store=store)
    assert e.decide("x", session="s").effect == "allow"
    d = e.decide("x", session="s")
    assert (d.code, d.rule, d.retry_after) == ("rate_limited", "p:1", 60.0)
    keys = {k for call in store.calls for k, _, _ in call}
    assert keys == {"t\x00x\x000\x00c\x00session\x00s"}  # the tool, its limit, what it counts, per what


# --- hostile arguments --------------------------------------------------------------------

BIG = "a" * (10 * 1024 * 1024)


def _deep_list(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


def _deep_dict(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = {"a": v}
    return v


HOSTILE_POLICY = {
    "t": {
        "deny_if": [
            leaf("args.cmd", "regex", "(?i)rm\\s+-rf"),
            leaf("args.cmd", "contains", "evil"),
            leaf("args.ids", "gt", 100, fn="count"),
            leaf("args.n", "gt", 10**6),
            leaf("args.deep", "eq", [[[1]]]),
            leaf("args.deep", "in", [[[2]], "x"]),
            leaf("args.deep", "contains", [[3]]),
            {"all": [leaf("args.s", "exists"), {"not": leaf("args.s", "starts_with", "")}]},  # s not a str
        ],
        "require": [leaf("args.cmd", "exists"), leaf("args.cmd", "lte", 10**6, fn="len")],
    }
}
HOSTILE_ARGS = [
    pytest.param({"cmd": BIG}, "require", id="10MB string: len check fails"),
    pytest.param({"cmd": "x" * 999_000}, "allowed", id="1MB string passes"),
    pytest.param({"cmd": BIG[:-4] + "evil"}, "deny_if", id="10MB string contains"),
    pytest.param({"cmd": "x" + " " * 5_000_000 + "rm   -rf /"}, "deny_if", id="5MB string regex"),
    pytest.param({"cmd": "ok", "deep": _deep_list(10_000)}, "allowed", id="10k-deep list"),
    pytest.param({"cmd": "ok", "deep": _deep_dict(10_000)}, "allowed", id="10k-deep dict"),
    pytest.param({"cmd": "ok", "ids": _deep_list(10_000)}, "allowed", id="count of a deep list"),
    pytest.param(_deep_dict(10_000), "require", id="10k-deep args"),
    # a server could read these as other values than the ones decided on: refused before any rule
    pytest.param({"cmd": "ok", "n": 10**5000}, "invalid_args", id="huge int"),
    pytest.param({"cmd": "ok", "n": -(10**5000)}, "invalid_args", id="huge negative int"),
    pytest.param({"cmd": "ok", "n": float("nan")}, "invalid_args", id="NaN"),
    pytest.param({"cmd": "ok", "n": float("inf")}, "invalid_args", id="Infinity"),
    pytest.param({"cmd": "ok", "n": 2**53}, "invalid_args", id="2^53: a double cannot tell it from 2^53 + 1"),
    pytest.param({"cmd": "ok", "n": 2**53 - 1}, "deny_if", id="2^53 - 1: exact everywhere, decided"),
    # not JSON at all (a Python caller's values): refused, never read as missing
    pytest.param({"cmd": "ok", 1: "x", None: 2, (1, 2): 3}, "invalid_args", id="non-string keys"),
    pytest.param({"cmd": ["rm -rf /", "evilish"]}, "allowed", id="list where a string is expected"),
    pytest.param({"cmd": ["ok", "evil"]}, "deny_if", id="contains on a list is membership"),
    pytest.param({"cmd": b"rm -rf /"}, "invalid_args", id="bytes"),
    pytest.param({"cmd": object()}, "invalid_args", id="arbitrary object"),
    pytest.param({"cmd": "ok", "s": 5}, "deny_if", id="number where a string is expected"),
    pytest.param({"cmd": "ok", "ids": list(range(1_000_000))}, "deny_if", id="million-item list"),
    pytest.param(object(), "invalid_args", id="args is an object"),
    pytest.param([1, 2, 3], "invalid_args", id="args is a list"),
]


@pytest.mark.parametrize("args, code", HOSTILE_ARGS)
def test_hostile_args_give_a_defined_decision(args: Any, code: str) -> None:
    e = engine(HOSTILE_POLICY)
    d = e.decide("t", args, approved=True)
    assert d.code == code, d
    assert e.decide("t", args, approved=True, explain=True).code == code


def test_deep_path_into_deep_value() -> None:
    depth = 10_000
    path = "args.d" + "[0]" * 50
    assert holds(leaf(path, "exists"), {"d": _deep_list(depth)})
    assert not holds(leaf(path, "eq", 1), {"d": _deep_list(depth)})
    assert holds(leaf(path, "eq", 1), {"d": _deep_list(50)})
    assert not holds(leaf(path, "exists"), {"d": _deep_list(10)})


def test_hostile_context_values() -> None:
    e = engine({"x": {"limits": [{"max": 1, "window": 60, "per": "identity"}]}})
    for who in (10**5000, b"ops", ["ops"], object()):
        assert e.decide("x", identity=who).effect in ("allow", "deny")  # type: ignore[arg-type]
        assert e.decide("x", identity=who).code != "error"  # type: ignore[arg-type]
    assert not holds(leaf("identity", "eq", "ops"), identity=b"ops")
    huge_name = "t" * 1_000_000
    d = engine({}).decide(huge_name)
    assert d.code == "default" and len(d.reason) < 300


# --- the spec example ---------------------------------------------------------------------


def test_codex_worker_example() -> None:
    e = Engine(load_policy(EXAMPLE), clock=Clock())
    d = e.decide("cancel-task", {"task_id": "t-1"})
    assert (d.effect, d.code) == ("approval_required", "require")
    assert d.reason == "Destructive: cancels running tasks; a human must approve"
    assert e.decide("cancel-task", {"task_id": "t-1"}, approved=True).effect == "allow"
    d = e.decide("cancel-task", {"task_id": ["a", "b", "c", "d", "e", "f"]}, approved=True)
    assert (d.effect, d.code, d.reason) == ("deny", "deny_if", "Cancel at most five tasks per call")
    assert e.decide("cancel-task", {"task_id": ["a", "b", "c", "d", "e"]}, approved=True).effect == "allow"
    d = e.decide("purge-workspace")
    assert (d.effect, d.code) == ("deny", "hidden")
    d = e.decide("format-disk")
    assert (d.effect, d.code) == ("deny", "default")
    d = e.decide("spawn-task", {"prompt": "x" * 30000})
    assert (d.effect, d.code) == ("deny", "require")
    assert d.reason == "`spawn-task`: requirement not met: len(args.prompt) <= 20000"
    assert e.decide("spawn-task", {"prompt": "write tests"}).effect == "allow"
    assert e.decide("spawn-task", {}).code == "require"  # len of a missing path is false
    assert e.decide("get-task").effect == "allow"
    assert e.visible(["cancel-task", "get-task", "list-tasks", "purge-workspace", "spawn-task"]) == [
        "cancel-task", "get-task", "list-tasks", "spawn-task",
    ]  # fmt: skip


# --- explain ----------------------------------------------------------------------------------


def test_explain_trace() -> None:
    e = Engine(load_policy(EXAMPLE), clock=Clock())
    d = e.decide("cancel-task", {"task_id": list("abcdef")}, approved=True, explain=True)
    assert d.code == "deny_if" and d.trace is not None
    assert all(isinstance(s, TraceStep) for s in d.trace)
    assert TraceStep("deny_if count(args.task_id) > 5", True, None) in d.trace
    d = e.decide("cancel-task", {"task_id": "t"}, approved=True, explain=True)
    assert d.trace is not None
    assert [s.result for s in d.trace if s.check.startswith("limit ")] == [True]  # one step per limit
    assert e.decide("format-disk", explain=True).trace == (
        TraceStep("hidden (tool in hide)", False),
        TraceStep("governed (tool in tools)", False),
        TraceStep("default", "deny"),
    )
    d = e.decide("spawn-task", {"prompt": "x" * 30000}, explain=True)
    assert d.trace is not None and d.trace[-1].check == "require len(args.prompt) <= 20000 (if approved)"
    d = e.decide("get-task", explain=True)
    assert d.effect == "allow" and d.trace is not None and d.trace[-1].check == "governed (tool in tools)"


def test_explain_counts_like_decide() -> None:
    clock = Clock()
    e = engine({"x": {"limits": [{"max": 1, "window": 60, "rule": "p:3"}]}}, clock)
    assert e.decide("x", explain=True).effect == "allow"
    d = e.decide("x", explain=True)
    assert d.code == "rate_limited" and d.trace is not None
    assert d.trace[-1] == TraceStep("limit at most 1 call per 60 s per session", "reached; retry after 60 s", "p:3")


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, 5, 6, -1]),
    st.sampled_from([1, -1]).map(lambda sign: sign * 10**5000),  # built lazily: its repr would fail
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["a", "b", "rm -rf /", "ab", "t-1", ""]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "c", "x"]), inner, max_size=4)
    ),
    max_leaves=12,
)
PATHS = ["args.a", "args.b", "args.a.b", "args.a[0]", "args.a[1].x", "identity", "session", "tool", "approved", "args"]
LITERALS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.sampled_from([1.5, 0.0, "a", "ab", "", "rm"]),
    st.lists(st.one_of(st.integers(-1, 3), st.sampled_from(["a", "b"]), st.booleans()), max_size=3),
)  # fmt: skip


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(st.sampled_from(PATHS))
    op = draw(st.sampled_from(["eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in", "contains",
                               "starts_with", "ends_with", "regex", "exists", "missing"]))  # fmt: skip
    if op in ("exists", "missing"):
        return {"path": path, "op": op}
    if op in ("in", "not_in"):
        value: Any = draw(st.lists(LITERALS, max_size=3))
    elif op in ("starts_with", "ends_with"):
        value = draw(st.sampled_from(["a", "", "rm", "b"]))
    elif op == "regex":
        value = draw(st.sampled_from(["a", "^a$", "(?i)RM", "[0-9]+", ""]))
    else:
        value = draw(LITERALS)
    d = {"path": path, "op": op, "value": value}
    fn = draw(st.sampled_from([None, None, "count", "len"]))
    if fn and op not in ("regex", "starts_with", "ends_with"):
        d["fn"] = fn
    return d


conditions = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(lambda cs: {"all": cs}, st.lists(inner, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(inner, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deny_if=st.lists(conditions, max_size=2),
    require=st.lists(conditions, max_size=2),
    action=st.sampled_from(["allow", "allow", "require_approval", "deny"]),
    default=st.sampled_from(["allow", "deny"]),
    calls=st.lists(
        st.tuples(
            st.sampled_from(["x", "x", "x", "plain", "hidden", "other"]),
            json_values,
            st.booleans(),
            st.sampled_from([None, "s1", "s2"]),
            st.sampled_from([None, "ops"]),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_explain_agrees_with_decide(
    deny_if: list[Any], require: list[Any], action: str, default: str, calls: list[tuple[Any, ...]]
) -> None:
    doc = {
        "x": {"action": action, "deny_if": deny_if, "require": require, "limits": [{"max": 2, "window": 60}]},
        "plain": {},
        "hidden": {},
    }
    top = {"default": default, "hide": ["hidden"], "all_tools": {"limits": [{"max": 7, "window": 60}]}}
    fast, slow = engine(doc, **top), engine(doc, **top)
    for tool, args, approved, session, identity in calls:
        kw = {"approved": approved, "session": session, "identity": identity}
        for a in (args, {"a": args}, {"a": [args, {"x": args}], "b": args}):
            d1 = fast.decide(tool, a, **kw)
            d2 = slow.decide(tool, a, **kw, explain=True)
            assert d1.code != "error" and d1.trace is None and d2.trace is not None
            assert (d1.effect, d1.code, d1.reason, d1.rule, d1.retry_after) == (
                d2.effect, d2.code, d2.reason, d2.rule, d2.retry_after,
            )  # fmt: skip


def _compiled_engine(src: str) -> tuple[Engine, Engine]:
    """The engine on a compiled .plr source, built both ways (model, canonical dump)."""
    from dsl.compiler import compile_source

    p = compile_source(src, "p.plr")
    return Engine(p), Engine.from_data(p.to_dict())


@pytest.mark.parametrize("user", [["root"], 1, 1.5, True, None, {"name": "root"}])
def test_neq_on_a_value_of_another_type_is_false(user: Any) -> None:
    """The reviewer's reproduction: `!=` used to hold for any value of another type."""
    src = 'server "s" { tool "t" write }\ndefault deny\nallow tool "t" if args.user != "root"\n'
    for e in _compiled_engine(src):
        assert e.decide("t", {"user": user}).effect == "deny"
        assert e.decide("t", {"user": user}, explain=True).effect == "deny"
        assert e.decide("t", {"user": "bob"}).effect == "allow"
        assert e.decide("t", {"user": "root"}).effect == "deny"


def test_not_in_needs_the_type_of_an_item() -> None:
    src = 'default deny\nallow tool "t" if args.u not in ["a", 1]\n'
    for e in _compiled_engine(src):
        got = {repr(u): e.decide("t", {"u": u}).effect for u in ["b", 2, "a", 1, 1.0, True, None, ["b"], {}]}
        assert got == {
            "'b'": "allow", "2": "allow", "'a'": "deny", "1": "deny", "1.0": "deny",
            "True": "deny", "None": "deny", "['b']": "deny", "{}": "deny",
        }  # fmt: skip


def test_allow_if_restricts_a_tool_that_a_rule_pack_allows() -> None:
    """The reviewer's reproduction: `allow read tools` used to drop get-env's `allow … if`."""
    src = (
        'import "stdlib/server-everything"\nimport "stdlib/read_only"\n'
        'allow tool "get-env" if identity == "ops"\n'
    )
    from dsl.compiler import compile_source

    assert compile_source(src, "p.plr", source=False).to_dict()["tools"]["get-env"] == {
        "require": [{"op": "eq", "path": "identity", "value": "ops"}]
    }
    for e in _compiled_engine(src):
        assert (e.decide("get-env", identity="intern").effect, e.decide("get-env", identity="intern").code) == (
            "deny",
            "require",
        )
        assert e.decide("get-env").effect == "deny"
        assert e.decide("get-env", identity="ops").effect == "allow"
        assert e.decide("echo", {"message": "hi"}, identity="intern").effect == "allow"  # other read tools


def test_allow_if_restricts_a_bare_allow_of_the_same_tool_under_either_default() -> None:
    for default in ("deny", "allow"):
        src = f'default {default}\nallow tool "x"\nallow tool "x" if args.ok == true\n'
        for e in _compiled_engine(src):
            assert e.decide("x", {}).code == "require"
            assert e.decide("x", {"ok": True}).code == "allowed"


def test_nan_never_equal_even_to_itself() -> None:
    nan = float("nan")
    assert not holds(leaf("args.v", "contains", 1), {"v": [nan]})
    assert holds(leaf("args.v", "neq", 1), {"v": nan})
    assert not holds(leaf("args.v", "in", [1, 2.5]), {"v": nan})


# --- a differential check against a plain reading of language.md -------------------------


def _ref_resolve(path: str, ctx: dict[str, Any]) -> Any:
    root = re.match(r"[a-z]+", path).group()  # type: ignore[union-attr]
    v = ctx[root]
    for step in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", path[len(root) :]):
        key, index = step
        if key:
            if not isinstance(v, dict) or key not in v:
                return MISSING
            v = v[key]
        else:
            if not isinstance(v, list) or int(index) >= len(v):
                return MISSING
            v = v[int(index)]
    return v


def _ref_kind(v: Any) -> str:
    for name, types in (("bool", bool), ("num", (int, float)), ("str", str), ("list", list), ("dict", dict)):
        if isinstance(v, types):
            return name
    return "null" if v is None else "other"


def _ref_eq(a: Any, b: Any) -> bool:
    if _ref_kind(a) != _ref_kind(b) or _ref_kind(a) == "other":
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_ref_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_ref_eq(a[k], b[k]) for k in a)
    return bool(a == b)


def _ref_holds(c: dict[str, Any], ctx: dict[str, Any]) -> bool:
    if "all" in c:
        return all(_ref_holds(x, ctx) for x in c["all"])
    if "any" in c:
        return any(_ref_holds(x, ctx) for x in c["any"])
    if "not" in c:
        return not _ref_holds(c["not"], ctx)
    v = _ref_resolve(c["path"], ctx)
    op, lit = c["op"], c.get("value")
    if op == "exists":  # null is absent
        return v is not MISSING and v is not None
    if op == "missing":
        return v is MISSING or v is None
    if c.get("fn") == "count":
        v = 0 if v is MISSING else len(v) if isinstance(v, list) else 1
    elif c.get("fn") == "len":
        if not isinstance(v, (str, list, dict)):
            return False
        v = len(v)
    if v is MISSING:
        return False
    kv, kl = _ref_kind(v), _ref_kind(lit)
    if op == "eq":
        return _ref_eq(v, lit)
    if op == "neq":  # different types are never compared: `!=` needs the same type
        return kv == kl and kv != "other" and not _ref_eq(v, lit)
    if op in ("lt", "lte", "gt", "gte"):
        if kv != kl or kv not in ("num", "str"):
            return False
        return {"lt": v < lit, "lte": v <= lit, "gt": v > lit, "gte": v >= lit}[op]
    if op == "in":
        return any(_ref_eq(v, x) for x in lit)
    if op == "not_in":  # the type of some item, and equal to none
        return any(_ref_kind(x) == kv for x in lit) and not any(_ref_eq(v, x) for x in lit)
    if op == "contains":
        if kv == "str":
            return kl == "str" and lit in v
        return kv == "list" and any(_ref_eq(x, lit) for x in v)
    if op == "starts_with":
        return kv == "str" and v.startswith(lit)
    if op == "ends_with":
        return kv == "str" and v.endswith(lit)
    if op == "regex":
        return kv == "str" and re.search(lit, v) is not None  # the sampled patterns mean the same in re
    raise AssertionError(op)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cond=conditions,
    args=json_values,
    identity=st.sampled_from([None, "ops", "a"]),
    session=st.sampled_from([None, "s1"]),
    approved=st.booleans(),
)
def test_conditions_agree_with_a_plain_reading_of_the_spec(
    cond: dict[str, Any], args: Any, identity: Any, session: Any, approved: bool
) -> None:
    for a in (args, {"a": args, "b": [args]}, {"a": [args, {"x": args}]}):
        e = engine({"t": {"deny_if": [cond]}})
        d = e.decide("t", a, identity=identity, session=session, approved=approved)
        if argument_problem(a) is not None:  # refused before any condition; the condition still has a meaning
            assert d.code == "invalid_args"
            ctx_t = (a, MISSING if identity is None else identity, MISSING if session is None else session, MISSING, "t", approved)
            got = bool(compile_condition(cond)(ctx_t))
        else:
            got = d.code == "deny_if"
        ctx = {
            "args": {} if a is None else a,
            "identity": MISSING if identity is None else identity,
            "session": MISSING if session is None else session,
            "server": MISSING,
            "tool": "t",
            "approved": approved,
        }
        assert got == _ref_holds(cond, ctx), (cond, a)


# --- Engine.from_data: the canonical dump only, never a guess -------------------------------------

_CANONICAL = {"version": "1", "default": "deny", "tools": {"rm": {"action": "deny"}, "ls": {}}}


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda d: d["tools"]["rm"].update(action="Deny"), "tools.rm.action"),
        (lambda d: d["tools"]["ls"].update(deny_if=[{"path": "args.a", "op": "eq", "value": 1, "fn": "cnt"}]), "fn"),
        (lambda d: d["tools"]["ls"].update(denyif=[]), "unexpected keys ['denyif']"),
        (lambda d: d["tools"]["ls"].update(rate_limit={"max": 1, "window": 60}), "unexpected keys ['rate_limit']"),
        (lambda d: d.update(hide="rm"), "hide"),
        (lambda d: d["tools"]["ls"].update(limits=[{"max": 1, "window": -1, "per": "session"}]), "window"),
        (lambda d: d["tools"]["ls"].update(limits=[{"max": 1, "window": "60", "per": "session"}]), "window"),
        (lambda d: d["tools"]["ls"].update(limits=[{"max": True, "window": 60, "per": "session"}]), "max"),
        (lambda d: d["tools"]["ls"].update(require=[{"path": "args.a", "op": "exists", "value": 1}]), "value"),
        (lambda d: d["tools"]["ls"].update(require=[{"all": [], "any": []}]), "unexpected keys"),
        (lambda d: d["tools"]["ls"].update(require=[{"path": "args.a", "op": "regex", "value": "("}]), "require[0]"),
        (lambda d: d.update(default="maybe"), "default"),
        (lambda d: d.update(version=1), "version"),
    ],
)
def test_from_data_refuses_anything_but_the_canonical_dump(mutate, where: str) -> None:
    import copy

    data = copy.deepcopy(_CANONICAL)
    mutate(data)
    with pytest.raises(PlrError) as e:
        Engine.from_data(data)
    assert where in str(e.value)


def test_from_data_on_the_dump_of_every_example_decides_as_the_model() -> None:
    for example in sorted(EXAMPLES.rglob("*.plr")):
        policy = compile_files([str(example)])
        a, b = Engine(policy), Engine.from_data(policy.to_dict())
        for tool in [*policy.tools, "unknown-tool"]:
            for args in ({}, {"task_id": "t1"}, {"task_id": ["a", "b", "c", "d", "e", "f"]}):
                assert a.decide(tool, args, explain=True) == b.decide(tool, args, explain=True)
