"""Errors and warnings about a resolved program, all of them in one pass.

Errors stop compilation; warnings point at rules that cannot matter or look like typos.
Every message names the rule's place and says what to write instead.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from typing import Callable, Iterator

from . import ir
from .arg_check import check_argument_names
from .arg_types import rules_out_by_schema
from .policy import PATH_ROOTS
from .regex import compile_re2, newline_blind_dots, newline_example, with_dotall
from .resolve import Program, ResolvedRule, all_tools_rules, glob_regex, program_default, rules_by_tool
from .vocab import has_glob_chars, json_type

DENY_CODES = {"hidden", "denied", "deny_if", "rate_limited"}
# "did you mean" costs a difflib comparison per catalogue name: at most this many in all
# (about a second), then unknown names are reported without a hint. Enough for every typo
# in a normal policy; a policy naming thousands of undeclared tools lacks a catalogue.
HINT_COMPARISONS = 50_000


def check_program(prog: Program) -> list:  # list[Diagnostic]
    """Run every check; return the program's diagnostics (resolve's included), sorted."""
    _check_statements(prog)
    named = _named_values(prog)
    for rr in prog.rules:
        _check_rule(prog, rr)
        _check_traps(prog, rr.rule, named)
        _check_shared_cap(prog, rr)
    _check_hides(prog)
    if not prog.errors:  # a failed import leaves a partial catalogue: its names would be noise
        _check_catalogue_names(prog)
        _check_interactions(prog)
        check_argument_names(prog)  # dsl/arg_check.py: args.NAME a harvested schema lacks
    _check_tests(prog)
    seen: set[tuple] = set()
    out = []
    for d in prog.diagnostics:
        key = (d.severity, d.file, d.line, d.col, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return sorted(out, key=lambda d: (d.file, d.line, d.col, d.severity))


def _check_statements(prog: Program) -> None:
    for root in prog.roots:
        if not root.statements:
            prog.diagnostics.append(
                prog.diagnostic(
                    "error",
                    "the file is empty: a policy needs at least one statement, such as `default deny`",
                    ir.Span(file=root.file, line=0, col=0),
                )
            )
    # A rule pack's default cannot be edited by the user: count it first, report the others.
    defaults = sorted(prog.statements(ir.Default), key=lambda d: not prog.in_stdlib(d.span))
    for dup in defaults[1:]:
        first = defaults[0].span
        where = prog.rule_name(first) if prog.in_stdlib(first) else f"{first.file}:{first.line}"
        hint = " (a stdlib rule pack sets the default: remove this line)" if prog.in_stdlib(first) else ""
        prog.error(f"duplicate `default`: it is already set to {defaults[0].effect} at {where}{hint}", dup.span)
    if not defaults and prog.roots and prog.rules:
        root = prog.roots[0]
        prog.diagnostics.append(
            prog.diagnostic(
                "warning",
                "no `default` statement: tools that no rule mentions are denied (write `default deny` to say so)",
                ir.Span(file=root.file, line=0, col=0),
            )
        )
    for m in prog.modules:
        pkgs = m.of(ir.Package)
        for dup in pkgs[1:]:
            prog.error("a file has at most one `package` statement", dup.span)


def _conditions(c: ir.Condition | None, bound: tuple[str, ...] = ()) -> Iterator[tuple[ir.Compare, tuple[str, ...]]]:
    """Every comparison, with the names bound around it by `every`/`some`. A quantifier's own
    path is yielded as an `exists` test of it, so its root is checked like any path's."""
    if c is None:
        return
    if isinstance(c, ir.Compare):
        yield c, bound
    elif isinstance(c, (ir.And, ir.Or)):
        for item in c.items:
            yield from _conditions(item, bound)
    elif isinstance(c, ir.Quantifier):
        yield ir.Compare(path=c.path, op="exists", span=c.span), bound
        yield from _conditions(c.body, (*bound, c.var))
    else:
        yield from _conditions(c.item, bound)


def _check_rule(prog: Program, rr: ResolvedRule) -> None:
    r = rr.rule
    sel = r.selector
    if sel.kind == "all" and r.kind in ("allow", "deny") and r.guard == "always":
        prog.error(
            f"`{r.kind} all tools` without a condition is not a rule: write `default {r.kind}` to decide for "
            f"every tool (`{r.kind} all tools if …` is one)",
            sel.span,
        )
    if r.kind == "hide" and "*" in rr.tools:
        prog.error(
            'a tool named `*` cannot be hidden on its own: the policy\'s `"hide": ["*"]` means every tool '
            "(write `hide all tools` for that)",
            sel.span,
        )
    if r.kind != "hide" and sel.kind in ("tool", "list") and "*" in sel.names:
        prog.error(
            f'`*` is not a wildcard in `tool "*"`: it would name only a tool literally called `*`; write '
            f"`{r.kind} all tools` for every call" + (" (or `default …`)" if r.kind != "limit" else ""),
            sel.span,
        )
    if sel.kind in ("tool", "list"):
        for name in dict.fromkeys(sel.names):
            if name != "*" and has_glob_chars(name):
                prog.error(_wildcard_name_message(r, name, program_default(prog)), sel.span)
    if sel.kind == "glob" and r.kind != "allow" and _matches_every_name(sel.pattern):
        prog.error(_star_glob_message(r, sel.pattern, program_default(prog)), sel.span)
    if r.limit is not None:
        if r.limit.of is not None:
            if r.limit.max <= 0:
                prog.error(f"a spend cap must allow an amount above 0, got {r.limit.max}", r.limit.span)
            if r.limit.of.root != "args":
                prog.error(
                    f"a spend cap adds up an argument: `of` takes a path into the call's arguments "
                    f"(args.…), got `{r.limit.of.text()}`",
                    r.limit.of.span,
                )
        elif r.limit.max < 1:
            prog.error(f"a limit must allow at least 1 call, got {r.limit.max}", r.limit.span)
        if r.limit.window < 1:
            prog.error("a limit's window must be at least 1 second", r.span)
    for leaf, bound in _conditions(r.condition):
        _check_leaf(prog, leaf, bound)
    _check_names(prog, sel)
    if r.reason is not None and r.kind in ("hide", "limit"):
        what = "a hidden tool is simply absent" if r.kind == "hide" else "a rate-limited call says which limit and when to retry"
        prog.warn(f"a `reason` on `{r.kind}` is not shown to the agent ({what}); remove it or put it in a comment", r.span)
    if r.kind in ("deny", "limit") and r.guard == "if" and r.condition is not None:
        what_rule = "deny does not fire" if r.kind == "deny" else "limit does not apply"
        verb = "deny" if r.kind == "deny" else "limit"
        for leaf in _positive_negations(r.condition):
            if rules_out_by_schema(prog, rr.tools, leaf):
                continue  # dsl/arg_types.py warns here, with the argument's type and what to write
            path = leaf.lhs_text()
            if leaf.fns:
                what = f"`{leaf.path.text()}` is missing or not a string"
            elif leaf.fn == "len":
                what = "missing or has no length (not a string, list or object)"
                what = f"`{leaf.path.text()}` is {what}"
            else:
                what = "missing or of another type than " + ("the value" if leaf.op == "neq" else "every item")
                what = f"`{path}` is {what}"
            prog.warn(
                f"`{path} {'!=' if leaf.op == 'neq' else 'not in'} ...` is false when {what}, so this "
                f"{what_rule} to such calls; write `not ({path} {'==' if leaf.op == 'neq' else 'in'} ...)` "
                f"to {verb} those too",
                leaf.span,
            )
    if r.condition is not None and r.guard in ("if", "unless"):
        _check_literal_types(prog, r)


