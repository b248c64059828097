"""`plr fmt`: golden output, and the three properties on every input we can find or make:
idempotent, compiles to the same policy, loses no comment."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.compiler import compile_files, compile_source
from dsl.errors import PlrError
from dsl.format import _bare_server_item_parses, condition_text, format_source, is_formatted, literal_text, window_text
from dsl.lower import lower_source
from dsl.parser import parse_with_comments

REPO = Path(__file__).resolve().parent.parent
from tests.conftest import SPEC_PLR as SPEC_EXAMPLE


def _plr_files() -> list[Path]:
    return sorted([*(REPO / "examples").rglob("*.plr"), *(REPO / "stdlib_rules").rglob("*.plr")])


def _compiled(text: str, file: str = "policy.plr") -> str | None:
    """The compiled JSON without sources, or None when the text does not compile."""
    try:
        return compile_source(text, file, source=False).to_json()
    except PlrError:
        return None


def _comments(text: str) -> list[str]:
    """Every comment of ``text``, as the lexer sees it (a `#` inside a string is no comment)."""
    return [str(tok).rstrip() for tok in parse_with_comments(text)[1]]


def assert_format_properties(text: str, file: str = "policy.plr") -> str:
    formatted = format_source(text, file)
    assert format_source(formatted, file) == formatted, "formatting is not idempotent"
    assert is_formatted(formatted, file)
    for comment in _comments(text):
        assert comment in formatted, f"lost comment {comment!r}"
    assert _compiled(formatted, file) == _compiled(text, file), "formatting changed the compiled policy"
    assert "\n\n\n" not in formatted and not formatted.startswith("\n")
    assert all(line == line.rstrip() for line in formatted.split("\n"))
    return formatted


# --- golden ------------------------------------------------------------------------------

MESSY = """\
   # Payments worker policy.
# Second header line.


package   payments.worker   # the package
import "./shared.plr" import "./more.plr"
default    deny
server "payments" { tool "refund" destructive tool "get-invoice" read # reads
  tool "charge" write

  # the dangerous one
  tool "purge" destructive }
allow read tools allow tool "refund" if args.amount<=100 reason "small refunds only"
deny tool "refund" unless approved reason
   "a human approves refunds"
deny tool "charge" if {
  args.currency not in ["EUR","USD"]   # only two currencies
  # and never huge
  args.amount > 10000 or (args.amount>5000 and not (identity in ["ops-bot"] or approved))
  not args.note missing
}
deny tool "charge" if (args.a == 1 or args.b == 2) and (args.c == 3 or (args.d == 4 or args.e == 5))
hide tool "purge"
limit tools ["refund","charge"] to 10 per 60s limit all tools to 300 per 7200s per identity # global cap
test "refunds" {
as identity "ops-bot" session "s1"
  repeat 3 {
    call "refund" {amount: 50, "order id": "o-1", tags: ["a", "b"], meta: {x: 1.5}} -> allow
  }
  repeat 2 { call "refund" {amount: 500} approved -> allow # big but approved
  call "charge" -> deny }
  after 90s
  # end of test
}
# trailing file comment
"""

MESSY_FORMATTED = """\
# Payments worker policy.
# Second header line.

package payments.worker  # the package

import "./shared.plr"
import "./more.plr"

default deny

server "payments" {
    tool "refund" destructive
    tool "get-invoice" read  # reads
    tool "charge" write

    # the dangerous one
    tool "purge" destructive
}

allow read tools

allow tool "refund" if args.amount <= 100
    reason "small refunds only"

deny tool "refund" unless approved
    reason "a human approves refunds"

deny tool "charge" if {
    args.currency not in ["EUR", "USD"]  # only two currencies
    # and never huge
    args.amount > 10000 or args.amount > 5000 and not (identity in ["ops-bot"] or approved)
    not args.note missing
}

deny tool "charge" if (args.a == 1 or args.b == 2) and (args.c == 3 or (args.d == 4 or args.e == 5))
hide tool "purge"
limit tools ["refund", "charge"] to 10 per minute per session
limit all tools to 300 per 2h per identity  # global cap

