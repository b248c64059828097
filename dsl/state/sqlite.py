"""The approval queue of one machine: a SQLite file the waiting proxy polls.

``approvals.sqlite`` sits next to the audit log unless ``--approvals-db`` /
``PLR_APPROVALS_DB`` names another file (mode 0600). Every method opens its own short
connection, so proxies, worker threads and the operator's ``plr approvals`` share the file
safely; a grant is consumed in the same statement that reads it (``granted`` -> ``used``), so
it can never approve a second call.
"""

from __future__ import annotations

import errno
import os
import secrets
import sqlite3
import time
from pathlib import Path

import anyio
import anyio.to_thread

from .base import state_home
from .queue import APPROVAL_COLUMNS, Approval, operator_name

__all__ = ["SqliteApprovalQueue", "NotAQueue", "default_db_path", "queue_db_path", "db_cli_hint"]


class NotAQueue(sqlite3.DatabaseError):
    """An SQLite file that holds no approval queue (``create=False`` refuses it untouched)."""

    def __init__(self, why: str) -> None:
        super().__init__(f"not an approval queue ({why})")
        self.why = why

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id          TEXT PRIMARY KEY,
    created     REAL NOT NULL,
    expires     REAL NOT NULL,
    status      TEXT NOT NULL,
    tool        TEXT NOT NULL,
    args        TEXT NOT NULL,
    args_sha256 TEXT NOT NULL,
    session     TEXT,
    identity    TEXT,
    server      TEXT,
    rule        TEXT,
    reason      TEXT,
    pid         INTEGER,
    decided_at  REAL,
    decided_by  TEXT,
    note        TEXT
);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals(status, created);
"""


def default_db_path(audit_path: str | os.PathLike[str] | None = None) -> Path:
    """``PLR_APPROVALS_DB``, else ``approvals.sqlite`` next to the audit log."""
    env = os.environ.get("PLR_APPROVALS_DB")
    if env:
        return Path(env)
    return (Path(audit_path).parent if audit_path else state_home()) / "approvals.sqlite"


def queue_db_path(approvals_db: str | os.PathLike[str] | None, audit_path: str | os.PathLike[str] | None) -> Path:
    """The file of a proxy's queue: ``--approvals-db``, else ``default_db_path(--audit)``. The
    proxy files requests there and names it when it starts (so ``plr approvals`` can find it)."""
    return Path(approvals_db) if approvals_db else default_db_path(audit_path)


def db_cli_hint(path: str | os.PathLike[str]) -> str:
    """The `plr approvals` option that reaches the queue at ``path``: always ``--db PATH`` (quoted
    for a shell), never left to the operator's defaults, which may differ from the proxy's (its
    environment, its --audit)."""
    import shlex

    return f" --db {shlex.quote(os.fspath(path))}"


class SqliteApprovalQueue:
    """The queue; every method opens its own short connection (safe across threads/processes)."""

    def __init__(self, path: str | os.PathLike[str], poll_interval: float = 0.1, *, create: bool = True) -> None:
        """Open the queue at ``path``; the proxy (``create=True``) makes the file and its folder.
        ``create=False`` (the operator's ``plr approvals`` and the console) creates and writes
        nothing to open it: it raises ``FileNotFoundError`` when there is no queue there (no
        file, or the empty file the proxy is about to give its schema), ``NotAQueue`` when the
        file is an SQLite database without the queue's table, and ``sqlite3.DatabaseError`` when
        it is not SQLite at all."""
        self.path = Path(path)
        self.where = str(self.path)
        self.poll_interval = poll_interval
        self._create = create
        if not create:
            # the operator's side never writes a schema: a file without the queue's table is
            # refused as it is (never given an empty `approvals` table), a missing file stays missing
            # (0 bytes: the proxy has just made the file and is about to write its schema)
            if not self.path.is_file() or self.path.stat().st_size == 0:
                raise FileNotFoundError(errno.ENOENT, "no approval queue", str(self.path))
            self._check_queue()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _check_queue(self) -> None:
        """Raise ``NotAQueue`` unless the file holds the queue's table with its columns; it only
        reads (nothing is created or written; opened ``rw`` so that SQLite, as for every other
        connection, removes the WAL files it made when it closes); ``sqlite3.DatabaseError``
        when the file is not SQLite at all."""
        db = sqlite3.connect(self._uri("rw"), uri=True, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 10000")
            cols = {r[1] for r in db.execute("PRAGMA table_info(approvals)").fetchall()}
        finally:
            db.close()
        if not cols:
            raise NotAQueue("it has no approvals table")
        missing = [c for c in APPROVAL_COLUMNS if c not in cols]
        if missing:
            raise NotAQueue(f"its approvals table has no {', '.join(missing)}")

    def _uri(self, mode: str) -> str:
        """The file as an SQLite URI opened with ``mode`` (``rw``: never created if missing)."""
        from urllib.parse import quote

        return f"file:{quote(os.path.abspath(self.path))}?mode={mode}"

    @property
    def cli_hint(self) -> str:
        return db_cli_hint(self.path)

    def _connect(self) -> sqlite3.Connection:
        if self._create:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        else:  # the operator's side: a file deleted meanwhile is an error, never a new empty file
            db = sqlite3.connect(self._uri("rw"), uri=True, timeout=10, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 10000")
        return db

    # -- proxy side -------------------------------------------------------------------

    def file(
        self,
        *,
        tool: str,
        args_text: str,
        args_hash: str,
        timeout: float,
        session: str | None = None,
        identity: str | None = None,
        server: str | None = None,
        rule: str | None = None,
        reason: str | None = None,
    ) -> str:
        """Add a pending request; returns its id."""
        now = time.time()
        with self._connect() as db:
            for _ in range(20):
                aid = secrets.token_hex(4)
                try:
                    db.execute(
                        "INSERT INTO approvals (id, created, expires, status, tool, args, args_sha256, session,"
                        " identity, server, rule, reason, pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            aid,
                            now,
                            now + timeout,
                            "pending",
                            tool,
                            args_text,
                            args_hash,
                            session,
                            identity,
                            server,
                            rule,
                            reason,
                            os.getpid(),
                        ),
                    )
                    return aid
                except sqlite3.IntegrityError:
                    continue
        raise RuntimeError("could not allocate an approval id")

    def _settle(self, aid: str, args_hash: str) -> str | None:
        """One poll: ``granted`` (consumed now), ``denied``, ``expired`` or None while pending."""
        now = time.time()
        with self._connect() as db:
            cur = db.execute(
                "UPDATE approvals SET status='used' WHERE id=? AND status='granted' AND args_sha256=?", (aid, args_hash)
            )
            if cur.rowcount == 1:
                return "granted"
            row = db.execute("SELECT status, expires FROM approvals WHERE id=?", (aid,)).fetchone()
            if row is None:
                return "denied"  # the row vanished: fail closed
            status, expires = row
            if status == "pending":
                if now < expires:
                    return None
                cur = db.execute("UPDATE approvals SET status='expired' WHERE id=? AND status='pending'", (aid,))
                return "expired" if cur.rowcount == 1 else self._settle(aid, args_hash)
            if status in ("denied", "expired"):
                return status
            if status == "granted":  # granted, but for other arguments: never let it approve anything
                db.execute(
                    "UPDATE approvals SET status='denied', note='arguments hash mismatch' "
                    "WHERE id=? AND status='granted'",
                    (aid,),
                )
            return "denied"  # used / cancelled / anything unexpected

    def cancel(self, aid: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE approvals SET status='cancelled' WHERE id=? AND status='pending'", (aid,))

    async def wait(self, aid: str, args_hash: str, timeout: float) -> str:
        """Wait for the operator: ``granted`` | ``denied`` | ``expired`` (on timeout)."""
        deadline = anyio.current_time() + timeout
        try:
            while True:
                result = await anyio.to_thread.run_sync(self._settle, aid, args_hash)
                if result is not None:
                    return result
                left = deadline - anyio.current_time()
                if left <= 0:
                    # the row's own expiry is authoritative; give it one more look
                    result = await anyio.to_thread.run_sync(self._expire_now, aid, args_hash)
                    return result
                await anyio.sleep(min(self.poll_interval, left))
        except BaseException:
            # the client went away (cancelled): the request must not linger as pending
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(self.cancel, aid)
                except Exception:  # noqa: BLE001
                    pass
            raise

    def _expire_now(self, aid: str, args_hash: str) -> str:
        with self._connect() as db:
            db.execute("UPDATE approvals SET status='expired' WHERE id=? AND status='pending'", (aid,))
        r = self._settle(aid, args_hash)
        return r or "expired"

    # -- operator side ----------------------------------------------------------------

    def list(self, *, include_done: bool = False, limit: int = 200) -> list[Approval]:
        with self._connect() as db:
            if include_done:
                rows = db.execute(
                    f"SELECT {', '.join(APPROVAL_COLUMNS)} FROM approvals ORDER BY created DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = db.execute(
                    f"SELECT {', '.join(APPROVAL_COLUMNS)} FROM approvals WHERE status='pending' AND expires > ?"
                    " ORDER BY created",
                    (time.time(),),
                ).fetchall()
        return [Approval(*r) for r in rows]

    def get(self, aid: str) -> Approval | None:
        with self._connect() as db:
            row = db.execute(f"SELECT {', '.join(APPROVAL_COLUMNS)} FROM approvals WHERE id=?", (aid,)).fetchone()
        return Approval(*row) if row else None

    def answer(self, aid: str, grant: bool, note: str | None = None, who: str | None = None) -> tuple[bool, str]:
        """Grant or deny a pending, unexpired request: (done, status now)."""
        if who is None:
            who = operator_name()
        with self._connect() as db:
            cur = db.execute(
                "UPDATE approvals SET status=?, decided_at=?, decided_by=?, note=? "
                "WHERE id=? AND status='pending' AND expires > ?",
                ("granted" if grant else "denied", time.time(), who, note, aid, time.time()),
            )
            done = cur.rowcount == 1
        a = self.get(aid)
        return done, (a.effective_status() if a else "unknown")
