"""A compiled policy's conditions as z3 formulas over one symbolic call.

The symbolic call mirrors what the engine reads (``dsl/engine/conditions.py`` and
``operators.py``): the roots ``args`` (an object), ``identity``/``session``/``server`` (a string
or absent), ``tool`` (a string) and ``approved`` (a boolean), and below ``args`` only the paths
the conditions mention. Each value is a :class:`Sym`: a JSON kind (absent, null, boolean,
number, string, list, object) with one z3 variable per kind's payload, so a comparison across
JSON types is false exactly as in the engine.

Lists are exact by a small-model argument: a list node has ``k`` explicit items (enough for
every index a path reads, one witness per ``some``/``every``/``contains`` over it, and the
longest list literal it is compared with) and one *filler* item standing for every item past
``k`` (all alike). Any list that satisfies a formula can be rewritten to that shape without
changing the formula's value (keep the indexed items and one witness per quantifier, repeat
any item to the original length), so "no call" over this model is a proof.

Regexes (the supported part of RE2, dsl/analysis/regular.py) and string orderings are z3
regex memberships; the value functions ``trim`` and ``basename`` are exact definitions over
fresh strings.

What is not encoded (``lower``, ``upper``, ``normpath``, ``dirname``, regexes outside the supported syntax, quantifiers
nested so that a witness per outer item would be needed) becomes an *opaque atom*: a free
boolean, the same one wherever the same condition meets the same values. Free atoms
over-approximate: "unsatisfiable" stays a proof, and a satisfying model is only a candidate,
which the callers confirm on the real engine before printing it (dsl/analysis/witness.py).

Each condition is a pair (value, raises): the engine's evaluation of a condition raises when
a regex meets a string holding a lone surrogate (RE2 cannot read one), and the engine then
fails closed (a ``deny_if`` that raises holds, a ``require`` that raises fails). ``all``/``any``
and ``every``/``some`` stop at the first part that decides, in order, exactly as the engine's
loops do, so whether a call raises is modelled exactly (``fires``/``passes``), not left out.

Numbers are reals in z3 and doubles in the engine: a number is kept out of the gap between a
literal it is compared with and the next double either side (no double lies there), so every
model rounds to a double that compares as it does. Characters beyond z3's alphabet are left
out: every encoded condition treats them as it treats the alphabet's last character.
"""

from __future__ import annotations

import json
import math
import sys
from fractions import Fraction
from functools import lru_cache
from typing import Any

from ..validate import fn_chain
from ..vocab import parse_path
from . import regular

__all__ = ["Context", "Sym", "ROOTS", "OTHER_TOOL", "conditions_of", "other_tool", "strip_meta"]

MISSING, NULL, BOOL, NUM, STR, LIST, OBJ = range(7)
ROOTS = ("args", "identity", "session", "server", "tool", "approved")
_MAX_CHAR = regular.MAX_CHAR  # z3's unicode strings stop here; a literal at or beyond it is left opaque
# lower/upper: z3's character map (seq.map) was tried and times out on equivalences through it;
# they, normpath and dirname stay opaque
_EXACT_FNS = ("count", "len", "trim", "basename")
_QUANT = ("every", "some")
SMALL = 10_000  # the longest list (and most extra keys) a printed witness may have


OTHER_TOOL = "other-tool"  # the name an example call of "any other tool" is shown with


def other_tool(known: set[str]) -> str:
    """A readable tool name that is none of ``known``."""
    name, i = OTHER_TOOL, 1
    while name in known:
        i += 1
        name = f"{OTHER_TOOL}-{i}"
    return name


def strip_meta(c: Any) -> Any:
    """A condition (or any policy part) without ``rule``/``reason``: what decides, not who said it."""
    if isinstance(c, dict):
        return {k: strip_meta(v) for k, v in c.items() if k not in ("rule", "reason")}
    if isinstance(c, list):
        return [strip_meta(x) for x in c]
    return c


def _key(c: Any) -> str:
    return json.dumps(strip_meta(c), sort_keys=True, ensure_ascii=True)


def conditions_of(view: Any) -> list[dict[str, Any]]:
    """Every condition a tool view (``decision.ToolView``) may evaluate."""
    return [*view.deny_if, *view.require]


# --- which conditions are encoded exactly ---------------------------------------------------


