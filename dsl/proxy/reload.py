"""Loading the policy, and hot reload (``--watch``).

``--policy`` names a file, a directory of ``.plr`` files, an ``http(s)://`` URL, or a Redis key
``redis://HOST:PORT/DB#KEY`` (the key holds policy JSON or ``.plr`` text; ``rediss://`` too). A
fleet of proxies reads one policy from one place.

``load_policy_source`` (``load_policy_file`` for files) raises ``PlrError`` on any failure,
including an unreachable URL or Redis: no policy, no proxy. ``watch_policy_source`` follows
the source: files with watchfiles; URLs and Redis keys by polling every ``poll_interval``
seconds (HTTP with ``If-None-Match`` / ``If-Modified-Since``), and a Redis key also at once on
a pub/sub message: keyspace notifications (``notify-keyspace-events K$``) or a ``PUBLISH KEY
...`` on a channel named like the key. On each change it loads the new policy completely
(fetch, compile, validate, prepare) and only then swaps it into the engine with
``Engine.replace_policy`` (one assignment, so a concurrent decision sees either the old or the
new policy, never a mix; limit counters are kept). A broken policy or an unreachable source
leaves the old policy in force and is reported once (not at every poll).

Local files are read by ``read_policy_bytes`` only: regular files (a symlink to one is fine),
opened without blocking, so a FIFO, socket or device named ``*.plr`` / ``*.json`` is refused at
once, never waited on (a reload that waited would never end, and no later change would apply),
and at most ``MAX_POLICY_BYTES``, the cap of a URL or Redis source, checked on the open file
and again by a bounded read, so a file that grows meanwhile cannot get past it. A reload that
still does not finish within ``RELOAD_TIMEOUT`` seconds is given up (the old policy stays) so
the watcher goes on.

``LoadedPolicy.sha256`` is the SHA-256 of the policy's canonical JSON (``Policy.to_json()``);
the proxy writes it as ``policy_sha256`` in every audit record, so a fleet can prove which
policy decided each call.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio
import anyio.to_thread

from ..errors import PlrError
from ..reading import MAX_POLICY_BYTES, not_a_regular_file, read_policy_bytes, read_policy_text

__all__ = [
    "LoadedPolicy",
    "MAX_POLICY_BYTES",
    "read_policy_bytes",
    "read_policy_text",
    "not_a_regular_file",
    "load_policy_file",
    "load_policy_source",
    "watch_policy",
    "watch_policy_source",
    "source_kind",
    "show_source",
]

FETCH_TIMEOUT = 10.0
# a reload that has not finished after this long is given up (the old policy stays in force):
# the watcher must go on to the next change whatever one file does
RELOAD_TIMEOUT = 120.0


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Any  # dsl.policy.Policy
    sha256: str  # of the canonical JSON (Policy.to_json())
    path: str  # the source as given (file, URL, redis://...#KEY)
    raw_sha256: str | None = None  # of the fetched bytes (URL / Redis sources): a poll that sees them again is a no-op
    warnings: tuple[Any, ...] = ()  # the checks' warnings (Diagnostic) of a compiled .plr source: shown at start


def load_policy_file(path: str | os.PathLike[str]) -> LoadedPolicy:
    """A ``.json`` policy through the loader, anything else compiled as ``.plr``; PlrError on failure.

    A directory is every ``*.plr`` file under it; each file read, imports included, goes
    through ``read_policy_bytes`` (regular files only, at most ``MAX_POLICY_BYTES``)."""
    p = str(path)
    if not os.path.exists(p):
        raise PlrError.at("no such file", p)
    warnings: list[Any] = []
    try:
        if os.path.isdir(p) or not p.endswith(".json"):
            from ..compiler import compile_files

            paths = sorted(str(x) for x in Path(p).rglob("*.plr")) if os.path.isdir(p) else [p]
            if not paths:
                raise PlrError.at("no .plr files in this directory", p)
            policy = compile_files(paths, reader=read_policy_text, warnings=warnings)
        else:
            from ..policy import load_policy

            policy = load_policy(read_policy_bytes(p), name=p)
    except PlrError:
        raise
    except RecursionError:
        raise PlrError.at("policy is nested too deeply", p) from None
    except (OSError, ValueError) as e:
        raise PlrError.at(f"cannot read the policy: {e}", p) from None
    text = policy.to_json()
    return LoadedPolicy(policy, hashlib.sha256(text.encode()).hexdigest(), p, warnings=tuple(warnings))


# --- remote sources: http(s) URLs and Redis keys -----------------------------------------------


def source_kind(spec: str) -> str:
    """``"http"``, ``"redis"`` or ``"file"``."""
    low = spec[:10].lower()
    if low.startswith(("http://", "https://")):
        return "http"
    if low.startswith(("redis://", "rediss://")):
        return "redis"
    return "file"


def show_source(spec: str) -> str:
    """The source for logs, with any password hidden."""
    if source_kind(spec) == "file":
        return spec
    from ..state.redis_link import display_url

    return display_url(spec)


def _parse_policy_text(raw: bytes, name: str, where: str) -> Any:
    """Policy JSON (text starting with ``{``) or ``.plr`` source text -> Policy; PlrError otherwise."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PlrError.at(f"the policy is not UTF-8 text: {e}", where) from None
    try:
        if text.lstrip().startswith("{"):
            from ..policy import load_policy

            return load_policy(text, name)
        if not text.strip():
            raise PlrError.at("the policy is empty", where)
        from ..compiler import compile_source

        return compile_source(text, name)
    except PlrError:
        raise
    except RecursionError:
        raise PlrError.at("policy is nested too deeply", where) from None
    except (ValueError, TypeError) as e:
        raise PlrError.at(f"not a policy: {e}", where) from None


class _HttpSource:
    """An http(s) URL: GET with conditional headers; 304 means unchanged."""

    def __init__(self, url: str, timeout: float = FETCH_TIMEOUT) -> None:
        self.url = url
        self.shown = show_source(url)
        self.timeout = timeout
        self._etag: str | None = None
        self._modified: str | None = None
        path = urlsplit(url).path
        self.name = unquote(path.rstrip("/").rsplit("/", 1)[-1]) or "policy.plr"

    def fetch(self, conditional: bool = False) -> bytes | None:
        import urllib.error
        import urllib.request

        headers = {"Accept": "application/json, text/plain, */*", "User-Agent": "plr-proxy"}
        if conditional and self._etag:
            headers["If-None-Match"] = self._etag
        if conditional and self._modified:
            headers["If-Modified-Since"] = self._modified
        req = urllib.request.Request(self.url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) only (source_kind)
                body = resp.read(MAX_POLICY_BYTES + 1)
                etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        except urllib.error.HTTPError as e:
            if e.code == 304:
                return None
            raise PlrError.at(f"cannot fetch the policy: HTTP {e.code} {e.reason}", self.shown) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            why = getattr(e, "reason", None) or e
            raise PlrError.at(f"cannot fetch the policy: {why}", self.shown) from None
        if len(body) > MAX_POLICY_BYTES:
            raise PlrError.at(f"the policy is larger than {MAX_POLICY_BYTES} bytes", self.shown)
        self._etag, self._modified = etag, modified
        return body

    async def changed(self, poll_interval: float) -> None:
        await anyio.sleep(poll_interval)

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class _RedisSource:
    """``redis://HOST:PORT/DB#KEY``: GET KEY; woken early by keyspace events or ``PUBLISH KEY``."""

    def __init__(self, spec: str, timeout: float = FETCH_TIMEOUT) -> None:
        parts = urlsplit(spec)
        self.shown = show_source(spec)
        self.key = unquote(parts.fragment)
        if not self.key:
            raise PlrError.at("a Redis policy source names its key: redis://HOST:PORT/DB#KEY", self.shown)
        self.url = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
        db = unquote(parts.path.lstrip("/")) or "0"
        if not db.isdigit():
            raise PlrError.at(f"the database `{db}` is not a number (redis://HOST:PORT/DB#KEY)", self.shown)
        self.db = int(db)
        self.name = self.key
        self.timeout = timeout
        self._client: Any = None
        self._aclient: Any = None
        self._pubsub: Any = None

    def _sync(self) -> Any:
        if self._client is None:
            from ..state.redis_link import _client

            try:
                self._client = _client(self.url, socket_timeout=min(self.timeout, 2.0))
            except ImportError:
                from ..extras import install_hint

                raise PlrError.at(f"reading a policy from Redis needs redis-py: {install_hint('fleet')}", self.shown) from None
            except ValueError as e:
                raise PlrError.at(f"not a Redis URL: {e}", self.shown) from None
        return self._client

    def fetch(self, conditional: bool = False) -> bytes | None:
        client = self._sync()
        import redis

        try:
            raw = client.get(self.key)
        except (redis.exceptions.RedisError, OSError) as e:
            raise PlrError.at(f"cannot read the policy from Redis: {type(e).__name__}: {e}", self.shown) from None
        if raw is None:
            raise PlrError.at(f"the Redis key `{self.key}` does not exist", self.shown)
        if len(raw) > MAX_POLICY_BYTES:
            raise PlrError.at(f"the policy is larger than {MAX_POLICY_BYTES} bytes", self.shown)
        return bytes(raw)

    async def changed(self, poll_interval: float) -> None:
        """Return on a notification about the key, or after ``poll_interval`` seconds."""
        deadline = anyio.current_time() + poll_interval
        try:
            if self._pubsub is None:
                from ..state.redis_link import _client

                self._aclient = _client(self.url, socket_timeout=min(self.timeout, 2.0), asyncio=True)
                ps = self._aclient.pubsub()
                self._pubsub = ps
                await ps.subscribe(f"__keyspace@{self.db}__:{self.key}", self.key)
            while True:
                left = deadline - anyio.current_time()
                if left <= 0:
                    return
                # get_message's own timeout: never cancel a pub/sub read half-way
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                if msg is not None:
                    await anyio.sleep(0.02)  # a burst of events (SET + PUBLISH) is one reload
                    while await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is not None:
                        pass
                    return
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:  # noqa: BLE001 - Redis down or no pub/sub: polling still works
            await self._drop_pubsub()
            left = deadline - anyio.current_time()
            if left > 0:
                await anyio.sleep(left)

    async def _drop_pubsub(self) -> None:
        ps, ac = self._pubsub, self._aclient
        self._pubsub = self._aclient = None
        if ps is not None or ac is not None:
            from ..state.redis_link import aclose_quietly

            await aclose_quietly(ps, ac)

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001
                pass
            self._client = None

    async def aclose(self) -> None:
        await self._drop_pubsub()
        self.close()


def _remote(spec: str) -> _HttpSource | _RedisSource:
    return _HttpSource(spec) if source_kind(spec) == "http" else _RedisSource(spec)


def _loaded_from(src: _HttpSource | _RedisSource, spec: str, raw: bytes) -> LoadedPolicy:
    policy = _parse_policy_text(raw, src.name, src.shown)
    text = policy.to_json()
    return LoadedPolicy(policy, hashlib.sha256(text.encode()).hexdigest(), spec, hashlib.sha256(raw).hexdigest())


def load_policy_source(spec: str | os.PathLike[str]) -> LoadedPolicy:
    """A file or directory (``load_policy_file``), an http(s) URL or ``redis://...#KEY``; PlrError on failure."""
    s = str(spec)
    kind = source_kind(s)
    if kind == "file":
        return load_policy_file(s)
    src = _remote(s)
    try:
        raw = src.fetch()
    finally:
        src.close()
    if raw is None:  # a 304 to an unconditional request: a broken server
        raise PlrError.at("the policy server sent no policy", src.shown)
    return _loaded_from(src, s, raw)


async def watch_policy_source(
    spec: str,
    apply: Callable[[LoadedPolicy], None],
    report: Callable[[str], None],
    *,
    initial: LoadedPolicy | None = None,
    poll_interval: float = 2.0,
    debounce_ms: int = 50,
    stop_event: anyio.Event | None = None,
    reloaded: Callable[[bool, str | None], None] | None = None,
) -> None:
    """Reload from ``spec`` on every change until cancelled; ``apply`` must swap atomically or raise.

    ``apply`` runs in the caller's event loop (never in a worker thread), so decisions made on
    that loop see the policy and its hash change together. ``reloaded(ok, sha256)`` is told of
    every reload applied or refused (--metrics).
    """
    if source_kind(spec) == "file":
        await watch_policy(spec, apply, report, debounce_ms=debounce_ms, stop_event=stop_event, reloaded=reloaded)
        return
    try:
        src = _remote(spec)
    except PlrError as e:
        report(f"plr proxy: cannot watch the policy source:\n{e}")
        return
    last = initial.raw_sha256 if initial is not None else None
    failing = False
    try:
        while stop_event is None or not stop_event.is_set():
            await src.changed(poll_interval)
            try:
                raw = await anyio.to_thread.run_sync(lambda: src.fetch(conditional=last is not None))
            except PlrError as e:
                if not failing:
                    failing = True
                    report(f"plr proxy: cannot read the policy source; keeping the policy in force:\n{e}")
                continue
            except Exception as e:  # noqa: BLE001 - never let a reload crash the proxy
                if not failing:
                    failing = True
                    report(f"plr proxy: cannot read the policy source; keeping the policy in force: {type(e).__name__}: {e}")
                continue
            if failing:
                failing = False
                report(f"plr proxy: policy source {src.shown} is reachable again")
            if raw is None:
                continue  # 304 Not Modified
            digest = hashlib.sha256(raw).hexdigest()
            if digest == last:
                continue
            last = digest  # a broken policy is reported once, not at every poll
            try:
                loaded = await _within(RELOAD_TIMEOUT, _loaded_from, src, spec, raw)
                apply(loaded)
            except Exception as e:  # noqa: BLE001 - never let a reload crash the proxy
                report(refused(e))
                _tell(reloaded, False, None)
            else:
                report(f"plr proxy: reloaded policy {src.shown} (sha256 {loaded.sha256[:12]})")
                _tell(reloaded, True, loaded.sha256)
    finally:
        await src.aclose()


def _tell(reloaded: Callable[[bool, str | None], None] | None, ok: bool, sha256: str | None) -> None:
    if reloaded is None:
        return
    try:
        reloaded(ok, sha256)
    except Exception:  # noqa: BLE001 - a metric never stops the watcher
        pass


def refused(e: BaseException) -> str:
    """The one stderr line of a refused reload: which file, and why (each error located; the
    sink escapes it, so a file's text cannot forge a line)."""
    head = "plr proxy: policy reload failed, keeping the previous policy: "
    if isinstance(e, PlrError):
        errs = e.errors or e.diagnostics
        said = "; ".join(f"{d.location()}: {d.message}" for d in errs[:3])
        more = f" (and {len(errs) - 3} more errors: plr check shows them all)" if len(errs) > 3 else ""
        return head + said + more
    if isinstance(e, TimeoutError):
        return head + str(e)
    return head + f"{type(e).__name__}: {e}"


async def _within(seconds: float, fn: Callable[..., LoadedPolicy], *args: Any) -> LoadedPolicy:
    """``fn(*args)`` in a worker thread, given up after ``seconds`` (TimeoutError): whatever a
    file does, the watcher is free for the next change (the abandoned thread's result is dropped)."""
    with anyio.move_on_after(seconds):
        return await anyio.to_thread.run_sync(lambda: fn(*args), abandon_on_cancel=True)
    raise TimeoutError(f"loading the policy took longer than {seconds:g} s; given up")


# With --watch, how long (ms) the policy files must be left alone before a change is loaded: a
# file written in place, in chunks, must not have a prefix that happens to compile swapped in.
QUIET_MS = 400


async def watch_policy(
    path: str,
    apply: Callable[[LoadedPolicy], None],
    report: Callable[[str], None],
    *,
    debounce_ms: int = 50,
    stop_event: anyio.Event | None = None,
    reloaded: Callable[[bool, str | None], None] | None = None,
) -> None:
    """Reload ``path`` on every change until cancelled; ``apply`` must swap atomically or raise."""
    from watchfiles import awatch

    target = os.path.abspath(path)
    watch_dir = target if os.path.isdir(target) else os.path.dirname(target)

    def relevant(_change: Any, changed: str) -> bool:
        changed = os.path.abspath(changed)
        if changed == target:
            return True
        # a .plr policy may import sibling files: any .plr change recompiles it
        return changed.endswith(".plr") and not target.endswith(".json")

    async for _changes in awatch(
        watch_dir,
        watch_filter=relevant,
        debounce=max(debounce_ms, QUIET_MS * 8),
        step=QUIET_MS,  # a file written in several chunks is loaded once it has been quiet this long
        stop_event=stop_event,
        rust_timeout=200,  # wake often enough that stopping the proxy never waits seconds
        recursive=os.path.isdir(target),
    ):
        try:
            loaded = await _within(RELOAD_TIMEOUT, load_policy_file, path)
            apply(loaded)
        except Exception as e:  # noqa: BLE001 - never let a reload crash (or stop) the watcher
            report(refused(e))
            _tell(reloaded, False, None)
        else:
            report(f"plr proxy: reloaded policy {path} (sha256 {loaded.sha256[:12]})")
            _tell(reloaded, True, loaded.sha256)
