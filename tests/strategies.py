"""Hypothesis strategies: valid .plr programs, and calls shaped to hit their conditions.

``programs()`` draws the text of one .plr file that follows ``grammar/plr.lark`` and passes
the checks (every glob matches a catalogue tool, no ``allow/deny all tools``, no invalid
regex, limits >= 1, ...). It uses every statement and selector form, every condition
operator and combinator, ``count``/``len``, ``{ }`` blocks, every path shape and literals of
every type, with free whitespace, comments and keyword-like argument names.

Literals and argument values are drawn from shared pools so conditions actually hold on
generated calls; ``calls(tool_names)`` draws one call (tool, args, identity, session,
server, approved) and ``advances()`` a clock step that crosses limit windows. Limits are call
counts or spend caps (``to 2.5 of args.amount``, whose calls get amounts from ``AMOUNTS``), over
sliding or calendar windows (``per calendar day "Asia/Kolkata"``), some with ``refund on error``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

RISKS = ("read", "write", "destructive", "execute")
UNITS = ("second", "minute", "hour", "day")
SCOPES = ("session", "identity", "global")
# calendar windows (`per calendar day "Asia/Kolkata"`): UTC, or a zone whose midnight is not UTC's
# (a half-hour offset too); the tests' clock starts on Monday 2024-01-01 00:00 UTC, a boundary of
# every UTC period
CALENDAR_UNITS = ("minute", "hour", "day", "week", "month")
ZONES = ("", "", ' "UTC"', ' "Europe/Paris"', ' "America/New_York"', ' "Asia/Kolkata"')
# spend caps (`to 100 of args.amount`): caps that fractional amounts meet exactly or not at all
# (0.1 + 0.2 is not 0.3), and paths of every shape; calls get amounts from ``AMOUNTS``
CAPS = ("0.3", "0.5", "1", "2.5", "2.5", "3", "10", "100", "12345678901")
AMOUNT_PATHS = ("args.amount", "args.n", "args.x", "args.cost.usd", "args.items[0]", "args.limit", 'args["a b"]')
AMOUNTS: tuple[Any, ...] = (
    0, 0.0, -0.0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.5, 1, 1, 1, 2, 2.5, 3, 10, 99.99, 100, 12345678901, 1e308,
    -1, "5", None, True,
)  # fmt: skip

# Argument names: plain ones plus language keywords, which are not reserved after a dot.
ARG_KEYS = (
    "x", "a", "b", "items", "task_id", "name", "n",
    "limit", "default", "tool", "in", "not", "count", "len", "exists", "true", "null",
    "per", "to", "all", "approved", "reason", "a-b", "_k2",
)  # fmt: skip
# Keys written as `args["..."]` (not NAMEs): spaces, dots, digits, quotes, empty.
ODD_KEYS = ("a b", "a.b", "0", "", 'q"t', "é", "x")
INDICES = (0, 1, 2)

IDENTITIES = (None, "alice", "bob", "ops-bot")
SESSIONS = (None, "s1", "s2")
SERVERS = (None, "srv", "other")

STRINGS = (
    "", "a", "abc", "A", "rm -rf /", "ops-bot", "alice", "s1", "srv", "x/y", "é", "prod",
    "main", "a b", "12", "true", "null",
)  # fmt: skip
INT_TEXTS = ("0", "1", "-1", "2", "3", "5", "10", "-0", "100", "12345678901234567890", "-9007199254740993")
FLOAT_TEXTS = ("2.5", "-0.5", "1.0", "0.0", "1e3", "1E-2", "3.14159", "-2.5e1", "5.0")
NUMBERS: tuple[Any, ...] = tuple(json.loads(t) for t in INT_TEXTS + FLOAT_TEXTS)
REGEXES = (
    "^a", "b$", "(?i)rm\\s+-rf", "[0-9]+", "^$", ".", "a|b", "^ops-", "é", "\\d{2,}",
    "^(?:x|y)/", "^[A-Z]", "\\bprod\\b", "(?s).*",
)  # fmt: skip

PREFIXES = ("fs", "git", "task", "db", "net", "get")
# brackets are literal in names; `*` and `?` are not in them: `tool "a?b"` is an error (no MCP name has one)
SEPARATORS = ("-", "_", ".", "/", "", "-", "[1]")
WORDS = ("read", "write", "list", "get", "delete", "run", "log", "x1", "purge", "tools")
# named by rules beside the generated catalogue: with a catalogue in scope a rule may name only a
# declared tool, so they are declared on purpose in a server block of their own
EXTRA_TOOLS = ("ghost-tool", "legacy_run", "fs-ghost")
UNKNOWN_TOOLS = ("unknown", "fs-zzz", "git-", "", "Task-read", "get")


# Hypothesis validates every new strategy object on its first draw, which costs about as much as
# the draw itself: the pools below are drawn from hundreds of times per program, so each pool's
# strategy is built once. A cached strategy draws exactly what a fresh one would.
_PICKS: dict[tuple[Any, ...], st.SearchStrategy[Any]] = {}
_SCALAR_TYPES = (str, int, float, bool, type(None))


def _pick(pool: Any) -> st.SearchStrategy[Any]:
    """``st.sampled_from(pool)``, built once per pool of plain scalars (keyed by type and repr, so
    ``1``, ``1.0``, ``True`` and ``0.0``, ``-0.0`` stay apart; a tuple of strings, most pools, is
    its own key: no other pool equals it); any other pool (mutable items, which drawn values must
    not share between examples) gets a fresh strategy."""
    try:
        return _PICKS[pool]
    except (KeyError, TypeError):  # not seen, or a list
        pass
    if not all(type(v) in _SCALAR_TYPES for v in pool):
        return st.sampled_from(pool)
    strings = type(pool) is tuple and all(type(v) is str for v in pool)
    key = pool if strings else (type(pool), *((type(v), repr(v)) for v in pool))
    found = _PICKS.get(key)
    if found is None:
        found = _PICKS[key] = st.sampled_from(pool)
    return found


# Names a program may define (`let`) or import (`import data`), by the kind of value they stand
# for; a generated program defines all of them or none (`Names`).
DATA_FILE = Path(__file__).resolve().parent / "data" / "names.json"
DATA_REFS = {
    "string": ("teams.ws", 'teams["odd key"]["é"]', "teams.nested[1][0]"),
    "number": ("teams.limits.max", "teams.limits.ratio"),
    "list": ("teams.oncall", "teams.flags", "teams.nested[0]"),
}
LET_NAMES = {"string": ("ws", "who-1"), "number": ("cap",), "list": ("admins", "mixed"), "any": ("v_any",)}


def _ref_text(draw: Any, kind: str | None) -> str:
    """A name standing for a value of ``kind`` (any kind when None)."""
    kinds = ("string", "number", "list") if kind is None else (kind,)
    k = draw(_pick(kinds))
    pool = DATA_REFS.get(k, ()) + LET_NAMES.get(k, ()) + (LET_NAMES["any"] if kind is None else ())
    return draw(_pick(pool))


def _defs_text(draw: Any) -> list[str]:
    """Predicates of every arity (their blocks use names but call nothing, except `all_ok`,
    which calls `ok1` from inside a quantifier whose name a call may also bind: inlining
    must rename it)."""
    def body(params: tuple[str, ...]) -> str:
        items = [_render(draw, draw(_cond_tree("def", params))) for _ in range(draw(st.integers(1, 2)))]
        sep = draw(_pick(("\n    ", " ")))
        return "{" + sep + sep.join(items) + draw(_pick(("\n", " "))) + "}"

    return [
        f"def ok1(a1) {body(('a1',))}",
        f"def ok2(a1, b1) {body(('a1', 'b1'))}",
        f"def ok0() {body(())}",
        "def all_ok(a1) { every q in a1 { ok1(q) } }",
    ]


def _call_text(draw: Any, bound: tuple[str, ...]) -> str:
    """A call of one of the predicates of ``_defs_text``, with paths (maybe rooted at a bound name)."""
    name = draw(_pick(("ok1", "ok1", "ok2", "ok0", "all_ok")))
    arity = {"ok1": 1, "ok2": 2, "ok0": 0, "all_ok": 1}[name]
    def arg() -> str:  # a context root has no fields, and a predicate may read some of its parameter's
        path = draw(_path(bound))
        return path if path.startswith("args") or path.split(".")[0].split("[")[0] in bound else "args.x"

    return f"{name}(" + ", ".join(arg() for _ in range(arity)) + ")"


def _lets_text(draw: Any) -> list[str]:
    """The statements defining every name of LET_NAMES (and the data import), in any order."""
    data = f"import data {json.dumps(str(DATA_FILE))} as teams"
    ws = _string_text(draw, draw(_pick(("/workspace/", "a", "x/", ""))))
    who = _string_text(draw, draw(_pick(STRINGS)))
    cap = draw(_pick(INT_TEXTS + FLOAT_TEXTS))
    admins = "[" + ", ".join(
        draw(st.lists(_pick(('"alice"', '"bob"', "ws", "teams.ws", '"ops-bot"', '""')), max_size=3))
    ) + "]"
    mixed = _list_text(draw, 1, None, names=False)
    v_any = draw(_pick(("null", "true", "1", '"1"', "teams.flags", "[1, true]", "cap")))
    return [data, f"let ws = {ws}", f"let who-1 = {who}", f"let cap = {cap}", f"let admins = {admins}",
            f"let mixed = {mixed}", f"let v_any = {v_any}"]  # fmt: skip


# --- small pieces -------------------------------------------------------------------------


def _string_text(draw: Any, s: str) -> str:
    return json.dumps(s, ensure_ascii=draw(st.booleans()))


def _ws(draw: Any) -> str:
    """Whitespace between tokens: usually one space, sometimes a newline or more."""
    return draw(_pick((" ", " ", " ", " ", "\n    ", "  ", "\t", " \n", '  # note: deny tool "x"\n    ')))


@functools.cache  # one strategy per arguments (see _pick)
@st.composite
def _name(draw: Any) -> str:
    """A NAME for `package`: identifiers, some of them keywords."""
    return draw(_pick(("acme", "codex_worker", "p1", "default", "allow", "tools", "in", "x-y", "_z")))


@functools.cache  # one strategy per arguments (see _pick)
@st.composite
def _catalogue(draw: Any) -> list[tuple[str, str]]:
    n = draw(st.integers(1, 6))
    names: list[str] = []
    while len(names) < n:
        name = draw(_pick(PREFIXES)) + draw(_pick(SEPARATORS)) + draw(_pick(WORDS))
        if name not in names:
            names.append(name)
    return [(name, draw(_pick(RISKS))) for name in names]


_STRING_LITERALS = _pick(STRINGS) | st.text(st.characters(exclude_categories=("Cs",)), max_size=6)


def _literal_text(draw: Any, kind: str | None = None, depth: int = 0, names: bool = False) -> str:
    """One literal of the language (`kind` forces string/number/list); with ``names``, sometimes
    a `let` or data name standing for one."""
    if names and kind in (None, "string", "number", "list") and draw(st.integers(0, 4)) == 0:
        return _ref_text(draw, kind)
    kind = kind or draw(
        _pick(
            ("string", "string", "number", "number", "bool", "null", "list")
            if depth < 2
            else ("string", "number", "bool", "null")
        )
    )
    if kind == "string":
        s = draw(_STRING_LITERALS)
        return _string_text(draw, s)
    if kind == "number":
        return draw(_pick(INT_TEXTS + FLOAT_TEXTS))
    if kind == "bool":
        return draw(_pick(("true", "false")))
    if kind == "null":
        return "null"
    return _list_text(draw, depth + 1, names=names)


def _list_text(draw: Any, depth: int = 0, scalar_kind: str | None = None, names: bool = False) -> str:
    if names and draw(st.integers(0, 4)) == 0:
        return _ref_text(draw, "list")
    items = [_literal_text(draw, scalar_kind, depth, names) for _ in range(draw(st.integers(0, 4)))]
    trailing = "," if items and draw(st.booleans()) else ""
    sep = draw(_pick((", ", ",", " , ", ",\n  ")))
    return "[" + sep.join(items) + trailing + "]"


@functools.cache  # one strategy per arguments (see _pick)
@st.composite
def _path(draw: Any, bound: tuple[str, ...] = ()) -> str:
    if bound and draw(st.integers(0, 2)):  # mostly the item a quantifier binds: `p`, `p.key`, `p[0]`
        var = draw(_pick(bound))
        return var + draw(_pick(("", "", f".{draw(_pick(ARG_KEYS))}", "[0]", "[1].x", '["a b"]')))
    kind = draw(
        _pick(
            ("key", "key", "key", "nested", "index", "index_key", "odd", "identity", "session", "server", "tool",
             "approved", "args", "args_index")
        )
    )  # fmt: skip
    if kind == "args_index":
        return f"args[{draw(_pick(INDICES))}]"
    key = draw(_pick(ARG_KEYS))
    if kind == "key":
        return f"args.{key}"
    if kind == "nested":
        return f"args.{key}.{draw(_pick(ARG_KEYS))}"
    if kind == "index":
        return f"args.{key}[{draw(_pick(INDICES))}]"
    if kind == "index_key":
        return f"args.{key}[{draw(_pick(INDICES))}].{draw(_pick(ARG_KEYS))}"
    if kind == "odd":
        odd = json.dumps(draw(_pick(ODD_KEYS)))
        tail = draw(_pick(("", f".{key}", "[0]")))
        return f"args[{odd}]{tail}"
    return kind


CMP = ("==", "!=", "<", "<=", ">", ">=")


QUANT_NAMES = ("p", "e", "item", "x-1", "q")


def _quantifier(draw: Any, names: bool, bound: tuple[str, ...]) -> str:
    """`every p in PATH { ... }` / `some ...`, its block using the item (and nesting, a little)."""
    kind = draw(_pick(("every", "some")))
    var = draw(_pick([n for n in QUANT_NAMES if n not in bound]))
    path = draw(_path(bound)) if bound else f"args.{draw(_pick(ARG_KEYS))}"
    inner = (*bound, var)
    items = [_render(draw, draw(_cond_tree(names, inner))) for _ in range(draw(st.integers(1, 3)))]
    sep = draw(_pick(("\n", " ", "\n        ")))
    return f"{kind} {var} in {path} {{{sep}" + sep.join(items) + f"{sep}}}"


@st.composite
def _leaf(draw: Any, names: bool = False, bound: tuple[str, ...] = ()) -> str:
    """One comparison (a leaf of a condition); with ``names``, literals may be names; ``bound``:
    the names quantifiers around it bind, which its paths may start with."""
    if len(bound) < 2 and draw(st.integers(0, 6 if bound else 4)) == 0:
        return _quantifier(draw, names, bound)
    if names is True and draw(st.integers(0, 5)) == 0:  # "def": names, but no calls (inside a predicate)
        return _call_text(draw, bound)
    form = draw(
        _pick(
            (
                "cmp", "cmp", "in", "not_in", "contains", "starts_with", "ends_with", "matches",
                "exists", "missing", "fn", "fn", "approved", "not_approved", "strfn", "strfn",
            )
        )
    )  # fmt: skip
    if form == "approved":
        return "approved"
    if form == "not_approved":
        return "not approved"
    path = draw(_path(bound))
    if form == "cmp":
        if draw(st.integers(0, 3)) == 0:  # literals that Python's == would confuse across types
            lit = draw(_pick(("true", "false", "0", "1", "1.0", "0.0", "null", '"1"', "[1]", "[true]")))
            return f"{path} {draw(_pick(('==', '!=')))} {lit}"
        return f"{path} {draw(_pick(CMP))} {_literal_text(draw, names=names)}"
    if form == "in":
        return f"{path} in {_list_text(draw, names=names)}"
    if form == "not_in":
        word = draw(_pick(("not in", "not  in", "not" + chr(10) + "in")))
        return f"{path} {word} {_list_text(draw, names=names)}"
    if form == "contains":
        kind = draw(_pick(("string", "string", "number", "bool", "null")))
        return f"{path} contains {_literal_text(draw, kind, names=names)}"
    if form in ("starts_with", "ends_with"):
        if names and draw(st.integers(0, 3)) == 0:
            return f"{path} {form} {_ref_text(draw, 'string')}"
        s = draw(_pick(STRINGS[:8]))
        return f"{path} {form} {_string_text(draw, s)}"
    if form == "matches":
        if names and draw(st.integers(0, 3)) == 0:
            return f"{path} matches {draw(_pick(('teams.ws', 'teams.nested[1][0]')))}"  # valid RE2
        return f"{path} matches {_string_text(draw, draw(_pick(REGEXES)))}"
    if form in ("exists", "missing"):
        return f"{path} {form}"
    if form == "strfn":
        return _string_fn_leaf(draw, path, names)
    fn = draw(_pick(("count", "len")))
    lhs = f"{fn}({path})" if draw(st.booleans()) else f"{fn} ( {path} )"
    how = draw(_pick(("cmp", "cmp", "cmp", "in", "not_in")))
    if how == "cmp":
        lit = draw(_pick(("0", "0", "1", "1", "2", "3", "-1", "2.5", "1.0", '"1"', "true", "null")))
        return f"{lhs} {draw(_pick(CMP))} {lit}"
    nums = ", ".join(draw(st.lists(_pick(("0", "1", "2", "3", "1.0", '"2"')), max_size=3)))
    return f"{lhs} {'in' if how == 'in' else 'not in'} [{nums}]"


STRING_FNS = ("lower", "upper", "trim", "normpath", "basename", "dirname")
# what the value functions give and take: paths that normalise to each other, case, spaces
PATHY = (
    "/workspace/", "/workspace", "/workspace/a.txt", "/etc/passwd", "/etc", "..", ".", "/", "", "a", "ABC",
    "abc", " a ", ".env", ".GIT", "x/y", "passwd",
)  # fmt: skip
PATHY_VALUES = (
    "/workspace/../etc/passwd", "//etc/passwd", "/./etc/passwd", "/ETC/PASSWD", "/workspace/a.txt",
    "/workspace//a.txt/", "a/../..", "../x", "", "/", "//", " A ", "\tabc\n", "/a/.GIT/config",
    "/workspace/.env", "x/y/", "é/É", "\u00a0a\u00a0",
)  # fmt: skip


def _string_fn_leaf(draw: Any, path: str, names: bool) -> str:
    """A comparison of value functions of a path: `normpath(args.p) starts_with "/workspace/"`."""
    chain = draw(st.lists(_pick(STRING_FNS), min_size=1, max_size=3))
    lhs = path
    for f in chain:
        lhs = f"{f}({lhs})" if draw(st.integers(0, 4)) else f"{f} ( {lhs} )"
    if draw(st.integers(0, 5)) == 0:
        return f"len({lhs}) {draw(_pick(CMP))} {draw(_pick(('0', '1', '3', '10')))}"
    op = draw(_pick(("==", "!=", "<", "in", "not in", "starts_with", "ends_with", "contains", "matches")))
    if op == "matches":
        return f"{lhs} matches {_string_text(draw, draw(_pick(REGEXES)))}"
    if op in ("in", "not in"):
        items = draw(st.lists(_pick(PATHY), max_size=3))
        return f"{lhs} {op} [" + ", ".join(_string_text(draw, x) for x in items) + "]"
    if names and draw(st.integers(0, 3)) == 0:
        return f"{lhs} {op} {_ref_text(draw, 'string')}"
    lit = _string_text(draw, draw(_pick(PATHY))) if draw(st.integers(0, 7)) else _literal_text(draw)
    if op in ("starts_with", "ends_with") and not lit.startswith('"'):
        lit = '"a"'
    if op == "contains" and lit.startswith("["):  # `contains` takes one value (a list is a check error)
        lit = '"a"'
    return f"{lhs} {op} {lit}"


# A condition as a small tree: ("leaf", text) | ("and"|"or", [c, ...]) | ("not", c).
# Built once per (names, bound): a fresh `st.recursive` on every draw made Hypothesis validate it
# again each time (it reads the lambda's source), most of the cost of generating a program. The
# same strategy draws the same values; it is never drawn inside itself (a quantifier's block has
# one more bound name), which `st.recursive`'s leaf counter needs.
@functools.cache
def _cond_tree(names: bool = False, bound: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    leaves = _leaf(names, bound).map(lambda t: ("leaf", t))
    # half of the conditions are one comparison, so each one's outcome often decides the call
    return leaves | st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.tuples(st.just("and"), st.lists(inner, min_size=2, max_size=3)),
            st.tuples(st.just("or"), st.lists(inner, min_size=2, max_size=3)),
            st.tuples(st.just("not"), inner),
        ),
        max_leaves=5,
    )


def _render(draw: Any, c: Any, parens: bool = False) -> str:
    """Text for a condition tree: parentheses where precedence needs them (and sometimes more)."""
    kind = c[0]
    if kind == "leaf":
        text = c[1]
        # `not approved` is a not_expr: fine anywhere except directly under `not` (`not not approved` is ok too)
        return f"({text})" if parens or draw(st.integers(0, 9)) == 0 else text
    if kind == "not":
        inner = c[1]
        # `not` binds tighter than and/or: a compound operand needs parentheses
        text = "not " + _render(draw, inner, parens=inner[0] in ("and", "or"))
    else:
        parts = []
        for item in c[1]:
            need = kind == "and" and item[0] == "or"
            parts.append(_render(draw, item, parens=need or draw(st.integers(0, 5)) == 0))
        text = f"{_ws(draw)}{kind} ".join(parts)
    return f"({text})" if parens else text


@functools.cache  # one strategy per arguments (see _pick)
@st.composite
def conditions(draw: Any, names: bool = False) -> str:
    """A rule's COND: one expression, or a `{ ... }` block of expressions (AND)."""
    if draw(st.integers(0, 3)) == 0:
        items = [_render(draw, draw(_cond_tree(names))) for _ in range(draw(st.integers(1, 3)))]
        sep = draw(_pick(("\n    ", "\n    ", " ")))
        return "{" + sep + sep.join(items) + draw(_pick(("\n", " "))) + "}"
    return _render(draw, draw(_cond_tree(names)))


