"""Run .plr test blocks against the compiled policy — the JSON that ships, loaded back.

Like OPA's tester, this is a library: it discovers suites, runs them and returns results as
data; the CLI and the pytest plugin only report. Each test gets fresh limit counters and a
virtual clock, so tests are independent and never sleep.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import ir
from .compiler import build, compile_program
from .errors import Diagnostic, PlrError
from .policy import Policy, load_policy
from .reading import read_policy_bytes
from .resolve import Program

# `plr test`'s exit code when no test ran (an empty folder, files without test blocks, a --run
# that matched nothing): pytest's "no tests collected" code, unused by every other plr command
# (0 ok, 1 a failure, 2 an input or usage error), so a wrong path or filter in CI does not pass
EXIT_NO_TESTS = 5


class VirtualClock:
    """A clock the test advances with `after`; starts far from zero so windows never go negative,
    at Monday 2024-01-01 00:00 UTC, so a test's calendar windows (`per calendar day`) begin
    with it: `after 1d` starts the next day, `after 23h` does not."""

    def __init__(self, start: float = 1_704_067_200.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Failure:
    file: str
    line: int
    step: str  # the call (or visible) as written
    expected: str
    actual: str
    rule: str | None = None
    trace: list[str] = field(default_factory=list)

    def location(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class TestResult:
    __test__ = False
    file: str
    line: int
    name: str
    failures: list[Failure] = field(default_factory=list)
    calls: int = 0
    duration: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures and self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "name": self.name,
            "passed": self.passed,
            "calls": self.calls,
            "duration": round(self.duration, 6),
            "error": self.error,
            "failures": [f.__dict__ for f in self.failures],
        }


@dataclass
class Suite:
    """One root .plr file with its imports, compiled once."""

    file: str
    program: Program | None = None
    policy: Policy | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    tests: list[ir.TestCase] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.policy is not None


# --- discovery ----------------------------------------------------------------------------


def discover(paths: Iterable[str]) -> list[str]:
    """`.plr` files under the given paths, sorted; hidden folders and snapshots are skipped."""
    found: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("__snapshots__", "node_modules"))
                for f in sorted(files):
                    if f.endswith(".plr"):
                        found.append(os.path.normpath(os.path.join(root, f)))
        else:
            found.append(os.path.normpath(p))
    return list(dict.fromkeys(found))


def _imports_of(text: str) -> list[str]:
    return re.findall(r'^\s*import\s+"([^"]+)"', text, flags=re.MULTILINE)


def suite_roots(files: list[str]) -> list[str]:
    """Files to compile: those with tests, plus those no other found file imports."""
    imported: set[str] = set()
    has_tests: set[str] = set()
    for f in files:
        try:  # the safe reader: a FIFO under the folder is refused, never waited on
            text = read_policy_bytes(f).decode("utf-8", errors="replace")
        except (OSError, ValueError):
            continue  # compiled as a root: its compile says why it cannot be read
        if re.search(r'^\s*test\s+"', text, flags=re.MULTILINE):
            has_tests.add(f)
        for spec in _imports_of(text):
            if spec.startswith("stdlib/"):
                from .resources import stdlib_dir

                name = spec[len("stdlib/") :]
                imported.add(os.path.realpath(stdlib_dir() / (name if name.endswith(".plr") else name + ".plr")))
            else:
                imported.add(os.path.realpath(os.path.join(os.path.dirname(f), spec)))
    return [f for f in files if f in has_tests or os.path.realpath(f) not in imported]


def load_suite(file: str) -> Suite:
    """Compile one root file to JSON, load that JSON back (what ships is what is tested)."""
    suite = Suite(file=file)
    prog, diags = build([file])
    suite.program = prog
    suite.diagnostics = diags
    if any(d.severity == "error" for d in diags) or not prog.roots:
        if not diags:
            suite.diagnostics = [Diagnostic("error", "could not load the file", file)]
        return suite
    compiled = compile_program(prog)
    text = compiled.to_json()
    try:
        suite.policy = load_policy(text, name=file)
    except PlrError as e:  # a compiler bug must show, not pass silently
        suite.diagnostics = [*diags, *e.diagnostics]
        return suite
    suite.tests = list(prog.roots[0].tests)
    return suite


# --- running ------------------------------------------------------------------------------


def format_args(args: dict[str, Any] | None) -> str:
    if not args:
        return ""
    parts = []
    for k, v in args.items():
        key = k if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) else json.dumps(k)
        parts.append(f"{key}: {json.dumps(v, ensure_ascii=False)}")
    text = "{" + ", ".join(parts) + "}"
    return text if len(text) <= 120 else text[:117] + "...}"


def describe_call(step: ir.CallStep) -> str:
    out = f"call {json.dumps(step.tool)}"
    if step.args:
        out += " " + format_args(step.args)
    if step.approved:
        out += " approved"
    return out


def _describe_expected(step: ir.CallStep) -> str:
    out = step.effect + (f" {step.code}" if step.code else "")
    if step.reason is not None:
        out += f" reason {json.dumps(step.reason)}"
    return out


def _describe_decision(d: Any) -> str:
    out = f"{d.effect} {d.code}"
    if d.rule:
        out += f" (by {d.rule})"
    if d.reason:
        out += f": {d.reason}"
    return out


@dataclass
class _Context:
    identity: str | None = None
    session: str | None = None
    server: str | None = None


def run_test(suite: Suite, test: ir.TestCase, *, trace: bool = False, covered: set[str] | None = None) -> TestResult:
    from .engine import Engine

    assert suite.policy is not None and suite.program is not None
    result = TestResult(file=test.span.file, line=test.span.line, name=test.name)
    clock = VirtualClock()
    engine = Engine(suite.policy, clock=clock)
    ctx = _Context()
    explain = trace or covered is not None
    hide_rules = _hide_rules(suite) if covered is not None else {}
    start = time.perf_counter()

    def run(steps: tuple[ir.Step, ...]) -> None:
        for step in steps:
            if isinstance(step, ir.CallStep):
                result.calls += 1
                d = engine.decide(
                    step.tool,
                    step.args if step.args is not None else {},
                    identity=ctx.identity,
                    session=ctx.session,
                    server=ctx.server,
                    approved=step.approved,
                    explain=explain,
                )
                if covered is not None:
                    if d.code == "hidden":
                        covered.update(hide_rules.get(step.tool, ()))
                    if d.rule:
                        covered.add(d.rule)
                    for t in d.trace or ():
                        if t.rule:
                            covered.add(t.rule)
                # the engine's `error` (a bug turned into a deny) never satisfies an expectation:
                # a broken engine that denied everything would otherwise pass every `-> deny`
                engine_error = d.code == "error"
                ok = not engine_error and d.effect == step.effect and (step.code is None or d.code == step.code)
                if ok and step.reason is not None:
                    ok = step.reason in (d.reason or "")
                if not ok:
                    result.failures.append(
                        Failure(
                            file=step.span.file,
                            line=step.span.line,
                            step=describe_call(step),
                            expected=_describe_expected(step),
                            actual=(
                                f"engine error (no expectation accepts it): {d.reason}"
                                if engine_error
                                else _describe_decision(d)
                            ),
                            rule=d.rule,
                            trace=[f"{t.check} -> {t.result}" + (f"  [{t.rule}]" if t.rule else "") for t in d.trace or ()]
                            if trace
                            else [],
                        )
                    )
            elif isinstance(step, ir.ContextStep):
                setattr(ctx, step.key, step.value)
            elif isinstance(step, ir.AfterStep):
                clock.advance(step.seconds)
            elif isinstance(step, ir.RepeatStep):
                for _ in range(step.times):
                    before = len(result.failures)
                    run(step.steps)
                    if len(result.failures) > before:
                        break  # one failing iteration says it all
            elif isinstance(step, ir.VisibleStep):
                _check_visible(suite, engine, ctx, step, result)

    try:
        run(test.steps)
    except Exception as e:  # noqa: BLE001 - a crash is reported as the test's error, never raised
        result.error = f"{type(e).__name__}: {e}"
    result.duration = time.perf_counter() - start
    return result


def _hide_rules(suite: Suite) -> dict[str, list[str]]:
    """tool -> the `hide` rules that hide it (hidden decisions carry no rule of their own)."""
    from .resolve import rules_by_tool

    prog = suite.program
    assert prog is not None
    by_tool, hide_all, _ = rules_by_tool(prog)
    everyone = [prog.rule_name(rr.rule.span) for rr in hide_all]

    class _Map(dict):  # type: ignore[type-arg]
        def __missing__(self, tool: str) -> list[str]:
            return everyone

    out = _Map()
    for tool, tr in by_tool.items():
        out[tool] = [prog.rule_name(rr.rule.span) for rr in tr.hide] + everyone
    return out


def _check_visible(suite: Suite, engine: Any, ctx: _Context, step: ir.VisibleStep, result: TestResult) -> None:
    prog = suite.program
    assert prog is not None
    if ctx.server is not None and ctx.server in prog.servers:
        names = [t.name for t in prog.servers[ctx.server]]
    else:
        names = list(dict.fromkeys(t.name for tools in prog.servers.values() for t in tools))
    seen = engine.visible(names)
    want = list(step.tools)
    if sorted(seen) != sorted(want):
        missing = sorted(set(want) - set(seen))
        extra = sorted(set(seen) - set(want))
        detail = []
        if missing:
            detail.append("not visible: " + ", ".join(missing))
        if extra:
            detail.append("also visible: " + ", ".join(extra))
        result.failures.append(
            Failure(
                file=step.span.file,
                line=step.span.line,
                step="visible " + json.dumps(want),
                expected=json.dumps(sorted(want)),
                actual=json.dumps(sorted(seen)) + (" (" + "; ".join(detail) + ")" if detail else ""),
            )
        )


@dataclass
class Report:
    suites: list[Suite] = field(default_factory=list)
    results: list[TestResult] = field(default_factory=list)
    skipped: int = 0
    duration: float = 0.0
    covered: set[str] = field(default_factory=set)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for s in self.suites for d in s.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        """The policies' warnings (a test of a misspelled tool among them), once each."""
        seen: dict[tuple[str, int, int, str], Diagnostic] = {}
        for s in self.suites:
            for d in s.diagnostics:
                if d.severity == "warning":
                    seen.setdefault((d.file, d.line, d.col, d.message), d)
        return list(seen.values())

    @property
    def tests_found(self) -> int:
        """Tests of the policies that compiled, run or skipped by `--run`."""
        return len(self.results) + self.skipped

    def exit_code(self) -> int:
        """2 a policy does not compile, 1 a test failed, EXIT_NO_TESTS no test ran, 0 passed."""
        if self.errors:
            return 2
        if self.failed:
            return 1
        return EXIT_NO_TESTS if not self.results else 0

    def nothing_ran(self, paths: Iterable[str] = (), select: str | None = None) -> str | None:
        """Why no test ran (what was searched, what was found), or None when some test ran."""
        if self.results:
            return None
        where = ", ".join(paths) or "."
        if self.skipped:
            n = self.skipped
            found = "the one test" if n == 1 else f"any of the {n} tests"
            return (
                f"no test ran: --run {json.dumps(select) if select else 'REGEX'} did not match {found} "
                f"found under {where} (the regex searches test names)"
            )
        compiled = [s for s in self.suites if s.ok]
        if compiled:
            n = len(compiled)
            return (
                f"no test ran: {n} polic{'ies' if n != 1 else 'y'} found under {where}, "
                f'and none has a test block (test "NAME" {{ call "TOOL" -> EFFECT }})'
            )
        if self.suites:
            return None  # nothing compiled: the errors say why
        return (
            f"no test ran: no .plr file found under {where} "
            "(hidden folders, __snapshots__ and node_modules are not searched)"
        )


