"""How the CLI writes files (`-o`, `plr fmt` in place, `plr init`): like a shell redirect, but atomic.

Special files are written into, never replaced; a symlink's target is rewritten and the link
kept; an existing file keeps its mode; a new file gets 0o666 & ~umask; the output is never one
of the inputs. Every special file here is made by the test under tmp_path.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from .conftest import SPEC_JSON, SPEC_PLR, run_plr

CODEX = SPEC_PLR
MESSY = 'default  deny\nallow tool "a"\n'
TIDY = 'default deny\n\nallow tool "a"\n'


def assert_clean_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout_text, proc.stderr_text)
    text = proc.stderr_text + proc.stdout_text
    assert "Traceback" not in text and "internal error" not in text, text
    for n in needles:
        assert n in proc.stderr_text, proc.stderr_text


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask022():
    old = os.umask(0o022)  # inherited by the plr subprocess
    try:
        yield
    finally:
        os.umask(old)


def test_new_output_file_gets_the_umask_mode_not_0600(tmp_path: Path, umask022) -> None:
    out = tmp_path / "policy.json"
    proc = run_plr("compile", str(CODEX), "-o", str(out))
    assert proc.returncode == 0, proc.stderr_text
    assert mode(out) == 0o644  # a proxy running as another user can read it
    os.umask(0o027)
    out2 = tmp_path / "p.plr"
    assert run_plr("decompile", str(out), "-o", str(out2)).returncode == 0
    assert mode(out2) == 0o640
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".plr-")]  # no temp file left


def test_existing_output_file_keeps_its_mode(tmp_path: Path, umask022) -> None:
    out = tmp_path / "policy.json"
    out.write_text("old")
    out.chmod(0o664)
    assert run_plr("compile", str(CODEX), "-o", str(out)).returncode == 0
    assert mode(out) == 0o664 and json.loads(out.read_text())["default"] == "deny"


def test_output_through_a_symlink_rewrites_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real.name)
    proc = run_plr("compile", str(CODEX), "-o", str(link))
    assert proc.returncode == 0, proc.stderr_text
    assert link.is_symlink() and os.readlink(link) == real.name
    assert json.loads(real.read_text())["default"] == "deny" and mode(real) == 0o640


def test_output_into_a_fifo_writes_into_it_and_keeps_the_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there: the writer never blocks
    try:
        proc = run_plr("compile", "--no-source", str(CODEX), "-o", str(fifo), timeout=30)
        assert proc.returncode == 0, proc.stderr_text
        data = os.read(reader, 1 << 20)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # not replaced by a regular file
    assert data.decode() == SPEC_JSON.read_text()


def test_output_dash_is_stdout(tmp_path: Path) -> None:
    proc = run_plr("compile", "--no-source", str(CODEX), "-o", "-", cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout_text)["default"] == "deny"
    assert not (tmp_path / "-").exists()
    pol = tmp_path / "p.json"
    pol.write_text(proc.stdout_text)
    proc = run_plr("decompile", str(pol), "-o", "-", cwd=tmp_path)
    assert proc.returncode == 0 and "default deny" in proc.stdout_text and not (tmp_path / "-").exists()


def test_output_over_the_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "x.plr"
    src.write_text(CODEX.read_text())
    before = src.read_text()
    assert_clean_error(run_plr("compile", str(src), "-o", str(src)), "refusing to overwrite", "x.plr")
    link = tmp_path / "alias.plr"
    link.symlink_to(src)
    assert_clean_error(run_plr("compile", str(src), "-o", str(link)), "refusing to overwrite")
    lib = tmp_path / "lib.plr"
    lib.write_text('allow tool "b"\n')
    main = tmp_path / "main.plr"
    main.write_text('import "./lib.plr"\ndefault deny\n')
    assert_clean_error(run_plr("compile", str(main), "-o", str(lib)), "refusing to overwrite", "lib.plr")
    assert src.read_text() == before and lib.read_text() == 'allow tool "b"\n'
    pol = tmp_path / "p.json"
    assert run_plr("compile", str(src), "-o", str(pol)).returncode == 0
    text = pol.read_text()
    assert_clean_error(run_plr("decompile", str(pol), "-o", str(pol)), "refusing to overwrite")
    assert pol.read_text() == text


def test_output_into_a_missing_directory_is_a_clean_error(tmp_path: Path) -> None:
    pol = tmp_path / "p.json"
    assert run_plr("compile", str(CODEX), "-o", str(pol)).returncode == 0
    for args in (("compile", str(CODEX)), ("decompile", str(pol))):
        proc = run_plr(*args, "-o", str(tmp_path / "nodir" / "out"))
        assert_clean_error(proc, "no such directory", "nodir")
    assert not (tmp_path / "nodir").exists()


def test_fmt_keeps_mode_and_formats_a_symlinks_target(tmp_path: Path) -> None:
    f = tmp_path / "m.plr"
    f.write_text(MESSY)
    f.chmod(0o664)
    assert run_plr("fmt", str(f)).returncode == 0
    assert f.read_text() == TIDY and mode(f) == 0o664
    real = tmp_path / "real.plr"
    real.write_text(MESSY)
    link = tmp_path / "link.plr"
    link.symlink_to(real.name)
    proc = run_plr("fmt", str(link))
    assert proc.returncode == 0, proc.stderr_text
    assert link.is_symlink() and real.read_text() == TIDY


def test_init_refuses_before_writing_anything(tmp_path: Path) -> None:
    (tmp_path / "policy_test.plr").write_text("# mine\n")
    proc = run_plr("init", "memory", "--dir", str(tmp_path))
    assert_clean_error(proc, "policy_test.plr exists")
    assert not (tmp_path / "policy.plr").exists()  # no half-finished starter
    assert (tmp_path / "policy_test.plr").read_text() == "# mine\n"


def test_init_name_with_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_plr("init", "memory", "--name", "a/b", "--dir", str(tmp_path))
    assert_clean_error(proc, "--name", "a/b")
    assert list(tmp_path.iterdir()) == []
    proc = run_plr("init", "memory", "--name", "mine", "--dir", str(tmp_path / "new"))
    assert proc.returncode == 0, proc.stderr_text
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["mine.plr", "mine_test.plr"]


def test_a_file_name_that_is_not_utf8_compiles_to_a_policy_that_loads(tmp_path: Path) -> None:
    """Its bytes reach Python as lone surrogates; in the JSON's `rule` they are \\xNN escapes."""
    name = os.fsdecode(b"\xffp.plr")
    (tmp_path / name).write_text('default deny\nallow tool "a"\ntest "t" {\n    call "a" -> allow\n}\n')
    assert run_plr("test", str(tmp_path)).returncode == 0
    out = tmp_path / "out.json"
    assert run_plr("compile", str(tmp_path / name), "-o", str(out)).returncode == 0
    assert '"rule": "\\\\xffp.plr:2"' in out.read_text()
    proc = run_plr("eval", str(out), "--tool", "a")
    assert proc.returncode == 0 and "allow" in proc.stdout_text
