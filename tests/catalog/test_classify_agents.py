"""A tool that hands a task to an autonomous agent is `execute`, as a shell is: the agent's own
actions are picked at run time by its model, out of the policy's sight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl.classify import agent_acts, classify

from ..conftest import ROOT


@pytest.mark.parametrize(
    "name, description",
    [
        ("browser_use_agent", "This tool employs an open-source browser automation agent optimized for fast browser tasks."),
        ("claude_computer_use_agent", ""),
        ("openai_computer_use_agent", "This tool utilizes OpenAI's model to autonomously execute general-purpose browser-based tasks."),
        ("do_task", "Execute a task autonomously using Gemini Computer Use agent."),
        ("research", "Autonomously performs multi-step research and acts on the results."),
        ("browse", "A computer-use agent that drives a remote desktop."),
        ("delegate", "Delegate a task to an autonomous coding agent."),
    ],
)
def test_an_agent_delegate_is_execute(name: str, description: str):
    c = classify(name, description)
    assert (c.risk, c.inferred) == ("execute", True)
    assert "autonomous agent" in c.why


@pytest.mark.parametrize(
    "name, description, risk",
    [
        ("set_custom_user_agent", "Set a custom User Agent for the browser", "write"),  # a setting, not an agent
        ("list_agent", "List the agents of a workspace.", "read"),  # about agents
        ("delete_agent", "", "destructive"),  # stricter already
        ("plan_workflow", "Plans a workflow using an AI agent.", "read"),  # an AI used inside a service
        ("agent_catalog", "Browse the catalog of agent skills.", "read"),
        # "autonomous" that is not an agent, and a read tool about agents (the review's cases)
        ("list_autonomous_databases", "Lists the Autonomous Databases in a compartment.", "read"),
        ("get_asn", "Get the autonomous system number of a host and its active prefixes.", "read"),
        ("list_agents", "List the autonomous agents of the account.", "read"),
        ("status", "Shows the status of the computer use agent.", "read"),
    ],
)
def test_a_tool_about_agents_keeps_its_class(name: str, description: str, risk: str):
    assert classify(name, description).risk == risk
    if risk == "read":
        assert agent_acts(name, description) is None


def test_a_read_claim_about_an_agent_stands():
    assert classify("mcp_agent", "Get the MCP agent's status", {"readOnlyHint": True}).risk == "read"
    assert classify("list_things", "List the autonomous agents of the account.", {"readOnlyHint": True}).risk == "read"


def test_a_read_claim_gives_way_to_an_agent_delegate():
    c = classify("browser_use_agent", "", {"readOnlyHint": True})
    assert (c.risk, c.inferred) == ("execute", True)
    assert "said read, but" in c.why


def test_the_stdlib_agent_tools_are_execute():
    doc = json.loads((ROOT / "stdlib_rules/catalogues/server-hyperbrowser.json").read_text())
    risks = {t["name"]: t["risk"] for t in doc["tools"]}
    for name in ("browser_use_agent", "claude_computer_use_agent", "openai_computer_use_agent"):
        assert risks[name] == "execute", name
    assert 'tool "browser_use_agent" execute' in (ROOT / "stdlib_rules/server-hyperbrowser.plr").read_text()
