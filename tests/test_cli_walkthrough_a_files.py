"""A new user's walkthrough, policy-file commands: `plr fmt` with no path formats the current
folder (as `plr check` and `plr test` do), and `plr decompile` given a .plr source says what it
reads instead of "invalid JSON"."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import run_plr

MESSY = 'default  deny\nallow tool "a"\n'
TIDY = 'default deny\n\nallow tool "a"\n'


def assert_clean_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout_text, proc.stderr_text)
    text = proc.stderr_text + proc.stdout_text
    assert "Traceback" not in text and "internal error" not in text, text
    for n in needles:
        assert n in proc.stderr_text, proc.stderr_text


# --- fmt: the current folder by default ---------------------------------------------------


def test_fmt_without_paths_checks_and_formats_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "top.plr").write_text(MESSY)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.plr").write_text(MESSY)
    (tmp_path / ".hidden").mkdir()  # skipped, as `plr check` and `plr test` skip it
    (tmp_path / ".hidden" / "h.plr").write_text(MESSY)

    proc = run_plr("fmt", "--check", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr_text
    assert sorted(proc.stdout_text.splitlines()) == ["would reformat sub/deep.plr", "would reformat top.plr"]
    assert (tmp_path / "top.plr").read_text() == MESSY  # --check writes nothing

    proc = run_plr("fmt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr_text
    assert (tmp_path / "top.plr").read_text() == TIDY and (tmp_path / "sub" / "deep.plr").read_text() == TIDY
    assert (tmp_path / ".hidden" / "h.plr").read_text() == MESSY
    assert run_plr("fmt", "--check", cwd=tmp_path).returncode == 0


def test_fmt_in_a_folder_without_plr_files_says_so(tmp_path: Path) -> None:
    proc = run_plr("fmt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr_text
    assert "no .plr files under ." in proc.stderr_text


def test_fmt_json_still_needs_the_policies_named(tmp_path: Path) -> None:
    """A folder's other JSON files are not policies: `plr fmt --json` alone never walks `.`."""
    (tmp_path / "package.json").write_text('{"name":  "x"}')
    proc = run_plr("fmt", "--json", cwd=tmp_path)
    assert_clean_error(proc, "--json", "plr fmt --json policy.json")
    assert (tmp_path / "package.json").read_text() == '{"name":  "x"}'


def test_fmt_help_says_the_default() -> None:
    proc = run_plr("fmt", "--help")
    assert proc.returncode == 0
    assert "default: the current folder" in proc.stdout_text
    assert "[PATHS]..." in proc.stdout_text  # optional, like `plr check`


# --- decompile: a .plr source is not "invalid JSON" -----------------------------------------


def test_decompile_of_a_plr_file_says_what_it_reads_and_what_to_run(tmp_path: Path) -> None:
    f = tmp_path / "x.plr"
    f.write_text('# my rules\n\ndefault deny\nallow tool "a"\n')
    proc = run_plr("decompile", "x.plr", cwd=tmp_path)
    assert_clean_error(proc, "x.plr:3:1: error: x.plr is .plr source; decompile reads a compiled JSON policy",
                       "plr compile x.plr -o policy.json")  # fmt: skip
    assert "invalid JSON" not in proc.stderr_text
    assert "    3 | default deny\n      | ^^^^^^^" in proc.stderr_text  # the caret under the first statement
    assert proc.stdout_text == ""


def test_decompile_of_plr_text_on_stdin_is_recognised_by_its_first_word() -> None:
    proc = run_plr("decompile", "-", input='  package p\nallow tool "a"\n')
    assert_clean_error(proc, "<stdin>:1:3:", "the input is .plr source", "plr compile - -o policy.json")


def test_decompile_still_reads_json_named_plr_and_reports_broken_json(tmp_path: Path) -> None:
    """The name alone does not decide: a JSON policy called x.plr decompiles; text that is
    neither JSON nor .plr keeps the JSON error, with its line and column."""
    odd = tmp_path / "policy.plr"
    odd.write_text(json.dumps({"version": "1", "default": "deny"}))
    proc = run_plr("decompile", str(odd))
    assert proc.returncode == 0 and "default deny" in proc.stdout_text, proc.stderr_text
    for name, text in (("broken.json", '{"version": "1",\n'), ("notes.txt", "hello\n"), ("half.plr", '{"version": "1",\n')):
        (tmp_path / name).write_text(text)
        proc = run_plr("decompile", str(tmp_path / name))
        assert_clean_error(proc, f"{name}:", "invalid JSON")
        assert ".plr source" not in proc.stderr_text
