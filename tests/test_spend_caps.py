"""Spend caps (`limit … to N of args.amount`) and `refund on error`: the language, the JSON and
the engine. Every decision test runs on each limit store (memory, SQLite, a real Redis: the
``limit_store`` fixture), which must answer alike; the stores' own contract is in tests/state/."""

from __future__ import annotations

import math

import pytest

from dsl.compiler import compile_source
from dsl.engine import Engine
from dsl.errors import PlrError
from dsl.format import format_source
from dsl.policy import load_policy
from dsl.tester import VirtualClock, run
from tests.state.stores import limit_store, redis_for_stores  # noqa: F401 - fixtures

CAP = """
default allow
limit tool "create_refund" to 500 of args.amount per day per identity
"""


def memory_engine(text: str) -> tuple[Engine, VirtualClock]:
    clock = VirtualClock()
    return Engine(compile_source(text), clock=clock), clock


@pytest.fixture
def engine(limit_store):  # type: ignore[no-untyped-def]
    """``engine(text) -> (Engine, clock)`` on the parametrised store, read through the clock."""

    def make(text: str) -> tuple[Engine, VirtualClock]:
        clock = VirtualClock()
        return Engine(compile_source(text), clock=clock, store=limit_store(clock)), clock

    return make


def test_the_cap_adds_up_amounts_and_says_what_is_left(engine) -> None:  # type: ignore[no-untyped-def]
    e, _ = engine(CAP)
    assert e.decide("create_refund", {"amount": 200}, identity="ann").effect == "allow"
    assert e.decide("create_refund", {"amount": 250.5}, identity="ann").effect == "allow"
    d = e.decide("create_refund", {"amount": 50}, identity="ann")
    assert (d.effect, d.code) == ("deny", "rate_limited")
    assert "49.5 left, this call asks 50" in d.reason
    assert d.retry_after == pytest.approx(86400)
    # exactly what is left still fits; then nothing does
    assert e.decide("create_refund", {"amount": 49.5}, identity="ann").effect == "allow"
    assert e.decide("create_refund", {"amount": 0.01}, identity="ann").effect == "deny"
    # another identity has its own cap
    assert e.decide("create_refund", {"amount": 500}, identity="bob").effect == "allow"


def test_a_denied_call_spends_nothing_and_the_window_slides(engine) -> None:  # type: ignore[no-untyped-def]
    e, clock = engine(CAP)
    assert e.decide("create_refund", {"amount": 400}, identity="a").effect == "allow"
    assert e.decide("create_refund", {"amount": 200}, identity="a").effect == "deny"
    assert e.decide("create_refund", {"amount": 100}, identity="a").effect == "allow"  # 400 + 100
    clock.advance(86400)
    assert e.decide("create_refund", {"amount": 500}, identity="a").effect == "allow"


@pytest.mark.parametrize(
    "args",
    [{}, {"amount": "100"}, {"amount": True}, {"amount": None}, {"amount": -5}, {"amount": [1]}, {"amount": {"v": 1}}],
)
def test_an_amount_that_is_not_a_finite_number_is_denied(args: dict) -> None:
    e, _ = memory_engine(CAP)
    d = e.decide("create_refund", args, identity="a")
    assert (d.effect, d.code) == ("deny", "invalid_args")
    assert "args.amount" in d.reason


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_denied(bad: float) -> None:
    e, _ = memory_engine(CAP)
    assert e.decide("create_refund", {"amount": bad}, identity="a").effect == "deny"


def test_an_amount_above_the_whole_cap_is_denied_at_once(engine) -> None:  # type: ignore[no-untyped-def]
    e, _ = engine(CAP)
    d = e.decide("create_refund", {"amount": 501}, identity="a")
    assert d.code == "rate_limited" and "500 left" in d.reason


def test_refund_on_error_gives_the_amount_back(engine) -> None:  # type: ignore[no-untyped-def]
    e, _ = engine('default allow\nlimit tool "pay" to 100 of args.amount per hour per global refund on error\n')
    d = e.decide("pay", {"amount": 80})
    assert d.effect == "allow" and d.charge is not None
    assert e.decide("pay", {"amount": 30}).effect == "deny"
    assert e.refund(d) is True
    assert e.decide("pay", {"amount": 30}).effect == "allow"
    assert e.refund(e.decide("other")) is False  # nothing was charged


def test_refund_on_error_gives_a_call_back(engine) -> None:  # type: ignore[no-untyped-def]
    e, _ = engine('default allow\nlimit tool "t" to 1 per minute refund on error\n')
    d = e.decide("t", session="s")
    assert e.decide("t", session="s").code == "rate_limited"
    e.refund(d)
    assert e.decide("t", session="s").effect == "allow"


def test_without_refund_there_is_no_charge_to_give_back(engine) -> None:  # type: ignore[no-untyped-def]
    e, _ = engine(CAP)
    d = e.decide("create_refund", {"amount": 1}, identity="a")
    assert d.charge is None and e.refund(d) is False


