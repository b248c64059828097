"""Review fixes (language): a wildcard in a tool name, a JSON key written twice, the tools an
`allow all tools if` grant does not reach through a `deny … unless`, `count` of a null,
`tools "*"` with hide/deny/limit, and arguments that are not a JSON object. Each was a silent
fail-open or a trap: the policy must mean what its author thinks."""

from __future__ import annotations

import collections
import json

import pytest

from dsl.compiler import build, compile_source
from dsl.engine import Engine, compile_condition
from dsl.engine.conditions import MISSING
from dsl.errors import PlrError
from dsl.policy import load_policy

from .test_differential import decide_all


def diagnostics(src: str) -> tuple[list[str], list[str]]:
    _, diags = build((), {"p.plr": src})
    return (
        [d.message for d in diags if d.severity == "error"],
        [d.message for d in diags if d.severity == "warning"],
    )


def located_errors(src: str) -> list:
    _, diags = build((), {"p.plr": src})
    return [d for d in diags if d.severity == "error"]


# --- 1. `*` / `?` in a tool name ------------------------------------------------------------


def test_a_star_in_a_tool_name_is_an_error_naming_both_ways_to_match_tools() -> None:
    (e,) = located_errors('default allow\ndeny tool "delete_*"\n')
    assert (e.file, e.line, e.col) == ("p.plr", 2, 6)
    assert "`*` and `?` are not wildcards in a tool name" in e.message
    assert "MCP tool names are letters, digits, `_`, `-` and `.`" in e.message
    assert '`deny tools "delete_*"` (a glob, expanded against the catalogues: only the tools they declare)' in e.message
    assert '`deny all tools if tool starts_with "delete_"` (every call of such a tool)' in e.message
    assert "^^^" in e.format()  # a caret snippet under the selector


def test_wildcards_in_hide_lists_and_conditional_rules_are_errors_too() -> None:
    errors, _ = diagnostics(
        'default allow\nhide tool "exec*"\ndeny tools ["rm?", "drop_*"]\n'
        'deny tool "*_prod" if args.x == 1\nlimit tool "run*" to 5 per minute\n'
        'deny tool "a*b" unless approved\n'
    )
    assert len(errors) == 6, errors
    hide, rm, drop, prod, run, ab = errors
    assert '`hide tools "exec*"`' in hide and '`deny all tools if tool starts_with "exec"`' in hide
    assert '`deny all tools if tool matches "^rm.$"`' in rm
    assert '`deny all tools if tool starts_with "drop_"`' in drop
    assert '`deny tools "*_prod" if …`' in prod and '`deny all tools if tool ends_with "_prod" and (…)`' in prod
    assert '`limit tools "run*" …`' in run and "`limit all tools … if tool starts_with \"run\"`" in run
    assert '`deny all tools unless not (tool matches "^a.*b$") or …`' in ab and "it makes no tool callable" in ab


def test_a_wildcard_name_with_a_catalogue_gets_the_wildcard_error_alone() -> None:
    errors, _ = diagnostics('import "stdlib/server-filesystem"\ndefault allow\ndeny tool "write_*"\n')
    assert len(errors) == 1 and "are not wildcards in a tool name" in errors[0], errors
    assert '`deny tools "write_*"`' in errors[0]


def test_the_suggested_forms_work() -> None:
    every = Engine(compile_source('default allow\ndeny all tools if tool starts_with "delete_"\n', "p.plr"))
    assert every.decide("delete_file").code == "deny_if"
    assert every.decide("read_file").code == "default"
    matches = Engine(compile_source('default allow\ndeny all tools if tool matches "^rm.$"\n', "p.plr"))
    assert [matches.decide(t).effect for t in ("rm1", "rm12", "xrm1")] == ["deny", "allow", "allow"]
    glob = Engine(compile_source('import "stdlib/server-filesystem"\ndefault allow\ndeny tools "write_*"\n', "p.plr"))
    assert glob.decide("write_file", {"path": "/a", "content": ""}).code == "denied"


