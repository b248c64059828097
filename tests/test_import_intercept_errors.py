"""`plr import intercept`: an input it refuses is reported as every error of plr is, at its place:
``file:line:col: error: message``, then the offending line and a caret under the column
(``dsl.errors.Diagnostic``), through the CLI (exit 2, nothing written) and the Python API
(``ImportError_``, a located ``PlrError`` that is still a ``ValueError``). No bad input, however
malformed, ends in a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dsl.cli import cli
from dsl.errors import Diagnostic, PlrError
from dsl.importers.intercept import ImportError_, import_intercept

from .conftest import run_plr

DATA = Path(__file__).parent / "data" / "intercept"
REFUSED = "not an Intercept policy plr can import"

REPEATED = (
    'version: "1"\n'
    "default: allow\n"
    "tools:\n"
    "  delete_repo:\n"
    "    rules: [{name: no deletes, action: deny}]\n"
    "  delete_repo:\n"
    "    rules: []\n"
)
REPEATED_MESSAGE = (
    'the key "delete_repo" is written twice in one mapping (first at line 4, column 3): YAML keeps only '
    "the last one, so it would silently replace the first; merge the two into one"
)


def run(tmp_path: Path, text: str | bytes, name: str = "intercept.yaml", *extra: str):  # type: ignore[no-untyped-def]
    src = tmp_path / name
    if isinstance(text, bytes):
        src.write_bytes(text)
    else:
        src.write_text(text, encoding="utf-8")
    return src, CliRunner().invoke(cli, ["import", "intercept", str(src), *extra])


def snippet(lines: list[str], line: int) -> tuple[str, int, int]:
    """The source line a diagnostic shows, and the column and width of its caret (1-based),
    checking the gutter is the one ``Diagnostic.format`` draws."""
    gutter = f"{line:>5} | "
    assert lines[1].startswith(gutter), lines
    assert lines[2].startswith(" " * (len(gutter) - 2) + "| "), lines
    caret = lines[2][len(gutter) :]
    assert set(caret.strip()) == {"^"}, lines
    return lines[1][len(gutter) :], caret.index("^") + 1, caret.count("^")


# --- through the CLI ---------------------------------------------------------------------------


def test_a_yaml_syntax_error_is_file_line_col_with_a_caret(tmp_path: Path) -> None:
    src, r = run(tmp_path, (DATA / "invalid_policy.yaml").read_text())
    assert r.exit_code == 2, r.output
    lines = r.stderr.splitlines()
    assert lines[0] == (
        f"{src}:7:20: error: {REFUSED}: not valid YAML: expected <block end>, but found '<scalar>' "
        "(while parsing a block mapping at line 5, column 9)"
    )
    text, col, width = snippet(lines, 7)
    assert text == '          - path: "args.x"'
    # the quote opened on line 5 closes before `args.x`, which is the stray scalar YAML found
    assert (col, width) == (20, 1) and text[col - 1 :] == 'args.x"'
    assert len(lines) == 3 and r.stdout == ""


def test_a_repeated_key_is_located_on_its_second_appearance(tmp_path: Path) -> None:
    src, r = run(tmp_path, REPEATED, "p.yaml", "-o", str(tmp_path / "p.plr"))
    assert r.exit_code == 2, r.output
    lines = r.stderr.splitlines()
    assert lines[0] == f"{src}:6:3: error: {REFUSED}: {REPEATED_MESSAGE}"
    text, col, width = snippet(lines, 6)
    assert text[col - 1 : col - 1 + width] == "delete_repo" and col == 3
    assert not (tmp_path / "p.plr").exists()  # nothing is written


def test_the_cli_prints_what_the_shared_renderer_draws(tmp_path: Path) -> None:
    """The same ``Diagnostic.format`` as every other plr error, byte for byte."""
    src, r = run(tmp_path, REPEATED)
    expected = Diagnostic("error", f"{REFUSED}: {REPEATED_MESSAGE}", str(src), 6, 3, "  delete_repo:", 11)
    assert r.stderr == expected.format() + "\n"


def test_a_repeated_key_in_json_is_located_too(tmp_path: Path) -> None:
    doc = '{"version": "1", "tools": {"x": {"rules": []}, "x": {"rules": []}}}'
    src, r = run(tmp_path, doc, "p.json")
    assert r.exit_code == 2
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f'{src}:1:48: error: {REFUSED}: the key "x" is written twice in one mapping (first at line 1, column 28)')
    text, col, width = snippet(lines, 1)
    assert text == doc and text[col - 1 : col - 1 + width] == '"x"'


@pytest.mark.parametrize(
    ("doc", "line", "col", "shown"),
    [
        ('tools:\n  "delete_*":\n    rules: [{name: n, action: deny}]\n', 4, 3, '"delete_*"'),
        ('hide: [read, "exec*"]\n', 3, 14, '"exec*"'),
    ],
)
def test_a_wildcard_tool_name_is_located_on_the_name(tmp_path: Path, doc: str, line: int, col: int, shown: str) -> None:
    src, r = run(tmp_path, 'version: "1"\ndefault: allow\n' + doc)
    assert r.exit_code == 2
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"{src}:{line}:{col}: error: {REFUSED}: ") and "has `*` or `?`" in lines[0]
    text, c, width = snippet(lines, line)
    assert (c, text[c - 1 : c - 1 + width]) == (col, shown)


@pytest.mark.parametrize(
    ("doc", "line", "col", "shown", "message"),
    [
        ('version: "2"\n', 1, 10, '"2"', 'unsupported Intercept policy version "2"'),
        ('version: "1"\ndefault: maybe\n', 2, 10, "maybe", 'default must be "allow" or "deny", got "maybe"'),
        ('version: "1"\nhide: 5\n', 2, 7, "5", "hide must be a list of tool names"),
        ('version: "1"\ntools:\n  x:\n    rules: 7\n', 4, 12, "7", "tools.x.rules must be a list"),
        ('version: "1"\ntools:\n  x:\n    rules:\n      - 5\n', 5, 9, "5", "tools.x.rules[0] must be a mapping"),
    ],
)
def test_other_refusals_are_located_on_their_value(
    tmp_path: Path, doc: str, line: int, col: int, shown: str, message: str
) -> None:
    src, r = run(tmp_path, doc)
    assert r.exit_code == 2
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"{src}:{line}:{col}: error: {REFUSED}: {message}"), lines
    text, c, width = snippet(lines, line)
    assert (c, text[c - 1 : c - 1 + width]) == (col, shown)


# --- through the Python API --------------------------------------------------------------------


def test_the_api_raises_a_located_plr_error_that_is_still_a_value_error() -> None:
    with pytest.raises(ImportError_) as e:
        import_intercept(REPEATED, "p", file="policy.yaml")
    assert isinstance(e.value, PlrError) and isinstance(e.value, ValueError)
    (d,) = e.value.diagnostics
    assert (d.severity, d.file, d.line, d.col, d.width) == ("error", "policy.yaml", 6, 3, len("delete_repo"))
    assert d.message == REPEATED_MESSAGE
    lines = str(e.value).splitlines()
    assert lines[0] == f"policy.yaml:6:3: error: {REPEATED_MESSAGE}"
    assert snippet(lines, 6) == ("  delete_repo:", 3, 11)


def test_the_api_locates_a_syntax_error_and_names_the_input_by_default() -> None:
    with pytest.raises(ImportError_) as e:
        import_intercept('version: "1"\ntools: [a, b\n')
    assert (e.value.file, e.value.line, e.value.col) == ("<input>", 3, 1)
    assert e.value.message == (
        "not valid YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at line 2, column 8)"
    )


def test_a_tab_is_one_column_as_plr_counts_it() -> None:
    with pytest.raises(ImportError_) as e:
        import_intercept('version: "1"\ntools:\n\tx: {}\n', file="t.yaml")
    lines = str(e.value).splitlines()
    assert lines[0] == (
        "t.yaml:3:1: error: not valid YAML: found character '\\t' that cannot start any token (while scanning for the next token)"
    )
    assert snippet(lines, 3)[1:] == (1, 1)


def test_a_character_yaml_refuses_is_located_and_never_echoed_raw() -> None:
    """A terminal's control character is shown as U+FFFD: printing it could drive the terminal."""
    with pytest.raises(ImportError_) as e:
        import_intercept('version: "1"\ndescription: "a\x1b[2Jb"\n', file="c.yaml")
    lines = str(e.value).splitlines()
    assert lines[0] == "c.yaml:2:16: error: not valid YAML: unacceptable character #x001b: special characters are not allowed"
    text, col, _ = snippet(lines, 2)
    assert "\x1b" not in str(e.value) and text[col - 1] == "\ufffd" and col == 16


