"""`plr check` warns at a comparison that an argument's schema type makes impossible (comparing
values of different types is false, docs/language.md): `deny tool "exec_in_pod" if
args.command starts_with "rm"` never fires when `command` is a list, a silent fail-open.

Stdlib catalogue tools use their harvested schemas; the schema shapes the catalogues rarely
show ($ref, allOf, oneOf, type lists, enums) are given to a stdlib tool through the one seam
the check reads them by, ``dsl.arg_check.tool_schemas`` (a policy cannot declare an argument's
schema itself: a `server` block lists tools and classes only, docs/catalogue.md)."""

from __future__ import annotations

from typing import Any

import pytest

from dsl import arg_check
from dsl.arg_types import rules_out_by_schema, types_at
from dsl.compiler import build, compile_source
from dsl.engine import Engine

K8S = 'import "stdlib/server-kubernetes"\ndefault allow\n'
FS = 'import "stdlib/server-filesystem"\ndefault allow\n'
MINE = "never holds for a call that follows the tool's input schema: the input schema"  # this check's warnings


def diagnostics(text: str) -> list[Any]:
    _, diags = build(texts={"p.plr": text})
    assert not [d for d in diags if d.severity == "error"], diags
    return [d for d in diags if d.severity == "warning"]


def typed(text: str) -> list[str]:
    """The messages of this check's warnings, and of the spend-cap one."""
    return [d.message for d in diagnostics(text) if MINE in d.message or "a spend cap adds up a number" in d.message]


def with_schemas(monkeypatch: pytest.MonkeyPatch, schemas: dict[str, Any]) -> None:
    """Give tools of stdlib/server-filesystem these input schemas instead of the harvested ones."""
    real = arg_check.tool_schemas
    monkeypatch.setattr(arg_check, "tool_schemas", lambda stem: {**real(stem), **schemas} if stem == "server-filesystem" else real(stem))


# --- the trap, with the harvested stdlib schemas -------------------------------------------


def test_a_string_operator_on_a_list_argument_is_a_silent_fail_open_at_the_comparison():
    text = K8S + 'deny tool "exec_in_pod" if args.command starts_with "rm"\n'
    (d,) = [d for d in diagnostics(text) if MINE in d.message]
    assert (d.file, d.line, d.col) == ("p.plr", 3, 28)
    source, caret = d.format().splitlines()[-2:]
    assert source.endswith('| deny tool "exec_in_pod" if args.command starts_with "rm"')
    assert caret.split("| ", 1)[1] == " " * 27 + "^" * len('args.command starts_with "rm"')
    assert d.message.startswith(
        '`args.command starts_with "rm"` never holds for a call that follows the tool\'s input schema: the input schema '
        "of `exec_in_pod` says `args.command` is a list, and `starts_with` holds only for a string, so for such a call "
        "this `deny … if` never fires"
    )
    assert "(a silent fail-open)" in d.message
    assert d.message.endswith(
        '; to test any item as well, write `args.command starts_with "rm" or some c in args.command { c starts_with "rm" }`'
    )


def test_the_suggested_form_is_quiet_and_denies_the_call_the_original_let_through():
    before = K8S + 'deny tool "exec_in_pod" if args.command starts_with "rm"\n'
    after = K8S + 'deny tool "exec_in_pod" if some c in args.command { c starts_with "rm" }\n'
    call = {"pod": "p", "command": ["rm", "-rf", "/"]}
    assert Engine(compile_source(before)).decide("exec_in_pod", call).effect == "allow"  # the trap
    assert Engine(compile_source(after)).decide("exec_in_pod", call).effect == "deny"
    assert typed(after) == []


def test_a_value_function_on_a_list_argument():
    (msg,) = typed(K8S + 'deny tool "kubectl_generic" if lower(args.args) contains "delete"\n')
    assert "says `args.args` is a list, and lower(...) gives a value only for a string" in msg
    assert "silent fail-open" in msg
    assert msg.endswith('write `lower(args.args) contains "delete" or some a in args.args { lower(a) contains "delete" }`')


def test_equality_with_a_list_argument_suggests_contains_in_a_deny_and_the_list_in_an_allow():
    (deny,) = typed(FS + 'deny tool "read_multiple_files" if args.paths == "/etc/passwd"\n')
    assert "a list never equals a string" in deny
    assert deny.endswith('write `args.paths contains "/etc/passwd"`')
    (allow,) = typed(FS + 'allow tool "read_multiple_files" if args.paths == "/w/a"\n')
    assert "this `allow … if` condition never holds: the rule denies every such call it selects" in allow
    assert allow.endswith('write `args.paths == ["/w/a"]`')