def _glob_condition(pattern: str) -> str:
    """A condition on `tool` that holds for exactly the names the glob ``pattern`` matches."""
    from .format import string_text

    body = pattern.strip("*")
    if "*" not in body and "?" not in body:
        lead, trail = pattern.startswith("*"), pattern.endswith("*")
        if trail and not lead:
            return f"tool starts_with {string_text(body)}"
        if lead and not trail:
            return f"tool ends_with {string_text(body)}"
        if lead and trail and body:
            return f"tool contains {string_text(body)}"
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return f"tool matches {string_text('^' + regex + '$')}"


def _wildcard_name_message(r: ir.Rule, name: str, default: str) -> str:
    """`deny tool "delete_*"`: a name with `*` or `?` names one tool literally called that, so
    the tools it was meant to match go through. Say so, and give the two forms that match."""
    from .format import string_text

    quoted = string_text(name)
    cond = _glob_condition(name)
    rest = " …" if r.kind == "limit" else f" {r.guard} …" if r.guard in ("if", "unless") else ""
    glob = f"`{r.kind} tools {quoted}{rest}` (a glob, expanded against the catalogues: only the tools they declare)"
    if r.kind == "hide":
        every = f"`deny all tools if {cond}` to refuse every call of such a tool (hiding has no such form)"
    elif r.kind == "limit":
        every = f"`limit all tools … if {cond}` (one quota shared by every call of such a tool)"
    elif r.kind == "allow" and default == "allow":
        every = (
            f"`deny all tools unless not ({cond}) or …` (every call of such a tool)" if r.guard == "if" else ""
        )
    elif r.guard == "unless":
        every = f"`deny all tools unless not ({cond}) or …` (every call of such a tool; it makes no tool callable)"
    elif r.guard == "if":
        every = f"`{r.kind} all tools if {cond} and (…)` (every call of such a tool)"
    else:
        every = f"`{r.kind} all tools if {cond}` (every call of such a tool)"
    return (
        f"`*` and `?` are not wildcards in a tool name: {quoted} would name only a tool literally called "
        f"`{name}` (MCP tool names are letters, digits, `_`, `-` and `.`), and this rule does not govern "
        f"the tools it seems to match; write {glob}" + (f", or {every}" if every else "")
    )


def _matches_every_name(pattern: str) -> bool:
    """`"*"`, `"**"`, `"?*"`, `"*?"`: a glob of only `*` and `?` (one `*` at least) matches every
    tool name but the shortest, so it carries the trap of `"*"`. (`"?"` alone names one-letter tools.)"""
    return "*" in pattern and set(pattern) <= {"*", "?"}


def _star_glob_message(r: ir.Rule, pattern: str, default: str) -> str:
    """`hide/deny/limit tools "*"` reaches only the catalogued tools, while `"*"` in the JSON's
    `hide` is every tool: a tool the catalogues lack would slip through."""
    sel = f'tools "{pattern}"'
    if r.kind == "hide":
        return (
            f"`hide {sel}` hides only the tools the catalogues declare: a tool they lack stays visible "
            '(while `"hide": ["*"]` in the JSON means every tool); write `hide all tools` to hide every tool'
        )
    if r.kind == "limit":
        return (
            f"`limit {sel}` limits only the tools the catalogues declare: a tool they lack is not limited; "
            "write `limit all tools …` for every call (one quota shared by every call)"
        )
    if r.guard == "always":
        fix = "`default deny` to deny every tool"
    elif r.guard == "unless" and default == "deny":
        fix = (
            f"`deny all tools unless …` for every call, with `allow {sel}` to keep the catalogued tools "
            "callable (`deny all tools …` makes no tool callable)"
        )
    else:
        fix = f"`deny all tools {r.guard} …` for every call"
    return (
        f"`deny {sel}` denies only the tools the catalogues declare: a tool they lack is not denied by it; "
        f"write {fix}"
    )


def _check_names(prog: Program, sel: ir.Selector) -> None:
    """An empty name selects nothing, and a name written twice in one list is a slip (often of
    a copy that was meant to be edited)."""
    seen: set[str] = set()
    for name in sel.names:
        if name == "":
            prog.warn('an empty tool name `""` selects no tool', sel.span)
        elif name in seen:
            prog.warn(f"`{name}` appears twice in this list", sel.span)
        seen.add(name)


def _check_hides(prog: Program) -> None:
    """A tool hidden by two rules: the second changes nothing (and its reason is never shown)."""
    first: dict[str, ir.Span] = {}
    for rr in prog.rules:
        if rr.rule.kind != "hide" or rr.rule.selector.kind not in ("tool", "list") or prog.in_stdlib(rr.rule.span):
            continue
        for name in dict.fromkeys(rr.tools):
            if name in first:
                prog.warn(f"`{name}` is already hidden by {prog.rule_name(first[name])}", rr.rule.selector.span)
            else:
                first[name] = rr.rule.span


def _positive_negations(c: ir.Condition) -> Iterator[ir.Compare]:
    """`!=` / `not in` leaves that are not under a `not` (where they would fail open). A leaf
    that can never hold because of its literal's type gets its own warning instead."""
    for leaf, negated in _leaves_with_polarity(c):
        if not negated and leaf.op in ("neq", "not_in") and leaf.fn != "count" and leaf.path.root != "tool":
            if _never_holds(leaf) is None:
                yield leaf


# --- comparisons that can never hold because of their literal's type --------------------

