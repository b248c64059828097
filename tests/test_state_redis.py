"""Limit counters in a real Redis: same semantics as in-process, atomic across replicas,
fail closed while Redis is down, recover when it returns."""

from __future__ import annotations

import threading

import pytest

from dsl.compiler import compile_source
from dsl.engine import Engine
from dsl.state.memory import MemoryLimitStore
from dsl.state.redis import RedisLimitStore

POLICY = compile_source(
    'default deny\nallow tool "cancel-task"\nlimit tool "cancel-task" to 10 per minute per session\n'
    'allow tool "other"\nlimit all tools to 15 per minute per identity\n',
    "fleet.plr",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_same_answers_as_the_in_memory_store(redis_server):
    redis_store = RedisLimitStore(redis_server.client(), use_server_time=False)
    memory = MemoryLimitStore()
    keys = [("a", 3, 10.0), ("b", 5, 60.0)]
    for t in [0, 1, 2, 3, 9.999, 10, 10.5, 11, 12, 20, 59, 60, 61, 70, 70, 70, 70, 71]:
        got, want = redis_store.acquire_which(keys, 1000 + t), memory.acquire_which(keys, 1000 + t)
        assert (got is None) == (want is None), t
        if want is not None:
            assert got[1] == want[1] and abs(got[0] - want[0]) < 1e-9, (t, got, want)


def test_window_edge_exactly_window_seconds_later(redis_server):
    store = RedisLimitStore(redis_server.client(), use_server_time=False)
    assert store.acquire([("k", 1, 60.0)], 100.0) is None
    assert abs(store.acquire([("k", 1, 60.0)], 159.9) - 0.1) < 1e-6
    assert store.acquire([("k", 1, 60.0)], 160.0) is None


def test_two_replicas_share_one_quota_under_concurrency(redis_server):
    engines = [Engine(POLICY, store=RedisLimitStore(redis_server.client())) for _ in range(2)]
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def call(i: int) -> None:
        barrier.wait()
        d = engines[i % 2].decide("cancel-task", {}, session="s1", identity=f"id{i}")
        with lock:
            results.append(d.code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("allowed") == 10
    assert results.count("rate_limited") == 10
    # another session has its own quota, on either replica
    assert engines[1].decide("cancel-task", {}, session="s2").code == "allowed"


def test_rate_limited_decision_names_the_limit_and_retry(redis_server):
    clock = Clock()
    e = Engine(POLICY, clock=clock, store=RedisLimitStore(redis_server.client(), use_server_time=False))
    for _ in range(10):
        assert e.decide("cancel-task", {}, session="s", identity="u").code == "allowed"
    clock.now += 12.5
    d = e.decide("cancel-task", {}, session="s", identity="u")
    assert (d.effect, d.code, d.rule) == ("deny", "rate_limited", "fleet.plr:3")
    assert abs(d.retry_after - 47.5) < 1e-6
    for _ in range(5):
        assert e.decide("other", {}, session="s2", identity="u").code == "allowed"
    d = e.decide("other", {}, session="s3", identity="u")  # 10 cancels + 5 others = 15 per identity
    assert d.code == "rate_limited" and d.rule == "fleet.plr:5"


def test_redis_down_denies_with_state_unavailable_then_recovers(redis_server):
    e = Engine(POLICY, store=RedisLimitStore.from_url(redis_server.url))
    assert e.decide("cancel-task", {}, session="s").code == "allowed"
    redis_server.stop()
    for _ in range(3):
        d = e.decide("cancel-task", {}, session="s")
        assert (d.effect, d.code) == ("deny", "state_unavailable"), d
        assert "redis" in d.reason
    # a tool without limits does not need the store
    redis_server.start()
    d = e.decide("cancel-task", {}, session="s")
    assert d.code == "allowed", d


def test_peek_answers_like_acquire_and_records_nothing(redis_server):
    """`peek_which` (asked before a human is asked to approve) says what `acquire_which` would say,
    on Redis as in memory, and never uses up quota."""
    redis_store = RedisLimitStore(redis_server.client(), use_server_time=False)
    memory = MemoryLimitStore()
    keys = [("peek-a", 2, 10.0), ("peek-b", 3, 60.0)]
    for store in (redis_store, memory):
        for _ in range(5):
            assert store.peek_which(keys, 1000.0) is None  # peeking counts nothing
        assert store.acquire_which(keys, 1000.0) is None
        assert store.acquire_which(keys, 1001.0) is None
        full = store.peek_which(keys, 1002.0)
        assert full is not None and full[1] == 0 and abs(full[0] - 8.0) < 1e-9
        assert store.acquire_which(keys, 1002.0) == full  # acquire agrees, and records nothing either
        assert store.peek_which(keys, 1010.0) is None  # the window moved on


def test_engine_rate_limit_if_approved_counts_nothing() -> None:
    clock = Clock()
    policy = compile_source(
        'default deny\ndeny tool "cancel-task" unless approved\nlimit tool "cancel-task" to 2 per minute per session\n',
        "p.plr",
    )
    e = Engine(policy, clock=clock)
    for _ in range(3):
        assert e.rate_limit_if_approved("cancel-task", session="s") is None
    assert e.decide("cancel-task", session="s").effect == "approval_required"
    for _ in range(2):
        assert e.decide("cancel-task", session="s", approved=True).code == "allowed"
    limited = e.rate_limit_if_approved("cancel-task", session="s")
    assert limited is not None and limited.code == "rate_limited" and limited.retry_after == 60.0
    assert e.rate_limit_if_approved("cancel-task", session="other") is None  # per session
    assert e.rate_limit_if_approved("no-such-tool", session="s") is None
    clock.now += 60
    assert e.rate_limit_if_approved("cancel-task", session="s") is None


# --- spend caps and refunds under concurrent replicas ----------------------------------------

SPEND_POLICY = """default allow
limit tool "call" to 150 per hour per global
limit tool "pay" to 1000 of args.amount per calendar day per global
limit tool "try" to 60 of args.amount per hour per global refund on error
"""


def _spender(url: str, calls: int, start, out) -> None:  # type: ignore[no-untyped-def]
    """One replica: its own client and engine on Redis's clock; calls as fast as it can."""
    engine = Engine(compile_source(SPEND_POLICY), store=RedisLimitStore.from_url(url))
    start.wait()
    allowed = {"call": 0, "pay": 0, "try": 0, "refunded": 0}
    for i in range(calls):
        for tool, args in (("call", None), ("pay", {"amount": 7}), ("try", {"amount": 3})):
            d = engine.decide(tool, args)
            if d.effect == "allow":
                allowed[tool] += 1
                if tool == "try" and i % 2 and engine.refund(d):  # every other one "fails upstream"
                    allowed["refunded"] += 1
            else:
                assert d.code == "rate_limited", d.reason
    out.put(allowed)


@pytest.mark.slow
def test_replicas_spending_at_once_never_pass_the_cap_nor_lose_an_update(redis_server) -> None:
    """Three processes, each its own Redis client, race for one spend cap, one call counter and
    one refundable cap: exactly the cap is let through (no lost update), and after the refunds
    the ledger holds exactly what was spent and not given back."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_spender, args=(redis_server.url, 200, start, out)) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sum(r["call"] for r in results) == 150
    assert sum(r["pay"] for r in results) == 1000 // 7
    assert sum(r["call"] > 0 for r in results) >= 2  # they really competed
    # the refundable cap (20 calls of 3 at any moment): every allowed call minus every refund is
    # what the ledger holds; topping it up from here lands exactly on the cap
    tried, refunded = sum(r["try"] for r in results), sum(r["refunded"] for r in results)
    assert refunded > 0 and tried > 20
    engine = Engine(compile_source(SPEND_POLICY), store=RedisLimitStore.from_url(redis_server.url))
    topped = 0
    while engine.decide("try", {"amount": 3}).effect == "allow":
        topped += 1
    assert tried - refunded + topped == 20
    client = redis_server.client()
    amounts = []
    for key in client.scan_iter(match=b"plr:limit:t\x00try*"):
        amounts += [float(m.split(b":")[1]) for m in client.zrange(key, 0, -1)]  # SEQ:AMOUNT:TOKEN
    assert sum(amounts) == 60.0 and len(amounts) == 20
