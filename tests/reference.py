"""A reference interpreter for plr: the language's meaning, evaluated on the IR directly.

This is the oracle of the differential tests (``test_differential.py``). It is written from
the spec (``language.md`` "How rules combine" and "Conditions", ``policy-json.md`` "Limits")
and the project's decisions for what the spec leaves open, and deliberately shares no code
with the compiler or the engine: selectors are expanded here from the catalogue statements,
conditions are ``ir.Condition`` trees evaluated recursively, and limits are plain lists of
hit times. It favours being obviously right over being fast.

Decision order for one call (first match wins):

1. hidden: a ``hide`` rule selects the tool, or ``hide all tools`` → ``deny``/``hidden``
2. an unconditional ``deny`` selects it → ``deny``/``denied``
3. not callable (default deny, no ``allow`` / ``allow if`` / ``deny unless`` selects it, and no
   ``allow all tools if`` grants it) → ``deny``/``default``
3b. arguments that are not None or a JSON object, or hold a value a server would read as
   another (NaN, an integer past 2^53 - 1) or no JSON value (a tuple, bytes, a key that is not
   a string) → ``deny``/``invalid_args``
4. a ``deny … if C`` (its own, then ``deny all tools if C``) whose ``C`` holds → ``deny``/``deny_if``
5. requirements: the OR of the tool's ``allow … if`` conditions (whenever it has any, even
   when an unconditional ``allow`` selects it too; for a tool callable only through
   ``allow all tools if``, the OR of those), every ``deny … unless C`` and every
   ``deny all tools unless C``. If some fail: when each failing one holds with ``approved``
   true → ``approval_required``/``require``, else ``deny``/``require``
6. limits (the tool's own ``limit`` rules, one quota per rule and tool, plus every
   ``limit all tools``; a limit with ``if C`` only where ``C`` holds). A spend cap
   (``to N of args.PATH``) whose amount is not a finite number >= 0 (missing, text, a
   boolean, NaN, infinite, negative) → ``deny``/``invalid_args``, whichever limit comes first;
   then one full window → ``deny``/``rate_limited``: a call count at ``max`` calls, a spend
   cap when the amounts in the window plus this one would pass ``max``. A hit at ``t`` counts
   while ``now - t < window``; a calendar window (``per calendar day``, UTC or a zone) counts
   the hits of the current period only (the period a wall-clock day, week from Monday, month
   ... of the zone); no session (identity) and ``""`` are one scope, as in the engine
7. ``allow`` (code ``allowed`` when a rule names the tool or a grant allowed it, ``default``
   otherwise); the call is counted against every applicable limit (a spend cap: its amount).
   ``refund()`` then takes back what the last allowed call put on its ``refund on error``
   limits, as the proxy does when the upstream answers with an error.

Comparing values of different types is false, for every operator (``!=`` and ``not in``
included): ``args.x != "a"`` holds only for a string other than ``"a"``, and
``args.x not in [..]`` only for a value of some item's type that equals no item.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any

import re2
from zoneinfo import ZoneInfo

from dsl import ir


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()

ALLOW, DENY, APPROVAL = "allow", "deny", "approval_required"


# --- values -------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if _is_number(v):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "object"
    return "other"


def same(a: Any, b: Any) -> bool:
    """JSON equality with strict types: ``true`` is not ``1``, ``"1"`` is not ``1``."""
    ta, tb = _json_type(a), _json_type(b)
    if ta != tb or ta == "other":
        return False
    if ta == "list":
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if ta == "object":
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def compare(op: str, v: Any, lit: Any) -> bool:
    """``v op lit`` for a value that is present (never MISSING). Values of different types are
    never compared: every operator, ``neq`` and ``not_in`` included, is then false."""
    if op == "eq":
        return same(v, lit)
    if op == "neq":  # same JSON type (int and float are one; bool is not a number), and different
        return _json_type(v) == _json_type(lit) != "other" and not same(v, lit)
    if op in ("lt", "lte", "gt", "gte"):
        if _is_number(v) and _is_number(lit) or isinstance(v, str) and isinstance(lit, str):
            pass
        else:
            return False
        if op == "lt":
            return v < lit
        if op == "lte":
            return v <= lit
        if op == "gt":
            return v > lit
        return v >= lit
    if op == "in":
        return any(same(v, x) for x in lit)
    if op == "not_in":  # the type of at least one item, and equal to none
        return _json_type(v) in {_json_type(x) for x in lit} and not any(same(v, x) for x in lit)
    if op == "contains":
        if isinstance(v, str):
            return isinstance(lit, str) and lit in v
        if isinstance(v, list):
            return any(same(x, lit) for x in v)
        return False
    if op == "starts_with":
        return isinstance(v, str) and v.startswith(lit)
    if op == "ends_with":
        return isinstance(v, str) and v.endswith(lit)
    if op == "regex":
        return isinstance(v, str) and re2.search(lit, v) is not None
    raise AssertionError(f"unknown op {op}")


# --- value functions (written from the language's definitions, not the engine's code) --------


def _clean(p: str) -> str:
    """POSIX lexical normalisation, as Go's path.Clean: one `/` between elements, no `.`, each
    `..` eats the element before it (at the root it is dropped; a relative path keeps it)."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    kept: list[str] = []
    for element in p.split("/"):
        if element in ("", "."):
            continue
        if element == "..":
            if kept and kept[-1] != "..":
                kept.pop()
            elif not rooted:
                kept.append("..")
            continue
        kept.append(element)
    body = "/".join(kept)
    if rooted:
        return "/" + body
    return body if body else "."


