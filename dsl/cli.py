"""The `plr` command. Thin: parse flags, call the library, print, return an exit code.

Exit codes scripts can rely on: 0 ok, 1 a test/check/format failure, 2 usage or input error.
Heavy modules are imported inside commands so `plr --help` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2


def _color(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def _style(text: str, fg: str, bold: bool = False, err: bool = False) -> str:
    return click.style(text, fg=fg, bold=bold) if _color(sys.stderr if err else sys.stdout) else text


def _print_diagnostics(diags: list[Any]) -> None:
    from .errors import format_diagnostics

    if diags:
        click.echo(format_diagnostics(diags, color=_color(sys.stderr)), err=True)


def _not_json_number(word: str) -> float:
    raise ValueError(f"{word} is not a JSON number")


def _finite_float(text: str) -> float:
    """A JSON number that fits a double; 1e400 would become infinity, which no MCP call carries."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def _input_error(e: Any) -> NoReturn:
    """Print a PlrError (all its diagnostics) and exit 2."""
    _print_diagnostics(list(e.diagnostics))
    n = len([d for d in e.diagnostics if d.severity == "error"])
    if n > 1:
        click.echo(_style(f"{n} errors", "red", bold=True, err=True), err=True)
    sys.exit(EXIT_INPUT)


def _read_stdin(errors: list[Any] | None = None) -> str | None:
    """Stdin as text; not UTF-8 -> exit 2, or, given ``errors``, its diagnostic there and None."""
    from .errors import PlrError

    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        err = PlrError.at(f"input is not UTF-8 text (invalid byte at offset {e.start})", "<stdin>")
        if errors is None:
            _input_error(err)
        errors.extend(err.diagnostics)
        return None


_LAZY_COMMANDS = ("proxy", "approvals", "audit")  # defined in cli_proxy, imported on first use


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(self.commands)  # keep the teaching order, not alphabetical
        return names + [n for n in _LAZY_COMMANDS if n not in names]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in _LAZY_COMMANDS and name not in self.commands:
            from .cli_proxy import register

            register(self)
        return super().get_command(ctx, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="plr", prog_name="plr")
def cli() -> None:
    """plr: policy-as-code for AI agents' MCP tool calls.

    Write rules in .plr files, compile them to a PolicyLayer-style JSON policy, test them,
    and enforce them in front of a real MCP server.

    \b
    A 30-second tour:
      plr compile examples/codex_worker.plr        # .plr -> JSON policy
      plr test examples/                            # run the rule tests
      plr eval examples/codex_worker.plr --tool cancel-task --args '{"task_id": "t1"}' --explain

    Exit codes: 0 ok, 1 a test/check/format failure, 2 usage or input error.
    """


# --- compile / check ----------------------------------------------------------------------


def _missing(paths: tuple[str, ...]) -> list[Any]:
    """An error diagnostic for each path (not `-`) that does not exist."""
    from .errors import Diagnostic

    return [Diagnostic("error", "no such file or directory", p) for p in paths if p != "-" and not os.path.exists(p)]


def _roots(paths: tuple[str, ...], missing: list[Any] | None = None) -> list[str]:
    """The policies to compile under ``paths``. A path that does not exist exits 2, unless
    ``missing`` is given: then its diagnostic is added there and the other paths still count."""
    from .tester import discover, suite_roots

    gone = _missing(paths)
    if gone and missing is None:
        from .errors import PlrError

        _input_error(PlrError(gone[:1]))
    if missing is not None:
        missing.extend(gone)
    paths = tuple(p for p in paths if p == "-" or os.path.exists(p))
    files = discover(p for p in paths if p != "-")
    return suite_roots(files) if any(os.path.isdir(p) for p in paths) else files


