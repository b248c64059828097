"""Limit stores side by side: the per-call cost of a limited decision in memory, SQLite and Redis.

One policy, decided by ``Engine.decide`` on each store the proxy can run (``--state``):

* ``MemoryLimitStore`` (``--state memory``): counters in the process, lost with it;
* ``SqliteLimitStore`` (``--state sqlite:PATH``, the default when a policy has limits): a WAL
  file in a temp dir, one ``BEGIN IMMEDIATE`` transaction per decision;
* ``RedisLimitStore`` (``--state redis://…``): a real ``redis-server`` on 127.0.0.1 (TCP, no
  persistence), one Lua script per decision.

Cases: (c) a call count (``to 1000 per minute per session``) and (e) a spend cap
(``to 5000 of args.amount per minute per identity``, amount 1 per call), both on the decision
benchmark's virtual clock (0.1 s per call), so every store holds the same steady state (~600
hits or amounts in the window) and every call is allowed. A spend cap adds up the amounts in
its window on each call (exactly, in call order, as every store does), so its cost grows with
the calls in the window; a call count looks at one entry.

If ``redis-server`` or redis-py is missing, the Redis rows are SKIP rows; the others still run.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsl.compiler import compile_source
from dsl.engine import Engine
from dsl.state.memory import MemoryLimitStore
from dsl.state.sqlite_limits import SqliteLimitStore

from .harness import Config, Latency, Row, Section, decision_latency, store_row, timer_overhead_ns
from .policies import LIMIT_CLOCK_STEP_S, LIMIT_MAX

NAME = "state"
TITLE = "Limit stores: a limited decision in memory, SQLite and Redis"
P50_TARGET_NS = 1_000_000.0  # the proxy's whole per-call budget (spec: added latency p50 ≤ 1 ms)

POLICY = f"""\
default deny
allow tool "count"
limit tool "count" to {LIMIT_MAX} per minute per session
allow tool "spend"
limit tool "spend" to {5 * LIMIT_MAX} of args.amount per minute per identity
"""
CASES = {
    "count": ("(c) call count", None),
    "spend": ("(e) spend cap", {"amount": 1}),
}


@dataclass(frozen=True)
class _Plan:
    calls: int
    rounds: int


def _plan(cfg: Config) -> _Plan:
    return _Plan(300, 3) if cfg.quick else _Plan(2_000, 5)


class _Clock:
    """The engine's virtual clock (0.1 s per call); ``read`` is the same time for the SQLite
    store, which reads its own clock inside the transaction."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += LIMIT_CLOCK_STEP_S
        return self.now

    def read(self) -> float:
        return self.now


def _time(make_engine: Callable[[], Engine], tool: str, args: Any, plan: _Plan, overhead: float) -> Latency:
    engine = make_engine()
    decide = engine.decide

    return decision_latency(decide, tool, args, plan.calls, plan.rounds, overhead, warm=700)


def _redis_missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py not installed (pip install 'plr[fleet]')"
    return None


def _row(label: str, store: str, lat: Latency, mem: Latency) -> Row:
    return store_row(NAME, f"{label}, {store}", lat, mem, P50_TARGET_NS)


def run(cfg: Config) -> Section:
    plan = _plan(cfg)
    section = Section(NAME, TITLE)
    overhead = timer_overhead_ns()
    policy = compile_source(POLICY, "bench.plr")
    missing = _redis_missing()
    with tempfile.TemporaryDirectory(prefix="plr-bench-state-") as tmp:
        redis_ctx = None
        url = None
        if missing is None:
            from .bench_redis import redis_server

            redis_ctx = redis_server()
            url = redis_ctx.__enter__()
        try:
            for tool, (label, args) in CASES.items():

                def on_memory() -> Engine:
                    return Engine(policy, clock=_Clock(), store=MemoryLimitStore())

                def on_sqlite(tool: str = tool) -> Engine:
                    clock = _Clock()
                    return Engine(policy, clock=clock, store=SqliteLimitStore(Path(tmp) / f"{tool}.sqlite", clock=clock.read))

                mem = _time(on_memory, tool, args, plan, overhead)
                section.rows.append(Row(NAME, f"{label}, in-process store", mem.text(), mem.values(), status="INFO"))
                sql = _time(on_sqlite, tool, args, plan, overhead)
                section.rows.append(_row(label, "SQLite store (WAL file)", sql, mem))
                if url is None:
                    section.rows.append(Row(NAME, f"{label}, Redis store", f"skipped: {missing}", status="SKIP"))
                    continue
                from dsl.state.redis import RedisLimitStore

                def on_redis(tool: str = tool) -> Engine:
                    store = RedisLimitStore.from_url(url, prefix=f"bench-state:{tool}:", use_server_time=False)
                    return Engine(policy, clock=_Clock(), store=store)

                red = _time(on_redis, tool, args, plan, overhead)
                section.rows.append(_row(label, "Redis store (TCP)", red, mem))
        finally:
            if redis_ctx is not None:
                redis_ctx.__exit__(None, None, None)
    section.notes.append(
        "virtual clock (0.1 s per call): every store holds the same ~600 hits (amounts) in the one-minute "
        f"window; p50/p99 of single calls minus the timer overhead ({overhead:.0f} ns), median of "
        f"{plan.rounds} rounds × {plan.calls:,} calls. SQLite: one BEGIN IMMEDIATE transaction on a WAL file "
        "(synchronous=NORMAL: no fsync per call); Redis: one EVALSHA round trip over TCP to 127.0.0.1"
    )
    return section