def test_in_an_allow_the_suggestion_tests_every_item():
    (msg,) = typed(FS + 'allow tool "read_multiple_files" if normpath(args.paths) starts_with "/w/"\n')
    assert msg.endswith('write `every p in args.paths { normpath(p) starts_with "/w/" }`')


def test_a_literal_of_a_type_the_schema_excludes():
    (msg,) = typed(FS + 'deny tool "read_file" if args.head > "5"\n')
    assert "says `args.head` is a number, and a number is never ordered against a string" in msg
    assert msg.endswith('write `args.head > "5" or args.head > 5`')
    (msg,) = typed(FS + 'deny tool "edit_file" if args.dryRun == "true" or args.path starts_with "/etc/"\n')
    assert "a boolean never equals a string, so for such a call this part of the `deny … if` never fires" in msg
    assert msg.endswith('write `args.dryRun in [true, "true"]`')
    (msg,) = typed(FS + 'deny tool "edit_file" if args.dryRun in ["yes", "no"]\n')
    assert "no item of the list is a boolean" in msg


def test_contains_on_a_list_looks_for_an_item_of_the_items_type():
    assert typed(FS + 'deny tool "read_multiple_files" if args.paths contains "/etc/passwd"\n') == []
    (msg,) = typed(FS + 'deny tool "read_multiple_files" if args.paths contains 5\n')
    assert "`contains` on a list looks for an item equal to `5`, and each item of it is a string" in msg


def test_count_and_len():
    (msg,) = typed(FS + 'deny tool "read_file" if count(args.path) > 1\n')
    assert "count(...) is 0 or 1 for a value that is not a list, never `> 1`" in msg
    assert typed(FS + 'deny tool "read_file" if count(args.path) == 0\n') == []
    assert typed(FS + 'deny tool "read_multiple_files" if count(args.paths) > 1\n') == []
    (msg,) = typed(FS + 'deny tool "edit_file" if len(args.dryRun) > 0\n')
    assert "len(...) has a value only for a string, a list or an object" in msg
    assert typed(FS + 'deny tool "read_multiple_files" if len(args.paths) > 10\n') == []


# --- every / some, not, value functions ------------------------------------------------------


def test_some_over_an_argument_that_is_not_a_list():
    (msg,) = typed(FS + 'deny tool "read_file" if some p in args.path { p starts_with "/etc/" }\n')
    assert msg.startswith("`some p in args.path { … }` " + MINE + " of `read_file` says `args.path` is a string")
    assert "silent fail-open" in msg
    assert msg.endswith(
        'to test the value itself as well, write `some p in args.path { p starts_with "/etc/" } or args.path starts_with "/etc/"`'
    )


def test_every_over_an_argument_that_is_not_a_list_fails_closed_and_says_so():
    (msg,) = typed(FS + 'allow tool "read_file" if every p in args.path { p starts_with "/w/" }\n')
    assert "`every` holds only over a list" in msg
    assert "this `allow … if` condition never holds: the rule denies every such call it selects" in msg


def test_a_condition_on_the_items_of_a_list_is_checked_against_the_items_type():
    (msg,) = typed(FS + 'deny tool "edit_file" if some e in args.edits { e.newText > 5 }\n')
    assert "says `e.newText` (`e` an item of `args.edits`) is a string" in msg
    assert "so for such a call this `deny … if` never fires" in msg  # no item can satisfy the block: `some` is false
    assert msg.endswith("to compare its length as well, write `e.newText > 5 or len(e.newText) > 5`")
    assert typed(FS + 'deny tool "read_multiple_files" if some p in args.paths { normpath(p) starts_with "/etc/" }\n') == []


def test_under_not_the_comparison_makes_the_not_always_true():
    (msg,) = typed(K8S + 'deny tool "exec_in_pod" if not (args.command starts_with "ls")\n')
    assert "the `not` around it always holds and this `deny … if` denies every such call it selects" in msg
    assert msg.endswith('to test every item, write `every c in args.command { c starts_with "ls" }`')
    (msg,) = typed(K8S + 'allow tool "exec_in_pod" if not (args.command contains 5)\n')
    assert "the `not` around it always holds and this `allow … if` denies less than written (fail open)" in msg


