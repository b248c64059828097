"""What each comparison means: JSON-strict equality, ordering, membership, strings, RE2.

``_test(op, literal)`` picks, once per condition when a policy is prepared, a small closure for
its operator and literal; deciding then runs only that closure. The semantics are
``spec/language.md`` ("Conditions"): values of different JSON types never compare (``"1"`` is
not ``1``, ``true`` is not ``1``), so no comparison holds by a Python coercion.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..regex import re2_search_test

__all__ = ["strict_eq"]

_NUM = (int, float)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(v: Any) -> int:
    """0 null, 1 bool, 2 number, 3 string, 4 list, 5 object, 6 anything else (never equal)."""
    if v is None:
        return 0
    if isinstance(v, bool):
        return 1
    if isinstance(v, (int, float)):
        return 2
    if isinstance(v, str):
        return 3
    if isinstance(v, list):
        return 4
    if isinstance(v, dict):
        return 5
    return 6


def strict_eq(a: Any, b: Any) -> bool:
    """Equality without JSON-unlike coercions: ``True`` is not ``1``, ``"1"`` is not ``1``, NaN
    equals nothing.

    Recursion is bounded by the shallower operand, and policy literals are at most 32 deep.
    """
    k = _kind(a)
    if k != _kind(b) or k == 6:
        return False
    if k == 4:
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b, strict=True))
    if k == 5:
        return len(a) == len(b) and all(k2 in b and strict_eq(v, b[k2]) for k2, v in a.items())
    return bool(a == b)


def _equality(op: str, lit: Any) -> Callable[[Any], bool]:
    """``eq``/``neq``: one closure per kind of literal, so the common scalars skip ``strict_eq``."""
    k = _kind(lit)
    eq: Callable[[Any], bool]
    if k == 0:
        eq = lambda v: v is None  # noqa: E731
    elif k == 1:
        eq = lambda v: isinstance(v, bool) and v == lit  # noqa: E731
    elif k == 2:
        eq = lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v == lit  # noqa: E731
    elif k == 3:
        eq = lambda v: isinstance(v, str) and v == lit  # noqa: E731
    else:
        eq = lambda v: strict_eq(v, lit)  # noqa: E731
    if op == "eq":
        return eq
    # `neq` holds only between values of the same JSON type that differ (spec: comparing
    # values of different types is false): `"1" != 1`, `true != 1` and `x != null` are false.
    if k == 0:
        return lambda v: False  # null is its own type, and null equals null
    if k == 1:
        return lambda v: v.__class__ is bool and v is not lit
    if k == 2:
        return lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v != lit
    if k == 3:
        return lambda v: isinstance(v, str) and v != lit
    return lambda v: _kind(v) == k and not strict_eq(v, lit)


def _order(op: str, lit: Any) -> Callable[[Any], bool]:
    """``lt``/``lte``/``gt``/``gte``: numbers with numbers, strings with strings, else false."""
    import operator

    cmp = getattr(operator, {"lte": "le", "gte": "ge"}.get(op, op))
    if _is_num(lit):
        if op == "gt":
            return lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v > lit
        if op == "gte":
            return lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v >= lit
        if op == "lt":
            return lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v < lit
        return lambda v: isinstance(v, _NUM) and v.__class__ is not bool and v <= lit
    if isinstance(lit, str):
        return lambda v: isinstance(v, str) and cmp(v, lit)
    return lambda v: False


def _membership(op: str, lit: Any) -> Callable[[Any], bool]:
    """``in``/``not_in``: constant time per call however long the list (a hash set per JSON kind)."""
    items = list(lit) if isinstance(lit, list) else []
    # Hash lookups per kind keep `in` O(1) and strict (a set would find True in {1}).
    strs = frozenset(x for x in items if isinstance(x, str))
    nums = frozenset(x for x in items if _is_num(x) and not (isinstance(x, float) and math.isnan(x)))
    bools = frozenset(x for x in items if isinstance(x, bool))
    has_null = any(x is None for x in items)
    nested = tuple(x for x in items if isinstance(x, (list, dict)))

    def member(v: Any) -> bool:
        if isinstance(v, str):
            return v in strs
        if isinstance(v, bool):
            return v in bools
        if isinstance(v, (int, float)):
            return v in nums
        if v is None:
            return has_null
        if isinstance(v, (list, dict)):
            return any(strict_eq(v, x) for x in nested)
        return False

    if op == "in":
        return member
    # `not_in` holds only when the value has the type of at least one item and equals none.
    has_str, has_num = any(isinstance(x, str) for x in items), any(_is_num(x) for x in items)
    has_bool = any(isinstance(x, bool) for x in items)
    has_list, has_dict = any(isinstance(x, list) for x in items), any(isinstance(x, dict) for x in items)

    def not_member(v: Any) -> bool:
        if isinstance(v, str):
            return has_str and v not in strs
        if isinstance(v, bool):
            return has_bool and v not in bools
        if isinstance(v, (int, float)):
            return has_num and v not in nums
        if isinstance(v, list):
            return has_list and not any(strict_eq(v, x) for x in nested)
        if isinstance(v, dict):
            return has_dict and not any(strict_eq(v, x) for x in nested)
        return False  # null (`null not in [...]` never holds) or not a JSON value

    return not_member


def _test(op: str, lit: Any) -> Callable[[Any], bool]:
    """The comparison for ``op`` against the literal, chosen once; the value is never MISSING."""
    if op == "eq" or op == "neq":
        return _equality(op, lit)
    if op in ("lt", "lte", "gt", "gte"):
        return _order(op, lit)
    if op == "in" or op == "not_in":
        return _membership(op, lit)
    if op == "contains":

        def contains(v: Any) -> bool:
            if isinstance(v, str):
                return isinstance(lit, str) and lit in v
            if isinstance(v, list):
                return any(strict_eq(x, lit) for x in v)
            return False

        return contains
    if op == "starts_with":
        return lambda v: isinstance(v, str) and isinstance(lit, str) and v.startswith(lit)
    if op == "ends_with":
        return lambda v: isinstance(v, str) and isinstance(lit, str) and v.endswith(lit)
    if op == "regex":
        found = re2_search_test(lit)  # once, at prepare time
        # A str RE2 cannot encode (lone surrogate) raises: the caller fails closed.
        return lambda v: isinstance(v, str) and found(v)
    raise ValueError(f"unknown op `{op}`")
