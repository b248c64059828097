"""Calendar windows: which period a moment falls in, and when the next one starts.

A `per calendar day` limit counts the calls of the current day (UTC, or the zone the policy
names) and starts again from zero at midnight, as Intercept's counters do; a sliding `per day`
counts the last 86400 seconds. The engine keys a calendar limit's counter by the period's start,
so every store (memory, SQLite, Redis) needs nothing new: a period's counter simply stops being
used at the boundary, and ``retry_after`` is the time left until then.

Pure functions of a wall-clock time (seconds since the epoch): no state, no I/O.
"""

from __future__ import annotations

from functools import lru_cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime as _dt

__all__ = ["UNITS", "period", "check_zone"]

UNITS = ("minute", "hour", "day", "week", "month")
_FIXED = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
_MONDAY_EPOCH = 4 * 86400  # 1970-01-01 was a Thursday: the first Monday 00:00 UTC is day 4


@lru_cache(maxsize=64)
def _zone(name: str) -> _dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def check_zone(name: str) -> str | None:
    """None if ``name`` is a time zone this machine knows, else the sentence saying so."""
    if name in ("UTC", "Etc/UTC"):
        return None
    try:
        _zone(name)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError on odd names
        return f"unknown time zone {name!r}: name an IANA zone such as \"Europe/Paris\" (or leave it out for UTC)"
    return None


def period(unit: str, now: float, tz: str | None = None) -> tuple[float, float]:
    """``(start, end)`` of the ``unit`` period (minute, hour, day, week from Monday, month) that
    holds ``now``, as epoch seconds; in UTC unless ``tz`` names a zone (days then start at the
    zone's midnight, daylight-saving days being 23 or 25 hours long)."""
    if (tz is None or tz in ("UTC", "Etc/UTC")) and unit in _FIXED:
        size = _FIXED[unit]
        offset = _MONDAY_EPOCH if unit == "week" else 0
        start = (now - offset) // size * size + offset
        return (start, start + size)
    import datetime as _dt  # only here: the engine is imported by every `plr eval`

    zone = _dt.timezone.utc if tz is None or tz in ("UTC", "Etc/UTC") else _zone(tz)
    local = _dt.datetime.fromtimestamp(now, zone)
    if unit in ("minute", "hour"):
        # fixed lengths, counted back from now on the zone's clock as it reads now: right in the
        # hour a fall-back day repeats (rebuilding the wall time would find its first occurrence,
        # a period that ended an hour ago) and in zones whose clocks move by 30 minutes
        into = local.second + local.microsecond / 1e6 + (local.minute * 60 if unit == "hour" else 0)
        start = now - into
        return (start, start + _FIXED[unit])
    if unit == "day":
        begin = local.replace(hour=0, minute=0, second=0, microsecond=0)
        nxt = (begin + _dt.timedelta(days=1)).replace(hour=0)
    elif unit == "week":
        begin = (local - _dt.timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        nxt = begin + _dt.timedelta(days=7)
    elif unit == "month":
        begin = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = begin.replace(year=begin.year + 1, month=1) if begin.month == 12 else begin.replace(month=begin.month + 1)
    else:
        raise ValueError(f"unknown calendar unit {unit!r}")
    # wall-clock arithmetic in the zone, then back to epoch seconds through the zone's offsets
    start = _dt.datetime(begin.year, begin.month, begin.day, begin.hour, begin.minute, tzinfo=zone).timestamp()
    end = _dt.datetime(nxt.year, nxt.month, nxt.day, nxt.hour, nxt.minute, tzinfo=zone).timestamp()
    return (start, end)