# What a path holds when it is present: count(...) and len(...) are numbers, `approved` is a
# boolean, and the other context roots are strings (tool names, identities, sessions, servers).
_ROOT_TYPES = {"identity": "string", "session": "string", "server": "string", "tool": "string", "approved": "boolean"}
_ORDERED = {"lt": "less than", "lte": "at most", "gt": "greater than", "gte": "at least"}
_SYMBOLS = {"eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "in": "in", "not_in": "not in"}




def _a(kind: str) -> str:
    return "null" if kind == "null" else f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _known_type(leaf: ir.Compare) -> str | None:
    if leaf.fn is not None:
        return "number"
    if leaf.fns:
        return "string"
    return None if leaf.path.steps else _ROOT_TYPES.get(leaf.path.root)


def _never_holds(leaf: ir.Compare) -> str | None:
    """Why ``leaf`` can never hold for any call, judging by its literal's type; None if it can.

    Comparing values of different types is false (language.md), so a comparison whose literal
    has the wrong type for every value the left side can have is a constant false.
    """
    op, value = leaf.op, leaf.value
    unreachable = _unreachable(leaf)
    if unreachable is not None:
        return unreachable
    if op not in _SYMBOLS:
        return None
    known = _known_type(leaf)
    lhs = f"{leaf.fn}(...)" if leaf.fn else f"{leaf.fns[-1]}(...)" if leaf.fns else f"`{leaf.path.text()}`"
    if op in _ORDERED:
        kind = json_type(value)
        if kind not in ("number", "string"):
            return f"only numbers and strings are ordered, and the value is {_a(kind)}"
        if known is not None and known != kind:
            return f"{lhs} is {_a(known)}, and {_a(known)} is never {_ORDERED[op]} {_a(kind)}"
        return None
    if op in ("eq", "neq"):
        kind = json_type(value)
        if known is not None and known != kind:
            if op == "eq":
                return f"{lhs} is {_a(known)}, and {_a(known)} never equals {_a(kind)}"
            return f"{lhs} is {_a(known)}, and `!=` holds only between two values of the same type"
        if op == "neq" and kind == "null":
            return "null is a type of its own, and `!=` holds only between two values of the same type"
        return None
    items = value if isinstance(value, list) else []
    kinds = {json_type(x) for x in items}
    if not items:
        return "the list is empty"
    if known is not None and known not in kinds:
        return f"{lhs} is {_a(known)}, and no item of the list is"
    if op == "not_in" and kinds == {"null"}:
        return "every item is null, and `not in` holds only for a value of the type of some item that equals none"
    return None


# The value functions but `dirname` give the same string when applied again: a literal that one
# of them changes is a string it never gives (`lower(...) == "Admin"`). `dirname` is not
# idempotent (`/a/b` -> `/a` -> `/`), but what it gives is normalised as `normpath`'s is, so a
# literal that `normpath` changes is one `dirname` never gives either.
_CASE_FNS = {"lower", "upper"}  # every part of what they give is given unchanged too (prefixes, ...)
_TEXT_OPS = ("starts_with", "ends_with", "contains")


def _unreachable(leaf: ir.Compare) -> str | None:
    """Why a comparison of a value function's result with a string it never gives never holds."""
    if leaf.fn is not None or not leaf.fns:
        return None
    f = leaf.fns[-1]
    from .engine.functions import STRING_FUNCTIONS

    apply = STRING_FUNCTIONS["normpath" if f == "dirname" else f]
    op, value = leaf.op, leaf.value
    if op == "eq" and isinstance(value, str) and apply(value) != value:
        if f == "dirname":
            return f"dirname(...) never gives {_quote(value)} (what it gives is normalised: {_quote(apply(value))})"
        return f"{f}(...) never gives {_quote(value)} (it gives {_quote(apply(value))} for it)"
    if op == "in" and isinstance(value, list) and value:
        if not any(isinstance(x, str) and apply(x) == x for x in value):
            return f"{f}(...) gives none of the strings of the list"
    if op in _TEXT_OPS and f in _CASE_FNS and isinstance(value, str):
        if apply(value) != value:
            return f"{f}(...) gives no text with {_quote(value)} in it (write {_quote(apply(value))})"
    if op in _TEXT_OPS and isinstance(value, str):
        shape = _never_shaped(leaf.fns, op, value)
        if shape is not None:
            return shape
    if op == "regex" and f in _CASE_FNS and isinstance(value, str):
        found = _case_letters(value, f)
        if found is not None and not found[0]:
            return (
                f"{f}(...) gives no {_CASE_WORD[f]} letter, and the pattern needs {_letters(found[1])}; "
                f"start it with `(?i)` ({_quote('(?i)' + value)}) or write the letters in {_OTHER_CASE[f]}"
            )
    return None


def _fn_text(fns: tuple[str, ...]) -> str:
    """``lower(normpath(...))`` for the functions applied innermost first."""
    text = "..."
    for f in fns:
        text = f"{f}({text})"
    return text


def _never_shaped(fns: tuple[str, ...], op: str, s: str) -> str | None:
    """Why no text that `normpath`, `dirname`, `trim` or `basename` gives (and `lower`/`upper`
    of it: they neither make nor take away a `/`, a `.` or whitespace, character by character)
    has ``s`` as its prefix, suffix or part, as ``op`` asks; None when one may.

    What they give (dsl/engine/functions.py): normpath and dirname a path with no `//`, no `.`
    element and no trailing `/` but `/` itself, and no `..` element in an absolute path (a
    relative one keeps its leading `..`s: `../../x`); trim a text that neither starts nor ends
    with whitespace; basename `/` or a text with no `/`."""
    i = len(fns) - 1
    while i >= 0 and fns[i] in _CASE_FNS:
        i -= 1
    if i < 0 or not s:
        return None
    base, fn = fns[i], _fn_text(fns)
    if base in ("normpath", "dirname"):
        if "//" in s:
            return f"{fn} gives no text with `//` in it (`//` is resolved to `/`)"
        if "/./" in s:
            return f"{fn} gives no text with `/./` in it (a `.` element is dropped)"
        if op == "starts_with" and s.startswith("./"):
            return f"{fn} gives no text that starts with `./` (a `.` element is dropped)"
        if op == "starts_with" and s.startswith("/") and "/../" in s:
            return f"{fn} gives no absolute path with a `..` element (`/a/../b` is `/b`)"
        if op == "ends_with" and s.endswith("/") and s != "/":
            return f"{fn} gives no text that ends with `/` but `/` itself (a trailing slash is dropped)"
        if op == "ends_with" and s.endswith("/."):
            return f"{fn} gives no text that ends with `/.` (a `.` element is dropped)"
    elif base == "trim":
        if op == "starts_with" and s[0].isspace():
            return f"{fn} gives no text that starts with whitespace (it is stripped)"
        if op == "ends_with" and s[-1].isspace():
            return f"{fn} gives no text that ends with whitespace (it is stripped)"
    elif base == "basename" and "/" in s and s != "/":
        return f"{fn} gives no text with a `/` in it but `/` itself (the path of slashes alone)"
    return None


def _only_root(leaf: ir.Compare) -> str | None:
    """`normpath(p) ends_with "/"` and `basename(p) contains "/"` can hold, but only when the
    path is `/` (or slashes alone): hardly what was meant (a folder, a path with a folder in
    it), so the rule next to never applies. Why, or None."""
    if leaf.fn is not None or not leaf.fns or leaf.value != "/" or leaf.op not in _TEXT_OPS:
        return None
    fns = leaf.fns
    i = len(fns) - 1
    while i >= 0 and fns[i] in _CASE_FNS:
        i -= 1
    if i >= 0 and fns[i] == "normpath" and leaf.op == "ends_with":
        return "normpath(...) drops a trailing slash; to test what was written, compare the path itself"
    if i >= 0 and fns[i] == "basename":
        return "basename(...) gives the last element, which has no `/`; to test for a folder, compare the path itself"
    return None


_CASE_WORD = {"lower": "upper-case", "upper": "lower-case"}
_OTHER_CASE = {"lower": "lower case", "upper": "upper case"}


def _letters(letters: tuple[str, ...]) -> str:
    shown = ", ".join(f"`{c}`" for c in letters[:4])
    return shown + (f" and {len(letters) - 4} more" if len(letters) > 4 else "")


@lru_cache(maxsize=1024)
def _case_letters(pattern: str, f: str) -> tuple[bool, tuple[str, ...]] | None:
    """For ``f(...) matches pattern`` with ``f`` lower or upper: whether the pattern can still
    match a text ``f`` gives, and the literal ASCII letters in it that never can (upper-case
    ones after lower, lower-case ones after upper), outside character classes and escapes
    (the S of a `\\S`) and where no `(?i)` applies. None when Python's parser (close to RE2's
    syntax) cannot read the pattern (`\\pL`, `\\z`): then nothing is said. Only ASCII letters:
    no character's lower case has an upper-case ASCII letter in it, nor its upper case a
    lower-case one."""
    import warnings

    try:
        compile_re2(pattern)
    except ValueError:
        return None  # reported as an invalid pattern
    try:
        from re import _constants as c, _parser as sre  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - Python 3.11 has both
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = sre.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError, TypeError):
        return None
    dead: list[str] = []
    wrong = str.isupper if f == "lower" else str.islower

    def possible(items, icase: bool) -> bool:  # type: ignore[no-untyped-def]
        ok = True
        for op, av in items:
            if op is c.LITERAL:
                ch = chr(av)
                if not icase and ch.isascii() and ch.isalpha() and wrong(ch):
                    if ch not in dead:
                        dead.append(ch)
                    ok = False
            elif op is c.BRANCH:
                ok = [possible(b, icase) for b in av[1]].count(True) > 0 and ok
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
                ok = (possible(av[2], icase) or av[0] == 0) and ok
            elif op is c.SUBPATTERN:
                inner = (icase or bool(av[1] & c.SRE_FLAG_IGNORECASE)) and not av[2] & c.SRE_FLAG_IGNORECASE
                ok = possible(av[3], inner) and ok
        return ok

    try:
        whole = possible(parsed, bool(parsed.state.flags & c.SRE_FLAG_IGNORECASE))
    except (RecursionError, TypeError, IndexError):
        return None
    return whole, tuple(dead)


