"""`plr lsp`, driven over stdio as an editor drives it (JSON-RPC with Content-Length framing,
``dsl.lsp.client``): diagnostics that are `plr check`'s, completion, hover, go to definition,
references, formatting and quick fixes; then the pieces the server is built from, in-process.

One server runs for the module over a workspace made in a temporary folder (the filesystem
example, a catalogue imported by a policy imported by a test file, a stdlib import, files with
errors and warnings); each test puts back what it changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from dsl.lsp import features
from dsl.lsp.client import LspClient, uri
from dsl.lsp.source import Source
from dsl.lsp.workspace import Workspace
from dsl.resources import stdlib_dir

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}

CATALOGUE = """\
# The shop's MCP server.
server "shop" {
    tool "get-order" read  # Reads one order by id
    # Refunds a whole order to the card it was paid with.
    tool "refund" destructive
}
"""
SHOP = """\
package shop

import "./catalogue.plr"

default deny

allow tool "get-order"

deny tool "refund" unless approved
    reason "A human approves every refund"

limit tool "refund" to 5 per hour per identity
"""
SHOP_TEST = """\
import "./shop.plr"

test "refunds need a human" {
    call "refund" {order: "o-1"} -> approval_required
    call "get-order" {order: "o-1"} -> allow
}
"""
MEMORY = """\
import "stdlib/server-memory"

default deny

