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


# A pattern read as tokens: (kind, start, end). Kinds: "open" (a group: `(`, `(?:`, `(?P<n>`,
# `(?i:`), "flags" (`(?i)`, no group), "close", "alt" (`|`), "repeat" (`*`, `{2,}?`), "atom"
# (anything else that matches: a character, an escape, a class, `.`, `^`, `$`).
Token = tuple[str, int, int]
Groups = tuple[dict[int, int], dict[int, int], list[int]]  # see _groups


def _tokens(pattern: str) -> list[Token]:
    """``pattern`` cut into tokens, a sketch of RE2's syntax: enough to place the flags, the
    groups, the alternatives and the repeats. An invalid pattern is compile_re2's to report."""
    out: list[Token] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            end, kind = _escape_end(pattern, i), "atom"
        elif ch == "[":
            end, kind = _class_end(pattern, i), "atom"
        elif ch == "(":
            flags = _syntax("flags").match(pattern, i)
            named = _syntax("named").match(pattern, i)
            if flags is not None:
                end, kind = flags.end(), "flags" if flags.group(3) == ")" else "open"
            elif named is not None:
                end, kind = named.end(), "open"
            else:
                end, kind = i + (3 if pattern.startswith("(?:", i) else 1), "open"
        elif ch == ")":
            end, kind = i + 1, "close"
        elif ch == "|":
            end, kind = i + 1, "alt"
        elif (repeat := _syntax("repeat").match(pattern, i)) is not None:
            end, kind = repeat.end(), "repeat"
        else:
            end, kind = i + 1, "atom"
        out.append((kind, i, end))
        i = end
    return out


def outside_classes(pattern: str) -> str:
    """The text of ``pattern`` outside its character classes: `[\\x00-\\x1f]` is a class, so
    what it holds says nothing about the pattern's other characters."""
    tokens = _tokens(pattern)
    return "".join(pattern[start:end] for kind, start, end in tokens if kind != "atom" or pattern[start] != "[")


def newline_blind_dots(pattern: str) -> list[int]:
    """The indexes of the `.`s of ``pattern`` that do not match a newline (outside a character
    class, not escaped, the `s` flag off there), leaving out the `.*`s that cannot change
    whether a search finds a match (see _harmless_star)."""
    tokens = _tokens(pattern)
    groups = _groups(tokens)
    dots: list[int] = []
    stack = [False]  # is the `s` flag on, per open group (the pattern is the outermost)
    for n, (kind, start, end) in enumerate(tokens):
        if kind in ("flags", "open"):
            flags = _syntax("flags").match(pattern, start)
            dotall = stack[-1]
            if flags is not None:
                if "s" in flags.group(1):
                    dotall = True
                if flags.group(2) and "s" in flags.group(2):
                    dotall = False
            if kind == "flags":  # (?s): the rest of the enclosing group
                stack[-1] = dotall
            else:
                stack.append(dotall)
        elif kind == "close":
            if len(stack) > 1:
                stack.pop()
        elif kind == "atom" and pattern[start:end] == "." and not stack[-1] and not _harmless_star(pattern, tokens, groups, n):
            dots.append(start)
    return dots


def _groups(tokens: list[Token]) -> Groups:
    """Which token closes each "open" token, which opens each "close" one, and, per token,
    the "open" token of the group it stands in (-1 at the top level)."""
    closing: dict[int, int] = {}
    opening: dict[int, int] = {}
    inside: list[int] = []
    stack: list[int] = []
    for n, (kind, _, _) in enumerate(tokens):
        if kind == "close" and stack:
            opening[n] = stack.pop()
            closing[opening[n]] = n
        inside.append(stack[-1] if stack else -1)
        if kind == "open":
            stack.append(n)
    return closing, opening, inside


