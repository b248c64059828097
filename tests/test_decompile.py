"""`plr decompile`: JSON → .plr that compiles back to the same policy (the round trip), and
valid, explained plr for the JSON that plr cannot say exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.compiler import compile_files, compile_source
from dsl.decompile import HEADER, decompile
from dsl.engine import Engine
from dsl.errors import PlrError
from dsl.format import format_source, is_formatted
from dsl.policy import Policy, load_policy
from dsl.validate import tool_name_problem
from dsl.vocab import has_glob_chars

REPO = Path(__file__).resolve().parent.parent
from tests.conftest import SPEC_JSON
REGEXES = ["^a", "(?i)rm\\s+-rf", "[0-9]+$", "^(?:x|y)/", "é"]


def round_trip(policy: Policy) -> str:
    """Decompile, check the text is canonical plr, and that it compiles back to ``policy``."""
    text = decompile(policy)
    assert text.startswith(HEADER + "\n")
    assert is_formatted(text)
    assert compile_source(text, "decompiled.plr", source=False).to_json() == policy.strip_source().to_json()
    return text


def policy(tools: dict[str, Any], **top: Any) -> Policy:
    return load_policy({"version": "1", "default": "deny", **top, "tools": tools})


# --- compiled policies -------------------------------------------------------------------------


def test_spec_example_json() -> None:
    text = round_trip(load_policy(str(SPEC_JSON)))
    assert "# note" not in text
    assert 'allow tool "spawn-task" if len(args.prompt) <= 20000' in text
    assert 'deny tool "cancel-task" unless approved\n    reason "Destructive' in text


def _compilable_files() -> list[Path]:
    return sorted([*(REPO / "examples").glob("*.plr"), *(REPO / "stdlib_rules").glob("*.plr")])


@pytest.mark.parametrize("path", _compilable_files(), ids=lambda p: p.name)
def test_compiled_examples(path: Path) -> None:
    try:
        compiled = compile_files([str(path)])
    except PlrError as e:
        pytest.skip(f"does not compile on its own: {e}")
    text = round_trip(compiled)
    assert "# note" not in text
    # A fixed point: decompiling the recompiled policy gives the same text.
    assert decompile(compile_source(text, source=False)) == text


SOURCE_WITH_EVERYTHING = """\
package every.thing-1
server "s" {
    tool "r1" read
    tool "w1" write
    tool "d1" destructive
}
server "extras" {
    tool "a" execute tool "b" execute tool "c" execute tool "d" execute tool "e" execute
    tool "h0" execute tool "h1" execute tool "h2" execute tool "weird\\"name\\"é" execute
}
default deny
allow read tools
allow tool "a" if args.x == 1 reason "one"
allow tool "a" if (args.y == 2 or args.z == 3) or args.q exists
allow tool "a" if { args.p != null args.list[0]["k k"] in [1, "2", true, null, [3.5]] }
deny tool "a" unless approved reason "ask"
deny tool "a" unless identity not in ["x"] reason "who"
deny tool "a" unless { approved }
deny tool "a" unless { approved and session == "s" args.t starts_with "p" }
deny tool "a" if count(args.ids) > 5 or len(args.s) >= 3 and not tool ends_with "z" reason "big"
deny tool "a" if args.s matches "(?i)rm\\\\s" or args.l contains "v" or server missing
deny tool "a" if not (args.a < 1.5 or args.b <= -2) and args.c > 0 and args.d >= 1e3
limit tool "a" to 3 per second per session
limit tool "a" to 4 per 90s per identity
limit tool "a" to 5 per 2h per global
deny tool "b" reason "never"
deny tool "c"
allow tool "d" if approved
deny tool "d" if args.x == false
deny tool "e" unless args.k exists
hide tool "h1"
hide tools ["h2", "h0"]
limit all tools to 100 per day per identity
limit all tools to 7 per minute
allow tool "weird\\"name\\"é"
"""


@pytest.mark.parametrize("default", ["deny", "allow"])
def test_source_with_every_construct(default: str) -> None:
    source = SOURCE_WITH_EVERYTHING.replace("default deny", f"default {default}")
    compiled = compile_source(source, "every.plr")
    text = round_trip(compiled)
    assert "# note" not in text


def test_allow_if_beside_an_unconditional_allow_survives_the_round_trip() -> None:
    """The compiler keeps a tool's `allow … if` beside `allow read tools` / `allow tool "x"`; the
    decompiled rules say so, and the recompiled policy still denies when no condition holds."""
    source = (
        'server "s" {\n    tool "r1" read\n    tool "r2" read\n}\ndefault deny\nallow read tools\n'
        'allow tool "r1" if identity == "ops"\nallow tool "r2"\nallow tool "r2" if args.n != 1\n'
    )
    text = round_trip(compile_source(source, "p.plr"))
    assert 'allow tool "r1" if identity == "ops"' in text
    assert 'allow tool "r2" if args.n != 1' in text
    e = Engine(compile_source(text, "back.plr"))
    assert [e.decide("r1", identity=who).effect for who in ("ops", "intern", None)] == ["allow", "deny", "deny"]
    assert [e.decide("r2", {"n": n}).effect for n in (2, 1, "2", None)] == ["allow", "deny", "deny", "deny"]


def test_hide_all_tools() -> None:
    compiled = compile_source('default allow\nhide all tools\nlimit tool "a" to 1 per day\n')
    assert "hide all tools" in round_trip(compiled)


# --- hand-written JSON -------------------------------------------------------------------------


def leaf(path: str, op: str, value: Any = ..., **kw: Any) -> dict[str, Any]:
    d = {"path": path, "op": op, **kw}
    if value is not ...:
        d["value"] = value
    return d


APPROVED = leaf("approved", "eq", True)
ARGS_D = leaf("args.d", "eq", 4)

HAND_WRITTEN: dict[str, Policy] = {
    "empty deny": policy({}),
    "empty allow": policy({}, default="allow"),
    "bare tools under both defaults": policy({"a": {}, "b": {}}),
    "bare tool under default allow": policy({"a": {}}, default="allow"),
    "package": policy({"a": {}}, package="x.y_z-1"),
    "every op": policy(
        {
            "t": {
                "deny_if": [
                    leaf("args.a", "eq", "s"),
                    leaf("args.a", "neq", None),
                    leaf("args.a", "lt", 1),
                    leaf("args.a", "lte", 1.25),
                    leaf("args.a", "gt", -3),
                    leaf("args.a", "gte", 1e20),
                    leaf("args.a", "in", ["x", 1, True, None, [1]]),
                    leaf("args.a", "not_in", []),
                    leaf("args.a", "contains", "x"),
                    leaf("args.a", "starts_with", "p"),
                    leaf("args.a", "ends_with", '\n\t"q"'),
                    leaf("args.a", "regex", "(?i)^a\\d+$"),
                    leaf("args.a", "exists"),
                    leaf("args.a", "missing"),
                    leaf("args.a", "eq", [1, [2, "x"]]),
                ]
            }
        }
    ),
    "every fn": policy(
        {
            "t": {
                "require": [leaf("args.ids", "lte", 5, fn="count"), leaf("args.s", "in", [1, 2], fn="len")],
                "deny_if": [leaf("identity", "gt", 3, fn="len"), leaf("args.x", "neq", 0, fn="count")],
            }
        }
    ),
    "every root and path shape": policy(
        {
            "t": {
                "deny_if": [
                    leaf("identity", "eq", "i"),
                    leaf("session", "eq", "s"),
                    leaf("server", "eq", "v"),
                    leaf("tool", "eq", "t"),
                    leaf("approved", "eq", False),
                    leaf('args.a[0].b["c d"]["x.y"][12].in', "eq", 1),
                    leaf("args", "exists"),
                ]
            }
        }
    ),
    "every limit scope and window": policy(
        {
            "t": {
                "limits": [
                    {"max": 1, "window": 1},
                    {"max": 2, "window": 60, "per": "identity"},
                    {"max": 3, "window": 90, "per": "global"},
                    {"max": 4, "window": 7200.0, "per": "session"},
                    {"max": 5, "window": 86400 * 3},
                ]
            }
        },
        all_tools={"limits": [{"max": 300, "window": 3600, "per": "identity"}, {"max": 9, "window": 5}]},
    ),
    "seed rate_limit": policy({"t": {"rate_limit": {"max": 10, "window": 60}}}),
    "actions": policy(
        {
            "denied": {"action": "deny"},
            "denied-with-reason": {"action": "deny", "reason": "no"},
            "approval": {"action": "require_approval"},
            "approval-with-reason": {"action": "require_approval", "reason": "ask", "deny_if": [APPROVED]},
        },
        default="allow",
    ),
    "require: allow-if group first, deny-unless after": policy(
        {
            "t": {
                "require": [
                    {
                        "any": [
                            leaf("args.a", "eq", 1, reason="r1"),
                            {"any": [leaf("args.b", "eq", 2), leaf("args.c", "exists")]},
                        ]
                    },
                    leaf("args.d", "eq", 4, reason="r4"),
                    {"all": [leaf("args.e", "eq", 5), leaf("args.f", "eq", 6)], "reason": "r5"},
                    {"any": [leaf("args.g", "eq", 7), {"all": [leaf("args.h", "eq", 8), leaf("args.i", "eq", 9)]}]},
                ]
            }
        }
    ),
    "require: approved first": policy({"t": {"require": [APPROVED, leaf("args.a", "exists")]}}),
    "require: approved later, twice, with a reason": policy(
        {"t": {"require": [leaf("args.a", "exists"), APPROVED, {**APPROVED, "reason": "ask"}]}}
    ),
    "require: single any with a reason": policy(
        {"t": {"require": [{"any": [leaf("args.a", "eq", 1), leaf("args.b", "eq", 2)], "reason": "either"}]}}
    ),
    "require under approval action": policy(
        {"t": {"action": "require_approval", "reason": "human", "require": [leaf("args.a", "exists")]}}
    ),
    "nesting: not, and under or, or under and, right-nested": policy(
        {
            "t": {
                "deny_if": [
                    {"not": {"not": leaf("args.a", "exists")}},
                    {"not": {"all": [leaf("args.a", "eq", 1), {"not": leaf("args.b", "eq", 2)}]}},
                    {"any": [{"all": [leaf("args.a", "eq", 1), leaf("args.b", "eq", 2)]}, leaf("args.c", "eq", 3)]},
                    {"all": [{"any": [leaf("args.a", "eq", 1), leaf("args.b", "eq", 2)]}, leaf("args.c", "eq", 3)]},
                    {"all": [{"all": [leaf("args.a", "eq", 1), leaf("args.b", "eq", 2)]}, leaf("args.c", "eq", 3)]},
                    {"any": [leaf("args.a", "eq", 1), {"any": [leaf("args.b", "eq", 2), leaf("args.c", "eq", 3)]}]},
                    {
                        "all": [
                            leaf("args.x", "eq", 0),
                            {
                                "any": [
                                    leaf("args.a", "eq", 1),
                                    {"all": [leaf("args.b", "eq", 2), {"all": [leaf("args.c", "eq", 3), ARGS_D]}]},
                                ]
                            },
                        ],
                        "reason": "deep",
                    },
                ]
            }
        }
    ),
    "hide names": policy({"a": {}}, hide=["h1", "h2"]),
    "hide all": policy({"a": {"limits": [{"max": 1, "window": 1}]}}, hide=["*"]),
    # names a string must escape (a quote, a backslash, non-ASCII); whitespace and control
    # characters are refused in a tool name (no MCP server has them)
    "odd names": policy({"": {}, 'é"q"\\/': {"action": "deny"}}, hide=["\\", "x\"y"]),
}


@pytest.mark.parametrize("p", list(HAND_WRITTEN.values()), ids=list(HAND_WRITTEN))
def test_hand_written(p: Policy) -> None:
    text = round_trip(p)
    assert "# note" not in text


def test_readable_output() -> None:
    p = policy(
        {
            "refund": {
                "action": "require_approval",
                "reason": "a human approves refunds",
                "require": [{"any": [leaf("identity", "eq", "billing", reason="billing only"), APPROVED]}],
                "deny_if": [
                    {"all": [leaf("args.amount", "gt", 100), leaf("args.currency", "neq", "EUR")], "reason": "big"}
                ],
                "limits": [{"max": 10, "window": 60, "per": "identity"}],
            },
            "read": {},
        },
        package="pay",
        hide=["purge"],
        all_tools={"limits": [{"max": 300, "window": 3600}]},
    )
    expected = """\
