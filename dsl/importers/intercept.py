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
from ..errors import Diagnostic, PlrError, line_of
from ..format import literal_text, string_text
from ..vocab import has_glob_chars

__all__ = ["ImportError_", "ImportResult", "import_intercept", "parse_intercept"]

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


class ImportError_(PlrError, ValueError):
    """The input is not an Intercept policy plr can read: a ``PlrError`` whose diagnostic says
    why and, when the YAML node is known, where (``file:line:col`` and the offending line with a
    caret, as every other error of plr). A ``ValueError`` too, as it always was."""


def _strict_loader() -> Any:
    """YAML's safe loader refusing a key repeated in one mapping: a later `delete_repo: {}` would
    otherwise undo an earlier deny without a word (as a repeated key in a JSON policy would)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
                seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the constructor below says so
                continue
            if first is not None:
                e = yaml.constructor.ConstructorError(
                    None, None, f"the key {json.dumps(key, default=str)} is written twice in one mapping", key_node.start_mark
                )
                e.repeated = (first, key_node)  # type: ignore[attr-defined]  # both places, for the diagnostic
                raise e
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def _place(text: str, index: int) -> tuple[int, int]:
    """The 1-based line and column of the character ``index`` of ``text``, counted as plr counts
    them (lines end at ``\n`` only, as ``errors.line_of`` splits them; YAML also breaks lines at
    ``\r``, U+0085, U+2028 and U+2029, so its own mark's line could name another line)."""
    index = max(0, min(index, len(text)))
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def _located(message: str, file: str, text: str, start: int | None = None, end: int | None = None) -> ImportError_:
    """An ``ImportError_`` at the character ``start`` of ``text`` (none: the file as a whole),
    the caret as wide as ``start``..``end`` when both are on one line."""
    if start is None:
        return ImportError_([Diagnostic("error", message, file)])
    line, col = _place(text, start)
    width = 1
    if end is not None and end > start and "\n" not in text[start:end]:
        width = end - start
    return ImportError_([Diagnostic("error", message, file, line, col, line_of(text, line), width)])


def _yaml_error(e: Exception, file: str, text: str) -> ImportError_:
    """A YAML reader's, scanner's, parser's or constructor's error as a located diagnostic."""
    repeated = getattr(e, "repeated", None)
    if repeated is not None:
        first, again = repeated
        line, col = _place(text, first.start_mark.index)
        return _located(
            f"{getattr(e, 'problem', None) or e} (first at line {line}, column {col}): YAML keeps only the last one, "
            "so it would silently replace the first; merge the two into one",
            file, text, again.start_mark.index, again.end_mark.index,
        )  # fmt: skip
    mark = getattr(e, "problem_mark", None)
    if mark is None and isinstance(getattr(e, "position", None), int):  # a ReaderError: a character YAML refuses
        import yaml

        line, col = _place(text, e.position)  # type: ignore[attr-defined]
        reason = str(e).split("\n", 1)[0]
        # the offending character (and any other on its line) is not shown as is: it may be a
        # terminal's control character
        shown = yaml.reader.Reader.NON_PRINTABLE.sub("\ufffd", line_of(text, line) or "")
        return ImportError_([Diagnostic("error", f"not valid YAML: {reason}", file, line, col, shown)])
    if mark is None:
        return _located(f"not valid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file, text)
    message = f"not valid YAML: {getattr(e, 'problem', None) or e}"
    context, context_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context and context_mark is not None and context_mark.index != mark.index:
        line, col = _place(text, context_mark.index)
        message += f" ({context} at line {line}, column {col})"
    elif context:
        message += f" ({context})"
    return _located(message, file, text, mark.index)


def _load(text: str, file: str) -> tuple[Any, Any]:
    """The document of ``text`` and its YAML node (to locate a later error), or ImportError_."""
    import yaml

    loader = None
    try:
        loader = _strict_loader()(text)  # refuses a character YAML does not allow (ReaderError)
        node = loader.get_single_node()
        doc = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise _yaml_error(e, file, text) from None
    except RecursionError:
        raise _located("the document is nested too deeply to import", file, text) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(doc, dict):
        message = "an Intercept policy is a mapping with version, default and tools"
        if doc is None:
            raise _located(f"{message}; this file has none (its YAML document is empty)", file, text) from None
        raise _located(
            f"{message}, not {_kind(doc)}", file, text, node.start_mark.index, node.end_mark.index
        ) from None
    return doc, node


def _kind(value: Any) -> str:
    """What a YAML value is, in a message: "a list", "a string", …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def parse_intercept(text: str, file: str = "<input>") -> dict[str, Any]:
    """The document of an Intercept policy file (YAML, or JSON which YAML reads too); an
    ``ImportError_`` located in ``file`` (a name for the messages) if it is not a mapping."""
    return _load(text, file)[0]  # type: ignore[no-any-return]


def import_intercept(text: str, name: str = "intercept", file: str = "<input>") -> ImportResult:
    """``text`` (an Intercept policy) as .plr text; ``ImportError_`` (a located ``PlrError`` and a
    ``ValueError``, ``file`` naming the input in its diagnostic) if it is not one."""
    doc, node = _load(text, file)
    try:
        return _Importer(doc, name, _Source(text, file, node)).run()
    except RecursionError:
        raise _located("the document is nested too deeply to import", file, text) from None


@dataclass
class _Source:
    """The text and YAML node of the document, to place an error on the node it is about."""

    text: str
    file: str
    root: Any

    def error(self, message: str, at: tuple[Any, ...] = (), key: bool = False) -> ImportError_:
        """An error about the value at the path ``at`` (its key's node with ``key``); the file as
        a whole when the path is not in the document (a missing key)."""
        node = self.node(at, key)
        if node is None:
            return _located(message, self.file, self.text)
        return _located(message, self.file, self.text, node.start_mark.index, node.end_mark.index)

    def node(self, at: tuple[Any, ...], key: bool = False) -> Any:
        import yaml

        node, key_node = self.root, None
        for step in at:
            if isinstance(node, yaml.MappingNode):
                found = [(k, v) for k, v in node.value if _key_is(k, step)]
                if not found:
                    return None
                key_node, node = found[-1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
                key_node, node = None, node.value[step]
            else:
                return None
        return key_node if key else node


def _key_is(node: Any, key: Any) -> bool:
    """Whether the YAML key ``node`` reads as ``key`` (a scalar: ``1`` is the key 1, not "1")."""
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        return False
    try:
        return bool(yaml.constructor.SafeConstructor().construct_object(node) == key)
    except Exception:  # noqa: BLE001 - a scalar this constructor cannot read is not the key
        return False


def _path(dotted: str) -> str:
    parts = dotted.split(".")
    return ir.Path(root=parts[0], steps=tuple(parts[1:])).text()


def _sel(tool: str) -> str:
    return "all tools" if tool == "*" else f"tool {string_text(tool)}"


def _literal_name(src: _Source, name: str, where: str, at: tuple[Any, ...], key: bool) -> None:
    """Refuse a tool name with `*` or `?` (but `*` alone, every tool): Intercept matches names
    exactly, so such an entry governs no real tool there either, which is surely not what its
    author meant; plr refuses it rather than import a rule that governs nothing."""
    if name != "*" and has_glob_chars(name):
        raise src.error(
            f"{where}: the tool name {json.dumps(name)} has `*` or `?`: Intercept matches tool names exactly, "
            "so it governs no real tool; name the tools one by one, or after the import write a condition on "
            "every call, such as `deny all tools if tool starts_with \"delete_\"`",
            at,
            key,
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
    def __init__(self, doc: dict[str, Any], name: str, src: _Source) -> None:
        self.doc = doc
        self.name = name
        self.src = src
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
            shown = json.dumps(version, default=str)
            raise self.src.error(f'unsupported Intercept policy version {shown}: plr reads version "1"', ("version",))
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
            raise self.src.error(f'default must be "allow" or "deny", got {json.dumps(default, default=str)}', ("default",))
        self.default = default
        self.out += [f"default {default}", ""]
        hide = doc.get("hide") or []
        if not isinstance(hide, list):
            raise self.src.error("hide must be a list of tool names", ("hide",))
        for i, h in enumerate(hide):
            _literal_name(self.src, str(h), "hide", ("hide", i), False)
            self.out.append("hide all tools" if h == "*" else f"hide tool {string_text(str(h))}")
        if hide:
            self.out.append("")
        tools = doc.get("tools") or {}
        if not isinstance(tools, dict):
            raise self.src.error("tools must map tool names to {rules: [...]}", ("tools",))
        for tool in sorted((t for t in tools if t != "*"), key=str):
            _literal_name(self.src, str(tool), f"tools.{tool}", ("tools", tool), True)
            self.tool(str(tool), tools[tool], ("tools", tool))
        if "*" in tools:
            self.tool("*", tools["*"], ("tools", "*"))
        return ImportResult("\n".join(self.out).rstrip() + "\n", self.warnings)

    def tool(self, tool: str, entry: Any, at: tuple[Any, ...]) -> None:
        where = f"tools.{tool}"
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise self.src.error(f"{where} must be a mapping with rules: [...]", at)
        for key in sorted(set(entry) - {"rules"}, key=str):
            self.warn(f"{where}.{key}", "an unknown key of a tool; Intercept ignores it and so does plr")
        rules = entry.get("rules") or []
        if not isinstance(rules, list):
            raise self.src.error(f"{where}.rules must be a list", (*at, "rules"))
        denied = any(isinstance(r, dict) and r.get("action") == "deny" for r in rules)
        if tool != "*" and self.default == "deny" and not denied:
            self.out.append(f"allow {_sel(tool)}")  # a listed tool is callable under `default deny`
        for i, rule in enumerate(rules):
            self.rule(tool, rule, f"{where}.rules[{i}]", (*at, "rules", i))
        self.out.append("")

    def rule(self, tool: str, rule: Any, where: str, at: tuple[Any, ...]) -> None:
        if not isinstance(rule, dict):
            raise self.src.error(f"{where} must be a mapping", at)
        for key in sorted(set(rule) - _RULE_KEYS, key=str):
            self.warn(f"{where}.{key}", "an unknown key of a rule; Intercept ignores it and so does plr")
        name = str(rule.get("name") or "")
        action = rule.get("action") or "evaluate"
        on_deny = rule.get("on_deny")
        reason = str(on_deny) if on_deny else f'Denied by rule "{name}"'
        described = f"description {string_text(name)}" if name else ""
        conditions = rule.get("conditions") or []
        if not isinstance(conditions, list):
            raise self.src.error(f"{where}.conditions must be a list of {{path, op, value}} mappings", (*at, "conditions"))
        conditions = list(conditions)
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
            text = self.condition(path, op, c.get("value"), cw, (*at, "conditions", j, "value"))
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
        if not isinstance(window, str) or window not in _WINDOWS:
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

    def condition(self, path: str, op: Any, value: Any, where: str, at: tuple[Any, ...]) -> str | None:
        if not path.startswith("args.") or any(not p for p in path.split(".")):
            self.warn(where, f"path {path!r} is not args.… or state.…: not carried over (Intercept refuses it)")
            return None
        p = _path(path)
        if not isinstance(op, str):
            self.warn(where, f"unknown operator {op!r}: not carried over (Intercept refuses it)")
            return None

        def literal(value: Any) -> str:
            try:
                return literal_text(value)
            except (TypeError, ValueError) as e:  # a date, bytes, NaN, …: refused, at its place
                raise self.src.error(f"{where}.value: {e}", at) from None

        if op in _CMP:
            if op in ("lt", "lte", "gt", "gte") and _number(value) is None:
                self.warn(where, f"`{op}` needs a number, got {value!r}: not carried over (Intercept refuses it)")
                return None
            if op in ("lt", "lte", "gt", "gte"):
                value = _number(value)
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
            text = f"{p} {_CMP[op]} {literal(value)}"
            return f"{p} exists and {text}" if op == "neq" else text  # missing fails every op but exists
        if op in ("in", "not_in"):
            if not isinstance(value, list):
                self.warn(where, f"`{op}` needs a list, got {value!r}: not carried over (Intercept refuses it)")
                return None
            text = f"{p} {'in' if op == 'in' else 'not in'} {literal(value)}"
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
            return f"{p} contains {literal(value)}"
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