allow read tools
deny tool "delete_entities" unless approved
"""
BROKEN = 'defualt deny\nallow tool "x" if args.a = 1\n'
WARNS = 'server "s" { tool "x" read }\n\nallow tool "x"\nallow tool "x" if args.b != null\n'
NAMES = 'let admins = ["alice", "bob"]\n\ndefault deny\n'


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lsp-ws")
    shutil.copy(ROOT / "examples" / "filesystem.plr", root / "filesystem.plr")
    sub = root / "shop"
    sub.mkdir()
    (sub / "catalogue.plr").write_text(CATALOGUE, encoding="utf-8")
    (sub / "shop.plr").write_text(SHOP, encoding="utf-8")
    (sub / "shop_test.plr").write_text(SHOP_TEST, encoding="utf-8")
    (root / "memory.plr").write_text(MEMORY, encoding="utf-8")
    (root / "broken.plr").write_text(BROKEN, encoding="utf-8")
    (root / "warns.plr").write_text(WARNS, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def server(workspace: Path) -> Iterator[tuple[LspClient, dict[str, Any]]]:
    client = LspClient(cwd=workspace, env=ENV)
    try:
        init = client.initialize(workspace)
        yield client, init
    finally:
        assert client.shutdown() == 0
    # no handler failed along the way: pygls reports a failure as a message to show, and a log line
    shown = [n["params"]["message"] for n in client.notifications if n.get("method") == "window/showMessage"]
    assert not shown, shown
    assert "Traceback" not in client.stderr_text(), client.stderr_text()[-3000:]


def _latest(client: LspClient, path: Path) -> list[dict[str, Any]]:
    """The diagnostics last published for ``path`` (waiting for the first publication)."""
    client.diagnostics(path)
    target = uri(path)
    notes = [n for n in client.notifications if n.get("method") == "textDocument/publishDiagnostics"]
    return [n for n in notes if n["params"]["uri"] == target][-1]["params"]["diagnostics"]


def _next_diagnostics(client: LspClient, path: Path, mark: int, predicate=lambda d: True) -> list[dict[str, Any]]:
    target = uri(path)
    params = client.wait_for(
        "textDocument/publishDiagnostics", lambda p: p["uri"] == target and predicate(p["diagnostics"]), after=mark
    )
    return params["diagnostics"]


def _position(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    """(line, character) of ``needle`` in ``text`` (ASCII texts: characters are UTF-16 units)."""
    at = text.index(needle) + offset
    line = text.count("\n", 0, at)
    return line, at - (text.rfind("\n", 0, at) + 1)


def _apply(text: str, edits: list[dict[str, Any]]) -> str:
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)

    def off(p: dict[str, int]) -> int:
        return offsets[p["line"]] + p["character"]

    for e in sorted(edits, key=lambda e: off(e["range"]["start"]), reverse=True):
        text = text[: off(e["range"]["start"])] + e["newText"] + text[off(e["range"]["end"]) :]
    return text


# --- the protocol ------------------------------------------------------------------------------


def test_initialize_advertises_every_feature(server):
    _client, init = server
    caps = init["capabilities"]
    assert caps["textDocumentSync"] in (1, {"openClose": True, "change": 1}) or caps["textDocumentSync"].get("change") == 1
    assert set(caps["completionProvider"]["triggerCharacters"]) >= {'"', "."}
    for key in ("hoverProvider", "definitionProvider", "referencesProvider", "documentFormattingProvider"):
        assert caps[key], key
    assert "quickfix" in caps["codeActionProvider"]["codeActionKinds"]
    assert init["serverInfo"]["name"] == "plr"


def test_workspace_diagnostics_are_exactly_plr_checks(server, workspace: Path):
    """Every file of the folder, published at start: the same messages, places and severities as
    `plr check --format json .` run in the same folder."""
    client, _ = server
    files = sorted(workspace.rglob("*.plr"))
    published = {str(p): _latest(client, p) for p in files}
    check = subprocess.run(
        [sys.executable, "-m", "dsl.cli", "check", "--format", "json", "."],
        cwd=workspace, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 2, check.stderr  # broken.plr has errors
    expected = {  # a diagnostic about a whole file (line 0) is at the file's start
        (str(workspace / d["file"]), d["severity"], max(d["line"] - 1, 0), max(d["col"] - 1, 0), d["message"])
        for d in json.loads(check.stdout)
    }
    got = {
        (path, {1: "error", 2: "warning"}[d["severity"]], d["range"]["start"]["line"], d["range"]["start"]["character"], d["message"])
        for path, diags in published.items()
        for d in diags
    }
    assert got == expected
    assert {sev for _p, sev, *_ in got} == {"error", "warning"}
    assert {Path(p).name for p, *_ in got} == {"broken.plr", "warns.plr"}
    assert all(d["source"] == "plr" for diags in published.values() for d in diags)


def test_the_filesystem_example_typo_is_reported_and_fixed_by_its_quick_fix(server, workspace: Path):
    client, _ = server
    path = workspace / "filesystem.plr"
    text = path.read_text(encoding="utf-8")
    client.open(path, text)
    mark = client.mark()
    typo = text.replace('allow tool "move_file"', 'allow tool "move_fil"')
    client.change(path, typo)
    # beside the error, `deny tool "move_file" if …` now warns that no rule makes it callable
    (diag,) = [d for d in _next_diagnostics(client, path, mark, bool) if d["severity"] == 1]
    line, col = _position(typo, 'tool "move_fil"')
    assert diag["severity"] == 1
    assert diag["range"] == {"start": {"line": line, "character": col}, "end": {"line": line, "character": col + 15}}
    assert "tool `move_fil` is not in any declared catalogue; did you mean `move_file`?" in diag["message"]
    actions = client.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": uri(path)}, "range": diag["range"], "context": {"diagnostics": [diag]}},
    )
    (action,) = actions
    assert action["kind"] == "quickfix" and action["title"] == "Replace `move_fil` with `move_file`"
    fixed = _apply(typo, action["edit"]["changes"][uri(path)])
    assert fixed == text
    mark = client.mark()
    client.change(path, fixed)
    assert _next_diagnostics(client, path, mark) == []
    client.close(path)


def test_the_filesystem_example_hover_and_definition(server, workspace: Path):
    """The issue's own case: examples/filesystem.plr, as written."""
    client, _ = server
    path = workspace / "filesystem.plr"
    text = path.read_text(encoding="utf-8")
    rule = text.index("deny tools [\"write_file\", \"edit_file\", \"create_directory\"] if dotgit_or_env(args.path)")
    line, col = _position(text[rule:], '"write_file"', 2)
    line += text.count("\n", 0, rule)
    value = client.at("textDocument/hover", path, line, col)["contents"]["value"]
    assert value.startswith("**`write_file`** — destructive (server `filesystem`)")
    allow = text[: text.index('allow tools ["write_file"')].count("\n") + 1
    assert f"`filesystem.plr:{allow}` `allow tools [\"write_file\", \"edit_file\", \"create_directory\"] if in_workspace(args.path)" in value
    assert '"reason": "Never touch .git or .env"' in value  # the compiled entry: its deny_if
    (loc,) = client.at("textDocument/definition", path, line, col)
    assert loc == {"uri": uri(path), "range": {"start": {"line": 12, "character": 9}, "end": {"line": 12, "character": 21}}}
    assert text.split("\n")[12] == '    tool "write_file" destructive'


