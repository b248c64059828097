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
unknown key) is written as ``#`` comment lines (free text never leaves a comment: see
``comment_lines``) and reported as a warning naming what was not carried over and why: nothing
is dropped silently. What Intercept refuses to start with (its ``config.Validate``) is refused,
the file is read as yaml.v3 reads it (YAML 1.2), and the generated .plr is compiled before it is
returned (``ImportInternalError`` if plr refuses it).
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
from ..vocab import has_glob_chars, json_strings

__all__ = ["ImportError_", "ImportInternalError", "ImportResult", "comment_lines", "import_intercept", "parse_intercept"]

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
        """YAML 1.2's core schema, as gopkg.in/yaml.v3 (Intercept's reader) resolves a plain
        scalar: only true/false are booleans, `1e3` is a number, `yes`, `on`, `1:30` are text."""

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is yaml.ScalarNode and implicit[0]:
                return _go_tag(value)
            return super().resolve(kind, value, implicit)

    StrictLoader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: _go_scalar(node.value)[1])
    StrictLoader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: _go_scalar(node.value)[1])

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if not isinstance(key, str) and key_node.tag != "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"the key {_shown_key(key_node)} reads as {_kind(key)}, not as text (YAML 1.2, as Intercept "
                    "reads it); write it quoted if it is a name",
                    key_node.start_mark,
                )  # fmt: skip
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


