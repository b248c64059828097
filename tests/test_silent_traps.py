"""A policy that says one thing and enforces another is a bug: each trap a real author falls into
compiles no more, or is reported (issue "catch every silent trap")."""

from __future__ import annotations

import pytest

from dsl.compiler import build, compile_source
from dsl.errors import PlrError

CATALOGUE = 'server "fs" {\n    tool "write_file" write\n    tool "read_file" read\n}\n'


def diagnostics(src: str) -> tuple[list[str], list[str]]:
    _, diags = build((), {"p.plr": src})
    return (
        [d.message for d in diags if d.severity == "error"],
        [d.message for d in diags if d.severity == "warning"],
    )


def error_of(src: str) -> str:
    with pytest.raises(PlrError) as e:
        compile_source(src, "p.plr")
    return e.value.diagnostics[0].message


# --- 1. misspelled tool names --------------------------------------------------------------


def test_a_misspelled_tool_under_a_catalogue_is_an_error_with_a_suggestion() -> None:
    errors, _ = diagnostics(CATALOGUE + 'default allow\ndeny tool "write_fil"\n')
    assert len(errors) == 1
    assert "tool `write_fil` is not in any declared catalogue; did you mean `write_file`?" in errors[0]
    assert 'declared in a `server` block: tool "write_fil" CLASS' in errors[0]


def test_a_tool_declared_on_purpose_in_a_server_block_is_fine() -> None:
    src = CATALOGUE + 'server "fs-extra" { tool "write_fil" write }\ndefault allow\ndeny tool "write_fil"\n'
    assert diagnostics(src) == ([], [])


def test_without_any_catalogue_an_unknown_tool_is_not_reported() -> None:
    errors, warnings = diagnostics('default allow\ndeny tool "write_fil"\n')
    assert errors == [] and not any("catalogue" in w for w in warnings)


def test_a_misspelled_tool_in_a_list_under_a_stdlib_catalogue_is_an_error() -> None:
    errors, _ = diagnostics('import "stdlib/server-filesystem"\ndefault deny\nallow tools ["read_file", "list_directoy"]\n')
    assert any("`list_directoy`" in e and "did you mean `list_directory`?" in e for e in errors), errors


# --- 3. plr test on a misspelled tool ------------------------------------------------------


def test_a_test_calling_a_near_miss_of_a_known_tool_is_reported() -> None:
    src = (
        'default deny\nallow tool "get-task"\ndeny tool "cancel-task" unless approved\n'
        'test "t" {\n    call "cancle-task" -> deny default\n    call "format-disk" -> deny default\n}\n'
    )
    errors, warnings = diagnostics(src)
    assert errors == []
    assert warnings == [
        "this test calls `cancle-task`, which no rule or catalogue knows: did you mean `cancel-task`? "
        "(the call only tests the default)"
    ]


def test_a_test_calling_a_tool_a_glob_selects_is_not_reported() -> None:
    src = 'default deny\nallow tools "get-*"\nallow tool "get-tasks"\ntest "t" { call "get-task" -> allow }\n'
    assert diagnostics(src)[1] == []


# --- 6. keywords glued to words ------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ('denytool "a"\n', "unknown word `denytool`: did you mean `deny tool`? (a keyword ends at a space)"),
        ("defaultallow\n", "unknown word `defaultallow`: did you mean `default allow`? (a keyword ends at a space)"),
        ('default deny\nallow tool "a" ifapproved\n', "unknown word `ifapproved`: did you mean `if approved`? (a keyword ends at a space)"),
    ],
)
def test_a_keyword_must_end_at_a_word_boundary(src: str, message: str) -> None:
    assert error_of(src) == message


def test_names_that_start_with_a_keyword_are_still_names() -> None:
    src = 'default deny\nallow tool "a" if args.denylist == 1 and args.tool_name exists and args.nullable == null\n'
    compile_source(src, "p.plr")


# --- 7. plurals and near misses -----------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ('limit tool "a" to 5 per minutes\n', "unknown word `minutes`: did you mean `per minute`? (units and scopes are singular)"),
        ('limit tool "a" to 5 per hours\n', "unknown word `hours`: did you mean `per hour`? (units and scopes are singular)"),
        ('limit tool "a" to 5 per hour per sessions\n', "unknown word `sessions`: did you mean `per session`? (units and scopes are singular)"),
        ("allow readonly tools\n", "unknown word `readonly`: did you mean `read`?"),
        ('server "s" { tool "a" readonly }\n', "unknown word `readonly`: did you mean `read`?"),
        ('deny tool "x" if args.a == nullable\n', "unknown word `nullable`: did you mean `null`?"),
    ],
)
def test_near_misses_get_the_message_a_person_needs(src: str, message: str) -> None:
    assert error_of(src) == message


def test_a_glued_keyword_in_a_file_with_other_errors_is_reported_as_such() -> None:
    with pytest.raises(PlrError) as e:
        compile_source('allow tool "q" if args.a = 1\nlimit tool "a" to 5 per minutes\n', "p.plr")
    messages = [d.message for d in e.value.diagnostics]
    assert messages[1] == "unknown word `minutes`: did you mean `per minute`? (units and scopes are singular)"
    assert e.value.diagnostics[1].line == 2


# --- 8. limits that cannot both matter; duplicate and empty names --------------------------


def test_two_limits_with_the_same_window_warn() -> None:
    _, warnings = diagnostics('default allow\nlimit tool "a" to 5 per minute\nlimit tool "a" to 10 per minute\n')
    assert warnings == [
        "limit 10 per 60s can never be reached: the limit 5 per 60s at line 2 counts the same window and "
        "always stops `a` first"
    ]


def test_the_same_limit_twice_warns_once_on_the_second() -> None:
    _, diags = build((), {"p.plr": 'default allow\nlimit tool "a" to 5 per minute\nlimit tool "a" to 5 per minute\n'})
    assert [(d.line, d.message) for d in diags] == [
        (3, "limit 5 per 60s can never be reached: the same limit at line 2 counts the same window and always stops `a` first")
    ]


def test_limits_in_different_scopes_with_the_same_window_are_both_meaningful() -> None:
    src = 'default allow\nlimit tool "a" to 5 per minute per session\nlimit tool "a" to 50 per minute per identity\n'
    assert diagnostics(src) == ([], [])


def test_duplicate_and_empty_hide_entries_warn() -> None:
    _, warnings = diagnostics('default allow\nhide tools ["a", "b", "a", ""]\nhide tool "b"\n')
    assert "`a` appears twice in this list" in warnings
    assert 'an empty tool name `""` selects no tool' in warnings
    assert "`b` is already hidden by p.plr:2" in warnings


# --- 10. the Python API takes one path as one path ------------------------------------------


def test_compile_files_takes_a_single_path_as_a_file(tmp_path) -> None:
    import dsl

    f = tmp_path / "policy.plr"
    f.write_text('default deny\nallow tool "a"\n')
    assert dsl.compile_files(str(f)).to_json() == dsl.compile_files([str(f)]).to_json()
    assert dsl.compile_files(f).to_json() == dsl.compile_files([f]).to_json()
    with pytest.raises(TypeError, match="not bytes"):
        dsl.compile_files(b"policy.plr")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a path or a list of paths"):
        dsl.compile_files([str(f).encode()])  # type: ignore[list-item]
