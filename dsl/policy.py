"""The compiled policy document (PolicyLayer v1 + plr extensions) as pydantic models.

This is the contract between the compiler and everything that runs a policy: the loader
rejects anything it does not understand (``extra="forbid"``), names the JSON path of every
problem, and never returns a half-valid policy. ``to_json`` is the one canonical dump.
The rules a type cannot express (op and value, RE2 patterns, literal values, lone surrogates)
are ``dsl.validate``'s, which ``Engine.from_data`` enforces on the canonical dump too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import PlrError
from .reading import read_policy_bytes
from .validate import (
    check_binding,
    check_json_value,
    check_limit_extensions,
    check_leaf,
    check_scopes,
    check_hide_names,
    check_tool_names,
    check_window_type,
    DuplicateKey,
    fn_chain,
    locate_duplicate,
    surrogate_problem,
    unique_keys,
)
from .vocab import (
    LIST_OPS,
    MAX_LIMIT_COUNT,
    MAX_WINDOW_SECONDS,
    OPS,
    PATH_ROOTS,
    STRING_OPS,
    VALUELESS_OPS,
    ANY_ROOT,
    json_type,
    parse_path,
)

__all__ = [
    "OPS", "PATH_ROOTS", "LIST_OPS", "STRING_OPS", "VALUELESS_OPS", "parse_path",
    "Policy", "Tool", "Limit", "AllTools", "Leaf", "All", "AnyOf", "Not", "Every", "Some", "Condition",
    "load_policy", "canonical_json", "json_schema",
]  # fmt: skip

Op = Literal[
    "eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in",
    "contains", "starts_with", "ends_with", "regex", "exists", "missing",
]  # fmt: skip
Scope = Literal["session", "identity", "global"]
FnName = Literal["count", "len", "lower", "upper", "trim", "normpath", "basename", "dirname"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Leaf(BaseModel):
    """``{"path": ..., "op": ..., "value": ...}``: compare the value at a path."""

    model_config = _STRICT
    path: str
    op: Op
    value: Any = None
    fn: Union[FnName, list[FnName], None] = Field(
        default=None,
        description="a function applied to the value before `op`, or a list of 2 to 8 applied in order "
        "(`count` alone; `len` last; lower/upper/trim/normpath/basename/dirname take a string)",
    )
    reason: str | None = None
    rule: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        parse_path(v, ANY_ROOT)  # the syntax; which roots are in scope is the tool's check
        return v

    @field_validator("value")
    @classmethod
    def _value(cls, v: Any) -> Any:
        return check_json_value(v)

    @field_validator("fn", mode="before")
    @classmethod
    def _fn(cls, v: Any) -> Any:
        fn_chain(v)  # one message for an unknown name or a bad order, not one per union member
        return v

    @model_validator(mode="after")
    def _op_value(self) -> "Leaf":
        check_leaf(self.op, self.value, "value" in self.model_fields_set, self.fn)
        return self


class All(BaseModel):
    model_config = _STRICT
    all: list["Condition"]
    reason: str | None = None
    rule: str | None = None


class AnyOf(BaseModel):
    model_config = _STRICT
    any: list["Condition"]
    reason: str | None = None
    rule: str | None = None


class Not(BaseModel):
    not_: "Condition" = Field(alias="not")
    reason: str | None = None
    rule: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Quantifier(BaseModel):
    """``{"every"|"some": NAME, "in": PATH, "where": CONDITION}``: the condition for the items
    of the list at PATH, each bound to NAME (paths in ``where`` may start with it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    in_: str = Field(alias="in", description="the path of a list; not a list (or missing): the quantifier is false")
    where: "Condition" = Field(description="the condition for an item; its paths may start with the bound name")
    reason: str | None = None
    rule: str | None = None

    @field_validator("in_")
    @classmethod
    def _in(cls, v: str) -> str:
        parse_path(v, ANY_ROOT)
        return v

    @property
    def var(self) -> str:
        return getattr(self, self.kind)

    @property
    def kind(self) -> str:
        return "every" if isinstance(self, Every) else "some"


class Every(_Quantifier):
    every: str = Field(description="the name each item is bound to: holds when every item satisfies `where`")

    @field_validator("every")
    @classmethod
    def _name(cls, v: str) -> str:
        check_binding(v, ())
        return v


class Some(_Quantifier):
    some: str = Field(description="the name each item is bound to: holds when some item satisfies `where`")

    @field_validator("some")
    @classmethod
    def _name(cls, v: str) -> str:
        check_binding(v, ())
        return v


def _condition_kind(v: Any) -> str | None:
    if isinstance(v, BaseModel):
        return {Leaf: "leaf", All: "all", AnyOf: "any", Not: "not", Every: "every", Some: "some"}.get(type(v))
    if isinstance(v, dict):
        for key in ("all", "any", "not", "every", "some"):
            if key in v:
                return key
        return "leaf"
    return None


Condition = Annotated[
    Union[
        Annotated[Leaf, Tag("leaf")],
        Annotated[All, Tag("all")],
        Annotated[AnyOf, Tag("any")],
        Annotated[Not, Tag("not")],
        Annotated[Every, Tag("every")],
        Annotated[Some, Tag("some")],
    ],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message=(
            "a condition must be an object: a leaf {path, op, value}, {all|any|not: ...} or "
            "{every|some: NAME, in: PATH, where: ...}"
        ),
    ),
]
_TAGS = {"leaf", "all", "any", "not", "every", "some"}