def test_lines_are_counted_as_the_snippet_shows_them_after_crlf_and_line_separators() -> None:
    """YAML also ends a line at U+2028; plr's snippets do not, so the place is plr's count."""
    for doc, line, col in [
        ('version: "1"\r\ndefault: maybe\r\n', 2, 10),
        ('description: "a\u2028b"\nversion: "1"\ndefault: maybe\n', 3, 10),
    ]:
        with pytest.raises(ImportError_) as e:
            import_intercept(doc)
        assert (e.value.line, e.value.col) == (line, col)
        assert str(e.value).splitlines()[1].endswith("| default: maybe")


def test_a_value_plr_cannot_write_is_refused_at_its_place_not_a_type_error() -> None:
    doc = 'version: "1"\ntools:\n  x:\n    rules:\n      - {name: n, conditions: [{path: args.a, op: eq, value: .nan}]}\n'
    with pytest.raises(ImportError_) as e:
        import_intercept(doc)
    assert (e.value.line, e.value.col, e.value.first.width) == (5, 62, len(".nan"))
    assert e.value.message.startswith("tools.x.rules[0].conditions[0].value: ")
    for bad, where in [
        ('version: 2020-01-01\n', (1, 10)),
        ('version: "1"\ndefault: !!binary aGVsbG8=\n', (2, 10)),
        ('version: "1"\ntools:\n  x:\n    rules:\n      - {conditions: 5}\n', (5, 22)),
    ]:
        with pytest.raises(ImportError_) as e:
            import_intercept(bad)
        assert (e.value.line, e.value.col) == where, bad


