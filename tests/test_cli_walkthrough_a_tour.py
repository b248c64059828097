"""A new user's walkthrough: the tour in `plr --help` works where a pip-installed plr runs, in
any empty folder, not only inside the checkout (it once named examples/ files a wheel has not)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .conftest import ROOT, run_plr


def tour_commands(help_text: str) -> list[list[str]]:
    """The tour's command lines, as argv after `plr`: the indented `plr ...` lines under the
    line that names the tour, comments dropped."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if "tour" in line.lower())
    out = []
    for line in lines[start + 1 :]:
        if not line.strip().startswith("plr "):
            break
        argv = shlex.split(line, comments=True)
        out.append(argv[1:])
    assert out, help_text
    return out


def outside_the_checkout(tmp_path: Path) -> Path:
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert not work.resolve().is_relative_to(ROOT.resolve())
    return work


def test_the_tour_names_no_file_of_the_checkout() -> None:
    from dsl.cli.root_help import render

    text = render(98)
    assert "examples/" not in text
    assert tour_commands(text)[0][0] == "init"  # it starts by writing what the rest reads


def test_every_tour_command_runs_in_an_empty_folder_outside_the_checkout(tmp_path: Path) -> None:
    from dsl.cli.root_help import render

    work = outside_the_checkout(tmp_path)
    for argv in tour_commands(render(98)):
        proc = run_plr(*argv, cwd=work)
        assert proc.returncode == 0, (argv, proc.stdout_text, proc.stderr_text)
        assert "Traceback" not in proc.stderr_text
        if argv[0] == "eval":
            assert "approval_required" in proc.stdout_text and "policy.plr:" in proc.stdout_text


@pytest.mark.slow
def test_the_tour_runs_from_an_installed_wheel(tmp_path: Path) -> None:
    """`pip install` of the wheel (no checkout on the path; its dependencies are this
    interpreter's, so no network), then each line of its own `plr --help` tour in a temp folder."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wheel = next(dist.glob("plr-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    pip = subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-2000:]
    work = outside_the_checkout(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"NO_COLOR": "1", "PLR_NO_CACHE": "1"}
    plr = str(bindir / "plr")
    where = subprocess.run([str(bindir / "python"), "-c", "import dsl; print(dsl.__file__)"], cwd=work,
                           capture_output=True, text=True, env=env)  # fmt: skip
    assert str(ROOT) not in where.stdout and str(env_dir) in where.stdout, where.stdout + where.stderr
    text = subprocess.run([plr, "--help"], cwd=work, capture_output=True, text=True, env=env, timeout=60)
    assert text.returncode == 0, text.stderr
    for argv in tour_commands(text.stdout):
        proc = subprocess.run([plr, *argv], cwd=work, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
