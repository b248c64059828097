"""The words of the policy JSON contract: operators, path roots and path syntax.

Kept apart from ``dsl.policy`` (the pydantic models) so the decision path — the engine and a
cached compiled policy — never imports pydantic: ``plr eval`` and an embedding program pay
for model building only when they validate a document they have not seen before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator

OPS = (
    "eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in",
    "contains", "starts_with", "ends_with", "regex", "exists", "missing",
)  # fmt: skip
VALUELESS_OPS = frozenset({"exists", "missing"})
LIST_OPS = frozenset({"in", "not_in"})
STRING_OPS = frozenset({"starts_with", "ends_with", "regex"})
PATH_ROOTS = ("args", "identity", "session", "server", "tool", "approved")

# Whole numbers a JSON document carries exactly (JavaScript's Number.MAX_SAFE_INTEGER): the
# largest limit count, since every consumer of the compiled JSON (a Redis script included)
# reads it as a double.
MAX_LIMIT_COUNT = 2**53 - 1
# The longest limit window and `after` step: 100 years. Longer is not a rate limit any more,
# and the window must stay an exact number of seconds, and of milliseconds for Redis.
MAX_WINDOW_DAYS = 36500
MAX_WINDOW_SECONDS = MAX_WINDOW_DAYS * 86400

# A lone surrogate: valid in JSON text (`"\ud800"`) and in Python strings (a file name that is
# not UTF-8), but no UTF-8 output can carry it, so plr refuses it in policies and escapes it in
# what it writes.
SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """``text`` with each lone surrogate written as the escape ``\\udXXX``: encodable as UTF-8
    (and, inside a JSON string, the same value)."""
    return SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_ROOT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")  # a name bound by `every`/`some`
_STEP_RE = re.compile(r'\.([^.\[\]"]+)|\[([0-9]+)\]|\[("[^"\\]*(?:\\.[^"\\]*)*")\]')


ANY_ROOT: frozenset[str] = frozenset({"*"})  # ``bound`` that accepts any name as a root (syntax only)


def parse_path(path: str, bound: Collection[str] = ()) -> tuple[str, tuple[str | int, ...]]:
    """``args.a[2]["b c"]`` -> ("args", ("a", 2, "b c")); ValueError naming the bad spot.

    Steps are ``.name``, ``[index]`` or ``["any key"]`` (a JSON string, for keys with dots,
    spaces or brackets). The compiler writes exactly this syntax (``ir.Path.text``). A root is
    one of ``PATH_ROOTS`` or a name in ``bound`` (bound by an enclosing `every`/`some`, whose
    items may have fields); ``ANY_ROOT`` accepts any name, for a check of the syntax alone.
    """
    m = _ROOT_RE.match(path)
    if m is None or not (m.group() in PATH_ROOTS or m.group() in bound or bound is ANY_ROOT):
        root = m.group() if m else path[:20]
        names = ", ".join(PATH_ROOTS) + (f", or a name bound around it: {', '.join(sorted(bound))}" if bound else "")
        raise ValueError(f"unknown path root `{root}` (expected one of {names})")
    steps: list[str | int] = []
    pos = m.end()
    while pos < len(path):
        s = _STEP_RE.match(path, pos)
        if s is None:
            raise ValueError(f"invalid path `{path}` at character {pos + 1}")
        if s.group(1) is not None:
            steps.append(s.group(1))
        elif s.group(2) is not None:
            steps.append(int(s.group(2)))
        else:
            steps.append(json.loads(s.group(3)))
        pos = s.end()
    if steps and m.group() in PATH_ROOTS and m.group() != "args":
        raise ValueError(f"`{m.group()}` is a single value: it has no fields or items")
    return m.group(), tuple(steps)


def has_glob_chars(name: str) -> bool:
    """Whether a tool name holds `*` or `?`, the characters of the language's globs. In a name
    they are never wildcards (MCP tool names are letters, digits, `_`, `-` and `.`), so every
    place a name is read refuses them; `"*"` alone, where it means every tool, is the caller's
    to allow."""
    return "*" in name or "?" in name


def json_type(v: object) -> str:
    """The JSON type of a Python value as the language sees it (int and float are one: number)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "list" if isinstance(v, list) else "object"


def terminal_text(value: object) -> str:
    """One line for a terminal: control, format (bidi), line-separator characters and lone
    surrogates escaped, so text someone else chose (a tool name, a reason) cannot forge a line,
    move the cursor or reverse itself."""
    import unicodedata

    text = value if isinstance(value, str) else str(value)
    return "".join(
        c if c == " " or unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") else f"\\u{ord(c):04x}"
        for c in text
    )


