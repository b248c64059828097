"""Decision latency: ``Engine(policy).decide(...)`` against ``cedarpy.is_authorized``.

Three calls — (a) a tool with no conditions, (b) five conditions including one regex, (c) a
tool with a sliding-window limit — on policies governing 10, 1,000 and 10,000 tools. Each call
passes every check, so every condition is evaluated.

Timing: ``perf_counter_ns`` around each single call (minus the timer's own overhead) gives
p50/p99; a batch of back-to-back calls gives the mean. Both plr and Cedar go through the same
loop shape. The Cedar side uses pre-parsed ``PolicySet`` and ``Entities`` handles (parsing is
not timed) and structured entity ids, the cheapest way to call cedarpy.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from dsl.compiler import compile_source
from dsl.engine import Engine

from . import cedar
from .harness import Config, Latency, Row, Section, fmt_ns, fmt_ratio, fmt_s, measure, status_of, timer_overhead_ns
from .policies import (
    EVERY_PATHS,
    EVERY_POLICY,
    EVERY_TOOL,
    LIMIT_CLOCK_STEP_S,
    MEASURED_CALLS,
    PROBE_CALLS,
    Call,
    decision_policy,
)

NAME = "decision"
TITLE = "Decision latency: Engine.decide vs cedarpy.is_authorized"

CASES = {
    "a": "(a) no conditions",
    "b": "(b) 5 conditions, 1 regex",
    "c": "(c) sliding-window limit",
}
P50_TARGET_NS = {"a": 2_000.0, "b": 10_000.0}
EVERY_P50_TARGET_NS = 5_000.0  # issue #15: `every` over 10 items with a `normpath` comparison
UNNAMED_P50_TARGET_NS = 300.0  # issue #20: a tool no rule names cost ~1 µs, mostly building its frozen Decision
MIN_SPEEDUP = 20.0
FLAT_MAX_RATIO = 1.5  # p50 with the most tools / p50 with the fewest, for "flat in tool count"


@dataclass(frozen=True)
class _Plan:
    sizes: tuple[int, ...]
    plr_calls: int
    plr_rounds: int
    cedar_round_s: float  # time budget of one Cedar round (calls are sized from a first probe)
    cedar_min_calls: int
    cedar_max_calls: int
    cedar_rounds: int


def _plan(cfg: Config) -> _Plan:
    if cfg.quick:
        return _Plan((10, 300), 2_000, 3, 0.05, 20, 500, 2)
    return _Plan((10, 1_000, 10_000), 20_000, 5, 0.6, 50, 5_000, 3)


def _virtual_clock(step_s: float = LIMIT_CLOCK_STEP_S) -> Any:
    """A clock advancing ``step_s`` per read (a C-level callable: no Python frame per call)."""
    return itertools.count(0.0, step_s).__next__


def _time_plr(engine: Engine, call: Call, plan: _Plan, overhead: float) -> Latency:
    decide = engine.decide
    tool, args, identity, session = call.tool, call.args, call.identity, call.session

    def one_round(samples: list[int]) -> int:
        pc = time.perf_counter_ns
        n = len(samples)
        for _ in range(min(n, 2_000)):  # warm up
            decide(tool, args, identity=identity, session=session)
        for i in range(n):
            t0 = pc()
            decide(tool, args, identity=identity, session=session)
            samples[i] = pc() - t0
        t0 = pc()
        for _ in range(n):
            decide(tool, args, identity=identity, session=session)
        return pc() - t0

    return measure(one_round, plan.plr_calls, plan.plr_rounds, overhead)


def _time_cedar(is_authorized: Any, req: dict[str, Any], ps: Any, ents: Any, plan: _Plan, overhead: float) -> Latency:
    t0 = time.perf_counter()
    for _ in range(3):
        is_authorized(req, ps, ents)
    per_call = (time.perf_counter() - t0) / 3
    calls = int(min(plan.cedar_max_calls, max(plan.cedar_min_calls, plan.cedar_round_s / max(per_call, 1e-9))))

    def one_round(samples: list[int]) -> int:
        pc = time.perf_counter_ns
        n = len(samples)
        for i in range(n):
            t0 = pc()
            is_authorized(req, ps, ents)
            samples[i] = pc() - t0
        t0 = pc()
        for _ in range(n):
            is_authorized(req, ps, ents)
        return pc() - t0

    return measure(one_round, calls, plan.cedar_rounds, overhead)


def _load_cedarpy() -> Any | None:
    try:
        import cedarpy
    except ImportError:
        return None
    return cedarpy


def _agreement(engine: Engine, cedarpy: Any, ps: Any, ents: Any) -> list[str]:
    """Probe calls where plr and the Cedar translation disagree (should be none)."""
    bad: list[str] = []
    for call in PROBE_CALLS:
        d = engine.decide(call.tool, call.args, identity=call.identity, session=call.session)
        r = cedarpy.is_authorized(
            cedar.request(call.tool, call.args, identity=call.identity, session=call.session), ps, ents
        )
        c_effect = "allow" if r.allowed else "deny"
        if d.effect != c_effect or d.effect != call.expect:
            bad.append(f"{call.tool} {call.args}: plr {d.effect}, cedar {c_effect}, expected {call.expect}")
    return bad


def _every_row(plan: _Plan, overhead: float) -> Row:
    """(d) `every p in args.paths { normpath(p) starts_with "/workspace/" }` over ten paths that
    all pass (each is normalised and compared). Cedar has no quantifier over a request's list
    with a path normalisation: no baseline."""
    engine = Engine(compile_source(EVERY_POLICY), clock=_virtual_clock())
    call = Call(EVERY_TOOL, {"paths": list(EVERY_PATHS)})
    if engine.decide(call.tool, call.args).effect != "allow":
        raise AssertionError("the `every` benchmark call must pass every check")
    lat = _time_plr(engine, call, plan, overhead)
    return Row(
        section=NAME,
        case="(d) every over 10 paths, normpath + starts_with each",
        result=lat.text(),
        values={"items": len(EVERY_PATHS), **lat.values()},
        baseline="none: Cedar has no quantifier with path normalisation",
        baseline_name=None,
        target=f"p50 ≤ {fmt_ns(EVERY_P50_TARGET_NS)}",
        status=status_of(lat.p50_ns <= EVERY_P50_TARGET_NS),
    )


def _unnamed_row(plan: _Plan, overhead: float) -> Row:
    """(e) a tool no rule names, under `default deny`: the answer every unknown or mistyped tool
    gets (issue #20: ~1 µs, most of it building the frozen Decision; now made once per name)."""
    engine = Engine(compile_source(EVERY_POLICY), clock=_virtual_clock())
    call = Call("no_such_tool", {"x": 1})
    if engine.decide(call.tool, call.args).code != "default":
        raise AssertionError("the unnamed-tool benchmark call must get the default answer")
    lat = _time_plr(engine, call, plan, overhead)
    return Row(
        section=NAME,
        case="(e) a tool no rule names (default deny)",
        result=lat.text(),
        values=lat.values(),
        target=f"p50 ≤ {fmt_ns(UNNAMED_P50_TARGET_NS)}",
        status=status_of(lat.p50_ns <= UNNAMED_P50_TARGET_NS),
    )


def run(cfg: Config) -> Section:
    plan = _plan(cfg)
    section = Section(NAME, TITLE)
    overhead = timer_overhead_ns()
    cedarpy = _load_cedarpy()
    section.details["timer_overhead_ns"] = overhead
    section.details["sizes"] = list(plan.sizes)
    plr_p50: dict[tuple[str, int], float] = {}
    sizes_info: list[dict[str, Any]] = []

    for n_tools in plan.sizes:
        text = decision_policy(n_tools)
        t0 = time.perf_counter()
        policy = compile_source(text)
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine = Engine(policy, clock=_virtual_clock())
        prepare_s = time.perf_counter() - t0
        info: dict[str, Any] = {
            "tools": len(policy.tools),
            "plr_compile_s": round(compile_s, 4),
            "plr_prepare_s": round(prepare_s, 4),
        }
        ps = ents = None
        if cedarpy is not None:
            translation = cedar.translate(policy)
            t0 = time.perf_counter()
            ps = cedarpy.PolicySet.from_str(translation.text)
            ents = cedarpy.Entities.from_json_str("[]")
            info["cedar_statements"] = translation.statements
            info["cedar_parse_s"] = round(time.perf_counter() - t0, 4)
            disagree = _agreement(Engine(policy, clock=_virtual_clock()), cedarpy, ps, ents)
            info["probe_disagreements"] = disagree
            if disagree:
                section.notes.append(f"{n_tools} tools: plr and Cedar disagree on: " + "; ".join(disagree))
        sizes_info.append({"n_tools": n_tools, **info})

        for key, label in CASES.items():
            call = MEASURED_CALLS[key]
            lat = _time_plr(engine, call, plan, overhead)
            plr_p50[(key, n_tools)] = lat.p50_ns
            row = Row(
                section=NAME,
                case=f"{label}, {n_tools:,} tools",
                result=lat.text(),
                values={"n_tools": n_tools, **lat.values()},
            )
            checks: list[bool] = []
            targets: list[str] = []
            if key in P50_TARGET_NS:
                targets.append(f"p50 ≤ {fmt_ns(P50_TARGET_NS[key])}")
                checks.append(lat.p50_ns <= P50_TARGET_NS[key])
            if cedarpy is not None:
                req = cedar.request(call.tool, call.args, identity=call.identity, session=call.session)
                base = _time_cedar(cedarpy.is_authorized, req, ps, ents, plan, overhead)
                speedup = base.p50_ns / lat.p50_ns if lat.p50_ns > 0 else float("inf")
                row.baseline = "cedarpy " + base.text()
                row.baseline_name = "cedarpy.is_authorized"
                row.baseline_values = base.values()
                row.ratio = speedup
                row.ratio_text = f"{fmt_ratio(speedup)} faster"
                targets.append(f"≥ {MIN_SPEEDUP:.0f}× cedarpy")
                checks.append(speedup >= MIN_SPEEDUP)
                if key == "c":
                    row.note = "Cedar has no limits: its side is the plain permit"
            else:
                row.baseline = "skipped: cedarpy not installed"
                row.baseline_name = None
            row.target = ", ".join(targets)
            row.status = status_of(all(checks)) if checks else "INFO"
            section.rows.append(row)

    section.rows.append(_every_row(plan, overhead))
    section.rows.append(_unnamed_row(plan, overhead))
    section.details["policies"] = sizes_info
    if cedarpy is None:
        section.rows.append(
            Row(NAME, "cedarpy baseline", "skipped: cedarpy not installed", status="SKIP",
                note="pip install cedarpy to measure the baseline")
        )  # fmt: skip

    lo, hi = min(plan.sizes), max(plan.sizes)
    for key, label in CASES.items():
        a, b = plr_p50[(key, lo)], plr_p50[(key, hi)]
        growth = b / a if a > 0 else float("inf")
        section.rows.append(
            Row(
                section=NAME,
                case=f"{label}: {lo:,} → {hi:,} tools",
                result=f"p50 {fmt_ns(a)} → {fmt_ns(b)}",
                values={"p50_low_ns": a, "p50_high_ns": b, "growth": round(growth, 3)},
                ratio=growth,
                ratio_text=f"{fmt_ratio(growth)} growth",
                target=f"flat (≤ {FLAT_MAX_RATIO}×)",
                status=status_of(growth <= FLAT_MAX_RATIO),
            )
        )
    for info in sizes_info:
        line = (
            f"{info['n_tools']:,} tools: plr compile {fmt_s(info['plr_compile_s'])}, "
            f"Engine() {fmt_s(info['plr_prepare_s'])}"
        )
        if "cedar_parse_s" in info:
            line += (
                f"; Cedar {info['cedar_statements']:,} statements, PolicySet.from_str "
                f"{fmt_s(info['cedar_parse_s'])}, probes agreeing: "
                f"{len(PROBE_CALLS) - len(info['probe_disagreements'])}/{len(PROBE_CALLS)}"
            )
        section.notes.append(line)
    section.notes.append(
        f"p50/p99: single calls timed with perf_counter_ns minus the timer overhead ({overhead:.0f} ns); "
        f"median of {plan.plr_rounds} rounds × {plan.plr_calls:,} calls (Cedar: {plan.cedar_rounds} rounds, "
        "sized to a time budget); GC left on"
    )
    return section