def test_completion_offers_the_catalogues_tools_with_class_and_description(server, workspace: Path):
    client, _ = server
    path = workspace / "filesystem.plr"
    # as an editor does: the file opens whole (and is built), then the author types; a first
    # text that does not parse has no build to take the catalogues from
    client.open(path)
    client.diagnostics(path)  # its first build (an earlier test's, when one opened it already)
    text = path.read_text(encoding="utf-8") + '\ndeny tool "'
    client.change(path, text)
    try:
        line = text.count("\n")
        items = client.at("textDocument/completion", path, line, len('deny tool "'))["items"]
        by_label = {i["label"]: i for i in items}
        assert set(by_label) == {
            "read_text_file", "read_media_file", "read_multiple_files", "list_directory", "directory_tree",
            "search_files", "get_file_info", "write_file", "edit_file", "move_file", "create_directory",
        }  # fmt: skip
        assert by_label["write_file"]["detail"] == "destructive · server filesystem"
        assert by_label["list_directory"]["detail"] == "read · server filesystem"
        edit = by_label["write_file"]["textEdit"]
        assert edit["newText"] == "write_file"
        assert edit["range"]["start"] == {"line": line, "character": len('deny tool "')}
    finally:
        client.close(path)
    # descriptions come from the catalogue's comments, also through an import
    shop = workspace / "shop" / "shop.plr"
    text = SHOP + 'hide tool "'
    client.open(shop, text)
    try:
        items = client.at("textDocument/completion", shop, text.count("\n"), len('hide tool "'))["items"]
        by_label = {i["label"]: i for i in items}
        assert by_label["get-order"]["documentation"]["value"] == "Reads one order by id"
        assert by_label["refund"]["documentation"]["value"] == "Refunds a whole order to the card it was paid with."
        assert by_label["refund"]["detail"] == "destructive · server shop"
    finally:
        client.close(shop)


@pytest.mark.parametrize(
    "tail, expected, unexpected",
    [
        ("default ", {"allow", "deny"}, {"tool"}),
        ("deny ", {"tool", "tools", "all tools", "destructive tools"}, {"allow"}),
        ('deny tool "refund" ', {"if", "unless", "reason", "limit"}, {"tool"}),
        ('limit tool "refund" to 5 per ', {"second", "minute", "hour", "day"}, {"global"}),
        ('limit tool "refund" to 5 per hour per ', {"session", "identity", "global"}, {"minute"}),
        ('allow tool "get-order" if ', {"args", "identity", "approved", "count", "not"}, {"allow"}),
        ('allow tool "get-order" if args.', {"order"}, {"args"}),
        ('allow tool "get-order" if identity ', {"==", "in", "exists"}, {"allow"}),
        ('import "', {"stdlib/server-memory", "stdlib/read_only", "./catalogue.plr"}, set()),
        ('test "t" {\n    call "refund" -> ', {"allow", "deny", "approval_required"}, {"call"}),
        ('test "t" {\n    ', {"call", "as", "repeat", "visible"}, {"allow"}),
        ("", {"allow", "deny", "limit", "test", "server", "import"}, set()),
    ],
)
def test_completion_offers_keywords_in_context(server, workspace: Path, tail: str, expected: set[str], unexpected: set[str]):
    client, _ = server
    path = workspace / "shop" / "shop.plr"
    text = SHOP + tail
    client.open(path, text)
    try:
        lines = text.split("\n")
        labels = {i["label"] for i in client.at("textDocument/completion", path, len(lines) - 1, len(lines[-1]))["items"]}
    finally:
        client.close(path)
    assert expected <= labels, expected - labels
    assert not unexpected & labels, unexpected & labels


