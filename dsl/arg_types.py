"""The argument-type check: a comparison that the argument's schema type makes impossible.

Comparing values of different types is false, never an error (docs/language.md, "Missing values
and mismatched types"). So ``deny tool "exec_in_pod" if args.command starts_with "rm"`` never
fires when the tool's ``command`` is a list (``["rm", "-rf", "/"]``): a silent fail-open. When
every tool a rule selects has an input schema (a harvested stdlib catalogue's) that gives the
argument a type, and the comparison holds for no value of that type, ``plr check`` warns at the
comparison, says what that does to the rule and what to write instead.

The proxy does not validate arguments against the schema, so the warning speaks of "a call that
follows the tool's input schema", and never advises dropping what the rule catches today: a
client may send another type (LLM clients send an explicit null for an optional field; a lenient
server coerces "0" to 0 and "false" to false). So `== null` is never warned about (that is the
null such a client sends), and where holding denies, the suggested fix covers both forms
(`args.replicas in [0, "0"]`, `args.command starts_with "rm" or some c in args.command { … }`);
where holding allows, the narrower fix fails closed and is given alone.

A warning, as the argument-name check's (dsl/arg_check.py): a schema can be older than the
server. Where a schema says nothing about a path (no type, a reference it cannot follow, a
union with an untyped branch), or allows a type the comparison can hold for, nothing is said.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Iterator, Optional
from urllib.parse import unquote

from . import ir
from .classify import ENUM_KEPT
from .resolve import Program
from .vocab import json_type

Schema = dict[str, Any]
# The JSON types a value at a path can have, named as the language names them (json_type);
# None: the schema does not say (anything goes, no warning).
Types = Optional[frozenset[str]]
ABSENT: frozenset[str] = frozenset()  # the schema lists its properties and this is not one

_SCHEMA_TYPES = {
    "string": "string", "number": "number", "integer": "number", "boolean": "boolean",
    "null": "null", "array": "list", "object": "object",
}  # fmt: skip
_ORDERED = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_SYMBOLS = {"eq": "==", "neq": "!=", **_ORDERED, "in": "in", "not_in": "not in", "contains": "contains"}
_TEXT_OPS = {"starts_with": "starts_with", "ends_with": "ends_with", "regex": "matches"}
_MAX_DEPTH = 48  # schema nodes followed for one path ($ref cycles end here)
_MAX_HOPS = 16  # $refs followed in a row
_MAX_NODES = 5000  # schema nodes visited for one path, at most
# What this check says (the proxy does not validate arguments: a call may not follow the schema)
NEVER_HOLDS = "never holds for a call that follows the tool's input schema"
_LENGTH_MAX = 32  # `e.newText > 5` is its length, most likely; `args.timeout > 600` is not
# Words in an argument's name that make a number compared with it a quantity, not a length
_QUANTITY_WORDS = frozenset(
    "time timeout duration ttl interval delay wait age period since until expiry expires seconds secs sec "
    "minutes mins hours days ms millis port size count limit replicas amount number num retries".split()
)


# --- what a schema says about a path ------------------------------------------------------


def types_at(root: Schema, steps: Sequence[str | int | None]) -> Types:
    """The JSON types the schema ``root`` lets a value at ``steps`` have; ``ABSENT`` when the
    schema lists its properties and the path is not among them; None when it does not say."""
    try:
        return _types(root, tuple(steps), _Walk(root), 0)
    except _TooBig:
        return None  # a schema whose references branch out too far to follow: no warning


class _TooBig(Exception):
    pass


class _Walk:
    """One path's walk through one schema: the root its `$ref`s point into, and how many more
    nodes it may visit (references shared by several branches could make it exponential)."""

    def __init__(self, root: Schema) -> None:
        self.root = root
        self.left = _MAX_NODES

    def visit(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _TooBig


def _types(node: Any, steps: tuple[str | int | None, ...], walk: _Walk, depth: int) -> Types:
    """Every constraint on the node (its own type, each `allOf` branch, the union of its
    `anyOf`/`oneOf` branches) narrows the types; one that does not say narrows nothing."""
    walk.visit()
    node = _deref(node, walk.root)
    if node is None or depth > _MAX_DEPTH:
        return None
    found: list[frozenset[str]] = []
    here = _own(node) if not steps else _child(node, steps, walk, depth)
    if here is not None:
        found.append(here)
    for key in ("anyOf", "oneOf"):
        union = _union(node.get(key), steps, walk, depth)
        if union is not None:
            found.append(union)
    branches = node.get("allOf")
    for branch in branches if isinstance(branches, list) else ():
        every = _types(branch, steps, walk, depth + 1)
        if every is not None:
            found.append(every)
    return frozenset.intersection(*found) if found else None


def _deref(node: Any, root: Schema) -> Schema | None:
    """The node a local `$ref` ("#/$defs/x") points at, the node itself without one; None for a
    reference the check cannot follow (another document, a cycle, a wrong pointer)."""
    for _ in range(_MAX_HOPS):
        if not isinstance(node, dict):
            return None
        ref = node.get("$ref")
        if ref is None:
            return node
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node = _pointer(root, ref[1:])
    return None


def _pointer(root: Any, pointer: str) -> Any:
    node = root
    for token in pointer.split("/")[1:] if pointer else ():
        token = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _own(node: Schema) -> Types:
    """What the node's own `type`, `const` and `enum` allow (a cut enum says nothing)."""
    found: list[frozenset[str]] = []
    kind = node.get("type")
    names = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []
    mapped = {_SCHEMA_TYPES.get(k) if isinstance(k, str) else None for k in names}
    if mapped and None not in mapped:
        found.append(frozenset(mapped))  # type: ignore[arg-type]
    if "const" in node:
        found.append(frozenset({json_type(node["const"])}))
    enum = node.get("enum")
    if isinstance(enum, list) and 0 < len(enum) < ENUM_KEPT:  # the harvest keeps the first ENUM_KEPT
        found.append(frozenset(json_type(v) for v in enum))
    return frozenset.intersection(*found) if found else None


