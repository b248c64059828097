"""Spend caps in `plr diff`, `plr query --can allow` and `plr analyze`: a cap refuses, on its first
run, a call whose amount is missing, invalid or over the cap, so the calls shown must get past
it (or be shown as the engine decides them), and a "no" that counts caps stays a proof. Each
test runs the CLI (exit code and output) and checks every claim on fresh real engines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import dsl
from dsl.engine import Engine
from dsl.state.memory import MemoryLimitStore

pytest.importorskip("z3")

from tests.analysis.test_review_fixes_analysis import run, write  # noqa: E402  (the same CLI helpers)

CAP = 'limit tool "pay" to 500 of args.amount per day\n'




def decide(path: str, call: dict[str, Any]) -> tuple[str, str]:
    """The decision of ``call`` on a fresh engine and store (fresh counters)."""
    d = Engine(dsl.compile_files([path]), clock=lambda: 0.0, store=MemoryLimitStore()).decide(
        call["tool"], call["args"], identity=call.get("identity"), session=call.get("session"),
        server=call.get("server"), approved=call.get("approved", False),
    )
    return d.effect, d.code


def diff(old: str, new: str) -> tuple[int, dict[str, Any], str]:
    """``plr diff`` as JSON and as text, each change checked on both engines."""
    code, out = run("diff", old, new, "--format", "json")
    doc = json.loads(out)
    for ch in doc["changes"]:
        assert decide(old, ch["call"]) == (ch["old"]["effect"], ch["old"]["code"]), ch
        assert decide(new, ch["call"]) == (ch["new"]["effect"], ch["new"]["code"]), ch
        assert (ch["old"]["effect"], ch["old"]["code"]) != (ch["new"]["effect"], ch["new"]["code"])
    _, text = run("diff", old, new)
    assert "please report" not in out + text, out + text
    return code, doc, text


def classes(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((ch["kind"], ch["old"]["code"], ch["new"]["code"]) for ch in doc["changes"])


def test_diff_finds_a_loosening_under_a_cap_on_both_sides(tmp_path: Path) -> None:
    old = write(tmp_path, "old.plr", f'default allow\ndeny tool "pay" if args.to == "x"\n{CAP}')
    new = write(tmp_path, "new.plr", f"default allow\n{CAP}")
    code, doc, text = diff(old, new)
    assert code == 1 and not doc["unknown"] and not doc["limits"], doc
    assert classes(doc) == [("loosen", "deny_if", "allowed")]
    amount = doc["changes"][0]["call"]["args"]["amount"]
    assert isinstance(amount, int) and 0 <= amount <= 500  # a whole amount the cap takes
    assert text.startswith("loosen: `pay`: deny (deny_if)") and "0 unknown" in text
    # the same with the policies swapped: a tightening, shown by a call the cap lets through
    code, doc, _ = diff(new, old)
    assert code == 1 and not doc["unknown"] and classes(doc) == [("tighten", "allowed", "deny_if")]


def test_a_class_the_cap_always_refuses_is_shown_as_the_engine_decides_it(tmp_path: Path) -> None:
    # the deny_if held only for amounts the cap refuses anyway: dropping it allows nothing more
    old = write(tmp_path, "old.plr", f'default allow\ndeny tool "pay" if args.amount > 1000\n{CAP}')
    new = write(tmp_path, "new.plr", f"default allow\n{CAP}")
    code, doc, text = diff(old, new)
    assert code == 1 and not doc["unknown"], doc
    assert classes(doc) == [("change", "deny_if", "rate_limited")]  # deny either way: no loosening
    assert doc["changes"][0]["call"]["args"]["amount"] > 1000
    code, _ = run("diff", old, new, "--fail-on", "loosen")
    assert code == 0  # nothing is more permissive


def test_calls_both_caps_refuse_alike_are_no_difference(tmp_path: Path) -> None:
    cap = {"max": 500, "window": 86400, "per": "global", "of": "args.amount"}
    over = {"path": "args.amount", "op": "gt", "value": 600}
    old = write(tmp_path, "old.json", json.dumps(
        {"version": "1", "default": "allow", "tools": {"pay": {"require": [over]}}, "all_tools": {"limits": [cap]}}))
    new = write(tmp_path, "new.json", json.dumps({"version": "1", "default": "allow", "all_tools": {"limits": [cap]}}))

    def engine_decide(path: str, call: dict[str, Any]) -> tuple[str, str]:
        d = Engine(dsl.load_policy(path), clock=lambda: 0.0, store=MemoryLimitStore()).decide(call["tool"], call["args"])
        return d.effect, d.code

    # `pay` is allowed by the old rules only over 600, which both caps refuse with the same code
    for amount in (601, 1000):
        call = {"tool": "pay", "args": {"amount": amount}}
        assert engine_decide(old, call) == engine_decide(new, call) == ("deny", "rate_limited")
    code, out = run("diff", old, new, "--format", "json")
    doc = json.loads(out)
    assert code == 1 and not doc["unknown"], doc
    assert classes(doc) == [("loosen", "require", "default")]  # only what the new policy does allow
    call = doc["changes"][0]["call"]
    assert engine_decide(old, call) == ("deny", "require") and engine_decide(new, call) == ("allow", "default")


def test_diff_of_a_tool_no_policy_names_under_a_cap_of_every_tool(tmp_path: Path) -> None:
    cap = "limit all tools to 500 of args.amount per day\n"
    old = write(tmp_path, "old.plr", f"default deny\n{cap}")
    new = write(tmp_path, "new.plr", f"default allow\n{cap}")
    code, doc, _ = diff(old, new)
    assert code == 1 and not doc["unknown"], doc
    assert classes(doc) == [("loosen", "default", "default")]
    assert doc["changes"][0]["other_tool"] is True and 0 <= doc["changes"][0]["call"]["args"]["amount"] <= 500


def test_query_allow_under_a_cap_with_a_condition(tmp_path: Path) -> None:
    p = write(tmp_path, "q.plr", 'default deny\nallow tool "pay" if args.kind == "card"\n'
              'limit tool "pay" to 12.5 of args.amount per day if args.kind == "card"\n')
    code, out = run("query", p, "--can", "allow", "--tool", "pay", "--format", "json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["possible"] is True and decide(p, doc["call"]) == ("allow", "allowed")
    assert 0 <= doc["call"]["args"]["amount"] <= 12.5
    code, text = run("query", p, "--can", "allow", "--tool", "pay")
    assert code == 0 and text.startswith("yes:") and "allow (allowed)" in text


def test_query_allow_no_is_a_proof_when_the_cap_refuses_every_allowed_call(tmp_path: Path) -> None:
    p = write(tmp_path, "q.plr", f'default deny\nallow tool "pay" if args.amount > 600\n{CAP}')
    for amount in (0, 500, 600, 600.5, 601, 10**6):  # the rules allow some; the cap refuses them all
        assert decide(p, {"tool": "pay", "args": {"amount": amount}})[0] == "deny"
    code, out = run("query", p, "--can", "allow", "--tool", "pay", "--format", "json")
    assert code == 1, out
    doc = json.loads(out)
    assert doc["possible"] is False and "spend cap" in doc["reason"]
    code, text = run("query", p, "--can", "allow", "--tool", "pay")
    assert code == 1 and text.startswith("no:")
    # a cap that leaves room is still answered "yes"
    q = write(tmp_path, "r.plr", f'default deny\nallow tool "pay" if args.amount > 400\n{CAP}')
    code, out = run("query", q, "--can", "allow", "--tool", "pay", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and 400 < doc["call"]["args"]["amount"] <= 500 and decide(q, doc["call"]) == ("allow", "allowed")


def test_analyze_finds_a_tool_its_cap_never_lets_through(tmp_path: Path) -> None:
    p = write(tmp_path, "a.plr", f'default deny\nallow tool "pay" if args.amount > 600\n{CAP}')
    code, out = run("analyze", p, "--format", "json")
    assert code == 1, out
    found = [f for f in json.loads(out)["findings"] if f["kind"] == "never_allowed"]
    assert [(f["tool"], f["rule"]) for f in found] == [("pay", "a.plr:2")] and "spend cap" in found[0]["message"]
    # with room under the cap there is no such finding
    q = write(tmp_path, "b.plr", f'default deny\nallow tool "pay" if args.amount > 400\n{CAP}')
    code, out = run("analyze", q, "--format", "json")
    assert not [f for f in json.loads(out)["findings"] if f["kind"] == "never_allowed"], out


# --- generated pairs under the same spend cap: every difference found, every call reproduced ----


def _cap_pair_check(p: dict[str, Any], q: dict[str, Any], cap: dict[str, Any]) -> None:
    from dsl.analysis.diff import diff_policies
    from dsl.analysis.witness import Engines
    from dsl.analysis.witness import decide as decide_fresh

    from .test_generated_pairs import CALLS

    def with_cap(d: dict[str, Any]) -> dict[str, Any]:
        d = json.loads(json.dumps(d))
        d.setdefault("all_tools", {}).setdefault("limits", []).append(cap)
        return dsl.load_policy(d).to_dict()

    old, new = with_cap(p), with_cap(q)
    engines = {id(old): Engines(old), id(new): Engines(new)}  # every call decided on fresh counters

    def fresh(d: dict[str, Any], call: dict[str, Any]) -> tuple[str, str]:
        r = decide_fresh(engines[id(d)], call)
        return r["effect"], r["code"]

    r = diff_policies(old, new)
    assert not r.unknown, r.unknown  # the generated fragment is exact: the cap leaves nothing undecided
    for ch in r.changes:
        assert fresh(old, ch["call"]) == (ch["old"]["effect"], ch["old"]["code"]), ch
        assert fresh(new, ch["call"]) == (ch["new"]["effect"], ch["new"]["code"]), ch
    found = {ch["tool"] for ch in r.changes}
    other = any(ch.get("other_tool") for ch in r.changes)
    for c in CALLS:  # the same cap on both sides: a call decided differently is a change of the rules
        if fresh(old, c) != fresh(new, c):
            assert c["tool"] in found or (c["tool"] == "zz" and other), (c, r.to_dict())


@pytest.mark.slow
def test_generated_pairs_under_the_same_spend_cap() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from .test_generated_pairs import conds, mutate, policies

    caps = st.builds(
        lambda mx, cond: {"max": mx, "window": 60, "per": "session", "of": "args.n", **({"if": cond} if cond else {})},
        st.sampled_from([0.5, 2.5, 3]), st.one_of(st.none(), conds()),
    )

    @settings(
        max_examples=30, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(policies(), st.data(), caps)
    def check(p: dict[str, Any], data: Any, cap: dict[str, Any]) -> None:
        _cap_pair_check(p, mutate(p, data), cap)

    check()
