"""The rules of the policy JSON contract, in one place and without pydantic.

Two doors let a policy document in, and both enforce these rules:

- ``dsl.policy.load_policy``: any document a person wrote. Its pydantic models declare the
  structure (types, keys, enums, bounds: that is also the published JSON Schema) and call the
  rules here for everything a type cannot say (op and value, RE2, literal values, lone
  surrogates). It reports every problem, and accepts the seed's ``rate_limit``.
- ``Engine.from_data`` (``check_data``): the canonical dump (``Policy.to_dict()``) read back
  from the compiled-policy cache. That path must not import pydantic (``plr eval`` on an
  unchanged policy stays fast), so the structure is checked here too, against the same
  tables; anything that is not exactly the canonical form (a typo'd key, a seed
  ``rate_limit``, a missing ``per``) is refused rather than guessed, at the first problem.

Kept apart from ``dsl.policy`` and ``dsl.engine`` so each can import it without the other.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from .vocab import (
    has_glob_chars,
    NAME_RE,
    PATH_ROOTS,
    LIST_OPS,
    MAX_LIMIT_COUNT,
    MAX_WINDOW_SECONDS,
    OPS,
    STRING_OPS,
    SURROGATE,
    VALUELESS_OPS,
    parse_path,
)

__all__ = [
    "Data",
    "ACTIONS",
    "SCOPES",
    "FNS",
    "STRING_FNS",
    "fn_chain",
    "TOP_KEYS",
    "TOOL_KEYS",
    "LIMIT_KEYS",
    "ALL_TOOLS_KEYS",
    "LEAF_KEYS",
    "literal",
    "check_json_value",
    "check_leaf",
    "check_window_type",
    "surrogate_problem",
    "check_data",
    "check_binding",
    "check_hide_names",
    "check_tool_names",
    "tool_name_problem",
    "DuplicateKey",
    "unique_keys",
    "locate_duplicate",
    "json_value_offset",
    "locate_json_path",
    "check_scopes",
    "QUANTIFIERS",
]

# A condition, limit, tool or whole policy in the canonical dump form (``Policy.to_dict()``).
Data = dict[str, Any]

ACTIONS = ("allow", "deny", "require_approval")
SCOPES = ("session", "identity", "global")
FNS = ("count", "len", "lower", "upper", "trim", "normpath", "basename", "dirname")
STRING_FNS = frozenset(FNS[2:])  # string -> string; a value that is not a string fails the comparison
MAX_FNS = 8
# The keys of the canonical dump: the pydantic models' fields, minus the seed's `rate_limit`
# (a test keeps the two in step).
TOP_KEYS = frozenset({"version", "package", "default", "hide", "all_tools", "tools", "descriptions", "tool_descriptions"})
TOOL_KEYS = frozenset({"action", "reason", "require", "deny_if", "limits", "rule"})
LIMIT_KEYS = frozenset({"max", "window", "per", "if", "rule", "of", "calendar", "tz", "refund"})
CALENDAR_UNITS = ("minute", "hour", "day", "week", "month")
ALL_TOOLS_KEYS = frozenset({"limits", "deny_if", "require", "allow_if"})
LEAF_KEYS = frozenset({"path", "op", "value", "fn", "reason", "rule"})


def literal(v: Any) -> str:
    """A value as JSON for a message, bounded: documents and agents choose these values."""
    try:
        text = json.dumps(v, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        text = "<value>"
    return text if len(text) <= 200 else text[:197] + "..."


# --- the rules a type cannot express (the loader's models call these too) ---------------------


def check_json_value(v: Any, depth: int = 0) -> Any:
    """Literal values are JSON scalars or lists of them; NaN/Infinity are not JSON."""
    if depth > 64:  # the parser's own limit (dsl.parser.MAX_NESTING): compiled output always loads
        raise ValueError("value is nested too deeply")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("value must be a finite number")
    if isinstance(v, list):
        for item in v:
            check_json_value(item, depth + 1)
    elif isinstance(v, dict):
        raise ValueError("value must be a string, number, boolean, null or a list of them")
    return v


def fn_chain(fn: Any) -> tuple[str, ...]:
    """A leaf's ``fn`` as the functions it applies, in order: one name, or a list of two or more
    (``["trim", "lower"]`` is ``lower(trim(path))``). `count` and `len` give numbers, so they
    come last; `count` counts the values at a path, so it comes alone."""
    if fn is None:
        return ()
    chain = [fn] if isinstance(fn, str) else fn
    if not isinstance(chain, list) or not all(isinstance(f, str) for f in chain):
        raise ValueError("`fn` is a function name or a list of them")
    if isinstance(fn, list) and not 2 <= len(fn) <= MAX_FNS:
        raise ValueError(f"a list `fn` applies 2 to {MAX_FNS} functions (write one function as a string)")
    for i, f in enumerate(chain):
        if f not in FNS:
            raise ValueError(f"unknown fn {literal(f)} (expected one of {', '.join(FNS)})")
        if f in ("count", "len") and i < len(chain) - 1:
            raise ValueError(f"`{f}` gives a number: it can only be the last function")
        if f == "count" and i > 0:
            raise ValueError("`count` counts the values at a path: it takes no other function")
    return tuple(chain)


def check_leaf(op: str, value: Any, has_value: bool, fn: Any) -> None:
    """An op and its value agree: ValueError with the author-facing explanation otherwise."""
    fn_chain(fn)
    if op in VALUELESS_OPS:
        if has_value:
            raise ValueError(f"op `{op}` takes no value")
        if fn is not None:
            raise ValueError(f"op `{op}` takes no fn")
        return
    if not has_value:
        raise ValueError(f"op `{op}` needs a value")
    if op in LIST_OPS and not isinstance(value, list):
        raise ValueError(f"op `{op}` needs a list value")
    if op in STRING_OPS and not isinstance(value, str):
        raise ValueError(f"op `{op}` needs a string value")
    if op == "regex":
        from .regex import compile_re2, outside_classes

        if "\x08" in value and "\x08" in outside_classes(value):
            raise ValueError(BACKSPACE_IN_PATTERN)
        compile_re2(value)  # raises ValueError with RE2's explanation


# `"\bdrop\b"` in a hand-written JSON policy: JSON reads `\b` as a backspace (U+0008), so the
# pattern looks for backspace characters and the deny it guards never fires. Refused, as a .plr
# pattern refuses it (dsl/lower.py): a compiled policy never holds one, so nothing plr writes is lost.
# Inside a character class it is left alone: `[\u0000-\u0008\u000b]` is a range of control
# characters, RE2 reads the raw backspace as itself, and a word boundary cannot stand there.
BACKSPACE_IN_PATTERN = (
    "the regex holds a backspace (U+0008) outside a character class: `\\b` (or `\\u0008`) in a JSON "
    "string is a backspace, not a word boundary, so this pattern looks for a backspace character and "
    "never matches the word boundary meant. Write `\\\\b` in the JSON for a word boundary, or `\\\\x08` "
    "for a backspace character"
)


def check_window_type(v: Any) -> Any:
    """A window is a finite JSON number (``true`` is not 1 second); its bounds are checked apart."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("must be a number of seconds")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("must be a finite number of seconds")
    return v


