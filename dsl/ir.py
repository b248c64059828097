"""The typed intermediate representation of a .plr file (frozen pydantic models with spans).

One ``Module`` per file, as lowered from the parse tree, before imports and selectors are
resolved. ``Policy`` is deliberately not a name here: that is the compiled JSON document
(``dsl.policy.Policy``); the IR is the program that compiles into it.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict

Risk = Literal["read", "write", "destructive", "execute"]
RISKS: tuple[Risk, ...] = ("read", "write", "destructive", "execute")
Scope = Literal["session", "identity", "global"]
# Value functions: string to string, applied to a path's value before it is compared (a value
# that is not a string makes the comparison false). `count` and `len` give numbers, outermost.
StringFn = Literal["lower", "upper", "trim", "normpath", "basename", "dirname"]
STRING_FNS: tuple[StringFn, ...] = ("lower", "upper", "trim", "normpath", "basename", "dirname")
CondOp = Literal[
    "eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in",
    "contains", "starts_with", "ends_with", "regex", "exists", "missing",
]  # fmt: skip


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Span:
    """Where a node is written: file, 1-based line and column, and where it ends (0: unknown).

    A small immutable value, not a pydantic model: lowering makes one per node (about nine per
    rule) from positions the lexer already produced, so validating each one was a fifth of the
    time spent lowering, with nothing to catch. Equal, hashable and picklable like the model it
    replaces; fields of the IR typed ``Span`` check the type only."""

    __slots__ = ("file", "line", "col", "end_line", "end_col")
    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __init__(self, file: str, line: int, col: int, end_line: int = 0, end_col: int = 0) -> None:
        setter = object.__setattr__
        setter(self, "file", file)
        setter(self, "line", line)
        setter(self, "col", col)
        setter(self, "end_line", end_line)
        setter(self, "end_col", end_col)

    def _key(self) -> tuple[str, int, int, int, int]:
        return (self.file, self.line, self.col, self.end_line, self.end_col)

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"Span is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"Span is immutable: cannot delete {name}")

    def __eq__(self, other: object) -> bool:
        return self._key() == other._key() if isinstance(other, Span) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Span(file={self.file!r}, line={self.line}, col={self.col}, end_line={self.end_line}, end_col={self.end_col})"

    def __reduce__(self) -> tuple[type[Span], tuple[str, int, int, int, int]]:
        return (Span, self._key())

    def short(self) -> str:
        return f"{self.file}:{self.line}"


NOSPAN = Span(file="<generated>", line=0, col=0)


# --- conditions -------------------------------------------------------------------------


class Path(Node):
    root: str
    steps: tuple[Union[str, int], ...] = ()
    span: Span = NOSPAN

    def text(self) -> str:
        out = self.root
        for s in self.steps:
            if isinstance(s, int):
                out += f"[{s}]"
            elif _is_name(s):
                out += f".{s}"
            else:
                import json

                out += f"[{json.dumps(s, ensure_ascii=False)}]"
        return out


def _is_name(s: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", s) is not None


class Ref(Node):
    """A `let` or `import data` name standing for its value (``admins``, ``teams.oncall``).

    Only in the program as written: resolution (``dsl.names``) replaces every one by its value,
    so the checks, the compiler and the JSON never see a name."""

    name: str
    steps: tuple[Union[str, int], ...] = ()
    span: Span = NOSPAN

    def text(self) -> str:
        return Path(root=self.name, steps=self.steps).text()


def has_refs(value: Any) -> bool:
    """Whether a literal as written holds a name (a ``Ref``) anywhere."""
    if isinstance(value, Ref):
        return True
    return isinstance(value, (list, tuple)) and any(has_refs(v) for v in value)


class Compare(Node):
    """A leaf: ``[fn(][fns(]path[)][)] op value``. ``exists``/``missing`` have no value; before
    names are resolved the value (or an item of a list value) may be a ``Ref``.

    ``fns`` are the value functions in the order they apply (``lower(trim(p))`` is
    ``("trim", "lower")``); ``fn`` (``count``/``len``) applies last."""

    path: Path
    op: CondOp
    value: Any = None
    fn: Literal["count", "len"] | None = None
    fns: tuple[StringFn, ...] = ()
    span: Span = NOSPAN

    def chain(self) -> tuple[str, ...]:
        """Every function applied, innermost first (``fns`` then ``fn``)."""
        return (*self.fns, self.fn) if self.fn is not None else self.fns

    def lhs_text(self) -> str:
        """The left side as written: ``len(trim(args.note))``."""
        text = self.path.text()
        for f in self.chain():
            text = f"{f}({text})"
        return text


class And(Node):
    items: tuple["Condition", ...]
    block: bool = False  # written as a `{ ... }` block (one expression per line)
    span: Span = NOSPAN


class Or(Node):
    items: tuple["Condition", ...]
    span: Span = NOSPAN


class Not(Node):
    item: "Condition"
    span: Span = NOSPAN


class Quantifier(Node):
    """``every NAME in PATH { ... }`` / ``some ...``: the block (an ``And``) for the items of a
    list, each bound to NAME; false when PATH is missing or not a list."""

    kind: Literal["every", "some"]
    var: str
    path: Path
    body: "Condition"
    span: Span = NOSPAN
    var_span: Span = NOSPAN

    def head(self) -> str:
        """``every p in args.paths``, as written before the block."""
        return f"{self.kind} {self.var} in {self.path.text()}"


class Call(Node):
    """``name(path, ...)``: a `def` predicate used as a condition. Only in the program as
    written: resolution inlines the predicate's block with each parameter replaced by its path."""

    name: str
    args: tuple[Path, ...] = ()
    span: Span = NOSPAN
    name_span: Span = NOSPAN

    def text(self) -> str:
        return f"{self.name}({', '.join(a.text() for a in self.args)})"


