"""The audit log: one JSON line per decision, appended and flushed before the call is forwarded.

Writing: ``AuditLog.write(record)`` serialises the record, and appends it with a single
``os.write`` on an ``O_APPEND`` descriptor, so the line is in the kernel before the call goes
upstream (no user-space buffer to lose) and two processes sharing a log never interleave
inside a line. A crash can at worst leave a torn last line without its newline; the writer
terminates such a line before appending, and the reader skips it, so one torn line never breaks
``plr audit``. Rotation is by size (``FILE`` -> ``FILE.1`` -> ... ``FILE.N``), under an
advisory lock so concurrent proxies rotate once.

Arguments are stored as a hash (``args_sha256`` of their canonical JSON) unless the proxy runs
with ``--log-args``; then values under keys that look like secrets are replaced by
``"[REDACTED]"``.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

try:  # POSIX advisory locks; rotation without them is still safe for a single process
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from ..cache import _sha256 as _builtin_sha256
from ..state.base import state_home

__all__ = [
    "AuditLog",
    "args_sha256",
    "canonical_args",
    "redact",
    "read_records",
    "parse_since",
    "default_audit_path",
    "rotated_paths",
    "utc_now",
]

# A key is secret-looking when one of its words (split at _ - . and camelCase) is a short secret
# word, or its letters contain a long one: `api_key`, `apiKey`, `accesstoken`, `client_secret`,
# `AUTH_TOKEN`, `sessionId` are; `monkey`, `author`, `keyboard`, `passenger` are not.
_SECRET_WORDS = frozenset({"key", "auth", "pass", "pwd", "pin", "jwt", "otp", "sid"})
_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "token", "credential", "cookie",
                 "apikey", "privatekey", "accesskey", "sessionid", "authorization", "bearer", "signature")  # fmt: skip
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def is_secret_key(key: str) -> bool:
    words = [w.lower() for w in _WORD.findall(key)]
    if any(w in _SECRET_WORDS for w in words):
        return True
    letters = "".join(words)
    return any(part in letters for part in _SECRET_PARTS)

REDACTED = "[REDACTED]"


def default_audit_path() -> Path:
    """``$XDG_STATE_HOME/plr/audit.jsonl`` (``~/.local/state/plr/audit.jsonl``)."""
    return state_home() / "audit.jsonl"


_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text up to the dot


def utc_now() -> str:
    """``2026-11-25T12:00:00.123Z``: UTC, millisecond precision (truncated).

    Every audit record takes one: the text up to the second is formatted once per second."""
    global _second
    sec, ns = divmod(time.time_ns(), 1_000_000_000)
    last, prefix = _second
    if sec != last:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
        _second = (sec, prefix)
    return f"{prefix}{ns // 1_000_000:03d}Z"


def encoding_once(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode``, with the C encoder it builds for every call built once (about half of
    what encoding a call's arguments costs), from the encoder's settings as they are now (a later
    change of them is not seen). The same text for every value without a reference cycle (any
    JSON document's): with one, RecursionError is raised, not ValueError. A subclass or an
    indenting encoder, or a Python without the C encoder: ``encoder.encode`` itself."""
    make = json.encoder.c_make_encoder
    if (
        make is None
        or type(encoder) is not json.JSONEncoder
        or encoder.indent is not None
    ):
        return encoder.encode
    c_encode = make(
        # no markers: a dict of them would be shared by every call, and by every thread at once
        # (a false "circular reference" for two encoding the same object); check_circular's dict
        # only changes the error a value holding itself gets
        None,
        encoder.default,
        json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    join = "".join

    def encode(value: Any) -> str:
        return join(c_encode(value, 0))

    return encode


# One encoder each, made once: json.dumps with any option makes a new encoder per call (the
# same class and options: the same text).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True, default=repr)
_RECORD = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr)
_canonical_text = encoding_once(_CANONICAL)


_STR = json.encoder.encode_basestring  # how _RECORD writes a str (ensure_ascii=False)


def _json_text(value: Any) -> str | None:
    """``_RECORD.encode(value)`` of a str or None (None: any other value, for the encoder)."""
    if value is None:
        return "null"
    return _STR(value) if value.__class__ is str else None