_GO_NULL = {"", "~", "null", "Null", "NULL"}
_GO_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_GO_SPECIAL = {
    **{k: math.nan for k in (".nan", ".NaN", ".NAN")},
    **{k: math.inf for k in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{k: -math.inf for k in ("-.inf", "-.Inf", "-.INF")},
}
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_GO_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?\Z")
INT64 = (-(2**63), 2**63 - 1)


def _go_scalar(s: str) -> tuple[str, Any]:
    """The tag and value gopkg.in/yaml.v3 gives the plain scalar ``s`` read into a Go ``any``
    (its resolve.go: YAML 1.2 core schema; Go's base-0 ParseInt, so `0x1F`, `017`, `0o17` and
    `0b101` are integers; a timestamp stays text; a float that overflows stays text)."""
    if s in _GO_NULL:
        return "tag:yaml.org,2002:null", None
    if s in _GO_BOOL:
        return "tag:yaml.org,2002:bool", _GO_BOOL[s]
    if s in _GO_SPECIAL:
        return "tag:yaml.org,2002:float", _GO_SPECIAL[s]
    if s == "<<":
        return "tag:yaml.org,2002:merge", s
    if s[:1] and s[0] in "+-0123456789":
        plain = s.replace("_", "")
        m = _GO_INT.match(plain)
        if m is not None:
            digits = m.group(2)
            if digits[:2] in ("0x", "0X", "0o", "0O", "0b", "0B"):
                n = int(digits[2:], {"x": 16, "o": 8, "b": 2}[digits[1].lower()])
            elif len(digits) > 1 and digits[0] == "0":
                n = int(digits, 8)
            else:
                n = int(digits)
            n = -n if m.group(1) == "-" else n
            if INT64[0] <= n <= INT64[1] or (m.group(1) == "" and 0 <= n < 2**64):  # int64, else uint64
                return "tag:yaml.org,2002:int", n
        if _GO_FLOAT.match(plain):
            f = float(plain)
            if math.isfinite(f):  # Go's ParseFloat fails on an overflow: the scalar stays text
                return "tag:yaml.org,2002:float", f
        return "tag:yaml.org,2002:str", s
    if s[:1] == "." and _GO_DOT_FLOAT.match(s):
        f = float(s)
        if math.isfinite(f):
            return "tag:yaml.org,2002:float", f
    return "tag:yaml.org,2002:str", s


def _go_tag(s: str) -> str:
    return _go_scalar(s)[0]


def _shown_key(node: Any) -> str:
    return json.dumps(getattr(node, "value", ""), default=str) if isinstance(getattr(node, "value", None), str) else "here"


_BREAKS = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_INERT = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def _escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def comment_lines(text: str) -> list[str]:
    """``text`` as ``#`` comment lines that stay comments: split on every line break plr's lexer
    or an editor honours (\\n, \\r, \\r\\n, \\v, \\f, U+0085, U+2028, U+2029, ...), each line
    prefixed with `# `, any other control or bidi character written as ``\\uXXXX``. Every
    piece of free text (a description, a deny message, a warning naming a tool) goes through it."""
    return [("# " + _INERT.sub(_escape, line)).rstrip() for line in _BREAKS.split(str(text))]


def _one_line(text: str) -> str:
    """Written plr text (a string literal, a path, a value) that shows on one line in any editor:
    line separators and control or bidi characters written as ``\\uXXXX``."""
    return _BREAKS.sub(_escape, _INERT.sub(_escape, text))


def _str(s: str) -> str:
    """A plr string literal whose text shows on one line in any editor."""
    return _one_line(string_text(s))


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
    bad = _lone_surrogate(doc)
    if bad is not None:  # (a YAML "\ud800" escape: no character, in plr's text or anywhere)
        raise _located(f"the policy holds U+{ord(bad):04X}, a lone surrogate: it is no character, and plr "
                       "cannot carry it; write the character it stands for", file, text)  # fmt: skip
    return doc, node


def _lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in the strings (keys included) of a loaded document, or None."""
    for text in json_strings(value):
        for c in text:
            if "\ud800" <= c <= "\udfff":
                return c
    return None


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
        result = _Importer(doc, name, _Source(text, file, node)).run()
    except RecursionError:
        raise _located("the document is nested too deeply to import", file, text) from None
    return _checked(result, file)


def _checked(result: ImportResult, file: str) -> ImportResult:
    """``result`` once plr's own compiler reads it: a .plr that does not compile (or whose
    comments are not all comments) is a bug of this importer, refused, never written."""
    from ..compiler import compile_source

    try:
        compile_source(result.text, "<imported>.plr")
    except PlrError as e:
        raise ImportInternalError([Diagnostic(
            "error",
            "internal error of `plr import intercept` (please report this): the .plr it generated does not "
            f"compile, so nothing is written: {e.first.message if e.diagnostics else e}",
            file,
        )]) from None  # fmt: skip
    except RecursionError:
        raise _located("the document is nested too deeply to import", file, "") from None
    return result


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
    """Whether the YAML key ``node`` reads as ``key`` (every key is text: the loader refuses others)."""
    import yaml

    return isinstance(node, yaml.ScalarNode) and isinstance(key, str) and node.value == key


def _path(dotted: str) -> str:
    """The plr path of an Intercept path; a step that is no bare name is a quoted key, written as
    ``_str`` writes strings (line separators, control and bidi characters as ``\\uXXXX``)."""
    parts = dotted.split(".")
    return _one_line(ir.Path(root=parts[0], steps=tuple(parts[1:])).text())


def _sel(tool: str) -> str:
    return "all tools" if tool == "*" else f"tool {_str(tool)}"


def _literal_name(src: _Source, name: str, where: str, at: tuple[Any, ...], key: bool) -> None:
    """Refuse a tool name with `*` or `?` (but `*` alone, every tool), or with whitespace, a
    control or a format character (``validate.tool_name_problem``): Intercept matches names
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
    from ..validate import tool_name_problem

    if (problem := tool_name_problem(name, "it governs no real tool in Intercept either")) is not None:
        raise src.error(f"{where}: {problem}", at, key)


_VALID_OPS = {"eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte", "regex", "contains", "exists"}
_REFUSED = "Intercept refuses to start with this policy"


class ImportInternalError(PlrError, RuntimeError):
    """The .plr the import generated does not compile: a bug of the importer, never written."""


