"""`plr fmt` walking a folder (or `.` by default) rewrites the project's own policies only."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import run_plr

UGLY = 'default deny\nallow   tool "a"\n'
PRETTY = 'default deny\n\nallow tool "a"\n'


def test_a_folder_walk_leaves_outside_symlink_targets_and_virtualenvs_alone(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.plr").write_text(UGLY)
    proj = tmp_path / "proj"
    (proj / "venv" / "lib").mkdir(parents=True)
    (proj / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (proj / "venv" / "lib" / "v.plr").write_text(UGLY)
    (proj / "p.plr").write_text(UGLY)
    (proj / "inner.plr").symlink_to(proj / "p.plr")  # a link inside the tree: its target is the project's
    os.symlink(outside / "o.plr", proj / "link.plr")
    res = run_plr("fmt", cwd=proj)
    assert res.returncode == 0, res.stderr
    assert (proj / "p.plr").read_text() != UGLY  # the project's policy is formatted
    assert (outside / "o.plr").read_text() == UGLY  # the link's target outside the tree is not
    assert (proj / "venv" / "lib" / "v.plr").read_text() == UGLY
    # named on the command line, a link is formatted (its target), as before
    res = run_plr("fmt", "link.plr", cwd=proj)
    assert res.returncode == 0, res.stderr
    assert (outside / "o.plr").read_text() != UGLY