# --- selectors, rules, programs -----------------------------------------------------------


def _glob_for(draw: Any, name: str, star: bool = True) -> str:
    """A glob that matches `name` (so it matches at least one catalogue tool); `"*"` alone only
    with ``star`` (`hide`, `deny` and `limit tools "*"` are errors: they mean `all tools`)."""
    forms = ("prefix", "prefix", "qmark", "exact", "star", "suffix") if star else ("prefix", "qmark", "exact", "suffix")
    form = draw(_pick(forms))
    if form == "prefix":
        return name[: draw(st.integers(0 if star else min(1, len(name)), len(name)))] + "*"
    if form == "qmark" and name:
        i = draw(st.integers(0, len(name) - 1))
        return name[:i] + "?" + name[i + 1 :]
    if form == "star":
        return "*"
    if form == "suffix":
        return "*" + name[draw(st.integers(0, len(name) - (0 if star else min(1, len(name))))) :]
    return name


@st.composite
def selectors(draw: Any, catalogue: list[tuple[str, str]], allow_all: bool, star: bool = False) -> str:
    names = [n for n, _ in catalogue]
    pool = names + list(EXTRA_TOOLS)
    forms = ["tool", "tool", "list", "glob", "class"] + (["all"] if allow_all else [])
    form = draw(_pick(forms))
    if form == "tool":
        return f"tool {_string_text(draw, draw(_pick(pool)))}"
    if form == "list":
        chosen = draw(st.lists(_pick(pool), min_size=1, max_size=3))
        trailing = "," if draw(st.booleans()) else ""
        return "tools [" + ", ".join(_string_text(draw, n) for n in chosen) + trailing + "]"
    if form == "glob":
        return f"tools {json.dumps(_glob_for(draw, draw(_pick(names)), star))}"
    if form == "class":
        return f"{draw(_pick(RISKS))} tools"
    return "all tools"


