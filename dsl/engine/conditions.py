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
# Inside `every`/`some`, the item each binds follows, outermost first: (..., approved, item1, item2).
Ctx = tuple[Any, ...]
Scope = tuple[str, ...]  # the names bound by enclosing quantifiers, outermost first
Pred = Callable[[Ctx], bool]
_ROOT_INDEX = {"args": 0, "identity": 1, "session": 2, "server": 3, "tool": 4, "approved": 5}
_EMPTY_ARGS: dict[str, Any] = {}


def parse_path(path: str, scope: Scope = ()) -> tuple[int, tuple[str | int, ...]]:
    """``args.a[2].b`` -> (index in the context, ("a", 2, "b")); ValueError on anything else."""
    root, steps = _parse_path(path, scope)
    if root in scope:  # the innermost binding of a name (the loaders refuse shadowing anyway)
        return len(_ROOT_INDEX) + len(scope) - 1 - scope[::-1].index(root), steps
    return _ROOT_INDEX[root], steps


def _getter(path: str, scope: Scope = ()) -> Callable[[Ctx], Any]:
    """A closure resolving ``path`` in a context: dicts by str key, lists by index, else MISSING."""
    ri, steps = parse_path(path, scope)
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


def _fused_leaf(c: Data, scope: Scope) -> Pred | None:
    """The common leaf ``root`` or ``root.key`` without ``fn``, as one closure that looks the
    value up itself (one Python call fewer per leaf than getter + test); None otherwise."""
    ri, steps = parse_path(c["path"], scope)
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


ItemPred = Callable[[Any], bool]


def _value_test(c: Data) -> ItemPred:
    """A leaf's test of the value at its path (MISSING when it leads nowhere): `exists`/`missing`,
    `fn` (value functions, `count`, `len`), then the operator."""
    op, fn = c["op"], c.get("fn")
    if op in ("exists", "missing"):
        want = op == "exists"
        return lambda v: (v is not MISSING and v is not None) is want
    lit = c.get("value")
    test = _test(op, lit)
    chain = fn_chain(fn)
    if chain and chain[0] not in ("count", "len"):
        with_len = chain[-1] == "len"
        apply = string_chain(chain[:-1] if with_len else chain)
        if with_len:
            return lambda v: isinstance(v, str) and test(len(apply(v)))
        if op in ("starts_with", "ends_with") and isinstance(lit, str):  # the common path test, one call fewer
            method = str.startswith if op == "starts_with" else str.endswith
            return lambda v: isinstance(v, str) and method(apply(v), lit)
        return lambda v: isinstance(v, str) and test(apply(v))
    if fn == "count":
        return lambda v: test(len(v) if isinstance(v, list) else 0 if v is MISSING or v is None else 1)
    if fn == "len":
        return lambda v: isinstance(v, (str, list, dict)) and test(len(v))
    return lambda v: v is not MISSING and test(v)


def _steps_getter(steps: tuple[str | int, ...]) -> Callable[[Any], Any]:
    """Follow ``steps`` from a value: dicts by str key, lists by index, else MISSING."""

    def get(v: Any) -> Any:
        for s in steps:
            if isinstance(s, int):
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


def _item_pred(c: Data, var: str, scope: Scope) -> ItemPred | None:
    """``c`` as a test of one item bound to ``var``, when it reads nothing but that item (the
    common block: `normpath(p) starts_with ...`, `e.newText contains ...`); None otherwise. The
    quantifier then calls it on each item directly, with no context tuple built per item."""
    if "every" in c or "some" in c:
        return None
    if "not" in c:
        inner = _item_pred(c["not"], var, scope)
        return None if inner is None else (lambda v: not inner(v))
    if "all" in c or "any" in c:
        parts = [_item_pred(x, var, scope) for x in c["all" if "all" in c else "any"]]
        if any(p is None for p in parts):
            return None
        preds = tuple(p for p in parts if p is not None)
        if "all" in c:
            return lambda v: all(p(v) for p in preds)
        return lambda v: any(p(v) for p in preds)
    root, steps = _parse_path(c["path"], (*scope, var))
    if root != var:  # reads the call or an outer item too: the general path
        return None
    test = _value_test(c)
    if not steps:
        return test
    get = _steps_getter(steps)
    return lambda v: test(get(v))


