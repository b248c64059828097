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
import sys
from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String, _TokenType

from dsl.lsp import words
from dsl.pygments_lexer import PlrLexer
from dsl.resources import grammar_text

from .conftest import npm_cache, npm_install

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


def test_every_keyword_of_the_grammar_has_a_colour_and_a_help_line():
    known = {*words.KEYWORDS, *words.CONSTANTS, *words.FUNCTIONS, *words.PATH_ROOTS}
    assert grammar_keywords() - known == set()
    assert set(words.KEYWORD_HELP) >= set(words.KEYWORDS) - {"data"} | set(words.FUNCTIONS)


# --- the TextMate grammar, run by VS Code's own engine -------------------------------------------

TEXTMATE_VERSIONS = ("vscode-textmate@9.3.2", "vscode-oniguruma@2.0.1")
NPM_CACHE = Path(os.environ.get("PLR_TEST_NPM_CACHE", Path.home() / ".cache" / "plr-tests" / "npm")).with_name("npm-textmate")
TOKENIZE_JS = r"""
// node tokenize.js GRAMMAR FILE...: every file's tokens as [line, start, text, scopes], as JSON
const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const onig = require("vscode-oniguruma");
const [grammarPath, ...files] = process.argv.slice(2);
const wasm = fs.readFileSync(path.join(path.dirname(require.resolve("vscode-oniguruma")), "onig.wasm"));
const onigLib = onig.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength)).then(() => ({
  createOnigScanner: (patterns) => new onig.OnigScanner(patterns),
  createOnigString: (s) => new onig.OnigString(s),
}));
const registry = new vsctm.Registry({
  onigLib,
  loadGrammar: async (scope) =>
    scope === "source.plr" ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, "utf8"), grammarPath) : null,
});
registry.loadGrammar("source.plr").then((grammar) => {
  const out = {};
  for (const file of files) {
    let stack = vsctm.INITIAL;
    const tokens = [];
    fs.readFileSync(file, "utf8").split("\n").forEach((line, i) => {
      const r = grammar.tokenizeLine(line, stack);
      for (const t of r.tokens) tokens.push([i, t.startIndex, line.substring(t.startIndex, t.endIndex), t.scopes]);
      stack = r.ruleStack;
    });
    out[file] = tokens;
  }
  process.stdout.write(JSON.stringify(out));
});
"""