def _reads(c: dict[str, Any], bound: tuple[str, ...]) -> set[str]:
    """The names of ``bound`` that ``c`` reads (paths and quantifier lists)."""
    if any(q in c for q in _QUANT):
        var = c["every"] if "every" in c else c["some"]
        root, _ = parse_path(c["in"], bound)
        inner = _reads(c["where"], (*bound, var)) - {var}
        return inner | ({root} & set(bound))
    if "not" in c:
        return _reads(c["not"], bound)
    if "all" in c or "any" in c:
        out: set[str] = set()
        for x in c["all" if "all" in c else "any"]:
            out |= _reads(x, bound)
        return out
    root, _ = parse_path(c["path"], bound)
    return {root} & set(bound)


def _quantifier_exact(c: dict[str, Any], bound: tuple[str, ...]) -> bool:
    """Whether one witness item per occurrence suffices: at top level always; inside another
    quantifier only over the innermost item's own list, or when the body reads no outer item."""
    if not bound:
        return True
    root, _ = parse_path(c["in"], bound)
    if root == bound[-1]:
        return True
    var = c["every"] if "every" in c else c["some"]
    return not (_reads(c["where"], (*bound, var)) - {var}) and root not in bound


def _text_ok(v: Any) -> bool:
    """A literal z3 can hold exactly (strings below its largest character, no surrogates)."""
    if isinstance(v, str):
        return all(ord(ch) < _MAX_CHAR and not 0xD800 <= ord(ch) <= 0xDFFF for ch in v)
    if isinstance(v, list):
        return all(_text_ok(x) for x in v)
    return True


def _has_regex(c: Any) -> bool:
    """Whether a condition holds a regex test anywhere (the one test that can raise)."""
    if isinstance(c, dict):
        return c.get("op") == "regex" or any(_has_regex(x) for x in c.values() if isinstance(x, (dict, list)))
    if isinstance(c, list):
        return any(_has_regex(x) for x in c)
    return False


@lru_cache(maxsize=1024)
def _regex_ok(pattern: str) -> bool:
    try:
        regular.parse(pattern)
    except regular.Unsupported:
        return False
    return True


def _leaf_exact(c: dict[str, Any]) -> bool:
    chain = fn_chain(c.get("fn"))
    if not all(f in _EXACT_FNS for f in chain):
        return False  # normpath, dirname: opaque
    if c["op"] == "regex" and not (isinstance(c.get("value"), str) and _regex_ok(c["value"])):
        return False
    return _text_ok(c.get("value"))


# --- shapes: which nodes the conditions read ------------------------------------------------


class Shape:
    """The part of a JSON value the conditions read: keys, items, and how many explicit items."""

    __slots__ = ("keys", "item", "idx", "ex", "lit", "nums")

    def __init__(self) -> None:
        self.nums: set[float] = set()  # the number literals this value is compared with
        self.keys: dict[str, Shape] = {}
        self.item: Shape | None = None
        self.idx = 0  # one more than the largest index read
        self.ex = 0  # witnesses needed: some/every/contains occurrences over this list
        self.lit = 0  # the longest list literal compared with this value

    def items(self) -> Shape:
        if self.item is None:
            self.item = Shape()
        return self.item

    def step(self, s: str | int) -> Shape:
        if isinstance(s, int):
            self.idx = max(self.idx, s + 1)
            return self.items()
        return self.keys.setdefault(s, Shape())

    @property
    def k(self) -> int:
        return max(self.idx + self.ex, self.lit)


def _need_literal(sh: Shape, lit: Any) -> None:
    if isinstance(lit, list):
        sh.lit = max(sh.lit, len(lit))
        for x in lit:
            _need_literal(sh.items(), x)


def _collect(c: dict[str, Any], scope: dict[str, Shape], roots: dict[str, Shape]) -> None:
    bound = tuple(scope)
    if any(q in c for q in _QUANT):
        if not _quantifier_exact(c, bound):
            return
        var = c["every"] if "every" in c else c["some"]
        sh = _nav(c["in"], scope, roots)
        sh.ex += 1
        _collect(c["where"], {**scope, var: sh.items()}, roots)
        return
    if "not" in c:
        _collect(c["not"], scope, roots)
        return
    if "all" in c or "any" in c:
        for x in c["all" if "all" in c else "any"]:
            _collect(x, scope, roots)
        return
    sh = _nav(c["path"], scope, roots)
    if not _leaf_exact(c):
        return
    op, lit = c["op"], c.get("value")
    if c.get("fn") is not None:
        return  # count/len read the length only
    for x in lit if isinstance(lit, list) and op in ("in", "not_in") else [lit]:
        if isinstance(x, (int, float)) and not isinstance(x, bool) and float(x) == x:
            sh.nums.add(float(x))
    if op == "contains":
        sh.ex += 1
        _need_literal(sh.items(), lit)
    elif op in ("eq", "neq"):
        _need_literal(sh, lit)
    elif op in ("in", "not_in") and isinstance(lit, list):
        for x in lit:
            _need_literal(sh, x)


