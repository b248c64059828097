"""A fleet's Redis that may evict plr's keys (``maxmemory`` with an evicting ``maxmemory-policy``)
makes limits fail open: an evicted counter starts from zero. The proxy refuses to start on one
unless ``--state`` says ``?allow_eviction=1``, and while it runs it keeps looking (a later
``CONFIG SET`` denies the calls that need Redis until it is undone, or only warns if accepted),
and says when keys really were evicted (``INFO evicted_keys`` rose). A Redis that will not say
(INFO refused) is refused alike; one unreachable at start is refused until the watch has read it.
No reason that reaches the agent names the Redis, and no line shows a credential. Real
redis-server throughout.
"""

from __future__ import annotations

import shutil
import subprocess
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
from dsl.state.redis_link import check_state_url, display_url  # noqa: E402

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


def _user_without_info(redis_server: Any) -> str:
    """An ACL user that may do all but INFO; its URL."""
    redis_server.client().execute_command("ACL", "SETUSER", "plr", "on", ">pw", "~*", "&*", "+@all", "-info")
    return f"redis://plr:pw@127.0.0.1:{redis_server.port}/0"


@pytest.mark.slow
def test_a_redis_that_will_not_say_whether_it_evicts_is_refused_unless_accepted(tmp_path: Path, redis_server) -> None:
    # an ACL user without INFO: plr cannot tell whether counters may vanish, so it does not start
    # unless the operator accepts it, as for a Redis that says it evicts
    url = _user_without_info(redis_server)
    out = _proxy(tmp_path, url)
    err = out.stderr_text
    assert out.returncode == 2, err
    assert "does not say whether it evicts keys (INFO memory refused" in err and "make sure its maxmemory-policy is noeviction" in err
    assert "not starting (to accept the risk: --state 'redis://plr:***@127.0.0.1:" in err and "/0?allow_eviction=1')" in err
    assert "plr:pw" not in err and "Traceback" not in err  # (the password is never printed)
    out = _proxy(tmp_path, url + "?allow_eviction=1")  # accepted: starts, with a warning
    err = out.stderr_text
    assert out.returncode == 0, err
    assert "plr proxy: warning: redis at redis://plr:***@" in err and "does not say whether it evicts keys" in err
    assert "accepted (allow_eviction=1 in --state): calls go on" in err and "plr:pw" not in err
    out = _proxy(tmp_path, redis_server.url)  # the default user may read INFO: no such line
    assert out.returncode == 0 and "does not say whether it evicts" not in out.stderr_text, out.stderr_text


def test_a_redis_that_will_not_say_whether_it_evicts_is_refused_while_running(redis_server) -> None:
    """INFO refused is no answer that it does not evict: calls needing Redis are denied until it
    says (or the operator accepted it), as for an evicting Redis."""
    url = _user_without_info(redis_server)
    lines: list[str] = []
    state = RedisState(url, report=lines.append, eviction_check_interval=0)
    accepted = RedisState(url + "?allow_eviction=1", eviction_check_interval=0)
    try:
        engine = Engine(POLICY, store=state.limit_store)
        assert state.eviction_watch().look() is not None
        assert "does not say whether it evicts keys" in lines[-1] and "denying every call" in lines[-1]
        assert _code(engine) == "state_unavailable"
        with pytest.raises(StateUnavailable, match="does not say whether it may evict"):
            state.approval_queue().list()
        assert accepted.eviction_watch().look() is not None  # accepted: calls go on
        assert _code(Engine(POLICY, store=accepted.limit_store)) == "allowed"
        redis_server.client().execute_command("ACL", "SETUSER", "plr", "+info")
        assert state.eviction_watch().look() is None
        assert "says that it does not evict keys" in lines[-1] and "2 request(s) were denied" in lines[-1]
        assert _code(engine) == "allowed"
        assert "pw" not in "".join(lines)
    finally:
        state.close()
        accepted.close()


# --- credentials and addresses ----------------------------------------------------------------


def test_a_password_in_the_query_is_hidden_like_one_in_userinfo() -> None:
    """redis-py reads ``?password=`` (and passes any other parameter to its connections, such
    as ``ssl_password``): every line and hint that shows the URL hides their values."""
    assert display_url("unix:///path/r.sock?password=s3cret") == "unix:///path/r.sock?password=***"
    shown = display_url("rediss://h:1/0?db=2&username=u&password=s3cret&ssl_password=k3y&PassWord=x&allow_eviction=1")
    assert shown == "rediss://h:1/0?db=2&username=u&password=***&ssl_password=***&PassWord=***&allow_eviction=1"
    assert display_url("unix://:s3cret@/path/r.sock?password=s3cret") == "unix://:***@/path/r.sock?password=***"
    assert display_url("redis://h:1/0?%70assword=s3cret") == "redis://h:1/0?%70assword=***"  # spelled in %-escapes
    assert display_url("redis://h:1/0?db=3") == "redis://h:1/0?db=3"  # nothing secret: unchanged