test "refunds" {
    as identity "ops-bot"
    session "s1"
    repeat 3 { call "refund" {amount: 50, "order id": "o-1", tags: ["a", "b"], meta: {x: 1.5}} -> allow }
    repeat 2 {
        call "refund" {amount: 500} approved -> allow  # big but approved
        call "charge" -> deny
    }
    after 90s
    # end of test
}
# trailing file comment
"""

ONE_LINE = (
    'package p default deny allow tool "a" deny tool "b" if { args.x == 1 args.y exists } reason "r" '
    'limit tool "a" to 5 per 3600s test "t" { call "a" -> allow repeat 2 { call "b" {k: true} -> deny } }'
)

ONE_LINE_FORMATTED = """\
package p

default deny

allow tool "a"

deny tool "b" if {
    args.x == 1
    args.y exists
}
    reason "r"

limit tool "a" to 5 per hour per session

test "t" {
    call "a" -> allow
    repeat 2 { call "b" {k: true} -> deny }
}
"""


def test_golden_messy() -> None:
    assert format_source(MESSY) == MESSY_FORMATTED
    assert_format_properties(MESSY)


def test_golden_one_line() -> None:
    assert format_source(ONE_LINE) == ONE_LINE_FORMATTED
    assert_format_properties(ONE_LINE)


def test_spec_example_is_canonical() -> None:
    text = SPEC_EXAMPLE.read_text(encoding="utf-8")
    assert format_source(text) == text


# --- focused cases -------------------------------------------------------------------------

CASES: dict[str, tuple[str, str]] = {
    "right-nested or keeps its parentheses": (
        'allow tool "a" if args.a == 1 or (args.b == 2 or args.c == 3)',
        'allow tool "a" if args.a == 1 or (args.b == 2 or args.c == 3)\n',
    ),
    "left-nested parentheses are flattened like the compiler does": (
        'allow tool "a" if (args.a == 1 or args.b == 2) or args.c == 3',
        'allow tool "a" if args.a == 1 or args.b == 2 or args.c == 3\n',
    ),
    "redundant parentheses go": (
        'allow tool "a" if ((args.a == 1)) and (not (args.b == 2))',
        'allow tool "a" if args.a == 1 and not args.b == 2\n',
    ),
    "or under and needs them": (
        'allow tool "a" if (args.a == 1 or args.b == 2) and not (args.c == 3 and args.d == 4)',
        'allow tool "a" if (args.a == 1 or args.b == 2) and not (args.c == 3 and args.d == 4)\n',
    ),
    "ops back to source syntax": (
        (
            'deny tool "a" if {args.s matches "(?i)rm\\\\s" args.s starts_with "x" args.s ends_with "y" '
            "args.l contains 3 args.m missing len(args.p) >= 2 count( args.q ) != 1 args.r not   in [null, true, -0.5]}"
        ),
        (
            'deny tool "a" if {\n    args.s matches "(?i)rm\\\\s"\n'
            '    args.s starts_with "x"\n    args.s ends_with "y"\n'
            "    args.l contains 3\n    args.m missing\n    len(args.p) >= 2\n    count(args.q) != 1\n"
            "    args.r not in [null, true, -0.5]\n}\n"
        ),
    ),
    "approved == true is approved": (
        'allow tool "a" if approved == true and not approved == false',
        'allow tool "a" if approved and not approved == false\n',
    ),
    "path steps: keywords, indexes and quoted keys": (
        'allow tool "a" if args.limit.default[0]["a b"]["ok"] == 1',
        'allow tool "a" if args.limit.default[0]["a b"].ok == 1\n',
    ),
    "numbers keep their type": (
        'allow tool "a" if args.a == 1.50 or args.b == 20000 or args.c == 1E3 or args.d == -0',
        'allow tool "a" if args.a == 1.5 or args.b == 20000 or args.c == 1000.0 or args.d == 0\n',
    ),
    "unicode strings stay readable, escapes stay escaped": (
        'deny tool "café" if args.t == "\\u00e9\\n\\"q\\""',
        'deny tool "café" if args.t == "é\\n\\"q\\""\n',
    ),
    "selectors as written": (
        (
            'server "s" { tool "g-1" read tool "g-2" write }\nallow tools "g-*" allow tools ["g-1"] '
            "hide write tools limit all tools to 1 per day per global"
        ),
        (
            'server "s" {\n    tool "g-1" read\n    tool "g-2" write\n}\n\nallow tools "g-*"\nallow tools ["g-1"]\n'
            "hide write tools\nlimit all tools to 1 per day per global\n"
        ),
    ),
    "test steps": (
        (
            'test "t" { identity "i" as session "s" as server "v" call "x" {} -> approval_required require '
            'call "y" {"a-b": 1, c: {d: [1, {e: null}]}} approved -> deny deny_if reason "why" '
            'visible [] visible ["a","b"] after 1m after 60s repeat 5 { } }'
        ),
        (
            'test "t" {\n    identity "i"\n    as session "s"\n    as server "v"\n'
            '    call "x" {} -> approval_required require\n'
            '    call "y" {"a-b": 1, c: {d: [1, {e: null}]}} approved -> deny deny_if reason "why"\n'
            '    visible []\n    visible ["a", "b"]\n    after 1m\n    after 60s\n    repeat 5 {}\n}\n'
        ),
    ),
    "nested repeat stays on one line": (
        'test "t" { repeat 2 { repeat 3 { call "x" -> allow } } }',
        'test "t" {\n    repeat 2 { repeat 3 { call "x" -> allow } }\n}\n',
    ),
    "a comment inside repeat makes it a block": (
        'test "t" { repeat 2 {\n# why\ncall "x" -> allow } }',
        'test "t" {\n    repeat 2 {\n        # why\n        call "x" -> allow\n    }\n}\n',
    ),
    "empty blocks": (  # (a test needs a call: an empty `repeat` is the empty block inside one)
        'server "s" {} test "t" {\ncall "x" -> allow repeat 2 {\n}}',
        'server "s" {}\n\ntest "t" {\n    call "x" -> allow\n    repeat 2 {}\n}\n',
    ),
    "blank lines: kept once, never at the edges of a block": (
        (
            '\n\n\nallow tool "a"\n\n\n\nallow tool "b"\nallow tool "c"\ntest "t" {\n\n  call "a" -> allow\n\n\n'
            '  call "b" -> allow\n\n}\n\n\n'
        ),
        (
            'allow tool "a"\n\nallow tool "b"\nallow tool "c"\n\ntest "t" {\n    call "a" -> allow\n\n'
            '    call "b" -> allow\n}\n'
        ),
    ),
    "kind changes and multi-line rules get a blank line": (
        (
            'default allow deny tool "a" deny tool "b" reason "r" deny tool "c" deny tool "d" if { args.x exists }'
            ' deny tool "e"'
        ),
        (
            'default allow\n\ndeny tool "a"\n\ndeny tool "b"\n    reason "r"\n\ndeny tool "c"\n\n'
            'deny tool "d" if {\n    args.x exists\n}\n\ndeny tool "e"\n'
        ),
    ),
    "comments between a rule and its reason stay there": (
        'deny tool "a" if args.x == 1 # why\n# about the reason\n  reason "r" # after',
        'deny tool "a" if args.x == 1  # why\n    # about the reason\n    reason "r"  # after\n',
    ),
    "comments inside a multi-line condition": (
        'deny tool "a" if args.x == 1 or # first\n  # own line\n  args.y == 2 # second\n',
        '# own line\ndeny tool "a" if args.x == 1 or args.y == 2  # first  # second\n',
    ),
    "trailing comment on the opening brace": (
        'deny tool "a" if { # opens\n args.x exists # item\n} # closes\n',
        'deny tool "a" if {  # opens\n    args.x exists  # item\n}  # closes\n',
    ),
    "comment-only file": ("  # just a note  \n\n\n# another\n", "# just a note\n\n# another\n"),
    "empty file": ("", ""),
    "whitespace-only file": ("\n \n\t\n", ""),
    "windows line endings": ('allow tool "a"\r\n# c\r\nallow tool "b"\r\n', 'allow tool "a"\n# c\nallow tool "b"\n'),
    "trailing comments sit two spaces after the code": (
        'allow tool "a" # c1\nallow tool "b"# c2\n',
        'allow tool "a"  # c1\nallow tool "b"  # c2\n',
    ),
}


@pytest.mark.parametrize("source, expected", list(CASES.values()), ids=list(CASES))
def test_cases(source: str, expected: str) -> None:
    assert format_source(source) == expected
    assert_format_properties(source)


def test_block_lines_rooted_at_server() -> None:
    """Parenthesized only while the grammar cannot read them bare; either way they parse."""
    source = 'deny tool "a" if { server == "s" (server != "t") (server exists or approved) not server missing }'
    p = "(" if not _bare_server_item_parses() else ""
    q = ")" if p else ""
    expected = (
        f'deny tool "a" if {{\n    server == "s"\n    {p}server != "t"{q}\n    {p}server exists or approved{q}\n'
        "    not server missing\n}\n"
    )
    assert format_source(source) == expected
    assert_format_properties(source)


@pytest.mark.parametrize(
    "seconds, text",
    [(1, "second"), (60, "minute"), (3600, "hour"), (86400, "day"), (90, "90s"), (120, "2m"), (7200, "2h"),
     (172800, "2d"), (5400, "90m"), (0, "0s"), (86401, "86401s")],
)  # fmt: skip
def test_window_text(seconds: int, text: str) -> None:
    assert window_text(seconds) == text


def test_literals() -> None:
    assert literal_text([1, 2.5, "x", None, True, [False]]) == '[1, 2.5, "x", null, true, [false]]'
    assert literal_text({"a": 1, "b c": {"if": []}}) == '{a: 1, "b c": {if: []}}'
    assert literal_text(1e16) == "1e+16"
    with pytest.raises(ValueError):
        literal_text(float("nan"))


def test_condition_text_matches_lowering() -> None:
    rule = lower_source('allow tool "a" if not (args.a == 1 or not approved) and args.b in [1]').rules[0]
    assert rule.condition is not None
    assert condition_text(rule.condition) == "not (args.a == 1 or not approved) and args.b in [1]"


def test_is_formatted() -> None:
    assert is_formatted(ONE_LINE_FORMATTED)
    assert not is_formatted(ONE_LINE)
    assert not is_formatted(ONE_LINE_FORMATTED + "\n")


def test_syntax_error_is_a_plr_error() -> None:
    with pytest.raises(PlrError) as e:
        format_source('allow tool "a" if', "bad.plr")
    assert "bad.plr:1" in str(e.value)
    with pytest.raises(PlrError):
        format_source('limit tool "a" to 1.5 per minute')  # found by lowering, not the parser


# --- every policy file we ship ---------------------------------------------------------------


@pytest.mark.parametrize("path", _plr_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_files(path: Path, tmp_path: Path) -> None:
    text = path.read_text(encoding="utf-8-sig")
    formatted = format_source(text, path.name)
    assert format_source(formatted, path.name) == formatted
    for comment in _comments(text):
        assert comment in formatted
    # Compile the file in place and formatted in a copy of its folder, where relative imports
    # still find their targets.
    top = next((d for d in (REPO / "examples", REPO / "stdlib_rules") if path.is_relative_to(d)), path.parent)
    shutil.copytree(top, tmp_path / "copy")
    copy = tmp_path / "copy" / path.relative_to(top)
    copy.write_text(formatted, encoding="utf-8")
    try:
        original = compile_files([str(path)], source=False).to_json()
    except PlrError:
        with pytest.raises(PlrError):
            compile_files([str(copy)], source=False)
        return
    assert compile_files([str(copy)], source=False).to_json() == original


# --- generated sources -----------------------------------------------------------------------
# Sources are generated as token lists and joined with random layout: spaces, newlines, blank
# lines and comments wherever the grammar allows them.

TOOLS = ["t1", "t2", "t3", "t-4", "odd tool"]
# `server "name"` stays one token: the grammar's SERVER terminal looks ahead for the string
# and does not allow a comment in between (reported; whitespace is fine).
CATALOGUE = ['server "srv"', *'{ tool "t1" read tool "t2" write tool "t3" destructive tool "t-4" execute }'.split(" ")]
PATHS = ["args.a", "args.b.c", "args.items[0]", 'args["a b"]', "args.limit", "identity", "session", "server", "tool"]
STRINGS = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)


def _q(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


scalars = st.one_of(
    STRINGS.map(_q),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["true", "false", "null", "1.50", "2E3", "-0"]),
)


def _list_tokens(items: list[str]) -> list[str]:
    out = ["["]
    for i, item in enumerate(items):
        out += ([","] if i else []) + [item]
    return [*out, "]"]


@st.composite
def leaves(draw: st.DrawFn) -> list[str]:
    path = draw(st.sampled_from(PATHS))
    operand = [draw(st.sampled_from(["count(", "len("])), path, ")"] if draw(st.booleans()) else [path]
    if operand == [path] and draw(st.booleans()):  # value functions, nested
        for f in draw(st.lists(st.sampled_from(["lower(", "trim(", "normpath(", "basename("]), min_size=1, max_size=2)):
            operand = [f, *operand, ")"]
    kind = draw(st.sampled_from(["cmp", "in", "contains", "str", "exists", "approved"]))
    if kind == "cmp":
        return [*operand, draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="])), draw(scalars)]
    if kind == "in":
        values = draw(st.lists(scalars, max_size=3))
        return [*operand, draw(st.sampled_from(["in", "not in"])), *_list_tokens(values)]
    if kind == "contains":
        return [path, "contains", draw(scalars)]
    if kind == "str":
        op = draw(st.sampled_from(["starts_with", "ends_with", "matches"]))
        regexes = st.sampled_from(['"^a+$"', '"(?i)rm\\\\s+-rf"', '"x"'])
        value = draw(regexes) if op == "matches" else draw(STRINGS.map(_q))
        return [path, op, value]
    if kind == "exists":
        return [path, draw(st.sampled_from(["exists", "missing"]))]
    return draw(st.sampled_from([["approved"], ["approved", "==", "true"], ["approved", "==", "false"]]))


def _paren(tokens: list[str]) -> list[str]:
    return ["(", *tokens, ")"]


conditions = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: [*_paren(t[0]), t[1], *_paren(t[2])]),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: [*t[0], t[1], *_paren(t[2])]),
        inner.map(lambda t: ["not", *_paren(t)]),
        inner.map(_paren),
    ),
    max_leaves=5,
)


@st.composite
def selectors(draw: st.DrawFn) -> list[str]:
    kind = draw(st.sampled_from(["tool", "list", "glob", "class"]))
    if kind == "tool":
        return ["tool", _q(draw(st.sampled_from(TOOLS)))]
    if kind == "list":
        return ["tools", *_list_tokens([_q(t) for t in draw(st.lists(st.sampled_from(TOOLS), min_size=1, max_size=3))])]
    if kind == "glob":
        return ["tools", _q(draw(st.sampled_from(["t*", "t?", "t-*"])))]
    return [draw(st.sampled_from(["read", "write", "destructive", "execute"])), "tools"]


@st.composite
def rules(draw: st.DrawFn) -> list[str]:
    kind = draw(st.sampled_from(["allow", "allow_if", "deny", "deny_if", "deny_unless", "hide", "limit"]))
    sel = draw(selectors())
    if kind == "limit":
        window = draw(st.sampled_from(["second", "minute", "hour", "day", "90s", "60s", "2m", "3600s", "2h", "1d"]))
        out = ["limit", *sel, "to", str(draw(st.integers(1, 1000))), "per", window]
        if draw(st.booleans()):
            out += ["per", draw(st.sampled_from(["session", "identity", "global"]))]
    elif kind in ("allow", "deny", "hide"):
        out = [kind, *sel]
    else:
        word = {"allow_if": "if", "deny_if": "if", "deny_unless": "unless"}[kind]
        out = [kind.split("_")[0], *sel, word]
        if draw(st.booleans()):
            out += ["{", *itertools.chain.from_iterable(draw(st.lists(conditions, min_size=1, max_size=3))), "}"]
        else:
            out += draw(conditions)
    if draw(st.booleans()):
        out += ["reason", draw(STRINGS.map(_q))]
    return out


def _pair(i: int, key: str, value: list[str]) -> list[str]:
    return [*([","] if i else []), _q(key) if " " in key or "-" in key else key, ":", *value]


args_values = st.recursive(
    scalars.map(lambda s: [s]),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: _list_tokens([" ".join(x) for x in xs])),
        # (distinct keys: a key written twice in a test call's object is an error)
        st.lists(st.tuples(st.sampled_from(["a", "if", "b c", "x-y"]), inner), max_size=3, unique_by=lambda kv: kv[0]).map(
            lambda kvs: ["{", *itertools.chain.from_iterable(_pair(i, k, v) for i, (k, v) in enumerate(kvs)), "}"]
        ),
    ),
    max_leaves=4,
)


@st.composite
def steps(draw: st.DrawFn, depth: int = 0, kind: str | None = None) -> list[str]:
    if kind is None:
        kind = draw(st.sampled_from(["call", "context", "after", "visible", "repeat"] if depth < 2 else ["call", "after"]))
    if kind == "call":
        out = ["call", _q(draw(st.sampled_from(TOOLS)))]
        if draw(st.booleans()):
            out += draw(args_values.filter(lambda v: v[0] == "{")) if draw(st.booleans()) else ["{", "}"]
        if draw(st.booleans()):
            out.append("approved")
        effect = draw(st.sampled_from(["allow", "deny", "approval_required"]))
        out += ["->", effect]
        if effect == "deny" and draw(st.booleans()):
            out.append(draw(st.sampled_from(["hidden", "denied", "default", "deny_if", "require", "rate_limited"])))
        if draw(st.booleans()):  # `reason ""` in a test step is a compile error (it matches every reason)
            out += ["reason", draw(STRINGS.filter(bool).map(_q))]
        return out
    if kind == "context":
        key = draw(st.sampled_from(["identity", "session", "server"]))
        return (["as"] if draw(st.booleans()) else []) + [f"{key} {_q('v')}"]
    if kind == "after":
        return ["after", draw(st.sampled_from(["1s", "90s", "2m", "1h", "1d"]))]
    if kind == "visible":
        return ["visible", *_list_tokens([_q(t) for t in draw(st.lists(st.sampled_from(TOOLS), max_size=2))])]
    inner = draw(st.lists(steps(depth + 1), max_size=2))
    return ["repeat", str(draw(st.integers(1, 5))), "{", *itertools.chain.from_iterable(inner), "}"]


@st.composite
def statements(draw: st.DrawFn) -> list[str]:
    if draw(st.integers(0, 5)) == 0:
        # a test checks something: one call at least (a test with none is an error)
        body = draw(st.lists(steps(), max_size=3))
        body.insert(draw(st.integers(0, len(body))), draw(steps(kind="call")))
        return ["test", _q("t"), "{", *itertools.chain.from_iterable(body), "}"]
    return draw(rules())


_counter = itertools.count()


@st.composite
def sources(draw: st.DrawFn) -> str:
    stmts: list[list[str]] = [CATALOGUE] if draw(st.booleans()) else []
    if draw(st.booleans()):
        stmts.append(["default", draw(st.sampled_from(["allow", "deny"]))])
    if draw(st.booleans()):
        stmts.append(["package", draw(st.sampled_from(["p", "a.b", "x_y.z-1", "default.if"]))])
    stmts += draw(st.lists(statements(), max_size=6))
    order = draw(st.permutations(range(len(stmts))))
    tokens = [tok for i in order for tok in stmts[i]]
    gaps = draw(st.lists(st.sampled_from(["space", "space", "space", "nl", "nl", "blank", "trail", "own", "tab"]),
                         min_size=len(tokens) + 1, max_size=len(tokens) + 1))  # fmt: skip
    out: list[str] = []
    for i, gap in enumerate(gaps):
        n = next(_counter)
        out.append({"space": " ", "nl": "\n", "blank": "\n\n\n", "tab": "\t",
                    "trail": f"  # c{n}!\n", "own": f"\n  # c{n}!\n"}[gap])  # fmt: skip
        if i < len(tokens):
            out.append(tokens[i])
    return "".join(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sources())
def test_generated_sources(source: str) -> None:
    assert_format_properties(source)


def test_generated_sources_mostly_compile() -> None:
    """The compile-equality property only bites on policies that compile: keep the generator honest."""
    results: list[bool] = []

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(sources())
    def run(source: str) -> None:
        results.append(_compiled(source) is not None)

    run()
    assert sum(results) >= len(results) // 3, f"only {sum(results)} of {len(results)} generated sources compile"


# The project's generator of valid programs (`programs()`, tests/strategies.py) is held to
# assert_format_properties in test_generated_roundtrips.py, with the other properties of a
# generated program: each program is drawn once for all of them.