def test_a_limit_if_and_a_deny_unless():
    (msg,) = typed(FS + 'limit tool "read_file" to 5 per minute if args.path contains 7\n')
    assert "this `limit … if` never applies" in msg
    (msg,) = typed(FS + 'deny tool "read_file" unless lower(args.head) == "1"\n')
    assert "lower(...) gives a value only for a string" in msg
    assert "this `deny … unless` condition never holds: the rule denies every such call it selects" in msg


def test_a_def_used_by_a_rule_is_checked_with_the_rules_tools():
    text = FS + 'def etc(p) { p starts_with "/etc/" }\ndeny tool "read_multiple_files" if etc(args.paths)\n'
    (d,) = [d for d in diagnostics(text) if MINE in d.message]
    assert d.line == 3  # at the comparison, in the def's block
    assert "`args.paths` is a list" in d.message


# --- no warning where the schema permits the type, says nothing, or is missing ---------------


def test_comparisons_the_type_permits_are_quiet():
    text = (
        FS
        + 'deny tool "read_file" if normpath(args.path) starts_with "/etc/"\n'
        + 'deny tool "read_file" if args.head > 100 or args.path matches "\\\\.env$"\n'
        + 'deny tool "edit_file" if args.dryRun == false\n'
        + 'deny tool "edit_file" unless every e in args.edits { len(e.newText) < 100000 }\n'
        + 'deny tool "read_file" if args.path exists and args.nothing missing\n'
    )
    assert typed(text) == []


def test_a_union_type_that_includes_the_operators_type_is_quiet(monkeypatch: pytest.MonkeyPatch):
    with_schemas(
        monkeypatch,
        {
            "read_file": {"type": "object", "properties": {"path": {"type": ["array", "string", "null"]}}},
            "write_file": {"type": "object", "properties": {"path": {"anyOf": [{"type": "array"}, {"type": "string"}]}}},
        },
    )
    assert typed(FS + 'deny tools ["read_file", "write_file"] if args.path starts_with "/etc/"\n') == []


def test_an_untyped_or_missing_schema_is_quiet(monkeypatch: pytest.MonkeyPatch):
    with_schemas(
        monkeypatch,
        {
            "read_file": {"type": "object", "properties": {"path": {}}},
            "write_file": {"type": "object", "properties": {"path": {"anyOf": [{"type": "array"}, {}]}}},
            "create_directory": {"type": "object", "properties": {"path": {"$ref": "https://example.com/s.json"}}},
            "list_directory": {},
        },
    )
    for tool in ("read_file", "write_file", "create_directory", "list_directory"):
        assert typed(FS + f'deny tool "{tool}" if args.path starts_with "/etc/"\n') == [], tool
    # a tool of the author's own `server` block has no schema: nothing is said
    own = 'server "mine" { tool "run" execute }\ndefault allow\ndeny tool "run" if args.cmd starts_with "/etc/"\n'
    assert typed(own) == []
    # a rule on two tools, one without a schema
    text = 'server "mine" { tool "run" execute }\n' + K8S + 'deny tools ["run", "exec_in_pod"] if args.command starts_with "rm"\n'
    assert typed(text) == []


def test_several_tools_warn_only_when_none_permits_the_type():
    text = FS + 'deny tools ["read_file", "read_multiple_files"] if args.paths starts_with "/etc/"\n'
    (msg,) = typed(text)  # read_file has no `paths`; read_multiple_files's is a list
    assert "the input schemas of the 2 tools this rule selects say `args.paths` is a list" in msg
    assert typed(FS + 'deny tools ["read_file", "write_file"] if args.path starts_with "/etc/"\n') == []


# --- schema shapes: $ref, allOf, oneOf, enum, const ---------------------------------------


