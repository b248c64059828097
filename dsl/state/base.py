"""What every limit store promises, and how any state backend fails: ``StateUnavailable``.

The engine programs against ``LimitStore`` only; a backend (``memory``, ``redis``) is chosen
once at start-up. The engine imports this module, so it holds nothing else: no backend, and
not the approval queue's contract (``queue``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["StateUnavailable", "LimitStore", "added_up", "spend_wait", "state_home"]


class StateUnavailable(Exception):
    """A shared ``LimitStore`` cannot be reached: the call is denied (``state_unavailable``)."""


def added_up(amounts: Iterable[float]) -> float:
    """The sum of a spend cap's amounts, oldest first, one IEEE addition at a time. Every store
    adds up this way (Redis's Lua too), so they answer alike to the last bit; Python 3.12's
    ``sum`` of floats compensates rounding, which would make the in-process store differ."""
    used = 0.0
    for a in amounts:
        used += a
    return used


def spend_wait(spent: Iterable[tuple[float, float]], used: float, amount: float, cap: float, window: float, now: float) -> float:
    """Seconds until ``amount`` fits under ``cap`` as the oldest of ``spent`` ((time, amount),
    oldest first, ``used`` their sum) leave the window; the whole window when it never fits (the
    amount alone passes the cap). The one rule of every store's spend caps."""
    wait = window
    if amount <= cap:
        freed = 0.0
        for t, a in spent:
            freed += a
            if used - freed + amount <= cap:
                wait = t + window - now
                break
    return max(wait, 0.0)


def state_home() -> Path:
    """``$XDG_STATE_HOME/plr`` (``~/.local/state/plr``): the audit log and the local approval
    queue live side by side there unless told otherwise."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "plr"


# --- limit counters -----------------------------------------------------------------------


@runtime_checkable
class LimitStore(Protocol):
    """Sliding-window counters shared by every decision (and kept across policy reloads).

    One atomic method so a shared store (Redis) can implement it with a script. A store may
    also offer ``acquire_which(keys, now) -> (retry_after, index) | None`` (same contract,
    plus the index of the key that set ``retry_after``) so the engine can name the limit hit.
    """

    def acquire(self, keys: Sequence[tuple[str, int, float]], now: float) -> float | None:
        """Record one hit at ``now`` on every ``(key, max, window)`` if all have room.

        A hit at ``t`` counts while ``now - t < window``. If every key has fewer than ``max``
        counted hits, record the hit on all of them and return None; otherwise record nothing
        and return the seconds until every key has room for one more call.
        """
        ...


# A store that keeps spend caps and `refund on error` limits also offers (the engine denies
# such a call with ``state_unavailable`` on a store that does not):
#
#   spend(entries, now, token) -> (retry_after, index, left) | None
#       ``entries``: ``(key, max, window, amount)``; ``amount`` None is a plain counter (as in
#       ``acquire``), else the amount (a call of a refundable counter is amount 1) whose sum over
#       the window must stay <= ``max``. All or nothing, atomically: if every entry has room,
#       record each (the amounts under ``token``) and return None; otherwise record nothing and
#       return the wait of the entry that waits longest, its index, and what it has ``left``.
#   refund(keys, token) -> None
#       forget what ``spend`` recorded under ``token`` on ``keys`` (the call failed upstream).
