"""Value functions: lower, upper, trim, normpath, basename, dirname (and len over them).

What each gives, that anything but a string makes the comparison false (never an error, and a
`not` around it true), their JSON form (`fn` as a name or a list applied in order), the errors
for misuses, the `plr check` warnings where they would fail open, and the engine agreeing with
the reference interpreter's own implementation of each.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.compiler import build, compile_source
from dsl.decompile import decompile
from dsl.engine import Engine
from dsl.engine.functions import STRING_FUNCTIONS
from dsl.errors import PlrError
from dsl.policy import load_policy
from dsl.validate import check_data
from tests.reference import STRING_FUNCTIONS as REFERENCE_FUNCTIONS


@pytest.mark.parametrize(
    ("fn", "given_", "gives"),
    [
        ("normpath", "/workspace/../etc/passwd", "/etc/passwd"),
        ("normpath", "//etc/passwd", "/etc/passwd"),  # posixpath keeps `//`: plr does not
        ("normpath", "///etc//passwd", "/etc/passwd"),
        ("normpath", "/./etc/./passwd", "/etc/passwd"),
        ("normpath", "/..", "/"),
        ("normpath", "/../../etc", "/etc"),
        ("normpath", "../x/../../y", "../../y"),  # a leading `..` of a relative path stays
        ("normpath", "a/..", "."),
        ("normpath", "", "."),
        ("normpath", "/workspace/", "/workspace"),  # no trailing slash
        ("normpath", "//", "/"),
        ("normpath", "C:\\x\\..\\y", "C:\\x\\..\\y"),  # POSIX: a backslash is an ordinary character
        ("basename", "/a/b.txt", "b.txt"),
        ("basename", "/a/b/", "b"),
        ("basename", "/", "/"),
        ("basename", "", "."),
        ("basename", "/a/..", ".."),  # not normalised: write basename(normpath(p))
        ("dirname", "/a/b", "/a"),
        ("dirname", "/a/b/", "/a/b"),
        ("dirname", "a", "."),
        ("dirname", "/a", "/"),
        ("dirname", "//etc/x/../passwd", "/etc"),
        ("lower", "/A/.GIT/Config", "/a/.git/config"),
        ("upper", "straße", "STRASSE"),
        ("trim", " \t a b \n", "a b"),
        ("trim", "\u00a0x\u2003", "x"),
    ],
)
def test_what_each_function_gives(fn: str, given_: str, gives: str) -> None:
    assert STRING_FUNCTIONS[fn](given_) == gives
    assert REFERENCE_FUNCTIONS[fn](given_) == gives


@settings(max_examples=3000)
@given(st.text(alphabet=st.sampled_from(list("/.a\\ \t\u00a0\x1cZé")), max_size=14))
def test_engine_and_reference_functions_agree(text: str) -> None:
    for name, f in STRING_FUNCTIONS.items():
        assert f(text) == REFERENCE_FUNCTIONS[name](text), (name, text)


def test_normpath_is_idempotent_and_never_ends_in_a_slash() -> None:
    for p in ["/a//b/./c/..", "//", "../../a/", "x/y/z/../../..", "/"]:
        once = STRING_FUNCTIONS["normpath"](p)
        assert STRING_FUNCTIONS["normpath"](once) == once
        assert once == "/" or not once.endswith("/")


WORKSPACE = """\
default deny
allow tool "read" if normpath(args.path) starts_with "/workspace/" and not (lower(args.path) matches "(^|/)\\\\.git(/|$)")
deny tool "read" if basename(args.path) in [".env", ".npmrc"]
allow tool "note" if len(trim(args.text)) > 0
"""


@pytest.mark.parametrize(
    ("tool", "args", "effect"),
    [
        ("read", {"path": "/workspace/src/a.py"}, ("allow", "allowed")),
        ("read", {"path": "/workspace/../etc/passwd"}, ("deny", "require")),
        ("read", {"path": "//workspace/x"}, ("allow", "allowed")),
        ("read", {"path": "/workspace/./../workspace2/x"}, ("deny", "require")),
        ("read", {"path": "/workspace/.GIT/config"}, ("deny", "require")),
        ("read", {"path": "/workspace/app/.env"}, ("deny", "deny_if")),
        ("read", {"path": "/workspace/app/.env/"}, ("deny", "deny_if")),
        ("read", {"path": ["/workspace/a"]}, ("deny", "require")),  # not a string: the requirement fails
        ("read", {"path": 7}, ("deny", "require")),
        ("read", {}, ("deny", "require")),
        ("note", {"text": "  hi "}, ("allow", "allowed")),
        ("note", {"text": " \t\n"}, ("deny", "require")),
        ("note", {"text": ["x"]}, ("deny", "require")),
    ],
)
def test_decisions(tool: str, args: dict[str, Any], effect: tuple[str, str]) -> None:
    d = Engine(compile_source(WORKSPACE)).decide(tool, args)
    assert (d.effect, d.code) == effect, d.reason


def test_a_not_string_is_false_and_its_negation_true() -> None:
    engine = Engine(compile_source('default allow\ndeny tool "x" if not (lower(args.p) == "ok")\n'))
    assert engine.decide("x", {"p": "OK"}).effect == "allow"
    for p in (["ok"], 1, None):
        assert engine.decide("x", {"p": p}).code == "deny_if"
    assert engine.decide("x", {}).code == "deny_if"


def test_json_form_is_one_name_or_a_list_in_order() -> None:
    policy = compile_source('default deny\nallow tool "x" if len(trim(lower(args.p))) > 3 and upper(args.q) == "A"\n', source=False)
    a, b = policy.to_dict()["tools"]["x"]["require"][0]["all"]
    assert a == {"path": "args.p", "fn": ["lower", "trim", "len"], "op": "gt", "value": 3}
    assert b == {"path": "args.q", "fn": "upper", "op": "eq", "value": "A"}
    assert load_policy(policy.to_json()) == policy
    check_data(policy.to_dict())


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (["lower"], "a list `fn` applies 2 to 8 functions (write one function as a string)"),
        (["len", "lower"], "`len` gives a number: it can only be the last function"),
        (["lower", "count"], "`count` counts the values at a path: it takes no other function"),
        ("lowercase", "unknown fn \"lowercase\""),
        (["lower"] * 9, "a list `fn` applies 2 to 8 functions"),
    ],
)
def test_the_loader_refuses_a_bad_chain(fn: Any, message: str) -> None:
    doc = {"version": "1", "default": "deny", "tools": {"x": {"require": [{"path": "args.p", "fn": fn, "op": "eq", "value": "a"}]}}}
    with pytest.raises(PlrError) as e:
        load_policy(doc)
    assert message in str(e.value)
    with pytest.raises(ValueError, match="tools.x.require\\[0\\].fn"):
        check_data(doc)


def errors(src: str) -> list[str]:
    _, diags = build((), {"p.plr": src})
    return [f"{d.line}:{d.col}: {d.message}" for d in diags if d.severity == "error"]


def warnings(src: str) -> list[str]:
    _, diags = build((), {"p.plr": src})
    return [d.message for d in diags if d.severity == "warning"]


def test_misuses_are_located_errors() -> None:
    assert errors('default deny\nallow tool "x" if lower(len(args.p)) == "a"\n') == [
        "2:19: len(...) is a number, and lower(...) takes a string: write len(...) outermost"
    ]
    assert errors('default deny\nallow tool "x" if count(trim(args.p)) == 1\n') == [
        "2:19: count(...) counts the values at a path, and trim(...) gives one string: write len(...) for its "
        "length, or count(args.p)"
    ]
    assert errors('default deny\nallow tool "x" if len(lower(args.p)) matches "a"\n') == [
        "2:19: len(...) is a number: compare it with ==, <, > or in"
    ]
    (e,) = errors('default deny\nallow tool "x" if lower(args.p) exists\n')
    assert e.startswith("2:33: `exists` tests a path, not a function's result")


def test_a_literal_the_function_never_gives_is_reported() -> None:
    (w,) = warnings('default deny\nallow tool "x" if lower(identity) == "Admin"\n')
    assert w.startswith('`lower(identity) == "Admin"` can never hold: lower(...) never gives "Admin" (it gives "admin" for it)')
    (w,) = warnings('default deny\nallow tool "x" if normpath(args.p) in ["/w/", "a/"]\n')
    assert "normpath(...) gives none of the strings of the list" in w
    (w,) = warnings('default deny\nallow tool "x" if upper(args.p) starts_with "/etc"\n')
    assert 'upper(...) gives no text with "/etc" in it (write "/ETC")' in w
    (w,) = warnings('default deny\nallow tool "x" if trim(args.p) > 3\n')
    assert "trim(...) is a string, and a string is never greater than a number" in w
    # dirname is not idempotent (`/a/b` -> `/a` -> `/`), but what it gives is normalised as normpath's is
    assert warnings('default deny\nallow tool "x" if dirname(args.p) == "/a"\n') == []
    (w,) = warnings('default deny\nallow tool "x" if dirname(args.p) == "/a/"\n')
    assert 'dirname(...) never gives "/a/" (what it gives is normalised: "/a")' in w


def test_a_deny_if_on_a_function_warns_unless_the_tool_requires_a_string() -> None:
    (w,) = warnings('default allow\ndeny tool "x" if lower(args.path) contains ".git"\n')
    assert w.startswith('`lower(args.path) contains ".git"` is false when `args.path` is missing or not a string')
    assert 'deny tool "x" unless args.path matches ""' in w
    assert warnings('default allow\ndeny tool "x" if lower(args.path) contains ".git"\ndeny tool "x" unless args.path matches ""\n') == []
    assert warnings(
        'default deny\nallow tool "x" if normpath(args.path) starts_with "/w/"\ndeny tool "x" if lower(args.path) contains ".git"\n'
    ) == []
    assert warnings('default deny\nallow tool "x"\ndeny tool "x" if not (lower(args.path) == "a")\n') == []  # fails closed
    (w,) = warnings('default deny\nallow tool "x"\ndeny tool "x" if lower(args.p) != "a"\n')
    assert "`args.p` is missing or not a string" in w


def test_decompile_and_fmt_keep_the_chain() -> None:
    src = 'default deny\n\nallow tool "x" if basename(normpath(args.p)) == "a" and len(trim(args.q)) < 3\n'
    from dsl.format import format_source

    assert format_source(src) == src
    policy = compile_source(src, source=False)
    assert compile_source(decompile(policy), source=False) == policy


def test_explain_shows_the_functions() -> None:
    d = Engine(compile_source('default deny\nallow tool "x" if normpath(args.p) starts_with "/w/"\n')).decide(
        "x", {"p": "/w/../etc"}, explain=True
    )
    assert d.reason == '`x`: requirement not met: normpath(args.p) starts_with "/w/"'
