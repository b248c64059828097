"""`let` constants and `import data` documents: resolved at compile time, gone from the JSON.

A name stands wherever a literal may (a comparison's value, an `in` list, an item of a list,
the right of `starts_with`/`ends_with`/`matches`); the compiled policy is exactly the one of the
same rules with the values written inline. Every misuse is an error at the name as written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dsl.cache import load_cached
from dsl.compiler import build, compile_files, compile_source
from dsl.errors import PlrError
from dsl.format import format_source
from dsl.watch import WatchState, affected_roots, run_roots


def errors(src: str, file: str = "p.plr") -> list[str]:
    _, diags = build((), {file: src})
    return [f"{d.line}:{d.col}: {d.message}" for d in diags if d.severity == "error"]


def same_policy(with_names: str, inline: str) -> None:
    assert compile_source(with_names, source=False).to_json() == compile_source(inline, source=False).to_json()


def test_a_name_stands_wherever_a_literal_may() -> None:
    names = """\
let admins = ["alice", "bob"]
let ws = "/workspace/"
let suffix = ".md"
let pattern = "^[a-z]+$"
let cap = 5
let roots = [ws, "/tmp/"]
default deny
allow tool "x" if {
    identity in admins
    identity not in [ws, "mallory"]
    args.path starts_with ws
    args.path ends_with suffix
    args.name matches pattern
    args.n <= cap
    args.tags contains cap
    args.root in roots
    args.pair == [cap, ws]
}
"""
    inline = """\