def _check_entry_scopes(entry: Any) -> None:
    """Paths of a tool's (or of all_tools') conditions start at a root or at a bound name."""
    for kind in ("require", "deny_if", "allow_if"):
        for i, c in enumerate(getattr(entry, kind, ())):
            check_scopes(condition_dict(c), f"{kind}[{i}]")
    for i, lim in enumerate(entry.limits):
        if lim.if_ is not None:
            check_scopes(condition_dict(lim.if_), f"limits[{i}].if")


class Limit(BaseModel):
    """A sliding-window quota: at most ``max`` allowed calls per ``window`` seconds per scope;
    with ``if``, it applies (checks and counts) only to calls for which that condition holds.

    plr extensions (additive, absent in PolicyLayer v1): ``of`` makes it a spend cap (the
    argument at that path is added up, ``max`` is an amount); ``calendar`` aligns the window to
    calendar periods (``window`` is then the period's nominal length) in UTC or ``tz``;
    ``refund: "error"`` gives the count (or amount) back when the upstream answers with an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    max: Union[StrictInt, StrictFloat] = Field(gt=0, le=MAX_LIMIT_COUNT)
    window: float = Field(gt=0, le=MAX_WINDOW_SECONDS)
    per: Scope = "session"
    if_: Optional["Condition"] = Field(
        default=None, alias="if", description="the limit applies (checks and counts) only to calls for which this holds"
    )
    of: str | None = Field(
        default=None, description="spend cap: the numeric argument (`args.amount`) added up instead of counting calls"
    )
    calendar: Literal["minute", "hour", "day", "week", "month"] | None = Field(
        default=None, description="the window resets at calendar boundaries (UTC unless `tz`) instead of sliding"
    )
    tz: str | None = Field(default=None, description="the calendar window's IANA time zone (default UTC)")
    refund: Literal["error"] | None = Field(
        default=None, description='"error": the count (or amount) is given back when the upstream answers with an error'
    )
    rule: str | None = None

    @model_validator(mode="after")
    def _extensions(self) -> "Limit":
        problem = check_limit_extensions(self.max, self.of, self.calendar, self.tz)
        if problem is not None:
            raise ValueError(problem)
        return self

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v: Any) -> Any:
        return check_window_type(v)

    @field_validator("window", mode="after")
    @classmethod
    def _window_int(cls, v: float) -> float:
        return int(v) if float(v).is_integer() else v


class AllTools(BaseModel):
    """What applies to every call: quotas, and (plr extensions) conditions. ``deny_if`` and
    ``require`` bind every call that reaches those steps, named tool or not; ``allow_if`` makes a
    tool not under ``tools`` callable under ``default: deny`` when one of them holds."""

    model_config = _STRICT
    limits: list[Limit] = []
    deny_if: list["Condition"] = Field(default=[], description="any that holds denies every call that reaches it")
    require: list["Condition"] = Field(default=[], description="all must hold for every call that reaches them")
    allow_if: list["Condition"] = Field(
        default=[], description="default deny: a tool not under `tools` is callable when one of them holds"
    )

    @model_validator(mode="after")
    def _scopes(self) -> "AllTools":
        _check_entry_scopes(self)
        return self


class Tool(BaseModel):
    """One governed tool; ``{}`` allows it."""

    model_config = _STRICT
    action: Literal["allow", "deny", "require_approval"] = "allow"
    reason: str | None = None
    require: list[Condition] = []
    deny_if: list[Condition] = []
    limits: list[Limit] = []
    rule: str | None = None

    @model_validator(mode="after")
    def _scopes(self) -> "Tool":
        _check_entry_scopes(self)
        return self

    @model_validator(mode="before")
    @classmethod
    def _seed_rate_limit(cls, data: Any) -> Any:
        """The seed's ``"rate_limit": {max, window}`` is read as one more limit."""
        if isinstance(data, dict) and "rate_limit" in data:
            data = dict(data)
            rl = data.pop("rate_limit")
            limits = data.get("limits")
            if limits is not None and not isinstance(limits, list):
                raise ValueError("`limits` must be a list (it is merged with `rate_limit`)")
            data["limits"] = [*(limits or []), rl]
        return data