def _quote(s: str) -> str:
    from .format import string_text

    return string_text(s) if len(s) <= 60 else string_text(s[:57]) + "..."


def _fix_hint(leaf: ir.Compare) -> str:
    """A rewrite for the common slips: a quoted number, or `!= null`."""
    import json

    from .format import literal_text

    lhs = leaf.lhs_text()
    value = leaf.value
    if leaf.op == "neq" and value is None and _known_type(leaf) is None:
        return f"; to require a value that is not null, write `not ({lhs} == null)`"
    if _known_type(leaf) == "number" and isinstance(value, str):
        try:
            number = json.loads(value)
        except ValueError:
            return ""
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            return f"; write `{lhs} {_SYMBOLS[leaf.op]} {literal_text(number)}`"
    return ""


def _const(c: ir.Condition, never: set[int]) -> bool | None:
    """The condition's value when the leaves in ``never`` are false; None when it depends on the call."""
    if isinstance(c, ir.Compare):
        return False if id(c) in never else None
    if isinstance(c, ir.Not):
        inner = _const(c.item, never)
        return None if inner is None else not inner
    if isinstance(c, ir.Quantifier):  # no item can satisfy the block: `some` is false (`every` holds for [])
        return False if c.kind == "some" and _const(c.body, never) is False else None
    values = [_const(x, never) for x in c.items]
    stop = isinstance(c, ir.Or)  # an `or` is decided by a true item, an `and` by a false one
    if stop in values:
        return stop
    return (not stop) if all(v is not None for v in values) else None


def _leaves_with_polarity(c: ir.Condition, negated: bool = False) -> Iterator[tuple[ir.Compare, bool]]:
    if isinstance(c, ir.Compare):
        yield c, negated
    elif isinstance(c, (ir.And, ir.Or)):
        for item in c.items:
            yield from _leaves_with_polarity(item, negated)
    elif isinstance(c, ir.Quantifier):  # an item's comparison counts toward the quantifier's truth alike
        yield from _leaves_with_polarity(c.body, negated)
    else:
        yield from _leaves_with_polarity(c.item, not negated)


def _check_literal_types(prog: Program, r: ir.Rule) -> None:
    """Warn at each comparison that can never hold, and say what that does to the rule: in a
    `deny … if` (or under a `not` in a requirement) it is a silent fail-open."""
    from .format import condition_text

    assert r.condition is not None
    found = [(leaf, negated, why) for leaf, negated in _leaves_with_polarity(r.condition) if (why := _never_holds(leaf))]
    if not found:
        return
    whole = _const(r.condition, {id(leaf) for leaf, _n, _w in found})
    deny_if = r.kind in ("deny", "limit") and r.guard == "if"  # holding restricts: never holding fails open
    grant = r.kind == "allow" and r.selector.kind == "all"
    head = {"deny": "`deny … if`", "limit": "`limit … if`"}.get(r.kind, "") if deny_if else (
        "`allow … if`" if r.kind == "allow" else "`deny … unless`"
    )
    fires, meant = ("applies", "limit are not counted") if r.kind == "limit" else ("fires", "deny are allowed")
    for leaf, negated, why in found:
        message = f"`{condition_text(leaf)}` can never hold: {why}"
        if deny_if and not negated:
            if whole is False:
                message += (
                    f", so this {head} never {fires}: the calls it is meant to {meant} (a silent fail-open)"
                )
            else:
                message += (
                    f", so this part of the {head} never {fires}: calls it is meant to "
                    f"{meant.replace(' are ', ' may be ')} (a silent fail-open)"
                )
        elif grant and whole is False and not negated:
            message += ", so this `allow all tools if` never grants anything"
        elif not deny_if and negated:
            message += f", so the `not` around it always holds and this {head} denies less than written (fail open)"
        elif deny_if:
            message += ", so the `not` around it always holds"
        elif whole is False:
            message += f", so this {head} condition never holds: the rule denies every call it selects"
        prog.warn(message + _fix_hint(leaf), leaf.span)


def _check_leaf(prog: Program, leaf: ir.Compare, bound: tuple[str, ...] = ()) -> None:
    root = leaf.path.root
    if root not in PATH_ROOTS and root not in bound:
        hint = difflib.get_close_matches(root, [*PATH_ROOTS, *bound], n=1)
        extra = f" (did you mean `{hint[0]}`?)" if hint else ""
        names = f", or a name bound around it ({', '.join(bound)})" if bound else ""
        prog.error(
            f"unknown path root `{root}`{extra}: a path starts with args, identity, session, server, tool or "
            f"approved{names}",
            leaf.path.span,
        )
    elif root in PATH_ROOTS and root != "args" and leaf.path.steps:
        prog.error(f"`{root}` is a single value: it has no fields or items (write `{root}`)", leaf.path.span)
    if leaf.op == "regex":
        try:
            compile_re2(leaf.value)
        except ValueError as e:
            prog.error(f"{e} (plr uses RE2 syntax: no backreferences or lookaround)", leaf.span)
    if leaf.op == "contains" and isinstance(leaf.value, list):
        prog.error("`contains` takes one value; to test several, write `in [...]` or combine with or", leaf.span)
    if leaf.fn is not None and leaf.op in ("contains", "starts_with", "ends_with", "regex"):
        prog.error(f"{leaf.fn}(...) is a number: compare it with ==, <, > or in", leaf.span)


SpanKey = tuple[str, int, int, int, int]


def _key(span: ir.Span) -> SpanKey:
    return (span.file, span.line, span.col, span.end_line, span.end_col)


def _named_values(prog: Program) -> dict[SpanKey, ir.Ref]:
    """The `==`/`!=` comparisons whose value is written as one name (`args.user == banned`), by
    place: resolution replaces the name by its value, and the check needs to know it was one.
    A list written out (`args.pair == [cap, ws]`) is visibly a list, so it is not here."""
    out: dict[SpanKey, ir.Ref] = {}

    def walk(c: ir.Condition | None) -> None:
        if isinstance(c, ir.Compare):
            if c.op in ("eq", "neq") and isinstance(c.value, ir.Ref):
                out[_key(c.span)] = c.value
        elif isinstance(c, (ir.And, ir.Or)):
            for item in c.items:
                walk(item)
        elif isinstance(c, ir.Not):
            walk(c.item)
        elif isinstance(c, ir.Quantifier):
            walk(c.body)

    for module in prog.modules:
        for st in module.statements:
            if isinstance(st, ir.Rule):
                walk(st.condition)
            elif isinstance(st, ir.Def):
                walk(st.body)
    return out


