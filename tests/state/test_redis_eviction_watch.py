"""A fleet's Redis that may evict plr's keys (``maxmemory`` with an evicting ``maxmemory-policy``)
makes limits fail open: an evicted counter starts from zero. The proxy refuses to start on one
unless ``--state`` says ``?allow_eviction=1``, and while it runs it keeps looking (a later
``CONFIG SET`` denies the calls that need Redis until it is undone, or only warns if accepted),
and says when keys really were evicted (``INFO evicted_keys`` rose). Real redis-server throughout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("redis", reason="these tests need redis-py (pip install 'plr[test]')")

from dsl.compiler import compile_source  # noqa: E402
from dsl.engine import Engine  # noqa: E402
from dsl.state.base import StateUnavailable  # noqa: E402
from dsl.state.redis import RedisState  # noqa: E402
from dsl.state.redis_link import check_state_url  # noqa: E402

POLICY = compile_source(
    'default deny\nallow tool "get-task"\nlimit tool "get-task" to 100 per minute per session\nallow tool "list-tasks"\n',
    "evict.plr",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _evicting(client: Any, policy: str = "allkeys-lru", maxmemory: str = "100mb") -> None:
    client.config_set("maxmemory", maxmemory)
    client.config_set("maxmemory-policy", policy)


def _safe(client: Any) -> None:
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "0")


def _wait_for(lines: list[str], needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in lines:
            if needle in line:
                return line
        time.sleep(0.02)
    raise AssertionError(f"{needle!r} not reported: {lines}")


@pytest.fixture
def watched(redis_server: Any) -> Iterator[Callable[..., tuple[RedisState, list[str]]]]:
    """``make(query="")`` -> a RedisState whose eviction watch looks every 50 ms, and its report lines."""
    made: list[RedisState] = []

    def make(query: str = "") -> tuple[RedisState, list[str]]:
        lines: list[str] = []
        state = RedisState(redis_server.url + query, report=lines.append, eviction_check_interval=0.05)
        made.append(state)
        watch = state.eviction_watch()
        watch.look(quiet=True)
        watch.start()
        return state, lines

    try:
        yield make
    finally:
        for s in made:
            s.close()


def _code(engine: Engine, tool: str = "get-task") -> str:
    return engine.decide(tool, {}, session="s1", identity="me").code


def test_a_redis_that_starts_evicting_while_running_is_refused_until_it_stops(redis_server, watched) -> None:
    state, lines = watched()
    engine = Engine(POLICY, store=state.limit_store)
    assert _code(engine) == "allowed"
    _evicting(redis_server.client())
    said = _wait_for(lines, "evicts keys when full")
    assert "maxmemory-policy allkeys-lru" in said and "state_unavailable" in said
    assert "?allow_eviction=1" in said  # how to accept the risk instead
    # a counter that may vanish must not decide: denied, never let through
    assert [_code(engine) for _ in range(3)] == ["state_unavailable"] * 3
    assert _code(engine, "list-tasks") == "allowed"  # a tool without limits does not need Redis
    with pytest.raises(StateUnavailable, match="maxmemory-policy allkeys-lru"):
        state.approval_queue().list()  # the approval queue too
    assert len([x for x in lines if "evicts keys when full" in x]) == 1  # said once, not per call
    _safe(redis_server.client())
    back = _wait_for(lines, "no longer evicts keys")
    assert "maxmemory-policy noeviction" in back and "4 request(s) were denied" in back
    assert _code(engine) == "allowed"
    assert "Traceback" not in "".join(lines)


@pytest.mark.parametrize("policy", ["volatile-ttl", "volatile-lru", "allkeys-random"])
def test_every_evicting_policy_is_refused(redis_server, watched, policy: str) -> None:
    state, lines = watched()
    _evicting(redis_server.client(), policy)
    _wait_for(lines, f"maxmemory-policy {policy}")
    with pytest.raises(StateUnavailable):
        state.limit_store.acquire([("k", 5, 60.0)], 0.0)


def test_an_accepted_evicting_redis_is_only_warned_about(redis_server, watched) -> None:
    state, lines = watched("?allow_eviction=1")
    engine = Engine(POLICY, store=state.limit_store)
    _evicting(redis_server.client())
    said = _wait_for(lines, "evicts keys when full")
    assert said.startswith("plr proxy: warning: ") and "allow_eviction=1" in said
    assert _code(engine) == "allowed"
    _safe(redis_server.client())
    assert "request(s) were denied" not in _wait_for(lines, "no longer evicts keys")


def test_a_refusal_holds_while_redis_does_not_answer(redis_server) -> None:
    """Not knowing is not a reason to let calls through: only Redis saying it no longer evicts
    lifts the refusal (here a fresh redis-server, with the defaults)."""
    lines: list[str] = []
    _evicting(redis_server.client())
    state = RedisState(redis_server.url, report=lines.append, eviction_check_interval=0)
    try:
        watch = state.eviction_watch()
        assert watch.look(quiet=True) is not None and lines == []  # quiet: the caller says it
        redis_server.stop()
        assert watch.look() is not None  # no answer: the risk last seen stands
        with pytest.raises(StateUnavailable, match="may evict"):
            state.limit_store.acquire([("k", 5, 60.0)], 0.0)
        redis_server.start()
        assert watch.look() is None
        assert state.limit_store.acquire([("k", 5, 60.0)], 0.0) is None
        assert len(lines) == 1 and "no longer evicts keys" in lines[0]
    finally:
        state.close()


def test_keys_evicted_between_two_looks_are_reported(redis_server) -> None:
    """Evicting for a moment and setting it back between two looks leaves evidence: INFO
    evicted_keys rose."""
    client = redis_server.client()
    lines: list[str] = []
    state = RedisState(redis_server.url, report=lines.append, eviction_check_interval=0)
    try:
        watch = state.eviction_watch()
        assert watch.look(quiet=True) is None
        _evicting(client, maxmemory="2mb")
        pipe = client.pipeline(transaction=False)
        for i in range(20000):
            pipe.set(f"filler:{i}", "x" * 100)
        pipe.execute()
        _safe(client)
        assert watch.look() is None  # no risk now ...
        assert len(lines) == 1 and "evicted" in lines[0] and "INFO evicted_keys 0 -> " in lines[0], lines
        assert "limit counters" in lines[0]
        assert watch.look() is None and len(lines) == 1  # ... and said once per rise
    finally:
        state.close()


def test_allow_eviction_in_the_state_url_is_plrs_and_checked(redis_server) -> None:
    state = RedisState(redis_server.url + "?allow_eviction=1")
    try:
        assert state.allow_eviction and state.ping()  # redis-py never sees the parameter
    finally:
        state.close()
    assert not RedisState(redis_server.url).allow_eviction  # secure by default
    assert not RedisState(redis_server.url + "?allow_eviction=0").allow_eviction
    for bad in ("?allow_eviction=maybe", "?allow_eviction", "?allow_eviction=1&allow_eviction=1"):
        with pytest.raises(ValueError, match="allow_eviction"):
            check_state_url(redis_server.url + bad)


# --- the proxy ------------------------------------------------------------------------------


def _proxy(tmp_path: Path, state: str) -> Any:
    pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")
    from tests.proxy.conftest import FAKE_SERVER, run_proxy_cli

    policy = tmp_path / "policy.plr"
    policy.write_text('default deny\nallow tool "get-task"\nlimit tool "get-task" to 10 per minute per session\n')
    return run_proxy_cli(
        "proxy", "--policy", str(policy), "--audit", str(tmp_path / "audit.jsonl"), "--state", state,
        "--", sys.executable, str(FAKE_SERVER),
        input=b"", timeout=60,
    )  # fmt: skip


@pytest.mark.slow
def test_the_proxy_refuses_to_start_on_an_evicting_redis(tmp_path: Path, redis_server) -> None:
    _evicting(redis_server.client())
    out = _proxy(tmp_path, redis_server.url)
    assert out.returncode == 2, out.stderr_text  # as the CLI's other configuration errors
    err = out.stderr_text
    assert "evicts keys when full (maxmemory 104857600, maxmemory-policy allkeys-lru)" in err
    assert f"not starting (to accept the risk: --state '{redis_server.url}?allow_eviction=1')" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_the_proxy_refuses_a_bad_allow_eviction(tmp_path: Path, redis_server) -> None:
    out = _proxy(tmp_path, redis_server.url + "?allow_eviction=maybe")
    assert out.returncode == 2 and "allow_eviction=maybe" in out.stderr_text and "Traceback" not in out.stderr_text


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_proxy_notices_a_redis_that_starts_evicting_while_it_runs(tmp_path: Path, redis_server) -> None:
    """No restart, no call paying a round trip: the proxy's watch looks every few seconds."""
    pytest.importorskip("mcp", reason="the fleet tests need the `mcp` SDK (pip install 'plr[test]')")
    from tests.fleet.conftest import replicas
    from tests.fleet.helpers import LIMIT_POLICY, agent, code_of

    policy = tmp_path / "policy.plr"
    policy.write_text(LIMIT_POLICY)
    with replicas(tmp_path, str(policy), "--state", redis_server.url, n=1) as (a,):
        async with agent(a.url) as c:
            assert code_of(await c.call_tool("get-task", {"task_id": "t0"})) == "allowed"
            _evicting(redis_server.client())
            await anyio.to_thread.run_sync(lambda: a.wait_stderr("denying every call that needs it", timeout=20))
            assert code_of(await c.call_tool("get-task", {"task_id": "t1"})) == "state_unavailable"
            assert code_of(await c.call_tool("list-tasks", {})) == "allowed"
            _safe(redis_server.client())
            await anyio.to_thread.run_sync(lambda: a.wait_stderr("no longer evicts keys", timeout=20))
            assert code_of(await c.call_tool("get-task", {"task_id": "t2"})) == "allowed"
    assert [r["code"] for r in a.records() if r["tool"] == "get-task"] == ["allowed", "state_unavailable", "allowed"]
    assert [c["args"]["task_id"] for c in a.calls() if c["tool"] == "get-task"] == ["t0", "t2"]


@pytest.mark.slow
def test_a_redis_that_will_not_say_whether_it_evicts_is_warned_about(tmp_path: Path, redis_server) -> None:
    # an ACL user without INFO: plr cannot tell whether counters may vanish, and says so at start
    # (it does not refuse: nothing shows a risk, and the operator may have set noeviction)
    redis_server.client().execute_command("ACL", "SETUSER", "plr", "on", ">pw", "~*", "&*", "+@all", "-info")
    url = f"redis://plr:pw@127.0.0.1:{redis_server.port}/0"
    out = _proxy(tmp_path, url)
    err = out.stderr_text
    assert out.returncode == 0, err
    assert "does not say whether it evicts keys (INFO memory refused" in err and "make sure its maxmemory-policy is noeviction" in err
    assert "plr:pw" not in err  # (the password is never printed)
    out = _proxy(tmp_path, redis_server.url)  # the default user may read INFO: no such warning
    assert out.returncode == 0 and "does not say whether it evicts" not in out.stderr_text, out.stderr_text
