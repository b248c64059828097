"""`plr eval` without click (dsl/cli/eval.py's ``fast_eval``) prints what click's `plr eval` prints.

Each command line runs twice in this interpreter through ``dsl.cli.main``: as `plr` runs it,
and with the fast path turned off (so click reads it, as before). Both runs get fresh streams
of the interpreter's own kind (``io.TextIOWrapper``, as ``sys.stdout`` is), and must write the
same bytes to stdout and stderr and exit with the same code. The command lines are listed by
hand (every spelling click accepts, and the ones it refuses) and drawn by Hypothesis, from
words of click's own grammar and from well-formed calls in any order.
"""

from __future__ import annotations

import errno
import io
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsl.cli.eval as eval_module
from dsl.cli import main
from tests.conftest import ROOT

PLR = str(ROOT / "examples" / "codex_worker.plr")
# a JSON policy whose texts hold escape sequences (click strips CSI ones off a non-terminal),
# a rule description, and a spend cap that refuses with a retry time
JSON_POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {
        "t": {"action": "deny", "reason": "\u001b[31mred\u001b[0m and \u001b]8;;x\u0007 osc", "rule": "r1"},
        "pay": {"action": "allow", "rule": "r2", "limits": [{"max": 10, "window": 60, "per": "global", "of": "args.amount"}]},
        "ok": {"action": "allow", "rule": "r3"},
    },
    "descriptions": {"r1": "Described \u001b[1m here", "r3": "plain description"},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("fast-eval")
    (d / "p.json").write_text(json.dumps(JSON_POLICY))
    (d / "broken.plr").write_text("package x\nallow tool\n")
    (d / "args.json").write_text('{"task_id": "t1", "amount": 50}')
    (d / "bad-args.json").write_text("[1, 2]")
    (d / "latin1.json").write_bytes(b'{"a": "\xe9"}')
    (d / "dir").mkdir()
    return {
        "plr": PLR, "json": str(d / "p.json"), "broken": str(d / "broken.plr"), "dir": str(d / "dir"),
        "missing": str(d / "missing.plr"), "args": str(d / "args.json"), "bad_args": str(d / "bad-args.json"),
        "latin1": str(d / "latin1.json"), "cache": str(d / "cache"),
    }  # fmt: skip


class _Run:
    """One `plr ARGV` through dsl.cli.main in this interpreter: (stdout, stderr, exit code),
    and whether the fast path ran it."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def __call__(
        self, argv: list[str], stdin: bytes = b"", *, fast: bool = True, out: io.TextIOWrapper | None = None,
        stdin_encoding: str = "utf-8", stdout_encoding: str = "utf-8", env: dict[str, str] | None = None,
    ) -> tuple[bytes, bytes, int, bool]:  # fmt: skip
        out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
        stdout = out or io.TextIOWrapper(out_bytes, encoding=stdout_encoding)
        stderr = io.TextIOWrapper(err_bytes, encoding="utf-8")
        ran_fast: list[bool] = []
        real = eval_module._fast_params

        def spy(args: list[str]) -> dict | None:
            params = real(args) if fast else None
            ran_fast.append(params is not None)
            return params

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding=stdin_encoding))
            mp.setattr(sys, "stdout", stdout)
            mp.setattr(sys, "stderr", stderr)
            mp.setattr(eval_module, "_fast_params", spy)
            mp.setenv("PLR_CACHE_DIR", self.files["cache"])
            mp.setenv("NO_COLOR", "1")
            mp.delenv("PLR_NO_CACHE", raising=False)
            mp.delenv("_PLR_COMPLETE", raising=False)
            for k, v in (env or {}).items():
                mp.setenv(k, v)
            try:
                main(argv)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - a stream made to fail
                    pass
        return out_bytes.getvalue(), err_bytes.getvalue(), code, bool(ran_fast and ran_fast[0])

    def same(self, argv: list[str], stdin: bytes = b"", **kw: object) -> tuple[bytes, bytes, int, bool]:
        """Both ways; asserts they agree, returns the fast way's result."""
        fast = self(argv, stdin, **kw)  # type: ignore[arg-type]
        slow = self(argv, stdin, fast=False, **kw)  # type: ignore[arg-type]
        assert fast[:3] == slow[:3], (argv, fast, slow)
        return fast


@pytest.fixture(scope="module")
def run(files: dict[str, str]) -> _Run:
    return _Run(files)


