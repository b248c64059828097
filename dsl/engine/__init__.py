"""The decision engine: a loaded policy, prepared once, decides each MCP tool call in microseconds.

``Engine(policy)`` (or ``Engine.from_data(policy.to_dict())``, the path that never imports
pydantic: the compiled-policy cache feeds it) prepares the policy up front, so ``decide`` does
no parsing, no string dispatch and no work for tools that have nothing to check. Condition
meaning is ``spec/language.md`` ("Conditions"); the decision order is ``spec/policy-json.md``.

Where things live:

- ``core``: ``Engine`` (``decide``, ``explain``, hot reload, the limit step);
- ``prepare``: the policy turned into closures and fixed decisions, once per policy;
- ``conditions``: a condition as a closure over the call (paths, ``fn``, ``all``/``any``/``not``);
- ``operators``: what each comparison means (JSON-strict equality, ordering, ``in``, RE2);
- ``describe``: conditions, names and durations as reasons and traces show them;
- ``decision``: ``Decision`` and ``TraceStep``, the results.

Elsewhere: the checks of the policy JSON are ``dsl.validate`` (shared with the loader,
``dsl.policy``); limit counters and ``StateUnavailable`` are ``dsl.state``.
"""

from __future__ import annotations

from ..state.base import LimitStore, StateUnavailable
from ..state.memory import MemoryLimitStore
from ..validate import Data, check_data
from .conditions import MISSING, Ctx, Pred, compile_condition, parse_path
from .core import Engine
from .decision import Code, Decision, Effect, TraceStep
from .describe import describe
from .operators import strict_eq
from .prepare import prepare

__all__ = [
    "Engine",
    "Decision",
    "TraceStep",
    "LimitStore",
    "MemoryLimitStore",
    "StateUnavailable",
    "MISSING",
    "Effect",
    "Code",
    "Ctx",
    "Data",
    "Pred",
    "check_data",
    "compile_condition",
    "describe",
    "parse_path",
    "prepare",
    "strict_eq",
]
