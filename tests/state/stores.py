"""The three limit stores behind one fixture, so a behaviour test runs against each of them.

``limit_store`` is parametrised over ``memory``, ``sqlite`` and ``redis``: a test asks it for a
store with ``limit_store(clock)`` and gets the in-process store, a SQLite file in the test's
temp dir reading ``clock``, or a real redis-server's store using the caller's ``now`` (the
clock the engine passes), so a virtual clock drives all three alike. One redis-server is
started per test module that imports the fixture (flushed before every test), not one per
test: the parametrised tests stay fast.

Import both names into a test module (``from tests.state.stores import limit_store,
redis_for_stores  # noqa: F401``); pytest finds fixtures in the module's namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dsl.state.base import LimitStore
from dsl.state.memory import MemoryLimitStore
from dsl.state.sqlite_limits import SqliteLimitStore

__all__ = ["STORES", "limit_store", "redis_for_stores", "StoreFactory"]

STORES = ("memory", "sqlite", "redis")

StoreFactory = Callable[[Callable[[], float]], LimitStore]


@pytest.fixture(scope="module")
def redis_for_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real redis-server (no persistence) for a module's parametrised store tests."""
    from tests.conftest import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=STORES)
def limit_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """``make(clock) -> store`` for the store named by the parameter (``make.kind``). Each call
    makes a new store object: SQLite ones share the test's file and Redis ones the (flushed)
    server, as the proxies of one machine or one fleet do; in-process ones share nothing, so a
    test that wants one set of counters makes one store."""
    kind = request.param
    opened: list[Any] = []
    if kind == "memory":

        def make(clock: Callable[[], float]) -> LimitStore:
            return MemoryLimitStore()

    elif kind == "sqlite":

        def make(clock: Callable[[], float]) -> LimitStore:
            store = SqliteLimitStore(tmp_path / "limits.sqlite", clock=clock)
            opened.append(store)
            return store

    else:
        from dsl.state.redis import RedisLimitStore

        server = request.getfixturevalue("redis_for_stores")
        client = server.client()
        client.flushdb()
        opened.append(client)

        def make(clock: Callable[[], float]) -> LimitStore:
            return RedisLimitStore(client, use_server_time=False)

    make.kind = kind  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for thing in opened:
            thing.close()