_ABSOLUTE = re.compile(r"/|~/|[A-Za-z]:[\\/]")


def _check_traps(prog: Program, r: ir.Rule, named: dict[SpanKey, ir.Ref]) -> None:
    """Comparisons that can hold, but not as their author most likely meant: a letter of a
    `matches` pattern that `lower`/`upper` never gives, a test that holds only for the path `/`,
    a whole `let` list compared with `==`, and a path prefix that lets more through than its
    folder. Each is silent at run time, so it is said here (a comparison that can never hold
    has its own warning, and gets none of these)."""
    from .format import condition_text

    if r.condition is None or r.guard not in ("if", "unless"):
        return
    for leaf, negated in _leaves_with_polarity(r.condition):
        if _never_holds(leaf) is not None:
            continue
        text = condition_text(leaf)
        f = leaf.fns[-1] if leaf.fns and leaf.fn is None else None
        if leaf.op == "regex" and f is not None and f in _CASE_FNS and isinstance(leaf.value, str):
            found = _case_letters(leaf.value, f)
            if found is not None and found[1]:
                n = len(found[1])
                prog.warn(
                    f"`{text}`: {f}(...) gives no {_CASE_WORD[f]} letter, so {_letters(found[1])} in the pattern "
                    f"{'never matches' if n == 1 else 'never match'} and {'its' if n == 1 else 'their'} part of "
                    f"the pattern never holds; start it with `(?i)` or write "
                    f"{'it' if n == 1 else 'them'} in {_OTHER_CASE[f]}",
                    leaf.span,
                )
        only = _only_root(leaf)
        if only is not None:
            prog.warn(f"`{text}` holds only when `{leaf.path.text()}` is `/` (or slashes alone): {only}", leaf.span)
        ref = named.get(_key(leaf.span))
        if ref is not None and isinstance(leaf.value, list):
            lhs, name = leaf.lhs_text(), ref.text()
            if leaf.op == "eq":
                fix = f"write `{lhs} in {name}` to test that it is one of them"
            else:
                fix = f"write `not ({lhs} in {name})` to test that it is none of them"
            prog.warn(
                f"`{lhs} {_SYMBOLS[leaf.op]} {name}` compares `{lhs}` with the whole list `{name}`: it holds only "
                f"when `{lhs}` {'is' if leaf.op == 'eq' else 'is a list, and not'} that very list, item for item; "
                f"{fix} (to compare with the whole list, write the list out)",
                leaf.span,
            )
        grant = (r.kind == "allow" and not negated) or (r.kind == "deny" and (r.guard == "unless") != negated)
        if grant:
            _check_path_prefix(prog, leaf)
        elif r.kind in ("allow", "deny") or not negated:  # a match restricts: a missed one fails open
            _check_newline_dots(prog, r, leaf)


def _check_path_prefix(prog: Program, leaf: ir.Compare) -> None:
    """In a condition that lets calls through, `args.path starts_with "/workspace"` also lets
    `/workspace-secrets/k` through (no `/` at its end), and without `normpath` it lets
    `/workspace/../etc/passwd` through. A prefix that looks like an absolute path is read as
    a folder, so both are warned about, apart (each has its own fix)."""
    value = leaf.value
    if leaf.op != "starts_with" or leaf.fn is not None or not isinstance(value, str) or not _ABSOLUTE.match(value):
        return
    root = leaf.path.root
    if root in PATH_ROOTS and root != "args":
        return  # identity, session, server and tool are names, not paths
    from .format import condition_text, string_text

    text, lhs = condition_text(leaf), leaf.lhs_text()
    windows = "\\" in value or re.match(r"[A-Za-z]:", value) is not None
    if not value.endswith("/") and not (windows and value.endswith("\\")):
        sep = "\\" if "\\" in value else "/"
        prog.warn(
            f"`{text}` also holds for `{value}-other{sep}…` (a sibling whose name begins the same), so it lets "
            f"more through than the folder: end the prefix with `{sep}` (`starts_with {string_text(value + sep)}`), "
            f"and write `{lhs} == {string_text(value)}` for the folder itself",
            leaf.span,
        )
    if "normpath" not in leaf.fns and "dirname" not in leaf.fns and value != "/" and "\\" not in value:
        if leaf.path.text() in _dots_denied(prog):
            return  # a deny on any `..` in this path keeps it in the folder (stricter than normpath)
        inner = _fn_text(("normpath", *leaf.fns)).replace("...", leaf.path.text())
        climb = value + ("" if value.endswith("/") else "/") + "../etc/passwd"
        prog.warn(
            f"`{text}` also holds for `{climb}`: the path is compared as written, and `..` climbs out of the "
            f"folder; compare it normalised: `{inner} starts_with {string_text(value)}`, or deny any `..` in "
            "it (normpath reads `link/..` as the folder, a disk as the link target's parent)",
            leaf.span,
        )


def _check_newline_dots(prog: Program, r: ir.Rule, leaf: ir.Compare) -> None:
    """`deny … if args.cmd matches "rm.*-rf"` does not fire for "rm \\n -rf": RE2's `.` (as Go's,
    and so Intercept's) matches any character but a newline. The matching stays as the JSON
    contract and Intercept have it (docs/language.md, "Comparisons"); where a match restricts
    (a deny or limit that holds, an allow under `not`), a `.` without the `s` flag is warned
    about. A tool name holds no newline, so a pattern on `tool` is left alone."""
    pattern = leaf.value
    if leaf.op != "regex" or not isinstance(pattern, str) or leaf.path.root == "tool" or "." not in pattern:
        return
    dots = newline_blind_dots(pattern)
    if not dots or prog.in_stdlib(leaf.span):
        return
    seen: set[SpanKey] | None = getattr(prog, "_plr_newline_dots", None)
    if seen is None:  # a `def` inlined at several calls is one place: one warning
        seen = set()
        try:
            object.__setattr__(prog, "_plr_newline_dots", seen)
        except (AttributeError, TypeError):
            pass
    if _key(leaf.span) in seen:
        return
    seen.add(_key(leaf.span))
    from .format import condition_text, string_text

    example = newline_example(pattern, dots)
    through = (
        f"a value such as {string_text(example)}" if example is not None else "a value with a newline where the `.` stands"
    )
    effect = {
        "deny": "this deny does not fire for it",
        "limit": "this limit does not count it",
        "allow": "the `not` around it holds and the allow lets it through",
    }[r.kind]
    literal = "" if _REPEAT_AFTER.match(pattern, dots[0] + 1) else " (for a literal dot, write `\\\\.`)"
    prog.warn(
        f"`{condition_text(leaf)}`: `.` matches any character but a newline (RE2, as Go and Intercept read it), "
        f"so {through} does not match and {effect} (a silent fail-open); start the pattern with `(?s)` "
        f"(`matches {string_text(with_dotall(pattern))}`) or write `[\\\\s\\\\S]` for any character{literal}",
        leaf.span,
    )


_REPEAT_AFTER = re.compile(r"[*+?{]")


