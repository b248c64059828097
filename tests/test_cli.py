"""The CLI as users run it (subprocesses): exit codes, messages, no tracebacks on bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import SPEC_JSON, SPEC_PLR, run_plr

CODEX = str(SPEC_PLR)


def assert_clean_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout_text, proc.stderr_text)
    assert "Traceback" not in proc.stderr_text + proc.stdout_text
    for n in needles:
        assert n in proc.stderr_text, proc.stderr_text


def test_compile_prints_canonical_json(tmp_path: Path):
    proc = run_plr("compile", "--no-source", CODEX)
    assert proc.returncode == 0, proc.stderr_text
    assert proc.stdout_text == SPEC_JSON.read_text()
    out = tmp_path / "p.json"
    proc = run_plr("compile", CODEX, "-o", str(out))
    assert proc.returncode == 0 and json.loads(out.read_text())["tools"]["cancel-task"]["rule"] == "codex_worker.plr:20"


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "the file is empty"),
        (bytes(range(256)) * 4, "not UTF-8 text"),
        (b'deny tool "x" if ' + b"(" * 1_000_000, "nesting is too deep"),
        (b'deny tool "cancel-task\n', "unterminated string"),
        (b'frobnicate tool "x"\n', "unknown keyword `frobnicate`"),
        (b'deny tool "x" if args.a\x00 == 1\n', "NUL byte"),
        (b"\xef\xbb\xbfdefault deny\ndeny tool \"x\" if args.q matches \"[\"\n", "invalid regular expression"),
    ],
    ids=["empty", "binary", "1MB-nested-parens", "unterminated-string", "unknown-keyword", "nul", "bom+bad-regex"],
)
def test_bad_plr_gives_a_clean_error(tmp_path: Path, content: bytes, needle: str):
    f = tmp_path / "bad.plr"
    f.write_bytes(content)
    for cmd in ("compile", "check", "test"):
        proc = run_plr(cmd, str(f))
        assert_clean_error(proc, needle)
        assert "bad.plr" in proc.stderr_text


def test_one_megabyte_line_is_reported_with_a_short_snippet(tmp_path: Path):
    f = tmp_path / "long.plr"
    f.write_text('default deny\nallow tool "x" if args.a == "' + "a" * 1_000_000 + '" ==\n')
    proc = run_plr("compile", str(f))
    assert_clean_error(proc, "long.plr:2:")
    assert len(proc.stderr_text) < 2000


@pytest.mark.parametrize(
    "doc, needle",
    [
        ({"version": "1", "default": "deny", "tools": {}, "colour": "red"}, "colour: unknown field"),
        ({"version": "2", "default": "deny"}, 'version: unsupported policy version "2"'),
        (
            {"version": "1", "default": "deny", "tools": {"cancel-task": {"limits": [{"max": 3, "window": -60}]}}},
            "tools.cancel-task.limits[0].window: must be > 0",
        ),
        ({"version": "1", "default": "maybe"}, "default: must be 'allow' or 'deny'"),
        ({"version": "1", "default": "deny", "tools": {"a": {"deny_if": [{"path": "args.x", "op": "like", "value": 1}]}}}, "tools.a.deny_if[0].op"),
    ],
    ids=["unknown-field", "wrong-version", "negative-window", "bad-default", "unknown-op"],
)
def test_bad_json_policy_gives_a_clean_error(tmp_path: Path, doc: dict, needle: str):
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(doc))
    for args in (("eval", str(f), "--tool", "a"), ("decompile", str(f)), ("fmt", "--json", "--check", str(f))):
        proc = run_plr(*args)
        assert_clean_error(proc, needle)


def test_truncated_json_policy(tmp_path: Path):
    f = tmp_path / "policy.json"
    f.write_text('{"version": "1", "default": "deny", "tools": {')
    assert_clean_error(run_plr("eval", str(f), "--tool", "a"), "policy.json:1:", "invalid JSON")


def test_check_reports_errors_of_all_files_as_json(tmp_path: Path):
    (tmp_path / "a.plr").write_text('default deny\nallow tool "x" if argz.q == 1\n')
    (tmp_path / "b.plr").write_text('default deny\nlimit tool "y" to 0 per minute\n')
    proc = run_plr("check", "--format", "json", str(tmp_path))
    assert proc.returncode == 2
    items = json.loads(proc.stdout_text)
    errors = [(Path(i["file"]).name, i["line"], i["col"]) for i in items if i["severity"] == "error"]
    assert errors == [("a.plr", 2, 19), ("b.plr", 2, 19)]
    assert set(items[0]) == {"severity", "file", "line", "col", "message"}


def test_check_strict_fails_on_warnings(tmp_path: Path):
    f = tmp_path / "w.plr"
    f.write_text('default allow\nallow tool "x"\n')
    assert run_plr("check", str(f)).returncode == 0
    assert run_plr("check", "--strict", str(f)).returncode == 1


def test_eval_json_output_and_explain():
    proc = run_plr("eval", CODEX, "--tool", "cancel-task", "--args", '{"task_id": "t1"}', "--format", "json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout_text) == {
        "effect": "approval_required",
        "code": "require",
        "reason": "Destructive: cancels running tasks; a human must approve",
        "rule": "codex_worker.plr:20",
        "retry_after": None,
    }
    proc = run_plr("eval", CODEX, "--tool", "cancel-task", "--args", '{"task_id": [1,2,3,4,5,6]}', "--approved", "--explain")
    assert proc.returncode == 0
    assert proc.stdout_text.startswith("deny (deny_if) by codex_worker.plr:23")
    assert "Cancel at most five tasks per call" in proc.stdout_text
    assert "count(args.task_id) > 5" in proc.stdout_text


def test_eval_bad_args_is_a_usage_error():
    proc = run_plr("eval", CODEX, "--tool", "x", "--args", "{not json")
    assert proc.returncode == 2 and "--args" in proc.stderr_text and "Traceback" not in proc.stderr_text
    # not JSON either, though Python's reader would take them (and NaN compares false to everything)
    for bad, why in (('{"n": NaN}', "NaN is not a JSON number"), ('{"n": [-Infinity]}', "-Infinity is not"),
                     ('{"n": 1e400}', "1e400 is too large")):  # fmt: skip
        proc = run_plr("eval", CODEX, "--tool", "x", "--args", bad)
        assert proc.returncode == 2 and why in proc.stderr_text, proc.stderr_text


def test_missing_file_is_an_input_error():
    assert_clean_error(run_plr("compile", "nope.plr"), "nope.plr", "no such file")


def test_schema_is_json_schema():
    proc = run_plr("schema")
    schema = json.loads(proc.stdout_text)
    assert schema["type"] == "object" and "tools" in schema["properties"]
    assert schema["additionalProperties"] is False


def test_every_command_has_help_with_an_example():
    for cmd in ("compile", "check", "fmt", "test", "eval", "decompile", "schema"):
        proc = run_plr(cmd, "--help")
        assert proc.returncode == 0
        assert "plr " + cmd in proc.stdout_text or cmd == "schema", cmd


def test_shipped_policies_are_formatted():
    from .conftest import ROOT

    proc = run_plr("fmt", "--check", str(ROOT / "examples"), str(ROOT / "stdlib_rules"))
    assert proc.returncode == 0, proc.stdout_text + proc.stderr_text


def test_fmt_check_and_diff_exit_1_on_unformatted_files(tmp_path: Path):
    f = tmp_path / "messy.plr"
    f.write_text('default   deny\nallow tool "a"   if args.x==1 reason "r"\n')
    proc = run_plr("fmt", "--check", str(f))
    assert proc.returncode == 1 and "would reformat" in proc.stdout_text
    proc = run_plr("fmt", "--diff", str(f))
    assert proc.returncode == 1 and "+allow tool \"a\" if args.x == 1" in proc.stdout_text
    assert run_plr("fmt", str(f)).returncode == 0
    assert f.read_text() == 'default deny\n\nallow tool "a" if args.x == 1\n    reason "r"\n'
    assert run_plr("fmt", "--check", str(f)).returncode == 0


# --- review fixes: stdin formatting, machine-readable errors, clean input errors -----------


def assert_no_crash(proc) -> None:
    text = proc.stderr_text + proc.stdout_text
    assert "Traceback" not in text and "internal error" not in text, text


def test_fmt_stdin_honours_check_and_diff():
    messy, tidy = 'default  deny\nallow tool "a"\n', 'default deny\n\nallow tool "a"\n'
    proc = run_plr("fmt", "--check", "-", input=messy)
    assert proc.returncode == 1 and proc.stdout_text == "", proc.stdout_text
    proc = run_plr("fmt", "--check", "-", input=tidy)
    assert proc.returncode == 0 and proc.stdout_text == ""
    proc = run_plr("fmt", "--diff", "-", input=messy)
    assert proc.returncode == 1 and "-default  deny\n+default deny\n" in proc.stdout_text
    proc = run_plr("fmt", "--diff", "-", input=tidy)
    assert proc.returncode == 0 and proc.stdout_text == ""
    proc = run_plr("fmt", "-", input=messy)
    assert proc.returncode == 0 and proc.stdout_text == tidy


def test_fmt_stdin_with_files_is_a_usage_error(tmp_path: Path):
    f = tmp_path / "z.plr"
    f.write_text('default  deny\n')
    proc = run_plr("fmt", "-", str(f), input='default deny\n')
    assert_clean_error(proc, "-")
    assert f.read_text() == 'default  deny\n'


def test_check_json_reports_a_missing_file_in_the_document(tmp_path: Path):
    proc = run_plr("check", "--format", "json", "nonexist.plr", cwd=tmp_path)
    assert proc.returncode == 2 and "nonexist.plr" in proc.stderr_text
    items = json.loads(proc.stdout_text)
    assert items == [{"severity": "error", "file": "nonexist.plr", "line": 0, "col": 0, "message": "no such file or directory"}]
    (tmp_path / "bad.plr").write_text('default deny\nallow tool "x" if argz.q == 1\n')
    proc = run_plr("check", "--format", "json", "bad.plr", "nonexist.plr", cwd=tmp_path)
    assert proc.returncode == 2
    assert [(i["file"], i["line"]) for i in json.loads(proc.stdout_text)] == [("nonexist.plr", 0), ("bad.plr", 2)]


def test_test_json_and_junit_report_missing_files(tmp_path: Path):
    import xml.etree.ElementTree as ET

    (tmp_path / "good.plr").write_text('default deny\nallow tool "a"\ntest "t" { call "a" -> allow }\n')
    for paths in (["nonexist.plr"], ["good.plr", "nonexist.plr"]):
        proc = run_plr("test", "--format", "json", *paths, cwd=tmp_path)
        assert proc.returncode == 2 and "nonexist.plr" in proc.stderr_text
        out = json.loads(proc.stdout_text)
        assert [(e["file"], e["message"]) for e in out["errors"]] == [("nonexist.plr", "no such file or directory")]
        assert out["passed"] == len(paths) - 1  # the good file still ran
        proc = run_plr("test", "--format", "junit", *paths, cwd=tmp_path)
        assert proc.returncode == 2 and "nonexist.plr" in proc.stderr_text
        root = ET.fromstring(proc.stdout_text)
        err = root.find("./testsuite[@name='nonexist.plr']/testcase/error")
        assert err is not None and err.get("message") == "no such file or directory"
    proc = run_plr("test", "nonexist.plr", cwd=tmp_path)
    assert_clean_error(proc, "nonexist.plr: error: no such file or directory")


def test_junit_is_valid_xml_with_one_failure_per_test(tmp_path: Path):
    import xml.etree.ElementTree as ET

    (tmp_path / "p.plr").write_text(
        'default deny\nallow tool "a"\n'
        'test "x\\u0001y" {\n    call "a\\u001b" -> allow\n    call "b\\u0000" -> allow\n    call "c" -> allow\n}\n'
    )
    proc = run_plr("test", "--format", "junit", str(tmp_path / "p.plr"))
    assert proc.returncode == 1, proc.stderr_text
    root = ET.fromstring(proc.stdout.decode("utf-8"))  # raises on characters XML 1.0 forbids
    (case,) = root.iter("testcase")
    assert case.get("name") == "x\\u0001y"
    failures = case.findall("failure")
    assert len(failures) == 1 and "(and 2 more)" in failures[0].get("message")
    assert "a\\u001b" in failures[0].text and '"c"' in failures[0].text


def test_eval_args_must_be_a_json_object():
    for bad in ("[1]", "null", '"x"', "3", "true"):
        proc = run_plr("eval", CODEX, "--tool", "get-task", "--args", bad)
        assert_clean_error(proc, "--args", "JSON object")
        assert proc.stdout_text == ""


def test_test_dir_with_a_non_utf8_file_name(tmp_path: Path):
    name = os.path.join(os.fsencode(tmp_path), b"\xff.plr")
    try:
        with open(name, "wb") as f:
            f.write(b'default deny\nallow tool "a"\ntest "t" { call "a" -> deny }\n')
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    # the name is shown escaped; while the compiler puts it into `rule` fields (which the
    # loader refuses: not text), the test run is a clear input error that says to rename it
    for fmt in ("text", "json", "junit"):
        proc = run_plr("test", "--format", fmt, str(tmp_path))
        assert_no_crash(proc)
        assert proc.returncode in (1, 2), (fmt, proc.stderr_text)
        assert "\\udcff.plr" in proc.stdout_text + proc.stderr_text
        if proc.returncode == 2:
            assert "not UTF-8" in proc.stdout_text + proc.stderr_text
        if fmt == "json":
            json.loads(proc.stdout_text)
    assert_no_crash(run_plr("check", str(tmp_path)))


def test_proxy_upstream_must_be_an_http_url():
    for bad in ("notaurl", "ftp://h/mcp", "http://", "http://h:99999/mcp"):
        proc = run_plr("proxy", "--policy", CODEX, "--upstream", bad, "--listen", "127.0.0.1:0")
        assert_clean_error(proc, "--upstream")


def test_every_proxy_flag_has_its_field_in_proxy_command_options():
    """`plr proxy` hands click's keyword arguments to ProxyCommandOptions: a flag without a
    field (or a field no flag fills) would fail only when the proxy starts."""
    from dataclasses import fields

    from dsl.cli.proxy import proxy_cmd
    from dsl.cli.proxy_run import ProxyCommandOptions

    assert [p.name for p in proxy_cmd.params] == [f.name for f in fields(ProxyCommandOptions)]


def test_plr_help_imports_no_heavy_module():
    """`plr --help` lists every command (so imports every command module), yet loads none of
    the parser, pydantic, the MCP SDK, SQLite or Redis: the command modules import them lazily."""
    import subprocess
    import sys

    from .conftest import ROOT

    code = (
        "import sys\nfrom dsl.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print([m for m in ('lark', 'pydantic', 'mcp', 'anyio', 'sqlite3', 'redis', 'dsl.compiler', 'dsl.engine') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "Commands:" in out.stdout and "approvals" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


DESCRIBED = """package shop
default deny
allow tool "list_orders"
deny tool "refund" if args.amount > 100
    reason "Large refunds go through finance"
    description "money leaves the company: \\u001b[31mfinance\\u001b[0m decides"