def test_odd_shapes_are_warnings_not_type_errors() -> None:
    counter = (
        'version: "1"\ntools:\n  x:\n    rules:\n      - state: {counter: c, window: [day]}\n'
        "        conditions: [{path: state.x.c, op: lt, value: 5}]\n"
    )
    with pytest.raises(ImportError_, match=r"tools.x.rules\[0\].state.window must be text, not a list"):
        import_intercept(counter)  # Intercept cannot read it either: refused, not a warning
    op = 'version: "1"\ntools:\n  x:\n    rules:\n      - conditions: [{path: args.a, op: [eq], value: 1}]\n'
    with pytest.raises(ImportError_, match=r"op must be text, not a list"):
        import_intercept(op)


# --- no traceback on any bad input ---------------------------------------------------------------

EMPTY = (
    "{f}: error: {r}: an Intercept policy is a mapping with version, default and tools; "
    "this file has none (its YAML document is empty)"
)


@pytest.mark.parametrize(
    ("text", "first_line"),
    [
        ("", EMPTY),
        ("# only a comment\n", EMPTY),
        ("- a\n- b\n", "{f}:1:1: error: {r}: an Intercept policy is a mapping with version, default and tools, not a list"),
        ('"just text"\n', "{f}:1:1: error: {r}: an Intercept policy is a mapping with version, default and tools, not a string"),
        (
            "a: 1\n---\nb: 2\n",
            "{f}:2:1: error: {r}: not valid YAML: but found another document "
            "(expected a single document in the stream at line 1, column 1)",
        ),
        ("a: &x\n  b: *x\n", "{f}:1:4: error: {r}: not valid YAML: found unconstructable recursive node"),
        ("x: " + "[" * 2000 + "]" * 2000 + "\n", "{f}: error: {r}: the document is nested too deeply to import"),
    ],
    ids=["empty", "comment-only", "list", "string", "two-documents", "recursive-alias", "deeply-nested"],
)
def test_a_malformed_file_is_exit_2_with_one_diagnostic(tmp_path: Path, text: str, first_line: str) -> None:
    src, r = run(tmp_path, text)
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.exception
    assert r.stderr.splitlines()[0] == first_line.format(f=src, r=REFUSED)


