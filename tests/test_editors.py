"""Highlighting outside plr: the Pygments lexer (entry point ``pygments.lexers``: ```plr blocks,
``pygmentize -l plr``) and the TextMate grammar of editors/ (VS Code and every editor that reads
TextMate grammars), held to the same words (``dsl.lsp.words``) and to the grammar's keywords.

The TextMate grammar is run by the engine VS Code itself uses (vscode-textmate with the
Oniguruma regex engine, from npm into the test cache, as the proxy tests install their servers),
so a pattern Oniguruma reads differently from Python's ``re`` is caught here, not by a user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String, _TokenType

from dsl.lsp import words
from dsl.pygments_lexer import PlrLexer
from dsl.resources import grammar_text

ROOT = Path(__file__).resolve().parent.parent
EDITORS = ROOT / "editors"
EXAMPLES = sorted((ROOT / "examples").glob("*.plr"))
STDLIB = sorted((ROOT / "stdlib_rules").glob("**/*.plr"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^( *)```([A-Za-z-]*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)

# The constructs of issue #15 as its contract writes them: highlighting knows them before the
# parser does.
ISSUE_15 = """\
let workspace = "/workspace/"                 # a named constant
let admins = ["alice", "bob"]
import data "./teams.json" as teams

def in_workspace(p) {
    normpath(p) starts_with workspace
    not (lower(p) matches "(^|/)\\\\.(git|env)(/|$)")
}

allow tool "read_multiple_files" if every p in args.paths { in_workspace(p) }
deny tool "edit_file" if some e in args.edits { e.newText contains "BEGIN RSA PRIVATE KEY" }
allow tool "delete_file" if identity in admins or identity in teams.oncall
deny all tools if identity == "guest"
limit all tools to 100 per hour per identity if identity != "ops"
"""


def code_blocks(lang: str) -> list[tuple[str, str]]:
    """(where, code) of every fenced block marked ``lang`` in the README and docs/."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in _FENCE.finditer(text):
            if m.group(2) == lang:
                line = text.count("\n", 0, m.start()) + 1
                code = "\n".join(l[len(m.group(1)) :] for l in m.group(3).split("\n"))
                out.append((f"{doc.relative_to(ROOT)}:{line}", code))
    return out


def grammar_keywords() -> set[str]:
    """The words grammar/plr.lark reserves: its quoted words and the words of its word terminals."""
    text = re.sub(r"//[^\n]*", "", grammar_text())
    quoted = set(re.findall(r'(?<![A-Za-z0-9_.\\])"([a-z][a-z_]*)"', text))
    fns = set(re.findall(r"\(\?:([a-z|]+)\)\(\?=", text))  # FN: /(?:count|len)(?=.../
    return quoted | {w for group in fns for w in group.split("|")} | {"server", "as"}


# --- Pygments --------------------------------------------------------------------------------


def _tokens(code: str) -> list[tuple[_TokenType, str]]:
    return [(t, v) for t, v in PlrLexer().get_tokens(code) if v.strip()]


def _kind(code: str, word: str, nth: int = 0) -> _TokenType:
    """The token type of the ``nth`` token whose text is ``word``."""
    found = [t for t, v in _tokens(code) if v == word]
    assert len(found) > nth, (word, _tokens(code))
    return found[nth]


def test_the_lexer_is_registered_with_pygments():
    assert isinstance(get_lexer_by_name("plr"), PlrLexer)
    assert isinstance(get_lexer_by_name("plr-error"), PlrLexer)  # the docs' deliberately wrong examples
    assert isinstance(get_lexer_for_filename("policy.plr"), PlrLexer)


@pytest.mark.parametrize("path", [*EXAMPLES, *STDLIB], ids=lambda p: p.name)
def test_every_shipped_policy_lexes_without_an_error_token(path: Path):
    tokens = _tokens(path.read_text(encoding="utf-8"))
    assert not [v for t, v in tokens if t in Error], path


def test_every_plr_block_of_the_readme_and_docs_lexes_without_an_error_token():
    blocks = code_blocks("plr")
    assert len(blocks) >= 30, "the docs mark their policies ```plr"
    bad = [(where, v) for where, code in blocks for t, v in _tokens(code) if t in Error]
    assert not bad, bad


def test_the_lexer_tells_keywords_strings_comments_and_numbers_apart():
    code = (ROOT / "examples" / "codex_worker.plr").read_text(encoding="utf-8")
    assert _kind(code, "package") in Keyword
    assert _kind(code, "default") in Keyword
    assert _kind(code, "deny") in Keyword
    assert _kind(code, "limit") in Keyword
    assert _kind(code, "destructive") in Keyword
    assert all(t in String for t, v in _tokens('tool "cancel-task"')[1:])
    assert _tokens("# a comment\n") == [(Comment.Single, "# a comment")]
    assert _kind("limit all tools to 10 per minute", "10") in Number
    assert _kind("limit all tools to 10 per 90s", "90s") in Number
    assert _kind('deny tool "x" if count(args.ids) > 1.5e3', "1.5e3") in Number
    assert _kind('"a\\nb"', "\\n") in String.Escape


def test_keywords_are_contextual_as_in_the_grammar():
    # a field after a dot is a name, never a keyword (args.limit, args.default)
    assert _kind('deny tool "x" if args.limit > 1', "limit") in Name.Attribute
    assert _kind('deny tool "x" if args.default == true', "default") in Name.Attribute
    # `tool` starts a selector before a string, and is the path root elsewhere
    code = 'deny all tools if { tool == "x" }'
    assert _kind(code, "tool") in Name.Builtin
    assert _kind('deny tool "x"', "tool") in Keyword
    assert _kind("limit all tools to 1 per minute per identity", "identity") in Keyword
    assert _kind('allow tool "x" if identity == "ops"', "identity") in Name.Builtin
    # a glued keyword is not a keyword (plr check calls it an error)
    assert _kind('denytool "x"', "denytool") is Name
    assert _kind("deny 'x'", "'x'") in Error


def test_the_lexer_knows_the_constructs_of_issue_15():
    assert not [v for t, v in _tokens(ISSUE_15) if t in Error]
    assert _kind(ISSUE_15, "let") in Keyword
    assert _kind(ISSUE_15, "workspace") in Name.Constant
    assert _kind(ISSUE_15, "data") in Keyword
    assert _kind(ISSUE_15, "teams") in Name.Constant
    assert _kind(ISSUE_15, "def") in Keyword
    assert _kind(ISSUE_15, "in_workspace") in Name.Function
    assert _kind(ISSUE_15, "every") in Keyword and _kind(ISSUE_15, "some") in Keyword
    assert _kind("allow all tools if every p in args.paths { p exists }", "p") in Name.Variable
    for fn in ("normpath", "lower"):
        assert _kind(ISSUE_15, fn) in Name.Builtin
    assert _kind(ISSUE_15, "starts_with") in Operator.Word


def test_every_keyword_of_the_grammar_has_a_colour():
    known = {*words.KEYWORDS, *words.CONSTANTS, *words.FUNCTIONS, *words.PATH_ROOTS}
    assert grammar_keywords() - known == set()
    assert set(words.KEYWORD_HELP) >= set(words.KEYWORDS) - {"data"} | set(words.FUNCTIONS)
