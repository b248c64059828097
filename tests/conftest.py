"""Shared fixtures: paths of the checkout, the spec, and a runner for the `plr` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "spec"
EXAMPLES = ROOT / "examples"
STDLIB = ROOT / "stdlib_rules"


def example_files() -> list[Path]:
    return sorted(EXAMPLES.rglob("*.plr"))


def run_plr(*args: str, cwd: Path | str | None = None, input: str | bytes | None = None, timeout: float = 60):
    """Run the CLI in a subprocess (as users do), returning the CompletedProcess."""
    env = dict(os.environ, NO_COLOR="1", PYTHONIOENCODING="utf-8")
    if isinstance(input, str):
        input = input.encode()
    proc = subprocess.run(
        [sys.executable, "-m", "dsl.cli", *args],
        cwd=str(cwd or ROOT),
        input=input,
        capture_output=True,
        timeout=timeout,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    proc.stdout_text = proc.stdout.decode("utf-8", "replace")  # type: ignore[attr-defined]
    proc.stderr_text = proc.stderr.decode("utf-8", "replace")  # type: ignore[attr-defined]
    return proc


@pytest.fixture
def plr():
    return run_plr
