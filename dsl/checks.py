"""Errors and warnings about a resolved program, all of them in one pass.

Errors stop compilation; warnings point at rules that cannot matter or look like typos.
Every message names the rule's place and says what to write instead.
"""

from __future__ import annotations

import difflib
import re
from typing import Callable, Iterator

from . import ir
from .arg_check import check_argument_names
from .policy import PATH_ROOTS
from .regex import compile_re2
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
    for rr in prog.rules:
        _check_rule(prog, rr)
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


# Value functions that give the same string when applied again: a literal that one of them
# changes is a string it never gives (`lower(...) == "Admin"`). Not `dirname` (`/a/b` -> `/a` -> `/`).
_IDEMPOTENT = {"lower", "upper", "trim", "normpath", "basename"}
_CASE_FNS = {"lower", "upper"}  # every part of what they give is given unchanged too (prefixes, ...)


def _unreachable(leaf: ir.Compare) -> str | None:
    """Why a comparison of a value function's result with a string it never gives never holds."""
    if leaf.fn is not None or not leaf.fns or leaf.fns[-1] not in _IDEMPOTENT:
        return None
    f = leaf.fns[-1]
    from .engine.functions import STRING_FUNCTIONS

    apply = STRING_FUNCTIONS[f]
    op, value = leaf.op, leaf.value
    if op == "eq" and isinstance(value, str) and apply(value) != value:
        return f"{f}(...) never gives {_quote(value)} (it gives {_quote(apply(value))} for it)"
    if op == "in" and isinstance(value, list) and value:
        if not any(isinstance(x, str) and apply(x) == x for x in value):
            return f"{f}(...) gives none of the strings of the list"
    if op in ("starts_with", "ends_with", "contains") and f in _CASE_FNS and isinstance(value, str):
        if apply(value) != value:
            return f"{f}(...) gives no text with {_quote(value)} in it (write {_quote(apply(value))})"
    return None


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


def _check_catalogue_names(prog: Program) -> None:
    """With a catalogue in scope a name it lacks is most likely a typo, and a typo fails open
    (`deny tool "write_fil"` under `default allow` governs nothing): an error. A tool the server
    has beyond its catalogue is declared in a `server` block of the author's own."""
    known = set(prog.catalogue)
    if not known:
        return
    candidates = sorted(known)
    hints: dict[str, str] = {}  # one difflib search per unknown name, not per rule naming it
    budget = HINT_COMPARISONS

    def hint_for(name: str) -> str:
        nonlocal budget
        if name not in hints:
            if budget < len(candidates):  # a missing catalogue, not typos: stop searching
                return ""
            budget -= len(candidates)
            close = difflib.get_close_matches(name, candidates, n=1)
            hints[name] = f"; did you mean `{close[0]}`?" if close else ""
        return hints[name]

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
            if _string_required(tr, leaf.path):
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
