"""A Pygments lexer for .plr policies, registered as the ``plr`` lexer (entry point
``pygments.lexers``), so a Markdown or Sphinx build highlights ```` ```plr ```` blocks and
``pygmentize -l plr policy.plr`` works once plr is installed.

Keywords are contextual in plr (``args.limit`` is a path, ``tool`` is also a path root), so the
rules below follow the grammar's own tie-breaks: a word after a dot is a field, never a keyword;
``tool``/``server``/``identity``/``session`` are keywords before a string or after ``per`` and
path roots elsewhere. Words come from ``dsl.lsp.words``, which also knows the constructs of
issue #15 (``let``, ``def``, ``import data … as``, ``every``/``some``, the string functions).

This module needs Pygments (not a dependency of plr: it is imported only by Pygments itself).
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

from .lsp import words as w

__all__ = ["PlrLexer"]

_NAME = r"[A-Za-z_][A-Za-z0-9_\-]*"
_END = r"(?![A-Za-z0-9_\-])"  # a word ends where a name could not go on (names may hold `-`)
_START = r"(?<![A-Za-z0-9_\-.])"
_SPACE = r"(?:[ \t\f\r\n]|#[^\n]*\n)*"


def _words(items: tuple[str, ...] | list[str]) -> str:
    """A regex for any of ``items`` as a whole word (longest first)."""
    return _START + "(?:" + "|".join(sorted(items, key=len, reverse=True)) + ")" + _END


# Contextual words that are keywords only in these positions.
_CONTEXT_ONLY = {"tool", "server", "identity", "session"}
_KEYWORDS = [k for k in w.KEYWORDS if k not in _CONTEXT_ONLY and k not in w.CONSTANTS]


class PlrLexer(RegexLexer):
    """The plr policy language (``.plr``)."""

    name = "plr"
    aliases = ["plr", "plr-error"]  # docs mark deliberately wrong examples ```plr-error
    filenames = ["*.plr"]
    mimetypes = ["text/x-plr"]
    url = "https://pypi.org/project/plr/"

    tokens = {
        "root": [
            (r"[ \t\f\r\n]+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r'"', String.Double, "string"),
            (r"'[^'\n]*'?", Error),  # single quotes are an error in plr
            # a field after a dot is never a keyword: args.limit, args.default
            (r"(\.)(" + _NAME + r")", bygroups(Punctuation, Name.Attribute)),
            # declarations that name something
            (r"(package)(\s+)(" + _NAME + r"(?:\." + _NAME + r")*)", bygroups(Keyword.Namespace, Whitespace, Name.Namespace)),
            (r"(def)(\s+)(" + _NAME + r")", bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (r"(let)(\s+)(" + _NAME + r")", bygroups(Keyword.Declaration, Whitespace, Name.Constant)),
            (r"(as)(\s+)(?!(?:identity|session|server)" + _END + r")(" + _NAME + r")",
             bygroups(Keyword.Declaration, Whitespace, Name.Constant)),
            (r"(every|some)(\s+)(" + _NAME + r")(\s+)(in)" + _END,
             bygroups(Keyword, Whitespace, Name.Variable, Whitespace, Operator.Word)),
            # keywords that are also path roots: a keyword only where a keyword may stand
            (_START + r"(?:tool|server)(?=" + _SPACE + r'")', Keyword),
            (r"(per)(\s+)(session|identity|global)" + _END, bygroups(Keyword, Whitespace, Keyword)),
            (_START + r"(?:identity|session)(?=" + _SPACE + r'")', Keyword),
            (r"(not)(\s+)(in)" + _END, bygroups(Operator.Word, Whitespace, Operator.Word)),
            (_words(w.CONSTANTS), Keyword.Constant),
            (_words(w.FUNCTIONS) + r"(?=\s*\()", Name.Builtin),
            (_words(list(w.LOGIC) + list(w.WORD_OPERATORS)), Operator.Word),
            (_words(list(w.DECLARATIONS)), Keyword.Declaration),
            (_words(_KEYWORDS), Keyword),
            (_words(w.PATH_ROOTS), Name.Builtin.Pseudo),
            (r"-?[0-9]+[smhd]" + _END, Number),  # a duration: 90s, 15m
            (r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?" + _END, Number),
            (r"->|==|!=|<=|>=|<|>|=", Operator),
            (r"[{}()\[\],:.]", Punctuation),
            (_NAME, Name),
            (r".", Error),
        ],
        "string": [
            (r'\\(?:u[0-9A-Fa-f]{4}|["\\/bfnrt])', String.Escape),
            (r'\\.', Error),  # not a JSON escape
            (r'[^"\\\n]+', String.Double),
            (r'"', String.Double, "#pop"),
            (r"\n", Error, "#pop"),  # a string closes on its own line
        ],
    }