def test_hover_shows_a_tools_catalogue_entry_and_the_rules_that_govern_it(server, workspace: Path):
    client, _ = server
    path = workspace / "shop" / "shop_test.plr"
    line, col = _position(SHOP_TEST, '"refund"', 2)
    value = client.at("textDocument/hover", path, line, col)["contents"]["value"]
    assert "**`refund`** — destructive (server `shop`)" in value
    assert "Refunds a whole order" in value
    assert "`shop.plr:9` `deny tool \"refund\" unless approved`" in value
    assert "`shop.plr:12` `limit tool \"refund\" to 5 per hour per identity`" in value
    assert '"action": "require_approval"' in value  # the compiled entry: what the rules decide


def test_hover_shows_a_rules_compiled_json_and_a_limit_in_words(server, workspace: Path):
    client, _ = server
    path = workspace / "shop" / "shop.plr"
    value = client.at("textDocument/hover", path, *_position(SHOP, "deny tool"))["contents"]["value"]
    assert value.startswith("**deny** rule `shop.plr:9`")
    fragment = json.loads(value.split("```json\n", 1)[1].split("\n```", 1)[0])
    assert fragment == {
        "tools.refund": {"action": "require_approval", "reason": "A human approves every refund", "rule": "shop.plr:9"}
    }
    value = client.at("textDocument/hover", path, *_position(SHOP, "limit tool"))["contents"]["value"]
    assert "At most 5 calls per hour, per identity" in value
    fragment = json.loads(value.split("```json\n", 1)[1].split("\n```", 1)[0])
    assert fragment == {"tools.refund.limits[0]": {"max": 5, "window": 3600, "per": "identity", "rule": "shop.plr:12"}}
    # a keyword elsewhere says what it means; a field named like a keyword is not one
    value = client.at("textDocument/hover", path, *_position(SHOP, "unless"))["contents"]["value"]
    assert "denied unless COND holds" in value


def test_go_to_definition(server, workspace: Path):
    client, _ = server
    shop = workspace / "shop"
    catalogue_line = CATALOGUE.split("\n").index('    tool "refund" destructive')
    # a tool in a test call -> its catalogue entry, in the imported file
    (loc,) = client.at("textDocument/definition", shop / "shop_test.plr", *_position(SHOP_TEST, '"refund"', 1))
    assert loc["uri"] == uri(shop / "catalogue.plr")
    assert loc["range"]["start"] == {"line": catalogue_line, "character": 9}
    # an import -> the file
    (loc,) = client.at("textDocument/definition", shop / "shop.plr", *_position(SHOP, '"./catalogue.plr"', 3))
    assert loc["uri"] == uri(shop / "catalogue.plr")
    # a stdlib import, and a tool of a stdlib catalogue
    memory = workspace / "memory.plr"
    (loc,) = client.at("textDocument/definition", memory, *_position(MEMORY, "stdlib/server-memory"))
    assert loc["uri"] == uri(stdlib_dir() / "server-memory.plr")
    (loc,) = client.at("textDocument/definition", memory, *_position(MEMORY, "delete_entities"))
    assert loc["uri"] == uri(stdlib_dir() / "server-memory.plr")
    stdlib_text = (stdlib_dir() / "server-memory.plr").read_text(encoding="utf-8")
    assert loc["range"]["start"] == {"line": _position(stdlib_text, '"delete_entities"')[0], "character": _position(stdlib_text, '"delete_entities"')[1]}


