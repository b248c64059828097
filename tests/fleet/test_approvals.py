"""The approval queue of a fleet lives in Redis: any replica files, the operator answers with
``plr approvals --state URL``, the replica that holds the call is woken (pub/sub) and uses it once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from tests.proxy.conftest import run_proxy_cli

from .conftest import plr_approvals, replicas
from .helpers import LIMIT_POLICY, agent, code_of

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def pending(url: str, expect: int, timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        out = plr_approvals(url, "list", "--format", "json")
        assert out.returncode == 0, out.stderr_text
        items = json.loads(out.stdout_text)
        if len(items) >= expect or time.monotonic() > deadline:
            return items
        time.sleep(0.1)


async def test_grant_through_the_shared_queue_reaches_the_replica_holding_the_call(
    tmp_path: Path, redis_server
) -> None:
    policy = tmp_path / "policy.plr"
    policy.write_text(LIMIT_POLICY)
    args = ("--state", redis_server.url, "--approval", "queue", "--approval-timeout", "30")
    with replicas(tmp_path, str(policy), *args) as (a, b):
        with anyio.fail_after(45):
            async with agent(a.url, mode="legacy") as ca, agent(b.url, mode="legacy") as cb:
                got: dict[str, object] = {}

                async def hold(c, key: str, task: str) -> None:
                    got[key] = await c.call_tool("cancel-task", {"task_id": task})

                async with anyio.create_task_group() as tg:
                    tg.start_soon(hold, cb, "b", "t-b")  # replica b holds this call
                    tg.start_soon(hold, ca, "a", "t-a")  # replica a holds that one
                    items = await anyio.to_thread.run_sync(pending, redis_server.url, 2)
                    assert sorted((i["tool"], json.loads(i["args"])["task_id"], i["status"]) for i in items) == [
                        ("cancel-task", "t-a", "pending"),
                        ("cancel-task", "t-b", "pending"),
                    ]
                    by_task = {json.loads(i["args"])["task_id"]: i["id"] for i in items}
                    # the operator, on neither replica, answers both through Redis
                    t0 = time.monotonic()
                    ok = await anyio.to_thread.run_sync(plr_approvals, redis_server.url, "grant", by_task["t-b"])
                    assert ok.returncode == 0 and f"granted {by_task['t-b']}" in ok.stdout_text, ok.stderr_text
                    no = await anyio.to_thread.run_sync(
                        lambda: plr_approvals(redis_server.url, "deny", by_task["t-a"], "--note", "not now")
                    )
                    assert no.returncode == 0, no.stderr_text
                woken_in = time.monotonic() - t0
                assert not got["b"].is_error and json.loads(got["b"].content[0].text) == {"cancelled": ["t-b"]}
                assert code_of(got["a"]) == "approval_declined" and "declined" in got["a"].content[0].text
                # a grant approves exactly one call: it is used now
                again = await anyio.to_thread.run_sync(  # --state also reads after the subcommand
                    lambda: run_proxy_cli("approvals", "grant", by_task["t-b"], "--state", redis_server.url)
                )
                assert again.returncode == 1 and "is not pending (it is used)" in again.stderr_text
                unknown = await anyio.to_thread.run_sync(plr_approvals, redis_server.url, "grant", "nope")
                assert unknown.returncode == 2 and "no approval request nope" in unknown.stderr_text
    assert woken_in < 10  # pub/sub wakes the waiting replica (no slow polling in between)
    assert [c["args"]["task_id"] for c in b.calls() if c["tool"] == "cancel-task"] == ["t-b"]
    assert [c["tool"] for c in a.calls()] == []
    rb = [(x["effect"], x["code"], x.get("approval")) for x in b.records()]
    assert rb == [("approval_required", "require", "queue"), ("allow", "allowed", "queue")]
    assert b.records()[1]["approval_id"] == by_task["t-b"]
    ra = [(x["effect"], x["code"]) for x in a.records()]
    assert ra == [("approval_required", "require"), ("deny", "approval_declined")]
    hint = f"plr approvals --state {redis_server.url} grant"
    assert hint in a.stderr() and hint in b.stderr()
    history = json.loads(plr_approvals(redis_server.url, "list", "--all", "--format", "json").stdout_text)
    assert sorted(i["status"] for i in history) == ["denied", "used"]
    assert any(i["note"] == "not now" for i in history)


def test_operator_cli_fails_cleanly_without_redis(tmp_path: Path, redis_server) -> None:
    url = redis_server.url
    redis_server.stop()
    out = plr_approvals(url, "list")
    assert out.returncode == 1 and "approval queue is unreachable" in out.stderr_text
    assert "Traceback" not in out.stderr_text
    bad = plr_approvals("redis://127.0.0.1:6379/zero", "list")
    assert bad.returncode == 2 and "not a number" in bad.stderr_text and "Traceback" not in bad.stderr_text
