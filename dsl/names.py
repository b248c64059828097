"""Compile-time names: `let` constants, `import data` documents and `def` predicates.

Constants are replaced by their values; a call of a predicate by the predicate's block, each
parameter replaced by the path it is called with (a name an `every`/`some` of the block binds
is renamed where it would capture a name of the call).

A name is visible in the file that defines it and in every file that imports that file,
directly or not; one name is defined once in a whole program (a second definition is an error
naming the first). Resolution turns each rule's condition into one with no names left, so the
checks, the compiler and the JSON never see one; the program as written (``Program.modules``)
keeps them for ``plr fmt`` and the reference interpreter of the tests.

Every misuse is an error at the name as written: an unknown name (with a "did you mean"), a
missing key of a data file, a value of the wrong kind for its operator, a cycle of `let`s.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from . import ir
from .validate import check_json_value, surrogate_problem
from .vocab import PATH_ROOTS, json_type

if TYPE_CHECKING:
    from .resolve import Program

__all__ = ["KEYWORD_VALUES", "NameError_", "Names", "resolve_names"]

KEYWORD_VALUES = ("true", "false", "null")


class NameError_(Exception):  # noqa: N801 - not the builtin NameError
    """A misuse of a name: the message and the place to point at."""

    def __init__(self, message: str, span: ir.Span, cycle: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.cycle = cycle  # the names of a cycle of definitions, when that is the misuse


Definition = Union[ir.Let, ir.DataImport, ir.Def]
BUILTIN_FUNCTIONS = ("count", "len", *ir.STRING_FNS)


@dataclass
class _Entry:
    definition: Definition
    file: str  # the defining module's display name


@dataclass
class Names:
    """Every name of a program, where it is defined and which files see it."""

    prog: Program
    defined: dict[str, _Entry] = field(default_factory=dict)
    _visible: dict[str, frozenset[str]] = field(default_factory=dict)  # file -> files it sees
    _lets: dict[int, Any] = field(default_factory=dict)  # id(Let) -> resolved value
    _defs: dict[int, ir.Condition] = field(default_factory=dict)  # id(Def) -> block, names resolved
    broken: set[str] = field(default_factory=set)  # predicates whose own block has an error (reported)
    _sizes: dict[str, int] = field(default_factory=dict)  # predicate -> conditions once inlined

    # -- definitions ----------------------------------------------------------------------
    def collect(self) -> None:
        """Register every definition; report shadowed roots, keywords and duplicates."""
        prog = self.prog
        # stdlib files first: a name the user's file repeats is reported there, not in the stdlib
        stdlib = [m for m in prog.modules if prog.in_stdlib(ir.Span(file=m.file, line=1, col=1))]
        for module in [*stdlib, *(m for m in prog.modules if m not in stdlib)]:
            for d in [*module.data_imports, *module.lets, *module.defs]:
                span = d.name_span
                if isinstance(d, ir.Def) and d.name in BUILTIN_FUNCTIONS:
                    prog.error(f"`{d.name}` is a built-in function: choose another name for the predicate", span)
                    continue
                if isinstance(d, ir.Def) and d.name in _keywords():
                    prog.error(f"`{d.name}` is a keyword: choose another name for the predicate", span)
                    continue
                if d.name in PATH_ROOTS:
                    prog.error(f"`{d.name}` is a path root: a name may not shadow it (choose another name)", span)
                    continue
                if d.name in KEYWORD_VALUES:
                    prog.error(f"`{d.name}` is a keyword: choose another name", span)
                    continue
                first = self.defined.get(d.name)
                if first is not None:
                    where = prog.rule_name(first.definition.name_span)
                    prog.error(f"`{d.name}` is already defined at {where}: a name is defined once", span)
                    continue
                self.defined[d.name] = _Entry(d, module.file)

    def visible(self, file: str) -> frozenset[str]:
        """The files whose names ``file`` sees: itself and everything it imports, transitively."""
        seen = self._visible.get(file)
        if seen is None:
            out: set[str] = set()
            stack = [file]
            while stack:
                f = stack.pop()
                if f in out:
                    continue
                out.add(f)
                stack.extend(self.prog.imports_of.get(f, ()))
            seen = self._visible[file] = frozenset(out)
        return seen

    # -- values ---------------------------------------------------------------------------
    def value(self, ref: ir.Ref, file: str, stack: tuple[str, ...] = ()) -> Any:
        """The literal a name stands for, seen from ``file``; NameError_ on any misuse."""
        entry = self._lookup(ref, file)
        d = entry.definition
        if isinstance(d, ir.Def):
            raise NameError_(f"`{d.name}` is a predicate (def), not a value: call it as a condition, `{d.name}(...)`", ref.span)
        if isinstance(d, ir.Let):
            if d.name in stack:
                cycle = (*stack[stack.index(d.name) :], d.name)
                raise NameError_(f"`{d.name}` is defined in terms of itself: {' -> '.join(cycle)}", ref.span, cycle)
            if id(d) not in self._lets:
                self._lets[id(d)] = self.literal(d.value, entry.file, (*stack, d.name))
            base = self._lets[id(d)]
        else:
            base = self.prog.data.get((entry.file, d.name), _UNREADABLE)
            if base is _UNREADABLE:
                raise NameError_(f"`{d.name}`: its data file could not be read (see the error at its import)", ref.span)
        value = _walk(base, ref, d)
        return _as_literal(value, ref)

    def literal(self, value: Any, file: str, stack: tuple[str, ...] = ()) -> Any:
        """A literal as written with each name in it replaced by its value."""
        if isinstance(value, ir.Ref):
            return self.value(value, file, stack)
        if isinstance(value, (list, tuple)) and ir.has_refs(value):
            return [self.literal(v, file, stack) for v in value]
        return value

    def _lookup(self, ref: ir.Ref, file: str, want: str = "value") -> _Entry:
        entry = self.defined.get(ref.name)
        if entry is not None and entry.file in self.visible(file):
            return entry
        if entry is not None:
            raise NameError_(
                f"`{ref.name}` is defined in {self.prog.rule_name(entry.definition.name_span).rsplit(':', 1)[0]}, "
                "which this file does not import",
                ref.span,
            )
        if want == "predicate":
            seen = sorted(n for n, e in self.defined.items() if e.file in self.visible(file))
            close = difflib.get_close_matches(ref.name, [*seen, *BUILTIN_FUNCTIONS], n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise NameError_(f"unknown predicate `{ref.name}`{hint}: a call names a predicate defined by `def`", ref.span)
        if ref.name in PATH_ROOTS:
            raise NameError_(
                f"`{ref.text()}` is a path, not a value: the right of a comparison is a literal or a name "
                "defined by `let` or `import data` (plr never compares two paths)",
                ref.span,
            )
        seen = sorted(n for n, e in self.defined.items() if e.file in self.visible(file))
        close = difflib.get_close_matches(ref.name, [*seen, *KEYWORD_VALUES], n=1)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        raise NameError_(
            f"unknown name `{ref.name}`{hint}: a value here is a literal or a name defined by `let` or `import data`",
            ref.span,
        )


_UNREADABLE: Any = object()


def _keywords() -> frozenset[str]:
    from .parser import _keywords_of_grammar

    return _keywords_of_grammar()


def _walk(value: Any, ref: ir.Ref, d: Definition) -> Any:
    """``value`` followed along the ref's steps (fields of data objects, items of lists)."""
    at = ref.name
    for i, step in enumerate(ref.steps):
        if isinstance(step, int):
            if not isinstance(value, list):
                raise NameError_(f"`{at}` is {_a(value)}: it has no items, so `[{step}]` names nothing", ref.span)
            if step >= len(value):
                n = len(value)
                raise NameError_(f"`{at}` has {n} item{'' if n == 1 else 's'}: there is no item [{step}]", ref.span)
            value = value[step]
        else:
            if not isinstance(value, dict):
                raise NameError_(f"`{at}` is {_a(value)}: it has no fields, so `{step}` names nothing", ref.span)
            if step not in value:
                close = difflib.get_close_matches(step, [k for k in value if isinstance(k, str)], n=1)
                hint = f" (did you mean `{close[0]}`?)" if close else ""
                where = f" in {d.path}" if isinstance(d, ir.DataImport) else ""
                raise NameError_(f"`{at}` has no key {json.dumps(step, ensure_ascii=False)}{where}{hint}", ref.span)
            value = value[step]
        at = ir.Ref(name=ref.name, steps=ref.steps[: i + 1]).text()
    return value


