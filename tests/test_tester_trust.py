"""`plr test` cannot go green while proving nothing: a run in which no test ran fails (exit 5),
the engine's internal `error` decision satisfies no expectation, and `reason ""` (which every
reason contains) is a compile error of the test, located as every error is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsl import tester
from dsl.cli import cli
from dsl.compiler import compile_source
from dsl.engine import core
from dsl.errors import PlrError

from .conftest import ROOT, nested_pytest_env, run_plr

PASSING = 'default deny\nallow tool "a"\ntest "reads are allowed" {\n    call "a" -> allow\n}\n'
NO_TESTS = 'default deny\nallow tool "a"\n'


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["test", *args], catch_exceptions=False)


# --- 1. no test ran -----------------------------------------------------------------------


def test_an_empty_folder_exits_5_and_says_what_was_searched(tmp_path: Path):
    proc = run_plr("test", str(tmp_path))
    assert proc.returncode == 5, proc.stdout_text + proc.stderr_text
    assert "no test ran" in proc.stderr_text
    assert "no .plr file found under " + str(tmp_path) in proc.stderr_text
    assert "0 passed, 0 failed" in proc.stdout_text  # the summary is still printed


def test_policies_without_tests_exit_5(tmp_path: Path):
    (tmp_path / "p.plr").write_text(NO_TESTS)
    result = invoke(str(tmp_path))
    assert result.exit_code == 5, result.output
    assert "1 policy found under" in result.stderr and "none has a test block" in result.stderr


def test_a_run_filter_that_matches_nothing_exits_5(tmp_path: Path):
    f = tmp_path / "p.plr"
    f.write_text(PASSING)
    result = invoke(str(f), "--run", "no-such-test")
    assert result.exit_code == 5, result.output
    assert "1 skipped" in result.stdout
    assert '--run "no-such-test" did not match the one test found under' in result.stderr
    # the same run, selecting the test, still passes
    assert invoke(str(f), "--run", "reads").exit_code == 0


@pytest.mark.parametrize("fmt", ["json", "junit"])
def test_no_test_ran_keeps_machine_formats_whole(tmp_path: Path, fmt: str):
    (tmp_path / "p.plr").write_text(NO_TESTS)
    result = invoke(str(tmp_path), "--format", fmt)
    assert result.exit_code == 5, result.output
    assert "no test ran" in result.stderr and "no test ran" not in result.stdout
    if fmt == "json":
        assert json.loads(result.stdout)["tests"] == []


def test_no_test_ran_is_exit_5_in_the_python_api(tmp_path: Path):
    report = tester.run([str(tmp_path)])
    assert report.exit_code() == tester.EXIT_NO_TESTS == 5
    assert "no .plr file found" in (report.nothing_ran([str(tmp_path)]) or "")
    (tmp_path / "p.plr").write_text(PASSING)
    assert tester.run([str(tmp_path)]).exit_code() == 0
    assert tester.run([str(tmp_path)]).nothing_ran() is None
    assert tester.run([str(tmp_path)], select="zzz").exit_code() == 5


def test_help_documents_exit_5():
    result = CliRunner().invoke(cli, ["test", "--help"])
    assert "5 no test ran" in result.output


def test_watch_says_why_no_test_ran_and_keeps_counting_skipped(tmp_path: Path):
    from dsl.watch import WatchState, find_roots, run_roots, summary_lines

    (tmp_path / "p.plr").write_text(PASSING)
    roots, unreadable = find_roots([str(tmp_path)])
    report = run_roots(roots, "zzz", WatchState(), unreadable)
    text = "\n".join(summary_lines(report, [], paths=[str(tmp_path)], select="zzz"))
    assert "no test ran" in text and "1 skipped" in text, text
    assert "waiting for changes" in text  # a note, not a stop


# --- 2. the engine's `error` satisfies no expectation ------------------------------------


ENGINE_ERROR = (
    'default deny\nallow tool "a" if args.n < 5\n'
    'test "the bare deny" {\n    call "a" {n: 9} -> deny\n}\n'
    'test "with a reason" {\n    call "a" {n: 9} -> deny reason "internal"\n}\n'
)


@pytest.fixture
def broken_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine bug: deciding a governed tool raises, which `decide` turns into `deny error`."""

    def boom(*args: object, **kw: object) -> object:
        raise RuntimeError("boom in the engine")

    monkeypatch.setattr(core.Engine, "_check", boom)
    monkeypatch.setattr(core.Engine, "_explain", boom)


