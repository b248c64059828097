"""`plr test`: runs test blocks against the compiled JSON, reports like pytest, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


from .conftest import SPEC_PLR, nested_pytest_env, run_plr

CODEX = SPEC_PLR


def test_spec_example_passes():
    proc = run_plr("test", str(CODEX))
    assert proc.returncode == 0, proc.stdout_text + proc.stderr_text
    assert "3 passed, 0 failed" in proc.stdout_text


WRONG = '''
default deny
allow tool "get-task"
deny tool "cancel-task" unless approved
    reason "a human must approve"
limit tool "cancel-task" to 2 per minute

test "expectations that are wrong" {
    call "get-task" -> allow
    call "cancel-task" {task_id: "t-1"} -> allow
}

test "limits" {
    repeat 2 { call "cancel-task" {task_id: "t"} approved -> allow }
    call "cancel-task" {task_id: "t"} approved -> deny rate_limited
    after 60s
    call "cancel-task" {task_id: "t"} approved -> allow
}
'''


def test_wrong_expectation_names_file_line_call_expected_actual_and_rule(tmp_path: Path, snapshot):
    f = tmp_path / "wrong.plr"
    f.write_text(WRONG)
    proc = run_plr("test", "wrong.plr", cwd=tmp_path)
    assert proc.returncode == 1
    out = proc.stdout_text
    assert "1 passed, 1 failed" in out
    # timings vary: pin everything but the duration
    assert out.rsplit(" in ", 1)[0] == snapshot


def test_verbose_shows_each_test_and_the_trace(tmp_path: Path):
    f = tmp_path / "wrong.plr"
    f.write_text(WRONG)
    out = run_plr("test", "-v", str(f)).stdout_text
    assert "PASS" in out and "FAIL" in out
    assert "action == require_approval" in out


def test_run_selects_by_name_and_counts_skipped(tmp_path: Path):
    f = tmp_path / "wrong.plr"
    f.write_text(WRONG)
    proc = run_plr("test", "--run", "^limits$", str(f))
    assert proc.returncode == 0
    assert "1 passed, 0 failed, 1 skipped" in proc.stdout_text


def test_compile_error_exits_2(tmp_path: Path):
    (tmp_path / "broken.plr").write_text('default deny\ntest "t" { call "x" -> deny }\nallow tool "x" if argz.a == 1\n')
    proc = run_plr("test", str(tmp_path))
    assert proc.returncode == 2
    assert "broken.plr:3:19" in proc.stderr_text


def test_json_and_junit_formats(tmp_path: Path):
    f = tmp_path / "wrong.plr"
    f.write_text(WRONG)
    data = json.loads(run_plr("test", "--format", "json", str(f)).stdout_text)
    assert (data["passed"], data["failed"]) == (1, 1)
    failure = data["tests"][0]["failures"][0]
    assert failure["line"] == 10 and failure["expected"] == "allow"
    assert failure["actual"].startswith("approval_required require")
    xml = run_plr("test", "--format", "junit", str(f)).stdout_text
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    assert root.attrib["failures"] == "1" and len(root.findall(".//testcase")) == 2


def test_coverage_lists_rules_no_test_touched(tmp_path: Path):
    f = tmp_path / "cov.plr"
    f.write_text(
        'default deny\nallow tool "a"\nallow tool "b"\ndeny tool "a" if args.x == 1\n'
        'test "only a" {\n    call "a" -> allow\n}\n'
    )
    proc = run_plr("test", "--coverage", str(f))
    assert proc.returncode == 0
    assert "not exercised: " in proc.stdout_text and "cov.plr:3: allow tool \"b\"" in proc.stdout_text
    assert "cov.plr:2" not in proc.stdout_text.split("coverage:")[1]
    proc = run_plr("test", "--coverage", "--fail-under", "90", str(f))
    assert proc.returncode == 1 and "under 90%" in proc.stderr_text


def test_snapshots_detect_drift_with_a_diff(tmp_path: Path):
    f = tmp_path / "p.plr"
    f.write_text('default deny\nallow tool "a"\ntest "t" {\n    call "a" -> allow\n}\n')
    assert run_plr("test", "--snapshot", str(f)).returncode == 1  # missing snapshot
    proc = run_plr("test", "--update-snapshots", str(f))
    assert proc.returncode == 0 and "updated snapshot" in proc.stderr_text
    snap = tmp_path / "__snapshots__" / "p.json"
    assert json.loads(snap.read_text())["tools"] == {"a": {}}
    assert run_plr("test", "--snapshot", str(f)).returncode == 0
    f.write_text('default deny\nallow tool "a"\nallow tool "b"\ntest "t" {\n    call "a" -> allow\n}\n')
    proc = run_plr("test", "--snapshot", str(f))
    assert proc.returncode == 1
    assert '+    "b": {}' in proc.stdout_text and "differs from its snapshot" in proc.stdout_text


def test_visible_and_context_steps(tmp_path: Path):
    f = tmp_path / "ctx.plr"
    f.write_text(
        'server "s" {\n    tool "a" read\n    tool "b" write\n}\ndefault deny\nallow tools ["a", "b"]\n'
        'hide tool "b"\nlimit tool "a" to 1 per hour per identity\n'
        'test "ctx" {\n    as identity "u1" session "s1"\n    call "a" -> allow\n    session "s2"\n'
        '    call "a" -> deny rate_limited reason "retry after"\n    identity "u2"\n    call "a" -> allow\n'
        '    visible ["a"]\n}\n'
        'test "visible wrong" {\n    visible ["a", "b"]\n}\n'
    )
    proc = run_plr("test", str(f))
    assert "1 passed, 1 failed" in proc.stdout_text, proc.stdout_text
    assert "not visible: b" in proc.stdout_text


def test_pytest_plugin_collects_plr_tests(tmp_path: Path):
    shutil.copy(CODEX, tmp_path / "codex_worker.plr")
    (tmp_path / "wrong.plr").write_text(WRONG)
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--plr", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=nested_pytest_env(),
    )
    assert "1 failed, 4 passed" in proc.stdout, proc.stdout
    assert "expected: allow" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=nested_pytest_env(),
    )
    assert "no tests ran" in proc.stdout


def test_coverage_counts_hide_and_limit_rules_and_allowed_code(tmp_path: Path):
    f = tmp_path / "cov2.plr"
    f.write_text(
        'default deny\nallow tool "a"\nhide tool "h"\nlimit tool "a" to 5 per minute\n'
        'test "t" {\n    call "a" -> allow allowed\n    call "h" -> deny hidden\n}\n'
    )
    proc = run_plr("test", "--coverage", str(f))
    assert proc.returncode == 0, proc.stdout_text + proc.stderr_text
    assert "coverage: 100.0% of 3 rules" in proc.stdout_text


# --- files plr compile would refuse are refused the same way ------------------------------

GOOD = 'default deny\nallow tool "a"\ntest "a" {\n    call "a" -> allow\n}\n'


def _refused_files(folder: Path) -> dict[str, str]:
    """An oversized (sparse) file, a non-UTF-8 file and a FIFO beside a good policy; the
    message `plr compile` gives each."""
    import os

    (folder / "good.plr").write_text(GOOD)
    with open(folder / "big.plr", "wb") as f:
        f.truncate(40 * 1024 * 1024)  # over MAX_POLICY_BYTES, without writing 40 MB
    (folder / "latin1.plr").write_bytes(b'default deny\n# caf\xe9\n')
    os.mkfifo(folder / "pipe.plr")  # a read of it would wait for ever
    out = {}
    for name in ("big.plr", "latin1.plr", "pipe.plr"):
        proc = run_plr("compile", name, cwd=folder, timeout=20)
        assert proc.returncode == 2, proc.stderr_text
        out[name] = proc.stderr_text.splitlines()[0].split(": error: ", 1)[1]
    return out


def test_files_plr_compile_refuses_are_errors_with_its_words_and_exit_2(tmp_path: Path):
    expected = _refused_files(tmp_path)
    assert "larger than" in expected["big.plr"] and "not UTF-8" in expected["latin1.plr"] and "FIFO" in expected["pipe.plr"]
    proc = run_plr("test", ".", cwd=tmp_path, timeout=20)  # never waits on the FIFO
    assert proc.returncode == 2, proc.stdout_text + proc.stderr_text
    assert "Traceback" not in proc.stderr_text + proc.stdout_text
    for name, message in expected.items():
        assert f"{name}: error: {message}" in proc.stderr_text
    assert "1 passed, 0 failed, 3 errors" in proc.stdout_text  # the good policy's tests still ran
    data = json.loads(run_plr("test", ".", "--format", "json", cwd=tmp_path, timeout=20).stdout_text)
    assert sorted(e["message"] for e in data["errors"]) == sorted(expected.values())
    # named on the command line, a FIFO is refused the same way
    proc = run_plr("test", "pipe.plr", cwd=tmp_path, timeout=20)
    assert proc.returncode == 2 and f"pipe.plr: error: {expected['pipe.plr']}" in proc.stderr_text


def test_suite_roots_never_waits_on_a_fifo(tmp_path) -> None:
    """Finding the roots reads each file through the safe reader: a FIFO is a root that does
    not compile (its error says why), never a read that waits for a writer."""
    import os
    import threading

    from dsl.tester import suite_roots

    good = tmp_path / "a.plr"
    good.write_text('default deny\nallow tool "x"\n')
    fifo = tmp_path / "b.plr"
    os.mkfifo(fifo)
    out: list[list[str]] = []
    t = threading.Thread(target=lambda: out.append(suite_roots([str(good), str(fifo)])), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "suite_roots is waiting on the FIFO"
    assert out == [[str(good), str(fifo)]]
