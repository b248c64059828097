"""Value functions: what `lower`, `upper`, `trim`, `normpath`, `basename` and `dirname` give.

Each takes a string and gives a string; on anything else (a number, a list, a missing path) the
comparison it stands in is false, as every comparison of a value of the wrong type is
(``spec/language.md``). Paths are POSIX paths: ``/`` separates, ``\\`` is an ordinary character.

``normpath`` is Go's ``path.Clean`` (and Python's ``posixpath.normpath``, except that a leading
``//`` is ``/``: POSIX lets a system give ``//x`` a meaning of its own, but no MCP server does,
and ``//etc/passwd`` must compare equal to ``/etc/passwd``). ``basename`` and ``dirname`` are
Go's ``path.Base`` (trailing slashes ignored) and ``path.Dir`` (everything up to the last ``/``,
normalised).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

__all__ = ["STRING_FUNCTIONS", "normpath", "basename", "dirname", "string_chain"]


# posixpath.normpath is `_path_normpath(os.fspath(p)) or "."` around a C function (3.11+); the
# C function itself, when there is one, saves a third of the cost on the decision path
_normpath = getattr(posixpath, "_path_normpath", None) or posixpath.normpath


def normpath(s: str) -> str:
    """``//a/./b/../c/`` -> ``/a/c``; a leading ``..`` of a relative path stays; ``""`` -> ``.``."""
    if s[:2] == "//":  # posixpath keeps exactly two leading slashes: plr keeps one
        s = "/" + s.lstrip("/")
    return _normpath(s) or "."


def basename(s: str) -> str:
    """The last element: ``/a/b/`` -> ``b``, ``/`` -> ``/``, ``""`` -> ``.``."""
    if not s:
        return "."
    trimmed = s.rstrip("/")
    if not trimmed:
        return "/"
    return trimmed[trimmed.rfind("/") + 1 :]


def dirname(s: str) -> str:
    """Everything but the last element, normalised: ``/a/b`` -> ``/a``, ``a`` -> ``.``, ``/`` -> ``/``."""
    return normpath(s[: s.rfind("/") + 1])


STRING_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "lower": str.lower,
    "upper": str.upper,
    "trim": str.strip,
    "normpath": normpath,
    "basename": basename,
    "dirname": dirname,
}


def string_chain(names: tuple[str, ...]) -> Callable[[str], str]:
    """The functions ``names`` applied in order, as one callable (the value is a str)."""
    fns = tuple(STRING_FUNCTIONS[n] for n in names)
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        f, g = fns
        return lambda s: g(f(s))

    def chain(s: str) -> str:
        for f in fns:
            s = f(s)
        return s

    return chain