@pytest.mark.parametrize(
    "doc, where",
    [
        ({"tools": {"delete_*": {"action": "deny"}}}, "tools"),
        ({"tools": {"rm?": {}}}, "tools"),
        ({"hide": ["exec*"]}, "hide"),
        ({"hide": ["a", "?x"]}, "hide"),
    ],
)
def test_the_json_loader_and_the_engine_refuse_wildcards_in_names(doc: dict, where: str) -> None:
    full = {"version": "1", "default": "allow", **doc}
    with pytest.raises(PlrError) as e:
        load_policy(full)
    assert f"{where}: " in str(e.value) and "are not wildcards in a tool name" in str(e.value)
    with pytest.raises((PlrError, ValueError), match="are not wildcards in a tool name"):
        Engine.from_data(full)


def test_json_hide_star_alone_still_hides_every_tool() -> None:
    assert Engine(load_policy({"version": "1", "default": "allow", "hide": ["*"]})).decide("x").code == "hidden"


def test_the_json_error_for_a_wildcard_key_suggests_an_all_tools_condition() -> None:
    with pytest.raises(PlrError) as e:
        load_policy({"version": "1", "default": "allow", "tools": {"delete_*": {"action": "deny"}}})
    assert '{"path": "tool", "op": "starts_with", "value": "delete_"}' in str(e.value)


def test_an_intercept_policy_with_a_wildcard_tool_is_refused_at_the_import() -> None:
    """(The importer refuses it; tests/test_import_intercept.py has the cases.)"""
    from dsl.importers.intercept import ImportError_, import_intercept

    with pytest.raises(ImportError_, match="governs no real tool"):
        import_intercept('version: "1"\ndefault: allow\ntools:\n  delete_*:\n    rules:\n      - action: deny\n')


# --- 2. a key written twice in a JSON document ------------------------------------------------

DUP = """{"version": "1", "default": "allow",
 "tools": {
   "delete_repo": {"action": "deny", "reason": "never"},
   "create_issue": {},
   "delete_repo": {}
 }}"""


def test_a_repeated_tools_key_is_refused_with_its_place() -> None:
    with pytest.raises(PlrError) as e:
        load_policy(DUP, name="dup.json")
    (d,) = e.value.diagnostics
    assert (d.file, d.line, d.col) == ("dup.json", 5, 4)
    assert d.message.startswith('key "delete_repo" is written twice in `tools`')
    assert "^^^^^^^^^^^^^" in d.format()


@pytest.mark.parametrize(
    "text, where",
    [
        ('{"version": "1", "default": "deny", "default": "allow"}', "at the top level"),
        (
            '{"version": "1", "default": "deny", "tools": {"x": {"require": '
            '[{"path": "args.a", "op": "eq", "value": 1, "op": "neq"}]}}}',
            "in `tools.x.require[0]`",
        ),
        ('{"version": "1", "default": "deny", "tools": {"x": {"deny_if": [], "deny_if": [{"path": "args.a", "op": "exists"}]}}}',
         "in `tools.x`"),
    ],
)  # fmt: skip
def test_a_repeated_key_is_refused_at_any_depth(text: str, where: str) -> None:
    with pytest.raises(PlrError, match=f"is written twice {where.replace('[', '.').replace(']', '.')}"):
        load_policy(text, name="p.json")


def test_plr_eval_refuses_a_policy_with_a_repeated_key(tmp_path) -> None:
    from .conftest import run_plr

    (tmp_path / "dup.json").write_text(DUP)
    r = run_plr("eval", str(tmp_path / "dup.json"), "--tool", "delete_repo", "--no-cache")
    assert r.returncode == 2 and "written twice" in r.stdout_text + r.stderr_text


