"""Language server: how soon an editor shows `plr check`'s diagnostics after a change.

``plr lsp`` runs as an editor runs it (a child process over stdio, ``dsl.lsp.client``) on a
folder holding one generated policy of 1,000 rules (``policies.compile_policy``: a catalogue,
conditions of every kind, limits). Each timed edit sends the whole text (``didChange``, as the
server asks) and waits for the ``publishDiagnostics`` it causes; edits alternate between a
rule naming a tool no catalogue declares (an error with a "did you mean" search) and the clean
text (the error cleared), so every edit has a publication to wait for. The baseline is the
same check in this process (``dsl.compiler.build`` of the same text): what the server cannot
go below, since it runs exactly that build. Wall time (the editor waits in wall time).

A second row times an edit that leaves a syntax error in the middle of the file (a rule cut
short before the next one): the parser's error recovery parses the file again for each further
error it finds, so this is reported (INFO) beside the target's row, not under it. Two untimed
edits come first, so the check of the freshly opened file is over before the clock starts.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .harness import Config, Row, Section, fmt_ratio, status_of
from .policies import compile_policy, count_rules

NAME = "lsp"
TITLE = "Language server: didChange → publishDiagnostics (plr lsp over stdio)"
TARGET_MS = 200.0
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class _Plan:
    rules: int
    edits: int


def _plan(cfg: Config) -> _Plan:
    return _Plan(200, 4) if cfg.quick else _Plan(1_000, 21)


def _env() -> dict[str, str]:
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _edited(text: str, k: int) -> str:
    """The policy with its ``k``-th `allow tool` rule naming an undeclared tool (a typo of a
    declared one)."""
    rules = re.findall(r'^allow tool "[^"]+"', text, flags=re.MULTILINE)
    rule = rules[k % len(rules)]
    return text.replace(rule, rule[:-1] + 'x"', 1)


def _cut_short(text: str) -> str:
    """The policy with a rule in the middle cut short before the next one (`... if args.x ==`)."""
    lines = text.split("\n")
    mid = len(lines) // 2
    return "\n".join([*lines[:mid], 'allow tool "svc0-tool-00001" if args.size ==', *lines[mid:]])


def _ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.0f} ms · max {max(values):.0f} ms"


def run(cfg: Config) -> Section:
    section = Section(NAME, TITLE)
    try:
        import pygls  # noqa: F401
    except ImportError:
        section.rows.append(Row(NAME, "didChange → publishDiagnostics", "skipped: pygls not installed (pip install 'plr[lsp]')", status="SKIP"))
        return section
    from dsl.compiler import build
    from dsl.lsp.client import LspClient

    plan = _plan(cfg)
    text = compile_policy(plan.rules)
    rules = count_rules(text)
    with tempfile.TemporaryDirectory(prefix="plr-bench-lsp-") as tmp:
        path = Path(tmp) / "policy.plr"
        path.write_text(text, encoding="utf-8")
        build((), {"policy.plr": text})  # warm this process's parser too
        baseline = []
        for k in range(max(3, plan.edits // 3)):
            t0 = time.perf_counter()
            build([str(path)], reader=lambda p, k=k: _edited(text, k) if p == str(path) else Path(p).read_text())
            baseline.append((time.perf_counter() - t0) * 1e3)
        client = LspClient([sys.executable, "-m", "dsl.cli", "lsp"], cwd=tmp, env=_env())
        try:
            client.initialize(tmp)
            client.open(path, text)
            client.diagnostics(path, timeout=120)  # the first check (parser loaded, catalogue built)
            for warm in (_edited(text, 1), text):  # untimed: the check of the open is over, first uses paid
                mark = client.mark()
                client.change(path, warm)
                client.diagnostics(path, timeout=120, after=mark)
            latencies: list[float] = []
            for k in range(plan.edits):
                broken = k % 2 == 0
                mark = client.mark()
                t0 = time.perf_counter()
                client.change(path, _edited(text, k) if broken else text)
                diags = client.diagnostics(path, timeout=120, after=mark)
                latencies.append((time.perf_counter() - t0) * 1e3)
                if bool(diags) != broken:
                    raise AssertionError(f"edit {k}: expected {'an error' if broken else 'no diagnostics'}, got {diags}")
            mark = client.mark()
            t0 = time.perf_counter()
            client.change(path, _cut_short(text))
            syntax = client.diagnostics(path, timeout=120, after=mark)
            syntax_ms = (time.perf_counter() - t0) * 1e3
        finally:
            client.shutdown()
    p50 = statistics.median(latencies)
    base = statistics.median(baseline)
    big = plan.rules >= 1_000
    section.rows.append(
        Row(
            section=NAME,
            case=f"{rules:,}-rule file, an edit → its diagnostics",
            result=_ms(latencies),
            values={"rules": rules, "bytes": len(text), "edits": plan.edits, "p50_ms": round(p50, 2),
                    "max_ms": round(max(latencies), 2), "runs_ms": [round(x, 2) for x in latencies]},
            baseline=f"plr check's build in-process {base:.0f} ms",
            baseline_name="dsl.compiler.build of the edited text (in this process)",
            baseline_values={"p50_ms": round(base, 2), "runs_ms": [round(x, 2) for x in baseline]},
            ratio=p50 / base if base else None,
            ratio_text=f"{fmt_ratio(p50 / base)} the build" if base else "",
            target=f"p50 ≤ {TARGET_MS:.0f} ms" if big else "",
            status=status_of(p50 <= TARGET_MS) if big else "INFO",
            note="wall time; the server rebuilds the roots that read the file (here: the file)",
        )
    )  # fmt: skip
    section.rows.append(
        Row(
            section=NAME,
            case=f"{rules:,}-rule file, a rule cut short mid-file",
            result=f"{syntax_ms:.0f} ms ({len(syntax)} error{'s' if len(syntax) != 1 else ''})",
            values={"ms": round(syntax_ms, 2), "errors": len(syntax)},
            note="a syntax error: after the first one, the parser blanks the broken statement and parses again, "
            "once per further error (at most 20)",
        )
    )
    return section
