"""Resolved program → compiled policy document (``dsl.policy.Policy``).

The mapping is the one the spec fixes (docs/language.md, "How rules combine"):

* ``hide`` → ``hide`` (``hide all tools`` → ``"*"``); a hidden tool appears nowhere else.
* an unconditional ``deny`` → ``action: deny`` (nothing else matters for that tool).
* ``deny … unless approved`` → ``action: require_approval``; any other ``deny … unless C``
  → one ``require`` entry; the tool's ``allow … if`` rules → one ``require`` entry (their OR),
  also when an unconditional ``allow`` selects the tool too.
* ``deny … if C`` → ``deny_if``; ``limit`` → ``limits`` (``all tools`` → ``all_tools.limits``).
* Under ``default deny`` only callable tools get an entry (and tools with an unconditional
  deny, so the agent sees the rule's reason); under ``default allow`` every mentioned tool.

Named ``compiler`` rather than ``compile`` so the builtin stays usable in this package.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from . import ir
from .checks import check_program
from .errors import Diagnostic, PlrError
from .lower import construct as _construct
from .policy import All, AllTools, AnyOf, Every, Leaf, Limit, Not, Policy, Some, Tool
from .resolve import (
    Program,
    Reader,
    ResolvedRule,
    ToolRules,
    all_tools_rules,
    load_program,
    program_default,
    program_package,
    read_text,
    rules_by_tool,
)


def condition_to_json(c: ir.Condition, reason: str | None = None, rule: str | None = None) -> Any:
    meta: dict[str, Any] = {}
    if reason is not None:
        meta["reason"] = reason
    if rule is not None:
        meta["rule"] = rule
    if isinstance(c, ir.Compare):
        fields: dict[str, Any] = {"path": c.path.text(), "op": c.op, **meta}
        if c.op not in ("exists", "missing"):
            fields["value"] = c.value
        chain = c.chain()
        if chain:
            fields["fn"] = chain[0] if len(chain) == 1 else list(chain)
        return _construct(Leaf, **fields)
    if isinstance(c, ir.And):
        if len(c.items) == 1:
            return condition_to_json(c.items[0], reason, rule)
        return _construct(All, all=[condition_to_json(x) for x in c.items], **_meta_defaults(meta))
    if isinstance(c, ir.Or):
        return _construct(AnyOf, any=[condition_to_json(x) for x in c.items], **_meta_defaults(meta))
    if isinstance(c, ir.Quantifier):
        model = Every if c.kind == "every" else Some
        fields = {c.kind: c.var, "in_": c.path.text(), "where": condition_to_json(c.body), **_meta_defaults(meta)}
        return _construct(model, **fields)
    return _construct(Not, not_=condition_to_json(c.item), **_meta_defaults(meta))


def _meta_defaults(meta: dict[str, Any]) -> dict[str, Any]:
    return {"reason": meta.get("reason"), "rule": meta.get("rule")}


def _limit(rr: ResolvedRule, prog: Program) -> Limit:
    lim = rr.rule.limit
    assert lim is not None
    cond = condition_to_json(rr.rule.condition) if rr.rule.condition is not None else None
    return _construct(
        Limit, max=lim.max, window=lim.window, per=lim.per, if_=cond, rule=prog.rule_name(rr.rule.span),
        of=lim.of.text() if lim.of is not None else None, calendar=lim.calendar, tz=lim.tz,
        refund="error" if lim.refund else None,
    )  # fmt: skip


def _any_of(rules: list[ResolvedRule], prog: Program) -> Any:
    """The OR of several rules' conditions, each keeping its reason and source (one as it is)."""
    conds = [condition_to_json(rr.rule.condition, rr.rule.reason, prog.rule_name(rr.rule.span)) for rr in rules]  # type: ignore[arg-type]
    if len(conds) == 1:
        return conds[0]
    return _construct(AnyOf, any=conds, reason=None, rule=prog.rule_name(rules[0].rule.span))


def _tool_entry(tr: ToolRules, prog: Program, grants: list[ResolvedRule] = ()) -> Tool:  # type: ignore[assignment]
    """A tool's entry; ``grants``: the `allow all tools if` rules, for a tool whose own rules do
    not make it callable (under `default deny` it is callable only when one of them holds)."""
    name = prog.rule_name
    if tr.deny:
        first = tr.deny[0].rule
        return Tool(action="deny", reason=first.reason, rule=name(first.span))
    action = "allow"
    reason = None
    rule = None
    require: list[Any] = []
    # A tool's `allow … if` rules restrict it whatever else allows it (spec: "if the tool has
    # `allow ... if` rules and none holds → deny"); an unconditional allow never lifts them.
    if tr.allow_if:
        require.append(_any_of(tr.allow_if, prog))
    elif grants and not tr.own_grant():
        require.append(_any_of(list(grants), prog))
    for rr in tr.deny_unless:
        cond = rr.rule.condition
        assert cond is not None
        if ir.is_approved(cond):
            if action != "require_approval":
                action, reason, rule = "require_approval", rr.rule.reason, name(rr.rule.span)
            continue
        require.append(condition_to_json(cond, rr.rule.reason, name(rr.rule.span)))
    deny_if = [condition_to_json(rr.rule.condition, rr.rule.reason, name(rr.rule.span)) for rr in tr.deny_if]  # type: ignore[arg-type]
    limits = [_limit(rr, prog) for rr in tr.limit]
    if rule is None and (tr.allow or tr.allow_if or grants):
        rule = name((tr.allow or tr.allow_if or list(grants))[0].rule.span)  # what made the tool callable
    return _construct(
        Tool,
        action=action,
        reason=reason,
        require=require,
        deny_if=deny_if,
        limits=limits,
        rule=rule,
    )


