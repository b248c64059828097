"""`plr lsp` completion while a file has never parsed: an editor opens half-written files all the
time (``import "stdlib/server-memory"``, ``default deny``, ``allow tool "``), and the catalogues
the file's whole ``import`` (and ``server``) statements bring are known without parsing the rest.

Driven over stdio as tests/test_lsp.py drives the server. Each step waits for the diagnostics
its text causes (``publishDiagnostics`` for that file after a mark, with the expected content),
so the server has built that version before completion is asked: no step depends on timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from dsl.compiler import build
from dsl.lsp import features
from dsl.lsp.client import LspClient, uri
from dsl.lsp.workspace import Workspace

from .test_lsp import CATALOGUE, ENV  # the same shop catalogue and server environment

HEAD = 'import "stdlib/server-memory"\nimport "./catalogue.plr"\n\ndefault deny\n'
GOOD = HEAD + 'allow tool "read_graph"\n'
TYPING = 'allow tool "'  # the statement being typed: no version ending so parses


def _program(text: str, folder: Path) -> Any:
    """`plr check`'s full build of ``text`` (a file of ``folder`` that parses)."""
    path = str(folder / "oracle.plr")
    prog, diags = build([path], reader=lambda p: text if p == path else Path(p).read_text(encoding="utf-8"))
    assert not [d for d in diags if d.severity == "error"], diags
    return prog


