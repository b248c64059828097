"""A stdio client that writes its requests and closes stdin at once (`printf ... | plr proxy`):
the requests it sent are still answered, within a bound, before the proxy exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

from tests.proxy.conftest import ProxySetup, base_env, run_proxy_cli

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "sh", "version": "1"}}}  # fmt: skip


def piped(setup: ProxySetup, *messages: dict) -> tuple[int, dict]:
    """The proxy's exit code and its answers by id, for ``messages`` written at once, then EOF."""
    lines = [INIT, {"jsonrpc": "2.0", "method": "notifications/initialized"}, *messages]
    stdin = "".join(json.dumps(m) + "\n" for m in lines).encode()
    out = run_proxy_cli(*setup.proxy_args()[2:], input=stdin, timeout=120,
                        env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)))  # fmt: skip
    answers = {m["id"]: m for m in map(json.loads, out.stdout_text.splitlines()) if "id" in m}
    return out.returncode, answers


def test_requests_piped_in_are_answered_before_the_proxy_exits(tmp_path: Path) -> None:
    setup = ProxySetup(tmp_path)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "get-task", "arguments": {"task_id": "t-1"}}}  # fmt: skip
    listing = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
    code, answers = piped(setup, call, listing)
    assert code == 0
    assert sorted(answers) == [1, 2, 3]
    assert "result" in answers[2] and not answers[2]["result"].get("isError"), answers[2]  # not "Connection closed"
    assert "get-task" in [t["name"] for t in answers[3]["result"]["tools"]]
    assert setup.called_tools() == ["get-task"]


def test_an_answer_to_a_client_gone_both_ways_still_frees_its_id() -> None:
    """The end-of-input grace waits for the ids in flight: an answer the closed output cannot take
    must still free its id, or a client gone both ways holds the proxy for the whole grace."""
    import anyio
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    from dsl.proxy.stdio import _FrontWrite, _InFlight

    in_flight = _InFlight()
    req = types.JSONRPCRequest(jsonrpc="2.0", id=7, method="tools/call", params={"name": "x"})
    assert in_flight.claim(req) and in_flight.ids
    front = _FrontWrite(writer=None, in_flight=in_flight)  # type: ignore[arg-type]  # never written to: closed
    front.close()
    answer = SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=7, result={}))

    async def send() -> None:
        with pytest.raises(anyio.ClosedResourceError):
            await front.send(answer)

    anyio.run(send)
    assert not in_flight.ids
