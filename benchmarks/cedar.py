"""A compiled plr policy translated to Cedar, for the ``cedarpy.is_authorized`` baseline.

The translation works on the compiled policy document (``dsl.policy.Policy``), so the Cedar
side decides from exactly the rules plr decides from:

* request: ``principal = Agent::"<identity>"``, ``action = Action::"call"``,
  ``resource = Tool::"<tool name>"``, ``context = {tool, args, identity, session, server,
  approved}`` (absent values are left out, as plr treats them as missing);
* a governed tool → one ``permit`` whose ``when`` is the AND of its ``require`` conditions
  (``require_approval`` adds ``context.approved == true``), one ``forbid`` per ``deny_if``
  condition, and a ``forbid`` for ``action: deny``;
* ``hide`` → ``forbid``; ``default allow`` → a ``permit`` for every tool the policy does not
  govern (``default deny`` is Cedar's own default);
* a leaf ``path op value`` → ``(<has-guards> && <expr>)``: plr's missing paths make a
  comparison false, Cedar needs ``has`` to say the same.

Where Cedar differs (documented in docs/performance.md):

* ``matches`` (RE2) → ``like``, which has only the ``*`` wildcard: only regexes of the form
  ``^literal(.*literal)*$`` translate (anchors optional); anything else is refused.
* Limits are not expressible (Cedar is stateless): the Cedar side does strictly less work.
* Cedar raises a type error where plr's strict comparisons return false (``"5" > 1``); an
  erroring policy is skipped, which for a lone ``permit``/``forbid`` leaf is the same decision.
* ``count(...)``/``len(...)``, list indexes and non-integer numbers have no Cedar equivalent
  and are refused (the benchmark policies do not use them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dsl.policy import All, AnyOf, Leaf, Not, Policy, parse_path

Condition = Leaf | All | AnyOf | Not


class NotTranslatable(ValueError):
    """A plr construct with no Cedar equivalent."""


@dataclass
class CedarPolicy:
    text: str
    statements: int
    not_expressed: list[str] = field(default_factory=list)  # e.g. limits, in words


def cedar_string(s: str) -> str:
    """A Cedar string literal (Rust-style escapes)."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _like_literal(s: str) -> str:
    """Text for inside a ``like`` pattern: ``*`` is the wildcard, so a literal star is ``\\*``."""
    return cedar_string(s)[1:-1].replace("*", "\\*")


_REGEX_META = set(".^$*+?()[]{}|\\")


def regex_to_like(pattern: str) -> str:
    """``(?s)^/etc/.*\\.conf$`` → ``"/etc/*.conf"``; NotTranslatable for anything ``like`` cannot
    say. A leading ``(?s)`` is what makes ``.*`` match a newline, as ``*`` in ``like`` does."""
    pattern = pattern.removeprefix("(?s)")
    anchored_start = pattern.startswith("^")
    body = pattern[1:] if anchored_start else pattern
    anchored_end = body.endswith("$") and not body.endswith("\\$")
    if anchored_end:
        body = body[:-1]
    pieces: list[str] = []
    literal: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and not body[i + 1].isalnum():
            literal.append(body[i + 1])
            i += 2
        elif body.startswith(".*", i):
            pieces.append(_like_literal("".join(literal)))
            literal = []
            pieces.append("*")
            i += 2
        elif ch in _REGEX_META:
            raise NotTranslatable(f"regex {pattern!r} has no `like` equivalent (at {body[i:]!r})")
        else:
            literal.append(ch)
            i += 1
    pieces.append(_like_literal("".join(literal)))
    like = "".join(pieces)
    if not anchored_start and not like.startswith("*"):
        like = "*" + like
    if not anchored_end and not like.endswith("*"):
        like += "*"
    return '"' + like + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if not -(2**63) <= v < 2**63:
            raise NotTranslatable(f"{v} does not fit Cedar's 64-bit Long")
        return str(v)
    if isinstance(v, str):
        return cedar_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise NotTranslatable(f"value {v!r} has no Cedar literal (Cedar has no null or float)")


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CEDAR_RESERVED = {"true", "false", "if", "then", "else", "in", "like", "has", "is", "__cedar"}


def _access(steps: tuple[str | int, ...], base: str) -> tuple[str, list[str]]:
    """``context.args`` + ("a", "b c") → the expression and the ``has`` guards that protect it."""
    expr = base
    guards: list[str] = []
    for s in steps:
        if isinstance(s, int):
            raise NotTranslatable("list indexes have no Cedar equivalent (sets are unordered)")
        if _IDENT.match(s) and s not in _CEDAR_RESERVED:
            guards.append(f"{expr} has {s}")
            expr = f"{expr}.{s}"
        else:
            guards.append(f"{expr} has {cedar_string(s)}")
            expr = f"{expr}[{cedar_string(s)}]"
    return expr, guards


