"""Language traps, wave 1: a keyword of another place (`-> allowed`), a `.` that misses a
newline in a deny's pattern, a backspace in a JSON policy's pattern, and a JSON policy given
where .plr rules are read. docs/language.md ("Lexical structure", "Comparisons", "Decisions
where the spec is silent") and docs/policy-json.md ("Loading") say what each does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl.compiler import build, compile_source
from dsl.engine import Engine
from dsl.errors import Diagnostic, PlrError
from dsl.lsp import features
from dsl.lsp.source import Source
from dsl.lsp.workspace import Workspace
from dsl.parser import parse
from dsl.policy import load_policy
from dsl.validate import check_data

from .conftest import run_plr

# --- 1. a keyword of another place --------------------------------------------------------

STEP = 'default deny\nallow tool "a"\n\ntest "t" {\n    call "a" -> WORD\n}\n'


def step(word: str) -> str:
    """A file whose test step expects ``word`` as its decision."""
    return STEP.replace("WORD", word)


DECISION = "expected a decision (allow, deny or approval_required)"


def syntax_errors(src: str) -> list[Diagnostic]:
    with pytest.raises(PlrError) as info:
        parse(src, "p.plr")
    return info.value.diagnostics


def test_allowed_where_a_decision_stands_names_the_word_and_allow() -> None:
    src = step("allowed")
    (d,) = syntax_errors(src)
    assert d.message == f"unexpected `allowed`: {DECISION}: did you mean `allow`?"
    assert (d.file, d.line, d.col, d.width) == ("p.plr", 5, 17, len("allowed"))
    assert d.format().splitlines() == [
        f"p.plr:5:17: error: unexpected `allowed`: {DECISION}: did you mean `allow`?",
        '    5 |     call "a" -> allowed',
        "      |                 ^^^^^^^",
    ]


@pytest.mark.parametrize(
    "word, meant",
    [
        ("denied", "deny"),
        ("hidden", "deny hidden"),
        ("approved", "approval_required"),
        ("deny_if", "deny deny_if"),  # the lexer reads `deny`, then `_if`
        ("rate_limited", "deny rate_limited"),
        ("allows", "allow"),  # a keyword glued to `s`: not the statement list, not `allowed`
        ("denyed", "deny"),
        ("Allow", "allow"),  # keywords are lowercase
        ("approval", "approval_required"),
        ("require_approval", "approval_required"),
    ],
)
def test_other_words_where_a_decision_stands_get_the_decision_meant(word: str, meant: str) -> None:
    (d,) = syntax_errors(step(word))
    assert d.message.startswith(f"unexpected `{word}`: {DECISION}: did you mean `{meant}`?"), d.message
    assert (d.line, d.col, d.width) == (5, 17, len(word))


def test_approved_after_the_arrow_says_where_approved_goes() -> None:
    (d,) = syntax_errors(step("approved"))
    assert '`approved` marks a call a human approved, before the arrow: `call "x" approved -> allow`' in d.message


def test_a_misspelled_code_after_the_effect_gets_the_code_meant() -> None:
    (d,) = syntax_errors(step("deny hiden"))
    assert d.message.endswith("(did you mean `hidden`?)"), d.message
    assert (d.line, d.col) == (5, 22)


@pytest.mark.parametrize(
    "src, word, meant",
    [
        ('allowed tool "x"\n', "allowed", "allow"),  # lexed `allow` + `ed`: the message named `ed`
        ('default deny\nallowed tool "x" if args.a == 1\n', "allowed", "allow"),
        ('denied tool "x"\n', "denied", "deny"),
        ('hidden tool "x"\n', "hidden", "hide"),
        ('deny_if tool "x"\n', "deny_if", "deny"),
    ],
)
def test_a_keyword_of_another_place_heading_a_rule_is_named_with_the_statement_meant(src: str, word: str, meant: str) -> None:
    d = syntax_errors(src)[0]
    assert d.message.startswith(f"unknown keyword `{word}`: expected a statement: "), d.message
    assert d.message.endswith(f"(did you mean `{meant}`?)"), d.message
    assert (d.col, d.width) == (1, len(word))


@pytest.mark.parametrize("word, meant", [("allowed", "allow"), ("denied", "deny"), ("Deny", "deny")])
def test_default_with_a_keyword_of_another_place(word: str, meant: str) -> None:
    (d,) = syntax_errors(f"default {word}\n")
    assert d.message == f"unexpected `{word}`: expected allow or deny after `default`: did you mean `{meant}`?"
    assert (d.line, d.col, d.width) == (1, 9, len(word))


def test_a_statement_keyword_with_a_suffix_is_not_offered_a_decision_code() -> None:
    (d,) = syntax_errors('allows tool "x"\n')
    assert "`allowed`" not in d.message and "did you mean `allow`?" in d.message


def test_plr_test_and_check_report_it_located_with_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "p.plr"
    f.write_text(step("allowed"), encoding="utf-8")
    for command in ("check", "test"):
        proc = run_plr(command, str(f))
        assert proc.returncode == 2, proc.stderr_text
        out = proc.stdout_text + proc.stderr_text
        assert f"{f}:5:17: error: unexpected `allowed`: {DECISION}: did you mean `allow`?" in out
        assert "`ed`" not in out and "Traceback" not in out


def test_the_editor_quick_fix_replaces_the_word_with_the_decision(tmp_path: Path) -> None:
    text = step("allowed")
    path = tmp_path / "p.plr"
    path.write_text(text, encoding="utf-8")
    ws = Workspace([str(tmp_path)])
    ws.scan()
    ws.check()
    (d,) = [d for d in ws.diagnostics()[str(path)] if "allowed" in d.message]
    start = (d.line - 1, d.col - 1)
    (fix,) = features.quick_fixes(ws, str(path), (start, (start[0], start[1] + d.width)), d.message)
    src = Source(text)
    fixed = text[: src.offset(fix.range[0])] + fix.new_text + text[src.offset(fix.range[1]) :]
    assert fixed == step("allow")


# --- a JSON document where .plr rules are read ----------------------------------------------


def test_a_json_policy_given_as_rules_is_named_as_json(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(compile_source('default deny\nallow tool "a"\n').to_json(), encoding="utf-8")
    proc = run_plr("compile", str(policy))
    assert proc.returncode == 2
    assert f"{policy}:1:1: error: `{{` starts a JSON document, not .plr rules" in proc.stderr_text
    assert "plr decompile FILE" in proc.stderr_text and "expected a statement" not in proc.stderr_text


def test_a_brace_later_in_a_plr_file_is_still_a_syntax_error() -> None:
    (d,) = syntax_errors('default deny\n{\n')
    assert d.message.startswith("unexpected `{`: expected a statement")


# --- 2. `.` and newlines in a restricting `matches` --------------------------------------

CMD = 'default allow\n'


def newline_warnings(src: str) -> list[Diagnostic]:
    _, diags = build((), {"p.plr": src})
    assert not [d for d in diags if d.severity == "error"], diags
    return [d for d in diags if d.severity == "warning" and "but a newline" in d.message]


def test_a_deny_whose_dot_misses_a_newline_is_warned_with_the_value_that_gets_through() -> None:
    (w,) = newline_warnings(CMD + 'deny tool "sh" if args.cmd matches "rm.*-rf"\n')
    assert (w.line, w.col) == (2, 19)
    assert w.message.startswith('`args.cmd matches "rm.*-rf"`: `.` matches any character but a newline')
    assert 'so a value such as "rm\\n-rf" does not match and this deny does not fire for it (a silent fail-open)' in w.message
    assert '(`matches "(?s)rm.*-rf"`) or write `[\\\\s\\\\S]`' in w.message


def test_the_matching_itself_is_re2s_and_the_fix_works() -> None:
    """The warning is true: the deny misses "rm \\n -rf", and `(?s)` catches it (semantics unchanged)."""
    blind = Engine(compile_source(CMD + 'deny tool "sh" if args.cmd matches "rm.*-rf"\n'))
    fixed = Engine(compile_source(CMD + 'deny tool "sh" if args.cmd matches "(?s)rm.*-rf"\n'))
    assert blind.decide("sh", {"cmd": "rm x -rf"}).effect == "deny"
    assert blind.decide("sh", {"cmd": "rm \n -rf"}).effect == "allow"
    assert fixed.decide("sh", {"cmd": "rm \n -rf"}).effect == "deny"
    assert not newline_warnings(CMD + 'deny tool "sh" if args.cmd matches "(?s)rm.*-rf"\n')


@pytest.mark.parametrize(
    "rule",
    [
        'limit tool "sh" to 5 per minute if args.cmd matches "git.*push"',
        'allow tool "sh" if not (args.cmd matches "rm.*-rf")',
        'deny tool "sh" unless not (args.cmd matches "curl.*sh")',
        'deny all tools if args.cmd matches "rm.+-rf"',
        'deny tool "sh" if args.cmd matches "(?i)drop\\\\s+.*table"',  # no example: `\\s` matches a newline
        'deny tool "sh" if args.cmd matches "(?s:x.y)a.b"',  # the flag ends with its group
        'deny tool "sh" if args.cmd matches "(?s)a(?-s).b"',  # and `(?-s)` turns it off
        'deny tool "sh" if args.host matches "evil.com"',
        'deny tool "sh" if args.cmd matches "^.*rm"',  # anchored: the `.*` decides
        'deny tool "sh" if args.cmd matches "rm.*$"',  # `$` after: it decides too
        'deny tool "sh" if some c in args.cmds { c matches "rm.*-rf" }',
    ],
)
def test_every_restricting_match_with_a_blind_dot_is_warned(rule: str) -> None:
    assert len(newline_warnings(CMD + rule + "\n")) == 1, rule


@pytest.mark.parametrize(
    "rule",
    [
        'deny tool "sh" if args.cmd matches "(?s)rm.*-rf"',
        'deny tool "sh" if args.cmd matches "(?is)rm.*-rf"',
        'deny tool "sh" if args.cmd matches "rm[\\\\s\\\\S]*-rf"',
        'deny tool "sh" if args.path matches "\\\\.env$"',  # an escaped dot
        'deny tool "sh" if args.path matches "[.]env"',  # a dot in a class
        'deny tool "sh" if args.path matches ".*\\\\.pem$"',  # a leading `.*` changes nothing
        'deny tool "sh" if args.cmd matches "rm -rf.*"',  # nor a trailing one
        'deny tool "sh" if args.cmd matches "rm\\\\Q.\\\\E"',  # \\Q...\\E is literal
        'allow tool "sh" if args.cmd matches "^ls.*-l$"',  # a grant: missing a newline fails closed
        'deny tool "sh" unless args.cmd matches "^ls .*$"',
        'deny tool "sh" if not (args.cmd matches "rm.*-rf")',
        'deny all tools if tool matches "^a.b$"',  # no tool name holds a newline
    ],
)
def test_no_warning_where_a_dot_cannot_let_a_call_through(rule: str) -> None:
    assert newline_warnings(CMD + rule + "\n") == [], rule


def test_a_def_called_twice_is_warned_once_at_its_pattern() -> None:
    src = CMD + 'def risky(p) {\n    p matches "rm.*-rf"\n}\ndeny tool "sh" if risky(args.a) or risky(args.b)\n'
    (w,) = newline_warnings(src)
    assert w.line == 3


def test_the_pattern_reader() -> None:
    from dsl.regex import newline_blind_dots, newline_example, with_dotall

    assert newline_blind_dots("rm.*-rf") == [2]
    assert newline_blind_dots("(?s)rm.*-rf") == []
    assert newline_blind_dots("(?s:a.b)c.d") == [9]
    assert newline_blind_dots("[^]a.]*.") == [7]  # `]` first in a class is itself
    assert newline_blind_dots("a\\Q.\\E.b") == [6]
    assert newline_blind_dots("(?P<n>a.b)") == [7]
    assert newline_blind_dots(".*x") == newline_blind_dots("x.*") == newline_blind_dots("(?i).*x") == []
    assert newline_example("rm.*-rf", [2]) == "rm\n-rf"
    assert newline_example("(?i)rm\\s+.*-rf", [9]) is None  # `\\s+` would take the newline: no false example
    assert with_dotall("(?i)x") == "(?is)x" and with_dotall("x") == "(?s)x" and with_dotall("(?i-m)x") == "(?s)(?i-m)x"


# --- 3. a backspace in a JSON policy's pattern -------------------------------------------


def leaf_policy(pattern_json: str, where: str = "tools") -> str:
    leaf = '{"path": "args.sql", "op": "regex", "value": "' + pattern_json + '"}'
    if where == "tools":
        return '{"version": "1", "default": "allow", "tools": {"query": {"deny_if": [' + leaf + "]}}}"
    return '{"version": "1", "default": "allow", "all_tools": {"limits": [{"max": 1, "window": 60, "if": ' + leaf + "}]}}"


@pytest.mark.parametrize("escape", ["\\b", "\\u0008"])
def test_the_loader_refuses_a_backspace_in_a_pattern_and_says_write_double_backslash_b(escape: str) -> None:
    with pytest.raises(PlrError) as info:
        load_policy(leaf_policy(f"(?i){escape}drop{escape}"), name="policy.json")
    (d,) = info.value.diagnostics
    assert d.message.startswith("tools.query.deny_if[0]: the regex holds a backspace (U+0008)")
    assert "Write `\\\\b` in the JSON for a word boundary" in d.message


def test_the_loader_refuses_it_anywhere_a_condition_stands() -> None:
    with pytest.raises(PlrError, match=r"all_tools\.limits\[0\]\.if: the regex holds a backspace"):
        load_policy(leaf_policy("\\bdrop", where="all_tools"), name="policy.json")
    nested = json.loads(leaf_policy("x"))
    nested["tools"]["query"]["deny_if"] = [{"not": {"any": [{"path": "args.sql", "op": "regex", "value": "\bx"}]}}]
    with pytest.raises(PlrError, match="holds a backspace"):
        load_policy(nested)


def test_the_cache_door_refuses_it_too() -> None:
    data = json.loads(leaf_policy("\\bdrop"))
    with pytest.raises(ValueError, match="holds a backspace"):
        check_data(data)


def test_a_word_boundary_and_a_spelled_backspace_still_load() -> None:
    assert load_policy(leaf_policy("(?i)\\\\bdrop\\\\b")).tools["query"].deny_if[0].value == "(?i)\\bdrop\\b"
    assert load_policy(leaf_policy("\\\\x08")).tools["query"].deny_if[0].value == "\\x08"


# --- 4. checking a compiled JSON policy ---------------------------------------------------


def test_a_json_policy_is_checked_as_the_loader_reads_it_with_places(tmp_path: Path) -> None:
    from dsl.policy import policy_file_diagnostics

    policy = tmp_path / "policy.json"
    policy.write_text(
        '{\n  "version": "1",\n  "default": "allow",\n  "tools": {\n'
        '    "query": {"deny_if": [{"path": "args.sql", "op": "regex", "value": "(?i)\\bdrop"}]},\n'
        '    "x": {"limits": [{"max": 0, "window": 60}]}\n  }\n}\n',
        encoding="utf-8",
    )
    first, second = policy_file_diagnostics(str(policy))
    assert (first.file, first.line, first.col, first.width) == (str(policy), 5, 77, 2)  # the `\b` itself
    assert first.format().splitlines()[2].endswith("^^")
    assert "Write `\\\\b`" in first.message
    assert (second.line, second.col) == (6, 30) and second.message == "tools.x.limits[0].max: must be > 0"


def test_a_good_json_policy_has_nothing_to_report(tmp_path: Path) -> None:
    from dsl.policy import policy_file_diagnostics

    policy = tmp_path / "policy.json"
    policy.write_text(compile_source('default deny\nallow tool "a"\n').to_json(), encoding="utf-8")
    assert policy_file_diagnostics(str(policy)) == []
    (d,) = policy_file_diagnostics(str(tmp_path / "gone.json"))
    assert d.message.startswith("cannot read policy")


def test_locate_json_path_tries_a_dotted_tool_name_both_ways() -> None:
    from dsl.validate import locate_json_path

    text = '{"tools": {"a": {}, "a.b": {"deny_if": [1, {"x": "yy"}]}}}'
    assert locate_json_path(text, "tools.a.b.deny_if[1].x") == (1, 50, 4)
    assert locate_json_path(text, "tools.a.b.deny_if[2]") is None
    assert locate_json_path(text, "(document)") == (1, 1, 1)


def test_a_pattern_error_points_at_the_pattern_and_a_spelled_backspace_at_its_escape(tmp_path: Path) -> None:
    from dsl.policy import policy_file_diagnostics

    policy = tmp_path / "policy.json"
    policy.write_text(
        '{"version": "1", "default": "allow", "tools": {\n'
        '  "a": {"deny_if": [{"path": "args.q", "op": "regex", "value": "(a"}]},\n'
        '  "b": {"deny_if": [{"path": "args.q", "op": "regex", "value": "x\\\\b\\u0008"}]}\n}}\n',
        encoding="utf-8",
    )
    bad_regex, backspace = policy_file_diagnostics(str(policy))
    assert "invalid regular expression" in bad_regex.message
    assert (bad_regex.line, bad_regex.col, bad_regex.width) == (2, 64, 4)  # "(a" with its quotes
    assert (backspace.line, backspace.col, backspace.width) == (3, 69, 6)  # `\u0008`, not the `\\b` before it


# --- review of the wave: a `.*` that cannot matter, `-s` in the fix, a backspace in a class ---


@pytest.mark.parametrize(
    "pattern",
    [
        "(rm.*)",  # last in a group that ends the pattern
        "rm -rf.*|mkfs.*",  # last in each top-level alternative
        "(foo|bar.*)",  # last in an alternative of a group that ends the pattern
        "(.*foo)",  # first in a group that starts the pattern
        "(a|.*b)c",  # first in an alternative of a group that starts it
        "(?i)(rm.*?)",
        "a|(b.*)|c",
    ],
)
def test_a_dot_star_at_an_end_of_the_pattern_through_groups_is_not_warned(pattern: str) -> None:
    from dsl.regex import compile_re2, newline_blind_dots

    rule = f'deny tool "sh" if args.cmd matches "{pattern}"'
    assert newline_warnings(CMD + rule + "\n") == [], rule
    assert newline_blind_dots(pattern) == []
    for text in ("rm\n-rf", "xfoo\nfoo", "\nb\nc", "mkfs\n", "bar\nx", "b\n"):  # the claim: same answer
        assert (compile_re2(pattern).search(text) is None) == (compile_re2("(?s)" + pattern).search(text) is None)


@pytest.mark.parametrize(
    "pattern, text",
    [
        ("(rm.*)$", "rm\n"),  # `$` after the group: the `.*` must reach the end
        ("rm.*-rf", "rm\n-rf"),
        ("(a.*|b)c", "a\nc"),  # the group is followed by `c`
        ("^(.*foo)", "\nfoo"),  # `^` before the group
        ("(a.*){2}", "a\na"),  # a repeated group: the first pass's `.*` is followed by the second
        ("(.*a){2}", "a\na"),
        ("(rm.+)", None),  # `.+` needs a character that is not a newline
        ("(x.*)\\\\z", "x\n"),
    ],
)
def test_a_dot_that_can_still_decide_is_warned(pattern: str, text: str | None) -> None:
    from dsl.regex import compile_re2

    rule = f'deny tool "sh" if args.cmd matches "{pattern}"'
    assert len(newline_warnings(CMD + rule + "\n")) == 1, rule
    if text is not None:  # the warning is true: (?s) changes the answer
        raw = pattern.replace("\\\\", "\\")
        assert compile_re2(raw).search(text) is None and compile_re2("(?s)" + raw).search(text) is not None


def test_the_suggested_fix_takes_out_a_minus_s_the_pattern_writes() -> None:
    from dsl.regex import newline_blind_dots, with_dotall

    assert with_dotall("(?i-s)x.y") == "(?is)x.y"
    assert with_dotall("(?s)a(?-s).b") == "(?s)a.b"
    assert with_dotall("(?-s:x.)y") == "(?s)(?:x.)y"
    assert with_dotall("(?i-sm)x.") == "(?s)(?i-m)x."
    assert with_dotall("[(?-s)]x.") == "(?s)[(?-s)]x."  # a class, not flags
    for pattern in ("(?i-s)x.y", "(?s)a(?-s).b", "(?-s:x.)y", "(?i-sm)x."):
        assert newline_blind_dots(pattern) and newline_blind_dots(with_dotall(pattern)) == [], pattern
    (w,) = newline_warnings(CMD + 'deny tool "sh" if args.cmd matches "(?i-s)rm.*-rf"\n')
    assert '(`matches "(?is)rm.*-rf"`)' in w.message


CONTROL_CLASS = "[\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]"  # as written in the JSON


def test_a_raw_backspace_inside_a_character_class_loads_and_means_itself() -> None:
    policy = load_policy(leaf_policy(CONTROL_CLASS))
    pattern = policy.tools["query"].deny_if[0].value
    assert pattern == "[\x00-\x08\x0b\x0c\x0e-\x1f]"
    engine = Engine(policy)
    assert engine.decide("query", {"sql": "a\x08b"}).effect == "deny"
    assert engine.decide("query", {"sql": "a\tb"}).effect == "allow"
    check_data(json.loads(leaf_policy("[\\b]x")))  # the cache door agrees


@pytest.mark.parametrize("pattern", ["[a-z]\\bdrop", "\\bdrop[\\b]", "[x]\\u0008", "\\\\Q\\b\\\\E"])
def test_a_raw_backspace_outside_a_class_is_still_refused_naming_x08(pattern: str) -> None:
    with pytest.raises(PlrError) as info:
        load_policy(leaf_policy(pattern), name="policy.json")
    (d,) = info.value.diagnostics
    assert d.message.startswith("tools.query.deny_if[0]: the regex holds a backspace (U+0008) outside a character class")
    assert "Write `\\\\b` in the JSON for a word boundary, or `\\\\x08` for a backspace character" in d.message


def test_a_misspelled_code_after_deny_is_offered_only_a_code_of_deny() -> None:
    (d,) = syntax_errors(step("deny all"))
    assert "did you mean" not in d.message and "`allowed`" not in d.message, d.message
    (d,) = syntax_errors(step("deny denid"))
    assert d.message.endswith("(did you mean `denied`?)"), d.message
    (d,) = syntax_errors(step("allow alowed"))
    assert d.message.endswith("(did you mean `allowed`?)"), d.message
    (d,) = syntax_errors(step("approval_required requir"))
    assert d.message.endswith("(did you mean `require`?)"), d.message


def test_a_json_document_given_as_rules_names_plr_check_for_it() -> None:
    (d,) = syntax_errors('{"version": "1", "default": "deny"}\n')
    assert d.message.startswith("`{` starts a JSON document, not .plr rules")
    assert "`plr check FILE.json` checks it" in d.message


def test_the_plr_rules_of_docs_performance_have_no_newline_blind_deny() -> None:
    """The Cedar comparison's rules are read as an example: its `.*` between `/etc/` and
    `.conf` must take a newline too (`(?s)`), as `*` in Cedar's `like` does."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "performance.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```plr\n")[1:]]
    assert any("bench-five" in b for b in blocks)
    for block in blocks:
        assert newline_warnings(block) == [], block


def test_a_backspace_inside_a_class_round_trips_through_decompile(tmp_path):
    """The loader accepts a control-character class holding U+0008; decompile writes it `\\b`
    inside the class, and the .plr side accepts it there too, so the policy compiles back to the
    same JSON. Outside a class, `\\b` in a .plr pattern is still the mistaken word boundary."""
    import json as _json

    from dsl.compiler import compile_source
    from dsl.decompile import decompile
    from dsl.errors import PlrError
    from dsl.policy import load_policy

    doc = {"version": "1", "default": "allow",
           "tools": {"x": {"deny_if": [{"path": "args.s", "op": "regex", "value": "[\u0000-\u0008\u000b]"}]}}}  # fmt: skip
    pol = load_policy(_json.dumps(doc))
    text = decompile(pol)
    assert "[\\u0000-\\b\\u000b]" in text
    again = compile_source(text, "p.plr")
    assert _json.loads(again.to_json())["tools"]["x"]["deny_if"][0]["value"] == "[\u0000-\u0008\u000b]"
    with pytest.raises(PlrError, match="not a word boundary"):
        compile_source('default allow\ndeny tool "x" if args.s matches "[\\b]drop\\b"\n', "q.plr")