def _nav(path: str, scope: dict[str, Shape], roots: dict[str, Shape]) -> Shape:
    root, steps = parse_path(path, tuple(scope))
    sh = scope[root] if root in scope else roots[root]
    for s in steps:
        sh = sh.step(s)
    return sh


# --- symbolic values --------------------------------------------------------------------------


class Sym:
    """One JSON value of the symbolic call: kind plus one z3 variable per kind's payload."""

    def __init__(self, ctx: Context, shape: Shape, name: str) -> None:
        z = ctx.z
        self.name = name
        self.kind = z.Int(f"{name}#k")
        self.b = z.Bool(f"{name}#b")
        self.n = z.Real(f"{name}#n")
        # a string is s ++ pad^gap ++ tail: long strings without z3 building them (its
        # sequence solver stalls on lengths in the thousands); `pad` is a character no
        # literal holds, so every comparison with a literal reads only s and tail (exact)
        self.s = z.String(f"{name}#s")
        self.tail = z.String(f"{name}#tail")
        self.gap = z.Int(f"{name}#gap")
        self.len = z.Int(f"{name}#len")
        self.extra = z.Int(f"{name}#extra")
        self.keys = {key: Sym(ctx, sub, ctx.fresh(name)) for key, sub in shape.keys.items()}
        k = shape.k if shape.item is not None else 0
        self.slots = [Sym(ctx, shape.item, ctx.fresh(name)) for _ in range(k)] if shape.item else []
        self.filler = Sym(ctx, shape.item, ctx.fresh(name)) if shape.item else None
        kind = self.kind
        cons = ctx.constraints
        cons += [kind >= MISSING, kind <= OBJ, self.len >= 0, self.extra >= 0]
        cons += [self.gap >= 0, z.Implies(self.gap == 0, self.tail == string_val(z, ""))]
        ctx.small.append(z.And(self.len <= SMALL, self.extra <= SMALL, self.gap <= 100 * SMALL))
        cons.append(z.Implies(kind != LIST, self.len == 0))
        if shape.nums:
            cons.append(z.Implies(kind == NUM, z.And(*_double_cells(z, self.n, shape.nums))))
        cons.append(z.Implies(kind != OBJ, self.extra == 0))
        for child in self.keys.values():
            cons.append(z.Implies(kind != OBJ, child.kind == MISSING))
        for i, slot in enumerate(self.slots):
            cons.append((slot.kind != MISSING) == z.And(kind == LIST, self.len > i))
        if self.filler is not None:
            cons.append((self.filler.kind != MISSING) == z.And(kind == LIST, self.len > len(self.slots)))

    def items(self) -> list[tuple[Any, Sym]]:
        """(present, item) for each explicit item and the filler."""
        out = [(self.len > i, s) for i, s in enumerate(self.slots)]
        if self.filler is not None:
            out.append((self.len > len(self.slots), self.filler))
        return out


class _StrView:
    """A string computed from a value (a value function's result), tested like a short JSON string."""

    def __init__(self, z: Any, term: Any) -> None:
        self.kind = z.IntVal(STR)
        self.s = term
        self.gap = z.IntVal(0)
        self.tail = string_val(z, "")
        self.n = z.RealVal(0)
        self.b = z.BoolVal(False)
        self.slots: list[Sym] = []
        self.filler = None
        self.len = z.IntVal(0)


class _NumView:
    """A number computed from a value (`count`, `len`), tested like a JSON number."""

    def __init__(self, z: Any, term: Any) -> None:
        self.kind = z.IntVal(NUM)
        self.n = term
        self.s, self.tail, self.gap, self.b = string_val(z, ""), string_val(z, ""), z.IntVal(0), z.BoolVal(False)
        self.slots: list[Sym] = []
        self.filler = None
        self.len = z.IntVal(0)