@cli.command("compile")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True), help="Write the JSON here (`-`: stdout)."
)
@click.option("--no-source", is_flag=True, help="Leave out the `rule` (file:line) fields.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print warnings.")
def compile_cmd(paths: tuple[str, ...], output: str | None, no_source: bool, quiet: bool) -> None:
    """Compile .plr files (and their imports) into one JSON policy.

    All PATHS together form one policy; `-` reads the rules from stdin. Errors are printed as
    file:line:col with the source line and a caret, and the exit code is 2.

    \b
    Examples:
      plr compile policy.plr                    # JSON on stdout
      plr compile policy.plr -o policy.json --no-source
    """
    from .compiler import build, compile_program
    from .errors import PlrError

    if output and output != "-":
        _write_output_check(output, paths)
    texts = {"<stdin>": _read_stdin()} if "-" in paths else None
    roots = _roots(paths)
    if len(roots) > 1 and any(os.path.isdir(p) for p in paths):
        _input_error(
            PlrError.at(
                "a folder holds several independent policies ("
                + ", ".join(roots[:5])
                + "); name the file to compile, or use `plr check` for the folder",
                paths[0],
            )
        )
    prog, diags = build(roots, texts)
    errors = [d for d in diags if d.severity == "error"]
    if not quiet or errors:
        _print_diagnostics(diags if not quiet else errors)
    if errors:
        click.echo(_style(f"{len(errors)} error{'s' if len(errors) > 1 else ''}", "red", True, True), err=True)
        sys.exit(EXIT_INPUT)
    if not prog.modules:
        _input_error(PlrError.at("no .plr files found", paths[0]))
    text = compile_program(prog).to_json(source=not no_source)
    if output and output != "-":
        _write_output(output, text, sources=[*paths, *prog.sources])
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _fail(message: str) -> NoReturn:
    """One line on stderr, exit 2: an input or usage problem the user can fix."""
    click.echo(f"plr: error: {message}", err=True)
    sys.exit(EXIT_INPUT)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _write_output_check(path: str, sources: Any, what: str = "-o") -> None:
    """Before any work: refuse an output that is one of the inputs, or whose folder is missing."""
    target = os.path.realpath(path)
    for src in sources:
        if src and src != "-" and _same_file(src, target):
            _fail(f"{what} {path} is the input file {src}; refusing to overwrite it (write the output elsewhere)")
    if not os.path.lexists(target) and not os.path.isdir(os.path.dirname(target)):
        _fail(f"cannot write {path}: no such directory {os.path.dirname(target)}")


