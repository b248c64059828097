"""Memory: resident size of a loaded 10,000-tool policy (compiled, and an Engine prepared).

Each measurement runs in a fresh interpreter (``python -m benchmarks.bench_memory --child``)
that imports everything, builds the parser and compiles a tiny policy first, reads ``VmRSS``
from ``/proc/self/status`` (the baseline), then loads the big policy and reads it again after
``gc.collect()``. The policy text itself is read before the baseline, so the delta is what
the loaded structures cost. ``VmHWM`` gives the peak while loading.

Three ways to hold the same rules: plr compiled from ``.plr`` (the policy document + Engine),
plr loaded from the compiled JSON (what a proxy does), and the Cedar translation parsed by
cedarpy (``PolicySet`` + ``Entities``) as the baseline.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from .harness import Config, Row, Section, fmt_ratio, vm_hwm_kib, vm_rss_kib

NAME = "memory"
TITLE = "Memory: a loaded 10,000-tool policy (RSS delta in a fresh process)"
ROOT = Path(__file__).resolve().parent.parent


def _child(kind: str, path: str, traced: bool) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    from dsl.compiler import compile_source
    from dsl.engine import Engine
    from dsl.policy import load_policy

    Engine(compile_source('default deny\nallow tool "x" if args.a matches "^b"\nlimit tool "x" to 1 per second\n'))
    if kind == "cedar":
        import cedarpy

        cedarpy.is_authorized(
            {"principal": 'A::"a"', "action": 'Action::"call"', "resource": 'T::"t"', "context": {}},
            cedarpy.PolicySet.from_str("permit(principal, action, resource);"),
            cedarpy.Entities.from_json_str("[]"),
        )
    gc.collect()
    if traced:
        tracemalloc.start()
    before = vm_rss_kib()
    held: tuple[Any, ...]
    if kind == "plr-source":
        policy = compile_source(text)
        held = (Engine(policy),)
        del policy
    elif kind == "plr-json":
        held = (Engine(load_policy(text)),)
    elif kind == "plr-literal":  # hostile input: one huge string literal through the compiler
        held = (compile_source(text, "big.plr"),)
    elif kind == "cedar":
        import cedarpy

        held = (cedarpy.PolicySet.from_str(text), cedarpy.Entities.from_json_str("[]"))
    else:
        raise SystemExit(f"unknown kind {kind}")
    gc.collect()
    assert held
    if traced:
        current, peak_b = tracemalloc.get_traced_memory()
        return {"traced_retained_kib": current / 1024, "traced_peak_kib": peak_b / 1024}
    return {"rss_before_kib": before, "rss_after_kib": vm_rss_kib(), "hwm_kib": vm_hwm_kib()}


def _measure(kind: str, path: str, traced: bool = False) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", "--child", kind, path, *(["--traced"] if traced else [])],
        capture_output=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {kind} failed: {proc.stderr.decode()[-800:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def run(cfg: Config) -> Section:
    from dsl.compiler import compile_source

    from . import cedar
    from .policies import decision_policy

    n_tools = 300 if cfg.quick else 10_000
    section = Section(NAME, TITLE.replace("10,000", f"{n_tools:,}"))
    if vm_rss_kib() is None:
        section.rows.append(Row(NAME, "RSS", "skipped: /proc/self/status not available", status="SKIP"))
        return section
    text = decision_policy(n_tools)
    policy = compile_source(text)
    try:
        import cedarpy  # noqa: F401

        cedar_text: str | None = cedar.translate(policy).text
    except ImportError:
        cedar_text = None

    with tempfile.TemporaryDirectory(prefix="plr-bench-mem-") as tmp:
        files = {"plr-source": text, "plr-json": policy.to_json()}
        if cedar_text is not None:
            files["cedar"] = cedar_text
        results: dict[str, dict[str, Any]] = {}
        for kind, content in files.items():
            p = Path(tmp) / f"{kind}.txt"
            p.write_text(content, encoding="utf-8")
            results[kind] = _measure(kind, str(p))
            if kind != "cedar":  # tracemalloc sees Python objects only: meaningless for cedarpy's Rust heap
                results[kind].update(_measure(kind, str(p), traced=True))

    def delta(kind: str) -> float:
        r = results[kind]
        return float(r["rss_after_kib"] - r["rss_before_kib"])

    base_kib = delta("cedar") if "cedar" in results else None
    labels = {
        "plr-source": f"{n_tools:,} tools: compiled from .plr + Engine",
        "plr-json": f"{n_tools:,} tools: loaded from JSON + Engine",
    }
    for kind, label in labels.items():
        d = delta(kind)
        r = results[kind]
        row = Row(
            section=NAME,
            case=label,
            result=f"RSS +{_mib(d)}, objects {_mib(r['traced_retained_kib'])}",
            values={"n_tools": n_tools, "rss_delta_kib": d, "peak_delta_kib": r["hwm_kib"] - r["rss_before_kib"],
                    **r},
        )  # fmt: skip
        if base_kib is not None:
            row.baseline = f"cedarpy PolicySet {_mib(base_kib)}"
            row.baseline_name = "cedarpy PolicySet + Entities (RSS delta)"
            row.baseline_values = {"rss_delta_kib": base_kib, **results["cedar"]}
            row.ratio = d / base_kib if base_kib > 0 else None
            row.ratio_text = f"{fmt_ratio(row.ratio)} Cedar's" if row.ratio else ""
        else:
            row.baseline = "skipped: cedarpy not installed"
        section.rows.append(row)
    for kind, label in labels.items():
        r = results[kind]
        section.notes.append(
            f"{label}: peak RSS while loading +{_mib(r['hwm_kib'] - r['rss_before_kib'])}; Python objects "
            f"retained {_mib(r['traced_retained_kib'])}, traced peak {_mib(r['traced_peak_kib'])} (tracemalloc)"
        )
    # hostile input: one huge string literal must cost memory in proportion to its size (a regex
    # with a per-character backtracking stack once made a 15 MB literal cost 2.5 GB)
    literal_mb = 1 if cfg.quick else 15
    big = 'default deny\nallow tool "a" if args.x == "' + "y" * (literal_mb * 1_000_000) + '"\n'
    with tempfile.TemporaryDirectory(prefix="plr-bench-mem-") as tmp:
        p = Path(tmp) / "big.plr"
        p.write_text(big, encoding="utf-8")
        lit = _measure("plr-literal", str(p))
    peak = float(lit["hwm_kib"] - lit["rss_before_kib"])
    ratio = peak * 1024 / len(big)
    section.rows.append(
        Row(
            section=NAME,
            case=f"one {literal_mb} MB string literal: compile",
            result=f"peak RSS +{_mib(peak)}",
            values={"literal_bytes": len(big), "peak_delta_kib": peak, **lit},
            baseline=f"the input, {len(big) / 1e6:.0f} MB",
            baseline_name="size of the .plr text",
            ratio=ratio,
            ratio_text=f"{ratio:.1f}× the input",
            target="≤ 20× the input",
            status="PASS" if ratio <= 20 else "FAIL",
        )
    )
    section.notes.append(
        f"policy JSON {len(files['plr-json']) / 1e6:.1f} MB, .plr text {len(text) / 1e6:.2f} MB. RSS keeps "
        "allocator arenas freed after the compile peak (parse tree, IR): RSS delta > objects retained"
    )
    return section


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), required=True)
    ap.add_argument("--traced", action="store_true", help="report tracemalloc figures instead of RSS")
    a = ap.parse_args()
    print(json.dumps(_child(a.child[0], a.child[1], a.traced)))


if __name__ == "__main__":
    main()
