"""A .plr text as an editor sees it while it is being typed: tokens with their places and roles.

The parser needs a whole statement to say anything; completion and hover are asked in the
middle of one (`deny tool "wri`), so this module lexes tolerantly (an unterminated string runs
to the end of its line, an unknown character is a token of its own) and works out, per token,
the block it is in (``server``, ``test``, ``condition`` or ``object``), the statement it belongs
to and, for a string, what it names (a tool, an import, a reason…). Nothing here raises.

Positions are the server's own: 0-based lines (split at ``\\n`` only, as the parser counts them)
and 0-based columns in code points (Python string indices); the server converts to and from the
client's UTF-16 units.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from typing import Iterator

from . import words

Pos = tuple[int, int]  # (line, column), both 0-based; columns in code points
Range = tuple[Pos, Pos]

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\f\r\n]+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\[^\n])*"?)
  | (?P<number>-?[0-9]+[smhd](?![A-Za-z0-9_])|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
  | (?P<op>->|==|!=|<=|>=|[<>=])
  | (?P<punct>[{}()\[\],:.])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_CLOSED_STRING = re.compile(r'"(?:[^"\\\n]|\\[^\n])*"')

# A block's kind, from what stands before its `{`.
TOP, SERVER, TEST, CONDITION, OBJECT = "", "server", "test", "condition", "object"

# What a string names, by the words before it.
TOOL, CATALOGUE, GLOB, CALL, IMPORT, DATA, SERVER_NAME, REASON, TEST_NAME, CONTEXT, VALUE = (
    "tool", "catalogue", "glob", "call", "import", "data", "server", "reason", "test", "context", "value",
)  # fmt: skip
TOOL_ROLES = frozenset({TOOL, CATALOGUE, CALL})  # a string that is exactly one tool's name


@dataclass(slots=True)
class Token:
    kind: str  # string, number, name, op, punct, other (comments are kept apart)
    text: str
    start: int  # offsets into the text
    end: int
    block: str = TOP  # the innermost block holding the token (a brace belongs to the outer one)
    opens: str = ""  # for `{`: the kind of the block it opens
    stmt: int = 0  # index of the first token of its top-level statement
    closed: bool = True  # for strings: ends with its quote on the same line

    def is_word(self, *texts: str) -> bool:
        return self.kind == "name" and (not texts or self.text in texts)

    def value(self) -> str:
        """A string token's text (JSON escapes decoded; an unterminated one as written)."""
        if self.kind != "string":
            return self.text
        if self.closed:
            try:
                return str(json.loads(self.text))
            except ValueError:
                return self.text[1:-1]
        return self.text[1:]


