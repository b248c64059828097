"""`plr diff`, `plr analyze`, `plr query` as users run them: outputs, exit codes, no z3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsl.cli import cli

pytest.importorskip("z3")

ROOT = Path(__file__).resolve().parents[2]
CODEX = ROOT / "examples" / "codex_worker.plr"


def _edited(tmp_path: Path) -> Path:
    text = CODEX.read_text().replace("count(args.task_id) > 5", "count(args.task_id) > 6")
    out = tmp_path / "codex_worker.plr"
    out.write_text(text)
    return out


def run(*argv: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(argv))
    return r.exit_code, r.output


def test_diff_of_a_policy_with_itself_is_equivalent() -> None:
    code, out = run("diff", str(CODEX), str(CODEX), "--format", "json")
    assert code == 0 and json.loads(out) == {"equivalent": True, "changes": [], "limits": [], "unknown": []}


def test_diff_reports_a_loosening_with_a_witness(tmp_path: Path) -> None:
    code, out = run("diff", str(CODEX), str(_edited(tmp_path)), "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert {c["tool"] for c in doc["changes"]} == {"cancel-task"}
    c = doc["changes"][0]
    assert c["kind"] == "loosen" and c["old"]["code"] == "deny_if" and c["old"]["rule"] == "codex_worker.plr:23"
    assert len(c["call"]["args"]["task_id"]) == 6
    code, md = run("diff", str(CODEX), str(_edited(tmp_path)), "--format", "markdown")
    assert code == 1 and md.startswith("### plr diff: ") and "| loosen" in md.replace("🔓 ", "")
    # the same change tightens the other way: --fail-on loosen lets it through
    assert run("diff", str(_edited(tmp_path)), str(CODEX), "--fail-on", "loosen")[0] == 0
    assert run("diff", str(CODEX), str(_edited(tmp_path)), "--fail-on", "loosen")[0] == 1


def test_analyze_finds_dead_and_shadowed_rules(tmp_path: Path) -> None:
    p = tmp_path / "p.plr"
    p.write_text(
        'default deny\n'
        'allow tool "a"\n'
        'deny tool "a" if args.n > 5 and args.n < 3\n'
        'deny tool "a" if args.n > 10\n'
        'deny tool "a" if args.n > 20\n'
    )
    code, out = run("analyze", str(p), "--format", "json")
    assert code == 1, out
    kinds = {(f["kind"], f["rule"]) for f in json.loads(out)["findings"]}
    assert ("never", "p.plr:3") in kinds and ("shadowed", "p.plr:5") in kinds
    assert ("shadowed", "p.plr:4") not in kinds
    assert run("analyze", str(CODEX))[0] == 0


def test_query_finds_a_call_or_proves_none(tmp_path: Path) -> None:
    code, out = run("query", str(CODEX), "--can", "allow", "--tool", "cancel-task", "--format", "json")
    assert code == 0 and json.loads(out)["call"]["approved"] is True
    code, out = run("query", str(CODEX), "--can", "allow", "--tool", "purge-workspace")
    assert code == 1 and out.startswith("no:")


def test_bad_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.plr"
    bad.write_text("default maybe\n")
    code, out = run("diff", str(bad), str(CODEX))
    assert code == 2 and "Traceback" not in out
    assert run("diff", str(CODEX))[0] == 2  # NEW missing


def test_without_z3_the_commands_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "z3", None)  # `import z3` now raises ImportError
    code, out = run("diff", str(CODEX), str(CODEX))
    from dsl.extras import install_hint

    assert code == 2 and f"plr diff needs the analyze extra: {install_hint('analyze')}" in out


@pytest.mark.slow
def test_diff_git_takes_old_from_a_revision(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "policies").mkdir(parents=True)
    target = repo / "policies" / "codex_worker.plr"
    target.write_text(CODEX.read_text())
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    for argv in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True, env=env)
    target.write_text(_edited(tmp_path).read_text())
    code, out = run("diff", "--git", "HEAD", str(repo / "policies"), "--format", "json")
    assert code == 1, out
    assert json.loads(out)["changes"][0]["old"]["rule"] == "codex_worker.plr:23"
    assert run("diff", "--git", "no-such-rev", str(repo / "policies"))[0] == 2


def _policies(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


_BASE = {
    "a.plr": 'deny tool "rm" unless approved\nallow tool "read"\n',
    "sub/b.plr": 'allow tool "list"\n',
    "gone.plr": 'allow tool "x"\n',
}


def test_folders_of_several_policies_are_compared_policy_by_policy(tmp_path: Path) -> None:
    old = _policies(tmp_path / "old", _BASE)
    new = _policies(tmp_path / "new", {**_BASE, "a.plr": 'allow tool "rm"\nallow tool "read"\n', "fresh.plr": 'allow tool "y"\n'})
    (new / "gone.plr").unlink()
    code, out = run("diff", str(old), str(new), "--format", "json")
    assert code == 1, out
    data = json.loads(out)
    assert data["equivalent"] is False
    assert data["policies"] == [
        {"policy": "a.plr", "status": "changed"},
        {"policy": "fresh.plr", "status": "added"},
        {"policy": "gone.plr", "status": "removed"},
        {"policy": "sub/b.plr", "status": "unchanged"},
    ]
    [change] = data["changes"]
    assert (change["policy"], change["tool"], change["kind"]) == ("a.plr", "rm", "loosen")
    assert (change["old"]["effect"], change["new"]["effect"]) == ("approval_required", "allow")
    code, text = run("diff", str(old), str(new))
    assert "== a.plr\n  loosen: `rm`" in text and "== gone.plr: removed" in text and "== sub/b.plr: equivalent" in text
    assert text.rstrip().endswith("4 policies: 1 changed, 1 added, 1 removed, 1 unchanged")
    code, md = run("diff", str(old), str(new), "--format", "markdown")
    assert md.startswith("### plr diff: 4 policies: 1 changed, 1 added, 1 removed, 1 unchanged\n")
    assert "#### `a.plr`: 1 decision change(s), 1 more permissive" in md and "🔓 loosen" in md
    assert md.count("re-run on both policies") == 1


def test_folder_diff_exit_codes_follow_fail_on(tmp_path: Path) -> None:
    old = _policies(tmp_path / "old", _BASE)
    same = _policies(tmp_path / "same", _BASE)
    assert run("diff", str(old), str(same)) == (0, "== a.plr: equivalent\n== gone.plr: equivalent\n== sub/b.plr: equivalent\n3 policies: 0 changed, 0 added, 0 removed, 3 unchanged\n")
    tighter = _policies(tmp_path / "tighter", {**_BASE, "sub/b.plr": 'deny tool "list"\n'})
    assert run("diff", str(old), str(tighter))[0] == 1
    assert run("diff", str(old), str(tighter), "--fail-on", "loosen")[0] == 0
    added = _policies(tmp_path / "added", {**_BASE, "fresh.plr": 'allow tool "y"\n'})
    assert run("diff", str(old), str(added))[0] == 1
    assert run("diff", str(old), str(added), "--fail-on", "loosen")[0] == 0  # a new policy loosens nothing it decided before
    assert run("diff", str(added), str(old), "--fail-on", "loosen")[0] == 1  # a removed policy no longer protects


def test_a_policy_that_fails_to_compile_in_a_folder_exits_2_with_its_position(tmp_path: Path) -> None:
    old = _policies(tmp_path / "old", _BASE)
    bad = _policies(tmp_path / "bad", {**_BASE, "sub/b.plr": 'allow tool "list" if args.x ==\n'})
    code, out = run("diff", str(old), str(bad))
    assert code == 2 and "b.plr:1:" in out


def test_diff_git_compares_a_folder_of_policies_with_a_revision(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _policies(repo / "policies", _BASE)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    for argv in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True, env=env)
    assert run("diff", "--git", "HEAD", str(repo / "policies"))[0] == 0
    (repo / "policies" / "sub" / "b.plr").write_text('allow tool "list"\nallow tool "write"\n')
    code, out = run("diff", "--git", "HEAD", str(repo / "policies"), "--format", "json", "--fail-on", "loosen")
    assert code == 1, out
    data = json.loads(out)
    assert [(c["policy"], c["tool"], c["kind"]) for c in data["changes"]] == [("sub/b.plr", "write", "loosen")]
    assert {p["policy"]: p["status"] for p in data["policies"]} == {"a.plr": "unchanged", "gone.plr": "unchanged", "sub/b.plr": "changed"}


def test_analyze_names_the_policies_of_a_folder_that_holds_several(tmp_path: Path) -> None:
    code, out = run("analyze", str(_policies(tmp_path / "p", _BASE)))
    assert code == 2 and "several independent policies (a.plr, gone.plr, sub/b.plr)" in out
