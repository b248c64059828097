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

    On the path of every allowed call with arguments, so written for speed: class identity
    checks, and a list of nested containers only when there is one."""
    pending: list[Any] | None = None
    cls = value.__class__
    items = value.values() if cls is dict else value if cls is list else (value,)
    while True:
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
            # anything else is not JSON (a Python caller's own container type): the conditions
            # judge it as they judge any value, failing closed if it misbehaves
        if not pending:
            return None
        nested = pending.pop()
        items = nested.values() if nested.__class__ is dict else nested


def _short_int(v: int) -> str:
    digits = str(abs(v)) if v.bit_length() < 10_000 else None
    if digits is None:
        return "(thousands of digits)"
    sign = "-" if v < 0 else ""
    return sign + (digits if len(digits) <= 24 else f"{digits[:10]}...{digits[-6:]} ({len(digits)} digits)")