def _reason(draw: Any) -> str:
    if draw(st.integers(0, 3)):
        return ""
    text = draw(_pick(("Destructive: needs approval", "no", 'say "why"', "é\ttab", "")))
    return f"{_ws(draw)}reason {_string_text(draw, text)}"


@st.composite
def rules(draw: Any, catalogue: list[tuple[str, str]], names: bool = False) -> str:
    kind = draw(
        _pick(
            ("allow", "allow", "allow_if", "allow_if", "allow_if", "deny", "deny_if", "deny_if", "deny_unless",
             "deny_unless", "hide", "limit", "limit", "limit")
        )
    )  # fmt: skip
    if kind == "allow":
        return f"allow {draw(selectors(catalogue, False, star=True))}{_reason(draw)}"
    every = draw(st.integers(0, 5)) == 0  # a conditional rule on `all tools`
    if kind == "allow_if":
        return f"allow {draw(selectors(catalogue, every, star=True))}{_ws(draw)}if {draw(conditions(names))}{_reason(draw)}"
    if kind == "deny":
        return f"deny {draw(selectors(catalogue, False))}{_reason(draw)}"
    if kind == "deny_if":
        return f"deny {draw(selectors(catalogue, every))}{_ws(draw)}if {draw(conditions(names))}{_reason(draw)}"
    if kind == "deny_unless":
        cond = "approved" if draw(st.booleans()) else draw(conditions(names))
        return f"deny {draw(selectors(catalogue, every))}{_ws(draw)}unless {cond}{_reason(draw)}"
    if kind == "hide":
        # `hide all tools` hides everything: keep it rare so programs stay interesting
        sel = draw(selectors(catalogue, allow_all=draw(st.integers(0, 14)) == 0))
        return f"hide {sel}{_reason(draw)}"
    return _limit_text(draw, catalogue, names)