def _child(node: Schema, steps: tuple[str | int | None, ...], walk: _Walk, depth: int) -> Types:
    step, rest = steps[0], steps[1:]
    if isinstance(step, str):
        props = node.get("properties")
        props = props if isinstance(props, dict) else {}
        if step in props:
            return _types(props[step], rest, walk, depth + 1)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return _types(extra, rest, walk, depth + 1)
        if extra is False or (props and extra is None):
            return ABSENT  # as the argument-name check reads a list of properties: closed
        return None
    items = node.get("items")
    return _types(items, rest, walk, depth + 1) if isinstance(items, dict) and items else None


def _union(branches: Any, steps: tuple[str | int | None, ...], walk: _Walk, depth: int) -> Types:
    """The types any branch allows; a branch that cannot hold the container the next step
    goes into (a `null` or a string branch, for a property) adds nothing."""
    if not isinstance(branches, list) or not branches:
        return None
    out: set[str] = set()
    for branch in branches:
        if steps:
            whole = _types(branch, (), walk, depth + 1)
            if whole is not None and ("object" if isinstance(steps[0], str) else "list") not in whole:
                continue
        found = _types(branch, steps, walk, depth + 1)
        if found is None:
            return None
        out |= found
    return frozenset(out)


def tool_types(schemas: Sequence[Sequence[Schema]], steps: Sequence[str | int | None]) -> Types:
    """The types any of the tools' schemas allows at ``steps`` (a tool lacking the argument
    adds none: a comparison on it is false there anyway); None when one does not say."""
    out: set[str] = set()
    for per_tool in schemas:
        for schema in per_tool:
            found = types_at(schema, steps)
            if found is None:
                return None
            out |= found
    return frozenset(out)


# --- the check --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Finding:
    node: ir.Compare | ir.Quantifier
    negated: bool  # under an odd number of `not`s
    why: str
    types: frozenset[str]
    items: Types  # the types of the list's items, when the path holds a list


@dataclass(frozen=True)
class _Where:
    """What the check needs of the rule it is in."""

    prog: Program
    tools: tuple[str, ...]
    schemas: list[list[Schema]]


