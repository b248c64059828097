"""Parse tree → IR (a Lark Transformer), one ``Module`` per file.

Lowering is structural: it decodes literals, turns units into seconds and attaches spans.
Problems that need the whole program (unknown tools, bad regexes, duplicate defaults) are
the business of ``checks``; problems only visible here are collected, never raised one by one.
"""

from __future__ import annotations

import json
import math
import re
from functools import partial
from typing import Any, Callable

from lark import Token, Transformer, Tree, v_args
from lark.tree import Meta

from . import ir
from .errors import Diagnostic, PlrError, line_of
from .parser import parse, parse_inline
from .vocab import MAX_LIMIT_COUNT

CMP_OPS = {"==": "eq", "!=": "neq", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
# A string literal with no escape and no control character is its own text between the quotes
# (what json.loads would return): most strings of a policy, decoded without the JSON reader.
_PLAIN_STRING = re.compile(r'"[^"\\\x00-\x1f]*"')
# A JSON escape in a string: `\uXXXX` or a backslash and one character.
_JSON_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|.)", re.DOTALL)
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400}


def lower_source(text: str, file: str = "<input>", path: str = "") -> ir.Module:
    """Parse and lower one file; raise PlrError with every problem found.

    The lowering functions run inside the parse (no tree is built, see ``parse_inline``) and
    see what they would see walking the tree; where that parse cannot vouch for the result
    (a literal the tree checks, a tree too tall to walk) the tree is parsed and walked."""
    lowerer = _Lower(text, file)
    statements = parse_inline(text, file, lowerer.actions(), partial(ir.Span, file))
    if statements is None:
        return lower_tree(parse(text, file), text, file, path)
    return lowerer.module(statements, path)


def lower_tree(tree: Tree, text: str, file: str, path: str = "") -> ir.Module:
    lowerer = _Lower(text, file)
    return lowerer.module(lowerer.walk(tree), path)


_set = object.__setattr__
_new = object.__new__
_REQUIRED = object()  # a required field's place in a template
_Template = tuple[dict[str, Any], frozenset[str], frozenset[str], tuple[str, ...]]
_TEMPLATES: dict[type, _Template | None] = {}


def _template(cls: type[Any]) -> _Template | None:
    """(every field in declaration order with its default, or _REQUIRED; the required fields;
    all fields; the fields whose default is mutable) of a model, or None when
    ``model_construct`` does more than fill defaults (a default factory, private attributes,
    a post-init hook)."""
    if cls not in _TEMPLATES:
        fields = cls.model_fields
        simple = (
            not cls.__private_attributes__
            and not cls.__pydantic_post_init__
            and all(f.default_factory is None for f in fields.values())
        )
        _TEMPLATES[cls] = (
            (
                {name: _REQUIRED if f.is_required() else f.default for name, f in fields.items()},
                frozenset(name for name, f in fields.items() if f.is_required()),
                frozenset(fields),
                tuple(n for n, f in fields.items() if not f.is_required() and isinstance(f.default, (list, dict, set))),
            )
            if simple
            else None
        )
    return _TEMPLATES[cls]


def construct(cls: type[Any], **values: Any) -> Any:
    """``cls.model_construct(**values)`` with field names, as pydantic's does it for these
    models (defaults filled, fields in declaration order, the given names as the fields set, no
    validation), without its per-call handling of aliases and extras. For values that are
    already what validation would make of them (IR from the grammar's own tokens, policy models
    from checked IR) it is the model validation builds, at a fraction of the cost. Unknown or
    missing fields are an error, not a silent default."""
    template = _TEMPLATES.get(cls) or _template(cls)
    if template is None:
        return cls.model_construct(**values)
    order, required, known, mutable = template
    keys = values.keys()
    if not (keys >= required and keys <= known):
        raise TypeError(f"{cls.__name__}: unknown or missing fields in {sorted(values)}")
    fields = order.copy()
    fields.update(values)  # in place: the declaration order stays
    if mutable:
        for name in mutable:  # a default list is each model's own, as pydantic copies it
            if name not in values:
                fields[name] = order[name].copy()
    node = _new(cls)
    _set(node, "__dict__", fields)
    _set(node, "__pydantic_fields_set__", set(keys))
    _set(node, "__pydantic_extra__", None)
    _set(node, "__pydantic_private__", None)
    return node