def _go_float_text(f: float) -> str:
    """Go's ``fmt.Sprintf("%v", f)`` of a float64 (``strconv.FormatFloat(f, 'g', -1, 64)``):
    the shortest digits, with an exponent of two digits at least when it is below -4 or 6 and
    over: ``1.5``, ``123456``, ``1e+06``, ``1.234567e+06``, ``1e-05``, ``1e+21``."""
    from decimal import Decimal

    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    t = Decimal(repr(abs(f))).normalize().as_tuple()
    digs = "".join(map(str, t.digits))
    nd, dp = len(digs), len(digs) + int(t.exponent)
    exp = dp - 1
    eprec = 6  # strconv: %e when the exponent is < -4 or >= 6 in the shortest form
    if exp < -4 or exp >= eprec:
        mant = digs[0] + ("." + digs[1:] if nd > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digs}"
    if dp >= nd:
        return sign + digs + "0" * (dp - nd)
    return f"{sign}{digs[:dp]}.{digs[dp:]}"


@dataclass
class _Cond:
    path: str
    op: str
    value: Any
    at: tuple[Any, ...]


@dataclass
class _State:
    counter: str
    window: str
    increment: int
    increment_from: str
    at: tuple[Any, ...]


@dataclass
class _Rule:
    """A rule as Intercept holds it after ``config.Load`` (applyDefaults: rate_limit desugared,
    action defaulted, increment 0 → 1), with where its parts are in the file."""

    name: str
    action: str
    rate_limit: str
    conditions: list[_Cond]
    on_deny: str
    state: _State | None
    at: tuple[Any, ...]
    where: str
    desugared: bool = False


def _parse_rate(s: str) -> tuple[int, str] | str:
    """Intercept's parseRateLimit: (count, window), or its error (Go's Atoi takes a sign)."""
    parts = s.split("/", 1)
    if len(parts) != 2:
        return f'rate_limit must be in the format "N/window" (e.g. "5/hour"), got {json.dumps(s)}'
    m = re.fullmatch(r"[+-]?[0-9]+", parts[0])
    count = int(parts[0]) if m else 0
    if m is None or count <= 0 or count > INT64[1]:
        return f"rate_limit count must be a positive integer, got {json.dumps(parts[0])}"
    if parts[1] not in _WINDOWS:
        return f'rate_limit window must be "minute", "hour", or "day", got {json.dumps(parts[1])}'
    return count, parts[1]


