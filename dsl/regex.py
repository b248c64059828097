"""RE2 everywhere: linear-time matching, so no pattern or input can stall a decision.

re2 is imported by the first pattern compiled, not with this module: the engine imports this
module on every `plr eval`, and most policies have no regex.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable

_re2: Any = None  # the re2 module, with plr's options, once a pattern needs it
_OPTIONS: Any = None


def _load() -> Any:
    global _re2, _OPTIONS
    if _re2 is None:
        import re2

        options = re2.Options()
        options.log_errors = False  # errors are reported to the policy author, not to stderr
        _OPTIONS, _re2 = options, re2
    return _re2


@lru_cache(maxsize=4096)
def compile_re2(pattern: str) -> Any:
    """Compile with RE2 or raise ValueError with RE2's own explanation."""
    re2 = _load()
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as e:
        arg = e.args[0] if e.args else ""
        detail = (arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)) or "not valid RE2"
        raise ValueError(f"invalid regular expression {pattern!r}: {detail}") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None


def re2_search_test(pattern: str) -> Callable[[str], bool]:
    """``pattern`` compiled once into "does it match anywhere in this str?".

    Same answer as ``compile_re2(pattern).search(s) is not None`` at a third of the cost: it
    calls RE2's ``Match`` directly instead of the wrapper's generator that builds a match
    object and maps byte offsets back to characters (a decision needs neither). A str that
    cannot be encoded (lone surrogate) raises, as ``search`` does: callers fail closed.
    """
    rx = compile_re2(pattern)
    match = getattr(getattr(rx, "_regexp", None), "Match", None)
    anchor = getattr(getattr(_re2, "_Anchor", None), "UNANCHORED", None)
    if match is None or anchor is None:  # a google-re2 without these internals: the public API
        search = rx.search
        return lambda s: search(s) is not None

    def test(s: str) -> bool:
        b = s.encode("utf-8")
        return match(anchor, b, 0, len(b))[0][0] != -1

    return test


# --- `.` and newlines ---------------------------------------------------------------------
#
# RE2 (as Go's regexp, and so Intercept) reads `.` as "any character but a newline" unless the
# `s` flag is on. A deny guarded by `matches "rm.*-rf"` therefore does not fire for
# "rm \n -rf": `plr check` says so (dsl/checks.py). These read the pattern, never match it.

_SYNTAX = {  # compiled when first used (`plr check`), not when the engine imports this module
    "flags": r"\(\?([imsU]*)(?:-([imsU]*))?([:)])",  # (?s) (?i-s) (?s:
    "named": r"\(\?P?<[A-Za-z0-9_]+>",
    "repeat": r"(?:[*+?]|\{[0-9]+(?:,[0-9]*)?\})\??",
}


@lru_cache(maxsize=None)
def _syntax(name: str) -> re.Pattern[str]:
    return re.compile(_SYNTAX[name])


_ESCAPE_SAMPLES = {"s": " ", "d": "1", "w": "a"}  # one character each class matches


def _class_end(pattern: str, i: int) -> int:
    """The index just past the character class that starts at ``pattern[i] == "["``."""
    j = i + 1
    if pattern.startswith("^", j):
        j += 1
    if pattern.startswith("]", j):  # a `]` first in a class is itself
        j += 1
    while j < len(pattern):
        ch = pattern[j]
        if ch == "\\":
            j += 2
        elif pattern.startswith("[:", j):  # [[:alpha:]]
            end = pattern.find(":]", j + 2)
            j = end + 2 if end != -1 else j + 1
        elif ch == "]":
            return j + 1
        else:
            j += 1
    return len(pattern)


def _escape_end(pattern: str, i: int) -> int:
    """The index just past the escape that starts at ``pattern[i] == "\\"``."""
    nxt = pattern[i + 1 : i + 2]
    if nxt == "Q":  # \Q...\E: literal text
        end = pattern.find("\\E", i + 2)
        return len(pattern) if end == -1 else end + 2
    if nxt in ("p", "P", "x") and pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 3)
        return len(pattern) if end == -1 else end + 1
    if nxt in ("p", "P"):
        return i + 3  # \pL
    return i + 2


