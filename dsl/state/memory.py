"""The in-process ``LimitStore``: one process, one lock, no dependencies.

The default store of an ``Engine``; a fleet of proxies shares its counters through
``dsl.state.redis.RedisLimitStore`` instead (same semantics, same answers).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from .base import spend_wait

__all__ = ["MemoryLimitStore"]


class MemoryLimitStore:
    """In-process ``LimitStore``: a deque of hit times per key behind one lock."""

    __slots__ = ("_lock", "_hits", "_windows", "_sweep_at", "_ledger")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._windows: dict[str, float] = {}
        self._sweep_at = 1024
        # spend caps and refundable limits: (time, amount, token) per key, oldest first
        self._ledger: dict[str, deque[tuple[float, float, str]]] = {}

    def spend(
        self, entries: Sequence[tuple[str, float, float, float | None]], now: float, token: str
    ) -> tuple[float, int, float] | None:
        """See ``LimitStore.spend``: all or nothing, under the one lock."""
        with self._lock:
            worst: tuple[float, int, float] | None = None
            for i, (key, mx, window, amount) in enumerate(entries):
                if amount is None:  # a plain counter beside them
                    dq = self._hits.get(key)
                    if dq is None:
                        dq = self._hits[key] = deque()
                        self._windows[key] = window
                    while dq and now - dq[0] >= window:
                        dq.popleft()
                    n = len(dq)
                    if n >= mx:
                        wait = max(dq[n - int(mx)] + window - now, 0.0)
                        if worst is None or wait > worst[0]:
                            worst = (wait, i, 0.0)
                    continue
                led = self._ledger.get(key)
                if led is None:
                    led = self._ledger[key] = deque()
                    self._windows[key] = window
                while led and now - led[0][0] >= window:
                    led.popleft()
                used = 0.0  # base.added_up, inlined: the one loop of a spend cap's decision
                for _t, a, _tok in led:
                    used += a
                if used + amount > mx:
                    wait = spend_wait(((t, a) for t, a, _ in led), used, amount, mx, window, now)
                    if worst is None or wait > worst[0]:
                        worst = (wait, i, mx - used)
            if worst is not None:
                return worst
            for key, _mx, window, amount in entries:
                if amount is None:
                    self._hits[key].append(now)
                else:
                    self._ledger[key].append((now, float(amount), token))
                self._windows[key] = window
            if len(self._hits) + len(self._ledger) > self._sweep_at:
                self._sweep(now)
            return None

    def refund(self, keys: Sequence[str], token: str) -> None:
        """See ``LimitStore.refund``."""
        with self._lock:
            for key in keys:
                led = self._ledger.get(key)
                if led:
                    kept = deque(e for e in led if e[2] != token)
                    self._ledger[key] = kept

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
        hits, windows, ledger = self._hits, self._windows, self._ledger
        for key in [k for k, dq in hits.items() if not dq or now - dq[-1] >= windows.get(k, 0.0)]:
            del hits[key]
            if key not in ledger:
                windows.pop(key, None)
        for key in [k for k, led in ledger.items() if not led or now - led[-1][0] >= windows.get(k, 0.0)]:
            del ledger[key]
            if key not in hits:
                windows.pop(key, None)
        self._sweep_at = max(1024, 2 * (len(hits) + len(ledger)))
