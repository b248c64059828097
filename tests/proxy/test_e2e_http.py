"""End to end over streamable HTTP on 127.0.0.1, real processes, both protocol eras."""

from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager

import anyio
import httpx2
import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

from .conftest import FAKE_SERVER, ProxySetup, base_env, http_proxy_process, http_server
from .helpers import Human, text

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def http_proxy(setup: ProxySetup, *extra: str, upstream_url: str | None = None) -> AbstractContextManager[str]:
    """The proxy over HTTP in front of ``upstream_url``, or of the fake server as its command."""
    upstream = upstream_url or [sys.executable, str(FAKE_SERVER)]
    return http_proxy_process(setup, *extra, upstream=upstream, env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)))


def fake_http_server(setup: ProxySetup) -> AbstractContextManager[str]:
    return http_server(FAKE_SERVER, base_env(FAKE_CODEX_LOG=str(setup.calls_log)))


async def test_http_front_both_eras_sessions_and_approvals(setup: ProxySetup) -> None:
    """Hidden tools, denials, elicitation (SSE back-channel and InputRequiredResult) and per-session
    rate limits with concurrent sessions, all against one HTTP proxy."""
    with http_proxy(setup, "--approval-timeout", "10") as url:
        with anyio.fail_after(60):

            async def session(mode: str, name: str, human: Human) -> list[types.CallToolResult]:
                info = types.Implementation(name=name, version="1")
                async with Client(url, mode=mode, cache=None, elicitation_callback=human, client_info=info) as c:
                    assert c.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
                    names = [t.name for t in (await c.list_tools()).tools]
                    assert names == ["spawn-task", "get-task", "list-tasks", "cancel-task"]
                    out = [
                        await c.call_tool("purge-workspace", {}),
                        await c.call_tool("cancel-task", {"task_id": name}),
                    ]
                    for _ in range(4):
                        out.append(await c.call_tool("get-task", {"task_id": "t"}))
                    return out

            humans = {n: Human([("accept", True)]) for n in ("a", "b", "c", "d")}
            results: dict[str, list[types.CallToolResult]] = {}

            async def run(mode: str, name: str) -> None:
                results[name] = await session(mode, name, humans[name])

            async with anyio.create_task_group() as tg:  # four concurrent sessions, two per era
                tg.start_soon(run, "legacy", "a")
                tg.start_soon(run, "legacy", "b")
                tg.start_soon(run, "auto", "c")
                tg.start_soon(run, "auto", "d")

            # a malformed body gets a JSON-RPC error, and the proxy lives on
            async with httpx2.AsyncClient() as h:
                bad = await h.post(
                    url,
                    content=b"{not json",
                    headers={"content-type": "application/json", "accept": "application/json, text/event-stream"},
                )
            assert bad.status_code in (400, 422) and bad.json()["error"]["code"] in (-32700, -32600)
            async with Client(url, mode="legacy", cache=None) as c:
                assert not (await c.call_tool("list-tasks", {})).is_error
    for name, res in results.items():
        hidden, cancel, *gets = res
        assert hidden.is_error and "not allowed by policy (default deny)" in text(hidden)  # as if it did not exist
        assert not cancel.is_error and json.loads(text(cancel)) == {"cancelled": [name]}
        assert [g.is_error for g in gets] == [False, False, False, True], name  # 3 per minute per session
        assert "rate limit" in text(gets[-1]) and "retry after" in text(gets[-1])
        assert len(humans[name].seen) == 1
    assert sorted(c["args"]["task_id"] for c in setup.calls() if c["tool"] == "cancel-task") == ["a", "b", "c", "d"]
    assert len([c for c in setup.calls() if c["tool"] == "get-task"]) == 12
    assert "purge-workspace" not in setup.called_tools()  # denied calls never reach the server
    recs = setup.records()
    assert len(recs) == 4 * 7 + 1  # per session: hidden, ask + allow for cancel, four gets; + list-tasks
    sessions = {r["session"] for r in recs}
    assert len(sessions) == 5
    assert {s for s in sessions if s.startswith("stateless:")} == {"stateless:|c/1", "stateless:|d/1"}  # client info


async def test_http_upstream_and_bearer_identities(setup: ProxySetup) -> None:
    tokens = setup.tmp / "tokens.json"
    tokens.write_text(json.dumps({"tok-ops": "ops-bot", "tok-dev": "dev-bot"}))
    setup.policy.write_text(
        setup.policy.read_text() + '\ndeny tool "spawn-task" if identity != "ops-bot"\n'
        '    reason "only ops may spawn"\n'
    )
    with (
        fake_http_server(setup) as upstream,
        http_proxy(setup, "--auth-tokens", str(tokens), upstream_url=upstream) as url,
    ):
        with anyio.fail_after(40):
            async with httpx2.AsyncClient() as h:
                anon = await h.post(
                    url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                    headers={"accept": "application/json, text/event-stream"},
                )
                wrong = await h.post(
                    url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                    headers={"authorization": "Bearer nope"},
                )
            assert anon.status_code == 401 and wrong.status_code == 401

            async def as_(token: str):
                http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
                return Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None)

            async with await as_("tok-ops") as ops, await as_("tok-dev") as dev:
                ok = await ops.call_tool("spawn-task", {"prompt": "ship it"})
                no = await dev.call_tool("spawn-task", {"prompt": "ship it"})
                listed = await dev.call_tool("list-tasks", {})
    assert not ok.is_error and no.is_error and "only ops may spawn" in text(no)
    assert json.loads(text(listed)) == ["t-1"]
    assert setup.called_tools() == ["spawn-task", "list-tasks"]
    assert [(r["identity"], r["tool"], r["effect"]) for r in setup.records()] == [
        ("ops-bot", "spawn-task", "allow"),
        ("dev-bot", "spawn-task", "deny"),
        ("dev-bot", "list-tasks", "allow"),
    ]