def surrogate_problem(value: Any) -> str | None:
    """The message for the first string (key or value) holding a lone surrogate, else None:
    ``"\\ud800"`` is valid JSON text, yet no UTF-8 output can carry it."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        v, at = stack.pop()
        if isinstance(v, str):
            if SURROGATE.search(v):
                return _surrogate_at(at)
        elif isinstance(v, dict):
            for k, item in v.items():
                key_at = f"{at}.{k}" if at else str(k)
                if isinstance(k, str) and SURROGATE.search(k):
                    return _surrogate_at(at)
                stack.append((item, key_at))
        elif isinstance(v, list):
            stack.extend((item, f"{at}[{i}]") for i, item in enumerate(v))
    return None


def _surrogate_at(where: str) -> str:
    return f"{where or '(document)'}: a lone surrogate (\\ud800-\\udfff) is not a character"


# --- duplicate keys ------------------------------------------------------------------------


class DuplicateKey(ValueError):
    """A JSON object names one key twice. ``json.loads`` would keep the last silently, so
    `{"delete_repo": {"action": "deny"}, "delete_repo": {}}` would allow what it denies."""

    def __init__(self, key: str, path: str = "", line: int = 0, col: int = 0, width: int = 1) -> None:
        self.key, self.path, self.line, self.col, self.width = key, path, line, col, width
        where = f" in `{path}`" if path else " at the top level" if line else ""
        super().__init__(
            f"key {literal(key)} is written twice{where}: JSON readers keep only one of the two (which one "
            "differs between readers), so the document would not mean what it says; merge the two into one"
        )


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads``: the object as a dict, or DuplicateKey. One
    ``dict()`` and one length comparison per object: the JSON reader's own work, near enough."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise DuplicateKey(k)
            seen.add(k)
    return d


_WS = re.compile(r"[ \t\n\r]*")


def locate_duplicate(text: str, found: DuplicateKey) -> DuplicateKey:
    """``found`` (raised by ``unique_keys`` while reading ``text``) with the JSON path of the
    object, and the line and column of the key's second appearance. Only run once a duplicate
    is known, so it may be slow: it walks the text again, keeping positions."""
    from json.decoder import scanstring

    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        return _WS.match(text, i).end()  # type: ignore[union-attr]

    def walk(i: int, path: str) -> int:
        ch = text[i]
        if ch == "{":
            i = skip(i + 1)
            if text[i] == "}":
                return i + 1
            seen: set[str] = set()
            while True:
                at = i
                key, i = scanstring(text, i + 1)
                if key in seen:
                    line, col = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
                    raise DuplicateKey(key, path, line, col, i - at)
                seen.add(key)
                i = skip(walk(skip(skip(i) + 1), f"{path}.{key}" if path else key))
                if text[i] == "}":
                    return i + 1
                i = skip(i + 1)
        if ch == "[":
            i = skip(i + 1)
            if text[i] == "]":
                return i + 1
            n = 0
            while True:
                i = skip(walk(i, f"{path}[{n}]"))
                n += 1
                if text[i] == "]":
                    return i + 1
                i = skip(i + 1)
        return decoder.raw_decode(text, i)[1]

    try:
        walk(skip(0), "")
    except DuplicateKey as e:
        return e
    except (ValueError, IndexError, RecursionError):
        pass
    return found


def json_value_offset(text: str, path: str) -> int | None:
    """Where the value at ``path`` (as the loader names it: `tools.query.deny_if[0]`, or
    `(document)`) starts in the JSON ``text``, or None when the text has no such value. A key
    holding a dot (`tools.a.b`) is tried both ways. Only run once the document is known to be
    wrong: it walks the text again, keeping positions."""
    from json.decoder import scanstring

    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        return _WS.match(text, i).end()  # type: ignore[union-attr]

    def find(i: int, rest: str) -> int | None:
        if not rest:
            return i
        if text[i] == "{":
            prefix = rest[1:] if rest.startswith(".") else rest
            i = skip(i + 1)
            while text[i] == '"':
                key, i = scanstring(text, i + 1)
                value = skip(skip(i) + 1)
                if prefix == key or prefix.startswith((key + ".", key + "[")):
                    found = find(value, prefix[len(key) :])
                    if found is not None:
                        return found
                i = skip(decoder.raw_decode(text, value)[1])
                if text[i] != ",":
                    return None
                i = skip(i + 1)
            return None
        index = _INDEX.match(rest)
        if text[i] != "[" or index is None:
            return None
        i = skip(i + 1)
        for _ in range(int(index.group(1))):
            i = skip(decoder.raw_decode(text, i)[1])
            if text[i] != ",":
                return None
            i = skip(i + 1)
        return None if text[i] == "]" else find(i, rest[index.end() :])

    try:
        return find(skip(0), "" if path == "(document)" else path)
    except (ValueError, IndexError, RecursionError):
        return None


_INDEX = re.compile(r"\[(\d+)\]")


def locate_json_path(text: str, path: str) -> tuple[int, int, int] | None:
    """The line, column and width (a scalar's text, 1 for an object or a list) of the value at
    ``path`` in the JSON ``text`` (``json_value_offset``), or None: for `plr check` on a JSON
    policy, a message with a caret, as a .plr error has."""
    start = json_value_offset(text, path)
    if start is None:
        return None
    try:
        end = json.JSONDecoder().raw_decode(text, start)[1] if text[start] not in "{[" else start + 1
    except (ValueError, IndexError):
        end = start + 1
    line = text.count("\n", 0, start) + 1
    return line, start - text.rfind("\n", 0, start), max(1, min(end - start, 60))


# --- the canonical dump (Engine.from_data) ---------------------------------------------------


def _shape(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise ValueError(f"{where}: {what}")


def _rule(check: Callable[..., Any], where: str, *args: Any) -> None:
    """One of the shared rules above, its message located at ``where``."""
    try:
        check(*args)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _check_meta(d: Data, where: str) -> None:
    for key in ("reason", "rule"):
        _shape(d.get(key) is None or isinstance(d[key], str), f"{where}.{key}", "must be a string")


def _check_leaf(c: Data, where: str, bound: tuple[str, ...] = ()) -> None:
    _shape(set(c) <= LEAF_KEYS, where, f"unexpected keys {sorted(set(c) - LEAF_KEYS)}")
    _shape(isinstance(c.get("path"), str), f"{where}.path", "must be a string")
    _shape(c.get("op") in OPS, f"{where}.op", f"unknown op {literal(c.get('op'))}")
    _rule(fn_chain, f"{where}.fn", c.get("fn"))
    _rule(parse_path, f"{where}.path", c["path"], bound)
    if "value" in c:
        _rule(check_json_value, f"{where}.value", c["value"])
    _rule(check_leaf, where, c["op"], c.get("value"), "value" in c, c.get("fn"))


QUANTIFIERS = ("every", "some")
MAX_CONDITION_DEPTH = 200


def check_binding(var: Any, bound: tuple[str, ...]) -> None:
    """The name an `every`/`some` binds: a plr name, not a path root, not bound around it."""
    if not isinstance(var, str) or NAME_RE.fullmatch(var) is None:
        raise ValueError(f"must be a name (letters, digits, _ and -), got {literal(var)}")
    if var in PATH_ROOTS:
        raise ValueError(f"`{var}` is a path root: a quantifier's name may not shadow it")
    if var in bound:
        raise ValueError(f"`{var}` is already bound by an enclosing every/some")


def _check_condition(c: Any, where: str, depth: int = 0, bound: tuple[str, ...] = ()) -> None:
    _shape(isinstance(c, dict), where, "a condition must be an object")
    _shape(depth <= MAX_CONDITION_DEPTH, where, "nested too deeply")
    kinds = [k for k in ("all", "any", "not", *QUANTIFIERS) if k in c]
    if kinds and kinds[0] in QUANTIFIERS:
        k = kinds[0]
        _shape(len(kinds) == 1 and set(c) <= {k, "in", "where", "reason", "rule"}, where, f"unexpected keys {sorted(c)}")
        _shape("in" in c and "where" in c, where, f"`{k}` needs `in` (a path) and `where` (a condition)")
        _rule(check_binding, f"{where}.{k}", c[k], bound)
        _shape(isinstance(c["in"], str), f"{where}.in", "must be a string")
        _rule(parse_path, f"{where}.in", c["in"], bound)
        _check_condition(c["where"], f"{where}.where", depth + 1, (*bound, c[k]))
    elif kinds:
        k = kinds[0]
        _shape(len(kinds) == 1 and set(c) <= {k, "reason", "rule"}, where, f"unexpected keys {sorted(c)}")
        if k == "not":
            _check_condition(c["not"], f"{where}.not", depth + 1, bound)
        else:
            _shape(isinstance(c[k], list), f"{where}.{k}", "must be a list")
            for i, x in enumerate(c[k]):
                _check_condition(x, f"{where}.{k}[{i}]", depth + 1, bound)
    else:
        _check_leaf(c, where, bound)
    _check_meta(c, where)


def check_scopes(c: Data, where: str, bound: tuple[str, ...] = ()) -> None:
    """Every path of a condition (canonical dump form) starts at a root or at a name an
    enclosing `every`/`some` binds, and no binding shadows a root or another: ValueError naming
    the spot. The loader's models check each piece alone, and this the whole, top down."""
    for k in QUANTIFIERS:
        if k in c:
            _rule(check_binding, f"{where}.{k}", c[k], bound)
            _rule(parse_path, f"{where}.in", c["in"], bound)
            check_scopes(c["where"], f"{where}.where", (*bound, c[k]))
            return
    if "not" in c:
        check_scopes(c["not"], f"{where}.not", bound)
    elif "all" in c or "any" in c:
        k = "all" if "all" in c else "any"
        for i, x in enumerate(c[k]):
            check_scopes(x, f"{where}.{k}[{i}]", bound)
    else:
        _rule(parse_path, f"{where}.path", c["path"], bound)


def _raise_if(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)


def check_limit_extensions(m: Any, of: Any, calendar: Any, tz: Any) -> str | None:
    """What is wrong with a limit's plr extensions (None if nothing): a fractional ``max`` only
    for a spend cap (``of``), whose path is a plain ``args.…`` path; ``tz`` only with
    ``calendar``, and a zone this machine knows."""
    if of is None:
        if not isinstance(m, int) or isinstance(m, bool):
            return f"max must be a whole number of calls (a fractional max {m!r} needs `of`: a spend cap)"
    else:
        if not isinstance(of, str):
            return "of must be a path string such as \"args.amount\""
        try:
            root, _steps = parse_path(of)
        except ValueError as e:
            return f"of: {e}"
        if root != "args":
            return f"of must be a path into the call's arguments (args.…), got {of!r}"
        if isinstance(m, float) and not math.isfinite(m):
            return "max must be a finite amount"
    if tz is not None:
        if calendar is None:
            return "tz needs calendar (a sliding window has no time zone)"
        if not isinstance(tz, str):
            return "tz must be an IANA time zone name"
        from .engine.calendar import check_zone

        problem = check_zone(tz)
        if problem is not None:
            return problem
    return None


def _check_limit(lim: Any, where: str) -> None:
    _shape(isinstance(lim, dict) and set(lim) <= LIMIT_KEYS, where, "a limit is {max, window, per}")
    m, w = lim.get("max"), lim.get("window")
    _shape(
        isinstance(m, (int, float)) and not isinstance(m, bool) and 0 < m <= MAX_LIMIT_COUNT,
        f"{where}.max",
        f"must be an integer from 1 to {MAX_LIMIT_COUNT}"
        if lim.get("of") is None
        else f"must be an amount above 0 and at most {MAX_LIMIT_COUNT} (a spend cap)",
    )
    _shape(lim.get("calendar") in (None, *CALENDAR_UNITS), f"{where}.calendar", "must be minute, hour, day, week or month")
    _shape(lim.get("refund") in (None, "error"), f"{where}.refund", 'must be "error"')
    _rule(
        lambda: _raise_if(check_limit_extensions(m, lim.get("of"), lim.get("calendar"), lim.get("tz"))),
        f"{where}",
    )
    _rule(check_window_type, f"{where}.window", w)
    _shape(
        0 < w <= MAX_WINDOW_SECONDS,
        f"{where}.window",
        f"must be a number of seconds > 0 and <= {MAX_WINDOW_SECONDS}",
    )
    _shape(lim.get("per") in SCOPES, f"{where}.per", "must be session, identity or global")
    if "if" in lim:
        _check_condition(lim["if"], f"{where}.if")
    _check_meta(lim, where)


def _check_tool(t: Any, where: str) -> None:
    _shape(isinstance(t, dict), where, "must be an object")
    _shape(set(t) <= TOOL_KEYS, where, f"unexpected keys {sorted(set(t) - TOOL_KEYS)}")
    _shape(t.get("action", "allow") in ACTIONS, f"{where}.action", f"unknown action {literal(t.get('action'))}")
    for kind in ("require", "deny_if", "limits"):
        _shape(isinstance(t.get(kind, []), list), f"{where}.{kind}", "must be a list")
    for kind in ("require", "deny_if"):
        for i, c in enumerate(t.get(kind, [])):
            _check_condition(c, f"{where}.{kind}[{i}]")
    for i, lim in enumerate(t.get("limits", [])):
        _check_limit(lim, f"{where}.limits[{i}]")
    _check_meta(t, where)


WILDCARD_TOOL = (
    'a tools key "*" is not a wildcard: it would govern only a tool literally named `*`, while "*" in '
    "`hide` means every tool; for rules on every call use `all_tools` (`all tools` in .plr)"
)
_MCP_NAMES = "MCP tool names are letters, digits, `_`, `-` and `.`"


def _json_condition(name: str) -> str:
    """An `all_tools` condition on `tool` that holds for the names the glob ``name`` matches."""
    body = name.strip("*")
    if "*" not in body and "?" not in body and name.endswith("*") and not name.startswith("*"):
        return json.dumps({"path": "tool", "op": "starts_with", "value": body}, ensure_ascii=False)
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in name)
    return json.dumps({"path": "tool", "op": "regex", "value": f"^{regex}$"}, ensure_ascii=False)


