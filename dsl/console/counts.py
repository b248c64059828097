"""The audit page's counts: decisions per effect over time (the chart) and per tool. Pure
functions: no I/O. Which records are shown is ``dsl.audit_filters``' (shared with `plr audit`)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["EFFECTS", "counts_over_time", "counts_per_tool"]

EFFECTS = ("allow", "deny", "approval_required")


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
