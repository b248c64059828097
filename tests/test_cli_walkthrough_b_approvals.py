"""`plr approvals` where there is no queue: an error naming where it looked (exit 2), never an
empty listing, so a script tells "no queue here" (a wrong path, or no proxy ever asked there)
from "a queue with nothing pending" (exit 0); and no subcommand creates a queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl.state.sqlite import SqliteApprovalQueue
from tests.proxy.conftest import base_env, run_proxy_cli

SUBCOMMANDS = [("list",), ("list", "--all"), ("list", "--format", "json"), ("show", "feedbeef"),
               ("grant", "feedbeef"), ("deny", "feedbeef", "--note", "no")]  # fmt: skip


def no_queue(out, where: Path, how: str) -> None:
    """``out`` is the refusal: exit 2, nothing on stdout, stderr naming the path and the options."""
    assert out.returncode == 2, (out.stdout_text, out.stderr_text)
    assert out.stdout_text == ""  # not "no pending approval requests", not "[]"
    err = out.stderr_text
    assert f"plr approvals: no approval queue at {where} ({how})" in err, err
    assert "--db FILE" in err and "PLR_APPROVALS_DB" in err and "--audit FILE" in err and "--state" in err
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("args", SUBCOMMANDS)
def test_the_default_place_without_a_queue_is_an_error_not_an_empty_queue(tmp_path: Path, args) -> None:
    """The bug: before any proxy asked for an approval, `plr approvals list` said "no pending
    approval requests" and exited 0, as an empty queue does."""
    env = base_env(XDG_STATE_HOME=str(tmp_path / "state"))
    out = run_proxy_cli("approvals", *args, env=env)
    no_queue(out, tmp_path / "state" / "plr" / "approvals.sqlite", "the default place")
    assert not (tmp_path / "state").exists()  # nothing created, not even the folder


def test_each_way_of_naming_the_queue_is_said_and_nothing_is_created(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    audit = logs / "audit.jsonl"
    audit.touch()  # a proxy runs with this log, and has not asked for an approval yet
    env = base_env(XDG_STATE_HOME=str(tmp_path / "state"))
    for args in SUBCOMMANDS:
        out = run_proxy_cli("approvals", "--audit", str(audit), *args, env=env)
        no_queue(out, logs / "approvals.sqlite", "next to the --audit log")
        out = run_proxy_cli("approvals", *args, "--db", str(logs / "q.sqlite"), env=env)  # (after the subcommand)
        no_queue(out, logs / "q.sqlite", "named by --db")
    named = base_env(XDG_STATE_HOME=str(tmp_path / "state"), PLR_APPROVALS_DB=str(logs / "env.sqlite"))
    no_queue(run_proxy_cli("approvals", "list", env=named), logs / "env.sqlite", "named by PLR_APPROVALS_DB")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["audit.jsonl", "logs"]


def test_a_file_the_proxy_has_just_made_is_no_queue_yet_and_is_left_alone(tmp_path: Path) -> None:
    """The proxy creates the file, then writes its schema: an empty file is not a queue yet, and
    a grant or deny must not turn it into one."""
    db = tmp_path / "approvals.sqlite"
    db.touch()
    for args in SUBCOMMANDS:
        no_queue(run_proxy_cli("approvals", "--db", str(db), *args), db, "named by --db")
    assert db.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["approvals.sqlite"]


def test_a_queue_with_nothing_pending_is_exit_0_so_a_script_can_tell_them_apart(tmp_path: Path) -> None:
    db = tmp_path / "approvals.sqlite"
    q = SqliteApprovalQueue(db)  # as the proxy makes it
    out = run_proxy_cli("approvals", "--db", str(db), "list")
    assert (out.returncode, out.stdout_text) == (0, "no pending approval requests\n")
    assert out.stderr_text == f"plr approvals: queue at {db}\n"
    out = run_proxy_cli("approvals", "--db", str(db), "list", "--format", "json")
    assert out.returncode == 0 and json.loads(out.stdout_text) == []
    # an id the queue does not hold is still its own error, naming the queue (which does exist)
    out = run_proxy_cli("approvals", "--db", str(db), "grant", "feedbeef")
    assert out.returncode == 2 and f"no approval request feedbeef in the queue at {db}" in out.stderr_text
    aid = q.file(tool="cancel-task", args_text='{"task_id": "t-1"}', args_hash="h", timeout=60)
    out = run_proxy_cli("approvals", "--db", str(db), "list")
    assert out.returncode == 0 and aid in out.stdout_text