# Characters no MCP server puts in a tool name, and that a reader cannot see: whitespace,
# control and format characters (Cf: zero-width, bidi controls). A name holding one governs no
# real tool; other non-ASCII letters are left alone (some servers use them).
_UNSEEN_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def _unseen(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in _UNSEEN_CATEGORIES


def shown_name(name: str) -> str:
    """``name`` as a JSON-style string for a message, each whitespace, control or format
    character written as an escape (a trailing space or a zero-width space is otherwise invisible)."""

    def one(ch: str) -> str:
        if _unseen(ch):
            return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"
        return "\\" + ch if ch in '"\\' else ch

    return '"' + "".join(one(ch) for ch in name) + '"'


_CONTROL_NAMES = {
    "\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\x0b": "LINE TABULATION", "\x0c": "FORM FEED",
}  # fmt: skip
_KINDS = {"Cf": "a format character", "Cc": "a control character"}


def tool_name_problem(name: str, effect: str = "") -> str | None:
    """Why no MCP server's tool can be called ``name`` (None when it can): it holds whitespace,
    a control or a format character. A rule naming it governs nothing (`deny tool "delete_file "`
    leaves `delete_file` to the default), and a reader cannot see why. The message shows the name
    escaped, names the character, and suggests the name without it when that is a plain guess
    (the ends trimmed, format characters dropped). ``effect``: what that does to the rule."""
    if name.isascii() and name.isprintable() and " " not in name:
        return None  # the common case, at C speed: no ASCII control, no space
    bad = next((ch for ch in name if _unseen(ch)), None)
    if bad is None:
        return None
    what = unicodedata.name(bad, "") or _CONTROL_NAMES.get(bad, "")
    kind = _KINDS.get(unicodedata.category(bad), "whitespace")
    message = (
        f"tool name {shown_name(name)} holds U+{ord(bad):04X}{' ' + what if what else ''} ({kind}), "
        f"which no MCP tool name holds ({_MCP_NAMES})" + (f", so {effect}" if effect else "")
    )
    guess = "".join(ch for ch in name.strip() if unicodedata.category(ch) != "Cf")
    if guess and not any(_unseen(ch) for ch in guess):
        message += f"; did you mean {shown_name(guess)}?"
    return message


def check_tool_names(names: Any) -> None:
    """``"*"`` has one meaning in a policy (every tool, as `hide` has it): as a `tools` key it
    would silently govern nothing, so it is refused (an Intercept-style wildcard rule). So is
    any key holding `*` or `?`: it names one tool literally called that, not the tools it
    seems to match (`"delete_*"` would leave `delete_file` to the default); and any key holding
    whitespace, a control or a format character (``tool_name_problem``): no tool has it."""
    if "*" in names:
        raise ValueError(WILDCARD_TOOL)
    for name in names:
        problem = tool_name_problem(name, "this key would govern no tool") if isinstance(name, str) else None
        if problem is not None:  # the tool meant is left to the default
            raise ValueError(problem)
        if isinstance(name, str) and has_glob_chars(name):
            raise ValueError(
                f"{literal(name)}: `*` and `?` are not wildcards in a tool name ({_MCP_NAMES}); this key would "
                "govern only a tool literally named that, not the tools it seems to match: name each tool, or put "
                f"a condition on `tool` in `all_tools` (such as {_json_condition(name)})"
            )


def check_hide_names(names: Any) -> None:
    """A `hide` entry is a tool name, or ``"*"`` for every tool; `*` or `?` within a name is no
    wildcard (`"exec*"` would hide only a tool literally called that, leaving `exec_cmd` visible)."""
    for name in names:
        problem = tool_name_problem(name, "this entry would hide no tool") if isinstance(name, str) else None
        if problem is not None:  # the tool meant stays visible
            raise ValueError(problem)
        if isinstance(name, str) and name != "*" and has_glob_chars(name):
            raise ValueError(
                f"{literal(name)}: `*` and `?` are not wildcards in a tool name ({_MCP_NAMES}); this entry "
                "would hide only a tool literally named that, not the tools it seems to match: name each tool "
                'to hide ("*" alone hides every tool)'
            )


def check_data(data: Any) -> None:
    """Refuse anything that is not the canonical dump (``Policy.to_dict()``) of a valid policy
    instead of guessing: a typo'd key, an unknown action or a bare seed ``rate_limit`` would
    otherwise be ignored. ValueError naming the spot (RecursionError past any sane nesting)."""
    _shape(isinstance(data, dict), "(document)", "a policy must be an object")
    _shape(set(data) <= TOP_KEYS, "(document)", f"unexpected keys {sorted(set(data) - TOP_KEYS)}")
    _shape(data.get("version") == "1", "version", 'must be "1"')
    _shape(data.get("package") is None or isinstance(data["package"], str), "package", "must be a string")
    _shape(data.get("default") in ("allow", "deny"), "default", "must be allow or deny")
    for key in ("descriptions", "tool_descriptions"):
        v = data.get(key, {})
        _shape(
            isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
            key,
            "must map names to strings",
        )
    hide = data.get("hide", [])
    _shape(isinstance(hide, list) and all(isinstance(h, str) for h in hide), "hide", "must be a list of names")
    _rule(check_hide_names, "hide", hide)
    top = data.get("all_tools", {})
    _shape(
        isinstance(top, dict) and set(top) <= ALL_TOOLS_KEYS,
        "all_tools",
        "must be {limits, deny_if, require, allow_if: [...]}",
    )
    for kind in sorted(ALL_TOOLS_KEYS):
        _shape(isinstance(top.get(kind, []), list), f"all_tools.{kind}", "must be a list")
    for i, lim in enumerate(top.get("limits", [])):
        _check_limit(lim, f"all_tools.limits[{i}]")
    for kind in ("deny_if", "require", "allow_if"):
        for i, c in enumerate(top.get(kind, [])):
            _check_condition(c, f"all_tools.{kind}[{i}]")
    tools = data.get("tools", {})
    _shape(isinstance(tools, dict), "tools", "must be an object")
    _rule(check_tool_names, "tools", tools)
    for name, t in tools.items():
        _check_tool(t, f"tools.{name}")
    problem = surrogate_problem(data)
    if problem is not None:
        raise ValueError(problem)