def test_an_engine_error_fails_a_bare_deny_in_the_python_api(tmp_path: Path, broken_engine: None):
    f = tmp_path / "p.plr"
    f.write_text(ENGINE_ERROR)
    report = tester.run([str(f)])
    assert report.passed == 0 and report.failed == 2, [r.to_dict() for r in report.results]
    assert report.exit_code() == 1
    for r in report.results:
        (failure,) = r.failures
        assert "engine error" in failure.actual
        assert "internal error while deciding: RuntimeError: boom in the engine" in failure.actual


def test_an_engine_error_fails_through_the_cli(tmp_path: Path, broken_engine: None):
    f = tmp_path / "p.plr"
    f.write_text(ENGINE_ERROR)
    for extra in ((), ("-v",)):  # -v decides with the trace (another path of the engine)
        result = invoke(str(f), *extra)
        assert result.exit_code == 1, result.output
        assert "0 passed, 2 failed" in result.stdout
        assert "RuntimeError: boom in the engine" in result.stdout


def test_an_engine_error_fails_under_pytest_plr(tmp_path: Path):
    (tmp_path / "p.plr").write_text(ENGINE_ERROR)
    (tmp_path / "conftest.py").write_text(
        "from dsl.engine import core\n\n"
        "def _boom(*a, **k):\n    raise RuntimeError('boom in the engine')\n\n"
        "core.Engine._check = _boom\ncore.Engine._explain = _boom\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--plr", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env=nested_pytest_env(PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 failed" in proc.stdout and "boom in the engine" in proc.stdout


# --- 3. reason "" --------------------------------------------------------------------------


def test_an_empty_reason_is_a_located_compile_error(tmp_path: Path):
    text = 'default deny\nallow tool "a"\ntest "t" {\n    call "b" -> deny  reason ""  # proves nothing\n}\n'
    with pytest.raises(PlrError) as e:
        compile_source(text, "p.plr")
    (d,) = [d for d in e.value.diagnostics if d.severity == "error"]
    col = text.splitlines()[3].index('""') + 1
    assert (d.file, d.line, d.col) == ("p.plr", 4, col)
    assert 'reason "" matches every reason' in d.message and "leave `reason` out" in d.message
    assert "^^" in d.format()
    compile_source(text.replace('reason ""', 'reason "no rule"'), "p.plr")  # a non-empty one compiles


def test_an_empty_reason_is_located_on_the_tree_path_too(tmp_path: Path):
    # a `\\u` escape sends the file through the parse tree, not the inline parse
    text = 'default deny\nallow tool "a"\ntest "t" {\n    call "b" {k: "\\u0041"} -> deny reason ""\n}\n'
    with pytest.raises(PlrError) as e:
        compile_source(text, "p.plr")
    (d,) = e.value.diagnostics
    assert (d.line, d.col) == (4, text.splitlines()[3].index('""') + 1)


def test_an_empty_reason_fails_plr_test_and_plr_check(tmp_path: Path):
    f = tmp_path / "p.plr"
    f.write_text('default deny\nallow tool "a"\ntest "t" {\n    call "b" -> deny reason ""\n}\n')
    result = invoke(str(f))
    assert result.exit_code == 2, result.output
    assert f'{f}:4:' in result.stderr and 'reason "" matches every reason' in result.stderr
    check = CliRunner().invoke(cli, ["check", str(f)])
    assert check.exit_code == 2, check.output


# --- a test that checks nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ['    # call "x" -> deny\n', '    as identity "alice"\n    after 1m\n', '    repeat 3 { after 1s }\n'],
    ids=["calls commented out", "context only", "repeat without a call"],
)
def test_a_test_without_a_call_or_visible_step_is_a_located_error(tmp_path: Path, body: str) -> None:
    path = tmp_path / "p.plr"
    path.write_text(f'default deny\n\ntest "empty" {{\n{body}}}\n', encoding="utf-8")
    r = CliRunner().invoke(cli, ["test", str(path)])
    assert r.exit_code == 2, r.output  # not "1 passed", exit 0
    assert f"{path}:3:6: error: test \"empty\" checks nothing" in r.output, r.output


@pytest.mark.parametrize("step", ['call "x" -> deny', 'visible []', 'repeat 2 { call "x" -> deny }'])
def test_a_test_with_one_assertion_runs(tmp_path: Path, step: str) -> None:
    path = tmp_path / "p.plr"
    path.write_text(f'default deny\n\ntest "one" {{\n    as identity "a"\n    {step}\n}}\n', encoding="utf-8")
    r = CliRunner().invoke(cli, ["test", str(path)])
    assert r.exit_code == 0 and "1 passed" in r.output, r.output