Condition = Union[Compare, And, Or, Not, Quantifier, Call]


def is_approved(c: Condition) -> bool:
    """True for the condition `approved` itself (it compiles to the tool's approval action)."""
    return (
        isinstance(c, Compare)
        and c.path.root == "approved"
        and not c.path.steps
        and c.op == "eq"
        and c.value is True
        and c.fn is None
        and not c.fns
    )


# --- selectors and rules ----------------------------------------------------------------


class Selector(Node):
    kind: Literal["tool", "list", "glob", "class", "all"]
    names: tuple[str, ...] = ()
    pattern: str | None = None
    risk: Risk | None = None
    span: Span = NOSPAN


CalendarUnit = Literal["minute", "hour", "day", "week", "month"]
# a calendar window's nominal length (the longest it can be: a month has at most 31 days)
CALENDAR_SECONDS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 31 * 86400}


class Limit(Node):
    max: int | float  # a whole count, or (spend cap, ``of``) an amount
    window: int  # seconds (for a calendar window: its nominal length)
    per: Scope = "session"
    of: Path | None = None  # spend cap: the numeric argument added up instead of counting calls
    calendar: CalendarUnit | None = None  # windows aligned to calendar boundaries
    tz: str | None = None  # the calendar's IANA time zone (None: UTC)
    refund: bool = False  # `refund on error`: give the quota back when the upstream fails
    span: Span = NOSPAN


class Rule(Node):
    kind: Literal["allow", "deny", "hide", "limit"]
    selector: Selector
    guard: Literal["always", "if", "unless"] = "always"
    condition: Condition | None = None
    reason: str | None = None
    limit: Limit | None = None
    description: str | None = None
    span: Span = NOSPAN

    def source(self) -> str:
        return self.span.short()


# --- catalogues -------------------------------------------------------------------------


class CatalogueTool(Node):
    name: str
    risk: Risk
    description: str | None = None
    span: Span = NOSPAN


class Catalogue(Node):
    server: str
    tools: tuple[CatalogueTool, ...] = ()
    span: Span = NOSPAN


# --- tests ------------------------------------------------------------------------------


class CallStep(Node):
    tool: str
    args: dict[str, Any] | None = None
    approved: bool = False
    effect: Literal["allow", "deny", "approval_required"]
    code: str | None = None
    reason: str | None = None
    span: Span = NOSPAN


class ContextStep(Node):
    key: Literal["identity", "session", "server"]
    value: str
    as_: bool = False
    span: Span = NOSPAN


class RepeatStep(Node):
    times: int
    steps: tuple["Step", ...]
    span: Span = NOSPAN


class AfterStep(Node):
    seconds: int
    text: str
    span: Span = NOSPAN


class VisibleStep(Node):
    tools: tuple[str, ...]
    span: Span = NOSPAN


Step = Union[CallStep, ContextStep, RepeatStep, AfterStep, VisibleStep]


class TestCase(Node):
    __test__ = False  # not a pytest class
    name: str
    steps: tuple[Step, ...]
    span: Span = NOSPAN


# --- files ------------------------------------------------------------------------------


class Import(Node):
    path: str
    span: Span = NOSPAN


class Default(Node):
    effect: Literal["allow", "deny"]
    span: Span = NOSPAN


class Package(Node):
    name: str
    span: Span = NOSPAN


class DataImport(Node):
    """``import data "FILE.json" as NAME``: the file's values, read at compile time."""

    path: str
    name: str
    span: Span = NOSPAN  # the file's string
    name_span: Span = NOSPAN


class Let(Node):
    """``let NAME = LITERAL``: a named literal (its value may name other constants)."""

    name: str
    value: Any
    span: Span = NOSPAN
    name_span: Span = NOSPAN


class Def(Node):
    """``def NAME(PARAMS) { CONDITIONS }``: a named condition block whose parameters stand for
    the paths it is called with."""

    name: str
    params: tuple[str, ...] = ()
    body: "Condition"  # an And block
    span: Span = NOSPAN
    name_span: Span = NOSPAN
    param_spans: tuple[Span, ...] = ()


Statement = Union[Package, Import, DataImport, Let, Def, Default, Catalogue, Rule, TestCase]


class Module(Node):
    """One .plr file: its statements in source order."""

    file: str  # the name used in messages and `rule` fields
    path: str  # absolute path, or "" for text not read from disk
    statements: tuple[Statement, ...] = ()

    def of(self, kind: type) -> list[Any]:
        return [s for s in self.statements if isinstance(s, kind)]

    @property
    def rules(self) -> list[Rule]:
        return self.of(Rule)

    @property
    def tests(self) -> list[TestCase]:
        return self.of(TestCase)

    @property
    def catalogues(self) -> list[Catalogue]:
        return self.of(Catalogue)

    @property
    def imports(self) -> list[Import]:
        return self.of(Import)

    @property
    def data_imports(self) -> list[DataImport]:
        return self.of(DataImport)

    @property
    def lets(self) -> list[Let]:
        return self.of(Let)

    @property
    def defs(self) -> list[Def]:
        return self.of(Def)


for _m in (And, Or, Not, Quantifier, Def, RepeatStep):
    _m.model_rebuild()
