"""The two approval-queue backends behave alike (same interface, same states), and the Redis
health monitor fails closed, fails fast and reports each outage once."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from dsl.state import StateUnavailable, open_queue
from dsl.state.queue import ApprovalBackend
from dsl.state.redis import RedisHealth, RedisState, check_state_url, display_url
from dsl.state.sqlite import SqliteApprovalQueue

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "redis"])
def queue(request, tmp_path: Path):
    if request.param == "sqlite":
        yield open_queue(None, tmp_path / "q.sqlite")
        return
    server = request.getfixturevalue("redis_server")
    state = RedisState(server.url)
    q = open_queue(state, None)
    q.poll_interval = 0.05
    yield q
    state.close()


def _file(q, h: str = "h1", timeout: float = 10.0) -> str:
    return q.file(tool="cancel-task", args_text='{"task_id": "t"}', args_hash=h, timeout=timeout, identity="ops")


async def test_grant_is_used_once_and_only_for_the_same_arguments(queue) -> None:
    assert isinstance(queue, ApprovalBackend)
    aid = _file(queue)
    [item] = queue.list()
    assert (item.id, item.status, item.tool, item.identity) == (aid, "pending", "cancel-task", "ops")
    assert queue.answer(aid, True, note="fine", who="alice") == (True, "granted")
    assert await queue.wait(aid, "h1", 5) == "granted"
    assert await queue.wait(aid, "h1", 5) == "denied"  # used: never a second call
    assert queue.answer(aid, True) == (False, "used")
    assert queue.get(aid).decided_by == "alice"
    other = _file(queue)
    queue.answer(other, True)
    assert await queue.wait(other, "another-hash", 5) == "denied"  # granted for other arguments
    assert queue.answer("nope", True) == (False, "unknown")
    assert queue.list() == []
    assert {a.status for a in queue.list(include_done=True)} == {"used", "denied"}


async def test_denied_expired_and_cancelled(queue) -> None:
    aid = _file(queue)
    queue.answer(aid, False)
    assert await queue.wait(aid, "h1", 5) == "denied"
    late = _file(queue, timeout=0.3)
    assert await queue.wait(late, "h1", 0.3) == "expired"
    assert queue.answer(late, True) == (False, "expired")
    gone = _file(queue)
    with anyio.move_on_after(0.2):
        await queue.wait(gone, "h1", 5)  # the client went away
    assert queue.get(gone).status == "cancelled"


async def test_a_waiting_call_is_woken_by_the_answer(queue) -> None:
    aid = _file(queue)
    async with anyio.create_task_group() as tg:
        async def grant() -> None:
            await anyio.sleep(0.2)
            await anyio.to_thread.run_sync(queue.answer, aid, True)

        tg.start_soon(grant)
        with anyio.fail_after(3):
            assert await queue.wait(aid, "h1", 30) == "granted"


async def test_redis_queue_unreachable_raises_state_unavailable(redis_server) -> None:
    lines: list[str] = []
    state = RedisState(redis_server.url, report=lines.append)
    q = state.approval_queue()
    aid = _file(q)
    async with anyio.create_task_group() as tg:
        async def kill() -> None:
            await anyio.sleep(0.3)
            redis_server.stop()

        tg.start_soon(kill)
        with pytest.raises(StateUnavailable), anyio.fail_after(5):
            await q.wait(aid, "h1", 30)  # Redis dies while the call waits: deny, do not hang
    with pytest.raises(StateUnavailable):
        _file(q)
    with pytest.raises(StateUnavailable):
        q.list()
    assert len([x for x in lines if "unreachable" in x]) == 1
    state.close()


def test_health_reports_once_fails_fast_and_recovers() -> None:
    now = [100.0]
    lines: list[str] = []
    h = RedisHealth("redis://x:1/0", lines.append, retry_interval=0.5, remind_every=60, clock=lambda: now[0])
    tried: list[int] = []

    def broken() -> None:
        tried.append(1)
        raise ConnectionError("refused")

    for _ in range(100):
        with pytest.raises(StateUnavailable):
            h.run(broken)
    assert len(tried) == 1  # within retry_interval nobody waits on the network again
    now[0] += 0.6
    with pytest.raises(StateUnavailable):
        h.run(broken)
    assert len(tried) == 2
    now[0] += 0.7  # a failed probe doubles the pause (0.5 -> 1 s): still failing fast
    with pytest.raises(StateUnavailable):
        h.run(broken)
    assert len(tried) == 2
    assert len(lines) == 1 and "unreachable" in lines[0] and "state_unavailable" in lines[0]
    now[0] += 61
    with pytest.raises(StateUnavailable):
        h.run(broken)
    assert len(lines) == 2 and "still unreachable" in lines[1]
    now[0] += 2.1  # the pause is now 2 s (bounded doubling); then the next call probes, and Redis is back
    assert h.run(lambda: "ok") == "ok"
    assert len(lines) == 3 and "reachable again" in lines[2] and "103 request(s)" in lines[2]
    assert h.run(lambda: "ok") == "ok" and len(lines) == 3


def test_state_urls() -> None:
    assert check_state_url("redis://127.0.0.1:6379/0")
    assert check_state_url("rediss://cache.internal:6380/2")
    for bad in ("http://x/0", "redis://h:1/0#key", "redis://h:99999/0", "redis://h:1/zero", "redis:///0"):
        with pytest.raises(ValueError):
            check_state_url(bad)
    assert display_url("redis://:s3cret@h:1/0") == "redis://:***@h:1/0"
    assert "s3cret" not in display_url("redis://user:s3cret@h:1/0#k")


def test_sqlite_stays_the_default(tmp_path: Path) -> None:
    q = open_queue(None, tmp_path / "a.sqlite")
    assert isinstance(q, SqliteApprovalQueue) and q.cli_hint == f" --db {tmp_path / 'a.sqlite'}"


def test_benchmark_module_runs(redis_server) -> None:
    """benchmarks/bench_redis.py (quick mode) measures both stores and the approval wake-up."""
    from benchmarks.bench_redis import NAME, run
    from benchmarks.harness import Config

    section = run(Config(quick=True))
    assert section.name == NAME
    cases = [r.case for r in section.rows]
    assert any("Redis store" in c for c in cases) and any("in-process" in c for c in cases), cases
    assert all(r.status in ("PASS", "FAIL", "INFO") for r in section.rows), section.rows
    assert all(r.values for r in section.rows)
