"""Compile time: ``compile_source(text)`` against Lark's bare LALR parse of the same text.

Generated policies of 200 / 2,000 / 20,000 rules (``policies.compile_policy``: a catalogue,
conditions of every kind, reasons, limits, hidden and denied tools). The baseline is
``dsl.parser._parser().parse(text)``: the same Lark parser object plr uses, with no nesting
scan, no transformer and nothing after it. Both run in the same process under the same
conditions (the garbage collector off on both sides, as ``compile_source`` pauses it itself;
heap collected before each run), interleaved; the figure is the median of several runs. Times
are CPU time of this process (``time.process_time``): on a shared machine other processes then
inflate both sides less (wall time is in the JSON too). The bare parse with the collector in its
default state is reported beside it (the collector makes a large bare parse much slower).

``compile_source`` itself builds no tree: its parse hands each reduction to the lowering
functions (``dsl.parser.parse_inline``), so the baseline also pays for the tree that compiling
does without. The baseline stays what it was: Lark's tree-building LALR parse of the same text
with the grammar and every option plr's parser has (contextual lexer, ``propagate_positions``,
``maybe_placeholders``, the lexer callbacks), the plain parse tree and no transformer.

The split per stage comes from timing wrappers put around plr's own stage functions for the
duration of the run (nothing in ``dsl`` is changed): nesting scan, LALR parse with lowering
(``parse_inline``, plus the tree parse and Transformer walk of a file it hands back to them),
resolve (imports, catalogue, selector expansion), checks, compile_program, and the rest
(diagnostic sorting, ``_finish``).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import dsl.compiler
import dsl.lower
import dsl.parser
from dsl.compiler import compile_source

from .harness import Config, Row, Section, Table, fmt_ratio, fmt_s, status_of
from .policies import compile_policy, count_rules

NAME = "compile"
TITLE = "Compile: compile_source vs Lark's bare LALR parse"

MAX_RATIO = 1.5  # full pipeline / bare parse, collector off on both sides, every size (issue #20)
MAX_PER_RULE_GROWTH = 1.5  # time per rule, largest policy / middle policy ("linear")

# (module, attribute, stage) in call order; stages nest, see _split().
_PATCHES: tuple[tuple[Any, str, str], ...] = (
    (dsl.parser, "_check_nesting", "nesting"),
    (dsl.lower, "parse_inline", "inline"),
    (dsl.lower, "parse", "parse"),
    (dsl.lower, "lower_tree", "lower"),
    (dsl.compiler, "load_program", "load"),
    (dsl.compiler, "check_program", "checks"),
    (dsl.compiler, "compile_program", "compile_program"),
)
STAGES = ("nesting scan", "LALR parse + lower (IR)", "resolve", "checks", "compile_program", "other")


@dataclass(frozen=True)
class _Plan:
    sizes: tuple[int, ...]
    repeats: dict[int, int]
    warn_size: int
    warn_repeats: int


def _plan(cfg: Config) -> _Plan:
    if cfg.quick:
        return _Plan((50, 200), {50: 2, 200: 2}, 200, 1)
    return _Plan((200, 2_000, 20_000), {200: 9, 2_000: 5, 20_000: 3}, 2_000, 3)


@contextmanager
def _stage_timers(acc: dict[str, float]) -> Iterator[bool]:
    """Wrap plr's stage functions with timers adding into ``acc``; yields False if one is missing."""
    originals: list[tuple[Any, str, Callable[..., Any]]] = []
    for module, attr, stage in _PATCHES:
        fn = getattr(module, attr, None)
        if fn is None:
            for m, a, f in originals:
                setattr(m, a, f)
            yield False
            return
        originals.append((module, attr, fn))

        def timed(*args: Any, _fn: Callable[..., Any] = fn, _stage: str = stage, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return _fn(*args, **kwargs)
            finally:
                acc[_stage] = acc.get(_stage, 0.0) + time.process_time() - t0

        setattr(module, attr, timed)
    try:
        yield True
    finally:
        for module, attr, fn in originals:
            setattr(module, attr, fn)


def _split(total: float, acc: dict[str, float]) -> dict[str, float]:
    """Nested wrapper times → exclusive stage times (seconds)."""
    nesting = acc.get("nesting", 0.0)
    parse = acc.get("inline", 0.0) + acc.get("parse", 0.0) + acc.get("lower", 0.0)
    load = acc.get("load", 0.0)
    checks = acc.get("checks", 0.0)
    comp = acc.get("compile_program", 0.0)
    return {
        "nesting scan": nesting,
        "LALR parse + lower (IR)": parse - nesting,
        "resolve": load - parse,
        "checks": checks,
        "compile_program": comp,
        "other": total - load - checks - comp,
    }


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.0f} kB"