def test_go_to_definition_of_a_name(server, workspace: Path):
    """A `let` name, as written (found even while the file does not parse)."""
    client, _ = server
    path = workspace / "names.plr"
    text = NAMES + 'allow tool "x" if identity in admins\n'
    client.open(path, text)
    try:
        (loc,) = client.at("textDocument/definition", path, *_position(text, "admins\n", 1))
        assert loc["uri"] == uri(path)
        assert loc["range"]["start"] == {"line": 0, "character": 4}
        refs = client.at("textDocument/references", path, 0, 5, context={"includeDeclaration": True})
        assert sorted((r["range"]["start"]["line"], r["range"]["start"]["character"]) for r in refs) == [(0, 4), (3, 30)]
    finally:
        client.close(path)


def test_references_of_a_tool_across_rules_tests_and_files(server, workspace: Path):
    client, _ = server
    shop = workspace / "shop"
    line, col = _position(CATALOGUE, '"refund"', 1)
    refs = client.at("textDocument/references", shop / "catalogue.plr", line, col, context={"includeDeclaration": True})
    found = sorted((Path(r["uri"].removeprefix("file://")).name, r["range"]["start"]["line"]) for r in refs)
    assert found == [("catalogue.plr", 4), ("shop.plr", 8), ("shop.plr", 11), ("shop_test.plr", 3)]
    refs = client.at("textDocument/references", shop / "shop.plr", *_position(SHOP, '"refund"', 1), context={"includeDeclaration": False})
    assert "catalogue.plr" not in {Path(r["uri"]).name for r in refs}
    assert len(refs) == 3


def test_formatting_is_plr_fmt(server, workspace: Path):
    from dsl.format import format_source

    client, _ = server
    path = workspace / "shop" / "shop.plr"
    messy = SHOP.replace("deny tool \"refund\" unless approved\n    reason", "deny   tool \"refund\"   unless approved reason")
    assert messy != SHOP
    client.open(path, messy)
    try:
        edits = client.request("textDocument/formatting", {"textDocument": {"uri": uri(path)}, "options": {"tabSize": 4, "insertSpaces": True}})
        assert _apply(messy, edits) == format_source(messy) == SHOP
        client.change(path, SHOP)
        assert client.request("textDocument/formatting", {"textDocument": {"uri": uri(path)}, "options": {"tabSize": 4, "insertSpaces": True}}) == []
        client.change(path, SHOP + "deny tool\n")  # does not parse: plr fmt refuses it too
        assert client.request("textDocument/formatting", {"textDocument": {"uri": uri(path)}, "options": {"tabSize": 4, "insertSpaces": True}}) is None
    finally:
        client.close(path)


def test_an_edit_in_an_imported_file_is_reported_where_it_matters(server, workspace: Path):
    """Renaming a catalogue's tool breaks the rules of the file importing it; closing the
    catalogue unsaved puts its text on disk back, and the error goes."""
    client, _ = server
    shop = workspace / "shop"
    client.open(shop / "catalogue.plr", CATALOGUE)
    mark = client.mark()
    client.change(shop / "catalogue.plr", CATALOGUE.replace('"refund"', '"refunds"'))
    # (earlier tests' edits of shop.plr may still be published first: wait for this edit's)
    diags = _next_diagnostics(client, shop / "shop.plr", mark, lambda ds: any("`refund`" in d["message"] for d in ds))
    assert {d["message"].split(";")[0] for d in diags} == {"tool `refund` is not in any declared catalogue"}
    assert all("did you mean `refunds`?" in d["message"] for d in diags)
    assert {d["range"]["start"]["line"] for d in diags} == {8, 11}
    mark = client.mark()
    client.close(shop / "catalogue.plr")
    _next_diagnostics(client, shop / "shop.plr", mark, lambda ds: not ds)  # cleared (or a timeout fails)


