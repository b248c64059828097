"""Canonical formatting of .plr source (``plr fmt``).

The text is printed from the IR, so the output never depends on how the input was laid out;
the parse tree's positions and the comment tokens are used only to put every comment back
next to the statement it was written beside and to keep deliberate blank lines (at most
one). Rules of the canonical form (docs: language.md, "Formatting"):

* one statement per line, 4-space indent inside ``{ ... }`` blocks, one condition of a
  ``{ ... }`` block per line, ``reason`` on the next line indented once;
* a blank line between groups: where the statement kind changes (package, imports,
  default, server blocks, rules, tests), around multi-line statements, and wherever the
  source had one or more blank lines;
* own-line comments stay before the statement or item that follows them, trailing comments
  stay at the end of the line their code ends up on.

Formatting is idempotent and never changes the compiled policy (both are tested).
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, cast

from lark import Token, Tree

from . import ir
from .errors import PlrError
from .lower import lower_tree
from .parser import parse_with_comments

__all__ = [
    "condition_text",
    "format_module",
    "format_source",
    "is_formatted",
    "literal_text",
    "selector_text",
    "string_text",
    "window_text",
    "limit_window_text",
]

INDENT = "    "
TRAILING_GAP = "  "  # between code and a trailing comment

CMP_SYMBOLS = {"eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
WORD_OPS = {
    "in": "in",
    "not_in": "not in",
    "contains": "contains",
    "starts_with": "starts_with",
    "ends_with": "ends_with",
    "regex": "matches",
}
UNIT_WORDS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
UNIT_SUFFIXES = ((86400, "d"), (3600, "h"), (60, "m"))
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Pos = tuple[int, int]
_NOWHERE: Pos = (0, 0)
_EVERYWHERE: Pos = (1 << 62, 0)


# --- public API --------------------------------------------------------------------------


def format_source(text: str, file: str = "<input>") -> str:
    """The canonical form of one .plr file; raises PlrError when it does not parse."""
    tree, comment_tokens = parse_with_comments(text, file)
    try:
        module = lower_tree(tree, text, file)
        comments = [_Comment.of(tok, text) for tok in comment_tokens]
        return _Formatter(text, _build(tree, module), comments).run()
    except RecursionError:  # e.g. thousands of `not not ...`: brackets are limited by the parser
        raise PlrError.at("file is nested too deeply to format", file) from None


def is_formatted(text: str, file: str = "<input>") -> bool:
    """True when ``text`` is already canonical (``plr fmt --check``)."""
    return format_source(text, file) == text


def format_module(module: ir.Module) -> str:
    """Print IR that has no source text (e.g. built by the decompiler), without comments."""
    return _Formatter("", _build(None, module), []).run()


# --- pieces of syntax --------------------------------------------------------------------


def string_text(s: str) -> str:
    """A plr string literal: JSON, non-ASCII kept readable."""
    return json.dumps(s, ensure_ascii=False)


def literal_text(value: Any) -> str:
    """A literal (condition value or test argument) in plr syntax."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no plr spelling: numbers must be finite")
        return repr(value)  # 1.5, 20000.0, 1e+16: re-read as the same float
    if isinstance(value, str):
        return string_text(value)
    if isinstance(value, ir.Ref):
        return value.text()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key_text(str(k))}: {literal_text(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"{type(value).__name__} is not a plr literal")


def _key_text(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else string_text(key)


def selector_text(sel: ir.Selector) -> str:
    if sel.kind == "tool":
        return f"tool {string_text(sel.names[0])}"
    if sel.kind == "list":
        return "tools [" + ", ".join(string_text(n) for n in sel.names) + "]"
    if sel.kind == "glob":
        return f"tools {string_text(sel.pattern or '')}"
    if sel.kind == "class":
        return f"{sel.risk} tools"
    return "all tools"


def limit_window_text(lim: ir.Limit) -> str:
    """``minute``, ``10m`` or ``calendar day "Europe/Paris"``."""
    if lim.calendar is not None:
        return f"calendar {lim.calendar}" + (f" {string_text(lim.tz)}" if lim.tz else "")
    return window_text(lim.window)


def number_text(n: int | float) -> str:
    """A count or an amount as plr writes it: ``500``, ``12.5``."""
    if isinstance(n, float) and n.is_integer() and abs(n) < 2**53:
        return str(int(n))
    return repr(n)


def window_text(seconds: int) -> str:
    """``minute`` for exactly one unit, else the largest exact unit: ``90s``, ``5m``, ``2h``, ``3d``."""
    if seconds in UNIT_WORDS:
        return UNIT_WORDS[seconds]
    for size, suffix in UNIT_SUFFIXES:
        if seconds > 0 and seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"


def _compare_text(c: ir.Compare) -> str:
    if ir.is_approved(c):
        return "approved"
    lhs = c.lhs_text()
    if c.op in ("exists", "missing"):
        return f"{lhs} {c.op}"
    if c.op in CMP_SYMBOLS:
        return f"{lhs} {CMP_SYMBOLS[c.op]} {literal_text(c.value)}"
    return f"{lhs} {WORD_OPS[c.op]} {literal_text(c.value)}"


def condition_text(c: ir.Condition, parent: str | None = None) -> str:
    """A condition on one line with the fewest parentheses that re-parse to the same IR.

    ``parent`` is the combinator this condition is an operand of (None at the top). Nested
    operands of the same combinator keep their parentheses: ``a or (b or c)`` compiles to a
    nested ``any`` and must stay one.
    """
    if isinstance(c, ir.Compare):
        return _compare_text(c)
    if isinstance(c, ir.Quantifier):
        return f"{c.head()} {{ {_body_text(c.body)} }}"
    if isinstance(c, ir.Call):
        return c.text()
    if isinstance(c, ir.Not):
        return "not " + condition_text(c.item, "not")
    if isinstance(c, ir.And):
        text = " and ".join(condition_text(x, "and") for x in c.items)
        return f"({text})" if parent in ("and", "not") else text
    text = " or ".join(condition_text(x, "or") for x in c.items)
    return f"({text})" if parent is not None else text


def _body_text(body: ir.Condition) -> str:
    """A block's conditions on one line (for messages): several are joined by `and`."""
    if isinstance(body, ir.And) and body.block:
        if len(body.items) == 1:
            return condition_text(body.items[0])
        return " and ".join(condition_text(x, "and") for x in body.items)
    return condition_text(body)


Lines = list[tuple[int, str]]  # (indent relative to the first line, text)


def condition_lines(c: ir.Condition, parent: str | None = None) -> Lines:
    """A condition as the formatter prints it: ``condition_text``'s one line, except that a
    quantifier whose block holds several conditions (or one that takes several lines) writes
    them one per line, as a rule's ``{ ... }`` block is, wherever it stands."""
    if isinstance(c, ir.Compare):
        return [(0, _compare_text(c))]
    if isinstance(c, ir.Call):
        return [(0, c.text())]
    if isinstance(c, ir.Quantifier):
        items = c.body.items if isinstance(c.body, ir.And) and c.body.block else (c.body,)
        laid = [condition_lines(item) for item in items]  # once each: nesting stays linear
        if len(laid) == 1 and len(laid[0]) == 1:
            return [(0, f"{c.head()} {{ {laid[0][0][1]} }}")]
        body = [(d + 1, t) for lines in laid for d, t in lines]
        return [(0, f"{c.head()} {{"), *body, (0, "}")]
    if isinstance(c, ir.Not):
        lines = condition_lines(c.item, "not")
        return [(lines[0][0], "not " + lines[0][1]), *lines[1:]]
    kind = "and" if isinstance(c, ir.And) else "or"
    parts = [condition_lines(x, kind) for x in c.items]
    out = list(parts[0])
    for part in parts[1:]:
        depth, last = out.pop()
        out += [(depth, f"{last} {kind} {part[0][1]}"), *part[1:]]
    wrap = parent in ("and", "not") if kind == "and" else parent is not None
    return _parenthesized(out) if wrap else out


def _parenthesized(lines: Lines) -> Lines:
    if len(lines) == 1:
        return [(lines[0][0], f"({lines[0][1]})")]
    (d0, first), (dn, last) = lines[0], lines[-1]
    return [(d0, "(" + first), *lines[1:-1], (dn, last + ")")]


_SERVER_FIRST = re.compile(r"server(?![A-Za-z0-9_\-])")


@lru_cache(maxsize=1)
def _bare_server_item_parses() -> bool:
    """Whether the grammar reads a block line starting with the path ``server`` after another
    line. Older grammars lexed it as the ``server "name" { }`` keyword (LALR lookahead)."""
    try:
        parse_with_comments('deny tool "t" if {\n    approved\n    server exists\n}\n')
    except PlrError:
        return False
    return True


def _block_item_lines(c: ir.Condition, first: bool) -> Lines:
    """One item of a ``{ ... }`` block; parenthesized only where a grammar needs it."""
    lines = condition_lines(c)
    if not first and _SERVER_FIRST.match(lines[0][1]) and not _bare_server_item_parses():
        return _parenthesized(lines)
    return lines


def _rule_head(r: ir.Rule) -> str:
    """The rule up to its condition (``deny tool "x" unless``) or whole when it has none."""
    head = f"{r.kind} {selector_text(r.selector)}"
    if r.kind == "limit" and r.limit is not None:
        lim = r.limit
        head += f" to {number_text(lim.max)}"
        if lim.of is not None:
            head += f" of {lim.of.text()}"
        head += f" per {limit_window_text(lim)} per {lim.per}"
        if lim.refund:
            head += " refund on error"
    if r.condition is not None:
        head += " if" if r.guard == "if" or r.kind in ("allow", "limit") else " unless"
    return head


def _step_text(s: ir.Step) -> str:
    if isinstance(s, ir.CallStep):
        parts = ["call", string_text(s.tool)]
        if s.args is not None:
            parts.append(literal_text(s.args))
        if s.approved:
            parts.append("approved")
        parts += ["->", s.effect]
        if s.code is not None:
            parts.append(s.code)
        if s.reason is not None:
            parts += ["reason", string_text(s.reason)]
        return " ".join(parts)
    if isinstance(s, ir.ContextStep):
        return ("as " if s.as_ else "") + f"{s.key} {string_text(s.value)}"
    if isinstance(s, ir.AfterStep):
        return f"after {s.text}"
    if isinstance(s, ir.VisibleStep):
        return "visible [" + ", ".join(string_text(t) for t in s.tools) + "]"
    raise TypeError(f"not a one-line step: {type(s).__name__}")


def _simple_statement_text(s: ir.Statement) -> str:
    if isinstance(s, ir.Package):
        return f"package {s.name}"
    if isinstance(s, ir.Import):
        return f"import {string_text(s.path)}"
    if isinstance(s, ir.Default):
        return f"default {s.effect}"
    if isinstance(s, ir.DataImport):
        return f"import data {string_text(s.path)} as {s.name}"
    if isinstance(s, ir.Let):
        return f"let {s.name} = {literal_text(s.value)}"
    raise TypeError(f"not a one-line statement: {type(s).__name__}")


def _is_block(c: ir.Condition | None) -> bool:
    return isinstance(c, ir.And) and c.block


# --- source model: comments and positioned nodes ------------------------------------------


@dataclass(frozen=True, order=True)
class _Comment:
    line: int
    col: int
    text: str
    own_line: bool

    @property
    def pos(self) -> Pos:
        return (self.line, self.col)

    @staticmethod
    def of(tok: Token, source: str) -> _Comment:
        line, col = tok.line or 1, tok.column or 1
        start = tok.start_pos if tok.start_pos is not None else 0
        before = source[source.rfind("\n", 0, start) + 1 : start]
        return _Comment(line, col, str(tok).rstrip(), own_line=before.strip(" \t\f\r") == "")


NodeKind = Literal["root", "stmt", "entry", "step", "block", "item", "reason"]


@dataclass(eq=False)
class _Node:
    """Something printed on its own line(s), with its source extent and its comments."""

    kind: NodeKind
    obj: Any
    start: Pos
    end: Pos
    container: bool = False  # children are printed one per line inside braces
    children: list[_Node] = field(default_factory=list)
    body_end: Pos = _NOWHERE  # rules: where the part before `reason` ends
    reason: _Node | None = None
    leading: list[_Comment] = field(default_factory=list)  # own-line, before the node
    tail: list[_Comment] = field(default_factory=list)  # own-line, before the closing brace
    after_first: list[_Comment] = field(default_factory=list)  # trailing on the first line
    after_last: list[_Comment] = field(default_factory=list)  # trailing on the last line
    first: int = -1  # output line indexes
    last: int = -1
    _starts: list[Pos] | None = None

    def walk(self) -> Iterator[_Node]:
        yield self
        for ch in self.children:
            yield from ch.walk()

    def child_starts(self) -> list[Pos]:
        if self._starts is None:
            self._starts = [ch.start for ch in self.children]
        return self._starts


def _extent(x: Tree[Any] | Token | None) -> tuple[Pos, Pos]:
    if isinstance(x, Token):
        return (x.line or 0, x.column or 0), (x.end_line or 0, x.end_column or 0)
    if isinstance(x, Tree) and not getattr(x.meta, "empty", True):
        m = x.meta
        return (m.line, m.column), (m.end_line, m.end_column)
    return _NOWHERE, _NOWHERE


def _build(tree: Tree[Any] | None, module: ir.Module) -> _Node:
    """Pair each printed IR object with its parse-tree node (None: no source positions)."""
    root = _Node("root", None, _NOWHERE, _EVERYWHERE, container=True)
    subtrees: list[Any] = list(tree.children) if tree is not None else [None] * len(module.statements)
    for t, s in zip(subtrees, module.statements, strict=True):
        root.children.append(_statement_node(t, s))
    return root


def _subtrees(t: Tree[Any] | None, count: int) -> list[Any]:
    """The rule's subtrees (entries, steps, block items): its tokens are names and numbers."""
    if t is None:
        return [None] * count
    return [c for c in t.children if isinstance(c, Tree)]


def _statement_node(t: Tree[Any] | None, s: ir.Statement) -> _Node:
    node = _Node("stmt", s, *_extent(t))
    if isinstance(s, ir.Catalogue):
        node.container = True
        for et, entry in zip(_subtrees(t, len(s.tools)), s.tools, strict=True):
            node.children.append(_Node("entry", entry, *_extent(et)))
    elif isinstance(s, ir.TestCase):
        node.container = True
        node.children = [_step_node(st, step) for st, step in zip(_subtrees(t, len(s.steps)), s.steps, strict=True)]
    elif isinstance(s, ir.Def):
        node.container = True
        items = s.body.items if isinstance(s.body, ir.And) else (s.body,)
        body_tree = _subtrees(t, 1)[0]
        for it, item in zip(_subtrees(body_tree, len(items)), items, strict=True):
            node.children.append(_Node("item", item, *_extent(it)))
    elif isinstance(s, ir.Rule):
        parts = list(t.children) if t is not None else []
        # the last two parts are `reason` and `description` (either may be absent: None)
        reason_tree = next((p for p in parts if isinstance(p, Tree) and p.data == "reason"), None)
        body = [p for p in parts[:-2] if p is not None]
        node.body_end = max((_extent(p)[1] for p in body), default=_NOWHERE)
        if _is_block(s.condition):
            assert isinstance(s.condition, ir.And)
            block_tree = _find_block(t)
            block = _Node("block", s.condition, *_extent(block_tree), container=True)
            item_trees = _subtrees(block_tree, len(s.condition.items))
            for it, item in zip(item_trees, s.condition.items, strict=True):
                block.children.append(_Node("item", item, *_extent(it)))
            node.children.append(block)
        if s.reason is not None:
            node.reason = _Node("reason", s.reason, *_extent(reason_tree))
            node.children.append(node.reason)
    return node


def _find_block(t: Tree[Any] | None) -> Tree[Any] | None:
    if t is None:
        return None
    for sub in t.iter_subtrees_topdown():  # type: ignore[no-untyped-call]
        if sub.data == "block":
            return cast("Tree[Any]", sub)
    return None


def _step_node(t: Tree[Any] | None, s: ir.Step) -> _Node:
    node = _Node("step", s, *_extent(t))
    if isinstance(s, ir.RepeatStep):
        node.container = True
        node.children = [_step_node(st, step) for st, step in zip(_subtrees(t, len(s.steps)), s.steps, strict=True)]
    return node


# --- comment placement --------------------------------------------------------------------


def _place_own_line(container: _Node, c: _Comment) -> None:
    """Before the item that follows the comment, in the innermost block that holds it."""
    starts = container.child_starts()
    i = bisect.bisect_left(starts, c.pos)  # children[i] is the first that starts after it
    if i > 0:
        prev = container.children[i - 1]
        if prev.end > c.pos:
            _place_inside(prev, c)
            return
    if i < len(container.children):
        container.children[i].leading.append(c)
    else:
        container.tail.append(c)


def _place_inside(node: _Node, c: _Comment) -> None:
    if node.container:
        _place_own_line(node, c)
        return
    for ch in node.children:
        if ch.container and ch.start < c.pos < ch.end:
            _place_own_line(ch, c)
            return
    if node.reason is not None and c.pos > node.body_end:
        node.reason.leading.append(c)  # between a rule and its reason: keep it there
    else:
        node.leading.append(c)


class _LineIndex:
    """Nodes by the source line they start and end on, for trailing comments."""

    def __init__(self, root: _Node) -> None:
        self.root = root
        self.ending: dict[int, list[_Node]] = {}
        self.starting: dict[int, list[_Node]] = {}
        for n in root.walk():
            if n is root or n.start == _NOWHERE:
                continue
            self.ending.setdefault(n.end[0], []).append(n)
            self.starting.setdefault(n.start[0], []).append(n)

    def place(self, c: _Comment) -> None:
        """At the end of the output line that holds the code just before the comment."""
        ended: _Node | None = None  # the node that ends last on the line
        for n in self.ending.get(c.line, []):
            if n.end <= c.pos and (ended is None or n.end > ended.end):  # tie: the outer one
                ended = n
        started: _Node | None = None  # the node that starts last on the line
        for n in self.starting.get(c.line, []):
            if n.start < c.pos and (started is None or n.start >= started.start):  # tie: the inner one
                started = n
        if started is not None and (ended is None or started.start > ended.end):
            started.after_first.append(c)  # `... deny tool "x" # c` with the rule going on below
            return
        if ended is not None:
            ended.after_last.append(c)
            return
        inner = self._innermost_spanning(self.root, c.line)
        if inner is None:
            _place_own_line(self.root, c)
        else:
            inner.after_first.append(c)

    def _innermost_spanning(self, node: _Node, line: int) -> _Node | None:
        for ch in node.children:
            if ch.start[0] < line < ch.end[0]:
                return self._innermost_spanning(ch, line) or ch
        return None


# --- printing -----------------------------------------------------------------------------


def _statement_kind(s: Any) -> int:
    order = (ir.Package, (ir.Import, ir.DataImport), ir.Let, ir.Def, ir.Default, ir.Catalogue, ir.Rule, ir.TestCase)
    for i, cls in enumerate(order):
        if isinstance(s, cls):
            return i
    return len(order)


def _multi_line(s: Any) -> bool:
    if isinstance(s, (ir.Catalogue, ir.TestCase, ir.Def)):
        return True
    if not isinstance(s, ir.Rule):
        return False
    return s.reason is not None or s.description is not None or _is_block(s.condition) or (
        s.condition is not None and len(condition_lines(s.condition)) > 1
    )


def _needs_blank(a: Any, b: Any) -> bool:
    return _statement_kind(a) != _statement_kind(b) or _multi_line(a) or _multi_line(b)


class _Formatter:
    def __init__(self, source: str, root: _Node, comments: list[_Comment]) -> None:
        self.root = root
        self.lines: list[tuple[int, str]] = []  # (depth, text); "" is a blank line
        blank = [0]
        for raw in source.split("\n") if source else []:
            blank.append(blank[-1] + (raw.strip(" \t\f\r") == ""))
        self._blank_prefix = blank  # _blank_prefix[n]: blank lines among lines 1..n
        index = _LineIndex(root)
        for c in sorted(comments):
            if c.own_line:
                _place_own_line(root, c)
            else:
                index.place(c)

    # -- helpers ---------------------------------------------------------------------------
    def _source_blank(self, after_line: int, before_line: int) -> bool:
        """Did the source have a blank line strictly between these two lines?"""
        if before_line - after_line < 2 or after_line < 0:
            return False
        p = self._blank_prefix
        hi = min(before_line - 1, len(p) - 1)
        lo = min(after_line, len(p) - 1)
        return hi > lo and p[hi] - p[lo] > 0

    def emit(self, depth: int, text: str) -> int:
        self.lines.append((depth, text))
        return len(self.lines) - 1

    def blank(self) -> None:
        if self.lines and self.lines[-1][1] != "":
            self.lines.append((0, ""))

    def comments(self, comments: list[_Comment], depth: int, next_line: int | None, blanks: bool = True) -> None:
        for i, c in enumerate(comments):
            if blanks and i > 0 and self._source_blank(comments[i - 1].line, c.line):
                self.blank()
            self.emit(depth, c.text)
        if blanks and comments and next_line is not None and self._source_blank(comments[-1].line, next_line):
            self.blank()

    # -- sequences -------------------------------------------------------------------------
    def sequence(self, container: _Node, depth: int) -> None:
        top = container.kind == "root"
        prev: _Node | None = None
        for ch in container.children:
            leading = sorted(ch.leading)
            first_line = min(ch.start[0], leading[0].line) if leading else ch.start[0]
            if prev is not None and (
                (top and _needs_blank(prev.obj, ch.obj)) or self._source_blank(prev.end[0], first_line)
            ):
                self.blank()
            self.comments(leading, depth, ch.start[0])
            self.node(ch, depth, first=prev is None)
            prev = ch
        last_line = prev.end[0] if prev is not None else None
        for c in sorted(container.tail):
            if last_line is not None and self._source_blank(last_line, c.line):
                self.blank()
            self.emit(depth, c.text)
            last_line = c.line

    def braces(self, node: _Node, depth: int, head: str) -> None:
        """``head {`` + children + ``}``, or ``head {}`` when there is nothing inside."""
        if not node.children and not node.tail:
            node.first = node.last = self.emit(depth, head + " {}")
            return
        node.first = self.emit(depth, head + " {")
        self.sequence(node, depth + 1)
        node.last = self.emit(depth, "}")

    # -- nodes -----------------------------------------------------------------------------
    def node(self, n: _Node, depth: int, first: bool = True) -> None:
        obj = n.obj
        if n.kind == "item":
            lines = _block_item_lines(obj, first)
            n.first = n.last = self.emit(depth, lines[0][1])
            for extra, text in lines[1:]:
                n.last = self.emit(depth + extra, text)
        elif n.kind == "entry":
            text = f"tool {string_text(obj.name)} {obj.risk}"
            if obj.description is not None:
                text += f" description {string_text(obj.description)}"
            n.first = n.last = self.emit(depth, text)
        elif n.kind == "step":
            self.step(n, depth)
        elif isinstance(obj, ir.Rule):
            self.rule(n, obj, depth)
        elif isinstance(obj, ir.Catalogue):
            self.braces(n, depth, f"server {string_text(obj.server)}")
        elif isinstance(obj, ir.TestCase):
            self.braces(n, depth, f"test {string_text(obj.name)}")
        elif isinstance(obj, ir.Def):
            self.braces(n, depth, f"def {obj.name}({', '.join(obj.params)})")
        else:
            n.first = n.last = self.emit(depth, _simple_statement_text(obj))

    def rule(self, n: _Node, r: ir.Rule, depth: int) -> None:
        head = _rule_head(r)
        block = next((ch for ch in n.children if ch.kind == "block"), None)
        if block is not None:
            n.first = block.first = self.emit(depth, head + " {")
            self.sequence(block, depth + 1)
            n.last = block.last = self.emit(depth, "}")
        elif r.condition is not None:
            lines = condition_lines(r.condition)
            n.first = n.last = self.emit(depth, f"{head} {lines[0][1]}")
            for extra, text in lines[1:]:
                n.last = self.emit(depth + extra, text)
        else:
            n.first = n.last = self.emit(depth, head)
        if n.reason is not None:
            self.comments(sorted(n.reason.leading), depth + 1, None, blanks=False)
            n.last = n.reason.first = n.reason.last = self.emit(depth + 1, f"reason {string_text(r.reason or '')}")
        if r.description is not None:
            n.last = self.emit(depth + 1, f"description {string_text(r.description)}")

    def step(self, n: _Node, depth: int) -> None:
        s = n.obj
        if not isinstance(s, ir.RepeatStep):
            n.first = n.last = self.emit(depth, _step_text(s))
            return
        inline = _inline_step(n)
        if inline is not None:
            i = self.emit(depth, inline)
            for sub in n.walk():
                sub.first = sub.last = i
            return
        self.braces(n, depth, f"repeat {s.times}")

    # -- output ----------------------------------------------------------------------------
    def run(self) -> str:
        self.sequence(self.root, 0)
        trailing: dict[int, list[_Comment]] = {}
        for n in self.root.walk():
            for c in n.after_first:
                trailing.setdefault(n.first, []).append(c)
            for c in n.after_last:
                trailing.setdefault(n.last, []).append(c)
        out: list[str] = []
        for i, (depth, text) in enumerate(self.lines):
            line = INDENT * depth + text if text else ""
            if i in trailing:
                notes = TRAILING_GAP.join(c.text for c in sorted(trailing[i]))
                line = f"{line}{TRAILING_GAP}{notes}" if line else notes
            out.append(line)
        while out and out[-1] == "":
            out.pop()
        return "\n".join(out) + "\n" if out else ""


def _inline_step(n: _Node) -> str | None:
    """``repeat N { step }`` on one line when it holds one such step and no own-line comment."""
    s = n.obj
    if not isinstance(s, ir.RepeatStep):
        return _step_text(s)
    if n.tail or len(n.children) > 1:
        return None
    if not n.children:
        return f"repeat {s.times} {{}}"
    child = n.children[0]
    if child.leading:
        return None
    inner = _inline_step(child)
    return None if inner is None else f"repeat {s.times} {{ {inner} }}"