def _as_literal(value: Any, ref: ir.Ref) -> Any:
    """A value that a rule can hold: a JSON scalar or a list of them (no objects)."""
    if isinstance(value, dict):
        keys = [k for k in value if isinstance(k, str)][:3]
        example = f" (such as `{ir.Ref(name=ref.name, steps=(*ref.steps, keys[0])).text()}`)" if keys else ""
        raise NameError_(
            f"`{ref.text()}` is an object: a value in a rule is a string, number, boolean, null or a list of "
            f"them; name one of its fields{example}",
            ref.span,
        )
    try:
        check_json_value(value)
    except ValueError as e:
        raise NameError_(f"`{ref.text()}`: {e}", ref.span) from None
    except RecursionError:
        raise NameError_(f"`{ref.text()}`: value is nested too deeply", ref.span) from None
    problem = surrogate_problem(value)
    if problem is not None:
        raise NameError_(f"`{ref.text()}`: {problem}", ref.span)
    return value


def _a(value: Any) -> str:
    kind = json_type(value)
    return "null" if kind == "null" else ("an " if kind[0] in "aeiou" else "a ") + kind


# --- conditions ---------------------------------------------------------------------------

_WANTS = {"in": "list", "not_in": "list", "starts_with": "string", "ends_with": "string", "regex": "string"}
_OP_WORDS = {"in": "in", "not_in": "not in", "starts_with": "starts_with", "ends_with": "ends_with", "regex": "matches"}