class _Importer:
    def __init__(self, doc: dict[str, Any], name: str, src: _Source) -> None:
        self.doc = doc
        self.name = name
        self.src = src
        self.out: list[str] = []
        self.warnings: list[str] = []
        self.lossy = False  # a warning in the current tool dropped part of a rule

    def warn(self, where: str, what: str, lossy: bool = True) -> None:
        """A construct not carried over: a warning, and the same words as comment lines."""
        self.warnings.append(f"{where}: {what}")
        self.out += comment_lines(f"not carried over ({where}): {what}")
        self.lossy = self.lossy or lossy

    # --- reading values as Intercept's Go structs read them ------------------------------------

    def text(self, value: Any, at: tuple[Any, ...], where: str) -> str:
        """A Go ``string`` field: yaml.v3 stores a scalar's own text (`1.0` is "1.0", `yes` is
        "yes"), null is "", and refuses a list or a mapping."""
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        if isinstance(value, bytes):  # !!binary: yaml.v3 stores the decoded bytes
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise self.src.error(f"{where} is binary data that is not UTF-8 text", at) from None
        if isinstance(value, (bool, int, float)):
            import yaml

            node = self.src.node(at)
            return node.value if isinstance(node, yaml.ScalarNode) else str(value)
        raise self.src.error(f"{where} must be text, not {_kind(value)} ({_REFUSED}: it cannot read it)", at)

    def mapping(self, value: Any, at: tuple[Any, ...], where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.src.error(f"{where} must be a mapping", at)
        return value

    def seq(self, value: Any, at: tuple[Any, ...], where: str, what: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.src.error(f"{where} must be a list{what}", at)
        return value

    def unknown(self, value: dict[str, Any], known: set[str], where: str, what: str) -> None:
        for key in sorted(set(value) - known, key=str):
            self.warn(f"{where}.{key}" if where else str(key), f"an unknown {what}; Intercept ignores it and so does plr", False)

    def read_rule(self, tool: str, rule: Any, where: str, at: tuple[Any, ...]) -> _Rule:
        if not isinstance(rule, dict):
            raise self.src.error(f"{where} must be a mapping", at)
        self.unknown(rule, _RULE_KEYS, where, "key of a rule")
        conds = []
        raw_conds = self.seq(rule.get("conditions"), (*at, "conditions"), f"{where}.conditions", " of {path, op, value} mappings")
        for j, c in enumerate(raw_conds):
            cat, cw = (*at, "conditions", j), f"{where}.conditions[{j}]"
            c = self.mapping(c, cat, cw)
            self.unknown(c, {"path", "op", "value"}, cw, "key of a condition")
            conds.append(_Cond(self.text(c.get("path"), (*cat, "path"), f"{cw}.path"),
                               self.text(c.get("op"), (*cat, "op"), f"{cw}.op"), c.get("value"), cat))  # fmt: skip
        state = None
        if rule.get("state") is not None:
            sat = (*at, "state")
            st = self.mapping(rule["state"], sat, f"{where}.state")
            self.unknown(st, _STATE_KEYS, f"{where}.state", "key of a state block")
            inc = st.get("increment")
            if inc is None:
                inc = 0
            elif isinstance(inc, float) and math.isfinite(inc) and INT64[0] <= inc <= INT64[1]:
                inc = int(inc)  # yaml.v3 truncates a float into an int field
            elif isinstance(inc, bool) or not isinstance(inc, int) or not INT64[0] <= inc <= INT64[1]:
                raise self.src.error(
                    f"{where}.state.increment must be a whole number, not {_kind(inc)} ({_REFUSED}: it cannot read it)",
                    (*sat, "increment"),
                )
            state = _State(
                self.text(st.get("counter"), (*sat, "counter"), f"{where}.state.counter"),
                self.text(st.get("window"), (*sat, "window"), f"{where}.state.window"),
                inc or 1,
                self.text(st.get("increment_from"), (*sat, "increment_from"), f"{where}.state.increment_from"),
                sat,
            )
        r = _Rule(
            self.text(rule.get("name"), (*at, "name"), f"{where}.name"),
            self.text(rule.get("action"), (*at, "action"), f"{where}.action"),
            self.text(rule.get("rate_limit"), (*at, "rate_limit"), f"{where}.rate_limit"),
            conds,
            self.text(rule.get("on_deny"), (*at, "on_deny"), f"{where}.on_deny"),
            state,
            at,
            where,
        )
        if r.rate_limit and not r.conditions and r.state is None and r.action != "deny":  # applyDefaults
            parsed = _parse_rate(r.rate_limit)
            if not isinstance(parsed, str):
                count, window = parsed
                scope = "_global" if tool == "*" else tool
                r.action, r.desugared = "evaluate", True
                r.conditions = [_Cond(f"state.{scope}._rate_{window}", "lte", count, (*at, "rate_limit"))]
                r.state = _State(f"_rate_{window}", window, 1, "", (*at, "rate_limit"))
                r.on_deny = r.on_deny or f"Rate limit of {count} per {window} reached. Try again later."
                r.rate_limit = ""
        r.action = r.action or "evaluate"
        return r

    # --- Intercept's config.Validate ------------------------------------------------------------

    def validate(self, tools: dict[str, list[_Rule]]) -> None:
        """Refuse, at its place, what Intercept's ``config.Validate`` refuses (it will not start)."""
        for tool in sorted(tools):
            seen: dict[str, int] = {}
            for i, r in enumerate(tools[tool]):
                if r.state is not None:
                    if r.state.counter in seen:
                        raise self.src.error(
                            f"{r.where}: duplicate state counter {json.dumps(r.state.counter)} (also used by "
                            f"rules[{seen[r.state.counter]}]); {_REFUSED}", r.state.at,
                        )  # fmt: skip
                    seen[r.state.counter] = i
            for r in tools[tool]:
                self.validate_rule(r, tools)

    def validate_rule(self, r: _Rule, tools: dict[str, list[_Rule]]) -> None:
        def refuse(message: str, at: tuple[Any, ...] | None = None) -> ImportError_:
            return self.src.error(f"{r.where}: {message}; {_REFUSED}", r.at if at is None else at)

        if r.rate_limit:
            parsed = _parse_rate(r.rate_limit)
            if isinstance(parsed, str):
                raise refuse(parsed, (*r.at, "rate_limit"))
            if r.conditions or r.state is not None:
                raise refuse("rate_limit cannot be combined with conditions or state", (*r.at, "rate_limit"))
            raise refuse('rate_limit cannot be used with action "deny"', (*r.at, "rate_limit"))
        if not r.name:
            raise refuse("rule must have a name")
        if r.action not in ("evaluate", "deny", "require_approval"):
            raise refuse(f'action must be "evaluate" or "deny", got {json.dumps(r.action)}', (*r.at, "action"))
        if r.action == "deny" and r.conditions:
            raise refuse("deny rules must not have conditions", (*r.at, "conditions"))
        if r.action == "evaluate" and not r.conditions:
            raise refuse("evaluate rules must have at least one condition")
        for j, c in enumerate(r.conditions):
            cw = f"conditions[{j}]"
            if not (c.path.startswith("args.") or c.path.startswith("state.")):
                raise refuse(f'{cw}: path must start with "args." or "state.", got {json.dumps(c.path)}', (*c.at, "path"))
            if c.op not in _VALID_OPS:
                raise refuse(f"{cw}: unknown operator {json.dumps(c.op)}", (*c.at, "op"))
            v, vat = c.value, (*c.at, "value")
            if c.op in ("in", "not_in") and not isinstance(v, list):
                raise refuse(f'{cw}: operator "{c.op}" requires a list value', vat)
            if c.op in ("lt", "lte", "gt", "gte") and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, int) and not INT64[0] <= v <= INT64[1])
            ):
                raise refuse(f'{cw}: operator "{c.op}" requires a numeric value, got {_kind(v)}', vat)
            if c.op == "exists" and not isinstance(v, bool):
                raise refuse(f'{cw}: operator "exists" requires a boolean value (true or false)', vat)
            if c.op == "regex":
                if not isinstance(v, str):
                    raise refuse(f"{cw}: regex value must be a string", vat)
                from ..validate import check_leaf

                try:
                    check_leaf("regex", v, True, None)  # RE2, and no backspace meant as a word boundary
                except Exception as e:  # noqa: BLE001 - re.error / ValueError: say which
                    yaml_hint = (
                        " (in YAML, `\\b` inside double quotes is a backspace too: write `\\\\b`, or put the "
                        "pattern in single quotes)"
                        if "\x08" in v
                        else ""
                    )
                    if yaml_hint:  # Go compiles it (a literal backspace); it is plr that refuses a never-matching guard
                        raise self.src.error(f"{r.where}: {cw}: regex {json.dumps(v)}: {e}{yaml_hint}", vat) from None
                    raise refuse(f"{cw}: invalid regex {json.dumps(v)}: {e}", vat) from None
        if r.state is not None:
            if not r.state.counter:
                raise refuse("state: counter must not be empty", r.state.at)
            if r.state.window not in _WINDOWS:
                raise refuse(f'state: window must be "minute", "hour", or "day", got {json.dumps(r.state.window)}', r.state.at)
            if r.state.increment_from and not r.state.increment_from.startswith("args."):
                raise refuse(f'state: increment_from must start with "args.", got {json.dumps(r.state.increment_from)}', r.state.at)
        for c in r.conditions:
            parts = c.path.split(".", 2)
            if c.path.startswith("state.") and len(parts) == 3:
                rules = tools.get(parts[1], tools.get("*") if parts[1] == "_global" else None)
                if not any(o.state is not None and o.state.counter == parts[2] for o in rules or []):
                    raise refuse(f"condition references {c.path} but no matching state block found", (*c.at, "path"))

    # --- the .plr ---------------------------------------------------------------------------------

    def run(self) -> ImportResult:
        doc = self.doc
        version = self.text(doc.get("version"), ("version",), "version")
        if version != "1":
            raise self.src.error(f'unsupported Intercept policy version {json.dumps(version)}: plr reads version "1"', ("version",))
        package = _PACKAGE_BAD.sub("_", self.name).strip("_") or "imported"
        if not package[0].isalpha():
            package = "p_" + package
        self.out.append("# imported from an Intercept policy by `plr import intercept`")
        description = self.text(doc.get("description"), ("description",), "description")
        if description:
            self.out += comment_lines(description)
        self.out += [f"package {package}", ""]
        self.unknown(doc, _TOP_KEYS, "", "top-level key")
        default = self.text(doc.get("default"), ("default",), "default") or "allow"  # Go: "" → allow
        if default not in ("allow", "deny"):
            raise self.src.error(f'default must be "allow" or "deny", got {json.dumps(default)}', ("default",))
        hide = self.seq(doc.get("hide"), ("hide",), "hide", " of tool names")
        names = [self.text(h, ("hide", i), f"hide[{i}]") for i, h in enumerate(hide)]
        seen: set[str] = set()
        for i, h in enumerate(names):
            if not h.strip():
                raise self.src.error(f"hide[{i}]: entry must not be empty; {_REFUSED}", ("hide", i))
            if h in seen:
                raise self.src.error(f"hide: duplicate entry {json.dumps(h)}; {_REFUSED}", ("hide", i))
            seen.add(h)
            _literal_name(self.src, h, "hide", ("hide", i), False)
        raw_tools = doc.get("tools")
        if raw_tools is not None and not isinstance(raw_tools, dict):
            raise self.src.error("tools must map tool names to {rules: [...]}", ("tools",))
        tools: dict[str, list[_Rule]] = {}
        for tool, entry in (raw_tools or {}).items():
            at, where = ("tools", tool), f"tools.{tool}"
            if tool != "*":
                _literal_name(self.src, tool, where, at, True)
            if entry is not None and not isinstance(entry, dict):
                raise self.src.error(f"{where} must be a mapping with rules: [...]", at)
            rules = self.seq((entry or {}).get("rules"), (*at, "rules"), f"{where}.rules", "")
            tools[tool] = [self.read_rule(tool, r, f"{where}.rules[{i}]", (*at, "rules", i)) for i, r in enumerate(rules)]
        self.validate(tools)
        every = any(r.action == "deny" for r in tools.get("*", []))
        if every and default == "allow":
            self.out.append('# a deny rule on "*": Intercept denies every call')
        self.default = default
        self.out += [f"default {default}", ""]
        for h in names:
            self.out.append("hide all tools" if h == "*" else f"hide tool {_str(h)}")
        if names:
            self.out.append("")
        for tool in sorted(t for t in tools if t != "*"):
            self.tool(tool, (raw_tools or {})[tool], tools[tool])
        if "*" in tools:
            self.tool("*", (raw_tools or {})["*"], tools["*"])
        return ImportResult("\n".join(self.out).rstrip() + "\n", self.warnings)

    def tool(self, tool: str, entry: Any, rules: list[_Rule]) -> None:
        where = f"tools.{tool}"
        if isinstance(entry, dict):
            self.unknown(entry, {"rules"}, where, "key of a tool")
        self.lossy = False
        allow_at = len(self.out)
        for r in rules:
            self.rule(tool, r)
        denied = any(r.action == "deny" for r in rules)
        if self.lossy and not denied and (tool == "*" or self.default == "allow"):
            # what was dropped narrowed the calls Intercept lets through; without it, `default allow`
            # (or a "*" rule, every tool) would let more through: the tool is denied instead, as a
            # dropped rule is under `default deny` (fail closed: rewrite the rule, then delete this)
            self.warn(where, "part of a rule of this tool is not carried over, so plr denies the tool rather "
                      "than let it through with less checked; write the rule in plr, then delete this deny", False)  # fmt: skip
            self.deny_every(tool, "a rule of this tool was not carried over from Intercept (see the import's warnings)", "")
        if tool != "*" and self.default == "deny" and not denied:
            if self.lossy:  # a rule of it was not carried over whole: it stays denied by the default
                self.warn(where, "part of a rule of this tool is not carried over, so plr leaves the tool "
                          "denied by `default deny` rather than allow it with less checked", False)  # fmt: skip
            else:
                self.out.insert(allow_at, f"allow {_sel(tool)}")  # a listed tool is callable under `default deny`
        self.out.append("")

    def deny_every(self, tool: str, reason: str, described: str) -> None:
        """Deny every call of ``tool`` (every call at all for "*": plr has no bare `deny all tools`,
        so it is a condition every call meets)."""
        if tool == "*":
            self.emit("deny all tools if", ['tool starts_with ""'], reason, described)
        else:
            self.emit(f"deny {_sel(tool)}", [], reason, described)

    def rule(self, tool: str, r: _Rule) -> None:
        where = r.where
        reason = r.on_deny or f'Denied by rule "{r.name}"'
        described = f"description {_str(r.name)}" if r.name else ""
        if r.action == "deny":
            self.deny_every(tool, reason, described)
            return
        if r.action == "require_approval":  # Intercept's later versions: a human approves
            self.emit(f"deny {_sel(tool)} unless approved", [], reason, described)
            if r.conditions or r.state is not None:
                self.warn(where, "conditions on require_approval: plr asks for approval on every call of the tool", False)
            return
        scope = "_global" if tool == "*" else tool
        own = f"state.{scope}.{r.state.counter}" if r.state is not None else None
        args_conds: list[str] = []
        limit: tuple[str, float] | None = None
        for j, c in enumerate(r.conditions):
            cw = f"{where}.conditions[{j}]"
            if c.path.startswith("state."):
                if limit is None and c.path == own and c.op in ("lt", "lte"):
                    limit = (c.op, c.value)  # Intercept's extractLimit: the first lt/lte on its own counter
                    continue
                self.warn(
                    cw,
                    f"`{c.path} {c.op} {json.dumps(c.value, default=str)}` reads a counter; plr limits count their "
                    "own calls (only the first `lt`/`lte` on the rule's own state counter becomes a limit)",
                )
                continue
            text = self.condition(_path(c.path), c.op, c.value, cw, (*c.at, "value"))
            if text is not None:
                args_conds.append(text)
        if args_conds:
            self.emit(f"deny {_sel(tool)} unless", args_conds, reason, described)
        if r.state is not None:
            self.counter(tool, r.state, limit, where, r.name, reason)

    def counter(
        self, tool: str, state: _State, limit: tuple[str, float] | None, where: str, name: str, reason: str
    ) -> None:
        described = f"description {_str(name)}" if name else ""
        of = state.increment_from
        if limit is None:
            if of:  # handler.go: the amount is read before the limit is looked for: none → an error → deny
                self.warn(
                    f"{where}.state",
                    f"counter `{state.counter}` has no `lt`/`lte` condition on itself, so Intercept counts "
                    f"{of} but never limits it; it still denies a call whose {of} is missing or not a number "
                    "(an internal error), and so does plr",
                    False,
                )
                p = _path(of)
                self.emit(f"deny {_sel(tool)} unless", [f"({p} >= 0 or {p} < 0)"], "Internal policy error", described)
                return
            self.warn(
                f"{where}.state",
                f"counter `{state.counter}` has no `lt`/`lte` condition on itself, so Intercept counts it but "
                "never limits it; plr has nothing to enforce",
                False,
            )
            return
        op, n = limit
        cap = int(n) - 1 if op == "lt" else int(n)  # Intercept: int64(value) (- 1 for lt), toward zero
        inc = state.increment
        head = f"limit {_sel(tool)} to "
        if of:
            if cap <= 0:
                self.warn(
                    where,
                    f"a spend cap of {cap}: Intercept lets through only a call whose {of} keeps the window's total "
                    f"at or under {cap} (zero or negative amounts); plr denies every call of it (stricter)",
                    False,
                )
                self.deny_every(tool, reason, described)
                return
            head += f"{cap} of {_path(of)}"
        else:
            if inc < 1:
                self.warn(f"{where}.state.increment", f"{inc} is below 1: Intercept's counter never reaches its limit, "
                          "so there is nothing to enforce", False)  # fmt: skip
                return
            calls = cap // inc
            if calls < 1:
                self.warn(where, f"a limit of {cap} with increment {inc} lets no call through: written as a deny", False)
                self.deny_every(tool, reason, described)
                return
            head += str(calls)
            if inc != 1:
                self.out.append(f"# increment {inc} per call against {cap}: at most {calls} calls")
        head += f" per calendar {state.window} per global refund on error"
        self.out += comment_lines(f"Intercept's deny message: {reason}")
        self.out.append(head)
        if described:
            self.out.append(f"    {described}")

    def go_equal(self, value: Any, where: str, at: tuple[Any, ...]) -> list[Any]:
        """Every JSON value Intercept's evalEq finds equal to ``value`` (numbers compare as numbers,
        anything else by Go's ``%v`` text): so `neq`/`not_in` deny all of them, as Intercept does."""
        if value is None:
            return [None, "<nil>"]
        if isinstance(value, bool):
            return [value, "true" if value else "false"]
        if isinstance(value, int):
            if not INT64[0] <= value <= INT64[1]:
                raise self.src.error(f"{where}.value: {value} is beyond a 64-bit integer: Intercept compares it as "
                                     "text, which plr cannot reproduce", at)  # fmt: skip
            return [value, str(value)]
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.src.error(f"{where}.value: {value!r} has no plr spelling: numbers must be finite", at)
            return [value, _go_float_text(value)]
        if isinstance(value, str):
            forms: list[Any] = [value]
            if value in ("true", "false"):
                forms.append(value == "true")
            if value == "<nil>":
                forms.append(None)
            if re.fullmatch(r"-?[0-9.]+(e[-+][0-9]+)?", value):
                try:
                    f = float(value)
                except ValueError:
                    f = math.nan
                if math.isfinite(f) and _go_float_text(f) == value:  # the %v text of a JSON number
                    forms.append(int(f) if f.is_integer() and abs(f) < 2**53 else f)
            if (value.startswith("[") or value.startswith("map[")) and value.endswith("]"):
                raise self.src.error(f"{where}.value: {json.dumps(value)} is how Go writes a list or a mapping, and "
                                     "Intercept compares by that text, which plr cannot reproduce", at)  # fmt: skip
            return forms
        raise self.src.error(f"{where}.value: Intercept compares {_kind(value)} by Go's %v text, which plr cannot "
                             "reproduce for `neq`/`not_in`", at)  # fmt: skip

    def condition(self, p: str, op: str, value: Any, where: str, at: tuple[Any, ...]) -> str | None:
        def literal(value: Any) -> str:
            if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
                # (Intercept compares an object by Go's %v text, which plr cannot reproduce)
                raise self.src.error(f"{where}.value: an object (or a nested list) is no value plr can compare with", at)
            try:
                return _one_line(literal_text(value))
            except (TypeError, ValueError) as e:  # a date, bytes, NaN, …: refused, at its place
                raise self.src.error(f"{where}.value: {e}", at) from None

        if op in ("neq", "not_in"):
            forms: list[Any] = []
            keys: set[tuple[str, Any]] = set()
            for item in [value] if op == "neq" else value:
                for f in self.go_equal(item, where, at):
                    k = (type(f).__name__ if not isinstance(f, (int, float)) or isinstance(f, bool) else "n", f)
                    if k not in keys:
                        keys.add(k)
                        forms.append(f)
            if not forms:  # `not_in: []`: every value that is there passes
                return f"{p} exists"
            return f"{p} exists and {p} not in {literal(forms)}"  # missing fails every op but exists
        if op in _CMP:
            if op in ("lt", "lte", "gt", "gte") and isinstance(value, float) and value.is_integer():
                value = int(value)
            return f"{p} {_CMP[op]} {literal(value)}"
        if op == "in":
            return f"{p} in {literal(value)}"
        if op == "regex":
            return f"{p} matches {_str(value)}"
        if op == "contains":
            return f"{p} contains {literal(value)}"
        return f"{p} exists" if value else f"{p} missing"  # exists (validated: a boolean)

    def emit(self, head: str, conds: list[str], reason: str, described: str) -> None:
        if len(conds) == 1:
            self.out.append(f"{head} {conds[0]}")
        elif conds:
            self.out.append(f"{head} {{")
            self.out += [f"    {c}" for c in conds]
            self.out.append("}")
        else:
            self.out.append(head)
        self.out.append(f"    reason {_str(reason)}")
        if described:
            self.out.append(f"    {described}")
