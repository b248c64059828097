"""Every kind of error a policy author can make gets a located sentence, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsl.compiler import build, compile_source
from dsl.errors import PlrError

# One representative source per error kind; the exact text is pinned by the snapshot.
ERROR_CASES: dict[str, str] = {
    "unknown_keyword": 'alow tool "x"\n',
    "missing_selector": 'default deny\ndeny "cancel-task"\n',
    "single_equals": 'allow tool "x" if args.a = 1\n',
    "missing_value": 'allow tool "x" if args.a ==\n',
    "unterminated_string": 'deny tool "cancel-task\n',
    "single_quotes": "deny tool 'x'\n",
    "bad_time_unit": 'limit tool "x" to 5 per fortnight\n',
    "reason_without_text": 'deny tool "x" unless approved reason\n',
    "unknown_path_root": 'default deny\nallow tool "x" if argz.amount > 3\n',
    "path_root_with_fields": 'default deny\nallow tool "x" if identity.name == "a"\n',
    "bare_path_condition": 'default deny\nallow tool "x" if args.force\n',
    "bad_regex": 'default deny\nallow tool "x" if args.q matches "(unclosed"\n',
    "backreference_regex": 'default deny\nallow tool "x" if args.q matches "(a)\\\\1"\n',
    "glob_matches_nothing": 'server "s" { tool "fs-read" read }\ndefault deny\nallow tools "fz-*"\n',
    "duplicate_default": "default deny\ndefault allow\n",
    "zero_limit": 'default deny\nallow tool "x"\nlimit tool "x" to 0 per minute\n',
    "negative_limit": 'default deny\nallow tool "x"\nlimit tool "x" to -3 per minute\n',
    "fractional_limit": 'default deny\nallow tool "x"\nlimit tool "x" to 2.5 per minute\n',
    "allow_all_tools": "default deny\nallow all tools\n",
    "missing_stdlib_import": 'import "stdlib/no-such-server"\ndefault deny\n',
    "missing_relative_import": 'import "./nope.plr"\ndefault deny\n',
    "empty_tool_list": "default deny\nallow tools []\n",
    "unexpected_end_in_block": 'default deny\ndeny tool "x" if {\n  args.a exists\n',
    "test_code_mismatch": 'default deny\ntest "t" {\n  call "x" -> allow hidden\n}\n',
    "empty_file": "",
    "deep_nesting": 'default deny\nallow tool "x" if ' + "(" * 80 + "approved" + ")" * 80 + "\n",
    "unknown_name": 'let admins = ["a"]\ndefault deny\nallow tool "x" if identity in admin\n',
    "let_cycle": "let a = [b]\nlet b = a\ndefault deny\n",
    "name_shadows_root": 'let identity = "x"\ndefault deny\n',
    "duplicate_name": "let a = 1\nlet a = 2\ndefault deny\n",
    "name_of_the_wrong_kind": 'let ws = ["/w"]\ndefault deny\nallow tool "x" if args.p starts_with ws\n',
    "path_as_a_value": 'default deny\nallow tool "x" if args.owner == identity\n',
    "missing_data_file": 'import data "./no-such-file.json" as teams\ndefault deny\n',
    "let_with_two_equals": "let x == 1\n",
}


def diagnostics_text(src: str) -> str:
    _, diags = build((), {"policy.plr": src})
    return "\n".join(d.format() for d in diags if d.severity == "error")


@pytest.mark.parametrize("kind", sorted(ERROR_CASES))
def test_error_message_is_pinned(kind: str, snapshot):
    text = diagnostics_text(ERROR_CASES[kind])
    assert text, f"{kind}: no error reported"
    assert text.startswith("policy.plr")
    assert "Traceback" not in text and "Token(" not in text and "__ANON" not in text
    assert text == snapshot


@pytest.mark.parametrize("kind", sorted(k for k in ERROR_CASES if k not in ("empty_file",)))
def test_error_points_at_a_line_and_column(kind: str):
    with pytest.raises(PlrError) as info:
        compile_source(ERROR_CASES[kind], "policy.plr")
    e = info.value
    assert e.line >= 1 and e.col >= 1, str(e)
    assert "^" in str(e)


def test_all_errors_of_a_file_are_reported_not_only_the_first():
    src = (
        'default deny\ndefault allow\nallow tool "x" if argz.a == 1\nallow tool "y" if args.q matches "("\n'
        'limit tool "x" to 0 per minute\n'
    )
    with pytest.raises(PlrError) as info:
        compile_source(src, "p.plr")
    lines = sorted(d.line for d in info.value.errors)
    assert lines == [2, 3, 4, 5]


def test_import_cycle_is_an_error_at_the_import(tmp_path: Path):
    (tmp_path / "a.plr").write_text('import "./b.plr"\ndefault deny\n')
    (tmp_path / "b.plr").write_text('import "./a.plr"\nallow tool "x"\n')
    prog, diags = build([str(tmp_path / "a.plr")])
    errs = [d for d in diags if d.severity == "error"]
    assert len(errs) == 1
    assert "import cycle" in errs[0].message and "a.plr -> " in errs[0].message
    assert errs[0].file.endswith("b.plr") and errs[0].line == 1


def test_warnings_do_not_stop_compilation():
    src = (
        'server "s" { tool "a" read  tool "b" write }\ndefault deny\n'
        'hide tool "a"\nallow tool "a"\n'  # can never fire
        'deny tool "b" if args.x exists\n'  # b not callable under default deny
        'limit all tools to 5 per hour\nallow tool "b" if args.y exists\nlimit tool "b" to 10 per minute\n'
    )
    _, diags = build((), {"p.plr": src})
    warnings = [d.message for d in diags if d.severity == "warning"]
    assert any("can never fire for `a`" in w for w in warnings)
    assert any("limit 10 per 60s can never be reached" in w for w in warnings)
    assert not [d for d in diags if d.severity == "error"]
    compile_source(src, "p.plr")


def test_uncallable_rules_under_default_deny_warn():
    _, diags = build((), {"p.plr": 'default deny\ndeny tool "b" if args.x exists\n'})
    assert any("can never matter" in d.message for d in diags if d.severity == "warning")


def test_allow_under_default_allow_warns():
    _, diags = build((), {"p.plr": 'default allow\nallow tool "b"\n'})
    assert any("changes nothing under `default allow`" in d.message for d in diags)


def test_every_broken_statement_of_a_file_is_reported():
    src = (
        'default deny\nallow tool "a" if args.x = 1\nallow tool "b"\ndeny "c"\n'
        'limit tool "d" to 5 per fortnight\n    reason "x"\nallow tool "e" if {\n  args.a exists\n'
    )
    with pytest.raises(PlrError) as info:
        compile_source(src, "p.plr")
    assert [(d.line, d.col) for d in info.value.errors] == [(2, 26), (4, 6), (5, 25), (8, 16)]


def warnings_of(src: str) -> list[str]:
    _, diags = build((), {"p.plr": src})
    assert not [d for d in diags if d.severity == "error"], diags
    return [d.message for d in diags if d.severity == "warning"]


def test_reason_on_hide_or_limit_warns():
    ws = warnings_of('default deny\nallow tool "a"\nhide tool "b" reason "x"\nlimit tool "a" to 1 per hour reason "y"\n')
    assert sum("is not shown to the agent" in w for w in ws) == 2


def test_negative_comparison_in_deny_if_warns_that_it_fails_open():
    ws = warnings_of('default deny\nallow tool "a"\ndeny tool "a" if identity not in ["ops"]\n')
    assert any("is false when `identity` is missing" in w for w in ws)
    assert not warnings_of('default deny\nallow tool "a"\ndeny tool "a" if not (identity in ["ops"])\n')


def test_class_rule_with_one_hidden_tool_is_not_dead():
    src = 'server "s" { tool "a" read  tool "b" read }\ndefault deny\nallow read tools\nhide tool "b"\n'
    assert not any("can never fire" in w for w in warnings_of(src))
    src2 = 'server "s" { tool "a" read  tool "b" read }\ndefault deny\nallow read tools\nhide tools ["a", "b"]\n'
    assert any("can never fire for any of its 2 tools" in w for w in warnings_of(src2))


def test_duplicate_default_beside_a_rule_pack_points_at_the_users_line():
    with pytest.raises(PlrError) as info:
        compile_source('import "stdlib/server-memory"\nimport "stdlib/baseline"\ndefault allow\n', "p.plr")
    e = info.value.errors[0]
    assert (e.file, e.line) == ("p.plr", 3)
    assert "stdlib/baseline.plr" in e.message and "rule pack" in e.message


def test_impossible_test_codes_are_errors():
    for step in ('call "x" -> approval_required default', 'call "x" -> deny allowed'):
        with pytest.raises(PlrError, match="only comes with"):
            compile_source(f'default deny\ntest "t" {{\n    {step}\n}}\n', "p.plr")


def test_globs_have_only_star_and_question_mark():
    src = 'server "s" {\n    tool "fs[1]-read" read\n    tool "fs1-x" read\n}\ndefault deny\nallow tools "fs[1]*"\n'
    assert sorted(compile_source(src).tools) == ["fs[1]-read"]
    src = 'server "s" {\n    tool "ab" read\n    tool "a.b" read\n}\ndefault deny\nallow tools "a?b"\n'
    assert sorted(compile_source(src).tools) == ["a.b"]


def test_hiding_a_tool_named_star_is_an_error():
    with pytest.raises(PlrError, match="cannot be hidden on its own"):
        compile_source('default allow\nhide tool "*"\n', "p.plr")


# --- a missing stdlib module (#23) -----------------------------------------------------

STDLIB = ["baseline", "read_only", "strict", "server-github", "server-gitlab", "server-memory", "server-memory-bank",
          "server-playwright", "server-postgres"]


@pytest.mark.parametrize(
    ("spec", "suggested"),
    [
        ("stdlib/basline", ["baseline"]),  # a typo
        ("stdlib/memory", ["server-memory", "server-memory-bank"]),  # the `server-` left out
        ("stdlib/server-githb", ["server-github"]),  # `server-` shared by all does not make every catalogue close
        ("stdlib/play", ["server-playwright"]),  # the start of a name
        ("stdlib/Strict.plr", ["strict"]),  # case and the file suffix
        ("stdlib/git", ["server-github", "server-gitlab"]),
        ("stdlib/no-such-server", []),
    ],
)
def test_a_missing_stdlib_module_suggests_the_close_names(spec, suggested):
    from dsl.resolve import stdlib_missing_message

    head = stdlib_missing_message(spec, STDLIB).splitlines()[0]
    shown = re.findall(r"`stdlib/([^`]+)`", head.partition("did you mean")[2])
    assert shown == suggested, head
    assert ("did you mean" in head) == bool(suggested)


def test_a_missing_stdlib_module_sums_up_the_stdlib_in_wrapped_lines():
    from dsl.resolve import stdlib_missing_message

    names = ["baseline", "strict", *(f"server-s{i:03}" for i in range(300))]
    lines = stdlib_missing_message("stdlib/nope", names, width=80).splitlines()
    assert lines[0] == "no stdlib module `stdlib/nope`"
    body = " ".join(line.strip() for line in lines[1:])
    assert all(len(line) <= 80 and line.startswith("  ") for line in lines[1:]), lines
    assert "302 modules" in body and "stdlib/baseline, stdlib/strict and 300 server catalogues" in body
    assert "server-s123" not in body  # the catalogues are counted, not listed: `plr catalog` lists them
    assert "plr catalog --search WORD" in body


def test_the_real_stdlib_count_is_in_the_message():
    from dsl.resources import stdlib_dir

    text = diagnostics_text('import "stdlib/nosuch"\ndefault deny\n')
    assert f"{len(list(stdlib_dir().glob('*.plr')))} modules" in text
    assert max(len(line) for line in text.splitlines()) <= 110  # no 5,000-character line
