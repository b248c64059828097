"""Regexes and value functions in the analysis: the z3 encodings agree with RE2 and with the
engine's functions, rewritten regexes are proven equivalent, mutated ones are found with a call
that reproduces on both real engines, and what is not encoded stays `unknown`."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dsl
from dsl.analysis.diff import diff_policies
from dsl.engine.functions import STRING_FUNCTIONS
from dsl.regex import re2_search_test

from .test_generated_pairs import SETTINGS, _decide

z3 = pytest.importorskip("z3")

from dsl.analysis import regular  # noqa: E402
from dsl.analysis.encode import Context, string_val  # noqa: E402

# --- patterns: a small RE2 grammar, rendered plainly and rewritten --------------------------------

ATOMS = ("a", "b", "/", r"\.", "[ab]", "[^a]", r"\d", ".", "[a-c]", r"\x2f")


@st.composite
def trees(draw: Any, depth: int = 2) -> Any:
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return ("atom", draw(st.sampled_from(ATOMS)))
    kind = draw(st.sampled_from(("cat", "alt", "star", "plus", "opt", "count")))
    if kind in ("cat", "alt"):
        return (kind, draw(st.lists(trees(depth - 1), min_size=2, max_size=3)))
    if kind == "count":
        return ("count", draw(trees(depth - 1)), draw(st.integers(0, 2)), draw(st.integers(2, 3)))
    return (kind, draw(trees(depth - 1)))


def render(t: Any, rw: bool = False) -> str:
    """The pattern; with ``rw``, a different text for the same language."""
    kind = t[0]
    if kind == "atom":
        if rw:
            return {"[ab]": "(?:b|a)", r"\d": "[0-9]", "[a-c]": "[abc]", r"\x2f": "/", "/": r"\x{2F}", "a": "(?:a)"}.get(t[1], t[1])
        return t[1]
    if kind == "cat":
        return "".join(f"(?:{render(x, rw)})" for x in t[1])
    if kind == "alt":
        xs = [render(x, rw) for x in t[1]]
        return "(?:" + "|".join(reversed(xs) if rw else xs) + ")"
    inner = f"(?:{render(t[1], rw)})"
    if kind == "star":
        return f"(?:{inner}+)?" if rw else inner + "*"
    if kind == "plus":
        return inner + inner + "*" if rw else inner + "+"
    if kind == "opt":
        return f"(?:{inner}|)" if rw else inner + "?"
    lo, hi = t[2], t[3]
    return inner * lo + f"(?:{inner})?" * (hi - lo) if rw else inner + f"{{{lo},{hi}}}"


@st.composite
def patterns(draw: Any) -> tuple[str, str]:
    t = draw(trees())
    start, end = draw(st.booleans()), draw(st.booleans())
    wrap = lambda body: ("^" if start else "") + body + ("$" if end else "")  # noqa: E731
    plain, rewritten = wrap(render(t)), wrap(render(t, rw=True))
    if not start and draw(st.booleans()):
        rewritten = ".*" + rewritten  # an unanchored search may skip any prefix
    return plain, rewritten


STRINGS = ["", "a", "b", "ab", "ba", "/", "a/b", "1", "a.b", "\n", "aab", "abab", "c/", "/a", "x", "bb1", "a\nb", "é"]


def _member(z_re: Any, s: str) -> bool:
    sol = z3.Solver()
    sol.add(z3.InRe(string_val(z3, s), z_re))
    return str(sol.check()) == "sat"


@SETTINGS
@given(patterns())
def test_search_regex_agrees_with_re2(pats: tuple[str, str]) -> None:
    for p in pats:
        found = re2_search_test(p)
        r = regular.search_re(z3, p)
        for s in STRINGS:
            assert _member(r, s) == found(s), (p, s)


@pytest.mark.parametrize("p", [r"^(a|^b)x", r"a$|b", r"(^|/)\.env$", r"x$^", r"(?P<n>a)\z", r"\Aa", r"[\s-]", r"[^\d]", r"\W$", "a*?b"])
def test_anchors_and_escapes_anywhere_agree_with_re2(p: str) -> None:
    found = re2_search_test(p)
    r = regular.search_re(z3, p)
    for s in [*STRINGS, "bx", "ax", "x/.env", ".env", "\t", "-", " ", "\x0b"]:
        assert _member(r, s) == found(s), (p, s)


@pytest.mark.parametrize("p", [r"\bword", "(?i)abc", r"\pL", "[[:alpha:]]", r"(a)\1", r"\Qa.b\E", "a{,2}", "\U00030000", r"(?s).", "[]a]"])
def test_syntax_outside_the_subset_is_unsupported(p: str) -> None:
    with pytest.raises(regular.Unsupported):
        regular.parse(p)


@pytest.mark.parametrize("op", ["lt", "lte", "gt", "gte"])
def test_string_order_regex_is_python_order(op: str) -> None:
    py = {"lt": str.__lt__, "lte": str.__le__, "gt": str.__gt__, "gte": str.__ge__}[op]
    for lit, s in itertools.product(["", "m", "ab", "a\x00"], ["", "a", "ab", "abc", "m", "ma", "z", "\x00", "a\x00"]):
        assert _member(regular.order_re(z3, op, lit), s) == py(s, lit), (op, lit, s)


@pytest.mark.parametrize("chain", [("trim",), ("basename",), ("trim", "basename"), ("basename", "trim"), ("trim", "len")])
def test_value_functions_compute_what_the_engine_does(chain: tuple[str, ...]) -> None:
    leaf = {"path": "args.s", "fn": list(chain) if len(chain) > 1 else chain[0], "op": "gte", "value": 0 if chain[-1] == "len" else "q"}
    for s in ["", " a/b\t", "\u3000x\u2028", "///", "/a//b/", "AbC/dé", "Straße"]:
        ctx = Context(z3, [leaf], "a", {"a"})
        ctx.cond(leaf)  # builds the function's terms
        x = ctx.roots["args"].keys["s"]
        want = s
        for f in chain:
            want = want if f == "len" else STRING_FUNCTIONS[f](want)
        y = ctx._apply(x, tuple(f for f in chain if f != "len"))
        sol = z3.Solver()
        sol.add(*ctx.constraints, x.kind == 3, x.gap == 0, x.s == string_val(z3, s))
        sol.push()
        sol.add(y == string_val(z3, want))  # the engine's result is possible (sound)
        assert str(sol.check()) == "sat", (chain, s)
        sol.pop()
        sol.add(y != string_val(z3, want))  # and, in the exact domain, the only one
        assert str(sol.check()) == "unsat", (chain, s)


# --- policy pairs -----------------------------------------------------------------------------


def _policy(pattern: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    conds: list[dict[str, Any]] = [{"path": "args.s", "op": "regex", "value": pattern}]
    if extra is not None:
        conds.append(extra)
    return dsl.load_policy({"version": "1", "default": "deny", "tools": {"a": {"deny_if": conds}}}).to_dict()


POOL = [{"s": s} for s in [*STRINGS, "1a", "a1", "/b/", "ab/", "b/a", "aa", "bbb", "a/", ".a", "1/"]]


def _check_witnesses(old: dict[str, Any], new: dict[str, Any]) -> Any:
    r = diff_policies(old, new)
    assert not r.unknown, r.unknown  # the encoded subset is exact
    for ch in r.changes:
        assert (ch["old"]["effect"], ch["old"]["code"]) == _decide(old, ch["call"])
        assert (ch["new"]["effect"], ch["new"]["code"]) == _decide(new, ch["call"])
    differs = any(
        _decide(old, c) != _decide(new, c)
        for c in ({"tool": "a", "args": a, "identity": None, "session": None, "server": None, "approved": False} for a in POOL)
    )
    assert not differs or r.changes  # a pooled call that differs is a change the solver must find
    return r


@SETTINGS
@given(patterns())
def test_rewritten_regexes_are_proven_equivalent(pats: tuple[str, str]) -> None:
    r = _check_witnesses(_policy(pats[0]), _policy(pats[1]))
    assert r.equivalent, (pats, r.to_dict())


MUTATIONS = [("a", "b"), ("^", ""), ("$", ""), ("+", "*"), ("[ab]", "[a]"), (r"\d", "[0-8]"), ("?", ""), (".", "/")]


@SETTINGS
@given(patterns(), st.sampled_from(MUTATIONS))
def test_mutated_regexes_are_found_with_reproducing_witnesses(pats: tuple[str, str], mutation: tuple[str, str]) -> None:
    old = pats[0]
    new = old.replace(*mutation, 1)
    r = _check_witnesses(_policy(old), _policy(new))
    if r.equivalent:  # the mutation kept the language: no pooled string tells them apart
        assert all(re2_search_test(old)(a["s"]) == re2_search_test(new)(a["s"]) for a in POOL)


@pytest.mark.parametrize(
    ("old", "new", "same"),
    [
        ({"fn": "basename", "op": "eq", "value": ".env"}, {"op": "ends_with", "value": ".env"}, False),
        ({"fn": "trim", "op": "starts_with", "value": "/"}, {"op": "starts_with", "value": "/"}, False),
        ({"fn": ["trim", "len"], "op": "gt", "value": 3}, {"fn": "len", "op": "gt", "value": 3}, False),
    ],
)
def test_value_functions_are_exact(old: dict[str, Any], new: dict[str, Any], same: bool) -> None:
    def pol(c: dict[str, Any]) -> dict[str, Any]:
        return dsl.load_policy({"version": "1", "default": "deny", "tools": {"a": {"deny_if": [{"path": "args.s", **c}]}}}).to_dict()

    r = diff_policies(pol(old), pol(new))
    assert not r.unknown, r.unknown
    assert r.equivalent is same, r.to_dict()
    for ch in r.changes:
        assert (ch["new"]["effect"], ch["new"]["code"]) == _decide(pol(new), ch["call"])
        assert (ch["old"]["effect"], ch["old"]["code"]) == _decide(pol(old), ch["call"])


def test_what_is_not_encoded_stays_unknown() -> None:
    old = dsl.load_policy({"version": "1", "default": "deny", "tools": {"a": {"deny_if": [
        {"path": "args.s", "op": "regex", "value": r"\bsecret\b"}]}}}).to_dict()
    new = dsl.load_policy({"version": "1", "default": "deny", "tools": {"a": {"deny_if": [
        {"path": "args.s", "op": "regex", "value": r"\bsecrets?\b"}]}}}).to_dict()
    r = diff_policies(old, new)
    assert not r.equivalent  # never "equivalent" when unsure
    assert r.unknown or r.changes
    for ch in r.changes:  # a change through an opaque part is printed only when the engines agree
        assert (ch["new"]["effect"], ch["new"]["code"]) == _decide(new, ch["call"])
    same = diff_policies(old, old)
    assert same.equivalent  # the same opaque condition on both sides is the same atom