# a limit's window (a unit, `90s`, `calendar day "Asia/Kolkata"`) and scope (none, `per identity`)
_WINDOWS = (
    _pick(UNITS)
    | st.builds(lambda n, u: f"{n}{u}", _pick((1, 2, 5, 30, 90)), _pick("smhd"))
    | st.builds(lambda u, z: f"calendar {u}{z}", _pick(CALENDAR_UNITS), _pick(ZONES))
)
_SCOPE_TEXTS = _pick(("", "")) | _pick(SCOPES).map(lambda x: f" per {x}")


def _limit_text(draw: Any, catalogue: list[tuple[str, str]], names: bool, spend: int = 2, refund: int = 3) -> str:
    """A `limit` rule: a call count or (one time in ``spend + 1``) a spend cap, over a sliding
    or calendar window, in a scope, (one time in ``refund + 1``) `refund on error`, maybe `if`."""
    sel = draw(selectors(catalogue, allow_all=draw(st.integers(0, 2)) == 0))
    if draw(st.integers(0, spend)) == 0:  # a spend cap: adds up an argument
        count: Any = draw(_pick(CAPS))
        of = f" of {draw(_pick(AMOUNT_PATHS))}"
    else:
        count, of = draw(_pick((1, 1, 2, 2, 3, 5, 12345678901))), ""
    window = draw(_WINDOWS)
    scope = draw(_SCOPE_TEXTS)
    back = " refund on error" if draw(st.integers(0, refund)) == 0 else ""
    cond = f"{_ws(draw)}if {draw(conditions(names))}" if draw(st.integers(0, 3)) == 0 else ""
    return f"limit {sel} to {count}{of} per {window}{scope}{back}{cond}{_reason(draw)}"


