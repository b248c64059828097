"""Errors and warnings about a resolved program, all of them in one pass.

Errors stop compilation; warnings point at rules that cannot matter or look like typos.
Every message names the rule's place and says what to write instead.
"""

from __future__ import annotations

import difflib
from typing import Iterator

from . import ir
from .policy import PATH_ROOTS
from .regex import compile_re2
from .resolve import Program, ResolvedRule, program_default, rules_by_tool

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
    if not prog.errors:
        _check_interactions(prog)
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
    defaults = sorted(prog.statements(ir.Default), key=lambda d: not _is_stdlib(prog, d.span))
    for dup in defaults[1:]:
        first = defaults[0].span
        where = prog.rule_name(first) if _is_stdlib(prog, first) else f"{first.file}:{first.line}"
        hint = " (a stdlib rule pack sets the default: remove this line)" if _is_stdlib(prog, first) else ""
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


def _is_stdlib(prog: Program, span: ir.Span) -> bool:
    return prog.rule_name(span).startswith("stdlib/")


def _conditions(c: ir.Condition | None) -> Iterator[ir.Compare]:
    if c is None:
        return
    if isinstance(c, ir.Compare):
        yield c
    elif isinstance(c, (ir.And, ir.Or)):
        for item in c.items:
            yield from _conditions(item)
    else:
        yield from _conditions(c.item)


def _check_rule(prog: Program, rr: ResolvedRule) -> None:
    r = rr.rule
    sel = r.selector
    if sel.kind == "all" and r.kind in ("allow", "deny"):
        prog.error(
            f"`{r.kind} all tools` is not a rule: write `default {r.kind}` to decide for every tool", sel.span
        )
    if r.kind == "hide" and "*" in rr.tools:
        prog.error(
            'a tool named `*` cannot be hidden on its own: the policy\'s `"hide": ["*"]` means every tool '
            "(write `hide all tools` for that)",
            sel.span,
        )
    if r.limit is not None:
        if r.limit.max < 1:
            prog.error(f"a limit must allow at least 1 call, got {r.limit.max}", r.limit.span)
        if r.limit.window < 1:
            prog.error("a limit's window must be at least 1 second", r.span)
    for leaf in _conditions(r.condition):
        _check_leaf(prog, leaf)
    if r.reason is not None and r.kind in ("hide", "limit"):
        what = "a hidden tool is simply absent" if r.kind == "hide" else "a rate-limited call says which limit and when to retry"
        prog.warn(f"a `reason` on `{r.kind}` is not shown to the agent ({what}); remove it or put it in a comment", r.span)
    if r.kind == "deny" and r.guard == "if" and r.condition is not None:
        for leaf in _positive_negations(r.condition):
            path = leaf.path.text()
            prog.warn(
                f"`{path} {'!=' if leaf.op == 'neq' else 'not in'} ...` is false when `{path}` is missing, so this "
                f"deny does not fire for calls without it; write `not ({path} {'==' if leaf.op == 'neq' else 'in'} ...)` "
                f"to deny those too",
                leaf.span,
            )


def _positive_negations(c: ir.Condition, negated: bool = False) -> Iterator[ir.Compare]:
    """`!=` / `not in` leaves that are not under a `not` (where they would fail open)."""
    if isinstance(c, ir.Compare):
        if not negated and c.op in ("neq", "not_in") and c.fn != "count" and c.path.root != "tool":
            yield c
    elif isinstance(c, (ir.And, ir.Or)):
        for item in c.items:
            yield from _positive_negations(item, negated)
    else:
        yield from _positive_negations(c.item, not negated)


def _check_leaf(prog: Program, leaf: ir.Compare) -> None:
    root = leaf.path.root
    if root not in PATH_ROOTS:
        hint = difflib.get_close_matches(root, PATH_ROOTS, n=1)
        extra = f" (did you mean `{hint[0]}`?)" if hint else ""
        prog.error(
            f"unknown path root `{root}`{extra}: a path starts with args, identity, session, server, tool or approved",
            leaf.path.span,
        )
    elif root != "args" and leaf.path.steps:
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


def _check_interactions(prog: Program) -> None:
    default = program_default(prog)
    by_tool, _hide_all, limit_all = rules_by_tool(prog)
    known = set(prog.catalogue)
    reported: set[tuple[str, int, str]] = set()

    def warn_once(message: str, span: ir.Span) -> None:
        key = (span.file, span.line, message)
        if key not in reported:
            reported.add(key)
            prog.warn(message, span)

    if known:
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
                if name not in known:
                    warn_once(f"tool `{name}` is not in any declared catalogue{hint_for(name)}", rr.rule.selector.span)

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
        if not why or len(why) < len(rr.tools) or _is_stdlib(prog, rr.rule.span):
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
        elif not tr.callable(default):
            for rr in [*tr.deny_if, *tr.limit]:
                warn_once(
                    f"`{tool}` is denied by `default deny` (no allow rule selects it), so this rule can never matter",
                    rr.rule.span,
                )
        if tr.allow and tr.allow_if:
            for rr in tr.allow_if:
                warn_once(
                    f"this condition never matters for `{tool}`: it is allowed unconditionally by "
                    f"{prog.rule_name(tr.allow[0].rule.span)}",
                    rr.rule.span,
                )
        _check_limit_widths(tool, [*tr.limit, *limit_all], warn_once)


def _check_limit_widths(tool: str, limits: list[ResolvedRule], warn_once) -> None:  # type: ignore[no-untyped-def]
    for a in limits:
        la = a.rule.limit
        assert la is not None
        for b in limits:
            lb = b.rule.limit
            assert lb is not None
            if a is b or la.per != lb.per and lb.per != "global":
                continue
            if lb.window > la.window and lb.max <= la.max:
                warn_once(
                    f"limit {la.max} per {la.window}s can never be reached: the wider limit {lb.max} per "
                    f"{lb.window}s at line {lb.span.line} always stops `{tool}` first",
                    a.rule.span,
                )


def _check_tests(prog: Program) -> None:
    for test in prog.statements(ir.TestCase):
        for step in _walk(test.steps):
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


def _walk(steps: tuple[ir.Step, ...]) -> Iterator[ir.Step]:
    for s in steps:
        yield s
        if isinstance(s, ir.RepeatStep):
            yield from _walk(s.steps)
