"""`plr audit` (text) says how a human answered a call: `allow (approved by alice via queue ID)`.

The records are the proxy's own: an in-process proxy asks through its queue, and the operator
answers with `plr approvals grant/deny` (a process of its own, as a person would run it). The
log keeps the request's id; who answered is the queue's, which `plr audit` reads beside the log.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

from mcp import Client

from dsl.state.sqlite import SqliteApprovalQueue
from tests.proxy.conftest import ProxySetup, base_env, inprocess, run_proxy_cli
from tests.proxy.helpers import Human

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pending(db: Path) -> list:
    """The requests waiting in the proxy's queue, read as `plr approvals` reads them (never
    creating it); none while the proxy is still making the file and its table."""
    try:
        return SqliteApprovalQueue(db, create=False).list()
    except (FileNotFoundError, sqlite3.DatabaseError):
        return []


async def answered_calls(setup: ProxySetup, answers: list[tuple[str, str]]) -> list[bool]:
    """One cancel-task call per (verb, operator): each waits in the proxy's queue until that
    operator runs `plr approvals VERB ID`; the calls' is_error, in order."""
    results: list[bool] = []
    async with inprocess(setup, approval_mode="queue", approval_timeout=60) as ip:
        async with Client(ip.server, mode="legacy") as c:
            for i, (verb, who) in enumerate(answers):
                async with anyio.create_task_group() as tg:

                    async def operator(verb: str = verb, who: str = who) -> None:
                        while not (waiting := pending(setup.db)):
                            await anyio.sleep(0.05)
                        env = base_env(LOGNAME=who, USER=who)  # the name `plr approvals` records
                        out = await anyio.to_thread.run_sync(
                            lambda: run_proxy_cli("approvals", "--db", str(setup.db), verb, waiting[0].id, env=env)
                        )
                        assert out.returncode == 0, out.stderr_text

                    tg.start_soon(operator)
                    with anyio.fail_after(60):
                        r = await c.call_tool("cancel-task", {"task_id": f"t-{i}"})
                results.append(bool(r.is_error))
    return results


async def test_the_text_view_says_who_approved_or_declined_a_call_through_the_queue(tmp_path: Path) -> None:
    setup = ProxySetup(tmp_path)
    assert await answered_calls(setup, [("grant", "alice"), ("deny", "bob")]) == [False, True]
    records = setup.records()
    asks = [r["approval_id"] for r in records if r["effect"] == "approval_required"]
    assert [(r["effect"], r.get("approval"), r.get("approval_id")) for r in records] == [
        ("approval_required", "queue", asks[0]), ("allow", "queue", asks[0]),
        ("approval_required", "queue", asks[1]), ("deny", "queue", asks[1]),
    ]  # fmt: skip
    why = "policy.plr:18: Destructive: cancels running tasks; a human must approve"
    assert text_lines(setup) == [
        f"approval_required (asked via queue {asks[0]}) cancel-task  (require) {why}",
        f"allow (approved by alice via queue {asks[0]}) cancel-task  (allowed) policy.plr:18: "
        "tool `cancel-task` is allowed by policy",
        f"approval_required (asked via queue {asks[1]}) cancel-task  (require) {why}",
        f"deny (declined by bob via queue {asks[1]}) cancel-task  (approval_declined) {why} "
        "(a human declined this call)",
    ]
    # the outcome records name who answered themselves (the queue's decided_by), the asks do not
    assert [r.get("decided_by") for r in records] == [None, "alice", None, "bob"]
    # the JSON form is the records as written: nothing joined in
    js = [json.loads(x) for x in run_proxy_cli("audit", str(setup.audit), "--format", "json").stdout_text.splitlines()]
    assert [r for r in js if "event" not in r] == records
    # so the log names them without the queue (moved, or a copy of the log read elsewhere)
    setup.db.rename(tmp_path / "away.sqlite")
    assert [x.split(" cancel-task")[0] for x in text_lines(setup)][1::2] == [
        f"allow (approved by alice via queue {asks[0]})", f"deny (declined by bob via queue {asks[1]})",
    ]  # fmt: skip
    (tmp_path / "away.sqlite").rename(setup.db)
    # a log written before the outcome records carried decided_by: joined with the queue beside it
    lines = setup.audit.read_text().splitlines()
    older = [json.loads(x) for x in lines]
    for r in older:
        r.pop("decided_by", None)
    setup.audit.write_text("".join(json.dumps(r) + "\n" for r in older))
    assert [x.split(" cancel-task")[0] for x in text_lines(setup)][1::2] == [
        f"allow (approved by alice via queue {asks[0]})", f"deny (declined by bob via queue {asks[1]})",
    ]  # fmt: skip
    # a request of another call under the same id (another queue, say) is not taken for this one's
    with sqlite3.connect(setup.db) as db:
        db.execute("UPDATE approvals SET args_sha256 = 'other' WHERE id = ?", (asks[0],))
    db.close()
    assert text_lines(setup)[1].startswith(f"allow (approved via queue {asks[0]}) cancel-task  (allowed)")
    # no queue beside the log (moved, or a copy of the log read elsewhere): what the log says, and
    # the queue is not created by reading the log
    setup.db.rename(tmp_path / "moved.sqlite")
    assert [x.split(" cancel-task")[0] for x in text_lines(setup)] == [
        f"approval_required (asked via queue {asks[0]})", f"allow (approved via queue {asks[0]})",
        f"approval_required (asked via queue {asks[1]})", f"deny (declined via queue {asks[1]})",
    ]  # fmt: skip
    assert not setup.db.exists()


async def test_an_elicited_approval_and_calls_nobody_was_asked_about(tmp_path: Path) -> None:
    setup = ProxySetup(tmp_path)
    async with inprocess(setup, approval_mode="elicit") as ip:
        human = Human([("accept", True), ("decline", None)])
        async with Client(ip.server, mode="legacy", elicitation_callback=human) as c:
            assert not (await c.call_tool("cancel-task", {"task_id": "t-1"})).is_error
            assert (await c.call_tool("cancel-task", {"task_id": "t-2"})).is_error
            assert not (await c.call_tool("get-task", {"task_id": "t-1"})).is_error
    async with inprocess(setup, approval_mode="deny") as ip:
        async with Client(ip.server, mode="legacy") as c:
            assert (await c.call_tool("cancel-task", {"task_id": "t-3"})).is_error
    assert [x.split(" cancel-task")[0].split(" get-task")[0] for x in text_lines(setup)] == [
        "approval_required (asked via elicitation)", "allow (approved via elicitation)",
        "approval_required (asked via elicitation)", "deny (declined via elicitation)",
        "allow            ",  # asked nobody: the line as it always was
        "deny (no approval channel)",
    ]  # fmt: skip


def text_lines(setup: ProxySetup) -> list[str]:
    """`plr audit LOG`'s decision lines, without their time stamps."""
    out = run_proxy_cli("audit", str(setup.audit))
    assert out.returncode == 0, out.stderr_text
    return [re.sub(r"^\S+  ", "", x) for x in out.stdout_text.splitlines() if "tools_compared" not in x]
