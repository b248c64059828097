"""Fleet state: decision + limit counter with Redis (``--state``) vs in-process.

The same policy and calls as the decision benchmark's case (c), a tool with a sliding-window
limit, decided by ``Engine.decide`` with

* ``MemoryLimitStore`` (the default: counters in the process), and
* ``RedisLimitStore`` on a real ``redis-server`` started for the run on 127.0.0.1 (TCP, no
  persistence): one Lua script per decision checks and records every limit atomically.

Both use the decision benchmark's virtual clock (0.1 s per call, 1000 per minute allowed), so
both stores hold the same steady state (~600 counted hits per key) and every call is allowed.
A second pair decides a tool under two limits (per session and, for all tools, per identity):
still one round trip. The Redis figures are what the proxy adds per limited call when
replicas share counters; tools without limits never touch Redis.

Also measured: how fast an operator's answer reaches the waiting call (``plr approvals grant``
-> the proxy resumes): Redis pub/sub vs the SQLite queue's 0.1 s polling.

If ``redis-server`` or redis-py is missing, the section is one SKIP row.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dsl.compiler import compile_source
from dsl.engine import Engine
from dsl.state.memory import MemoryLimitStore

from .harness import Config, Latency, Row, Section, decision_latency, fmt_ratio, store_row, timer_overhead_ns
from .policies import LIMIT_CLOCK_STEP_S, LIMIT_MAX

NAME = "redis"
TITLE = "Fleet state: decision + limit counter, Redis vs in-process"
P50_TARGET_NS = 1_000_000.0  # the proxy's whole per-call budget (spec: added latency p50 ≤ 1 ms)

POLICY = f"""\
default deny
allow tool "one-limit"
limit tool "one-limit" to {LIMIT_MAX} per minute per session
allow tool "two-limits"
limit tool "two-limits" to {LIMIT_MAX} per minute per session
limit all tools to {10 * LIMIT_MAX} per minute per identity
"""
CASES = {
    "one-limit": "(c) 1 limit",
    "two-limits": "(d) 2 limits",
}


@dataclass(frozen=True)
class _Plan:
    calls: int
    rounds: int
    approvals: int


def _plan(cfg: Config) -> _Plan:
    return _Plan(300, 3, 5) if cfg.quick else _Plan(2_000, 5, 30)


def _clock() -> Any:
    return itertools.count(0.0, LIMIT_CLOCK_STEP_S).__next__


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on a free 127.0.0.1 port; yields its URL."""
    import redis

    exe = shutil.which("redis-server")
    assert exe is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="plr-bench-redis-") as tmp:
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis(port=port, socket_connect_timeout=0.2).ping()
                    break
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait(timeout=10)


def _time(engine: Engine, tool: str, plan: _Plan, overhead: float) -> Latency:
    decide = engine.decide

    return decision_latency(decide, tool, None, plan.calls, plan.rounds, overhead, warm=500)


def _approval_wake_ms(queue: Any, rounds: int) -> list[float]:
    """Milliseconds from an operator's grant to the waiting call's return, per round."""
    import anyio

    async def main() -> list[float]:
        out: list[float] = []
        for i in range(rounds):
            aid = queue.file(tool="cancel-task", args_text="{}", args_hash=f"h{i}", timeout=30)
            granted_at: list[float] = []

            async def waiter() -> None:
                res = await queue.wait(aid, f"h{i}", 30)
                assert res == "granted", res
                out.append((time.perf_counter() - granted_at[0]) * 1000)

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.02 + 0.0137 * (i % 7))  # the waiter is parked; answer at varied phases
                granted_at.append(time.perf_counter())
                queue.answer(aid, True)
        return out

    return anyio.run(main)


def _skip(section: Section, why: str) -> Section:
    section.rows.append(Row(NAME, "Redis limit store", f"skipped: {why}", status="SKIP"))
    return section


def run(cfg: Config) -> Section:
    plan = _plan(cfg)
    section = Section(NAME, TITLE)
    if shutil.which("redis-server") is None:
        return _skip(section, "redis-server not installed (apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        return _skip(section, "redis-py not installed (pip install 'plr[fleet]')")
    from dsl.state.redis import RedisLimitStore, RedisState
    from dsl.state.sqlite import SqliteApprovalQueue

    overhead = timer_overhead_ns()
    policy = compile_source(POLICY, "bench.plr")
    with redis_server() as url:
        state = RedisState(url)
        try:
            info = state.client.info("server")
            section.details["redis_version"] = info.get("redis_version")
            for tool, label in CASES.items():
                mem = _time(Engine(policy, clock=_clock(), store=MemoryLimitStore()), tool, plan, overhead)
                store = RedisLimitStore(state.client, prefix=f"bench:{tool}:", use_server_time=False)
                red = _time(Engine(policy, clock=_clock(), store=store), tool, plan, overhead)
                section.rows.append(
                    Row(
                        section=NAME,
                        case=f"{label}, in-process store",
                        result=mem.text(),
                        values=mem.values(),
                        status="INFO",
                    )
                )
                more = " (two limits, still one round trip)" if tool == "two-limits" else ""
                section.rows.append(store_row(NAME, f"{label}, Redis store (TCP)", red, mem, P50_TARGET_NS, more))
            # an operator's answer reaching the waiting call
            red_ms = _approval_wake_ms(state.approval_queue(), plan.approvals)
            with tempfile.TemporaryDirectory(prefix="plr-bench-sqlite-") as tmp:
                sql_ms = _approval_wake_ms(SqliteApprovalQueue(os.path.join(tmp, "q.sqlite")), plan.approvals)
            r50, s50 = statistics.median(red_ms), statistics.median(sql_ms)
            section.rows.append(
                Row(
                    section=NAME,
                    case="approval: grant -> waiting call resumes",
                    result=f"Redis pub/sub p50 {r50:.2f} ms · max {max(red_ms):.2f} ms",
                    values={"p50_ms": round(r50, 3), "max_ms": round(max(red_ms), 3), "rounds": plan.approvals},
                    baseline=f"SQLite poll p50 {s50:.1f} ms · max {max(sql_ms):.1f} ms",
                    baseline_name="SqliteApprovalQueue (0.1 s poll)",
                    baseline_values={"p50_ms": round(s50, 3), "max_ms": round(max(sql_ms), 3)},
                    ratio=s50 / r50 if r50 > 0 else None,
                    ratio_text=f"{fmt_ratio(s50 / r50)} faster" if r50 > 0 else "",
                    status="INFO",
                )
            )
        finally:
            state.close()
    section.notes.append(
        "decisions: virtual clock (0.1 s per call) so both stores hold the same ~600 counted hits per key; "
        f"p50/p99 of single calls minus the timer overhead ({overhead:.0f} ns), median of {plan.rounds} rounds × "
        f"{plan.calls:,} calls; the Redis store is one EVALSHA round trip over TCP to 127.0.0.1"
    )
    section.notes.append(
        "the proxy runs the Redis store on Redis's clock (TIME inside the script): the same single round trip"
    )
    return section