def _leaf(c: Leaf) -> str:
    if c.fn is not None:
        raise NotTranslatable(f"{c.fn}(...) has no Cedar equivalent")
    root, steps = parse_path(c.path)
    expr, guards = _access(steps, f"context.{root}")
    guards.insert(0, f"context has {root}")
    present = " && ".join(guards)
    op, v = c.op, c.value
    if op == "exists":
        return f"({present})"
    if op == "missing":
        return f"!({present})"
    if op in ("eq", "neq"):
        test = f"{expr} {'==' if op == 'eq' else '!='} {_value(v)}"
    elif op in ("lt", "lte", "gt", "gte"):
        if not isinstance(v, int) or isinstance(v, bool):
            raise NotTranslatable("Cedar compares only integers (Long)")
        test = f"{expr} {dict(lt='<', lte='<=', gt='>', gte='>=')[op]} {_value(v)}"
    elif op in ("in", "not_in"):
        test = f"{'!' if op == 'not_in' else ''}{_value(v)}.contains({expr})"
    elif op == "contains":
        test = f"{expr} like \"*{_like_literal(v)}*\"" if isinstance(v, str) else f"{expr}.contains({_value(v)})"
    elif op == "starts_with":
        test = f'{expr} like "{_like_literal(v)}*"'
    elif op == "ends_with":
        test = f'{expr} like "*{_like_literal(v)}"'
    elif op == "regex":
        test = f"{expr} like {regex_to_like(v)}"
    else:
        raise NotTranslatable(f"op {op}")
    return f"({present} && {test})"


def condition(c: Condition) -> str:
    """One plr condition as a Cedar boolean expression."""
    if isinstance(c, Leaf):
        return _leaf(c)
    if isinstance(c, All):
        return "(" + " && ".join(condition(x) for x in c.all) + ")"
    if isinstance(c, AnyOf):
        return "(" + " || ".join(condition(x) for x in c.any) + ")"
    return f"!{condition(c.not_)}"


def _scope(tool: str | None) -> str:
    resource = "resource" if tool is None else f"resource == Tool::{cedar_string(tool)}"
    return f'principal, action == Action::"call", {resource}'


def translate(policy: Policy) -> CedarPolicy:
    """The Cedar policy set equivalent to ``policy`` (see the module docstring for the limits)."""
    out: list[str] = []
    not_expressed: list[str] = []
    n = 0

    def emit(effect: str, tool: str | None, when: list[str], note: str) -> None:
        nonlocal n
        n += 1
        body = f"{effect}({_scope(tool)})"
        if when:
            body += " when { " + " && ".join(when) + " }"
        out.append(f"@id({cedar_string(note)})\n{body};")

    hidden = set(policy.hide)
    if "*" in hidden:
        emit("forbid", None, [], "hide *")
    for name in sorted(hidden - {"*"}):
        emit("forbid", name, [], f"hide {name}")
    if policy.default == "allow":
        governed = ", ".join(f"Tool::{cedar_string(t)}" for t in sorted(policy.tools))
        n += 1
        unless = f" unless {{ resource in [{governed}] }}" if governed else ""
        out.append(f'@id("default allow")\npermit({_scope(None)}){unless};')
    for lim in policy.all_tools.limits:
        not_expressed.append(f"all tools: at most {lim.max} calls per {lim.window} s per {lim.per}")
    for name, t in sorted(policy.tools.items()):
        if name in hidden:
            continue
        if t.action == "deny":
            emit("forbid", name, [], f"{name}: deny")
            continue
        when = [condition(c) for c in t.require]
        if t.action == "require_approval":
            when.append("(context has approved && context.approved == true)")
        emit("permit", name, when, f"{name}: allow")
        for i, c in enumerate(t.deny_if):
            emit("forbid", name, [condition(c)], f"{name}: deny_if[{i}]")
        for lim in t.limits:
            not_expressed.append(f"{name}: at most {lim.max} calls per {lim.window} s per {lim.per}")
    return CedarPolicy(text="\n\n".join(out) + "\n", statements=n, not_expressed=not_expressed)


def request(
    tool: str,
    args: dict[str, Any] | None = None,
    *,
    identity: str | None = None,
    session: str | None = None,
    server: str | None = None,
    approved: bool = False,
) -> dict[str, Any]:
    """The Cedar request for one plr call (structured entity ids: no surface-syntax parsing)."""
    context: dict[str, Any] = {"tool": tool, "args": {} if args is None else args, "approved": approved}
    if identity is not None:
        context["identity"] = identity
    if session is not None:
        context["session"] = session
    if server is not None:
        context["server"] = server
    return {
        "principal": {"type": "Agent", "id": identity or "anonymous"},
        "action": {"type": "Action", "id": "call"},
        "resource": {"type": "Tool", "id": tool},
        "context": context,
    }
