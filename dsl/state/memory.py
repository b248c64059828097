"""The in-process ``LimitStore``: one process, one lock, no dependencies.

The default store of an ``Engine``; a fleet of proxies shares its counters through
``dsl.state.redis.RedisLimitStore`` instead (same semantics, same answers).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

__all__ = ["MemoryLimitStore"]


class MemoryLimitStore:
    """In-process ``LimitStore``: a deque of hit times per key behind one lock."""

    __slots__ = ("_lock", "_hits", "_windows", "_sweep_at")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._windows: dict[str, float] = {}
        self._sweep_at = 1024

    def acquire(self, keys: Sequence[tuple[str, int, float]], now: float) -> float | None:
        """See ``LimitStore.acquire``."""
        r = self.acquire_which(keys, now)
        return None if r is None else r[0]

    def acquire_which(self, keys: Sequence[tuple[str, int, float]], now: float) -> tuple[float, int] | None:
        """``acquire`` that also says which key (index into ``keys``) set ``retry_after``."""
        if len(keys) == 1:
            return self._acquire_one(keys[0], now)
        with self._lock:
            hits = self._hits
            queues: list[deque[float]] = []
            worst: float | None = None
            worst_i = -1
            for i, (key, mx, window) in enumerate(keys):
                dq = hits.get(key)
                if dq is None:
                    dq = hits[key] = deque()
                    self._windows[key] = window
                while dq and now - dq[0] >= window:  # exactly `window` later it no longer counts
                    dq.popleft()
                n = len(dq)
                if n >= mx:
                    # one more call fits once the (n - mx + 1) oldest counted hits have expired
                    wait = dq[n - mx] + window - now
                    if worst is None or wait > worst:
                        worst, worst_i = wait, i
                queues.append(dq)
            if worst is not None:
                return (max(worst, 0.0), worst_i)
            for dq, (key, _mx, window) in zip(queues, keys, strict=True):
                dq.append(now)
                self._windows[key] = window
            if len(hits) > self._sweep_at:
                self._sweep(now)
            return None

    def peek_which(self, keys: Sequence[tuple[str, int, float]], now: float) -> tuple[float, int] | None:
        """What ``acquire_which`` would answer now, recording nothing."""
        worst: tuple[float, int] | None = None
        with self._lock:
            for i, (key, mx, window) in enumerate(keys):
                counted = [t for t in self._hits.get(key, ()) if now - t < window]
                if len(counted) >= mx:
                    wait = max(counted[len(counted) - mx] + window - now, 0.0)
                    if worst is None or wait > worst[0]:
                        worst = (wait, i)
        return worst

    def _acquire_one(self, entry: tuple[str, int, float], now: float) -> tuple[float, int] | None:
        """``acquire_which`` for the common single key, without the bookkeeping for several."""
        key, mx, window = entry
        with self._lock:
            dq = self._hits.get(key)
            if dq is None:
                dq = self._hits[key] = deque()
                self._windows[key] = window
            while dq and now - dq[0] >= window:  # exactly `window` later it no longer counts
                dq.popleft()
            n = len(dq)
            if n >= mx:
                return (max(dq[n - mx] + window - now, 0.0), 0)
            dq.append(now)
            self._windows[key] = window
            if len(self._hits) > self._sweep_at:
                self._sweep(now)
            return None

    def _sweep(self, now: float) -> None:
        """Forget keys with no counted hit, so idle sessions do not pile up (amortised O(1))."""
        hits, windows = self._hits, self._windows
        for key in [k for k, dq in hits.items() if not dq or now - dq[-1] >= windows.get(k, 0.0)]:
            del hits[key]
            windows.pop(key, None)
        self._sweep_at = max(1024, 2 * len(hits))
