"""Calendar windows (`per calendar minute|hour|day|week|month`, UTC or a named zone): periods,
boundaries and `retry_after`, through the engine's fake clocks; the decision tests run on each
limit store (memory, SQLite, a real Redis: the ``limit_store`` fixture)."""

from __future__ import annotations

import datetime as dt

import pytest

from dsl.compiler import compile_source
from dsl.engine import Engine
from dsl.engine.calendar import period
from dsl.tester import VirtualClock
from tests.state.stores import limit_store, redis_for_stores  # noqa: F401 - fixtures

UTC = dt.timezone.utc


def ts(*parts: int, tz: dt.tzinfo = UTC) -> float:
    return dt.datetime(*parts, tzinfo=tz).timestamp()


@pytest.mark.parametrize(
    "unit, now, start, end",
    [
        ("minute", ts(2024, 3, 5, 10, 7, 30), ts(2024, 3, 5, 10, 7), ts(2024, 3, 5, 10, 8)),
        ("hour", ts(2024, 3, 5, 10, 7, 30), ts(2024, 3, 5, 10), ts(2024, 3, 5, 11)),
        ("day", ts(2024, 3, 5, 23, 59, 59), ts(2024, 3, 5), ts(2024, 3, 6)),
        ("week", ts(2024, 3, 7, 12), ts(2024, 3, 4), ts(2024, 3, 11)),  # Thursday -> Monday
        ("week", ts(2024, 3, 4), ts(2024, 3, 4), ts(2024, 3, 11)),  # a Monday starts its week
        ("month", ts(2024, 2, 29, 12), ts(2024, 2, 1), ts(2024, 3, 1)),
        ("month", ts(2024, 12, 31, 23), ts(2024, 12, 1), ts(2025, 1, 1)),
    ],
)
def test_periods_in_utc(unit: str, now: float, start: float, end: float) -> None:
    assert period(unit, now) == (start, end)


def test_a_zone_moves_midnight_and_knows_daylight_saving() -> None:
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    start, end = period("day", ts(2024, 3, 5, 23, 30), "Europe/Paris")  # 00:30 on the 6th in Paris
    assert (start, end) == (ts(2024, 3, 6, tz=paris), ts(2024, 3, 7, tz=paris))
    start, end = period("day", ts(2024, 3, 31, 12), "Europe/Paris")  # clocks go forward: 23 hours
    assert end - start == 23 * 3600


@pytest.fixture
def policy(limit_store):  # type: ignore[no-untyped-def]
    """``policy(window) -> Engine`` limiting "t" to 2 per window, on the parametrised store."""

    def make(window: str) -> Engine:
        text = f'default allow\nlimit tool "t" to 2 per {window} per global\n'
        return Engine(compile_source(text), clock=CLOCK, store=limit_store(CLOCK))

    return make


CLOCK = VirtualClock()


def test_the_count_restarts_at_the_boundary_and_retry_after_points_at_it(policy) -> None:  # type: ignore[no-untyped-def]
    CLOCK.now = ts(2024, 3, 5, 10, 59, 0)
    e = policy("calendar hour")
    assert [e.decide("t").effect for _ in range(3)] == ["allow", "allow", "deny"]
    d = e.decide("t")
    assert d.code == "rate_limited" and d.retry_after == pytest.approx(60)
    assert "calendar hour (UTC)" in d.reason
    CLOCK.now = ts(2024, 3, 5, 11, 0, 0)  # one minute later: a new hour
    assert e.decide("t").effect == "allow"


def test_a_sliding_window_does_not_restart_at_the_boundary(policy) -> None:  # type: ignore[no-untyped-def]
    CLOCK.now = ts(2024, 3, 5, 10, 59, 0)
    e = policy("hour")
    assert [e.decide("t").effect for _ in range(3)] == ["allow", "allow", "deny"]
    CLOCK.now = ts(2024, 3, 5, 11, 0, 0)
    d = e.decide("t")
    assert d.effect == "deny" and d.retry_after == pytest.approx(3540)


