"""Conditional rules on every selector: `all tools`, classes, globs; and `limit … if`.

`deny all tools if C` and `deny all tools unless C` bind every call that reaches those steps,
named tool or not, and never make a tool callable; `allow all tools if C` grants, under
`default deny`, every tool that has no grant of its own; a limit with `if C` checks and counts
only the calls where C holds. Engine and reference agree on each.
"""

from __future__ import annotations

from typing import Any

import pytest

from dsl.compiler import build, compile_source
from dsl.decompile import decompile
from dsl.engine import Engine
from dsl.format import format_source
from dsl.policy import load_policy
from dsl.tester import VirtualClock
from dsl.validate import check_data
from tests.reference import RefInterpreter

ISSUE = """\
server "fs" {
    tool "read_file" read
    tool "write_file" write
    tool "delete_file" destructive
}

let admins = ["alice", "bob"]

default deny

allow read tools
allow tool "write_file" if identity in admins or identity == "dev"
deny all tools if identity == "guest"
deny destructive tools if session == "sandbox"
allow all tools if identity in admins
limit all tools to 3 per hour per identity if not (identity == "ops")
"""


class Both:
    """The engine on the compiled policy and the reference on the program, on one clock each."""

    def __init__(self, src: str) -> None:
        prog, diags = build((), {"p.plr": src})
        assert not [d for d in diags if d.severity == "error"], diags
        from dsl.compiler import compile_program

        self.clock, ref_clock = VirtualClock(), VirtualClock()
        self.engine = Engine(load_policy(compile_program(prog).to_json()), clock=self.clock)
        self.ref = RefInterpreter(prog, ref_clock)

    def __call__(self, tool: str, args: Any = None, **ctx: Any) -> tuple[str, str]:
        d = self.engine.decide(tool, args, **ctx)
        assert (d.effect, d.code) == self.ref.decide(tool, args, **ctx), (tool, args, ctx, d.reason)
        return d.effect, d.code


@pytest.mark.parametrize(
    ("tool", "ctx", "expected"),
    [
        ("read_file", {"identity": "carol"}, ("allow", "allowed")),
        ("read_file", {"identity": "guest"}, ("deny", "deny_if")),  # deny all tools if
        ("delete_file", {"identity": "alice"}, ("allow", "allowed")),  # granted: no rule of its own allows it
        ("delete_file", {"identity": "alice", "session": "sandbox"}, ("deny", "deny_if")),  # its own deny_if stays
        ("delete_file", {"identity": "carol"}, ("deny", "require")),
        ("write_file", {"identity": "alice"}, ("allow", "allowed")),
        ("write_file", {"identity": "dev"}, ("allow", "allowed")),
        ("write_file", {"identity": "carol"}, ("deny", "require")),
        ("not_declared", {"identity": "bob"}, ("allow", "allowed")),  # all tools: declared or not
        ("not_declared", {"identity": "carol"}, ("deny", "require")),
        ("not_declared", {"identity": "guest"}, ("deny", "deny_if")),
    ],
)
def test_the_issue_example(tool: str, ctx: dict[str, Any], expected: tuple[str, str]) -> None:
    assert Both(ISSUE)(tool, {}, **ctx) == expected


def test_a_conditional_limit_counts_only_the_calls_it_applies_to() -> None:
    both = Both(ISSUE)
    for _ in range(3):
        assert both("read_file", {}, identity="carol") == ("allow", "allowed")
    assert both("read_file", {}, identity="carol") == ("deny", "rate_limited")
    for _ in range(10):
        assert both("read_file", {}, identity="ops") == ("allow", "allowed")  # not counted, not limited
    both.clock.advance(3600)
    both.ref.clock.advance(3600)  # type: ignore[attr-defined]
    assert both("read_file", {}, identity="carol") == ("allow", "allowed")


def test_a_conditional_limit_on_a_tool() -> None:
    both = Both('default deny\nallow tool "x"\nlimit tool "x" to 1 per minute if args.size > 100\n')
    assert both("x", {"size": 500}) == ("allow", "allowed")
    assert both("x", {"size": 500}) == ("deny", "rate_limited")
    assert both("x", {"size": 5}) == ("allow", "allowed")
    assert both("x", {}) == ("allow", "allowed")


def test_deny_all_tools_binds_named_and_unnamed_tools_alike() -> None:
    both = Both('default allow\ndeny tool "x" if args.a == 1\ndeny all tools unless approved or identity == "ci"\n')
    assert both("x", {}) == ("approval_required", "require")
    assert both("x", {}, approved=True) == ("allow", "allowed")
    assert both("anything", {}) == ("approval_required", "require")
    assert both("anything", {}, identity="ci") == ("allow", "default")
    assert both("x", {"a": 1}, identity="ci") == ("deny", "deny_if")


def test_a_deny_never_makes_a_tool_callable() -> None:
    """Under `default deny`, `deny all tools unless C` is a requirement, not a grant."""
    both = Both('default deny\nallow tool "x"\ndeny all tools unless identity == "ops"\n')
    assert both("y", {}, identity="ops") == ("deny", "default")
    assert both("x", {}, identity="ops") == ("allow", "allowed")
    assert both("x", {}, identity="dev") == ("deny", "require")