def record_head(session: Any, identity: Any, server: Any) -> str | None:
    """The part of a decision record a session's records share (see ``record_text``)."""
    parts = (_json_text(session), _json_text(identity), _json_text(server))
    if None in parts:
        return None
    return '"session":%s,"identity":%s,"server":%s,' % parts


def record_text(
    ts: str, head: str, tool: Any, args_sha: str, effect: Any, code: Any, rule: Any, reason: Any,
    policy_sha: Any, latency_us: int, call: Any,
) -> str | None:  # fmt: skip
    """``_RECORD.encode`` of a decision record with no optional field (``Decisions.record``), its
    session's part ``head`` written once per session: the same text without encoding the whole
    record (~2.5 µs less, on the way of every call to its upstream), marked as such for
    ``AuditLog.write``. None: a value that is not a str or None, or a ``latency_us`` that is not
    exactly an int, for the encoder to write."""
    if latency_us.__class__ is not int:
        return None
    s = _STR  # (raises TypeError for anything but a str)
    try:
        return RecordText(
            f'{{"ts":{"null" if ts is None else s(ts)},{head}"tool":{"null" if tool is None else s(tool)},'
            f'"args_sha256":{"null" if args_sha is None else s(args_sha)},'
            f'"effect":{"null" if effect is None else s(effect)},"code":{"null" if code is None else s(code)},'
            f'"rule":{"null" if rule is None else s(rule)},"reason":{"null" if reason is None else s(reason)},'
            f'"policy_sha256":{"null" if policy_sha is None else s(policy_sha)},"latency_us":{latency_us},'
            f'"call":{"null" if call is None else s(call)}}}'
        )
    except TypeError:
        return None


class RecordText(str):
    """A record's JSON text (``record_text``): what ``AuditLog.write`` writes as it is. Any other
    str handed to it is encoded as a JSON string, its line breaks escaped: it can never split a
    line or forge a record."""

    __slots__ = ()


def canonical_args(args: Any) -> str:
    """The canonical JSON text of a call's arguments (sorted keys, no spaces, UTF-8)."""
    try:
        return _canonical_text({} if args is None else args)
    except (ValueError, RecursionError, TypeError):
        return repr(args)


def _plain_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 (the one ``dsl.cache`` keys its entries with), else hashlib's. The
    same digests; but hashlib's goes through OpenSSL 3, which looks the algorithm up again
    (locks, a property query) for every new hash: ~5 µs of each audit record in the proxy,
    where a call waits for its record. On a host in FIPS mode, OpenSSL's (the validated one)."""
    try:
        import _hashlib

        if _hashlib.get_fips_mode():
            return hashlib.sha256
    except (ImportError, AttributeError):
        pass
    try:
        own = _builtin_sha256
        if own(b"plr").hexdigest() == hashlib.sha256(b"plr").hexdigest():
            return own  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - whatever is wrong with it: hashlib's
        pass
    return hashlib.sha256


_SHA256 = _plain_sha256()


