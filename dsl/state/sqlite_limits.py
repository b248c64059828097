"""Limit counters in a SQLite file: they survive restarts and are shared by local proxies.

A desktop client starts a new stdio proxy per launch; with in-process counters a `per day per
identity` limit would start from zero at every launch (a limit anyone can reset by restarting
the client). ``SqliteLimitStore`` keeps the hits in a file (``--state sqlite:PATH``; by default
``limits.sqlite`` in plr's state directory), which every proxy on the machine can share:

- WAL journal, so readers never block the writer, and a busy timeout, so concurrent proxies
  wait their turn instead of failing;
- every check-and-record runs in one ``BEGIN IMMEDIATE`` transaction: the write lock is taken
  before the counts are read, so two processes can never both see room for the last call (no
  lost update, the cap is exact);
- time is this machine's wall clock (``time.time``), not the caller's: a monotonic clock means
  nothing to another process or after a reboot;
- any SQLite failure (locked past the timeout, corrupt, unwritable) raises
  ``StateUnavailable``: the engine denies the call (``state_unavailable``), never lets it through.

Same semantics and answers as ``MemoryLimitStore`` (a hit at ``t`` counts while
``now - t < window``), including spend caps and refunds (``spend``/``refund``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .base import StateUnavailable, added_up, spend_wait, state_home

__all__ = ["SqliteLimitStore", "default_limits_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS limit_hits (
    key     TEXT NOT NULL,
    t       REAL NOT NULL,
    amount  REAL NOT NULL,
    token   TEXT,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS limit_hits_key ON limit_hits(key, t);
CREATE INDEX IF NOT EXISTS limit_hits_expires ON limit_hits(expires);
"""

_SWEEP_EVERY = 512  # calls between removals of every expired hit (other keys' too)


def default_limits_path() -> Path:
    """``PLR_LIMITS_DB``, else ``limits.sqlite`` in plr's state directory."""
    env = os.environ.get("PLR_LIMITS_DB")
    return Path(env) if env else state_home() / "limits.sqlite"


def policy_namespace(source: str) -> str:
    """The namespace of a policy source's counters in a machine's limits file: a file by its
    real path (the same policy through two proxies, or across a client's restarts, shares its
    counters; a reload keeps them), anything else (a URL, a Redis key) by what names it."""
    if "://" in source:  # (hashed: a URL may hold a password)
        return "url:" + hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return os.path.realpath(os.path.expanduser(source))


def _expire(db: sqlite3.Connection, key: str, window: float, now: float) -> None:
    """Forget ``key``'s hits with ``now - t >= window``: the in-process store's rule to the last
    bit (``t <= now - window`` rounds differently at the edge), so every store answers alike.
    One cut well below the edge, then the few rows near it are tested one by one."""
    edge = now - window
    margin = 1e-12 * (1.0 + abs(now))
    db.execute("DELETE FROM limit_hits WHERE key = ? AND t < ?", (key, edge - margin))
    near = db.execute("SELECT rowid, t FROM limit_hits WHERE key = ? AND t <= ?", (key, edge + margin)).fetchall()
    gone = [(rowid,) for rowid, t in near if now - t >= window]
    if gone:
        db.executemany("DELETE FROM limit_hits WHERE rowid = ?", gone)