def _write_output(path: str, text: str, *, sources: Any = (), what: str = "-o") -> None:
    """Write ``text`` to ``path`` the way a shell redirect would, but atomically where it can.

    ``-`` is stdout. A symlink is followed and its target replaced. A target that exists and is
    not a regular file (a device such as /dev/null, a FIFO) is opened and written, never
    replaced. A regular file is replaced atomically (temp file in its own folder + rename) and
    keeps its mode and, where allowed, its owner; a new file gets ``0o666 & ~umask``. Writing
    over one of ``sources`` (the files the text was made from) is refused. Problems exit 2.
    """
    import stat
    import tempfile

    from .vocab import escape_surrogates

    if path == "-":
        click.echo(text, nl=False)
        return
    text = escape_surrogates(text)  # what a file holds must be UTF-8
    _write_output_check(path, sources, what)
    target = os.path.realpath(path)
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except (OSError, ValueError) as e:
        _fail(f"cannot write {path}: {getattr(e, 'strerror', None) or e}")
    try:
        if st is not None and stat.S_ISDIR(st.st_mode):
            _fail(f"cannot write {path}: it is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):
            # a device, FIFO or socket: write into it; replacing it would destroy it
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
            return
        folder = os.path.dirname(target)  # exists: _write_output_check said so
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".plr-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            if st is not None:  # keep the file's owner (if allowed) and mode, as an in-place edit would
                try:
                    os.chown(tmp, st.st_uid, st.st_gid)
                except OSError:
                    pass
                os.chmod(tmp, stat.S_IMODE(st.st_mode))
            else:
                os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        _fail(f"cannot write {path}: {e.strerror or e}")


@cli.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--strict", is_flag=True, help="Exit 1 when there are warnings.")
def check_cmd(paths: tuple[str, ...], fmt: str, strict: bool) -> None:
    """Report every error and warning of every policy, without writing anything.

    PATHS are files or folders (default: the current folder). Each policy in a folder (a file
    with tests, or one no other file imports) is checked with its imports.

    \b
    Examples:
      plr check policies/
      plr check policy.plr --format json        # for editors and CI
    """
    from .compiler import build

    missing: list[Any] = []  # a missing path is an error of the report, so --format json stays a document
    roots = _roots(paths or (".",), missing=missing)
    stdin_text = _read_stdin(missing) if "-" in paths else None
    diags = list(missing)
    stdin = {"<stdin>": stdin_text} if stdin_text is not None else None
    seen: set[tuple[Any, ...]] = set()
    for root, texts in [*((r, None) for r in roots), *([("<stdin>", stdin)] if stdin else [])]:
        _, ds = build([] if texts else [root], texts)
        for d in ds:
            key = (d.severity, d.file, d.line, d.col, d.message)
            if key not in seen:
                seen.add(key)
                diags.append(d)
    errors = [d for d in diags if d.severity == "error"]
    warnings = [d for d in diags if d.severity == "warning"]
    if fmt == "json":
        click.echo(json.dumps([d.to_dict() for d in diags], indent=2))
        _print_diagnostics(missing)  # and the human message on stderr
    else:
        _print_diagnostics(diags)
        checked = len(roots) + (1 if stdin else 0)
        summary = f"{checked} polic{'ies' if checked != 1 else 'y'} checked: {len(errors)} error{'s' if len(errors) != 1 else ''}, {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
        colour = "red" if errors else ("yellow" if warnings else "green")
        click.echo(_style(summary, colour, bold=True, err=True), err=True)
    if errors:
        sys.exit(EXIT_INPUT)
    if strict and warnings:
        sys.exit(EXIT_FAIL)


# --- fmt ----------------------------------------------------------------------------------


@cli.command("fmt")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 if a file would change.")
@click.option("--diff", is_flag=True, help="Write nothing; print a unified diff of the changes.")
@click.option("--json", "json_mode", is_flag=True, help="Format JSON policies (canonical form; seed `rate_limit` becomes `limits`).")
def fmt_cmd(paths: tuple[str, ...], check_only: bool, diff: bool, json_mode: bool) -> None:
    """Rewrite .plr files in canonical form (idempotent; never changes the compiled JSON).

    `-` (alone) formats stdin to stdout; with --check or --diff it prints nothing or the diff
    and exits 1 if the input would change. Files are rewritten atomically, keeping their mode;
    a symlink's target is rewritten.

    \b
    Examples:
      plr fmt policies/                # rewrite in place
      plr fmt --check policies/        # CI: exit 1 if anything is not formatted
      plr fmt --json policy.json       # canonical JSON policy
    """
    import difflib

    from .errors import PlrError
    from .tester import discover

    def format_text(text: str, name: str) -> str:
        if json_mode:
            from .policy import load_policy

            return load_policy(text, name=name).to_json()
        from .format import format_source

        return format_source(text, name)

    if "-" in paths:
        if len(paths) > 1:
            raise click.UsageError("`-` formats stdin to stdout; it cannot be combined with other paths")
        old = _read_stdin()
        try:
            new = format_text(old, "<stdin>")
        except PlrError as e:
            _input_error(e)
        if diff:
            if new != old:
                lines = difflib.unified_diff(old.splitlines(True), new.splitlines(True), "<stdin>", "<stdin> (formatted)")
                click.echo("".join(lines), nl=False)
        elif not check_only:
            click.echo(new, nl=False)
            return
        if new != old:
            click.echo("would reformat <stdin>", err=True)
            sys.exit(EXIT_FAIL)
        return
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += [f for f in discover([p])] if not json_mode else sorted(
                os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs if f.endswith(".json")
            )
        elif os.path.exists(p):
            files.append(p)
        else:
            _input_error(PlrError.at("no such file or directory", p))
    changed: list[str] = []
    failed = False
    for f in files:
        try:
            from .resolve import read_text

            old = read_text(f)
            new = format_text(old, f)
        except PlrError as e:
            _print_diagnostics(list(e.diagnostics))
            failed = True
            continue
        except (OSError, ValueError) as e:
            click.echo(f"{f}: error: {e}", err=True)
            failed = True
            continue
        if new == old:
            continue
        changed.append(f)
        if diff:
            click.echo("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f, f + " (formatted)")), nl=False)
        elif check_only:
            click.echo(f"would reformat {f}")
        else:
            _write_output(f, new, what="fmt")
            click.echo(f"reformatted {f}")
    if failed:
        sys.exit(EXIT_INPUT)
    if (check_only or diff) and changed:
        click.echo(_style(f"{len(changed)} file(s) would be reformatted", "yellow", err=True), err=True)
        sys.exit(EXIT_FAIL)
    if not changed and not check_only and not diff:
        click.echo(f"{len(files)} file(s) already formatted", err=True)


# --- test ---------------------------------------------------------------------------------


@cli.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--run", "select", metavar="REGEX", help="Only tests whose name matches REGEX.")
@click.option("-v", "--verbose", is_flag=True, help="List every test; show the decision trace of failures.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text", show_default=True)
@click.option("--coverage", "show_coverage", is_flag=True, help="Report rules that no test exercised.")
@click.option("--fail-under", type=click.FloatRange(0, 100), metavar="PCT", help="With --coverage: exit 1 below PCT%.")
@click.option("--snapshot", is_flag=True, help="Also compare each compiled policy with __snapshots__/NAME.json.")
@click.option("--update-snapshots", is_flag=True, help="Rewrite __snapshots__/NAME.json and list what changed.")
def test_cmd(
    paths: tuple[str, ...],
    select: str | None,
    verbose: bool,
    fmt: str,
    show_coverage: bool,
    fail_under: float | None,
    snapshot: bool,
    update_snapshots: bool,
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

    Exit codes: 0 all passed, 1 a test failed, 2 a policy does not compile.
    """
    from . import tester

    if select:
        import re

        try:
            re.compile(select)
        except re.error as e:
            raise click.BadParameter(f"not a valid regular expression: {e}", param_hint="--run") from None
    # a path that does not exist is an error of the report (like a policy that does not
    # compile), so --format json/junit still print a whole document; the others still run
    missing = _missing(paths)
    present = tuple(p for p in paths if p not in {d.file for d in missing})
    want_cov = show_coverage or fail_under is not None
    if present or not paths:
        report = tester.run(present or (".",), select=select, trace=verbose, coverage=want_cov)
    else:
        report = tester.Report()
    report.suites[:0] = [tester.Suite(file=d.file, diagnostics=[d]) for d in missing]
    if missing and fmt != "text":
        _print_diagnostics(missing)  # the human message, on stderr
    code = report.exit_code()
    snapshot_failures: list[str] = []
    if snapshot or update_snapshots:
        for suite in report.suites:
            if not suite.ok:
                continue
            if update_snapshots:
                if tester.write_snapshot(suite):
                    click.echo(f"updated snapshot {tester.snapshot_path(suite.file)}", err=True)
                continue
            status, diff = tester.snapshot_diff(suite)
            if status == "missing":
                snapshot_failures.append(f"{suite.file}: no snapshot at {tester.snapshot_path(suite.file)} (run with --update-snapshots)")
            elif status == "differs":
                snapshot_failures.append(f"{suite.file}: compiled policy differs from its snapshot\n{diff}")
    cov = tester.coverage(report) if (show_coverage or fail_under is not None) else None
    if fmt == "json":
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
        click.echo(json.dumps(out, indent=2))
    elif fmt == "junit":
        click.echo(_junit(report))
    else:
        _print_test_report(report, verbose)
        if cov is not None:
            _print_coverage(cov)
        for s in snapshot_failures:
            click.echo(_style("SNAPSHOT ", "red", True) + s)
    if code == EXIT_OK and snapshot_failures:
        code = EXIT_FAIL
    if code == EXIT_OK and fail_under is not None and cov is not None and _percent(cov) < fail_under:
        click.echo(_style(f"coverage {_percent(cov):.1f}% is under {fail_under:g}%", "red", True), err=True)
        code = EXIT_FAIL
    sys.exit(code)


def _percent(cov: list[Any]) -> float:
    return 100.0 * sum(c.covered for c in cov) / len(cov) if cov else 100.0


def _print_test_report(report: Any, verbose: bool) -> None:
    _print_diagnostics(report.errors)
    for suite in report.suites:
        results = [r for r in report.results if r.file == suite.file or any(r is x for x in report.results if x.file == suite.file)]
        if verbose:
            for r in results:
                mark = _style("PASS", "green", True) if r.passed else _style("FAIL", "red", True)
                click.echo(f"{mark} {r.file}:{r.line}: {r.name} ({r.calls} calls, {r.duration * 1000:.1f} ms)")
    for r in report.results:
        if r.passed:
            continue
        click.echo(_style("FAIL", "red", True) + f" {r.file}:{r.line}: test {json.dumps(r.name)}")
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
        parts.append(f"{len(report.errors)} errors")
    colour = "red" if report.failed or report.errors else "green"
    click.echo(_style(", ".join(parts), colour, True) + f" in {report.duration:.2f}s")


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


# --- eval ---------------------------------------------------------------------------------


def load_policy_data(path: str, use_cache: bool = True) -> dict[str, Any]:
    """A .json policy through the loader, anything else compiled as .plr, as the canonical
    dump ``Engine.from_data`` prepares; PlrError on failure. See dsl/cache.py."""
    from .errors import PlrError

    if not os.path.exists(path):
        raise PlrError.at("no such file", path)
    if use_cache:
        from .cache import load_cached

        return load_cached(path)
    if path.endswith(".json"):
        from .policy import load_policy

        return load_policy(path).to_dict()
    from .compiler import compile_files

    return compile_files([path]).to_dict()


@cli.command("eval")
@click.argument("policy", type=click.Path())
@click.option("--tool", "-t", required=True, help="Tool name of the call.")
@click.option("--args", "args_json", default="{}", show_default=True, metavar="JSON", help="The call's arguments as a JSON object.")
@click.option("--identity", help="Who the agent acts for.")
@click.option("--session", help="The agent session.")
@click.option("--server", help="The MCP server name.")
@click.option("--approved", is_flag=True, help="A human approved this call.")
@click.option("--explain", is_flag=True, help="Print every check made and the rule it came from.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Validate/compile the policy even if the compiled-policy cache has it (also: PLR_NO_CACHE=1).",
)
def eval_cmd(
    policy: str,
    tool: str,
    args_json: str,
    identity: str | None,
    session: str | None,
    server: str | None,
    approved: bool,
    explain: bool,
    fmt: str,
    no_cache: bool,
) -> None:
    """Decide one tool call with a .plr or .json policy.

    The validated (or compiled) policy is cached by content in ~/.cache/plr, so the next
    eval of an unchanged policy skips validation; an edit to the policy or to any file it
    imports is picked up at once.

    \b
    Examples:
      plr eval policy.plr --tool cancel-task --args '{"task_id": "t1"}'
      plr eval policy.json --tool cancel-task --args '{"task_id": "t1"}' --approved --explain
      plr eval policy.plr --tool get-task --format json
    """
    from .engine import Engine
    from .errors import PlrError

    try:
        args = json.loads(args_json, parse_constant=_not_json_number, parse_float=_finite_float)
    except (ValueError, RecursionError) as e:
        raise click.BadParameter(f"not valid JSON: {e}", param_hint="--args") from None
    if not isinstance(args, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(args), "a number")
        raise click.BadParameter(f"must be a JSON object (the call's arguments by name), not {kind}", param_hint="--args")
    try:
        data = load_policy_data(policy, use_cache=not no_cache)  # a broken policy fails here, once
        try:
            engine = Engine.from_data(data)
        except PlrError:
            if no_cache:
                raise
            # a cache entry that does not prepare is a miss: load the policy itself
            engine = Engine.from_data(load_policy_data(policy, use_cache=False))
    except PlrError as e:
        _input_error(e)
    d = engine.decide(tool, args, identity=identity, session=session, server=server, approved=approved, explain=explain)
    if fmt == "json":
        out = d.to_dict()
        if explain:
            out["trace"] = [{"check": t.check, "result": t.result, "rule": t.rule} for t in d.trace or ()]
        click.echo(json.dumps(out))
        return
    colour = {"allow": "green", "deny": "red"}.get(d.effect, "yellow")
    click.echo(_style(d.effect, colour, True) + f" ({d.code})" + (f" by {d.rule}" if d.rule else ""))
    if d.reason:
        click.echo(f"  reason: {d.reason}")
    if d.retry_after is not None:
        click.echo(f"  retry after: {d.retry_after:g} s")
    if explain:
        click.echo("  checks:")
        for t in d.trace or ():
            res = t.result if isinstance(t.result, str) else ("true" if t.result else "false")
            click.echo(f"    {t.check} -> {res}" + (f"   [{t.rule}]" if t.rule else ""))


# --- watch --------------------------------------------------------------------------------


@cli.command("watch")
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
    from .watch import watch

    if _color():
        emit = lambda lines: click.echo("\x1b[2J\x1b[H" + "\n".join(lines))  # noqa: E731 - clear the screen
    else:
        emit = lambda lines: click.echo("\n".join(lines))  # noqa: E731
    try:
        watch(list(paths or (".",)), select=select, emit=emit)
    except KeyboardInterrupt:
        pass
    click.echo("stopped watching", err=True)


# --- catalogues ---------------------------------------------------------------------------


@cli.command("catalog")
@click.argument("server", required=False)
@click.option("--from-server", "from_server", is_flag=True, help="Read the tool list of a live stdio server: plr catalog --from-server NAME -- CMD ARGS...")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def catalog_cmd(server: str | None, from_server: bool, fmt: str, command: tuple[str, ...]) -> None:
    """List the stdlib catalogues: servers, their tools and risk classes.

    With --from-server, start a live MCP server over stdio, read its tools/list and print a
    `server` block (risk classes from the tools' annotations) to review and save.

    \b
    Examples:
      plr catalog                             # every catalogue
      plr catalog memory                      # one, by name
      plr catalog --from-server my-server -- npx -y @modelcontextprotocol/server-memory
    """
    from . import catalog

    if from_server:
        if not command:
            raise click.UsageError("give the server command after --: plr catalog --from-server NAME -- CMD ARGS...")
        try:
            tools = catalog.tools_from_server(list(command), env=dict(os.environ))
        except Exception as e:  # noqa: BLE001 - any failure to talk to the server is an input error
            cause: BaseException = e
            while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
                cause = cause.exceptions[0]
            click.echo(f"plr: error: could not read tools/list from `{' '.join(command)}`: {type(cause).__name__}: {cause}", err=True)
            sys.exit(EXIT_INPUT)
        click.echo(catalog.catalogue_text(server or "server", tools, " ".join(command)), nl=False)
        return
    found = catalog.find(server) if server else catalog.stdlib_catalogues()
    if not found:
        names = ", ".join(c.server for c in catalog.stdlib_catalogues())
        click.echo(f"plr: error: no catalogue matches `{server}`; known: {names}", err=True)
        sys.exit(EXIT_INPUT)
    if fmt == "json":
        click.echo(json.dumps([{"import": c.module, "server": c.server, "tools": dict(c.tools)} for c in found], indent=2))
        return
    for c in found:
        click.echo(_style(c.server, "cyan", True) + f"  (import \"{c.module}\")")
        if c.header:
            click.echo(f"  {c.header}")
        for name, risk in c.tools:
            click.echo(f"    {name:<34} {risk}")


@cli.command("init")
@click.argument("server")
@click.option("--name", default="policy", show_default=True, help="File name stem: NAME.plr and NAME_test.plr.")
@click.option("--dir", "folder", default=".", type=click.Path(file_okay=False), show_default=True)
def init_cmd(server: str, name: str, folder: str) -> None:
    """Write a starter policy and its test file for a stdlib server.

    \b
    Example:
      plr init memory            # policy.plr + policy_test.plr for server-memory
      plr test .
    """
    from pathlib import Path

    from . import catalog

    found = catalog.find(server)
    if len(found) != 1:
        names = ", ".join(c.server for c in (found or catalog.stdlib_catalogues()))
        click.echo(f"plr: error: `{server}` matches {len(found)} catalogues; choose one of: {names}", err=True)
        sys.exit(EXIT_INPUT)
    if not name or name in (".", "..") or "/" in name or os.sep in name or (os.altsep and os.altsep in name) or "\0" in name:
        raise click.BadParameter(f"`{name}` is not a file name stem (put the folder in --dir)", param_hint="--name")
    policy, test = catalog.starter_files(found[0], f"{name}.plr")
    targets = [Path(folder) / f"{name}.plr", Path(folder) / f"{name}_test.plr"]
    # check every target before writing any, so a refusal never leaves half a starter behind
    for t in targets:
        if os.path.lexists(t):
            _fail(f"{t} exists; not overwriting it (choose another --name or --dir)")
    written: list[Path] = []
    try:
        os.makedirs(folder, exist_ok=True)
        for t, text in zip(targets, (policy, test)):
            catalog.write_new(t, text)
            written.append(t)
    except (OSError, ValueError) as e:
        for t in written:  # all or nothing
            t.unlink(missing_ok=True)
        _fail(f"cannot write the starter files in {folder}: {getattr(e, 'strerror', None) or e}")
    click.echo(f"wrote {os.path.join(folder, name)}.plr and {name}_test.plr; next: plr test {folder}")


# --- decompile / schema ---------------------------------------------------------------------


@cli.command("decompile")
@click.argument("policy", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), help="Write the .plr here (`-`: stdout).")
def decompile_cmd(policy: str, output: str | None) -> None:
    """Turn a JSON policy back into readable .plr rules (compiling them gives the same JSON).

    \b
    Example:
      plr decompile policy.json -o policy.plr
    """
    from .decompile import decompile
    from .errors import PlrError
    from .policy import load_policy

    if output and output != "-":
        _write_output_check(output, [policy])
    try:
        pol = load_policy(_read_stdin(), name="<stdin>") if policy == "-" else load_policy(policy)
    except PlrError as e:
        _input_error(e)
    try:
        text = decompile(pol)
    except PlrError as e:
        _input_error(e)
    if output and output != "-":
        _write_output(output, text, sources=[policy])
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of the compiled policy document.

    \b
    Example:
      plr schema > plr-policy.schema.json
    """
    from .policy import json_schema

    click.echo(json.dumps(json_schema(), indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> None:
    """Entry point: no input ever produces a traceback; a bug is reported in one line."""
    for stream in (sys.stdout, sys.stderr):
        # text we did not escape ourselves (a file name that is not UTF-8) is shown as \\udcff,
        # never an encoding error part-way through the output
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass
    try:
        cli.main(args=argv, prog_name="plr", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except RecursionError:
        click.echo("plr: error: input is nested too deeply to process", err=True)
        sys.exit(EXIT_INPUT)
    except Exception as e:  # noqa: BLE001 - last line of defence
        click.echo(f"plr: internal error: {type(e).__name__}: {e} (please report this)", err=True)
        sys.exit(EXIT_INPUT)


if __name__ == "__main__":  # pragma: no cover
    main()
