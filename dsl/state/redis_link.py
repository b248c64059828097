"""Reaching Redis: ``--state`` URLs, clients that fail fast, and the health monitor.

``RedisHealth`` is how every Redis-backed piece fails closed and says so once. Any Redis
failure raises ``StateUnavailable`` (the engine denies the call with ``state_unavailable``;
the approval queue denies too). The first failure prints one clear line, later ones are
counted, not printed (a reminder at most once a minute), and the first success after an
outage prints one "reachable again" line. While Redis is down, calls fail fast without
touching the network for ``retry_interval`` seconds after each attempt (a black-holed Redis
never stalls every call for a socket timeout); the next attempt after that probes it again
(the pause doubles while the outage lasts, up to ``max_retry_interval``), so service resumes
by itself when Redis returns.

``RedisHealth`` also refuses on purpose: while ``refuse(reason)`` holds (the proxy's eviction
watch, ``dsl.state.redis``: a Redis that may evict plr's counters would let limits fail open),
every command raises ``StateUnavailable`` at once, although Redis answers.

``?allow_eviction=1`` in a ``--state`` URL is plr's, not redis-py's: the operator's consent to a
Redis that evicts keys (``allow_eviction``); clients are made without it (``_client``).

redis-py is imported only inside the functions that need it: ``pip install 'plr[fleet]'``
is needed only by those who use ``--state``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from .base import StateUnavailable

__all__ = [
    "ALLOW_EVICTION",
    "RedisHealth",
    "aclose_quietly",
    "allow_eviction",
    "check_state_url",
    "display_url",
    "redis_errors",
    "with_allow_eviction",
]

# The query parameter of a ``--state`` URL by which the operator accepts a Redis that evicts keys.
ALLOW_EVICTION = "allow_eviction"
_YES = ("1", "true", "yes")
_NO = ("0", "false", "no")


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "Redis cannot serve this request" (all fail closed)."""
    import redis

    return (redis.exceptions.RedisError, OSError)


def display_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and hints)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _plr_params(query: str) -> tuple[list[str], list[str]]:
    """A URL's raw query split into (redis-py's parts, verbatim; the values of ``allow_eviction``)."""
    keep: list[str] = []
    ours: list[str] = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        if unquote(name).strip().lower() == ALLOW_EVICTION:
            ours.append(unquote(value).strip().lower())
        else:
            keep.append(part)
    return keep, ours


def _query_of(url: str) -> tuple[str, str, str]:
    """``url`` as (what precedes ``?``, the raw query, ``#`` and what follows): rebuilt by
    concatenation, so a ``unix:///path`` keeps its slashes (``urlunsplit`` drops them)."""
    base, hash_, fragment = url.partition("#")
    head, _, query = base.partition("?")
    return head, query, hash_ + fragment


def allow_eviction(url: str) -> bool:
    """Whether a ``--state`` URL says ``allow_eviction=1`` (``true``/``yes``): the operator accepts
    a Redis that may evict plr's keys, so the proxy only warns. Absent: refused (secure by
    default). ValueError on any other value, or when given twice: a typo must not mean "no"
    silently, nor a second value override the first."""
    _, ours = _plr_params(_query_of(url)[1])
    if len(ours) > 1:
        raise ValueError(f"`{ALLOW_EVICTION}` is given {len(ours)} times; give it once")
    if not ours:
        return False
    if ours[0] in _YES:
        return True
    if ours[0] in _NO:
        return False
    raise ValueError(f"`{ALLOW_EVICTION}={ours[0]}`: expected {ALLOW_EVICTION}=1 (or 0)")


def _without_plr_params(url: str) -> str:
    """``url`` as redis-py must see it: without ``allow_eviction`` (redis-py passes unknown
    query parameters to its connections, which refuse them)."""
    head, query, fragment = _query_of(url)
    keep, ours = _plr_params(query)
    if not ours:
        return url
    return head + ("?" + "&".join(keep) if keep else "") + fragment


def with_allow_eviction(url: str) -> str:
    """``url`` with ``allow_eviction=1`` (for the hint of a refusal; other parameters kept)."""
    head, query, fragment = _query_of(url)
    keep, _ = _plr_params(query)
    return head + "?" + "&".join([*keep, f"{ALLOW_EVICTION}=1"]) + fragment


