"""Where a proxy keeps its limit counters without a fleet's Redis (issue #17).

A desktop client starts a new stdio proxy per launch: with in-process counters, `per day per
identity` would start from zero at each launch, a limit anyone resets by restarting the client.
So a policy with a limit gets the machine's SQLite file by default (its path printed at start),
``--state sqlite:PATH`` names another file, and ``--state memory`` keeps today's in-process
counters on purpose. Real proxy processes, one after the other, in front of the fake server.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from .conftest import CODEX_SERVER, ProxySetup, run_proxy_cli

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

LIMITED = f"""\
package limited
{CODEX_SERVER}
default deny
allow read tools
limit tool "list-tasks" to 2 per day per identity
"""

UNLIMITED = f"""\
package unlimited
{CODEX_SERVER}
default deny
allow read tools
"""


async def _launch(setup: ProxySetup, calls: int, *extra: str) -> list[str]:
    """One client launch: a fresh proxy process, ``calls`` calls of list-tasks, then it exits.
    The decision code of each call ("ok" when allowed)."""
    errlog = setup.stderr.open("a")
    out: list[str] = []
    try:
        with anyio.fail_after(30):
            async with Client(stdio_client(setup.params(*extra), errlog=errlog), mode="legacy", cache=None) as c:
                for _ in range(calls):
                    res = await c.call_tool("list-tasks", {})
                    out.append(res.meta["plr/decision"]["code"] if res.is_error else "ok")
    finally:
        errlog.close()
    return out


def _stderr(setup: ProxySetup) -> str:
    return setup.stderr.read_text() if setup.stderr.exists() else ""


async def test_by_default_a_limit_survives_the_client_restarting(tmp_path: Path) -> None:
    setup = ProxySetup(tmp_path, LIMITED)
    default_file = Path(os.environ["PLR_LIMITS_DB"])  # the suite's stand-in for ~/.local/state/plr
    assert await _launch(setup, 1) == ["ok"]
    assert await _launch(setup, 2) == ["ok", "rate_limited"]  # 2 per day: the first launch counted
    assert await _launch(setup, 1) == ["rate_limited"]
    err = _stderr(setup)
    assert f"plr proxy: limit counters: sqlite at {default_file}" in err
    assert "Traceback" not in err
    assert [r["code"] for r in setup.records()] == ["allowed", "allowed", "rate_limited", "rate_limited"]
    with sqlite3.connect(default_file) as db:  # the counts are in the file, not in a process
        assert db.execute("SELECT count(*) FROM limit_hits").fetchone() == (2,)


async def test_state_memory_keeps_counters_in_the_process(tmp_path: Path) -> None:
    setup = ProxySetup(tmp_path, LIMITED)
    assert await _launch(setup, 3, "--state", "memory") == ["ok", "ok", "rate_limited"]
    assert await _launch(setup, 1, "--state", "memory") == ["ok"]  # the operator asked for it
    assert "limit counters: memory (this process only" in _stderr(setup)
    assert not Path(os.environ["PLR_LIMITS_DB"]).exists()


async def test_state_sqlite_path_is_shared_by_launches_that_name_it(tmp_path: Path) -> None:
    setup = ProxySetup(tmp_path, LIMITED)
    mine = tmp_path / "counters" / "mine.sqlite"
    assert await _launch(setup, 2, "--state", f"sqlite:{mine}") == ["ok", "ok"]
    assert await _launch(setup, 1, "--state", f"sqlite:{mine}") == ["rate_limited"]
    assert await _launch(setup, 1) == ["ok"]  # the default file is another store
    assert mine.exists() and oct(mine.stat().st_mode & 0o777) == "0o600"  # who called what: private


async def test_a_policy_without_limits_opens_no_counters(tmp_path: Path) -> None:
    setup = ProxySetup(tmp_path, UNLIMITED)
    assert await _launch(setup, 1) == ["ok"]
    assert "limit counters" not in _stderr(setup)
    assert not Path(os.environ["PLR_LIMITS_DB"]).exists()


def test_a_bad_state_is_a_usage_error(setup: ProxySetup, tmp_path: Path) -> None:
    setup.policy.write_text(LIMITED)
    bad = run_proxy_cli(*setup.proxy_args("--state", "postgres://db/1")[2:])
    assert bad.returncode == 2, bad.stderr_text
    assert "unknown state store 'postgres://db/1'" in bad.stderr_text and "Traceback" not in bad.stderr_text
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unusable = run_proxy_cli(*setup.proxy_args("--state", f"sqlite:{blocker}/limits.sqlite")[2:])
    assert unusable.returncode == 2, unusable.stderr_text
    assert "cannot open the limit counters" in unusable.stderr_text and "not starting" in unusable.stderr_text
    assert "Traceback" not in unusable.stderr_text
    assert not setup.calls()  # nothing was started, nothing reached a server


async def test_watch_opens_the_counters_a_reloaded_policy_may_need(tmp_path: Path) -> None:
    """A watched policy may gain a limit on reload: its counters must not be in-process then."""
    setup = ProxySetup(tmp_path, UNLIMITED)
    assert await _launch(setup, 1, "--watch") == ["ok"]
    assert f"plr proxy: limit counters: sqlite at {os.environ['PLR_LIMITS_DB']}" in _stderr(setup)
