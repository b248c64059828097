"""The harvest's parts: source list, compact schemas, documents, the generated `server` block,
one class per name, the clean environment, and (slow) a live server read and stopped."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from dsl import harvest
from dsl.format import is_formatted
from dsl.compiler import compile_source
from tests.conftest import ROOT

FAKE = ROOT / "tests" / "proxy" / "servers" / "fake_codex.py"
SRC = harvest.Source(name="shop", package="@acme/shop-mcp", version="1.2.3")


def test_the_shipped_source_list_loads_and_pins_exact_versions():
    sources = harvest.load_sources(harvest.default_sources())
    assert len(sources) >= 100
    for s in sources:
        assert s.version[0].isdigit() and not set(s.version) & set("^~<>*| "), (s.name, s.version)
        for value in s.env.values():  # placeholders only: never a real-looking secret
            assert "placeholder" in value or value.startswith(("{home}", "{work}", "http://127.0.0.1", "https://")) or len(value) < 40, value


@pytest.mark.parametrize(
    "text, words",
    [
        ('[[server]]\nname = "a"\nversion = "1"\n', "has no `package`"),
        ('[[server]]\nname = "A b"\npackage = "p"\nversion = "1"\n', "lower-case"),
        ('[[server]]\nname = "a"\npackage = "p"\nversion = "1"\nregistry = "cargo"\n', "registry npm|pypi"),
        ('[[server]]\nname = "a"\npackage = "p"\nversion = "1"\n' * 2, "listed twice"),
    ],
)
def test_a_bad_source_list_is_an_error_naming_the_entry(tmp_path: Path, text: str, words: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=words):
        harvest.load_sources(path)


def test_compact_schema_keeps_structure_and_drops_prose():
    schema = {
        "type": "object",
        "description": "long prose " * 50,
        "properties": {
            "path": {"type": "string", "description": "a path", "default": "/"},
            "mode": {"enum": list(range(50)), "title": "Mode"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        },
        "required": ["path"],
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    }
    assert harvest.compact_schema(schema) == {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "mode": {"enum": list(range(30))},
            "items": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        },
        "required": ["path"],
        "additionalProperties": False,
    }


def test_first_sentence_is_short():
    assert harvest.first_sentence("Reads a file.  Then more.\nAnd more") == "Reads a file."
    assert len(harvest.first_sentence("x" * 500)) == harvest.DESCRIPTION_CHARS
    assert harvest.first_sentence(None) == ""


def raw(name: str, **extra) -> dict:
    return {"name": name, "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}}, **extra}


def test_a_document_classes_every_tool_and_marks_each_guess():
    doc = harvest.catalogue_document(
        SRC,
        [raw("get_order"), raw("refund_order", description="Refunds. Money goes back."), raw("get_order", annotations={"readOnlyHint": True, "title": "x"})],
        when="2026-01-02",
    )
    assert doc["status"] == "ok" and doc["harvested"] == "2026-01-02" and doc["version"] == "1.2.3"
    get, refund = doc["tools"]  # a name listed twice is one tool
    assert get["risk"] == "read" and get["from"] == "readOnlyHint" and "inferred" not in get  # its last listing
    assert get["annotations"] == {"readOnlyHint": True}  # hints only, not the title
    assert refund == {
        "name": "refund_order",
        "risk": "write",
        "inferred": "name: refund",
        "description": "Refunds.",
        "schema": {"type": "object", "properties": {"id": {"type": "string"}}},
    }


def test_an_unavailable_server_is_recorded_with_its_reason_and_no_tools():
    doc = harvest.catalogue_document(SRC, None, "needs a real key: " + "x" * 1000)
    assert doc["status"] == "unavailable" and "tools" not in doc
    assert doc["reason"].startswith("needs a real key") and len(doc["reason"]) == harvest.REASON_CHARS


def test_the_generated_server_block_compiles_with_the_documents_classes(tmp_path: Path):
    doc = harvest.catalogue_document(SRC, [raw("delete-thing"), raw("list/things.ä", annotations={"readOnlyHint": True}),
                                           raw("list things", annotations={"readOnlyHint": True})])  # fmt: skip
    written = harvest.write_catalogue(doc, tmp_path)
    assert [p.name for p in written] == ["server-shop.json", "server-shop.plr"]
    text = (tmp_path / "server-shop.plr").read_text()
    assert '"delete-thing" destructive  # inferred' in text and '"list/things.ä" read\n' in text
    # a name no tool rule may hold (a space) is said below the block, not declared
    assert '# not declared: "list\\u0020things" (read)' in text and 'tool "list things"' not in text
    assert is_formatted(text)  # shipped as `plr fmt` writes it
    policy = compile_source(text + "default deny\nallow read tools\n")
    assert set(policy.tools) == {"list/things.ä"}
    assert json.loads((tmp_path / "catalogues" / "server-shop.json").read_text()) == doc


def test_harmonize_gives_a_shared_name_its_strictest_class_and_says_why():
    a = {"server": "a", "tools": [{"name": "fetch", "risk": "read", "from": "readOnlyHint"}]}
    b = {"server": "b", "tools": [{"name": "fetch", "risk": "execute", "inferred": "name: fetch"}]}
    harvest.harmonize([a, b])
    assert a["tools"][0]["risk"] == "execute" and "as in b" in a["tools"][0]["inferred"]
    assert "from" not in a["tools"][0]
    harvest.harmonize([a, b], fixed={"fetch": "read"})  # a hand-reviewed class wins
    assert a["tools"][0]["risk"] == b["tools"][0]["risk"] == "read"


def test_the_servers_environment_has_nothing_of_ours_but_path(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_real_secret")
    env = harvest.clean_env(tmp_path, tmp_path / "cache", {"API_KEY": "placeholder"})
    assert "ghp_real_secret" not in json.dumps(env)
    assert env["HOME"] == str(tmp_path) and env["API_KEY"] == "placeholder"
    assert set(env) - {"PATH", "API_KEY"} <= {k for k in env if k.startswith(("HOME", "TMP", "XDG", "LANG", "NO_COLOR", "npm_", "PIP_"))}


@pytest.mark.slow
def test_a_live_server_is_read_in_a_throwaway_home(tmp_path: Path):
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    env = harvest.clean_env(home, tmp_path / "cache", {})
    tools, reason = harvest.list_tools_live([sys.executable, str(FAKE)], env, 30, tmp_path)
    assert reason == ""
    assert sorted(t["name"] for t in tools) == ["cancel-task", "get-task", "list-tasks", "purge-workspace", "spawn-task"]
    assert "inputSchema" in tools[0]


@pytest.mark.slow
def test_a_server_that_never_answers_is_stopped_with_whatever_it_started(tmp_path: Path):
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    pid_file = tmp_path / "daemon.pid"
    # the "server" starts a daemon in a session of its own (out of its process group), then hangs
    script = (
        "import os, subprocess, sys, time\n"
        f"p = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)\n"
    )
    env = harvest.clean_env(home, tmp_path / "cache", {})
    started = time.monotonic()
    tools, reason = harvest.list_tools_live([sys.executable, "-c", script], env, 2, tmp_path)
    assert tools is None and "no tools/list answer within 2 s" in reason
    assert time.monotonic() - started < 30
    daemon = int(pid_file.read_text())
    for _ in range(50):
        if not Path(f"/proc/{daemon}").exists() or "Z" in Path(f"/proc/{daemon}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        os.kill(daemon, 9)
        pytest.fail("the daemon the server started outlived the harvest")


def test_the_recorded_reason_is_the_servers_error_line_and_the_same_on_every_run(tmp_path: Path):
    stderr = (
        "/srv/app/index.js:12\n    throw new Error('x');\n    ^\n\n"
        "Error: STRIPE_SECRET_KEY is required\n    at main (/srv/app/index.js:12:11)\n}\n\nNode.js v20.20.2\n"
        "plr-harvest: MCPError: Connection closed\n"
    )
    reason = harvest._reason(stderr, 1)
    assert reason == "MCPError: Connection closed; the server said: Error: STRIPE_SECRET_KEY is required"
    assert harvest._reason("", 3) == "the server exited (code 3) without answering tools/list"
    home, cache = tmp_path / "home", tmp_path / "cache"
    text = f"no file {home}/key.json; {cache}/npm/x; /tmp/plr-harvest-home-ab12_x/y"
    assert harvest._placeholders(text, home, cache) == "no file {home}/key.json; {cache}/npm/x; {home}/y"