def _harmless_star(pattern: str, tokens: list[Token], groups: Groups, n: int) -> bool:
    """Whether the `.` at ``tokens[n]`` is a `.*` (or `.*?`) that cannot change whether a search
    finds a match, newline or not: one last in its alternative, in groups each last in theirs up
    to the end of the pattern (`rm -rf.*`, `(rm.*)`, `(foo|bar.*)`), or first in its alternative,
    in groups each first in theirs from the start (`.*x`, `(.*foo)`). A match found with it
    taking a newline is then also found with it taking nothing, so a search answers the same.
    Conservative: a repeated group on the way (`(a.*){2}`), or anything that matches, even
    nothing (`$`, `\\z`, `^`, `\\b`), keeps the warning."""
    if n + 1 >= len(tokens) or tokens[n + 1][0] != "repeat":
        return False
    if pattern[tokens[n + 1][1] : tokens[n + 1][2]] not in ("*", "*?"):
        return False
    closing, opening, inside = groups
    return _reaches_end(tokens, n + 2, closing, inside) or _reaches_start(tokens, n - 1, closing, opening, inside)


def _repeated(tokens: list[Token], close: int | None) -> bool:
    """Whether the group that ends at token ``close`` is repeated (or not closed at all)."""
    return close is None or (close + 1 < len(tokens) and tokens[close + 1][0] == "repeat")


def _reaches_end(tokens: list[Token], j: int, closing: dict[int, int], inside: list[int]) -> bool:
    """Whether nothing but the ends of alternatives and of unrepeated groups (and flags) stands
    from token ``j`` to the end of the pattern."""
    while j < len(tokens):
        kind = tokens[j][0]
        if kind == "alt":  # the other alternatives are not taken: on to the group's end
            group = inside[j]
            if group == -1:
                return True
            j = closing.get(group, len(tokens))
            if j == len(tokens):
                return False  # a group never closed: invalid, left to compile_re2
            kind = "close"
        if kind == "close":
            if _repeated(tokens, j):
                return False
        elif kind != "flags":
            return False
        j += 1
    return True


def _reaches_start(
    tokens: list[Token], j: int, closing: dict[int, int], opening: dict[int, int], inside: list[int]
) -> bool:
    """Whether nothing but the starts of alternatives and of unrepeated groups (and flags)
    stands from the pattern's start to token ``j``."""
    while j >= 0:
        kind = tokens[j][0]
        if kind == "alt":
            group = inside[j]
            if group == -1:
                return True
            j, kind = group, "open"
        if kind == "open":
            if _repeated(tokens, closing.get(j)):
                return False
        elif kind != "flags":
            return False
        j -= 1
    return True


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
    """``pattern`` with the `s` flag on from its start: `(?i)x` becomes `(?is)x`, not `(?s)(?i)x`.
    A `-s` the pattern writes itself (`(?i-s)x.y`) would turn the flag off again after a leading
    `(?s)`: it is taken out (`(?is)x.y`), so the suggestion holds no newline-blind `.`."""
    pattern = _without_clear_s(pattern)
    m = _syntax("flags").match(pattern)
    if m is not None and m.group(3) == ")" and not m.group(2):
        return pattern if "s" in m.group(1) else f"(?{m.group(1)}s)" + pattern[m.end() :]
    return "(?s)" + pattern


def _without_clear_s(pattern: str) -> str:
    """``pattern`` with `s` taken out of the flags it clears: `(?i-s)` becomes `(?i)`, `(?-s:`
    `(?:`, `(?-s)` nothing (RE2 refuses an empty `(?-)`)."""
    out: list[str] = []
    last = 0
    for kind, start, end in _tokens(pattern):
        flags = _syntax("flags").match(pattern, start) if kind in ("flags", "open") else None
        if flags is None or "s" not in (flags.group(2) or ""):
            continue
        on, off = flags.group(1), flags.group(2).replace("s", "")
        text = f"(?{on}-{off}" if off else f"(?{on}"
        if flags.group(3) == ")":
            text = "" if text == "(?" else text + ")"
        else:
            text += ":"
        out.append(pattern[last:start] + text)
        last = end
    return "".join(out) + pattern[last:]
