"""An Intercept policy (PolicyLayer's open-source proxy, YAML or JSON) → readable .plr text.

Intercept's format (its POLICY.md): ``version: "1"``, ``description``, ``default``, ``hide``,
``tools.<name or "*">.rules[]`` with ``name``, ``action`` (evaluate | deny), ``conditions[]``
(``{path, op, value}``, all must hold), ``on_deny``, ``rate_limit: "N/window"`` and ``state``
(``{counter, window, increment, increment_from}``). Each construct becomes the plr rule that
decides as Intercept does:

* a listed tool is callable (``allow tool "x"``, which matters under ``default deny``);
* ``action: deny`` → ``deny tool "x"``; an ``evaluate`` rule's argument conditions →
  ``deny tool "x" unless { … }`` (a missing argument fails the condition, as in Intercept);
  rules on ``"*"`` → ``… all tools``; ``on_deny`` → ``reason``; ``name`` → ``description``;
* a counter (``rate_limit``, or ``state`` with an ``lt``/``lte`` condition on its own counter)
  → ``limit … per calendar WINDOW per global refund on error``: Intercept's counters are per
  store (shared by every session), its windows are calendar-aligned in UTC, ``lt N`` allows
  N−1, and a call the upstream answers with an error is rolled back; ``increment_from`` →
  a spend cap (``to N of args.amount``), ``increment: k`` → ``floor(N/k)`` calls.

What plr cannot say (a condition reading another rule's counter, a counter with no limit, an
unknown key or operator) is written as a ``#`` comment and reported as a warning naming what
was not carried over and why: nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .. import ir
from ..format import literal_text, string_text
from ..vocab import has_glob_chars

__all__ = ["ImportResult", "import_intercept", "parse_intercept"]

_TOP_KEYS = {"version", "description", "default", "hide", "tools"}
_RULE_KEYS = {"name", "action", "rate_limit", "conditions", "on_deny", "state"}
_STATE_KEYS = {"counter", "window", "increment", "increment_from"}
_WINDOWS = {"minute", "hour", "day"}
_CMP = {"eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_PACKAGE_BAD = re.compile(r"[^A-Za-z0-9_]+")


@dataclass
class ImportResult:
    """The .plr text and a warning per construct not carried over (each also a comment)."""

    text: str
    warnings: list[str] = field(default_factory=list)


class ImportError_(ValueError):
    """The input is not an Intercept policy plr can read (the message says why)."""


def _strict_loader() -> Any:
    """YAML's safe loader refusing a key repeated in one mapping: a later `delete_repo: {}` would
    otherwise undo an earlier deny without a word (as a repeated key in a JSON policy would)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the constructor below says so
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {json.dumps(key, default=str)} is written twice in one mapping", key_node.start_mark
                )
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def parse_intercept(text: str) -> dict[str, Any]:
    """The document of an Intercept policy file (YAML, or JSON which YAML reads too)."""
    import yaml

    try:
        doc = yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ImportError_(f"not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(doc, dict):
        raise ImportError_("an Intercept policy is a mapping with version, default and tools")
    return doc


def import_intercept(text: str, name: str = "intercept") -> ImportResult:
    """``text`` (an Intercept policy) as .plr text; ValueError if it is not one."""
    return _Importer(parse_intercept(text), name).run()


def _path(dotted: str) -> str:
    parts = dotted.split(".")
    return ir.Path(root=parts[0], steps=tuple(parts[1:])).text()


def _sel(tool: str) -> str:
    return "all tools" if tool == "*" else f"tool {string_text(tool)}"


def _literal_name(name: str, where: str) -> None:
    """Refuse a tool name with `*` or `?` (but `*` alone, every tool): Intercept matches names
    exactly, so such an entry governs no real tool there either, which is surely not what its
    author meant; plr refuses it rather than import a rule that governs nothing."""
    if name != "*" and has_glob_chars(name):
        raise ImportError_(
            f"{where}: the tool name {json.dumps(name)} has `*` or `?`: Intercept matches tool names exactly, "
            "so it governs no real tool; name the tools one by one, or after the import write a condition on "
            "every call, such as `deny all tools if tool starts_with \"delete_\"`"
        )


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return v
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


class _Importer:
    def __init__(self, doc: dict[str, Any], name: str) -> None:
        self.doc = doc
        self.name = name
        self.out: list[str] = []
        self.warnings: list[str] = []

    def warn(self, where: str, what: str) -> None:
        """A construct not carried over: a warning, and the same words as a comment."""
        self.warnings.append(f"{where}: {what}")
        self.out.append(f"# not carried over ({where}): {what}")

    def run(self) -> ImportResult:
        doc = self.doc
        version = doc.get("version")
        if str(version) != "1":
            raise ImportError_(f'unsupported Intercept policy version {json.dumps(version)}: plr reads version "1"')
        package = _PACKAGE_BAD.sub("_", self.name).strip("_") or "imported"
        if not package[0].isalpha():
            package = "p_" + package
        self.out.append("# imported from an Intercept policy by `plr import intercept`")
        if isinstance(doc.get("description"), str):
            self.out.append(f"# {doc['description']}")
        self.out += [f"package {package}", ""]
        for key in sorted(set(doc) - _TOP_KEYS, key=str):
            self.warn(str(key), "an unknown top-level key; Intercept ignores it and so does plr")
        default = doc.get("default", "allow")
        if default not in ("allow", "deny"):
            raise ImportError_(f'default must be "allow" or "deny", got {json.dumps(default)}')
        self.default = default
        self.out += [f"default {default}", ""]
        hide = doc.get("hide") or []
        if not isinstance(hide, list):
            raise ImportError_("hide must be a list of tool names")
        for h in hide:
            _literal_name(str(h), "hide")
            self.out.append("hide all tools" if h == "*" else f"hide tool {string_text(str(h))}")
        if hide:
            self.out.append("")
        tools = doc.get("tools") or {}
        if not isinstance(tools, dict):
            raise ImportError_("tools must map tool names to {rules: [...]}")
        for tool in sorted((t for t in tools if t != "*"), key=str):
            _literal_name(str(tool), f"tools.{tool}")
            self.tool(str(tool), tools[tool])
        if "*" in tools:
            self.tool("*", tools["*"])
        return ImportResult("\n".join(self.out).rstrip() + "\n", self.warnings)

    def tool(self, tool: str, entry: Any) -> None:
        where = f"tools.{tool}"
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise ImportError_(f"{where} must be a mapping with rules: [...]")
        for key in sorted(set(entry) - {"rules"}, key=str):
            self.warn(f"{where}.{key}", "an unknown key of a tool; Intercept ignores it and so does plr")
        rules = entry.get("rules") or []
        if not isinstance(rules, list):
            raise ImportError_(f"{where}.rules must be a list")
        denied = any(isinstance(r, dict) and r.get("action") == "deny" for r in rules)
        if tool != "*" and self.default == "deny" and not denied:
            self.out.append(f"allow {_sel(tool)}")  # a listed tool is callable under `default deny`
        for i, rule in enumerate(rules):
            self.rule(tool, rule, f"{where}.rules[{i}]")
        self.out.append("")

    def rule(self, tool: str, rule: Any, where: str) -> None:
        if not isinstance(rule, dict):
            raise ImportError_(f"{where} must be a mapping")
        for key in sorted(set(rule) - _RULE_KEYS, key=str):
            self.warn(f"{where}.{key}", "an unknown key of a rule; Intercept ignores it and so does plr")
        name = str(rule.get("name") or "")
        action = rule.get("action") or "evaluate"
        on_deny = rule.get("on_deny")
        reason = str(on_deny) if on_deny else f'Denied by rule "{name}"'
        described = f"description {string_text(name)}" if name else ""
        conditions = list(rule.get("conditions") or [])
        state = rule.get("state")
        rate = rule.get("rate_limit")
        if action == "deny":
            if conditions or state or rate:
                self.warn(where, "a deny rule's conditions, state and rate_limit (Intercept refuses such a rule)")
            self.emit(f"deny {_sel(tool)}", [], reason, described)
            return
        if action not in ("evaluate", "require_approval"):
            self.warn(f"{where}.action", f"unknown action {json.dumps(action)}: the rule is not carried over")
            return
        if action == "require_approval":  # Intercept's later versions: a human approves
            self.emit(f"deny {_sel(tool)} unless approved", [], reason, described)
            if conditions or state or rate:
                self.warn(where, "conditions on require_approval: plr asks for approval on every call of the tool")
            return
        if rate:
            if conditions or state:
                self.warn(where, "rate_limit together with conditions or state (Intercept refuses such a rule)")
                return
            m = re.fullmatch(r"\s*(\d+)\s*/\s*(minute|hour|day)\s*", str(rate))
            if m is None or int(m.group(1)) < 1:
                self.warn(f"{where}.rate_limit", f"{rate!r} is not N/minute|hour|day: not carried over")
                return
            state = {"counter": f"_rate_{m.group(2)}", "window": m.group(2)}
            scope = "_global" if tool == "*" else tool
            conditions = [{"path": f"state.{scope}._rate_{m.group(2)}", "op": "lte", "value": int(m.group(1))}]
            if not on_deny:
                reason = f"Rate limit of {m.group(1)} per {m.group(2)} reached. Try again later."
        own_counter = None
        if state is not None:
            own_counter = self.state_path(tool, state, where)
        args_conds: list[str] = []
        limit_value: tuple[str, float] | None = None
        for j, c in enumerate(conditions):
            cw = f"{where}.conditions[{j}]"
            if not isinstance(c, dict):
                self.warn(cw, "not a {path, op, value} mapping: not carried over (Intercept refuses it)")
                continue
            for key in sorted(set(c) - {"path", "op", "value"}, key=str):
                self.warn(f"{cw}.{key}", "an unknown key of a condition; Intercept ignores it and so does plr")
            path, op = str(c.get("path", "")), c.get("op")
            if path.startswith("state."):
                if own_counter is not None and path == own_counter and op in ("lt", "lte"):
                    n = _number(c.get("value"))
                    if n is None:
                        self.warn(cw, f"a counter limit that is not a number ({c.get('value')!r}): not carried over")
                    else:
                        limit_value = (op, n)
                    continue
                self.warn(
                    cw,
                    f"`{path} {op} {c.get('value')!r}` reads a counter; plr limits count their own calls "
                    "(only `lt`/`lte` on the rule's own state counter becomes a limit)",
                )
                continue
            text = self.condition(path, op, c.get("value"), cw)
            if text is not None:
                args_conds.append(text)
        if args_conds:
            self.emit(f"deny {_sel(tool)} unless", args_conds, reason, described)
        if state is not None and own_counter is not None:
            self.counter(tool, state, limit_value, where, name, reason)
        elif not args_conds and state is None:
            self.warn(where, "an evaluate rule without conditions: Intercept refuses it; nothing to carry over")

    def state_path(self, tool: str, state: Any, where: str) -> str | None:
        if not isinstance(state, dict) or not state.get("counter"):
            self.warn(f"{where}.state", "a state block without a counter: not carried over")
            return None
        for key in sorted(set(state) - _STATE_KEYS, key=str):
            self.warn(f"{where}.state.{key}", "an unknown key of a state block; Intercept ignores it and so does plr")
        scope = "_global" if tool == "*" else tool
        return f"state.{scope}.{state['counter']}"

    def counter(
        self, tool: str, state: dict[str, Any], limit: tuple[str, float] | None, where: str, name: str, reason: str
    ) -> None:
        window = state.get("window")
        if window not in _WINDOWS:
            self.warn(f"{where}.state.window", f"window {window!r} is not minute, hour or day: not carried over")
            return
        if limit is None:
            self.warn(
                f"{where}.state",
                f"counter `{state['counter']}` has no `lt`/`lte` condition on itself, so Intercept counts it but "
                "never limits it; plr has nothing to enforce",
            )
            return
        op, n = limit
        cap = math.floor(n) - 1 if op == "lt" else math.floor(n)  # Intercept: int64(value) (- 1 for lt)
        of = state.get("increment_from")
        inc = state.get("increment", 1) or 1
        head = f"limit {_sel(tool)} to "
        if of:
            if not isinstance(of, str) or not of.startswith("args."):
                self.warn(f"{where}.state.increment_from", f"{of!r} is not an args.… path: not carried over")
                return
            if cap <= 0:
                self.warn(where, f"a spend cap of {cap}: Intercept denies every call; written as a deny")
                self.emit(f"deny {_sel(tool)}", [], reason, f"description {string_text(name)}" if name else "")
                return
            head += f"{cap} of {_path(of)}"
        else:
            if not isinstance(inc, int) or isinstance(inc, bool) or inc < 1:
                self.warn(f"{where}.state.increment", f"{inc!r} is not a whole number >= 1: not carried over")
                return
            calls = cap // inc
            if calls < 1:
                self.warn(where, f"a limit of {cap} with increment {inc} lets no call through: written as a deny")
                self.emit(f"deny {_sel(tool)}", [], reason, f"description {string_text(name)}" if name else "")
                return
            head += str(calls)
            if inc != 1:
                self.out.append(f"# increment {inc} per call against {cap}: at most {calls} calls")
        head += f" per calendar {window} per global refund on error"
        self.out.append(f"# Intercept's deny message: {reason}")
        self.out.append(head)
        if name:
            self.out.append(f"    description {string_text(name)}")

    def condition(self, path: str, op: Any, value: Any, where: str) -> str | None:
        if not path.startswith("args.") or any(not p for p in path.split(".")):
            self.warn(where, f"path {path!r} is not args.… or state.…: not carried over (Intercept refuses it)")
            return None
        p = _path(path)
        if op in _CMP:
            if op in ("lt", "lte", "gt", "gte") and _number(value) is None:
                self.warn(where, f"`{op}` needs a number, got {value!r}: not carried over (Intercept refuses it)")
                return None
            if op in ("lt", "lte", "gt", "gte"):
                value = _number(value)
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
            text = f"{p} {_CMP[op]} {literal_text(value)}"
            return f"{p} exists and {text}" if op == "neq" else text  # missing fails every op but exists
        if op in ("in", "not_in"):
            if not isinstance(value, list):
                self.warn(where, f"`{op}` needs a list, got {value!r}: not carried over (Intercept refuses it)")
                return None
            text = f"{p} {'in' if op == 'in' else 'not in'} {literal_text(value)}"
            return text if op == "in" else f"{p} exists and {text}"
        if op == "regex":
            from ..regex import compile_re2

            try:
                compile_re2(str(value))
            except Exception as e:  # noqa: BLE001 - re.error / ValueError: say which
                self.warn(where, f"regex {value!r} does not compile ({e}): not carried over (Intercept refuses it)")
                return None
            return f"{p} matches {string_text(str(value))}"
        if op == "contains":
            return f"{p} contains {literal_text(value)}"
        if op == "exists":
            if not isinstance(value, bool):
                self.warn(where, f"`exists` needs true or false, got {value!r}: not carried over")
                return None
            return f"{p} exists" if value else f"{p} missing"
        self.warn(where, f"unknown operator {op!r}: not carried over (Intercept refuses it)")
        return None

    def emit(self, head: str, conds: list[str], reason: str, described: str) -> None:
        if len(conds) == 1:
            self.out.append(f"{head} {conds[0]}")
        elif conds:
            self.out.append(f"{head} {{")
            self.out += [f"    {c}" for c in conds]
            self.out.append("}")
        else:
            self.out.append(head)
        self.out.append(f"    reason {string_text(reason)}")
        if described:
            self.out.append(f"    {described}")
