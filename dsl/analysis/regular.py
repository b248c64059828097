"""Regular languages as z3 regexes: RE2 patterns (the ``matches`` operator), string ordering
against a literal, and the character sets of the value functions.

z3's regex theory decides membership exactly (and fast, by derivatives), so what can be written
as a regular language is encoded here instead of as an opaque atom:

- ``search_re(pattern)``: the strings in which RE2 finds ``pattern`` *anywhere* (the engine's
  ``re2_search_test``). The supported part of RE2's syntax (dsl/regex.py: plr accepts exactly
  what RE2 compiles) is parsed here: literals and escaped punctuation, ``.``, classes with
  ranges and negation, ``\\d \\s \\w`` and their negations (ASCII, as in RE2), ``\\x41``,
  ``\\x{263a}``, ``\\n \\t \\r \\f \\v \\a``, groups (``(?:)``, ``(?P<n>)``, ``(?<n>)``), ``|``,
  ``* + ? {n} {n,} {n,m}`` (greedy or lazy: the same set of matched strings), and ``^ $ \\A \\z``
  anywhere (RE2 without the ``m`` flag: start and end of the text). Anything else (flags such as
  ``(?i)``, ``\\b``, ``\\p{Greek}``, ``[[:alpha:]]``, ``\\Q..\\E``, octal escapes, a character
  beyond z3's alphabet) raises :class:`Unsupported`, and the caller keeps the condition opaque.
- ``order_re(op, literal)``: the strings ``< <= > >=`` a literal, by code point (Python's and
  z3's order), as a union over the first differing position.

Anchors are exact anywhere: each sub-pattern denotes four languages, indexed by whether its
match needs to start at the text's start (a ``^`` with nothing consumed before it) and to end
at the text's end (a ``$`` with nothing after it); concatenation lets a ``^`` on the right only
after an empty left part, and a ``$`` on the left only before an empty right part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Unsupported", "MAX_CHAR", "parse", "search_re", "order_re", "char_set", "ranges_where", "negate"]

MAX_CHAR = 0x2FFFF  # z3's largest character: a literal at or beyond it is left opaque
_MAX_REPEAT = 1000  # RE2's own limit


class Unsupported(ValueError):
    """A pattern (or part) outside the encoded subset: the caller keeps it opaque."""


# --- the syntax tree ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chars:
    """One character of a set, as sorted disjoint (lo, hi) code point ranges."""

    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Cat:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Alt:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Rep:
    item: Any
    lo: int
    hi: int | None


@dataclass(frozen=True)
class Anchor:
    start: bool  # ^ / \A (True) or $ / \z (False)


def _norm(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def negate(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out, at = [], 0
    for lo, hi in ranges:
        if lo > at:
            out.append((at, lo - 1))
        at = hi + 1
    if at <= MAX_CHAR:
        out.append((at, MAX_CHAR))
    return tuple(out)


def ranges_where(pred: Any) -> tuple[tuple[int, int], ...]:
    """The code points of z3's alphabet where ``pred(char)`` holds, as ranges."""
    out: list[tuple[int, int]] = []
    start = None
    for c in range(MAX_CHAR + 1):
        ok = pred(chr(c))
        if ok and start is None:
            start = c
        elif not ok and start is not None:
            out.append((start, c - 1))
            start = None
    if start is not None:
        out.append((start, MAX_CHAR))
    return tuple(out)


