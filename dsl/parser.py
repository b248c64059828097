"""Text → Lark parse tree, with every syntax error turned into words a policy author reads.

The grammar lives in ``grammar/plr.lark`` (shipped in the wheel). The LALR parser is built
once per process (and cached on disk by Lark), positions are propagated so every later stage
can point at the source.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .errors import Diagnostic, PlrError, line_of
from .resources import grammar_text
from .vocab import MAX_LIMIT_COUNT, MAX_WINDOW_DAYS, MAX_WINDOW_SECONDS, SURROGATE

MAX_NESTING = 64

_lock = threading.Lock()
_comments: list[Token] = []
_keywords: list[Token] = []  # keyword tokens as lexed, to find one glued to the word after it


def _keep_keyword(tok: Token) -> Token:
    _keywords.append(tok)
    return tok


@lru_cache(maxsize=1)
def _keywords_of_grammar() -> frozenset[str]:
    """The grammar's keywords: its quoted words (Lark names each one's terminal after it, upper-cased)."""
    return frozenset(re.findall(r'(?<![A-Za-z0-9_.\\])"([a-z][a-z_]*)"', grammar_text()))


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        cache=_cache_path(),
        lexer_callbacks={
            "COMMENT": _comments.append,
            **{word.upper(): _keep_keyword for word in _keywords_of_grammar()},
        },
    )


def _cache_path() -> str | bool:
    """A per-user cache file for the built parser, or no cache when nowhere is writable."""
    import hashlib
    import os
    import tempfile

    digest = hashlib.sha256(grammar_text().encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (os.path.join(base, "plr"), tempfile.gettempdir()):
        try:
            os.makedirs(folder, exist_ok=True)
            if os.access(folder, os.W_OK):
                return os.path.join(folder, f"plr-grammar-{digest}.lark.cache")
        except OSError:
            continue
    return False


def parse(text: str, file: str = "<input>") -> Tree:
    """Parse ``text`` or raise PlrError located at ``file:line:col``."""
    return parse_with_comments(text, file)[0]


def parse_with_comments(text: str, file: str = "<input>") -> tuple[Tree, list[Token]]:
    """Like :func:`parse`, also returning the comments (with positions) for the formatter."""
    _check_text(text, file)
    parser = _parser()
    with _lock:
        _comments.clear()
        _keywords.clear()
        try:
            tree = parser.parse(text)
        except UnexpectedInput as e:
            raise PlrError(_all_syntax_errors(parser, text, file, e)) from None
        finally:
            comments = list(_comments)
            keywords = list(_keywords)
            _comments.clear()
            _keywords.clear()
    problems = glued_keywords(keywords, text, file) or literal_problems(tree, text, file)
    if problems:
        raise PlrError(problems)
    return tree, comments


# --- the parse without a tree --------------------------------------------------------------
#
# Compiling needs the IR, not the tree: ``parse_inline`` runs the same LALR tables and lexer
# with callbacks that hand each reduction straight to the lowering functions. What a callback
# receives is what a tree node would have held: the children Lark's tree builder keeps (its own
# child filter: punctuation dropped, `_rule`s spliced, placeholders for absent `[optional]`
# parts), a `?rule` with one child collapsed to it, and the node's place computed as
# ``propagate_positions`` does (from the first and last child, inlined ones included). Each value
# on the parser's stack is a token or a tuple (value, line, col, end_line, end_col, height):
# the place (None when the node covers nothing) and the height the tree would have, so the
# positions of every node, and the depth past which walking a tree would fail, stay the tree's.


class _NotInline(Exception):
    """The inline parse cannot stand for the tree path here: the caller parses a tree."""


# A tree this tall (or_/and_/not chains) may exhaust the stack when walked: the tree path
# decides (it reports "nested too deeply" where it always did).
MAX_INLINE_HEIGHT = 200
_NONES: tuple[list[None], ...] = tuple([None] * k for k in range(16))


@dataclass(frozen=True)
class _Plan:
    """What Lark's tree builder does for one grammar rule (see ``parse_tree_builder``)."""

    name: str  # the callback (tree node) name: alias, template or rule name
    size: int  # symbols on the right-hand side (values popped from the stack)
    keep: tuple[tuple[int, int, int], ...]  # (child index, 0 token | 1 node | 2 spliced, Nones before)
    trailing: int  # Nones after the last kept child
    collapse: int  # index of the one child a `?rule` collapses to, or -1
    splice: bool  # a `_rule`: its children go into its parent
    terms: tuple[bool, ...]  # which symbols are terminals (their value is a token)