def _calls(f: dict[str, str]) -> list[tuple[list[str], bytes, bool]]:
    """(argv, stdin, whether the fast path takes it)."""
    p, j = f["plr"], f["json"]
    yes = [
        ["eval", p, "--tool", "get-task"],
        ["eval", p, "-t", "get-task"],
        ["eval", "--tool", "get-task", p],
        ["eval", "--tool=get-task", p],
        ["eval", p, "--tool", "cancel-task", "--args", '{"task_id": "t1"}'],
        ["eval", p, "--tool", "cancel-task", "--args", '{"task_id": "t1"}', "--approved", "--explain"],
        ["eval", p, "--tool", "cancel-task", "--args", '{"task_id": ["a", "b", "c", "d", "e", "f"]}', "--approved"],
        ["eval", p, "--tool", "cancel-task", "--format", "json", "--explain"],
        ["eval", p, "--tool", "purge-workspace", "--format=json"],
        ["eval", p, "--tool", "format-disk", "--identity", "alice", "--session", "s1", "--server", "mcp-codex-worker"],
        ["eval", p, "--tool", "spawn-task", "--args", '{"prompt": 5}', "--explain"],
        ["eval", p, "--tool", "get-task", "--no-cache"],
        ["eval", p, "--tool", "get-task", "--tool", "cancel-task"],  # the last one counts, as in click
        ["eval", p, "--tool", "-h"],  # a value, not the help option
        ["eval", p, "--tool", "--", "--explain"],
        ["eval", p, "--tool", ""],
        ["eval", p, "--tool=a=b"],
        ["eval", p, "--tool", "x", "--args", "-"],
        ["eval", p, "--tool", "cancel-task", "--args", "@" + f["args"], "--approved"],
        ["eval", j, "--tool", "t", "--explain"],
        ["eval", j, "--tool", "t", "--explain", "--format", "json"],
        ["eval", j, "--tool", "ok", "--explain"],
        ["eval", j, "--tool", "pay", "--args", '{"amount": 50}', "--explain"],
        ["eval", j, "--tool", "pay", "--args", '{"amount": "x"}'],
        ["eval", j, "--tool", "pay", "--args", '{"amount": 9007199254740993}'],
        ["eval", f["missing"], "--tool", "x"],
        ["eval", f["broken"], "--tool", "x"],
        ["eval", f["dir"], "--tool", "x"],
        ["eval", "-", "--tool", "x"],
        ["eval", "", "--tool", "x"],
        # usage errors in --args: found running the command, printed by click
        ["eval", p, "--tool", "x", "--args", "[1"],
        ["eval", p, "--tool", "x", "--args", "[1, 2]"],
        ["eval", p, "--tool", "x", "--args", "NaN"],
        ["eval", p, "--tool", "x", "--args", '{"a": 1e400}'],
        ["eval", p, "--tool", "x", "--args", '"text"'],
        ["eval", p, "--tool", "x", "--args", "@" + f["missing"]],
        ["eval", p, "--tool", "x", "--args", "@" + f["bad_args"]],
        ["eval", p, "--tool", "x", "--args", "@" + f["latin1"]],
        ["eval", p, "--tool", "x", "--args", "@" + f["dir"]],
    ]
    no = [
        ["eval"],
        ["eval", "-h"],
        ["eval", "--help"],
        ["eval", p, "--tool", "get-task", "--help"],
        ["eval", p],
        ["eval", "--tool", "get-task"],
        ["eval", p, "extra", "--tool", "get-task"],
        ["eval", p, "--tool"],
        ["eval", p, "--tool", "get-task", "--format"],
        ["eval", p, "--tool", "get-task", "--format", "xml"],
        ["eval", p, "--tool", "get-task", "--format", "JSON"],
        ["eval", p, "-tget-task"],
        ["eval", p, "-t=get-task"],
        ["eval", p, "--tool", "get-task", "--approved=1"],
        ["eval", p, "--tool", "get-task", "--explain="],
        ["eval", p, "--tool", "get-task", "--to"],
        ["eval", p, "--to=get-task"],
        ["eval", p, "--tool", "get-task", "--"],
        ["eval", "--", p, "--tool", "get-task"],
        ["eval", p, "--tool", "get-task", "-x"],
        ["eval", p, "--tool", "get-task", "--version"],
        ["eval", p, "--tool", "get-task", "---tool"],
    ]
    return [(a, b'{"task_id": "t-9"}', True) for a in yes] + [(a, b"{}", False) for a in no]


