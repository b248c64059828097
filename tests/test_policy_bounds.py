"""The JSON loader refuses what no plr output would hold: limits beyond what JSON carries
exactly, lone surrogates; and it never takes a document's text for a file name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsl.engine import Engine
from dsl.errors import PlrError
from dsl.policy import load_policy
from dsl.validate import check_data

BASE = '{"version": "1", "default": "deny", '


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        (BASE + '"tools": {"a": {"reason": "x\\ud800"}}}', "tools.a.reason: a lone surrogate"),
        (BASE + '"hide": ["\\udc00"]}', "hide[0]: a lone surrogate"),
        (BASE + '"tools": {"\\ud83d": {}}}', "tools: a lone surrogate"),
        (BASE + '"tools": {"a": {"limits": [{"max": 9007199254740992, "window": 60}]}}}', "limits[0].max"),
        (BASE + '"tools": {"a": {"limits": [{"max": 1, "window": 1e12}]}}}', "limits[0].window"),
    ],
)
def test_what_no_output_could_hold_is_a_located_error(doc: str, where: str) -> None:
    with pytest.raises(PlrError) as e:
        load_policy(doc, name="p.json")
    assert where in str(e.value) and "p.json" in str(e.value)


def test_a_real_emoji_is_fine() -> None:
    assert load_policy(BASE + '"tools": {"a": {"reason": "ok \\ud83d\\ude00"}}}', name="p.json").tools["a"].reason == "ok 😀"


def test_the_engine_refuses_the_same_limits_in_a_prepared_dump() -> None:
    ok = {"version": "1", "default": "deny", "tools": {"a": {"limits": [{"max": 2**53 - 1, "window": 3153600000, "per": "session"}]}}}
    check_data(ok)
    Engine.from_data(ok)
    for lim in ({"max": 2**53, "window": 60, "per": "session"}, {"max": 1, "window": 3153600001, "per": "session"}):
        with pytest.raises(ValueError):
            check_data({"version": "1", "default": "deny", "tools": {"a": {"limits": [lim]}}})


@pytest.mark.parametrize(
    ("leaf", "where"),
    [
        ({"path": "args.a", "op": "exists", "fn": "len"}, "op `exists` takes no fn"),
        ({"path": "args.a", "op": "in", "value": "abc"}, "op `in` needs a list value"),
        ({"path": "args.a", "op": "starts_with", "value": 1}, "op `starts_with` needs a string value"),
        ({"path": "args.a", "op": "eq", "value": float("nan")}, "value: value must be a finite number"),
        ({"path": "args.a", "op": "eq", "value": {"k": 1}}, "value: value must be a string, number"),
        ({"path": "args.a", "op": "eq", "value": "x\ud800"}, "value: a lone surrogate"),
        ({"path": "nope.a", "op": "exists"}, "deny_if[0].path: unknown path root"),
    ],
)
def test_the_engine_refuses_what_the_loader_refuses(leaf: dict, where: str) -> None:
    """One set of rules (dsl.validate) behind both doors: a dump the loader would refuse is not
    prepared either, whichever door it comes through."""
    data = {"version": "1", "default": "deny", "tools": {"a": {"deny_if": [leaf]}}}
    with pytest.raises(PlrError, match=r"tools\.a\.deny_if\[0\]"):
        load_policy(data)
    with pytest.raises(PlrError) as e:
        Engine.from_data(data)
    assert where in str(e.value)


def test_the_canonical_check_knows_the_keys_and_words_of_the_models() -> None:
    """check_data cannot import the pydantic models (the cache's path stays pydantic-free), so
    it keeps its own tables of the contract: they must say what the models say."""
    from typing import get_args

    from dsl import validate
    from dsl.policy import AllTools, Leaf, Limit, Policy, Tool
    from dsl.vocab import OPS

    assert set(Policy.model_fields) == validate.TOP_KEYS
    assert set(Tool.model_fields) == validate.TOOL_KEYS
    assert {f.alias or n for n, f in Limit.model_fields.items()} == validate.LIMIT_KEYS  # `if_` is `if`
    assert set(Leaf.model_fields) == validate.LEAF_KEYS
    assert set(AllTools.model_fields) == validate.ALL_TOOLS_KEYS
    assert get_args(Tool.model_fields["action"].annotation) == validate.ACTIONS
    assert get_args(Limit.model_fields["per"].annotation) == validate.SCOPES
    assert get_args(get_args(Leaf.model_fields["fn"].annotation)[0]) == validate.FNS
    assert get_args(Leaf.model_fields["op"].annotation) == OPS


def test_text_read_from_a_file_is_never_followed_as_a_path(tmp_path: Path, monkeypatch) -> None:
    """`plr fmt --json ptr.json` where ptr.json holds the text `cw.json`: that is a (bad) document,
    not a pointer to another file (the review found ptr.json overwritten with cw.json's policy)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cw.json").write_text('{"version": "1", "default": "deny"}')
    with pytest.raises(PlrError, match="invalid JSON"):
        load_policy("cw.json", name="ptr.json")
    with pytest.raises(PlrError, match="invalid JSON"):
        load_policy(b"cw.json")
    assert load_policy("cw.json").default == "deny"  # a path, as the API has always taken it
    assert os.path.exists("cw.json")
