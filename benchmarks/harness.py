"""What every benchmark shares: result rows, the run configuration, timers and the printed table.

A benchmark module exposes ``NAME``, ``TITLE`` and ``run(cfg) -> Section``. A ``Row`` holds one
measurement: the human-readable text printed in the table and the raw numbers written to the
JSON results (units are in the key names: ``_ns``, ``_ms``, ``_s``, ``_mib``). Targets are
reported as PASS or FAIL, never enforced: a benchmark run always exits 0.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["PASS", "FAIL", "INFO", "SKIP", "TODO"]
Number = float | int | None
Values = dict[str, Any]  # raw results for the JSON: numbers, lists of numbers, small dicts


@dataclass(frozen=True)
class Config:
    """How big and how long: ``quick`` is the smoke-test mode (seconds, not minutes)."""

    quick: bool = False


@dataclass
class Row:
    """One line of the table (and one object in the JSON results)."""

    section: str
    case: str
    result: str  # printed, e.g. "p50 0.21 µs · p99 0.30 µs"
    values: Values = field(default_factory=dict)
    baseline: str = ""  # printed; empty when the row has no baseline
    baseline_name: str | None = None
    baseline_values: Values = field(default_factory=dict)
    ratio: float | None = None  # the number the target is about (see ratio_text)
    ratio_text: str = ""  # printed, e.g. "312× faster" or "1.8× bare parse"
    target: str = ""
    status: Status = "INFO"
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Table:
    """A small detail table printed under a section (stage split, import offenders)."""

    title: str
    header: list[str]
    rows: list[list[str]]

    def lines(self) -> list[str]:
        widths = [max(len(str(c)) for c in col) for col in zip(self.header, *self.rows, strict=True)]
        fmt = lambda cells: "  " + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
        return [f"  {self.title}", fmt(self.header), *(fmt(r) for r in self.rows)]

    def markdown(self) -> list[str]:
        return [
            f"\n{self.title}\n",
            "| " + " | ".join(self.header) + " |",
            "|" + "---|" * len(self.header),
            *("| " + " | ".join(str(c) for c in r) + " |" for r in self.rows),
        ]


@dataclass
class Section:
    """The rows of one benchmark plus what does not fit a row (notes, detail tables)."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "seconds": round(self.seconds, 3),
            "rows": [r.to_json() for r in self.rows],
            "notes": list(self.notes),
            "details": self.details,
            "tables": [asdict(t) for t in self.tables],
        }


def status_of(ok: bool) -> Status:
    return "PASS" if ok else "FAIL"


