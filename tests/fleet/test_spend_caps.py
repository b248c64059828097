"""Spend caps across a fleet: two real proxy replicas, one real redis-server, one cap."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from .conftest import replicas
from .helpers import agent, code_of

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SPEND_POLICY = """\
default deny
allow tool "get-task"
limit tool "get-task" to 10 of args.amount per calendar day per global
allow tool "list-tasks"
"""


async def test_one_spend_cap_holds_across_two_replicas(tmp_path: Path, redis_server) -> None:
    """Twelve concurrent calls of 3 through two replicas against a cap of 10: exactly three are
    let through, the others are told what is left; a call without an amount is denied."""
    policy = tmp_path / "policy.plr"
    policy.write_text(SPEND_POLICY)
    with replicas(tmp_path, str(policy), "--state", redis_server.url) as (a, b):
        codes: list[str] = []
        with anyio.fail_after(30):
            async with agent(a.url) as ca, agent(b.url, name="other-agent") as cb:

                async def call(c, i: int) -> None:  # type: ignore[no-untyped-def]
                    codes.append(code_of(await c.call_tool("get-task", {"task_id": f"t{i}", "amount": 3})))

                async with anyio.create_task_group() as tg:
                    for i in range(12):
                        tg.start_soon(call, ca if i % 2 else cb, i)
                assert code_of(await ca.call_tool("get-task", {"task_id": "x"})) == "invalid_args"
                assert code_of(await cb.call_tool("get-task", {"task_id": "y", "amount": 1})) == "allowed"  # 9 + 1
                assert code_of(await ca.call_tool("get-task", {"task_id": "z", "amount": 0.5})) == "rate_limited"
        assert sorted(codes) == ["allowed"] * 3 + ["rate_limited"] * 9
    forwarded = [c for r in (a, b) for c in r.calls() if c["tool"] == "get-task"]
    assert len(forwarded) == 4  # no refused call reached a server
    refused = [x for r in (a, b) for x in r.records() if x["code"] == "rate_limited"]
    assert len(refused) == 10
    said = sorted(x["reason"].split(";")[1].strip() for x in refused)
    # a call of 3 is refused only once 9 are spent, whichever replica took them
    assert said == ["0 left, this call asks 0.5"] + ["1 left, this call asks 3"] * 9
