"""End to end over stdio, real processes: SDK Client -> `plr proxy` -> the fake codex worker.

Each test is one proxy session (a proxy process starts in about a second, mostly importing the
SDK), so the scenarios of the issue are grouped per session rather than one per test.
"""

from __future__ import annotations

import json
import sys
import warnings

import anyio
import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

from mcp import Client, types

from .conftest import ProxySetup, run_proxy_cli
from .helpers import Human, sha, text

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ERAS = [pytest.param("legacy", id="2025-11-25"), pytest.param("auto", id="2026-07-28")]

# (tool, args, effect, code) in call order
SCRIPT = [
    ("list-tasks", {}, "allow", "allowed"),
    ("spawn-task", {"prompt": "write tests"}, "allow", "allowed"),
    ("spawn-task", {"prompt": "x" * 20001}, "deny", "require"),
    ("purge-workspace", {}, "deny", "hidden"),
    ("format-disk", {"device": "/dev/sda"}, "deny", "default"),
    ("cancel-task", {"task_id": list("abcdef")}, "deny", "deny_if"),
    ("get-task", {"task_id": "t-1"}, "allow", "allowed"),
    ("get-task", {"task_id": "t-1"}, "allow", "allowed"),
    ("get-task", {"task_id": "t-1"}, "allow", "allowed"),
    ("get-task", {"task_id": "t-1"}, "deny", "rate_limited"),
]


@pytest.mark.parametrize("mode", ERAS)
async def test_policy_is_enforced_and_logged_end_to_end(setup: ProxySetup, mode: str) -> None:
    human = Human([("accept", {"ok": True})])  # answers the upstream server's own question
    logs: list[str] = []
    progress: list[float] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(p)

    with anyio.fail_after(40):
        async with Client(
            setup.params(), mode=mode, cache=None, elicitation_callback=human, logging_callback=on_log
        ) as c:
            assert c.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
            # hidden tools vanish from tools/list; denied-but-visible tools stay
            assert [t.name for t in (await c.list_tools()).tools] == [
                "spawn-task",
                "get-task",
                "list-tasks",
                "cancel-task",
            ]
            results = [await c.call_tool(tool, args) for tool, args, _, _ in SCRIPT]
            # everything else passes through: resources, prompts, progress, logging, ping
            assert [r.uri for r in (await c.list_resources()).resources] == ["codex://status"]
            read = await c.read_resource("codex://status")
            assert json.loads(read.contents[0].text) == {"tasks": 1}
            prompt = await c.get_prompt("review", {"task_id": "t-7"})
            assert "t-7" in prompt.messages[0].content.text
            slow = await c.call_tool("spawn-task", {"prompt": "sleep:0.3"}, progress_callback=on_progress)
            assert not slow.is_error
            if mode == "legacy":
                await c.call_tool("spawn-task", {"prompt": "log:hello from upstream"})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    await c.send_ping()
                # a server-to-client request of the upstream server reaches this client
                asked = await c.call_tool("spawn-task", {"prompt": "ask:Really?"})
                assert json.loads(text(asked)) == {"asked": "accept", "ok": True}
    assert progress == [0, 1, 2, 3, 4]
    if mode == "legacy":
        assert logs == ["hello from upstream"]
        assert [p.message for p in human.seen] == ["Really?"]
    else:
        assert human.seen == []

    # the denial texts name the tool, the rule and the reason
    by_code = {code: r for (_, _, _, code), r in zip(SCRIPT, results, strict=True)}
    # a hidden tool answers exactly as one that does not exist (the audit says hidden)
    assert (
        text(by_code["hidden"])
        == "plr: purge-workspace denied by policy: tool `purge-workspace` is not allowed by policy (default deny)"
    )
    assert by_code["hidden"].meta["plr/decision"]["code"] == "default"
    assert text(by_code["deny_if"]) == "plr: cancel-task denied by policy.plr:21: Cancel at most five tasks per call"
    assert "not allowed by policy (default deny)" in text(by_code["default"])
    limited = by_code["rate_limited"]
    assert text(limited).startswith("plr: get-task denied by policy.plr:24: rate limit:")
    assert "retry after" in text(limited)
    decision = limited.meta["plr/decision"]
    assert decision["code"] == "rate_limited" and 0 < decision["retry_after"] <= 60
    for (_, _, effect, _), r in zip(SCRIPT, results, strict=True):
        assert r.is_error is (effect == "deny")

    # the server saw the allowed calls and nothing else
    extra = ["spawn-task"] * (3 if mode == "legacy" else 1)
    assert setup.called_tools() == ["list-tasks", "spawn-task", "get-task", "get-task", "get-task", *extra]

    # one audit record per decision, in order, arguments hashed
    recs = setup.records()
    assert len(recs) == len(SCRIPT) + len(extra)
    for (tool, args, effect, code), rec in zip(SCRIPT, recs[: len(SCRIPT)], strict=True):
        assert (rec["tool"], rec["effect"], rec["code"]) == (tool, effect, code)
        assert rec["args_sha256"] == sha(args) and "args" not in rec
        assert rec["server"] == "mcp-codex-worker" and len(rec["policy_sha256"]) == 64
        assert rec["ts"].endswith("Z") and isinstance(rec["latency_us"], int)
    assert recs[SCRIPT.index(("get-task", {"task_id": "t-1"}, "deny", "rate_limited"))]["retry_after"] > 0
    assert len({r["session"] for r in recs}) == 1

    if mode == "legacy":  # the reader agrees with the writer
        out = run_proxy_cli("audit", str(setup.audit), "--effect", "deny", "--format", "json")
        assert out.returncode == 0, out.stderr_text
        assert [json.loads(x)["code"] for x in out.stdout_text.splitlines()] == [
            "require",
            "hidden",
            "default",
            "deny_if",
            "rate_limited",
        ]


