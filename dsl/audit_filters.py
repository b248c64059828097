"""Which audit records to show: the filters of `plr audit` and of the console's Audit page
(tool, effect, code, identity, session, since), one implementation for both. Pure functions
but for reading the clock when ``since`` is relative (90s, 15m, 1h, 2d).

A field given several values keeps a record whose value is any of them (`plr audit --effect
deny --effect approval_required`); an empty field keeps everything. Values are compared as they
are, never coerced: a filter ``5`` does not match a number 5 someone wrote into a log.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AuditFilter", "FIELDS", "SINCE_HELP", "is_decision", "since_cutoff"]

FIELDS = ("tool", "effect", "code", "identity", "session")  # the fields matched by value
SINCE_HELP = "expected 90s, 15m, 1h, 2d or an ISO timestamp"
MAX_VALUE = 500  # a query-string value longer than this is cut (a tool name is far shorter)


def since_cutoff(since: str | None, now: _dt.datetime | None = None) -> _dt.datetime | None:
    """``since`` (90s, 15m, 1h, 2d ago, or an ISO time) as an aware UTC time, None when empty;
    ValueError with a sentence fit for the user (no parser internals) when it cannot be read."""
    from .proxy.audit import parse_since

    if not since or not since.strip():
        return None
    try:
        return parse_since(since, now)
    except (ValueError, OverflowError) as e:
        why = str(e) if "before the year" in str(e) else SINCE_HELP
        raise ValueError(why) from None


def is_decision(rec: Mapping[str, Any]) -> bool:
    """A decision record (it has an effect), not an event such as the proxy comparing tools."""
    return "effect" in rec


@dataclass(frozen=True)
class AuditFilter:
    """Which records to keep: for each field of ``FIELDS`` the values wanted (empty: any), and
    the records at or after ``cutoff``. ``since`` is the text the cutoff was read from, and
    ``error`` what was wrong with it (the console says it; `plr audit` refuses it)."""

    values: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (field, wanted values), fields with a filter only
    since: str = ""
    cutoff: _dt.datetime | None = None
    error: str | None = None

    @classmethod
    def of(cls, since: str = "", **wanted: Iterable[str] | str | None) -> AuditFilter:
        """A filter from field=values (a string, several strings, or None for any) and ``since``;
        ValueError (``since_cutoff``'s) for a ``since`` that cannot be read."""
        unknown = set(wanted) - set(FIELDS)
        if unknown:
            raise TypeError(f"no audit field {sorted(unknown)}")
        values = []
        for name in FIELDS:
            w = wanted.get(name)
            got = (w,) if isinstance(w, str) else tuple(w or ())
            if got:
                values.append((name, tuple(dict.fromkeys(got))))
        return cls(tuple(values), since, since_cutoff(since))

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> AuditFilter:
        """The console's query string (one value a field); a ``since`` it cannot read is kept as
        ``error`` and filters nothing, so the page says so instead of hiding records."""
        fields = {k: (q.get(k) or "").strip()[:MAX_VALUE] for k in FIELDS}
        since = (q.get("since") or "").strip()[:MAX_VALUE]
        try:
            return cls.of(since, **{k: v for k, v in fields.items() if v})
        except ValueError as e:
            return cls.of(**{k: v for k, v in fields.items() if v}).with_since_error(since, f"since: {e}")

    def with_since_error(self, since: str, error: str) -> AuditFilter:
        return AuditFilter(self.values, since, None, error)

    def wanted(self, name: str) -> tuple[str, ...]:
        """The values wanted of one field (empty: any)."""
        return dict(self.values).get(name, ())

    def matches(self, rec: Mapping[str, Any]) -> bool:
        """Whether ``rec`` passes every filter: each filtered field has one of the wanted values,
        and the record's time is known and not before the cutoff."""
        for name, want in self.values:
            if rec.get(name) not in want:
                return False
        if self.cutoff is not None:
            from .proxy.audit import record_time

            t = record_time(dict(rec))
            if t is None or t < self.cutoff:
                return False
        return True

    def query(self) -> dict[str, str]:
        """The filter as a query string's fields (the first value of each), for links."""
        out = {name: want[0] for name, want in self.values}
        if self.since:
            out["since"] = self.since
        return out
