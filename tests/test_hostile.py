"""Hostile input to the engine: tool names that only look like listed ones never match them,
and no argument can make a decision raise or run unbounded."""

from __future__ import annotations

import math

import pytest

from dsl.compiler import compile_source
from dsl.engine import Engine

POLICY = compile_source(
    'default deny\nallow tool "get-task"\nhide tool "purge"\n'
    'deny tool "cancel-task" unless approved\n'
    'deny tool "spawn" if args.prompt matches "(?i)rm\\\\s+-rf"\nallow tool "spawn"\n'
)

LOOKALIKES = [
    "Get-Task", "GET-TASK", "get-task ", " get-task", "get-task\n", "get-task\x00", "get\u2010task",  # hyphen
    "get\u2011task", "ɡet-task", "get-tаsk",  # Cyrillic а
    "get-task\u200b", "\ufeffget-task", "get_task", "get-tasks", "get-task/", "*", "",
    "purge ", "Purge", "purge\x00", "purge\u200d",
]


@pytest.mark.parametrize("name", LOOKALIKES, ids=repr)
def test_a_name_that_is_not_exactly_listed_never_matches(name: str):
    d = Engine(POLICY).decide(name, {})
    assert d.effect == "deny" and d.code == "default", (name, d)


def test_hidden_names_are_exact_too():
    e = Engine(POLICY)
    assert e.decide("purge").code == "hidden"
    assert e.visible(["purge", "purge ", "Purge", "get-task"]) == ["purge ", "Purge", "get-task"]


def deep(n: int) -> object:
    v: object = "x"
    for _ in range(n):
        v = [v]
    return v


HOSTILE_ARGS = [
    {"prompt": "a" * 10_000_000},
    {"prompt": ("rm " + " " * 100_000 + "-rf")},
    {"prompt": deep(10_000)},
    {"prompt": {"a": deep(10_000)}},
    {"prompt": math.nan},
    {"prompt": math.inf},
    {"prompt": 10**5000},
    {"prompt": b"rm -rf"},
    {"prompt": object()},
    {"prompt": ["rm -rf"]},
    {1: "x", None: "y", ("t",): "z"},
    {"prompt": "\x00rm -rf\x00"},
    {"prompt": "\ud800"},  # lone surrogate: RE2 cannot encode it -> fail closed
    [1, 2, 3],
    "not a dict",
    None,
]


@pytest.mark.parametrize("args", HOSTILE_ARGS, ids=range(len(HOSTILE_ARGS)))
def test_hostile_args_give_a_defined_decision(args: object):
    d = Engine(POLICY).decide("spawn", args)  # type: ignore[arg-type]
    assert d.effect in ("allow", "deny")
    assert d.code in ("allowed", "deny_if", "error", "invalid_args")
    # invalid_args exactly for what a server could read as another value, and for what is not
    # JSON at all (arguments that are not an object, bytes, a Python object, a key that is not a string)
    assert (d.code == "invalid_args") == _invalid(args)


def _invalid(args: object) -> bool:
    if args is None:
        return False
    if not isinstance(args, dict):
        return True
    stack: list[object] = [args]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                return True
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                return True
        elif isinstance(v, int) and not isinstance(v, bool):
            if abs(v) > 2**53 - 1:
                return True
        elif not (v is None or isinstance(v, (str, bool))):
            return True
    return False


def test_regex_on_hostile_strings_fails_closed_or_matches():
    e = Engine(POLICY)
    assert e.decide("spawn", {"prompt": "please RM   -RF /"}).code == "deny_if"
    assert e.decide("spawn", {"prompt": "\x00rm -rf\x00"}).code == "deny_if"
    assert e.decide("spawn", {"prompt": "\ud800 rm -rf"}).effect == "deny"  # could not be checked: denied


def test_approved_must_be_exactly_true():
    e = Engine(POLICY)
    for v in (1, "true", "yes", [True], {"approved": True}):
        assert e.decide("cancel-task", {}, approved=v).effect == "approval_required", v  # type: ignore[arg-type]
    assert e.decide("cancel-task", {}, approved=True).effect == "allow"
