"""Fixtures for the fleet tests: real ``plr proxy --listen`` replicas sharing one real redis-server.

``redis_server`` comes from ``tests/conftest.py`` (a redis-server on a free port, no
persistence); the proxy helpers are those of ``tests/proxy/conftest.py``. Replicas are started
together (their start-up overlaps) and stopped by pid.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the fleet tests need the `mcp` SDK (pip install 'plr[test]')")
pytest.importorskip("redis", reason="the fleet tests need redis-py (pip install 'plr[test]')")

from tests.conftest import ROOT  # noqa: E402
from tests.proxy.conftest import FAKE_SERVER, base_env, free_port, run_proxy_cli, stop, wait_for_port  # noqa: E402

__all__ = ["Replica", "replicas", "plr_approvals", "read_jsonl"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Replica:
    """One ``plr proxy --listen`` process in front of its own fake codex worker."""

    def __init__(self, tmp: Path, name: str, policy: str, args: tuple[str, ...]) -> None:
        self.name = name
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.audit = self.dir / "audit.jsonl"
        self.calls_log = self.dir / "calls.jsonl"
        self.stderr_path = self.dir / "stderr.txt"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.argv = [
            sys.executable, "-m", "dsl.proxy",
            "--policy", policy,
            "--audit", str(self.audit),
            "--listen", f"127.0.0.1:{self.port}",
            *args,
            "--", sys.executable, str(FAKE_SERVER),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=str(ROOT),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=base_env(FAKE_CODEX_LOG=str(self.calls_log)),
            )

    def wait_ready(self) -> None:
        try:
            wait_for_port(self.port, self.proc)
        except (RuntimeError, TimeoutError) as e:
            raise AssertionError(f"replica {self.name} did not start: {e}\n{self.stderr()}") from None

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        """The decision records (not the audit log's events, such as ``tools_compared``)."""
        return [r for r in read_jsonl(self.audit) if "event" not in r]

    def calls(self) -> list[dict[str, Any]]:
        return read_jsonl(self.calls_log)

    def wait_stderr(self, needle: str, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stderr().count(needle) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: {needle!r} x{count} not in stderr:\n{self.stderr()}")


@contextmanager
def replicas(tmp: Path, policy: str, *args: str, n: int = 2) -> Iterator[list[Replica]]:
    """``n`` replicas with the same policy and arguments, started in parallel."""
    reps = [Replica(tmp, chr(ord("a") + i), policy, args) for i in range(n)]
    try:
        for r in reps:
            r.start()
        for r in reps:
            r.wait_ready()
        yield reps
        for r in reps:  # a clean shutdown (SIGTERM): exit 0, no traceback
            assert r.proc is not None
            r.proc.terminate()
            code = r.proc.wait(timeout=15)
            assert code == 0 and "Traceback" not in r.stderr(), (r.name, code, r.stderr())
    finally:
        for r in reps:
            r.stop()


def plr_approvals(state_url: str, *args: str) -> Any:
    """``plr approvals --state URL ARGS`` as the operator runs it (a separate process)."""
    return run_proxy_cli("approvals", "--state", state_url, *args, timeout=30)
