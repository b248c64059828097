from pathlib import Path

from dsl.compiler import compile_source

from .conftest import run_plr


def test_plr_check_reads_a_json_policy_through_the_loader(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(compile_source('default deny\nallow tool "a"\n').to_json(), encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1", "default": "allow",\n "tools": {"q": {"deny_if": [{"path": "args.s", "op": "regex", "value": "\\bdrop"}]}}}\n', encoding="utf-8")
    ok = run_plr("check", str(good))
    assert ok.returncode == 0 and "1 policy checked: 0 errors, 0 warnings" in ok.stderr_text
    proc = run_plr("check", str(bad), str(good))
    assert proc.returncode == 2
    assert f"{bad}:2:74: error: tools.q.deny_if[0]: the regex holds a backspace (U+0008)" in proc.stderr_text
    assert "2 policies checked: 1 error, 0 warnings" in proc.stderr_text
    as_json = run_plr("check", "--format", "json", str(bad))
    (d,) = __import__("json").loads(as_json.stdout_text)
    assert (d["line"], d["col"], d["severity"]) == (2, 74, "error")
