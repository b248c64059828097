"""Human approval outside the MCP client: a small SQLite queue the operator answers.

The proxy files a *pending* request for one call (tool + canonical-arguments hash) and waits;
``plr approvals list`` shows the queue, ``plr approvals grant ID`` / ``deny ID`` answers it.
A grant is consumed by the one waiting call (``granted`` -> ``used`` in one UPDATE), so it can
never approve a second call. No answer within the timeout -> ``expired`` -> deny.

The database lives next to the audit log (``approvals.sqlite`` in the same directory) unless
``--approvals-db`` / ``PLR_APPROVALS_DB`` names another file; it is created with mode 0600.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from .audit import default_audit_path

__all__ = ["ApprovalQueue", "Approval", "default_db_path"]

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

_COLUMNS = (
    "id created expires status tool args args_sha256 session identity server rule reason pid decided_at decided_by note"
).split()


def default_db_path(audit_path: str | os.PathLike[str] | None = None) -> Path:
    """``PLR_APPROVALS_DB``, else ``approvals.sqlite`` next to the audit log."""
    env = os.environ.get("PLR_APPROVALS_DB")
    if env:
        return Path(env)
    audit = Path(audit_path) if audit_path else default_audit_path()
    return audit.parent / "approvals.sqlite"


@dataclass(frozen=True)
class Approval:
    id: str
    created: float
    expires: float
    status: str
    tool: str
    args: str
    args_sha256: str
    session: str | None
    identity: str | None
    server: str | None
    rule: str | None
    reason: str | None
    pid: int | None
    decided_at: float | None
    decided_by: str | None
    note: str | None

    def effective_status(self, now: float | None = None) -> str:
        if self.status == "pending" and (now or time.time()) >= self.expires:
            return "expired"
        return self.status

    def to_dict(self) -> dict[str, Any]:
        d = {c: getattr(self, c) for c in _COLUMNS}
        d["status"] = self.effective_status()
        return d


class ApprovalQueue:
    """The queue; every method opens its own short connection (safe across threads/processes)."""

    def __init__(self, path: str | os.PathLike[str], poll_interval: float = 0.1) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
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
                    f"SELECT {', '.join(_COLUMNS)} FROM approvals ORDER BY created DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = db.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM approvals WHERE status='pending' AND expires > ?"
                    " ORDER BY created",
                    (time.time(),),
                ).fetchall()
        return [Approval(*r) for r in rows]

    def get(self, aid: str) -> Approval | None:
        with self._connect() as db:
            row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM approvals WHERE id=?", (aid,)).fetchone()
        return Approval(*row) if row else None

    def answer(self, aid: str, grant: bool, note: str | None = None, who: str | None = None) -> tuple[bool, str]:
        """Grant or deny a pending, unexpired request: (done, status now)."""
        if who is None:
            try:
                who = getpass.getuser()
            except Exception:  # noqa: BLE001
                who = None
        with self._connect() as db:
            cur = db.execute(
                "UPDATE approvals SET status=?, decided_at=?, decided_by=?, note=? "
                "WHERE id=? AND status='pending' AND expires > ?",
                ("granted" if grant else "denied", time.time(), who, note, aid, time.time()),
            )
            done = cur.rowcount == 1
        a = self.get(aid)
        return done, (a.effective_status() if a else "unknown")


def short_args(args_text: str, limit: int = 120) -> str:
    return args_text if len(args_text) <= limit else args_text[: limit - 3] + "..."


def args_for_display(args: Any, redactor: Callable[[Any], Any]) -> str:
    try:
        return json.dumps(redactor(args), ensure_ascii=False, sort_keys=True, default=repr)[:4000]
    except (ValueError, RecursionError, TypeError):
        return "<unprintable>"