def test_the_engine_reads_the_wall_clock_for_the_date(limit_store) -> None:  # type: ignore[no-untyped-def]
    wall = lambda: ts(2024, 3, 5, 18)  # noqa: E731
    e = Engine(
        compile_source('default allow\nlimit tool "t" to 1 per calendar day per global\n'),
        wall=wall,
        store=limit_store(wall),
    )
    assert e.decide("t").effect == "allow"
    d = e.decide("t")
    assert d.retry_after == pytest.approx(6 * 3600)


def test_a_month_window_in_a_plr_test(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dsl.tester import run

    text = """default allow
limit tool "report" to 1 per calendar month per global

test "one report a month" {
    call "report" -> allow
    call "report" -> deny rate_limited
    after 30d
    call "report" -> deny rate_limited
    after 1d
    call "report" -> allow
}
"""  # the tests' clock starts on 2024-01-01: January has 31 days
    (tmp_path / "m.plr").write_text(text)
    report = run([str(tmp_path / "m.plr")])
    assert report.errors == [] and (report.passed, report.failed) == (1, 0)


def test_a_calendar_spend_cap_with_refunds_starts_again_each_day(limit_store) -> None:  # type: ignore[no-untyped-def]
    """A spend cap per calendar day: what is left is said, a refund gives an amount back within
    the day, and the new day starts from the whole cap whatever was spent at 23:59."""
    CLOCK.now = ts(2024, 3, 5, 23, 0)
    text = 'default allow\nlimit tool "pay" to 100 of args.amount per calendar day per identity refund on error\n'
    e = Engine(compile_source(text), clock=CLOCK, store=limit_store(CLOCK))
    first = e.decide("pay", {"amount": 70}, identity="ann")
    assert first.effect == "allow"
    CLOCK.now = ts(2024, 3, 5, 23, 59)
    d = e.decide("pay", {"amount": 40}, identity="ann")
    assert d.code == "rate_limited" and "30 left, this call asks 40" in d.reason
    assert d.retry_after == pytest.approx(60)  # the next midnight, not 24 h after the first call
    assert e.refund(first) is True  # the upstream failed: the 70 comes back
    late = e.decide("pay", {"amount": 100}, identity="ann")
    assert late.effect == "allow"
    CLOCK.now = ts(2024, 3, 6, 0, 0, 1)
    assert e.decide("pay", {"amount": 100}, identity="ann").effect == "allow"  # a new day
    assert e.decide("pay", {"amount": 0.5}, identity="ann").code == "rate_limited"
    assert e.decide("pay", {"amount": 100}, identity="bob").effect == "allow"  # per identity


@pytest.mark.parametrize("unit, size", [("minute", 60), ("hour", 3600)])
def test_the_repeated_hour_of_a_fall_back_day_is_periods_of_their_own(unit: str, size: int) -> None:
    # 2024-11-03 01:30 in New York happens twice; 06:30 UTC is the second time (EST)
    now = ts(2024, 11, 3, 6, 30)
    start, end = period(unit, now, "America/New_York")
    assert start <= now < end and end - start == size


@pytest.mark.parametrize("unit, size", [("minute", 60), ("hour", 3600)])
def test_a_zone_whose_clock_moves_by_half_an_hour_still_holds_now(unit: str, size: int) -> None:
    """Lord Howe Island moves its clock by 30 minutes: every instant around the change lies in a
    period of the unit's length (none ended before now, none of 90 minutes)."""
    change = ts(2024, 4, 6, 15, 0)  # 2024-04-07 02:00 LHDT -> 01:30 LHST
    for minutes in range(-90, 91, 7):
        now = change + minutes * 60 + 11.5
        start, end = period(unit, now, "Australia/Lord_Howe")
        assert start <= now < end and end - start == size, (minutes, start, now, end)
