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
        # a name may stand for a value (`let`), so this is an unknown name, with the same hint
        ('deny tool "x" if args.a == nullable\n', "unknown name `nullable` (did you mean `null`?): a value here is a "
                                                   "literal or a name defined by `let` or `import data`"),
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


# --- 5. null and exists --------------------------------------------------------------------


def test_exists_and_missing_treat_an_explicit_null_as_absent() -> None:
    from dsl.engine import Engine

    src = (
        'default deny\nallow tool "refund" if args.reason exists\n'
        'allow tool "note" if args.text missing\nallow tool "clear" if args.text == null\n'
    )
    e = Engine(compile_source(src, "p.plr"))
    assert e.decide("refund", {"reason": "dup"}).effect == "allow"
    assert e.decide("refund", {"reason": None}).code == "require"  # a migrated "must be present" holds
    assert e.decide("refund", {}).code == "require"
    assert e.decide("refund", {"reason": False}).effect == "allow"  # false and "" are values
    assert e.decide("note", {"text": None}).effect == "allow"
    assert e.decide("clear", {"text": None}).effect == "allow"  # == null still sees a written null
    assert e.decide("clear", {}).code == "require"


def test_the_reference_interpreter_agrees_on_null() -> None:
    from dsl.engine import Engine
    from tests.reference import RefInterpreter

    src = 'default deny\nallow tool "t" if args.a exists and not (args.b missing)\n'
    prog, _ = build((), {"p.plr": src})
    engine, ref = Engine(compile_source(src, "p.plr")), RefInterpreter(prog, lambda: 0.0)
    for args in ({"a": 1, "b": 2}, {"a": None, "b": 2}, {"a": 1, "b": None}, {"a": 1}, {}):
        assert (engine.decide("t", args).effect, engine.decide("t", args).code) == ref.decide("t", args), args


# --- 4. "*" in the JSON and in .plr -------------------------------------------------------


def test_a_wildcard_tools_key_is_refused_by_the_loader_and_the_engine() -> None:
    from dsl.engine import Engine
    from dsl.policy import load_policy

    doc = {"version": "1", "default": "allow", "tools": {"*": {"deny_if": [{"path": "args.a", "op": "exists"}]}}}
    with pytest.raises(PlrError) as e:
        load_policy(doc)
    assert 'a tools key "*" is not a wildcard' in str(e.value) and "all_tools" in str(e.value)
    with pytest.raises(PlrError, match='a tools key "\\*" is not a wildcard'):
        Engine.from_data(doc)
    # "*" in hide keeps its one meaning: every tool
    assert Engine(load_policy({"version": "1", "default": "allow", "hide": ["*"]})).decide("x").code == "hidden"


def test_a_star_tool_in_plr_is_an_error_pointing_at_all_tools() -> None:
    errors, _ = diagnostics('default allow\ndeny tool "*" if args.a == 1\n')
    assert errors == ['`*` is not a wildcard in `tool "*"`: it would name only a tool literally called `*`; '
                      "write `deny all tools` for every call (or `default …`)"]


# --- 9. migration errors that teach --------------------------------------------------------


def test_an_intercept_policy_gets_one_line_saying_what_it_is(tmp_path) -> None:
    from dsl.policy import load_policy

    doc = {
        "version": "1", "default": "deny",
        "tools": {"create_refund": {"rules": [{"name": "cap", "conditions": [{"path": "args.amount", "op": "lt", "value": 500}],
                                               "on_deny": "too much", "rate_limit": "5/hour"}]}},
    }  # fmt: skip
    with pytest.raises(PlrError) as e:
        load_policy(doc)
    assert len(e.value.diagnostics) == 1
    msg = e.value.diagnostics[0].message
    assert "tools.create_refund uses `rules`: this is an Intercept policy" in msg and "rewrite it as a .plr policy" in msg
    yaml = tmp_path / "policy.yaml"
    yaml.write_text('version: "1"\ndefault: deny\ntools:\n  create_refund:\n    rules: []\n')
    with pytest.raises(PlrError, match="this is YAML, not a JSON policy"):
        load_policy(yaml)


