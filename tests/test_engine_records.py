"""The engine's records (dsl/engine/records.py) behave as the frozen slotted dataclasses they
were: each is held to its dataclass twin, made by the dataclasses module from the same fields.

They are written out by hand so that importing the engine (every `plr eval`) neither imports
the dataclasses module nor generates code; nothing a caller can do with a Decision may tell.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys

import pytest

from dsl.engine import Decision, Engine, TraceStep
from dsl.engine.core import Charge
from dsl.engine.prepare import _Compiled, _Cond, _Lim, _Prepared, _Tool
from dsl.engine.records import dataclass_twin
from tests.conftest import ROOT


def _pred(ctx: object) -> bool:
    return True


# (record class, positional values, keyword values): every field, some by keyword
SAMPLES = [
    (TraceStep, ("deny_if x", True), {"rule": "p:3"}),
    (TraceStep, ("limits", "state unavailable: down"), {}),
    (Decision, ("deny", "rate_limited", "rate limit"), {"rule": "p:4", "retry_after": 2.5, "charge": "receipt"}),
    (Decision, ("allow", "allowed", "ok"), {"trace": (TraceStep("a", False),)}),
    (Charge, (("k1", "k2"), "token"), {}),
    (_Lim, ("t\x00x\x000\x00session\x00", 1, 10, 60.0, "at most 10 calls", None), {"of": "args.n", "ledger": True}),
    (_Cond, (_pred, "args.x == 1", "p:2", Decision("deny", "deny_if", "no"), None), {}),
    (_Compiled, ({"path": "args.x", "op": "exists"}, _pred, "args.x exists", None), {}),
    (
        _Tool,
        ("t", None, "allow", (), (), (), Decision("deny", "denied", "d"), Decision("deny", "require", "r"),
         Decision("allow", "allowed", "a")),
        {"approval": True},
    ),  # fmt: skip
    (_Prepared, (None, None, "deny", frozenset({"h"}), False, {}, {}, False, ()), {}),
]


def _both(cls: type, args: tuple, kwargs: dict) -> tuple[object, object, type]:
    twin = dataclass_twin(cls)
    return cls(*args, **kwargs), twin(*args, **kwargs), twin


@pytest.mark.parametrize(("cls", "args", "kwargs"), SAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_a_record_is_its_dataclass(cls: type, args: tuple, kwargs: dict) -> None:
    mine, theirs, twin = _both(cls, args, kwargs)
    assert repr(mine) == repr(theirs)
    assert cls.__match_args__ == twin.__match_args__
    assert cls.__slots__ == twin.__slots__
    assert [getattr(mine, f) for f in cls.__slots__] == [getattr(theirs, f) for f in twin.__slots__]
    assert mine.__getstate__() == theirs.__getstate__()
    # equal to a record made of the same values, and hashed alike (when its values hash)
    again = cls(*args, **kwargs)
    assert mine == again and not (mine != again) and mine is not again
    assert (mine == theirs) is False  # another class, as between two dataclasses
    try:
        want_hash: int | None = hash(theirs)
    except TypeError:
        want_hash = None
    if want_hash is None:
        with pytest.raises(TypeError):
            hash(mine)
    else:
        assert hash(mine) == want_hash
    # frozen: the same exception and message as the dataclass
    for name in cls.__slots__:
        for action in (lambda o: setattr(o, name, 1), lambda o: delattr(o, name)):
            with pytest.raises(dataclasses.FrozenInstanceError) as mine_err:
                action(mine)
            with pytest.raises(dataclasses.FrozenInstanceError) as their_err:
                action(theirs)
            assert str(mine_err.value) == str(their_err.value)
    # no other attribute either (CPython 3.11's slotted dataclass raises a TypeError there, a bug)
    with pytest.raises(AttributeError):
        mine.not_a_field = 1  # type: ignore[attr-defined]
    # replaced and copied field by field
    changed = {cls.__slots__[-1]: "other"}
    assert mine._replace(**changed).__getstate__() == dataclasses.replace(theirs, **changed).__getstate__()
    assert copy.copy(mine) == mine and copy.deepcopy(mine).__getstate__() == copy.deepcopy(theirs).__getstate__()


def test_a_differing_field_makes_records_unequal_except_a_decisions_charge() -> None:
    for cls, args, kwargs in SAMPLES:
        mine, theirs, twin = _both(cls, args, kwargs)
        for f in dataclasses.fields(twin):
            other_mine = mine._replace(**{f.name: "x"})
            other_theirs = dataclasses.replace(theirs, **{f.name: "x"})
            assert (other_mine == mine) is (other_theirs == theirs), (cls, f.name)
    assert Decision("allow", "allowed", "ok", charge=1) == Decision("allow", "allowed", "ok", charge=2)
    assert "charge" not in repr(Decision("allow", "allowed", "ok", charge=1))


@pytest.mark.parametrize("cls", [Decision, TraceStep, Charge])
def test_the_public_records_answer_the_dataclasses_api(cls: type) -> None:
    _, args, kwargs = next(s for s in SAMPLES if s[0] is cls)
    mine, theirs, twin = _both(cls, args, kwargs)
    assert dataclasses.is_dataclass(mine) and dataclasses.is_dataclass(cls)
    assert [(f.name, f.default, f.compare, f.repr) for f in dataclasses.fields(mine)] == [
        (f.name, f.default, f.compare, f.repr) for f in dataclasses.fields(theirs)
    ]
    assert dataclasses.asdict(mine) == dataclasses.asdict(theirs)
    assert dataclasses.astuple(mine) == dataclasses.astuple(theirs)
    replaced = dataclasses.replace(mine, **{cls.__slots__[0]: "changed"})
    assert type(replaced) is cls and getattr(replaced, cls.__slots__[0]) == "changed"
    assert cls.__dataclass_params__.frozen


@pytest.mark.parametrize(("cls", "args", "kwargs"), SAMPLES[:5], ids=lambda v: getattr(v, "__name__", ""))
def test_a_public_record_pickles(cls: type, args: tuple, kwargs: dict) -> None:
    mine = cls(*args, **kwargs)
    back = pickle.loads(pickle.dumps(mine))
    assert type(back) is cls and back.__getstate__() == mine.__getstate__()


def test_match_reads_a_decision_by_position() -> None:
    match Decision("deny", "hidden", "why", "p:1"):
        case Decision("deny", code, _, rule):
            assert (code, rule) == ("hidden", "p:1")
        case _:
            pytest.fail("no match")


def test_the_engine_imports_no_dataclasses_and_a_granted_charge_is_kept() -> None:
    code = (
        "import sys\nimport dsl.engine\n"
        "print(sorted(m for m in ('dataclasses', 'inspect', 'dsl.errors', 're2', 'datetime') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    from dsl.policy import load_policy

    policy = load_policy({
        "version": "1", "default": "deny",
        "tools": {"t": {"action": "allow", "limits": [{"max": 1, "window": 60, "per": "global", "refund": "error"}]}},
    })  # fmt: skip
    engine = Engine(policy)
    d = engine.decide("t")
    assert (d.effect, d.code) == ("allow", "allowed") and isinstance(d.charge, Charge)
    assert engine.decide("t").code == "rate_limited"
    assert engine.refund(d) and engine.decide("t").effect == "allow"


# -- the answers to a tool no rule names, made once per name ------------------------------------


@pytest.mark.parametrize("default", ["deny", "allow"])
def test_an_unnamed_tool_gets_one_shared_immutable_answer(default: str) -> None:
    """``_default_deny``/``_default_allow``/``_hidden`` keep one Decision per (sane) name: equal to
    a fresh one, the same object each time, still frozen; a long or odd name is never kept (agents
    choose names: the cache must not grow with them)."""
    from dsl.engine.prepare import _default_allow, _default_deny, _hidden

    engine = Engine.from_data({"version": "1", "default": default, "hide": ["secret"], "tools": {}})
    first, again = engine.decide("nope"), engine.decide("nope")
    assert first is again and first == Decision(
        default, "default", f"tool `nope` is {'not ' if default == 'deny' else ''}allowed by policy (default {default})"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.effect = "allow"  # type: ignore[misc]
    hidden = engine.decide("secret")
    assert hidden.code == "hidden" and engine.decide("secret") is hidden
    long_name = "x" * 257
    assert engine.decide(long_name) == engine.decide(long_name) and engine.decide(long_name) is not engine.decide(long_name)
    assert engine.decide(long_name).reason.endswith("...` is " + ("not allowed" if default == "deny" else "allowed") + f" by policy (default {default})")
    for answer in (_default_deny, _default_allow, _hidden):
        assert answer.cached.cache_info().maxsize == 4096  # type: ignore[attr-defined]
