"""Shared state for proxy fleets (``plr proxy --state redis://HOST:PORT/DB``).

- ``RedisLimitStore``: sliding-window limit counters. One Lua script checks every key and
  records the hit on all of them atomically (sorted set per key: ``ZREMRANGEBYSCORE`` +
  ``ZCARD`` + ``ZADD`` + ``PEXPIRE``), so "10 per minute per session" holds across replicas.
  Spend caps and `refund on error` limits (``spend``/``refund``) are a second script over a
  ledger of amounts per key, with the in-process store's answers to the last bit.
  Time is Redis's own clock (``TIME``) unless a clock is injected for tests: replicas' clocks
  never have to agree.
- ``RedisApprovalQueue``: one hash per request (``plr:approval:ID``) with a TTL (the timeout
  plus a day of history), a sorted-set index for ``list``, every state change in one Lua script
  using Redis's clock, and a pub/sub message on ``plr:approval:ID:events`` when it is answered,
  which wakes the replica that holds the call at once (it also re-reads the request every
  ``poll_interval`` in case a message was missed). The operator answers with
  ``plr approvals --state URL grant ID`` from anywhere.
- ``RedisState``: what ``--state`` builds once per process: one client, the limit store, the
  approval queue and one ``RedisHealth``.
- ``EvictionWatch``: a Redis with ``maxmemory`` and an evicting ``maxmemory-policy`` drops keys
  when full, and a limit whose counter was dropped lets calls through again (fails open). The
  proxy looks at start and then every ``interval`` seconds from a thread (one pipelined round
  trip, never on a call's path): unless the ``--state`` URL says ``?allow_eviction=1``, every
  command is refused (``StateUnavailable``: calls that need Redis are denied) while the risk
  lasts, and a Redis that will not say (INFO refused) is such a risk; until Redis has answered
  once (unreachable at start), every command is refused too. A rise of ``INFO evicted_keys``
  (keys were really lost) is reported either way.

How a client is made and how failures are reported (``RedisHealth``: Redis unreachable ->
``StateUnavailable`` -> the call is denied with ``state_unavailable``) is
``dsl.state.redis_link``; its names are importable from here too.
"""

from __future__ import annotations

import math
import os
import secrets
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .base import StateUnavailable
from .queue import Approval, operator_name
from .redis_link import (
    ALLOW_EVICTION,
    RedisHealth,
    _client,
    address_of,
    aclose_quietly,
    allow_eviction,
    check_state_url,
    display_url,
    redis_errors,
    with_allow_eviction,
)

__all__ = [
    "EVICTION_CHECK_INTERVAL",
    "EVICTION_FIRST_LOOK_RETRY",
    "NOT_YET_CHECKED",
    "EvictionWatch",
    "RedisLimitStore",
    "RedisApprovalQueue",
    "RedisHealth",
    "RedisState",
    "StateUnavailable",
    "aclose_quietly",
    "check_state_url",
    "display_url",
    "redis_errors",
]

# Both limit scripts start with this: ``now`` (the caller's, or Redis TIME when ARGV[1] is ""),
# ``g`` (a number as %.17g text: every time and wait crosses to Redis and back unrounded), and
# ``expire``, the in-process store's rule ``now - t >= window`` tested entry by entry at the
# edge (a score range would round the cut-off differently), after one coarse cut well below it.
_PRELUDE = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function g(x) return string.format('%.17g', x) end
local function expire(key, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. g(now - window - 1e-12 * (1 + math.abs(now))))
  while true do
    local e = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #e == 0 or now - tonumber(e[2]) < window then return end
    redis.call('ZREMRANGEBYRANK', key, 0, 0)
  end
end
"""

# KEYS: counter keys. ARGV[1]: now in seconds or "" to use Redis TIME; ARGV[2]: member id ("" to
# peek: answer without recording); then per key: max, window. Returns 'admitted' when admitted,
# else {retry_after, index}. (An explicit word, not nil: a reply that is neither, say a
# Redis-speaking proxy's empty answer, must read as a failure, never as room left.)
_ACQUIRE = _PRELUDE + """
local worst, which = -1, -1
for i, key in ipairs(KEYS) do
  local max = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  expire(key, window)
  local n = redis.call('ZCARD', key)
  if n >= max then
    local entry = redis.call('ZRANGE', key, n - max, n - max, 'WITHSCORES')
    local wait = math.max(tonumber(entry[2]) + window - now, 0)
    if wait > worst then worst, which = wait, i - 1 end
  end