def test_positions_are_utf16_for_text_beyond_the_basic_plane(server, tmp_path: Path):
    """An open file outside the workspace is checked on its own; a character outside the BMP
    counts two UTF-16 units before the error, as the editor counts it."""
    client, _ = server
    path = tmp_path / "emoji.plr"
    text = 'default deny\nallow tool "😀" if args.a = 1\n'
    client.open(path, text)
    (diag,) = _next_diagnostics(client, path, 0, bool)
    code_points = text.split("\n")[1].index("=")
    assert diag["range"]["start"] == {"line": 1, "character": code_points + 1}
    assert diag["message"] == "`=` is not an operator: write `==` to compare"
    (action,) = client.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": uri(path)}, "range": diag["range"], "context": {"diagnostics": [diag]}},
    )
    (edit,) = action["edit"]["changes"][uri(path)]
    assert edit == {"range": diag["range"], "newText": "=="}
    mark = client.mark()
    client.close(path)
    assert _next_diagnostics(client, path, mark) == []  # no longer open, not in the workspace: cleared


def test_without_pygls_plr_lsp_says_what_to_install(tmp_path: Path):
    blocker = tmp_path / "block" / "pygls"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("pygls blocked by the test")\n', encoding="utf-8")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(blocker.parent), ENV["PYTHONPATH"]])}
    proc = subprocess.run([sys.executable, "-m", "dsl.cli", "lsp"], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert proc.stdout == ""
    from dsl.extras import install_hint

    assert install_hint("lsp") in proc.stderr and "Traceback" not in proc.stderr


# --- the pieces, in-process ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message_start, new_text",
    [
        ("defualt deny\n", "unknown keyword `defualt`", "default deny\n"),
        ("default deny\nallow tool 'x'\n", "strings use double quotes", 'default deny\nallow tool "x"\n'),
        ("default deny\nlimit all tools to 5 per minutes\n", "unknown word `minutes`", "default deny\nlimit all tools to 5 per minute\n"),
        ("default deny\ndenytool \"x\"\n", "unknown word `denytool`", 'default deny\ndeny tool "x"\n'),
        ("default deny\nallow tool \"x\" if args.a = 1\n", "`=` is not an operator", 'default deny\nallow tool "x" if args.a == 1\n'),
        ("default deny\nallow tool \"x\" if argz.a == 1\n", "unknown path root `argz`", 'default deny\nallow tool "x" if args.a == 1\n'),
        (
            'default deny\nallow tool "x"\ndeny tool "x" if count(args.a) > "5"\n',
            "`count(args.a) > \"5\"` can never hold",
            'default deny\nallow tool "x"\ndeny tool "x" if count(args.a) > 5\n',
        ),
        (
            'default deny\nallow tool "x" if args.b != null\n',
            "`args.b != null` can never hold",
            'default deny\nallow tool "x" if not (args.b == null)\n',
        ),
    ],
)
def test_quick_fixes_turn_each_suggestion_into_an_edit(tmp_path: Path, text: str, message_start: str, new_text: str):
    """The diagnostic comes from the real checker; its fix, applied, leaves a file that checks
    without that diagnostic."""
    path = tmp_path / "p.plr"
    path.write_text(text, encoding="utf-8")
    ws = Workspace([str(tmp_path)])
    ws.scan()
    ws.check()
    diags = [d for d in ws.diagnostics()[str(path)] if d.message.startswith(message_start)]
    assert len(diags) == 1, ws.diagnostics()
    d = diags[0]
    start = (d.line - 1, d.col - 1)
    (fix,) = features.quick_fixes(ws, str(path), (start, (start[0], start[1] + d.width)), d.message)
    src = Source(text)
    fixed = text[: src.offset(fix.range[0])] + fix.new_text + text[src.offset(fix.range[1]) :]
    assert fixed == new_text
    path.write_text(fixed, encoding="utf-8")
    ws.check()
    assert not [x for x in ws.diagnostics().get(str(path), []) if x.message == d.message]


def test_completion_in_a_file_that_does_not_parse_uses_its_last_good_build(tmp_path: Path):
    (tmp_path / "catalogue.plr").write_text(CATALOGUE, encoding="utf-8")
    path = tmp_path / "shop.plr"
    path.write_text(SHOP, encoding="utf-8")
    ws = Workspace([str(tmp_path)])
    ws.scan()
    ws.check()
    ws.open[str(path)] = SHOP + 'deny tool "re'  # an unterminated string: nothing parses
    ws.check([str(path)])
    assert any("unterminated string" in d.message for d in ws.diagnostics()[str(path)])
    items = features.complete(ws, str(path), (SHOP.count("\n"), len('deny tool "re')))
    assert {i.label for i in items} == {"get-order", "refund"}
    (refund,) = [i for i in items if i.label == "refund"]
    assert refund.replace == (len(SHOP) + len('deny tool "'), len(SHOP) + len('deny tool "re'))


