"""A new user's walkthrough, catalogue names: an unknown name gets the nearest names (not ~170
of them), every spelling of a name (`github`, `server-github`, `stdlib/server-github`) means the
same catalogue in `plr catalog`, `plr init` and `--check`, an import of a catalogue by its bare
name says how it is imported, and an empty `--search` says why it exits 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl import catalog

from .conftest import run_plr


def assert_clean_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout_text, proc.stderr_text)
    text = proc.stderr_text + proc.stdout_text
    assert "Traceback" not in text and "internal error" not in text, text
    for n in needles:
        assert n in proc.stderr_text, proc.stderr_text


@pytest.mark.parametrize(
    "args",
    [("catalog", "githb"), ("init", "githb"), ("catalog", "--check", "githb", "--", "true")],
    ids=["catalog", "init", "check"],
)
def test_an_unknown_catalogue_name_gets_the_nearest_names_not_the_whole_list(tmp_path: Path, args) -> None:
    proc = run_plr(*args, cwd=tmp_path)
    assert_clean_error(proc, "no catalogue is called `githb`", 'did you mean `github` (import "stdlib/server-github")?',
                       "`plr catalog` lists the")  # fmt: skip
    assert "airbnb" not in proc.stderr_text and len(proc.stderr_text) < 400, proc.stderr_text
    assert list(tmp_path.iterdir()) == []  # `plr init` wrote nothing


def test_catalog_show_name_is_answered_as_plr_catalog_name() -> None:
    """There is no `show` or `list` subcommand; what the user meant is said, and a misspelt
    name gets its nearest names at once (it was "a server command after -- goes with --check")."""
    proc = run_plr("catalog", "show", "githb")
    assert_clean_error(proc, "no catalogue is called `githb`; did you mean `github`")
    assert "--check" not in proc.stderr_text
    assert_clean_error(run_plr("catalog", "show", "github"), "no `show` subcommand; `plr catalog github` lists that catalogue")
    assert_clean_error(run_plr("catalog", "list"), "no `list` subcommand; `plr catalog` lists every catalogue")
    # `ls` is inside `browser-tools` and four other names: a word that merely appears in names is
    # still the subcommand word it looks like, not those catalogues
    assert_clean_error(run_plr("catalog", "ls"), "no `ls` subcommand; `plr catalog` lists every catalogue")


def test_every_spelling_of_a_name_is_the_same_one_catalogue() -> None:
    for spelling in ("github", "GitHub", "server-github", "stdlib/server-github", "stdlib/server-github.plr"):
        assert [c.module for c in catalog.find(spelling)] == ["stdlib/server-github"], spelling
    # the import spelling of a name that another name contains is that catalogue alone
    assert [c.module for c in catalog.find("server-brave-search")] == ["stdlib/server-brave-search"]
    assert len(catalog.find("brave")) == 2  # a part of a name is still every catalogue that has it


def test_init_takes_the_import_spelling(tmp_path: Path) -> None:
    proc = run_plr("init", "server-brave-search", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr_text
    assert 'import "stdlib/server-brave-search"' in (tmp_path / "policy.plr").read_text()


def test_an_ambiguous_name_lists_a_few_in_the_overviews_spelling(tmp_path: Path) -> None:
    proc = run_plr("init", "a", "--dir", str(tmp_path))
    assert_clean_error(proc, "`a` matches", "choose one of: ", "more (`plr catalog` lists every name)")
    listed = proc.stderr_text.split("choose one of: ")[1].split(" and ")[0].split(", ")
    assert len(listed) == 10 and all(not n.startswith(("server-", "stdlib/")) for n in listed), listed
    proc = run_plr("catalog", "--check", "brave", "--", "true")
    assert_clean_error(proc, "choose one of: brave-search-legacy, brave-search")


def test_the_overview_names_every_catalogue_the_same_way() -> None:
    proc = run_plr("catalog")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout_text.splitlines()[:-1]]
    assert "mcp-codex-worker" in names and not any(n.startswith("stdlib/") for n in names)


def test_the_nearest_names_are_the_import_errors(tmp_path: Path) -> None:
    """One did-you-mean for both: `plr catalog` and `import "stdlib/..."` suggest the same names."""
    stems = [c.module.removeprefix("stdlib/") for c in catalog.stdlib_catalogues()]
    assert catalog.nearest_stdlib_names("memory", stems) == ["server-memory", "server-memory-bank"]
    assert catalog.nearest_stdlib_names("stdlib/server-githb", stems) == ["server-github"]
    (tmp_path / "p.plr").write_text('default deny\nimport "stdlib/githb"\n')
    proc = run_plr("check", "p.plr", cwd=tmp_path)
    assert_clean_error(proc, "p.plr:2:8: error: no stdlib module `stdlib/githb`; did you mean `stdlib/server-github`?",
                       '    2 | import "stdlib/githb"\n      |        ^^^^^^^^^^^^^^')  # fmt: skip


@pytest.mark.parametrize("spec", ["github", "server-github", "./server-github.plr"])
def test_importing_a_catalogue_as_a_file_says_how_it_is_imported(tmp_path: Path, spec: str) -> None:
    (tmp_path / "p.plr").write_text(f'default deny\nimport "{spec}"\n')
    proc = run_plr("check", "p.plr", cwd=tmp_path)
    caret = "^" * (len(spec) + 2)
    assert_clean_error(proc, f"p.plr:2:8: error: cannot import `{spec}`: no such file",
                       "; the stdlib module of that name is imported as `stdlib/server-github`",
                       f'    2 | import "{spec}"\n      |        {caret}')  # fmt: skip


def test_a_missing_file_in_a_folder_gets_no_stdlib_hint(tmp_path: Path) -> None:
    (tmp_path / "p.plr").write_text('default deny\nimport "rules/github.plr"\n')
    proc = run_plr("check", "p.plr", cwd=tmp_path)
    assert_clean_error(proc, "cannot import `rules/github.plr`: no such file")
    assert "stdlib" not in proc.stderr_text


# --- --search: exit 1 for nothing found, said in --help and on stderr ----------------------


def test_an_empty_search_exits_1_with_a_hint_on_stderr() -> None:
    proc = run_plr("catalog", "--search", "no-such-tool-anywhere")
    assert proc.returncode == 1 and proc.stdout_text == ""
    lines = proc.stderr_text.splitlines()
    assert lines[0] == "no tool in any catalogue matches `no-such-tool-anywhere` (exit 1: nothing found)"
    assert "--search looks for WORD inside tool names and descriptions" in proc.stderr_text


def test_an_empty_search_for_a_catalogues_name_points_to_the_catalogue() -> None:
    proc = run_plr("catalog", "--search", "mcp-codex-worker")
    assert proc.returncode == 1
    assert "`mcp-codex-worker` names a catalogue, not a tool: `plr catalog mcp-codex-worker` lists its tools" in proc.stderr_text


def test_catalog_help_states_the_exit_codes() -> None:
    proc = run_plr("catalog", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout_text.split())
    assert "Exit 0: done; 1: --search found no tool" in text and "(exit 1 when none does)" in text
    assert "2: no catalogue has that name" in text
    assert "`server-github`, `stdlib/server-github`" in text  # both spellings explained