def _check_binding(names: Names, var: str, span: ir.Span, bound: tuple[str, ...], file: str, what: str) -> None:
    """A name bound by `every`/`some` (or a `def` parameter) names one thing only: not a path
    root, not a name bound around it, not a `let`/`import data` name."""
    if var in PATH_ROOTS:
        raise NameError_(f"`{var}` is a path root: {what} may not shadow it (choose another name)", span)
    if var in KEYWORD_VALUES:
        raise NameError_(f"`{var}` is a keyword: choose another name", span)
    if var in bound:
        raise NameError_(f"`{var}` is already bound around this: {what} may not shadow it (choose another name)", span)
    entry = names.defined.get(var)
    if entry is not None and entry.file in names.visible(file):
        where = names.prog.rule_name(entry.definition.name_span)
        raise NameError_(f"`{var}` is already defined at {where}: {what} may not shadow it (choose another name)", span)


Stack = tuple[str, ...]  # the predicates being inlined, outermost first


def _resolve_condition(
    names: Names, c: ir.Condition, file: str, bound: tuple[str, ...] = (), stack: Stack = ()
) -> ir.Condition:
    """``c`` with every name replaced by its value and every call by its predicate's block
    (NameError_ at the first misuse). ``bound``: the names bound around ``c``."""
    if isinstance(c, ir.Call):
        return _inline(names, c, file, bound, stack)
    if isinstance(c, ir.Quantifier):
        _check_binding(names, c.var, c.var_span, bound, file, f"the name of `{c.kind}`")
        _check_root(c.path, bound)
        body = _resolve_condition(names, c.body, file, (*bound, c.var), stack)
        return c if body is c.body else c.model_copy(update={"body": body})
    if isinstance(c, ir.Compare):
        if not ir.has_refs(c.value):
            return c
        for ref in _refs(c.value):
            if ref.name in bound:
                raise NameError_(
                    f"`{ref.name}` stands for a path here (bound by every/some or a parameter), and the right of "
                    "a comparison is a value: plr never compares two paths",
                    ref.span,
                )
        value = names.literal(c.value, file)
        want = _WANTS.get(c.op)
        if want is not None and json_type(value) != want and isinstance(c.value, ir.Ref):
            raise NameError_(
                f"`{_OP_WORDS[c.op]}` takes a {want}, and `{c.value.text()}` is {_a(value)}", c.value.span
            )
        return c.model_copy(update={"value": value})
    if isinstance(c, (ir.And, ir.Or)):
        items = [_resolve_condition(names, x, file, bound, stack) for x in c.items]
        if all(a is b for a, b in zip(items, c.items)):
            return c  # nothing named inside: no copy (compile time stays what it was)
        if isinstance(c.items[0], ir.Call) and type(items[0]) is type(c):
            # an inlined block first in an `and` (`or`) joins it, as plr reads `(a and b) and c`:
            # the JSON is then one that plr text says (decompile stays exact)
            items = [*items[0].items, *items[1:]]  # type: ignore[union-attr]
        return c.model_copy(update={"items": tuple(items)})
    item = _resolve_condition(names, c.item, file, bound, stack)
    return c if item is c.item else c.model_copy(update={"item": item})


