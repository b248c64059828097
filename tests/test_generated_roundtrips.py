"""Every property of a generated program (``tests/strategies.py``), checked on one draw.

Drawing a program costs more than checking it, so each generated program is checked for all of
these at once instead of being drawn again by one test per property:

* compiling never raises anything but ``PlrError`` (and the generator keeps that rare);
* ``load_policy(p.to_json()) == p`` (with and without source locations);
* `plr fmt` (``assert_format_properties``, test_format.py): idempotent, canonical, loses no
  comment, compiles to the same policy;
* `plr decompile` (``round_trip``, test_decompile.py): the compiled policy decompiles to
  canonical plr that compiles back to it exactly, with no approximation note;
* lowering during the parse (``assert_same_both_ways``, test_lower_inline.py) builds the same
  IR, or raises the same diagnostics, as lowering the tree.

The draw holds every construct of ``CONSTRUCTS``, so each property meets all of them.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings

from dsl.compiler import compile_source
from dsl.errors import PlrError
from dsl.policy import load_policy
from tests.strategies import programs
from tests.test_decompile import round_trip
from tests.test_format import assert_format_properties
from tests.test_lower_inline import assert_same_both_ways

EXAMPLES = int(os.environ.get("PLR_ROUNDTRIP_EXAMPLES", "200"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def compiled(src: str, **kw: Any) -> Any:
    """The compiled policy, or None for a program with errors (the generator keeps those rare)."""
    try:
        return compile_source(src, "p.plr", **kw)
    except PlrError:
        return None


def assert_load_dump_round_trip(p: Any) -> None:
    """The JSON a policy dumps loads back to the same policy, with and without its sources."""
    assert load_policy(p.to_json()) == p
    assert load_policy(p.to_json()).to_json() == p.to_json()
    bare = p.strip_source()
    assert load_policy(p.to_json(source=False)) == bare
    assert bare.to_json() == p.to_json(source=False)


# What the generated programs hold between them, so that each property above is checked on all
# of it: the statements that compile away (their text) and, in the compiled policy, every
# operator, function, combinator and kind of limit. Each is in 4 programs or more (most in 15 to
# 100) of every draw of 200 of 14 seeds tried. Rarer constructs, in 0 or 1 to 30 programs of a
# draw of 200 (a calendar unit, `per global`, `hide all tools`, a rule on `all tools`, a stdlib
# import, a test block), are not asserted: a mere change of seed would fail the test.
CONSTRUCTS = {
    "text:let", "text:def", "text:import data", "text:package", "text:comment",
    *(f"op:{op}" for op in ("eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in", "contains", "starts_with",
                            "ends_with", "regex", "exists", "missing")),
    *(f"fn:{fn}" for fn in ("count", "len", "lower", "upper", "trim", "normpath", "basename", "dirname")),
    *(f"cond:{kind}" for kind in ("all", "any", "not", "every", "some")),
    "limit:count", "limit:spend", "limit:sliding", "limit:calendar", "limit:tz", "limit:refund", "limit:if",
    "limit:per:session", "limit:per:identity", "tool:require", "tool:deny_if", "tool:limits",
    "action:require_approval", "hide:names", "default:allow", "default:deny",
}  # fmt: skip


# how the statements that compile away show in a program's text
TEXT_MARKS = {"let": "let ", "def": "def ", "import data": "import data", "package": "package ", "comment": "#"}


def constructs(src: str, p: Any) -> set[str]:
    """The constructs (as named in CONSTRUCTS) a program holds: ``src``, compiled to ``p`` (None
    when it does not compile)."""
    out = {f"text:{name}" for name, mark in TEXT_MARKS.items() if mark in src}
    if p is None:
        return out
    doc = json.loads(p.to_json(source=False))
    out.add(f"default:{doc['default']}")
    if doc.get("hide"):
        out.add("hide:all" if doc["hide"] == ["*"] else "hide:names")

    def walk(x: Any, section: str = "tool") -> None:
        if isinstance(x, list):
            for item in x:
                walk(item)
            return
        if not isinstance(x, dict):
            return
        if "op" in x:
            out.add(f"op:{x['op']}")
            fns = x.get("fn") or []
            out.update(f"fn:{f}" for f in ([fns] if isinstance(fns, str) else fns))
        out.update(f"cond:{kind}" for kind in ("all", "any", "not", "every", "some") if kind in x)
        if "max" in x and "window" in x:
            out.add("limit:spend" if "of" in x else "limit:count")
            out.add("limit:calendar" if "calendar" in x else "limit:sliding")
            out.add(f"limit:per:{x.get('per', 'session')}")
            out.update(f"limit:{k}" for k in ("tz", "refund", "if") if x.get(k))
        for key, value in x.items():
            if key in ("allow_if", "deny_if", "require", "limits") and value:
                out.add(f"{section}:{key}")
            if key == "action":
                out.add(f"action:{value}")
            walk(value, "all_tools" if key == "all_tools" else "tool")

    walk({k: v for k, v in doc.items() if k in ("tools", "all_tools")})
    return out


def test_generated_programs_keep_every_property() -> None:
    outcome: Counter[str] = Counter()
    seen: set[str] = set()
    # programs that passed, and whether they compiled: Hypothesis draws some programs again (one in
    # ten or so), and every property is a function of the text alone, so a repeat is not checked again
    passed: dict[str, bool] = {}

    @SETTINGS
    @given(programs())
    def check(src: str) -> None:
        if src in passed:
            outcome["ok" if passed[src] else "error"] += 1
            return
        p = compiled(src)  # anything but a PlrError propagates and fails the test
        outcome["ok" if p is not None else "error"] += 1
        seen.update(constructs(src, p))
        assert_format_properties(src)
        assert_same_both_ways(src, "gen.plr")
        if p is not None:
            assert_load_dump_round_trip(p)
            assert "# note" not in round_trip(p)
        passed[src] = p is not None

    check()
    assert outcome["error"] <= 0.2 * sum(outcome.values()), outcome
    # (a smaller draw, PLR_ROUNDTRIP_EXAMPLES, makes no promise)
    if EXAMPLES >= 200:
        assert not CONSTRUCTS - seen, f"no generated program has {sorted(CONSTRUCTS - seen)}"
