"""Review fixes: a tool two catalogues class differently, stdlib classes, literals that
passed `plr check` but crashed later, and the text of later errors in a multi-error file."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

from dsl.catalog import stdlib_catalogues
from dsl.compiler import build, compile_files, compile_source
from dsl.engine import Engine
from dsl.errors import PlrError, line_of
from dsl.parser import MAX_LIMIT_COUNT, MAX_WINDOW_DAYS, MAX_WINDOW_SECONDS, parse

from .conftest import ROOT, run_plr


def errors_of(src: str, file: str = "p.plr") -> list:
    _, diags = build((), {file: src})
    return [d for d in diags if d.severity == "error"]


def warnings_of(src: str, file: str = "p.plr") -> list:
    _, diags = build((), {file: src})
    assert not [d for d in diags if d.severity == "error"], diags
    return [d for d in diags if d.severity == "warning"]


def no_crash(proc) -> None:
    out = proc.stdout_text + proc.stderr_text
    assert "internal error" not in out and "Traceback" not in out, out


# --- 1. a tool two catalogues class differently has both classes ---------------------------

TWO_CLASSES = (
    'server "a" { tool "delete" read }\n'
    'server "b" { tool "delete" destructive }\n'
    "default deny\n"
    "allow read tools\n"
    "deny destructive tools unless approved\n"
)


def test_a_tool_classed_read_and_destructive_needs_approval():
    p = compile_source(TWO_CLASSES, "p.plr")
    assert p.tools["delete"].action == "require_approval"
    e = Engine(p)
    assert e.decide("delete", {}).effect == "approval_required"
    assert e.decide("delete", {}, approved=True).effect == "allow"


def test_declaration_order_does_not_matter():
    swapped = TWO_CLASSES.replace('"a" { tool "delete" read }', "A").replace(
        '"b" { tool "delete" destructive }', '"a" { tool "delete" read }'
    ).replace("A", '"b" { tool "delete" destructive }')
    assert swapped.index("destructive }") < swapped.index("read }")
    assert compile_source(swapped, "p.plr").tools["delete"].action == "require_approval"


@pytest.mark.parametrize("order", [("read", "destructive"), ("destructive", "read")])
def test_import_order_does_not_matter(tmp_path: Path, order: tuple[str, str]):
    for i, risk in enumerate(order):
        (tmp_path / f"cat{i}.plr").write_text(f'server "s{i}" {{\n    tool "delete" {risk}\n}}\n')
    (tmp_path / "p.plr").write_text(
        'import "./cat0.plr"\nimport "./cat1.plr"\n'
        "default deny\nallow read tools\ndeny destructive tools unless approved\n"
    )
    assert compile_files([str(tmp_path / "p.plr")]).tools["delete"].action == "require_approval"


def test_plr_eval_asks_for_approval(tmp_path: Path):
    f = tmp_path / "p.plr"
    f.write_text(TWO_CLASSES)
    proc = run_plr("eval", str(f), "--tool", "delete")
    no_crash(proc)
    assert proc.stdout_text.startswith("approval_required"), proc.stdout_text


def test_check_warns_at_the_later_declaration():
    warns = [w for w in warnings_of(TWO_CLASSES) if "classified" in w.message]
    assert len(warns) == 1
    w = warns[0]
    assert (w.file, w.line, w.col) == ("p.plr", 2, 19)
    assert "`delete` is classified as destructive here but as read by server `a` (p.plr:1)" in w.message
    assert "^" in w.format()


def test_the_warning_points_at_the_users_file_not_the_stdlib(tmp_path: Path):
    f = tmp_path / "p.plr"
    f.write_text('import "stdlib/server-github"\nserver "mine" { tool "push_files" write }\ndefault deny\nallow write tools\n')
    _, diags = build([str(f)])
    (w,) = [d for d in diags if "classified" in d.message]
    assert (Path(w.file).name, w.line, w.col) == ("p.plr", 2, 22)
    assert "as write here but as destructive by server `server-github` (stdlib/server-github.plr:" in w.message


def test_same_class_in_two_servers_is_not_warned():
    src = 'server "a" { tool "get" read }\nserver "b" { tool "get" read }\ndefault deny\nallow read tools\n'
    assert not [w for w in warnings_of(src) if "classified" in w.message]


def test_three_classes_warn_once_per_new_class():
    src = (
        'server "a" { tool "t" read }\nserver "b" { tool "t" read }\n'
        'server "c" { tool "t" write }\nserver "d" { tool "t" write }\nserver "e" { tool "t" execute }\n'
        "default deny\nallow read tools\n"
    )
    assert [w.line for w in warnings_of(src) if "classified" in w.message] == [3, 5]


def test_every_class_selector_expands_the_same_way():
    src = (
        'server "a" { tool "delete" read  tool "get" read }\n'
        'server "b" { tool "delete" destructive }\n'
        "default deny\n"
        "allow read tools\n"
        "limit read tools to 100 per minute\n"
        "limit destructive tools to 2 per minute\n"
    )
    p = compile_source(src, "p.plr")
    assert sorted(lim.max for lim in p.tools["delete"].limits) == [2, 100]
    assert [lim.max for lim in p.tools["get"].limits] == [100]
    hidden = compile_source(src + "hide destructive tools\n", "p.plr")
    assert hidden.hide == ["delete"] and "get" in hidden.tools
    deny = compile_source(src + "deny destructive tools\n", "p.plr")
    assert deny.tools["delete"].action == "deny" and deny.tools["get"].action == "allow"
    allow_all = compile_source(src.replace("allow read tools", "allow destructive tools"), "p.plr")
    assert allow_all.tools["delete"].action == "allow" and Engine(allow_all).decide("get", {}).effect == "deny"


def test_same_server_two_classes_is_still_an_error():
    errs = errors_of('server "a" { tool "t" read }\nserver "a" { tool "t" write }\n')
    assert len(errs) == 1 and "declared twice" in errs[0].message and errs[0].line == 2


# --- 2. stdlib classes ------------------------------------------------------------------


def stdlib_classes() -> dict[str, dict[str, str]]:
    return {c.server: dict(c.tools) for c in stdlib_catalogues()}


def test_push_files_is_destructive_like_create_or_update_file():
    gh = stdlib_classes()["server-github"]
    assert gh["push_files"] == gh["create_or_update_file"] == "destructive"


def test_tools_named_for_overwriting_deleting_or_moving_are_destructive():
    verbs = re.compile(r"(delete|remove|move|write|edit|push|merge|drop|cancel|overwrite)[_-]")
    for server, tools in stdlib_classes().items():
        for tool, risk in tools.items():
            if verbs.match(tool):
                assert risk == "destructive", f"{server}: {tool} is {risk}"


def test_postgres_query_is_not_a_read():
    assert stdlib_classes()["server-postgres"]["query"] == "execute"
    p = compile_source('import "stdlib/server-postgres"\nimport "stdlib/read_only"\n', "p.plr")
    assert "query" not in p.tools  # `allow read tools` does not reach arbitrary SQL


def test_stdlib_catalogues_agree_on_every_shared_tool_name():
    # except a command router's class, read from its own arguments and not lent to other servers'
    # tools of its name (harvest.harmonize): azure's `search` router beside ripgrep's `search`
    import json

    from dsl.harvest import _by_its_arguments

    routers = set()
    for path in (ROOT / "stdlib_rules" / "catalogues").glob("server-*.json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        routers |= {(doc["server"], t["name"]) for t in doc.get("tools", []) if _by_its_arguments(t)}
    assert ("azure", "search") in routers
    seen: dict[str, tuple[str, str]] = {}
    for server, tools in stdlib_classes().items():
        for tool, risk in tools.items():
            if (server, tool) in routers:
                continue
            if tool in seen:
                assert seen[tool][1] == risk, f"{tool}: {seen[tool]} vs {(server, risk)}"
            seen[tool] = (server, risk)


def test_regen_keeps_reviewed_classes():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import regen_catalog
    finally:
        sys.path.remove(str(ROOT / "tools"))
    live = [("push_files", "write", "Push files"), ("new_tool", "read", "")]
    tools, changed = regen_catalog.keep_reviewed_classes(live, {"push_files": "destructive"})
    assert tools == [("push_files", "destructive", "Push files"), ("new_tool", "read", "")]
    assert changed == [("push_files", "write", "destructive")]


# --- 3. literals that passed `plr check` and crashed later ---------------------------------

NINES = "9" * 400


@pytest.mark.parametrize(
    "src, line, col, words",
    [
        (f'limit tool "t" to 5 per {NINES}d\n', 1, 25, f"window must be at most {MAX_WINDOW_DAYS}d"),
        (f'limit tool "t" to 5 per {MAX_WINDOW_DAYS + 1}d\n', 1, 25, f"{MAX_WINDOW_SECONDS} seconds"),
        (f'limit tool "t" to 5 per {MAX_WINDOW_SECONDS + 1}s\n', 1, 25, "window must be at most"),
        (f'limit tool "t" to {NINES} per day\n', 1, 19, f"count must be at most {MAX_LIMIT_COUNT}"),
        (f'limit tool "t" to {MAX_LIMIT_COUNT + 1} per day\n', 1, 19, "2^53 - 1"),
        (f'test "x" {{\n    after {NINES}d\n}}\n', 2, 11, f"at most {MAX_WINDOW_DAYS}d"),
        ('allow tool "t" if args.a > 1e-400\n', 1, 28, "1e-400 is too small"),
        ('allow tool "t" if args.a in [1, 0.' + "0" * 400 + "1]\n", 1, 33, "too small"),
        ('test "x" {\n    call "t" {a: 2.5e-999} -> allow\n}\n', 2, 18, "would be read as 0"),
    ],
    ids=["window-400-digits", "window-days", "window-seconds", "count-400-digits", "count-2^53",
         "after-400-digits", "underflow-exponent", "underflow-zeros", "underflow-test-args"],
)
def test_out_of_range_literals_are_located_errors(src: str, line: int, col: int, words: str):
    src = "default deny\n" + src
    errs = errors_of(src)
    assert len(errs) == 1, errs
    e = errs[0]
    assert (e.line, e.col) == (line + 1, col) and words in e.message, e.format()
    assert "^" in e.format()
    with pytest.raises(PlrError):
        compile_source(src, "p.plr")


def test_largest_limits_compile_and_survive_json():
    src = (
        f'default deny\nallow tool "t"\nlimit tool "t" to {MAX_LIMIT_COUNT} per {MAX_WINDOW_DAYS}d\n'
        f'limit tool "t" to 5 per {MAX_WINDOW_SECONDS}s\nallow tool "u" if args.a > 0.0e-999 and args.b == 1e-300\n'
        f'test "x" {{\n    after {MAX_WINDOW_DAYS}d\n    call "t" -> allow\n}}\n'
    )
    p = compile_source(src, "p.plr")
    assert {(lim.max, lim.window) for lim in p.tools["t"].limits} == {
        (MAX_LIMIT_COUNT, MAX_WINDOW_SECONDS),
        (5, MAX_WINDOW_SECONDS),
    }
    from dsl.policy import load_policy

    assert load_policy(p.to_json()) == p


def test_huge_window_is_an_error_in_check_and_compile_not_a_crash(tmp_path: Path):
    f = tmp_path / "p.plr"
    f.write_text(f'default deny\nallow tool "t"\nlimit tool "t" to 5 per {NINES}d\n')
    for cmd in ("check", "compile", "test"):
        proc = run_plr(cmd, str(f))
        no_crash(proc)
        assert proc.returncode == 2 and "p.plr:3:25: error: a limit's window" in proc.stderr_text, (cmd, proc.stderr_text)


def test_huge_after_step_is_an_error_not_a_crash(tmp_path: Path):
    f = tmp_path / "p_test.plr"
    f.write_text(f'default deny\nallow tool "t"\ntest "x" {{\n    after {NINES}d\n    call "t" -> allow\n}}\n')
    proc = run_plr("test", str(f))
    no_crash(proc)
    assert proc.returncode == 2 and "p_test.plr:4:11" in proc.stderr_text, proc.stderr_text


LONE = 'default deny\ndeny tool "t" if args.s == "\\ud800"\n'


def test_lone_surrogate_escape_is_rejected_by_the_parser():
    with pytest.raises(PlrError) as info:
        parse(LONE, "p.plr")
    d = info.value.first
    assert (d.line, d.col, d.width) == (2, 29, 6)
    assert d.message == "\\ud800 is not a character: a lone surrogate"


@pytest.mark.parametrize("cmd", ["check", "compile", "fmt", "eval"])
def test_lone_surrogate_is_a_located_error_in_every_command(tmp_path: Path, cmd: str):
    f = tmp_path / "p.plr"
    f.write_text(LONE)
    args = [cmd, str(f)] + (["--tool", "t", "--args", '{"s": "x"}'] if cmd == "eval" else [])
    proc = run_plr(*args)
    no_crash(proc)
    assert proc.returncode == 2
    assert "p.plr:2:29: error: \\ud800 is not a character: a lone surrogate" in proc.stderr_text, proc.stderr_text
    assert f.read_text() == LONE  # fmt left the file alone


@pytest.mark.parametrize(
    "literal, bad",
    [
        ('"\\ud83d\\ude00"', []),  # a pair: one character (U+1F600)
        ('"\\\\ud800"', []),  # an escaped backslash, then text
        ('"\\uD83D\\uDE00"', []),
        ('"\\udc00"', ["\\udc00"]),
        ('"a\\ud83d"', ["\\ud83d"]),
        ('"\\ud83dx\\ude00"', ["\\ud83d", "\\ude00"]),
        ('"\\ud83d\\ud83d\\ude00"', ["\\ud83d"]),
        ('"\\ud83d\\n"', ["\\ud83d"]),
    ],
)
def test_surrogate_escapes(literal: str, bad: list[str]):
    for src in (
        f"default deny\nallow tool \"t\" if args.s == {literal}\n",
        f"default deny\nallow tool {literal}\n",
        f'default deny\ntest "x" {{\n    call "t" {{s: {literal}}} -> deny\n}}\n',
        f'server {literal} {{ tool "t" read }}\n',
    ):
        if not bad:
            parse(src)
            continue
        with pytest.raises(PlrError) as info:
            parse(src)
        got = [d.message.split(" ")[0] for d in info.value.diagnostics]
        assert got == bad, src


def test_raw_lone_surrogate_in_text_is_a_located_error():
    with pytest.raises(PlrError) as info:
        compile_source('default deny\n# note \udc80\nallow tool "t"\n', "p.plr")
    d = info.value.first
    assert (d.line, d.col) == (2, 8) and "U+DC80 is not a character" in d.message


# --- 4. several syntax errors: each names its own token ----------------------------------

REVIEWED = 'default deny\ndeny "c" unless approved\nallow tool "x" if args.a == 1\nDeny tool "y"\nallow tool "q" if args.a = 1\n'


def syntax_errors(src: str) -> list:
    with pytest.raises(PlrError) as info:
        parse(src, "p.plr")
    return info.value.diagnostics


def alone(statement: str) -> str | None:
    try:
        parse(statement, "p.plr")
    except PlrError as e:
        return e.diagnostics[0].message
    return None


def test_the_reviewed_file_names_the_right_token_on_every_line():
    errs = syntax_errors(REVIEWED)
    assert [(d.line, d.col) for d in errs] == [(2, 6), (4, 1), (5, 26)]
    assert errs[0].message.startswith('unexpected `"c"`')
    assert errs[1].message.startswith("unknown keyword `Deny`")
    assert errs[2].message == "`=` is not an operator: write `==` to compare"
    assert errs[2].message == alone('allow tool "q" if args.a = 1\n')
    for d in errs:
        assert d.source_line == line_of(REVIEWED, d.line)


def test_a_statement_cut_short_does_not_swallow_the_next_ones_error():
    src = 'allow tool "a" if args.a == 1 reason\ndeny "c" unless approved\nallow tool "q" if args.a = 1\n'
    errs = syntax_errors(src)
    assert [(d.line, d.col) for d in errs] == [(2, 1), (2, 6), (3, 26)]
    assert errs[0].message.startswith("unexpected `deny`: expected a string")  # line 1 lacks its reason
    assert errs[1].message == alone('deny "c" unless approved\n')
    assert errs[2].message == alone('allow tool "q" if args.a = 1\n')


def test_condition_block_line_starting_with_server_is_not_a_new_statement():
    src = 'default deny\nallow tool "a" if {\n    server == "x"\n    args.a = 1\n}\nallow tool "b" if args.b = 2\n'
    errs = syntax_errors(src)
    assert [(d.line, d.col) for d in errs] == [(4, 12), (6, 26)]


GOOD = ["default deny", 'allow tool "x" if args.a == 1', 'hide tools ["a", "b"]', 'limit tool "x" to 5 per minute']
BAD = [
    'deny "c" unless approved',
    'allow tool "q" if args.a = 1',
    "allow tool 'q'",
    'allow tool "q" if args.a == 1 reason',
    'limit tool "x" to 5 per fortnight',
    'allow tool "x" if args.a ==',
    "hide tool x",
    'deny tool "z" if args.b === 2',
    'allow tool "x" if args.a == "unterminated',
    'allow tool "x" if args.a == 1 andd args.b == 2',
    'allow tool "é" if args.ü = 1',
    'allow tool "x" if args.a == 1 \\ 2',
    'server "s" { tool "a" readonly }',
    'allow tool "x" if count(args.a) >> 1',
]


def test_every_error_of_a_random_multi_error_file_reads_as_it_does_alone():
    """Each broken line is reported, with the message it gets on its own. A statement cut
    short (it ends at the end of its line) is reported at the next statement's first token."""
    rng = random.Random(7)
    messages = {b: alone(b + "\n") for b in BAD}
    assert all(messages.values())
    for _ in range(300):
        lines = [rng.choice(BAD) if rng.random() < 0.5 else rng.choice(GOOD) for _ in range(rng.randint(2, 8))]
        src = "\n".join(lines) + "\n"
        try:
            parse(src, "p.plr")
            continue
        except PlrError as e:
            diags = e.diagnostics
        reported = set()
        for d in diags:
            own = lines[d.line - 1]
            if d.col == 1 and d.line > 1:
                prev = lines[d.line - 2]
                assert (messages.get(prev) or "").startswith("unexpected end of file"), (src, d.message)
                assert d.message.startswith(f"unexpected `{own.split()[0]}`"), (src, d.message)
                reported.add(d.line - 1)
            else:
                assert d.message == messages.get(own), (src, d.line, d.message)
                reported.add(d.line)
        if len(diags) < 20:
            missing = [i + 1 for i, line in enumerate(lines) if line in messages and i + 1 not in reported]
            assert not missing, (src, missing, [d.message for d in diags])


def test_snippet_lines_are_counted_as_the_parser_counts_them():
    # a form feed (whitespace) and U+2028 (in a comment) are not line breaks for the parser
    for src in ('default deny\x0c\nallow tool "x" if args.a = 1\n', 'default deny\n# a\u2028b\nallow tool "x" if args.a = 1\n'):
        d = syntax_errors(src)[0]
        assert d.source_line == 'allow tool "x" if args.a = 1', repr(d.source_line)
    assert line_of("a\r\nb\r\n", 2) == "b"
    assert line_of("a\n", 2) == ""
    assert line_of("a", 3) == ""
