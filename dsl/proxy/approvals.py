"""Human approval outside the MCP client: a queue the operator answers with ``plr approvals``.

The proxy files a *pending* request for one call (tool + canonical-arguments hash) and waits;
``plr approvals list`` shows the queue, ``plr approvals grant ID`` / ``deny ID`` answers it.
A grant is consumed by the one waiting call (``granted`` -> ``used`` in one atomic step), so it
can never approve a second call. No answer within the timeout -> ``expired`` -> deny.

Two backends behind one interface (``ApprovalBackend``):

- ``SqliteApprovalQueue`` (the default, one machine): ``approvals.sqlite`` next to the audit
  log unless ``--approvals-db`` / ``PLR_APPROVALS_DB`` names another file (mode 0600). The
  waiting proxy polls it.
- ``RedisApprovalQueue`` (``--state redis://HOST:PORT/DB``, a fleet): one hash per request
  (``plr:approval:ID``) with a TTL (the timeout plus a day of history), a sorted-set index for
  ``list``, every state change in one Lua script using Redis's clock, and a pub/sub message on
  ``plr:approval:ID:events`` when it is answered, which wakes the replica that holds the call at
  once (it also re-reads the request every ``poll_interval`` in case a message was missed). The
  operator answers with ``plr approvals --state URL grant ID`` from anywhere. Redis unreachable
  -> ``StateUnavailable`` -> the call is denied (``state_unavailable``).

``open_queue(state, db_path)`` picks the backend.
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.to_thread

from ..engine import StateUnavailable
from .audit import default_audit_path

__all__ = [
    "ApprovalBackend",
    "ApprovalQueue",
    "SqliteApprovalQueue",
    "RedisApprovalQueue",
    "Approval",
    "default_db_path",
    "open_queue",
    "StateUnavailable",
]

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


@runtime_checkable
class ApprovalBackend(Protocol):
    """What the proxy and ``plr approvals`` need from a queue (SQLite or Redis).

    A backend that cannot be reached raises ``StateUnavailable`` (the proxy then denies the call
    with ``state_unavailable``); any other exception also denies (``approval_unavailable``).
    """

    where: str  # for messages: the file or the redis URL (password hidden)
    cli_hint: str  # the `plr approvals` options that reach this queue, e.g. " --db FILE" or ""

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
        """Add a pending request; returns its id (blocking: call it from a worker thread)."""
        ...

    async def wait(self, aid: str, args_hash: str, timeout: float) -> str:
        """``granted`` (consumed now) | ``denied`` | ``expired``; cancels the request if cancelled."""
        ...

    def cancel(self, aid: str) -> None: ...

    def list(self, *, include_done: bool = False, limit: int = 200) -> list["Approval"]: ...

    def get(self, aid: str) -> "Approval | None": ...

    def answer(self, aid: str, grant: bool, note: str | None = None, who: str | None = None) -> tuple[bool, str]:
        """Grant or deny a pending, unexpired request: (done, status now; ``unknown`` if no such id)."""
        ...


def open_queue(state: Any, db_path: str | os.PathLike[str] | None) -> ApprovalBackend:
    """The Redis queue of ``state`` (a ``dsl.state_redis.RedisState``) if given, else SQLite at ``db_path``."""
    if state is not None:
        return state.approval_queue()  # type: ignore[no-any-return]
    return SqliteApprovalQueue(db_path if db_path is not None else default_db_path(None))


def _operator() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return None


class SqliteApprovalQueue:
    """The queue; every method opens its own short connection (safe across threads/processes)."""

    def __init__(self, path: str | os.PathLike[str], poll_interval: float = 0.1, *, create: bool = True) -> None:
        """Open the queue at ``path``; the proxy (``create=True``) makes the file and its folder.
        ``create=False`` (the operator's ``plr approvals``) raises ``FileNotFoundError`` when
        there is no queue there, and ``sqlite3.DatabaseError`` when the file is not one."""
        self.path = Path(path)
        self.where = str(self.path)
        self.poll_interval = poll_interval
        if not create:
            if not self.path.is_file():
                raise FileNotFoundError(errno.ENOENT, "no approval queue", str(self.path))
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @property
    def cli_hint(self) -> str:
        return "" if self.path == default_db_path(None) else f" --db {self.path}"

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
            who = _operator()
        with self._connect() as db:
            cur = db.execute(
                "UPDATE approvals SET status=?, decided_at=?, decided_by=?, note=? "
                "WHERE id=? AND status='pending' AND expires > ?",
                ("granted" if grant else "denied", time.time(), who, note, aid, time.time()),
            )
            done = cur.rowcount == 1
        a = self.get(aid)
        return done, (a.effective_status() if a else "unknown")


# --- Redis (a fleet) ------------------------------------------------------------------------

# Every script reads Redis's clock (TIME): replicas and the operator's machine never have to agree.
_R_NOW = "local _t = redis.call('TIME'); local now = tonumber(_t[1]) + tonumber(_t[2]) / 1000000\n"

# KEYS[1] request hash, KEYS[2] index; ARGV: id, timeout, retention, field, value, ...
_R_FILE = (
    _R_NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local timeout, retention = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'created', string.format('%.6f', now),
  'expires', string.format('%.6f', now + timeout), 'status', 'pending')
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], math.ceil((timeout + retention) * 1000))
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - retention - 7 * 86400)
return 1
"""
)