def test_refs_allof_oneof_and_enums_are_followed(monkeypatch: pytest.MonkeyPatch):
    with_schemas(
        monkeypatch,
        {
            "read_file": {
                "type": "object",
                "$defs": {"argv": {"type": "array", "items": {"type": "string"}}},
                "properties": {"path": {"$ref": "#/$defs/argv"}},
            },
            "write_file": {
                "type": "object",
                "allOf": [
                    {"properties": {"path": {"type": ["array", "string"]}}},
                    {"properties": {"path": {"type": "array"}}},
                ],
            },
            "move_file": {
                "type": "object",
                "properties": {
                    "source": {"oneOf": [{"type": "array"}, {"type": "object", "properties": {"p": {"type": "string"}}}]}
                },
            },
            "create_directory": {"type": "object", "properties": {"path": {"enum": [1, 2, 3]}}},
            "list_directory": {"type": "object", "properties": {"path": {"type": "string", "const": "x"}}},
        },
    )
    (msg,) = typed(FS + 'deny tool "read_file" if args.path starts_with "/etc/"\n')
    assert "`args.path` is a list" in msg and msg.endswith(' or some p in args.path { p starts_with "/etc/" }`')
    (msg,) = typed(FS + 'deny tool "write_file" if args.path ends_with ".env"\n')
    assert "`args.path` is a list" in msg
    (msg,) = typed(FS + 'deny tool "move_file" if args.source matches "^/etc"\n')
    assert "`args.source` is a list or an object" in msg
    assert typed(FS + 'deny tool "move_file" if args.source.p matches "^/etc"\n') == []
    (msg,) = typed(FS + 'deny tool "create_directory" if args.path == "1"\n')
    assert "`args.path` is a number" in msg and msg.endswith('write `args.path in [1, "1"]`')
    assert typed(FS + 'deny tool "list_directory" if args.path == "x"\n') == []


def test_types_at_reads_nested_unions_and_closed_objects():
    schema = {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"b": {"type": "integer"}}}]},
            "c": {"type": "array", "items": {"$ref": "#/properties/a"}},
            "d": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
    }
    assert types_at(schema, ("a",)) == {"null", "object"}
    assert types_at(schema, ("a", "b")) == {"number"}
    assert types_at(schema, ("c", None, "b")) == {"number"}
    assert types_at(schema, ("d", "anything")) == {"boolean"}
    assert types_at(schema, ("zzz",)) == frozenset()  # not an argument: the name check's to say
    assert types_at({"$ref": "#/$defs/x", "$defs": {"x": {"$ref": "#/$defs/x"}}}, ()) is None  # a cycle


def test_a_spend_cap_on_an_amount_that_is_not_a_number(monkeypatch: pytest.MonkeyPatch):
    with_schemas(monkeypatch, {"write_file": {"type": "object", "properties": {"cents": {"type": "string"}}}})
    (msg,) = typed(FS + 'limit tool "write_file" to 500 of args.cents per day\n')
    assert msg.startswith("`args.cents`: the input schema of `write_file` says `args.cents` is a string")
    assert "so this spend cap denies every call it applies to" in msg
    with_schemas(monkeypatch, {"write_file": {"type": "object", "properties": {"cents": {"type": "integer"}}}})
    assert typed(FS + 'limit tool "write_file" to 500 of args.cents per day\n') == []


# --- one warning per comparison -------------------------------------------------------------


def test_a_literal_the_type_of_the_left_side_rules_out_is_said_once():
    msgs = [d.message for d in diagnostics(FS + 'deny tool "read_file" if count(args.path) > "5"\n')]
    assert len([m for m in msgs if "can never hold" in m]) == 1  # dsl/checks.py's, not this check's
    assert not [m for m in msgs if MINE in m]


def test_rules_out_by_schema_tells_the_general_checks_this_one_speaks():
    prog, _ = build(texts={"p.plr": K8S + 'deny tool "exec_in_pod" if lower(args.command) contains "rm"\n'})
    leaf = prog.rules[-1].rule.condition
    assert rules_out_by_schema(prog, ("exec_in_pod",), leaf)
    prog, _ = build(texts={"p.plr": FS + 'deny tool "read_file" if lower(args.path) contains "rm"\n'})
    assert not rules_out_by_schema(prog, ("read_file",), prog.rules[-1].rule.condition)


# --- against a live server's own schemas (what a proxy could check at start) -----------------


def test_live_schemas_judge_a_policy_whose_catalogue_has_none():
    text = (
        'server "mine" { tool "run" execute }\ndefault allow\n'
        'deny tool "run" if args.cmd starts_with "/etc/"\n'
        'deny tool "run" if args.cwdd == "/"\n'
    )
    prog, diags = build(texts={"p.plr": text})
    assert not [d for d in diags if "never holds for a call" in d.message or "has no argument" in d.message]
    kept = list(prog.diagnostics)
    listed = {"run": {"type": "object", "properties": {"cmd": {"type": "array", "items": {"type": "string"}}, "cwd": {"type": "string"}}}}
    found = arg_check.live_schema_warnings(prog, listed)
    assert [(d.line, d.col) for d in found] == [(3, 20), (4, 20)]
    assert "`args.cmd` is a list" in found[0].message and "silent fail-open" in found[0].message
    assert "`run` has no argument `cwdd`; did you mean `cwd`?" in found[1].message
    assert prog.diagnostics == kept  # the program is left as it was
    assert arg_check.live_schema_warnings(prog, {"run": None}) == []  # listed without a schema
    assert arg_check.live_schema_warnings(prog, {}) == []  # not listed


