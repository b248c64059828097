"""CLI start: wall time of ``plr --help`` and ``plr eval`` in fresh processes.

Each command runs ``N`` times as a subprocess (after one untimed run that fills Lark's parser
cache and plr's compiled-policy cache, which also keeps the rendered ``plr --help``, in a temp
dir of its own); ``plr eval`` is measured on a
cache hit (the policy unchanged since the last run: the common case, and the one the target is
about) and with ``--no-cache`` (validate and compile every time); the median is reported against the same interpreter doing nothing (``python -c pass``,
which includes this machine's site-packages ``.pth`` hooks), and, for reference, ``python -c
"import click"`` (a cached ``plr eval`` does not import click). ``plr`` is the installed console
script (the file pip wrote, not a version-manager shim), with ``PYTHONPATH`` pointing at the
checkout that holds these benchmarks, so a scratch copy measures its own ``dsl``.

Also: ``python -X importtime`` for the ``--help`` and ``eval`` import sets (top offenders by
self time, modules the bare interpreter imports left out), and an in-process split of one
``plr eval`` into imports, parser construction, compile and decide.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .harness import Config, Row, Section, Table, fmt_s, status_of

NAME = "cli"
TITLE = "CLI start: plr --help and plr eval (fresh processes)"

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "codex_worker.plr"
# issue #20: absolute wall times, interpreter start included
TARGET_S = {"help": 0.040, "eval": 0.050}

_EVAL_PHASES = r"""
import json, sys, time
t = [time.perf_counter()]
import dsl.cli
t.append(time.perf_counter())
import dsl.compiler, dsl.engine
t.append(time.perf_counter())
from dsl.parser import _parser
_parser()
t.append(time.perf_counter())
policy = dsl.compiler.compile_files([sys.argv[1]])
t.append(time.perf_counter())
dsl.engine.Engine(policy).decide("get-task")
t.append(time.perf_counter())
import dsl.cache
dsl.cache.load_cached(sys.argv[1])
t.append(time.perf_counter())
dsl.engine.Engine.from_data(dsl.cache.load_cached(sys.argv[1])).decide("get-task")
t.append(time.perf_counter())
names = ["import dsl.cli", "import compiler + engine", "build/load LALR parser", "compile_files", "Engine + decide",
         "cache: fill one entry", "cache hit: load_cached + Engine.from_data + decide"]
print(json.dumps({n: t[i + 1] - t[i] for i, n in enumerate(names)}))
"""


@dataclass(frozen=True)
class _Plan:
    runs: int
    importtime_runs: int


def _plan(cfg: Config) -> _Plan:
    return _Plan(3, 1) if cfg.quick else _Plan(21, 5)


def plr_command() -> tuple[list[str], str]:
    """The installed ``plr`` console script, or an equivalent ``python -c`` entry point."""
    script = Path(sysconfig.get_path("scripts")) / "plr"
    try:
        first = script.read_bytes()[:200].split(b"\n", 1)[0]
    except OSError:
        first = b""
    if first.startswith(b"#!") and b"python" in first:
        return [str(script)], "the installed console script plr"
    return [sys.executable, "-c", "import sys; from dsl.cli import main; sys.exit(main())"], "python -c entry point"


_CACHE_DIR = tempfile.mkdtemp(prefix="plr-bench-cache-")


def _env() -> dict[str, str]:
    """The environment of a user's shell: bytecode caches are written (as on any first run)."""
    env = dict(os.environ, NO_COLOR="1", PLR_CACHE_DIR=_CACHE_DIR)
    env.pop("PLR_NO_CACHE", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@dataclass(frozen=True)
class _Runs:
    wall_s: list[float]
    cpu_s: list[float]  # user + system time of the child

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_s)


def _run_many(cmd: list[str], runs: int) -> _Runs:
    env = _env()
    subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT, check=False)  # warm: .pyc, parser cache
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT, check=False)
        walls.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return _Runs(walls, cpus)


