"""Review fixes of `plr diff` / `plr analyze` / `plr query`: no report claims more than the
engine does. Each test runs the CLI (exit code and output) and checks every claim it makes on
the real engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import dsl
from dsl.cli import cli
from dsl.engine import Engine
from dsl.state.memory import MemoryLimitStore

pytest.importorskip("z3")


def run(*argv: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(argv))
    return r.exit_code, r.output


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def engine(path: str) -> Engine:
    return Engine(dsl.load_policy(path) if path.endswith(".json") else dsl.compile_files([path]))


def decide(path: str, call: dict[str, Any], e: Engine | None = None) -> tuple[str, str]:
    d = (e or engine(path)).decide(
        call["tool"], call["args"], identity=call.get("identity"), session=call.get("session"),
        server=call.get("server"), approved=call.get("approved", False),
    )
    return d.effect, d.code


def check_changes(old: str, new: str, doc: dict[str, Any]) -> None:
    """Every change a diff reports is what the two engines decide on its call."""
    for c in doc["changes"]:
        assert decide(old, c["call"]) == (c["old"]["effect"], c["old"]["code"])
        assert decide(new, c["call"]) == (c["new"]["effect"], c["new"]["code"])


# --- B1: a decision term the model leaves unassigned -------------------------------------


def test_diff_with_an_unconstrained_decision_does_not_crash(tmp_path: Path) -> None:
    old = write(tmp_path, "i_old.plr", 'default allow\ndeny all tools if tool starts_with "t"\n')
    new = write(tmp_path, "f_new.plr", "default deny\n")
    code, out = run("diff", old, new, "--format", "json")
    assert code == 1, out
    doc = json.loads(out)
    assert doc["changes"] and not doc["unknown"]
    check_changes(old, new, doc)
    kinds = {(c["old"]["code"], c["new"]["code"]) for c in doc["changes"]}
    assert ("default", "default") in kinds  # allow (default) -> deny (default)


# --- B2: a regex meeting a lone surrogate fails closed, and the analysis says so -----------


def test_diff_sees_the_fail_closed_regex(tmp_path: Path) -> None:
    old = write(tmp_path, "o.plr", 'default allow\ndeny tool "t" if args.x matches "^a"\n')
    new = write(tmp_path, "n.plr", 'default allow\ndeny tool "t" if args.x starts_with "a"\n')
    # the engine: a lone surrogate denies under the regex only
    assert decide(old, {"tool": "t", "args": {"x": "b\ud800"}}) == ("deny", "deny_if")
    assert decide(new, {"tool": "t", "args": {"x": "b\ud800"}}) == ("allow", "allowed")
    code, out = run("diff", old, new, "--format", "json")
    assert code == 1, out
    doc = json.loads(out)
    assert len(doc["changes"]) == 1 and not doc["unknown"]
    c = doc["changes"][0]
    assert (c["kind"], c["old"]["code"], c["new"]["code"]) == ("loosen", "deny_if", "allowed")
    assert any(0xD800 <= ord(ch) <= 0xDFFF for ch in c["call"]["args"]["x"])
    check_changes(old, new, doc)
    # the text form prints the surrogate as its JSON escape, which reads back as the same call
    code, text = run("diff", old, new)
    assert code == 1 and "equivalent" not in text
    line = next(x for x in text.splitlines() if "--args" in x)
    args = json.loads(line.split("--args '", 1)[1].split("'", 1)[0])
    assert args == c["call"]["args"] and "\\ud" in line


def test_diff_of_a_require_regex_against_starts_with(tmp_path: Path) -> None:
    old = write(tmp_path, "o.plr", 'default allow\ndeny tool "t" unless args.x matches "^a"\n')
    new = write(tmp_path, "n.plr", 'default allow\ndeny tool "t" unless args.x starts_with "a"\n')
    code, out = run("diff", old, new, "--format", "json")
    assert code == 1, out
    doc = json.loads(out)
    assert [(c["old"]["code"], c["new"]["code"]) for c in doc["changes"]] == [("require", "allowed")]
    check_changes(old, new, doc)


def test_analyze_does_not_call_a_raising_deny_if_never(tmp_path: Path) -> None:
    p = write(tmp_path, "a.plr", 'default allow\ndeny tool "t" if args.x matches "^a" and not (args.x matches "^a")\n')
    assert decide(p, {"tool": "t", "args": {"x": "\ud800"}}) == ("deny", "deny_if")
    code, out = run("analyze", p, "--format", "json")
    doc = json.loads(out)
    assert not [f for f in doc["findings"] if f["kind"] == "never"], out
    assert code == 0, out


def test_a_regex_after_a_false_part_is_not_reached(tmp_path: Path) -> None:
    """`and` stops at its first false part, as the engine's loop does: the regex raises only
    where `args.n == 1` holds, and the diff's call shows exactly that."""
    old = write(tmp_path, "o.plr", 'default allow\ndeny tool "t" if args.n == 1 and args.x matches "^a"\n')
    new = write(tmp_path, "n.plr", 'default allow\ndeny tool "t" if args.n == 1 and args.x starts_with "a"\n')
    assert decide(old, {"tool": "t", "args": {"n": 2, "x": "\ud800"}}) == ("allow", "allowed")
    code, out = run("diff", old, new, "--format", "json")
    assert code == 1, out
    doc = json.loads(out)
    assert len(doc["changes"]) == 1 and doc["changes"][0]["call"]["args"]["n"] == 1
    check_changes(old, new, doc)
    # a regex that is never given a string cannot raise: `never` stays a proof
    p = write(tmp_path, "a.plr", 'default allow\ndeny tool "t" if args.x == 1 and args.x matches "^a"\n')
    code, out = run("analyze", p, "--format", "json")
    assert code == 1 and [f["kind"] for f in json.loads(out)["findings"]] == ["never"], out


