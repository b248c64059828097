"""A new user's walkthrough: the tour in `plr --help` works where a pip-installed plr runs, in
any empty folder, not only inside the checkout (it once named examples/ files a wheel has not)."""

from __future__ import annotations

import shlex
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


# The tour from an installed wheel runs in tests/test_wheel.py, in the venv that test builds once.