def _catalogue(text: str, folder: Path) -> set[str]:
    """The tools in scope for ``text``, by a full build: what completion offers once it parses."""
    return set(_program(text, folder).catalogue)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lsp-unparsed")
    (root / "catalogue.plr").write_text(CATALOGUE, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def client(workspace: Path) -> Iterator[LspClient]:
    client = LspClient(cwd=workspace, env=ENV)
    try:
        client.initialize(workspace)
        yield client
    finally:
        assert client.shutdown() == 0
    shown = [n["params"]["message"] for n in client.notifications if n.get("method") == "window/showMessage"]
    assert not shown, shown
    assert "Traceback" not in client.stderr_text(), client.stderr_text()[-3000:]


def _send(client: LspClient, path: Path, text: str, first: bool, broken: bool) -> list[dict[str, Any]]:
    """Open (``first``) or change ``path`` to ``text`` and wait for the diagnostics of that very
    version: with an error when ``broken``, none when not (the server always publishes both for an
    open file whose diagnostics change, and each step here changes them)."""
    mark = client.mark()
    if first:
        client.open(path, text)
    else:
        client.change(path, text)
    target = uri(path)

    def mine(params: dict[str, Any]) -> bool:
        errors = [d for d in params["diagnostics"] if d["severity"] == 1]
        return params["uri"] == target and (bool(errors) if broken else not params["diagnostics"])

    return client.wait_for("textDocument/publishDiagnostics", mine, after=mark)["diagnostics"]


def _complete(client: LspClient, path: Path, text: str, line: int | None = None, character: int | None = None) -> dict[str, dict[str, Any]]:
    """Completion items by label, at the end of ``text`` unless told."""
    lines = text.split("\n")
    line = len(lines) - 1 if line is None else line
    character = len(lines[line]) if character is None else character
    items = client.at("textDocument/completion", path, line, character)["items"]
    return {i["label"]: i for i in items}


# --- over stdio ------------------------------------------------------------------------------


def test_a_first_version_that_does_not_parse_completes_from_its_whole_imports(client: LspClient, workspace: Path):
    path = workspace / "first_broken.plr"  # not on disk: the editor's text is the first version
    expected = _catalogue(GOOD, workspace)
    assert {"read_graph", "delete_entities", "get-order", "refund"} <= expected
    text = HEAD + 'import "stdlib/no-such-module"\nimport "./missing.plr"\n' + TYPING
    diags = _send(client, path, text, first=True, broken=True)
    assert any("unterminated string" in d["message"] for d in diags)
    try:
        items = _complete(client, path, text)
        assert set(items) == expected  # imports that resolve nowhere bring nothing (and no failure)
        assert items["refund"]["detail"] == "destructive · server shop"
        assert items["refund"]["documentation"]["value"] == "Refunds a whole order to the card it was paid with."
        ((server, risk),) = _program(GOOD, workspace).catalogue["delete_entities"]
        assert items["delete_entities"]["detail"] == f"{risk} · server {server}"
        edit = items["refund"]["textEdit"]
        assert edit["newText"] == "refund"
        assert edit["range"]["start"] == {"line": text.count("\n"), "character": len(TYPING)}
        # a tool list, a glob, a test call, then a server's name: the same catalogues
        for tail in ('deny tools ["', 'deny tools "', 'test "t" {\n    call "'):
            broken = HEAD + tail
            _send(client, path, broken, first=False, broken=True)
            assert set(_complete(client, path, broken)) == expected, tail
        broken = HEAD + 'server "'
        _send(client, path, broken, first=False, broken=True)
        assert set(_complete(client, path, broken)) == set(_program(GOOD, workspace).servers) == {"server-memory", "shop"}
        # the keywords completion offered before are offered as before
        broken = HEAD + "deny "
        _send(client, path, broken, first=False, broken=True)
        assert {"tool", "tools", "all tools", "destructive tools"} <= set(_complete(client, path, broken))
    finally:
        client.close(path)


def test_a_first_version_that_parses_completes_the_same_before_and_after_its_first_build(
    client: LspClient, workspace: Path, tmp_path: Path
):
    expected = _catalogue(GOOD, workspace)
    at = (GOOD.count("\n") - 1, len('allow tool "'))  # inside "read_graph"
    # in-process: completion asked before any build (a server's first build may still be running)
    (tmp_path / "catalogue.plr").write_text(CATALOGUE, encoding="utf-8")
    path = str(tmp_path / "policy.plr")
    ws = Workspace([str(tmp_path)])
    ws.scan()
    ws.open[path] = GOOD
    assert ws.results == {}
    assert {i.label for i in features.complete(ws, path, at)} == expected
    ws.check()
    assert ws.last_good[path].complete(path)
    assert {i.label for i in features.complete(ws, path, at)} == expected
    # over stdio, once its build is published (no diagnostics: it parses and checks)
    served = workspace / "first_good.plr"
    assert _send(client, served, GOOD, first=True, broken=False) == []
    try:
        items = _complete(client, served, GOOD, *at)
        assert set(items) == expected
        assert items["refund"]["documentation"]["value"] == "Refunds a whole order to the card it was paid with."
    finally:
        client.close(served)


def test_a_version_that_stopped_parsing_after_a_good_one_keeps_the_good_builds_catalogues(client: LspClient, workspace: Path):
    path = workspace / "edited.plr"
    memory_only = _catalogue('import "stdlib/server-memory"\n', workspace)
    both = _catalogue(GOOD, workspace)
    assert memory_only < both
    # never parsed yet: what its whole imports bring (here only the memory server's)
    first = 'import "stdlib/server-memory"\n\ndefault deny\n' + TYPING
    _send(client, path, first, first=True, broken=True)
    try:
        assert set(_complete(client, path, first)) == memory_only
        # it parses: the build's catalogues (the shop's catalogue imported too)
        assert _send(client, path, GOOD, first=False, broken=False) == []
        assert set(_complete(client, path, GOOD, GOOD.count("\n") - 1, len('allow tool "'))) == both
        # it stops parsing, its catalogue import half rewritten: the last good build still answers
        # (what the whole imports alone would bring is less)
        broken = GOOD.replace('import "./catalogue.plr"', 'import "./catalog') + TYPING
        diags = _send(client, path, broken, first=False, broken=True)
        assert any("unterminated string" in d["message"] for d in diags)
        assert set(_complete(client, path, broken)) == both
    finally:
        client.close(path)


# --- in-process --------------------------------------------------------------------------------


def test_what_is_known_of_a_file_that_never_parsed(tmp_path: Path):
    """Only statements written whole count, each as the parser reads it: an in-file catalogue
    with a typo is left out, the others stay; the statement being typed is not taken; an import
    that resolves nowhere brings nothing; nothing raises."""
    (tmp_path / "catalogue.plr").write_text(CATALOGUE, encoding="utf-8")
    path = str(tmp_path / "p.plr")
    ws = Workspace([str(tmp_path)])
    ws.scan()
    text = (
        'server "inline" {\n    tool "ping" read\n}\n'
        'server "typo" {\n    tool "pong" raed\n}\n'
        'import "stdlib/nowhere"\n'
        'import "./catalogue.plr"\n'
        "default deny\n"
        'allow tool "x" if args.a =\n'  # a broken statement in the middle does not hide what follows
        'import "stdlib/server-time"\n'
        'deny tool "'
    )
    ws.open[path] = text
    ws.check()
    assert path not in ws.last_good
    end = (text.count("\n"), len('deny tool "'))
    labels = {i.label for i in features.complete(ws, path, end)}
    time_tools = _catalogue('import "stdlib/server-time"\n', tmp_path)
    assert labels == {"ping", "get-order", "refund"} | time_tools
    # an import being typed (its quote closed by the editor) is not followed while the cursor is in it
    typing = 'import "stdlib/server-time"\nimport "./catalogue.plr"\n'
    ws.open[path] = typing
    known = ws.partial_result(path, len('import "stdlib/server-time"\nimport "./cat'))
    assert known is not None and set(known.prog.catalogue) == time_tools
    assert known.policy() is None  # a partial program is never shown as the file's compiled policy
    # nothing whole: nothing known, and no failure
    ws.open[path] = 'import "stdlib/server-ti'
    assert ws.partial_result(path, 0) is None
    assert "stdlib/server-time" in {i.label for i in features.complete(ws, path, (0, len('import "stdlib/server-ti')))}
    ws.open[path] = 'import "./nowhere.plr"\nallow tool "'
    known = ws.partial_result(path)
    assert known is not None and known.prog.catalogue == {}
    assert any("no such file" in d.message for d in known.diagnostics)
    assert [i.label for i in features.complete(ws, path, (1, len('allow tool "')))] == []


def test_hovering_a_tool_in_a_file_that_never_parsed_says_its_catalogue_entry(tmp_path: Path):
    """Hover reads the same partial build: the tool's class and description, and a plain word that
    the file's rules and compiled JSON are not known yet (not "No rule names this tool", which the
    partial build, holding none of the file's rules, would otherwise claim)."""
    (tmp_path / "catalogue.plr").write_text(CATALOGUE, encoding="utf-8")
    path = str(tmp_path / "p.plr")
    ws = Workspace([str(tmp_path)])
    ws.scan()
    text = 'import "./catalogue.plr"\ndefault deny\ndeny tool "refund" if args.amount >\nallow tool "get-order"\n'
    ws.open[path] = text
    ws.check()
    assert path not in ws.last_good
    got = features.hover(ws, path, (1 + 2, len('allow tool "ge')))
    assert got is not None
    md, _ = got
    assert "`get-order`" in md and "read (server" in md, md
    assert "does not parse yet" in md and "No rule names this tool" not in md, md
    # once it parses, the full hover: its rules and compiled JSON
    ws.open[path] = text.replace("args.amount >", "args.amount > 5")
    ws.check()
    md, _ = features.hover(ws, path, (3, len('allow tool "ge')))
    assert "**Rules**" in md and "does not parse yet" not in md, md
