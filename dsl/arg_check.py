"""The argument-name check: a condition on an argument the tool does not have (and, through
dsl/arg_types.py, the argument-type check: a comparison its type makes impossible).

``deny tool "read_file" if args.pth contains ".."`` never fires (the call has no ``pth``), a
silent fail-open. The harvested stdlib catalogues keep each tool's input schema
(``stdlib_rules/catalogues/``): when every tool a rule selects has a schema that lists its
properties and none of them has the argument, ``plr check`` warns, with the nearest name.

A warning, not an error (unlike an unknown tool name): a schema can be older than the server,
or looser than its properties say, and a policy has no way to declare an argument the way a
`server` block declares a tool; the author reads the warning and decides.
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Mapping
from typing import Any, Iterator

from . import ir
from .arg_types import absolute as _absolute, check_argument_types
from .catalog import tool_schemas
from .errors import Diagnostic
from .resolve import Program

Schema = dict[str, Any]
UNKNOWN: Schema = {}  # a schema the check cannot see into: no warning below it


def check_argument_names(prog: Program, schemas: Mapping[str, list[Schema] | None] | None = None) -> None:
    """Warn at each `args.NAME` that no selected tool's schema has (see the module docstring).
    ``schemas``: tool -> its input schemas (None: it has none to judge by); by default those
    the imported stdlib catalogues give (``schemas_in_scope``)."""
    schemas = schemas_in_scope(prog) if schemas is None else schemas
    if not schemas:
        return
    for rr in prog.rules:
        r = rr.rule
        if r.selector.kind == "all" or not rr.tools:
            continue
        tool_schemas_ = [schemas.get(t) for t in rr.tools]
        if any(s is None for s in tool_schemas_):  # a tool without a harvested schema: cannot tell
            continue
        for path, scope in _paths(r):
            _check_path(prog, path, scope, rr.tools, tool_schemas_)  # type: ignore[arg-type]
    # The same schemas give each argument a type: a comparison that no value of it can satisfy
    # (`args.command starts_with "rm"` on a list) is the same silent trap (dsl/arg_types.py).
    check_argument_types(prog, schemas)


def live_schema_warnings(prog: Program, listed: Mapping[str, Any]) -> list[Diagnostic]:
    """The argument-name and -type warnings of ``prog`` against a server's own `tools/list`
    (tool name -> its `inputSchema`), beyond those ``plr check`` already gave: what a proxy
    could say at start, when the catalogue is the author's own or older than the server. A
    tool the listing lacks, or lists without a schema, is not judged. ``prog`` is left as it was."""
    before = len(prog.diagnostics)
    seen = {(d.file, d.line, d.col, d.message) for d in prog.diagnostics}
    check_argument_names(prog, {name: [s] if isinstance(s, dict) else None for name, s in listed.items()})
    new = prog.diagnostics[before:]
    del prog.diagnostics[before:]
    out: list[Diagnostic] = []
    for d in new:
        key = (d.file, d.line, d.col, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return sorted(out, key=lambda d: (d.file, d.line, d.col))


def schemas_in_scope(prog: Program) -> dict[str, list[Schema] | None]:
    """Tool name -> the input schemas the imported stdlib catalogues give it; None when some
    catalogue in scope declares the tool without a schema (the author's own `server` block).

    Worked out once per program: the general checks ask at every `args.…` comparison
    (dsl/arg_types.rules_out_by_schema), and each scan reads every statement of every module,
    so asking afresh made checking thousands of rules quadratic. The answer is shared: read it,
    do not change it."""
    key = id(prog)
    cached = _IN_SCOPE.get(key)
    if cached is not None and cached[0]() is prog and cached[1] == len(prog.modules):
        return cached[2]
    found = _scan_schemas(prog)
    if cached is None or cached[0]() is not prog:  # a first answer: forget it when the program goes
        weakref.finalize(prog, _IN_SCOPE.pop, key, None)
    _IN_SCOPE[key] = (weakref.ref(prog), len(prog.modules), found)
    return found


# id(program) -> (the program, its number of modules then, its schemas in scope). Keyed by id:
# a Program (a dataclass with `==`) cannot be a key of a WeakKeyDictionary; the weak reference
# tells a program from a later one given the same id, the module count one loaded further.
_IN_SCOPE: dict[int, tuple[weakref.ref[Program], int, dict[str, list[Schema] | None]]] = {}


def _scan_schemas(prog: Program) -> dict[str, list[Schema] | None]:
    out: dict[str, list[Schema] | None] = {}
    for module in prog.modules:
        rule_name = prog.rule_names.get(module.file, "")
        stem = rule_name.removeprefix("stdlib/").removesuffix(".plr") if rule_name.startswith("stdlib/server-") else ""
        known = tool_schemas(stem) if stem else {}
        for cat in module.of(ir.Catalogue):
            for tool in cat.tools:
                if tool.name in known and out.get(tool.name, []) is not None:
                    out.setdefault(tool.name, []).append(known[tool.name])  # type: ignore[union-attr]
                else:
                    out[tool.name] = None
    return out


def _paths(rule: ir.Rule) -> Iterator[tuple[ir.Path, dict[str, ir.Path]]]:
    """Every path a rule reads, with the quantifier variables bound around it (var -> its list)."""
    of = getattr(rule.limit, "of", None)  # a spend cap's amount (`limit … of args.amount`)
    if isinstance(of, ir.Path):
        yield of, {}
    yield from _walk(rule.condition, {})


def _walk(c: Any, scope: dict[str, ir.Path]) -> Iterator[tuple[ir.Path, dict[str, ir.Path]]]:
    if c is None:
        return
    if isinstance(c, ir.Compare):
        yield c.path, scope
        if isinstance(c.value, ir.Path):
            yield c.value, scope
    elif isinstance(c, (ir.And, ir.Or)):
        for item in c.items:
            yield from _walk(item, scope)
    elif isinstance(c, ir.Not):
        yield from _walk(c.item, scope)
    elif isinstance(c, ir.Quantifier):
        yield c.path, scope
        yield from _walk(c.body, {**scope, c.var: c.path})


def _check_path(prog: Program, path: ir.Path, scope: dict[str, ir.Path], tools: tuple[str, ...], schemas: list[list[Schema]]) -> None:
    found = _absolute(path, scope)
    if found is None:
        return
    steps, skip = found
    nodes = [s for per_tool in schemas for s in per_tool]
    for i, step in enumerate(steps):
        if step is None or isinstance(step, int):
            nodes = [_items(n) for n in nodes]
            if any(n is UNKNOWN for n in nodes):
                return
            continue
        props = [_properties(n) for n in nodes]
        if any(p is None for p in props):
            return  # some schema does not list its properties here: anything may be there
        names = {k for p in props for k in p}  # type: ignore[union-attr]
        if step in names:
            nodes = [p[step] for p in props if step in p]  # type: ignore[index, operator]
            continue
        if i < skip:
            return  # reported at the quantifier's own path
        where = ".".join(str(s) for s in steps[:i] if isinstance(s, str))
        owner = f"`{tools[0]}`" if len(tools) == 1 else f"none of the {len(tools)} tools this rule selects"
        has = f"{owner} has no argument `{step}`" if len(tools) == 1 else f"{owner} has an argument `{step}`"
        if where:
            has += f" under `args.{where}`"
        close = difflib.get_close_matches(step, sorted(names), n=1)
        hint = f"; did you mean `{close[0]}`?" if close else f" (it has {', '.join(sorted(names)[:12]) or 'none'})."
        span = path.span if path.span.line else ir.Span(file=path.span.file, line=0, col=0)
        prog.warn(f"`{path.text()}`: {has}{hint} A condition on a missing argument never holds.", span)
        return


def _properties(schema: Schema) -> dict[str, Schema] | None:
    """The properties an object schema lists; None when it does not say (no properties, a
    reference, additionalProperties allowed explicitly) or is a union with one open branch."""
    if not isinstance(schema, dict) or "$ref" in schema or "allOf" in schema:
        return None
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        merged: dict[str, Schema] = {}
        for b in branches:
            if isinstance(b, dict) and b.get("type") not in ("object", None):
                continue  # a null or a string branch has no properties to miss
            p = _properties(b)
            if p is None:
                return None
            merged.update(p)
        return merged or None
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return None
    if isinstance(schema.get("additionalProperties"), dict) or schema.get("additionalProperties") is True:
        return None
    return props


def _items(schema: Schema) -> Schema:
    items = schema.get("items") if isinstance(schema, dict) else None
    return items if isinstance(items, dict) and items else UNKNOWN


def argument_names(prog: Program, tools: set[str], steps: list[str]) -> dict[str, str]:
    """Argument names (after ``args.STEPS.``) the harvested schemas give ``tools`` (every tool
    with a schema when ``tools`` is empty), each with its JSON type: the language server's
    completions."""
    out: dict[str, str] = {}
    for tool, per_tool in schemas_in_scope(prog).items():
        if per_tool is None or (tools and tool not in tools):
            continue
        for schema in per_tool:
            node: Schema | None = schema
            for step in steps:
                props = _properties(node) if node is not None else None
                node = props.get(step) if props else None
                while node is not None and node.get("type") == "array":
                    node = _items(node) or None
            props = _properties(node) if node is not None else None
            for name, sub in (props or {}).items():
                kind = sub.get("type") if isinstance(sub, dict) else None
                out.setdefault(name, "|".join(kind) if isinstance(kind, list) else (kind or "value"))
    return out
