"""Approvals bookkeeping: an operator finds the queue the proxy uses (the proxy names it when it
starts, `plr approvals list` says which queue it read), the queue options are taken before or
after the subcommand, `show` says who answered, when and with what note, and the audit log's
`approval_required` record carries the queue's approval id. Real `plr proxy` and `plr approvals`
processes."""

from __future__ import annotations

import getpass
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from dsl.state.sqlite import SqliteApprovalQueue
from tests.conftest import ROOT

from .conftest import FAKE_SERVER, ProxySetup, base_env, inprocess, run_proxy_cli, stop
from .helpers import text

pytestmark = pytest.mark.anyio

ANNOUNCE = re.compile(r"^plr proxy: approvals queue (?P<where>.+) \(plr approvals (?P<opts>.+) list\)$", re.MULTILINE)


def approvals(*args: str, env: dict[str, str] | None = None) -> Any:
    return run_proxy_cli("approvals", *args, env=env, timeout=30)


def announced(args: list[str], env: dict[str, str] | None = None) -> str:
    """What `plr proxy ARGS` says on stderr when its client leaves at once (it announces first)."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=str(ROOT),
        env=env or base_env(),
    )
    try:
        _, err = proc.communicate(b"", timeout=30)  # EOF: a client that closed
    finally:
        stop(proc)
    return err.decode("utf-8", "replace")


async def test_the_proxy_names_its_queue_and_list_says_which_queue_it_read(setup: ProxySetup) -> None:
    """The bug: a proxy run with a custom --audit keeps its queue next to that log, and a bare
    `plr approvals list` read the default queue and said "no pending approval requests". Now the
    proxy prints its queue and the exact options; `list` says (on stderr) which queue it read."""
    logs = setup.tmp / "logs"
    logs.mkdir()
    audit = logs / "audit.jsonl"
    args = ["-m", "dsl.proxy", "--policy", str(setup.policy), "--audit", str(audit), "--approval-timeout", "60",
            "--", sys.executable, str(FAKE_SERVER)]  # fmt: skip
    params = StdioServerParameters(
        command=sys.executable, args=args, env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)), cwd=str(ROOT)
    )
    operator_env = base_env(XDG_STATE_HOME=str(setup.tmp / "operator-state"))  # the operator's own defaults
    errpath = setup.tmp / "stderr.txt"
    seen: dict[str, Any] = {}

    async def operator() -> None:
        while not (m := ANNOUNCE.search(errpath.read_text())):
            await anyio.sleep(0.05)
        where, opts = m["where"], shlex.split(m["opts"])
        assert where == str(logs / "approvals.sqlite") and opts == ["--db", where]
        while not (Path(where).exists() and SqliteApprovalQueue(where, create=False).list()):
            await anyio.sleep(0.05)
        # the bare command looks at another place, where there is no queue: an error naming it
        # (exit 2), never a silent "nothing pending"
        bare = await anyio.to_thread.run_sync(lambda: approvals("list", env=operator_env))
        assert bare.returncode == 2 and bare.stdout_text == ""
        assert f"no approval queue at {setup.tmp / 'operator-state' / 'plr' / 'approvals.sqlite'}" in bare.stderr_text
        assert "names it when it starts" in bare.stderr_text
        # the command the proxy printed, options after the subcommand too
        listed = await anyio.to_thread.run_sync(lambda: approvals("list", *opts, "--format", "json", env=operator_env))
        assert listed.returncode == 0, listed.stderr_text
        [req] = json.loads(listed.stdout_text)  # stdout stays one JSON document
        assert req["tool"] == "cancel-task" and listed.stderr_text == f"plr approvals: queue at {where}\n"
        via_audit = await anyio.to_thread.run_sync(lambda: approvals("list", "--audit", str(audit), env=operator_env))
        assert req["id"] in via_audit.stdout_text and f"queue at {where}" in via_audit.stderr_text
        granted = await anyio.to_thread.run_sync(
            lambda: approvals("grant", req["id"], *opts, "--note", "ok for t-9", env=operator_env)
        )
        assert granted.returncode == 0, granted.stderr_text
        seen["id"], seen["opts"] = req["id"], opts

    with errpath.open("w") as errlog, anyio.fail_after(60):
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", cache=None) as c:
            async with anyio.create_task_group() as tg:
                tg.start_soon(operator)
                r = await c.call_tool("cancel-task", {"task_id": "t-9"})
    assert not r.is_error, text(r)
    assert setup.called_tools() == ["cancel-task"]
    aid = seen["id"]
    # the audit log joins the queue: the ask carries the id, as does the outcome
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    recs = [(x["effect"], x.get("approval"), x.get("approval_id")) for x in records]
    assert recs == [("approval_required", "queue", aid), ("allow", "queue", aid)]
    # show: who answered, when, with what note
    shown = approvals("show", aid, *seen["opts"])
    assert shown.returncode == 0, shown.stderr_text
    fields = dict(line.split(":", 1) for line in shown.stdout_text.splitlines() if not line.startswith(" ") and ":" in line)
    assert fields["status"].strip() == "used"
    assert fields["decided by"].strip() == getpass.getuser()
    assert re.fullmatch(r" +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+s ago\)", fields["decided at"])
    assert fields["note"].strip() == "ok for t-9"


def _steady(text: str) -> str:
    """``text`` without the seconds it was shown at ("59s left", "(0s ago)", "(in 60s)"): two
    commands run one after the other may straddle a second."""
    return re.sub(r"\b\d+s\b", "Ns", text)


def test_queue_options_are_taken_before_or_after_the_subcommand(tmp_path: Path) -> None:
    db = tmp_path / "approvals.sqlite"
    q = SqliteApprovalQueue(db)
    ids = [q.file(tool="cancel-task", args_text=json.dumps({"n": i}), args_hash="h", timeout=60) for i in range(3)]
    d = str(db)
    before, after = approvals("--db", d, "list"), approvals("list", "--db", d)
    assert before.returncode == after.returncode == 0, (before.stderr_text, after.stderr_text)
    assert _steady(before.stdout_text) == _steady(after.stdout_text) and all(i in after.stdout_text for i in ids)
    shown = approvals("show", ids[0], "--db", d).stdout_text
    assert "cancel-task" in shown and _steady(shown) == _steady(approvals("--db", d, "show", ids[0]).stdout_text)
    assert approvals("grant", ids[0], "--db", d).returncode == 0
    assert approvals("deny", ids[1], "--db", d, "--note", "no").returncode == 0
    assert approvals("--audit", str(tmp_path / "audit.jsonl"), "grant", ids[2]).returncode == 0  # next to the log
    assert [q.get(i).status for i in ids] == ["granted", "denied", "granted"]
    # two different queues named at once: refused, whichever the places
    other = str(tmp_path / "other.sqlite")
    for args in (
        ("--db", d, "list", "--db", other),
        ("list", "--db", d, "--state", "redis://127.0.0.1:1/0"),
        ("--state", "redis://127.0.0.1:1/0", "show", ids[0], "--db", d),
        ("list", "--db", d, "--audit", str(tmp_path / "elsewhere" / "audit.jsonl")),
    ):
        out = approvals(*args)
        assert out.returncode == 2, (args, out.stderr_text)
        assert "give" in out.stderr_text and "Traceback" not in out.stderr_text, (args, out.stderr_text)
    assert approvals("--db", d, "list", "--db", d).returncode == 0  # the same queue twice is no conflict
    # a missing queue named after the subcommand is the same error as before it
    missing = approvals("list", "--db", str(tmp_path / "nope.sqlite"))
    assert missing.returncode == 2 and "no approval queue at" in missing.stderr_text
    unknown = approvals("grant", "feedbeef", "--db", d)
    assert unknown.returncode == 2 and f"no approval request feedbeef in the queue at {d}" in unknown.stderr_text


def test_show_says_who_answered_when_and_with_what_note(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite"
    q = SqliteApprovalQueue(db)
    aid = q.file(tool="cancel-task", args_text="{}", args_hash="h", timeout=60)
    pending = approvals("show", aid, "--db", str(db)).stdout_text
    assert "decided by:  -\n" in pending and "decided at:  -\n" in pending and "note:        \n" in pending
    assert q.answer(aid, False, "not during\nthe release", who="alice\x1b[31m") == (True, "denied")
    out = approvals("show", aid, "--db", str(db))
    assert out.returncode == 0, out.stderr_text
    assert "status:      denied\n" in out.stdout_text
    assert "decided by:  alice\\u001b[31m\n" in out.stdout_text  # escaped: text cannot colour the terminal
    assert re.search(r"^decided at:  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+s ago\)$", out.stdout_text, re.MULTILINE)
    assert "note:        not during\\u000athe release\n" in out.stdout_text  # one line
    as_json = json.loads(approvals("show", aid, "--db", str(db), "--format", "json").stdout_text)
    assert as_json["decided_by"] == "alice\x1b[31m" and as_json["note"] == "not during\nthe release"
    assert as_json["decided_at"] == q.get(aid).decided_at
    listed = approvals("list", "--all", "--db", str(db)).stdout_text
    assert "denied by alice\\u001b[31m" in listed


def test_with_redis_state_the_proxy_names_the_fleet_queue(setup: ProxySetup, redis_server: Any) -> None:
    url = redis_server.url
    args = ["-m", "dsl.proxy", "--policy", str(setup.policy), "--audit", str(setup.audit), "--state", url,
            "--", sys.executable, str(FAKE_SERVER)]  # fmt: skip
    err = announced(args)
    m = ANNOUNCE.search(err)
    assert m, err
    assert m["where"] == f"in redis at {url}" and shlex.split(m["opts"]) == ["--state", url]
    out = approvals("list", *shlex.split(m["opts"]))
    assert out.returncode == 0 and out.stderr_text == f"plr approvals: queue in redis at {url}\n", out.stderr_text


def test_no_queue_is_announced_when_none_is_used(setup: ProxySetup) -> None:
    """--approval elicit or deny never files to a queue: the proxy names none."""
    for mode in ("elicit", "deny"):
        err = announced(setup.proxy_args("--approval", mode))
        assert "plr proxy: enforcing" in err and "approvals queue" not in err, err
    err = announced(setup.proxy_args("--approval", "queue"))
    assert f"plr proxy: approvals queue {setup.db} (plr approvals --db {setup.db} list)" in err, err


async def test_an_ask_record_that_cannot_be_written_withdraws_the_request(setup: ProxySetup) -> None:
    """The ask-record is written once the request is filed (it carries its id); if that write
    fails the call is refused, and the request is cancelled so nobody grants a call that never runs."""
    async with inprocess(setup, approval_mode="queue") as ip:

        def full(rec: dict[str, Any]) -> None:
            raise OSError(28, "No space left on device")

        ip.proxy.audit.write = full  # type: ignore[method-assign]
        with anyio.fail_after(20):
            async with Client(ip.server, mode="legacy") as c:
                r = await c.call_tool("cancel-task", {"task_id": "t-1"})
    assert r.is_error and "OSError" in text(r)
    assert setup.called_tools() == []
    [req] = SqliteApprovalQueue(setup.db, create=False).list(include_done=True)
    assert req.tool == "cancel-task" and req.status == "cancelled"
    assert approvals("--db", str(setup.db), "grant", req.id).returncode == 1  # not pending: cannot be granted
