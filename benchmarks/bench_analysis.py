"""Exact policy analysis (#16): ``plr diff`` and ``plr analyze`` wall time, in process.

- diff of each example in examples/ against an edited copy (its first numeric literal raised
  by one, else its first deny_if dropped): target <= 1 s each;
- diff of two generated 1,000-rule policies (one deny_if and one require per tool, every
  tenth tool's threshold changed): target <= 10 s;
- analyze of every stdlib pack: target <= 1 s each.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from .harness import Config, Row, Section, fmt_s, status_of

NAME = "analysis"
TITLE = "Exact analysis: plr diff / plr analyze (z3)"
ROOT = Path(__file__).resolve().parent.parent


def _edit(data: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(data)

    def bump(c: Any) -> bool:
        if isinstance(c, dict):
            if isinstance(c.get("value"), int) and not isinstance(c.get("value"), bool):
                c["value"] += 1
                return True
            return any(bump(v) for v in c.values() if isinstance(v, (dict, list)))
        if isinstance(c, list):
            return any(bump(x) for x in c)
        return False

    if not bump(new.get("tools", {})):
        for t in new.get("tools", {}).values():
            if t.get("deny_if"):
                t["deny_if"].pop(0)
                break
    return new


def _generated(n: int, changed: bool) -> dict[str, Any]:
    tools = {}
    for i in range(n):
        limit = i + (1 if changed and i % 10 == 0 else 0)
        tools[f"tool-{i}"] = {
            "deny_if": [{"path": "args.n", "op": "gt", "value": limit}],
            "require": [{"any": [{"path": "identity", "op": "in", "value": ["ops", f"team-{i}"]}, {"path": "approved", "op": "eq", "value": True}]}],
        }
    return {"version": "1", "default": "deny", "tools": tools}


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def run(cfg: Config) -> Section:
    import dsl
    from dsl.analysis.analyze import analyze_policy
    from dsl.analysis.diff import diff_policies
    from dsl.analysis.inputs import load_side

    sec = Section(NAME, TITLE)
    for f in sorted((ROOT / "examples").glob("*.plr")):
        old = load_side(str(f))
        secs, r = _timed(diff_policies, old, dsl.load_policy(_edit(old)).to_dict())
        sec.rows.append(Row(NAME, f"diff {f.name} vs edited", f"{fmt_s(secs)} ({len(r.changes)} changes, {len(r.unknown)} unknown)",
                            values={"seconds": secs}, target="<= 1 s", status=status_of(secs <= 1.0)))
    n = 100 if cfg.quick else 1000
    old, new = (dsl.load_policy(_generated(n, c)).to_dict() for c in (False, True))
    secs, r = _timed(diff_policies, old, new)
    sec.rows.append(Row(NAME, f"diff two generated {n}-rule policies", f"{fmt_s(secs)} ({len(r.changes)} changes)",
                        values={"seconds": secs}, target="<= 10 s", status=status_of(secs <= 10.0)))
    worst, worst_name = 0.0, ""
    for f in sorted((ROOT / "stdlib_rules").glob("*.plr")):
        try:
            data = load_side(str(f))
        except dsl.PlrError:
            continue  # a catalogue fragment that is not a policy on its own
        secs, _ = _timed(analyze_policy, data)
        if secs >= worst:
            worst, worst_name = secs, f.name
    sec.rows.append(Row(NAME, "analyze each stdlib pack (slowest)", f"{fmt_s(worst)} ({worst_name})",
                        values={"seconds": worst}, target="<= 1 s", status=status_of(worst <= 1.0)))
    return sec