@st.composite
def programs(draw: Any) -> str:
    """The text of one valid .plr file."""
    catalogue = draw(_catalogue())
    statements: list[str] = []
    # one or two server blocks (a tool may be declared again with the same risk)
    split = draw(st.integers(1, len(catalogue)))
    blocks = [catalogue[:split], catalogue[split:]] if draw(st.booleans()) else [catalogue]
    for i, block in enumerate(b for b in blocks if b):
        entries = [f"tool {_string_text(draw, n)} {r}" for n, r in block]
        if draw(st.integers(0, 5)) == 0:
            entries.append(entries[0])
        inner = draw(_pick(("\n    ", " ")))
        server = _string_text(draw, draw(_pick(("mcp-fs", "git", "srv", "é server"))) + str(i))
        statements.append(f"server {server} {{{inner}" + inner.join(entries) + "\n}")
    extras = draw(_pick(RISKS))
    statements.append('server "extras" { ' + " ".join(f'tool "{n}" {extras}' for n in EXTRA_TOOLS) + " }")
    if draw(st.integers(0, 9)) == 0:
        statements.append('import "stdlib/mcp-codex-worker"')  # one more catalogue: cancel-task
    if draw(st.integers(0, 9)) == 0:
        # test blocks are ignored by the compiler (but parsed, checked and formatted)
        statements.append(
            'test "generated" {\n    as identity "alice"\n    call "x" {"a": [1, {"b": null}]} approved -> deny\n'
            '    repeat 2 { call "y" -> allow }\n    after 90s\n}'
        )
    default = draw(_pick(("deny", "allow", None)))
    if default is not None:
        statements.append(f"default {default}")
    names = draw(st.integers(0, 2)) == 0
    if names:
        statements += _lets_text(draw) + _defs_text(draw)
    statements += [draw(rules(catalogue, names)) for _ in range(draw(st.integers(0, 10)))]
    order = draw(st.permutations(range(len(statements))))
    body = [statements[i] for i in order]
    if draw(st.booleans()):
        pkg = ".".join(draw(st.lists(_name(), min_size=1, max_size=3)))
        body.insert(0, f"package {pkg}")
    comments = draw(st.booleans())
    out: list[str] = []
    for stmt in body:
        if comments and draw(st.integers(0, 3)) == 0:
            out.append('# a comment: allow tool "x" { }')
        out.append(stmt + ("   # trailing comment" if comments and draw(st.integers(0, 4)) == 0 else ""))
    if not out:
        out.append("default deny")
    # statements may share a line (whitespace is free), unless a comment would swallow the rest
    seps = ("\n", "\n\n", "\n  \n") if comments else ("\n", "\n\n", " ")
    sep = draw(_pick(seps))
    return sep.join(out) + "\n"


