"""`every NAME in PATH { ... }` and `some NAME in PATH { ... }`.

`every` holds when PATH is a list and every item satisfies the block (true for `[]`, as in
Rego); `some` when at least one does; a missing or non-list PATH makes both false. Quantifiers
nest, a name shadows nothing, the JSON form is `{"every"|"some": NAME, "in": PATH, "where": C}`,
and `--explain` names the item that decided.
"""

from __future__ import annotations

from typing import Any

import pytest

from dsl.compiler import build, compile_source
from dsl.decompile import decompile
from dsl.engine import Engine
from dsl.errors import PlrError
from dsl.format import format_source
from dsl.policy import load_policy
from dsl.validate import check_data

FILESYSTEM = """\
default deny

allow tool "read_multiple_files" if every p in args.paths { normpath(p) starts_with "/workspace/" }

allow tool "edit_file" if normpath(args.path) starts_with "/workspace/"
deny tool "edit_file" if some e in args.edits { e.newText contains "BEGIN RSA PRIVATE KEY" }
    reason "No private keys in files"

allow tool "review" if some c in args.changes {
    c.kind == "delete"
    every f in c.files { f ends_with ".tmp" }
    identity == "janitor"
}
"""


@pytest.mark.parametrize(
    ("tool", "args", "identity", "expected"),
    [
        ("read_multiple_files", {"paths": ["/workspace/a", "//workspace/b/../c"]}, None, "allow"),
        ("read_multiple_files", {"paths": []}, None, "allow"),  # every of nothing holds, as in Rego
        ("read_multiple_files", {"paths": ["/workspace/a", "/workspace/../etc/passwd"]}, None, "deny"),
        ("read_multiple_files", {"paths": "/workspace/a"}, None, "deny"),  # not a list: false
        ("read_multiple_files", {}, None, "deny"),
        ("read_multiple_files", {"paths": ["/workspace/a", 7]}, None, "deny"),  # an item that is no string
        ("edit_file", {"path": "/workspace/k", "edits": [{"newText": "a"}, {"newText": "-----BEGIN RSA PRIVATE KEY-----"}]}, None, "deny"),
        ("edit_file", {"path": "/workspace/k", "edits": [{"newText": "a"}, {"oldText": "x"}]}, None, "allow"),
        ("edit_file", {"path": "/workspace/k", "edits": {"newText": "BEGIN RSA PRIVATE KEY"}}, None, "allow"),  # documented: not a list
        ("review", {"changes": [{"kind": "add"}, {"kind": "delete", "files": ["a.tmp", "b.tmp"]}]}, "janitor", "allow"),
        ("review", {"changes": [{"kind": "delete", "files": ["a.tmp", "b.txt"]}]}, "janitor", "deny"),
        ("review", {"changes": [{"kind": "delete", "files": []}]}, "janitor", "allow"),
        ("review", {"changes": [{"kind": "delete", "files": ["a.tmp"]}]}, "intern", "deny"),
    ],
)  # fmt: skip
def test_decisions(tool: str, args: dict[str, Any], identity: str | None, expected: str) -> None:
    engine = Engine(compile_source(FILESYSTEM))
    assert engine.decide(tool, args, identity=identity).effect == expected


def test_not_around_a_quantifier_fails_closed_on_a_non_list() -> None:
    """`deny … unless every …` (or `deny … if not every …`) denies a call whose PATH is no list."""
    engine = Engine(compile_source('default allow\ndeny tool "x" if not (every p in args.ps { p starts_with "/w/" })\n'))
    assert engine.decide("x", {"ps": ["/w/a"]}).effect == "allow"
    assert engine.decide("x", {"ps": "/w/a"}).code == "deny_if"
    assert engine.decide("x", {}).code == "deny_if"


def test_json_form() -> None:
    policy = compile_source(FILESYSTEM, source=False)
    require = policy.to_dict()["tools"]["read_multiple_files"]["require"][0]
    assert require == {
        "every": "p", "in": "args.paths",
        "where": {"path": "p", "fn": "normpath", "op": "starts_with", "value": "/workspace/"},
    }  # fmt: skip
    review = policy.to_dict()["tools"]["review"]["require"][0]
    assert review["some"] == "c" and review["in"] == "args.changes"
    assert review["where"]["all"][1] == {"every": "f", "in": "c.files", "where": {"path": "f", "op": "ends_with", "value": ".tmp"}}
    assert load_policy(policy.to_json()) == policy
    check_data(policy.to_dict())
    assert Engine.from_data(policy.to_dict()).decide("read_multiple_files", {"paths": ["/x"]}).effect == "deny"


def _doc(condition: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1", "default": "deny", "tools": {"x": {"require": [condition]}}}


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"every": "p", "in": "args.a", "where": {"path": "q", "op": "exists"}},
         "tools.x.require[0].where.path: unknown path root `q`"),
        ({"every": "p", "in": "args.a", "where": {"some": "p", "in": "p", "where": {"path": "p", "op": "exists"}}},
         "tools.x.require[0].where.some: `p` is already bound by an enclosing every/some"),
        ({"some": "args", "in": "args.a", "where": {"path": "args", "op": "exists"}},
         "`args` is a path root: a quantifier's name may not shadow it"),
        ({"some": "p", "in": "p.a", "where": {"path": "p", "op": "exists"}},
         "tools.x.require[0].in: unknown path root `p`"),
        ({"some": "a b", "in": "args.a", "where": {"path": "args", "op": "exists"}}, "must be a name"),
        ({"path": "p", "op": "exists"}, "tools.x.require[0].path: unknown path root `p`"),
    ],
)  # fmt: skip
def test_both_loaders_refuse_a_path_outside_its_scope(condition: dict[str, Any], message: str) -> None:
    with pytest.raises(PlrError) as e:
        load_policy(_doc(condition))
    assert message in str(e.value)
    with pytest.raises(ValueError):
        check_data(_doc(condition))


