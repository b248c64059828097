"""State that outlives one decision: limit counters and the human-approval queue.

Where things live:

- ``base``: the ``LimitStore`` contract and ``StateUnavailable``, the one exception every
  backend raises when it cannot be reached (the call is then denied, never let through);
- ``queue``: the approval queue's contract (``ApprovalBackend``) and its ``Approval`` record;
- ``memory``: ``MemoryLimitStore``, the in-process counters an ``Engine`` uses by default;
- ``sqlite``: ``SqliteApprovalQueue``, the approval queue of one machine, and
  ``default_db_path``;
- ``sqlite_limits``: ``SqliteLimitStore``, limit counters in a file that survive restarts and
  are shared by the proxies of one machine (``--state sqlite:PATH``, the default when a policy
  has limits); ``open_limit_store`` turns a ``--state`` value into a store;
- ``redis``: the fleet backends behind ``--state redis://...`` (``RedisLimitStore``,
  ``RedisApprovalQueue``, ``RedisState`` that wires them) and ``redis_link``: URLs, clients and
  ``RedisHealth``, which turns any Redis failure into a fail-closed ``StateUnavailable``.

Nothing here imports the engine or the proxy, and the backends are imported only when chosen:
redis-py (an optional dependency), sqlite3 and anyio stay off the decision path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .base import LimitStore, StateUnavailable
from .memory import MemoryLimitStore

if TYPE_CHECKING:
    from .queue import ApprovalBackend
    from .redis import RedisState

__all__ = [
    "LimitStore", "MemoryLimitStore", "StateUnavailable", "open_queue", "queue_location", "open_limit_store",
    "limit_store_spec",
]  # fmt: skip


def limit_store_spec(state: str | None, *, has_limits: bool) -> str:
    """The limit store a proxy uses for ``--state`` (None: not given): what was asked, else
    ``sqlite`` (the persistent local store) when the policy has a limit, else ``memory``.
    Secure by default: a limit that restarts from zero with the client is a limit anyone
    can reset."""
    if state:
        return state
    return "sqlite" if has_limits else "memory"


def open_limit_store(spec: str, *, policy_source: str | None = None) -> tuple[LimitStore, str]:
    """``(store, where)`` for a ``--state`` value: ``memory`` (this process only), ``sqlite``
    (``default_limits_path()``) or ``sqlite:PATH``. ``where`` is what the proxy prints at
    start. A Redis URL is opened by ``dsl.state.redis.RedisState`` (it also holds the
    approval queue); ValueError on anything else, StateUnavailable if the file cannot be used.
    ``policy_source`` (the proxy's ``--policy``) names the SQLite file's namespace: the proxies
    of a machine share the file, each policy its own counters."""
    if spec == "memory":
        return MemoryLimitStore(), "memory (this process only: counters restart with it)"
    if spec == "sqlite" or spec.startswith("sqlite:"):
        from .sqlite_limits import SqliteLimitStore, default_limits_path, policy_namespace

        raw = spec[len("sqlite:"):] if spec.startswith("sqlite:") else ""
        path = Path(os.path.expanduser(raw)) if raw else default_limits_path()
        store = SqliteLimitStore(path, namespace=policy_namespace(policy_source) if policy_source else "")
        return store, f"sqlite at {path}"
    raise ValueError(f"unknown state store {spec!r}: use memory, sqlite, sqlite:PATH or redis://HOST:PORT/DB")


def open_queue(state: RedisState | None, db_path: str | os.PathLike[str] | None) -> ApprovalBackend:
    """The Redis queue of ``state`` if given, else SQLite at ``db_path``."""
    if state is not None:
        return state.approval_queue()
    from .sqlite import SqliteApprovalQueue, default_db_path

    return SqliteApprovalQueue(db_path if db_path is not None else default_db_path(None))


def queue_location(
    state: RedisState | None, approvals_db: str | os.PathLike[str] | None, audit_path: str | os.PathLike[str] | None
) -> tuple[str, str]:
    """Where a proxy's approval queue is, without opening or creating it: (the place, for
    messages: a file, or ``redis at URL`` with any password hidden; the `plr approvals` options
    that reach it, e.g. `` --db FILE``). The same choice ``ApprovalFlow`` makes."""
    if state is not None:
        from .redis import state_cli_hint

        return f"redis at {state.display}", state_cli_hint(state.display)
    from .sqlite import db_cli_hint, queue_db_path

    path = queue_db_path(approvals_db, audit_path)
    return str(path), db_cli_hint(path)