default deny
allow tool "x" if {
    identity in ["alice", "bob"]
    identity not in ["/workspace/", "mallory"]
    args.path starts_with "/workspace/"
    args.path ends_with ".md"
    args.name matches "^[a-z]+$"
    args.n <= 5
    args.tags contains 5
    args.root in ["/workspace/", "/tmp/"]
    args.pair == [5, "/workspace/"]
}
"""
    same_policy(names, inline)


def test_the_json_carries_no_names_but_rule_sources_stay() -> None:
    policy = compile_source('let admins = ["a"]\ndefault deny\n\nallow tool "x" if identity in admins\n', "p.plr")
    text = policy.to_json()
    assert "admins" not in text
    assert policy.tools["x"].require[0].rule == "p.plr:4"  # type: ignore[union-attr]


def test_names_may_be_used_before_they_are_defined_and_keywords_after_a_dot() -> None:
    same_policy(
        'default deny\nallow tool "x" if args.limit == data\nlet data = "d"\n',
        'default deny\nallow tool "x" if args.limit == "d"\n',
    )


def test_errors_point_at_the_name() -> None:
    assert errors('let a = "x"\ndefault deny\nallow tool "x" if args.q in a\n') == [
        "3:29: `in` takes a list, and `a` is a string"
    ]
    assert errors('let a = ["x"]\ndefault deny\nallow tool "x" if args.q matches a\n') == [
        "3:34: `matches` takes a string, and `a` is a list"
    ]
    assert errors('let a = "x"\ndefault deny\nallow tool "x" if args.q == a[0]\n') == [
        "3:29: `a` is a string: it has no items, so `[0]` names nothing"
    ]
    assert errors('let a = ["x"]\ndefault deny\nallow tool "x" if args.q == a[3]\n') == [
        "3:29: `a` has 1 item: there is no item [3]"
    ]
    assert errors('let true = 1\ndefault deny\n') == ["1:5: `true` is a keyword: choose another name"]


def test_an_invalid_regex_through_a_name_is_an_error_at_its_use() -> None:
    (error,) = errors('let re = "(a"\ndefault deny\nallow tool "x" if args.q matches re\n')
    assert error.startswith("3:19: invalid regular expression '(a'")


def test_a_bad_let_is_reported_even_when_unused() -> None:
    assert errors("let a = [nope]\ndefault deny\n") == [
        "1:10: unknown name `nope`: a value here is a literal or a name defined by `let` or `import data`"
    ]


def test_a_cycle_is_reported_once() -> None:
    assert errors('let a = [b]\nlet b = [c]\nlet c = a\ndefault deny\nallow tool "x" if args.q in a\n') == [
        "3:9: `a` is defined in terms of itself: a -> b -> c -> a"
    ]


# --- files: imports and data ------------------------------------------------------------------


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


def file_errors(path: Path) -> list[str]:
    _, diags = build([str(path)])
    return [f"{Path(d.file).name}:{d.line}:{d.col}: {d.message}" for d in diags if d.severity == "error"]


def test_names_are_seen_by_the_files_that_import_them(tmp_path: Path) -> None:
    write(tmp_path, {
        "main.plr": 'import "./shared.plr"\ndefault deny\nallow tool "x" if identity in admins\n',
        "shared.plr": 'import "./deeper.plr"\nlet admins = [boss, "alice"]\n',
        "deeper.plr": 'let boss = "carol"\n',
    })  # fmt: skip
    policy = compile_files(tmp_path / "main.plr", source=False)
    assert policy.tools["x"].require[0].value == ["carol", "alice"]  # type: ignore[union-attr]


def test_a_name_of_a_file_not_imported_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {
        "main.plr": 'import "./lib.plr"\nlet admins = ["a"]\ndefault deny\n',
        "lib.plr": 'allow tool "x" if identity in admins\n',
    })  # fmt: skip
    assert file_errors(tmp_path / "main.plr") == [
        "lib.plr:1:31: `admins` is defined in main.plr, which this file does not import"
    ]


def test_a_name_defined_in_two_files_is_an_error_at_the_second(tmp_path: Path) -> None:
    write(tmp_path, {"main.plr": 'import "./lib.plr"\nlet a = 1\ndefault deny\n', "lib.plr": "let a = 2\n"})
    assert file_errors(tmp_path / "lib.plr") == []
    assert file_errors(tmp_path / "main.plr") == ["lib.plr:1:5: `a` is already defined at main.plr:2: a name is defined once"]


TEAMS = {"oncall": ["alice", "bob"], "workspace": "/workspace/", "limits": {"max": 5}, "odd key": [[1, 2]]}


def test_data_values_are_read_at_compile_time(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "teams.json").write_text(json.dumps(TEAMS), encoding="utf-8")
    (tmp_path / "p.plr").write_text(
        'import data "./data/teams.json" as teams\ndefault deny\n'
        'allow tool "x" if identity in teams.oncall and args.path starts_with teams.workspace\n'
        'allow tool "y" if args.n < teams.limits.max or args.n == teams["odd key"][0][1]\n',
        encoding="utf-8",
    )
    same_policy(
        (tmp_path / "p.plr").read_text(encoding="utf-8").replace("./data/teams.json", str(tmp_path / "data" / "teams.json")),
        'default deny\nallow tool "x" if identity in ["alice", "bob"] and args.path starts_with "/workspace/"\n'
        'allow tool "y" if args.n < 5 or args.n == 2\n',
    )
    assert compile_files(tmp_path / "p.plr").to_json() == compile_files(tmp_path / "p.plr").to_json()


@pytest.mark.parametrize(
    ("content", "use", "message"),
    [
        (TEAMS, "teams.oncal", '1:31: `teams` has no key "oncal" in ./teams.json (did you mean `oncall`?)'),
        (TEAMS, "teams.limits", "1:31: `teams.limits` is an object: a value in a rule is a string, number, boolean, "
                                "null or a list of them; name one of its fields (such as `teams.limits.max`)"),
        (TEAMS, "teams", "1:31: `teams` is an object: a value in a rule is a string, number, boolean, null or a list "
                         "of them; name one of its fields (such as `teams.oncall`)"),
        (TEAMS, "teams.workspace.x", "1:31: `teams.workspace` is a string: it has no fields, so `x` names nothing"),
        ({"l": [{"a": 1}]}, "teams.l", "1:31: `teams.l`: value must be a string, number, boolean, null or a list of them"),
        ({"n": 1e400}, "teams.n", "1:31: `teams.n`: value must be a finite number"),
    ],
)  # fmt: skip
def test_data_misuse_is_an_error_at_the_use(tmp_path: Path, content: object, use: str, message: str) -> None:
    (tmp_path / "teams.json").write_text(json.dumps(content).replace("Infinity", "1e400"), encoding="utf-8")
    (tmp_path / "p.plr").write_text(f'allow tool "x" if identity == {use}\nimport data "./teams.json" as teams\n')
    assert file_errors(tmp_path / "p.plr") == [f"p.plr:{message}"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("teams.json", "{\n  \"a\": [1,\n}", "data file `./teams.json` is not valid JSON: Expecting value at line 3, column 1"),
        ("teams.json", '{"a": NaN}', "data file `./teams.json` is not valid JSON: NaN is not a JSON number"),
        ("teams.yaml", "a: 1", "`import data` reads a JSON file: `./teams.yaml` does not end in .json"),
    ],
)
def test_unreadable_data_is_an_error_at_the_import(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    ext = name.rsplit(".", 1)[1]
    (tmp_path / "p.plr").write_text(f'default deny\nimport data "./teams.{ext}" as teams\nallow tool "x" if args.a == teams.a\n')
    errs = file_errors(tmp_path / "p.plr")
    assert errs[0] == f"p.plr:2:13: {message}"
    if ext == "json":  # the use says why, once, instead of "unknown name"
        assert errs[1:] == ["p.plr:3:29: `teams`: its data file could not be read (see the error at its import)"]


def test_fmt_keeps_names_and_never_changes_the_policy() -> None:
    src = (
        'import data   "./x.json" as  teams  # the on-call list\nlet admins=[ "a",teams.oncall[0] ]\n'
        "let ws=\"/w/\"\ndefault deny\nallow tool \"x\" if identity in admins and args.p starts_with ws\n"
    )
    out = format_source(src)
    assert out == (
        'import data "./x.json" as teams  # the on-call list\n\nlet admins = ["a", teams.oncall[0]]\nlet ws = "/w/"\n\n'
        'default deny\n\nallow tool "x" if identity in admins and args.p starts_with ws\n'
    )
    assert format_source(out) == out


def test_the_cache_recompiles_when_a_data_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLR_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "teams.json").write_text('{"ops": ["alice"]}', encoding="utf-8")
    (tmp_path / "p.plr").write_text('import data "./teams.json" as teams\ndefault deny\nallow tool "x" if identity in teams.ops\n')
    first = load_cached(str(tmp_path / "p.plr"))
    assert first["tools"]["x"]["require"][0]["value"] == ["alice"]
    (tmp_path / "teams.json").write_text('{"ops": ["bob"]}', encoding="utf-8")
    assert load_cached(str(tmp_path / "p.plr"))["tools"]["x"]["require"][0]["value"] == ["bob"]
    os.remove(tmp_path / "teams.json")
    with pytest.raises(PlrError, match="cannot read data file"):
        load_cached(str(tmp_path / "p.plr"))


def test_watch_reruns_a_policy_when_its_data_changes(tmp_path: Path) -> None:
    (tmp_path / "teams.json").write_text('{"ops": ["alice"]}', encoding="utf-8")
    root = str(tmp_path / "p.plr")
    Path(root).write_text('import data "./teams.json" as teams\ndefault deny\nallow tool "x" if identity in teams.ops\n')
    state = WatchState()
    run_roots([root], None, state)
    assert affected_roots(state, [str(tmp_path / "teams.json")], [root]) == [root]
    assert affected_roots(state, [str(tmp_path / "other.json")], [root]) == []
