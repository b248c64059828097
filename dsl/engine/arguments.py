"""Arguments the engine refuses to decide on, because the server would not see what was decided.

Python reads JSON integers exactly and accepts NaN and Infinity; a JavaScript server rounds any
integer beyond ±(2^53 − 1) and cannot hold NaN at all. A policy that compared
``args.id == 9007199254740992`` would let ``9007199254740993`` through, and the server would act
on ``...992``. Such a call is denied (``invalid_args``) instead of decided on a value that the
server will read differently.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MAX_SAFE_INTEGER", "argument_problem"]

MAX_SAFE_INTEGER = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER: the last integer a double holds exactly


def argument_problem(value: Any) -> str | None:
    """Why ``value`` (a call's arguments) cannot be decided on safely, or None when it can.

    Arguments are None (no arguments) or a JSON object: anything else (a string, a list, a
    tuple, a number) would read as missing at every path, so a `deny … if` would never fire.
    Within, every value is JSON (objects with string keys, lists, strings, numbers, booleans,
    null): a tuple, a set or bytes would read as missing too, or as no value JSON has.

    On the path of every allowed call with arguments, so written for speed: class identity
    checks (``isinstance`` only for what is not exactly a JSON type), and a list of nested
    containers only when there is one."""
    if value.__class__ is not dict:
        if value is None:
            return None
        if not isinstance(value, dict):
            return (
                f"the arguments are {_kind(value)}, not a JSON object: a tool call's arguments are an object "
                "of named values (or none)"
            )
    pending: list[Any] | None = None
    node = value
    while True:
        if node.__class__ is dict or isinstance(node, dict):
            for k in node:
                if k.__class__ is not str and not isinstance(k, str):
                    return f"the arguments hold an object key that is not a string ({_kind(k)}), which JSON cannot carry"
            items = node.values()
        else:
            items = node
        for v in items:
            cls = v.__class__
            if cls is str or cls is bool or v is None:
                continue
            if cls is dict or cls is list:
                if pending is None:
                    pending = []
                pending.append(v)
            elif isinstance(v, int):
                if not -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                    return (
                        f"the arguments hold the integer {_short_int(v)}, beyond ±(2^53 - 1): a server may round "
                        "it to another number than the one decided on; send it as a string"
                    )
            elif isinstance(v, float):
                if not math.isfinite(v):
                    return "the arguments hold NaN or Infinity, which JSON cannot carry; send a number, a string or null"
            elif isinstance(v, (dict, list)):  # a Python caller's subclass: read as its base
                if pending is None:
                    pending = []
                pending.append(v)
            elif not isinstance(v, str):
                return (
                    f"the arguments hold {_kind(v)}, which is not a JSON value: send objects, lists, strings, "
                    "numbers, booleans and null only"
                )
        if not pending:
            return None
        node = pending.pop()


def _kind(v: Any) -> str:
    """A Python value's type for a message: JSON's word where there is one."""
    if isinstance(v, str):
        return "a string"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, list):
        return "a list"
    return f"a Python {type(v).__name__} value"


def _short_int(v: int) -> str:
    digits = str(abs(v)) if v.bit_length() < 10_000 else None
    if digits is None:
        return "(thousands of digits)"
    sign = "-" if v < 0 else ""
    return sign + (digits if len(digits) <= 24 else f"{digits[:10]}...{digits[-6:]} ({len(digits)} digits)")