def run(
    paths: Iterable[str],
    *,
    select: str | None = None,
    trace: bool = False,
    coverage: bool = False,
) -> Report:
    """Discover, compile and run; never raises for bad input (errors land in the report)."""
    start = time.perf_counter()
    report = Report()
    pattern = re.compile(select) if select else None
    files = discover(paths)
    for file in suite_roots(files):
        suite = load_suite(file)
        report.suites.append(suite)
        for test in suite.tests:
            if pattern is not None and not pattern.search(test.name):
                report.skipped += 1
                continue
            report.results.append(run_test(suite, test, trace=trace, covered=report.covered if coverage else None))
    report.duration = time.perf_counter() - start
    return report


# --- coverage -----------------------------------------------------------------------------


@dataclass
class RuleCoverage:
    file: str
    line: int
    text: str
    covered: bool


def coverage(report: Report) -> list[RuleCoverage]:
    """Each rule of the tested files (stdlib excluded) and whether any test decision touched it."""
    out: dict[tuple[str, int], RuleCoverage] = {}
    for suite in report.suites:
        prog = suite.program
        if prog is None or suite.policy is None or not suite.tests:
            continue
        for rr in prog.rules:
            span = rr.rule.span
            name = prog.rule_name(span)
            if name.startswith("stdlib/"):
                continue
            key = (span.file, span.line)
            hit = name in report.covered
            src = (prog.sources.get(span.file, "").splitlines() or [""])
            text = src[span.line - 1].strip() if 0 < span.line <= len(src) else ""
            prev = out.get(key)
            out[key] = RuleCoverage(span.file, span.line, text, hit or (prev.covered if prev else False))
    return sorted(out.values(), key=lambda c: (c.file, c.line))