# KEYS[1] request hash; ARGV[1] args hash. "granted" (consumed now) | "denied" | "expired" | nil (pending)
_R_SETTLE = (
    _R_NOW
    + """
local st = redis.call('HMGET', KEYS[1], 'status', 'expires', 'args_sha256')
local status = st[1]
if not status then return 'denied' end
if status == 'granted' then
  if st[3] == ARGV[1] then
    redis.call('HSET', KEYS[1], 'status', 'used')
    return 'granted'
  end
  redis.call('HSET', KEYS[1], 'status', 'denied', 'note', 'arguments hash mismatch')
  return 'denied'
end
if status == 'pending' then
  if now < tonumber(st[2]) then return false end
  redis.call('HSET', KEYS[1], 'status', 'expired')
  return 'expired'
end
if status == 'denied' or status == 'expired' then return status end
return 'denied'
"""
)

# KEYS[1] request hash; ARGV: new status, decided_by, note, channel, only_if_unexpired ("1"/"0").
# Moves a pending request to the new status; returns {1, status} or {0, status now | "unknown"}.
_R_ANSWER = (
    _R_NOW
    + """
local st = redis.call('HMGET', KEYS[1], 'status', 'expires')
if not st[1] then return {0, 'unknown'} end
if st[1] ~= 'pending' then return {0, st[1]} end
if ARGV[5] == '1' and now >= tonumber(st[2]) then return {0, 'expired'} end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'decided_at', string.format('%.6f', now))
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'decided_by', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'note', ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[1])
return {1, ARGV[1]}
"""
)


