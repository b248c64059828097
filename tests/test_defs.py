"""`def NAME(PARAMS) { ... }`: named condition blocks, inlined at compile time.

A call compiles to exactly the predicate's block with each parameter replaced by the path it
was called with; a name the block binds is renamed where it would capture one of the call's;
recursion is an error naming the cycle; every misuse is located.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl.compiler import build, compile_files, compile_source
from dsl.engine import Engine
from dsl.format import format_source
from dsl.tester import VirtualClock
from tests.reference import RefInterpreter

WORKSPACE = """\
let workspace = "/workspace/"

def in_workspace(p) {
    normpath(p) starts_with workspace
    not (lower(p) matches "(^|/)\\\\.(git|env)(/|$)")
}

def all_in_workspace(ps) {
    every p in ps { in_workspace(p) }
}

def admin() {
    identity in ["alice", "bob"]
}

default deny

allow tool "read_file" if in_workspace(args.path)
allow tool "read_multiple_files" if every p in args.paths { in_workspace(p) }
allow tool "sync" if some p in args.batches { all_in_workspace(p.files) } or admin()
"""

INLINE = """\
default deny

allow tool "read_file" if {
    normpath(args.path) starts_with "/workspace/"
    not (lower(args.path) matches "(^|/)\\\\.(git|env)(/|$)")
}
allow tool "read_multiple_files" if every p in args.paths {
    normpath(p) starts_with "/workspace/"
    not (lower(p) matches "(^|/)\\\\.(git|env)(/|$)")
}
allow tool "sync" if some p in args.batches {
    every p2 in p.files {
        normpath(p2) starts_with "/workspace/"
        not (lower(p2) matches "(^|/)\\\\.(git|env)(/|$)")
    }
} or identity in ["alice", "bob"]
"""


def test_a_call_compiles_to_the_block_with_its_paths() -> None:
    assert compile_source(WORKSPACE, source=False) == compile_source(INLINE, source=False)


def test_a_name_the_block_binds_is_renamed_where_it_would_capture() -> None:
    """`all_in_workspace(p.files)` inside `some p`: the block's own `every p` would read the
    caller's `p`; it becomes `p2`, and the engine and the reference (which binds parameters to
    values instead of inlining) agree."""
    policy = compile_source(WORKSPACE, source=False)
    some = policy.to_dict()["tools"]["sync"]["require"][0]["any"][0]
    assert some["where"]["every"] == "p2" and some["where"]["in"] == "p.files"
    prog, _ = build((), {"p.plr": WORKSPACE})
    engine, ref = Engine(policy), RefInterpreter(prog, VirtualClock())
    batches = [
        [{"files": ["/workspace/a"]}],
        [{"files": ["/etc/x"]}, {"files": ["/workspace/.git/config"]}],
        [{"files": ["/etc/x"]}, {"files": ["/workspace/b", "//workspace/c"]}],
        [{"files": "/workspace/a"}],
        "not a list",
    ]
    for b in batches:
        for identity in ("carol", "alice"):
            d = engine.decide("sync", {"batches": b}, identity=identity)
            assert (d.effect, d.code) == ref.decide("sync", {"batches": b}, identity=identity), (b, identity)


@pytest.mark.parametrize(
    ("path", "effect"),
    [("/workspace/a.txt", "allow"), ("/workspace/../etc/passwd", "deny"), ("/workspace/.GIT/config", "deny"),
     ("//workspace//b", "allow"), ("/workspace", "deny")],
)  # fmt: skip
def test_decisions(path: str, effect: str) -> None:
    assert Engine(compile_source(WORKSPACE)).decide("read_file", {"path": path}).effect == effect


def errors(src: str) -> list[str]:
    _, diags = build((), {"p.plr": src})
    return [f"{d.line}:{d.col}: {d.message}" for d in diags if d.severity == "error"]


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ('def f(p) { g(p) }\ndef g(q) { f(q) }\ndefault deny\nallow tool "x" if f(args.a)\n',
         "2:12: a predicate may not call itself: f -> g -> f"),
        ('def f(p) { f(p) }\ndefault deny\n', "1:12: a predicate may not call itself: f -> f"),
        ('def f(p) { p == 1 }\ndefault deny\nallow tool "x" if f(args.a, args.b)\n',
         "3:19: `f` takes 1 path (p), and this call gives 2"),
        ('def f(p) { q == 1 }\ndefault deny\nallow tool "x" if f(args.a)\n',
         "1:12: unknown path root `q`: a path starts with args, identity, session, server, tool or approved, or a "
         "name bound around it (p)"),
        ('def in_ws(p) { p == 1 }\ndefault deny\nallow tool "x" if in_wz(args.a)\n',
         "3:19: unknown predicate `in_wz` (did you mean `in_ws`?): a call names a predicate defined by `def`"),
        ('def lower(p) { p == 1 }\ndefault deny\n', "1:5: `lower` is a built-in function: choose another name for the predicate"),
        ('def matches(p) { p == 1 }\ndefault deny\n', "1:5: `matches` is a keyword: choose another name for the predicate"),
        ('def f(p, p) { p == 1 }\ndefault deny\n', "1:10: `p` is a parameter of `f` twice"),
        ('def f(args) { args == 1 }\ndefault deny\n',
         "1:7: `args` is a path root: a parameter may not shadow it (choose another name)"),
        ('let ws = "/w"\ndef f(ws) { ws == 1 }\ndefault deny\n',
         "2:7: `ws` is already defined at p.plr:1: a parameter may not shadow it (choose another name)"),
        ('def f(p) { every p in args.x { p == 1 } }\ndefault deny\n',
         "1:18: `p` is already bound around this: the name of `every` may not shadow it (choose another name)"),
        ('let a = 1\ndefault deny\nallow tool "x" if a(args.a)\n',
         "3:19: `a` is a value (let), not a predicate: compare it, as in `args.x == a`"),
        ('def f(p) { p == 1 }\ndefault deny\nallow tool "x" if args.b == f\n',
         "3:29: `f` is a predicate (def), not a value: call it as a condition, `f(...)`"),
        ('def f(p) { args.x == p }\ndefault deny\n',
         "1:22: `p` stands for a path here (bound by every/some or a parameter), and the right of a comparison "
         "is a value: plr never compares two paths"),
        ('def f(p) { p.x == 1 }\ndefault deny\nallow tool "x" if f(server)\n',
         "3:21: `f` reads `p.x` of its parameter, and `server` is a single value with no fields or items"),
        ('def f(p) { p == 1 }\ndefault deny\nallow tool "x" if f(q)\n',
         "3:21: unknown path root `q`: a path starts with args, identity, session, server, tool or approved"),
        ('def f(p) { p == 1 }\ndefault deny\nallow tool "x" if f("a")\n',
         '3:21: unexpected `"a"`: a predicate is called with paths, such as `in_workspace(args.path)`, not values'),
        ('def f(p) { p == 1 }\ndefault deny\nallow tool "x" if f(args.a) == 1\n',
         "3:29: unexpected `==`: a call of a predicate (or a condition in parentheses) holds or not on its own; it "
         "is not compared"),
        ('default deny\nallow tool "x" if lowr(args.x) == "a"\n',
         "2:19: unknown function `lowr` (did you mean `lower`?): the functions are count, len, lower, upper, trim, "
         "normpath, basename, dirname"),
    ],
)  # fmt: skip
def test_misuses_are_located_errors(src: str, expected: str) -> None:
    assert errors(src) == [expected]


def test_an_error_in_a_block_is_reported_once_however_often_it_is_called() -> None:
    src = 'def f(p) { p matches "(" }\ndefault deny\nallow tool "x" if f(args.a)\nallow tool "y" if f(args.b) or f(args.c)\n'
    errs = errors(src)
    assert len(errs) == 1 and errs[0].startswith("1:12: invalid regular expression")


def test_predicates_are_seen_by_importing_files(tmp_path: Path) -> None:
    (tmp_path / "lib.plr").write_text('def ops() { identity == "ops" }\n', encoding="utf-8")
    (tmp_path / "main.plr").write_text('import "./lib.plr"\ndefault deny\nallow tool "x" if ops()\n', encoding="utf-8")
    policy = compile_files(tmp_path / "main.plr", source=False)
    assert policy.to_dict()["tools"]["x"]["require"] == [{"path": "identity", "op": "eq", "value": "ops"}]


def test_fmt_writes_a_predicate_as_a_block() -> None:
    src = "def in_ws( p ,q) {   # why\n normpath(p) starts_with q.root p exists }\ndef ops(){identity==\"ops\"}\n"
    out = format_source(src)
    assert out == (
        "def in_ws(p, q) {  # why\n    normpath(p) starts_with q.root\n    p exists\n}\n\n"
        'def ops() {\n    identity == "ops"\n}\n'
    )
    assert format_source(out) == out


def test_rule_sources_point_at_the_rule_not_the_predicate() -> None:
    d = Engine(compile_source(WORKSPACE, "p.plr")).decide("read_file", {"path": "/etc/x"}, explain=True)
    assert d.rule == "p.plr:18"  # `allow tool "read_file" ...`