@st.composite
def limit_programs(draw: Any) -> str:
    """A .plr file whose calls mostly reach their limits: ``default allow``, a spend cap, a call
    count and up to two more limits (half of them spend caps; half of all refundable), now and
    then an `allow … if` or a `deny … if` in front."""
    catalogue = draw(_catalogue())
    tools = " ".join(f"tool {_string_text(draw, n)} {r}" for n, r in catalogue)
    extras = " ".join(f'tool "{n}" read' for n in EXTRA_TOOLS)
    statements = [f'server "s" {{ {tools} }}', f'server "extras" {{ {extras} }}', "default allow"]
    statements.append(_limit_text(draw, catalogue, False, spend=0, refund=1))  # a spend cap
    statements.append(_limit_text(draw, catalogue, False, spend=10**9, refund=1))  # a call count
    statements += [_limit_text(draw, catalogue, False, spend=1, refund=1) for _ in range(draw(st.integers(0, 2)))]
    if draw(st.integers(0, 3)) == 0:
        kind = draw(_pick(("allow", "deny")))
        statements.append(f"{kind} {draw(selectors(catalogue, False))} if {draw(conditions())}")
    order = draw(st.permutations(range(len(statements))))
    return "\n".join(statements[i] for i in order) + "\n"


# --- calls --------------------------------------------------------------------------------

