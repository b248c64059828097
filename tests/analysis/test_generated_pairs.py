"""Generated policy pairs: rewrites that keep every decision are proven equivalent; mutations
are found, each with a call that reproduces the change on both real engines.

The policies are compiled-JSON documents drawn by hypothesis (the artefact the analysis
reads), over a few tools and argument paths, so a brute-force run over a pool of calls can
cross-check the solver: when any pooled call is decided differently, ``diff`` must say so.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsl
from dsl.analysis.diff import diff_policies
from dsl.engine import Engine
from dsl.state.memory import MemoryLimitStore

pytest.importorskip("z3")

TOOLS = ("a", "b", "c")
SCALARS = (0, 1, 5, -2, 2.5, "x", "xy", "/w/", "", True, False, None)
LISTS = ([], ["x"], ["x", "y"], [1, 2, 3], [["x"]])


@st.composite
def leaves(draw: Any) -> dict[str, Any]:
    path = draw(st.sampled_from(("args.n", "args.s", "args.l", "args.o.k", "identity", "args.l[0]")))
    op = draw(st.sampled_from(("eq", "neq", "lt", "gte", "gt", "lte", "in", "not_in", "contains", "starts_with", "ends_with", "exists", "missing", "count")))
    if op in ("exists", "missing"):
        return {"path": path, "op": op}
    if op == "count":
        return {"path": path, "fn": "count", "op": draw(st.sampled_from(("gt", "lte", "eq"))), "value": draw(st.integers(0, 3))}
    if op in ("in", "not_in"):
        return {"path": path, "op": op, "value": draw(st.lists(st.sampled_from(SCALARS[:9] + (["x"],)), min_size=1, max_size=3))}
    if op in ("starts_with", "ends_with"):
        return {"path": path, "op": op, "value": draw(st.sampled_from(("x", "/w/", "")))}
    if op in ("lt", "gte", "gt", "lte"):
        return {"path": path, "op": op, "value": draw(st.sampled_from((0, 1, 5, 2.5, "x", "m")))}
    return {"path": path, "op": op, "value": draw(st.sampled_from(SCALARS[:9] + (["x"],)))}


def conds() -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaves(),
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
            inner.map(lambda x: {"not": x}),
            st.lists(leaves(), min_size=1, max_size=2).map(lambda xs: {"some": "e", "in": "args.l", "where": _rebind({"any": xs})}),
        ),
        max_leaves=4,
    )


def _rebind(c: dict[str, Any]) -> dict[str, Any]:
    """A quantifier body reads the item: args.s becomes e (other paths stay outer reads)."""
    if "path" in c:
        return {**c, "path": "e"} if c["path"] == "args.s" else c
    if "not" in c:
        return {"not": _rebind(c["not"])}
    if "all" in c or "any" in c:
        k = "all" if "all" in c else "any"
        return {k: [_rebind(x) for x in c[k]]}
    return c  # a nested quantifier keeps its own binding


@st.composite
def policies(draw: Any) -> dict[str, Any]:
    tools = {}
    for name in draw(st.lists(st.sampled_from(TOOLS), unique=True, max_size=3)):
        t: dict[str, Any] = {}
        action = draw(st.sampled_from(("allow", "allow", "require_approval", "deny")))
        if action != "allow":
            t["action"] = action
        for kind in ("deny_if", "require"):
            xs = draw(st.lists(conds(), max_size=2))
            if xs:
                t[kind] = xs
        if draw(st.booleans()):
            t["limits"] = [{"max": draw(st.integers(1, 5)), "window": 60, "per": "session"}]
        tools[name] = t
    p: dict[str, Any] = {"version": "1", "default": draw(st.sampled_from(("allow", "deny"))), "tools": tools}
    hide = draw(st.lists(st.sampled_from(TOOLS), unique=True, max_size=1))
    if hide:
        p["hide"] = hide
    top = {}
    if draw(st.integers(0, 3)) == 0:
        top["deny_if"] = [draw(conds())]
    if draw(st.integers(0, 3)) == 0:
        top["allow_if"] = [draw(conds())]
    if top:
        p["all_tools"] = top
    return dsl.load_policy(p).to_dict()


# --- semantics-preserving rewrites ------------------------------------------------------------


def _rewrite_cond(c: dict[str, Any], rnd: Any) -> dict[str, Any]:
    if "path" in c:
        if c["op"] == "in" and len(c["value"]) > 1 and rnd.draw(st.booleans()):  # split an `in` list
            return {"any": [{**c, "value": [v]} for v in c["value"]]}
        if rnd.draw(st.booleans()):  # `unless C` as `if not not C`
            return {"not": {"not": c}}
        return c
    if "not" in c:
        inner = c["not"]
        if ("all" in inner or "any" in inner) and rnd.draw(st.booleans()):  # De Morgan
            k = "all" if "all" in inner else "any"
            return {("any" if k == "all" else "all"): [{"not": _rewrite_cond(x, rnd)} for x in inner[k]]}
        return {"not": _rewrite_cond(inner, rnd)}
    if "all" in c or "any" in c:
        k = "all" if "all" in c else "any"
        xs = [_rewrite_cond(x, rnd) for x in c[k]]
        return {k: rnd.draw(st.permutations(xs))}  # reordered operands
    return {**c, "where": _rewrite_cond(c["where"], rnd)}


def rewrite(p: dict[str, Any], rnd: Any) -> dict[str, Any]:
    q = copy.deepcopy(p)
    for t in q["tools"].values():
        for kind in ("deny_if", "require"):
            if kind in t:
                t[kind] = rnd.draw(st.permutations([_rewrite_cond(c, rnd) for c in t[kind]]))  # reordered rules
    q["tools"] = dict(rnd.draw(st.permutations(list(q["tools"].items()))))
    return dsl.load_policy(q).to_dict()


# --- mutations ---------------------------------------------------------------------------------

FLIP = {"eq": "neq", "neq": "eq", "lt": "gte", "gte": "lt", "gt": "lte", "lte": "gt", "in": "not_in", "not_in": "in",
        "exists": "missing", "missing": "exists", "starts_with": "ends_with", "ends_with": "starts_with", "contains": "eq"}


def _leaves_of(c: dict[str, Any], out: list[dict[str, Any]]) -> None:
    if "path" in c:
        out.append(c)
    for k in ("all", "any"):
        for x in c.get(k, ()):
            _leaves_of(x, out)
    if "not" in c:
        _leaves_of(c["not"], out)
    if "where" in c:
        _leaves_of(c["where"], out)


def mutate(p: dict[str, Any], rnd: Any) -> dict[str, Any]:
    q = copy.deepcopy(p)
    entries = [(t, kind) for t in q["tools"].values() for kind in ("deny_if", "require") if t.get(kind)]
    what = rnd.draw(st.sampled_from(("flip", "drop", "limit", "action")))
    if what in ("flip", "drop") and entries:
        t, kind = rnd.draw(st.sampled_from(entries))
        i = rnd.draw(st.integers(0, len(t[kind]) - 1))
        if what == "drop":
            del t[kind][i]
            if not t[kind]:
                del t[kind]
        else:
            leaves_: list[dict[str, Any]] = []
            _leaves_of(t[kind][i], leaves_)
            leaf = rnd.draw(st.sampled_from(leaves_))
            leaf["op"] = FLIP[leaf["op"]]
            if leaf["op"] in ("exists", "missing"):
                leaf.pop("value", None)
                leaf.pop("fn", None)
            elif "value" not in leaf:
                leaf["value"] = "x"
            if leaf["op"] in ("starts_with", "ends_with") and not isinstance(leaf["value"], str):
                leaf["value"] = "x"
    elif what == "limit" and any("limits" in t for t in q["tools"].values()):
        t = next(t for t in q["tools"].values() if "limits" in t)
        t["limits"][0]["max"] += 1
    elif q["tools"]:
        t = rnd.draw(st.sampled_from(list(q["tools"].values())))
        t["action"] = rnd.draw(st.sampled_from(("allow", "deny", "require_approval")))
    return dsl.load_policy(q).to_dict()


# --- the cross-check ---------------------------------------------------------------------------

ARGS_POOL = [
    {},
    {"n": 0, "s": "x"},
    {"n": 5, "s": "/w/x", "l": ["x"]},
    {"n": 2.5, "s": "", "l": [], "o": {"k": "x"}},
    {"n": "x", "s": 1, "l": ["x", "y"], "o": {"k": None}},
    {"n": -2, "s": "xy", "l": [1, 2, 3], "o": {}},
    {"n": 1, "s": "m", "l": [["x"]], "o": {"k": 5}},
    {"n": None, "s": True, "l": "x", "o": "k"},
    {"n": 6, "s": "xyz", "l": ["x", "x", "x", "x"], "o": {"k": ["x"]}},
]
CALLS = [
    {"tool": tool, "args": args, "identity": ident, "session": None, "server": None, "approved": approved}
    for tool, args, ident, approved in itertools.product((*TOOLS, "zz"), ARGS_POOL, (None, "x", "m"), (False, True))
]


def _decide(data: dict[str, Any], call: dict[str, Any]) -> tuple[str, str]:
    d = Engine.from_data(data, store=MemoryLimitStore()).decide(
        call["tool"], call["args"], identity=call["identity"], session=call["session"], server=call["server"], approved=call["approved"]
    )
    return d.effect, d.code


def _brute(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """The tools some pooled call is decided differently for."""
    eo, en = Engine.from_data(old), Engine.from_data(new)
    out = set()
    for c in CALLS:
        kw = dict(identity=c["identity"], session=c["session"], server=c["server"], approved=c["approved"])
        do = eo.decide(c["tool"], c["args"], **kw)
        dn = en.decide(c["tool"], c["args"], **kw)
        if (do.effect, do.code) != (dn.effect, dn.code) and "rate_limited" not in (do.code, dn.code):
            out.add(c["tool"])
    return out


def _check_result(old: dict[str, Any], new: dict[str, Any], r: Any) -> None:
    for ch in r.changes:  # every printed witness reproduces, on fresh engines
        assert (ch["old"]["effect"], ch["old"]["code"]) == _decide(old, ch["call"])
        assert (ch["new"]["effect"], ch["new"]["code"]) == _decide(new, ch["call"])
        assert (ch["old"]["effect"], ch["old"]["code"]) != (ch["new"]["effect"], ch["new"]["code"])
        json.dumps(ch["call"])  # printable
    assert not r.unknown, r.unknown  # the generated fragment is exact: nothing is left undecided
    found = {ch["tool"] for ch in r.changes}
    for tool in _brute(old, new):
        assert tool in found or (tool == "zz" and found - set(TOOLS)), (tool, found)


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(policies(), st.data())
def test_rewrites_are_proven_equivalent(p: dict[str, Any], data: Any) -> None:
    q = rewrite(p, data)
    r = diff_policies(p, q)
    assert r.equivalent, r.to_dict()
    assert not _brute(p, q)


@SETTINGS
@given(policies(), st.data())
def test_mutations_are_found_with_reproducing_witnesses(p: dict[str, Any], data: Any) -> None:
    q = mutate(p, data)
    r = diff_policies(p, q)
    _check_result(p, q, r)
    if r.equivalent:  # a mutation may keep every decision (a shadowed rule): then no pooled call differs
        assert not _brute(p, q)


def test_a_raised_limit_is_a_loosening_limit_change() -> None:
    old = dsl.load_policy({"version": "1", "default": "deny", "tools": {"a": {"limits": [{"max": 2, "window": 60}]}}}).to_dict()
    new = copy.deepcopy(old)
    new["tools"]["a"]["limits"][0]["max"] = 3
    r = diff_policies(old, new)
    assert not r.changes and [x["kind"] for x in r.limits] == ["loosen"] and not r.equivalent
    new["tools"]["a"]["limits"][0]["window"] = 120
    assert [x["kind"] for x in diff_policies(old, new).limits] == ["change"]  # more calls, longer window: no order
    assert [x["kind"] for x in diff_policies(new, old).limits] == ["change"]
    new["tools"]["a"]["limits"][0]["max"] = 1
    assert [x["kind"] for x in diff_policies(old, new).limits] == ["tighten"]