def test_only_the_roots_that_read_a_changed_file_are_built_again(tmp_path: Path):
    (tmp_path / "a.plr").write_text('default deny\nallow tool "x"\n', encoding="utf-8")
    (tmp_path / "b.plr").write_text('default deny\nallow tool "y"\n', encoding="utf-8")
    ws = Workspace([str(tmp_path)])
    ws.scan()
    ws.check()
    before = dict(ws.results)
    a = str(tmp_path / "a.plr")
    ws.open[a] = 'default deny\nallow tool "z"\n'
    touched = ws.check([a])
    assert touched == {a}
    assert ws.results[str(tmp_path / "b.plr")] is before[str(tmp_path / "b.plr")]
    assert ws.results[a] is not before[a]


def test_source_roles_and_blocks():
    src = Source(SHOP_TEST + 'deny tools ["refund", "get-order"] if args.limit > 1\n')
    roles = {t.value(): role for t, role in src.strings({"tool", "call", "import", "test", "value"})}
    assert roles == {"./shop.plr": "import", "refunds need a human": "test", "refund": "tool", "o-1": "value", "get-order": "tool"}
    limit = next(t for t in src.tokens if t.text == "limit")
    assert limit.block == "" and src.tokens[limit.stmt].text == "deny"  # a field, not a statement
    call = next(t for t in src.tokens if t.text == "call")
    assert call.block == "test"


def test_no_question_at_any_place_of_any_example_fails(tmp_path: Path):
    """Completion, hover, definition and references at the start, middle and end of every token
    of every example, whole and cut short (as while typing), answer without an exception."""
    for p in sorted((ROOT / "examples").glob("*.plr")):
        shutil.copy(p, tmp_path / p.name)
    ws = Workspace([str(tmp_path)])
    ws.scan()
    ws.check()
    asked = 0
    for p in sorted(tmp_path.glob("*.plr")):
        text = p.read_text(encoding="utf-8")
        for cut in (len(text), len(text) // 2, len(text) // 3):
            ws.open[str(p)] = text[:cut]
            ws.check([str(p)])
            src = ws.source(str(p))
            assert src is not None
            for tok in src.tokens:
                for offset in (tok.start, (tok.start + tok.end) // 2, tok.end):
                    pos = src.pos(offset)
                    features.complete(ws, str(p), pos)
                    features.hover(ws, str(p), pos)
                    features.definition(ws, str(p), pos)
                    features.references(ws, str(p), pos)
                    asked += 1
            features.formatting(ws, str(p))
            del ws.open[str(p)]
    assert asked > 5000


def test_a_catalogue_typed_into_a_syntax_error_keeps_its_tools_for_its_importers(tmp_path: Path):
    (tmp_path / "catalogue.plr").write_text(CATALOGUE, encoding="utf-8")
    shop = tmp_path / "shop.plr"
    shop.write_text(SHOP, encoding="utf-8")
    ws = Workspace([str(tmp_path)])
    ws.scan()
    ws.check()
    catalogue = str(tmp_path / "catalogue.plr")
    ws.open[catalogue] = CATALOGUE.replace('tool "refund" destructive', 'tool "refund" destruct')
    ws.check([catalogue])
    assert any(d.severity == "error" for d in ws.diagnostics()[catalogue])
    text, _ = features.hover(ws, str(shop), _position(SHOP, '"refund"', 1))  # type: ignore[misc]
    assert text.startswith("**`refund`** — destructive (server `shop`)")
    labels = {i.label for i in features.complete(ws, str(shop), (SHOP.count("\n") + 1, 0))}
    assert "allow" in labels