def test_a_data_file_with_a_repeated_key_is_an_error_at_the_import(tmp_path) -> None:
    (tmp_path / "d.json").write_text('{"admins": ["a"], "nested": {"x": 1, "x": 2}}')
    (tmp_path / "p.plr").write_text('import data "./d.json" as d\ndefault allow\n')
    _, diags = build([str(tmp_path / "p.plr")])
    (e,) = [d for d in diags if d.severity == "error"]
    assert e.line == 1 and 'key "x" is written twice in `nested`' in e.message and "line 1" in e.message


def test_documents_without_repeats_load_as_before() -> None:
    p = load_policy('{"version": "1", "default": "deny", "tools": {"a": {}, "b": {"deny_if": [{"path": "args.a", "op": "exists"}]}}}')
    assert sorted(p.tools) == ["a", "b"]


# --- 3. the tools a grant does not reach through a `deny … unless` ---------------------------


def test_a_deny_unless_tool_beside_a_grant_is_named() -> None:
    src = 'default deny\nallow all tools if identity == "admin"\ndeny tool "delete" unless approved\n'
    _, warnings = diagnostics(src)
    assert warnings == [
        'anyone may call `delete` once approved (p.plr:3): `allow all tools if …` does not apply to a tool that '
        "a `deny … unless` makes callable; to hold every call to this condition too, add "
        '`deny all tools unless identity == "admin"`'
    ]
    # what the warning says is so
    e = Engine(compile_source(src, "p.plr"))
    assert e.decide("delete", identity="bob", approved=True).effect == "allow"


def test_following_the_advice_silences_it_and_holds_the_tool_to_the_grant() -> None:
    src = (
        'default deny\nallow all tools if identity == "admin"\ndeny tool "delete" unless approved\n'
        'deny all tools unless identity == "admin"\n'
    )
    assert diagnostics(src) == ([], [])
    e = Engine(compile_source(src, "p.plr"))
    assert e.decide("delete", identity="bob", approved=True).effect == "deny"
    assert e.decide("delete", identity="admin").effect == "approval_required"
    assert e.decide("delete", identity="admin", approved=True).effect == "allow"
    assert e.decide("other", identity="admin").effect == "allow"


def test_a_deny_unless_on_another_condition_is_worded_for_it() -> None:
    _, warnings = diagnostics(
        'default deny\nallow all tools if identity == "admin"\ndeny tool "export" unless args.fmt == "csv"\n'
    )
    assert len(warnings) == 1 and warnings[0].startswith(
        "anyone may call `export` when its `deny … unless` condition holds (p.plr:3)"
    )


def test_a_tool_with_its_own_allow_is_not_named() -> None:
    _, warnings = diagnostics(
        'default deny\nallow all tools if identity == "admin"\ndeny tool "delete" unless approved\nallow tool "delete"\n'
    )
    assert not any("anyone may call" in w for w in warnings), warnings


def test_repeating_the_grant_in_a_tools_own_allow_if_silences_the_warning() -> None:
    src = 'default deny\nallow all tools if identity == "admin"\nallow tool "export" if args.fmt == "csv"\n'
    assert any("does not apply to `export`" in w for w in diagnostics(src)[1])
    repeated = src.replace('args.fmt == "csv"', 'args.fmt == "csv" or identity == "admin"')
    assert diagnostics(repeated) == ([], [])


# --- 4. count of an explicit null is 0 --------------------------------------------------------


def test_count_of_null_is_zero_in_the_engine_and_the_reference() -> None:
    src = 'default deny\nallow tool "rm"\ndeny tool "rm" if count(args.task_id) == 0\n'
    assert decide_all(src, [("rm", {"task_id": None}), ("rm", {}), ("rm", {"task_id": "t"}), ("rm", {"task_id": []})]) == [
        ("deny", "deny_if"),
        ("deny", "deny_if"),
        ("allow", "allowed"),
        ("deny", "deny_if"),
    ]


