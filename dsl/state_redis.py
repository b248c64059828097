"""Shared state for proxy fleets: sliding-window limit counters in Redis.

One Lua script checks every key and records the hit on all of them atomically, so
"10 per minute per session" holds across replicas. Time is Redis's own clock (``TIME``)
unless a clock is injected for tests: replicas' clocks never have to agree. Any Redis
failure raises ``StateUnavailable`` and the engine denies the call (fail closed); the next
call simply tries again, so service resumes when Redis returns.
"""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from .engine import StateUnavailable

# KEYS: counter keys. ARGV[1]: now in seconds or "" to use Redis TIME; ARGV[2]: member id;
# then per key: max, window. Returns nil when admitted, else {retry_after, index}.
_ACQUIRE = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local worst, which = -1, -1
for i, key in ipairs(KEYS) do
  local max = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local n = redis.call('ZCARD', key)
  if n >= max then
    local entry = redis.call('ZRANGE', key, n - max, n - max, 'WITHSCORES')
    local wait = tonumber(entry[2]) + window - now
    if wait > worst then worst, which = wait, i - 1 end
  end
end
if which >= 0 then
  return {tostring(math.max(worst, 0)), which}
end
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZADD', key, now, ARGV[2] .. ':' .. i)
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
end
return false
"""


class RedisLimitStore:
    """``LimitStore`` on Redis (sorted set per key: ZREMRANGEBYSCORE + ZCARD + ZADD + PEXPIRE)."""

    def __init__(self, client: Any, prefix: str = "plr:limit:", use_server_time: bool = True) -> None:
        self._r = client
        self._prefix = prefix
        self._server_time = use_server_time
        self._script = client.register_script(_ACQUIRE)

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> "RedisLimitStore":
        import redis

        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=5)
        return cls(client, **kw)

    def acquire(self, keys: Sequence[tuple[str, int, float]], now: float) -> float | None:
        r = self.acquire_which(keys, now)
        return None if r is None else r[0]

    def acquire_which(self, keys: Sequence[tuple[str, int, float]], now: float) -> tuple[float, int] | None:
        import redis

        args: list[Any] = ["" if self._server_time else repr(float(now)), uuid.uuid4().hex]
        for _key, mx, window in keys:
            args += [int(mx), float(window)]
        try:
            res = self._script(keys=[self._prefix + k for k, _, _ in keys], args=args)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            raise StateUnavailable(f"redis: {e}") from None
        except redis.exceptions.RedisError as e:
            raise StateUnavailable(f"redis error: {e}") from None
        if not res:
            return None
        retry, index = res
        return (float(retry), int(index))
