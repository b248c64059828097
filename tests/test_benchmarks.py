"""The benchmarks run and write well-formed results (``python -m benchmarks --quick``).

Timings are never asserted here: targets are reported by the benchmarks, not tested. What is
tested: the command exits 0, prints its table, writes one JSON document of the documented
shape, the Cedar baseline decides like plr on the probe calls, and a missing cedarpy is a
"skipped" row rather than a crash.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATUSES = {"PASS", "FAIL", "INFO", "SKIP", "TODO"}
SECTIONS = ["decision", "compile", "cli", "memory", "proxy"]
ROW_KEYS = {
    "section", "case", "result", "values", "baseline", "baseline_name", "baseline_values",
    "ratio", "ratio_text", "target", "status", "note",
}  # fmt: skip


def _run(
    out: Path, *args: str, extra_path: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", PYTHONIOENCODING="utf-8")
    paths = [str(p) for p in (extra_path, ROOT) if p is not None]
    env["PYTHONPATH"] = os.pathsep.join([*paths, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _only_result(out: Path) -> dict[str, Any]:
    files = sorted(out.glob("*.json"))
    assert len(files) == 1, files
    doc = json.loads(files[0].read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _numbers_are_finite(values: dict[str, Any]) -> None:
    for key, v in values.items():
        if isinstance(v, float):
            assert math.isfinite(v), (key, v)


def _check_row(row: dict[str, Any], section: str) -> None:
    assert set(row) == ROW_KEYS, set(row) ^ ROW_KEYS
    assert row["section"] == section
    assert row["status"] in STATUSES
    assert isinstance(row["case"], str) and row["case"].strip()
    assert isinstance(row["result"], str) and row["result"]
    assert isinstance(row["values"], dict) and isinstance(row["baseline_values"], dict)
    _numbers_are_finite(row["values"])
    _numbers_are_finite(row["baseline_values"])
    if row["status"] in ("PASS", "FAIL"):
        assert row["target"], row  # a verdict always says what it was measured against
    if row["ratio"] is not None:
        assert isinstance(row["ratio"], (int, float)) and row["ratio"] >= 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    proc = _run(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, _only_result(out)


def test_quick_run_writes_a_well_formed_result(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]):
    proc, doc = quick_run
    assert "Traceback" not in proc.stderr
    assert doc["schema"] == "plr-bench/1"
    assert doc["mode"] == "quick"
    assert doc["crashed"] is False
    assert [n for n in doc["benchmarks"] if n in SECTIONS] == SECTIONS  # others may be added
    assert [s["name"] for s in doc["sections"]] == doc["benchmarks"]
    assert set(doc["summary"]) == STATUSES
    assert sum(doc["summary"].values()) == sum(len(s["rows"]) for s in doc["sections"])
    assert doc["machine"]["python"] and doc["machine"]["cpus"]
    assert 1 < doc["machine"]["python_speed_ns"] < 100_000  # a step of plain Python takes some ns
    for section in doc["sections"]:
        assert section["rows"], section["name"]
        assert section["seconds"] >= 0
        for row in section["rows"]:
            _check_row(row, section["name"])
        for table in section["tables"]:
            assert all(len(r) == len(table["header"]) for r in table["rows"])


def test_quick_run_prints_the_table(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]):
    proc, doc = quick_run
    for section in doc["sections"]:
        assert section["title"] in proc.stdout
        for row in section["rows"]:
            assert row["case"][:30] in proc.stdout
    assert "results:" in proc.stdout


def test_every_target_has_a_verdict(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]):
    _, doc = quick_run
    rows = {s["name"]: s["rows"] for s in doc["sections"]}
    verdicts = [r for r in rows["decision"] if r["status"] in ("PASS", "FAIL")]
    assert any("p50 ≤" in r["target"] for r in verdicts)
    assert any("flat" in r["target"] for r in verdicts)
    assert any("bare parse" in r["target"] for r in rows["compile"])
    assert any(r["target"] == "≤ 40 ms" and r["status"] in ("PASS", "FAIL") for r in rows["cli"])
    proxy = rows["proxy"]
    assert proxy[0]["status"] == "TODO" or all(
        any(t in r["target"] and r["status"] in ("PASS", "FAIL") for r in proxy)
        for t in ("added p50 ≤ 300 µs", "≥ 0.7× direct", "flat")
    )


def test_decision_rows_carry_latencies(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]):
    _, doc = quick_run
    section = next(s for s in doc["sections"] if s["name"] == "decision")
    measured = [r for r in section["rows"] if "p50_ns" in r["values"]]
    # (a), (b), (c) per policy size, (d) `every` over ten paths once, (e) a tool no rule names once
    assert len(measured) == 3 * len(section["details"]["sizes"]) + 2
    assert [r["values"]["items"] for r in measured if r["case"].startswith("(d)")] == [10]
    assert [r["case"] for r in measured if r["case"].startswith("(e)")] == ["(e) a tool no rule names (default deny)"]
    for r in measured:
        assert 0 <= r["values"]["p50_ns"] <= r["values"]["p99_ns"]


def test_cedar_translation_decides_like_plr(quick_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]):
    pytest.importorskip("cedarpy")
    _, doc = quick_run
    section = next(s for s in doc["sections"] if s["name"] == "decision")
    for info in section["details"]["policies"]:
        assert info["probe_disagreements"] == [], info


def test_missing_cedarpy_is_a_skipped_row_not_a_crash(tmp_path: Path):
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "cedarpy.py").write_text('raise ImportError("cedarpy blocked by the test")\n', encoding="utf-8")
    out = tmp_path / "out"
    proc = _run(out, "--only", "decision", extra_path=blocker)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "skipped: cedarpy not installed" in proc.stdout
    doc = _only_result(out)
    assert doc["benchmarks"] == ["decision"]
    rows = doc["sections"][0]["rows"]
    assert any(r["status"] == "SKIP" for r in rows)
    assert all(r["baseline_name"] is None for r in rows)


def test_unknown_benchmark_name_is_a_usage_error(tmp_path: Path):
    proc = _run(tmp_path, "--only", "nonsense")
    assert proc.returncode != 0
    assert "unknown benchmark" in proc.stderr


def test_regex_to_like_translates_only_what_like_can_say():
    sys.path.insert(0, str(ROOT))
    from benchmarks.cedar import NotTranslatable, regex_to_like

    assert regex_to_like(r"^/etc/.*\.conf$") == '"/etc/*.conf"'
    assert regex_to_like(r"(?s)^/etc/.*\.conf$") == '"/etc/*.conf"'  # `.*` that matches a newline, as `*` does
    assert regex_to_like("^/etc/") == '"/etc/*"'
    assert regex_to_like("secret") == '"*secret*"'
    assert regex_to_like(r"a\*b$") == '"*a\\*b"'
    for bad in ("^a|b$", "[0-9]+", "^(x)?$"):
        with pytest.raises(NotTranslatable):
            regex_to_like(bad)
