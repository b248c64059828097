"""`plr watch`: recompile and retest on every save; a broken save shows its error and waits.

The loop is I/O at the edge; what to rerun after a change is a pure function of the
previous run (`affected_roots`), so it is tested without a file watcher.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from . import tester
from .errors import Diagnostic
from .policy_files import readable_policy_files


@dataclass
class WatchState:
    """What the last run loaded: each root and the files its program read."""

    files_of_root: dict[str, set[str]] = field(default_factory=dict)


def affected_roots(state: WatchState, changed: Iterable[str], all_roots: list[str]) -> list[str]:
    """Roots to rerun: those whose program read a changed file, plus changed roots themselves."""
    changed_abs = {os.path.abspath(c) for c in changed}
    out = []
    for root in all_roots:
        files = state.files_of_root.get(root, {os.path.abspath(root)})
        if files & changed_abs or os.path.abspath(root) in changed_abs:
            out.append(root)
    return out


def run_roots(
    roots: list[str], select: str | None, state: WatchState, unreadable: Iterable[Diagnostic] = ()
) -> tester.Report:
    """Run the tests of ``roots``; each file of ``unreadable`` is an error of the report."""
    report = tester.Report()
    report.suites += [tester.Suite(file=d.file, diagnostics=[d]) for d in unreadable]
    start = time.perf_counter()
    import re

    pattern = re.compile(select) if select else None
    for root in roots:
        suite = tester.load_suite(root)
        report.suites.append(suite)
        if suite.program is not None:
            prog = suite.program
            files = {os.path.abspath(m.path) for m in prog.modules if m.path} | {os.path.abspath(p) for p in prog.data_files}
            state.files_of_root[root] = files | {os.path.abspath(root)}
        for test in suite.tests:
            if pattern is not None and not pattern.search(test.name):
                report.skipped += 1
                continue
            report.results.append(tester.run_test(suite, test))
    report.duration = time.perf_counter() - start
    return report


def find_roots(paths: list[str]) -> tuple[list[str], list[Diagnostic]]:
    """The roots to run under ``paths``, and an error for each file found that `plr compile`
    would refuse to read (a FIFO, a device, an oversized file): those are never opened, so a
    save cannot make the watcher wait on one, and each is shown until it is fixed."""
    files, unreadable = readable_policy_files(paths)
    return tester.suite_roots(files), unreadable


def summary_lines(
    report: tester.Report,
    changed: list[str],
    max_lines: int = 20,
    *,
    paths: Iterable[str] = (),
    select: str | None = None,
) -> list[str]:
    """A one-screen summary: what changed, errors, failures (truncated), why no test ran on
    the first run (a note, not a stop: the next save may add one), the counts."""
    lines: list[str] = []
    stamp = time.strftime("%H:%M:%S")
    if changed:
        shown = ", ".join(os.path.relpath(c) for c in changed[:3]) + (" ..." if len(changed) > 3 else "")
        lines.append(f"[{stamp}] changed: {shown}")
    else:
        lines.append(f"[{stamp}] watching")
    body: list[str] = []
    for d in report.errors:
        body += d.format().splitlines()
    for r in report.results:
        if r.passed:
            continue
        body.append(f'FAIL {r.file}:{r.line}: test "{r.name}"')
        if r.error:
            body.append(f"    error: {r.error}")
        for f in r.failures:
            body += [f"  {f.location()}: {f.step}", f"    expected: {f.expected}", f"    actual:   {f.actual}"]
    if len(body) > max_lines:
        body = body[: max_lines - 1] + [f"... {len(body) - max_lines + 1} more lines (run plr test for all)"]
    lines += body
    # on the first run (a rerun runs only what a save affects, and says so in its counts)
    nothing = None if report.errors or changed else report.nothing_ran(paths, select)
    if nothing:
        lines.append(nothing)
    counts = f"{report.passed} passed, {report.failed} failed"
    if report.skipped:
        counts += f", {report.skipped} skipped"
    if report.errors:
        counts += f", {len(report.errors)} error{'' if len(report.errors) == 1 else 's'}"
    lines.append(f"{counts} in {report.duration:.2f}s — waiting for changes (Ctrl-C to stop)")
    return lines


def watch(
    paths: list[str],
    *,
    select: str | None = None,
    emit: Callable[[list[str]], None] = lambda lines: print("\n".join(lines), flush=True),
    debounce_ms: int = 150,
    stop_event: object | None = None,
) -> None:
    """Run everything once, then rerun the affected roots after each batch of changes."""
    import watchfiles

    state = WatchState()
    roots, unreadable = find_roots(paths)
    emit(summary_lines(run_roots(roots, select, state, unreadable), [], paths=paths, select=select))

    def sources(change: watchfiles.Change, path: str) -> bool:
        """Policy files, and JSON files a policy may read with `import data`."""
        return path.endswith((".plr", ".json")) and "__snapshots__" not in path

    for changes in watchfiles.watch(
        *paths, watch_filter=sources, debounce=debounce_ms, step=50, stop_event=stop_event, raise_interrupt=False  # type: ignore[arg-type]
    ):
        changed = sorted({p for _, p in changes})
        roots, unreadable = find_roots(paths)
        rerun = affected_roots(state, changed, roots)
        if not rerun and not unreadable and all(c.endswith(".json") for c in changed):
            continue  # a JSON file no policy reads
        for r in list(state.files_of_root):
            if r not in roots:
                del state.files_of_root[r]  # deleted or now imported by another file
        emit(summary_lines(run_roots(rerun, select, state, unreadable), changed))