def test_spend_caps_and_counters_on_one_tool_are_all_or_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    e, _ = engine(
        'default allow\nlimit tool "pay" to 100 of args.amount per hour per global\nlimit tool "pay" to 2 per hour per global\n'
    )
    assert e.decide("pay", {"amount": 90}).effect == "allow"
    assert e.decide("pay", {"amount": 20}).effect == "deny"  # the cap refuses: the counter is not spent
    assert e.decide("pay", {"amount": 10}).effect == "allow"
    assert e.decide("pay", {"amount": 0}).code == "rate_limited"  # now the call counter refuses


def test_json_carries_the_cap_and_round_trips() -> None:
    policy = compile_source('default allow\nlimit tool "pay" to 12.5 of args.cost.usd per calendar day per identity refund on error\n')
    lim = policy.to_dict()["tools"]["pay"]["limits"][0]
    assert {k: lim[k] for k in ("max", "of", "calendar", "refund", "per")} == {
        "max": 12.5, "of": "args.cost.usd", "calendar": "day", "refund": "error", "per": "identity",
    }  # fmt: skip
    assert load_policy(policy.to_dict()).to_dict() == policy.to_dict()
    e = Engine.from_data(policy.to_dict(source=False))
    assert e.decide("pay", {"cost": {"usd": 12.5}}, identity="a").effect == "allow"
    assert e.decide("pay", {"cost": {"usd": 0.5}}, identity="a").effect == "deny"


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"max": 2.5, "window": 60, "per": "global"}, "fractional max"),
        ({"max": 5, "window": 60, "per": "global", "of": "identity"}, "args"),
        ({"max": 5, "window": 60, "per": "global", "tz": "Europe/Paris"}, "calendar"),
        ({"max": 5, "window": 60, "per": "global", "calendar": "day", "tz": "Nowhere/Land"}, "time zone"),
        ({"max": 5, "window": 60, "per": "global", "refund": "always"}, "refund"),
    ],
)
def test_json_refuses_a_malformed_extension(doc: dict, message: str) -> None:
    data = {"version": "1", "default": "allow", "tools": {"t": {"limits": [doc]}}}
    with pytest.raises(PlrError, match=message):
        load_policy(data)


def test_the_language_refuses_a_cap_on_something_else_than_arguments() -> None:
    with pytest.raises(PlrError, match="args"):
        compile_source('default allow\nlimit tool "t" to 5 of identity per day\n')
    with pytest.raises(PlrError, match="whole number"):
        compile_source('default allow\nlimit tool "t" to 2.5 per day\n')


def test_format_keeps_every_part_of_the_limit() -> None:
    text = 'default allow\n\nlimit tool "t" to 12.5 of args.amount per calendar week "Europe/Paris" per identity refund on error\n'
    assert format_source(text) == text


def test_plr_test_can_test_a_spend_cap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = CAP + """
test "refunds stop at 500 a day" {
    as identity "ann"
    call "create_refund" {amount: 300} -> allow
    call "create_refund" {amount: 300} -> deny rate_limited
    call "create_refund" {amount: 200} -> allow
    call "create_refund" {} -> deny
    after 1d
    call "create_refund" {amount: 500} -> allow
}
"""
    (tmp_path / "cap.plr").write_text(text)
    report = run([str(tmp_path / "cap.plr")])
    assert report.errors == [] and (report.passed, report.failed) == (1, 0)
    (tmp_path / "cap.plr").write_text(text.replace("{amount: 200} -> allow", "{amount: 201} -> allow"))
    assert run([str(tmp_path / "cap.plr")]).failed == 1


def test_decompile_keeps_spend_caps_calendar_windows_and_refunds() -> None:
    from dsl.decompile import decompile

    policy = compile_source(
        'default allow\nlimit tool "pay" to 12.5 of args.amount per calendar day "Europe/Paris" per identity refund on error\n',
        source=False,
    )
    assert compile_source(decompile(policy), source=False).to_dict() == policy.to_dict()


@pytest.mark.parametrize("limit_store", ["sqlite", "redis"], indirect=True)  # stores more than one process shares
def test_two_engines_on_one_shared_store_share_one_cap(limit_store) -> None:  # type: ignore[no-untyped-def]
    """Two proxies (each its own engine and store object) on one file or one Redis: one cap."""
    clock = VirtualClock()
    policy = compile_source('default allow\nlimit tool "pay" to 100 of args.amount per hour per identity refund on error\n')
    a = Engine(policy, clock=clock, store=limit_store(clock))
    b = Engine(policy, clock=clock, store=limit_store(clock))
    paid = a.decide("pay", {"amount": 60}, identity="ann")
    assert paid.effect == "allow"
    d = b.decide("pay", {"amount": 50}, identity="ann")
    assert d.code == "rate_limited" and "40 left" in d.reason
    assert b.refund(paid) is True  # the other replica gives back what this one took
    assert b.decide("pay", {"amount": 100}, identity="ann").effect == "allow"
    assert a.decide("pay", {"amount": 1}, identity="ann").code == "rate_limited"