# decompiled from a plr/PolicyLayer policy

package pay

default deny

hide tool "purge"

allow tool "read"

allow tool "refund" if identity == "billing"
    reason "billing only"

allow tool "refund" if approved

deny tool "refund" unless approved
    reason "a human approves refunds"

deny tool "refund" if {
    args.amount > 100
    args.currency != "EUR"
}
    reason "big"

limit tool "refund" to 10 per minute per identity

limit all tools to 300 per hour per session
"""
    assert round_trip(p) == expected


# --- what plr cannot say exactly ---------------------------------------------------------------


def approximate(p: Policy) -> tuple[str, Policy]:
    """Decompile a policy plr cannot say exactly: valid, explained plr that compiles."""
    text = decompile(p)
    assert "# note: " in text
    assert format_source(text) == text
    return text, compile_source(text, source=False)


def test_nested_reason_is_dropped_with_a_note() -> None:
    p = policy({"t": {"deny_if": [{"not": leaf("args.a", "exists", reason="inner")}]}})
    text, back = approximate(p)
    assert 'the reason "inner" of a nested condition' in text
    assert back.to_json() == policy({"t": {"deny_if": [{"not": leaf("args.a", "exists")}]}}).to_json()


@pytest.mark.parametrize(
    "cond, written",
    [
        ({"all": [leaf("args.a", "exists")]}, "args.a exists"),
        ({"any": [leaf("args.a", "exists")]}, "args.a exists"),
        ({"not": {"any": [{"any": [leaf("args.a", "exists"), leaf("args.b", "exists")]}, leaf("args.c", "exists")]}},
         "not (args.a exists or args.b exists or args.c exists)"),
        ({"not": {"all": [{"all": [leaf("args.a", "exists"), leaf("args.b", "exists")]}, leaf("args.c", "exists")]}},
         "not (args.a exists and args.b exists and args.c exists)"),
    ],
)  # fmt: skip
def test_shapes_plr_flattens(cond: dict[str, Any], written: str) -> None:
    text, _ = approximate(policy({"t": {"deny_if": [cond]}}))
    assert f'deny tool "t" if {written}\n' in text


@pytest.mark.parametrize("kind, holds", [("all", True), ("any", False)])
def test_empty_combinators_keep_their_meaning(kind: str, holds: bool) -> None:
    p = policy({"t": {"deny_if": [{kind: []}]}}, default="allow")
    _, back = approximate(p)
    for call_args in (None, {}, {"a": 1}):
        expected = "deny" if holds else "allow"
        assert Engine(p).decide("t", call_args).effect == expected
        assert Engine(back).decide("t", call_args).effect == expected


def test_fractional_window_rounds_up() -> None:
    text, back = approximate(policy({"t": {"limits": [{"max": 1, "window": 1.5}]}}))
    assert 'limit tool "t" to 1 per 2s per session' in text
    assert back.tools["t"].limits[0].window == 2


def test_path_spelled_differently() -> None:
    text, back = approximate(policy({"t": {"deny_if": [leaf("args.a b", "eq", 1)]}}))
    assert 'deny tool "t" if args["a b"] == 1' in text
    assert back.tools["t"].deny_if[0].path == 'args["a b"]'  # type: ignore[union-attr]


def test_denied_tool_keeps_only_its_reason() -> None:
    p = policy({"t": {"action": "deny", "reason": "no", "deny_if": [leaf("args.a", "exists")]}})
    _, back = approximate(p)
    assert back.to_json() == policy({"t": {"action": "deny", "reason": "no"}}).to_json()


def test_tool_reason_without_approval_is_dropped() -> None:
    _, back = approximate(policy({"t": {"reason": "why"}}))
    assert back.to_json() == policy({"t": {}}).to_json()


@pytest.mark.parametrize(
    "hide, tools, expected_hide",
    [(["*", "a"], {}, ["*"]), (["b", "a", "a"], {}, ["a", "b"]), (["a"], {"a": {}, "b": {}}, ["a"])],
)
def test_hide_lists(hide: list[str], tools: dict[str, Any], expected_hide: list[str]) -> None:
    _, back = approximate(policy(tools, hide=hide))
    assert back.hide == expected_hide
    assert all(name not in back.tools for name in expected_hide if name != "*")


def test_package_that_is_not_a_plr_name() -> None:
    text, back = approximate(policy({}, package="my package"))
    assert back.package is None
    assert 'package "my package" is not a plr name' in text


def test_conditions_plr_check_rejects_still_parse() -> None:
    p = policy({"t": {"deny_if": [leaf("args.a", "contains", [1]), leaf("args.a", "regex", "x", fn="len")]}})
    text = decompile(p)
    assert format_source(text) == text
    assert "plr check rejects" in text
    with pytest.raises(PlrError):
        compile_source(text)


# --- generated policies ------------------------------------------------------------------------
# Every policy drawn here is one plr can say exactly: the round trip must be exact and note-free.

texts = st.text(max_size=6)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=False), texts
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5)
step = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,5}", fullmatch=True), st.integers(0, 20), st.text(max_size=4)
)


# Each strategy a draw uses is built once, here, not inside the draw: Hypothesis validates every
# new strategy object on its first draw, which cost as much as the drawing (the same values come out).
_CONTEXT_ROOTS = st.sampled_from(["identity", "session", "server", "tool", "approved"])
_STEPS = st.lists(step, max_size=3)


@st.composite
def paths(draw: st.DrawFn) -> str:
    from dsl import ir

    if draw(st.integers(0, 3)) == 0:
        return draw(_CONTEXT_ROOTS)
    return ir.Path(root="args", steps=tuple(draw(_STEPS))).text()


_PATHS = paths()
_OPS = st.sampled_from(["eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in", "contains",
                        "starts_with", "ends_with", "regex", "exists", "missing", "approved"])  # fmt: skip
_FNS = st.sampled_from([None, None, "count", "len"])
_STRING_FNS = st.lists(st.sampled_from(["lower", "upper", "trim", "normpath", "basename", "dirname"]), max_size=3)
_REGEXES = st.sampled_from(REGEXES)
_VALUE_LISTS = st.lists(json_values, max_size=3)


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(_PATHS)
    op = draw(_OPS)
    fn = draw(_FNS)
    # value functions, alone or chained (then maybe `len`): a string for a string test
    strings = draw(_STRING_FNS)
    chain = [*strings, *([fn] if fn == "len" or (fn and not strings) else [])]
    str_fn = {"fn": chain[0] if len(chain) == 1 else chain} if chain and chain[-1] not in ("count", "len") else {}
    if op == "approved":
        return dict(APPROVED)
    if op in ("exists", "missing"):
        return leaf(path, op)
    if op in ("starts_with", "ends_with"):
        return leaf(path, op, draw(texts), **str_fn)
    if op == "regex":
        return leaf(path, op, draw(_REGEXES), **str_fn)
    if op == "contains":
        return leaf(path, op, draw(scalars), **str_fn)
    if chain:
        fn = chain[0] if len(chain) == 1 else chain  # type: ignore[assignment]
    value = draw(_VALUE_LISTS) if op in ("in", "not_in") else draw(json_values)
    return leaf(path, op, value, **({"fn": fn} if fn else {}))


def _first_is_not(kind: str) -> Any:
    return lambda items: kind not in items[0]


nested = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).filter(_first_is_not("all")).map(lambda xs: {"all": xs}),
        st.lists(inner, min_size=2, max_size=3).filter(_first_is_not("any")).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
        st.tuples(st.sampled_from(["every", "some"]), st.sampled_from(["args.items", "args.a[0]"]), inner).map(
            lambda t: {t[0]: "v", "in": t[1], "where": t[2]}
        ),
    ),
    max_leaves=6,
)
reasons = st.one_of(st.none(), texts)


def bind_names(c: Any, depth: int = 0) -> Any:
    """Quantifiers drawn above all bind `v`: give each depth its own name (no shadowing), and
    let `identity` inside one stand for its item, so paths use what they bind."""
    if isinstance(c, list):
        return [bind_names(x, depth) for x in c]
    if not isinstance(c, dict):
        return c
    for kind in ("every", "some"):
        if kind in c:
            where = bind_names(c["where"], depth + 1)
            return {**c, kind: f"v{depth}", "where": _item_paths(where, f"v{depth}")}
    return {k: bind_names(v, depth) if k in ("all", "any", "not") else v for k, v in c.items()}


def bind_document(doc: dict[str, Any]) -> dict[str, Any]:
    for t in [*doc.get("tools", {}).values(), doc.get("all_tools", {})]:
        for kind in ("require", "deny_if", "allow_if"):
            if kind in t:
                t[kind] = bind_names(t[kind])
        for lim in t.get("limits", []):
            if "if" in lim:
                lim["if"] = bind_names(lim["if"])
    return doc


def _item_paths(c: Any, var: str) -> Any:
    if isinstance(c, list):
        return [_item_paths(x, var) for x in c]
    if not isinstance(c, dict) or "every" in c or "some" in c:
        return c
    if c.get("path") == "identity":
        return {**c, "path": var}
    return {k: _item_paths(v, var) if k in ("all", "any", "not") else v for k, v in c.items()}


_ENTRY_KINDS = st.sampled_from(["leaf", "all", "any", "not"])
_LEAVES = leaves()
_ALL_ITEMS = st.lists(nested, min_size=2, max_size=3)
_ANY_ITEMS = st.lists(nested, min_size=2, max_size=3).filter(_first_is_not("any"))


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    """An entry's own condition: plr writes a top-level `all` as a `{ }` block, so its first
    item may be an `all`; an `any` is an inline `or`, so its first item may not be one."""
    kind = draw(_ENTRY_KINDS)
    if kind == "leaf":
        c = draw(_LEAVES)
    elif kind == "all":
        c = {"all": draw(_ALL_ITEMS)}
    elif kind == "any":
        c = {"any": draw(_ANY_ITEMS)}
    else:
        c = {"not": draw(nested)}
    reason = draw(reasons)
    return c if reason is None else {**c, "reason": reason}


limits = st.builds(
    lambda m, w, per, cond: {"max": m, "window": w, "per": per, **({"if": cond} if cond is not None else {})},
    st.integers(1, 10**6), st.integers(1, 10**7), st.sampled_from(["session", "identity", "global"]),
    st.one_of(st.none(), st.none(), nested),
)  # fmt: skip


_ENTRIES = entries()
_ENTRIES_3 = st.lists(_ENTRIES, max_size=3)
_ENTRIES_2 = st.lists(_ENTRIES, max_size=2)
_ENTRY_GROUPS = st.lists(_ENTRIES, min_size=2, max_size=3)
_LIMITS_2 = st.lists(limits, max_size=2)
_ACTIONS = st.sampled_from(["allow", "allow", "require_approval", "deny"])


@st.composite
def tools(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(_ACTIONS)
    if action == "deny":
        reason = draw(reasons)
        return {"action": "deny", **({"reason": reason} if reason is not None else {})}
    t: dict[str, Any] = {}
    if action == "require_approval":
        t["action"] = action
        reason = draw(reasons)
        if reason is not None:
            t["reason"] = reason
    require = draw(_ENTRIES_3)
    allow_group = draw(st.booleans())
    if require and allow_group:  # the OR of several allow-ifs, each with its reason
        require[0] = {"any": draw(_ENTRY_GROUPS)}
    for key, value in (
        ("require", require),
        ("deny_if", draw(_ENTRIES_3)),
        ("limits", draw(_LIMITS_2)),
    ):
        if value:
            t[key] = value
    return t


def _a_tool_name(name: str) -> bool:
    """Whether the JSON loader takes ``name`` as a tool name (in `tools` or `hide`)."""
    return not has_glob_chars(name) and tool_name_problem(name) is None


_TOOL_NAME_LISTS = st.lists(texts.filter(_a_tool_name), max_size=5, unique=True)
_HIDE_KINDS = st.sampled_from(["none", "names", "all"])
_DEFAULTS = st.sampled_from(["allow", "deny"])
_TOOLS = tools()
_PACKAGES = st.one_of(
    st.none(), st.from_regex(r"[a-z_][a-z0-9_\-]{0,4}(\.[a-z_][a-z0-9_\-]{0,4}){0,2}", fullmatch=True)
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    # no `*` or `?` in a tool name (the loader refuses them; "*" alone in `hide` is every tool), nor
    # whitespace, a control or a format character (refused too: no MCP server names a tool so)
    names = draw(_TOOL_NAME_LISTS)
    hide_kind = draw(_HIDE_KINDS)
    hide: list[str] = []
    if hide_kind == "all":
        hide = ["*"]
    elif hide_kind == "names":
        hide = sorted(draw(st.lists(texts.filter(lambda n: n not in names and _a_tool_name(n)), max_size=3, unique=True)))
    doc: dict[str, Any] = {
        "version": "1",
        "default": draw(_DEFAULTS),
        "hide": hide,
        "all_tools": {
            "limits": draw(_LIMITS_2),
            "deny_if": draw(_ENTRIES_2),
            "require": draw(_ENTRIES_2),
        },
        "tools": {name: draw(_TOOLS) for name in names},
    }
    if doc["default"] == "deny":  # a grant is written only where it grants something
        doc["all_tools"]["allow_if"] = draw(_ENTRIES_2)
    package = draw(_PACKAGES)
    if package is not None:
        doc["package"] = package
    return Policy.model_validate(bind_document(json.loads(json.dumps(doc))))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(policies())
def test_generated_policies_round_trip(p: Policy) -> None:
    text = round_trip(p)
    assert "# note" not in text


# Every policy the compiler produces decompiles exactly: the policies compiled from the project's
# generator of valid programs (`programs()`, tests/strategies.py) are held to round_trip in
# test_generated_roundtrips.py, with the other properties of a generated program (each program
# is drawn once for all of them).


# --- any valid policy ----------------------------------------------------------------------------
# Anything the loader accepts, representable or not: the output always parses and is canonical,
# compiles unless a note says plr check rejects something, is exact when there is no note, and
# always decides every call the same way (what plr cannot say is never what decides).


def _with_reason(c: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return c if reason is None else {**c, "reason": reason}


loose_conditions = st.recursive(
    st.builds(_with_reason, leaves(), reasons),
    lambda inner: st.one_of(
        st.builds(lambda xs, r: _with_reason({"all": xs}, r), st.lists(inner, max_size=3), reasons),
        st.builds(lambda xs, r: _with_reason({"any": xs}, r), st.lists(inner, max_size=3), reasons),
        st.builds(lambda x, r: _with_reason({"not": x}, r), inner, reasons),
        st.builds(lambda x, r: _with_reason({"some": "v", "in": "args.a", "where": x}, r), inner, reasons),
    ),
    max_leaves=6,
)
odd_paths = st.sampled_from(["args.a b", "args.0", "args.a-b.c", "args[007]", "args.é", 'args.x["y"]'])
loose_limits = st.builds(
    lambda m, w, per: {"max": m, "window": w, "per": per},
    st.integers(1, 100),
    st.one_of(st.integers(1, 10**5), st.floats(0.001, 10**5)),
    st.sampled_from(["session", "identity", "global"]),
)


@st.composite
def loose_tools(draw: st.DrawFn) -> dict[str, Any]:
    t: dict[str, Any] = {"action": draw(st.sampled_from(["allow", "require_approval", "deny"]))}
    reason = draw(reasons)
    if reason is not None:
        t["reason"] = reason
    conds = st.one_of(loose_conditions, st.builds(lambda p: leaf(p, "exists"), odd_paths))
    t["require"] = draw(st.lists(conds, max_size=3))
    t["deny_if"] = draw(st.lists(conds, max_size=3))
    t["limits"] = draw(st.lists(loose_limits, max_size=2))
    return t


@st.composite
def loose_policies(draw: st.DrawFn) -> Policy:
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "x\"y", ""]), max_size=4, unique=True))
    doc: dict[str, Any] = {
        "version": "1",
        "default": draw(st.sampled_from(["allow", "deny"])),
        "hide": draw(st.lists(st.sampled_from(["a", "b", "*", "h", "h"]), max_size=3)),
        "all_tools": {
            "limits": draw(st.lists(loose_limits, max_size=2)),
            "deny_if": draw(st.lists(loose_conditions, max_size=1)),
            "require": draw(st.lists(loose_conditions, max_size=1)),
            "allow_if": draw(st.lists(loose_conditions, max_size=1)),
        },
        "tools": {name: draw(loose_tools()) for name in names},
    }
    package = draw(st.one_of(st.none(), st.sampled_from(["ok.name", "not a name", "", "é-1"])))
    if package is not None:
        doc["package"] = package
    return Policy.model_validate(bind_document(doc))


CALLS = [
    ({}, False, None),
    ({"a": 1, "b": "x", "0": [1, 2]}, False, "alice"),
    ({"a b": "", "a-b": {"c": 1}, "é": True}, True, "ops-bot"),
    (None, True, None),
]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(loose_policies())
def test_any_policy_gives_valid_plr_that_decides_alike(p: Policy) -> None:
    text = decompile(p)
    assert text.startswith(HEADER + "\n") and format_source(text) == text
    if "plr check rejects" in text:
        return
    back = compile_source(text, source=False)
    if "# note" not in text:
        assert back.to_json() == p.strip_source().to_json()
    original, decompiled = Engine(p), Engine(back)
    for name in [*p.tools, *p.hide, "unknown"]:
        for args, approved, identity in CALLS:
            a = original.decide(name, args, identity=identity, session="s", approved=approved)
            b = decompiled.decide(name, args, identity=identity, session="s", approved=approved)
            assert (a.effect, a.code) == (b.effect, b.code), (name, args, approved, text)