def compile_program(prog: Program) -> Policy:
    """Compile a program that has passed the checks (no errors) into a policy document."""
    default = program_default(prog)
    by_tool, hide_all, _limit_all = rules_by_tool(prog)
    every = all_tools_rules(prog)
    # `allow all tools if`: grants only matter under `default deny` (everything is granted otherwise)
    grants = every.allow_if if default == "deny" else []
    hidden = sorted(t for t, tr in by_tool.items() if tr.hide)
    hide = ["*"] if hide_all else hidden
    tools: dict[str, Tool] = {}
    for tool, tr in sorted(by_tool.items()):
        if tr.hide:
            continue
        if tr.deny or tr.callable(default, bool(grants)):
            tools[tool] = _tool_entry(tr, prog, grants)
    def conds(rules: list[ResolvedRule]) -> list[Any]:
        return [condition_to_json(rr.rule.condition, rr.rule.reason, prog.rule_name(rr.rule.span)) for rr in rules]  # type: ignore[arg-type]

    all_tools = _construct(
        AllTools,
        limits=[_limit(rr, prog) for rr in every.limit],
        deny_if=conds(every.deny_if),
        require=conds(every.deny_unless),
        allow_if=conds(grants),
    )
    policy = Policy(
        version="1",
        package=program_package(prog),
        default=default,  # type: ignore[arg-type]
        hide=hide,
        tools={},
    )
    # Built from checked IR: skip re-validating thousands of entries one by one.
    return policy.model_copy(
        update={"tools": tools, "all_tools": all_tools, **_descriptions(prog)}
    )


def _descriptions(prog: Program) -> dict[str, dict[str, str]]:
    """The `description "..."` of rules (by rule name) and catalogue entries (by tool name)."""
    rules = {prog.rule_name(rr.rule.span): rr.rule.description for rr in prog.rules if rr.rule.description is not None}
    tools = {t.name: t.description for entries in prog.servers.values() for t in entries if t.description is not None}
    return {"descriptions": rules, "tool_descriptions": tools}


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while compiling.

    Parse trees, IR and policy models are millions of small acyclic objects that all stay
    alive until the stage ends; CPython's collector rescans them again and again as they
    accumulate (more than half of a 20,000-rule compile). Reference counting still frees
    everything; cycles made meanwhile are collected when the collector runs next.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def build(
    paths: Iterable[str] = (), texts: dict[str, str] | None = None, reader: Reader = read_text
) -> tuple[Program, list[Diagnostic]]:
    """Load, resolve and check; return the program and every diagnostic (errors and warnings)."""
    with gc_paused():
        prog = load_program(list(paths), reader, texts)
        return prog, check_program(prog)


def compile_files(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    source: bool = True,
    reader: Reader = read_text,
    warnings: list[Diagnostic] | None = None,
) -> Policy:
    """Compile .plr files (with their imports) into one policy; raise PlrError on any error.

    One path (a ``str`` or ``Path``) is taken as one file, not as the characters of its name.
    ``warnings``, when given, receives the checks' warnings (the proxy prints them at start)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    elif isinstance(paths, (bytes, bytearray)):
        raise TypeError("compile_files takes a path or a list of paths, not bytes: decode the path first")
    paths = [os.fspath(p) for p in paths]
    if not all(isinstance(p, str) for p in paths):
        raise TypeError("compile_files takes a path or a list of paths (str or pathlib.Path)")
    with gc_paused():
        prog, diags = build(paths, reader=reader)
        if warnings is not None:
            warnings.extend(d for d in diags if d.severity == "warning")
        return _finish(prog, diags, source)


def compile_source(text: str, file: str = "<input>", *, source: bool = True) -> Policy:
    with gc_paused():
        prog, diags = build((), {file: text})
        return _finish(prog, diags, source)


def _finish(prog: Program, diags: list[Diagnostic], source: bool) -> Policy:
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        raise PlrError(errors)
    if not prog.modules:
        raise PlrError([Diagnostic("error", "no policy files to compile")])
    policy = compile_program(prog)
    return policy if source else policy.strip_source()