_DIGIT = ((0x30, 0x39),)
_SPACE = _norm([(9, 10), (12, 13), (32, 32)])  # RE2's \s: [\t\n\f\r ] (no \v)
_WORD = _norm([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
_PERL = {"d": _DIGIT, "s": _SPACE, "w": _WORD}
_SIMPLE = {"a": 7, "f": 12, "t": 9, "n": 10, "r": 13, "v": 11}
_DOT = negate(((10, 10),))  # `.` is every character but \n (RE2 without the s flag)
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")


def _char_ok(c: int) -> int:
    if c >= MAX_CHAR or 0xD800 <= c <= 0xDFFF:
        raise Unsupported(f"character U+{c:04X} is beyond the solver's alphabet")
    return c


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def peek(self) -> str | None:
        return self.p[self.i] if self.i < len(self.p) else None

    def take(self) -> str:
        ch = self.p[self.i]
        self.i += 1
        return ch

    def alt(self) -> Any:
        items = [self.cat()]
        while self.peek() == "|":
            self.i += 1
            items.append(self.cat())
        return items[0] if len(items) == 1 else Alt(tuple(items))

    def cat(self) -> Any:
        items = []
        while self.peek() not in (None, "|", ")"):
            items.append(self.repeat())
        return items[0] if len(items) == 1 else Cat(tuple(items))

    def repeat(self) -> Any:
        atom = self.atom()
        ch = self.peek()
        if ch in ("*", "+", "?"):
            self.i += 1
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
        elif ch == "{":
            m = _REPEAT.match(self.p, self.i)
            if m is None:
                raise Unsupported("a `{` that is not a repetition")
            self.i = m.end()
            lo = int(m.group(1))
            hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
            if lo > _MAX_REPEAT or (hi is not None and (hi > _MAX_REPEAT or hi < lo)):
                raise Unsupported("a repetition count RE2 refuses")
        else:
            return atom
        if self.peek() == "?":  # lazy: another match, the same set of strings matched
            self.i += 1
        if self.peek() in ("*", "+", "?", "{") or isinstance(atom, Anchor):
            raise Unsupported("a repeated repetition or anchor")
        return Rep(atom, lo, hi)

    def atom(self) -> Any:
        ch = self.take()
        if ch == "(":
            if self.peek() == "?":
                m = re.compile(r"\?(:|P<\w+>|<\w+>)").match(self.p, self.i)
                if m is None:
                    raise Unsupported("group flags such as (?i)")
                self.i = m.end()
            inner = self.alt()
            if self.peek() != ")":
                raise Unsupported("an unclosed group")
            self.i += 1
            return inner
        if ch == ".":
            return Chars(_DOT)
        if ch == "^":
            return Anchor(True)
        if ch == "$":
            return Anchor(False)
        if ch == "[":
            return self.klass()
        if ch == "\\":
            return self.escape(in_class=False)
        if ch in "*+?{}])":
            raise Unsupported(f"a bare `{ch}`")
        return Chars(((_char_ok(ord(ch)),) * 2,))

    def escape(self, in_class: bool) -> Any:
        if self.peek() is None:
            raise Unsupported("a trailing backslash")
        ch = self.take()
        if ch in _PERL:
            return Chars(_PERL[ch])
        if ch.lower() in _PERL and ch.isupper():
            return Chars(negate(_PERL[ch.lower()]))
        if ch in _SIMPLE:
            return Chars(((_SIMPLE[ch],) * 2,))
        if ch == "x":
            m = re.compile(r"\{([0-9A-Fa-f]{1,6})\}|([0-9A-Fa-f]{2})").match(self.p, self.i)
            if m is None:
                raise Unsupported("a malformed \\x escape")
            self.i = m.end()
            c = _char_ok(int(m.group(1) or m.group(2), 16))
            return Chars(((c, c),))
        if not in_class and ch in ("A", "z"):
            return Anchor(ch == "A")
        if ord(ch) < 128 and not ch.isalnum() and ch != "_":  # escaped punctuation: itself
            return Chars(((ord(ch), ord(ch)),))
        raise Unsupported(f"the escape \\{ch}")

    def klass(self) -> Chars:
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        if self.peek() in ("]", None):
            raise Unsupported("a class opening with `]`")
        ranges: list[tuple[int, int]] = []
        while True:
            ch = self.peek()
            if ch is None:
                raise Unsupported("an unclosed class")
            if ch == "]":
                self.i += 1
                break
            if self.p.startswith("[:", self.i):
                raise Unsupported("a POSIX class such as [:alpha:]")
            lo = self.class_atom()
            if isinstance(lo, tuple):  # \d and friends
                ranges += lo
                continue
            if self.peek() == "-" and self.i + 1 < len(self.p) and self.p[self.i + 1] != "]":
                self.i += 1
                hi = self.class_atom()
                if isinstance(hi, tuple) or hi < lo:
                    raise Unsupported("a class range RE2 refuses")
                ranges.append((lo, hi))
            else:
                ranges.append((lo, lo))
        out = _norm(ranges)
        return Chars(negate(out) if negated else out)

    def class_atom(self) -> int | tuple[tuple[int, int], ...]:
        ch = self.take()
        if ch == "\\":
            e = self.escape(in_class=True)
            if len(e.ranges) == 1 and e.ranges[0][0] == e.ranges[0][1]:
                return e.ranges[0][0]
            return e.ranges
        return _char_ok(ord(ch))


def parse(pattern: str) -> Any:
    """The syntax tree of ``pattern``; :class:`Unsupported` outside the encoded subset."""
    p = _Parser(pattern)
    tree = p.alt()
    if p.i != len(pattern):
        raise Unsupported("an unbalanced `)`")
    return tree


# --- to z3 ------------------------------------------------------------------------------------

# While building, a language is a tuple of z3 regexes to concatenate (``()`` is {""}; None is
# the empty language), made one flat ``re.++`` at the end: z3's regex solver stalls on
# equivalences with nested concatenations (or Re("") pieces) that it decides at once flat.
Seq = tuple[Any, ...]
Four = dict[tuple[bool, bool], Seq]  # (needs start, needs end) -> language; absent = empty


class _Build:
    def __init__(self, z: Any) -> None:
        from .encode import string_val

        self.z = z
        self.sv = lambda s: string_val(z, s)
        self.R = z.ReSort(z.StringSort())

    def chars(self, ranges: tuple[tuple[int, int], ...]) -> Any:
        z = self.z
        parts = [z.Re(self.sv(chr(lo))) if lo == hi else z.Range(self.sv(chr(lo)), self.sv(chr(hi))) for lo, hi in ranges]
        if not parts:
            return z.Empty(self.R)
        return parts[0] if len(parts) == 1 else z.Union(*parts)

    def mk(self, seq: Seq) -> Any:
        if not seq:
            return self.z.Re(self.sv(""))
        return seq[0] if len(seq) == 1 else self.z.Concat(*seq)

    def union(self, xs: list[Seq | None]) -> Seq | None:
        ys = [x for x in xs if x is not None]
        if not ys:
            return None
        if len(ys) == 1:
            return ys[0]
        return (self.z.Union(*[self.mk(x) for x in ys]),)

    def only_empty(self, x: Seq | None) -> Seq | None:
        if x is None or x == ():
            return x
        return (self.z.Intersect(self.mk(x), self.z.Re(self.sv(""))),)

    def four(self, node: Any) -> Four:
        z = self.z
        if isinstance(node, Chars):
            return {(False, False): (self.chars(node.ranges),)}
        if isinstance(node, Anchor):
            return {(node.start, not node.start): ()}
        if isinstance(node, Alt):
            out: dict[tuple[bool, bool], list[Seq | None]] = {}
            for item in node.items:
                for k, v in self.four(item).items():
                    out.setdefault(k, []).append(v)
            return {k: u for k, vs in out.items() if (u := self.union(vs)) is not None}
        if isinstance(node, Cat):
            acc: Four = {(False, False): ()}
            for item in node.items:
                right = self.four(item)
                nxt: dict[tuple[bool, bool], list[Seq | None]] = {}
                for (a1, b1), x in acc.items():
                    for (a2, b2), y in right.items():
                        left = self.only_empty(x) if a2 else x  # ^ on the right: nothing before it
                        rgt = self.only_empty(y) if b1 else y  # $ on the left: nothing after it
                        nxt.setdefault((a1 or a2, b1 or b2), []).append(None if left is None or rgt is None else left + rgt)
                acc = {k: u for k, vs in nxt.items() if (u := self.union(vs)) is not None}
            return acc
        if isinstance(node, Rep):
            inner = self.four(node.item)
            if set(inner) - {(False, False)}:
                raise Unsupported("an anchor inside a repetition")
            seq = inner.get((False, False))
            if seq is None:
                return {(False, False): ()} if node.lo == 0 else {}
            if seq == () or node.hi == 0:
                return {(False, False): ()}
            x = self.mk(seq)
            if node.hi is None:
                tail = (z.Star(x),)
                return {(False, False): (z.Loop(x, node.lo, node.lo), *tail) if node.lo > 1 else (x, *tail) if node.lo == 1 else tail}
            if node.lo == node.hi == 1:
                return {(False, False): seq}
            return {(False, False): (z.Loop(x, node.lo, node.hi),)}
        raise Unsupported("unknown node")


def search_re(z: Any, pattern: str) -> Any:
    """The strings in which ``pattern`` matches somewhere (RE2 search), as a z3 regex."""
    b = _Build(z)
    four = b.four(parse(pattern))
    anything = z.Star(z.AllChar(b.R))
    parts = []
    for (start, end), seq in four.items():
        parts.append(b.mk((*(() if start else (anything,)), *seq, *(() if end else (anything,)))))
    if not parts:
        return z.Empty(b.R)
    return parts[0] if len(parts) == 1 else z.Union(*parts)


def char_set(z: Any, ranges: tuple[tuple[int, int], ...]) -> Any:
    """One character out of ``ranges``, as a z3 regex."""
    return _Build(z).chars(ranges)


def order_re(z: Any, op: str, lit: str) -> Any:
    """The strings ``op`` (lt, lte, gt, gte) ``lit``, by code point, as a z3 regex."""
    b = _Build(z)
    below: list[Any] = []  # the strings < lit: a proper prefix, or smaller at the first difference
    for i, ch in enumerate(lit):
        head = z.Re(b.sv(lit[:i]))
        below.append(head)
        if ord(ch) > 0:
            below.append(z.Concat(head, z.Range(b.sv(chr(0)), b.sv(chr(ord(ch) - 1))), z.Star(z.AllChar(b.R))))
    if op in ("lte", "gt"):
        below.append(z.Re(b.sv(lit)))
    lt = (below[0] if len(below) == 1 else z.Union(*below)) if below else z.Empty(b.R)
    return lt if op in ("lt", "lte") else z.Complement(lt)