@pytest.mark.parametrize("value, n", [(None, 0), (MISSING, 0), ("x", 1), (0, 1), (False, 1), ([None], 1), ([], 0)])
def test_count_in_a_json_leaf(value: object, n: int) -> None:
    pred = compile_condition({"path": "args.v", "fn": "count", "op": "eq", "value": n})
    args = {} if value is MISSING else {"v": value}
    assert pred((args, MISSING, MISSING, MISSING, "t", False))


def test_count_of_null_in_the_z3_encoding() -> None:
    pytest.importorskip("z3")
    from dsl.analysis.diff import diff_policies

    def policy(deny_if: list) -> dict:
        return load_policy({"version": "1", "default": "deny", "tools": {"t": {"deny_if": deny_if}}}).to_dict()

    count0 = {"path": "args.a", "fn": "count", "op": "eq", "value": 0}
    old = policy([count0])
    new = policy([{"any": [{"path": "args.a", "op": "missing"}, count0]}])  # the same, if null counts 0
    assert diff_policies(old, new).equivalent


def test_the_hover_text_says_null_counts_zero() -> None:
    from dsl.lsp.words import KEYWORD_HELP

    assert "0 when missing or null" in KEYWORD_HELP["count"]


# --- 5. `tools "*"` with hide, deny and limit -------------------------------------------------


@pytest.mark.parametrize(
    "rule, fix",
    [
        ('hide tools "*"', "write `hide all tools`"),
        ('deny tools "*" if identity == "guest"', "write `deny all tools if …` for every call"),
        ('deny tools "*"', "write `default deny`"),
        ('limit tools "*" to 5 per minute', "write `limit all tools …`"),
        ('deny tools "**" unless approved', "write `deny all tools unless …`"),
        ('deny tools "?*" if identity == "guest"', "write `deny all tools if …` for every call"),
        ('hide tools "*?"', "write `hide all tools`"),
        ('limit tools "?*?" to 5 per minute', "write `limit all tools …`"),
    ],
)
def test_a_star_glob_that_would_miss_uncatalogued_tools_is_an_error(rule: str, fix: str) -> None:
    errors, _ = diagnostics(f'import "stdlib/server-memory"\ndefault allow\n{rule}\n')
    assert len(errors) == 1 and fix in errors[0], errors
    assert "only the tools the catalogues declare" in errors[0]


def test_deny_star_unless_under_default_deny_says_how_to_keep_tools_callable() -> None:
    errors, _ = diagnostics('import "stdlib/server-memory"\ndefault deny\ndeny tools "*" unless approved\n')
    assert len(errors) == 1 and 'with `allow tools "*"` to keep the catalogued tools callable' in errors[0]


def test_a_glob_of_question_marks_alone_is_not_taken_for_every_tool() -> None:
    # `"?"` names the one-letter tools of the catalogues: narrow on purpose, not the trap of `"*"`
    errors, _ = diagnostics('import "stdlib/server-memory"\ndefault allow\ndeny tools "??"\n')
    assert not any("only the tools the catalogues declare" in e for e in errors), errors


def test_allow_tools_star_stays_legal() -> None:
    src = 'import "stdlib/server-memory"\ndefault deny\nallow tools "*"\n'
    e = Engine(compile_source(src, "p.plr"))
    assert e.decide("read_graph").effect == "allow"
    assert e.decide("not_catalogued").code == "default"


# --- 5b. a key written twice in a test call's arguments ---------------------------------------


def test_a_repeated_key_in_a_test_calls_arguments_is_an_error_at_the_second() -> None:
    src = 'default deny\nallow tool "w" if args.path == "/tmp"\n\ntest "t" {\n  call "w" {path: "/etc", "path": "/tmp"} -> allow\n}\n'
    (err,) = located_errors(src)
    assert 'key "path" is repeated' in err.message
    assert (err.line, err.col) == (5, 27)


def test_a_repeated_key_nested_in_a_test_call_is_an_error_too() -> None:
    errors, _ = diagnostics('default deny\ntest "t" {\n  call "w" {a: {b: 1, b: 2}} -> deny\n}\n')
    assert len(errors) == 1 and 'key "b" is repeated' in errors[0]


