"""Silent fail-opens found in review of lowering and resolution: each compiled into a policy that
did less than its text says, with no error and no warning.

1. `matches "(?i)\\bdrop\\b"`: `\\b` in a JSON string is a backspace, never a word boundary.
2. An imported file's `default allow` became the importer's default without a word.
3. Tool names no MCP server has (a trailing space, a zero-width space) governed nothing: an error
   in a selector or a catalogue, a warning in a condition on `tool`, refused by the JSON loader.
4. A spend cap past 2^53 - 1 (`to 1e300 of args.amount`) passed `plr check`, then failed to load.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl.compiler import build, compile_files, compile_source
from dsl.errors import Diagnostic, PlrError
from dsl.vocab import MAX_LIMIT_COUNT
from tests.conftest import run_plr


def diagnostics(src: str, file: str = "p.plr") -> list[Diagnostic]:
    return build((), {file: src})[1]


def errors_of(src: str) -> list[Diagnostic]:
    return [d for d in diagnostics(src) if d.severity == "error"]


# --- 1. `\b` in a pattern is a backspace ---------------------------------------------------


def test_a_backspace_escape_in_a_pattern_is_an_error_at_the_escape() -> None:
    src = 'default allow\ndeny tool "query" if args.sql matches "(?i)\\bdrop\\b"\n'
    errors = errors_of(src)
    assert len(errors) == 1, errors
    e = errors[0]
    assert (e.line, e.col, e.width) == (2, 44, 2)  # the first `\b`
    assert "backspace (U+0008), not a word boundary" in e.message
    assert "Write `\\\\b` for a word boundary" in e.message
    shown = e.format()
    assert shown.startswith("p.plr:2:44: error:") and "\n      |" + " " * 44 + "^^\n" in shown + "\n"


def test_the_word_boundary_written_twice_compiles_and_fires() -> None:
    from dsl.engine import Engine

    src = 'default allow\ndeny tool "query" if args.sql matches "(?i)\\\\bdrop\\\\b"\n'
    engine = Engine(compile_source(src, "p.plr"))
    assert engine.decide("query", {"sql": "DROP TABLE users"}).effect == "deny"
    assert engine.decide("query", {"sql": "select * from dropbox"}).effect == "allow"
    # and a backspace written as `\u0008` is refused too: `plr fmt` would write it `\b`
    errors = errors_of('default allow\ndeny tool "query" if args.sql matches "a\\u0008"\n')
    assert [(d.line, d.col, d.width) for d in errors] == [(2, 41, 6)], errors
    assert "`\\\\x08` to match a backspace" in errors[0].message


def test_a_backspace_reached_through_a_let_or_a_data_file_is_an_error_at_the_name(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('{"words": "\\\\bok\\\\b", "bad": "\\bdrop\\b"}')
    main = tmp_path / "main.plr"
    main.write_text(
        'let wb = "\\bdrop\\b"\nimport data "d.json" as d\ndefault allow\n'
        'deny tool "q" if args.sql matches wb\n'
        'deny tool "q" if args.sql matches d.bad\n'
        'deny tool "q" if args.sql matches d.words\n'
        'deny tool "q" if args.sql matches "\\\\x08"\n'  # RE2's backspace: the way to mean one
    )
    _, diags = build([str(main)])
    errors = [(d.line, d.col, d.message.split(" ")[0]) for d in diags if d.severity == "error"]
    assert errors == [(4, 35, "`wb`"), (5, 35, "`d.bad`")], diags
    assert all("holds a backspace (U+0008), not a word boundary" in d.message for d in diags if d.severity == "error")


# --- 2. an imported `default allow` ------------------------------------------------------


def _files(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / f"{name}.plr").write_text(text)
    return tmp_path / "main.plr"


def test_an_imported_default_allow_is_a_warning_at_the_import(tmp_path: Path) -> None:
    main = _files(tmp_path, main='deny tool "x"\nimport "./cat.plr"\n', cat="default allow\n")
    prog, diags = build([str(main)])
    warnings = [d for d in diags if "`default allow` comes from" in d.message]
    assert len(warnings) == 1, diags
    w = warnings[0]
    assert w.severity == "warning" and w.file.endswith("main.plr") and (w.line, w.col) == (2, 8)
    assert "cat.plr:1, which this file imports" in w.message
    assert "move `default allow` into this file" in w.message
    proc = run_plr("check", "--strict", str(main))
    assert proc.returncode == 1, proc.stdout_text + proc.stderr_text


def test_an_imported_default_allow_through_a_chain_names_the_chain(tmp_path: Path) -> None:
    main = _files(tmp_path, main='import "./a.plr"\ndeny tool "x"\n', a='import "./b.plr"\n', b="default allow\n")
    _, diags = build([str(main)])
    warnings = [d for d in diags if "`default allow` comes from" in d.message]
    assert [(w.file.endswith("main.plr"), w.line) for w in warnings] == [(True, 1)], diags
    assert "(./a.plr -> ./b.plr)" in warnings[0].message


def test_a_default_of_the_file_named_or_an_imported_deny_is_not_reported(tmp_path: Path) -> None:
    own = _files(tmp_path, main='default allow\nimport "./cat.plr"\ndeny tool "x"\n', cat='deny tool "y"\n')
    assert not any("comes from" in d.message for d in build([str(own)])[1])
    deny = _files(tmp_path, main='import "./cat.plr"\ndeny tool "x"\n', cat="default deny\n")
    assert not any("comes from" in d.message for d in build([str(deny)])[1])
    # the behaviour this guards stays visible: still one default for the whole policy
    allow = _files(tmp_path, main='import "./cat.plr"\ndeny tool "x"\n', cat="default allow\n")
    assert compile_files([str(allow)]).default == "allow"
    assert any("comes from" in d.message for d in build([str(allow)])[1])


# --- 3. tool names no MCP server has -------------------------------------------------------


def test_a_trailing_space_in_a_tool_name_is_a_located_error_with_the_name_escaped() -> None:
    errors = errors_of('default allow\ndeny tool "delete_file "\n')
    assert len(errors) == 1, errors
    e = errors[0]
    assert (e.line, e.col) == (2, 6)
    assert 'tool name "delete_file\\u0020" holds U+0020 SPACE' in e.message
    assert 'did you mean "delete_file"?' in e.message


def test_invisible_characters_in_a_list_are_errors_at_each_name_other_letters_are_not() -> None:
    src = 'default allow\ndeny tools ["delete file", "überprüfen", "delete_file\\u200b"]\n'
    errors = errors_of(src)
    assert [(d.line, d.col, d.width) for d in errors] == [(2, 13, 13), (2, 42, 19)], errors
    assert 'tool name "delete\\u0020file"' in errors[0].message
    assert 'tool name "delete_file\\u200b" holds U+200B ZERO WIDTH SPACE (a format character)' in errors[1].message


@pytest.mark.parametrize(
    "src",
    [
        'server "fs" {\n    tool "delete_file\\u202e" destructive\n}\ndefault deny\nallow read tools\n',
        'server "fs" {\n    tool "delete_file" destructive\n}\ndefault allow\nhide tools "delete_file *"\n',
    ],
    ids=["catalogue", "glob"],
)
def test_an_invisible_character_in_a_catalogued_name_or_a_glob_is_an_error(src: str) -> None:
    errors = errors_of(src)
    assert errors and all(d.line >= 2 and d.col >= 1 for d in errors), errors
    assert any("which no MCP tool name holds" in d.message for d in errors), errors


@pytest.mark.parametrize(
    "src",
    [
        'default allow\ndeny all tools if tool == "delete_file\\u00a0"\n',
        'default allow\ndeny all tools if tool in ["a", "delete_file\\t"]\n',
        'default allow\nlet names = ["delete_file "]\ndeny all tools if tool in names\n',
    ],
    ids=["tool ==", "tool in", "tool in a let"],
)
def test_an_invisible_character_compared_with_tool_is_a_warning_at_the_comparison(src: str) -> None:
    """A condition on `tool` stays the way to reach a server that breaks the MCP rule: a warning."""
    diags = diagnostics(src)
    found = [d for d in diags if "which no MCP tool name holds" in d.message]
    assert [(d.severity, d.line, d.col) for d in found] == [("warning", src.count("\n"), 19)], diags
    assert 'did you mean "delete_file"?' in found[0].message
    assert not [d for d in diags if d.severity == "error"]


@pytest.mark.parametrize(
    "doc",
    [
        {"version": "1", "default": "allow", "tools": {"delete_file ": {"action": "deny"}}},
        {"version": "1", "default": "allow", "hide": ["delete_file\u200b"]},
    ],
    ids=["tools key", "hide"],
)
def test_the_json_loaders_refuse_invisible_characters_in_tool_names(doc: dict) -> None:  # type: ignore[type-arg]
    from dsl.engine import Engine
    from dsl.policy import load_policy

    with pytest.raises(PlrError) as e:
        load_policy(json.dumps(doc))
    assert "which no MCP tool name holds" in str(e.value)
    with pytest.raises(Exception, match="which no MCP tool name holds"):
        Engine.from_data(doc)


# --- 4. a limit's max the JSON cannot carry -------------------------------------------------


def test_a_spend_cap_past_the_json_bound_is_a_located_error(tmp_path: Path) -> None:
    src = 'default allow\nlimit tool "t" to 1e300 of args.amount per day\n'
    errors = errors_of(src)
    assert [(d.line, d.col, d.width) for d in errors] == [(2, 19, 5)], errors
    assert f"a spend cap's amount must be at most {MAX_LIMIT_COUNT}" in errors[0].message
    # the proxy compiles a .plr at start: it refuses to start rather than run an unloadable policy
    from dsl.proxy.reload import load_policy_file

    path = tmp_path / "p.plr"
    path.write_text(src)
    with pytest.raises(PlrError, match="spend cap's amount"):
        load_policy_file(path)


def test_a_spend_cap_at_the_bound_compiles_and_loads_and_the_loader_names_an_amount() -> None:
    from dsl.engine import Engine
    from dsl.policy import load_policy

    policy = compile_source(f'default allow\nlimit tool "t" to {MAX_LIMIT_COUNT}.0 of args.amount per day\n', "p.plr")
    assert load_policy(policy.to_json()).tools["t"].limits[0].max == MAX_LIMIT_COUNT
    data = policy.to_dict()
    data["tools"]["t"]["limits"][0]["max"] = 1e300
    with pytest.raises(Exception, match="must be an amount above 0 and at most 9007199254740991"):
        Engine.from_data(data)
