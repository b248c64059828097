"""`plr check` on silent fail-opens a review found: a value function compared with a text it never
gives (a `matches` letter after `lower`, a trailing `/` after `normpath`, whitespace after `trim`),
a typo in a condition on `tool`, a spend cap on several tools (one budget each), path prefixes
that let more through than their folder, and a `let` list compared with `==`. Each test fails on
the code before these checks."""

from __future__ import annotations

import pytest

from dsl.compiler import build, compile_source
from dsl.engine import Engine
from dsl.errors import Diagnostic

FS = 'import "stdlib/server-filesystem"\n'


def diagnostics(src: str) -> list[Diagnostic]:
    _, diags = build((), {"p.plr": src})
    return diags


def warnings(src: str) -> list[str]:
    diags = diagnostics(src)
    assert not [d for d in diags if d.severity == "error"], diags
    return [d.message for d in diags if d.severity == "warning"]


def at(src: str, line: int) -> list[str]:
    return [d.message for d in diagnostics(src) if d.line == line and d.severity == "warning"]


# --- A: a value function compared with a text it never gives ------------------------------


def test_a_matches_letter_that_lower_never_gives_makes_a_deny_never_fire() -> None:
    (w,) = warnings('default allow\ndeny all tools if lower(args.sql) matches "DROP\\\\s+TABLE"\n')
    assert w.startswith('`lower(args.sql) matches "DROP\\\\s+TABLE"` can never hold: lower(...) gives no upper-case')
    assert "`D`, `R`, `O`, `P` and 5 more" in w and "(?i)" in w and "lower case" in w
    assert "never fires" in w and "silent fail-open" in w
    # upper: a lower-case letter; in a `deny … unless` and a limit's `if` the same way
    (w,) = warnings('default allow\ndeny tool "q" unless upper(args.sql) matches "^select"\n')
    assert "upper(...) gives no lower-case letter, and the pattern needs `s`" in w and "denies every call" in w
    (w,) = warnings('default allow\nlimit tool "q" to 1 per minute if lower(args.sql) matches "^DELETE"\n')
    assert "can never hold" in w and "the calls it is meant to limit are not counted" in w


LOWER_CAN_MATCH = [
    "(?i)DROP\\\\s+TABLE",  # the flag: RE2 folds case
    "drop(?i:TABLE)",  # a scoped flag
    "drop\\\\s+\\\\S+\\\\W\\\\D\\\\B\\\\Atable",  # escapes are not letters
    "drop[A-Z]*",  # a class may hold upper-case letters that never match: not looked into
    "\\\\pL+\\\\z",  # RE2 syntax Python's parser lacks: nothing is said
    "drop table",
]


def test_only_the_letters_lower_never_gives_are_reported() -> None:
    src = 'default allow\ndeny all tools if lower(args.sql) matches "{}"\n'
    assert len(warnings(src.format("DROP"))) == 1
    for pattern in LOWER_CAN_MATCH:
        assert warnings(src.format(pattern)) == [], pattern


def test_a_letter_in_one_branch_or_optional_part_is_named_without_never_holds() -> None:
    (w,) = warnings('default allow\ndeny all tools if lower(args.sql) matches "drop|DELETE"\n')
    assert "can never hold" not in w
    assert "lower(...) gives no upper-case letter, so `D`, `E`, `L`, `T` in the pattern never match" in w
    (w,) = warnings('default allow\ndeny all tools if lower(args.sql) matches "drop( X)?"\n')
    assert "`X` in the pattern never matches" in w and "(?i)" in w


@pytest.mark.parametrize(
    ("cond", "why"),
    [
        ('normpath(args.path) ends_with "/.ssh/"', "gives no text that ends with `/` but `/` itself"),
        ('lower(normpath(args.path)) ends_with "/.ssh/"', "lower(normpath(...)) gives no text that ends with `/`"),
        ('normpath(args.path) contains "a//b"', "gives no text with `//` in it"),
        ('normpath(args.path) contains "/./"', "gives no text with `/./` in it"),
        ('normpath(args.path) starts_with "./"', "gives no text that starts with `./`"),
        ('normpath(args.path) starts_with "/w/../etc"', "gives no absolute path with a `..` element"),
        ('normpath(args.path) ends_with "/."', "gives no text that ends with `/.`"),
        ('dirname(args.path) ends_with "/etc/"', "dirname(...) gives no text that ends with `/`"),
        ('trim(args.note) ends_with " "', "trim(...) gives no text that ends with whitespace"),
        ('trim(args.note) starts_with "\\t"', "trim(...) gives no text that starts with whitespace"),
        ('basename(args.path) contains "a/"', "basename(...) gives no text with a `/` in it but `/` itself"),
        ('basename(args.path) ends_with "/x"', "basename(...) gives no text with a `/` in it"),
    ],
)
def test_a_text_the_function_never_has_makes_the_deny_never_fire(cond: str, why: str) -> None:
    ws = warnings(f"default allow\ndeny all tools if {cond}\n")
    assert any("can never hold" in w and why in w and "silent fail-open" in w for w in ws), ws