class SqliteLimitStore:
    """``LimitStore`` in a SQLite file shared by the proxies of one machine (see the module)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 5.0,
        namespace: str = "",
    ) -> None:
        """``namespace``: the counters of one policy source (``policy_namespace``). The proxies of
        a machine share the file; two with different policies must never share a counter: a store
        forgets a key's hits by the window of the call at hand, so another policy's `per second`
        limit at the same place would forget a `per day` limit's hits."""
        self.path = Path(path)
        self._ns = f"{namespace}\x02" if namespace else ""
        self._clock = clock
        self._lock = threading.Lock()
        self._calls = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():  # created private: counters say who called what
                os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            db = sqlite3.connect(
                str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
            if not mode or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL (journal mode {mode})")
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise StateUnavailable(f"sqlite limit store {self.path}: {e}") from None
        self._db = db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- the LimitStore contract ----------------------------------------------------------

    def acquire(self, keys: Sequence[tuple[str, int, float]], now: float) -> float | None:
        r = self.acquire_which(keys, now)
        return None if r is None else r[0]

    def acquire_which(self, keys: Sequence[tuple[str, int, float]], now: float) -> tuple[float, int] | None:
        r = self._run([(self._ns + k, mx, w, None) for k, mx, w in keys], None, record=True)
        return None if r is None else (r[0], r[1])

    def peek_which(self, keys: Sequence[tuple[str, int, float]], now: float) -> tuple[float, int] | None:
        r = self._run([(self._ns + k, mx, w, None) for k, mx, w in keys], None, record=False)
        return None if r is None else (r[0], r[1])

    def spend(
        self, entries: Sequence[tuple[str, float, float, float | None]], now: float, token: str
    ) -> tuple[float, int, float] | None:
        return self._run([(self._ns + k, *rest) for k, *rest in entries], token, record=True)  # type: ignore[misc]

    def refund(self, keys: Sequence[str], token: str) -> None:
        def go(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM limit_hits WHERE key = ? AND token = ?", [(self._ns + k, token) for k in keys])

        self._transaction(go)

    # -- inside one transaction -----------------------------------------------------------

    def _run(
        self, entries: Sequence[tuple[str, float, float, float | None]], token: str | None, *, record: bool
    ) -> tuple[float, int, float] | None:
        def go(db: sqlite3.Connection) -> tuple[float, int, float] | None:
            now = self._clock()
            worst: tuple[float, int, float] | None = None
            for i, (key, mx, window, amount) in enumerate(entries):
                _expire(db, key, window, now)
                if amount is None:
                    (n,) = db.execute("SELECT COUNT(*) FROM limit_hits WHERE key = ?", (key,)).fetchone()
                    if n >= mx:
                        (t,) = db.execute(
                            "SELECT t FROM limit_hits WHERE key = ? ORDER BY t LIMIT 1 OFFSET ?", (key, n - int(mx))
                        ).fetchone()
                        wait = max(t + window - now, 0.0)
                        if worst is None or wait > worst[0]:
                            worst = (wait, i, 0.0)
                    continue
                # the amounts alone, in call order (their times only for a refused call's wait)
                order = "FROM limit_hits WHERE key = ? ORDER BY t, rowid"
                used = added_up(a for (a,) in db.execute(f"SELECT amount {order}", (key,)))
                if used + amount > mx:
                    rows = db.execute(f"SELECT t, amount {order}", (key,)).fetchall()
                    wait = spend_wait(rows, used, amount, mx, window, now)
                    if worst is None or wait > worst[0]:
                        worst = (wait, i, mx - used)
            if worst is not None or not record:
                return worst
            db.executemany(
                "INSERT INTO limit_hits (key, t, amount, token, expires) VALUES (?, ?, ?, ?, ?)",
                # a plain counter's hit carries no token: only ledger entries are refundable
                [(k, now, 1.0 if a is None else float(a), None if a is None else token, now + w) for k, _mx, w, a in entries],
            )
            self._calls += 1
            if self._calls % _SWEEP_EVERY == 0:
                db.execute("DELETE FROM limit_hits WHERE expires <= ?", (now,))
            return None

        return self._transaction(go)

    def _transaction(self, body: Callable[[sqlite3.Connection], object]):  # type: ignore[no-untyped-def]
        """``body`` in ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any failure); every
        SQLite error becomes ``StateUnavailable`` (fail closed)."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    out = body(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return out
            except sqlite3.Error as e:
                raise StateUnavailable(f"sqlite limit store {self.path}: {e}") from None
