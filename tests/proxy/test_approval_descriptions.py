"""A rule's `description` reaches the human who approves: the elicitation prompt, the queued
request (`plr approvals list` and the console show its reason) and the proxy's stderr line. A
rule without one is asked about with its reason alone."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from .conftest import CODEX_SERVER, ProxySetup, run_proxy_cli
from .helpers import Human

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

POLICY = f"""\
package described
{CODEX_SERVER}
default deny
allow read tools
deny tool "cancel-task" unless approved
    reason "Destructive: a human must approve"
    description "stops the agent's running work for good; nothing can be resumed"
deny tool "spawn-task" unless approved
    reason "Spawning costs money"
"""
WHY = "Destructive: a human must approve (stops the agent's running work for good; nothing can be resumed)"


async def test_the_elicitation_prompt_carries_the_description(tmp_path) -> None:
    setup = ProxySetup(tmp_path, POLICY)
    human = Human([("accept", True), ("accept", True)])
    with anyio.fail_after(30):
        async with Client(setup.params(), mode="legacy", cache=None, elicitation_callback=human) as c:
            assert not (await c.call_tool("cancel-task", {"task_id": "t-1"})).is_error
            assert not (await c.call_tool("spawn-task", {"prompt": "hi"})).is_error
    assert [p.message for p in human.seen] == [
        f'Allow cancel-task({{"task_id":"t-1"}})? {WHY}',
        'Allow spawn-task({"prompt":"hi"})? Spawning costs money',
    ]


async def test_the_queued_request_and_stderr_carry_the_description(tmp_path) -> None:
    setup = ProxySetup(tmp_path, POLICY)
    db = str(setup.db)

    async def operator() -> None:
        from dsl.state.sqlite import SqliteApprovalQueue

        q = SqliteApprovalQueue(setup.db)
        while not (pending := await anyio.to_thread.run_sync(q.list)):
            await anyio.sleep(0.05)
        [a] = pending
        assert a.reason == WHY
        listing = await anyio.to_thread.run_sync(lambda: run_proxy_cli("approvals", "--db", db, "show", a.id))
        assert "nothing can be resumed" in listing.stdout_text, listing.stdout_text + listing.stderr_text
        granted = await anyio.to_thread.run_sync(lambda: run_proxy_cli("approvals", "--db", db, "grant", a.id))
        assert granted.returncode == 0, granted.stderr_text

    errlog = setup.stderr.open("w")
    try:
        with anyio.fail_after(60):
            params = setup.params("--approval", "queue", "--approval-timeout", "30")
            async with Client(stdio_client(params, errlog=errlog), mode="legacy", cache=None) as c:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(operator)
                    res = await c.call_tool("cancel-task", {"task_id": "t-2"})
    finally:
        errlog.close()
    assert not res.is_error
    assert f"plr proxy: approval needed for cancel-task ({WHY}); run `plr approvals" in setup.stderr.read_text()
