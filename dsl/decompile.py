"""Compiled policy (JSON) → readable .plr text (``plr decompile``).

The inverse of ``compiler.py``: for every policy the compiler produces,
``compile_source(decompile(p), source=False)`` is ``p.strip_source()`` again. JSON says
nothing about which rule an entry came from, so each entry is written as the rule that
compiles to exactly that entry:

* ``action: deny`` → ``deny tool "x"``; ``action: require_approval`` → ``deny tool "x" unless
  approved`` (the tool's ``reason`` goes on that rule);
* ``require[0]`` → ``allow tool "x" if C`` (the compiler ORs a tool's allow-ifs into one
  entry placed first), one rule per item when it is an ``any`` without a reason, so each
  item keeps its reason; every later ``require`` entry → ``deny tool "x" unless C``. A bare
  ``approved`` entry there is written ``deny tool "x" unless { approved }``, because
  ``deny … unless approved`` is the approval action, not a ``require`` entry;
* ``deny_if`` → ``deny tool "x" if C``; ``limits`` → ``limit tool "x" …``; a tool that no
  such rule makes callable (or, under ``default allow``, mentions) gets ``allow tool "x"``;
* ``hide`` → ``hide tool(s)`` / ``hide all tools``; ``all_tools.limits`` → ``limit all tools``.

A top-level ``all`` becomes a ``{ ... }`` block. What plr cannot say (a reason on a nested
condition, a one-item or empty ``all``/``any``, an ``any`` whose first item is an ``any``,
a fractional window, a path step plr spells differently) is written as close as plr allows
and explained in a ``# note:`` comment, so the output always parses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from . import ir
from .errors import PlrError
from .format import format_module, format_source, string_text
from .policy import All, AnyOf, Every, Leaf, Limit, Not, Policy, Some, Tool, parse_path
from .validate import fn_chain
from .vocab import ANY_ROOT, PATH_ROOTS

__all__ = ["HEADER", "decompile"]

HEADER = "# decompiled from a plr/PolicyLayer policy"

_PACKAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)*")

PolicyCondition = Leaf | All | AnyOf | Not | Every | Some

# `X exists or X missing` holds for every call and `X exists and X missing` for none: the
# nearest plr spellings of JSON's empty `all` and empty `any`.
_ARGS = ir.Path(root="args")
ALWAYS: ir.Condition = ir.Or(items=(ir.Compare(path=_ARGS, op="exists"), ir.Compare(path=_ARGS, op="missing")))
NEVER: ir.Condition = ir.And(items=(ir.Compare(path=_ARGS, op="exists"), ir.Compare(path=_ARGS, op="missing")))


def decompile(policy: Policy) -> str:
    """Readable, canonically formatted .plr text that compiles back to ``policy``.

    Raises PlrError only for a policy nested deeper than plr's parser accepts (64 brackets).
    """
    try:
        return _Decompiler(policy).run()
    except RecursionError:
        raise PlrError.at("policy is nested too deeply to write as plr") from None


# --- paths --------------------------------------------------------------------------------


def ir_path(text: str) -> tuple[ir.Path, bool]:
    """A JSON ``path`` as an IR path, and whether plr prints it back exactly as ``text``.

    ``args.a b`` (a step the loader accepts after a dot) is printed ``args["a b"]``: the same
    value, spelled differently in the JSON.
    """
    try:
        root, steps = parse_path(text, ANY_ROOT)  # a name bound by every/some may start it
    except ValueError:  # only for a policy built without validation
        return ir.Path(root="args", steps=(text,)), False
    path = ir.Path(root=root, steps=steps)
    return path, path.text() == text


# --- the decompiler -----------------------------------------------------------------------


class _Decompiler:
    def __init__(self, policy: Policy) -> None:
        self.p = policy
        self.notes: list[str] = []  # for the group being built

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    # -- conditions --------------------------------------------------------------------------
    def condition(self, c: PolicyCondition, top: bool) -> ir.Condition:
        """IR that prints and re-compiles to ``c`` (``top``: an entry's own condition, whose
        ``reason`` the caller puts on the rule)."""
        if not top and c.reason is not None:
            self.note(f"the reason {string_text(c.reason)} of a nested condition cannot be written in plr; dropped")
        if isinstance(c, Leaf):
            return self.leaf(c)
        if isinstance(c, Not):
            return ir.Not(item=self.condition(c.not_, False))
        if isinstance(c, (Every, Some)):
            path, exact = ir_path(c.in_)
            if not exact:
                self.note(f"path {string_text(c.in_)} is written `{path.text()}`, the nearest plr spelling")
            # the block of a quantifier is written like a rule's `{ ... }` block: an `all` is its lines
            body = self.condition(c.where, True)
            if c.where.reason is not None:
                self.note(f"the reason {string_text(c.where.reason)} of a nested condition cannot be written in plr; dropped")
            items = body.items if isinstance(body, ir.And) and body.block else (body,)
            return ir.Quantifier(kind=c.kind, var=c.var, path=path, body=ir.And(items=items, block=True))  # type: ignore[arg-type]
        if isinstance(c, All):
            items = [self.condition(x, False) for x in c.all]
            if not items:
                self.note("an empty `all` (always true) is written `args exists or args missing`")
                return ALWAYS
            if len(items) == 1:
                self.note("a one-item `all` is written as its item (plr compiles `{ C }` to C)")
                return items[0]
            if not top and isinstance(items[0], ir.And):
                self.note("an `all` whose first item is an `all` is written as one `and` (plr flattens it)")
                items = [*items[0].items, *items[1:]]
            return ir.And(items=tuple(items), block=top)
        items = [self.condition(x, False) for x in c.any]
        if not items:
            self.note("an empty `any` (never true) is written `args exists and args missing`")
            return NEVER
        if len(items) == 1:
            self.note("a one-item `any` is written as its item")
            return items[0]
        if isinstance(items[0], ir.Or):
            self.note("an `any` whose first item is an `any` is written as one `or` (plr flattens it)")
            items = [*items[0].items, *items[1:]]
        return ir.Or(items=tuple(items))

    def leaf(self, c: Leaf) -> ir.Compare:
        path, exact = ir_path(c.path)
        if not exact:
            self.note(f"path {string_text(c.path)} is written `{path.text()}`, the nearest plr spelling")
        if path.root in PATH_ROOTS and path.root != "args" and path.steps:
            self.note(f"`{path.text()}`: plr check rejects steps after `{path.root}`")
        if c.op == "contains" and isinstance(c.value, list):
            self.note("`contains` with a list value: plr check rejects it (write `in [...]`)")
        chain = fn_chain(c.fn)
        fn = chain[-1] if chain and chain[-1] in ("count", "len") else None
        fns = chain[:-1] if fn is not None else chain
        if fn is not None and c.op in ("contains", "starts_with", "ends_with", "regex"):
            self.note(f"`{fn}(...) {c.op}`: plr check rejects a string test on a number")
        if c.op in ("exists", "missing"):
            return ir.Compare(path=path, op=c.op, fn=fn, fns=fns)
        return ir.Compare(path=path, op=c.op, value=c.value, fn=fn, fns=fns)

    # -- rules -------------------------------------------------------------------------------
    def limit(self, lim: Limit) -> ir.Limit:
        window = lim.window
        if isinstance(window, float) and not window.is_integer():
            whole = max(1, math.ceil(window))
            self.note(f"plr windows are whole seconds: {window}s is written {whole}s")
            window = whole
        of = ir_path(lim.of)[0] if lim.of is not None else None
        if lim.calendar is not None:
            window = ir.CALENDAR_SECONDS[lim.calendar]
        return ir.Limit(
            max=lim.max, window=int(window), per=lim.per, of=of, calendar=lim.calendar, tz=lim.tz,
            refund=lim.refund == "error",
        )  # fmt: skip

    def limit_rule(self, sel: ir.Selector, lim: Limit) -> ir.Rule:
        """``limit SEL to N per W [per SCOPE] [if C]``."""
        if lim.if_ is None:
            return ir.Rule(kind="limit", selector=sel, limit=self.limit(lim))
        cond = self.condition(lim.if_, True)
        if lim.if_.reason is not None:
            self.note(f"the reason {string_text(lim.if_.reason)} of a limit's condition cannot be written in plr; dropped")
        return ir.Rule(kind="limit", selector=sel, guard="if", condition=cond, limit=self.limit(lim))

    def all_tools(self) -> list[ir.Rule]:
        """The rules on `all tools`: grants, denials, requirements and limits of every call."""
        top = self.p.all_tools
        sel = ir.Selector(kind="all")
        rules: list[ir.Rule] = []
        if top.allow_if and self.p.default == "allow":
            self.note("all_tools.allow_if grants nothing under default allow (every tool is allowed already); dropped")
        elif top.allow_if:
            for c in top.allow_if:
                rules.append(ir.Rule(kind="allow", selector=sel, guard="if", condition=self.condition(c, True), reason=c.reason))
        for c in top.deny_if:
            rules.append(ir.Rule(kind="deny", selector=sel, guard="if", condition=self.condition(c, True), reason=c.reason))
        for c in top.require:
            rules.append(ir.Rule(kind="deny", selector=sel, guard="unless", condition=self.condition(c, True), reason=c.reason))
        rules += [self.limit_rule(sel, lim) for lim in top.limits]
        return rules

    def tool(self, name: str, t: Tool) -> list[ir.Rule]:
        sel = ir.Selector(kind="tool", names=(name,))

        def rule(kind: str, guard: str = "always", cond: ir.Condition | None = None, **kw: Any) -> ir.Rule:
            return ir.Rule(kind=kind, selector=sel, guard=guard, condition=cond, **kw)  # type: ignore[arg-type]

        if t.action == "deny":
            if t.require or t.deny_if or t.limits:
                self.note("a denied tool's require, deny_if and limits never matter; dropped")
            return [rule("deny", reason=t.reason)]
        if t.action == "allow" and t.reason is not None:
            self.note(f"a tool-level reason {string_text(t.reason)} without an approval action; dropped")
        rules: list[ir.Rule] = []
        require = list(t.require)
        if require and isinstance(require[0], AnyOf) and require[0].reason is None and len(require[0].any) >= 2:
            for item in require[0].any:  # the compiler ORs a tool's allow-ifs into this entry
                rules.append(rule("allow", "if", self.condition(item, True), reason=item.reason))
            require = require[1:]
        elif require:  # one allow-if compiles to exactly this entry, and reads best
            rules.append(rule("allow", "if", self.condition(require[0], True), reason=require[0].reason))
            require = require[1:]
        for entry in require:
            cond = self.condition(entry, True)
            if ir.is_approved(cond):  # `unless approved` would be the approval action
                cond = ir.And(items=(cond,), block=True)
            rules.append(rule("deny", "unless", cond, reason=entry.reason))
        if t.action == "require_approval":
            rules.append(rule("deny", "unless", _APPROVED, reason=t.reason))
        for entry in t.deny_if:
            rules.append(rule("deny", "if", self.condition(entry, True), reason=entry.reason))
        for lim in t.limits:
            rules.append(self.limit_rule(sel, lim))
        callable_by_rules = any(r.kind == "allow" or r.guard == "unless" for r in rules)
        if not callable_by_rules and (self.p.default == "deny" or not rules):
            rules.insert(0, rule("allow"))
        return rules

    # -- the document ------------------------------------------------------------------------
    def take_notes(self) -> list[str]:
        """The notes so far as comment lines (a line break would end the comment early)."""
        notes, self.notes = self.notes, []
        return ["# note: " + n.replace("\r", " ").replace("\n", " ") for n in notes]

    def run(self) -> str:
        p = self.p
        groups: list[_Group] = []
        head: list[ir.Statement] = []
        if p.package is not None:
            if _PACKAGE.fullmatch(p.package):
                head.append(ir.Package(name=p.package))
            else:
                self.note(f"package {string_text(p.package)} is not a plr name; omitted")
        groups.append(("head", self.take_notes(), head))
        groups.append(("default", [], [ir.Default(effect=p.default)]))

        hidden = set(p.hide)
        if "*" in hidden:
            if p.hide != ["*"]:
                self.note(f"hide {json.dumps(p.hide, ensure_ascii=False)} hides every tool: written `hide all tools`")
            groups.append(("hide", self.take_notes(), [_hide(ir.Selector(kind="all"))]))
            hidden = set()
        elif hidden:
            names = sorted(hidden)
            if names != p.hide:
                self.note("the hide list is written sorted and without repeats")
            sel = ir.Selector(kind="tool" if len(names) == 1 else "list", names=tuple(names))
            groups.append(("hide", self.take_notes(), [_hide(sel)]))

        for name, t in sorted(p.tools.items()):
            if name in hidden:
                self.note(f"tool {string_text(name)} is hidden, so its entry never matters; dropped")
                groups.append(("tool", self.take_notes(), []))
                continue
            rules = self.tool(name, t)
            groups.append(("tool", self.take_notes(), list(rules)))

        every = self.all_tools()
        if every or self.notes:
            groups.append(("all", self.take_notes(), list(every)))
        return format_source(_assemble(groups), "<decompiled>")


_APPROVED = ir.Compare(path=ir.Path(root="approved"), op="eq", value=True)


_Group = tuple[str, list[str], list[ir.Statement]]  # (kind, note comments, statements)


def _hide(sel: ir.Selector) -> ir.Rule:
    return ir.Rule(kind="hide", selector=sel)


def _assemble(groups: Sequence[_Group]) -> str:
    """Header, then each group after a blank line, except that tools written as one short
    rule each (``allow tool "a"``) stay together."""
    out: list[str] = [HEADER]
    prev_small = False
    for kind, notes, statements in groups:
        if not notes and not statements:
            continue
        text = format_module(ir.Module(file="<decompiled>", path="", statements=tuple(statements)))
        small = kind == "tool" and not notes and len(statements) == 1 and text.count("\n") == 1
        if not (small and prev_small):
            out.append("")
        out += notes
        if statements:
            out.append(text.rstrip("\n"))
        prev_small = small
    return "\n".join(out) + "\n"
