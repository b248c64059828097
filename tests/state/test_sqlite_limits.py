"""The SQLite limit store: same answers as the in-process store, persistent, shared safely by
several OS processes (no lost update, exact caps), and failing closed."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from dsl.compiler import compile_source
from dsl.engine import Engine
from dsl.state import MemoryLimitStore, StateUnavailable, limit_store_spec, open_limit_store
from dsl.state.sqlite_limits import SqliteLimitStore


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_like_the_memory_store(tmp_path: Path) -> None:
    clock = Clock()
    stores = [SqliteLimitStore(tmp_path / "l.sqlite", clock=clock), MemoryLimitStore()]
    answers: list[list[object]] = [[], []]
    for step in range(12):
        for i, store in enumerate(stores):
            keys = [("a", 3, 10.0), ("b", 5, 30.0)]
            r = store.acquire_which(keys, clock.now)
            answers[i].append(None if r is None else (round(r[0], 6), r[1]))
        clock.now += 2.5
    assert answers[0] == answers[1]
    assert answers[0][3] is not None  # the 4th call within 10 s is refused


def test_counters_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    SqliteLimitStore(tmp_path / "l.sqlite", clock=clock).acquire_which([("k", 1, 86400.0)], 0)
    again = SqliteLimitStore(tmp_path / "l.sqlite", clock=clock)  # a new proxy process, same file
    r = again.acquire_which([("k", 1, 86400.0)], 0)
    assert r is not None and r[0] == pytest.approx(86400)


def test_the_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    SqliteLimitStore(tmp_path / "sub" / "l.sqlite")
    assert (os.stat(tmp_path / "sub" / "l.sqlite").st_mode & 0o777) == 0o600
    mode = sqlite3.connect(tmp_path / "sub" / "l.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_spend_and_refund(tmp_path: Path) -> None:
    store = SqliteLimitStore(tmp_path / "l.sqlite", clock=Clock())
    assert store.spend([("cap", 100.0, 60.0, 60.0)], 0, "t1") is None
    refused = store.spend([("cap", 100.0, 60.0, 50.0)], 0, "t2")
    assert refused is not None and refused[1:] == (0, 40.0)
    store.refund(["cap"], "t1")
    assert store.spend([("cap", 100.0, 60.0, 50.0)], 0, "t3") is None


def test_engine_with_the_sqlite_store_keeps_a_spend_cap_across_engines(tmp_path: Path) -> None:
    policy = compile_source('default allow\nlimit tool "pay" to 100 of args.amount per calendar day per identity\n')
    first = Engine(policy, store=SqliteLimitStore(tmp_path / "l.sqlite"))
    assert first.decide("pay", {"amount": 70}, identity="a").effect == "allow"
    second = Engine(policy, store=SqliteLimitStore(tmp_path / "l.sqlite"))
    d = second.decide("pay", {"amount": 40}, identity="a")
    assert d.code == "rate_limited" and "30 left" in d.reason


def test_a_corrupt_file_fails_closed(tmp_path: Path) -> None:
    bad = tmp_path / "l.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateUnavailable):
        SqliteLimitStore(bad)


def test_a_locked_database_denies_the_call(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    store = SqliteLimitStore(path, busy_timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        engine = Engine(compile_source('default allow\nlimit tool "t" to 5 per minute\n'), store=store)
        d = engine.decide("t", session="s")
        assert (d.effect, d.code) == ("deny", "state_unavailable")
    finally:
        holder.execute("ROLLBACK")
    assert engine.decide("t", session="s").effect == "allow"


def test_an_unwritable_place_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StateUnavailable):
        SqliteLimitStore(tmp_path / "file" / "l.sqlite")  # a path under a regular file


def test_open_limit_store_and_the_default_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert limit_store_spec(None, has_limits=True) == "sqlite"
    assert limit_store_spec(None, has_limits=False) == "memory"
    assert limit_store_spec("memory", has_limits=True) == "memory"
    store, where = open_limit_store(f"sqlite:{tmp_path / 'x.sqlite'}")
    assert isinstance(store, SqliteLimitStore) and where == f"sqlite at {tmp_path / 'x.sqlite'}"
    monkeypatch.setenv("PLR_LIMITS_DB", str(tmp_path / "default.sqlite"))
    store, where = open_limit_store("sqlite")
    assert isinstance(store, SqliteLimitStore) and str(tmp_path / "default.sqlite") in where
    assert isinstance(open_limit_store("memory")[0], MemoryLimitStore)
    with pytest.raises(ValueError, match="unknown state store"):
        open_limit_store("mongodb://x")


# --- several OS processes on one file --------------------------------------------------------

POLICY = """default allow
limit tool "call" to 150 per hour per global
limit tool "pay" to 1000 of args.amount per calendar day per global
"""


def _hammer(path: str, calls: int, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue) -> None:
    engine = Engine(compile_source(POLICY), store=SqliteLimitStore(path, busy_timeout=30.0))
    start.wait()
    allowed = {"call": 0, "pay": 0}
    for _ in range(calls):
        for tool, args in (("call", None), ("pay", {"amount": 7})):
            d = engine.decide(tool, args)
            if d.effect == "allow":
                allowed[tool] += 1
            else:
                assert d.code == "rate_limited", d.reason  # never state_unavailable under load
    out.put(allowed)


@pytest.mark.slow
def test_two_processes_share_one_file_with_no_lost_update(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    path = str(tmp_path / "shared.sqlite")
    SqliteLimitStore(path)  # create the file before the race
    procs = [ctx.Process(target=_hammer, args=(path, 120, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    # 240 attempts each: exactly the cap is let through, split between the two processes
    assert sum(r["call"] for r in results) == 150
    assert sum(r["pay"] for r in results) == 1000 // 7
    assert all(r["call"] > 0 for r in results)  # both really competed
    rows = sqlite3.connect(path).execute("SELECT COUNT(*), SUM(amount) FROM limit_hits WHERE amount = 7").fetchone()
    assert rows == (142, 994.0)


# -- one file, several policies ---------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        "limit all tools to 1000 per second per identity",  # a shorter window
        "limit all tools to 1000 per calendar day per identity",
        "limit all tools to 1000 of args.n per second per identity",
    ],
)
def test_two_policies_sharing_the_machines_file_share_no_counter(tmp_path: Path, other: str) -> None:
    """The review's keycollide.py: two proxies on one machine, two policies, the default shared
    file. The store forgets a key's hits by the window of the call at hand, so a shared counter
    let another policy's `per second` limit forget a `per day` limit's hits: the daily cap let a
    call through every second."""
    clock = Clock()
    path = tmp_path / "limits.sqlite"
    for a in ("a.plr", "b.plr"):
        (tmp_path / a).touch()
    daily_store, _ = open_limit_store(f"sqlite:{path}", policy_source=str(tmp_path / "a.plr"))
    busy_store, _ = open_limit_store(f"sqlite:{path}", policy_source=str(tmp_path / "b.plr"))
    daily_store._clock = busy_store._clock = clock  # type: ignore[attr-defined]
    daily = Engine(compile_source("default allow\nlimit all tools to 3 per day per identity\n"), clock=clock, store=daily_store)
    busy = Engine(compile_source(f"default allow\n{other}\n"), clock=clock, store=busy_store)
    allowed = 0
    for _ in range(10):
        allowed += daily.decide("anything", {"n": 1}, identity="alice").effect == "allow"
        clock.now += 1.05
        busy.decide("other", {"n": 1}, identity="alice")
    assert allowed == 3


def test_one_policy_through_two_proxies_shares_its_counters(tmp_path: Path) -> None:
    """The same policy file, named two ways (a relative path, a symlink): one set of counters,
    as for a desktop client that starts a new proxy per launch."""
    clock = Clock()
    path = tmp_path / "limits.sqlite"
    policy = tmp_path / "policy.plr"
    policy.touch()
    (tmp_path / "link.plr").symlink_to(policy)
    stores = [
        open_limit_store(f"sqlite:{path}", policy_source=str(policy))[0],
        open_limit_store(f"sqlite:{path}", policy_source=str(tmp_path / "link.plr"))[0],
    ]
    engines = [Engine(compile_source("default allow\nlimit all tools to 3 per day per identity\n"), clock=clock, store=s) for s in stores]
    for s in stores:
        s._clock = clock  # type: ignore[attr-defined]
    assert [engines[i % 2].decide("t", identity="alice").effect for i in range(4)] == ["allow"] * 3 + ["deny"]


def test_a_policy_url_names_its_counters_without_its_password() -> None:
    from dsl.state.sqlite_limits import policy_namespace

    ns = policy_namespace("redis://:s3cret@redis.internal:6379/0#plr-policy")
    assert "s3cret" not in ns and ns == policy_namespace("redis://:s3cret@redis.internal:6379/0#plr-policy")
    assert ns != policy_namespace("redis://:s3cret@redis.internal:6379/0#other-policy")