end
if which >= 0 then
  return {g(worst), which}
end
if ARGV[2] == '' then return 'admitted' end  -- a peek: room everywhere, nothing recorded
local at = g(now)
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZADD', key, at, ARGV[2] .. ':' .. i)
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
end
return 'admitted'
"""


# Spend caps and `refund on error` limits (``LimitStore.spend``): the same check-and-record as
# ``MemoryLimitStore.spend``, in one script. A ledger key is a sorted set of the amounts spent,
# scored by time, each member ``SEQ:AMOUNT:TOKEN``: SEQ (one counter per store, 16 digits) keeps
# calls of the same instant in the order they were made, so amounts are added up in exactly the
# order the in-process store adds them (float sums depend on it); AMOUNT (%r text) starts at a
# fixed offset, so adding up reads members without their scores (the times are read only for
# a refused call's wait); TOKEN is what ``refund`` takes back. A plain counter beside them is
# the sorted set ``acquire`` uses (member TOKEN:I).
#
# KEYS[1]: the sequence counter; KEYS[1 + i]: entry i's key. ARGV[1]: now in seconds or "" for
# Redis TIME; ARGV[2]: the token; then per entry: max, window, amount ("" for a plain counter).
# Returns 'admitted' when admitted (everything recorded), else {wait, index, left} (nothing
# recorded).
_SPEND = _PRELUDE + """
local n = #KEYS - 1
local worst, which, left = -1, -1, 0
for i = 1, n do
  local key = KEYS[1 + i]
  local max = tonumber(ARGV[3 * i])
  local window = tonumber(ARGV[3 * i + 1])
  local amount = tonumber(ARGV[3 * i + 2])
  expire(key, window)
  if not amount then
    local c = redis.call('ZCARD', key)
    if c >= max then
      local e = redis.call('ZRANGE', key, c - max, c - max, 'WITHSCORES')
      local wait = math.max(tonumber(e[2]) + window - now, 0)
      if wait > worst then worst, which, left = wait, i - 1, 0 end
    end
  else
    local rows = redis.call('ZRANGE', key, 0, -1)
    local used, as = 0, {}
    for j = 1, #rows do
      local m = rows[j]
      local a = tonumber(string.sub(m, 18, string.find(m, ':', 18, true) - 1))
      used = used + a
      as[j] = a
    end
    if used + amount > max then
      local wait = window  -- base.spend_wait, step for step
      if amount <= max then
        local freed = 0
        for j = 1, #as do
          freed = freed + as[j]
          if used - freed + amount <= max then
            wait = tonumber(redis.call('ZSCORE', key, rows[j])) + window - now
            break
          end
        end
      end
      wait = math.max(wait, 0)
      if wait > worst then worst, which, left = wait, i - 1, max - used end
    end
  end
end
if which >= 0 then
  return {g(worst), which, g(left)}
end
local seq = string.format('%016d', redis.call('INCR', KEYS[1]))
local at = g(now)
for i = 1, n do
  local key = KEYS[1 + i]
  local window = tonumber(ARGV[3 * i + 1])
  local amount = ARGV[3 * i + 2]
  if amount == '' then
    redis.call('ZADD', key, at, ARGV[2] .. ':' .. i)
  else
    redis.call('ZADD', key, at, seq .. ':' .. amount .. ':' .. ARGV[2])
  end
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
end
return 'admitted'
"""

# KEYS: ledger keys; ARGV[1]: the token. Forgets what ``spend`` recorded under it (the members
# ``SEQ:AMOUNT:TOKEN``; a plain counter's ``TOKEN:I`` is never refunded, as in-process).
_REFUND = """
local mark = ':' .. ARGV[1]
local gone = 0
for _, key in ipairs(KEYS) do
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if #m > 17 + #mark and string.sub(m, -#mark) == mark and string.find(m, ':', 18, true) == #m - #mark + 1 then
      gone = gone + redis.call('ZREM', key, m)
    end
  end
end
return gone
"""


def _admitted(res: Any) -> bool:
    """The limit scripts' word for room left: nothing else admits a call."""
    return res == b"admitted" or res == "admitted"