for _model in (Limit, AllTools):
    _model.model_rebuild()


class Policy(BaseModel):
    """A whole compiled policy document."""

    model_config = _STRICT
    version: Literal["1"]
    package: str | None = None
    default: Literal["allow", "deny"]
    hide: list[str] = []
    all_tools: AllTools = AllTools()
    tools: dict[str, Tool] = {}
    descriptions: dict[str, str] = Field(
        default={}, description="plr extension: a rule's `description`, by its `rule` (source) name"
    )
    tool_descriptions: dict[str, str] = Field(
        default={}, description="plr extension: a catalogue entry's `description`, by tool name"
    )

    @field_validator("tools", mode="before")
    @classmethod
    def _tool_names(cls, v: Any) -> Any:
        if isinstance(v, dict):
            check_tool_names(v)
        return v

    @field_validator("hide", mode="before")
    @classmethod
    def _hide_names(cls, v: Any) -> Any:
        if isinstance(v, list):
            check_hide_names(v)
        return v

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if v != "1":
            raise ValueError(f'unsupported policy version {json.dumps(v)}; plr reads version "1"')
        return v

    def to_dict(self, source: bool = True) -> dict[str, Any]:
        return _policy_dict(self, source)

    def to_json(self, source: bool = True) -> str:
        """Canonical text: sorted keys, 2-space indent, trailing newline."""
        return canonical_json(self.to_dict(source))

    def strip_source(self) -> "Policy":
        return Policy.model_validate(self.to_dict(source=False))


# --- canonical dump -----------------------------------------------------------------------


def canonical_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _meta(d: dict[str, Any], m: Any, source: bool) -> None:
    reason = getattr(m, "reason", None)
    if reason is not None:
        d["reason"] = reason
    if source and m.rule is not None:
        d["rule"] = m.rule


def condition_dict(c: Any, source: bool = True) -> dict[str, Any]:
    d: dict[str, Any]
    if isinstance(c, Leaf):
        d = {"path": c.path, "op": c.op}
        if c.op not in VALUELESS_OPS:
            d["value"] = c.value
        if c.fn is not None:
            d["fn"] = list(c.fn) if isinstance(c.fn, list) else c.fn
    elif isinstance(c, All):
        d = {"all": [condition_dict(x, source) for x in c.all]}
    elif isinstance(c, AnyOf):
        d = {"any": [condition_dict(x, source) for x in c.any]}
    elif isinstance(c, (Every, Some)):
        d = {c.kind: c.var, "in": c.in_, "where": condition_dict(c.where, source)}
    else:
        d = {"not": condition_dict(c.not_, source)}
    _meta(d, c, source)
    return d