def check_argument_types(prog: Program, schemas: Mapping[str, list[Schema] | None]) -> None:
    """Warn at each comparison (and `every`/`some`, and spend cap) that the selected tools'
    schemas make impossible (see the module docstring). ``schemas``: tool -> its input schemas,
    None when one declaration has none (dsl.arg_check.schemas_in_scope, or a live listing)."""
    from .checks import _never_holds  # a comparison its literal alone rules out is warned about there

    for rr in prog.rules:
        r = rr.rule
        if r.selector.kind == "all" or not rr.tools:
            continue
        per_tool = [schemas.get(t) for t in rr.tools]
        if any(s is None for s in per_tool):
            continue
        where = _Where(prog, rr.tools, per_tool)  # type: ignore[arg-type]
        _check_amount(where, r)
        if r.condition is None or r.guard not in ("if", "unless"):
            continue
        found = [f for f in _findings(where, r.condition, {}, False) if not _literal_ruled_out(f, _never_holds)]
        if found:
            _report(where, r, found)


def rules_out_by_schema(prog: Program, tools: Sequence[str], leaf: ir.Compare) -> bool:
    """Whether this check warns at ``leaf`` (an `args.…` comparison of a rule selecting
    ``tools``): a broader warning at the same comparison (dsl/checks.py: a value function, or
    `!=`, in a `deny … if`, false "when not a string") can then stay quiet, rather than advise
    requiring a string of an argument the schema says is a list."""
    from .arg_check import schemas_in_scope

    if not tools or leaf.path.root != "args" or leaf.op in ("exists", "missing"):
        return False
    schemas = schemas_in_scope(prog)
    per_tool = [schemas.get(t) for t in tools]
    if any(s is None for s in per_tool):
        return False
    seen = _seen(_Where(prog, tuple(tools), per_tool), leaf.path, {})  # type: ignore[arg-type]
    return seen is not None and never_for(leaf, *seen) is not None


def _literal_ruled_out(f: _Finding, never_holds: Any) -> bool:
    return isinstance(f.node, ir.Compare) and never_holds(f.node) is not None


def _findings(where: _Where, c: Any, scope: dict[str, ir.Path], negated: bool) -> Iterator[_Finding]:
    if isinstance(c, ir.Compare):
        found = _judge(where, c, scope, negated)
        if found is not None:
            yield found
    elif isinstance(c, ir.Or):
        found = [list(_findings(where, item, scope, negated)) for item in c.items]
        for item, own in zip(c.items, found):
            for f in own:
                if f.node is item and _other_form(where, c.items, found, item, scope):
                    continue  # `args.x == "0" or args.x == 0`: both forms on purpose, as the fix writes
                yield f
    elif isinstance(c, ir.And):
        for item in c.items:
            yield from _findings(where, item, scope, negated)
    elif isinstance(c, ir.Not):
        yield from _findings(where, c.item, scope, not negated)
    elif isinstance(c, ir.Quantifier):
        seen = _seen(where, c.path, scope)
        if seen is not None and "list" not in seen[0]:
            why = f"`{c.kind}` holds only over a list ({'true for an empty one' if c.kind == 'every' else 'an item of one'})"
            yield _Finding(c, negated, _says(where, c.path, scope, seen[0]) + ", and " + why, seen[0], None)
        yield from _findings(where, c.body, {**scope, c.var: c.path}, negated)


def _other_form(
    where: _Where, items: Sequence[Any], found: list[list[_Finding]], item: Any, scope: dict[str, ir.Path]
) -> bool:
    """Whether another operand of the `or` ``item`` is in makes the same test in another form
    and may hold: the two forms side by side (what the fix advises in a deny), one for a call
    that follows the schema, one for a call that does not. Only the same test: `args.command
    starts_with "rm" or args.command contains "sudo"` is still warned about."""
    mine = _test(item, scope)
    return mine is not None and any(
        other is not item and not other_found and _same(mine, _test(other, scope))
        for other, other_found in zip(items, found)
    )


_Test = tuple[tuple[str | int | None, ...], Optional[str], tuple[str, ...], str, Any]


def _test(c: Any, scope: dict[str, ir.Path]) -> _Test | None:
    """(path from `args`, count/len, value functions, operator, value) of a comparison, or of
    `some x in P { x OP v }` read as a test on P; None for anything else."""
    if isinstance(c, ir.Quantifier):
        body = c.body.items[0] if isinstance(c.body, ir.And) and len(c.body.items) == 1 else c.body
        if not (isinstance(body, ir.Compare) and body.path.root == c.var and not body.path.steps):
            return None
        c = body.model_copy(update={"path": c.path})
    if not isinstance(c, ir.Compare) or c.op in ("exists", "missing"):
        return None
    found = absolute(c.path, scope)
    return None if found is None else (found[0], c.fn, c.fns, c.op, _loose(c.value))


