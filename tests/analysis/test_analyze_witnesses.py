"""`plr analyze` on generated policies: every finding's claim holds on a pool of calls, and every
call a finding shows reproduces on a fresh engine; a witness the engine does not confirm is
reported as unknown, never as a finding.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dsl
from dsl.analysis import analyze as analyze_mod
from dsl.analysis.analyze import analyze_policy
from dsl.engine import MISSING, Engine, compile_condition
from dsl.state.memory import MemoryLimitStore

from .test_generated_pairs import CALLS, SETTINGS, conds, policies

pytest.importorskip("z3")


def _labelled(p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, dict[str, Any]]]]:
    """The policy with a unique `rule` on every condition, and rule -> (kind, condition)."""
    q = copy.deepcopy(p)
    where: dict[str, tuple[str, dict[str, Any]]] = {}
    scopes = [*q.get("tools", {}).values(), q.get("all_tools", {})]
    for scope in scopes:
        for kind in ("deny_if", "require", "allow_if"):
            for c in scope.get(kind, ()):
                c["rule"] = f"g.plr:{len(where) + 1}"
                where[c["rule"]] = (kind, c)
    return dsl.load_policy(q).to_dict(), where


@st.composite
def with_dead_rules(draw: Any) -> dict[str, Any]:
    """A generated policy, and in one tool a deny_if the one before it covers, a deny_if that
    always holds, and a require that fails only where that first deny_if denies (findings the
    plain generator seldom makes)."""
    p = copy.deepcopy(draw(policies()))
    t = p.setdefault("tools", {}).setdefault(draw(st.sampled_from(("a", "b"))), {})
    first, other = draw(conds()), draw(conds())
    t["deny_if"] = [*t.get("deny_if", ()), first]
    extra = draw(st.lists(st.sampled_from(("covered", "always", "require")), unique=True, min_size=1))
    if "covered" in extra:
        t["deny_if"].append({"all": [other, first]})
    if "always" in extra:
        t["deny_if"].append({"any": [other, {"not": other}]})
    if "require" in extra:
        t["require"] = [*t.get("require", ()), {"not": first}]
    return dsl.load_policy(p).to_dict()


def _holds(c: dict[str, Any], call: dict[str, Any]) -> bool:
    ctx = (call["args"], *(MISSING if call[r] is None else call[r] for r in ("identity", "session", "server")), call["tool"], call["approved"])
    return bool(compile_condition(c)(ctx))


def _fresh(data: dict[str, Any], call: dict[str, Any]) -> tuple[str, str, str | None]:
    d = Engine.from_data(data, store=MemoryLimitStore()).decide(
        call["tool"], call["args"], identity=call["identity"], session=call["session"], server=call["server"], approved=call["approved"]
    )
    return d.effect, d.code, d.rule


@SETTINGS
@given(st.one_of(policies(), with_dead_rules()))
def test_findings_hold_and_their_calls_reproduce(p: dict[str, Any]) -> None:
    data, where = _labelled(p)
    result = analyze_policy(data)
    assert not result.unknown, result.unknown  # the generated fragment is exact: every witness confirms
    for f in result.findings:
        call = f.get("call")
        if call is not None:  # shown: the fresh engine decides it exactly as printed
            d = call["decision"]
            assert _fresh(data, call) == (d["effect"], d["code"], d["rule"]), f
        if f["rule"] not in where:
            continue
        kind, c = where[f["rule"]]
        pool = [x for x in CALLS if f["tool"] is None or x["tool"] == f["tool"]]
        if f["kind"] == "never":
            assert not any(_holds(c, x) for x in pool), f
        elif f["kind"] == "always":
            assert all(_holds(c, x) for x in pool), f
            if kind == "deny_if":
                assert call is not None and _holds(c, call) and call["decision"]["code"] == "deny_if"
        elif f["kind"] == "shadowed":
            assert call is not None, f
            assert call["decision"]["effect"] == "deny" and call["decision"]["code"] == "deny_if"
            assert _holds(c, call) is (kind == "deny_if")  # the rule would decide, but an earlier one did


def test_a_witness_the_engine_does_not_confirm_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    data = dsl.load_policy({"version": "1", "default": "deny", "tools": {"a": {"deny_if": [
        {"path": "args.n", "op": "gt", "value": 10, "rule": "p.plr:3"},
        {"path": "args.n", "op": "gt", "value": 20, "rule": "p.plr:4"},
    ]}}}).to_dict()
    good = analyze_policy(data)
    assert [(f["kind"], f["rule"]) for f in good.findings] == [("shadowed", "p.plr:4")] and not good.unknown
    assert good.findings[0]["call"]["args"]["n"] > 20
    # an engine that answers otherwise than the solver claims: the finding is not printed as fact
    monkeypatch.setattr(analyze_mod, "decide", lambda engines, call: {"effect": "allow", "code": "allowed", "rule": None})
    bad = analyze_policy(data)
    assert not bad.findings
    assert [(u["kind"], u["rule"]) for u in bad.unknown] == [("shadowed", "p.plr:4")]
    assert bad.unknown[0]["reason"].startswith("internal error")


def test_holds_reads_an_absent_identity_session_or_server_as_the_engine_does() -> None:
    """The claim check runs the engine's evaluator: an absent identity must be the engine's own
    'missing' sentinel, not the analysis's kind number 0 (which reads as present)."""
    from dsl.analysis.witness import holds

    call = {"tool": "t", "args": {}, "identity": None, "session": None, "server": None, "approved": False}
    for root in ("identity", "session", "server"):
        assert holds({"op": "exists", "path": root}, call) is False
        assert holds({"op": "missing", "path": root}, call) is True
        assert holds({"op": "exists", "path": root}, {**call, root: "x"}) is True