class Context:
    """One symbolic call, the shapes of every condition that will be encoded over it, and the
    constraints that make its values well-formed JSON."""

    def __init__(self, z: Any, conditions: list[dict[str, Any]], tool: str | None, known: set[str]) -> None:
        self.z = z
        self._n = 0
        self.constraints: list[Any] = []
        self.atoms: dict[tuple[Any, ...], Any] = {}
        self.opaque = False  # an opaque atom was made: models are candidates only
        self.small: list[Any] = []  # bounds that keep a witness printable (checked as an assumption)
        self.small_flag = z.Bool("small!")
        self.pad = _pad_char(conditions)
        shapes = {r: Shape() for r in ROOTS}
        for c in conditions:
            _collect(c, {}, shapes)
        self.roots = {r: Sym(self, shapes[r], r) for r in ROOTS}
        cons = self.constraints
        cons.append(self.roots["args"].kind == OBJ)
        for r in ("identity", "session", "server"):
            k = self.roots[r].kind
            cons.append(z.Or(k == MISSING, k == STR))
        t = self.roots["tool"]
        cons += [t.kind == STR, t.gap == 0]
        self.prefer: list[Any] = []  # assumptions tried first, for a readable witness
        if tool is not None:
            cons.append(t.s == string_val(z, tool))
        else:  # a tool no policy names; shown, where the conditions allow it, as OTHER_TOOL
            cons += [t.s != string_val(z, n) for n in sorted(known)]
            readable = z.Bool("readable!")
            cons.append(z.Implies(readable, t.s == string_val(z, other_tool(known))))
            self.prefer.append(readable)
        self.approved = z.Bool("approved")
        a = self.roots["approved"]
        cons += [a.kind == BOOL, a.b == self.approved]
        # the approval look-ahead of step 5 reads the same call with approved = true
        self.approved_true = Sym(self, shapes["approved"], "approved!")
        cons += [self.approved_true.kind == BOOL, self.approved_true.b]
        self._memo: dict[tuple[int, bool], Any] = {}
        self._full: dict[str, Any] = {}  # Sym name -> its whole string (head, pad run, tail)
        self._fns: dict[tuple[Any, ...], Any] = {}  # (Sym name, functions) -> the result string
        cons.append(z.Implies(self.small_flag, z.And(*self.small)))

    def check(self, s: Any) -> str:
        """``s.check()`` preferring a printable call (small lists, a readable tool name): the
        first answer that is not ``unsat`` of the assumptions (small and preferred), (small),
        then none. ``unsat`` only when no call at all satisfies ``s``."""
        answer = "unsat"
        for assumptions in ([self.small_flag, *self.prefer], [self.small_flag], []):
            answer = str(s.check(*assumptions))
            if answer != "unsat":
                break
        return answer

    def fresh(self, base: str) -> str:
        self._n += 1
        return f"{base.split('/')[0]}/{self._n}"

    # -- conditions -----------------------------------------------------------------------

    def pair(self, c: dict[str, Any], lookahead: bool = False) -> tuple[Any, Any]:
        """``c`` over the call (``lookahead``: with approved = true) as (value, raises): the
        value it has when it does not raise, and when the engine's evaluation of it raises
        (a regex meeting a string with a lone surrogate, which RE2 cannot read). ``raises``
        is None when nothing in ``c`` can raise."""
        key = (id(c), lookahead)
        hit = self._memo.get(key)
        if hit is None:
            env: dict[str, Sym] = dict(self.roots)
            if lookahead:
                env["approved"] = self.approved_true
            val, err = self._cond(c, env, ())
            self._memo[key] = hit = (val, err, c)  # c kept alive so its id is not reused
        return hit[0], hit[1]

    def cond(self, c: dict[str, Any], lookahead: bool = False) -> Any:
        """The value ``c`` has on the call when its evaluation does not raise (see ``pair``)."""
        return self.pair(c, lookahead)[0]

    def fires(self, c: dict[str, Any], lookahead: bool = False) -> Any:
        """When a ``deny_if`` (or a limit's ``if``) takes effect: it holds, or it raises (the
        engine fails closed: a condition that raises is treated as holding)."""
        val, err = self.pair(c, lookahead)
        return val if err is None else self.z.Or(val, err)

    def passes(self, c: dict[str, Any], lookahead: bool = False) -> Any:
        """When a ``require`` is met: it holds and does not raise (one that raises fails)."""
        val, err = self.pair(c, lookahead)
        return val if err is None else self.z.And(val, self.z.Not(err))

    def _in_order(self, parts: list[tuple[Any, Any, Any]], go_on: bool) -> Any:
        """When a sequence that stops at the first part whose value is not ``go_on`` (as
        ``all``/``every`` stop at a false one and ``any``/``some`` at a true one) raises:
        ``parts`` are (reached, value, raises), ``reached`` None for always."""
        z = self.z
        if all(e is None for _, _, e in parts):
            return None
        out, before = [], []
        for present, val, err in parts:
            if err is not None:
                out.append(z.And(*before, *([present] if present is not None else []), err))
            before.append(val if go_on else z.Not(val))
            if err is not None:
                before.append(z.Not(err))
        return z.Or(*out)

    def _cond(self, c: dict[str, Any], env: dict[str, Sym], bound: tuple[str, ...]) -> tuple[Any, Any]:
        z = self.z
        if any(q in c for q in _QUANT):
            if not _quantifier_exact(c, bound):
                return self._atom(c, env, bound), self._err_atom(c, env, bound)
            var = c["every"] if "every" in c else c["some"]
            lst = self._nav(c["in"], env, bound)
            parts = [(present, *self._cond(c["where"], {**env, var: item}, (*bound, var))) for present, item in lst.items()]
            err = self._in_order(parts, "every" in c)
            if "every" in c:
                return z.And(lst.kind == LIST, *[z.Implies(p, w) for p, w, _ in parts]), err
            return z.And(lst.kind == LIST, z.Or(*[z.And(p, w) for p, w, _ in parts]) if parts else z.BoolVal(False)), err
        if "not" in c:
            val, err = self._cond(c["not"], env, bound)
            return z.Not(val), err
        if "all" in c or "any" in c:
            subs = [self._cond(x, env, bound) for x in c["all" if "all" in c else "any"]]
            err = self._in_order([(None, v, e) for v, e in subs], "all" in c)
            vals = [v for v, _ in subs]
            return (z.And(*vals) if "all" in c else z.Or(*vals)), err
        v = self._nav(c["path"], env, bound)
        return self._leaf(c, v, env, bound), self._leaf_err(c, v, env, bound)

    def _leaf_err(self, c: dict[str, Any], v: Sym, env: dict[str, Sym], bound: tuple[str, ...]) -> Any:
        """When the engine's test of a leaf raises: a regex given a string with a lone
        surrogate (RE2 cannot encode it). Nothing else in a leaf raises on JSON values."""
        if c["op"] != "regex":
            return None
        z = self.z
        chain = fn_chain(c.get("fn"))
        if chain and (chain[0] in ("count", "len") or chain[-1] == "len"):
            return None  # the regex is given a number: false, no raise
        # the string's parts, not whole(v): an opaque regex must not pin a long string to its
        # head (z3 stalls on heads thousands long), and the pad character is no surrogate
        held = z.Or(self._has_surrogate(v.s), self._has_surrogate(v.tail))
        if not chain:
            return z.And(v.kind == STR, held)
        if all(f in _EXACT_FNS for f in chain):
            return z.And(v.kind == STR, self._has_surrogate(self._apply(v, chain)))
        # lower, upper, normpath, dirname: the result holds a lone surrogate only if the value does
        atom = self._atom(c, env, bound, "raises")
        return z.And(v.kind == STR, held, atom)

    def _has_surrogate(self, term: Any) -> Any:
        z = self.z
        R = z.ReSort(z.StringSort())
        sur = z.Range(string_val(z, "\ud800"), string_val(z, "\udfff"))
        return z.InRe(term, z.Concat(z.Star(z.AllChar(R)), sur, z.Star(z.AllChar(R))))

    def _err_atom(self, c: dict[str, Any], env: dict[str, Sym], bound: tuple[str, ...]) -> Any:
        """Whether an opaque condition raises: free when it holds a regex, else never."""
        return self._atom(c, env, bound, "raises") if _has_regex(c) else None

    def _leaf(self, c: dict[str, Any], v: Sym, env: dict[str, Sym], bound: tuple[str, ...]) -> Any:
        z = self.z
        if not _leaf_exact(c):
            atom = self._atom(c, env, bound)
            if c["op"] == "regex" or c.get("fn") not in (None, "count", "len"):
                return z.And(atom, v.kind == STR)  # regexes and value functions hold only on strings
            return atom
        op, fn = c["op"], c.get("fn")
        if op == "exists":
            return z.And(v.kind != MISSING, v.kind != NULL)
        if op == "missing":
            return z.Or(v.kind == MISSING, v.kind == NULL)
        lit = c.get("value")
        chain = fn_chain(fn)
        if chain and chain[0] not in ("count", "len"):  # value functions: the value is a string
            with_len = chain[-1] == "len"
            y = self._apply(v, chain[:-1] if with_len else chain)
            if with_len:
                return z.And(v.kind == STR, self._test(op, lit, _NumView(z, z.ToReal(z.Length(y)))))
            return z.And(v.kind == STR, self._test(op, lit, _StrView(z, y)))
        if fn == "count":
            absent = z.Or(v.kind == MISSING, v.kind == NULL)  # an explicit null counts as missing
            n = z.If(v.kind == LIST, z.ToReal(v.len), z.If(absent, z.RealVal(0), z.RealVal(1)))
            return self._test(op, lit, _NumView(z, n))
        if fn == "len":
            size = z.Sum([z.If(ch.kind != MISSING, 1, 0) for ch in v.keys.values()] + [v.extra])
            n = z.If(v.kind == STR, z.Length(v.s) + v.gap + z.Length(v.tail), z.If(v.kind == LIST, v.len, size))
            return z.And(z.Or(v.kind == STR, v.kind == LIST, v.kind == OBJ), self._test(op, lit, _NumView(z, z.ToReal(n))))
        return z.And(v.kind != MISSING, self._test(op, lit, v))

    def _short(self, v: Any) -> Any:
        return v.gap == 0

    def whole(self, v: Any) -> Any:
        """The whole string of ``v`` as one z3 term. A value a regex or value function reads is
        held in its head alone (``gap`` 0): every string has that form, so no call is lost, and
        z3 decides regexes over one string variable far faster than over a concatenation."""
        if not isinstance(v, Sym):
            return v.s
        if v.name not in self._full:
            self.constraints.append(v.gap == 0)
            self._full[v.name] = v.s
        return v.s

    def _apply(self, v: Any, chain: tuple[str, ...]) -> Any:
        """The string the value functions ``chain`` give for ``v`` (memoised: the same term
        wherever the same functions meet the same value, in either policy)."""
        x = self.whole(v)
        for i, fn in enumerate(chain):
            key = (v.name, chain[: i + 1])
            hit = self._fns.get(key)
            if hit is None:
                hit = self._fns[key] = self._fn(fn, x, f"{v.name}#{'.'.join(chain[: i + 1])}")
            x = hit
        return x

    def _fn(self, fn: str, x: Any, name: str) -> Any:
        """``fn(x)`` as a fresh string defined by constraints that hold for some value whatever
        ``x`` is (so they never narrow the calls), or a character map."""
        z = self.z
        R = z.ReSort(z.StringSort())
        anything = z.Star(z.AllChar(R))
        y = z.String(name)
        cons = self.constraints
        if fn == "trim":  # str.strip(): leading and trailing Unicode whitespace
            a, b = z.String(name + "<"), z.String(name + ">")
            ws, other = _fn_sets(z)["space"]
            cons += [x == z.Concat(a, y, b), z.InRe(a, z.Star(ws)), z.InRe(b, z.Star(ws)),
                     z.Or(y == string_val(z, ""), z.And(z.InRe(y, z.Concat(other, anything)), z.InRe(y, z.Concat(anything, other))))]
            return y
        if fn == "basename":  # the last element, trailing slashes ignored; "" -> ".", "/" -> "/"
            head, trail = z.String(name + "<"), z.String(name + ">")
            slash = z.Re(string_val(z, "/"))
            not_slash = regular.char_set(z, regular.negate(((0x2F, 0x2F),)))
            cons.append(z.If(
                x == string_val(z, ""), y == string_val(z, "."),
                z.If(z.InRe(x, z.Plus(slash)), y == string_val(z, "/"),
                     z.And(x == z.Concat(head, y, trail), z.InRe(trail, z.Star(slash)), z.InRe(y, z.Plus(not_slash)),
                           z.Or(head == string_val(z, ""), z.InRe(head, z.Concat(anything, slash)))))))
            return y
        raise ValueError(f"`{fn}` is not encoded")  # _leaf_exact keeps it opaque

    def _atom(self, c: dict[str, Any], env: dict[str, Sym], bound: tuple[str, ...], what: str = "holds") -> Any:
        """A free boolean for a condition outside the exact fragment (``what``: whether it
        holds, or whether it raises); one per (condition, items it reads, approval view),
        shared by both policies."""
        self.opaque = True
        key = (_key(c), tuple(env[b].name for b in bound), env["approved"].name, what)
        atom = self.atoms.get(key)
        if atom is None:
            atom = self.z.Bool(f"opaque/{len(self.atoms)}")
            self.atoms[key] = atom
        return atom

    def value(self, path: str) -> Sym:
        """The call's symbolic value at ``path`` (a path one of the conditions given to the
        context mentions): ``plr query`` reads a spend cap's amount through it."""
        return self._nav(path, self.roots, ())

    def _nav(self, path: str, env: dict[str, Sym], bound: tuple[str, ...]) -> Sym:
        root, steps = parse_path(path, bound)
        v = env[root]
        for s in steps:
            v = v.slots[s] if isinstance(s, int) else v.keys[s]
        return v

    # -- comparisons (operators.py) -----------------------------------------------------------

    def _eq(self, v: Any, lit: Any) -> Any:
        z = self.z
        if lit is None:
            return v.kind == NULL
        if isinstance(lit, bool):
            return z.And(v.kind == BOOL, v.b == z.BoolVal(lit))
        if isinstance(lit, (int, float)):
            return z.And(v.kind == NUM, v.n == _real(z, lit))
        if isinstance(lit, str):
            return z.And(v.kind == STR, self._short(v), v.s == string_val(z, lit))
        if isinstance(lit, list):
            if len(v.slots) < len(lit):  # only a count/len number: never a list
                return z.BoolVal(False)
            return z.And(v.kind == LIST, v.len == len(lit), *[self._eq(v.slots[i], x) for i, x in enumerate(lit)])
        return z.BoolVal(False)

    def _test(self, op: str, lit: Any, v: Any) -> Any:
        z = self.z
        if op == "eq":
            return self._eq(v, lit)
        if op == "neq":
            if lit is None:
                return z.BoolVal(False)
            if isinstance(lit, bool):
                return z.And(v.kind == BOOL, v.b != z.BoolVal(lit))
            if isinstance(lit, (int, float)):
                return z.And(v.kind == NUM, v.n != _real(z, lit))
            if isinstance(lit, str):
                return z.And(v.kind == STR, z.Not(z.And(self._short(v), v.s == string_val(z, lit))))
            return z.And(v.kind == LIST, z.Not(self._eq(v, lit)))
        if op in ("lt", "lte", "gt", "gte"):
            if isinstance(lit, (int, float)) and not isinstance(lit, bool):
                a, b = v.n, _real(z, lit)
                kind = NUM
            elif isinstance(lit, str):
                # a long string compares with a literal as its head and one pad character do;
                # the strings below or above a literal are a regular language (fast in z3,
                # where str.< over several values can time out)
                a = z.If(self._short(v), v.s, z.Concat(v.s, string_val(z, self.pad)))
                return z.And(v.kind == STR, z.InRe(a, regular.order_re(z, op, lit)))
            else:
                return z.BoolVal(False)
            rel = {"lt": a < b, "lte": a <= b, "gt": a > b, "gte": a >= b}[op]
            return z.And(v.kind == kind, rel)
        if op in ("in", "not_in"):
            items = lit if isinstance(lit, list) else []
            member = z.Or(*[self._eq(v, x) for x in items]) if items else z.BoolVal(False)
            if op == "in":
                return member
            kinds = {_kind_of(x) for x in items} - {NULL, None}
            return z.And(z.Or(*[v.kind == k for k in kinds]) if kinds else z.BoolVal(False), z.Not(member))
        if op == "contains":
            in_list = z.Or(*[z.And(p, self._eq(item, lit)) for p, item in _items(v)]) if _items(v) else z.BoolVal(False)
            out = z.And(v.kind == LIST, in_list)
            if isinstance(lit, str):
                w = string_val(z, lit)
                found = z.Or(z.Contains(v.s, w), z.And(z.Not(self._short(v)), z.Contains(v.tail, w)))
                out = z.Or(z.And(v.kind == STR, found), out)
            return out
        if op in ("starts_with", "ends_with"):
            if not isinstance(lit, str):
                return z.BoolVal(False)
            w = string_val(z, lit)
            if op == "starts_with":
                return z.And(v.kind == STR, z.PrefixOf(w, v.s))
            return z.And(v.kind == STR, z.If(self._short(v), z.SuffixOf(w, v.s), z.SuffixOf(w, v.tail)))
        if op == "regex":
            return z.And(v.kind == STR, z.InRe(self.whole(v), _search_re(z, lit)))
        raise ValueError(f"unknown op `{op}`")