def _refs(value: Any) -> list[ir.Ref]:
    if isinstance(value, ir.Ref):
        return [value]
    return [r for v in value for r in _refs(v)] if isinstance(value, (list, tuple)) else []


def _check_root(path: ir.Path, bound: tuple[str, ...]) -> None:
    """A path given to a predicate or a quantifier starts at a root or at a name bound around it."""
    if path.root in PATH_ROOTS or path.root in bound:
        if path.root in PATH_ROOTS and path.root != "args" and path.steps:
            raise NameError_(f"`{path.root}` is a single value: it has no fields or items (write `{path.root}`)", path.span)
        return
    close = difflib.get_close_matches(path.root, [*PATH_ROOTS, *bound], n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    names = f", or a name bound around it ({', '.join(bound)})" if bound else ""
    raise NameError_(
        f"unknown path root `{path.root}`{hint}: a path starts with args, identity, session, server, tool or "
        f"approved{names}",
        path.span,
    )


def _inline(names: Names, call: ir.Call, file: str, bound: tuple[str, ...], stack: Stack) -> ir.Condition:
    """The block of the called predicate, its parameters replaced by the call's paths."""
    entry = names._lookup(ir.Ref(name=call.name, span=call.name_span), file, "predicate")
    d = entry.definition
    if not isinstance(d, ir.Def):
        kind = "let" if isinstance(d, ir.Let) else "import data"
        raise NameError_(
            f"`{call.name}` is a value ({kind}), not a predicate: compare it, as in `args.x == {call.name}`",
            call.name_span,
        )
    if d.name in stack:
        cycle = (*stack[stack.index(d.name) :], d.name)
        raise NameError_(f"a predicate may not call itself: {' -> '.join(cycle)}", call.name_span, cycle)
    if len(call.args) != len(d.params):
        want = f"{len(d.params)} path" + ("" if len(d.params) == 1 else "s")
        params = f" ({', '.join(d.params)})" if d.params else ""
        raise NameError_(f"`{d.name}` takes {want}{params}, and this call gives {len(call.args)}", call.span)
    for arg in call.args:
        _check_root(arg, bound)
    if d.name in names.broken:
        raise NameError_("", call.span)  # its own error is reported at the predicate
    body = names._defs.get(id(d))
    if body is None:
        body = _resolve_condition(names, d.body, entry.file, d.params, (*stack, d.name))
        names._defs[id(d)] = body
    mapping = dict(zip(d.params, call.args, strict=True))
    taken = set(bound) | {a.root for a in call.args}
    inlined = _substitute(body, mapping, taken, call)
    if isinstance(inlined, ir.And):
        items = list(inlined.items)
        while items and isinstance(items[0], ir.And):  # `{ (a and b) c }` is `a and b and c` (see below)
            items = [*items[0].items, *items[1:]]
        if len(items) == 1:
            return items[0]  # a block of one condition is that condition
        inlined = inlined.model_copy(update={"items": tuple(items)})
    return inlined


def _substitute(c: ir.Condition, mapping: dict[str, ir.Path], taken: set[str], call: ir.Call) -> ir.Condition:
    """``c`` with each path rooted at a key of ``mapping`` rebased on its value; a quantifier
    whose name is in ``taken`` (bound at the call, or a root of a path given to it) is renamed."""
    if isinstance(c, ir.Compare):
        if c.path.root not in mapping:
            return c
        return c.model_copy(update={"path": _rebase(c.path, mapping[c.path.root], call)})
    if isinstance(c, ir.Quantifier):
        path = _rebase(c.path, mapping[c.path.root], call) if c.path.root in mapping else c.path
        inner = {k: v for k, v in mapping.items() if k != c.var}
        var = c.var
        if var in taken:
            inside = _bound_in(c.body)
            n = 2
            while f"{c.var}{n}" in taken or f"{c.var}{n}" in inside:
                n += 1
            var = f"{c.var}{n}"
            inner[c.var] = ir.Path(root=var)
        body = _substitute(c.body, inner, taken | {var}, call)
        return c.model_copy(update={"var": var, "path": path, "body": body})
    if isinstance(c, (ir.And, ir.Or)):
        return c.model_copy(update={"items": tuple(_substitute(x, mapping, taken, call) for x in c.items)})
    assert isinstance(c, ir.Not)  # INVARIANT: calls were inlined before substitution
    return c.model_copy(update={"item": _substitute(c.item, mapping, taken, call)})


def _bound_in(c: ir.Condition) -> set[str]:
    """Every name a quantifier inside ``c`` binds."""
    if isinstance(c, ir.Quantifier):
        return {c.var} | _bound_in(c.body)
    if isinstance(c, (ir.And, ir.Or)):
        return set().union(*(_bound_in(x) for x in c.items))
    if isinstance(c, ir.Not):
        return _bound_in(c.item)
    return set()


def _rebase(path: ir.Path, on: ir.Path, call: ir.Call) -> ir.Path:
    if path.steps and on.root in PATH_ROOTS and on.root != "args":
        raise NameError_(
            f"`{call.name}` reads `{path.text()}` of its parameter, and `{on.text()}` is a single value with no "
            "fields or items",
            on.span,
        )
    return ir.Path(root=on.root, steps=(*on.steps, *path.steps), span=path.span)


def resolve_names(prog: Program) -> Names:
    """Check every definition and replace the names in each rule's condition by their values.

    A rule with a misused name gets no condition (the error is reported and nothing compiles)."""
    names = Names(prog)
    names.collect()
    _check_defs(names)
    in_cycles: set[str] = set()
    for module in prog.modules:
        for let in module.lets:
            if let.name in in_cycles or not ir.has_refs(let.value):
                continue
            if names.defined.get(let.name, _Entry(let, "")).definition is not let:
                continue
            try:  # report a bad `let` at its definition even when nothing uses it
                names.value(ir.Ref(name=let.name, span=let.name_span), module.file)
            except NameError_ as e:
                prog.error(e.message, e.span)
                in_cycles.update(e.cycle)  # one report per cycle
    return names


# Inlining copies a predicate's block into every call: a chain of predicates that each call the
# next twice doubles at each step. A block (or rule) that would grow past this many conditions
# is an error instead of a compile that takes minutes and gigabytes.
MAX_INLINED = 100_000


def _expanded_size(names: Names, c: ir.Condition, sizes: dict[str, int], stack: Stack = ()) -> int:
    """How many conditions ``c`` becomes once every call in it is inlined (memoized per def);
    NameError_ at a call that closes a cycle."""
    if isinstance(c, ir.Call):
        entry = names.defined.get(c.name)
        d = entry.definition if entry is not None else None
        if not isinstance(d, ir.Def) or d.name in names.broken:
            return 1
        if d.name in stack:
            cycle = (*stack[stack.index(d.name) :], d.name)
            raise NameError_(f"a predicate may not call itself: {' -> '.join(cycle)}", c.name_span, cycle)
        if d.name not in sizes:
            sizes[d.name] = _expanded_size(names, d.body, sizes, (*stack, d.name))
        return sizes[d.name]
    if isinstance(c, (ir.And, ir.Or)):
        return 1 + sum(_expanded_size(names, x, sizes, stack) for x in c.items)
    if isinstance(c, ir.Not):
        return 1 + _expanded_size(names, c.item, sizes, stack)
    if isinstance(c, ir.Quantifier):
        return 1 + _expanded_size(names, c.body, sizes, stack)
    return 1


def _check_defs(names: Names) -> None:
    """Each predicate on its own, called or not: its parameters, and its block resolved with the
    parameters bound (an error there is reported once, here, not at every call)."""
    prog = names.prog
    in_cycles: set[str] = set()
    for module in prog.modules:
        for d in module.defs:
            if names.defined.get(d.name, _Entry(d, "")).definition is not d:
                continue
            try:
                size = _expanded_size(names, d.body, names._sizes, (d.name,))
                if size > MAX_INLINED and d.name not in in_cycles:
                    raise NameError_(
                        f"`{d.name}` grows to more than {MAX_INLINED} conditions once the predicates it calls are "
                        "inlined: call fewer of them, or fewer times",
                        d.name_span,
                    )
                seen: list[str] = []
                for param, span in zip(d.params, d.param_spans, strict=True):
                    if param in seen:
                        raise NameError_(f"`{param}` is a parameter of `{d.name}` twice", span)
                    _check_binding(names, param, span, (), module.file, "a parameter")
                    seen.append(param)
                if id(d) not in names._defs:
                    names._defs[id(d)] = _resolve_condition(names, d.body, module.file, d.params, (d.name,))
                _check_roots(names._defs[id(d)], d.params)
            except NameError_ as e:
                names.broken.add(d.name)
                if e.message and not (set(e.cycle) & in_cycles):
                    prog.error(e.message, e.span)
                in_cycles.update(e.cycle)
            except RecursionError:
                names.broken.add(d.name)
                prog.error("the predicate is nested too deeply", d.span)


def _check_roots(c: ir.Condition, bound: tuple[str, ...]) -> None:
    """Every path of a resolved block starts at a root or a name bound around it."""
    if isinstance(c, ir.Compare):
        _check_root(c.path, bound)
    elif isinstance(c, ir.Quantifier):
        _check_root(c.path, bound)
        _check_roots(c.body, (*bound, c.var))
    elif isinstance(c, (ir.And, ir.Or)):
        for x in c.items:
            _check_roots(x, bound)
    elif isinstance(c, ir.Not):
        _check_roots(c.item, bound)


def resolved_rule(names: Names, rule: ir.Rule, file: str) -> ir.Rule:
    """``rule`` with no names left in its condition (None, with an error reported, on a misuse)."""
    if rule.condition is None:
        return rule
    try:
        if _expanded_size(names, rule.condition, names._sizes) > MAX_INLINED:
            raise NameError_(
                f"this rule grows to more than {MAX_INLINED} conditions once its predicates are inlined",
                rule.span,
            )
        cond = _resolve_condition(names, rule.condition, file)
    except NameError_ as e:
        if e.message:
            names.prog.error(e.message, e.span)
        return rule.model_copy(update={"condition": None, "guard": "always" if rule.kind == "limit" else rule.guard})
    except RecursionError:
        names.prog.error("condition is nested too deeply", rule.span)
        return rule.model_copy(update={"condition": None})
    return rule if cond is rule.condition else rule.model_copy(update={"condition": cond})
