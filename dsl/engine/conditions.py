"""A condition as a closure over the call's context: paths, ``fn``, ``all``/``any``/``not``.

``compile_condition`` runs once per condition when a policy is prepared: the path is split,
the operator chosen (``operators``) and the common leaf fused into one closure, so deciding
walks no dicts of the policy and dispatches on no strings. The context is a plain tuple
(``Ctx``) and a path that leads nowhere reads as ``MISSING``, never as JSON null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..validate import Data, fn_chain
from ..validate import literal as _lit
from ..vocab import parse_path as _parse_path
from .functions import string_chain
from .operators import _test

__all__ = ["MISSING", "Ctx", "Pred", "parse_path", "compile_condition"]


class _Missing:
    """The value of a path that leads nowhere (distinct from JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

# The evaluation context: (args, identity, session, server, tool, approved); absent -> MISSING.
Ctx = tuple[Any, Any, Any, Any, Any, bool]
Pred = Callable[[Ctx], bool]
_ROOT_INDEX = {"args": 0, "identity": 1, "session": 2, "server": 3, "tool": 4, "approved": 5}
_EMPTY_ARGS: dict[str, Any] = {}


def parse_path(path: str) -> tuple[int, tuple[str | int, ...]]:
    """``args.a[2].b`` -> (root index, ("a", 2, "b")); ValueError on anything else."""
    root, steps = _parse_path(path)
    return _ROOT_INDEX[root], steps


def _getter(path: str) -> Callable[[Ctx], Any]:
    """A closure resolving ``path`` in a context: dicts by str key, lists by index, else MISSING."""
    ri, steps = parse_path(path)
    if not steps:
        return lambda c: c[ri]
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]

        def get1(c: Ctx) -> Any:
            v = c[ri]
            return v.get(key, MISSING) if isinstance(v, dict) else MISSING

        return get1
    plan: tuple[tuple[Any, bool], ...] = tuple((s, isinstance(s, int)) for s in steps)

    def get(c: Ctx) -> Any:
        v = c[ri]
        for s, is_index in plan:
            if is_index:
                if isinstance(v, list) and s < len(v):
                    v = v[s]
                else:
                    return MISSING
            elif isinstance(v, dict):
                v = v.get(s, MISSING)
                if v is MISSING:
                    return MISSING
            else:
                return MISSING
        return v

    return get


def _fused_leaf(c: Data) -> Pred | None:
    """The common leaf ``root`` or ``root.key`` without ``fn``, as one closure that looks the
    value up itself (one Python call fewer per leaf than getter + test); None otherwise."""
    ri, steps = parse_path(c["path"])
    if c.get("fn") is not None or len(steps) > 1 or (steps and not isinstance(steps[0], str)):
        return None
    op = c["op"]
    # `exists`/`missing`: an explicit null counts as absent (as the peer, Intercept, has it, and as
    # an author means "the argument must be present"); `== null` still tests for a written null
    if not steps:
        if op == "exists":
            return lambda ctx: ctx[ri] is not MISSING and ctx[ri] is not None
        if op == "missing":
            return lambda ctx: ctx[ri] is MISSING or ctx[ri] is None
        test0 = _test(op, c.get("value"))

        def leaf0(ctx: Ctx) -> bool:
            v = ctx[ri]
            return v is not MISSING and test0(v)

        return leaf0
    key = steps[0]
    if op == "exists":
        return lambda ctx: isinstance(ctx[ri], dict) and ctx[ri].get(key) is not None
    if op == "missing":
        return lambda ctx: not (isinstance(ctx[ri], dict) and ctx[ri].get(key) is not None)
    test1 = _test(op, c.get("value"))

    def leaf1(ctx: Ctx) -> bool:
        v = ctx[ri]
        if isinstance(v, dict):
            v = v.get(key, MISSING)
            return v is not MISSING and test1(v)
        return False

    return leaf1


def _string_fn_leaf(get: Callable[[Ctx], Any], chain: tuple[str, ...], test: Callable[[Any], bool]) -> Pred:
    """A leaf whose value goes through value functions first (then `len`, if last): false
    whenever the value is not a string, whatever the operator."""
    with_len = chain[-1] == "len"
    apply = string_chain(chain[:-1] if with_len else chain)
    if with_len:

        def len_of(ctx: Ctx) -> bool:
            v = get(ctx)
            return isinstance(v, str) and test(len(apply(v)))

        return len_of

    def fn_leaf(ctx: Ctx) -> bool:
        v = get(ctx)
        return isinstance(v, str) and test(apply(v))

    return fn_leaf


def compile_condition(c: Data) -> Pred:
    """A condition (canonical dump form) as a closure over the context. It may raise on
    pathological input; callers decide what an exception means (fail closed)."""
    if "all" in c:
        parts = tuple(compile_condition(x) for x in c["all"])
        if len(parts) == 1:
            return parts[0]

        def all_of(ctx: Ctx) -> bool:
            for p in parts:
                if not p(ctx):
                    return False
            return True

        return all_of
    if "any" in c:
        parts = tuple(compile_condition(x) for x in c["any"])
        if len(parts) == 1:
            return parts[0]

        def any_of(ctx: Ctx) -> bool:
            for p in parts:
                if p(ctx):
                    return True
            return False

        return any_of
    if "not" in c:
        inner = compile_condition(c["not"])
        return lambda ctx: not inner(ctx)
    if "path" in c:
        fused = _fused_leaf(c)
        if fused is not None:
            return fused
        get = _getter(c["path"])
        op, fn = c["op"], c.get("fn")
        if op in ("exists", "missing"):
            want = op == "exists"

            def presence(ctx: Ctx) -> bool:
                v = get(ctx)
                return (v is not MISSING and v is not None) is want

            return presence
        test = _test(op, c.get("value"))
        chain = fn_chain(fn)
        if chain and chain[0] not in ("count", "len"):
            return _string_fn_leaf(get, chain, test)
        if fn == "count":

            def count_leaf(ctx: Ctx) -> bool:
                v = get(ctx)
                return test(len(v) if isinstance(v, list) else 0 if v is MISSING else 1)

            return count_leaf
        if fn == "len":

            def len_leaf(ctx: Ctx) -> bool:
                v = get(ctx)
                return isinstance(v, (str, list, dict)) and test(len(v))

            return len_leaf

        def leaf(ctx: Ctx) -> bool:
            v = get(ctx)
            return v is not MISSING and test(v)

        return leaf
    raise ValueError(f"not a condition: {_lit(c)}")
