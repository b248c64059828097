"""The audit filters `plr audit` and the console's Audit page share (dsl/audit_filters.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from dsl.audit_filters import AuditFilter, is_decision, since_cutoff

NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)
OLD = {"ts": "2026-12-05T09:00:00.000Z", "tool": "cancel-task", "effect": "deny", "code": "require", "session": "s1"}
NEW = {"ts": "2026-12-05T11:59:00.000Z", "tool": "get-task", "effect": "allow", "code": "allowed", "identity": "ops"}
EVENT = {"ts": "2026-12-05T11:00:00.000Z", "event": "tools_compared"}
RECORDS = [OLD, NEW, EVENT]


def kept(f: AuditFilter) -> list[dict]:
    return [r for r in RECORDS if f.matches(r)]


def test_an_empty_filter_keeps_everything_events_included():
    assert kept(AuditFilter.of()) == RECORDS
    assert [r for r in RECORDS if is_decision(r)] == [OLD, NEW]


def test_each_field_keeps_the_records_with_one_of_its_values():
    assert kept(AuditFilter.of(tool="get-task")) == [NEW]
    assert kept(AuditFilter.of(effect=("deny", "allow"))) == [OLD, NEW]
    assert kept(AuditFilter.of(code=["require"], session="s1")) == [OLD]
    assert kept(AuditFilter.of(identity="ops")) == [NEW]
    assert kept(AuditFilter.of(tool="get-task", effect="deny")) == []  # every field must match


def test_values_are_compared_as_they_are():
    assert not AuditFilter.of(tool="5").matches({"tool": 5, "effect": "deny"})
    assert not AuditFilter.of(identity="None").matches({"identity": None, "effect": "deny"})


def test_since_keeps_records_at_or_after_the_cutoff_and_drops_those_without_a_time():
    f = AuditFilter.of(since="2026-12-05T10:00:00Z")
    assert kept(f) == [NEW, EVENT]
    assert not f.matches({"ts": "2d", "effect": "deny"})  # a relative or junk ts is not "two days ago"
    assert since_cutoff("1h", NOW) == NOW - dt.timedelta(hours=1)
    assert since_cutoff("") is None and since_cutoff(None) is None


@pytest.mark.parametrize(("since", "why"), [("yesterday", "expected 90s, 15m"), ("99999999999d", "before the year 1")])
def test_an_unreadable_since_is_one_readable_sentence(since, why):
    with pytest.raises(ValueError, match=why):
        since_cutoff(since)
    with pytest.raises(ValueError, match=why):
        AuditFilter.of(since=since)


def test_the_query_string_reads_one_value_a_field_and_keeps_a_bad_since_as_an_error():
    f = AuditFilter.from_query({"tool": " get-task ", "effect": "", "since": "1h", "bogus": "x"})
    assert f.wanted("tool") == ("get-task",) and f.wanted("effect") == () and f.cutoff is not None
    assert f.query() == {"tool": "get-task", "since": "1h"}
    bad = AuditFilter.from_query({"effect": "deny", "since": "yesterday"})
    assert bad.error == "since: expected 90s, 15m, 1h, 2d or an ISO timestamp"
    assert bad.cutoff is None and kept(bad) == [OLD]  # the rest still filters; the page says what was wrong
    assert bad.query() == {"effect": "deny", "since": "yesterday"}  # the link keeps what was typed
    assert AuditFilter.from_query({"tool": "x" * 2000}).wanted("tool") == ("x" * 500,)