_SCALARS = st.one_of(
    _pick(STRINGS),
    _pick(NUMBERS),
    _pick((None, True, False, 0, 1, 2, 3, 1.0, 2**64, -(2**70), 0.1 + 0.2)),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(_pick(ARG_KEYS + ODD_KEYS), inner, max_size=3),
    ),
    max_leaves=8,
)
# Strings that the pooled regexes, prefixes and suffixes match (and some that they do not).
_MATCHING = ("abc", "xb", "rm  -RF /", "123", "", "ops-x", "y/z", "Prod", "a prod b", "é", "b\nb", "x/y")


@functools.cache  # one strategy (see _pick)
def arguments() -> st.SearchStrategy[dict[str, Any]]:
    """A call's `args`: keys the generated paths use, values of every JSON type (and NaN)."""
    return st.dictionaries(_pick(ARG_KEYS + ODD_KEYS), _VALUES, max_size=5)


Hint = tuple[str, tuple[Any, ...], str, Any, Any, tuple[str, ...]]  # (root, steps, op, value, fn, fns)


def hints(program: Any) -> list[Hint]:
    """Every comparison of a resolved program's rules, for shaping calls that hit them."""
    from dsl import ir

    out: list[Hint] = []

    def walk(c: Any, out: list[Hint]) -> None:
        if isinstance(c, ir.Compare):
            out.append((c.path.root, tuple(c.path.steps), c.op, c.value, c.fn, c.fns))
        elif isinstance(c, ir.Quantifier):  # (root, steps, "every"|"some", hints of its block, name, ())
            body: list[Hint] = []
            walk(c.body, body)
            out.append((c.path.root, tuple(c.path.steps), c.kind, body, c.var, ()))
        elif isinstance(c, (ir.And, ir.Or)):
            for x in c.items:
                walk(x, out)
        elif isinstance(c, ir.Not):
            walk(c.item, out)

    for rr in program.rules:
        walk(rr.rule.condition, out)
        of = rr.rule.limit.of if rr.rule.limit is not None else None
        if of is not None:  # a spend cap's amount: (root, steps, "amount", None, None, ())
            out.append((of.root, tuple(of.steps), "amount", None, None, ()))
    return out


def _value_for(draw: Any, op: str, value: Any, fn: Any) -> Any:
    """A value that makes `op value` hold (usually) or nearly hold."""
    if op == "amount":  # mostly numbers a cap adds up; some it must refuse
        return draw(_pick(AMOUNTS))
    if draw(st.integers(0, 4)) == 0:
        return draw(_VALUES)
    if fn == "count":
        n = value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6 else 1
        n = max(0, n + draw(_pick((0, 0, 1, -1))))
        return draw(_pick(("one", [0] * n, [None] * n)))
    if fn == "len":
        n = value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6 else 1
        n = max(0, n + draw(_pick((0, 0, 1, -1))))
        return draw(_pick(("z" * n, list(range(n)), {str(i): i for i in range(n)}, n)))
    if op in ("in", "not_in") and isinstance(value, list) and value:
        return draw(_pick(value))
    if op == "contains":
        if isinstance(value, str):
            return draw(_pick((value, "<" + value + ">", [value], [1, value])))
        return draw(_pick(([value], [0, value], [[value]], value)))
    if op == "starts_with":
        return value + draw(_pick(("", "zz")))
    if op == "ends_with":
        return draw(_pick(("", "zz"))) + value
    if op == "regex":
        return draw(_pick(_MATCHING))
    if op in ("lt", "lte", "gt", "gte") and not isinstance(value, bool) and isinstance(value, (int, float)):
        return value + draw(_pick((0, 1, -1, 0.5)))
    if op in ("in", "not_in") and isinstance(value, list):
        return draw(_pick((0, 1, True, False, None, "", [])))
    other = _confusable(value)
    extra = (other, other) if other is not None else ()
    return draw(_pick((value, value, [value], str(value), *extra)))


def _hinted_value(draw: Any, op: str, value: Any, fn: Any, fns: Any) -> Any:
    """A value for a path a hint names, meant to (nearly) satisfy its comparison or quantifier."""
    if op in ("every", "some"):
        return _items_for(draw, fn, value)
    return _pathy_value(draw, value) if fns else _value_for(draw, op, value, fn)


