"""Docs never rot: every ```plr block in README.md and docs/*.md compiles, and passes its tests.

* ```plr        — must compile with ``dsl.compiler.compile_source``; if it holds ``test``
                  blocks, they must pass under ``dsl.tester.run`` (the `plr test` runner).
* ```plr-error  — a deliberately wrong example: it must NOT compile (with a located
                  ``PlrError``, never a crash), so error examples stay honest.

* ```json right after a ```plr block (and holding ``"version"``) shows what that block
                  compiles to: it must be exactly ``compile_source(block, "policy.plr")``.

A block may be a fragment that needs a catalogue; it then imports one from the stdlib
(``import "stdlib/server-memory"``), which resolves wherever the block is compiled.
Failures name the doc file and the line of the block's opening fence.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from dsl import tester
from dsl.compiler import compile_source
from dsl.errors import PlrError

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)[^\n]*$")
_TEST_BLOCK = re.compile(r'^\s*test\s+"', re.MULTILINE)


@dataclass(frozen=True)
class Block:
    file: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{_rel(self.file)}:{self.line}"


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def extract_blocks(path: Path) -> list[Block]:
    """Every fenced code block of a Markdown file, with its info word and opening line."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, indent, lang, start = m.group("fence"), len(m.group("indent")), m.group("info"), i + 1
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = lines[i].strip()
            if close.startswith(fence[0] * len(fence)) and close.strip(fence[0]) == "":
                break
            line = lines[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        else:
            raise AssertionError(f"{_rel(path)}:{start}: code block is never closed")
        blocks.append(Block(path, start, lang, "\n".join(body) + "\n"))
        i += 1
    return blocks


def _all_blocks() -> list[Block]:
    return [b for f in DOC_FILES if f.exists() for b in extract_blocks(f)]


BLOCKS = _all_blocks()
PLR = [b for b in BLOCKS if b.lang == "plr"]
PLR_ERROR = [b for b in BLOCKS if b.lang == "plr-error"]


def _name(path: Path, line: int) -> str:
    """A file name for a block (``docs_language_md_L12``): diagnostics then name the doc."""
    return _rel(path).replace("/", "_").replace(".", "_") + f"_L{line}"


def _offset_note(block: Block) -> str:
    return f"(line N of the block is line {block.line} + N of {_rel(block.file)})"


def test_the_docs_exist_and_hold_plr_examples() -> None:
    for name in ("language.md", "testing.md", "policy-json.md", "cookbook.md"):
        assert (ROOT / "docs" / name).is_file(), f"docs/{name} is missing"
    assert len(PLR) >= 20, f"expected many ```plr examples in the docs, found {len(PLR)}"
    assert PLR_ERROR, "expected at least one ```plr-error example"
    assert COMPILED, "expected docs/policy-json.md to show a ```plr example and the ```json it compiles to"


@pytest.mark.parametrize("block", PLR, ids=[b.where for b in PLR])
def test_plr_block_compiles(block: Block) -> None:
    try:
        compile_source(block.text, _name(block.file, block.line) + ".plr")
    except PlrError as e:
        pytest.fail(f"{block.where}: this ```plr block does not compile {_offset_note(block)}:\n{e}", pytrace=False)


@pytest.mark.parametrize("block", PLR_ERROR, ids=[b.where for b in PLR_ERROR])
def test_plr_error_block_is_refused(block: Block) -> None:
    try:
        compile_source(block.text, _name(block.file, block.line) + ".plr")
    except PlrError as e:
        errors = [d for d in e.diagnostics if d.severity == "error"]
        assert errors, f"{block.where}: refused without an error diagnostic"
        assert any(d.line > 0 for d in errors), f"{block.where}: the error is not located:\n{e}"
        assert not any("internal error" in d.message for d in errors), f"{block.where}: crashed:\n{e}"
        return
    pytest.fail(
        f"{block.where}: this ```plr-error block compiles; mark it ```plr or make it wrong again",
        pytrace=False,
    )


TESTED = [b for b in PLR if _TEST_BLOCK.search(b.text)]


@pytest.mark.parametrize("block", TESTED, ids=[b.where for b in TESTED])
def test_plr_block_tests_pass(block: Block, tmp_path: Path) -> None:
    path = tmp_path / (_name(block.file, block.line) + ".plr")
    path.write_text(block.text, encoding="utf-8")
    report = tester.run([str(path)])
    problems: list[str] = [d.format() + "\n" + _offset_note(block) for d in report.errors]
    for r in report.results:
        if r.error:
            problems.append(f'test "{r.name}": error: {r.error}')
        for f in r.failures:
            line = block.line + f.line  # the block's first line is the fence's next line
            problems.append(
                f'test "{r.name}", doc line {line}: {f.step}\n    expected: {f.expected}\n    actual:   {f.actual}'
            )
    assert report.results, f"{block.where}: no test ran"
    if problems:
        pytest.fail(f"{block.where}: the block's tests do not pass:\n" + "\n".join(problems), pytrace=False)


# A ```json block right after a ```plr block shows what that block compiles to: keep it exact.
COMPILED = [
    (b, nxt)
    for b, nxt in zip(BLOCKS, BLOCKS[1:])
    if b.lang == "plr" and nxt.lang == "json" and nxt.file == b.file and '"version"' in nxt.text
]


@pytest.mark.parametrize("pair", COMPILED, ids=[n.where for _, n in COMPILED])
def test_json_example_is_what_the_plr_example_compiles_to(pair: tuple[Block, Block]) -> None:
    plr, shown = pair
    compiled = compile_source(plr.text, "policy.plr").to_json()
    if compiled != shown.text:
        diff = "".join(difflib.unified_diff(shown.text.splitlines(True), compiled.splitlines(True), "doc", "compiled"))
        pytest.fail(f"{shown.where}: the JSON shown is not what {plr.where} compiles to:\n{diff}", pytrace=False)


def test_extractor_finds_fences_and_lines(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "# t\n\n```plr\ndefault deny\n```\n\ntext\n\n- item\n\n  ```plr-error\n  deny all tools\n  ```\n\n```sh\nls\n```\n",
        encoding="utf-8",
    )
    blocks = extract_blocks(doc)
    assert [(b.lang, b.line, b.text) for b in blocks] == [
        ("plr", 3, "default deny\n"),
        ("plr-error", 11, "deny all tools\n"),
        ("sh", 15, "ls\n"),
    ]