def _refusal(res: Any, size: int, entries: int, script: str) -> tuple[float, ...]:
    """A limit script's refusal, ``{wait, index[, left]}``, read strictly: any other answer (nil,
    0, an empty list, a number out of range) fails closed with ``StateUnavailable``."""
    try:
        if not isinstance(res, (list, tuple)) or len(res) != size:
            raise ValueError(f"{res!r:.80}")
        out = tuple(float(_s(x)) for x in res)  # type: ignore[arg-type]
        if not all(math.isfinite(x) for x in out) or out[0] < 0 or out[1] != int(out[1]) or not 0 <= out[1] < entries:
            raise ValueError(f"{res!r:.80}")
    except (TypeError, ValueError) as e:  # an answer we do not understand: fail closed
        raise StateUnavailable(f"redis: unexpected answer from the {script} script: {e}") from None
    return out


def _num(x: float) -> str:
    """A number as exact text for a script (``repr`` round-trips; Lua's ``tonumber`` reads it)."""
    return repr(float(x))


def _address_of_client(client: Any) -> list[str]:
    """``address_of`` for a client made elsewhere (its pool's host and port, or socket path)."""
    try:
        kw = client.connection_pool.connection_kwargs
    except AttributeError:
        return []
    if kw.get("path"):
        return [str(kw["path"])]
    host, port = kw.get("host"), kw.get("port", 6379)
    return [f"{host}:{port}", f"[{host}]:{port}", str(host)] if host else []


class RedisLimitStore:
    """``LimitStore`` on Redis (sorted set per key: ZREMRANGEBYSCORE + ZCARD + ZADD + PEXPIRE),
    with spend caps and refunds (``spend``/``refund``) on the same keys."""

    def __init__(
        self,
        client: Any,
        prefix: str = "plr:limit:",
        use_server_time: bool = True,
        health: RedisHealth | None = None,
    ) -> None:
        self._r = client
        self._prefix = prefix
        self._server_time = use_server_time
        self._script = client.register_script(_ACQUIRE)
        self._spend = client.register_script(_SPEND)
        self._refund = client.register_script(_REFUND)
        self._health = health if health is not None else RedisHealth("redis", conceal=_address_of_client(client))

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> "RedisLimitStore":
        return cls(_client(url, socket_timeout=1.0), **kw)

    def acquire(self, keys: Sequence[tuple[str, int, float]], now: float) -> float | None:
        r = self.acquire_which(keys, now)
        return None if r is None else r[0]

    def peek_which(self, keys: Sequence[tuple[str, int, float]], now: float) -> tuple[float, int] | None:
        """What ``acquire_which`` would answer now, recording nothing."""
        return self.acquire_which(keys, now, _member="")

    def acquire_which(
        self, keys: Sequence[tuple[str, int, float]], now: float, _member: str | None = None
    ) -> tuple[float, int] | None:
        member = uuid.uuid4().hex if _member is None else _member
        args: list[Any] = ["" if self._server_time else repr(float(now)), member]
        for _key, mx, window in keys:
            args += [int(mx), float(window)]
        res = self._health.run(self._script, keys=[self._prefix + k for k, _, _ in keys], args=args)
        if _admitted(res):
            return None
        retry, index = _refusal(res, 2, len(keys), "limit")[:2]
        return (retry, int(index))

    def spend(
        self, entries: Sequence[tuple[str, float, float, float | None]], now: float, token: str
    ) -> tuple[float, int, float] | None:
        """See ``LimitStore.spend``: all or nothing, in one script (atomic across replicas)."""
        args: list[Any] = ["" if self._server_time else _num(now), token]
        for _key, mx, window, amount in entries:
            args += [_num(mx), _num(window), "" if amount is None else _num(amount)]
        keys = [self._prefix + "\x00seq", *(self._prefix + e[0] for e in entries)]
        res = self._health.run(self._spend, keys=keys, args=args)
        if _admitted(res):
            return None
        wait, index, left = _refusal(res, 3, len(entries), "spend")
        return (wait, int(index), left)

    def refund(self, keys: Sequence[str], token: str) -> None:
        """See ``LimitStore.refund``."""
        if keys:
            self._health.run(self._refund, keys=[self._prefix + k for k in keys], args=[token])


# --- the approval queue of a fleet ------------------------------------------------------

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


def state_cli_hint(display: str) -> str:
    """The `plr approvals` option that reaches a fleet's queue (quoted for a shell; a password
    shows as ``***``: put the real one in)."""
    import shlex

    return f" --state {shlex.quote(display)}"