# --- snapshots ----------------------------------------------------------------------------


def snapshot_path(file: str) -> Path:
    p = Path(file)
    return p.parent / "__snapshots__" / (p.stem + ".json")


def snapshot_text(policy: Policy) -> str:
    """Snapshots pin what decides, not where it was written: `rule` locations are left out."""
    return policy.to_json(source=False)


def snapshot_diff(suite: Suite) -> tuple[str, str | None]:
    """(status, unified diff): status is `same`, `differs` or `missing`."""
    import difflib

    assert suite.policy is not None
    path = snapshot_path(suite.file)
    new = snapshot_text(suite.policy)
    if not path.exists():
        return "missing", None
    old = path.read_text(encoding="utf-8")
    if old == new:
        return "same", None
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), str(path), f"{suite.file} (compiled)"
        )
    )
    return "differs", diff


def write_snapshot(suite: Suite) -> bool:
    """Write the snapshot; True when it changed (or was created)."""
    assert suite.policy is not None
    path = snapshot_path(suite.file)
    new = snapshot_text(suite.policy)
    if path.exists() and path.read_text(encoding="utf-8") == new:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")
    return True


def iter_steps(steps: tuple[ir.Step, ...]) -> Iterator[ir.Step]:
    for s in steps:
        yield s
        if isinstance(s, ir.RepeatStep):
            yield from iter_steps(s.steps)