def test_a_grant_can_ask_for_approval() -> None:
    both = Both('default deny\nallow tool "safe"\nallow all tools if approved\n')
    assert both("safe", {}) == ("allow", "allowed")
    assert both("unknown", {}) == ("approval_required", "require")
    assert both("unknown", {}, approved=True) == ("allow", "allowed")


def test_hidden_and_denied_win_over_every_rule_on_all_tools() -> None:
    both = Both('default deny\nhide tool "h"\ndeny tool "d"\nallow all tools if identity == "root"\n')
    assert both("h", {}, identity="root") == ("deny", "hidden")
    assert both("d", {}, identity="root") == ("deny", "denied")


def test_json_form() -> None:
    policy = compile_source(ISSUE, source=False)
    top = policy.to_dict()["all_tools"]
    assert top["deny_if"] == [{"path": "identity", "op": "eq", "value": "guest"}]
    assert top["allow_if"] == [{"path": "identity", "op": "in", "value": ["alice", "bob"]}]
    assert top["limits"] == [
        {"max": 3, "window": 3600, "per": "identity", "if": {"not": {"path": "identity", "op": "eq", "value": "ops"}}}
    ]
    delete = policy.to_dict()["tools"]["delete_file"]
    assert delete["require"] == top["allow_if"]  # callable only through the grant: the grant is its requirement
    assert load_policy(policy.to_json()) == policy
    check_data(policy.to_dict())
    assert compile_source(decompile(policy), source=False) == policy


def test_a_grant_is_ignored_by_the_engine_under_default_allow() -> None:
    doc = {"version": "1", "default": "allow", "all_tools": {"allow_if": [{"path": "identity", "op": "eq", "value": "x"}]}}
    assert Engine(load_policy(doc)).decide("t").effect == "allow"
    assert "grants nothing under default allow" in decompile(load_policy(doc))


def test_rate_limit_if_approved_leaves_conditional_limits_to_the_decision() -> None:
    engine = Engine(compile_source('default deny\ndeny tool "x" unless approved\nlimit tool "x" to 1 per hour if args.big == true\n'))
    assert engine.decide("x", {"big": True}, approved=True).effect == "allow"
    assert engine.decide("x", {"big": True}, approved=True).code == "rate_limited"
    assert engine.rate_limit_if_approved("x") is None


def test_explain_names_the_unnamed_tool() -> None:
    d = Engine(compile_source(ISSUE)).decide("mystery", {}, identity="guest", explain=True)
    assert d.reason == '`mystery`: denied because identity == "guest"'
    assert all("\x00" not in t.check for t in d.trace or ())


def warnings(src: str) -> list[str]:
    _, diags = build((), {"p.plr": src})
    return [d.message for d in diags if d.severity == "warning"]


def test_warnings_where_a_rule_on_all_tools_can_never_decide_anything() -> None:
    assert warnings('default allow\nallow all tools if identity == "a"\n') == [
        "`allow all tools if …` changes nothing under `default allow`: every tool is allowed unless a rule denies "
        "or restricts it"
    ]
    assert warnings('default deny\ndeny all tools if identity == "a"\n') == [
        "no tool is callable under `default deny` (no allow rule, `deny … unless` or `allow all tools if`), so this "
        "rule can never matter"
    ]
    assert "every tool is hidden (`hide all tools`), so this rule can never matter" in warnings(
        'default deny\nhide all tools\ndeny all tools unless approved\n'
    )
    (w,) = warnings('default deny\nallow tool "r" if identity == "dev"\nallow all tools if identity == "admin"\n')
    assert w.startswith("`allow all tools if …` does not apply to `r`: a tool's own `allow … if` rules decide")
    (w,) = warnings('default deny\nallow tool "x"\nlimit all tools to 5 per hour if identity != "ops"\n')
    assert w.startswith("`identity != ...` is false when `identity` is missing or of another type than the value, so "
                        "this limit does not apply to such calls")  # fmt: skip
    (w,) = warnings('default deny\nallow tool "x"\nlimit tool "x" to 5 per hour if args.n > true\n')
    assert "so this `limit … if` never applies: the calls it is meant to limit are not counted" in w


def test_errors_stay_for_all_tools_without_a_condition() -> None:
    _, diags = build((), {"p.plr": "default deny\ndeny all tools\n"})
    assert [d.message for d in diags if d.severity == "error"] == [
        "`deny all tools` without a condition is not a rule: write `default deny` to decide for every tool "
        "(`deny all tools if …` is one)"
    ]


def test_fmt_writes_a_limits_condition_after_its_scope() -> None:
    src = 'default deny\nlimit   all tools to 5 per hour if identity != "ops"\nlimit tool "x" to 1 per 90s per global if {\n  args.a == 1\n}\n'
    out = format_source(src)
    assert out == (
        'default deny\n\nlimit all tools to 5 per hour per session if identity != "ops"\n\n'
        'limit tool "x" to 1 per 90s per global if {\n    args.a == 1\n}\n'
    )
    assert format_source(out) == out