@dataclass
class Source:
    """One text, lexed: ``tokens`` (no white space or comments) and ``comments``."""

    text: str
    tokens: list[Token] = field(default_factory=list)
    comments: list[Token] = field(default_factory=list)
    line_starts: list[int] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list)
    _complete: list[tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", self.text))]
        for m in _TOKEN.finditer(self.text):
            kind = m.lastgroup or "other"
            if kind == "ws":
                continue
            tok = Token(kind, m.group(), m.start(), m.end())
            if kind == "comment":
                self.comments.append(tok)
                continue
            if kind == "string":
                tok.closed = _CLOSED_STRING.fullmatch(tok.text) is not None
            self.tokens.append(tok)
        self._starts = [t.start for t in self.tokens]
        self._structure()

    # -- positions ------------------------------------------------------------------------
    def pos(self, offset: int) -> Pos:
        line = bisect.bisect_right(self.line_starts, offset) - 1
        return line, offset - self.line_starts[line]

    def offset(self, pos: Pos) -> int:
        line, col = pos
        if line < 0:
            return 0
        if line >= len(self.line_starts):
            return len(self.text)
        start = self.line_starts[line]
        end = self.line_starts[line + 1] - 1 if line + 1 < len(self.line_starts) else len(self.text)
        return min(start + max(col, 0), end)

    def range_of(self, tok: Token) -> Range:
        return self.pos(tok.start), self.pos(tok.end)

    def line_text(self, line: int) -> str:
        if not 0 <= line < len(self.line_starts):
            return ""
        start = self.line_starts[line]
        end = self.line_starts[line + 1] - 1 if line + 1 < len(self.line_starts) else len(self.text)
        return self.text[start:end]

    # -- tokens ---------------------------------------------------------------------------
    def index_before(self, offset: int) -> int:
        """The index of the last token that starts before ``offset`` (-1 when none)."""
        return bisect.bisect_left(self._starts, offset) - 1

    def token_at(self, offset: int) -> int | None:
        """The index of the token under ``offset`` (or ending right at it), or None."""
        i = self.index_before(offset + 1)
        if i >= 0 and self.tokens[i].start <= offset < self.tokens[i].end:
            return i
        if i >= 0 and self.tokens[i].end == offset and self.tokens[i].kind in ("name", "string", "number"):
            return i
        return None

    def in_comment(self, offset: int) -> bool:
        starts = [c.start for c in self.comments]
        i = bisect.bisect_right(starts, offset) - 1
        return i >= 0 and self.comments[i].start < offset <= self.comments[i].end

    def prev(self, i: int, back: int = 1) -> Token | None:
        j = i - back
        return self.tokens[j] if 0 <= j < len(self.tokens) else None

    def statement(self, i: int) -> list[Token]:
        """The tokens of token ``i``'s top-level statement, up to and including ``i``."""
        return self.tokens[self.tokens[i].stmt : i + 1] if i >= 0 else []

    def block_after(self, i: int) -> str:
        """The block a token following token ``i`` would be in."""
        if i < 0:
            return TOP
        tok = self.tokens[i]
        return tok.opens if tok.text == "{" and tok.kind == "punct" else tok.block

    def string_role(self, i: int) -> str:
        """What string token ``i`` names: a tool, an import, a reason… (see the role names)."""
        tok = self.tokens[i]
        p1, p2 = self.prev(i), self.prev(i, 2)
        if p1 is None:
            return VALUE
        if p1.is_word("tool"):
            return CATALOGUE if tok.block == SERVER else TOOL
        if p1.is_word("tools"):
            return GLOB
        if p1.is_word("call"):
            return CALL
        if p1.is_word("import"):
            return IMPORT
        if p1.is_word("data") and p2 is not None and p2.is_word("import"):
            return DATA
        if p1.is_word("reason"):
            return REASON
        if p1.is_word("server") and tok.block == TOP:
            return SERVER_NAME
        if p1.is_word("test") and tok.block == TOP:
            return TEST_NAME
        if p1.is_word("identity", "session", "server") and tok.block == TEST:
            return CONTEXT
        j = i - 1
        while j >= 0 and (self.tokens[j].kind == "string" or self.tokens[j].text == ","):
            j -= 1
        if j >= 1 and self.tokens[j].text == "[" and self.tokens[j - 1].is_word("tools", "visible"):
            return TOOL  # an item of `tools [...]` or of a test's `visible [...]`
        return VALUE

    def strings(self, roles: frozenset[str] | set[str]) -> Iterator[tuple[Token, str]]:
        for i, tok in enumerate(self.tokens):
            if tok.kind == "string":
                role = self.string_role(i)
                if role in roles:
                    yield tok, role

    def definitions(self) -> dict[str, tuple[str, Token]]:
        """Names this text defines, as written: ``let NAME``, ``def NAME(``, ``import data … as
        NAME`` (name -> (kind, its token)); found even while the file does not parse."""
        out: dict[str, tuple[str, Token]] = {}
        toks = self.tokens
        for i, tok in enumerate(toks):
            if tok.block != TOP or tok.kind != "name" or i + 1 >= len(toks) or not toks[i + 1].is_word():
                continue
            if tok.text == "let":
                out.setdefault(toks[i + 1].text, ("let", toks[i + 1]))
            elif tok.text == "def":
                out.setdefault(toks[i + 1].text, ("def", toks[i + 1]))
            elif tok.text == "as" and i >= 3 and toks[i - 1].kind == "string" and toks[i - 2].is_word("data"):
                out.setdefault(toks[i + 1].text, ("data", toks[i + 1]))
        return out

    def complete_statements(self) -> list[tuple[int, int]]:
        """The (start, end) offsets of the top-level statements that say what a file brings into
        scope and are written whole: ``import "…"``, ``import data "…" as NAME`` and a
        ``server "…" { … }`` block closed by its brace. Found by shape only (the parser judges
        them, see ``Workspace.partial_result``); computed once per text."""
        if self._complete is None:
            toks = self.tokens
            out: list[tuple[int, int]] = []
            for i, tok in enumerate(toks):
                if tok.stmt != i or tok.block != TOP or not tok.is_word("import", "server"):
                    continue
                j = i
                while j + 1 < len(toks) and toks[j + 1].stmt == i:
                    j += 1
                stmt = toks[i : j + 1]
                if tok.text == "import":
                    whole = (len(stmt) == 2 and stmt[1].kind == "string" and stmt[1].closed) or (
                        len(stmt) == 5
                        and stmt[1].is_word("data")
                        and stmt[2].kind == "string"
                        and stmt[2].closed
                        and stmt[3].is_word("as")
                        and stmt[4].is_word()
                    )
                else:
                    whole = (
                        len(stmt) >= 4
                        and stmt[1].kind == "string"
                        and stmt[1].closed
                        and stmt[2].opens == SERVER
                        and stmt[-1].text == "}"
                        and stmt[-1].kind == "punct"
                        and stmt[-1].block == TOP
                    )
                if whole:
                    out.append((tok.start, stmt[-1].end))
            self._complete = out
        return list(self._complete)

    # -- structure ------------------------------------------------------------------------
    def _structure(self) -> None:
        """Blocks and statements, in one pass; a stray `}` is ignored, an unclosed `{` lasts."""
        stack: list[str] = []
        stmt = 0
        toks = self.tokens
        for i, tok in enumerate(toks):
            tok.block = stack[-1] if stack else TOP
            if not stack and tok.kind == "name" and self._starts_statement(i):
                stmt = i
            tok.stmt = stmt
            if tok.kind != "punct":
                continue
            if tok.text == "{":
                tok.opens = self._opens(i, tok.block)
                stack.append(tok.opens)
            elif tok.text == "}" and stack:
                stack.pop()
                tok.block = stack[-1] if stack else TOP

    def _starts_statement(self, i: int) -> bool:
        tok = self.tokens[i]
        if tok.text not in words.STATEMENT_STARTS:
            return False
        p1 = self.prev(i)
        if p1 is not None and (p1.is_word("default") or p1.text == "."):
            return False  # `default allow`, `args.limit`
        if tok.text == "server":
            nxt = self.tokens[i + 1] if i + 1 < len(self.tokens) else None
            return nxt is None or nxt.kind == "string"
        if tok.text == "import" or tok.text == "test":
            return True
        return p1 is None or not (p1.text == "." or p1.kind == "op")

    def _opens(self, i: int, outer: str) -> str:
        p1, p2 = self.prev(i), self.prev(i, 2)
        if p1 is not None and p1.kind == "string" and p2 is not None:
            if p2.is_word("server") and outer == TOP:
                return SERVER
            if p2.is_word("test") and outer == TOP:
                return TEST
            if p2.is_word("call"):
                return OBJECT
        if p2 is not None and p2.is_word("repeat"):
            return TEST
        if outer == OBJECT or (p1 is not None and p1.text in (":", ",", "[") and outer != CONDITION):
            return OBJECT
        return CONDITION


def word_range(src: Source, offset: int) -> tuple[int, int]:
    """The offsets of the name being typed at ``offset`` (empty at a word boundary)."""
    start = offset
    while start > 0 and (src.text[start - 1].isalnum() or src.text[start - 1] in "_-"):
        start -= 1
    return start, offset
