"""The policy-file commands: `plr compile`, `check`, `fmt`, `decompile` and `schema`.

They read .plr or JSON policies and write policies or reports; none runs a policy.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from .output import (
    EXIT_FAIL,
    EXIT_INPUT,
    input_error,
    print_diagnostics,
    read_stdin,
    shown,
    style,
    write_output,
    write_output_check,
)

if TYPE_CHECKING:
    from ..errors import PlrError


def missing_paths(paths: tuple[str, ...]) -> list[Any]:
    """An error diagnostic for each path (not `-`) that does not exist."""
    from ..errors import Diagnostic

    return [Diagnostic("error", "no such file or directory", p) for p in paths if p != "-" and not os.path.exists(p)]


def special_files(files: list[str]) -> list[Any]:
    """An error diagnostic for each file that is not a regular file (a FIFO, a socket, a
    device): reading one could wait for ever, so it is never opened."""
    from ..errors import Diagnostic
    from ..reading import not_a_regular_file

    out = []
    for f in files:
        try:
            why = not_a_regular_file(os.stat(f).st_mode)  # stat does not open: it never waits
        except OSError:
            continue  # gone meanwhile: reading it says so
        if why:
            out.append(Diagnostic("error", f"cannot read {f}: {why}", f))
    return out


def _roots(paths: tuple[str, ...], missing: list[Any] | None = None) -> list[str]:
    """The policies to compile under ``paths``. A path that does not exist, or a file that is not
    a regular file (a FIFO, a socket, a device), exits 2, unless ``missing`` is given: then its
    diagnostic is added there and the other paths still count."""
    from ..tester import discover, suite_roots

    gone = missing_paths(paths)
    paths = tuple(p for p in paths if p == "-" or os.path.exists(p))
    files = discover(p for p in paths if p != "-")
    special = special_files(files)  # never read, not even to look for tests and imports
    if special:
        skip = {d.file for d in special}
        files = [f for f in files if f not in skip]
    bad = gone + special
    if bad and missing is None:
        from ..errors import PlrError

        input_error(PlrError(bad[:1]))
    if missing is not None:
        missing.extend(bad)
    return suite_roots(files) if any(os.path.isdir(p) for p in paths) else files


# --- compile / check ----------------------------------------------------------------------


@click.command("compile")
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
    from ..compiler import build, compile_program
    from ..errors import PlrError
    from ..reading import read_policy_text

    if output and output != "-":
        write_output_check(output, paths)
    texts = {"<stdin>": read_stdin()} if "-" in paths else None
    roots = _roots(paths)
    if len(roots) > 1 and any(os.path.isdir(p) for p in paths):
        input_error(
            PlrError.at(
                "a folder holds several independent policies ("
                + ", ".join(roots[:5])
                + "); name the file to compile, or use `plr check` for the folder",
                paths[0],
            )
        )
    prog, diags = build(roots, texts, reader=read_policy_text)  # regular files only, size-capped
    errors = [d for d in diags if d.severity == "error"]
    if not quiet or errors:
        print_diagnostics(diags if not quiet else errors)
    if errors:
        click.echo(style(f"{len(errors)} error{'s' if len(errors) > 1 else ''}", "red", True, True), err=True)
        sys.exit(EXIT_INPUT)
    if not prog.modules:
        input_error(PlrError.at("no .plr files found", paths[0]))
    text = compile_program(prog).to_json(source=not no_source)
    if output and output != "-":
        write_output(output, text, sources=[*paths, *prog.sources])
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github", "sarif"]),
    default="text",
    show_default=True,
    help="text: the caret form; json: a list of diagnostics; github: GitHub Actions annotations; "
    "sarif: SARIF 2.1.0 (code scanning).",
)
@click.option("--strict", is_flag=True, help="Exit 1 when there are warnings.")
def check_cmd(paths: tuple[str, ...], fmt: str, strict: bool) -> None:
    """Report every error and warning of every policy, without writing anything.

    PATHS are files or folders (default: the current folder). Each policy in a folder (a file
    with tests, or one no other file imports) is checked with its imports. A file named *.json
    is a compiled policy: it is checked as `plr eval` and `plr proxy` load it.

    \b
    Examples:
      plr check policies/
      plr check policy.plr --format json        # for editors and scripts
      plr check policies/ --format github       # annotations on a pull request
      plr check policies/ --format sarif > plr.sarif

    Exit 0: no errors; 1: warnings with --strict; 2: errors.
    """
    from ..compiler import build
    from ..reading import read_policy_text

    missing: list[Any] = []  # a missing path is an error of the report, so --format json stays a document
    roots = _roots(paths or (".",), missing=missing)
    stdin_text = read_stdin(missing) if "-" in paths else None
    diags = list(missing)
    stdin = {"<stdin>": stdin_text} if stdin_text is not None else None
    seen: set[tuple[Any, ...]] = set()
    for root, texts in [*((r, None) for r in roots), *([("<stdin>", stdin)] if stdin else [])]:
        if texts is None and root.endswith(".json"):  # a compiled policy: checked as the loader reads it
            from ..policy import policy_file_diagnostics

            ds = policy_file_diagnostics(root)
        else:
            _, ds = build([] if texts else [root], texts, reader=read_policy_text)
        for d in ds:
            key = (d.severity, d.file, d.line, d.col, d.message)
            if key not in seen:
                seen.add(key)
                diags.append(d)
    errors = [d for d in diags if d.severity == "error"]
    warnings = [d for d in diags if d.severity == "warning"]
    if fmt != "text":
        from .diagnostic_formats import render

        click.echo(render(fmt, diags), nl=False)
        print_diagnostics(missing)  # and the human message on stderr
    else:
        print_diagnostics(diags)
        checked = len(roots) + (1 if stdin else 0)
        summary = f"{checked} polic{'ies' if checked != 1 else 'y'} checked: {len(errors)} error{'s' if len(errors) != 1 else ''}, {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
        colour = "red" if errors else ("yellow" if warnings else "green")
        click.echo(style(summary, colour, bold=True, err=True), err=True)
    if errors:
        sys.exit(EXIT_INPUT)
    if strict and warnings:
        sys.exit(EXIT_FAIL)


# --- fmt ----------------------------------------------------------------------------------


@click.command("fmt")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 if a file would change.")
@click.option("--diff", is_flag=True, help="Write nothing; print a unified diff of the changes.")
@click.option("--json", "json_mode", is_flag=True, help="Format JSON policies (canonical form; seed `rate_limit` becomes `limits`).")
def fmt_cmd(paths: tuple[str, ...], check_only: bool, diff: bool, json_mode: bool) -> None:
    """Rewrite .plr files in canonical form (idempotent; never changes the compiled JSON).

    PATHS are files or folders (default: the current folder, searched as `plr check` and
    `plr test` search it; hidden folders and node_modules are skipped). In a folder, a symlink
    to a file outside it and a virtual environment's files (under a `pyvenv.cfg`) are left
    alone; a file named on the command line is formatted (a symlink's target). With --json,
    name the policies: a folder's other JSON files (package.json, ...) are not policies.

    `-` (alone) formats stdin to stdout; with --check or --diff it prints nothing or the diff
    and exits 1 if the input would change. Files are rewritten atomically, keeping their mode;
    a symlink's target is rewritten.

    \b
    Examples:
      plr fmt                          # every .plr file under the current folder
      plr fmt policies/                # rewrite in place
      plr fmt --check                  # CI: exit 1 if anything is not formatted
      plr fmt --json policy.json       # canonical JSON policy
    """
    if not paths and json_mode:
        raise click.UsageError("--json formats the JSON policies you name: plr fmt --json policy.json")
    paths = paths or (".",)  # as `plr check` and `plr test`
    if "-" in paths:
        if len(paths) > 1:
            raise click.UsageError("`-` formats stdin to stdout; it cannot be combined with other paths")
        _fmt_stdin(check_only, diff, json_mode)
        return
    files = _fmt_targets(paths, json_mode)
    changed, failed = _fmt_files(files, check_only, diff, json_mode)
    if failed:
        sys.exit(EXIT_INPUT)
    if (check_only or diff) and changed:
        click.echo(style(f"{len(changed)} file(s) would be reformatted", "yellow", err=True), err=True)
        sys.exit(EXIT_FAIL)
    if not files:
        click.echo(f"no {'.json' if json_mode else '.plr'} files under {shown(', '.join(paths))}", err=True)
    elif not changed and not check_only and not diff:
        click.echo(f"{len(files)} file(s) already formatted", err=True)


def _format_text(text: str, name: str, json_mode: bool) -> str:
    """The canonical form of one input; PlrError when it does not parse."""
    if json_mode:
        from ..policy import load_policy

        return load_policy(text, name=name).to_json()
    from ..format import format_source

    return format_source(text, name)


def _unified_diff(old: str, new: str, name: str) -> str:
    import difflib

    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), name, name + " (formatted)"))


def _fmt_stdin(check_only: bool, diff: bool, json_mode: bool) -> None:
    """`plr fmt -`: the formatted text on stdout, or with --check/--diff nothing or the diff
    and exit 1 when it would change."""
    from ..errors import PlrError

    old = read_stdin()
    try:
        new = _format_text(old, "<stdin>", json_mode)
    except PlrError as e:
        input_error(e)
    if diff:
        if new != old:
            click.echo(_unified_diff(old, new, "<stdin>"), nl=False)
    elif not check_only:
        click.echo(new, nl=False)
        return
    if new != old:
        click.echo("would reformat <stdin>", err=True)
        sys.exit(EXIT_FAIL)


def _fmt_targets(paths: tuple[str, ...], json_mode: bool) -> list[str]:
    """The files `plr fmt` formats: folders searched for .plr (or, with --json, .json) files;
    a path that does not exist exits 2 before anything is written."""
    from ..errors import PlrError
    from ..tester import discover

    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = [f for f in discover([p])] if not json_mode else sorted(
                os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs if f.endswith(".json")
            )
            files += [f for f in found if _inside_walk(p, f)]
        elif os.path.exists(p):
            files.append(p)
        else:
            input_error(PlrError.at("no such file or directory", p))
    return files


def _inside_walk(root: str, path: str) -> bool:
    """Whether a file found under the folder ``root`` is one `plr fmt` may rewrite: not a symlink
    to a file outside that folder (named on the command line, it is rewritten: a symlink's target
    is), nor inside a Python virtual environment (a folder holding `pyvenv.cfg`: installed
    packages' files are not the project's)."""
    top = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([top, real]) != top:
        return False
    here = os.path.dirname(os.path.abspath(path))
    stop = os.path.abspath(root)
    while True:
        if os.path.exists(os.path.join(here, "pyvenv.cfg")):
            return False
        if here == stop or os.path.dirname(here) == here:
            return True
        here = os.path.dirname(here)


def _fmt_files(files: list[str], check_only: bool, diff: bool, json_mode: bool) -> tuple[list[str], bool]:
    """Format each file (or report it): the files that change, and whether any could not be read
    or parsed. One bad file does not stop the others."""
    from ..errors import PlrError
    from ..reading import read_policy_text

    changed: list[str] = []
    failed = False
    for f in files:
        try:
            old = read_policy_text(f)  # a FIFO or device is refused, never waited on
            new = _format_text(old, f, json_mode)
        except PlrError as e:
            print_diagnostics(list(e.diagnostics))
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
            click.echo(_unified_diff(old, new, f), nl=False)
        elif check_only:
            click.echo(f"would reformat {f}")
        else:
            write_output(f, new, what="fmt")
            click.echo(f"reformatted {f}")
    return changed, failed


# --- decompile / schema ---------------------------------------------------------------------


@click.command("decompile")
@click.argument("policy", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), help="Write the .plr here (`-`: stdout).")
def decompile_cmd(policy: str, output: str | None) -> None:
    """Turn a JSON policy back into readable .plr rules (compiling them gives the same JSON).

    POLICY is a compiled JSON policy (`plr compile`'s output, or PolicyLayer's), not a .plr
    source; `-` reads it from stdin.

    \b
    Example:
      plr decompile policy.json -o policy.plr
    """
    from ..decompile import decompile
    from ..errors import PlrError
    from ..policy import load_policy
    from ..reading import read_policy_bytes

    if output and output != "-":
        write_output_check(output, [policy])
    raw: str | bytes = b""
    try:
        if policy == "-":
            raw = read_stdin()
            pol = load_policy(raw, name="<stdin>")
        else:
            try:
                raw = read_policy_bytes(policy)  # a regular file only, size-capped: never waits
            except (OSError, ValueError) as e:
                raise PlrError.at(f"cannot read policy: {e}", policy) from None
            pol = load_policy(raw, name=policy)
    except PlrError as e:
        if e.diagnostics and e.diagnostics[0].message.startswith("invalid JSON"):
            input_error(_plr_source_error(policy, raw) or e)
        input_error(e)
    try:
        text = decompile(pol)
    except PlrError as e:
        input_error(e)
    if output and output != "-":
        write_output(output, text, sources=[policy])
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


# the words a .plr statement starts with (grammar/plr.lark, `_statement`)
_PLR_STATEMENTS = frozenset({"package", "import", "let", "def", "default", "server", "allow", "deny", "hide", "limit", "test"})


def _plr_source_error(policy: str, raw: str | bytes) -> PlrError | None:
    """When the "JSON policy" given to decompile is really .plr source (its name ends in .plr,
    or its first statement starts with a .plr keyword): a PlrError that says so and what to run
    instead, with the caret on that first word. None when it does not look like .plr, so the
    JSON error stands (a JSON policy named x.plr is still read as JSON)."""
    import re
    import shlex

    from ..errors import PlrError

    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    lines = text.removeprefix("\ufeff").splitlines()
    first = next(((n, line) for n, line in enumerate(lines, 1) if line.strip() and not line.lstrip().startswith("#")), None)
    word = re.match(r"\s*([A-Za-z_]+)", first[1]) if first else None
    keyword = bool(word and word.group(1) in _PLR_STATEMENTS)
    named = policy.lower().endswith(".plr") and not (first and first[1].lstrip().startswith(("{", "[")))
    if not (keyword or named):
        return None
    src = "-" if policy == "-" else shown(shlex.quote(policy))  # a name cannot forge a line
    what = "the input" if policy == "-" else shown(policy)
    message = (
        f"{what} is .plr source; decompile reads a compiled JSON policy "
        f"(plr compile {src} -o policy.json, then plr decompile policy.json)"
    )
    if first is None or word is None:
        return PlrError.at(message, "<stdin>" if policy == "-" else policy)
    line, at = first
    return PlrError.at(message, "<stdin>" if policy == "-" else policy, line, word.start(1) + 1, at, len(word.group(1)))


@click.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of the compiled policy document.

    \b
    Example:
      plr schema > plr-policy.schema.json
    """
    from ..policy import json_schema

    click.echo(json.dumps(json_schema(), indent=2, sort_keys=True))