@lru_cache(maxsize=1)
def _inline_plans() -> tuple[dict[Any, _Plan], Any, Any, str] | None:
    """Rule -> plan, with the parse table, the parser class and the start symbol; None when
    Lark builds trees in a way this does not reproduce (then compiling uses the tree)."""
    try:
        from lark.parse_tree_builder import ChildFilterLALR, ChildFilterLALR_NoPlaceholders, maybe_create_child_filter

        lark = _parser()
        options = lark.options
        if options.parser != "lalr" or options.transformer is not None or options.propagate_positions is not True:
            return None
        if options.tree_class not in (None, Tree) or options.ambiguity not in ("auto", "resolve") or options.postlex:
            return None
        inner = lark.parser.parser.parser  # ParsingFrontend -> LALR_Parser -> _Parser
        plans: dict[Any, _Plan] = {}
        for rule in lark.rules:
            opts = rule.options
            name = rule.alias or opts.template_source or rule.origin.name
            expansion = rule.expansion
            empty = opts.empty_indices if options.maybe_placeholders else None
            cf = maybe_create_child_filter(expansion, opts.keep_all_tokens, False, empty)
            if cf is None:
                include = [(i, False, 0) for i in range(len(expansion))]
                trailing = 0
            elif cf.func is ChildFilterLALR:
                include, trailing = cf.args
            elif cf.func is ChildFilterLALR_NoPlaceholders:
                include, trailing = [(i, x, 0) for i, x in cf.args[0]], 0
            else:
                return None
            keep = tuple((i, 2 if x else (0 if expansion[i].is_term else 1), n) for i, x, n in include)
            collapse = -1
            if opts.expand1 and not rule.alias:  # ExpandSingleChild: one child left is the node
                if len(keep) == 1 and keep[0][1] == 1 and not keep[0][2] and not trailing:
                    collapse = keep[0][0]
                elif any(k[1] == 2 for k in keep) or len(keep) + sum(k[2] for k in keep) + trailing == 1:
                    return None  # would collapse to a token or a placeholder, or only sometimes
            if any(n >= len(_NONES) for _, _, n in keep) or trailing >= len(_NONES):
                return None
            terms = tuple(sym.is_term for sym in expansion)
            plans[rule] = _Plan(name, len(expansion), keep, trailing, collapse, name.startswith("_"), terms)
        return plans, inner.parse_table, type(inner), options.start[0]
    except Exception:  # noqa: BLE001 - another Lark: compile through the tree
        return None


def parse_inline(
    text: str,
    file: str,
    actions: dict[str, tuple[Callable[..., Any], bool]],
    make_meta: Callable[[int, int, int, int], Any],
) -> Any:
    """Parse ``text`` calling ``actions[name]`` (with the node's place, made by ``make_meta``,
    when its flag is set, then the children) at each reduction, and return the start rule's
    value; None when this parse cannot vouch for the result the tree path would give (a
    literal problem, a callback that failed, a tree too tall to walk, another Lark): parse the
    tree then. Raises the same PlrError as :func:`parse` for every other problem."""
    _check_text(text, file)
    setup = _inline_plans()
    if setup is None or "\\u" in text or SURROGATE.search(text) or _may_underflow(text):
        return None  # literals only literal_problems (on a tree) judges
    plans, table, parser_class, start = setup
    callbacks: dict[Any, Callable[[list[Any]], Any]] = {}
    for rule, plan in plans.items():
        if plan.splice or plan.collapse >= 0:
            callbacks[rule] = _reducer(plan, None, False, make_meta)
            continue
        entry = actions.get(plan.name)
        if entry is None:
            return None  # a node the lowering has no function for
        callbacks[rule] = _reducer(plan, entry[0], entry[1], make_meta)
    lark = _parser()
    with _lock:
        _comments.clear()
        _keywords.clear()
        try:
            result = parser_class(table, callbacks).parse(lark.parser._make_lexer_thread(text), start)
        except UnexpectedInput as e:
            raise PlrError(_all_syntax_errors(lark, text, file, e)) from None
        except Exception:  # noqa: BLE001 - _NotInline, or a callback that failed: the tree path decides
            return None
        finally:
            keywords = list(_keywords)
            _comments.clear()
            _keywords.clear()
    problems = glued_keywords(keywords, text, file)
    if problems:
        raise PlrError(problems)
    return result[0]


def _reducer(
    plan: _Plan, action: Callable[..., Any] | None, with_meta: bool, make_meta: Callable[[int, int, int, int], Any]
) -> Callable[[list[Any]], Any]:
    """The callback for one grammar rule: children as the tree would hold them, place, action."""
    return _reducer_factory(plan)(action, with_meta, make_meta)


@lru_cache(maxsize=None)
def _reducer_factory(plan: _Plan) -> Callable[..., Callable[[list[Any]], Any]]:
    """Python source for one rule's callback, compiled once: what the rule's shape decides
    (which child is a token, which are kept, spliced or placeholders) is decided here, not on
    each of the tens of thousands of reductions of a large file."""
    n = plan.size
    out = ["def make(action, with_meta, make_meta):", " def reduce(c):"]

    def emit(depth: int, line: str) -> None:
        out.append(" " * (2 + depth) + line)

    if n:
        emit(0, ", ".join(f"c{i}" for i in range(n)) + (", = c" if n == 1 else " = c"))
    if plan.collapse == 0 and n == 1:  # `?a: b` with b alone: b as it is, where it is
        emit(0, "if c0[1] is None: raise _NotInline  # the tree would place the child here (no such rule)")
        emit(0, "return c0")
        out.append(" return reduce")
        return _compiled(out, plan)
    # the place, as propagate_positions finds it: the first and the last child that has one
    for names, order, tok_attrs, node_idx in (
        (("line", "col"), range(n), ("line", "column"), (1, 2)),
        (("end_line", "end_col"), range(n - 1, -1, -1), ("end_line", "end_column"), (3, 4)),
    ):
        depth = 0
        for i in order:
            if plan.terms[i]:
                emit(depth, f"{names[0]} = c{i}.{tok_attrs[0]}; {names[1]} = c{i}.{tok_attrs[1]}")
                break
            emit(depth, f"if c{i}[1] is not None: {names[0]} = c{i}[{node_idx[0]}]; {names[1]} = c{i}[{node_idx[1]}]")
            emit(depth, "else:")
            depth += 1
        else:
            emit(depth, f"{names[0]} = {names[1]} = None")
    if plan.collapse >= 0:  # a `?rule` with one child: that child, placed where the rule is
        k = plan.collapse
        emit(0, f"if c{k}[1] is None: raise _NotInline  # the tree would place the child here (no such rule)")
        emit(0, f"return (c{k}[0], line, col, end_line, end_col, c{k}[5])")
    else:
        emit(0, "h = 0")
        for i, kind, _ in plan.keep:
            if kind:
                emit(0, f"if c{i}[5] > h: h = c{i}[5]")
        parts: list[str] = []  # the kept children, as Lark's child filter builds them
        started = False
        for i, kind, nones in plan.keep:
            parts += ["None"] * nones
            if kind == 2:
                if parts:
                    emit(0, f"items {'+' if started else ''}= [{', '.join(parts)}]")
                    started = True
                if started:
                    emit(0, f"items += c{i}[0]")
                else:  # left recursion (`a*`): grow the list the child holds, as Lark does
                    emit(0, f"items = c{i}[0]")
                started, parts = True, []
            else:
                parts.append(f"c{i}" if kind == 0 else f"c{i}[0]")
        parts += ["None"] * plan.trailing
        if parts or not started:
            emit(0, f"items {'+' if started else ''}= [{', '.join(parts)}]")
        if plan.splice:
            emit(0, "return (items, line, col, end_line, end_col, h)")
        else:
            emit(0, "if h >= MAX_INLINE_HEIGHT: raise _NotInline")
            if plan.name in _INLINE_LITERAL_CHECKS:
                emit(0, "check(items, _abort)")
            emit(0, "if with_meta:")
            meta = "make_meta(line, col, end_line, end_col)"
            if not (n and plan.terms[0]):
                meta += " if line is not None else make_meta(0, 0, 0, 0)"
            emit(0, f" return (action({meta}, items), line, col, end_line, end_col, h + 1)")
            emit(0, "return (action(items), line, col, end_line, end_col, h + 1)")
    out.append(" return reduce")
    return _compiled(out, plan)