def limit_dict(lim: Limit, source: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {"max": lim.max, "window": lim.window, "per": lim.per}
    if lim.if_ is not None:
        d["if"] = condition_dict(lim.if_, source)
    for key in ("of", "calendar", "tz", "refund"):
        value = getattr(lim, key)
        if value is not None:
            d[key] = value
    _meta(d, lim, source)
    return d



def tool_dict(t: Tool, source: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if t.action != "allow":
        d["action"] = t.action
    if t.require:
        d["require"] = [condition_dict(c, source) for c in t.require]
    if t.deny_if:
        d["deny_if"] = [condition_dict(c, source) for c in t.deny_if]
    if t.limits:
        d["limits"] = [limit_dict(x, source) for x in t.limits]
    _meta(d, t, source)
    return d


def _policy_dict(p: Policy, source: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"version": p.version, "default": p.default}
    if p.package is not None:
        d["package"] = p.package
    if p.hide:
        d["hide"] = list(p.hide)
    top: dict[str, Any] = {}
    if p.all_tools.limits:
        top["limits"] = [limit_dict(x, source) for x in p.all_tools.limits]
    for kind in ("deny_if", "require", "allow_if"):
        if getattr(p.all_tools, kind):
            top[kind] = [condition_dict(c, source) for c in getattr(p.all_tools, kind)]
    if top:
        d["all_tools"] = top
    d["tools"] = {name: tool_dict(t, source) for name, t in sorted(p.tools.items())}
    if p.descriptions and source:  # keyed by rule (source) names, which --no-source drops
        d["descriptions"] = dict(sorted(p.descriptions.items()))
    if p.tool_descriptions:
        d["tool_descriptions"] = dict(sorted(p.tool_descriptions.items()))
    return d


# --- loading ------------------------------------------------------------------------------


def _json_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        nxt = loc[i + 1] if i + 1 < len(loc) else None
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "leaf" or (part in _TAGS and nxt == part):
            continue  # the discriminator's tag, not a key of the document
        elif isinstance(part, str) and part.startswith(("function-", "tagged-union[")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", ""))
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "greater_than":
        return f"must be > {_num(ctx.get('gt'))}"
    if kind == "greater_than_equal":
        return f"must be >= {_num(ctx.get('ge'))}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got {json.dumps(err.get('input'), default=str)[:60]}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):  # never a class name the user never wrote
        return f"must be an object, got {_json_type(err.get('input'))}"
    if kind == "list_type":
        return f"must be a list, got {_json_type(err.get('input'))}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg[:1].lower() + msg[1:]


def _json_type(v: Any) -> str:
    kind = json_type(v)
    if kind == "string":
        return f"the string {json.dumps(v)[:40]}"
    return kind if kind == "null" else ("an " if kind == "object" else "a ") + kind


def _num(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def validation_messages(e: ValidationError) -> list[str]:
    seen: list[str] = []
    import re

    for err in e.errors():
        where, message = _json_path(tuple(err["loc"])), _message(err)
        if re.match(r"(require|deny_if|allow_if|limits)\[\d+\]", message):  # a whole-entry check names the spot inside
            line = f"{where}.{message}"
        else:
            line = f"{where}: {message}"
        if line not in seen:
            seen.append(line)
    return seen


def load_policy(src: str | bytes | Path | dict[str, Any], name: str | None = None) -> Policy:
    """Load a policy from a path, JSON text or a parsed dict; raise PlrError naming JSON paths.

    A ``Path``, or a ``str`` given without ``name``, that does not start like JSON is a file to
    read; ``bytes``, and a ``str`` given with a ``name`` (text someone read: a file's contents,
    a fetched document), are always the document itself, never a path to follow.
    """
    label = name or "<policy>"
    data: Any
    if isinstance(src, dict):
        data = src
    else:
        if isinstance(src, Path) or (
            isinstance(src, str) and name is None and not src.lstrip().startswith(("{", "[")) and len(src) < 4096
        ):
            path = Path(src)
            label = name or str(src)
            try:
                raw = read_policy_bytes(path)  # a regular file of a sane size: a FIFO is never waited on
            except (OSError, ValueError) as e:
                raise PlrError.at(f"cannot read policy: {getattr(e, 'strerror', None) or e}", label) from None
        else:
            raw = src.encode() if isinstance(src, str) else src
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PlrError.at(f"policy is not UTF-8 text (byte {e.start})", label) from None
        try:
            data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=unique_keys)
        except DuplicateKey as e:
            from .errors import line_of

            d = locate_duplicate(text, e)
            raise PlrError.at(str(d), label, d.line, d.col, line_of(text, d.line), d.width) from None
        except json.JSONDecodeError as e:
            from .errors import line_of

            if _looks_like_yaml(text):
                raise PlrError.at(_FOREIGN_YAML, label) from None
            raise PlrError.at(f"invalid JSON: {e.msg}", label, e.lineno, e.colno, line_of(text, e.lineno)) from None
        except (ValueError, RecursionError) as e:
            raise PlrError.at(f"invalid JSON: {e}", label) from None
    if not isinstance(data, dict):
        raise PlrError.at("a policy must be a JSON object", label)
    problem = surrogate_problem(data) or foreign_format(data)
    if problem is not None:
        raise PlrError.at(problem, label)
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        from .errors import Diagnostic

        raise PlrError([Diagnostic("error", m, label) for m in validation_messages(e)]) from None
    except RecursionError:
        raise PlrError.at("policy is nested too deeply", label) from None


def policy_file_diagnostics(path: str) -> list[Any]:  # list[Diagnostic]
    """What `plr check` reports for a compiled JSON policy: every error the loader finds (the
    same loader `plr eval` and `plr proxy` use, so a file that passes here loads there), each
    at the line and column of the value it names, with a caret, as a .plr error is. No
    warnings: those are about rules as written, and a JSON policy is checked as it loads."""
    from .errors import Diagnostic

    try:
        raw = read_policy_bytes(Path(path))
    except (OSError, ValueError) as e:
        return [Diagnostic("error", f"cannot read policy: {getattr(e, 'strerror', None) or e}", path)]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return [Diagnostic("error", f"policy is not UTF-8 text (byte {e.start})", path)]
    try:
        load_policy(text, name=path)
    except PlrError as e:
        return [_placed(d, text) for d in e.diagnostics]
    return []


def _placed(d: Any, text: str) -> Any:
    """``d`` (a loader error naming a JSON path: `tools.x.deny_if[0]: ...`) at the line and
    column of that value in ``text``: a pattern's error at the pattern, a backspace at its escape."""
    from .errors import Diagnostic, line_of
    from .validate import json_value_offset, locate_json_path

    if d.line or ": " not in d.message:
        return d
    where = d.message.split(": ", 1)[0]
    at = None
    if "backspace (U+0008)" in d.message:
        start = json_value_offset(text, where + ".value")
        at = _backspace_escape(text, start) if start is not None else None
    if at is None and "invalid regular expression" in d.message:
        at = locate_json_path(text, where + ".value")
    if at is None:
        at = locate_json_path(text, where)
    if at is None:
        return d
    line, col, width = at
    return Diagnostic(d.severity, d.message, d.file, line, col, line_of(text, line), width)


def _backspace_escape(text: str, start: int) -> tuple[int, int, int] | None:
    """The place of the first `\\b` (or `\\u0008`) escape in the JSON string at ``start``, as a
    .plr pattern's error points at its escape; None when it holds no backspace so written."""
    import re

    for m in re.compile(r'\\(?:u[0-9A-Fa-f]{4}|[^u])|"').finditer(text, start + 1):
        if m.group() == '"':
            return None
        if m.group() == "\\b" or m.group().lower() == "\\u0008":
            at = m.start()
            line = text.count("\n", 0, at) + 1
            return line, at - text.rfind("\n", 0, at), len(m.group())
    return None


_MIGRATE = "convert it with `plr import intercept FILE -o policy.plr`, or rewrite it as a .plr policy (docs/migrate.md)"
_FOREIGN_YAML = (
    "this is YAML, not a JSON policy: plr loads compiled JSON policies (and compiles .plr files); "
    "an Intercept policy in YAML cannot be loaded as is: " + _MIGRATE
)
_INTERCEPT_RULE_KEYS = frozenset({"rules", "conditions", "on_deny", "rate_limit", "state"})


def _looks_like_yaml(text: str) -> bool:
    import re

    return re.search(r"^(version|default|tools|hide|description)\s*:", text, re.M) is not None


def foreign_format(data: dict[str, Any]) -> str | None:
    """One line naming a policy format that is not plr's (Intercept's `rules[]` with `conditions`,
    `on_deny`, `rate_limit: "5/hour"`), instead of a page of "unknown field" about it."""
    tools = data.get("tools")
    if not isinstance(tools, dict):
        return None
    for name, entry in tools.items():
        if not isinstance(entry, dict):
            continue
        found = sorted(_INTERCEPT_RULE_KEYS & set(entry))
        if "rate_limit" in found and isinstance(entry.get("rate_limit"), dict):
            found.remove("rate_limit")  # the seed's own {max, window} form: plr reads it
        if found:
            shown = ", ".join(f"`{k}`" for k in found)
            return (
                f"tools.{name} uses {shown}: this is an Intercept policy (rules[] with conditions, on_deny, "
                f'rate_limit "N/window"), not a compiled plr / PolicyLayer v1 policy; plr cannot load it as is: '
                + _MIGRATE
            )
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "plr policy (PolicyLayer v1 compatible)"
    return schema
