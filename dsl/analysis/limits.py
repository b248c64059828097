"""Limits compared as parameters: which quota got looser, tighter, or changed in a way with no order.

Limits are stateful (counters in a store), so ``plr diff`` does not simulate them: it pairs the
limits of each scope (a tool, or every tool) by whose calls they count (``per``) and when they
apply (``if``), then compares ``max`` and ``window``. A field it does not know (a later limit
kind) is compared as a whole: any difference is a ``change``, never a guess at its direction.
"""

from __future__ import annotations

import json
from typing import Any

from .encode import strip_meta

__all__ = ["limit_changes"]

_ORDERED = {"max", "window", "per", "if"}


def _scopes(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out = {"*": list(data.get("all_tools", {}).get("limits", ()))}
    for name, t in data.get("tools", {}).items():
        out[name] = list(t.get("limits", ()))
    return out


def _pair_key(lim: dict[str, Any]) -> str:
    return json.dumps([lim.get("per", "session"), strip_meta(lim.get("if"))], sort_keys=True)


def _rest(lim: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in strip_meta(lim).items() if k not in _ORDERED}, sort_keys=True)


def _kind(old: dict[str, Any], new: dict[str, Any]) -> str:
    """loosen / tighten / change for two limits of the same scope, counter and condition."""
    if _rest(old) != _rest(new):
        return "change"
    dm = (new["max"] > old["max"]) - (new["max"] < old["max"])
    dw = (new["window"] > old["window"]) - (new["window"] < old["window"])
    if dm >= 0 and dw <= 0:
        return "loosen"  # more calls, or a shorter window to count them in
    if dm <= 0 and dw >= 0:
        return "tighten"
    return "change"


def limit_changes(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Every limit that differs between the policies, with its kind and both rules."""
    so, sn = _scopes(old), _scopes(new)
    out: list[dict[str, Any]] = []
    for scope in sorted(set(so) | set(sn), key=lambda s: (s != "*", s)):
        olds, news = list(so.get(scope, ())), list(sn.get(scope, ()))
        for lim in list(olds):  # unchanged limits (rule lines may move) drop out first
            same = next((n for n in news if strip_meta(n) == strip_meta(lim)), None)
            if same is not None:
                olds.remove(lim)
                news.remove(same)
        for lim in olds:
            key = _pair_key(lim)
            match = next((n for n in news if _pair_key(n) == key), None)
            if match is not None:
                news.remove(match)
            out.append(_entry(scope, lim, match, _kind(lim, match) if match is not None else "loosen"))
        for lim in news:
            out.append(_entry(scope, None, lim, "tighten"))
    return out


def _entry(scope: str, old: dict[str, Any] | None, new: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    return {
        "tool": None if scope == "*" else scope,
        "kind": kind,
        "old": strip_meta(old) if old is not None else None,
        "new": strip_meta(new) if new is not None else None,
        "old_rule": old.get("rule") if old else None,
        "new_rule": new.get("rule") if new else None,
    }