def _secret_user(redis_server: Any) -> str:
    """An ACL user whose password is given in the URL's query, as redis-py allows."""
    redis_server.client().execute_command("ACL", "SETUSER", "plr", "on", ">s3cret", "~*", "&*", "+@all")
    return f"redis://127.0.0.1:{redis_server.port}/0?username=plr&password=s3cret"


def test_no_reason_that_reaches_the_agent_names_the_redis(redis_server) -> None:
    """A decision's reason goes to the agent (``plr: TOOL denied: REASON``) and to the audit log:
    neither an evicting Redis nor an unreachable one puts its URL, password or address there.
    The operator's lines name it, with the password hidden."""
    url = _secret_user(redis_server)
    lines: list[str] = []
    state = RedisState(url, report=lines.append, eviction_check_interval=0)
    try:
        engine = Engine(POLICY, store=state.limit_store)
        assert _code(engine) == "allowed"
        _evicting(redis_server.client())
        assert state.eviction_watch().look() is not None
        evicting = engine.decide("get-task", {}, session="s1", identity="me")
        assert evicting.code == "state_unavailable" and "maxmemory-policy allkeys-lru" in evicting.reason
        _safe(redis_server.client())
        assert state.eviction_watch().look() is None
        redis_server.stop()
        down = engine.decide("get-task", {}, session="s1", identity="me")
        assert down.code == "state_unavailable" and "unreachable" in down.reason and "Connection refused" in down.reason
        for reason in (evicting.reason, down.reason):
            assert "s3cret" not in reason and "127.0.0.1" not in reason and str(redis_server.port) not in reason, reason
            assert "redis://" not in reason, reason
    finally:
        state.close()
    said = "\n".join(lines)
    assert "s3cret" not in said and f"redis at redis://127.0.0.1:{redis_server.port}/0?username=plr&password=***" in said


@pytest.mark.slow
def test_the_proxy_never_prints_a_password_given_in_the_query(tmp_path: Path, redis_server) -> None:
    url = _secret_user(redis_server)
    _evicting(redis_server.client())
    out = _proxy(tmp_path, url)
    err = out.stderr_text
    assert out.returncode == 2, err
    assert "s3cret" not in err, err
    shown = f"redis://127.0.0.1:{redis_server.port}/0?username=plr&password=***"
    assert f"limit counters shared in redis at {shown}" in err
    assert f"not starting (to accept the risk: --state '{shown}&allow_eviction=1')" in err


# --- a Redis unreachable at start -----------------------------------------------------------------


def _start_evicting_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A redis-server on ``port`` that evicts from its first answer (no window without the risk)."""
    import redis

    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_connect_timeout=0.2).info("server").get("process_id") == proc.pid:
                return proc
        except redis.exceptions.ConnectionError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def test_a_redis_unreachable_at_start_is_refused_until_the_watch_has_read_it(tmp_path: Path, redis_server) -> None:
    """Down when the proxy started, Redis may come back evicting: no call may count on it before
    the watch has read its settings (which it does at once, not an interval later)."""
    redis_server.stop()
    lines: list[str] = []
    state = RedisState(redis_server.url, report=lines.append)  # the proxy's interval: 5 s
    proc = None
    try:
        assert not state.ping()
        state.eviction_watch().start()
        proc = _start_evicting_redis(redis_server.port, tmp_path)
        time.sleep(0.6)  # past the health monitor's pause: a call would probe Redis, and find it answers
        with pytest.raises(StateUnavailable):
            state.limit_store.acquire([("k", 5, 60.0)], 0.0)
        said = _wait_for(lines, "evicts keys when full", timeout=2.0)  # long before 5 s
        assert "denying every call that needs it" in said
        with pytest.raises(StateUnavailable, match="may evict keys"):
            state.limit_store.acquire([("k", 5, 60.0)], 0.0)
    finally:
        state.close()
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)


def test_a_redis_unreachable_at_start_is_used_once_it_answers_that_it_does_not_evict(redis_server) -> None:
    redis_server.stop()
    lines: list[str] = []
    state = RedisState(redis_server.url, report=lines.append)  # the proxy's interval: 5 s
    try:
        assert not state.ping()
        state.eviction_watch().start()
        with pytest.raises(StateUnavailable):
            state.limit_store.acquire([("k", 5, 60.0)], 0.0)
        redis_server.start()  # redis-server's defaults: noeviction
        said = _wait_for(lines, "it does not evict keys", timeout=2.0)  # long before 5 s
        assert "maxmemory-policy noeviction" in said
        deadline = time.monotonic() + 2.0
        while True:  # (the health monitor's own pause after the outage, at most 2 s)
            try:
                assert state.limit_store.acquire([("k", 5, 60.0)], 0.0) is None
                break
            except StateUnavailable as e:
                assert "eviction" not in str(e) and time.monotonic() < deadline, e
                time.sleep(0.05)
    finally:
        state.close()