def check_state_url(url: str) -> str:
    """Validate a ``--state`` URL (``redis://HOST:PORT/DB``, ``rediss://``, ``unix://``, any of
    them with ``?allow_eviction=1``); ValueError if bad."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ValueError(f"not a URL: {e}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected redis://HOST:PORT/DB (or rediss://, unix://)")
    if parts.fragment:
        raise ValueError("a #KEY names a policy key (--policy); --state takes redis://HOST:PORT/DB")
    if parts.scheme != "unix":
        if not parts.hostname:
            raise ValueError("no host: expected redis://HOST:PORT/DB")
        try:
            parts.port
        except ValueError:
            raise ValueError("the port is not a number in 0..65535") from None
        db = unquote(parts.path.lstrip("/"))
        if db and not db.isdigit():
            raise ValueError(f"the database `{db}` is not a number (redis://HOST:PORT/DB)")
    allow_eviction(url)
    return url


class RedisHealth:
    """Is Redis reachable? Fail fast while it is not, and report changes once (thread-safe)."""

    def __init__(
        self,
        where: str,
        report: Callable[[str], None] | None = None,
        *,
        retry_interval: float = 0.0,
        max_retry_interval: float = 5.0,
        remind_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self._report = report
        self.retry_interval = retry_interval
        self.max_retry_interval = max(retry_interval, max_retry_interval)
        self._pause = retry_interval
        self.remind_every = remind_every
        self._clock = clock
        self._lock = threading.Lock()
        self.up = True
        self.down_since = 0.0
        self._next_try = 0.0
        self._reminded = 0.0
        self.denied = 0  # calls refused during the current outage
        self.last_error = ""
        self.refusal: str | None = None  # why every command is refused although Redis answers
        self.refused = 0  # commands refused since ``refusal`` was set

    def _say(self, text: str) -> None:
        if self._report is not None:
            try:
                self._report(text)
            except Exception:  # noqa: BLE001 - reporting must never break a decision
                pass

    def refuse(self, reason: str | None) -> int:
        """Refuse every command with ``StateUnavailable(reason)`` from now on, although Redis
        answers (an evicting Redis: counters that may vanish must not decide); None lifts it.
        Returns how many commands were refused since it was set (0 when none was)."""
        with self._lock:
            n = self.refused if self.refusal is not None else 0
            if reason is None or self.refusal is None:
                self.refused = 0
            self.refusal = reason
        return n

    def guard(self) -> None:
        """Before talking to Redis: raise at once while a refusal holds, or while an outage is
        known and no retry is due."""
        reason = self.refusal
        if reason is not None:
            with self._lock:
                self.refused += 1
            raise StateUnavailable(reason)
        if self.up:
            return
        with self._lock:
            if self.up:
                return
            now = self._clock()
            if now >= self._next_try:
                self._next_try = now + self._pause  # this caller probes; others fail fast
                return
            self.denied += 1
            note = self._remind(now)
            err = StateUnavailable(f"redis at {self.where} unreachable ({self.last_error})")
        if note:
            self._say(note)
        raise err

    def ok(self) -> None:
        """A Redis command succeeded."""
        if self.up:
            return
        with self._lock:
            if self.up:
                return
            self.up = True
            self._pause = self.retry_interval
            secs = self._clock() - self.down_since
            n, self.denied = self.denied, 0
        self._say(
            f"plr proxy: shared state redis at {self.where} is reachable again after {secs:.1f} s; "
            f"{n} request(s) were denied (state_unavailable) meanwhile"
        )

    def failed(self, e: BaseException) -> StateUnavailable:
        """A Redis command failed: record it (one log line per outage) and return the exception to raise."""
        detail = _describe(e)
        first = False
        note = None
        with self._lock:
            now = self._clock()
            self.last_error = detail
            self.denied += 1
            if self.up:
                self._pause = self.retry_interval
            else:  # a failed probe: wait longer before the next one (bounded)
                self._pause = min(self.max_retry_interval, max(self._pause * 2, self.retry_interval))
            self._next_try = now + self._pause
            if self.up:
                self.up = False
                self.down_since = now
                self._reminded = now
                first = True
            else:
                note = self._remind(now)
        if note:
            self._say(note)
        if first:
            self._say(
                f"plr proxy: shared state redis at {self.where} is unreachable ({detail}); denying every call "
                "that needs it (limits, approval queue) with code state_unavailable until it returns"
            )
        return StateUnavailable(f"redis at {self.where} unreachable ({detail})")

    def _remind(self, now: float) -> str | None:  # under the lock; the caller prints outside it
        if self.remind_every > 0 and now - self._reminded >= self.remind_every:
            self._reminded = now
            return (
                f"plr proxy: shared state redis at {self.where} still unreachable after {now - self.down_since:.0f} s "
                f"({self.last_error}); {self.denied} request(s) denied so far"
            )
        return None

    def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``fn(*args, **kw)`` under this monitor: Redis errors become ``StateUnavailable``."""
        self.guard()
        try:
            res = fn(*args, **kw)
        except StateUnavailable:
            raise
        except redis_errors() as e:
            raise self.failed(e) from None
        self.ok()
        return res

    async def arun(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``await fn(*args, **kw)`` under this monitor."""
        self.guard()
        try:
            res = await fn(*args, **kw)
        except StateUnavailable:
            raise
        except redis_errors() as e:
            raise self.failed(e) from None
        self.ok()
        return res


def _describe(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(e).__name__}: {text}" if type(e).__name__ not in text else text


def _client(url: str, *, socket_timeout: float = 0.5, asyncio: bool = False) -> Any:
    """A client that fails fast: short timeouts, one retry (a pooled connection may be stale
    after a Redis restart), no backoff sleeps on the caller's thread."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kw: dict[str, Any] = dict(
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=5,
        retry=Retry(NoBackoff(), 1),
    )
    if asyncio:
        import redis.asyncio

        from redis.asyncio.retry import Retry as ARetry

        kw["retry"] = ARetry(NoBackoff(), 1)
        return redis.asyncio.Redis.from_url(_without_plr_params(url), **kw)
    import redis

    return redis.Redis.from_url(_without_plr_params(url), **kw)


async def aclose_quietly(*objs: Any) -> None:
    """Close redis.asyncio clients / pub-subs (``aclose`` on redis-py >= 5.0.1, ``close`` before),
    never raising and never waiting more than 2 s each."""
    import inspect

    import anyio

    with anyio.CancelScope(shield=True):
        for obj in objs:
            if obj is None:
                continue
            closer = getattr(obj, "aclose", None) or getattr(obj, "close", None)
            if closer is None:
                continue
            try:
                with anyio.move_on_after(2):
                    res = closer()
                    if inspect.isawaitable(res):
                        await res
            except Exception:  # noqa: BLE001
                pass