def _bare_parse(text: str) -> None:
    dsl.parser._parser().parse(text)
    dsl.parser._comments.clear()  # the parser's COMMENT callback appends to a module list


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one call, from a freshly collected heap."""
    gc.collect()
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def _without_gc(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        was = gc.isenabled()
        gc.disable()
        try:
            return fn()
        finally:
            if was:
                gc.enable()

    return run


def _undeclared(text: str, every: int = 10) -> str:
    """The same policy with every ``every``-th catalogue entry left out: rules naming those
    tools get a "not in any declared catalogue; did you mean ..." error each."""
    out: list[str] = []
    k = 0
    for line in text.split("\n"):
        if line.startswith('    tool "'):
            k += 1
            if k % every == 0:
                continue
        out.append(line)
    return "\n".join(out)


def run(cfg: Config) -> Section:
    plan = _plan(cfg)
    section = Section(NAME, TITLE)
    dsl.parser._parser()  # build (or load from Lark's cache) before timing anything
    per_rule: dict[int, float] = {}
    splits: dict[int, dict[str, float]] = {}

    for size in plan.sizes:
        text = compile_policy(size)
        rules = count_rules(text)
        compile_source(text)  # warm up: regex caches, first-use imports
        reps = plan.repeats[size]
        bare: list[float] = []
        bare_wall: list[float] = []
        bare_gc: list[float] = []
        full: list[float] = []
        full_wall: list[float] = []
        stage_runs: list[dict[str, float]] = []
        parse_it = partial(_bare_parse, text)
        compile_it = _without_gc(partial(compile_source, text))
        for _ in range(reps):  # interleaved, so a noisy moment hits both sides alike
            cpu, wall = _timed(_without_gc(parse_it))
            bare.append(cpu)
            bare_wall.append(wall)
            bare_gc.append(_timed(parse_it)[0])
            acc: dict[str, float] = {}
            with _stage_timers(acc) as instrumented:
                cpu, wall = _timed(compile_it)
            full.append(cpu)
            full_wall.append(wall)
            if instrumented:
                stage_runs.append(_split(cpu, acc))
        b, f = statistics.median(bare), statistics.median(full)
        b_gc = statistics.median(bare_gc)
        ratio = f / b
        per_rule[size] = f / rules
        section.rows.append(
            Row(
                section=NAME,
                case=f"{rules:,} rules ({_size(len(text))}), compile_source",
                result=f"{fmt_s(f)} ({per_rule[size] * 1e6:.0f} µs/rule)",
                values={"rules": rules, "bytes": len(text), "median_cpu_s": round(f, 5), "runs_cpu_s": full,
                        "runs_wall_s": full_wall, "per_rule_us": round(per_rule[size] * 1e6, 2)},
                baseline=f"bare LALR parse {fmt_s(b)}",
                baseline_name="lark LALR parse (dsl.parser._parser().parse), collector off",
                baseline_values={"median_cpu_s": round(b, 5), "runs_cpu_s": bare, "runs_wall_s": bare_wall,
                                 "median_cpu_gc_on_s": round(b_gc, 5), "ratio_vs_gc_on": round(f / b_gc, 3)},
                note=f"bare parse with the collector on: {fmt_s(b_gc)} ({fmt_ratio(f / b_gc)} of it)",
                ratio=ratio,
                ratio_text=f"{fmt_ratio(ratio)} bare parse",
                target=f"≤ {MAX_RATIO:g}× bare parse",
                status=status_of(ratio <= MAX_RATIO),
            )
        )  # fmt: skip
        if stage_runs:
            splits[rules] = {st: statistics.median(r[st] for r in stage_runs) for st in STAGES}

    # The same policy with a tenth of its tools left out of the catalogue: an error (with a
    # "did you mean" search) per rule naming one. Shows whether reporting stays linear: both
    # sides run every check (build), since the errors stop the noisy one before compiling.
    size = plan.warn_size
    clean = compile_policy(size)
    noisy = _undeclared(clean)
    rules = count_rules(noisy)
    _, diags = dsl.compiler.build((), {"<bench>": noisy})
    t_noisy = statistics.median(_timed(partial(dsl.compiler.build, (), {"<bench>": noisy}))[0] for _ in range(plan.warn_repeats))
    t_clean = statistics.median(_timed(partial(dsl.compiler.build, (), {"<bench>": clean}))[0] for _ in range(plan.warn_repeats))
    section.rows.append(
        Row(
            section=NAME,
            case=f"{rules:,} rules, 10% of tools undeclared",
            result=f"{fmt_s(t_noisy)} ({len(diags):,} errors)",
            values={"rules": rules, "median_cpu_s": t_noisy, "errors": len(diags)},
            baseline=f"same policy, all declared {fmt_s(t_clean)}",
            baseline_name="checks (build) of the clean policy",
            baseline_values={"median_cpu_s": t_clean},
            ratio=t_noisy / t_clean,
            ratio_text=f"{fmt_ratio(t_noisy / t_clean)} the clean policy",
        )
    )

    sizes = sorted(per_rule)
    if len(sizes) >= 2:
        mid, hi = sizes[-2], sizes[-1]
        growth = per_rule[hi] / per_rule[mid]
        section.rows.append(
            Row(
                section=NAME,
                case=f"time per rule, {mid:,} → {hi:,} rules",
                result=f"{per_rule[mid] * 1e6:.0f} → {per_rule[hi] * 1e6:.0f} µs/rule",
                values={"per_rule_low_us": per_rule[mid] * 1e6, "per_rule_high_us": per_rule[hi] * 1e6},
                ratio=growth,
                ratio_text=f"{fmt_ratio(growth)} growth",
                target=f"linear (≤ {MAX_PER_RULE_GROWTH}×)",
                status=status_of(growth <= MAX_PER_RULE_GROWTH),
            )
        )
    section.details["stage_split_s"] = {str(k): v for k, v in splits.items()}
    if splits:
        section.tables.append(
            Table(
                title="where compile time goes (median ms, share of the total)",
                header=["stage", *(f"{n:,} rules" for n in splits)],
                rows=[
                    [st, *(f"{v[st] * 1e3:.1f} ({100 * v[st] / sum(v.values()):.0f}%)" for v in splits.values())]
                    for st in STAGES
                ],
            )
        )
    section.notes.append(
        "times are CPU seconds of this process (time.process_time), medians of interleaved runs; "
        "stage split: exclusive times from timing wrappers around dsl's stage functions during the "
        "compile_source runs ('other' = diagnostics sorting, _finish and the collector)"
    )
    return section
