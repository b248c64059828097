"""The repository carries everything its tests and docs read: a copy with nothing beside it passes.

A clone lands anywhere (a user's home, a packager's build root, CI), so no tracked file may name a
path of the machine it was written on, and the suite must collect and run in a folder whose parent
holds nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, nested_pytest_env

# Absolute paths that only exist on some machine: the checkout itself, its parent, home folders.
MACHINE_ROOTS = [r"/work/", r"/Users/[^/\s]+/", r"/root/", r"C:\\Users\\", r"/home/runner/"]


def _tracked_files() -> list[Path]:
    """The files git tracks (or, outside a git checkout such as an sdist, every file but caches)."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT / name for name in out.decode().split("\0") if name]
    skip = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".venv", "node_modules"}
    return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def _machine_path_pattern() -> re.Pattern[str]:
    here = [re.escape(str(ROOT) + os.sep)]
    if len(ROOT.parent.parts) > 2:  # the folder holding the checkout, unless a generic one like /tmp
        here.append(re.escape(str(ROOT.parent) + os.sep))
    home = str(Path.home())
    if home not in ("/", ""):
        here.append(re.escape(home + os.sep))
    return re.compile("|".join([*MACHINE_ROOTS, *here]))


def test_no_tracked_file_names_a_path_of_this_machine() -> None:
    pattern = _machine_path_pattern()
    found = []
    for path in _tracked_files():
        if path == Path(__file__) or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "absolute paths of a particular machine (use paths relative to the file, or tmp_path):\n" + "\n".join(found)


def test_the_scan_finds_what_it_is_meant_to_find() -> None:
    pattern = _machine_path_pattern()
    assert pattern.search('SPEC = Path("/work/shared/spec/examples/codex_worker.plr")')
    assert pattern.search(f"results: {ROOT}/benchmarks/results/x.json")
    assert pattern.search("open('/Users/ana/plr/tests/data.json')")
    assert not pattern.search('call "read_file" {path: "/workspace/notes.md"} -> allow')


@pytest.mark.slow
def test_a_copy_with_nothing_beside_it_collects_and_runs(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    copy = empty / "plr"
    for path in _tracked_files():
        if not path.is_file():  # deleted in the work tree but still tracked
            continue
        dest = copy / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    assert sorted(p.name for p in empty.iterdir()) == ["plr"]
    # the copy's own package first: imports and the `python -m dsl.cli` runs resolve inside it
    env = nested_pytest_env(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PLR_STRESS", None)

    def pytest_in_copy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
            cwd=copy, env=env, capture_output=True, text=True, timeout=600,
        )

    collected = pytest_in_copy("--collect-only", "--snapshot-warn-unused")  # syrupy: nothing runs, nothing is used
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    summary = collected.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ tests? collected in [\d.]+s", summary), collected.stdout[-2000:]

    fast = pytest_in_copy(
        "tests/test_compile.py", "tests/test_format.py", "tests/test_decompile.py", "tests/test_cli.py",
        "-k", "spec or codex or example",
    )
    assert fast.returncode == 0, fast.stdout[-3000:] + fast.stderr[-3000:]
    assert re.search(r"\d+ passed", fast.stdout) and "failed" not in fast.stdout
    # the copy ran its own code, not the checkout's
    probe = subprocess.run(
        [sys.executable, "-c", "import dsl; print(dsl.__file__)"], cwd=copy, env=env, capture_output=True, text=True
    )
    assert probe.stdout.strip().startswith(str(copy)), probe.stdout


def _test_extra() -> list[str]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]["test"]


def test_readme_test_command_is_ci_run_and_ci_run_fails_with_pytest() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2 and block[1] == "./.ci/run", block
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    text = ci.read_text()
    assert "set -euo pipefail" in text  # a failing step fails CI
    # pytest's exit code is CI's; two workers (the project's test extra brings pytest-xdist)
    assert text.rstrip().splitlines()[-1] == 'exec "$PY" -m pytest -q -n 2 "$@"'
    assert any(dep.startswith("pytest-xdist") for dep in _test_extra())
