"""Limits across a fleet: two real proxy replicas, one real redis-server."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from .conftest import replicas
from .helpers import LIMIT_POLICY, agent, code_of

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_ten_per_minute_per_session_holds_across_two_replicas(tmp_path: Path, redis_server) -> None:
    """20 concurrent calls of one session, 10 through each replica -> exactly 10 allowed."""
    policy = tmp_path / "policy.plr"
    policy.write_text(LIMIT_POLICY)
    with replicas(tmp_path, str(policy), "--state", redis_server.url) as (a, b):
        codes: list[str] = []
        with anyio.fail_after(30):
            async with agent(a.url) as ca, agent(b.url) as cb:
                async def call(c, i: int) -> None:
                    codes.append(code_of(await c.call_tool("get-task", {"task_id": f"t{i}"})))

                async with anyio.create_task_group() as tg:
                    for i in range(20):
                        tg.start_soon(call, ca if i % 2 else cb, i)
                # another session has its own quota, on either replica
                async with agent(b.url, name="other-agent") as other:
                    assert code_of(await other.call_tool("get-task", {"task_id": "x"})) == "allowed"
        assert sorted(codes) == ["allowed"] * 10 + ["rate_limited"] * 10
    forwarded = [c for r in (a, b) for c in r.calls() if c["tool"] == "get-task"]
    assert len(forwarded) == 11  # the 10 allowed + the other session's call; no refused call reached a server
    recs = [x for r in (a, b) for x in r.records() if x["session"].endswith("|agent/1")]
    assert sorted(x["code"] for x in recs) == ["allowed"] * 10 + ["rate_limited"] * 10
    assert {x["session"] for x in recs} == {"stateless:|agent/1"}  # one session, both replicas
    assert len({x["policy_sha256"] for x in recs}) == 1
    assert all("retry after" in x["reason"] for x in recs if x["code"] == "rate_limited")


async def test_redis_killed_mid_flood_denies_then_recovers(tmp_path: Path, redis_server) -> None:
    """Kill Redis while calls are in flight: calls needing it are denied (state_unavailable), never
    allowed over the limit, approvals are denied too; one log line per outage; recovery on restart."""
    policy = tmp_path / "policy.plr"
    policy.write_text(LIMIT_POLICY)
    args = ("--state", redis_server.url, "--approval", "queue", "--approval-timeout", "20")
    with replicas(tmp_path, str(policy), *args) as (a, b):
        results: list[tuple[float, str]] = []  # (time the call was sent, outcome)
        killed_at: list[float] = []  # (monotonic, wall clock) once Redis is dead
        with anyio.fail_after(40):
            async with agent(a.url) as ca, agent(b.url) as cb:

                async def call(c, i: int) -> None:
                    await anyio.sleep(i * 0.05)  # a steady flood over 1.5 s
                    sent = time.monotonic()
                    code = code_of(await c.call_tool("get-task", {"task_id": f"t{i}"}))
                    results.append((sent, code))
                    if len(results) == 5 and not killed_at:
                        redis_server.stop()  # mid-flood: the other calls are still coming
                        killed_at.extend((time.monotonic(), time.time()))

                async with anyio.create_task_group() as tg:
                    for i in range(30):
                        tg.start_soon(call, ca if i % 2 else cb, i)
                codes = [c for _, c in results]
                assert killed_at, codes
                assert set(codes) <= {"allowed", "rate_limited", "state_unavailable"}, codes
                assert codes.count("allowed") <= 10
                # every call sent after Redis died was refused for that reason
                late = [c for t, c in results if t > killed_at[0]]
                assert late and set(late) == {"state_unavailable"}, results
                # the approval queue is in Redis too: unreachable -> denied at once, never asked
                t0 = time.monotonic()
                res = await cb.call_tool("cancel-task", {"task_id": "t1"})
                assert code_of(res) == "state_unavailable" and time.monotonic() - t0 < 5
                allowed_before = codes.count("allowed")
                assert sum(1 for r in (a, b) for c in r.calls() if c["tool"] == "get-task") == allowed_before
                # list-tasks has no limit: it does not need Redis and keeps working
                assert code_of(await ca.call_tool("list-tasks", {})) == "allowed"

                restarted_wall = time.time()
                redis_server.start()  # empty (no persistence): a fresh window
                for c in (ca, cb):  # recovery needs no restart of the proxies
                    deadline = time.monotonic() + 10
                    while True:
                        code = code_of(await c.call_tool("get-task", {"task_id": "probe"}))
                        if code == "allowed":
                            break
                        assert code == "state_unavailable" and time.monotonic() < deadline, code
                        await anyio.sleep(0.1)
                after: list[str] = []

                async def call2(c, i: int) -> None:
                    after.append(code_of(await c.call_tool("get-task", {"task_id": f"u{i}"})))

                async with anyio.create_task_group() as tg:
                    for i in range(14):
                        tg.start_soon(call2, ca if i % 2 else cb, i)
                assert sorted(after) == ["allowed"] * 8 + ["rate_limited"] * 6  # 2 probes + 8 = 10
    kill_wall = killed_at[1]
    for r in (a, b):
        err = r.stderr()
        assert "Traceback" not in err
        # one clear line per outage (not one per denied call), and one when it is back
        assert err.count("is unreachable") == 1, err
        assert err.count("reachable again") == 1, err
        recs = r.records()
        outage = [x for x in recs if x["code"] == "state_unavailable"]
        assert outage and all(x["effect"] == "deny" and x["policy_sha256"] for x in outage)
        # no call was allowed while Redis was down (allowed ones were decided before it died or after it was back)
        down = [x for x in recs if x["tool"] == "get-task" and kill_wall + 0.002 < _wall(x["ts"]) < restarted_wall]
        assert down and all(x["code"] != "allowed" for x in down), recs
    cancel = [x for r in (a, b) for x in r.records() if x["tool"] == "cancel-task"]
    assert [x["code"] for x in cancel] == ["require", "state_unavailable"]  # asked, then denied
    assert "cancel-task" not in [c["tool"] for r in (a, b) for c in r.calls()]


def _wall(ts: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize(
    ("maxmemory", "policy", "warned"),
    [
        ("0", "noeviction", False),  # redis-server's defaults
        ("0", "allkeys-lru", False),  # no memory limit: nothing is ever evicted
        ("100mb", "noeviction", False),
        ("100mb", "allkeys-lru", True),
        ("100mb", "volatile-ttl", True),  # every counter has a TTL: these take them first
    ],
)
def test_a_redis_that_may_evict_plrs_keys_is_named(redis_server, maxmemory: str, policy: str, warned: bool) -> None:
    from dsl.state.redis import RedisState

    client = redis_server.client()
    client.config_set("maxmemory", maxmemory)
    client.config_set("maxmemory-policy", policy)
    state = RedisState(redis_server.url)
    try:
        risk = state.eviction_risk()
    finally:
        state.close()
    assert (risk is not None) == warned
    if warned:
        assert f"maxmemory-policy {policy}" in risk and "noeviction" in risk


def test_the_proxy_warns_at_start_of_a_redis_that_may_evict(tmp_path: Path, redis_server) -> None:
    """Only once the operator accepted it (``?allow_eviction=1``; without it the proxy refuses
    to start: tests/state/test_redis_eviction_watch.py)."""
    client = redis_server.client()
    client.config_set("maxmemory", "100mb")
    client.config_set("maxmemory-policy", "allkeys-lru")
    policy = tmp_path / "policy.plr"
    policy.write_text(LIMIT_POLICY)
    with replicas(tmp_path, str(policy), "--state", redis_server.url + "?allow_eviction=1", n=1) as (a,):
        a.wait_stderr("evicts keys when full (maxmemory 104857600, maxmemory-policy allkeys-lru)")
        a.wait_stderr("accepted (allow_eviction=1 in --state): calls go on")
