"""`pip install .` into a clean venv outside the checkout works: grammar and stdlib ship inside."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow


def test_wheel_installs_and_compiles_outside_the_checkout(tmp_path: Path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(dist.glob("plr-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "dsl/_data/grammar/plr.lark" in names
    assert any(n.startswith("dsl/_data/stdlib_rules/") and n.endswith(".plr") for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    pip = subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, timeout=600
    )
    assert pip.returncode == 0, pip.stderr[-2000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "p.plr").write_text(
        'import "stdlib/mcp-codex-worker"\ndefault deny\ndeny destructive tools unless approved\n'
        'test "t" {\n    call "cancel-task" {task_id: "x"} -> approval_required\n}\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(bindir / "plr"), "compile", "p.plr"], cwd=work, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert '"cancel-task"' in out.stdout and '"require_approval"' in out.stdout
    out = subprocess.run([str(bindir / "plr"), "test", "p.plr"], cwd=work, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout + out.stderr
    where = subprocess.run(
        [str(bindir / "python"), "-c", "import dsl, dsl.resources as r; print(dsl.__file__); print(r.grammar_path())"],
        cwd=work, capture_output=True, text=True, env=env,
    )
    assert str(ROOT) not in where.stdout, where.stdout

    # the tour of `plr --help` runs there too, line by line, in an empty folder (it once named
    # examples/ files a wheel has not): built on this venv rather than a second wheel and venv
    from .test_cli_walkthrough_a_tour import tour_commands

    tour = tmp_path / "tour"
    tour.mkdir()
    env |= {"NO_COLOR": "1", "PLR_NO_CACHE": "1"}
    text = subprocess.run([str(bindir / "plr"), "--help"], cwd=tour, capture_output=True, text=True, env=env, timeout=60)
    assert text.returncode == 0, text.stderr
    for argv in tour_commands(text.stdout):
        proc = subprocess.run([str(bindir / "plr"), *argv], cwd=tour, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