def test_the_reason_of_a_fail_closed_deny_says_what_happened(tmp_path: Path) -> None:
    p = write(tmp_path, "a.plr", 'default allow\ndeny tool "t" if args.x matches "^a"\n')
    for explain in (False, True):
        d = engine(p).decide("t", {"x": "b\ud800"}, explain=explain)
        assert (d.effect, d.code, d.rule) == ("deny", "deny_if", "a.plr:2")
        assert "denied because" not in d.reason and "could not be evaluated" in d.reason, d.reason
    ok = engine(p).decide("t", {"x": "abc"})
    assert ok.reason == '`t`: denied because args.x matches "^a"'  # a deny_if that held: unchanged
    q = write(tmp_path, "b.plr", 'default allow\ndeny tool "t" unless args.x matches "^a"\n')
    d = engine(q).decide("t", {"x": "a\ud800"})
    assert (d.effect, d.code) == ("deny", "require")
    assert "could not be evaluated" in d.reason and "treated as failing" in d.reason, d.reason
    code, out = run("eval", p, "--tool", "t", "--args", '{"x": "\\ud800"}')
    assert "could not be evaluated" in out and "denied because" not in out, out


# --- B3: plr query and the denies outside the decision term ---------------------------------


def test_query_deny_counts_a_rate_limit(tmp_path: Path) -> None:
    p = write(tmp_path, "q.plr", 'default deny\nallow tool "t"\nlimit tool "t" to 1 per minute\n')
    code, out = run("query", p, "--can", "deny", "--tool", "t", "--format", "json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["possible"] is True and doc["via"] == "limit" and doc["repeat"] == 2
    assert doc["decision"] == {"effect": "deny", "code": "rate_limited", "rule": "q.plr:3"}
    e = Engine(dsl.compile_files([p]), clock=lambda: 0.0, store=MemoryLimitStore())
    assert [decide(p, doc["call"], e) for _ in range(2)] == [("allow", "allowed"), ("deny", "rate_limited")]
    code, text = run("query", p, "--can", "deny", "--tool", "t")
    assert code == 0 and text.startswith("yes:") and "rate_limited" in text and "limit is reached" in text


def test_query_deny_counts_invalid_arguments(tmp_path: Path) -> None:
    p = write(tmp_path, "q.plr", 'default deny\nallow tool "t"\n')
    code, out = run("query", p, "--can", "deny", "--tool", "t", "--format", "json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["via"] == "invalid_args" and doc["decision"]["code"] == "invalid_args"
    assert decide(p, doc["call"]) == ("deny", "invalid_args")
    code, text = run("query", p, "--can", "deny", "--tool", "t")
    assert code == 0 and text.startswith("yes:") and "invalid_args" in text


def test_query_allow_under_a_spend_cap_answers_with_an_amount_that_fits(tmp_path: Path) -> None:
    policy = {
        "version": "1", "default": "deny",
        "tools": {"t": {"limits": [{"max": 5, "window": 60, "per": "session", "of": "args.cost"}]}},
    }
    p = write(tmp_path, "s.json", json.dumps(policy))
    assert decide(p, {"tool": "t", "args": {}}) == ("deny", "invalid_args")  # no amount: refused
    code, out = run("query", p, "--can", "allow", "--tool", "t", "--format", "json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["possible"] is True and doc["decision"]["effect"] == "allow"
    assert 0 <= doc["call"]["args"]["cost"] <= 5
    assert decide(p, doc["call"]) == ("allow", "allowed")  # on fresh counters


# --- B4: numbers are doubles; the other tool has a readable name ---------------------------


def test_adjacent_doubles_are_equivalent(tmp_path: Path) -> None:
    old = write(tmp_path, "o.plr", 'default allow\ndeny tool "t" if args.x > 0.1\n')
    new = write(tmp_path, "n.plr", 'default allow\ndeny tool "t" if args.x >= 0.10000000000000002\n')
    for x in (0.1, 0.10000000000000002, 0.09999999999999999, 1.0):
        assert decide(old, {"tool": "t", "args": {"x": x}}) == decide(new, {"tool": "t", "args": {"x": x}})
    code, out = run("diff", old, new)
    assert code == 0 and out.startswith("equivalent"), out
    # a real difference one double away is still found, with a call that shows it
    other = write(tmp_path, "m.plr", 'default allow\ndeny tool "t" if args.x > 0.10000000000000002\n')
    code, out = run("diff", old, other, "--format", "json")
    doc = json.loads(out)
    assert code == 1 and len(doc["changes"]) == 1 and not doc["unknown"], out
    assert doc["changes"][0]["call"]["args"]["x"] == 0.10000000000000002
    check_changes(old, other, doc)


def test_any_other_tool_is_shown_with_a_readable_name(tmp_path: Path) -> None:
    old = write(tmp_path, "o.plr", 'default allow\nallow tool "other-tool"\n')
    new = write(tmp_path, "n.plr", "default deny\n")
    code, out = run("diff", old, new, "--format", "json")
    assert code == 1, out
    doc = json.loads(out)
    others = [c for c in doc["changes"] if c.get("other_tool")]
    assert [c["call"]["tool"] for c in others] == ["other-tool-2"]  # `other-tool` is a tool of OLD
    check_changes(old, new, doc)
    code, text = run("diff", old, new)
    assert 'any tool neither policy names (e.g. `other-tool-2`)' in text and '--tool ""' not in text, text