def _base(p: str) -> str:
    """Go's path.Base: the last element, trailing slashes ignored."""
    while len(p) > 1 and p.endswith("/"):
        p = p[:-1]
    if p == "":
        return "."
    if p == "/":
        return "/"
    return p.split("/")[-1]


def _dir(p: str) -> str:
    """Go's path.Dir: what comes before the last element (up to its `/`), cleaned."""
    head = p[: len(p) - len(p.split("/")[-1])]
    return _clean(head)


STRING_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "trim": lambda s: re.sub(r"^\s+|\s+$", "", s),
    "normpath": _clean,
    "basename": _base,
    "dirname": _dir,
}


# --- conditions ---------------------------------------------------------------------------


class Call:
    """What a condition can look at."""

    def __init__(self, tool: str, args: Any, identity: Any, session: Any, server: Any, approved: bool) -> None:
        self.tool = tool
        self.args = {} if args is None else args
        self.identity = identity
        self.session = session
        self.server = server
        self.approved = approved

    def with_approval(self) -> Call:
        return Call(self.tool, self.args, self.identity, self.session, self.server, True)

    def root(self, name: str) -> Any:
        if name == "args":
            return self.args
        if name == "approved":
            return self.approved
        if name == "tool":
            return self.tool
        value = {"identity": self.identity, "session": self.session, "server": self.server}[name]
        return MISSING if value is None else value


def lookup(path: ir.Path, call: Call, env: Any = None) -> Any:
    v = env.vars[path.root] if env is not None and path.root in env.vars else call.root(path.root)
    for step in path.steps:
        if isinstance(step, int):
            if isinstance(v, list) and 0 <= step < len(v):
                v = v[step]
            else:
                return MISSING
        else:
            if isinstance(v, dict) and step in v:
                v = v[step]
            else:
                return MISSING
    return v


