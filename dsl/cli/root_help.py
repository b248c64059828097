"""`plr --help` without importing click: the text click rendered last time, from the cache.

Importing click costs more than the whole start-up budget of `plr --help` (benchmarks/bench_cli.py),
yet the root help is a pure function of plr's CLI code, click's code and the width it is wrapped
to. So the first `plr --help` renders it with click, at the width click would pick, and keeps it
in the compiled-policy cache directory (dsl/cache.py: private, atomic, ``PLR_NO_CACHE=1`` turns it
off); later runs at the same width print that text, as long as the size and mtime of every module
of dsl/cli and of click are unchanged. A miss, a corrupt entry or a cache that is off costs only
the time: the text is then rendered by click as before. tests/test_cli_startup.py checks the
printed text is click's, byte for byte, at several widths, and that a hit imports no click.
"""

from __future__ import annotations

import os
import sys

from . import MAX_CONTENT_WIDTH

__all__ = ["print_root_help", "render", "width"]


def width() -> int:
    """The width click's HelpFormatter wraps to (``max(min(columns, max_width) - 2, 50)``)."""
    import shutil

    return max(min(shutil.get_terminal_size().columns, MAX_CONTENT_WIDTH) - 2, 50)


def _fingerprint(wrap: int) -> str:
    """What the text depends on: plr's version, the width, and every module of dsl/cli and click."""
    from importlib.util import find_spec

    from .. import __version__

    parts = [f"plr {__version__} root help, width {wrap}, {sys.implementation.cache_tag}"]
    spec = find_spec("click")
    folders = [os.path.dirname(__file__)]
    if spec is not None and spec.origin:
        folders.append(os.path.dirname(spec.origin))
    for folder in folders:
        try:
            entries = sorted(e.path for e in os.scandir(folder) if e.name.endswith(".py"))
        except OSError:
            entries = []
        for path in entries:
            try:
                st = os.stat(path)
            except OSError:
                continue
            parts.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}")
    return "\n".join(parts)


def render(wrap: int) -> str:
    """The root help as `plr --help` prints it (click's own rendering, newline included)."""
    from . import cli

    with cli.make_context("plr", [], resilient_parsing=True, terminal_width=wrap) as ctx:
        return ctx.get_help() + "\n"


def print_root_help() -> None:
    """Print `plr --help`: from the cache when nothing it depends on changed, else from click."""
    from ..cache import read_text_entry, write_text_entry

    wrap = width()
    key = _fingerprint(wrap)
    name = f"root-help-{wrap}"  # one entry per width: a resized terminal does not evict the other
    text = read_text_entry(name, key)
    if text is None:
        text = render(wrap)
        write_text_entry(name, key, text)
    sys.stdout.write(text)
    sys.stdout.flush()
