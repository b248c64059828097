"""The compiler's contract: the spec example byte for byte, pinned JSON of every example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

import dsl
from dsl.compiler import compile_source
from dsl.policy import load_policy

from .conftest import EXAMPLES, SPEC_JSON, SPEC_PLR, example_files


@pytest.fixture
def json_snapshot(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


def test_spec_example_compiles_byte_for_byte():
    got = dsl.compile_files([str(SPEC_PLR)], source=False).to_json()
    assert got == SPEC_JSON.read_text()


def test_spec_example_with_source_names_rules_relative_to_the_file():
    p = dsl.compile_files([str(SPEC_PLR)])
    assert p.tools["cancel-task"].rule == "codex_worker.plr:20"
    assert p.tools["cancel-task"].limits[0].rule == "codex_worker.plr:26"
    assert p.tools["spawn-task"].require[0].rule == "codex_worker.plr:16"


@pytest.mark.parametrize("path", example_files(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_json_is_pinned(path: Path, json_snapshot):
    policy = dsl.compile_files([str(path)])
    assert json.loads(policy.to_json()) == json_snapshot


@pytest.mark.parametrize("path", example_files(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_load_dump_round_trip(path: Path):
    policy = dsl.compile_files([str(path)])
    assert load_policy(policy.to_json()) == policy
    assert load_policy(policy.to_json()).to_json() == policy.to_json()


def test_output_is_deterministic():
    src = SPEC_PLR.read_text()
    assert len({compile_source(src, "p.plr").to_json() for _ in range(5)}) == 1


def compiled(src: str) -> dict:
    return json.loads(compile_source(src, "p.plr", source=False).to_json())


def test_default_deny_omits_uncallable_tools_but_keeps_denied_ones_reason():
    out = compiled(
        'default deny\ndeny tool "a" if args.x exists\ndeny tool "b" reason "never"\nallow tool "c"\n'
    )
    assert out["tools"] == {"b": {"action": "deny", "reason": "never"}, "c": {}}


def test_default_allow_keeps_every_mentioned_tool():
    out = compiled('default allow\ndeny tool "a" if args.x exists\nlimit tool "b" to 3 per 90s per identity\n')
    assert out["tools"] == {
        "a": {"deny_if": [{"op": "exists", "path": "args.x"}]},
        "b": {"limits": [{"max": 3, "per": "identity", "window": 90}]},
    }


def test_several_allow_ifs_are_ored_into_one_requirement():
    out = compiled('default deny\nallow tool "a" if identity == "x"\nallow tool "a" if args.n < 3\n')
    assert out["tools"]["a"]["require"] == [
        {"any": [{"op": "eq", "path": "identity", "value": "x"}, {"op": "lt", "path": "args.n", "value": 3}]}
    ]


def test_deny_unless_other_than_approved_is_a_requirement_with_its_reason():
    out = compiled('default deny\ndeny tool "refund" unless args.reason exists reason "say why"\n')
    assert out["tools"]["refund"] == {"require": [{"op": "exists", "path": "args.reason", "reason": "say why"}]}


def test_blocks_and_boolean_operators():
    out = compiled(
        'default deny\nallow tool "a"\ndeny tool "a" if {\n  args.p matches "(?i)rm\\\\s+-rf"\n'
        '  identity not in ["ops-bot"]\n}\ndeny tool "a" if not (args.x == 1 or args["weird key"] starts_with "y")\n'
    )
    deny_if = out["tools"]["a"]["deny_if"]
    assert deny_if[0] == {
        "all": [
            {"op": "regex", "path": "args.p", "value": "(?i)rm\\s+-rf"},
            {"op": "not_in", "path": "identity", "value": ["ops-bot"]},
        ]
    }
    assert deny_if[1] == {
        "not": {
            "any": [
                {"op": "eq", "path": "args.x", "value": 1},
                {"op": "starts_with", "path": 'args["weird key"]', "value": "y"},
            ]
        }
    }


def test_hide_all_tools_and_all_tools_limits():
    out = compiled('default allow\nhide all tools\nlimit all tools to 300 per hour per identity\n')
    assert out["hide"] == ["*"]
    assert out["all_tools"] == {"limits": [{"max": 300, "per": "identity", "window": 3600}]}


def test_keywords_are_not_reserved_after_a_dot():
    out = compiled('default deny\nallow tool "a" if args.limit > 1 and args.default == "x" and args.tool exists\n')
    paths = [c["path"] for c in out["tools"]["a"]["require"][0]["all"]]
    assert paths == ["args.limit", "args.default", "args.tool"]


def test_globs_and_classes_expand_against_the_catalogue():
    out = compiled(
        'server "s" {\n tool "fs-read" read\n tool "fs-write" write\n tool "db-drop" destructive\n}\n'
        'default deny\nallow tools "fs-*"\ndeny destructive tools unless approved\n'
    )
    assert sorted(out["tools"]) == ["db-drop", "fs-read", "fs-write"]
    assert out["tools"]["db-drop"] == {"action": "require_approval"}


def test_imports_load_each_file_once_and_name_rules_relative_to_the_root(tmp_path: Path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "shared.plr").write_text('allow tool "a"\n')
    (tmp_path / "lib" / "other.plr").write_text('import "./shared.plr"\nallow tool "b"\n')
    (tmp_path / "main.plr").write_text('import "./lib/shared.plr"\nimport "./lib/other.plr"\ndefault deny\n')
    p = dsl.compile_files([str(tmp_path / "main.plr")])
    assert p.tools["a"].rule == "lib/shared.plr:1"
    assert p.tools["b"].rule == "lib/other.plr:2"


def test_stdlib_import_is_found_through_package_resources():
    p = compile_source('import "stdlib/mcp-codex-worker"\ndefault deny\ndeny destructive tools unless approved\n')
    assert "cancel-task" in p.tools and p.tools["cancel-task"].action == "require_approval"
    assert p.tools["cancel-task"].rule == "<input>:3"


def test_no_source_strips_every_rule_field():
    text = dsl.compile_files([str(SPEC_PLR)], source=False).to_json()
    assert '"rule"' not in text


def test_public_api_matches_the_spec():
    policy = dsl.compile_files([str(SPEC_PLR)])
    engine = dsl.Engine(policy)
    d = engine.decide("cancel-task", {"task_id": "t1"}, identity="ops", session="s1", approved=False)
    assert (d.effect, d.code) == ("approval_required", "require")
    assert dsl.load_policy(policy.to_json()) == policy


def test_examples_tests_pass_and_match_their_snapshots():
    from .conftest import run_plr

    proc = run_plr("test", "--snapshot", str(EXAMPLES))
    assert proc.returncode == 0, proc.stdout_text + proc.stderr_text
    assert " 0 failed" in proc.stdout_text
    assert len(list((EXAMPLES / "__snapshots__").glob("*.json"))) >= 6


def _models(value):
    """Every pydantic model inside a compiled policy, the policy included."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        yield value
        for name in type(value).model_fields:
            yield from _models(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _models(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _models(item)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_fast_construction_is_pydantics_model_construct(path: Path, monkeypatch: pytest.MonkeyPatch):
    """The compiler builds policy models with ``_construct`` (#20, speed): the same models, the
    same fields set and the same JSON as ``model_construct``, and every one valid."""
    import dsl.compiler as compiler

    fast = dsl.compile_files([str(path)])
    monkeypatch.setattr(compiler, "_construct", lambda cls, **values: cls.model_construct(**values))
    slow = dsl.compile_files([str(path)])
    assert fast.to_json() == slow.to_json()
    pairs = list(zip(_models(fast), _models(slow), strict=True))
    for a, b in pairs:
        assert type(a) is type(b) and a == b and a.model_fields_set == b.model_fields_set
        assert type(a).model_validate(a.model_dump(by_alias=True, exclude_unset=True)) == a


def test_fast_construction_refuses_unknown_or_missing_fields():
    from dsl.compiler import _construct
    from dsl.policy import Leaf, Tool

    with pytest.raises(TypeError, match="Leaf"):
        _construct(Leaf, path="args.x")  # `op` is required
    with pytest.raises(TypeError, match="Tool"):
        _construct(Tool, action="allow", colour="red")
    a, b = _construct(Tool, action="allow"), _construct(Tool, action="allow")
    assert a.require == [] and a.require is not b.require  # a default list is each model's own


def test_spans_are_immutable_values():
    import copy
    import pickle

    from dsl import ir

    s = ir.Span(file="p.plr", line=3, col=5, end_line=3, end_col=9)
    assert s == ir.Span("p.plr", 3, 5, 3, 9) and hash(s) == hash(ir.Span("p.plr", 3, 5, 3, 9))
    assert s != ir.Span("p.plr", 3, 5) and s.short() == "p.plr:3"
    assert pickle.loads(pickle.dumps(s)) == s and copy.deepcopy(s) == s
    with pytest.raises(TypeError):
        s.line = 4  # type: ignore[misc]
    rule = compile_source('deny tool "x"\n').to_dict()  # an IR node holding a Span still compares and hashes
    from dsl.lower import lower_source

    m1, m2 = lower_source('deny tool "x"\n', "p.plr"), lower_source('deny tool "x"\n', "p.plr")
    assert m1 == m2 and hash(m1.statements) == hash(m2.statements) and rule["tools"]["x"]["action"] == "deny"


@pytest.mark.parametrize(
    "text",
    ["", "x = 1e-5", "1e-300", "1E-300", "e-", "e-12", "name-e-123", "0." + "0" * 199 + "1", "0." + "0" * 200 + "1",
     "fine-grained 2e-3 and then E-999", "e-\ne-99x e-1234"],
)  # fmt: skip
def test_underflow_prefilter_agrees_with_its_regex(text: str):
    from dsl.parser import _MAY_UNDERFLOW, _may_underflow

    assert _may_underflow(text) == (_MAY_UNDERFLOW.search(text) is not None)


def test_a_number_that_underflows_is_still_an_error():
    with pytest.raises(dsl.PlrError, match="too small to represent"):
        compile_source('deny tool "x" if args.n > 1e-400\n')