def _items_for(draw: Any, var: str, body: list[Hint]) -> Any:
    """A list for a quantifier: items shaped by the comparisons of its block on the item (`p`,
    `p.key`), or now and then no list at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_VALUES)
    own = [h for h in body if h[0] == var]
    items: list[Any] = []
    for _ in range(draw(st.integers(0, 4))):
        whole = [h for h in own if not h[1]]
        if whole and draw(st.booleans()):
            _r, _s, op, value, fn, fns = draw(_pick(whole))
            items.append(_hinted_value(draw, op, value, fn, fns))
            continue
        item: dict[str, Any] | list[Any] = {} if draw(st.integers(0, 3)) else []
        for _r, steps, op, value, fn, fns in own:
            if steps and draw(st.integers(0, 3)):
                if isinstance(item, list) and not isinstance(steps[0], int):
                    item = {}
                _put(item, steps, _hinted_value(draw, op, value, fn, fns))  # type: ignore[arg-type]
        items.append(item)
    return items


def _pathy_value(draw: Any, value: Any) -> Any:
    """A value for a path that value functions read: tricky paths, and spellings of the literal."""
    if draw(st.integers(0, 5)) == 0:
        return draw(_VALUES)
    if isinstance(value, list) and value:
        value = draw(_pick(value))
    if isinstance(value, str) and draw(st.booleans()):
        return draw(_pick((value, value.upper(), f" {value} ", "/" + value, value + "/..", "//" + value,
                                     value + "/", "/x/../" + value, [value])))  # fmt: skip
    return draw(_pick(PATHY_VALUES))


def _confusable(value: Any) -> Any:
    """A value of another JSON type that Python's == would call equal (true/1, false/0, 1/1.0)."""
    if value is True:
        return 1
    if value is False:
        return 0
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return float(value)
    return None


def _put(args: dict[str, Any], steps: tuple[Any, ...], value: Any) -> None:
    """Set args[steps...] = value, creating dicts and (padded) lists on the way."""
    cur: Any = args
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        nxt: Any = value if last else ([] if isinstance(steps[i + 1], int) else {})
        if isinstance(step, int):
            if not isinstance(cur, list):
                return
            while len(cur) <= step:
                cur.append(None)
            if last or not isinstance(cur[step], (list, dict)):
                cur[step] = nxt
        else:
            if not isinstance(cur, dict):
                return
            if last or not isinstance(cur.get(step), (list, dict)):
                cur[step] = nxt
        cur = cur[step]


@st.composite
def shaped_arguments(draw: Any, program_hints: list[Hint]) -> dict[str, Any]:
    """`args` with some of the program's paths set to values that (nearly) satisfy them."""
    args = draw(arguments()) if draw(st.booleans()) else {}
    usable = [h for h in program_hints if h[0] == "args" and h[1]]
    # a quantifier's list after the comparisons (they would overwrite it), a spend cap's amount
    # last of all (it is what most calls of a capped tool need to be counted)
    usable.sort(key=lambda h: (h[2] == "amount", h[2] in ("every", "some")))
    if usable:
        for root, steps, op, value, fn, fns in usable:
            skip = draw(st.integers(0, 5 if op in ("every", "some") else 11 if op == "amount" else 2)) == 0
            if skip or op == "missing" and draw(st.booleans()):
                continue  # leave some paths missing
            _put(args, steps, _hinted_value(draw, op, value, fn, fns))
    return args


def calls(
    tool_names: list[str] | tuple[str, ...], program_hints: list[Hint] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """One call: a tool of the program (mostly) or an unknown name, and its context.

    With ``program_hints`` (from ``hints(program)``) the arguments are shaped to reach the
    program's paths, and identity/session/server sometimes take a compared literal.
    """
    names = list(tool_names) or ["t"]
    # three distinct strategies, not one cached thrice: `one_of` drops a repeated object, and the
    # repeat is what makes the program's own tools three times as likely as unknown names
    tools = st.one_of(
        st.sampled_from(names), st.sampled_from(names), st.sampled_from(names), _pick(UNKNOWN_TOOLS)
    )
    h = program_hints or []

    def ctx(root: str, pool: tuple[Any, ...]) -> st.SearchStrategy[Any]:
        extra = [v for r, _s, _op, v, _fn, _fns in h if r == root and isinstance(v, str)]
        extra += [x for r, _s, _op, v, _fn, _fns in h if r == root and isinstance(v, list) for x in v if isinstance(x, str)]
        base = _pick(pool)
        return st.one_of(base, base, base, _pick(extra)) if extra else base

    return st.fixed_dictionaries(
        {
            "tool": tools,
            # MCP arguments are an object; now and then a hostile list or scalar instead
            "args": st.one_of(*[shaped_arguments(h) if h else arguments()] * 15, _VALUES),
            "identity": ctx("identity", IDENTITIES),
            "session": ctx("session", SESSIONS),
            "server": ctx("server", SERVERS),
            "approved": st.booleans(),
        }
    )


def advances(windows: list[float] | tuple[float, ...] = ()) -> st.SearchStrategy[float]:
    """Seconds to move the clock after a call: often none, sometimes exactly a window (pass the
    program's limit windows to hit their boundaries: a hit no longer counts `window` s later)."""
    exact = [_pick(sorted(set(windows)))] * 2 if windows else []
    return st.one_of(
        *exact,
        st.just(0),
        st.just(0),
        st.just(0),
        _pick((0.5, 1, 2, 29.5, 30, 59, 60, 61, 90, 120, 3600, 86400)),
        st.floats(0, 200, allow_nan=False),
    )
