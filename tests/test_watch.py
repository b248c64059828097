"""`plr watch` with real file changes in a temp dir: rerun on save, survive a broken save, Ctrl-C."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dsl.watch import WatchState, affected_roots, find_roots, run_roots, summary_lines

from .conftest import ROOT

POLICY = 'default deny\nallow tool "a"\n'
TESTS = 'import "./p.plr"\ntest "a is allowed" {\n    call "a" -> allow\n}\n'


def test_affected_roots_follow_imports(tmp_path: Path):
    state = WatchState({"t.plr": {str(tmp_path / "t.plr"), str(tmp_path / "p.plr")}, "u.plr": {str(tmp_path / "u.plr")}})
    assert affected_roots(state, [str(tmp_path / "p.plr")], ["t.plr", "u.plr"]) == ["t.plr"]


class Lines:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            self.q.put(line)

    def wait_for(self, needle: str, timeout: float = 30.0) -> str:
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if needle in line:
                return "".join(seen)
        raise AssertionError(f"{needle!r} not seen within {timeout}s; got:\n{''.join(seen)}")


def exit_code(proc: subprocess.Popen, lines: Lines, budget: float = 30.0) -> int:
    """Wait for the exit after Ctrl-C; a busy CI machine can starve the child for seconds.

    If it still hangs, abort it so faulthandler prints every thread's stack: the failure
    then says what held the watcher instead of only that it timed out.
    """
    try:
        return proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait(timeout=10)
        time.sleep(0.2)  # let the pump thread drain the dump
        raise AssertionError(f"plr watch did not exit within {budget}s of SIGINT:\n{''.join(list(lines.q.queue))}") from None


def test_watch_reruns_on_save_and_survives_a_broken_save(tmp_path: Path):
    (tmp_path / "p.plr").write_text(POLICY)
    (tmp_path / "p_test.plr").write_text(TESTS)
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsl.cli", "watch", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    try:
        lines = Lines(proc)
        lines.wait_for("1 passed, 0 failed")
        time.sleep(0.3)  # let the watcher arm before the first change
        (tmp_path / "p.plr").write_text('default deny\nallow tool "b"\n')
        out = lines.wait_for("0 passed, 1 failed")
        assert "changed: p.plr" in out and "expected: allow" in out
        (tmp_path / "p.plr").write_text('default deny\nallow tool "a" if argz.x == 1\n')
        out = lines.wait_for("1 error in")
        assert "p.plr:2:19: error: unknown path root `argz`" in out
        (tmp_path / "p.plr").write_text(POLICY)
        lines.wait_for("1 passed, 0 failed")
        proc.send_signal(signal.SIGINT)
        assert exit_code(proc, lines) == 0
        assert "Traceback" not in "".join(list(lines.q.queue))
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.timeout(20)  # a FIFO read by mistake would wait for ever
def test_files_plr_compile_refuses_are_shown_with_its_words_and_never_opened(tmp_path: Path):
    from dsl.proxy.reload import read_policy_text

    (tmp_path / "p.plr").write_text(POLICY)
    (tmp_path / "p_test.plr").write_text(TESTS)
    with open(tmp_path / "big.plr", "wb") as f:
        f.truncate(40 * 1024 * 1024)  # over the size limit, sparse
    (tmp_path / "latin1.plr").write_bytes(b"default deny\n# caf\xe9\n")
    os.mkfifo(tmp_path / "pipe.plr")
    expected = {}
    for name in ("big.plr", "latin1.plr", "pipe.plr"):  # what `plr compile` says (its reader)
        try:
            read_policy_text(str(tmp_path / name))
        except (OSError, ValueError) as e:
            expected[name] = f"cannot read {tmp_path / name}: {e}"
    assert len(expected) == 3

    roots, unreadable = find_roots([str(tmp_path)])
    assert {os.path.basename(r) for r in roots} == {"p_test.plr", "latin1.plr"}  # p.plr is imported
    report = run_roots(roots, None, WatchState(), unreadable)
    assert sorted(d.message for d in report.errors) == sorted(expected.values())
    assert report.passed == 1  # the good policy's tests still run
    text = "\n".join(summary_lines(report, []))
    assert "1 passed, 0 failed, 3 errors" in text and "Traceback" not in text
