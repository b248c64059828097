"""The compiled-policy cache behind `plr eval`: fast when nothing changed, never stale, never unsafe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsl import cache
from dsl.errors import PlrError
from tests.conftest import ROOT, run_plr

POLICY = """package demo
default deny
allow tool "get-task"
deny tool "cancel-task" unless approved
"""


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("PLR_CACHE_DIR", str(d))
    monkeypatch.delenv("PLR_NO_CACHE", raising=False)
    return d


def entries(d: Path) -> list[Path]:
    return sorted(d.glob("*.json")) if d.exists() else []


def evaluate(policy: Path, tool: str, cache_dir: Path, *extra: str) -> dict:
    proc = run_plr("eval", str(policy), "--tool", tool, "--format", "json", *extra)
    assert proc.returncode == 0, proc.stderr_text
    return json.loads(proc.stdout_text)


def test_second_eval_is_served_from_the_cache_without_pydantic(tmp_path: Path, cache_dir: Path) -> None:
    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    first = evaluate(src, "cancel-task", cache_dir)
    assert first["effect"] == "approval_required" and len(entries(cache_dir)) == 1
    # the hit path: decide in a fresh interpreter and show pydantic (and the parser) never loaded
    code = (
        "import sys\n"
        "from dsl.cli import main\n"
        f"sys.argv = ['plr', 'eval', {str(src)!r}, '--tool', 'cancel-task', '--format', 'json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('pydantic', 'lark', 'dsl.policy', 'dsl.compiler') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert json.loads(lines[0]) == first
    assert lines[1] == "HEAVY []"


def test_json_policy_is_cached_too_and_decides_the_same(tmp_path: Path, cache_dir: Path) -> None:
    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    compiled = tmp_path / "p.json"
    assert run_plr("compile", str(src), "-o", str(compiled)).returncode == 0
    cold = evaluate(compiled, "cancel-task", cache_dir, "--no-cache")
    assert entries(cache_dir) == []  # --no-cache neither reads nor writes
    warm1, warm2 = evaluate(compiled, "cancel-task", cache_dir), evaluate(compiled, "cancel-task", cache_dir)
    assert cold == warm1 == warm2
    assert len(entries(cache_dir)) == 1


def test_an_edit_to_the_policy_is_seen_at_once(tmp_path: Path, cache_dir: Path) -> None:
    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    assert evaluate(src, "delete-task", cache_dir)["effect"] == "deny"
    src.write_text(POLICY + 'allow tool "delete-task"\n')
    assert evaluate(src, "delete-task", cache_dir)["effect"] == "allow"
    src.write_text(POLICY)  # back to the first text: the first entry is valid again
    assert evaluate(src, "delete-task", cache_dir)["effect"] == "deny"


def test_an_edit_to_an_imported_file_is_seen_at_once(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "extra.plr").write_text('allow tool "delete-task"\n')
    src = tmp_path / "p.plr"
    src.write_text('import "extra.plr"\n' + POLICY)
    assert evaluate(src, "delete-task", cache_dir)["effect"] == "allow"
    (tmp_path / "extra.plr").write_text('deny tool "delete-task"\n')
    assert evaluate(src, "delete-task", cache_dir)["effect"] == "deny"
    (tmp_path / "extra.plr").unlink()
    proc = run_plr("eval", str(src), "--tool", "delete-task")
    assert proc.returncode == 2 and "extra.plr" in proc.stderr_text


def test_errors_are_never_cached(tmp_path: Path, cache_dir: Path) -> None:
    src = tmp_path / "p.plr"
    src.write_text('deny tool "x" unles approved\n')
    for _ in range(2):
        proc = run_plr("eval", str(src), "--tool", "x")
        assert proc.returncode == 2
        assert f"{src.name}:1:" in proc.stderr_text and "^" in proc.stderr_text
    bad = tmp_path / "p.json"
    bad.write_text('{"version": "1", "default": "maybe"}')
    proc = run_plr("eval", str(bad), "--tool", "x")
    assert proc.returncode == 2 and "default" in proc.stderr_text
    assert entries(cache_dir) == []


def test_a_corrupt_or_foreign_entry_is_a_miss_and_is_rewritten(tmp_path: Path, cache_dir: Path) -> None:
    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    want = evaluate(src, "get-task", cache_dir)
    (entry,) = entries(cache_dir)
    for junk in ("{torn", "[]", json.dumps({"format": 999, "policy": {}}), ""):
        entry.write_text(junk)
        assert evaluate(src, "get-task", cache_dir) == want
        assert json.loads(entry.read_text())["format"] == cache.FORMAT


def test_entry_written_only_for_its_owner(tmp_path: Path, cache_dir: Path) -> None:
    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    cache.load_cached(str(src))
    assert (cache_dir.stat().st_mode & 0o777) == 0o700
    assert [e.stat().st_mode & 0o777 for e in entries(cache_dir)] == [0o600]


def test_cache_can_be_turned_off_or_be_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    monkeypatch.setenv("PLR_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("PLR_NO_CACHE", "1")
    assert cache.cache_dir() is None
    assert cache.load_cached(str(src))["default"] == "deny"
    assert not (tmp_path / "c").exists()
    monkeypatch.delenv("PLR_NO_CACHE")
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("PLR_CACHE_DIR", str(blocker / "sub"))  # cannot be created
    assert cache.load_cached(str(src))["default"] == "deny"


def test_a_new_plr_invalidates_old_entries(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    cache.load_cached(str(src))
    monkeypatch.setattr(cache, "__version__", "999.0")
    cache.load_cached(str(src))
    assert len(entries(cache_dir)) == 2


def test_cached_data_equals_the_validated_dump(tmp_path: Path, cache_dir: Path) -> None:
    from dsl.compiler import compile_files

    for example in sorted((ROOT / "examples").rglob("*.plr")):
        want = compile_files([str(example)]).to_dict()
        assert cache.load_cached(str(example)) == want  # miss: compiled now
        assert cache.load_cached(str(example)) == want  # hit: read back
    with pytest.raises(PlrError):
        cache.load_cached(str(tmp_path / "missing.json"))


def test_the_proxy_never_reads_the_cache(tmp_path: Path, cache_dir: Path) -> None:
    """The cache is trusted by `plr eval` (a developer's tool); what enforces always validates."""
    from dsl.proxy.reload import load_policy_file

    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    cache.load_cached(str(src))
    (entry,) = entries(cache_dir)
    poisoned = json.loads(entry.read_text())
    poisoned["policy"]["default"] = "allow"
    entry.write_text(json.dumps(poisoned))
    assert cache.load_cached(str(src))["default"] == "allow"  # eval trusts its own cache dir...
    assert load_policy_file(str(src)).policy.default == "deny"  # ...the proxy's loader does not use it


def test_an_entry_that_parses_but_does_not_prepare_is_a_miss(tmp_path: Path, cache_dir: Path) -> None:
    src = tmp_path / "p.plr"
    src.write_text(POLICY)
    want = evaluate(src, "get-task", cache_dir)
    (entry,) = entries(cache_dir)
    entry.write_text(json.dumps({"format": cache.FORMAT, "deps": [], "policy": {"version": "1"}}))
    assert evaluate(src, "get-task", cache_dir) == want


def test_a_lone_surrogate_in_a_policy_is_refused_and_not_cached(tmp_path: Path, cache_dir: Path) -> None:
    """No UTF-8 output can carry "\\ud800", so the loader refuses it (it once crashed the cache
    writer); errors are never cached."""
    policy = tmp_path / "p.json"
    policy.write_text('{"version": "1", "default": "deny", "tools": {"a\\ud800": {}}}')
    for _ in range(2):
        proc = run_plr("eval", str(policy), "--tool", "get-task", "--format", "json")
        assert proc.returncode == 2 and "lone surrogate" in proc.stderr_text, proc.stderr_text
        assert "Traceback" not in proc.stderr_text
    assert entries(cache_dir) == []


def test_a_cache_dir_others_can_write_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("PLR_CACHE_DIR", str(shared))
    monkeypatch.delenv("PLR_NO_CACHE", raising=False)
    assert cache.cache_dir() is None
    shared.chmod(0o700)
    assert cache.cache_dir() == shared


def test_an_edit_to_plr_itself_invalidates_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code fingerprint covers every module of the package (size and mtime) and the grammar."""
    import shutil

    pkg = tmp_path / "dsl"
    shutil.copytree(Path(cache.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__", "proxy"))
    monkeypatch.setattr(cache, "__file__", str(pkg / "cache.py"))
    before = cache._code_fingerprint()
    assert cache._code_fingerprint() == before
    compiler = pkg / "compiler.py"
    compiler.write_text(compiler.read_text() + "\n# an edit\n")
    assert cache._code_fingerprint() != before
