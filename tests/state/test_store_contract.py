"""Every limit store keeps the same promises: ``acquire_which``, ``spend`` and ``refund`` answer
alike on memory, SQLite and Redis (spend caps, refunds, plain counters beside them, exact
windows), checked on fixed cases with known answers and on long random sequences against the
in-process store, answer for answer (equal floats, not approximately)."""

from __future__ import annotations

import random

import pytest

from dsl.state.memory import MemoryLimitStore
from tests.state.stores import limit_store, redis_for_stores  # noqa: F401 - fixtures

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_spend_adds_up_and_says_what_is_left(limit_store) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    store = limit_store(clock)
    cap = ("cap", 100.0, 60.0)
    assert store.spend([(*cap, 60.0)], clock.now, "t1") is None
    clock.now += 10
    assert store.spend([(*cap, 30.5)], clock.now, "t2") is None
    clock.now += 5
    # 9.5 left; 20 fits once the first 60 leaves the window, 45 s from now
    assert store.spend([(*cap, 20.0)], clock.now, "t3") == (45.0, 0, 9.5)
    assert store.spend([(*cap, 9.5)], clock.now, "t4") is None  # exactly what is left fits
    assert store.spend([(*cap, 0.0)], clock.now, "t5") is None  # a zero amount always fits
    # more than the whole cap never fits: the wait is the whole window
    assert store.spend([(*cap, 100.5)], clock.now, "t6") == (60.0, 0, 0.0)
    clock.now += 45  # the 60 spent at T0 leaves the window exactly now
    assert store.spend([(*cap, 60.0)], clock.now, "t7") is None


def test_refund_gives_back_only_that_calls_amounts(limit_store) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    store = limit_store(clock)
    entries = [("cap", 20.0, 60.0, 4.0), ("calls", 2.0, 60.0, 1)]
    assert store.spend(entries, clock.now, "a") is None
    assert store.spend(entries, clock.now, "b") is None
    assert store.spend(entries, clock.now, "c") == (60.0, 1, 0.0)  # the refundable counter is full
    store.refund(["cap", "calls"], "a")
    store.refund(["cap", "calls"], "a")  # twice gives back nothing more
    store.refund(["cap", "calls"], "nobody")
    assert store.spend(entries, clock.now, "c") is None
    assert store.spend([("cap", 20.0, 60.0, 12.5)], clock.now, "d") == (60.0, 0, 12.0)  # b and c: 8 spent


def test_spend_is_all_or_nothing_with_plain_counters(limit_store) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    store = limit_store(clock)
    assert store.spend([("n", 2, 30.0, None), ("cap", 5.0, 30.0, 5.0)], clock.now, "a") is None
    # the cap refuses: the counter beside it is not counted
    assert store.spend([("n", 2, 30.0, None), ("cap", 5.0, 30.0, 1.0)], clock.now, "b") == (30.0, 1, 0.0)
    assert store.acquire_which([("n", 2, 30.0)], clock.now) is None  # one hit so far: room for one
    clock.now += 12
    assert store.acquire_which([("n", 2, 30.0)], clock.now) == (18.0, 0)
    # the longest wait wins and its entry is named
    assert store.spend([("n", 2, 30.0, None), ("cap", 5.0, 10.0, 1.0)], clock.now, "c") == (18.0, 0, 0.0)


def test_refund_leaves_plain_counters_alone(limit_store) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    store = limit_store(clock)
    assert store.spend([("n", 1, 30.0, None), ("cap", 5.0, 30.0, 1.0)], clock.now, "a") is None
    store.refund(["n", "cap"], "a")  # only ledger entries are refundable
    assert store.acquire_which([("n", 1, 30.0)], clock.now) == (30.0, 0)
    assert store.spend([("cap", 5.0, 30.0, 5.0)], clock.now, "b") is None


def _random_run(rng: random.Random, store, clock: Clock) -> list[object]:  # type: ignore[no-untyped-def]
    """A random sequence of spends, refunds and acquires; every answer, in order."""
    oracle_keys = {"a": (1.0, 30.0), "b": (0.6, 7.5), "r": (3.0, 12.0)}
    answers: list[object] = []
    spent: list[tuple[list[str], str]] = []
    for step in range(400):
        clock.now += rng.choice([0.0, 0.0, 0.1, 0.3, 1.7, 2.5, 7.5, 13.37])
        op = rng.random()
        if op < 0.12 and spent:
            keys, token = rng.choice(spent)
            store.refund(keys, token)
            answers.append(("refund", token))
            continue
        if op < 0.25:
            answers.append(store.acquire_which([("c", 3, 10.0), ("d", 2, 4.5)], clock.now))
            continue
        entries: list[tuple[str, float, float, float | None]] = []
        for k in sorted(rng.sample(["a", "b", "r", "c"], rng.randint(1, 3))):
            if k == "c":
                entries.append(("c", 3, 10.0, None))
            elif k == "r":
                entries.append(("r", *oracle_keys["r"], 1))  # a refundable call counter
            else:
                entries.append((k, *oracle_keys[k], rng.choice([0.0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.7, 1.1])))
        token = f"tok{step}"
        r = store.spend(entries, clock.now, token)
        answers.append(r)
        if r is None:
            spent.append(([e[0] for e in entries if e[3] is not None], token))
    return answers


