"""Exact policy analysis (``plr diff``, ``plr analyze``, ``plr query``) with the z3 SMT solver.

The compiled policy's decision function (dsl/engine/core.py's order of checks) is encoded as
z3 terms over one symbolic call (``encode``, ``decision``); ``diff``, ``analyze`` and ``query``
ask the solver questions about it, ``witness`` turns its models into calls and confirms each
on the real engine, ``limits`` compares limits as parameters, ``report`` renders results and
``inputs`` loads .plr/.json policies (or a git revision of them). z3 is an optional extra,
imported lazily (``solver``). See docs/analysis.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["diff_policies", "analyze_policy", "query_policy"]


def diff_policies(old: dict[str, Any], new: dict[str, Any]) -> Any:
    from .diff import diff_policies as run

    return run(old, new)


def analyze_policy(data: dict[str, Any]) -> Any:
    from .analyze import analyze_policy as run

    return run(data)


def query_policy(data: dict[str, Any], effect: str, tool: str, identity: str | None = None) -> Any:
    from .query import query_policy as run

    return run(data, effect, tool, identity)
