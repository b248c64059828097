"""`plr test` (the rule tests, coverage, snapshots; text, JSON or JUnit reports) and `plr watch`
(the same on every save)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .files import missing_paths
from .output import EXIT_FAIL, EXIT_OK, color, print_diagnostics, style


@click.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--run", "select", metavar="REGEX", help="Only tests whose name matches REGEX.")
@click.option("-v", "--verbose", is_flag=True, help="List every test; show the decision trace of failures.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text", show_default=True)
@click.option("--coverage", "show_coverage", is_flag=True, help="Report rules that no test exercised.")
@click.option("--fail-under", type=click.FloatRange(0, 100), metavar="PCT", help="With --coverage: exit 1 below PCT%.")
@click.option("--snapshot", is_flag=True, help="Also compare each compiled policy with __snapshots__/NAME.json.")
@click.option("--update-snapshots", is_flag=True, help="Rewrite __snapshots__/NAME.json and list what changed.")
@click.option("--strict", is_flag=True, help="Exit 1 when a policy has warnings (a test calling a misspelled tool, ...).")
def test_cmd(
    paths: tuple[str, ...],
    select: str | None,
    verbose: bool,
    fmt: str,
    show_coverage: bool,
    fail_under: float | None,
    snapshot: bool,
    update_snapshots: bool,
    strict: bool,
) -> None:
    """Run the test blocks of .plr files against the compiled policy.

    Each policy is compiled to JSON and that JSON is loaded back, so what is tested is what
    ships. PATHS are files or folders (default: the current folder, recursively).

    \b
    Examples:
      plr test examples/
      plr test policy.plr --run cancel -v
      plr test . --coverage --fail-under 90
      plr test . --snapshot                    # fail when the compiled JSON drifts

    Warnings (such as a test that calls a tool no rule or catalogue knows, close to one that is
    known) are printed on stderr; --strict makes them fail the run.

    No test running is a failure: an empty folder, files without test blocks, or a --run that
    matches no test name exit 5 (pytest's "no tests collected"), with a message on stderr
    saying what was searched, so a wrong path or filter in CI does not pass.

    Exit codes: 0 all passed, 1 a test failed (or, with --strict, a warning), 2 a policy does not
    compile, 5 no test ran.
    """
    from .. import tester
    from ..policy_files import readable_policy_files

    if select:
        import re

        try:
            re.compile(select)
        except re.error as e:
            raise click.BadParameter(f"not a valid regular expression: {e}", param_hint="--run") from None
    # a path that does not exist is an error of the report (like a policy that does not
    # compile), so --format json/junit still print a whole document; the others still run
    missing = missing_paths(paths)
    present = tuple(p for p in paths if p not in {d.file for d in missing})
    want_cov = show_coverage or fail_under is not None
    # each file found is read by read_policy_bytes first, as `plr compile` reads: a FIFO, a
    # device or an oversized file is an error of the report, never opened by the run
    files, unreadable = readable_policy_files(present or (".",)) if present or not paths else ([], [])
    if files:
        report = tester.run(files, select=select, trace=verbose, coverage=want_cov)
    else:
        report = tester.Report()
    refused = [*missing, *unreadable]
    report.suites[:0] = [tester.Suite(file=d.file, diagnostics=[d]) for d in refused]
    if refused and fmt != "text":
        print_diagnostics(refused)  # the human message, on stderr
    code = report.exit_code()
    nothing = report.nothing_ran(paths, select) if code == tester.EXIT_NO_TESTS else None
    passing = (EXIT_OK, tester.EXIT_NO_TESTS)  # a failure below (exit 1) says more than "no test ran"
    snapshot_failures = _check_snapshots(report, update_snapshots) if snapshot or update_snapshots else []
    cov = tester.coverage(report) if want_cov else None
    if fmt == "json":
        click.echo(json.dumps(_json_report(report, cov, snapshot_failures), indent=2))
    elif fmt == "junit":
        click.echo(_junit(report))
    else:
        _print_test_report(report, verbose)
        if cov is not None:
            _print_coverage(cov)
        for s in snapshot_failures:
            click.echo(style("SNAPSHOT ", "red", True) + s)
    if nothing:
        click.echo(style(f"plr test: {nothing}", "red", True, err=True), err=True)  # stderr, in every format
    if report.warnings:
        print_diagnostics(report.warnings)  # stderr: every format's document stays whole
        if strict and code in passing:
            code = EXIT_FAIL
    if code in passing and snapshot_failures:
        code = EXIT_FAIL
    if code in passing and fail_under is not None and cov is not None and _percent(cov) < fail_under:
        click.echo(style(f"coverage {_percent(cov):.1f}% is under {fail_under:g}%", "red", True), err=True)
        code = EXIT_FAIL
    sys.exit(code)


def _check_snapshots(report: Any, update: bool) -> list[str]:
    """Compare (or, with ``update``, rewrite) the snapshot of every policy that compiled: one
    message per snapshot that is missing or differs. Rewritten ones are listed on stderr."""
    from .. import tester

    failures: list[str] = []
    for suite in report.suites:
        if not suite.ok:
            continue
        if update:
            if tester.write_snapshot(suite):
                click.echo(f"updated snapshot {tester.snapshot_path(suite.file)}", err=True)
            continue
        status, diff = tester.snapshot_diff(suite)
        if status == "missing":
            failures.append(f"{suite.file}: no snapshot at {tester.snapshot_path(suite.file)} (run with --update-snapshots)")
        elif status == "differs":
            failures.append(f"{suite.file}: compiled policy differs from its snapshot\n{diff}")
    return failures


def _json_report(report: Any, cov: list[Any] | None, snapshot_failures: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "passed": report.passed,
        "failed": report.failed,
        "skipped": report.skipped,
        "errors": [d.to_dict() for d in report.errors],
        "tests": [r.to_dict() for r in report.results],
    }
    if cov is not None:
        out["coverage"] = {
            "percent": _percent(cov),
            "uncovered": [{"file": c.file, "line": c.line, "rule": c.text} for c in cov if not c.covered],
        }
    if snapshot_failures:
        out["snapshots"] = snapshot_failures
    return out


def _percent(cov: list[Any]) -> float:
    return 100.0 * sum(c.covered for c in cov) / len(cov) if cov else 100.0


def _print_test_report(report: Any, verbose: bool) -> None:
    print_diagnostics(report.errors)
    for suite in report.suites:
        results = [r for r in report.results if r.file == suite.file or any(r is x for x in report.results if x.file == suite.file)]
        if verbose:
            for r in results:
                mark = style("PASS", "green", True) if r.passed else style("FAIL", "red", True)
                click.echo(f"{mark} {r.file}:{r.line}: {r.name} ({r.calls} calls, {r.duration * 1000:.1f} ms)")
    for r in report.results:
        if r.passed:
            continue
        click.echo(style("FAIL", "red", True) + f" {r.file}:{r.line}: test {json.dumps(r.name)}")
        if r.error:
            click.echo(f"    error: {r.error}")
        for f in r.failures:
            click.echo(f"  {f.location()}: {f.step}")
            click.echo(f"    expected: {f.expected}")
            click.echo(f"    actual:   {f.actual}")
            for line in f.trace:
                click.echo(f"      {line}")
    parts = [f"{report.passed} passed", f"{report.failed} failed"]
    if report.skipped:
        parts.append(f"{report.skipped} skipped")
    if report.errors:
        parts.append(f"{len(report.errors)} error{'' if len(report.errors) == 1 else 's'}")
    colour = "red" if report.failed or report.errors or not report.results else "green"
    click.echo(style(", ".join(parts), colour, True) + f" in {report.duration:.2f}s")


def _print_coverage(cov: list[Any]) -> None:
    missing = [c for c in cov if not c.covered]
    click.echo(f"coverage: {_percent(cov):.1f}% of {len(cov)} rules exercised")
    for c in missing:
        click.echo(f"  not exercised: {c.file}:{c.line}: {c.text}")


def _xml_text(value: Any) -> str:
    """Text XML 1.0 can hold: characters it forbids (C0 controls other than tab/newline/CR,
    lone surrogates, U+FFFE/U+FFFF) are written as the escape ``\\uXXXX``."""
    import re

    forbidden = "[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
    return re.sub(forbidden, lambda m: f"\\u{ord(m.group()):04x}", str(value))


def _junit(report: Any) -> str:
    """JUnit XML: one <testsuite> per file, one <testcase> per test with at most one
    <failure> (all failing calls of the test) or one <error> (a crash)."""
    from xml.sax.saxutils import escape, quoteattr

    def attr(value: Any) -> str:
        return quoteattr(_xml_text(value))

    def text(value: Any) -> str:
        return escape(_xml_text(value))

    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    lines.append(
        f'<testsuites name="plr" tests="{len(report.results)}" failures="{report.failed}" time="{report.duration:.3f}">'
    )
    by_file: dict[str, list[Any]] = {}
    for d in report.errors:
        by_file.setdefault(d.file, [])
    for r in report.results:
        by_file.setdefault(r.file, []).append(r)
    for file, results in by_file.items():
        failures = sum(bool(r.failures) and r.error is None for r in results)
        errs = [d for d in report.errors if d.file == file]
        errors = len(errs) + sum(r.error is not None for r in results)
        lines.append(
            f'  <testsuite name={attr(file)} tests="{len(results) + len(errs)}" failures="{failures}" errors="{errors}">'
        )
        for d in errs:
            lines.append(
                f'    <testcase name="compile" classname={attr(file)}><error message={attr(d.message)}>'
                f"{text(d.format())}</error></testcase>"
            )
        for r in results:
            lines.append(f'    <testcase name={attr(r.name)} classname={attr(file)} time="{r.duration:.6f}">')
            details = []
            for f in r.failures:
                msg = f"{f.step}: expected {f.expected}, got {f.actual}"
                details.append(f.location() + ": " + msg)
            if r.error is not None:
                lines.append(f"      <error message={attr(r.error)}>{text(chr(10).join([r.error, *details]))}</error>")
            elif r.failures:
                first = r.failures[0]
                msg = f"{first.step}: expected {first.expected}, got {first.actual}"
                if len(r.failures) > 1:
                    msg += f" (and {len(r.failures) - 1} more)"
                lines.append(f"      <failure message={attr(msg)}>{text(chr(10).join(details))}</failure>")
            lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines)


# --- watch --------------------------------------------------------------------------------


@click.command("watch")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--run", "select", metavar="REGEX", help="Only tests whose name matches REGEX.")
def watch_cmd(paths: tuple[str, ...], select: str | None) -> None:
    """Recompile and rerun the tests of changed .plr files on every save.

    Runs everything once, then, after each save, the policies that read the changed file.
    A broken save shows its error and keeps watching. Ctrl-C stops.

    \b
    Example:
      plr watch policies/
    """
    from ..watch import watch

    if color():
        emit = lambda lines: click.echo("\x1b[2J\x1b[H" + "\n".join(lines))  # noqa: E731 - clear the screen
    else:
        emit = lambda lines: click.echo("\n".join(lines))  # noqa: E731
    try:
        watch(list(paths or (".",)), select=select, emit=emit)
    except KeyboardInterrupt:
        pass
    click.echo("stopped watching", err=True)