def _textmate_engine() -> tuple[str, Path]:
    """node and a folder holding vscode-textmate and vscode-oniguruma (installed once from npm)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        # a missing tool fails, never silently skips (.ci/run installs node and npm)
        if os.environ.get("PLR_SKIP_NODE") == "1":
            pytest.skip("node/npm not installed and PLR_SKIP_NODE=1")
        pytest.fail("node and npm are not installed: .ci/run installs them (apt-get install nodejs npm; macOS: brew install node)")
    modules = NPM_CACHE / "node_modules"
    with npm_cache(NPM_CACHE):
        if not all((modules / v.rsplit("@", 1)[0] / "package.json").exists() for v in TEXTMATE_VERSIONS):
            npm_install(npm, NPM_CACHE, "plr-test-textmate", *TEXTMATE_VERSIONS)
        tokenize = NPM_CACHE / "tokenize.js"
        if not tokenize.exists() or tokenize.read_text(encoding="utf-8") != TOKENIZE_JS:
            tokenize.write_text(TOKENIZE_JS, encoding="utf-8")
    return node, NPM_CACHE


@pytest.fixture(scope="module")
def textmate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[int, int, str, list[str]]]]:
    """The tokens of every example, stdlib file, docs ```plr block and the #15 snippet, by name."""
    node, folder = _textmate_engine()
    tmp = tmp_path_factory.mktemp("textmate")
    files: dict[str, Path] = {p.name: p for p in [*EXAMPLES, *STDLIB]}
    for n, (where, code) in enumerate(code_blocks("plr")):
        files[where] = tmp / f"block{n}.plr"
        files[where].write_text(code, encoding="utf-8")
    files["issue15"] = tmp / "issue15.plr"
    files["issue15"].write_text(ISSUE_15, encoding="utf-8")
    files["words"] = tmp / "words.plr"
    files["words"].write_text("\n".join(words.KEYWORDS) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [node, str(folder / "tokenize.js"), str(EDITORS / "plr.tmLanguage.json"), *map(str, files.values())],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = json.loads(proc.stdout)
    return {name: [tuple(t) for t in raw[str(path)]] for name, path in files.items()}  # type: ignore[misc]


def _tm_category(scopes: list[str], text: str) -> str:
    """What a TextMate token is, in the words the comparison with Pygments uses."""
    scope = scopes[-1]
    if any(s.startswith("comment.") for s in scopes):
        return "comment"
    if any(s.startswith("string.") for s in scopes):
        return "string"
    if scope.startswith("invalid."):
        return "error"
    for prefix, kind in (
        ("constant.numeric", "number"), ("constant.language", "constant"),
        ("keyword.operator.comparison", "operator"), ("keyword.operator.arrow", "operator"),
        ("keyword.operator.assignment", "operator"), ("keyword.", "keyword"), ("storage.type.risk", "keyword"),
        ("support.function", "function"), ("entity.name.function", "function"), ("variable.language", "root"),
        ("variable.other.property", "property"), ("punctuation.", "operator"),
    ):  # fmt: skip
        if scope.startswith(prefix):
            return kind
    return "name" if text.strip() and (text[0].isalpha() or text[0] == "_") else "operator"


def _pygments_category(tok: _TokenType) -> str:
    for kind, category in (
        (Comment, "comment"), (String, "string"), (Error, "error"), (Number, "number"),
        (Keyword.Constant, "constant"), (Keyword, "keyword"), (Operator.Word, "keyword"), (Operator, "operator"),
        (Name.Builtin.Pseudo, "root"), (Name.Builtin, "function"), (Name.Function, "function"),
        (Name.Attribute, "property"), (Name, "name"),
    ):  # fmt: skip
        if tok in kind:
            return category
    return "operator"


def _categories_per_character(tokens: list[tuple[int, int, str, list[str]]]) -> dict[tuple[int, int], str]:
    return {
        (line, start + k): _tm_category(scopes, text)
        for line, start, text, scopes in tokens
        for k, ch in enumerate(text)
        if not ch.isspace()
    }


def test_the_vscode_extension_ships_the_same_grammar():
    assert (EDITORS / "vscode" / "syntaxes" / "plr.tmLanguage.json").read_bytes() == (EDITORS / "plr.tmLanguage.json").read_bytes()
    grammar = json.loads((EDITORS / "plr.tmLanguage.json").read_text(encoding="utf-8"))
    assert grammar["scopeName"] == "source.plr" and grammar["fileTypes"] == ["plr"]


def test_textmate_scopes_keywords_strings_comments_and_numbers(textmate):
    def scopes_of(name: str, text: str, nth: int = 0) -> list[str]:
        found = [scopes for _l, _s, t, scopes in textmate[name] if t == text]
        assert len(found) > nth, (name, text)
        return found[nth]

    fs = "filesystem.plr"
    assert scopes_of(fs, "#")[-1] == "punctuation.definition.comment.plr"
    assert "comment.line.number-sign.plr" in scopes_of(fs, "#")
    assert scopes_of(fs, "package")[-1] == "keyword.other.declaration.plr"
    assert scopes_of(fs, "filesystem")[-1] == "entity.name.namespace.plr"
    assert scopes_of(fs, "server")[-1] == "keyword.other.plr"
    assert scopes_of(fs, "tool")[-1] == "keyword.other.plr"
    assert scopes_of(fs, "destructive")[-1] == "storage.type.risk.plr"
    assert scopes_of(fs, "default")[-1] == "keyword.other.declaration.plr"
    assert scopes_of(fs, "allow")[-1] == "keyword.control.plr"
    assert scopes_of(fs, "write_file")[-1] == "string.quoted.double.plr"
    assert scopes_of(fs, "args")[-1] == "variable.language.plr"
    assert scopes_of(fs, "path")[-1] == "variable.other.property.plr"
    assert scopes_of(fs, "starts_with")[-1] == "keyword.operator.word.plr"
    assert scopes_of(fs, "\\\\")[-1] == "constant.character.escape.plr"
    assert scopes_of(fs, "->")[-1] == "keyword.operator.arrow.plr"
    cw = "codex_worker.plr"
    assert scopes_of(cw, "10")[-1] == "constant.numeric.plr"
    assert scopes_of(cw, "session")[-1] == "keyword.other.plr"  # `per session`


def test_textmate_knows_the_constructs_of_issue_15(textmate):
    by_text = {}
    for _l, _s, text, scopes in textmate["issue15"]:
        by_text.setdefault(text.strip(), scopes[-1])
    assert by_text["let"] == "keyword.other.declaration.plr"
    assert by_text["workspace"] == "variable.other.constant.plr"
    assert by_text["def"] == "keyword.other.declaration.plr"
    assert by_text["in_workspace"] == "entity.name.function.plr"
    assert by_text["normpath"] == "support.function.plr"
    assert by_text["every"] == "keyword.control.quantifier.plr"
    assert by_text["teams"] == "variable.other.constant.plr"


def test_textmate_marks_no_shipped_policy_or_docs_example_invalid(textmate):
    bad = [(name, line + 1, text) for name, toks in textmate.items() for line, _s, text, scopes in toks if any(s.startswith("invalid.") for s in scopes)]
    assert not bad, bad[:10]


def test_textmate_colours_every_keyword_as_a_keyword(textmate):
    tokens = {text: scopes[-1] for _l, _s, text, scopes in textmate["words"]}
    assert set(tokens) >= set(words.KEYWORDS) - {"tool", "server", "identity", "session"}
    plain = {k: s for k, s in tokens.items() if k in words.KEYWORDS and not s.startswith(("keyword.", "storage.type.risk"))}
    # on a line of its own, a word that is also a path root (tool, session, ...) is the path root
    assert set(plain) <= set(words.PATH_ROOTS), plain


def test_textmate_and_pygments_colour_every_character_alike(textmate):
    """The two highlighters are held to each other: on every example, stdlib file, docs block
    and the #15 snippet, each non-space character is a keyword, string, comment, number, name...
    for both (one set of words, dsl/lsp/words.py, and one set of contextual rules)."""
    sources = {p.name: p.read_text(encoding="utf-8") for p in [*EXAMPLES, *STDLIB]}
    sources.update(dict(code_blocks("plr")))
    sources["issue15"] = ISSUE_15
    mismatches = []
    for name, text in sources.items():
        tm = _categories_per_character(textmate[name])
        line, col = 0, 0
        for tok, value in _pygments_stream(text):
            for ch in value:
                if ch == "\n":
                    line, col = line + 1, 0
                    continue
                if not ch.isspace() and tm.get((line, col)) != _pygments_category(tok):
                    mismatches.append((name, line + 1, col + 1, ch, tm.get((line, col)), _pygments_category(tok)))
                col += 1
    assert not mismatches, mismatches[:20]


def _pygments_stream(text: str):
    """Pygments' tokens over exactly ``text`` (its lexer adds a final newline; drop nothing else)."""
    return [(t, v) for _i, t, v in PlrLexer(stripnl=False, ensurenl=False).get_tokens_unprocessed(text)]


def test_the_vscode_extension_is_complete():
    ext = EDITORS / "vscode"
    manifest = json.loads((ext / "package.json").read_text(encoding="utf-8"))
    (language,) = manifest["contributes"]["languages"]
    assert language["id"] == "plr" and language["extensions"] == [".plr"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert grammar["scopeName"] == "source.plr" and (ext / grammar["path"]).is_file()
    config = json.loads((ext / language["configuration"]).read_text(encoding="utf-8"))
    assert config["comments"]["lineComment"] == "#"
    assert manifest["activationEvents"] == ["onLanguage:plr"]
    assert manifest["contributes"]["configuration"]["properties"]["plr.server.args"]["default"] == ["lsp"]
    main = ext / manifest["main"]
    assert "vscode-languageclient/node" in main.read_text(encoding="utf-8")
    node = shutil.which("node")
    if node:  # the script at least parses (running it needs VS Code itself)
        proc = subprocess.run([node, "--check", str(main)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


# --- pre-commit ----------------------------------------------------------------------------------


def test_the_pre_commit_hooks_run_plr_as_documented(tmp_path: Path):
    """Each hook of .pre-commit-hooks.yaml, run the way pre-commit runs it (entry, then args, then
    the matching files unless pass_filenames is false), passes a tidy policy and fails a bad one."""
    import yaml

    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))}
    assert set(hooks) == {"plr-fmt", "plr-check"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}

    def run(hook_id: str, files: list[str]) -> int:
        hook = hooks[hook_id]
        assert hook["language"] == "python" and hook["entry"].startswith("plr ")
        assert all(re.search(hook["files"], f) for f in files)
        argv = [*hook["entry"].split()[1:], *hook.get("args", []), *(files if hook.get("pass_filenames", True) else [])]
        proc = subprocess.run([sys.executable, "-m", "dsl.cli", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        return proc.returncode

    good = (ROOT / "examples" / "filesystem.plr").read_text(encoding="utf-8")
    (tmp_path / "good.plr").write_text(good, encoding="utf-8")
    assert run("plr-fmt", ["good.plr"]) == 0
    assert run("plr-check", ["good.plr"]) == 0
    (tmp_path / "messy.plr").write_text("default deny\nallow   tool \"x\"\n", encoding="utf-8")
    assert run("plr-fmt", ["good.plr", "messy.plr"]) == 1
    (tmp_path / "messy.plr").write_text('default deny\nallow tool "x" if args.a = 1\n', encoding="utf-8")
    assert run("plr-check", ["good.plr"]) == 2  # checks the repository, not only the changed files