def _dots_denied(prog: Program) -> frozenset[str]:
    """Paths (as written) that some `deny ... if` refuses whenever they hold a `..`: a `contains
    ".."` or a `matches` whose pattern needs two literal dots. Such a rule keeps a raw
    `starts_with` folder check honest, symlinks included, where `normpath` would not."""
    cached = getattr(prog, "_plr_dots_denied", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    found: set[str] = set()
    for r in prog.statements(ir.Rule):
        if r.kind != "deny" or r.guard != "if":
            continue
        for leaf, _ in _conditions(r.condition):
            if leaf.fns or leaf.fn is not None or not isinstance(leaf.value, str):
                continue
            if (leaf.op == "contains" and ".." in leaf.value) or (leaf.op in ("matches", "regex") and "\\.\\." in leaf.value):
                found.add(leaf.path.text())
    result = frozenset(found)
    try:
        object.__setattr__(prog, "_plr_dots_denied", result)
    except (AttributeError, TypeError):
        pass
    return result


def _check_shared_cap(prog: Program, rr: ResolvedRule) -> None:
    """A spend cap on several tools (a list, a class, a glob) is one budget per tool, each
    tool adding up its own amounts: 500 a day on `refund` and `payout` lets 1000 a day out.
    Say so, and write the one budget across them."""
    from .format import condition_text, limit_window_text, number_text, string_text

    r = rr.rule
    lim = r.limit
    tools = list(dict.fromkeys(rr.tools))
    if r.kind != "limit" or lim is None or lim.of is None or len(tools) < 2 or prog.in_stdlib(r.span):
        return
    if r.selector.kind == "glob" and r.selector.pattern:
        cond = _glob_condition(r.selector.pattern)
    elif len(tools) <= 6:
        cond = "tool in [" + ", ".join(string_text(t) for t in tools) + "]"
    else:
        cond = "tool in [...]"
    if r.condition is not None:
        more = condition_text(r.condition)
        cond += f" and ({more})" if isinstance(r.condition, ir.Or) else f" and {more}"
    head = (
        f"limit all tools to {number_text(lim.max)} of {lim.of.text()} per {limit_window_text(lim)} per {lim.per}"
        + (" refund on error" if lim.refund else "")
    )
    prog.warn(
        f"this spend cap counts each of its {len(tools)} tools on its own: each may add up to "
        f"{number_text(lim.max)} of {lim.of.text()} per {limit_window_text(lim)}, {len(tools)} times that in all; "
        "for one budget across them "
        f"write `{head} if {cond}`",
        r.selector.span,
    )


def _check_catalogue_names(prog: Program) -> None:
    """With a catalogue in scope a name it lacks is most likely a typo, and a typo fails open
    (`deny tool "write_fil"` under `default allow` governs nothing): an error. A tool the server
    has beyond its catalogue is declared in a `server` block of the author's own. The same
    typo in a condition on `tool` is a warning (see `_check_tool_literals`)."""
    known = set(prog.catalogue)
    if not known:
        return
    candidates = sorted(known)
    hints: dict[tuple[str, str], str] = {}  # one difflib search per unknown name, not per rule naming it
    budget = HINT_COMPARISONS

    def hint_for(name: str, among: list[str] = candidates, kind: str = "") -> str:
        nonlocal budget
        if (kind, name) not in hints:
            if budget < len(among):  # a missing catalogue, not typos: stop searching
                return ""
            budget -= len(among)
            close = difflib.get_close_matches(name, among, n=1)
            hints[kind, name] = f"; did you mean `{close[0]}`?" if close else ""
        return hints[kind, name]

    for rr in prog.rules:
        if rr.rule.selector.kind not in ("tool", "list"):
            continue
        for name in rr.tools:
            if name not in known and "*" not in name and "?" not in name:  # _check_rule: a wildcard
                prog.error(
                    f"tool `{name}` is not in any declared catalogue{hint_for(name)} (a tool the server "
                    f'has beyond its catalogue is declared in a `server` block: tool "{name}" CLASS)',
                    rr.rule.selector.span,
                )
    _check_tool_literals(prog, candidates, hint_for)


def _paren(hint: str) -> str:
    """``; did you mean `x`?`` as `` (did you mean `x`?)``."""
    return f" ({hint[2:]})" if hint else ""


_TOOL_TESTS = {
    "starts_with": ("starts with", lambda n, v: n.startswith(v)),
    "ends_with": ("ends with", lambda n, v: n.endswith(v)),
    "contains": ("has", lambda n, v: v in n),
}


def _check_tool_literals(prog: Program, candidates: list[str], hint_for: Callable[..., str]) -> None:
    """`deny all tools if tool == "write_fil"` governs nothing, as `deny tool "write_fil"` does,
    and so does a prefix, suffix, part or pattern that no catalogued name has. Reported with the
    same near-miss hint, as a warning: a condition on `tool` is also how a policy reaches tools
    beyond its catalogues (`deny all tools if tool starts_with "delete_"`), so `plr check
    --strict` fails on it and compiling does not. A rule pack's own conditions are not the
    user's to fix, and are left alone."""
    from .engine.functions import string_chain
    from .format import condition_text, string_text

    views: dict[tuple[str, ...], tuple[list[str], set[str]]] = {(): (candidates, set(candidates))}
    for rr in prog.rules:
        if rr.rule.condition is None or prog.in_stdlib(rr.rule.span):
            continue
        for leaf, _bound in _conditions(rr.rule.condition):
            value = leaf.value
            if leaf.path.root != "tool" or leaf.path.steps or leaf.fn is not None or _never_holds(leaf) is not None:
                continue
            if leaf.fns not in views:
                given = {string_chain(leaf.fns)(n) for n in candidates}
                views[leaf.fns] = (sorted(given), given)
            names, known = views[leaf.fns]
            text = condition_text(leaf)
            beyond = "a tool the server has beyond its catalogue is declared in a `server` block"
            if leaf.op in ("eq", "neq", "in", "not_in"):
                items = value if isinstance(value, list) else [value]
                for name in dict.fromkeys(x for x in items if isinstance(x, str)):
                    if name in known:
                        continue
                    if has_glob_chars(name):
                        prog.warn(
                            f"tool `{name}` is not in any declared catalogue, and `*` and `?` are not wildcards in "
                            f"`{text}`: it matches only a tool literally called `{name}`; write "
                            f"`{_glob_condition(name)}` for the tools it seems to match",
                            leaf.span,
                        )
                        continue
                    hint = _paren(hint_for(name, names, ",".join(leaf.fns)))
                    prog.warn(
                        f"tool `{name}` in `{text}` is not in any declared catalogue{hint}: a misspelt name matches "
                        f'no call of the tool meant; {beyond}: tool "{name}" CLASS',
                        leaf.span,
                    )
            elif leaf.op in _TOOL_TESTS and isinstance(value, str):
                words, test = _TOOL_TESTS[leaf.op]
                if any(test(n, value) for n in names):
                    continue
                hint = ""
                if leaf.op != "contains" and value:
                    cut = sorted({n[: len(value)] if leaf.op == "starts_with" else n[-len(value) :] for n in names})
                    hint = _paren(hint_for(value, cut, leaf.op + ":" + ",".join(leaf.fns)))
                what = f"`{value}` in its name" if leaf.op == "contains" else string_text(value)
                prog.warn(
                    f"no tool in any declared catalogue {words} {what}{hint}: `{text}` matches no call of the tools "
                    f"meant if it is misspelt; {beyond}",
                    leaf.span,
                )
            elif leaf.op == "regex" and isinstance(value, str):
                try:
                    compile_re2(value)
                except ValueError:
                    continue  # reported as an invalid pattern
                from .regex import re2_search_test

                search = re2_search_test(value)
                if not any(search(n) for n in names):
                    prog.warn(
                        f"no tool in any declared catalogue matches {string_text(value)}: `{text}` matches no call "
                        f"of the tools meant if it is misspelt; {beyond}",
                        leaf.span,
                    )


def _check_interactions(prog: Program) -> None:
    default = program_default(prog)
    by_tool, _hide_all, limit_all = rules_by_tool(prog)
    every = all_tools_rules(prog)
    granted = default == "deny" and bool(every.allow_if)  # every tool is callable when a grant holds
    reported: set[tuple[str, int, str]] = set()

    def warn_once(message: str, span: ir.Span) -> None:
        key = (span.file, span.line, message)
        if key not in reported:
            reported.add(key)
            prog.warn(message, span)

    # A rule is dead when every tool it selects is always hidden or denied by another rule.
    dead: dict[int, list[tuple[str, str, ir.Rule]]] = {}
    for tool, tr in by_tool.items():
        winners = tr.hide or tr.deny
        if not winners:
            continue
        w = winners[0].rule
        for rr in tr.all():
            if rr.rule.kind == "hide" or (rr.rule.kind == "deny" and rr.rule.guard == "always"):
                continue
            dead.setdefault(id(rr), []).append((tool, "hidden" if tr.hide else "denied", w))
    for rr in prog.rules:
        why = dead.get(id(rr))
        if not why or len(why) < len(rr.tools) or prog.in_stdlib(rr.rule.span):
            continue
        tool, how, w = why[0]
        names = f"`{tool}`" if len(why) == 1 else f"any of its {len(why)} tools"
        warn_once(f"this rule can never fire for {names}: always {how} by {prog.rule_name(w.span)}", rr.rule.span)

    for tool, tr in sorted(by_tool.items()):
        if tr.hide or tr.deny:
            continue
        if default == "allow":
            for rr in tr.allow:
                if rr.rule.selector.kind in ("tool", "list"):
                    warn_once("`allow` without a condition changes nothing under `default allow`", rr.rule.span)
        elif not tr.callable(default, granted):
            # a guard pack's deny on a tool the user's own rules leave uncallable is not theirs to fix
            for rr in [rr for rr in [*tr.deny_if, *tr.limit] if not prog.in_stdlib(rr.rule.span)]:
                warn_once(
                    f"`{tool}` is denied by `default deny` (no allow rule selects it), so this rule can never matter",
                    rr.rule.span,
                )
        elif tr.allow and tr.allow_if:
            # The tool's `allow … if` rules restrict it whatever else allows it, so an
            # unconditional allow naming this very tool adds nothing (one of a class or glob
            # is how a rule pack is narrowed: no warning there).
            for rr in tr.allow:
                if rr.rule.selector.kind in ("tool", "list") and not prog.in_stdlib(rr.rule.span):
                    warn_once(
                        f"this unconditional `allow` does not make `{tool}` always callable: `{tool}` also has "
                        f"`allow … if` rules ({prog.rule_name(tr.allow_if[0].rule.span)}), and it is allowed only "
                        "when one of them holds",
                        rr.rule.span,
                    )
        # a limit with `if` may not apply when another does: only unconditional ones shadow others
        _check_limit_widths(tool, [rr for rr in [*tr.limit, *limit_all] if rr.rule.condition is None], warn_once)
        if tr.callable(default, granted):
            _check_string_guards(prog, tool, tr, warn_once)
    _check_all_tools(prog, default, by_tool, every, bool(_hide_all), warn_once)


def _check_all_tools(prog: Program, default: str, by_tool, every, hide_all: bool, warn_once) -> None:  # type: ignore[no-untyped-def]
    """Conditional rules on `all tools` where they can never decide anything, and the tools an
    `allow all tools if` does not reach."""
    granted = default == "deny" and bool(every.allow_if)
    for rr in every.allow_if:
        if default == "allow":
            warn_once(
                "`allow all tools if …` changes nothing under `default allow`: every tool is allowed unless a rule "
                "denies or restricts it",
                rr.rule.span,
            )
            continue
        if prog.in_stdlib(rr.rule.span):
            continue
        own = sorted(
            t
            for t, tr in by_tool.items()
            if tr.allow_if and not (tr.hide or tr.deny) and not _repeats(tr, rr.rule.condition)
        )
        if own:
            shown = _some(own)
            warn_once(
                f"`allow all tools if …` does not apply to {shown}: a tool's own `allow … if` rules decide for it "
                f"alone ({prog.rule_name(by_tool[own[0]].allow_if[0].rule.span)}); repeat the condition there to "
                "allow it too",
                rr.rule.span,
            )
        # A `deny … unless` makes its tool callable on its own, to anyone its condition lets
        # through: the grant's condition does not bind it (unless `deny all tools unless` does).
        grant = _text(rr.rule.condition)
        if any(_text(x.rule.condition) == grant for x in every.deny_unless):
            continue
        gated = sorted(
            t
            for t, tr in by_tool.items()
            if tr.deny_unless and not (tr.allow or tr.allow_if or tr.hide or tr.deny)
        )
        if gated:
            first = by_tool[gated[0]].deny_unless[0].rule
            approval = all(_is_approved(x.rule.condition) for t in gated for x in by_tool[t].deny_unless)
            its = "its" if len(gated) == 1 else "their"
            who = "once approved" if approval else f"when {its} `deny … unless` condition holds"
            fix = (
                f"`deny all tools unless {grant}`" if len(grant) <= 80 else "`deny all tools unless` with the same condition"
            )
            warn_once(
                f"anyone may call {_some(gated)} {who} ({prog.rule_name(first.span)}): `allow all tools if …` does "
                f"not apply to a tool that a `deny … unless` makes callable; to hold every call to this condition "
                f"too, add {fix}",
                rr.rule.span,
            )
    some_callable = default == "allow" or granted or any(
        tr.callable(default) and not (tr.hide or tr.deny) for tr in by_tool.values()
    )
    for rr in [*every.deny_if, *every.deny_unless, *every.limit]:
        if hide_all:
            warn_once("every tool is hidden (`hide all tools`), so this rule can never matter", rr.rule.span)
        elif not some_callable:
            warn_once(
                "no tool is callable under `default deny` (no allow rule, `deny … unless` or `allow all tools if`), "
                "so this rule can never matter",
                rr.rule.span,
            )


def _text(c: ir.Condition | None) -> str:
    from .format import condition_text

    return "" if c is None else condition_text(c)


def _some(tools: list[str]) -> str:
    return ", ".join(f"`{t}`" for t in tools[:3]) + (f" and {len(tools) - 3} more" if len(tools) > 3 else "")


def _repeats(tr, grant: ir.Condition | None) -> bool:  # type: ignore[no-untyped-def]
    """Whether one of the tool's own `allow … if` rules is the grant's condition, or an `or` with
    it as one side: the grant's callers reach the tool there (the check's advice was followed)."""
    if grant is None:
        return False
    text = None
    for x in tr.allow_if:
        c = x.rule.condition
        for cand in (c, *(c.items if isinstance(c, ir.Or) else ())):
            if not _alike(cand, grant):
                continue  # cheap: most conditions differ at the top; the text compares the rest
            text = _text(grant) if text is None else text
            if _text(cand) == text:
                return True
    return False


def _alike(a: ir.Condition | None, b: ir.Condition) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, ir.Compare) and isinstance(b, ir.Compare):
        return a.op == b.op and a.path.root == b.path.root and a.path.steps == b.path.steps
    return True


