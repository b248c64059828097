"""Lowering during the LALR parse (``lower_source``) is the tree path (``lower_tree(parse())``).

The inline path exists only for speed (#20): it must build the same IR — equal, same types,
same field order, same fields set — and raise the same diagnostics, or hand the text to the
tree path. These tests hold the two to each other on every ``.plr`` in the repository,
generated policies (``programs()`` in test_generated_roundtrips.py) and the edge cases the inline
path treats specially.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from benchmarks.policies import compile_policy
from dsl import lower, parser
from dsl.errors import PlrError

from .conftest import ROOT
from .strategies import limit_programs


def _repo_plr_files() -> list[Path]:
    skip = {".git", ".venv", "node_modules", "build", "dist"}
    return sorted(p for p in ROOT.rglob("*.plr") if not skip & set(p.relative_to(ROOT).parts))


def _tree(text: str, file: str) -> Any:
    try:
        return lower.lower_tree(parser.parse(text, file), text, file, "p")
    except PlrError as e:
        return ("error", [(d.message, d.line, d.col, str(d)) for d in e.diagnostics])


def _inline(text: str, file: str) -> tuple[Any, bool]:
    """The inline result and whether it fell back to the tree path."""
    fell: list[bool] = []
    real = lower.lower_tree

    def spy(*a: Any, **k: Any) -> Any:
        fell.append(True)
        return real(*a, **k)

    lower.lower_tree = spy  # type: ignore[assignment]
    try:
        result: Any = lower.lower_source(text, file, "p")
    except PlrError as e:
        result = ("error", [(d.message, d.line, d.col, str(d)) for d in e.diagnostics])
    finally:
        lower.lower_tree = real  # type: ignore[assignment]
    return result, bool(fell)


def _identical(a: Any, b: Any, path: str = "$") -> Iterator[str]:
    """Differences beyond ==: type, field order, fields set (what model_dump and repr see)."""
    if type(a) is not type(b):
        yield f"{path}: {type(a).__name__} vs {type(b).__name__}"
        return
    if hasattr(a, "__pydantic_fields_set__"):
        if list(a.__dict__) != list(b.__dict__):
            yield f"{path}: field order {list(a.__dict__)} vs {list(b.__dict__)}"
        if a.__pydantic_fields_set__ != b.__pydantic_fields_set__:
            yield f"{path}: fields set {a.__pydantic_fields_set__} vs {b.__pydantic_fields_set__}"
        for k in a.__dict__:
            yield from _identical(a.__dict__[k], b.__dict__.get(k), f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            yield f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _identical(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        if list(a) != list(b):
            yield f"{path}: keys {list(a)} vs {list(b)}"
        for k in a:
            yield from _identical(a[k], b.get(k), f"{path}[{k!r}]")
    elif a != b:
        yield f"{path}: {a!r} != {b!r}"


def assert_same_both_ways(text: str, file: str) -> bool:
    """Both paths give the same IR or the same errors; returns whether the inline path fell back."""
    expected = _tree(text, file)
    got, fell = _inline(text, file)
    assert got == expected
    assert list(_identical(got, expected)) == []
    assert repr(got) == repr(expected)
    return fell


def test_the_repository_has_plr_files_to_compare():
    files = _repo_plr_files()
    assert len(files) > 30
    assert any(p.parent.name == "stdlib_rules" for p in files)


@pytest.mark.parametrize("path", _repo_plr_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_plr_file_in_the_repository_lowers_the_same_both_ways(path: Path):
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    assert_same_both_ways(text, str(path.relative_to(ROOT)))


@pytest.mark.parametrize("n", [10, 200, 2000])
def test_generated_benchmark_policies_lower_the_same_without_falling_back(n: int):
    assert assert_same_both_ways(compile_policy(n), f"gen{n}.plr") is False


EDGE_CASES = {
    "count too big": 'limit tool "a" to 99999999999999999999 per minute\n',
    "window too big": 'limit tool "a" to 5 per 99999999999d\n',
    "window of 5000 digits": 'limit tool "a" to 5 per ' + "9" * 5000 + "d\n",
    "test after too big": 'test "t" {\n  after 99999999999d\n  call "a" -> allow\n}\n',
    "lone surrogate escape": 'deny tool "a" if args.x == "\\ud800"\n',
    "surrogate pair escape": 'deny tool "a" if args.x == "\\ud83d\\ude00"\n',
    "float underflow": 'deny tool "a" if args.x == 1e-999\n',
    "float overflow": 'deny tool "a" if args.x == 1e999\n',
    "4500 digits": 'deny tool "a" if args.x == ' + "1" * 4500 + "\n",
    "bad escape": 'deny tool "a" if args.x == "\\q"\nallow tool "b"\n',
    "empty tool list": "allow tools []\n",
    "unknown time zone": 'limit tool "a" to 5 per calendar day "Mars/Base"\n',
    "fractional index": 'deny tool "a" if args.x[1.5] == 1\n',
    "bare path condition": 'deny tool "a" if args.x\n',
    "lowering error then syntax error": "allow tools []\nallow tool\n",
    "glued keyword": 'denytool "a"\n',
    "300 nots": 'deny tool "a" if ' + "not " * 300 + "args.x == 1\n",
    "1200 ors": 'deny tool "a" if ' + " or ".join(f"args.x == {i}" for i in range(1200)) + "\n",
    "block of 300 ands": 'deny tool "a" if {\n'
    + "\n".join(f"args.x == {i} and args.y == 1" for i in range(300))
    + "\n}\n",
    "70 parentheses": 'deny tool "x" if ' + "(" * 70 + "args.x == 1" + ")" * 70 + "\n",
    "empty file": "",
    "comments only": "# hello\n# world\n",
    "NUL byte": 'allow tool "a"\x00\n',
    "let of mixed list": 'let xs = ["a", 1, true, null, [2]]\ndeny tool "a" if args.x in xs\n',
    "def with a block": 'def p(a, b) { a == 1\n b == 2 }\ndeny tool "a" if p(args.x, args.y)\n',
    "quantifier": 'deny tool "a" if every p in args.ps { p starts_with "/tmp" }\n',
    "test with everything": 'test "t" {\n as identity "bob"\n'
    ' call "a" {"x": 1, y: [1, "2", {"z": null}]} approved -> deny denied reason "r"\n'
    ' visible ["a"]\n}\n',
    "spend limit": 'limit tool "a" to 12.5 of args.amount per calendar month "Europe/Paris" per identity'
    ' refund on error if args.x == 1 reason "r" description "d"\n',
    "non-ASCII reason": 'deny tool "a" reason "caf\u00e9 \U0001f600"\n',
    "CRLF": 'allow tool "a"\r\ndeny tool "b"\r\n',
    "condition cut short": 'allow tool "a" if\n',
    "unterminated string": 'allow tool "a\n',
}


@pytest.mark.parametrize("text", list(EDGE_CASES.values()), ids=list(EDGE_CASES))
def test_edge_cases_lower_or_fail_the_same_both_ways(text: str):
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))  # repr of the deepest IR
    try:
        assert_same_both_ways(text, "f.plr")
    finally:
        sys.setrecursionlimit(limit)


# Programs of `programs()` are held to this in test_generated_roundtrips.py, with the other
# properties of a generated program, so that each program is drawn once for all of them.


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limit_programs())
def test_generated_limit_programs_lower_the_same_both_ways(text: str):
    assert_same_both_ways(text, "gen.plr")


def test_a_constructed_model_is_the_validated_one():
    """lower.construct skips validation; a validated build of the same module must be identical."""
    text = compile_policy(200) + "\n" + EDGE_CASES["test with everything"]
    fast = lower.lower_source(text, "gen.plr", "p")
    real = lower.construct
    lower.construct = lambda cls, **v: cls(**v)  # type: ignore[assignment]
    try:
        validated = lower.lower_source(text, "gen.plr", "p")
    finally:
        lower.construct = real  # type: ignore[assignment]
    assert list(_identical(fast, validated)) == []
