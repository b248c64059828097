"""`plr catalog --search`, `plr catalog SERVER`, `--check` (drift) and `plr catalog harvest`."""

from __future__ import annotations

import json
import sys

import pytest

from dsl import catalog
from tests.conftest import ROOT, run_plr

FAKE = ROOT / "tests" / "proxy" / "servers" / "fake_codex.py"


def test_search_finds_tools_across_catalogues_with_server_and_class():
    proc = run_plr("catalog", "--search", "entities")
    assert proc.returncode == 0, proc.stderr_text
    lines = proc.stdout_text.splitlines()
    assert any(line.split()[:3] == ["delete_entities", "destructive", "server-memory"] for line in lines), lines
    data = json.loads(run_plr("catalog", "--search", "ENTITIES", "--format", "json").stdout_text)
    assert {"tool": "create_entities", "risk": "write", "inferred": False, "server": "server-memory", "import": "stdlib/server-memory"} in data


def test_search_without_a_hit_says_so_and_exits_1():
    proc = run_plr("catalog", "--search", "no-such-tool-anywhere")
    assert proc.returncode == 1 and "no tool in any catalogue matches" in proc.stderr_text


def test_the_overview_lists_every_catalogue_with_its_import():
    proc = run_plr("catalog")
    assert proc.returncode == 0
    assert 'import "stdlib/server-memory"' in proc.stdout_text
    assert f"{len(catalog.stdlib_catalogues())} catalogues" in proc.stdout_text


def test_a_command_without_check_or_from_server_is_a_usage_error():
    assert run_plr("catalog", "memory", "--", "true").returncode == 2


def test_drift_lists_added_removed_and_changed_tools():
    expected = {
        "keep": {"name": "keep", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
        "gone": {"name": "gone", "schema": {}},
        "hinted": {"name": "hinted", "schema": {}, "annotations": {"readOnlyHint": True}},
    }
    live = [
        {"name": "keep", "inputSchema": {"type": "object", "properties": {"a": {"type": "integer", "description": "x"}}}},
        {"name": "hinted", "inputSchema": {}, "annotations": {"readOnlyHint": False, "title": "t"}},
        {"name": "new"},
    ]
    assert catalog.drift(expected, live) == [
        "added: new",
        "removed: gone",
        "changed annotations: hinted ({'readOnlyHint': True} -> {'readOnlyHint': False})",
        "changed schema: keep",
    ]
    same = [{"name": "keep", "inputSchema": {"type": "object", "properties": {"a": {"type": "string", "description": "prose changes are not drift"}}}}]
    assert catalog.drift({"keep": expected["keep"]}, same) == []
    assert catalog.drift({"keep": None}, same) == []  # a names-only catalogue compares names


@pytest.mark.slow
def test_check_exits_1_on_drift_with_one_line_per_change():
    proc = run_plr("catalog", "--check", "mcp-codex-worker", "--", sys.executable, str(FAKE))
    assert proc.returncode == 1, proc.stderr_text
    assert proc.stdout_text.splitlines() == ["added: get-task", "added: list-tasks", "added: purge-workspace", "added: spawn-task"]
    assert "differs from the catalogue (4 changes)" in proc.stderr_text


@pytest.mark.slow
def test_check_of_a_server_that_cannot_start_is_an_input_error():
    proc = run_plr("catalog", "--check", "memory", "--timeout", "5", "--", sys.executable, "-c", "raise SystemExit(3)")
    assert proc.returncode == 2 and "could not read tools/list" in proc.stderr_text and "Traceback" not in proc.stderr_text


def test_check_needs_one_catalogue_and_a_command():
    assert run_plr("catalog", "--check", "memory").returncode == 2
    proc = run_plr("catalog", "--check", "server", "--", "true")  # matches several
    assert proc.returncode == 2 and "choose one of" in proc.stderr_text


def test_harvest_is_a_subcommand_with_its_own_options(tmp_path):
    proc = run_plr("catalog", "harvest", "--help")
    assert proc.returncode == 0 and "--only" in proc.stdout_text and "throwaway HOME" in proc.stdout_text
    proc = run_plr("catalog", "harvest", "--out", str(tmp_path), "--only", "no-such-server")
    assert proc.returncode == 2 and "no-such-server" in proc.stderr_text
    assert not any(tmp_path.iterdir())  # nothing written for a refused command


# --- descriptions (#17) -----------------------------------------------------------------

HAND_WRITTEN = '''server "shop" {
    tool "list_orders" read description "Lists the orders of a customer"
    tool "wipe_orders" destructive description "Deletes every order \\u001b[31m at once"
    tool "ping" read
}
'''


@pytest.fixture
def hand_written_stdlib(monkeypatch):
    """The stdlib seen by `plr catalog` is one hand-written catalogue whose entries have descriptions."""
    from dsl.lower import lower_source

    module = lower_source(HAND_WRITTEN, "stdlib/server-shop.plr", "server-shop.plr")
    infos = tuple(catalog.catalogues_of_module(module, "stdlib/server-shop", "hand-written"))
    monkeypatch.setattr(catalog, "_stdlib_catalogues", lambda: infos)
    return infos


def _plr(*argv: str):
    from click.testing import CliRunner

    from dsl.cli import cli

    return CliRunner().invoke(cli, list(argv), env={"NO_COLOR": "1"})


def test_a_hand_written_entrys_description_is_kept_for_the_catalogue(hand_written_stdlib):
    (info,) = hand_written_stdlib
    assert dict(info.descriptions) == {
        "list_orders": "Lists the orders of a customer",
        "wipe_orders": "Deletes every order \x1b[31m at once",
    }
    assert info.description("ping") == ""


def test_plr_catalog_shows_each_description_beside_its_tool_escaped(hand_written_stdlib):
    r = _plr("catalog", "shop")
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line for line in r.output.splitlines()[2:]}
    assert lines["list_orders"].split(None, 2)[1:] == ["read", "Lists the orders of a customer"]
    assert "\x1b" not in r.output and "Deletes every order" in lines["wipe_orders"]  # the server's text cannot colour the terminal
    assert lines["ping"].split() == ["ping", "read"]