def duration_seconds(text: str) -> int:
    return int(text[:-1]) * UNIT_SECONDS[text[-1]]


class _Lower(Transformer):  # type: ignore[type-arg]
    def __init__(self, text: str, file: str) -> None:
        super().__init__(visit_tokens=False)
        self.text = text
        self.file = file
        self.diagnostics: list[Diagnostic] = []

    def walk(self, tree: Tree) -> Any:
        """``transform`` without Lark's per-node dispatch: on every node Lark's ``v_args``
        descriptor builds a fresh wrapper (``functools.update_wrapper``) and the call goes
        through three more layers. Same post-order, same methods, same results."""
        children = [self.walk(c) if isinstance(c, Tree) else c for c in tree.children]
        entry = _DISPATCH.get(tree.data)
        if entry is None:
            return self.__default__(tree.data, children, tree.meta)
        fn, with_meta = entry
        return fn(self, tree.meta, children) if with_meta else fn(self, children)

    def actions(self) -> dict[str, tuple[Callable[..., Any], bool]]:
        """rule name -> (this lowerer's method, takes the node's place): for ``parse_inline``."""
        return {name: (fn.__get__(self), with_meta) for name, (fn, with_meta) in _DISPATCH.items()}

    def module(self, statements: list[Any], path: str) -> ir.Module:
        if self.diagnostics:
            raise PlrError(self.diagnostics)
        return construct(ir.Module, file=self.file, path=path, statements=tuple(statements))

    # -- helpers --------------------------------------------------------------------------
    def span(self, where: Meta | Token | ir.Span | None) -> ir.Span:
        if where.__class__ is ir.Span:  # the inline parse passes the node's place as a Span
            return where  # type: ignore[return-value]
        if where is None:
            return ir.Span(file=self.file, line=0, col=0)
        if isinstance(where, Token):
            return ir.Span(
                file=self.file,
                line=where.line or 0,
                col=where.column or 0,
                end_line=where.end_line or 0,
                end_col=where.end_column or 0,
            )
        if getattr(where, "empty", True):
            return ir.Span(file=self.file, line=0, col=0)
        return ir.Span(
            file=self.file, line=where.line, col=where.column, end_line=where.end_line, end_col=where.end_column
        )

    def error(self, message: str, where: Meta | Token | ir.Span | None) -> None:
        span = where if isinstance(where, ir.Span) else self.span(where)
        width = max(1, span.end_col - span.col) if span.end_line == span.line else 1
        self.diagnostics.append(
            Diagnostic("error", message, self.file, span.line, span.col, line_of(self.text, span.line), width)
        )

    def text_of(self, tok: Token) -> str:
        if _PLAIN_STRING.fullmatch(tok):
            return tok[1:-1]
        try:
            value = json.loads(str(tok))
        except (ValueError, RecursionError):
            self.error("invalid string: only JSON escapes are allowed (\\\" \\\\ \\n \\t \\uXXXX)", tok)
            return str(tok)[1:-1]
        return str(value)

    def number_of(self, tok: Token) -> int | float:
        text = str(tok)
        if any(c in text for c in ".eE"):
            value = float(text)
            if not math.isfinite(value):
                self.error(f"number {text} is too large", tok)
                return 0
            return value
        if len(text) > 4000:
            self.error("number has too many digits", tok)
            return 0
        return int(text)

    def positive_int(self, tok: Token, what: str) -> int:
        value = self.number_of(tok)
        if not isinstance(value, int):
            self.error(f"{what} must be a whole number, got {tok}", tok)
            return 1
        return value

    # -- statements -----------------------------------------------------------------------
    def start(self, items: list[Any]) -> list[Any]:
        return items

    @v_args(meta=True)
    def package_stmt(self, meta: Meta, names: list[Token]) -> ir.Package:
        return construct(ir.Package, name=".".join(str(n) for n in names), span=self.span(meta))

    @v_args(meta=True)
    def import_stmt(self, meta: Meta, items: list[Token]) -> ir.Import:
        return construct(ir.Import, path=self.text_of(items[0]), span=self.span(items[0]))

    @v_args(meta=True)
    def data_import(self, meta: Meta, items: list[Token]) -> ir.DataImport:
        file_tok, _as, name_tok = items
        return construct(
            ir.DataImport, path=self.text_of(file_tok), name=str(name_tok), span=self.span(file_tok), name_span=self.span(name_tok)
        )

    @v_args(meta=True)
    def let_stmt(self, meta: Meta, items: list[Any]) -> ir.Let:
        name_tok, value = items
        return construct(ir.Let, name=str(name_tok), value=value, span=self.span(meta), name_span=self.span(name_tok))

    @v_args(meta=True)
    def default_stmt(self, meta: Meta, items: list[Any]) -> ir.Default:
        return construct(ir.Default, effect=items[0], span=self.span(meta))

    def effect_word(self, items: list[Token]) -> str:
        return str(items[0])

    def risk(self, items: list[Token]) -> str:
        return str(items[0])

    def unit_word(self, items: list[Token]) -> int:
        return UNIT_SECONDS[str(items[0])]

    def scope(self, items: list[Token]) -> str:
        return str(items[0])

    def effect(self, items: list[Token]) -> str:
        return str(items[0])

    def code(self, items: list[Token]) -> str:
        return str(items[0])

    def context_key(self, items: list[Token]) -> str:
        return str(items[0])

    @v_args(meta=True)
    def server_block(self, meta: Meta, items: list[Any]) -> ir.Catalogue:
        name = self.text_of(items[1])  # items[0] is the SERVER keyword token
        return construct(ir.Catalogue, server=name, tools=tuple(items[2:]), span=self.span(meta))

    @v_args(meta=True)
    def catalog_entry(self, meta: Meta, items: list[Any]) -> ir.CatalogueTool:
        return construct(
            ir.CatalogueTool, name=self.text_of(items[0]), risk=items[1], description=items[2], span=self.span(items[0])
        )

    # -- rules ----------------------------------------------------------------------------
    def reason(self, items: list[Token]) -> str:
        return self.text_of(items[0])

    def description(self, items: list[Token]) -> str:
        return self.text_of(items[0])

    @v_args(meta=True)
    def allow_rule(self, meta: Meta, items: list[Any]) -> ir.Rule:
        selector, cond, reason, description = items
        guard = "if" if cond is not None else "always"
        return construct(
            ir.Rule, kind="allow", selector=selector, guard=guard, condition=cond, reason=reason, description=description,
            span=self.span(meta),
        )  # fmt: skip

    @v_args(meta=True)
    def deny_rule(self, meta: Meta, items: list[Any]) -> ir.Rule:
        selector, guard, reason, description = items
        kind, cond = guard if guard is not None else ("always", None)
        return construct(
            ir.Rule, kind="deny", selector=selector, guard=kind, condition=cond, reason=reason, description=description,
            span=self.span(meta),
        )  # fmt: skip

    def guard_if(self, items: list[Any]) -> tuple[str, ir.Condition]:
        return ("if", items[0])

    def guard_unless(self, items: list[Any]) -> tuple[str, ir.Condition]:
        return ("unless", items[0])

    @v_args(meta=True)
    def hide_rule(self, meta: Meta, items: list[Any]) -> ir.Rule:
        selector, reason, description = items
        return construct(ir.Rule, kind="hide", selector=selector, reason=reason, description=description, span=self.span(meta))

    @v_args(meta=True)
    def limit_rule(self, meta: Meta, items: list[Any]) -> ir.Rule:
        selector, count_tok, of, window, scope, refund, cond, reason, description = items
        if of is None:
            count: int | float = self.positive_int(count_tok, "a limit's count")
        else:  # a spend cap: any positive amount (`to 12.50 of args.amount`)
            count = self.number_of(count_tok)
            if count > MAX_LIMIT_COUNT:  # a whole number past it is the parser's; `1e300` is not
                self.error(
                    f"a spend cap's amount must be at most {MAX_LIMIT_COUNT} (2^53 - 1, the largest whole "
                    f"number a JSON number carries exactly: the compiled policy's `max` stops there), got {count_tok}",
                    count_tok,
                )  # fmt: skip
        lim_span = self.span(count_tok)
        calendar = tz = None
        if isinstance(window, tuple):
            _, calendar, tz = window
            window = ir.CALENDAR_SECONDS[calendar]
        limit = construct(
            ir.Limit, max=count, window=window, per=scope or "session", of=of, calendar=calendar, tz=tz,
            refund=refund is not None, span=lim_span,
        )  # fmt: skip
        guard = "if" if cond is not None else "always"
        return construct(
            ir.Rule, kind="limit", selector=selector, limit=limit, guard=guard, condition=cond, reason=reason,
            description=description, span=self.span(meta),
        )  # fmt: skip

    def limit_of(self, items: list[Any]) -> ir.Path:
        return items[0]

    def refund(self, items: list[Any]) -> bool:
        return True

    def cal_unit(self, items: list[Token]) -> str:
        return str(items[0])

    @v_args(meta=True)
    def calendar_window(self, meta: Meta, items: list[Any]) -> tuple[str, str, str | None]:
        unit, tz_tok = items
        tz = None
        if tz_tok is not None:
            tz = self.text_of(tz_tok)
            from .engine.calendar import check_zone

            problem = check_zone(tz)
            if problem is not None:
                self.error(problem, tz_tok)
                tz = None
        return ("calendar", unit, tz)

    def window(self, items: list[Any]) -> int | tuple[str, str, str | None]:
        item = items[0]
        if isinstance(item, tuple):
            return item
        if isinstance(item, Token):
            return duration_seconds(str(item))
        return int(item)

    @v_args(meta=True)
    def sel_tool(self, meta: Meta, items: list[Token]) -> ir.Selector:
        return construct(ir.Selector, kind="tool", names=(self.text_of(items[0]),), span=self.span(meta))

    @v_args(meta=True)
    def sel_list(self, meta: Meta, items: list[Any]) -> ir.Selector:
        names = tuple(items[0])
        if not names:
            self.error("an empty tool list selects nothing: name at least one tool", meta)
        return construct(ir.Selector, kind="list", names=names, span=self.span(meta))

    @v_args(meta=True)
    def sel_glob(self, meta: Meta, items: list[Token]) -> ir.Selector:
        return construct(ir.Selector, kind="glob", pattern=self.text_of(items[0]), span=self.span(meta))

    @v_args(meta=True)
    def sel_class(self, meta: Meta, items: list[Any]) -> ir.Selector:
        return construct(ir.Selector, kind="class", risk=items[0], span=self.span(meta))

    @v_args(meta=True)
    def sel_all(self, meta: Meta, items: list[Any]) -> ir.Selector:
        return construct(ir.Selector, kind="all", span=self.span(meta))

    def string_list(self, items: list[Token | None]) -> list[str]:
        return [self.text_of(t) for t in items]

    # -- conditions -----------------------------------------------------------------------
    @v_args(meta=True)
    def block(self, meta: Meta, items: list[ir.Condition]) -> ir.Condition:
        return construct(ir.And, items=tuple(items), block=True, span=self.span(meta))

    @v_args(meta=True)
    def or_(self, meta: Meta, items: list[ir.Condition]) -> ir.Or:
        left, right = items
        parts = (*left.items, right) if isinstance(left, ir.Or) else (left, right)
        return construct(ir.Or, items=parts, span=self.span(meta))

    @v_args(meta=True)
    def and_(self, meta: Meta, items: list[ir.Condition]) -> ir.And:
        left, right = items
        parts = (*left.items, right) if isinstance(left, ir.And) and not left.block else (left, right)
        return construct(ir.And, items=parts, span=self.span(meta))

    @v_args(meta=True)
    def not_(self, meta: Meta, items: list[ir.Condition]) -> ir.Not:
        return construct(ir.Not, item=items[0], span=self.span(meta))

    @v_args(meta=True)
    def def_stmt(self, meta: Meta, items: list[Any]) -> ir.Def:
        name, *params, body = items
        toks = [t for t in params if t is not None]
        return construct(
            ir.Def, name=str(name),
            params=tuple(str(t) for t in toks),
            body=body,
            span=self.span(meta),
            name_span=self.span(name),
            param_spans=tuple(self.span(t) for t in toks),
        )

    @v_args(meta=True)
    def def_body(self, meta: Meta, items: list[ir.Condition]) -> ir.And:
        return construct(ir.And, items=tuple(items), block=True, span=self.span(meta))

    @v_args(meta=True)
    def pred_call(self, meta: Meta, items: list[Any]) -> ir.Call:
        name, *args = items
        return construct(
            ir.Call, name=str(name), args=tuple(a for a in args if a is not None), span=self.span(meta), name_span=self.span(name)
        )

    @v_args(meta=True)
    def quantifier(self, meta: Meta, items: list[Any]) -> ir.Quantifier:
        kind, var, path, body = items
        return construct(
            ir.Quantifier, kind=kind, var=str(var), path=path, body=body, span=self.span(meta), var_span=self.span(var)
        )

    def quant_word(self, items: list[Token]) -> str:
        return str(items[0])

    @v_args(meta=True)
    def quant_body(self, meta: Meta, items: list[ir.Condition]) -> ir.And:
        return construct(ir.And, items=tuple(items), block=True, span=self.span(meta))

    @v_args(meta=True)
    def path(self, meta: Meta, items: list[Token]) -> ir.Path:
        return self._path_of(meta, items)

    def _path_of(self, meta: Meta, items: list[Token]) -> ir.Path:
        root = str(items[0])
        steps: list[str | int] = []
        for tok in items[1:]:
            if tok.type == "NAME":
                steps.append(str(tok))
            elif tok.type == "STRING":
                steps.append(self.text_of(tok))
            else:
                index = self.number_of(tok)
                if not isinstance(index, int) or index < 0:
                    self.error(f"a list index must be a whole number >= 0, got {tok}", tok)
                    index = 0
                steps.append(index)
        return construct(ir.Path, root=root, steps=tuple(steps), span=self.span(meta))

    @v_args(meta=True)
    def ref(self, meta: Meta, items: list[Token]) -> ir.Ref:
        path = self._path_of(meta, items)
        return construct(ir.Ref, name=path.root, steps=path.steps, span=path.span)

    def string_value(self, item: Token | ir.Ref) -> str | ir.Ref:
        """A string literal's text, or the name standing for one (checked once resolved)."""
        return item if isinstance(item, ir.Ref) else self.text_of(item)

    def fn_call(self, items: list[Any]) -> tuple[tuple[Token, ...], ir.Path]:
        """``f(g(path))`` as (functions innermost first, path); checked in ``_operand``."""
        inner = items[1]
        chain, path = inner if isinstance(inner, tuple) else ((), inner)
        return ((*chain, items[0]), path)

    def _operand(self, operand: Any) -> tuple[str | None, tuple[str, ...], ir.Path]:
        """(count/len or None, value functions in order, path): `count`/`len` give a number,
        so they apply last, and `count` counts the values at a path, not a string's."""
        chain, path = operand if isinstance(operand, tuple) else ((), operand)
        names = [str(t) for t in chain]
        for i, tok in enumerate(chain):
            name = str(tok)
            if name in ("count", "len") and i < len(chain) - 1:
                outer = names[i + 1]
                self.error(f"{name}(...) is a number, and {outer}(...) takes a string: write {name}(...) outermost", chain[i + 1])
            elif name == "count" and i > 0:
                self.error(
                    f"count(...) counts the values at a path, and {names[i - 1]}(...) gives one string: "
                    f"write len(...) for its length, or count({path.text()})",
                    tok,
                )  # fmt: skip
        fn = names[-1] if names and names[-1] in ("count", "len") else None
        fns = tuple(n for n in names if n not in ("count", "len"))
        return fn, fns, path

    def _leaf(self, meta: Meta, operand: Any, op: str, value: Any = None, has_value: bool = True) -> ir.Compare:
        fn, fns, path = self._operand(operand)
        fields: dict[str, Any] = {"path": path, "op": op, "fn": fn, "fns": fns, "span": self.span(meta)}
        if has_value:
            fields["value"] = value
        return construct(ir.Compare, **fields)

    @v_args(meta=True)
    def cmp(self, meta: Meta, items: list[Any]) -> ir.Compare:
        operand, op, value = items
        return self._leaf(meta, operand, CMP_OPS[str(op)], value)

    @v_args(meta=True)
    def in_(self, meta: Meta, items: list[Any]) -> ir.Compare:
        return self._leaf(meta, items[0], "in", items[1])

    @v_args(meta=True)
    def not_in(self, meta: Meta, items: list[Any]) -> ir.Compare:
        return self._leaf(meta, items[0], "not_in", items[2])

    @v_args(meta=True)
    def contains(self, meta: Meta, items: list[Any]) -> ir.Compare:
        return self._leaf(meta, items[0], "contains", items[1])

    @v_args(meta=True)
    def starts_with(self, meta: Meta, items: list[Any]) -> ir.Compare:
        return self._leaf(meta, items[0], "starts_with", self.string_value(items[1]))

    @v_args(meta=True)
    def ends_with(self, meta: Meta, items: list[Any]) -> ir.Compare:
        return self._leaf(meta, items[0], "ends_with", self.string_value(items[1]))

    @v_args(meta=True)
    def matches(self, meta: Meta, items: list[Any]) -> ir.Compare:
        pattern = items[1]
        if isinstance(pattern, Token) and "\\" in pattern:
            self._check_backspace(pattern)
        return self._leaf(meta, items[0], "regex", self.string_value(pattern))

    def _check_backspace(self, tok: Token) -> None:
        r"""`"\bdrop\b"` in a pattern: JSON reads `\b` as a backspace (U+0008), so the pattern looks
        for one and never matches the word boundary its author meant: an error at the escape.
        `\u0008` is refused too: `plr fmt` writes a backspace as `\b`, and RE2 spells one `\\x08`,
        which survives every rewrite (docs/language.md, "Lexical structure"). Inside a character
        class (`"[\u0000-\b]"`, a range of control characters) a backspace is itself, as the JSON
        loader accepts it there: `plr decompile` of such a policy compiles again."""
        from .regex import outside_classes

        try:
            decoded = self.string_value(tok)
        except Exception:  # noqa: BLE001 - the string's own error is reported where it is read
            decoded = None
        if isinstance(decoded, str) and "\x08" not in outside_classes(decoded):
            return
        for m in _JSON_ESCAPE.finditer(tok):
            escape = m.group()
            if escape == "\\b":
                message = (
                    "`\\b` in a string is a backspace (U+0008), not a word boundary: strings are JSON strings, "
                    "so this pattern looks for a backspace character and never matches a word boundary. Write "
                    "`\\\\b` for a word boundary (`\\\\x08` if a backspace is truly meant)"
                )
            elif escape.lower() == "\\u0008":
                message = (
                    f"`{escape}` is a backspace (U+0008): a pattern may not hold one written so (`plr fmt` writes "
                    "it `\\b`, which reads as a word boundary). Write `\\\\x08` to match a backspace, or `\\\\b` "
                    "for a word boundary"
                )
            else:
                continue
            col = (tok.column or 0) + m.start()  # a STRING token never spans lines
            line = tok.line or 0
            self.error(message, ir.Span(file=self.file, line=line, col=col, end_line=line, end_col=col + len(escape)))
            return

    @v_args(meta=True)
    def exists(self, meta: Meta, items: list[Any]) -> ir.Compare:
        return self._leaf(meta, items[0], "exists", has_value=False)

    @v_args(meta=True)
    def missing(self, meta: Meta, items: list[Any]) -> ir.Compare:
        return self._leaf(meta, items[0], "missing", has_value=False)

    @v_args(meta=True)
    def bare(self, meta: Meta, items: list[Any]) -> ir.Compare:
        path: ir.Path = items[0]
        if path.root != "approved" or path.steps:
            self.error(
                f"`{path.text()}` is not a condition on its own: compare it "
                f"(`{path.text()} == \"x\"`) or test it (`{path.text()} exists`)",
                meta,
            )
        return construct(ir.Compare, path=path, op="eq", value=True, span=self.span(meta))

    # -- literals -------------------------------------------------------------------------
    def string(self, items: list[Token]) -> str:
        return self.text_of(items[0])

    def number(self, items: list[Token]) -> int | float:
        return self.number_of(items[0])

    def true(self, items: list[Any]) -> bool:
        return True

    def false(self, items: list[Any]) -> bool:
        return False

    def null(self, items: list[Any]) -> None:
        return None

    def list_lit(self, items: list[Any]) -> list[Any]:
        return list(items)

    def value_list(self, items: list[Any]) -> list[Any]:
        return list(items)

    def object(self, items: list[Any]) -> dict[str, Any]:
        # a repeated key is refused, as the JSON loader refuses it: a test that kept only the last
        # `path` of `{path: "/etc", path: "/tmp"}` would test a call its author did not write
        out: dict[str, Any] = {}
        for key, tok, value in items:
            if key in out:
                self.error(f"key {json.dumps(key)} is repeated in this object: a call's arguments name each key once", tok)
            out[key] = value
        return out

    def pair(self, items: list[Any]) -> tuple[str, Token, Any]:
        key = items[0]
        name = self.text_of(key) if key.type == "STRING" else str(key)
        return (name, key, items[1])

    # -- tests ----------------------------------------------------------------------------
    @v_args(meta=True)
    def test_block(self, meta: Meta, items: list[Any]) -> ir.TestCase:
        steps = tuple(items[1:])
        if not _checks_something(steps):
            # a test whose calls were all commented out would pass and keep CI green proving nothing
            self.error(
                f"test {items[0]} checks nothing: it has no `call` or `visible` step; "
                "write the call it should check, or delete the test",
                items[0],
            )
        return construct(ir.TestCase, name=self.text_of(items[0]), steps=steps, span=self.span(meta))

    @v_args(meta=True)
    def call_step(self, meta: Meta, items: list[Any]) -> ir.CallStep:
        tool_tok, args, approved, expectation = items
        effect, code, reason = expectation
        if reason == "":
            # a substring check: "" is in every reason, so the step would check nothing. The
            # reason is the step's last token, and `""` its only spelling: the caret is there
            end = self.span(meta)
            self.error(
                'reason "" matches every reason: write the text the reason must contain, '
                "or leave `reason` out to check the effect (and code) only",
                ir.Span(file=self.file, line=end.end_line, col=end.end_col - 2, end_line=end.end_line, end_col=end.end_col),
            )
        return construct(
            ir.CallStep, tool=self.text_of(tool_tok),
            args=args,
            approved=approved is not None,
            effect=effect,
            code=code,
            reason=reason,
            span=self.span(meta),
        )

    def approved_flag(self, items: list[Any]) -> bool:
        return True

    def expectation(self, items: list[Any]) -> tuple[str, str | None, str | None]:
        return (items[0], items[1], items[2])

    @v_args(meta=True)
    def context_step(self, meta: Meta, items: list[Any]) -> ir.ContextStep:
        as_tok, key, value = items
        return construct(ir.ContextStep, key=key, value=self.text_of(value), as_=as_tok is not None, span=self.span(meta))

    @v_args(meta=True)
    def repeat_step(self, meta: Meta, items: list[Any]) -> ir.RepeatStep:
        times = self.positive_int(items[0], "repeat's count")
        if times < 1 or times > 100_000:
            self.error("repeat's count must be between 1 and 100000", items[0])
            times = 1
        return construct(ir.RepeatStep, times=times, steps=tuple(items[1:]), span=self.span(meta))

    @v_args(meta=True)
    def after_step(self, meta: Meta, items: list[Token]) -> ir.AfterStep:
        return construct(ir.AfterStep, seconds=duration_seconds(str(items[0])), text=str(items[0]), span=self.span(meta))

    @v_args(meta=True)
    def visible_step(self, meta: Meta, items: list[Any]) -> ir.VisibleStep:
        return construct(ir.VisibleStep, tools=tuple(items[0]), span=self.span(meta))


def _dispatch_table(cls: type) -> dict[str, tuple[Callable[..., Any], bool]]:
    """rule name -> (plain function, takes meta) for every callback of ``cls``."""
    table: dict[str, tuple[Callable[..., Any], bool]] = {}
    for klass in reversed(cls.__mro__):
        if klass in (Transformer, object) or not issubclass(klass, Transformer):
            continue
        for name, attr in vars(klass).items():
            if name.startswith("_") or name in ("walk", "actions", "module"):
                continue
            base = getattr(attr, "base_func", None)  # a v_args(meta=True) wrapper
            if base is not None and getattr(attr, "visit_wrapper", None) is not None:
                table[name] = (base, True)
            elif callable(attr) and not isinstance(attr, (staticmethod, classmethod, type)):
                table[name] = (attr, False)
    return table


_DISPATCH = _dispatch_table(_Lower)


def _checks_something(steps: tuple[Any, ...]) -> bool:
    """Whether test steps hold an assertion: a `call` or a `visible` step (within `repeat` too)."""
    for step in steps:
        if isinstance(step, (ir.CallStep, ir.VisibleStep)):
            return True
        if isinstance(step, ir.RepeatStep) and _checks_something(step.steps):
            return True
    return False