def _is_approved(c: ir.Condition | None) -> bool:
    return isinstance(c, ir.Compare) and c.path.root == "approved" and not c.path.steps and c.op == "eq" and c.value is True


def _check_string_guards(prog: Program, tool: str, tr, warn_once) -> None:  # type: ignore[no-untyped-def]
    """A value function on a value that is not a string makes its comparison false, so in a
    `deny … if` a list or a number slips through (`lower(args.path) contains ".env"` does not
    fire for `[".ENV"]`). Warn, unless the tool requires that path to be a string anyway."""
    for rr in tr.deny_if:
        if rr.rule.condition is None or prog.in_stdlib(rr.rule.span):
            continue
        for leaf, negated in _leaves_with_polarity(rr.rule.condition):
            if negated or not leaf.fns or leaf.path.root != "args" or _never_holds(leaf) is not None:
                continue
            if leaf.op in ("neq", "not_in"):
                continue  # the warning on `!=` / `not in` in a `deny … if` says this already
            if _string_required(tr, leaf.path) or rules_out_by_schema(prog, rr.tools, leaf):
                continue
            path = leaf.path.text()
            warn_once(
                f"`{condition_text_of(leaf)}` is false when `{path}` is missing or not a string (a list, a number), so "
                f"this deny does not fire for such calls of `{tool}`; require a string where `{tool}` is allowed "
                f'(such as `deny tool "{tool}" unless {path} matches ""`) and this warning goes away',
                leaf.span,
            )