def _importtime(code: str) -> dict[str, tuple[int, int]]:
    """module -> (self µs, cumulative µs) from ``python -X importtime -c code``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, env=_env(), cwd=ROOT, check=False
    )
    out: dict[str, tuple[int, int]] = {}
    for line in proc.stderr.decode("utf-8", "replace").splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            self_us, cum_us, name = line[len("import time:") :].split("|", 2)
            out[name.strip()] = (int(self_us), int(cum_us))
        except ValueError:
            continue
    return out


def _offenders(code: str, runs: int, top: int = 10) -> tuple[list[list[str]], list[list[str]], float]:
    """Top modules by self time, self time per top-level package, and the total (ms)."""
    base = set(_importtime("pass"))
    samples = [_importtime(code) for _ in range(runs)]
    names = [n for n in samples[0] if n not in base]
    med = {n: (statistics.median(s.get(n, (0, 0))[0] for s in samples),
               statistics.median(s.get(n, (0, 0))[1] for s in samples)) for n in names}  # fmt: skip
    total_self_ms = sum(v[0] for v in med.values()) / 1e3
    ranked = sorted(med.items(), key=lambda kv: kv[1][0], reverse=True)[:top]
    rows = [[n, f"{s / 1e3:.1f}", f"{c / 1e3:.1f}"] for n, (s, c) in ranked]
    packages: dict[str, float] = {}
    for n, (s, _c) in med.items():
        packages[n.split(".")[0]] = packages.get(n.split(".")[0], 0.0) + s
    by_package = [[p, f"{s / 1e3:.1f}"] for p, s in sorted(packages.items(), key=lambda kv: kv[1], reverse=True)[:top]]
    return rows, by_package, total_self_ms


def run(cfg: Config) -> Section:
    plan = _plan(cfg)
    section = Section(NAME, TITLE)
    plr, how = plr_command()
    section.details["plr_command"] = plr
    base_runs = _run_many([sys.executable, "-c", "pass"], plan.runs)
    base = base_runs.wall
    section.rows.append(
        Row(NAME, "python -c pass (interpreter start)", f"{fmt_s(base)} (CPU {fmt_s(base_runs.cpu)})",
            values={"median_s": base, "median_cpu_s": base_runs.cpu, "runs_s": base_runs.wall_s,
                    "runs_cpu_s": base_runs.cpu_s})
    )  # fmt: skip
    # for reference: what importing click alone costs (`plr eval` runs without it when click
    # would read its command line in only one way, dsl/cli/eval.py; every other command needs it)
    click_runs = _run_many([sys.executable, "-c", "import click"], plan.runs)
    section.rows.append(
        Row(NAME, "python -c 'import click' (reference)", f"{fmt_s(click_runs.wall)} (CPU {fmt_s(click_runs.cpu)})",
            values={"median_s": click_runs.wall, "median_cpu_s": click_runs.cpu, "runs_s": click_runs.wall_s,
                    "over_interpreter_s": click_runs.wall - base},
            baseline=f"python -c pass {fmt_s(base)}", baseline_name="python -c pass",
            baseline_values={"median_s": base}, ratio=click_runs.wall / base,
            ratio_text=f"{click_runs.wall / base:.2f}× bare start", status="INFO")
    )  # fmt: skip
    compiled = Path(_CACHE_DIR) / "codex_worker.json"
    subprocess.run([*plr, "compile", str(EXAMPLE), "-o", str(compiled)], capture_output=True, env=_env(), check=True)
    example = EXAMPLE.relative_to(ROOT)
    cases = {
        "plr --help": ([*plr, "--help"], TARGET_S["help"]),
        f"plr eval {example} --tool get-task (cache hit)": (
            [*plr, "eval", str(EXAMPLE), "--tool", "get-task"],
            TARGET_S["eval"],
        ),
        "plr eval codex_worker.json --tool get-task (cache hit)": (
            [*plr, "eval", str(compiled), "--tool", "get-task"],
            TARGET_S["eval"],
        ),
        f"plr eval {example} --tool get-task --no-cache": (
            [*plr, "eval", str(EXAMPLE), "--tool", "get-task", "--no-cache"],
            None,
        ),
        "plr eval codex_worker.json --tool get-task --no-cache": (
            [*plr, "eval", str(compiled), "--tool", "get-task", "--no-cache"],
            None,
        ),
    }
    for label, (cmd, target) in cases.items():
        runs = _run_many(cmd, plan.runs)
        med = runs.wall
        section.rows.append(
            Row(
                section=NAME,
                case=label,
                result=f"{fmt_s(med)} (CPU {fmt_s(runs.cpu)})",
                values={"median_s": med, "median_cpu_s": runs.cpu, "runs_s": runs.wall_s, "runs_cpu_s": runs.cpu_s,
                        "over_interpreter_s": med - base},
                baseline=f"python -c pass {fmt_s(base)}",
                baseline_name="python -c pass",
                baseline_values={"median_s": base},
                ratio=med / base,
                ratio_text=f"{med / base:.2f}× bare start",
                target=f"≤ {target * 1e3:.0f} ms" if target is not None else "",
                status=status_of(med <= target) if target is not None else "INFO",
            )
        )

    for title, code in (
        ("plr --help", "import dsl.cli, dsl.cli.root_help, dsl.cache"),
        ("plr eval (cache hit)", "import dsl.cli, dsl.cli.eval, dsl.cache, dsl.engine"),
        ("plr eval --no-cache", "import dsl.cli, dsl.cli.eval, dsl.compiler, dsl.engine"),
    ):
        rows, by_package, total = _offenders(code, plan.importtime_runs)
        section.details[f"importtime {title}"] = {"total_self_ms": total, "top": rows, "by_package": by_package}
        section.tables.append(
            Table(f"imports for {title}: {total:.0f} ms self time in total; top offenders (ms)",
                  ["module", "self", "cumulative"], rows)
        )  # fmt: skip
        section.tables.append(Table(f"imports for {title} by package (ms self time)", ["package", "self"], by_package))

    proc = subprocess.run(
        [sys.executable, "-c", _EVAL_PHASES, str(EXAMPLE)], capture_output=True, env=_env(), cwd=ROOT, check=False
    )
    if proc.returncode == 0:
        phases: dict[str, float] = json.loads(proc.stdout)
        section.details["eval_phases_s"] = phases
        section.tables.append(
            Table("one plr eval, in process (after interpreter start)", ["phase", "ms"],
                  [[k, f"{v * 1e3:.1f}"] for k, v in phases.items()])
        )  # fmt: skip
    section.notes.append(
        f"plr = {how}; wall time, median of {plan.runs} runs after one warm-up run (CPU = the child's "
        "user + system time: what the machine would show without other load)"
    )
    return section
