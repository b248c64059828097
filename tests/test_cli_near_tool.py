"""A typo'd --tool is decided as an unknown tool (default deny), and `plr query` then proves
something of the wrong tool: both now say which tool the policy names instead (a new user's
walkthrough). And --args refuses a key written twice, as a test's call does."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dsl.cli import cli
from tests.conftest import ROOT

CODEX = str(ROOT / "examples" / "codex_worker.plr")


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


def test_eval_of_a_typod_tool_says_which_tool_the_policy_names() -> None:
    r = _run("eval", CODEX, "--tool", "cancle-task", "--no-cache")
    assert r.exit_code == 0 and "deny (default)" in r.stdout
    assert "did you mean `cancel-task`?" in r.stderr
    r = _run("eval", CODEX, "--tool", "cancel-task", "--no-cache")
    assert "did you mean" not in r.stderr
    r = _run("eval", CODEX, "--tool", "zzzz", "--no-cache")
    assert "did you mean" not in r.stderr  # nothing close: nothing guessed


def test_query_of_a_typod_tool_says_which_tool_the_policy_names() -> None:
    import pytest

    pytest.importorskip("z3")
    r = _run("query", CODEX, "--can", "allow", "--tool", "cancle-task")
    assert r.exit_code == 1 and "no: no call of `cancle-task`" in r.stdout
    assert "did you mean `cancel-task`?" in r.stderr


def test_eval_args_refuse_a_key_written_twice() -> None:
    r = _run("eval", CODEX, "--tool", "get-task", "--args", '{"task_id": "t1", "task_id": "t2"}', "--no-cache")
    assert r.exit_code == 2 and 'the key "task_id" is written twice' in r.output
    nested = json.dumps({"a": [{"b": 1}]}).replace('{"b": 1}', '{"b": 1, "b": 2}')
    r = _run("eval", CODEX, "--tool", "get-task", "--args", nested, "--no-cache")
    assert r.exit_code == 2 and 'the key "b" is written twice' in r.output
    assert _run("eval", CODEX, "--tool", "get-task", "--args", '{"task_id": "t1"}', "--no-cache").exit_code == 0


def test_one_error_is_counted_in_the_singular(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.plr"
    bad.write_text('default deny\nallow tool "a"\ntest "t" {\n    call "a" -> allow\n}\n', encoding="utf-8")
    (tmp_path / "worse.plr").write_text("default maybe\n", encoding="utf-8")
    r = _run("test", str(tmp_path))
    assert "1 passed, 0 failed, 1 error in" in r.stdout, r.stdout