class RedisApprovalQueue:
    """The approval queue of a fleet, in Redis (see the module docstring); thread-safe."""

    def __init__(self, state: RedisState, *, retention: float = 86400.0, poll_interval: float = 0.5) -> None:
        self._state = state  # a RedisState
        self._r = state.client
        self._health = state.health
        self._p = state.prefix + "approval:"
        self._index = state.prefix + "approvals"
        self.retention = retention
        self.poll_interval = poll_interval
        self.where = state.display
        self.cli_hint = state_cli_hint(state.display)
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
        import anyio  # only once a call waits: the limit store and `plr approvals` never need it
        import anyio.to_thread

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
            who = operator_name()
        status = "granted" if grant else "denied"
        done, now_status = self._transition(aid, status, only_unexpired=True, who=who, note=note)
        return done, (status if done else now_status)


# How often a running proxy re-reads Redis's eviction settings (seconds): one pipelined round
# trip per replica, so a `CONFIG SET maxmemory-policy allkeys-lru` is noticed within this time.
EVICTION_CHECK_INTERVAL = 5.0
# How often the watch asks while Redis has never answered (unreachable at start): its commands
# are refused until it has, so the calls wait no longer than this once it is back.
EVICTION_FIRST_LOOK_RETRY = 0.25

# Why commands are refused before the watch has read Redis's settings once (a decision's
# reason, so the agent's: it names no Redis).
NOT_YET_CHECKED = "shared state not yet checked for key eviction; refused until redis answers"


class Eviction(NamedTuple):
    """What Redis says about evicting keys (``INFO memory`` and ``INFO stats``)."""

    risk: str | None  # what to tell the operator, naming the Redis (None: it will not evict)
    reason: str | None  # the same in a few words, for the calls it refuses (naming no Redis: the agent reads it)
    evicted: int | None  # INFO evicted_keys: keys evicted since Redis started (None: not said)
    settings: str  # "maxmemory N, maxmemory-policy P", for messages
    known: bool = True  # False: Redis answered but would not say (INFO refused: an ACL without +info)


