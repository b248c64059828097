"""``python -m benchmarks [--quick] [--only NAME ...] [--out DIR] [--markdown]``.

Runs the benchmarks, prints one table (absolute numbers, the baseline measured in the same run,
the ratio, the target and PASS/FAIL) and writes ``benchmarks/results/<timestamp>.json``.
Targets are reported, not enforced: the exit code is 0 unless a benchmark itself crashed
(then 1, with the traceback in the JSON and on stderr).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .harness import Config, Row, Section, format_markdown, format_row, format_table, loadavg, machine_info

BENCHMARKS: dict[str, str] = {
    "decision": "benchmarks.bench_decision",
    "compile": "benchmarks.bench_compile",
    "cli": "benchmarks.bench_cli",
    "memory": "benchmarks.bench_memory",
    "proxy": "benchmarks.bench_proxy",
    "redis": "benchmarks.bench_redis",
    "state": "benchmarks.bench_state",
    "lsp": "benchmarks.bench_lsp",
    "analysis": "benchmarks.bench_analysis",
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCHEMA = "plr-bench/1"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few iterations (a smoke test, < 20 s)")
    ap.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these benchmarks (repeatable or comma-separated): {', '.join(BENCHMARKS)}",
    )
    ap.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON results (default: %(default)s)")
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    return ap.parse_args(argv)


def _selected(only: list[str] | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return [n for n in BENCHMARKS if n in names]


def _run_one(name: str, cfg: Config) -> Section:
    module = importlib.import_module(BENCHMARKS[name])
    t0 = time.perf_counter()
    try:
        section: Section = module.run(cfg)
    except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        section = Section(name, getattr(module, "TITLE", name))
        section.rows.append(Row(name, "benchmark crashed", "see details.traceback", status="FAIL"))
        section.details["traceback"] = tb
    section.seconds = time.perf_counter() - t0
    return section


def _finite(x: Any) -> Any:
    """The document with NaN/inf (a measurement that could not be made) as null: valid JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    cfg = Config(quick=args.quick)
    names = _selected(args.only)
    started = dt.datetime.now(dt.UTC)
    machine = machine_info()
    print(f"plr benchmarks ({'quick' if cfg.quick else 'full'}): {', '.join(names)}")
    print(f"python {machine['python']} on {machine['cpu']} × {machine['cpus']}, load {machine['loadavg_at_start']}, "
          f"{machine['python_speed_ns']:g} ns per step of plain Python (the absolute targets move with it)")  # fmt: skip
    sections: list[Section] = []
    for name in names:
        print(f"\n-- {name} ...", flush=True)
        section = _run_one(name, cfg)
        for r in section.rows:
            print(format_row(r), flush=True)
        sections.append(section)
    print(format_table(sections))
    if args.markdown:
        print(format_markdown(sections))

    machine["loadavg_at_end"] = loadavg()
    crashed = any("traceback" in s.details for s in sections)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if cfg.quick else "full",
        "benchmarks": names,
        "machine": machine,
        "sections": [s.to_json() for s in sections],
        "summary": {
            status: sum(1 for s in sections for r in s.rows if r.status == status)
            for status in ("PASS", "FAIL", "INFO", "SKIP", "TODO")
        },
        "crashed": crashed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"{stamp}{'-quick' if cfg.quick else ''}-{os.getpid()}.json"
    text = json.dumps(_finite(doc), indent=2, ensure_ascii=False, allow_nan=False, default=str)
    path.write_text(text + "\n", encoding="utf-8")
    s = doc["summary"]
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    print(f"\n{s['PASS']} pass, {s['FAIL']} fail, {s['SKIP']} skipped, {s['TODO']} todo; results: {shown}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