def newline_blind_dots(pattern: str) -> list[int]:
    """The indexes of the `.`s of ``pattern`` that do not match a newline (outside a character
    class, not escaped, the `s` flag off there), leaving out the two that cannot change whether
    a search finds a match: a `.*` that starts the pattern (no `^` before it), and one that ends it.

    A sketch of RE2's syntax, enough to place the flags: groups and their flags (`(?s)`,
    `(?s:...)`, `(?-s)`), classes, escapes (`\\Q...\\E` among them). An invalid pattern is
    compile_re2's to report: what this returns for one does not matter."""
    dots: list[int] = []
    stack = [False]  # is the `s` flag on, per open group (the pattern is the outermost)
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i = _escape_end(pattern, i)
            continue
        if ch == "[":
            i = _class_end(pattern, i)
            continue
        if ch == "(":
            flags = _syntax("flags").match(pattern, i)
            dotall = stack[-1]
            if flags is not None:
                if "s" in flags.group(1):
                    dotall = True
                if flags.group(2) and "s" in flags.group(2):
                    dotall = False
                if flags.group(3) == ")":  # (?s): the rest of the enclosing group
                    stack[-1] = dotall
                else:
                    stack.append(dotall)
                i = flags.end()
                continue
            named = _syntax("named").match(pattern, i)
            stack.append(dotall)
            i = named.end() if named is not None else i + (3 if pattern.startswith("(?:", i) else 1)
            continue
        if ch == ")":
            if len(stack) > 1:
                stack.pop()
        elif ch == "." and not stack[-1]:
            dots.append(i)
        i += 1
    return [i for i in dots if not _harmless_star(pattern, i)]


def _harmless_star(pattern: str, i: int) -> bool:
    """A `.*` (or `.*?`) first in the pattern (after flags alone) or last in it: a search finds
    a match with it exactly when it finds one without it, newline or not."""
    rest = pattern[i + 1 :]
    if rest in ("*", "*?"):
        return True
    if not rest.startswith("*"):
        return False
    start = 0
    while (m := _syntax("flags").match(pattern, start)) is not None and m.group(3) == ")":
        start = m.end()
    return start == i


def newline_example(pattern: str, dots: list[int]) -> str | None:
    """A string with a newline at each of ``dots`` that ``pattern`` does not match and
    `(?s)` + ``pattern`` does (`rm.*-rf`: "rm\\n-rf"), or None when the pattern is more than
    literal text and dots (or anchors at its ends): the example is checked, never guessed."""
    out: list[str] = []
    i = 0
    while (m := _syntax("flags").match(pattern, i)) is not None and m.group(3) == ")":
        i = m.end()
    if pattern.startswith("^", i):
        i += 1
    end = len(pattern) - 1 if pattern.endswith("$") and not pattern.endswith("\\$") else len(pattern)
    marks = set(dots)
    while i < end:
        if i in marks:
            out.append("\n")
            repeat = _syntax("repeat").match(pattern, i + 1)
            i = repeat.end() if repeat is not None else i + 1
            continue
        ch = pattern[i]
        if ch == "\\" and i + 1 < end:  # `\s+`: one space; `\.`: a dot
            ch = _ESCAPE_SAMPLES.get(pattern[i + 1], pattern[i + 1] if not pattern[i + 1].isalnum() else "")
            if not ch:
                return None
            out.append(ch)
            repeat = _syntax("repeat").match(pattern, i + 2)
            i = repeat.end() if repeat is not None and repeat.group() in ("+", "+?", "*", "*?") else i + 2
            continue
        if ch in "\\[](){}|^$*+?.":
            return None
        out.append(ch)
        i += 1
    text = "".join(out)
    try:
        if compile_re2(pattern).search(text) is None and compile_re2("(?s)" + pattern).search(text) is not None:
            return text
    except (ValueError, TypeError):
        pass
    return None


def with_dotall(pattern: str) -> str:
    """``pattern`` with the `s` flag on from its start: `(?i)x` becomes `(?is)x`, not `(?s)(?i)x`."""
    m = _syntax("flags").match(pattern)
    if m is not None and m.group(3) == ")" and m.start() == 0 and not m.group(2):
        return f"(?{m.group(1)}s)" + pattern[m.end() :]
    return "(?s)" + pattern