def _quantifier(c: Data, scope: Scope) -> Pred:
    """``every``/``some``: the ``where`` closure for each item of the list at ``in``, with the
    item appended to the context; false when ``in`` is missing or not a list (``every`` of an
    empty list holds, as in Rego)."""
    kind = "every" if "every" in c else "some"
    get = _getter(c["in"], scope)
    item = _item_pred(c["where"], c[kind], scope)
    if item is not None:  # all()/any() over map(): the loop runs in C, and stops as Python's would
        if kind == "every":
            return lambda ctx: isinstance(items := get(ctx), list) and all(map(item, items))
        return lambda ctx: isinstance(items := get(ctx), list) and any(map(item, items))
    body = compile_condition(c["where"], (*scope, c[kind]))
    if kind == "every":

        def every(ctx: Ctx) -> bool:
            items = get(ctx)
            if not isinstance(items, list):
                return False
            for item in items:
                if not body((*ctx, item)):
                    return False
            return True

        return every

    def some(ctx: Ctx) -> bool:
        items = get(ctx)
        if not isinstance(items, list):
            return False
        for item in items:
            if body((*ctx, item)):
                return True
        return False

    return some


def compile_condition(c: Data, scope: Scope = ()) -> Pred:
    """A condition (canonical dump form) as a closure over the context. It may raise on
    pathological input; callers decide what an exception means (fail closed)."""
    if "every" in c or "some" in c:
        return _quantifier(c, scope)
    if "all" in c:
        parts = tuple(compile_condition(x, scope) for x in c["all"])
        if len(parts) == 1:
            return parts[0]

        def all_of(ctx: Ctx) -> bool:
            for p in parts:
                if not p(ctx):
                    return False
            return True

        return all_of
    if "any" in c:
        parts = tuple(compile_condition(x, scope) for x in c["any"])
        if len(parts) == 1:
            return parts[0]

        def any_of(ctx: Ctx) -> bool:
            for p in parts:
                if p(ctx):
                    return True
            return False

        return any_of
    if "not" in c:
        inner = compile_condition(c["not"], scope)
        return lambda ctx: not inner(ctx)
    if "path" in c:
        fused = _fused_leaf(c, scope)
        if fused is not None:
            return fused
        get = _getter(c["path"], scope)
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
                return test(len(v) if isinstance(v, list) else 0 if v is MISSING or v is None else 1)

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


# --- witnesses, for `explain` ---------------------------------------------------------------

Note = tuple[str, bool]  # ("`some e in args.edits` held at index 2", the quantifier's value)
Explainer = Callable[[Ctx, list[Note]], bool]


def has_quantifier(c: Data) -> bool:
    """Whether a condition holds an `every`/`some` anywhere (only those get witnesses)."""
    if "every" in c or "some" in c:
        return True
    if "not" in c:
        return has_quantifier(c["not"])
    return any(has_quantifier(x) for x in c.get("all", c.get("any", ())))


def compile_explainer(c: Data, scope: Scope = ()) -> Explainer:
    """The condition again, evaluated the same way (same order, same short cuts), noting for
    each quantifier it reaches which item decided it: the witness of a `some` that held, the
    first item an `every` failed on. Built only when a trace is asked for."""
    if "every" in c or "some" in c:
        kind = "every" if "every" in c else "some"
        var, where = c[kind], c["where"]
        get = _getter(c["in"], scope)
        body = compile_explainer(where, (*scope, var))
        head = f"`{kind} {var} in {c['in']}`"

        def quantifier(ctx: Ctx, notes: list[Note]) -> bool:
            items = get(ctx)
            if not isinstance(items, list):
                what = "is missing" if items is MISSING else "is not a list"
                notes.append((f"{head}: `{c['in']}` {what}, so it is false", False))
                return False
            for i, item in enumerate(items):
                inner: list[Note] = []
                if body((*ctx, item), inner) is (kind == "some"):
                    verb = "held" if kind == "some" else "failed"
                    notes.append((f"{head} {verb} at index {i}", kind == "some"))
                    notes.extend((f"  {text}", value) for text, value in inner)
                    return kind == "some"
            n = f"{len(items)} item" + ("" if len(items) == 1 else "s")
            if kind == "every":
                notes.append((f"{head} held for all {n}" if items else f"{head} held: the list is empty", True))
                return True
            notes.append((f"{head} held for none of {n}", False))
            return False

        return quantifier
    if "all" in c or "any" in c:
        want = "any" in c  # an `any` stops at the first true item, an `all` at the first false one
        parts = tuple(compile_explainer(x, scope) for x in c["any" if want else "all"])

        def combined(ctx: Ctx, notes: list[Note]) -> bool:
            for p in parts:
                if p(ctx, notes) is want:
                    return want
            return not want

        return combined
    if "not" in c:
        inner_explainer = compile_explainer(c["not"], scope)
        return lambda ctx, notes: not inner_explainer(ctx, notes)
    pred = compile_condition(c, scope)
    return lambda ctx, notes: bool(pred(ctx))