def test_a_schema_whose_references_branch_out_for_ever_is_given_up_quickly():
    defs = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(60)}
    defs["d60"] = {"type": "array"}
    cyclic = {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}
    assert types_at({"$defs": defs, "$ref": "#/$defs/d0"}, ()) is None  # 2^60 paths: not followed
    assert types_at(cyclic, ()) is None
    assert types_at(cyclic, ("x", None, "y")) is None
    weird = {"type": 5, "properties": ["x"], "items": [1], "anyOf": [1, None], "allOf": "no", "enum": [{}], "$defs": 3}
    assert types_at(weird, ()) == {"object"} and types_at(weird, ("x",)) is None and types_at(weird, (None,)) is None


# --- the proxy does not validate arguments: a call may not follow the schema -----------------


def decide(text: str, tool: str, args: dict[str, Any]) -> str:
    return Engine(compile_source(text)).decide(tool, args).effect


def test_the_warning_says_never_for_a_call_that_follows_the_schema_not_never_at_all():
    (msg,) = typed(K8S + 'deny tool "kubectl_scale" if args.replicas == "0"\n')
    assert msg.startswith("`args.replicas == \"0\"` never holds for a call that follows the tool's input schema: ")
    assert "can never hold" not in msg
    assert "so for such a call this `deny … if` never fires" in msg


def test_equality_with_null_is_not_warned_about_and_the_rule_fires_on_an_explicit_null():
    text = K8S + 'deny tool "kubectl_delete" if args.labelSelector == null\n'
    assert [d.message for d in diagnostics(text) if "labelSelector" in d.message] == []
    assert decide(text, "kubectl_delete", {"labelSelector": None}) == "deny"  # what an LLM client sends
    assert typed(K8S + 'deny tool "kubectl_delete" if args.labelSelector in [null, 5]\n') == []
    # a list with no null and no string is still warned about
    assert len(typed(K8S + 'deny tool "kubectl_delete" if args.labelSelector in [5, 6]\n')) == 1


@pytest.mark.parametrize(
    ("prefix", "rule", "fix", "tool", "calls"),
    [
        (K8S, 'deny tool "kubectl_scale" if args.replicas == "0"', 'args.replicas in [0, "0"]', "kubectl_scale",
         [{"name": "n", "replicas": 0}, {"name": "n", "replicas": "0"}]),
        (FS, 'deny tool "edit_file" if args.dryRun == "false"', 'args.dryRun in [false, "false"]', "edit_file",
         [{"path": "/p", "dryRun": False}, {"path": "/p", "dryRun": "false"}]),
        (K8S, 'deny tool "exec_in_pod" if args.command starts_with "rm"',
         'args.command starts_with "rm" or some c in args.command { c starts_with "rm" }', "exec_in_pod",
         [{"name": "p", "command": ["rm", "-rf", "/"]}, {"name": "p", "command": "rm -rf /"}]),
        (FS, 'deny tool "read_file" if some p in args.path { p starts_with "/etc/" }',
         'some p in args.path { p starts_with "/etc/" } or args.path starts_with "/etc/"', "read_file",
         [{"path": "/etc/passwd"}, {"path": ["/etc/passwd"]}]),
        (FS, 'deny tool "read_file" if args.head > "5"', 'args.head > "5" or args.head > 5', "read_file",
         [{"path": "/p", "head": 7}, {"path": "/p", "head": "7"}]),
        (K8S, 'deny tool "kubectl_scale" if args.replicas != "0"', 'not (args.replicas in [0, "0"])', "kubectl_scale",
         [{"name": "n", "replicas": 3}, {"name": "n", "replicas": "3"}]),
    ],
)
def test_in_a_deny_the_fix_keeps_the_form_the_rule_catches_today_and_adds_the_schemas(
    prefix: str, rule: str, fix: str, tool: str, calls: list[dict[str, Any]]
):
    (msg,) = typed(prefix + rule + "\n")
    assert msg.endswith(f"write `{fix}`"), msg
    fixed = prefix + rule.split(" if ", 1)[0] + f" if {fix}\n"
    assert typed(fixed) == []
    for call in calls:  # the schema's form and the form the rule caught before: both denied
        assert decide(fixed, tool, call) == "deny", call
    assert decide(prefix + rule + "\n", tool, calls[1]) == "deny"  # the form the rule caught before: kept


