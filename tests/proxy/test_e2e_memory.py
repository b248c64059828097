"""End to end against a real third-party server from npm: `@modelcontextprotocol/server-memory`.

The policy hides `delete_entities` and requires approval for `delete_relations`; the knowledge
graph must be unchanged after every denied call. (Installed once by the `server_memory`
fixture into ~/.cache/plr-tests/npm; skipped only when node/npm are absent.)
"""

from __future__ import annotations

import json

import anyio
import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

from mcp import Client, StdioServerParameters

from tests.conftest import ROOT

from .conftest import ProxySetup, base_env
from .helpers import Human, text

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MEMORY_POLICY = """\
package memory

default allow

hide tool "delete_entities"

deny tool "delete_relations" unless approved
    reason "Deleting relations loses knowledge; a human must approve"

deny tool "delete_observations" if count(args.deletions) > 1
    reason "Delete observations of one entity at a time"
"""


def graph(r) -> dict:
    return json.loads(text(r))


def shape(g: dict) -> tuple:
    ents = sorted((e["name"], tuple(sorted(e.get("observations", [])))) for e in g.get("entities", []))
    rels = sorted((r["from"], r["relationType"], r["to"]) for r in g.get("relations", []))
    return ents, rels


@pytest.mark.parametrize("mode", [pytest.param("legacy", id="2025-11-25"), pytest.param("auto", id="2026-07-28")])
async def test_server_memory_behind_the_proxy(tmp_path, server_memory: list[str], mode: str) -> None:
    setup = ProxySetup(tmp_path, MEMORY_POLICY)
    import sys

    params = StdioServerParameters(
        command=sys.executable,
        args=setup.proxy_args(server=server_memory),
        env=base_env(MEMORY_FILE_PATH=str(tmp_path / "memory.jsonl")),
        cwd=str(ROOT),
    )
    human = Human([("decline", None), ("accept", True)])
    with anyio.fail_after(60):
        async with Client(params, mode=mode, cache=None, elicitation_callback=human) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "delete_entities" not in names
            assert {"create_entities", "create_relations", "delete_relations", "read_graph"} <= names
            await c.call_tool(
                "create_entities",
                {
                    "entities": [
                        {"name": "alice", "entityType": "person", "observations": ["likes tea"]},
                        {"name": "bob", "entityType": "person", "observations": ["likes coffee", "tall"]},
                    ]
                },
            )
            await c.call_tool(
                "create_relations", {"relations": [{"from": "alice", "to": "bob", "relationType": "knows"}]}
            )
            before = shape(graph(await c.call_tool("read_graph", {})))

            hidden = await c.call_tool("delete_entities", {"entityNames": ["alice"]})
            declined = await c.call_tool(
                "delete_relations", {"relations": [{"from": "alice", "to": "bob", "relationType": "knows"}]}
            )
            too_many = await c.call_tool(
                "delete_observations",
                {
                    "deletions": [
                        {"entityName": "alice", "observations": ["likes tea"]},
                        {"entityName": "bob", "observations": ["tall"]},
                    ]
                },
            )
            unchanged = shape(graph(await c.call_tool("read_graph", {})))

            approved = await c.call_tool(
                "delete_relations", {"relations": [{"from": "alice", "to": "bob", "relationType": "knows"}]}
            )
            after = shape(graph(await c.call_tool("read_graph", {})))
    # under `default allow` a hidden tool answers as the server answers a tool it does not have
    assert hidden.is_error and text(hidden) == "MCP error -32602: Tool delete_entities not found"
    assert declined.is_error and "policy.plr:7: Deleting relations loses knowledge" in text(declined)
    assert too_many.is_error and "policy.plr:10: Delete observations of one entity at a time" in text(too_many)
    assert unchanged == before  # the graph is untouched by the denied calls
    assert not approved.is_error
    assert after == (before[0], [])
    assert len(human.seen) == 2
    recs = setup.records()
    assert [(r["tool"], r["effect"]) for r in recs if r["tool"].startswith("delete")] == [
        ("delete_entities", "deny"),
        ("delete_relations", "approval_required"),
        ("delete_relations", "deny"),
        ("delete_observations", "deny"),
        ("delete_relations", "approval_required"),
        ("delete_relations", "allow"),
    ]
    assert {r["server"] for r in recs} == {"memory-server"}