def args_sha256(args: Any) -> str:
    return _SHA256(canonical_args(args).encode("utf-8", "surrogatepass")).hexdigest()  # type: ignore[no-any-return]


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with every value under a secret-looking key replaced."""
    if depth > 64:
        return REDACTED
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    return value


def rotated_paths(path: str | os.PathLike[str], backups: int = 99) -> list[Path]:
    """``FILE.N`` ... ``FILE.1``, ``FILE`` that exist, oldest first."""
    p = Path(path)
    out = [Path(f"{p}.{i}") for i in range(backups, 0, -1) if Path(f"{p}.{i}").exists()]
    if p.exists():
        out.append(p)
    return out


class AuditLog:
    """Appends JSON Lines records; thread-safe; safe to share a file between processes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._torn = False  # a write failed part-way: end that line before the next record
        self.records = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    # -- file handling ----------------------------------------------------------------

    def _open(self) -> None:
        # read-write only so the last byte can be read back through this same descriptor
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        st = os.fstat(fd)
        self._fd = fd
        self._ino = (st.st_dev, st.st_ino)
        self._end_torn_line()  # a previous crash may have left a torn last line

    def _end_torn_line(self) -> None:
        """End a last line that a crash or a failed write (disk full) left without its newline,
        so the next record starts a line of its own instead of being glued to the torn one."""
        assert self._fd is not None
        try:
            size = os.fstat(self._fd).st_size  # this file, even if the name was rotated meanwhile
            if size and os.pread(self._fd, 1, size - 1) != b"\n":
                os.write(self._fd, b"\n")
            self._torn = False
        except OSError:
            pass  # still failing: the next write tries again, and fails (denying) if it must

    def _reopen_if_moved(self) -> int | None:
        """Another process rotated the file: follow the name to the new file. The size of the file
        when it was not moved (None: it was, or is new), for the size check after the write."""
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._ino:
                return st.st_size
        except FileNotFoundError:
            pass
        self._close_fd()
        self._open()
        return None

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _rotate(self) -> None:
        assert self._fd is not None
        locked = False
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                locked = True
            except OSError:
                pass
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._ino and st.st_size >= self.max_bytes:
                for i in range(self.backups - 1, 0, -1):
                    src = Path(f"{self.path}.{i}")
                    if src.exists():
                        os.replace(src, f"{self.path}.{i + 1}")
                os.replace(self.path, f"{self.path}.1")
        except FileNotFoundError:
            pass
        finally:
            if locked:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[union-attr]
                except OSError:
                    pass
        self._close_fd()
        self._open()

    # -- writing ----------------------------------------------------------------------

    def write(self, record: dict[str, Any] | RecordText) -> None:
        """Append one record (or its JSON text, ``record_text``) and hand it to the kernel before
        returning (raises OSError on failure)."""
        text = record if record.__class__ is RecordText else _RECORD.encode(record)
        # U+2028/U+2029 are valid in JSON but split lines for many readers: escape them
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        line = (text + "\n").encode("utf-8", "surrogatepass")
        with self._lock:
            if self._fd is None:
                self._open()
            size = self._reopen_if_moved()
            assert self._fd is not None
            if self._torn:
                self._end_torn_line()
                size = None
            view = memoryview(line)
            while view:
                try:
                    n = os.write(self._fd, view)
                except InterruptedError:
                    continue
                except OSError as e:
                    if e.errno == errno.EBADF:
                        self._close_fd()
                        self._open()
                        size = None  # (another file, maybe: its size is asked after the write)
                        continue
                    self._torn = True
                    raise
                view = view[n:]
            if self.fsync:
                os.fsync(self._fd)
            self.records += 1
            if self.max_bytes > 0:
                # the size seen before the write and what it added (one system call fewer a record;
                # another writer's record in between is counted by the next one's check)
                size = os.fstat(self._fd).st_size if size is None else size + len(line)
                if size >= self.max_bytes:
                    self._rotate()

    def close(self) -> None:
        with self._lock:
            self._close_fd()


# --- reading ------------------------------------------------------------------------


def read_records(paths: Iterable[str | os.PathLike[str]], errors: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Records of the given files in order; a line that is not a JSON object is skipped
    (and described in ``errors``), so a torn last line never stops the reader."""
    for path in paths:
        try:
            f = open(path, "rb")
        except OSError as e:
            if errors is not None:
                errors.append(f"{path}: {e.strerror or e}")
            continue
        with f:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw.decode("utf-8", "replace"))
                except (ValueError, RecursionError):
                    rec = None
                if not isinstance(rec, dict):
                    if errors is not None:
                        errors.append(f"{path}:{n}: skipped a line that is not a JSON record (torn write?)")
                    continue
                yield rec


_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.I)
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: _dt.datetime | None = None) -> _dt.datetime:
    """``90s``, ``15m``, ``1h``, ``2d`` (ago) or an ISO timestamp -> an aware UTC datetime."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    m = _SINCE.match(text)
    if m:
        try:
            return now - _dt.timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2).lower()])
        except OverflowError:  # 99999999999d: before year 1
            raise ValueError(f"{text.strip()} reaches back before the year 1") from None
    return _parse_iso(text)


def _parse_iso(text: str) -> _dt.datetime:
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    ts = _dt.datetime.fromisoformat(t)  # ValueError on anything else
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=_dt.timezone.utc)
    return ts


def record_time(rec: dict[str, Any]) -> _dt.datetime | None:
    ts = rec.get("ts")
    if not isinstance(ts, str):
        return None
    try:
        return _parse_iso(ts)  # a record's time is ISO; never `2d`, which would mean "two days ago"
    except (ValueError, OverflowError):
        return None
