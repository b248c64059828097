"""`plr check` warnings about what a rule really does: comparisons that can never hold because of
their literal's type, and unconditional allows beside a tool's `allow … if` rules."""

from __future__ import annotations

import pytest

from dsl.compiler import build
from dsl.errors import Diagnostic

from .conftest import EXAMPLES, STDLIB

CATALOGUE = 'server "s" {\n    tool "t" write\n    tool "r" read\n}\ndefault deny\nallow tool "t"\n'


def warnings_of(src: str) -> list[Diagnostic]:
    _, diags = build((), {"p.plr": src})
    assert not [d for d in diags if d.severity == "error"], diags
    return [d for d in diags if d.severity == "warning"]


def never_holds(src: str) -> list[Diagnostic]:
    return [d for d in warnings_of(CATALOGUE + src) if "can never hold" in d.message]


# --- comparisons that can never hold -------------------------------------------------------


@pytest.mark.parametrize(
    "cond, why",
    [
        ('count(args.x) > "5"', 'count(...) is a number, and a number is never greater than a string'),
        ('count(args.x) == "5"', "count(...) is a number, and a number never equals a string"),
        ('len(args.s) == "3"', "len(...) is a number, and a number never equals a string"),
        ("len(args.s) <= true", "only numbers and strings are ordered, and the value is a boolean"),
        ("len(args.s) != null", "len(...) is a number"),
        ('count(args.x) in ["1", "2"]', "count(...) is a number, and no item of the list is"),
        ('count(args.x) not in ["1"]', "count(...) is a number, and no item of the list is"),
        ("args.n < true", "only numbers and strings are ordered, and the value is a boolean"),
        ("args.n >= false", "only numbers and strings are ordered"),
        ("args.n > null", "only numbers and strings are ordered, and the value is null"),
        ("args.n <= [1, 2]", "only numbers and strings are ordered, and the value is a list"),
        ("args.n != null", "null is a type of its own"),
        ("args.n not in [null]", "every item is null"),
        ("args.n in []", "the list is empty"),
        ("args.n not in []", "the list is empty"),
        ('approved == "yes"', "`approved` is a boolean, and a boolean never equals a string"),
        ("identity > 3", "`identity` is a string, and a string is never greater than a number"),
        ("tool == 1", "`tool` is a string"),
    ],
)
def test_a_comparison_that_can_never_hold_warns(cond: str, why: str) -> None:
    ws = never_holds(f'deny tool "t" if {cond}\n')
    assert len(ws) == 1, ws
    assert why in ws[0].message
    assert ws[0].message.startswith(f"`{cond}` can never hold: ")


def test_the_warning_is_located_with_a_caret() -> None:
    (w,) = never_holds('deny tool "t" if count(args.task_id) > "5"\n    reason "at most five"\n')
    assert (w.file, w.line, w.col) == ("p.plr", 7, 18)
    text = w.format()
    assert text.startswith("p.plr:7:18: warning: `count(args.task_id) > \"5\"` can never hold")
    assert '    7 | deny tool "t" if count(args.task_id) > "5"' in text
    assert "      |                  " + "^" * len('count(args.task_id) > "5"') in text


def test_in_a_deny_if_it_says_the_rule_never_fires_and_fails_open() -> None:
    (w,) = never_holds('deny tool "t" if count(args.x) > "5"\n')
    assert "this `deny … if` never fires" in w.message and "fail-open" in w.message
    assert "write `count(args.x) > 5`" in w.message  # a quoted number: the fix is the number
    (w,) = never_holds('deny tool "t" if {\n    args.a exists\n    len(args.s) == "3"\n}\n')
    assert "this `deny … if` never fires" in w.message  # a block is an `and`: one false part is enough
    # beside another way to fire, only that part is dead
    (w,) = never_holds('deny tool "t" if len(args.s) == "3" or args.force == true\n')
    assert "this part of the `deny … if` never fires" in w.message and "fail-open" in w.message


def test_under_a_not_or_in_a_requirement_the_message_says_what_it_does() -> None:
    (w,) = never_holds('deny tool "t" if not (args.n < true)\n')
    assert "the `not` around it always holds" in w.message and "fail" not in w.message
    (w,) = never_holds('allow tool "r" if args.n != null\n')
    assert "never holds: the rule denies every call it selects" in w.message
    assert "write `not (args.n == null)`" in w.message
    (w,) = never_holds('deny tool "t" unless not (identity in [1, 2])\n')
    assert "fail open" in w.message


@pytest.mark.parametrize(
    "cond",
    [
        "count(args.x) > 5",
        "len(args.s) in [1, 2]",
        'count(args.x) not in [1, "2"]',  # a number item is enough
        'args.n > "5"',  # strings are ordered; args.n may be a string
        "args.n < 3.5",
        'args.n != "root"',
        "args.n != 1",
        "args.n == null",
        "args.n in [null]",
        'args.n not in [null, "a"]',
        "approved == true",
        "not approved",
        'identity not in ["ops"]',
        'tool in ["t"]',
    ],
)
def test_a_comparison_that_can_hold_does_not_warn(cond: str) -> None:
    assert never_holds(f'allow tool "t" if {cond}\n') == []
    assert never_holds(f'deny tool "t" if {cond}\n') == []


def test_negation_in_deny_if_warns_about_missing_and_mistyped_values() -> None:
    ws = [d.message for d in warnings_of(CATALOGUE + 'deny tool "t" if args.user != "root"\n')]
    assert any("is false when `args.user` is missing or of another type than the value" in w for w in ws), ws
    # a comparison that can never hold gets that warning instead, not both
    ws = [d.message for d in warnings_of(CATALOGUE + 'deny tool "t" if args.user != null\n')]
    assert len(ws) == 1 and "can never hold" in ws[0]


def test_examples_and_stdlib_have_no_such_comparison() -> None:
    for path in [*sorted(EXAMPLES.rglob("*.plr")), *sorted(STDLIB.rglob("*.plr"))]:
        _, diags = build([str(path)])
        assert not [d for d in diags if "can never hold" in d.message], path


# --- `allow` beside `allow … if` ------------------------------------------------------------


def test_allow_if_beside_an_unconditional_allow_no_longer_claims_it_never_matters() -> None:
    src = 'import "stdlib/server-everything"\nimport "stdlib/read_only"\nallow tool "get-env" if identity == "ops"\n'
    assert [d.message for d in warnings_of(src)] == []  # narrowing a rule pack is what allow-if is for


def test_a_bare_allow_of_a_tool_with_allow_if_says_it_does_not_lift_the_condition() -> None:
    ws = warnings_of(CATALOGUE + 'allow tool "t" if identity == "ops"\n')
    (w,) = [d for d in ws if "unconditional `allow`" in d.message]
    assert (w.line, w.col) == (6, 1)
    assert "does not make `t` always callable" in w.message and "p.plr:7" in w.message
    assert not any("never matters" in d.message for d in ws)
    # a class selector that also takes in the tool is not flagged
    ws = warnings_of('server "s" { tool "a" read  tool "b" read }\ndefault deny\nallow read tools\nallow tool "a" if approved\n')
    assert ws == []