def errors(src: str) -> list[str]:
    _, diags = build((), {"p.plr": src})
    return [f"{d.line}:{d.col}: {d.message}" for d in diags if d.severity == "error"]


def test_misuses_are_located_errors() -> None:
    head = 'let admins = ["a"]\ndefault deny\nallow tool "x" if '
    assert errors(head + "every args in args.p { args == 1 }\n") == [
        "3:25: `args` is a path root: the name of `every` may not shadow it (choose another name)"
    ]
    assert errors(head + "every p in args.p { some p in p.x { p == 1 } }\n") == [
        "3:44: `p` is already bound around this: the name of `some` may not shadow it (choose another name)"
    ]
    assert errors(head + "some admins in args.p { admins == 1 }\n") == [
        "3:24: `admins` is already defined at p.plr:1: the name of `some` may not shadow it (choose another name)"
    ]
    assert errors(head + "every p in args.p { q == 1 }\n") == [
        "3:39: unknown path root `q`: a path starts with args, identity, session, server, tool or approved, "
        "or a name bound around it (p)"
    ]
    assert errors(head + "p == 1 and every p in args.p { p == 1 }\n") == [
        "3:19: unknown path root `p`: a path starts with args, identity, session, server, tool or approved"
    ]
    (e,) = errors(head + "every p in args.p { }\n")
    assert e.startswith("3:39: unexpected `}`: expected a condition")


def test_explain_names_the_witness() -> None:
    engine = Engine(compile_source(FILESYSTEM))
    edits = [{"newText": "a"}, {"newText": "b"}, {"newText": "BEGIN RSA PRIVATE KEY"}]
    d = engine.decide("edit_file", {"path": "/workspace/k", "edits": edits}, explain=True)
    checks = [(t.check, t.result) for t in d.trace or ()]
    assert ("  `some e in args.edits` held at index 2", True) in checks
    d = engine.decide("read_multiple_files", {"paths": ["/workspace/a", "/etc/x", "/etc/y"]}, explain=True)
    assert ("  `every p in args.paths` failed at index 1", False) in [(t.check, t.result) for t in d.trace or ()]
    d = engine.decide("read_multiple_files", {"paths": "/workspace/a"}, explain=True)
    assert any("`args.paths` is not a list, so it is false" in t.check for t in d.trace or ())
    d = engine.decide(
        "review", {"changes": [{"kind": "delete", "files": ["a.tmp", "b"]}]}, identity="janitor", explain=True
    )
    checks = [t.check for t in d.trace or ()]
    assert "  `some c in args.changes` held for none of 1 item" in checks


def test_explain_never_changes_the_decision() -> None:
    engine = Engine(compile_source(FILESYSTEM))
    for args in ({"paths": ["/workspace/a"]}, {"paths": [1, "/x"]}, {"paths": None}, {"edits": [None]}):
        for tool in ("read_multiple_files", "edit_file"):
            plain, explained = engine.decide(tool, args), engine.decide(tool, args, explain=True)
            assert (plain.effect, plain.code) == (explained.effect, explained.code)


def test_fmt_writes_a_block_of_several_conditions_one_per_line() -> None:
    src = (
        'default deny\nallow tool "x" if every p in args.ps {p exists   # note\n'
        "  some q in p.x { q == 1 q == 2 } }\n"
        'deny tool "y" if args.a == 1 and some e in args.e { e == 1 }\n'
    )
    out = format_source(src)
    assert out == (
        'default deny\n\nallow tool "x" if every p in args.ps {  # note\n    p exists\n    some q in p.x {\n'
        '        q == 1\n        q == 2\n    }\n}\n\ndeny tool "y" if args.a == 1 and some e in args.e { e == 1 }\n'
    )
    assert format_source(out) == out
    assert compile_source(out, source=False) == compile_source(src, source=False)


def test_decompile_round_trips() -> None:
    policy = compile_source(FILESYSTEM, source=False)
    text = decompile(policy)
    assert "every p in args.paths { normpath(p) starts_with \"/workspace/\" }" in text
    assert compile_source(text, source=False) == policy


def test_a_condition_whose_first_line_is_an_and_keeps_its_shape() -> None:
    """`{ (a and b) \\n c }` is all[all[a, b], c]: printed on one line joined by `and`, plr would
    flatten it to all[a, b, c]; the block is written one condition per line instead."""
    src = 'default deny\nallow tool "x" if args.z == 0 or some e in args.e { (e == 1 and e == 2)\n e == 3 }\n'
    out = format_source(src)
    assert compile_source(out, source=False) == compile_source(src, source=False)


def test_a_block_that_reads_an_outer_item_takes_the_general_path() -> None:
    """An inner block that reads only its own item is tested item by item with no context; one
    that reads the outer item (or the call) needs the context, and must compile so."""
    src = (
        'default deny\nallow tool "x" if some q in args.groups { every e in q.members { q.kind == "team" and e starts_with "a" } }\n'
        'allow tool "y" if every e in args.items { e == "bob" and identity == "bob" }\n'
    )
    engine = Engine(compile_source(src))
    assert engine.decide("x", {"groups": [{"kind": "team", "members": ["ann", "al"]}]}).effect == "allow"
    assert engine.decide("x", {"groups": [{"kind": "solo", "members": ["ann"]}]}).effect == "deny"
    assert engine.decide("x", {"groups": [{"kind": "team", "members": ["ann", "bo"]}]}).effect == "deny"
    assert engine.decide("y", {"items": ["bob"]}, identity="bob").effect == "allow"
    assert engine.decide("y", {"items": ["bob"]}, identity="eve").effect == "deny"
