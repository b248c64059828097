"""What every `plr` command prints and how it fails: colour, diagnostics, exit codes, and
writing an output file the way a shell redirect would (but atomically).

One copy for all command modules, so every command colours, escapes and exits alike.
Importing it does not import click (`plr eval`'s fast path, dsl/cli/eval.py, prints through it
without click): each function that needs click imports it.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn, overload

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2

# click.termui's foreground colours: ``style`` writes their codes itself, as click.style would
_ANSI_FG = {
    "black": 30, "red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35, "cyan": 36, "white": 37,
    "reset": 39, "bright_black": 90, "bright_red": 91, "bright_green": 92, "bright_yellow": 93,
    "bright_blue": 94, "bright_magenta": 95, "bright_cyan": 96, "bright_white": 97,
}  # fmt: skip


def color(stream: Any = None) -> bool:
    """Colour only for a terminal, and never under NO_COLOR (https://no-color.org)."""
    stream = stream or sys.stdout
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def style(text: str, fg: str, bold: bool = False, err: bool = False) -> str:
    """``click.style(text, fg=fg, bold=bold)`` on a colour terminal, else ``text``."""
    if not color(sys.stderr if err else sys.stdout):
        return text
    code = _ANSI_FG.get(fg) if isinstance(fg, str) else None
    if code is None or not isinstance(text, str) or not isinstance(bold, bool):
        import click

        return click.style(text, fg=fg, bold=bold)
    return f"\x1b[{code}m\x1b[{1 if bold else 22}m{text}\x1b[0m"  # what click.style builds


def shown(value: Any) -> str:
    """A field for the terminal (see ``vocab.terminal_text``)."""
    from ..vocab import terminal_text

    return terminal_text(value)


def print_diagnostics(diags: list[Any]) -> None:
    import click

    from ..errors import format_diagnostics

    if diags:
        click.echo(format_diagnostics(diags, color=color(sys.stderr)), err=True)


def input_error(e: Any) -> NoReturn:
    """Print a PlrError (all its diagnostics) and exit 2."""
    import click

    print_diagnostics(list(e.diagnostics))
    n = len([d for d in e.diagnostics if d.severity == "error"])
    if n > 1:
        click.echo(style(f"{n} errors", "red", bold=True, err=True), err=True)
    sys.exit(EXIT_INPUT)


def fail(message: str) -> NoReturn:
    """One line on stderr, exit 2: an input or usage problem the user can fix."""
    import click

    click.echo(f"plr: error: {message}", err=True)
    sys.exit(EXIT_INPUT)


@overload
def read_stdin() -> str: ...
@overload
def read_stdin(errors: list[Any]) -> str | None: ...


def read_stdin(errors: list[Any] | None = None) -> str | None:
    """Stdin as text; not UTF-8 -> exit 2, or, given ``errors``, its diagnostic there and None."""
    from ..errors import PlrError

    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        err = PlrError.at(f"input is not UTF-8 text (invalid byte at offset {e.start})", "<stdin>")
        if errors is None:
            input_error(err)
        errors.extend(err.diagnostics)
        return None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def write_output_check(path: str, sources: Any, what: str = "-o") -> None:
    """Before any work: refuse an output that is one of the inputs, or whose folder is missing."""
    target = os.path.realpath(path)
    for src in sources:
        if src and src != "-" and _same_file(src, target):
            fail(f"{what} {path} is the input file {src}; refusing to overwrite it (write the output elsewhere)")
    if not os.path.lexists(target) and not os.path.isdir(os.path.dirname(target)):
        fail(f"cannot write {path}: no such directory {os.path.dirname(target)}")


def write_output(path: str, text: str, *, sources: Any = (), what: str = "-o") -> None:
    """Write ``text`` to ``path`` the way a shell redirect would, but atomically where it can.

    ``-`` is stdout. A symlink is followed and its target replaced. A target that exists and is
    not a regular file (a device such as /dev/null, a FIFO) is opened and written, never
    replaced. A regular file is replaced atomically (temp file in its own folder + rename) and
    keeps its mode and, where allowed, its owner; a new file gets ``0o666 & ~umask``. Writing
    over one of ``sources`` (the files the text was made from) is refused. Problems exit 2.
    """
    import stat

    from ..vocab import escape_surrogates

    if path == "-":
        import click

        click.echo(text, nl=False)
        return
    text = escape_surrogates(text)  # what a file holds must be UTF-8
    write_output_check(path, sources, what)
    target = os.path.realpath(path)
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except (OSError, ValueError) as e:
        fail(f"cannot write {path}: {getattr(e, 'strerror', None) or e}")
    try:
        if st is not None and stat.S_ISDIR(st.st_mode):
            fail(f"cannot write {path}: it is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):
            # a device, FIFO or socket: write into it; replacing it would destroy it
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
            return
        _replace_file(target, text, st)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}")


def _replace_file(target: str, text: str, st: os.stat_result | None) -> None:
    """Temp file beside ``target``, then rename: a reader never sees half a file, and a failure
    leaves the old one (and no temp file) behind. ``st`` is the old file's, or None."""
    import stat
    import tempfile

    folder = os.path.dirname(target)  # exists: write_output_check said so
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