def test_plr_catalog_json_maps_the_described_tools_to_their_descriptions(hand_written_stdlib):
    r = _plr("catalog", "shop", "--format", "json")
    assert r.exit_code == 0, r.output
    (doc,) = json.loads(r.output)
    assert doc["descriptions"] == {
        "list_orders": "Lists the orders of a customer",
        "wipe_orders": "Deletes every order \x1b[31m at once",  # JSON carries the text as it is
    }
    assert doc["tools"] == {"list_orders": "read", "wipe_orders": "destructive", "ping": "read"}


def test_plr_catalog_search_shows_the_description_under_the_hit(hand_written_stdlib):
    r = _plr("catalog", "--search", "orders")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("list_orders"))
    assert lines[i + 1].strip() == "Lists the orders of a customer"
    data = json.loads(_plr("catalog", "--search", "orders", "--format", "json").output)
    assert {d["tool"]: d.get("description") for d in data} == {
        "list_orders": "Lists the orders of a customer",
        "wipe_orders": "Deletes every order \x1b[31m at once",
    }
    ping = json.loads(_plr("catalog", "--search", "ping", "--format", "json").output)
    assert ping == [{"tool": "ping", "risk": "read", "inferred": False, "server": "shop", "import": "stdlib/server-shop"}]


def test_harvested_descriptions_are_shown_too():
    proc = run_plr("catalog", "airbnb", "--format", "json")
    assert proc.returncode == 0, proc.stderr_text
    (doc,) = json.loads(proc.stdout_text)
    assert doc["descriptions"]["airbnb_search"].startswith("Search for Airbnb listings")
    text = run_plr("catalog", "airbnb").stdout_text
    assert any(line.split()[0] == "airbnb_search" and "Search for Airbnb listings" in line for line in text.splitlines()[2:])