_SEARCH: dict[str, Any] = {}


def _search_re(z: Any, pattern: str) -> Any:
    hit = _SEARCH.get(pattern)
    if hit is None:
        hit = _SEARCH[pattern] = regular.search_re(z, pattern)
    return hit


_FN_SETS: dict[str, Any] = {}


def _fn_sets(z: Any) -> dict[str, Any]:
    """The character sets of the value functions, built once: whitespace (``str.isspace``,
    what ``trim`` strips) and its complement."""
    if not _FN_SETS:
        space = regular.ranges_where(str.isspace)
        _FN_SETS["space"] = (regular.char_set(z, space), regular.char_set(z, regular.negate(space)))
    return _FN_SETS


def string_val(z: Any, s: str) -> Any:
    """A z3 string of exactly these characters (``StringVal`` would read ``\\u{41}`` as an escape)."""
    import ctypes

    ctx = z.main_ctx()
    arr = (ctypes.c_uint * max(len(s), 1))(*[ord(ch) for ch in s])
    return z.SeqRef(z.Z3_mk_u32string(ctx.ref(), len(s), arr), ctx)


def string_of(v: Any) -> str:
    """The characters of a z3 string value (``as_string`` escapes some of them)."""
    import ctypes

    import z3

    n = z3.Z3_get_string_length(v.ctx_ref(), v.as_ast())
    arr = (ctypes.c_uint * max(n, 1))()
    z3.Z3_get_string_contents(v.ctx_ref(), v.as_ast(), n, arr)
    return "".join(chr(arr[i]) for i in range(n))