def json_strings(value: object) -> Iterator[str]:
    """Every string of a JSON-like value, object keys included, depth first and without
    recursion (a hostile document may nest deeper than Python's stack)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            yield from (k for k in v if isinstance(k, str))
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


# letters that read as Latin ones but are named so (ſ is "LATIN SMALL LETTER LONG S"): counted as
# look-alikes beside the letters of other scripts, as are the IPA letters (ɑ, ɡ, ɩ: `pɑypal.com`
# is a valid IDN) and the small capitals (ᴇ, ᴄ)
_LATIN_LOOKALIKES = frozenset("ſıĸȷ")
_LATIN_LOOKALIKE_RANGES = ((0x0250, 0x02AF), (0x1D00, 0x1D2B), (0xA730, 0xA7FF))


def _lookalike_letter(c: str, latin: bool) -> bool:
    """Whether ``c`` (not ASCII) is a look-alike in a word (``latin``: the word has ASCII letters)."""
    import unicodedata

    if not c.isalnum():
        return False
    # a compatibility form of an ASCII letter or digit (fullwidth ｒ or １, mathematical 𝐫, the
    # Kelvin sign) is one anywhere; another script's letter, or a Latin look-alike, beside Latin letters
    if unicodedata.normalize("NFKC", c).isascii():
        return True
    if not latin or not c.isalpha():
        return False
    o = ord(c)
    return (
        c in _LATIN_LOOKALIKES
        or any(lo <= o <= hi for lo, hi in _LATIN_LOOKALIKE_RANGES)
        or not unicodedata.name(c, "").startswith("LATIN ")
    )


_WORDS = re.compile(r"[^\s\"'`,;:(){}\[\]<>|=]+")


def lookalike_words(text: str, limit: int = 5) -> tuple[list[tuple[str, str]], int]:
    """(word, its look-alike letters) for the words of ``text`` with letters that look like others
    but are not them: another script's beside Latin letters (Cyrillic а in `exаmple.com`), IPA
    letters and small capitals there (`pɑypal.com`), and compatibility forms anywhere (fullwidth
    `ｒｍ`, the Kelvin sign). Such a word reads as one thing to an approver and is another to the
    server (a domain, a path, a command). A word wholly of other scripts' letters that each read as
    a Latin one (Cyrillic `аррӏе`: UTS #39's whole-script confusables, ``confusables``) is one too
    where it stands as a name: alone on its line (a JSON string of one word: a host, a user), on
    a line with Latin letters (a command line: `ssh аррӏе`), or with a dot, slash or ``@``
    inside it; in prose of its own language (`горе и радость`) it is a word of that language. A word of one other script alone (Russian text) and accented Latin (`café`) are not
    flagged. Each word once, those that mix scripts or read wholly as Latin first (the likelier
    spoof: a sender cannot hide one behind harmless fullwidth words), at most ``limit``; and the
    number of flagged words left out."""
    import unicodedata

    from .confusables import READS_AS_LATIN

    mixed: list[tuple[str, str]] = []
    other: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in text.split("\n"):
        # a name stands alone (a one-word string: a host, a user) or beside Latin words (a command
        # line, `ssh аррӏе`); prose of the word's own language has neither
        alone = len(line.split()) == 1 or any(c.isascii() and c.isalpha() for c in line)
        for word in _WORDS.findall(line):
            if word in seen or word.isascii():
                continue
            latin = any("a" <= c.lower() <= "z" for c in word)
            odd = [
                f"{c} (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})"
                for c in dict.fromkeys(word)
                if not c.isascii() and _lookalike_letter(c, latin)
            ]
            if odd:
                seen.add(word)
                (mixed if latin else other).append((word, ", ".join(odd)))
                continue
            letters = [c for c in word if c.isalpha()]
            if latin or len(letters) < 2 or not all(c in READS_AS_LATIN for c in letters):
                seen.add(word)
                continue
            if alone or any(c in word[1:-1] for c in "./@"):
                seen.add(word)
                named = ", ".join(f"{c} (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})" for c in dict.fromkeys(letters))
                reads = "".join(READS_AS_LATIN.get(c, c) for c in word)
                mixed.append((word, f"only letters that read as Latin ones, {named}: it can read as `{reads}`"))
            # (else the same word may yet stand as a name on another line)
    found = mixed + other
    return found[:limit], max(0, len(found) - limit)
