"""One error shape from parsing to evaluation: a located message with a caret snippet.

Like OPA's ``ast.Error`` and Cedar's ``Loc``, a diagnostic is plain data; formatting it for a
terminal or as JSON is the CLI's business, through the helpers here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    """A message about a place in a source file (or a JSON document)."""

    severity: Severity
    message: str
    file: str = "<input>"
    line: int = 0
    col: int = 0
    source_line: str | None = None
    width: int = 1

    def location(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file

    def format(self, color: bool = False) -> str:
        """``file:line:col: error: message`` then the source line and a caret under the column."""
        sev = self.severity
        if color:
            code = "31" if sev == "error" else "33"
            sev = f"\x1b[1;{code}m{sev}\x1b[0m"
        head = f"{self.location()}: {sev}: {self.message}"
        if self.source_line is None or not self.line:
            return head
        text = self.source_line.rstrip("\r\n").expandtabs(1)
        if len(text) > 200:  # keep one-megabyte lines readable: show a window around the column
            start = max(0, self.col - 80)
            text = ("..." if start else "") + text[start : start + 160] + "..."
            caret_col = self.col - start + (3 if start else 0)
        else:
            caret_col = self.col
        gutter = f"{self.line:>5} | "
        pad = " " * (len(gutter) - 2) + "| "
        caret = " " * max(caret_col - 1, 0) + "^" * max(1, min(self.width, 60))
        if color:
            caret = f"\x1b[1;32m{caret}\x1b[0m"
        return f"{head}\n{gutter}{text}\n{pad}{caret}"

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "message": self.message,
        }


@dataclass
class PlrError(Exception):
    """Raised for any input plr refuses: carries every error found, not only the first."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.__str__())

    @classmethod
    def at(
        cls,
        message: str,
        file: str = "<input>",
        line: int = 0,
        col: int = 0,
        source_line: str | None = None,
        width: int = 1,
    ) -> "PlrError":
        return cls([Diagnostic("error", message, file, line, col, source_line, width)])

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def first(self) -> Diagnostic:
        errs = self.errors or self.diagnostics
        return errs[0] if errs else Diagnostic("error", "unknown error")

    @property
    def file(self) -> str:
        return self.first.file

    @property
    def line(self) -> int:
        return self.first.line

    @property
    def col(self) -> int:
        return self.first.col

    @property
    def message(self) -> str:
        return self.first.message

    def format(self, color: bool = False) -> str:
        return format_diagnostics(self.diagnostics, color=color)

    def __str__(self) -> str:
        return self.format()

    def __hash__(self) -> int:  # exceptions must stay hashable for tracebacks/logging
        return id(self)


def format_diagnostics(diags: Iterable[Diagnostic], color: bool = False) -> str:
    return "\n".join(d.format(color=color) for d in diags)


def sort_key(d: Diagnostic) -> tuple[str, int, int]:
    return (d.file, d.line, d.col)


def line_of(text: str, line: int) -> str | None:
    """The 1-based ``line`` of ``text`` (for caret snippets), or None when out of range."""
    if line < 1:
        return None
    lines = _lines(text)
    return lines[line - 1] if line <= len(lines) else ""


@lru_cache(maxsize=8)
def _lines(text: str) -> tuple[str, ...]:
    """The lines of ``text``, once per text: a policy with many diagnostics asks for many lines
    of the same file (splitting it again each time made reporting quadratic).

    Lines end at ``\n`` only (a ``\r`` before it is dropped), as the parser counts them:
    ``str.splitlines`` also splits at form feeds, ``\x1c``-``\x1e``, U+0085, U+2028 and
    U+2029, which a comment or a string may hold, and the snippet would show another line."""
    return tuple(line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