def _same(a: _Test, b: _Test | None) -> bool:
    """The same test, up to a literal's type (`0`, `"0"`) and a length taken (`len(x) > 5`)."""
    return b is not None and a[0] == b[0] and a[2:] == b[2:] and (a[1] == b[1] or {a[1], b[1]} == {None, "len"})


def _loose(value: Any) -> Any:
    """A literal with its type forgotten: `0` and `"0"`, `false` and `"false"` are one."""
    if isinstance(value, list):
        return tuple(_loose(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def absolute(path: ir.Path, scope: dict[str, ir.Path]) -> tuple[tuple[str | int | None, ...], int] | None:
    """A path's steps from `args`, a quantifier variable standing for one item (None) of its
    list; and how many leading steps came from the variable (not to be reported again)."""
    if path.root in scope:
        outer = absolute(scope[path.root], {k: v for k, v in scope.items() if k != path.root})
        if outer is None:
            return None
        steps = (*outer[0], None)
        return (*steps, *path.steps), len(steps)
    if path.root != "args":
        return None
    return tuple(path.steps), 0


def _seen(where: _Where, path: ir.Path, scope: dict[str, ir.Path]) -> tuple[frozenset[str], Types] | None:
    """The types the schemas give ``path`` and (None: unknown) its items; None when they do
    not say, or say it is never there (the argument-name check speaks of that)."""
    found = absolute(path, scope)
    if found is None:
        return None
    steps = found[0]
    types = tool_types(where.schemas, steps)
    if not types:
        return None
    items = tool_types(where.schemas, (*steps, None)) if "list" in types else None
    return types, items or None


def _judge(where: _Where, leaf: ir.Compare, scope: dict[str, ir.Path], negated: bool) -> _Finding | None:
    if leaf.op in ("exists", "missing"):
        return None
    seen = _seen(where, leaf.path, scope)
    if seen is None:
        return None
    types, items = seen
    why = never_for(leaf, types, items)
    if why is None:
        return None
    return _Finding(leaf, negated, _says(where, leaf.path, scope, types) + ", and " + why, types, items)


def never_for(leaf: ir.Compare, types: frozenset[str], items: Types = None) -> str | None:
    """Why ``leaf`` holds for no value of these types (``items``: of a list's items, None when
    unknown); None when it may hold. The language's rules: docs/language.md, Comparisons."""
    op, value = leaf.op, leaf.value
    if op in ("exists", "missing"):
        return None
    if leaf.fns:
        return None if "string" in types else f"{leaf.fns[0]}(...) gives a value only for a string"
    if leaf.fn == "len":
        if types & {"string", "list", "object"}:
            return None
        return "len(...) has a value only for a string, a list or an object"
    if leaf.fn == "count":
        if "list" in types or any(_count_may(op, value, n) for n in (0, 1)):
            return None
        return f"count(...) is 0 or 1 for a value that is not a list, never `{_SYMBOLS[op]} {_literal(value)[1:-1]}`"
    if op in _TEXT_OPS:
        return None if "string" in types else f"`{_TEXT_OPS[op]}` holds only for a string"
    if op == "contains":
        return _contains_never(value, types, items)
    if op in ("eq", "neq", *_ORDERED):
        kind = json_type(value)
        if kind in types or (op == "eq" and kind == "null"):
            return None  # `== null`: what a client sends for an optional field, whatever the schema
        if op in _ORDERED:
            return f"{_or(types)} is never ordered against {_WORDS[kind]}"
        return f"{_or(types)} never equals {_WORDS[kind]}" if op == "eq" else (
            f"`!=` holds only between two values of the same type, and the value is {_WORDS[kind]}"
        )
    if op in ("in", "not_in") and isinstance(value, list) and value:
        if {json_type(x) for x in value} & (types | {"null"} if op == "in" else types):
            return None  # `in [null, …]` holds for a client's explicit null, as `== null` does
        return f"no item of the list is {_or(types)}"
    return None


def _contains_never(value: Any, types: frozenset[str], items: Types) -> str | None:
    if isinstance(value, str) and "string" in types:
        return None
    if "list" in types and (items is None or json_type(value) in items):
        return None
    if "list" in types:
        return (
            f"`contains` on a list looks for an item equal to {_literal(value)}, and each item of it is "
            f"{_or(items or ABSENT)}"
        )
    return "`contains` holds only for a string (a part of it) or a list (an item of it)"


def _count_may(op: str, value: Any, n: int) -> bool:
    """Whether ``count(...) OP value`` holds when the count is ``n``."""
    def num(x: Any) -> bool:
        return json_type(x) == "number"

    if op in ("in", "not_in"):
        nums = [x for x in value if num(x)] if isinstance(value, list) else []
        return any(x == n for x in nums) if op == "in" else bool(nums) and all(x != n for x in nums)
    if not num(value):
        return False
    return {"eq": n == value, "neq": n != value, "lt": n < value, "lte": n <= value, "gt": n > value, "gte": n >= value}.get(
        op, True
    )


# --- what the warning says --------------------------------------------------------------


def _says(where: _Where, path: ir.Path, scope: dict[str, ir.Path], types: frozenset[str]) -> str:
    """"the input schema of `t` says `args.x` is a list"."""
    n = len(where.tools)
    if n == 1:
        source = f"the input schema of `{where.tools[0]}` says"
    else:
        source = f"the input schemas of the {n} tools this rule selects say"
    if path.root in scope:
        outer = scope[path.root].text()
        subject = f"each item of `{outer}`" if not path.steps else f"`{path.text()}` (`{path.root}` an item of `{outer}`)"
    else:
        subject = f"`{path.text()}`"
    return f"{source} {subject} is {_or(types)}"


def _report(where: _Where, r: ir.Rule, found: list[_Finding]) -> None:
    """One warning per finding, saying what the never-true part does to the rule (the wording
    of the literal-type check in dsl/checks.py): in a `deny … if` a silent fail-open. Each
    consequence is said "for such a call" (one that follows the schema): the proxy does not
    validate arguments, so a call of another type may still make the comparison hold."""
    from .format import condition_text

    assert r.condition is not None
    whole = _const(r.condition, {id(f.node) for f in found})
    deny_if = r.kind in ("deny", "limit") and r.guard == "if"  # holding restricts: never holding fails open
    head = ("`deny … if`" if r.kind == "deny" else "`limit … if`") if deny_if else (
        "`allow … if`" if r.kind == "allow" else "`deny … unless`"
    )
    fires, meant = ("applies", "limit are not counted") if r.kind == "limit" else ("fires", "deny are allowed")
    for f in found:
        text = condition_text(f.node) if isinstance(f.node, ir.Compare) else f"{f.node.head()} {{ … }}"
        message = f"`{text}` {NEVER_HOLDS}: {f.why}"
        if deny_if and not f.negated:
            if whole is False:
                message += f", so for such a call this {head} never {fires}: the calls it is meant to {meant} (a silent fail-open)"
            else:
                message += (
                    f", so for such a call this part of the {head} never {fires}: calls it is meant to "
                    f"{meant.replace(' are ', ' may be ')} (a silent fail-open)"
                )
        elif not deny_if and f.negated:
            message += f", so for such a call the `not` around it always holds and this {head} denies less than written (fail open)"
        elif deny_if:
            message += ", so for such a call the `not` around it always holds"
            if whole is True:
                message += f" and this {head} {'denies' if r.kind == 'deny' else 'counts'} every such call it selects"
        elif whole is False:
            message += f", so for such a call this {head} condition never holds: the rule denies every such call it selects"
        restricts = deny_if != f.negated  # the comparison holding denies (or counts) the call
        where.prog.warn(message + _fix(where, f, restricts, _or_fits(r.condition, f.node)), f.node.span)


def _fix(where: _Where, f: _Finding, restricts: bool, alone: bool) -> str:
    """What to write instead: the test on each item of a list, the literal of the right type,
    or the comparison of the value itself for a quantifier over what is not a list.

    ``restricts``: the comparison holding denies (or counts) the call. Then the fix keeps what
    the rule catches today and adds the schema's form (a client may not follow the schema): a
    narrower rewrite would turn a deny that fires today into a fail-open. Otherwise the
    schema's form alone is given: narrower there fails closed. ``alone``: an `or` may stand
    in place of the comparison without parentheses."""
    from .format import condition_text, literal_text

    node = f.node

    def both(new: ir.Condition) -> str:
        return condition_text(ir.Or(items=(node, new)), None if alone else "and")

    if isinstance(node, ir.Quantifier):
        body = node.body.items[0] if isinstance(node.body, ir.And) and len(node.body.items) == 1 else node.body
        if isinstance(body, ir.Compare) and body.path.root == node.var and not body.path.steps:
            direct = body.model_copy(update={"path": node.path})
            if never_for(direct, f.types) is None:
                if restricts:
                    return f"; to test the value itself as well, write `{both(direct)}`"
                return f"; to test the value itself, write `{condition_text(direct)}`"
        return f"; `{node.path.text()}` is not a list: compare it itself"
    leaf = node
    if "list" in f.types and (f.items is None or never_for(leaf, f.items) is None):
        if leaf.op == "eq" and leaf.fn is None and not leaf.fns and not isinstance(leaf.value, list):
            if restricts:  # `contains`: an item of a list equal to it, or a string holding it (as today)
                return f"; to test for an item equal to it, write `{leaf.lhs_text()} contains {literal_text(leaf.value)}`"
            return f"; to allow exactly that one item, write `{leaf.lhs_text()} == {literal_text([leaf.value])}`"
        var = _item_name(where.prog, leaf.path)
        item = leaf.model_copy(update={"path": ir.Path(root=var)})
        kind = "some" if restricts else "every"
        q = ir.Quantifier(kind=kind, var=var, path=leaf.path, body=ir.And(items=(item,), block=True))
        if restricts:
            return f"; to test any item as well, write `{both(q)}`"
        return f"; to test every item, write `{condition_text(q)}`"
    sized = f.types & {"string", "list", "object"}
    if leaf.op in _ORDERED and json_type(leaf.value) == "number" and leaf.fn is None and sized:
        if not _length_meant(leaf, f.types):
            return ""  # `args.timeout > 600` on a string: the reason says it is a string
        length = leaf.model_copy(update={"fn": "len"})  # `e.newText > 5`: its length, most likely
        if restricts:
            return f"; to compare its length as well, write `{both(length)}`"
        return f"; to compare its length, write `{condition_text(length)}`"
    other = _retyped(leaf.value, f.types) if leaf.op not in _ORDERED or json_type(leaf.value) == "string" else None
    if other is not None and leaf.fn is None and not leaf.fns:
        retyped = leaf.model_copy(update={"value": other})
        if not restricts:
            return f"; write `{condition_text(retyped)}`"
        return "; to catch both forms (a lenient server reads one as the other), write " + _both_literals(leaf, other, both)
    if "object" in f.types and not leaf.fns and leaf.fn is None:
        return f"; compare one of its fields (`{leaf.path.text()}.NAME`)"
    return ""


def _both_literals(leaf: ir.Compare, other: Any, both: Any) -> str:
    """`args.replicas in [0, "0"]` for `args.replicas == "0"`; `not (args.replicas in [0, "0"])`
    for `!=` (as the `!=` warning of dsl/checks.py advises: missing and other types denied too);
    `ORIGINAL or RETYPED` for an order."""
    from .format import condition_text

    if leaf.op in _ORDERED:
        return f"`{both(leaf.model_copy(update={'value': other}))}`"
    written = leaf.value if isinstance(leaf.value, list) else [leaf.value]
    retyped = other if isinstance(other, list) else [other]
    seen = {(json_type(v), json.dumps(v)) for v in retyped}
    merged = [*retyped, *(v for v in written if (json_type(v), json.dumps(v)) not in seen)]
    member = ir.Compare(path=leaf.path, op="in", value=merged)
    if leaf.op in ("eq", "in"):
        return f"`{condition_text(member)}`"
    return f"`not ({condition_text(member)})`"


def _length_meant(leaf: ir.Compare, types: frozenset[str]) -> bool:
    """Whether a number compared with a string, a list or an object means its length: a small
    whole number, and (for a string) a name that is not a quantity's (`timeout`, `port`)."""
    value = leaf.value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _LENGTH_MAX:
        return False
    if "string" not in types:
        return True
    name = next((s for s in reversed(leaf.path.steps) if isinstance(s, str)), "")
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ").lower().split()
    return not _QUANTITY_WORDS & set(words)


def _retyped(value: Any, types: frozenset[str]) -> Any:
    """The literal written with a type the schema allows (`"5"` -> `5`, `"true"` -> `true`,
    `8080` -> `"8080"`); None when there is none."""
    if isinstance(value, list):
        out = [_retyped(v, types) if json_type(v) not in types else v for v in value]
        return out if value and all(v is not None for v in out) else None
    if isinstance(value, str) and types & {"number", "boolean"}:
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if json_type(parsed) in types and json_type(parsed) in ("number", "boolean") else None
    if json_type(value) in ("number", "boolean") and "string" in types:
        return json.dumps(value)
    return None


def _item_name(prog: Program, path: ir.Path) -> str:
    """A name for a list's item in a suggestion: the list's initial (`c` for `args.command`),
    or `x`; never a path root nor a `let`/`def`/`import data` name."""
    from .policy import PATH_ROOTS

    taken = {*PATH_ROOTS, path.root}
    for kind in (ir.Let, ir.Def, ir.DataImport):
        taken |= {s.name for s in prog.statements(kind)}
    last = next((s for s in reversed(path.steps) if isinstance(s, str)), "")
    for name in (last[:1].lower(), "x", "item", "x1", "x2"):
        if name.isascii() and name.isalpha() and name not in taken:
            return name
    return "x_"


def _or_fits(c: Any, node: Any, parent: Any = None) -> bool:
    """Whether an `or` can stand in place of ``node`` in ``c`` without parentheses: it is the
    whole condition, an operand of an `or`, or a line of a block."""
    if c is node:
        return parent is None or isinstance(parent, ir.Or) or (isinstance(parent, ir.And) and parent.block)
    kids = c.items if isinstance(c, (ir.And, ir.Or)) else (c.item,) if isinstance(c, ir.Not) else (
        (c.body,) if isinstance(c, ir.Quantifier) else ()
    )
    return any(_or_fits(k, node, c) for k in kids)


def _const(c: Any, never: set[int]) -> bool | None:
    """The condition's value when the nodes in ``never`` are false; None when it depends on the call."""
    if id(c) in never:
        return False
    if isinstance(c, ir.Compare):
        return None
    if isinstance(c, ir.Not):
        inner = _const(c.item, never)
        return None if inner is None else not inner
    if isinstance(c, ir.Quantifier):  # no item can satisfy the block: `some` is false (`every` holds for [])
        return False if c.kind == "some" and _const(c.body, never) is False else None
    values = [_const(x, never) for x in c.items]
    stop = isinstance(c, ir.Or)  # an `or` is decided by a true item, an `and` by a false one
    if stop in values:
        return stop
    return (not stop) if all(v is not None for v in values) else None


def _check_amount(where: _Where, r: ir.Rule) -> None:
    """A spend cap adds up a number, and denies a call whose amount is missing or not one: an
    amount the schemas never give as a number makes the cap deny every call."""
    of = getattr(r.limit, "of", None)
    if not isinstance(of, ir.Path):
        return
    seen = _seen(where, of, {})
    if seen is None or "number" in seen[0]:
        return
    where.prog.warn(
        f"`{of.text()}`: {_says(where, of, {}, seen[0])}, and a spend cap adds up a number (a missing or non-numeric "
        "amount is denied), so this spend cap denies every call it applies to",
        of.span,
    )


_WORDS = {
    "string": "a string", "number": "a number", "boolean": "a boolean", "null": "null", "list": "a list",
    "object": "an object",
}  # fmt: skip
_ORDER = ("string", "number", "boolean", "list", "object", "null")


def _or(types: frozenset[str]) -> str:
    """"a list", "a number or null", "a string, a number or null"."""
    words = [_WORDS[t] for t in _ORDER if t in types]
    if not words:
        return "never there"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _literal(value: Any) -> str:
    from .format import literal_text

    return f"`{literal_text(value)}`"