allow tool "refund"
"""


def test_eval_explain_shows_the_deciding_rules_description(tmp_path: Path):
    """#17: `description "..."` reaches `--explain` (text and JSON), for the rule that decided
    only, escaped for the terminal; a rule without one and the default show none."""
    src = tmp_path / "shop.plr"
    src.write_text(DESCRIBED)
    compiled = tmp_path / "shop.json"
    assert run_plr("compile", str(src), "-o", str(compiled)).returncode == 0
    for policy in (src, compiled, src):  # the .plr twice: the second comes from the cache
        proc = run_plr("eval", str(policy), "--tool", "refund", "--args", '{"amount": 500}', "--explain")
        assert proc.returncode == 0, proc.stderr_text
        lines = proc.stdout_text.splitlines()
        assert lines[0] == "deny (deny_if) by shop.plr:4"
        assert lines[2] == "  description: money leaves the company: \\u001b[31mfinance\\u001b[0m decides"
        assert "\x1b" not in proc.stdout_text
        proc = run_plr("eval", str(policy), "--tool", "refund", "--args", '{"amount": 500}', "--explain", "--format", "json")
        out = json.loads(proc.stdout_text)
        assert out["rule"] == "shop.plr:4"
        assert out["description"] == "money leaves the company: \x1b[31mfinance\x1b[0m decides"
    small = run_plr("eval", str(src), "--tool", "refund", "--args", '{"amount": 5}', "--explain")
    assert small.stdout_text.startswith("allow (allowed) by shop.plr:7") and "description" not in small.stdout_text
    default = run_plr("eval", str(src), "--tool", "other", "--explain", "--format", "json")
    assert json.loads(default.stdout_text)["description"] is None
    quiet = run_plr("eval", str(src), "--tool", "refund", "--args", '{"amount": 500}')
    assert "description" not in quiet.stdout_text  # only --explain shows it
    quiet_json = run_plr("eval", str(src), "--tool", "refund", "--args", '{"amount": 500}', "--format", "json")
    assert "description" not in json.loads(quiet_json.stdout_text)
    stripped = tmp_path / "bare.json"
    assert run_plr("compile", "--no-source", str(src), "-o", str(stripped)).returncode == 0
    proc = run_plr("eval", str(stripped), "--tool", "refund", "--args", '{"amount": 500}', "--explain")
    assert proc.returncode == 0 and "description" not in proc.stdout_text  # --no-source drops them


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "no-cache"])
@pytest.mark.parametrize("name", ["p.json", "p.plr", "p.yaml"])
def test_eval_never_waits_on_a_fifo(tmp_path: Path, cache: bool, name: str) -> None:
    """plr eval reads its policy as plr compile does: a FIFO is refused at once, exit 2."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / name
    os.mkfifo(fifo)
    args = [sys.executable, "-m", "dsl.cli", "eval", str(fifo), "--tool", "x", *(() if cache else ("--no-cache",))]
    res = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "FIFO" in res.stderr and "Traceback" not in res.stderr