async def test_a_stateless_caller_cannot_spend_another_sessions_limit(setup: ProxySetup) -> None:
    """A 2026-07-28 (stateless) request that carries another session's Mcp-Session-Id is not that
    session: it neither uses up the victim's per-session limit nor signs audit records as it."""
    with http_proxy(setup) as url:
        with anyio.fail_after(60):
            async with Client(url, mode="legacy", cache=None) as victim:
                assert not (await victim.call_tool("get-task", {"task_id": "v1"})).is_error  # 1 of 3
                victim_sid = {r["session"] for r in setup.records()}.pop()
                forged = httpx2.AsyncClient(headers={"mcp-session-id": victim_sid})
                async with forged, Client(streamable_http_client(url, http_client=forged), cache=None) as mallory:
                    assert mallory.protocol_version == "2026-07-28"
                    for _ in range(3):
                        await mallory.call_tool("get-task", {"task_id": "m"})
                for i in (2, 3):  # the victim still has its own three calls
                    assert not (await victim.call_tool("get-task", {"task_id": f"v{i}"})).is_error
    by_session = {}
    for r in setup.records():
        by_session.setdefault(r["session"], []).append(r["args_sha256"])
    assert len(by_session[victim_sid]) == 3
    others = [s for s in by_session if s != victim_sid]
    assert len(others) == 1 and others[0].startswith("stateless:") and len(by_session[others[0]]) == 3


async def test_a_request_with_an_id_that_is_not_a_string_or_integer_is_answered(setup: ProxySetup) -> None:
    """The SDK takes `"id": true` (or 1.5, or null) for a notification and answers 202, so the
    client would wait for ever: the proxy answers 400 with a JSON-RPC Invalid Request instead."""
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    with http_proxy(setup) as url:
        async with httpx2.AsyncClient() as h:
            for key, rid in (("id", "true"), ("id", "1.5"), ("id", "null"), ("id", "1e3"), ("\\u0069d", "true"), ("id", "[1]")):
                body = '{"jsonrpc": "2.0", "%s": %s, "method": "tools/call", "params": {"name": "get-task"}}' % (key, rid)
                r = await h.post(url, content=body.encode(), headers=headers)
                assert r.status_code == 400 and "the id must be a string or an integer" in r.text, (rid, r.text)
            # an id of the right kind is not touched, nor is an "id" deeper in the params
            ok = '{"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"_meta": {"id": true}}}'
            r = await h.post(url, content=ok.encode(), headers=headers)
            assert "the id must be a string or an integer" not in r.text, r.text
    assert setup.called_tools() == []


async def test_max_sessions_per_identity_keeps_one_identity_from_holding_them_all(setup: ProxySetup) -> None:
    """--max-sessions 3 --max-sessions-per-identity 2: Mallory's third session is refused (a clear
    JSON-RPC error naming the flag), and Alice still gets one; a slot comes back when one ends."""
    from mcp import MCPError

    tokens = setup.tmp / "tokens.json"
    tokens.write_text(json.dumps({"tok-m": "mallory", "tok-a": "alice"}))
    extra = ("--auth-tokens", str(tokens), "--max-sessions", "3", "--max-sessions-per-identity", "2")
    with fake_http_server(setup) as upstream, http_proxy(setup, *extra, upstream_url=upstream) as url:
        with anyio.fail_after(60):

            def as_(token: str) -> Client:
                http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
                return Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None)

            async with as_("tok-m") as m1, as_("tok-m") as m2:
                for m in (m1, m2):
                    assert not (await m.call_tool("list-tasks", {})).is_error
                async with as_("tok-m") as m3:
                    with pytest.raises(MCPError, match="too many sessions for identity mallory"):
                        await m3.call_tool("list-tasks", {})
                async with as_("tok-a") as a:
                    assert not (await a.call_tool("list-tasks", {})).is_error
            async with as_("tok-m") as m4:  # m1 and m2 ended: mallory's share is free again
                for _ in range(40):
                    try:
                        assert not (await m4.call_tool("list-tasks", {})).is_error
                        break
                    except MCPError:
                        await anyio.sleep(0.1)  # the ended sessions' upstream sessions are closing
                else:
                    raise AssertionError("mallory never got a session back")
    err = setup.stderr.read_text()
    assert "(--max-sessions-per-identity 2)" in err and "Traceback" not in err