def _compiled(lines: list[str], plan: _Plan) -> Callable[..., Callable[[list[Any]], Any]]:
    namespace: dict[str, Any] = {
        "_NotInline": _NotInline,
        "_abort": _abort,
        "MAX_INLINE_HEIGHT": MAX_INLINE_HEIGHT,
        "check": _INLINE_LITERAL_CHECKS.get(plan.name),
    }
    exec(compile("\n".join(lines), f"<plr reduce {plan.name}>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["make"]  # type: ignore[no-any-return]


def _abort(*_: Any) -> None:
    raise _NotInline


def _check_text(text: str, file: str) -> None:
    """What is refused before parsing: a NUL byte, and brackets nested too deeply."""
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        col = text.index("\x00") - (text.rfind("\n", 0, text.index("\x00")) + 1) + 1
        raise PlrError.at("a policy file must be text: found a NUL byte", file, line, col, line_of(text, line))
    _check_nesting(text, file)


# A line that starts a statement (recovery only): `server` only before its string, since
# `server == "x"` may start a line of a condition block.
_STATEMENT_START = re.compile(r'(?:package|import|let|def|default|allow|deny|hide|limit|test)\b|server[ \t]*"')
MAX_SYNTAX_ERRORS = 20


def _all_syntax_errors(parser: Lark, text: str, file: str, first: UnexpectedInput) -> list[Diagnostic]:
    """Report every broken statement, not only the first: blank the statement that failed
    (from its first line to the next line that starts a statement) and parse again.

    Blanking replaces characters by spaces, so positions in the blanked text are positions in
    ``text``: each message names the token at the place it points to."""
    diags = [_error_diagnostic(first, text, file)]
    lines = text.split("\n")
    error = first
    last_line = 0
    while len(diags) < MAX_SYNTAX_ERRORS:
        line = getattr(error, "line", 0) or 0
        if line < 1 or line <= last_line or line > len(lines):
            break
        start, end = _broken_statement(lines, line, getattr(error, "column", 0) or 0)
        for i in range(start - 1, end):
            lines[i] = " " * len(lines[i])
        last_line = end
        _keywords.clear()
        try:
            parser.parse("\n".join(lines))
            break
        except UnexpectedInput as e:
            error = e
            d = _error_diagnostic(e, text, file)
            if (getattr(e, "line", 0) or 0) <= last_line:
                break
            diags.append(d)
    return diags


def _error_diagnostic(e: UnexpectedInput, text: str, file: str) -> Diagnostic:
    """The error of one parse: a keyword glued to the word after it, lexed just before the error on
    its line, explains it better than the token the parser stumbled on (`per minutes`: `s`)."""
    line = getattr(e, "line", 0) or 0
    longer = _longer_keyword(e, text, file)
    if longer is not None:
        return longer
    glued = glued_keywords((k for k in _keywords if k.line == line), text, file)
    return glued[-1] if glued else syntax_diagnostic(e, text, file)


def _longer_keyword(e: UnexpectedInput, text: str, file: str) -> Diagnostic | None:
    """`call "a" -> allowed`, `allowed tool "x"`, `default allowed`: a keyword of another place
    (`allowed` is a decision code) written where only a shorter one can stand. The lexer reads
    the shorter keyword (`allow`) and stumbles on the rest (`ed`); the author wrote one word, so
    the error names that word, where it starts, and the keyword meant."""
    tok = getattr(e, "token", None)
    pos = tok.start_pos if isinstance(tok, Token) and tok.type != "$END" else getattr(e, "pos_in_stream", None)
    if pos is None:
        return None
    keyword = next((k for k in _keywords if k.end_pos == pos), None)
    if keyword is None or keyword.start_pos is None:
        return None
    word = _word_at(text, keyword.start_pos).rstrip("-")
    if word == str(keyword) or word.lower() not in _keywords_of_grammar():
        return None  # not a keyword at all: glued_keywords names it
    context = _context_before(text, keyword.start_pos)
    if context == "decision":
        message = _decision_message(word)
    elif context == "default":
        message = _default_message(word)
    elif str(keyword) in ("allow", "deny"):  # else they only start a statement
        message = f"unknown keyword `{word}`: expected a statement: {STATEMENTS} (did you mean `{keyword}`?)"
    else:
        return None
    line = keyword.line or 0
    return Diagnostic("error", message, file, line, keyword.column or 0, line_of(text, line), len(word))


def _context_before(text: str, pos: int) -> str:
    """Where the word at ``pos`` stands, from the text before it: "decision" right after `->`
    (a test step's expected decision), "default" right after `default`, else "". A bounded look
    back (no scan of a long line); a comment in between is not seen through."""
    before = text[max(0, pos - 200) : pos].rstrip()
    if before.endswith("->"):
        return "decision"
    if re.search(r"(?<![A-Za-z0-9_\-.])default$", before):
        return "default"
    return ""


DECISION = "expected a decision (allow, deny or approval_required)"
# A word written where a test step's decision stands, and what was most likely meant: the codes
# come after the effect they go with (`deny hidden`), `approved` before the arrow.
_DECISION_FIXES = {
    "allowed": "allow",
    "allows": "allow",
    "denied": "deny",
    "denies": "deny",
    "blocked": "deny",
    "refused": "deny",
    "rejected": "deny",
    "forbidden": "deny",
    "hidden": "deny hidden",
    "hide": "deny hidden",
    "deny_if": "deny deny_if",
    "rate_limited": "deny rate_limited",
    "limited": "deny rate_limited",
    "require": "deny require",
    "default": "deny default",
    "approved": "approval_required",
    "approve": "approval_required",
    "approval": "approval_required",
    "require_approval": "approval_required",
    "needs_approval": "approval_required",
}
_DECISION_NOTES = {
    "approved": " (`approved` marks a call a human approved, before the arrow: `call \"x\" approved -> allow`)",
    "default": " (or `allow default` under `default allow`)",
}


def _decision_fix(word: str) -> str | None:
    """The decision (with its code) most likely meant by ``word``, or None."""
    import difflib

    lower = word.lower()
    if lower in ("allow", "deny", "approval_required"):
        return lower  # `Allow`, `DENY`: keywords are lowercase
    if lower in _DECISION_FIXES:
        return _DECISION_FIXES[lower]
    for start, fix in (("allow", "allow"), ("deny", "deny"), ("deni", "deny"), ("approv", "approval_required")):
        if lower.startswith(start):
            return fix
    close = difflib.get_close_matches(lower, ["allow", "deny", "approval_required", *_DECISION_FIXES], n=1, cutoff=0.75)
    return _DECISION_FIXES.get(close[0], close[0]) if close else None


def _decision_message(word: str) -> str:
    """`unexpected `allowed`: expected a decision (...): did you mean `allow`?`"""
    fix = _decision_fix(word)
    if fix is None:
        return f"unexpected `{word}`: {DECISION}"
    return f"unexpected `{word}`: {DECISION}: did you mean `{fix}`?" + _DECISION_NOTES.get(word.lower(), "")


def _default_message(word: str) -> str:
    """After `default`: only `allow` or `deny`."""
    fix = _decision_fix(word)
    fix = fix.split()[0] if fix and fix.split()[0] in ("allow", "deny") else None
    head = f"unexpected `{word}`: expected allow or deny after `default`"
    return f"{head}: did you mean `{fix}`?" if fix else head


def _broken_statement(lines: list[str], line: int, col: int) -> tuple[int, int]:
    """The 1-based first and last line of the statement an error at ``line:col`` belongs to."""
    if col == 1 and line > 1 and _STATEMENT_START.match(lines[line - 1]):
        # The keyword starting this line was unexpected: the statement before it is unfinished
        # (`reason` without its string, an unclosed `{`). That one is broken; this line's own
        # statement must be parsed again to be judged on its own.
        end = line - 1
        start = end
        while start > 1 and not _STATEMENT_START.match(lines[start - 1]):
            start -= 1
        if any(lines[i].strip() for i in range(start - 1, end)):
            return start, end
    start = line
    while start > 1 and not _STATEMENT_START.match(lines[start - 1]):
        start -= 1
    end = line
    while end < len(lines) and not _STATEMENT_START.match(lines[end]):
        end += 1
    return start, end


_STRINGS_AND_COMMENTS = re.compile(r'"[^"\\\n]*(?:\\[^\n][^"\\\n]*)*"|#[^\n]*')  # unrolled: no per-char stack
_BRACKETS = re.compile(r"[][(){}]")


def _check_nesting(text: str, file: str) -> None:
    """Refuse absurd nesting before parsing, so later tree walks can never exhaust the stack.

    Fast path: drop closed strings and comments with one regex, then count the brackets that
    are left. An unterminated string or too deep a nesting goes to the character scan, which
    decides those cases and names the place.
    """
    if text.count("(") + text.count("[") + text.count("{") <= MAX_NESTING:
        return
    code = _STRINGS_AND_COMMENTS.sub("", text)
    if '"' in code:
        return _scan_nesting(text, file)
    depth = 0
    for ch in _BRACKETS.findall(code):
        if ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                return _scan_nesting(text, file)
        elif depth:
            depth -= 1
    return None


def _scan_nesting(text: str, file: str) -> None:
    """The character-by-character scan behind ``_check_nesting`` (raises at the first level too deep)."""
    depth = 0
    in_string = False
    in_comment = False
    escaped = False
    line, col = 1, 0
    for ch in text:
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
            in_comment = False
            in_string = False
            continue
        if in_comment:
            continue
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "#":
            in_comment = True
        elif ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise PlrError.at(
                    f"nesting is too deep: more than {MAX_NESTING} levels of brackets",
                    file, line, col, line_of(text, line),
                )  # fmt: skip
        elif ch in ")]}":
            depth = max(depth - 1, 0)


# --- literals the grammar accepts but nothing after it can carry -------------------------

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|.)", re.DOTALL)
# Only a literal with a long negative exponent or hundreds of leading zeros can round to 0.
_MAY_UNDERFLOW = re.compile(r"[eE]-[0-9]{3}|\.0{200}")
_THREE_DIGITS = re.compile(r"[0-9]{3}")
_MANY_ZEROS = "." + "0" * 200


def _may_underflow(text: str) -> bool:
    """``_MAY_UNDERFLOW.search(text)``, found with substring searches: a regex starting with a
    character class tries every position of the text (1% of compiling a large policy), while
    `e-`/`E-` are rare and found at C speed."""
    if _MANY_ZEROS in text:
        return True
    for marker in ("e-", "E-"):
        i = text.find(marker)
        while i != -1:
            if _THREE_DIGITS.match(text, i + 2):
                return True
            i = text.find(marker, i + 1)
    return False


def literal_problems(tree: Tree, text: str, file: str) -> list[Diagnostic]:
    """Errors for literals that parse but cannot be carried to the compiled JSON and back:
    lone UTF-16 surrogates (no UTF-8 text can hold them), limit counts and windows too large
    to be exact, and numbers so small they would silently become 0."""
    diags: list[Diagnostic] = []

    def at(message: str, line: int, col: int, width: int = 1) -> None:
        diags.append(Diagnostic("error", message, file, line, col, line_of(text, line), max(1, width)))

    raw = SURROGATE.search(text)
    if raw is not None:
        line = text.count("\n", 0, raw.start()) + 1
        col = raw.start() - (text.rfind("\n", 0, raw.start()) + 1) + 1
        at(f"U+{ord(raw.group()):04X} is not a character: a lone surrogate", line, col)
    if "\\u" in text:
        for tok in tree.scan_values(lambda v: isinstance(v, Token) and v.type == "STRING"):
            _check_surrogates(tok, at)
    for stmt in tree.children:
        if not isinstance(stmt, Tree):
            continue
        if stmt.data == "limit_rule":
            _check_limit_count(stmt.children, at)
            window = next((c for c in stmt.children if isinstance(c, Tree) and c.data == "window"), None)
            if window is not None:
                _check_window(window.children, at)
        elif stmt.data == "test_block" and "after" in text:
            for sub in stmt.iter_subtrees():
                if sub.data == "after_step":
                    _check_after(sub.children, at)
    if _may_underflow(text):
        for tok in tree.scan_values(lambda v: isinstance(v, Token) and v.type == "NUMBER"):
            if _underflows(str(tok)):
                shown = str(tok) if len(tok) <= 40 else str(tok)[:37] + "..."
                at(f"number {shown} is too small to represent: it would be read as 0", tok.line or 0, tok.column or 0, len(tok))
    diags.sort(key=lambda d: (d.line, d.col))
    return diags


def _check_surrogates(tok: Token, at: Callable[..., None]) -> None:
    r"""A `\uXXXX` escape of a UTF-16 surrogate must be the first half of a pair directly
    followed by its second half (as JSON writes a character beyond U+FFFF)."""
    raw = str(tok)
    pending: re.Match[str] | None = None  # a high surrogate waiting for its low half
    for m in _ESCAPE.finditer(raw):
        code = int(m.group(1), 16) if m.group(1) else None
        if pending is not None:
            if code is not None and 0xDC00 <= code <= 0xDFFF and m.start() == pending.end():
                pending = None
                continue
            _lone(tok, pending, at)
            pending = None
        if code is None or not 0xD800 <= code <= 0xDFFF:
            continue
        if code <= 0xDBFF:
            pending = m
        else:
            _lone(tok, m, at)
    if pending is not None:
        _lone(tok, pending, at)


def _lone(tok: Token, m: re.Match[str], at: Callable[..., None]) -> None:
    # a STRING token never spans lines, so the escape's column is the token's plus its offset
    at(f"{m.group()} is not a character: a lone surrogate", tok.line or 0, (tok.column or 0) + m.start(), len(m.group()))


# Each takes a node's children as the tree holds them (the inline parse passes the same list).
def _check_limit_count(children: list[Any], at: Callable[..., None]) -> None:
    count = next((c for c in children if isinstance(c, Token) and c.type == "NUMBER"), None)
    if count is not None and not any(ch in count for ch in ".eE-") and _int_above(str(count), MAX_LIMIT_COUNT):
        at(
            f"a limit's count must be at most {MAX_LIMIT_COUNT} (2^53 - 1, the largest whole number "
            "a JSON number carries exactly)",
            count.line or 0, count.column or 0, len(count),
        )  # fmt: skip


def _check_window(children: list[Any], at: Callable[..., None]) -> None:
    tok = children[0] if children else None
    if isinstance(tok, Token) and tok.type == "DURATION" and _duration_too_long(str(tok)):
        at(
            f"a limit's window must be at most {MAX_WINDOW_DAYS}d (100 years, {MAX_WINDOW_SECONDS} seconds)",
            tok.line or 0, tok.column or 0, len(tok),
        )  # fmt: skip


def _check_after(children: list[Any], at: Callable[..., None]) -> None:
    tok = children[0] if children else None
    if isinstance(tok, Token) and _duration_too_long(str(tok)):
        shown = str(tok) if len(tok) <= 40 else str(tok)[:36] + "..." + str(tok)[-1]
        at(
            f"`after {shown}` is too long: a step can advance the clock by at most "
            f"{MAX_WINDOW_DAYS}d (100 years)",
            tok.line or 0, tok.column or 0, len(tok),
        )  # fmt: skip


# The same checks where the inline parse meets those nodes (any problem: the tree path reports).
_INLINE_LITERAL_CHECKS: dict[str, Callable[[list[Any], Callable[..., None]], None]] = {
    "limit_rule": _check_limit_count,
    "window": _check_window,
    "after_step": _check_after,
}


def _int_above(digits: str, bound: int) -> bool:
    digits = digits.lstrip("0") or "0"
    return len(digits) > len(str(bound)) or int(digits) > bound


def _duration_too_long(text: str) -> bool:
    digits, unit = text[:-1], text[-1]
    return _int_above(digits, MAX_WINDOW_SECONDS // _UNIT_SECONDS.get(unit, 1))


def _underflows(text: str) -> bool:
    if not any(ch in text for ch in ".eE"):
        return False
    mantissa = re.split("[eE]", text, maxsplit=1)[0]
    if not any(ch in "123456789" for ch in mantissa):
        return False  # a written zero is zero
    try:
        return float(text) == 0.0
    except (ValueError, OverflowError):
        return False


# --- syntax errors in words -------------------------------------------------------------


def glued_keywords(tokens: Iterable[Token], text: str, file: str) -> list[Diagnostic]:
    """A keyword must end at a word boundary. Where the grammar takes no name, the lexer matches
    the keyword at the start of a longer word (`denytool`, `per minutes`) and the rest would be
    read as the next word: `defaultallow` would compile. Each such word is an error that names it."""
    diags: list[Diagnostic] = []
    for tok in tokens:
        end = tok.end_pos
        if end is None or end >= len(text) or not (text[end].isalnum() or text[end] == "_"):
            continue
        word = _word_at(text, tok.start_pos or 0).rstrip("-")
        if word.lower() in _keywords_of_grammar():  # `tools` after `tool`: a keyword of its own
            continue
        line = tok.line or 0
        context = _context_before(text, tok.start_pos or 0)
        diags.append(
            Diagnostic(
                "error", _glued_message(str(tok), word, context), file, line, tok.column or 0, line_of(text, line), len(word)
            )
        )
    return diags


def _glued_message(keyword: str, word: str, context: str = "") -> str:
    rest = word[len(keyword):]
    if rest.lower() in ("s", "es") and keyword in _UNIT_AND_SCOPE:
        return f"unknown word `{word}`: did you mean `per {keyword}`? (units and scopes are singular)"
    if rest.lower() in _keywords_of_grammar() or rest.lower() == "server":  # `server` is a pattern, not a quoted word
        return f"unknown word `{word}`: did you mean `{keyword} {rest}`? (a keyword ends at a space)"
    if context == "decision":  # `-> allows`, `-> denyed`: a test step's decision
        return _decision_message(word)
    if context == "default":
        return _default_message(word)
    import difflib

    # `defualt` starts with `def`, but is a slip of `default`: name the longer keyword it resembles
    # (of the same kind: `allows` at a statement's start is no slip of the decision code `allowed`)
    kinds = _KEYWORDS if keyword.lower() in _KEYWORDS else _keywords_of_grammar()
    longer = [k for k in kinds if k.startswith(keyword.lower()) and len(k) > len(keyword)]
    close = difflib.get_close_matches(word.lower(), longer, n=1, cutoff=0.7)
    if close and keyword.lower() in _KEYWORDS:  # a statement's first word, as an unknown one is reported
        return f"unknown keyword `{word}`: expected a statement: {STATEMENTS} (did you mean `{close[0]}`?)"
    if close:
        return f"unknown word `{word}`: did you mean `{close[0]}`?"
    return f"unknown word `{word}`: did you mean `{keyword}`?"


STATEMENTS = "package, import, let, def, default, server, allow, deny, hide, limit or test"
SELECTOR = 'a tool selector such as tool "name", tools ["a", "b"], tools "prefix-*", read tools or all tools'
COMPARISON = "a comparison such as == \"x\", > 5, in [...], contains \"x\", matches \"re\", exists or missing"

_WORDS: dict[str, str] = {
    "STRING": 'a string in double quotes, such as "name"',
    "NAME": "a name",
    "REF_NAME": "a name",
    "CALL_NAME": "a predicate call",
    "NUMBER": "a number",
    "DURATION": "a duration such as 30s, 5m, 1h or 1d",
    "CMP_OP": "a comparison operator",
    "FN": "count(...) or len(...)",
    "NOT_IN": "not in",
    "LBRACE": "{",
    "RBRACE": "}",
    "LSQB": "[",
    "RSQB": "]",
    "LPAR": "(",
    "RPAR": ")",
    "COMMA": ",",
    "COLON": ":",
    "DOT": ".",
    "__ANON_0": "->",
    "$END": "the end of the file",
}


def _terminal_words(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in sorted(names):
        if name in _WORDS:
            word = _WORDS[name]
        elif name.startswith("__ANON"):
            word = "->"
        else:
            word = name.lower()
        if word not in out:
            out.append(word)
    return out


def _expected_sentence(expected: set[str], after: str | None) -> str:
    exp = {e for e in expected if e not in ("WS", "COMMENT")}
    stmt_keys = {"ALLOW", "DENY", "HIDE", "LIMIT", "PACKAGE", "IMPORT", "DEFAULT", "SERVER", "TEST"}
    if {"TOOL", "TOOLS", "ALL"} <= exp:
        return f"expected {SELECTOR}"
    if "CMP_OP" in exp and ("EXISTS" in exp or "DOT" in exp):
        return f"expected {COMPARISON}"
    if {"STRING", "NUMBER", "TRUE", "FALSE", "NULL"} <= exp or {"STRING", "NUMBER", "LSQB", "REF_NAME"} <= exp:
        if "REF_NAME" in exp:
            return "expected a value: a string, a number, true, false, null, a list [...] or a name defined by let or import data"
        return "expected a value: a string, a number, true, false, null or a list [...]"
    if "REASON" in exp and stmt_keys <= exp:
        return f"expected a new statement ({STATEMENTS}), a reason \"...\" or more of the condition (and, or)"
    if stmt_keys <= exp:
        return f"expected a statement: {STATEMENTS}"
    if {"IF", "UNLESS"} <= exp:
        return f"expected if, unless, reason or a new statement ({STATEMENTS})"
    if "NAME" in exp and "FN" in exp:
        return "expected a condition such as args.amount > 100, identity in [\"a\"], approved or not approved"
    if {"SECOND", "MINUTE", "HOUR", "DAY", "DURATION"} <= exp:
        return "expected a time unit: second, minute, hour, day, or a duration such as 90s"
    if {"SESSION", "IDENTITY", "GLOBAL"} <= exp and len(exp) <= 4:
        return "expected a limit scope: session, identity or global"
    if {"READ", "WRITE", "DESTRUCTIVE", "EXECUTE"} <= exp and "TOOLS" not in exp:
        return "expected a risk class: read, write, destructive or execute"
    if {"ALLOW", "DENY", "APPROVAL_REQUIRED"} <= exp and "DEFAULT" not in exp:
        return DECISION
    if exp == {"ALLOW", "DENY"}:
        return "expected allow or deny after `default`"
    if {"HIDDEN", "DENIED", "RATE_LIMITED"} <= exp:
        return "expected a decision code (hidden, denied, default, deny_if, require, rate_limited), reason \"...\" or the next step"
    if "CALL" in exp and "VISIBLE" in exp:
        return "expected a test step: call, as identity/session/server, repeat, after or visible (or } to end the test)"
    if exp == {"TOOL", "RBRACE"}:
        return 'expected tool "name" CLASS (or } to end the server block)'
    if "TO" in exp and len(exp) == 1:
        return "expected `to N per UNIT` after the limit's tool selector"
    words = _terminal_words(exp)
    if len(words) == 1:
        return f"expected {words[0]}"
    return "expected one of: " + ", ".join(words[:12]) + (", ..." if len(words) > 12 else "")


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    value = str(tok)
    if len(value) > 40:
        value = value[:37] + "..."
    return f"`{value}`"


def syntax_diagnostic(e: UnexpectedInput, text: str, file: str) -> Diagnostic:
    """Translate Lark's exception into one located sentence."""
    line = getattr(e, "line", 0) or 0
    col = getattr(e, "column", 0) or 0
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if 0 <= e.pos_in_stream < len(text) else ""
        if ch == '"':
            msg = "unterminated string: a string must close with \" on the same line"
        elif ch == "=" and text[e.pos_in_stream : e.pos_in_stream + 2] != "==":
            msg = "`=` is not an operator: write `==` to compare"
        elif ch == "'":
            msg = "strings use double quotes: write \"text\", not 'text'"
        elif ch == "\\" or ch.isprintable() is False and ch not in "\t":
            msg = f"unexpected character {ch!r}"
        else:
            word = _word_at(text, e.pos_in_stream)
            allowed = set(e.allowed or ())
            if word and word[0].isalpha():
                msg = f"unexpected word `{word}`: " + _expected_sentence(allowed, None)
                if {"ALLOW", "DENY", "PACKAGE"} <= allowed:
                    msg = f"unknown keyword `{word}`: " + _expected_sentence(allowed, None)
            else:
                msg = f"unexpected `{ch}`: " + _expected_sentence(allowed, None)
        return Diagnostic("error", msg, file, line, col, line_of(text, line), max(1, len(_word_at(text, e.pos_in_stream))))
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            line, col = _end_position(text)
            expected_end = set(e.expected or ())
            msg = "unexpected end of file: " + _expected_sentence(expected_end, None)
            if "RBRACE" in expected_end:
                msg = "unexpected end of file: a `{` block is not closed (expected `}`)"
            return Diagnostic("error", msg, file, line, col, line_of(text, line))
        expected = set(e.expected or ())
        if tok.type == "LBRACE" and _starts_text(text, tok.start_pos):
            return Diagnostic("error", JSON_NOT_PLR, file, line, col, line_of(text, line))
        msg = f"unexpected {_describe_token(tok)}: " + _expected_sentence(expected, None)
        if tok.type == "EQUAL" and "CMP_OP" in expected:  # `=` is a token only for `let`
            msg = "`=` is not an operator: write `==` to compare"
        elif tok.type in ("STRING", "NUMBER", "TRUE", "FALSE", "NULL", "LSQB") and {"NAME", "RPAR"} <= expected and len(expected) <= 3:
            msg = f"unexpected {_describe_token(tok)}: a predicate is called with paths, such as `in_workspace(args.path)`, not values"
        elif tok.type == "CMP_OP" and {"NAME", "FN"} <= expected:
            msg = f"unexpected `{tok}`: a call of a predicate (or a condition in parentheses) holds or not on its own; it is not compared"
            base = max(0, (tok.start_pos or 0) - 200)
            before = text[base : tok.start_pos or 0]  # bounded: no scan of a long line
            call = re.search(r"([A-Za-z_][A-Za-z0-9_\-]*)[ \t]*\([^()\n]*\)[ \t]*$", before)
            if call is not None and call.group(1) not in _FUNCTIONS:
                hint = _did_you_mean(call.group(1), _FUNCTIONS)
                if hint:
                    at = base + call.start(1)
                    line, col = text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1
                    msg = f"unknown function `{call.group(1)}`{hint}: the functions are {', '.join(_FUNCTIONS)}"
                    return Diagnostic("error", msg, file, line, col, line_of(text, line), len(call.group(1)))
        elif tok.type in ("EXISTS", "MISSING") and "CMP_OP" in expected and "DOT" not in expected:
            msg = f"`{tok}` tests a path, not a function's result: write `PATH {tok}` (a function's value is compared)"
        word = str(tok)
        is_word = tok.type in ("NAME", "REF_NAME") or (tok.type == word.upper() and word in _keywords_of_grammar())
        if (tok.type in ("NAME", "REF_NAME") or word in _STATEMENT_FIXES) and {"ALLOW", "DENY", "PACKAGE"} <= expected:
            # `frobnicate tool "x"`; `denied tool "x"`: a keyword of another place (`reason` is not unknown)
            hint = f" (did you mean `{_STATEMENT_FIXES[word]}`?)" if word in _STATEMENT_FIXES else _did_you_mean(word, _KEYWORDS)
            msg = f"unknown keyword `{tok}`: " + _expected_sentence(expected, None) + hint
        elif is_word and {"ALLOW", "DENY", "APPROVAL_REQUIRED"} <= expected and "DEFAULT" not in expected:
            msg = _decision_message(word)  # `-> denied`, `-> hidden`, `-> approved`
        elif is_word and expected == {"ALLOW", "DENY"}:
            msg = _default_message(word)  # `default denied`
        elif is_word and {"HIDDEN", "DENIED", "RATE_LIMITED"} <= expected:  # `-> deny hiden`
            msg += _did_you_mean(word.lower(), _codes_after(text, tok.start_pos))
        return Diagnostic("error", msg, file, line, col, line_of(text, line), max(1, min(len(str(tok)), 40)))
    if isinstance(e, UnexpectedEOF):
        line, col = _end_position(text)
        msg = "unexpected end of file: " + _expected_sentence(set(e.expected or ()), None)
        return Diagnostic("error", msg, file, line, col, line_of(text, line))
    return Diagnostic("error", f"syntax error: {e}", file, line, col, line_of(text, line))


# A file whose first character is `{`: a JSON document (most likely a compiled policy) given where
# .plr rules are read; one sentence naming the commands that read it, not "expected a statement".
JSON_NOT_PLR = (
    "`{` starts a JSON document, not .plr rules (a .plr file starts with a statement such as `default deny`): "
    "a compiled JSON policy is read from a file named *.json by `plr eval` and `plr proxy`, "
    "`plr check FILE.json` checks it as they load it, and `plr decompile FILE` turns it into .plr rules"
)


def _starts_text(text: str, pos: int | None) -> bool:
    """Whether ``pos`` is the first character of ``text`` that is not whitespace (a BOM aside)."""
    return pos is not None and _LEADING_SPACE.match(text).end() == pos  # type: ignore[union-attr]


_LEADING_SPACE = re.compile("[\ufeff \t\r\n\f]*")


_KEYWORDS = ("package", "import", "let", "def", "default", "server", "allow", "deny", "hide", "limit", "test")
# a keyword of another place at a statement's start, and the statement meant
_STATEMENT_FIXES = {"allowed": "allow", "denied": "deny", "deny_if": "deny", "hidden": "hide"}
_CODES = ("allowed", "hidden", "denied", "default", "deny_if", "require", "rate_limited")
_FUNCTIONS = ("count", "len", "lower", "upper", "trim", "normpath", "basename", "dirname")
_UNIT_AND_SCOPE = frozenset({"second", "minute", "hour", "day", "session", "identity", "global"})


# The decision codes each effect goes with (dsl/checks.py refuses the others in a test step).
_CODES_OF = {
    "allow": ("allowed", "default"),
    "deny": ("hidden", "denied", "default", "deny_if", "require", "rate_limited"),
    "approval_required": ("require",),
}


def _codes_after(text: str, pos: int | None) -> tuple[str, ...]:
    """The codes that go with the effect written before ``pos`` (`-> deny all`: the codes of
    `deny`, so no `allowed`), all of them when that word is not an effect. A bounded look back."""
    before = text[max(0, (pos or 0) - 200) : pos or 0].rstrip()
    effect = re.search(r"[A-Za-z_]+$", before)
    return _CODES_OF.get(effect.group() if effect else "", _CODES)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _word_at(text: str, pos: int) -> str:
    end = pos
    while end < len(text) and end - pos < 40 and (text[end].isalnum() or text[end] in "_-"):
        end += 1
    return text[pos:end] or text[pos : pos + 1]


def _end_position(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    if not stripped:
        return 1, 1
    line = stripped.count("\n") + 1
    col = len(stripped) - (stripped.rfind("\n") + 1) + 1
    return line, col