@pytest.mark.parametrize("mode", ERAS)
async def test_approval_by_elicitation(setup: ProxySetup, mode: str) -> None:
    human = Human(
        [
            ("accept", True),
            ("accept", False),
            ("decline", None),
            ("cancel", None),
            ("slow", 6),  # far past the 1.2 s deadline: a loaded machine cannot blur the two
            ("accept", {"approve": "yes"}),
        ]
    )
    calls = [{"task_id": f"t-{i}"} for i in range(6)]
    with anyio.fail_after(40):
        async with Client(
            setup.params("--approval-timeout", "1.2"), mode=mode, cache=None, elicitation_callback=human
        ) as c:
            results = []
            for args in calls:
                t0 = anyio.current_time()
                results.append((await c.call_tool("cancel-task", args), anyio.current_time() - t0))
    assert [p.message for p in human.seen] == [
        f'Allow cancel-task({{"task_id":"t-{i}"}})? Destructive: cancels running tasks; a human must approve'
        for i in range(6)
    ]
    assert human.seen[0].requested_schema == {
        "type": "object",
        "properties": {"approve": {"type": "boolean"}},
        "required": ["approve"],
    }
    (ok, _), (no, _), (declined, _), (cancelled, _), (late, late_took), (sloppy, _) = results
    assert not ok.is_error and json.loads(text(ok)) == {"cancelled": ["t-0"]}
    for r in (no, declined, cancelled, sloppy):  # only accept + approve: true approves
        assert r.is_error and text(r) == (
            "plr: cancel-task denied by policy.plr:18: Destructive: cancels running tasks; a human must approve"
            " (a human declined this call)"
        )
    assert late.is_error and "(no approval within 1.2 s)" in text(late)
    assert late.meta["plr/decision"]["code"] == "approval_timeout"
    if mode == "legacy":
        assert late_took < 5  # the proxy gave up at its own deadline, not when the client answered (6 s)
    assert setup.called_tools() == ["cancel-task"]
    assert setup.calls()[0]["args"] == {"task_id": "t-0"}
    recs = setup.records()
    assert [(r["effect"], r["code"]) for r in recs] == [
        ("approval_required", "require"),
        ("allow", "allowed"),
        *[("approval_required", "require"), ("deny", "approval_declined")] * 3,
        ("approval_required", "require"),
        ("deny", "approval_timeout"),
        ("approval_required", "require"),
        ("deny", "approval_declined"),
    ]
    for ask, final in zip(recs[::2], recs[1::2], strict=True):
        assert ask["call"] == final["call"] and final["approval"] == "elicitation"