class Env:
    """What names mean while evaluating: `let` and `import data` constants, looked up here from
    the program as written (the compiler substitutes them instead)."""

    def __init__(self, program: Any = None) -> None:
        self.lets: dict[str, Any] = {}
        self.data: dict[str, Any] = {}
        self.vars: dict[str, Any] = {}  # names bound by every/some (or parameters), to their value
        self.defs: dict[str, ir.Def] = {}
        for m in program.modules if program is not None else ():
            for s in m.statements:
                if isinstance(s, ir.Let):
                    self.lets[s.name] = s.value
                elif isinstance(s, ir.DataImport):
                    self.data[s.name] = program.data[(m.file, s.name)]
                elif isinstance(s, ir.Def):
                    self.defs[s.name] = s

    def bind(self, name: str, value: Any) -> Env:
        """This environment with ``name`` standing for ``value`` (an item of a list)."""
        return self.scope({**self.vars, name: value})

    def scope(self, variables: dict[str, Any]) -> Env:
        """The same constants and predicates, with exactly ``variables`` bound."""
        child = Env()
        child.lets, child.data, child.defs, child.vars = self.lets, self.data, self.defs, variables
        return child

    def const(self, value: Any) -> Any:
        """A literal as written, with each name replaced by what it stands for."""
        if isinstance(value, ir.Ref):
            base = self.data[value.name] if value.name in self.data else self.const(self.lets[value.name])
            for step in value.steps:
                base = base[step]
            return self.const(base)
        if isinstance(value, list):
            return [self.const(v) for v in value]
        return value


NO_NAMES = Env()


def holds(c: ir.Condition, call: Call, env: Env = NO_NAMES) -> bool:
    """Whether ``c`` holds for ``call``: a comparison on a missing path is false, and so is one
    of values of different types (see ``compare``)."""
    if isinstance(c, ir.And):
        return all(holds(x, call, env) for x in c.items)
    if isinstance(c, ir.Or):
        return any(holds(x, call, env) for x in c.items)
    if isinstance(c, ir.Not):
        return not holds(c.item, call, env)
    if isinstance(c, ir.Call):
        # a predicate sees only its parameters, each the value at the path it was called with
        d = env.defs[c.name]
        values = [lookup(a, call, env) for a in c.args]
        return holds(d.body, call, env.scope(dict(zip(d.params, values))))
    if isinstance(c, ir.Quantifier):
        items = lookup(c.path, call, env)
        if not isinstance(items, list):
            return False  # a missing path or one that is not a list: both quantifiers are false
        results = [holds(c.body, call, env.bind(c.var, item)) for item in items]
        return all(results) if c.kind == "every" else any(results)
    assert isinstance(c, ir.Compare), c
    if ir.has_refs(c.value):
        c = c.model_copy(update={"value": env.const(c.value)})
    v = lookup(c.path, call, env)
    if c.op == "exists":  # an explicit null is absent too
        return v is not MISSING and v is not None
    if c.op == "missing":
        return v is MISSING or v is None
    for f in c.fns:  # string functions: anything but a string makes the comparison false
        if not isinstance(v, str):
            return False
        v = STRING_FUNCTIONS[f](v)
    if c.fn == "count":
        n = len(v) if isinstance(v, list) else 0 if v is MISSING or v is None else 1  # null: missing
        return compare(c.op, n, c.value)
    if c.fn == "len":
        if not isinstance(v, (str, list, dict)):
            return False  # every comparison of len() of anything else is false
        return compare(c.op, len(v), c.value)
    if v is MISSING:
        return False  # a comparison on a missing path is false
    return compare(c.op, v, c.value)


def unsafe_arguments(v: Any) -> bool:
    """Arguments the engine refuses (``invalid_args``): anything but None or an object at the
    top; anywhere within, NaN, ±Infinity, an integer a JavaScript number cannot hold exactly,
    an object key that is not a string, or a value that is not JSON (a tuple, a set, bytes)."""
    if v is None:
        return False
    return not isinstance(v, dict) or _unsafe_value(v)


def _unsafe_value(v: Any) -> bool:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return False
    if isinstance(v, int):
        return abs(v) > 2**53 - 1
    if isinstance(v, float):
        return v != v or v in (float("inf"), float("-inf"))
    if isinstance(v, dict):
        return any(not isinstance(k, str) for k in v) or any(_unsafe_value(x) for x in v.values())
    if isinstance(v, list):
        return any(_unsafe_value(x) for x in v)
    return True


