"""The proxy compares the tools the policy names with the tools the server really lists.

A rule about a tool the server does not offer does nothing (under ``default allow`` the real
tool goes through ungoverned), so the proxy says so on stderr and in the audit log at start, on
every ``tools/list_changed`` and on every reload; ``--strict-tools`` refuses such a policy.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

import mcp_types as types
from mcp import Client

from dsl import compile_source
from dsl.errors import PlrError
from dsl.proxy.reload import load_policy_file
from dsl.proxy.tool_check import compare

from .conftest import ProxySetup, inprocess, run_proxy_cli

pytestmark = pytest.mark.anyio

# the author means cancel-task; the server has no "cancel-tsak", so the real tool goes through
TYPO_POLICY = """\
package typo

default allow

deny tool "cancel-tsak" unless approved
    reason "a human approves cancellations"

hide tool "purge-workspace"
"""

# the fake codex worker's five tools, each named by a rule, and no catalogue: names are the author's word
EXACT_POLICY = """\
package exact

default deny

allow tools ["get-task", "list-tasks", "spawn-task", "cancel-task"]
hide tool "purge-workspace"
"""

INIT = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize",
     "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
]  # fmt: skip


def session_input() -> bytes:
    return "".join(json.dumps(m) + "\n" for m in INIT).encode()


def events(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == "tools_compared"]


def test_compare_names_what_the_server_lacks_and_what_no_rule_mentions() -> None:
    policy = compile_source(TYPO_POLICY, "typo.plr")
    report = compare(policy, ["spawn-task", "get-task", "list-tasks", "cancel-task", "purge-workspace"])
    assert report.missing == ("cancel-tsak",)
    assert report.rules == {"cancel-tsak": "typo.plr:5"}
    assert report.unmentioned == ("cancel-task", "get-task", "list-tasks", "spawn-task")
    lines = report.lines("at start")
    assert '"cancel-tsak" (typo.plr:5)' in lines[0] and "does not offer" in lines[0]
    assert "4 server tools are named by no rule (`default allow` decides them)" in lines[1]
    same = compare(policy, ["cancel-tsak", "purge-workspace"])
    assert same.clean and same.lines("at start") == []


def test_at_start_the_proxy_says_which_policy_tools_the_server_lacks(setup: ProxySetup) -> None:
    setup.policy.write_text(TYPO_POLICY)
    proc = run_proxy_cli(*setup.proxy_args()[2:], input=session_input(), timeout=60)
    assert proc.returncode == 0, proc.stderr_text
    err = proc.stderr_text
    assert 'at start, the policy names 1 tool the server does not offer' in err
    assert '"cancel-tsak" (policy.plr:5)' in err
    assert '4 server tools are named by no rule (`default allow` decides them): "cancel-task"' in err
    (rec,) = events(setup.all_records())
    assert rec["when"] == "at start" and rec["policy_tools_missing"] == ["cancel-tsak"]
    assert rec["server_tools_unmentioned"] == ["cancel-task", "get-task", "list-tasks", "spawn-task"]
    assert "tool" not in rec and "effect" not in rec  # an event, not a decision


def test_a_policy_that_fits_the_server_is_quiet(setup: ProxySetup) -> None:
    proc = run_proxy_cli(*setup.proxy_args("--strict-tools")[2:], input=session_input(), timeout=60)
    assert proc.returncode == 0, proc.stderr_text
    assert "does not offer" not in proc.stderr_text and "named by no rule" not in proc.stderr_text
    assert events(setup.all_records()) == []


def test_strict_tools_refuses_to_start_on_a_tool_the_server_lacks(setup: ProxySetup) -> None:
    setup.policy.write_text(TYPO_POLICY)
    proc = run_proxy_cli(*setup.proxy_args("--strict-tools")[2:], input=session_input(), timeout=60)
    assert proc.returncode == 2, proc.stderr_text
    assert "--strict-tools: the policy names 1 tool(s) the server does not offer: cancel-tsak" in proc.stderr_text
    assert "Traceback" not in proc.stderr_text
    assert setup.called_tools() == []


async def test_reload_reports_and_strict_tools_keeps_the_old_policy(setup: ProxySetup) -> None:
    setup.policy.write_text(EXACT_POLICY)
    async with inprocess(setup, strict_tools=True) as ip:
        await ip.proxy.compare_tools(ip.proxy.up, "at start")
        old = ip.proxy.decisions.loaded
        setup.policy.write_text(EXACT_POLICY + 'allow tool "get-tsak"\n')
        with pytest.raises(PlrError, match="--strict-tools: the new policy names tools the server does not offer: get-tsak"):
            ip.proxy.apply_policy(load_policy_file(setup.policy))
        assert ip.proxy.decisions.loaded is old
    setup.policy.write_text(EXACT_POLICY)
    async with inprocess(setup) as ip:  # without --strict-tools: applied, and said
        await ip.proxy.compare_tools(ip.proxy.up, "at start")
        setup.policy.write_text(EXACT_POLICY + 'allow tool "get-tsak"\n')
        new = load_policy_file(setup.policy)
        ip.proxy.apply_policy(new)
        assert ip.proxy.decisions.loaded is new
    assert 'after a policy reload, the policy names 1 tool the server does not offer' in setup.stderr.read_text()
    assert [r["when"] for r in events(setup.all_records())] == ["after a policy reload"]


async def test_tools_list_changed_compares_again(setup: ProxySetup) -> None:
    fakes: list[Any] = []
    setup.policy.write_text(EXACT_POLICY)
    async with inprocess(setup, on_fake=fakes.append) as ip:
        await ip.proxy.compare_tools(ip.proxy.up, "at start")
        fakes[0].mcp._tool_manager._tools.pop("list-tasks")  # noqa: SLF001 - the server drops a tool
        async with Client(ip.server, mode="legacy") as c:
            await c.call_tool("spawn-task", {"prompt": "unrug"})  # the server sends tools/list_changed
            with anyio.fail_after(10):
                while not events(setup.all_records()):
                    await anyio.sleep(0.02)
    (rec,) = events(setup.all_records())
    assert rec["when"] == "after the server's tools/list_changed" and rec["policy_tools_missing"] == ["list-tasks"]
    assert "after the server's tools/list_changed, the policy names 1 tool" in setup.stderr.read_text()


async def test_a_server_that_cannot_be_listed_is_reported_and_strict_refuses(setup: ProxySetup) -> None:
    class Broken:
        class session:  # noqa: N801 - mimics mcp.Client.session
            @staticmethod
            async def send_request(*a: Any, **k: Any) -> Any:
                raise RuntimeError("boom")

    async with inprocess(setup, strict_tools=True) as ip:
        from dsl.proxy.tool_check import StrictToolsError

        with pytest.raises(StrictToolsError, match="could not be listed"):
            await ip.proxy.check_tools_at_start(Broken())
    assert "at start, could not list the server's tools to compare them with the policy: RuntimeError: boom" in setup.stderr.read_text()


def test_the_notification_class_is_the_one_the_relay_sees() -> None:
    # the relay keys on this class: a rename in the SDK must fail here, not silently stop the check
    assert types.ToolListChangedNotification().method == "notifications/tools/list_changed"


def test_the_policy_warnings_are_printed_at_start(setup: ProxySetup) -> None:
    """A desktop-client user only ever runs the proxy: a warning `plr check` would print must
    reach its stderr too."""
    setup.policy.write_text(EXACT_POLICY + 'limit tool "nope" to 3 per minute\n')
    proc = run_proxy_cli(*setup.proxy_args()[2:], input=session_input(), timeout=60)
    assert proc.returncode == 0, proc.stderr_text
    assert f"plr proxy: policy warning: {setup.policy}:7:1: `nope` is denied by `default deny`" in proc.stderr_text


def test_plr_audit_shows_the_comparison_as_one_escaped_line(setup: ProxySetup) -> None:
    # a control character in a rule's tool name is refused before start (no MCP tool holds one),
    # named escaped, never written raw to the terminal
    setup.policy.write_text(TYPO_POLICY.replace("cancel-tsak", "cancel-tsak\\u001b[2K"))
    refused = run_proxy_cli(*setup.proxy_args()[2:], input=session_input(), timeout=60)
    assert refused.returncode == 2 and "U+001B" in refused.stderr_text and "\x1b" not in refused.stderr_text
    setup.policy.write_text(TYPO_POLICY)
    assert run_proxy_cli(*setup.proxy_args()[2:], input=session_input(), timeout=60).returncode == 0
    out = run_proxy_cli("audit", str(setup.audit))
    (line,) = [x for x in out.stdout_text.splitlines() if "tools_compared" in x]
    assert "at start; policy tools the server lacks: cancel-tsak" in line and "\x1b" not in out.stdout_text
    assert "server tools no rule names: cancel-task, get-task, list-tasks, spawn-task" in line
    only_calls = run_proxy_cli("audit", str(setup.audit), "--effect", "deny")
    assert "tools_compared" not in only_calls.stdout_text