def test_the_seed_rate_limit_object_is_still_read() -> None:
    from dsl.policy import load_policy

    p = load_policy({"version": "1", "default": "deny", "tools": {"x": {"rate_limit": {"max": 5, "window": 60}}}})
    assert p.tools["x"].limits[0].max == 5


def test_loader_messages_never_name_an_internal_class() -> None:
    from dsl.policy import load_policy

    for doc in (
        {"version": "1", "default": "deny", "tools": {"x": {"limits": ["5/hour"]}}},
        {"version": "1", "default": "deny", "tools": {"x": []}},
        {"version": "1", "default": "deny", "all_tools": "x"},
        {"version": "1", "default": "deny", "tools": {"x": {"require": [5]}}},
    ):
        with pytest.raises(PlrError) as e:
            load_policy(doc)
        text = str(e.value)
        for internal in ("instance of", "Limit", "Tool", "AllTools", "Leaf", "model", "pydantic"):
            assert internal not in text, text


def test_plr_eval_of_a_yaml_policy_says_what_it_is(tmp_path) -> None:
    from .conftest import run_plr

    yaml = tmp_path / "intercept.yaml"
    yaml.write_text('version: "1"\ndefault: deny\ntools:\n  x:\n    rules: []\n')
    proc = run_plr("eval", str(yaml), "--tool", "x")
    assert proc.returncode == 2
    assert "this is YAML, not a JSON policy" in proc.stderr_text and len(proc.stderr_text.splitlines()) == 1


def test_plr_test_reports_a_near_miss_tool_and_strict_fails_on_it(tmp_path) -> None:
    from .conftest import run_plr

    f = tmp_path / "p.plr"
    f.write_text(
        'default deny\nallow tool "get-task"\ndeny tool "cancel-task" unless approved\n'
        'test "t" {\n    call "cancle-task" -> deny default\n    call "format-disk" -> deny default\n}\n'
    )
    plain = run_plr("test", str(f))
    assert plain.returncode == 0
    assert "did you mean `cancel-task`?" in plain.stderr_text and "format-disk" not in plain.stderr_text
    strict = run_plr("test", str(f), "--strict")
    assert strict.returncode == 1 and "did you mean `cancel-task`?" in strict.stderr_text
    as_json = run_plr("test", str(f), "--format", "json")
    assert as_json.returncode == 0 and '"passed": 1' in as_json.stdout_text  # the document stays whole


# --- 11. plr eval --args @file and - ---------------------------------------------------------


def test_eval_reads_arguments_from_a_file_or_stdin(tmp_path) -> None:
    from .conftest import SPEC_PLR, run_plr

    args = tmp_path / "call.json"
    args.write_text('{"task_id": "t1"}')
    from_file = run_plr("eval", str(SPEC_PLR), "--tool", "cancel-task", "--args", f"@{args}", "--format", "json")
    from_stdin = run_plr("eval", str(SPEC_PLR), "--tool", "cancel-task", "--args", "-", "--format", "json",
                         input='{"task_id": "t1"}')  # fmt: skip
    inline = run_plr("eval", str(SPEC_PLR), "--tool", "cancel-task", "--args", '{"task_id": "t1"}', "--format", "json")
    assert from_file.stdout_text == from_stdin.stdout_text == inline.stdout_text
    assert '"approval_required"' in inline.stdout_text
    missing = run_plr("eval", str(SPEC_PLR), "--tool", "x", "--args", f"@{tmp_path / 'nope.json'}")
    assert missing.returncode == 2 and "cannot read" in missing.stderr_text and "Traceback" not in missing.stderr_text
    not_object = run_plr("eval", str(SPEC_PLR), "--tool", "x", "--args", "-", input="[1]")
    assert not_object.returncode == 2 and "must be a JSON object" in not_object.stderr_text