def test_binary_input_is_refused_without_a_traceback(tmp_path: Path) -> None:
    src, r = run(tmp_path, b'version: "1"\n\x00\x01\x02ELF\n')  # UTF-8, but no YAML character
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.exception
    lines = r.stderr.splitlines()
    assert lines[0] == f"{src}:2:1: error: {REFUSED}: not valid YAML: unacceptable character #x0000: special characters are not allowed"
    assert snippet(lines, 2) == ("\ufffd" * 3 + "ELF", 1, 1)
    src, r = run(tmp_path, b"version: '1'\ndescription: caf\xe9\n", "latin1.yaml")  # not UTF-8
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.exception
    assert r.stderr.startswith(f"{src}: error: not UTF-8 text")


def test_a_deeply_nested_file_is_one_line_through_the_real_entry_point(tmp_path: Path) -> None:
    """As users run it (``main``, not click's test runner): one diagnostic naming the file."""
    src = tmp_path / "deep.yaml"
    deep = "[" * 2000 + "]" * 2000
    src.write_text(f'version: "1"\ntools:\n  x:\n    rules:\n      - conditions: [{{path: args.a, op: eq, value: {deep}}}]\n')
    r = run_plr("import", "intercept", str(src))
    assert r.returncode == 2
    assert r.stderr_text == f"{src}: error: {REFUSED}: the document is nested too deeply to import\n"


def test_an_input_read_from_stdin_is_named_stdin_as_other_commands_name_it() -> None:
    result = CliRunner().invoke(cli, ["import", "intercept", "-"], input='version: "1"\ndefault: maybe\n')
    assert result.exit_code == 2
    assert result.output.startswith("<stdin>:2:10: error: "), result.output


BACKSPACE = (
    'version: "1"\n'
    'description: "t"\n'
    "tools:\n"
    "  query:\n"
    "    rules:\n"
    '      - name: "selects only"\n'
    "        conditions:\n"
    '          - path: "args.sql"\n'
    '            op: "regex"\n'
    '            value: "\\bselect\\b"\n'
    '        on_deny: "no"\n'
)


def test_a_yaml_backspace_in_a_regex_is_located_not_an_internal_error(tmp_path: Path):
    """YAML's double-quoted `\\b` is a backspace, as JSON's is: the pattern never matches the
    word boundary meant. The import refuses it at the value's place (it was an internal error,
    `please report this`, when the generated .plr failed to compile), and says how to write it."""
    src, res = run(tmp_path, BACKSPACE)
    assert res.exit_code == 2, res.output
    assert f"{src}:10:20: error: " in res.output and "backspace" in res.output
    assert "single quotes" in res.output and "internal error" not in res.output
    assert "Intercept refuses" not in res.output  # Go compiles it: it is plr that refuses
    _, ok = run(tmp_path, BACKSPACE.replace('"\\bselect\\b"', "'\\bselect\\b'"))  # single quotes: a word boundary
    assert ok.exit_code == 0, ok.output
    assert 'matches "\\\\bselect\\\\b"' in ok.output