def test_a_fix_with_or_inside_an_and_is_parenthesised():
    (msg,) = typed(K8S + 'deny tool "exec_in_pod" if args.name == "x" and args.command starts_with "rm"\n')
    assert msg.endswith('write `(args.command starts_with "rm" or some c in args.command { c starts_with "rm" })`')


def test_in_an_allow_the_narrower_fix_is_given_alone_it_fails_closed():
    (msg,) = typed(K8S + 'allow tool "kubectl_scale" if args.replicas == "0"\n')
    assert msg.endswith("write `args.replicas == 0`")
    (msg,) = typed(K8S + 'allow tool "exec_in_pod" if args.command starts_with "ls"\n')
    assert msg.endswith('write `every c in args.command { c starts_with "ls" }`')


def test_a_number_compared_with_a_string_is_called_a_length_only_when_it_is_small(monkeypatch: pytest.MonkeyPatch):
    with_schemas(
        monkeypatch,
        {"read_file": {"type": "object", "properties": {k: {"type": "string"} for k in ("timeout", "waitSeconds", "note")}}},
    )
    (msg,) = typed(FS + 'deny tool "read_file" if args.timeout > 600\n')
    assert "says `args.timeout` is a string, and a string is never ordered against a number" in msg
    assert "len(" not in msg and msg.endswith("(a silent fail-open)")
    (msg,) = typed(FS + 'deny tool "read_file" if args.waitSeconds > 5\n')  # a quantity's name
    assert "len(" not in msg
    (msg,) = typed(FS + 'deny tool "read_file" if args.note > 600\n')  # too long to be what was meant
    assert "len(" not in msg
    (msg,) = typed(FS + 'allow tool "read_file" if args.note < 10\n')
    assert msg.endswith("to compare its length, write `len(args.note) < 10`")


# --- the schemas in scope are worked out once per program ------------------------------------


def test_the_schemas_in_scope_are_read_once_per_program_whatever_the_number_of_rules(monkeypatch: pytest.MonkeyPatch):
    """Not timed: the catalogue scan is counted. It used to run at every `args.…` comparison
    (dsl/checks.py asks rules_out_by_schema at each), quadratic in the rules."""
    real = arg_check.tool_schemas
    calls: list[str] = []

    def spy(stem: str) -> Any:
        calls.append(stem)
        return real(stem)

    monkeypatch.setattr(arg_check, "tool_schemas", spy)
    counts = []
    for n in (1, 40):
        calls.clear()
        rules = "".join(
            f'deny tool "kubectl_scale" if lower(args.name) == "x{i}" and args.namespace != "n{i}"\n' for i in range(n)
        )
        diagnostics(K8S + rules)
        counts.append(len(calls))
    assert counts[0] == counts[1] == 1, counts  # one stdlib server catalogue: one scan


def test_the_cache_follows_the_program_and_its_modules():
    prog, _ = build(texts={"p.plr": K8S + 'deny tool "kubectl_scale" if args.replicas == "0"\n'})
    first = arg_check.schemas_in_scope(prog)
    assert arg_check.schemas_in_scope(prog) is first
    assert "kubectl_scale" in first
    prog.modules.append(prog.modules[0])  # one more module loaded: worked out again
    assert arg_check.schemas_in_scope(prog) is not first
    other, _ = build(texts={"p.plr": FS})
    assert "kubectl_scale" not in arg_check.schemas_in_scope(other)


def test_only_the_same_test_in_another_form_quiets_a_comparison_in_an_or():
    assert typed(K8S + 'deny tool "kubectl_scale" if args.replicas == "0" or args.replicas == 0\n') == []
    (msg,) = typed(K8S + 'deny tool "exec_in_pod" if args.command starts_with "rm" or args.command contains "sudo"\n')
    assert '`args.command starts_with "rm"`' in msg
    (msg,) = typed(K8S + 'deny tool "kubectl_scale" if args.replicas == "0" or args.replicas == 1\n')
    assert '`args.replicas == "0"`' in msg