CAN_GIVE = [
    'normpath(args.path) contains "/../"',  # a relative path keeps its leading `..`s: `../../x`
    'normpath(args.path) ends_with "/.."',  # `../..`
    'normpath(args.path) starts_with "/.."',  # `/..x` is a name
    'normpath(args.path) ends_with "/.ssh"',
    'dirname(args.path) ends_with "/"',  # `/a` -> `/`: any top-level path
    'trim(args.note) contains " "',
    'basename(args.path) == "/"',
    'dirname(args.path) == "/a"',
]


def test_only_texts_the_functions_never_give_are_reported() -> None:
    assert len(warnings('default allow\ndeny all tools if normpath(args.path) ends_with "/.ssh/"\n')) == 1
    for cond in CAN_GIVE:
        assert warnings(f"default allow\ndeny all tools if {cond}\n") == [], cond


def test_a_test_that_holds_only_for_the_root_is_warned_about() -> None:
    (w,) = warnings('default allow\ndeny all tools if normpath(args.path) ends_with "/"\n')
    assert w.startswith('`normpath(args.path) ends_with "/"` holds only when `args.path` is `/` (or slashes alone)')
    (w,) = warnings('default allow\ndeny all tools if basename(args.path) contains "/"\n')
    assert "holds only when `args.path` is `/`" in w and "compare the path itself" in w
    engine = Engine(compile_source('default allow\ndeny all tools if basename(args.path) contains "/"\n'))
    assert engine.decide("t", {"path": "/"}).effect == "deny"  # it can hold: not "can never hold"
    assert engine.decide("t", {"path": "/a/b/"}).effect == "allow"


# --- B: a typo in a condition on `tool` ----------------------------------------------------


@pytest.mark.parametrize(
    ("cond", "expect"),
    [
        ('tool == "write_fil"', "tool `write_fil` in `tool == \"write_fil\"` is not in any declared catalogue "
         "(did you mean `write_file`?)"),
        ('tool in ["edit_file", "move_fil"]', "tool `move_fil` in"),
        ('tool != "write_fil"', "(did you mean `write_file`?)"),
        ('tool starts_with "Write_"', 'no tool in any declared catalogue starts with "Write_" (did you mean `write_`?)'),
        ('tool ends_with "_fil"', 'no tool in any declared catalogue ends with "_fil"'),
        ('tool contains "wirte"', "no tool in any declared catalogue has `wirte` in its name"),
        ('tool matches "^wrte_"', 'no tool in any declared catalogue matches "^wrte_"'),
        ('tool == "write_*"', "`*` and `?` are not wildcards in `tool == \"write_*\"`"),
    ],
)
def test_a_typo_in_a_condition_on_tool_is_reported_like_one_in_a_selector(cond: str, expect: str) -> None:
    ws = warnings(FS + f"default allow\ndeny all tools if {cond}\n")
    assert len(ws) == 1 and expect in ws[0], ws
    assert 'tool "write_fil"' not in ws[0] or "`server` block" in ws[0]


CATALOGUED = [
    'tool == "write_file"',
    'tool in ["edit_file", "move_file"]',
    'tool not in ["read_file", "list_directory"]',
    'tool starts_with "write_"',
    'tool starts_with ""',
    'upper(tool) starts_with "WRITE_"',
    'tool matches "^(write|edit)_file$"',
    'tool ends_with "_file"',
]


