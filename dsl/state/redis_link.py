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

Two audiences: the operator's lines (``report``) name the Redis (``display_url``: every
credential hidden); a ``StateUnavailable``'s text never does, nor Redis's address in an error
(``conceal``): the engine makes it the reason of a decision, which the proxy sends to the agent
and writes to the audit log.

``?allow_eviction=1`` in a ``--state`` URL is plr's, not redis-py's: the operator's consent to a
Redis that evicts keys (``allow_eviction``); clients are made without it (``_client``).

redis-py is imported only inside the functions that need it: ``pip install 'plr[fleet]'``
is needed only by those who use ``--state``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from .base import StateUnavailable

__all__ = [
    "ALLOW_EVICTION",
    "RedisHealth",
    "aclose_quietly",
    "address_of",
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


# Query parameters whose values ``display_url`` shows: plr's own and redis-py's that hold no
# secret. redis-py passes any other one to its connections (``?password=``, ``?ssl_password=``,
# ...), so any other one is hidden: a name redis-py learns tomorrow is hidden too.
_SHOWN_PARAMS = frozenset(
    {
        ALLOW_EVICTION, "db", "protocol", "username", "client_name", "lib_name", "lib_version", "encoding",
        "decode_responses", "socket_timeout", "socket_connect_timeout", "socket_read_size", "socket_keepalive",
        "retry_on_timeout", "retry_on_error", "max_connections", "health_check_interval", "timeout",
        "legacy_responses", "ssl_cert_reqs", "ssl_check_hostname", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile",
        "ssl_keyfile", "ssl_min_version", "ssl_ciphers", "ssl_validate_ocsp", "ssl_validate_ocsp_stapled",
        "ssl_include_verify_flags", "ssl_exclude_verify_flags",
    }
)  # fmt: skip


def display_url(url: str) -> str:
    """``url`` for logs and hints: a password in it (``redis://:PW@``) and the value of every
    query parameter that may hold a secret (``?password=PW``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    head, query, fragment = _query_of(url)
    if parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        try:
            port = parts.port
        except ValueError:
            port = None
        netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port is not None else "")
        head = f"{parts.scheme}://{netloc}{parts.path}"  # concatenated: `unix://:***@/path` keeps its slashes
    if "?" not in url.partition("#")[0]:
        return head + fragment
    shown: list[str] = []
    for part in query.split("&") if query else []:
        name, eq, value = part.partition("=")
        if unquote(name).strip().lower() in _SHOWN_PARAMS:
            shown.append(part)
        elif not eq:
            shown.append("***" if part else part)  # not a parameter redis-py reads, yet it is hidden
        else:
            shown.append(f"{name}=***" if value else part)
    return head + "?" + "&".join(shown) + fragment


def address_of(url: str) -> list[str]:
    """Where a ``--state`` URL's Redis is, as redis-py's errors name it (``HOST:PORT``, ``HOST``,
    a socket's path): what ``RedisHealth`` conceals in the text of a ``StateUnavailable``."""
    try:
        parts = urlsplit(_without_plr_params(url))
        port = parts.port
    except ValueError:
        return []
    if parts.scheme == "unix":
        return [unquote(parts.path)] if parts.path else []
    host = unquote(parts.hostname or "")
    if not host:
        return []
    return [f"{host}:{port if port is not None else 6379}", f"[{host}]:{port or 6379}", host]


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
    """Is Redis reachable? Fail fast while it is not, and report changes once (thread-safe).

    ``where`` (the URL as ``display_url`` shows it) is for the operator's lines only; the text
    of a ``StateUnavailable`` names no Redis, and ``conceal`` (``address_of``) is taken out of
    the errors it quotes: that text becomes a decision's reason, which reaches the agent."""

    def __init__(
        self,
        where: str,
        report: Callable[[str], None] | None = None,
        *,
        retry_interval: float = 0.0,
        max_retry_interval: float = 5.0,
        remind_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        conceal: Iterable[str] = (),
    ) -> None:
        self.where = where
        self._conceal = _concealer(conceal)
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
        self.last_error = ""  # for the operator
        self._last_public = ""  # the same without Redis's address (for the agent)
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
            err = StateUnavailable(f"shared state (redis) unreachable: {self._last_public}")
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
            self._last_public = public = _describe(e, self._conceal)
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
        return StateUnavailable(f"shared state (redis) unreachable: {public}")

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


def _concealer(words: Iterable[str]) -> Callable[[str], str]:
    """A function that writes ``redis`` for each of ``words`` standing alone in a text (redis-py
    names the address it failed to reach: `Error 111 connecting to HOST:PORT.`)."""
    found = sorted({w for w in words if w}, key=len, reverse=True)
    if not found:
        return lambda text: text
    pattern = re.compile(r"(?<![\w.:/\[-])(?:" + "|".join(map(re.escape, found)) + r")(?![\w:/\]-])")
    return lambda text: pattern.sub("redis", text)


def _describe(e: BaseException, conceal: Callable[[str], str] | None = None) -> str:
    """``e`` in one line of at most 200 characters (``conceal``: applied before it is cut, so
    no part of a concealed word survives)."""
    text = str(e).strip() or type(e).__name__
    if conceal is not None:
        text = conceal(text)
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