def _s(v: Any) -> str | None:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _f(v: Any) -> float | None:
    try:
        return float(_s(v)) if v is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class RedisApprovalQueue:
    """The approval queue of a fleet, in Redis (see the module docstring); thread-safe."""

    def __init__(self, state: Any, *, retention: float = 86400.0, poll_interval: float = 0.5) -> None:
        self._state = state  # dsl.state_redis.RedisState
        self._r = state.client
        self._health = state.health
        self._p = state.prefix + "approval:"
        self._index = state.prefix + "approvals"
        self.retention = retention
        self.poll_interval = poll_interval
        self.where = state.display
        self.cli_hint = f" --state {state.display}"
        self._file = self._r.register_script(_R_FILE)
        self._settle = self._r.register_script(_R_SETTLE)
        self._answer = self._r.register_script(_R_ANSWER)

    def _key(self, aid: str) -> str:
        return self._p + aid

    def _channel(self, aid: str) -> str:
        return self._p + aid + ":events"

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
        fields = {
            "tool": tool,
            "args": args_text,
            "args_sha256": args_hash,
            "session": session,
            "identity": identity,
            "server": server,
            "rule": rule,
            "reason": reason,
            "pid": os.getpid(),
        }
        flat: list[Any] = []
        for k, v in fields.items():
            if v is not None:
                flat += [k, v]
        for _ in range(20):
            aid = secrets.token_hex(4)
            ok = self._health.run(
                self._file, keys=[self._key(aid), self._index], args=[aid, float(timeout), self.retention, *flat]
            )
            if ok:
                return aid
        raise RuntimeError("could not allocate an approval id")

    def _transition(self, aid: str, status: str, *, only_unexpired: bool, who: str | None, note: str | None) -> tuple[bool, str]:
        res = self._health.run(
            self._answer,
            keys=[self._key(aid)],
            args=[status, who or "", note or "", self._channel(aid), "1" if only_unexpired else "0"],
        )
        try:
            return bool(int(res[0])), str(_s(res[1]))
        except (TypeError, ValueError, IndexError):
            raise StateUnavailable("redis: unexpected answer from the approval script") from None

    def cancel(self, aid: str) -> None:
        self._transition(aid, "cancelled", only_unexpired=False, who=None, note=None)

    async def wait(self, aid: str, args_hash: str, timeout: float) -> str:
        """Subscribe to the request's channel, then settle it whenever a message (or the
        fallback poll) says something may have changed, until it is answered or expires."""
        deadline = anyio.current_time() + timeout
        health = self._health
        client = self._state.async_client()
        pubsub = client.pubsub()
        settle = client.register_script(_R_SETTLE)
        key = self._key(aid)
        try:
            await health.arun(pubsub.subscribe, self._channel(aid))  # before the first look: no lost wake-up
            while True:
                result = _s(await health.arun(settle, keys=[key], args=[args_hash]))
                if result:
                    return str(result)
                left = deadline - anyio.current_time()
                if left <= 0:
                    # our deadline: expire it (unless it was answered this instant) and settle once more
                    await anyio.to_thread.run_sync(
                        lambda: self._transition(aid, "expired", only_unexpired=False, who=None, note=None)
                    )
                    result = _s(await health.arun(settle, keys=[key], args=[args_hash]))
                    return str(result or "expired")
                await health.arun(
                    pubsub.get_message, ignore_subscribe_messages=True, timeout=min(self.poll_interval, left)
                )
        except BaseException:
            # cancelled, or Redis failed: the request must not stay pending (best effort)
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(self.cancel, aid)
                except Exception:  # noqa: BLE001
                    pass
            raise
        finally:
            from ..state_redis import aclose_quietly

            await aclose_quietly(pubsub, client)

    # -- operator side ----------------------------------------------------------------

    def _load(self, ids: list[str]) -> list[Approval]:
        def fetch() -> list[Any]:
            pipe = self._r.pipeline(transaction=False)
            for aid in ids:
                pipe.hgetall(self._key(aid))
            return pipe.execute()  # type: ignore[no-any-return]

        rows = self._health.run(fetch) if ids else []
        out: list[Approval] = []
        gone: list[str] = []
        for aid, h in zip(ids, rows, strict=True):
            if not h:
                gone.append(aid)
                continue
            d = {_s(k): _s(v) for k, v in h.items()}
            try:
                pid = int(d["pid"]) if d.get("pid") else None
            except ValueError:
                pid = None
            out.append(
                Approval(
                    id=d.get("id") or aid,
                    created=_f(d.get("created")) or 0.0,
                    expires=_f(d.get("expires")) or 0.0,
                    status=d.get("status") or "unknown",
                    tool=d.get("tool") or "",
                    args=d.get("args") or "",
                    args_sha256=d.get("args_sha256") or "",
                    session=d.get("session"),
                    identity=d.get("identity"),
                    server=d.get("server"),
                    rule=d.get("rule"),
                    reason=d.get("reason"),
                    pid=pid,
                    decided_at=_f(d.get("decided_at")),
                    decided_by=d.get("decided_by"),
                    note=d.get("note"),
                )
            )
        if gone:  # their TTL ran out: keep the index small (best effort)
            try:
                self._health.run(self._r.zrem, self._index, *gone)
            except StateUnavailable:
                pass
        return out

    def _now(self) -> float:
        secs, micros = self._health.run(self._r.time)
        return float(secs) + float(micros) / 1e6

    def list(self, *, include_done: bool = False, limit: int = 200) -> list[Approval]:
        if include_done:
            ids = [str(_s(x)) for x in self._health.run(self._r.zrevrange, self._index, 0, max(0, limit - 1))]
            return self._load(ids)
        ids = [str(_s(x)) for x in self._health.run(self._r.zrange, self._index, 0, -1)]
        now = self._now()
        return [a for a in self._load(ids) if a.status == "pending" and a.expires > now][:limit]

    def get(self, aid: str) -> Approval | None:
        got = self._load([aid])
        return got[0] if got else None

    def answer(self, aid: str, grant: bool, note: str | None = None, who: str | None = None) -> tuple[bool, str]:
        if who is None:
            who = _operator()
        status = "granted" if grant else "denied"
        done, now_status = self._transition(aid, status, only_unexpired=True, who=who, note=note)
        return done, (status if done else now_status)


ApprovalQueue = SqliteApprovalQueue  # the name used before there were two backends


def short_args(args_text: str, limit: int = 120) -> str:
    """One line's worth of the arguments; what is cut is said, never silently dropped."""
    if len(args_text) <= limit:
        return args_text
    return f"{args_text[: limit - 40]}… [{len(args_text) - (limit - 40)} more characters: plr approvals show ID]"


# What an approver is shown of a call's arguments, at most (a queue entry stays small). A human
# must not approve what they cannot see: whatever is cut is named, so they can decline instead.
SHOWN_MAX = 65536


def cut_marked(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a note of how many more it has."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} … [{len(text) - limit} more characters not shown: decline unless you know what they are]"


def args_for_display(args: Any, redactor: Callable[[Any], Any], limit: int = SHOWN_MAX) -> str:
    try:
        text = json.dumps(redactor(args), ensure_ascii=False, sort_keys=True, default=repr)
    except (ValueError, RecursionError, TypeError):
        return "<unprintable>"
    return cut_marked(text, limit)