def glob_matches(pattern: str, name: str) -> bool:
    """The language's globs: `*` any run of characters, `?` one character, all else literal."""
    rx = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(rx, name, flags=re.DOTALL) is not None


# --- the interpreter ----------------------------------------------------------------------


class RefInterpreter:
    """Decide calls for a resolved, error-free ``Program`` the way the language says."""

    def __init__(self, program: Any, clock: Callable[[], float]) -> None:
        self.clock = clock
        defaults = [s for m in program.modules for s in m.statements if isinstance(s, ir.Default)]
        self.default = defaults[0].effect if defaults else "deny"
        # The catalogue: every declared tool with the risk of its first declaration.
        self.risk: dict[str, str] = {}
        for m in program.modules:
            for s in m.statements:
                if isinstance(s, ir.Catalogue):
                    for t in s.tools:
                        self.risk.setdefault(t.name, t.risk)
        self.rules: list[ir.Rule] = [s for m in program.modules for s in m.statements if isinstance(s, ir.Rule)]
        self.env = Env(program)
        # per quota (and calendar period): (time, amount, call number), oldest first
        self.hits: dict[tuple[Any, ...], list[tuple[float, Any, int]]] = {}
        self.calls = 0
        self.charge: list[tuple[tuple[Any, ...], int]] = []  # what refund() gives back

    def selects(self, sel: ir.Selector, tool: str) -> bool:
        if sel.kind in ("tool", "list"):
            return tool in sel.names
        if sel.kind == "glob":
            return tool in self.risk and glob_matches(sel.pattern or "", tool)
        if sel.kind == "class":
            return self.risk.get(tool) == sel.risk
        return True  # all tools

    def decide(
        self,
        tool: str,
        args: Any = None,
        identity: Any = None,
        session: Any = None,
        server: Any = None,
        approved: bool = False,
    ) -> tuple[str, str]:
        mine = [(i, r) for i, r in enumerate(self.rules) if r.selector.kind != "all" and self.selects(r.selector, tool)]
        every = [(i, r) for i, r in enumerate(self.rules) if r.selector.kind == "all"]

        def of(kind: str, guard: str | None = None) -> list[tuple[int, ir.Rule]]:
            return [(i, r) for i, r in mine if r.kind == kind and (guard is None or r.guard == guard)]

        # 1. hidden
        if of("hide") or any(r.kind == "hide" for _, r in every):
            return DENY, "hidden"
        # 2. denied
        if of("deny", "always"):
            return DENY, "denied"
        allow_always, allow_if = of("allow", "always"), of("allow", "if")
        deny_if, deny_unless = of("deny", "if"), of("deny", "unless")
        all_deny_if = [r for _, r in every if r.kind == "deny" and r.guard == "if"]
        all_deny_unless = [r for _, r in every if r.kind == "deny" and r.guard == "unless"]
        # `allow all tools if C` grants, under default deny, a tool with no grant of its own
        own_grant = bool(allow_always or allow_if or deny_unless)
        grants = [r for _, r in every if r.kind == "allow" and r.condition is not None]
        granted = self.default == "deny" and bool(grants) and not own_grant
        # 3. callable?
        if not (self.default == "allow" or own_grant or granted):
            return DENY, "default"
        # 3b. arguments that are not an object, or that a server would read as other values
        if unsafe_arguments(args):
            return DENY, "invalid_args"
        call = Call(tool, args, identity, session, server, approved is True)
        # 4. deny ... if: the tool's own, then those on all tools
        for r in [*(r for _, r in deny_if), *all_deny_if]:
            assert r.condition is not None
            if holds(r.condition, call, self.env):
                return DENY, "deny_if"
        # 5. requirements: the tool's allow-ifs (an unconditional allow does not lift them), or
        # the grants; every deny ... unless, its own and those on all tools
        requirements: list[ir.Condition] = []
        if allow_if:
            requirements.append(ir.Or(items=tuple(r.condition for _, r in allow_if if r.condition is not None)))
        elif granted:
            requirements.append(ir.Or(items=tuple(r.condition for r in grants if r.condition is not None)))
        requirements += [r.condition for _, r in deny_unless if r.condition is not None]
        requirements += [r.condition for r in all_deny_unless if r.condition is not None]
        failing = [c for c in requirements if not holds(c, call, self.env)]
        if failing:
            approved_call = call.with_approval()
            if all(holds(c, approved_call, self.env) for c in failing):
                return APPROVAL, "require"
            return DENY, "require"
        # 6. limits: those whose `if` holds for this call (or that have none)
        now = self.clock()
        # Spec-silent point, following the engine: a call without a session (identity) and a
        # call whose session (identity) is "" share one quota (both mean "no session").
        scope_value = {"session": session or "", "identity": identity or "", "global": None}

        def applies(r: ir.Rule) -> bool:
            return r.condition is None or holds(r.condition, call, self.env)

        # (key, max, window or None for a calendar period, amount or None for a call count, refund)
        quotas: list[tuple[tuple[Any, ...], Any, float | None, Any, bool]] = []
        limits = [(("tool", i, tool), r) for i, r in of("limit")]
        limits += [(("all", i), r) for i, r in every if r.kind == "limit"]
        for base, r in limits:
            lim = r.limit
            assert lim is not None
            if not applies(r):
                continue
            key: tuple[Any, ...] = (*base, lim.per, scope_value[lim.per])
            window: float | None = lim.window
            if lim.calendar is not None:
                key, window = (*key, "period", period_start(lim.calendar, now, lim.tz)), None
            amount = None
            if lim.of is not None:
                amount = lookup(lim.of, call, self.env)
                if not countable(amount):
                    return DENY, "invalid_args"
            quotas.append((key, lim.max, window, amount, lim.refund))
        for key, mx, window, amount, _refund in quotas:
            counted = [h for h in self.hits.get(key, []) if window is None or now - h[0] < window]
            self.hits[key] = counted
            if amount is None and len(counted) >= mx:
                return DENY, "rate_limited"
            if amount is not None:
                used = 0.0  # in call order, one float addition at a time (not 3.12's compensated sum)
                for h in counted:
                    used += h[1]
                if used + amount > mx:
                    return DENY, "rate_limited"
        self.calls += 1
        self.charge = []
        for key, _mx, _window, amount, refund in quotas:
            self.hits.setdefault(key, []).append((now, 1 if amount is None else amount, self.calls))
            if refund:
                self.charge.append((key, self.calls))
        # 7. allowed
        return ALLOW, ("allowed" if mine or granted else "default")

    def refund(self) -> bool:
        """The upstream failed the last allowed call: its `refund on error` limits forget it.
        True when there was something to give back."""
        charge, self.charge = self.charge, []
        for key, n in charge:
            self.hits[key] = [h for h in self.hits.get(key, []) if h[2] != n]
        return bool(charge)


def countable(v: Any) -> bool:
    """Can a spend cap add ``v`` up? Only a finite number >= 0 (booleans are not numbers)."""
    return _is_number(v) and math.isfinite(v) and v >= 0


def period_start(unit: str, now: float, tz: str | None) -> tuple[int, ...]:
    """The calendar period holding ``now``, as the wall-clock date (and time) it starts at in
    the zone (UTC when none): a period is a key, nothing is computed back into seconds."""
    zone = ZoneInfo(tz) if tz else dt.timezone.utc
    t = dt.datetime.fromtimestamp(now, zone)
    if unit == "minute":
        return (t.year, t.month, t.day, t.hour, t.minute)
    if unit == "hour":
        return (t.year, t.month, t.day, t.hour)
    if unit == "day":
        return (t.year, t.month, t.day)
    if unit == "week":  # weeks start on Monday
        return (t.date() - dt.timedelta(days=t.weekday())).timetuple()[:3]
    assert unit == "month", unit
    return (t.year, t.month)