def test_only_names_and_parts_no_catalogued_tool_has_are_reported() -> None:
    src = FS + "default allow\ndeny all tools if {}\n"
    assert len(warnings(src.format('tool == "write_fil"'))) == 1
    for cond in CATALOGUED:
        assert warnings(src.format(cond)) == [], cond
    # a comparison that can never hold gets that warning alone
    (w,) = warnings(src.format('lower(tool) == "Write_File"'))
    assert "lower(...) never gives" in w


def test_tool_conditions_are_checked_against_a_server_block_and_not_without_a_catalogue() -> None:
    (w,) = warnings('server "s" {\n    tool "deploy" write\n}\ndefault allow\ndeny all tools if tool == "deplyo"\n')
    assert "tool `deplyo`" in w and "(did you mean `deploy`?)" in w
    assert warnings('default allow\ndeny all tools if tool == "write_fil"\n') == []


# --- C: a spend cap on several tools counts each on its own ---------------------------------

PAY = 'server "pay" {\n    tool "refund" write\n    tool "payout" write\n    tool "balance" read\n}\ndefault allow\n'


def test_a_spend_cap_on_several_tools_says_it_is_one_budget_per_tool() -> None:
    (w,) = at(PAY + 'limit tools ["refund", "payout"] to 500 of args.amount per day per identity\n', 7)
    assert w == (
        "this spend cap counts each of its 2 tools on its own: each may add up to 500 of args.amount per day, "
        "2 times that in all; for one budget across them write "
        '`limit all tools to 500 of args.amount per day per identity if tool in ["refund", "payout"]`'
    )
    (w,) = at(PAY + 'limit tools "*u*" to 5 of args.amount per hour per global if identity == "bot"\n', 7)
    assert '`limit all tools to 5 of args.amount per hour per global if tool contains "u" and identity == "bot"`' in w
    (w,) = at(PAY + "limit write tools to 5 of args.amount per 90s\n", 7)
    assert "each of its 2 tools" in w
    # one tool, a call counter, or `all tools`: no such warning
    assert at(PAY + 'limit tools ["refund"] to 5 of args.amount per day\n', 7) == []
    assert at(PAY + 'limit tools ["refund", "payout"] to 5 per day\n', 7) == []
    assert at(PAY + 'limit all tools to 5 of args.amount per day if tool in ["refund", "payout"]\n', 7) == []


def test_the_suggested_budget_is_shared_and_the_refusal_claims_no_total() -> None:
    per_tool = Engine(compile_source(PAY + 'limit tools ["refund", "payout"] to 500 of args.amount per day per global\n'))
    assert per_tool.decide("refund", {"amount": 400}).effect == "allow"
    assert per_tool.decide("payout", {"amount": 400}).effect == "allow"  # each its own 500
    d = per_tool.decide("payout", {"amount": 400})
    assert d.code == "rate_limited" and "in total" not in (d.reason or "")
    assert "shared by all callers" in (d.reason or "")
    shared = Engine(compile_source(
        PAY + 'limit all tools to 500 of args.amount per day per global if tool in ["refund", "payout"]\n'
    ))
    assert shared.decide("refund", {"amount": 400}).effect == "allow"
    assert shared.decide("payout", {"amount": 400}).code == "rate_limited"


# --- D: a path prefix that lets more through than its folder --------------------------------


def test_an_allow_prefix_without_a_slash_and_without_normpath_is_warned_about_apart() -> None:
    src = FS + 'default deny\nallow tool "read_file" if args.path starts_with "/workspace"\n'
    slash, norm = at(src, 3)
    assert slash.startswith('`args.path starts_with "/workspace"` also holds for `/workspace-other/…`')
    assert '`starts_with "/workspace/"`' in slash and '`args.path == "/workspace"`' in slash
    assert norm.startswith('`args.path starts_with "/workspace"` also holds for `/workspace/../etc/passwd`')
    assert '`normpath(args.path) starts_with "/workspace"`' in norm
    engine = Engine(compile_source(src))
    assert engine.decide("read_file", {"path": "/workspace-secrets/k"}).effect == "allow"  # the trap itself
    assert engine.decide("read_file", {"path": "/workspace/../etc/passwd"}).effect == "allow"