# --- latency sampling -----------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Per-call latency of one case: percentiles of single timed calls, and the batched mean.

    ``p50_ns``/``p99_ns``: each call timed alone with ``perf_counter_ns``, minus the timer's own
    overhead (the median of back-to-back timer reads); the median over ``rounds`` rounds.
    ``mean_ns``: one timer around ``calls`` back-to-back calls, divided by ``calls`` (includes
    the loop's own cost, no timer cost); the median over rounds.
    """

    p50_ns: float
    p99_ns: float
    mean_ns: float
    calls: int
    rounds: int
    timer_overhead_ns: float

    def values(self) -> Values:
        return {
            "p50_ns": round(self.p50_ns, 1),
            "p99_ns": round(self.p99_ns, 1),
            "mean_ns": round(self.mean_ns, 1),
            "calls_per_round": self.calls,
            "rounds": self.rounds,
            "timer_overhead_ns": round(self.timer_overhead_ns, 1),
        }

    def text(self) -> str:
        return f"p50 {fmt_ns(self.p50_ns)} · p99 {fmt_ns(self.p99_ns)}"


def timer_overhead_ns(samples: int = 20001) -> float:
    """The median cost of reading ``perf_counter_ns`` twice back to back."""
    pc = time.perf_counter_ns
    out = [0] * samples
    for i in range(samples):
        t0 = pc()
        out[i] = pc() - t0
    return float(statistics.median(out))


def percentile(sorted_values: list[int] | list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[k])


def measure(one_round: Callable[[list[int]], int], calls: int, rounds: int, overhead_ns: float) -> Latency:
    """Run ``rounds`` rounds of ``one_round``; aggregate per-round percentiles by their median.

    ``one_round(samples)`` times ``len(samples)`` single calls into ``samples`` (nanoseconds,
    timer included) and returns the wall time in ns of a batch of as many untimed calls.
    Taking the median over rounds keeps one round disturbed by another process from moving
    the result; p99 still includes every pause inside a round (garbage collection too).
    """
    p50s: list[float] = []
    p99s: list[float] = []
    means: list[float] = []
    for _ in range(rounds):
        samples = [0] * calls
        batch_ns = one_round(samples)
        samples.sort()
        p50s.append(max(0.0, percentile(samples, 0.50) - overhead_ns))
        p99s.append(max(0.0, percentile(samples, 0.99) - overhead_ns))
        means.append(batch_ns / calls)
    return Latency(
        p50_ns=statistics.median(p50s),
        p99_ns=statistics.median(p99s),
        mean_ns=statistics.median(means),
        calls=calls,
        rounds=rounds,
        timer_overhead_ns=overhead_ns,
    )


def median_wall_s(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` over ``repeats`` runs, each from a freshly collected heap."""
    times: list[float] = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


# --- formatting -------------------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    """A duration in ns, µs, ms or s with three significant digits."""
    if ns != ns:  # NaN
        return "n/a"
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if ns >= scale:
            return f"{_sig3(ns / scale)} {unit}"
    return f"{ns:.0f} ns"


def _sig3(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def fmt_s(s: float) -> str:
    return fmt_ns(s * 1e9)


def fmt_ratio(x: float | None) -> str:
    if x is None or x != x:
        return ""
    if x >= 100:
        return f"{x:,.0f}×"
    if x >= 10:
        return f"{x:.1f}×"
    return f"{x:.2f}×"


_COLUMNS: tuple[tuple[str, int], ...] = (
    ("case", 42),
    ("plr", 30),
    ("baseline", 36),
    ("ratio", 18),
    ("target", 28),
    ("status", 6),
)


def _cells(r: Row) -> tuple[str, ...]:
    return (r.case, r.result, r.baseline, r.ratio_text, r.target, r.status)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_row(r: Row) -> str:
    return " ".join(_clip(c, w).ljust(w) for c, (_, w) in zip(_cells(r), _COLUMNS, strict=True)).rstrip()


def format_header() -> str:
    head = " ".join(name.ljust(w) for name, w in _COLUMNS).rstrip()
    return head + "\n" + "-" * len(head)


def format_table(sections: list[Section]) -> str:
    """The whole report: one block per section, then its notes."""
    out: list[str] = []
    for s in sections:
        out.append(f"\n== {s.title} ({s.seconds:.1f} s)")
        out.append(format_header())
        out.extend(format_row(r) for r in s.rows)
        for t in s.tables:
            out.extend(t.lines())
        for r in s.rows:
            if r.note:
                out.append(f"  note ({r.case.strip()}): {r.note}")
        for n in s.notes:
            out.append(f"  note: {n}")
    return "\n".join(out)


def format_markdown(sections: list[Section]) -> str:
    """The same table as Markdown (for docs/performance.md)."""
    out: list[str] = []
    for s in sections:
        out.append(f"\n### {s.title}\n")
        out.append("| case | plr | baseline | ratio | target | status |")
        out.append("|---|---|---|---|---|---|")
        for r in s.rows:
            cells = [c.replace("|", "\\|") for c in _cells(r)]
            out.append("| " + " | ".join(cells) + " |")
        for t in s.tables:
            out.extend(t.markdown())
        for r in s.rows:
            if r.note:
                out.append(f"\n- {r.case.strip()}: {r.note}")
        for n in s.notes:
            out.append(f"\n- {n}")
    return "\n".join(out) + "\n"


# --- the machine ------------------------------------------------------------------------------


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def python_speed_ns(rounds: int = 5, steps: int = 200_000) -> float:
    """Nanoseconds per step of a fixed piece of plain Python (a call, a dict lookup, an attribute,
    some arithmetic), the median of ``rounds``: how fast this machine runs Python right now.
    The absolute targets (µs added per proxied call, ms per CLI start) move with it from hour to
    hour on a shared machine; the ratios against a baseline measured in the same run do not."""

    class Box:
        n = 0

    def step(box: Box, table: dict[int, int], i: int) -> int:
        box.n += table.get(i & 63, 0) + 1
        return box.n

    table = {i: i for i in range(64)}
    times = []
    for _ in range(rounds):
        box = Box()
        t0 = time.perf_counter_ns()
        for i in range(steps):
            step(box, table, i)
        times.append((time.perf_counter_ns() - t0) / steps)
    return round(statistics.median(times), 1)


def machine_info() -> dict[str, Any]:
    return {
        "python_speed_ns": python_speed_ns(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": loadavg(),
        "packages": {p: package_version(p) for p in ("plr", "lark", "pydantic", "google-re2", "cedarpy", "mcp")},
    }


def vm_rss_kib(status_path: str = "/proc/self/status") -> int | None:
    """Resident set size from /proc (Linux), in KiB; None elsewhere."""
    return _proc_status_kib("VmRSS", status_path)


def vm_hwm_kib(status_path: str = "/proc/self/status") -> int | None:
    """Peak resident set size from /proc (Linux), in KiB; None elsewhere."""
    return _proc_status_kib("VmHWM", status_path)


def _proc_status_kib(key: str, path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def decision_latency(decide: Callable[..., Any], tool: str, args: Any, calls: int, rounds: int, overhead_ns: float, warm: int) -> Latency:
    """``measure`` of ``decide(tool, args)`` for one identity and session, after ``warm`` calls
    per round (a limited tool reaches its steady state: a full window); every call must allow."""

    def one_round(samples: list[int]) -> int:
        pc = time.perf_counter_ns
        n = len(samples)
        for _ in range(min(n, warm)):
            decide(tool, args, identity="agent-1", session="session-1")
        for i in range(n):
            t0 = pc()
            d = decide(tool, args, identity="agent-1", session="session-1")
            samples[i] = pc() - t0
        if d.effect != "allow":
            raise RuntimeError(f"{tool}: expected allow, got {d.code}: {d.reason}")
        t0 = pc()
        for _ in range(n):
            decide(tool, args, identity="agent-1", session="session-1")
        return pc() - t0

    return measure(one_round, calls, rounds, overhead_ns)


def store_row(section: str, case: str, lat: Latency, mem: Latency, target_ns: float, more: str = "") -> Row:
    """A limited decision on a shared limit store against the in-process store (``mem``),
    measured in the same run: the ratio, and what the store adds at p50."""
    ratio = lat.p50_ns / mem.p50_ns if mem.p50_ns > 0 else float("inf")
    return Row(
        section=section,
        case=case,
        result=lat.text(),
        values={**lat.values(), "added_p50_ns": round(lat.p50_ns - mem.p50_ns, 1)},
        baseline="in-process " + mem.text(),
        baseline_name="MemoryLimitStore",
        baseline_values=mem.values(),
        ratio=ratio,
        ratio_text=f"{fmt_ratio(ratio)} in-process",
        target=f"p50 ≤ {fmt_ns(target_ns)}",
        status=status_of(lat.p50_ns <= target_ns),
        note=f"adds {fmt_ns(lat.p50_ns - mem.p50_ns)} at p50 per limited call{more}",
    )
