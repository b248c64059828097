"""The audit page's filters (the same as `plr audit`'s: tool, effect, code, identity, session,
since), read from the query string and applied to records. Pure functions: no I/O."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AuditFilter", "FILTER_FIELDS", "counts_over_time"]

FILTER_FIELDS = ("tool", "effect", "code", "identity", "session", "since")
EFFECTS = ("allow", "deny", "approval_required")


@dataclass(frozen=True)
class AuditFilter:
    """Which decision records to show; an empty field matches everything."""

    tool: str = ""
    effect: str = ""
    code: str = ""
    identity: str = ""
    session: str = ""
    since: str = ""
    cutoff: _dt.datetime | None = None
    error: str | None = None  # a `since` that cannot be read: said on the page, and nothing hidden silently

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> AuditFilter:
        from ..proxy.audit import parse_since

        values = {k: (q.get(k) or "").strip()[:500] for k in FILTER_FIELDS}
        cutoff = None
        error = None
        if values["since"]:
            try:
                cutoff = parse_since(values["since"])
            except (ValueError, OverflowError):
                error = "since: expected 90s, 15m, 1h, 2d or an ISO timestamp"
        return cls(**values, cutoff=cutoff, error=error)

    def matches(self, rec: Mapping[str, Any]) -> bool:
        from ..proxy.audit import record_time

        if "effect" not in rec:  # an event (tools compared), not a decision
            return False
        for name in ("tool", "effect", "code", "identity", "session"):
            want = getattr(self, name)
            if want and str(rec.get(name)) != want:
                return False
        if self.cutoff is not None:
            t = record_time(dict(rec))
            if t is None or t < self.cutoff:
                return False
        return True

    def query(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in FILTER_FIELDS if getattr(self, k)}


def counts_over_time(records: Iterable[Mapping[str, Any]], buckets: int = 24) -> tuple[list[str], list[dict[str, int]]]:
    """Decisions per effect in ``buckets`` equal time slices from the first record to the last:
    (the slices' start times, one {effect: count} per slice). Records without a time are left out."""
    from ..proxy.audit import record_time

    timed = [(t, str(r.get("effect"))) for r in records if (t := record_time(dict(r))) is not None]
    if not timed:
        return [], []
    lo = min(t for t, _ in timed)
    hi = max(t for t, _ in timed)
    span = max((hi - lo).total_seconds(), 1.0)
    step = span / buckets
    out: list[dict[str, int]] = [dict.fromkeys(EFFECTS, 0) for _ in range(buckets)]
    for t, effect in timed:
        i = min(int((t - lo).total_seconds() / step), buckets - 1)
        out[i][effect] = out[i].get(effect, 0) + 1
    starts = [(lo + _dt.timedelta(seconds=i * step)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(buckets)]
    return starts, out


def counts_per_tool(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """{tool: {effect: count}} of the decision records."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        row = out.setdefault(str(r.get("tool")), dict.fromkeys(EFFECTS, 0))
        e = str(r.get("effect"))
        row[e] = row.get(e, 0) + 1
    return out