@pytest.mark.parametrize("limit_store", ["sqlite", "redis"], indirect=True)  # the in-process one is the reference
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences_answer_exactly_as_in_process(limit_store, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Fractional amounts (0.1 + 0.2 is not 0.3), calls at the same instant, entries leaving the
    window at its exact edge: the stores must add up and expire exactly as the in-process one."""
    clock, ref_clock = Clock(), Clock()
    got = _random_run(random.Random(seed), limit_store(clock), clock)
    want = _random_run(random.Random(seed), MemoryLimitStore(), ref_clock)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"step {i}: {g} != {w}"
    refused = [w for w in want if isinstance(w, tuple) and w and w[0] != "refund"]
    assert len(refused) > 40 and any(w is None for w in want)  # both answers occur often


def test_the_window_edge_is_exact_at_a_real_timestamp(limit_store) -> None:  # type: ignore[no-untyped-def]
    """``now - t >= window`` on full-precision epoch times (no 14-digit rounding anywhere)."""
    clock = Clock(1_700_000_000.123456)
    store = limit_store(clock)
    assert store.spend([("k", 1.0, 0.3, 1.0)], clock.now, "a") is None
    clock.now = 1_700_000_000.123456 + 0.29999
    r = store.spend([("k", 1.0, 0.3, 1.0)], clock.now, "b")
    want = MemoryLimitStore()
    want.spend([("k", 1.0, 0.3, 1.0)], 1_700_000_000.123456, "a")
    assert r == want.spend([("k", 1.0, 0.3, 1.0)], clock.now, "b")
    assert r is not None and r[0] == pytest.approx(0.00001, abs=1e-6)
    clock.now = 1_700_000_000.123456 + 0.3
    assert store.spend([("k", 1.0, 0.3, 1.0)], clock.now, "c") == want.spend([("k", 1.0, 0.3, 1.0)], clock.now, "c")


@pytest.mark.parametrize(
    "other",
    [
        "limit all tools to 1000 per day per identity refund on error",
        "limit all tools to 1000 of args.n per day per identity",  # amounts, not calls
    ],
)
def test_limits_that_count_other_things_at_the_same_place_share_no_counter(limit_store, other: str) -> None:  # type: ignore[no-untyped-def]
    """Calls and amounts never share a counter: a reload that turns a call count into a spend cap
    (or back) starts the new kind from zero instead of adding calls to amounts."""
    from dsl.compiler import compile_source
    from dsl.engine import Engine

    clock = Clock()
    store = limit_store(clock)
    daily = Engine(compile_source("default allow\nlimit all tools to 3 per day per identity\n"), clock=clock, store=store)
    other_kind = Engine(compile_source(f"default allow\n{other}\n"), clock=clock, store=store)
    for _ in range(5):
        other_kind.decide("other", {"n": 1}, identity="alice")
    assert [daily.decide("t", {"n": 1}, identity="alice").effect for _ in range(4)] == ["allow"] * 3 + ["deny"]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("3 per minute", "3 per day"),  # tightened during an incident: no new quota
        ("3 per hour", "2 per day"),
        ("3 per day", "3 per minute"),
    ],
)
def test_a_reload_that_changes_a_window_keeps_the_calls_counted(limit_store, before: str, after: str) -> None:  # type: ignore[no-untyped-def]
    from dsl.compiler import compile_source
    from dsl.engine import Engine

    clock = Clock()
    engine = Engine(compile_source(f"default allow\nlimit all tools to {before} per global\n"), clock=clock, store=limit_store(clock))
    assert [engine.decide("t").effect for _ in range(4)] == ["allow"] * 3 + ["deny"]
    clock.now += 10
    engine.replace_policy(compile_source(f"default allow\nlimit all tools to {after} per global\n"))
    assert engine.decide("t").effect == "deny"


def test_two_policies_limits_that_count_alike_share_their_counter(limit_store) -> None:  # type: ignore[no-untyped-def]
    """One agent's calls through two proxies of one policy count together."""
    from dsl.compiler import compile_source
    from dsl.engine import Engine

    clock = Clock()
    store = limit_store(clock)
    policy = "default allow\nlimit all tools to 3 per day per identity\n"
    one, two = (Engine(compile_source(policy), clock=clock, store=store) for _ in range(2))
    assert [e.decide("t", {}, identity="alice").effect for e in (one, two, one, two)] == ["allow"] * 3 + ["deny"]