def test_every_listed_command_line_prints_what_click_prints(run: _Run, files: dict[str, str]) -> None:
    for argv, stdin, fast in _calls(files):
        *_, ran_fast = run.same(argv, stdin)
        assert ran_fast is fast, argv


def test_the_fast_path_really_decides(run: _Run) -> None:
    out, err, code, fast = run.same(["eval", PLR, "--tool", "cancel-task", "--format", "json"])
    assert fast and code == 0 and err == b""
    assert json.loads(out)["effect"] == "approval_required"
    out, err, code, fast = run.same(["eval", PLR, "--tool", "x", "--args", "[1"])
    assert fast and code == 2 and out == b""
    assert err.decode().splitlines() == [
        "Usage: plr eval [OPTIONS] POLICY", "Try 'plr eval --help' for help.", "",
        "Error: Invalid value for --args: not valid JSON: Expecting ',' delimiter: line 1 column 3 (char 2)",
    ]  # fmt: skip


def test_no_cache_neither_reads_nor_fills_the_cache(run: _Run, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    argv = ["eval", PLR, "--tool", "get-task"]
    *_, code, fast = run(argv + ["--no-cache"], env={"PLR_CACHE_DIR": str(cache)})
    assert fast and code == 0 and not cache.exists()
    *_, code, fast = run(argv, env={"PLR_CACHE_DIR": str(cache)})
    assert fast and code == 0 and len(list(cache.glob("*.json"))) == 1


def test_stdin_read_once_reaches_click_usage_errors(run: _Run) -> None:
    """A refused --args from stdin is shown by click with the text the fast path read (stdin
    is not read twice)."""
    out, err, code, fast = run.same(["eval", PLR, "--tool", "x", "--args", "-"], b'{"a": [1,')
    assert fast and code == 2 and b"not valid JSON" in err
    out, err, code, fast = run.same(["eval", PLR, "--tool", "x", "--args", "-"], b"\xff\xfe")
    assert fast and code == 2 and b"internal error: UnicodeDecodeError" in err  # as it was through click
    assert eval_module._handoff is None


def test_streams_click_would_rewrap_go_to_click(run: _Run) -> None:
    argv = ["eval", PLR, "--tool", "cancel-task", "--args", "-", "--explain"]
    *_, fast = run.same(argv, b'{"task_id": "\xc3\xa9"}', stdin_encoding="ascii")
    assert not fast
    *_, fast = run.same(["eval", PLR, "--tool", "get-task"], stdout_encoding="ascii")
    assert not fast
    *_, fast = run.same(["eval", PLR, "--tool", "get-task"], env={"_PLR_COMPLETE": "bash_complete"})
    assert not fast


def test_ctrl_c_and_a_closed_pipe_end_as_under_click(run: _Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsl.engine import Engine

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(Engine, "decide", interrupted)
        out, err, code, fast = run.same(["eval", PLR, "--tool", "get-task"])
    assert fast and (out, err, code) == (b"", b"\nAborted!\n", 1)

    class Closed(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    results = []
    for fast_path in (True, False):
        stdout = io.TextIOWrapper(io.BufferedWriter(Closed()), encoding="utf-8")
        _, err, code, fast = run(["eval", PLR, "--tool", "get-task"], out=stdout, fast=fast_path)
        results.append((err, code))
        assert fast is fast_path
    assert results[0] == results[1] == (b"", 1)


def _tty_run(run: _Run, argv: list[str], fast: bool) -> tuple[bytes, int]:
    master, slave = os.openpty()
    try:
        out = open(slave, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - closed below
        _, _, code, ran_fast = run(argv, fast=fast, out=out, env={"NO_COLOR": ""})
        out.close()
        assert ran_fast is fast
        data = b""
        while select.select([master], [], [], 0.2)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            data += chunk
        return data, code
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("tool", ["get-task", "cancel-task", "purge-workspace", "t", "ok"])
def test_on_a_terminal_the_colours_and_escapes_are_clicks(run: _Run, files: dict[str, str], tool: str) -> None:
    policy = files["json"] if tool in ("t", "ok") else PLR
    argv = ["eval", policy, "--tool", tool, "--explain"]
    fast = _tty_run(run, argv, True)
    assert fast == _tty_run(run, argv, False)
    assert b"\x1b[" in fast[0]  # coloured (and the reason's own escapes kept, as click keeps them)


def test_style_writes_what_click_style_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    from dsl.cli import output

    monkeypatch.setattr(output, "color", lambda stream=None: True)
    for fg in [*output._ANSI_FG, "not-a-colour", ""]:
        for bold in (True, False):
            try:
                want = click.style("text", fg=fg, bold=bold)
            except TypeError:
                with pytest.raises(TypeError):
                    output.style("text", fg, bold)
                continue
            assert output.style("text", fg, bold) == want


_WORDS = [
    "--tool", "-t", "--args", "--identity", "--session", "--server", "--approved", "--explain", "--format",
    "--no-cache", "-h", "--help", "--", "-", "-tget-task", "-t=get-task", "--tool=get-task", "--tool=",
    "--approved=1", "--format=json", "--format=xml", "--formats", "--to", "-x", "---tool", "--version", "=",
    "get-task", "cancel-task", "t", "pay", "ok", "", "json", "text", "{}", '{"task_id": "t1"}',
    '{"amount": 50}', "[1", "NaN", "alice",
]  # fmt: skip


@st.composite
def _chaos(draw: st.DrawFn) -> list[str]:
    words = st.sampled_from([*_WORDS, "PLR", "JSON", "MISSING", "@ARGS", "@MISSING"])
    return ["eval", *draw(st.lists(words, max_size=8))]


@st.composite
def _well_formed(draw: st.DrawFn) -> list[str]:
    parts: list[list[str]] = [[draw(st.sampled_from(["PLR", "JSON", "MISSING"]))]]
    tool = draw(st.sampled_from(["get-task", "cancel-task", "spawn-task", "t", "pay", "ok", "nope"]))
    parts.append(draw(st.sampled_from([["--tool", tool], ["-t", tool], [f"--tool={tool}"]])))
    values = {
        "--args": ['{"task_id": "t1"}', '{"amount": 50}', '{"prompt": "p"}', "{}", "-", "@ARGS", "[1"],
        "--identity": ["alice", "-h"], "--session": ["s1"], "--server": ["mcp-codex-worker"], "--format": ["text", "json"],
    }  # fmt: skip
    for option in draw(st.lists(st.sampled_from([*values, "--approved", "--explain", "--no-cache"]), unique=True)):
        if option in values:
            value = draw(st.sampled_from(values[option]))
            parts.append(draw(st.sampled_from([[option, value], [f"{option}={value}"]])))
        else:
            parts.append([option])
    order = draw(st.permutations(parts))
    return ["eval", *(w for part in order for w in part)]


def _resolve(argv: list[str], files: dict[str, str]) -> list[str]:
    names = {"PLR": files["plr"], "JSON": files["json"], "MISSING": files["missing"]}
    out = []
    for w in argv:
        for key, path in (("ARGS", files["args"]), ("MISSING", files["missing"])):
            if w.startswith("@") and w[1:] == key:
                w = "@" + path
        out.append(names.get(w, w))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.one_of(_chaos(), _well_formed()), stdin=st.sampled_from([b"{}", b'{"task_id": "t2"}', b"[", b"\xff"]))
def test_drawn_command_lines_print_what_click_prints(run: _Run, files: dict[str, str], argv: list[str], stdin: bytes) -> None:
    run.same(_resolve(argv, files), stdin)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "cache"


def test_a_cached_eval_imports_no_click_and_no_dataclasses(cache_dir: Path) -> None:
    code = (
        "import sys\nfrom dsl.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "names = ('click', 'dataclasses', 'inspect', 'dsl.errors', 'pydantic', 'lark', 're2')\n"
        "print('IMPORTED', *[m for m in names if m in sys.modules], 'EXIT', code, file=sys.stderr)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), PLR_CACHE_DIR=str(cache_dir), NO_COLOR="1")
    env.pop("PLR_NO_CACHE", None)

    def imported(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60)
        return proc.stderr.strip().splitlines()[-1]

    argv = ("eval", PLR, "--tool", "cancel-task", "--args", '{"task_id": "t1"}', "--explain")
    imported(*argv)  # fills the cache
    assert imported(*argv) == "IMPORTED EXIT 0"
    assert imported("eval", PLR, "--tool", "x", "--args", "[").startswith("IMPORTED click")  # click's usage error