def condition_text_of(leaf: ir.Compare) -> str:
    from .format import condition_text

    return condition_text(leaf)


def _string_required(tr, path: ir.Path) -> bool:  # type: ignore[no-untyped-def]
    """Whether every call that passes the tool's requirements has a string at ``path``."""
    allow_ifs = [rr.rule.condition for rr in tr.allow_if]
    if allow_ifs and all(c is not None and _requires_string(c, path) for c in allow_ifs):
        return True
    return any(rr.rule.condition is not None and _requires_string(rr.rule.condition, path) for rr in tr.deny_unless)


def _requires_string(c: ir.Condition, path: ir.Path) -> bool:
    """Whether ``c`` holds only when ``path`` holds a string."""
    if isinstance(c, ir.And):
        return any(_requires_string(x, path) for x in c.items)
    if isinstance(c, ir.Or):
        return all(_requires_string(x, path) for x in c.items)
    if not isinstance(c, ir.Compare) or c.path.root != path.root or c.path.steps != path.steps:
        return False
    if c.fns:
        return True
    if c.fn is not None:
        return False
    if c.op in ("starts_with", "ends_with", "regex"):
        return True
    if c.op in ("eq", "lt", "lte", "gt", "gte"):
        return isinstance(c.value, str)
    if c.op == "in":
        return isinstance(c.value, list) and bool(c.value) and all(isinstance(x, str) for x in c.value)
    return False


def _check_limit_widths(tool: str, limits: list[ResolvedRule], warn_once) -> None:  # type: ignore[no-untyped-def]
    """A limit that another one on the same tool always reaches first can never matter: the other
    has a wider (or the same) window and no more calls, in the same scope or a global one."""
    for a in limits:
        la = a.rule.limit
        assert la is not None
        for b in limits:
            lb = b.rule.limit
            assert lb is not None
            if a is b or la.per != lb.per and lb.per != "global":
                continue
            # amounts and calls do not compare, nor do calendar periods and sliding windows
            if la.of is not None or lb.of is not None or la.calendar is not None or lb.calendar is not None:
                continue
            if lb.window > la.window and lb.max <= la.max:
                warn_once(
                    f"limit {la.max} per {la.window}s can never be reached: the wider limit {lb.max} per "
                    f"{lb.window}s at line {lb.span.line} always stops `{tool}` first",
                    a.rule.span,
                )
            elif lb.window == la.window and (lb.max < la.max or lb.max == la.max and (lb.per != la.per or _before(b, a))):
                same = "the same limit" if lb.max == la.max and lb.per == la.per else f"the limit {lb.max} per {lb.window}s"
                warn_once(
                    f"limit {la.max} per {la.window}s can never be reached: {same} at line {lb.span.line} "
                    f"counts the same window and always stops `{tool}` first",
                    a.rule.span,
                )


def _before(a: ResolvedRule, b: ResolvedRule) -> bool:
    sa, sb = a.rule.span, b.rule.span
    return (sa.file, sa.line, sa.col) < (sb.file, sb.line, sb.col)


def _check_tests(prog: Program) -> None:
    near_miss = _near_miss_finder(prog)
    for test in prog.statements(ir.TestCase):
        for step in _walk(test.steps):
            if isinstance(step, ir.CallStep):
                near_miss(step)
            if isinstance(step, ir.CallStep) and step.code is not None:
                if step.code in DENY_CODES and step.effect != "deny":
                    prog.error(f"decision code `{step.code}` only comes with `deny`", step.span)
                if step.code == "default" and step.effect == "approval_required":
                    prog.error("decision code `default` only comes with `allow` or `deny`", step.span)
                if step.code == "allowed" and step.effect != "allow":
                    prog.error("decision code `allowed` only comes with `allow`", step.span)
                if step.code == "require" and step.effect == "allow":
                    prog.error("decision code `require` only comes with `deny` or `approval_required`", step.span)
            if isinstance(step, ir.AfterStep) and step.seconds < 1:
                prog.error("`after` must advance the clock by at least 1 second", step.span)


def _near_miss_finder(prog: Program) -> Callable[[ir.CallStep], None]:
    """A test that calls a misspelled tool passes against `default deny` and proves nothing
    (`call "cancle-task" -> deny default`). A step calling a name that no rule, glob or catalogue
    knows, close to a known one, is reported; a name far from all of them (`format-disk`, testing
    the default on purpose) is not. The "did you mean" searches share one budget, as above."""
    known = set(prog.catalogue)
    for rr in prog.rules:
        if rr.rule.selector.kind in ("tool", "list"):
            known.update(rr.rule.selector.names)
    candidates = sorted(known)
    globs = [glob_regex(s.pattern) for s in (rr.rule.selector for rr in prog.rules) if s.kind == "glob" and s.pattern]
    budget = HINT_COMPARISONS

    def near_miss(step: ir.CallStep) -> None:
        nonlocal budget
        if step.tool in known or any(g.fullmatch(step.tool) for g in globs) or budget < len(candidates):
            return
        budget -= len(candidates)
        close = difflib.get_close_matches(step.tool, candidates, n=1, cutoff=0.8)
        if close:
            prog.warn(
                f"this test calls `{step.tool}`, which no rule or catalogue knows: did you mean `{close[0]}`? "
                "(the call only tests the default)",
                step.span,
            )

    return near_miss


def _walk(steps: tuple[ir.Step, ...]) -> Iterator[ir.Step]:
    for s in steps:
        yield s
        if isinstance(s, ir.RepeatStep):
            yield from _walk(s.steps)