def test_distinct_keys_in_a_test_call_still_load() -> None:
    errors, _ = diagnostics('default deny\ntest "t" {\n  call "w" {a: {b: 1}, b: 2, "c": [1]} -> deny\n}\n')
    assert errors == []


# --- 6. arguments that are not a JSON object ---------------------------------------------------

POLICY = compile_source(
    'default allow\ndeny tool "run" if args.cmd contains "rm"\nallow tool "plain"\n'
    'limit tool "lim" to 100 per minute\n',
    "p.plr",
)


@pytest.mark.parametrize("args", ["rm -rf /", ["rm"], ("rm",), 5, 0, "", [], (), b"rm", {"rm"}, 1.5, True])
@pytest.mark.parametrize("tool", ["run", "plain", "lim", "unnamed"])
@pytest.mark.parametrize("explain", [False, True])
def test_arguments_that_are_not_an_object_are_refused(args: object, tool: str, explain: bool) -> None:
    d = Engine(POLICY).decide(tool, args, explain=explain)  # type: ignore[arg-type]
    assert (d.effect, d.code) == ("deny", "invalid_args"), d
    assert "not a JSON object" in d.reason


@pytest.mark.parametrize(
    "args, what",
    [
        ({"cmd": ("rm",)}, "a Python tuple value"),
        ({"cmd": {"rm"}}, "a Python set value"),
        ({"cmd": b"rm"}, "a Python bytes value"),
        ({"x": [1, {"y": ("z",)}]}, "a Python tuple value"),
        ({1: "rm"}, "not a string"),
        ({"x": {"y": {2: "z"}}}, "not a string"),
    ],
)
def test_values_within_that_are_not_json_are_refused(args: dict, what: str) -> None:
    for tool in ("run", "plain", "unnamed"):
        d = Engine(POLICY).decide(tool, args)
        assert (d.effect, d.code) == ("deny", "invalid_args") and what in d.reason, (tool, d)


def test_json_arguments_are_decided_as_before() -> None:
    e = Engine(POLICY)
    assert e.decide("run", {"cmd": "rm -rf /"}).code == "deny_if"
    assert e.decide("run", {"cmd": "ls"}).code == "allowed"
    assert e.decide("run", None).code == "allowed"
    assert e.decide("run", {}).code == "allowed"
    assert e.decide("plain", {}).code == "allowed"
    assert e.decide("run", {"cmd": "ls", "n": [1, 2.5, None, True, {"k": "v"}]}).code == "allowed"


def test_dict_and_list_subclasses_are_read_as_json() -> None:
    class D(dict):
        pass

    class L(list):
        pass

    e = Engine(POLICY)
    assert e.decide("run", collections.OrderedDict(cmd="rm -rf")).code == "deny_if"
    assert e.decide("run", D(cmd="rm -rf")).code == "deny_if"
    assert e.decide("run", {"cmd": L(["rm"])}).code == "deny_if"
    assert e.decide("run", json.loads('{"cmd": "rm"}', object_pairs_hook=collections.OrderedDict)).code == "deny_if"


def test_a_catalogued_tool_name_with_a_wildcard_is_an_error_at_its_declaration() -> None:
    """A class or glob rule would carry such a name into `hide` or `tools`, where the JSON loader
    refuses it: `plr check` passed and `plr compile` failed with an internal error."""
    from dsl.compiler import compile_source
    from dsl.errors import PlrError

    src = 'server "s" {\n    tool "get?x" read\n    tool "run*" execute\n}\ndefault allow\ndeny execute tools\nhide tools "get*"\n'
    with pytest.raises(PlrError) as e:
        compile_source(src, "cat.plr")
    text = str(e.value)
    assert "tool `get?x` of server `s`" in text and "tool `run*` of server `s`" in text
    assert "cat.plr:2:10" in text and "internal error" not in text
