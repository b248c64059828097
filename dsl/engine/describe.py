"""Conditions, names and durations as people read them, in reasons and traces.

A condition is shown in the rule language's own syntax, so what a denied agent or an operator
reads is what the author wrote. Whatever an agent chooses (a tool name) or a document holds (a
literal) is cut to a bounded length: a message never grows with its input.
"""

from __future__ import annotations

import math
from typing import Any

from ..validate import Data
from ..validate import literal as _lit

__all__ = ["describe"]

_OP_TEXT = {
    "eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=",
    "in": "in", "not_in": "not in", "contains": "contains",
    "starts_with": "starts_with", "ends_with": "ends_with", "regex": "matches",
}  # fmt: skip


def _short(name: Any) -> str:
    """A tool name for a message: agents choose unknown names, so keep them bounded."""
    s = name if isinstance(name, str) else repr(name)
    return s if len(s) <= 120 else s[:117] + "..."


def describe(c: Data) -> str:
    """A condition in the rule language's syntax, for reasons and traces."""
    if "all" in c:
        return " and ".join(_nested(x) for x in c["all"]) if c["all"] else "true"
    if "any" in c:
        return " or ".join(_nested(x) for x in c["any"]) if c["any"] else "false"
    for k in ("every", "some"):
        if k in c:
            return f"{k} {c[k]} in {c['in']} {{ {describe(c['where'])} }}"
    if "not" in c:
        inner = c["not"]
        if "path" in inner and describe(inner) == "approved":
            return "not approved"
        return f"not {describe(inner)}" if "not" in inner else f"not ({describe(inner)})"
    path, op, fn = c["path"], c["op"], c.get("fn")
    if path == "approved" and op == "eq" and fn is None and c.get("value") is True:
        return "approved"
    lhs = path
    for f in [fn] if isinstance(fn, str) else fn or ():
        lhs = f"{f}({lhs})"
    if op in ("exists", "missing"):
        return f"{lhs} {op}"
    return f"{lhs} {_OP_TEXT[op]} {_lit(c.get('value'))}"


def _nested(c: Data) -> str:
    parts = c.get("all", c.get("any"))
    if parts is not None and len(parts) > 1:
        return f"({describe(c)})"
    return describe(c)


def _secs(x: float) -> str:
    """Seconds for a message, rounded up to the millisecond so `retry after 0 s` never shows."""
    if not math.isfinite(x):
        return str(x)
    return f"{math.ceil(x * 1000) / 1000:.3f}".rstrip("0").rstrip(".")
