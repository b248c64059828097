"""What `plr --help` and a cached `plr eval` import, and that the fast `--help` prints click's text.

Start-up time is measured in benchmarks/bench_cli.py; these tests pin what makes it fast, so a
new top-level import in the dispatcher (click, pydantic, Lark) fails here instead of slowing
every `plr eval` in a user's loop by a few milliseconds without anyone noticing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

POLICY = """package demo
default deny
allow tool "get-task"
deny tool "cancel-task" unless approved
"""

# Runs `plr ARGS` through dsl.cli.main in this interpreter, then prints which of the heavy
# packages got imported (to stderr, after the command's own output).
_PROBE = """
import sys
from dsl.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"click", "pydantic", "lark", "re2"}
               | {m for m in sys.modules if m in ("dsl.policy", "dsl.ir", "dsl.compiler", "dsl.parser")})
print("\\nIMPORTED " + " ".join(heavy) + " EXIT " + str(code), file=sys.stderr)
"""


def probe(cache: Path, *args: str, columns: int = 80, **env: str) -> tuple[str, list[str], int]:
    """(stdout, heavy modules imported, exit code) of `plr ARGS` in a fresh interpreter."""
    environ = dict(os.environ, PYTHONPATH=str(ROOT), PLR_CACHE_DIR=str(cache), COLUMNS=str(columns), NO_COLOR="1")
    environ.pop("PLR_NO_CACHE", None)
    environ.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=environ, cwd=ROOT, timeout=60
    )
    last = proc.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("IMPORTED"), proc.stderr
    words = last.split()
    return proc.stdout, words[1:-2], int(words[-1])


def click_help(columns: int) -> str:
    """`plr --help` as click itself prints it (no cache involved)."""
    code = "from dsl.cli import cli\ncli.main(['--help'], prog_name='plr')"
    environ = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS=str(columns), NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_help_from_the_cache_is_clicks_text_and_imports_no_click(tmp_path: Path, columns: int) -> None:
    want = click_help(columns)
    assert "Usage: plr [OPTIONS] COMMAND [ARGS]..." in want and "query" in want
    cache = tmp_path / "cache"
    first, _, code = probe(cache, "--help", columns=columns)  # a miss: rendered by click, kept
    assert (first, code) == (want, 0)
    for flag in ("--help", "-h"):
        again, heavy, code = probe(cache, flag, columns=columns)
        assert (again, code) == (want, 0)
        assert heavy == [], f"a cached `plr {flag}` imported {heavy}"


def test_help_with_the_cache_off_or_corrupt_is_still_clicks_text(tmp_path: Path) -> None:
    want = click_help(80)
    cache = tmp_path / "cache"
    out, heavy, code = probe(cache, "--help", PLR_NO_CACHE="1")
    assert (out, code) == (want, 0) and "click" in heavy
    assert not cache.exists()  # turned off: nothing written
    probe(cache, "--help")
    (entry,) = cache.glob("root-help-*.text")
    header = entry.read_bytes().split(b"\n", 1)[0]
    other_key = header[:-8] + b"00000000"
    for junk in (b"{torn", b"", header, other_key + b"\nforged help\n", header + b"\n\xff\xfe not UTF-8\n"):
        entry.write_bytes(junk)
        out, heavy, code = probe(cache, "--help")
        assert (out, code) == (want, 0) and "click" in heavy  # a miss, rendered again...
        out, heavy, _ = probe(cache, "--help")
        assert out == want and heavy == []  # ...and rewritten


def test_help_key_changes_with_the_width_and_the_cli_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from dsl.cli import root_help

    assert root_help._fingerprint(78) != root_help._fingerprint(98)
    cli_copy = tmp_path / "cli"
    shutil.copytree(Path(root_help.__file__).parent, cli_copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(root_help, "__file__", str(cli_copy / "root_help.py"))
    before = root_help._fingerprint(78)
    eval_module = cli_copy / "eval.py"
    eval_module.write_text(eval_module.read_text() + "\n# a new docstring would change the help\n")
    assert root_help._fingerprint(78) != before


def test_cached_eval_imports_neither_pydantic_nor_the_parser(tmp_path: Path) -> None:
    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    cache = tmp_path / "cache"
    args = ("eval", str(src), "--tool", "cancel-task", "--format", "json")
    first, heavy_miss, code = probe(cache, *args)
    assert code == 0 and {"pydantic", "lark", "dsl.compiler"} <= set(heavy_miss)  # the miss compiles
    again, heavy, code = probe(cache, *args)
    assert code == 0 and json.loads(again) == json.loads(first)
    assert json.loads(again)["effect"] == "approval_required"
    assert not {"pydantic", "lark", "dsl.policy", "dsl.ir", "dsl.compiler", "dsl.parser"} & set(heavy), heavy


def test_other_commands_are_imported_only_when_named(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom dsl.cli import main\n"
        "try:\n    main(['eval', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('dsl.cli.')), file=sys.stderr)\n"
    )
    environ = dict(os.environ, PYTHONPATH=str(ROOT), PLR_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=60)
    assert proc.returncode == 0 and "--explain" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "['dsl.cli.eval', 'dsl.cli.output']"


@pytest.mark.parametrize(("typo", "meant"), [("evl", "eval"), ("proxi", "proxy"), ("consol", "console")])
def test_a_mistyped_command_is_offered_every_command(tmp_path: Path, typo: str, meant: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dsl.cli", typo], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT), PLR_CACHE_DIR=str(tmp_path)),
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"No such command '{typo}'. Did you mean '{meant}'?" in proc.stderr


def test_on_a_bare_interpreter_the_hit_paths_import_no_file_machinery(tmp_path: Path) -> None:
    """Without site hooks (``python -S``, as on a machine whose site-packages load nothing at
    start) the cached paths stay off pathlib, importlib.resources and tempfile (and --help off
    json), which cost more than the rest of `plr --help` there."""
    import click

    site_packages = os.path.dirname(os.path.dirname(click.__file__))
    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    code = (
        "import sys\nfrom dsl.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "names = ('click', 'pathlib', 'importlib.resources', 'tempfile', 'json', 'pydantic', 'lark')\n"
        "print('IMPORTED', *[m for m in names if m in sys.modules], file=sys.stderr)\n"
    )
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), site_packages]), PLR_CACHE_DIR=str(tmp_path / "c"))
    environ.pop("PLR_NO_CACHE", None)

    def imported(*args: str) -> list[str]:
        proc = subprocess.run([sys.executable, "-S", "-c", code, *args], capture_output=True, text=True, env=environ, timeout=60)
        return proc.stderr.strip().splitlines()[-1].split()[1:]

    imported("--help")  # fills the cache
    assert imported("--help") == []
    imported("eval", str(src), "--tool", "get-task")
    assert set(imported("eval", str(src), "--tool", "get-task")) <= {"click", "json", "pathlib"}  # pathlib: dsl.state's