async def test_approval_through_the_local_queue(setup: ProxySetup) -> None:
    """A client without elicitation: the operator answers with `plr approvals` (the real CLI)."""
    db = str(setup.db)

    async def operator(verb: str) -> str:
        from dsl.state.sqlite import SqliteApprovalQueue as ApprovalQueue

        q = ApprovalQueue(setup.db)
        while not (pending := await anyio.to_thread.run_sync(q.list)):
            await anyio.sleep(0.05)
        [a] = pending
        assert a.tool == "cancel-task" and json.loads(a.args) == {"task_id": "t-9"}
        listing = await anyio.to_thread.run_sync(lambda: run_proxy_cli("approvals", "--db", db, "list"))
        assert a.id in listing.stdout_text and "cancel-task" in listing.stdout_text, listing.stderr_text
        res = await anyio.to_thread.run_sync(lambda: run_proxy_cli("approvals", "--db", db, verb, a.id))
        assert res.returncode == 0, res.stderr_text
        return a.id

    ids: list[str] = []
    with anyio.fail_after(60):
        async with Client(setup.params("--approval-timeout", "30"), mode="legacy", cache=None) as c:
            results = []
            for verb in ("grant", "deny"):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda v=verb: _append(ids, operator(v)))
                    results.append(await c.call_tool("cancel-task", {"task_id": "t-9"}))
    granted, denied = results
    assert not granted.is_error
    assert denied.is_error and "a human declined this call" in text(denied)
    assert setup.called_tools() == ["cancel-task"]  # the grant covered exactly one call
    # an answered request cannot be answered again
    again = run_proxy_cli("approvals", "--db", db, "grant", ids[1])
    assert again.returncode == 1 and "is not pending (it is denied)" in again.stderr_text
    recs = [r for r in setup.records() if r["effect"] != "approval_required"]
    assert [(r["effect"], r["approval"], r["approval_id"]) for r in recs] == [
        ("allow", "queue", ids[0]),
        ("deny", "queue", ids[1]),
    ]


async def _append(out: list[str], coro) -> None:
    out.append(await coro)


async def test_many_concurrent_calls_and_a_cancellation(setup: ProxySetup) -> None:
    n = 300
    results: dict[int, str] = {}
    with anyio.fail_after(60):
        async with Client(setup.params(), mode="legacy", cache=None) as c:
            with anyio.move_on_after(0.8):  # the client gives up: the cancel travels upstream
                await c.call_tool("spawn-task", {"prompt": "sleep:30"})

            async def one(i: int) -> None:
                results[i] = text(await c.call_tool("spawn-task", {"prompt": f"p{i}"}))

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
            assert json.loads(text(await c.call_tool("list-tasks", {}))) == sorted(
                json.loads(v)["task_id"] for v in results.values()
            )  # the cancelled spawn never completed upstream
    assert len(results) == n and len({json.loads(v)["task_id"] for v in results.values()}) == n
    calls = setup.calls()
    prompts = [c["args"]["prompt"] for c in calls if c["tool"] == "spawn-task"]
    assert sorted(p for p in prompts if p != "sleep:30") == sorted(f"p{i}" for i in range(n))
    assert len(setup.records()) == n + 2


def test_unloadable_policy_refuses_to_start(setup: ProxySetup) -> None:
    setup.policy.write_text("allow tool \n")
    proc = run_proxy_cli(*setup.proxy_args()[2:], input=b"", timeout=30)
    assert proc.returncode == 2
    assert "policy.plr:1" in proc.stderr_text and "not starting" in proc.stderr_text
    assert setup.calls() == []  # the server was never started
    missing = run_proxy_cli(
        "--policy", str(setup.tmp / "nope.json"), "--audit", str(setup.audit), "--", sys.executable, "-c", "pass"
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr_text


# over stdio the server is started once the client has said what it can do (its `initialize`)
HELLO = (
    json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}) + "\n"
).encode()  # fmt: skip


def test_upstream_that_cannot_start_is_a_clear_error(setup: ProxySetup) -> None:
    proc = run_proxy_cli(
        "--policy",
        str(setup.policy),
        "--audit",
        str(setup.audit),
        "--",
        str(setup.tmp / "no-such-server"),
        input=HELLO,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "cannot start the upstream MCP server" in proc.stderr_text
    # the client's initialize gets the reason as its error, not a closed pipe
    answer = json.loads(proc.stdout_text.splitlines()[0])
    assert answer["id"] == 1 and answer["error"]["message"].startswith("plr proxy: "), answer
    assert "Traceback" not in proc.stderr_text
    crash = run_proxy_cli(
        "--policy",
        str(setup.policy),
        "--audit",
        str(setup.audit),
        "--",
        sys.executable,
        "-c",
        "import sys; sys.exit(4)",
        input=HELLO,
        timeout=30,
    )
    assert crash.returncode == 1 and "cannot start the upstream MCP server" in crash.stderr_text


def test_server_that_never_answers_initialize_is_a_clear_error(setup: ProxySetup) -> None:
    """A silent server (it reads but never answers the handshake) must not hold the proxy for ever."""
    import time

    start = time.monotonic()
    proc = run_proxy_cli(
        "--policy", str(setup.policy), "--audit", str(setup.audit), "--start-timeout", "2",
        "--", sys.executable, "-c", "import sys, time\nfor _ in sys.stdin: pass\ntime.sleep(60)",
        input=HELLO, timeout=30,
    )
    assert time.monotonic() - start < 20
    assert proc.returncode == 1, proc.stderr_text
    assert "did not complete the MCP handshake within 2 s" in proc.stderr_text
    assert "Traceback" not in proc.stderr_text