PREFIX_RULES = [
    ('allow tool "read_file" if normpath(args.path) starts_with "/workspace"', 1),  # the slash only
    ('allow tool "read_file" if args.path starts_with "/workspace/"', 1),  # normpath only
    ('allow tool "read_file" if lower(args.path) starts_with "~/work"', 2),
    ('deny tool "read_file" unless args.path starts_with "/srv"', 2),
    ('deny tool "read_file" if not (args.path starts_with "/srv/")', 1),
    ('allow tool "read_multiple_files" if every p in args.paths { p starts_with "/w/" }', 1),
    ('allow tool "read_file" if args.path starts_with "C:\\\\work"', 1),  # `\\`: normpath does not help
    ('allow tool "read_file" if normpath(args.path) starts_with "/workspace/"', 0),
    ('allow tool "read_file" if dirname(args.path) starts_with "/workspace/"', 0),
    ('allow tool "read_file" if args.path starts_with "/"', 0),
    ('allow tool "read_file" if args.path starts_with "workspace"', 0),  # not an absolute path
    ('deny tool "read_file" if args.path starts_with "/etc"', 0),  # denying more fails closed
    ('allow tool "read_file" if not (args.path starts_with "/etc")', 0),
    ('allow tool "read_file" if identity starts_with "/ops"', 0),
]


def test_prefix_warnings_are_on_the_side_that_lets_calls_through() -> None:
    found = [
        (rule, len([w for w in at(FS + f"default deny\n{rule}\n", 3) if "also holds for" in w]))
        for rule, _count in PREFIX_RULES
    ]
    assert found == PREFIX_RULES


def test_a_prefix_in_a_predicate_is_warned_about_at_the_predicate() -> None:
    src = FS + 'default deny\ndef inside(p) {\n    p starts_with "/w"\n}\nallow tool "read_file" if inside(args.path)\n'
    assert len([w for w in at(src, 4) if "also holds for" in w]) == 2


# --- E: a `let` list compared with `==` -----------------------------------------------------


def test_a_let_list_compared_with_eq_says_it_is_not_membership() -> None:
    src = 'let banned = ["mallory", "eve"]\ndefault allow\ndeny all tools if args.user == banned\n'
    (w,) = at(src, 3)
    assert w == (
        "`args.user == banned` compares `args.user` with the whole list `banned`: it holds only when `args.user` is "
        "that very list, item for item; write `args.user in banned` to test that it is one of them (to compare with "
        "the whole list, write the list out)"
    )
    assert Engine(compile_source(src)).decide("t", {"user": "mallory"}).effect == "allow"  # the trap itself
    ws = at('let banned = ["mallory"]\ndefault allow\nallow all tools if not (args.user != banned)\n', 3)
    assert any("write `not (args.user in banned)`" in w for w in ws), ws
    # in a quantifier and a predicate too
    ws = at('let banned = ["m"]\ndefault allow\ndeny all tools if some u in args.users { u == banned }\n', 3)
    assert any("`u == banned` compares `u` with the whole list" in w for w in ws), ws


def test_a_list_written_out_or_a_scalar_name_is_not_reported() -> None:
    assert [w for w in warnings('let b = ["m"]\ndefault allow\ndeny all tools if args.user == b\n') if "whole list" in w]
    for src in [
        'let cap = 5\nlet ws = "/w/"\ndefault allow\ndeny all tools if args.pair == [cap, ws]\n',  # written out
        'let banned = ["m"]\ndefault allow\ndeny all tools if args.user in banned\n',
        'let owner = "m"\ndefault allow\ndeny all tools if args.user == owner\n',
    ]:
        assert not [w for w in warnings(src) if "whole list" in w], src


def test_a_deny_on_dots_in_the_path_stands_in_for_normpath() -> None:
    # docs/security.md's workspace policy keeps raw paths and refuses any `..` (stricter than
    # normpath, which reads `link/..` as the folder): no normpath warning there, the slash one stays
    src = (
        'server "fs" {\n    tool "write_file" write\n}\ndefault deny\n'
        'allow tool "write_file" if args.path starts_with "/workspace"\n'
        'deny tool "write_file" if args.path matches "(^|/)\\\\.\\\\.(/|$)"\n'
    )
    got = warnings(src)
    assert not [w for w in got if "climbs out" in w], got
    assert [w for w in got if "a sibling whose name begins the same" in w], got
    without = src.replace('matches "(^|/)\\\\.\\\\.(/|$)"', 'contains "tmp"')
    assert [w for w in warnings(without) if "climbs out" in w and "or deny any `..` in it" in w]