def _chars(v: Any, out: set[str]) -> None:
    if isinstance(v, str):
        out.update(v)
    elif isinstance(v, list):
        for x in v:
            _chars(x, out)
    elif isinstance(v, dict):
        for x in v.values():
            _chars(x, out)


def _pad_char(conditions: list[dict[str, Any]]) -> str:
    """A character no literal of the conditions holds (the filler of long strings)."""
    used: set[str] = set()
    for c in conditions:
        _chars(c, used)
    for ch in "~_x#":
        if ch not in used:
            return ch
    return next(chr(i) for i in range(0x4E00, _MAX_CHAR) if chr(i) not in used)


def _items(v: Any) -> list[tuple[Any, Any]]:
    return v.items() if isinstance(v, Sym) else []


def _kind_of(x: Any) -> int | None:
    if x is None:
        return NULL
    if isinstance(x, bool):
        return BOOL
    if isinstance(x, (int, float)):
        return NUM
    if isinstance(x, str):
        return STR
    if isinstance(x, list):
        return LIST
    return None


def _double_cells(z: Any, n: Any, nums: set[float]) -> list[Any]:
    """Keep a number where a double is: the engine reads doubles, z3 reals. Between a literal
    and the next double either side lies no double, so a real there (``x > 0.1`` and
    ``x < 0.10000000000000002``) is no call; outside those gaps every real rounds to a double
    that compares with every literal as it does (the gaps' ends are doubles), so the call shown
    is the call modelled. Finite, as JSON numbers are."""
    big = sys.float_info.max
    out = [n >= _real(z, -big), n <= _real(z, big)]
    for x in sorted(nums):
        for y in (math.nextafter(x, math.inf), math.nextafter(x, -math.inf)):
            if math.isfinite(y):
                lo, hi = (x, y) if y > x else (y, x)
                out.append(z.Not(z.And(n > _real(z, lo), n < _real(z, hi))))
    return out


def _real(z: Any, x: int | float) -> Any:
    f = Fraction(x)
    return z.RealVal(f"{f.numerator}/{f.denominator}")
