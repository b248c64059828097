"""`plr check` warns on a condition about an argument no selected tool has (harvested schemas),
and the language server completes argument names from the same schemas."""

from __future__ import annotations

from pathlib import Path

from dsl.compiler import build
from dsl.lsp import features
from dsl.lsp.workspace import Workspace

FS = 'import "stdlib/server-filesystem"\ndefault allow\n'


def warnings(text: str) -> list[str]:
    _, diagnostics = build(texts={"p.plr": text})
    return [d.message for d in diagnostics if d.severity == "warning"]


def test_a_misspelt_argument_is_a_warning_with_the_nearest_name():
    (msg,) = warnings(FS + 'deny tool "read_file" if args.pth contains ".."\n')
    assert msg.startswith("`args.pth`: `read_file` has no argument `pth`; did you mean `path`?")
    assert "never holds" in msg


def test_an_argument_the_tool_has_is_quiet():
    assert warnings(FS + 'deny tool "read_file" if args.path contains ".."\n') == []


def test_a_rule_on_several_tools_warns_only_when_none_has_the_argument():
    assert warnings(FS + 'deny tools ["read_file", "write_file"] if args.content contains "k"\n') == []
    (msg,) = warnings(FS + 'deny tools ["read_file", "write_file"] if args.contnt contains "k"\n')
    assert "none of the 2 tools this rule selects has an argument `contnt`; did you mean `content`?" in msg


def test_list_items_and_nested_objects_are_checked():
    (msg,) = warnings(FS + 'deny tool "edit_file" if some e in args.edits { e.oldTxt contains "k" }\n')
    assert "`e.oldTxt`: `edit_file` has no argument `oldTxt` under `args.edits`; did you mean `oldText`?" in msg
    assert warnings(FS + 'deny tool "edit_file" if some e in args.edits { e.oldText contains "k" }\n') == []
    assert warnings(FS + 'deny tool "read_multiple_files" if some p in args.paths { p contains ".env" }\n') == []


def test_a_tool_of_the_authors_own_server_block_is_not_second_guessed():
    text = 'server "mine" { tool "read_file" read }\n' + FS + 'deny tool "read_file" if args.anything == 1\n'
    assert not [w for w in warnings(text) if "has no argument" in w]


def test_without_a_harvested_catalogue_nothing_is_said():
    text = 'server "s" { tool "t" read }\ndefault allow\ndeny tool "t" if args.x == 1\n'
    assert not [w for w in warnings(text) if "argument" in w]


def test_the_language_server_completes_argument_names_from_the_schema(tmp_path: Path):
    path = tmp_path / "p.plr"
    text = FS + 'deny tool "edit_file" if args.'
    path.write_text(FS, encoding="utf-8")
    ws = Workspace([str(tmp_path)])
    ws.scan()
    ws.check()
    ws.open[str(path)] = text
    ws.check([str(path)])
    items = features.complete(ws, str(path), (text.count("\n"), len(text.split("\n")[-1])))
    by_label = {i.label: i.detail for i in items}
    assert by_label["path"] == "argument: string" and by_label["edits"] == "argument: array"
    assert "dryRun" in by_label
