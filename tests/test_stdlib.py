"""stdlib_rules: catalogues equal the tool lists recorded from the real servers; packs pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl.catalog import catalogue_text, risk_of, starter_files, stdlib_catalogues
from dsl.compiler import compile_source

from .conftest import ROOT, run_plr

RECORDED = json.loads((ROOT / "tests" / "data" / "server_tools.json").read_text())


@pytest.mark.parametrize("key", sorted(k for k in RECORDED if not k.startswith("_")))
def test_catalogue_tools_equal_the_live_server_list(key: str):
    server = key.split("@")[0]
    cats = [c for c in stdlib_catalogues() if c.server == server]
    assert len(cats) == 1, f"no stdlib catalogue for {server}"
    assert sorted(t for t, _ in cats[0].tools) == sorted(RECORDED[key])
    version = key.split("@")[1]
    assert version in (ROOT / "stdlib_rules" / f"{server}.plr").read_text(), "record the package version"


def test_codex_worker_catalogue_knows_cancel_task_as_destructive():
    cat = next(c for c in stdlib_catalogues() if c.server == "mcp-codex-worker")
    assert dict(cat.tools) == {"cancel-task": "destructive"}


def test_stdlib_rules_tests_pass():
    proc = run_plr("test", str(ROOT / "stdlib_rules"))
    assert proc.returncode == 0, proc.stdout_text + proc.stderr_text
    assert " 0 failed" in proc.stdout_text


def test_stdlib_rules_check_clean():
    proc = run_plr("check", "--strict", str(ROOT / "stdlib_rules"))
    assert proc.returncode == 0, proc.stderr_text


def test_baseline_pack_compiles_with_a_catalogue():
    p = compile_source('import "stdlib/server-memory"\nimport "stdlib/baseline"\n')
    assert p.tools["delete_entities"].action == "require_approval"
    assert p.tools["read_graph"].action == "allow"
    assert p.default == "deny"


def test_risk_from_annotations():
    class A:
        def __init__(self, ro=None, d=None):
            self.read_only_hint, self.destructive_hint = ro, d

    assert risk_of(None) == "write"
    assert risk_of(A(ro=True)) == "read"
    assert risk_of(A(d=True)) == "destructive"
    assert risk_of(A(ro=False, d=False)) == "write"


def test_catalogue_text_round_trips_through_the_parser():
    # a name that needs escaping (a quote, non-ASCII); whitespace is refused in a tool name
    text = catalogue_text("srv", [("b-tool", "read", "reads"), ('a"tool/ä', "destructive", "")], "npx srv")
    p = compile_source(text + 'default deny\nallow read tools\ndeny destructive tools unless approved\n')
    assert set(p.tools) == {'a"tool/ä', "b-tool"}


def test_plr_catalog_lists_and_init_writes_a_passing_starter(tmp_path: Path):
    out = run_plr("catalog").stdout_text
    for name in ("server-memory", "server-filesystem", "server-everything", "server-github", "server-postgres"):
        assert name in out
    data = json.loads(run_plr("catalog", "memory", "--format", "json").stdout_text)
    assert data[0]["tools"]["delete_entities"] == "destructive"
    assert run_plr("catalog", "nope").returncode == 2
    proc = run_plr("init", "memory", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr_text
    proc = run_plr("test", str(tmp_path))
    assert proc.returncode == 0 and "4 passed" in proc.stdout_text, proc.stdout_text
    assert run_plr("init", "memory", "--dir", str(tmp_path)).returncode == 2  # never overwrites


STDLIB_TESTS = sorted((ROOT / "stdlib_rules" / "tests").glob("*.plr"))


@pytest.mark.parametrize("path", STDLIB_TESTS, ids=lambda p: p.name)
def test_rule_pack_json_is_pinned(path: Path, snapshot):
    """Each pack compiled with the catalogues its tests import: the JSON users get is reviewed."""
    from syrupy.extensions.json import JSONSnapshotExtension

    from dsl.compiler import compile_files

    policy = compile_files([str(path)], source=False)
    assert json.loads(policy.to_json()) == snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("cat", stdlib_catalogues(), ids=lambda c: c.server)
def test_a_starter_says_what_its_rules_do_and_its_tests_call_real_tools(cat, tmp_path: Path):
    # a new user's walkthrough found every header promising rate-limited execute tools, an
    # `allow read tools` that selected nothing, and a test of a made-up tool that proved nothing
    from dsl.compiler import compile_files

    policy, test = starter_files(cat, "policy.plr")
    classes = {risk for _, risk in cat.tools}
    header = " ".join(line.removeprefix("# ") for line in policy.splitlines() if line.startswith("#"))
    assert ("rate" in header or "30 a minute" in header) == ("execute" in classes)
    assert ("allow read tools" in policy) == ("read" in classes) and ("reads are allowed" in header) == ("read" in classes)
    assert ("destructive tools need a person" in header) == ("destructive" in classes)
    names = {name for name, _ in cat.tools}
    called = {line.split('"')[1] for line in test.splitlines() if line.strip().startswith("call ")}
    assert called - {"no-such-tool"} <= names and len(called - {"no-such-tool"}) >= min(1, len(names))
    (tmp_path / "policy.plr").write_text(policy, encoding="utf-8")
    (tmp_path / "policy_test.plr").write_text(test, encoding="utf-8")
    warnings: list = []
    compile_files([str(tmp_path / "policy.plr")], source=False, warnings=warnings)
    assert not [w for w in warnings if "selects nothing" in w.message], warnings