def _int(v: Any) -> int | None:
    try:
        return int(_s(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _eviction(display: str, memory: Any, stats: Any) -> Eviction:
    """Read ``INFO memory`` (and ``INFO stats``, for ``evicted_keys``). A Redis with
    ``maxmemory`` and any policy but ``noeviction`` drops keys when full: counters (which all
    expire, so the ``volatile-*`` policies take them first) and approvals alike. A Redis that
    answers but will not say (INFO refused, or an answer that is not INFO's) is a risk too:
    nothing shows that it does not evict."""
    if not isinstance(memory, dict):
        if isinstance(memory, Exception):
            return _unsaid(display, f"INFO memory refused: {str(memory).strip()[:120] or type(memory).__name__}")
        return _unsaid(display, "INFO memory answered with something else")
    limit = _int(memory.get("maxmemory") or 0)
    if limit is None:
        return _unsaid(display, "INFO memory has no readable maxmemory")
    policy = _s(memory.get("maxmemory_policy")) or "noeviction"
    evicted = _int(stats.get("evicted_keys")) if isinstance(stats, dict) else None
    settings = f"maxmemory {limit}, maxmemory-policy {policy}"
    if limit <= 0 or policy == "noeviction":
        return Eviction(None, None, evicted, settings)
    risk = (
        f"redis at {display} evicts keys when full ({settings}): "
        "limit counters and approval requests can vanish, and a limit whose counter vanished lets calls "
        "through again; set `maxmemory-policy noeviction` (a full Redis then refuses writes, and plr "
        "denies the calls that need it)"
    )
    reason = f"shared state may evict keys (maxmemory-policy {policy}); refused until it is noeviction"
    return Eviction(risk, reason, evicted, settings)


def _unsaid(display: str, why: str) -> Eviction:
    """A Redis that answers but does not say whether it evicts: plr cannot rule it out."""
    risk = (
        f"redis at {display} does not say whether it evicts keys ({why}; an ACL without INFO?): plr cannot "
        "tell whether limit counters and approval requests may vanish, and a limit whose counter vanished lets "
        "calls through again; let its user read INFO (ACL SETUSER USER +info) and make sure its maxmemory-policy "
        "is noeviction"
    )
    reason = "shared state does not say whether it may evict keys (INFO refused); refused until it says"
    return Eviction(risk, reason, None, why, known=False)


class RedisState:
    """The shared state of one proxy process: limit counters and the approval queue in Redis."""

    def __init__(
        self,
        url: str,
        *,
        report: Callable[[str], None] | None = None,
        prefix: str = "plr:",
        retry_interval: float = 0.5,
        socket_timeout: float = 0.5,
        eviction_check_interval: float = EVICTION_CHECK_INTERVAL,
    ) -> None:
        self.url = check_state_url(url)
        self.display = display_url(url)
        self.allow_eviction = allow_eviction(url)  # the operator accepts an evicting Redis: warn only
        self.prefix = prefix
        self.socket_timeout = socket_timeout
        self.eviction_check_interval = eviction_check_interval
        self.health = RedisHealth(
            self.display, report, retry_interval=retry_interval, max_retry_interval=2.0, conceal=address_of(url)
        )
        self.client = _client(url, socket_timeout=socket_timeout)
        self.limit_store = RedisLimitStore(self.client, prefix=prefix + "limit:", health=self.health)
        self._queue: RedisApprovalQueue | None = None
        self._watch: EvictionWatch | None = None

    def async_client(self) -> Any:
        """A new ``redis.asyncio`` client for the running event loop (the caller closes it)."""
        return _client(self.url, socket_timeout=self.socket_timeout, asyncio=True)

    def approval_queue(self) -> RedisApprovalQueue:
        """The fleet's approval queue (one per process)."""
        if self._queue is None:
            self._queue = RedisApprovalQueue(self)
        return self._queue

    def ping(self) -> bool:
        """True if Redis answers now (the outcome is reported like any other command's)."""
        try:
            self.health.run(self.client.ping)
            return True
        except StateUnavailable:
            return False

    def eviction(self) -> Eviction | None:
        """What Redis says about evicting keys now, in one pipelined round trip (``INFO memory``,
        ``INFO stats``); None when it does not answer (an ``Eviction`` that is not ``known``
        when it answers but will not say). Read past the health monitor: the eviction watch
        must see a refused Redis recover, and an outage is the calls' to report."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.info("memory")
            pipe.info("stats")
            memory, stats = pipe.execute(raise_on_error=False)
        except redis_errors():
            return None
        except (TypeError, ValueError):  # an answer redis-py could not parse: it does not say
            return _unsaid(self.display, "INFO memory answered with something else")
        return _eviction(self.display, memory, stats)

    def eviction_risk(self) -> str | None:
        """What to tell the operator when this Redis may evict plr's keys, or will not say
        whether it does (None: it will not, or it does not answer). A Redis with ``maxmemory``
        and any policy but ``noeviction`` drops keys when full, counters (which all expire, so
        the ``volatile-*`` policies take them first) and approvals alike: a limit whose counter
        vanished lets calls through again."""
        ev = self.eviction()
        return None if ev is None else ev.risk

    def allow_eviction_hint(self) -> str:
        """The ``--state`` value that accepts this Redis's evictions (quoted for a shell; a
        password shows as ``***``: put the real one in)."""
        return shlex.quote(with_allow_eviction(self.display))

    def eviction_watch(self) -> EvictionWatch:
        """This process's eviction watch (one per state; ``start`` it to look on a timer)."""
        if self._watch is None:
            self._watch = EvictionWatch(self, interval=self.eviction_check_interval)
        return self._watch

    def say(self, text: str) -> None:
        """One line to the operator (the proxy's stderr), never raising (the health monitor's own)."""
        self.health._say(text)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass


class EvictionWatch:
    """Whether Redis may evict plr's keys, re-read while the proxy runs (an operator, or another
    tenant of a shared Redis, may ``CONFIG SET maxmemory-policy allkeys-lru`` at any time).

    ``look`` reads ``INFO memory`` and ``INFO stats`` in one round trip. When the risk appears
    (Redis may evict, or answers but will not say: INFO refused) it is said once, and, unless
    the state URL says ``allow_eviction=1``, the state's health monitor refuses every command
    (calls needing Redis are denied ``state_unavailable``: a counter that may vanish must not
    decide); when it goes away that is said once, with how many commands were refused, and
    commands flow again. A Redis that does not answer changes nothing: a refusal holds until
    Redis itself says it does not evict. A rise of ``evicted_keys`` (keys really were evicted,
    perhaps between two looks) is said each time.

    ``start`` looks from a daemon thread, never on a call's path: at once, every
    ``EVICTION_FIRST_LOOK_RETRY`` seconds until Redis has answered once, then every
    ``interval``. Until Redis has answered once, commands are refused (``NOT_YET_CHECKED``): a
    Redis unreachable at start may come back evicting, and no call may count on it unchecked."""

    def __init__(self, state: RedisState, *, interval: float = EVICTION_CHECK_INTERVAL) -> None:
        self._state = state
        self.interval = interval
        self.risk: str | None = None  # the risk as last seen (None: none, or never seen)
        self._known = True  # whether that risk was Redis's settings (False: it would not say)
        self.evicted: int | None = None  # evicted_keys as last seen
        self._seen_at = 0.0
        self.read = False  # whether Redis has ever answered (its settings, or that it will not say them)
        self._unchecked = False  # whether ``start`` refused commands until Redis first answers
        self._lock = threading.Lock()  # one look at a time (the thread, and a caller)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def look(self, *, quiet: bool = False) -> str | None:
        """Read Redis's eviction settings once and act on a change (``quiet``: set the refusal
        without saying so: the caller reports, e.g. the proxy at start). Returns the risk now
        known (the last one seen when Redis does not answer)."""
        state = self._state
        with self._lock:
            ev = state.eviction()
            if ev is None:
                return self.risk
            first, self.read = not self.read, True
            now = time.monotonic()
            if ev.evicted is not None:
                if self.evicted is not None and ev.evicted > self.evicted and not quiet:
                    state.say(
                        f"plr proxy: warning: redis at {state.display} evicted {ev.evicted - self.evicted} key(s) "
                        f"in the last {now - self._seen_at:.0f} s (INFO evicted_keys {self.evicted} -> {ev.evicted}; "
                        f"now {ev.settings}): plr's limit counters and approval requests may have been among them, "
                        "and a limit whose counter was evicted lets calls through again"
                    )
                self.evicted = ev.evicted  # lower: Redis restarted or CONFIG RESETSTAT; count from here
            self._seen_at = now
            unchecked, self._unchecked = self._unchecked and first, False
            if ev.risk == self.risk and not unchecked:
                return self.risk
            was_known, self._known = self._known, ev.known
            self.risk = ev.risk
            if ev.risk is not None:
                if state.allow_eviction:
                    state.health.refuse(None)  # (the refusal until Redis first answered, if any)
                    if not quiet:
                        state.say(f"plr proxy: warning: {ev.risk}; accepted ({ALLOW_EVICTION}=1 in --state): calls go on")
                else:
                    state.health.refuse(ev.reason)
                    if not quiet:
                        until = "it no longer evicts" if ev.known else "it says that it does not"
                        state.say(
                            f"plr proxy: {ev.risk}; denying every call that needs it (limits, approval queue) with "
                            f"code state_unavailable until {until} (to accept the risk instead, restart "
                            f"with --state {state.allow_eviction_hint()})"
                        )
            else:
                refused = state.health.refuse(None)
                if not quiet:
                    tail = ""
                    if refused or not state.allow_eviction:
                        tail = f"; {refused} request(s) were denied (state_unavailable) meanwhile"
                    if unchecked:
                        said = f"answers: it does not evict keys ({ev.settings}); calls that need it go on"
                    elif was_known:
                        said = f"no longer evicts keys ({ev.settings})"
                    else:
                        said = f"says that it does not evict keys ({ev.settings})"
                    state.say(f"plr proxy: redis at {state.display} {said}{tail}")
            return self.risk

    def start(self) -> None:
        """Refuse commands until Redis has answered once (unless it has), and look from a daemon
        thread until ``stop`` (never when ``interval`` <= 0: then only ``look`` by hand)."""
        if self._thread is not None:
            return
        with self._lock:
            if not self.read:
                self._unchecked = True
                self._state.health.refuse(NOT_YET_CHECKED)
        if self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="plr-redis-eviction-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = 0.0 if not self.read else self.interval  # not yet answered: calls wait for this look
        while not self._stop.wait(delay):
            try:
                self.look()
            except Exception as e:  # noqa: BLE001 - the watch must outlive a surprise, and say so
                self._state.say(f"plr proxy: the redis eviction check failed ({type(e).__name__}: {e}); still watching")
            delay = self.interval if self.read else min(self.interval, EVICTION_FIRST_LOOK_RETRY)

    def stop(self) -> None:
        """End the thread (waiting at most a second for a look under way)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
