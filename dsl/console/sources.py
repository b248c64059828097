"""What the console reads and answers: the approval queue, the audit logs and the policy.

I/O lives here and nowhere else in the console: the pages (``render``) are pure functions of
what these return. Every read reports failure as a value (``QueueView.error``), never as an
exception that would leave the page blank: a console that cannot reach its queue says so, and
never shows a request as answered unless the queue itself recorded the answer.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..state.base import StateUnavailable
from ..state.sqlite import NotAQueue

__all__ = ["QueueSource", "QueueView", "AuditTail", "PolicyView", "load_policy_view"]

RECENT_ANSWERED = 50  # answered/expired requests the page lists under the pending ones


@dataclass(frozen=True)
class QueueView:
    """One look at the queue: pending requests (oldest first), recent others, or why not."""

    pending: list[Any] = field(default_factory=list)
    recent: list[Any] = field(default_factory=list)
    error: str | None = None
    where: str = ""

    def signature(self) -> tuple[Any, ...]:
        """What changes when the page must change (for server-sent events)."""
        return (
            self.error,
            tuple((a.id, a.status) for a in self.pending),
            tuple((a.id, a.status, a.decided_at) for a in self.recent),
        )


class QueueSource:
    """The queue `plr approvals` would answer with the same --db/--state: opened lazily (the proxy
    creates a SQLite queue at its first request, so the console may start before it exists) and
    never created here."""

    def __init__(self, *, db: Path | None = None, opener: Callable[[], Any] | None = None, where: str = "") -> None:
        self.db = db
        self._opener = opener  # --state: a RedisState's approval_queue
        self._queue: Any = None
        self.where = where or (str(db) if db is not None else "")

    def _open(self) -> Any:
        if self._queue is None:
            if self._opener is not None:
                self._queue = self._opener()
            else:
                from ..state.sqlite import SqliteApprovalQueue

                assert self.db is not None
                self._queue = SqliteApprovalQueue(self.db, create=False)
        return self._queue

    def view(self) -> QueueView:
        """Pending (oldest first: a new request is listed below the ones the approver is
        reading, never pushing them down) and recently answered requests; ``error`` when
        unreachable."""
        try:
            q = self._open()
            pending = sorted(q.list(), key=lambda a: (a.created, a.id))
            done = [a for a in q.list(include_done=True, limit=RECENT_ANSWERED + len(pending)) if a.status != "pending"]
        except FileNotFoundError:
            return QueueView(
                error=f"no approval queue at {self.where} yet: the proxy creates it when it first asks for an "
                "approval (check that this is the file `plr proxy` named when it started)",
                where=self.where,
            )
        except NotAQueue as e:  # an SQLite file of something else (limits.sqlite?): left as it is
            return QueueView(
                error=f"not an approval queue: {self.where} ({e.why}); "
                "check that this is the file `plr proxy` named when it started",
                where=self.where,
            )
        except Exception as e:  # noqa: BLE001 - the page says why; it never pretends the queue is empty
            return QueueView(error=f"cannot reach the approval queue at {self.where}: {_why(e)}", where=self.where)
        return QueueView(pending=pending, recent=done[:RECENT_ANSWERED], where=self.where)

    def get(self, aid: str) -> tuple[Any, str | None]:
        """(the request or None, why it could not be read)."""
        try:
            return self._open().get(aid), None
        except Exception as e:  # noqa: BLE001
            return None, f"cannot reach the approval queue at {self.where}: {_why(e)}"

    def answer(self, aid: str, grant: bool, note: str | None, who: str | None) -> tuple[bool, str]:
        """Exactly `plr approvals grant/deny`: the backend's ``answer`` (done, status now).
        Raises when the queue cannot be reached (the caller shows it)."""
        return self._open().answer(aid, grant, note, who)  # type: ignore[no-any-return]


def _why(e: BaseException) -> str:
    if isinstance(e, StateUnavailable):
        return str(e) or "unreachable"
    if type(e) is sqlite3.DatabaseError:
        return "it is not an SQLite approval queue"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return f"{type(e).__name__}: {e}"


class AuditTail:
    """The decision records of one or more audit logs, read incrementally.

    Each log is read from where the last look stopped (a rotation, seen as a new inode or a
    shorter file, starts it afresh, rotated files included); the newest ``keep`` records are
    kept. A torn last line is left for the next look, never parsed half-written."""

    def __init__(self, paths: list[Path], *, keep: int = 20000) -> None:
        self.paths = paths
        self.records: deque[dict[str, Any]] = deque(maxlen=keep)
        self._pos: dict[Path, tuple[int, int]] = {}  # path -> (inode, offset)
        self.errors: list[str] = []
        self.version = 0  # grows with every record read (for server-sent events)

    def refresh(self) -> int:
        """Read what was appended since the last call; returns how many records were added."""
        import json

        added = 0
        errors: list[str] = []
        for path in self.paths:
            try:
                st = os.stat(path)
            except OSError as e:
                errors.append(f"{path}: {e.strerror or e}")
                continue
            ino, pos = self._pos.get(path, (None, 0))
            if ino != st.st_ino or st.st_size < pos:
                from ..proxy.audit import read_records, rotated_paths

                if ino is not None:  # rotated under us: the older files hold what we already have
                    self.records.clear()
                    for other in self.paths:
                        if other != path:
                            self._pos.pop(other, None)
                older = [p for p in rotated_paths(path) if p != Path(path)]
                for rec in read_records(older):
                    self.records.append(rec)
                    added += 1
                pos = 0
            if st.st_size == pos:
                self._pos[path] = (st.st_ino, pos)
                continue
            try:
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
            except OSError as e:
                errors.append(f"{path}: {e.strerror or e}")
                continue
            end = data.rfind(b"\n") + 1  # a torn (still being written) last line waits
            for raw in data[:end].splitlines():
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw.decode("utf-8", "replace"))
                except (ValueError, RecursionError):
                    continue
                if isinstance(rec, dict):
                    self.records.append(rec)
                    added += 1
            self._pos[path] = (st.st_ino, pos + end)
        self.errors = errors
        self.version += added
        return added


@dataclass(frozen=True)
class PolicyView:
    """The policy the console shows: what it is, where from, and its rules."""

    source: str
    sha256: str
    policy: Any  # dsl.policy.Policy
    error: str | None = None


def load_policy_view(spec: str | None) -> PolicyView | None:
    """The policy named by ``--policy`` (the proxy's own), or None when none was given."""
    if not spec:
        return None
    from ..errors import PlrError
    from ..proxy.reload import load_policy_source, show_source

    try:
        loaded = load_policy_source(spec)
    except PlrError as e:
        return PolicyView(source=show_source(spec), sha256="", policy=None, error=str(e))
    return PolicyView(source=show_source(spec), sha256=loaded.sha256, policy=loaded.policy)


def now() -> float:
    return time.time()
