"""The compiled-policy cache: ``plr eval`` decides from plain data it validated once before.

Loading a policy the slow way costs pydantic model building (and, for ``.plr``, the parser
and every stage of the compiler); a command that decides one call should not pay that on
every run. The cache keeps, per source, the canonical dump of the validated policy
(``Policy.to_dict()``), which ``Engine.from_data`` prepares without pydantic.

An entry is used only if everything it was made from is unchanged: the bytes of the policy
file and of every file a ``.plr`` imported (their SHA-256 is checked on each hit), and plr's
own code (the version plus the size and mtime of the package's modules and grammar). Errors
are never cached. Entries are written atomically (temp file + rename) in a directory only
the user can read (an existing directory that is not the user's own, or that others may write
to, turns the cache off); a corrupt or unreadable entry is a miss, never an error.

The same directory keeps a few text entries (``read_text_entry``): ``plr --help`` as click
rendered it (dsl/cli/root_help.py), checked against a key of everything the text depends on.

Only the CLI's one-shot commands use it; the proxy always validates (a policy that enforces
must not depend on a writable cache). ``PLR_NO_CACHE=1`` turns it off; ``PLR_CACHE_DIR``
moves it (default ``$XDG_CACHE_HOME/plr`` or ``~/.cache/plr``).
"""

from __future__ import annotations

import os

from . import __version__
from .reading import read_policy_bytes

# No pathlib or typing here: a cache hit is on the start-up path of every `plr eval`, and on an
# interpreter whose site hooks have not loaded them already they cost more than the hit itself.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

try:  # CPython's own SHA-256 (the digest hashlib gives) without loading OpenSSL: 2.5 ms a `plr eval`
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found]  # CPython >= 3.12
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef]  # CPython 3.11
    except ImportError:
        from hashlib import sha256 as _sha256  # type: ignore[assignment]

__all__ = ["cache_dir", "load_cached", "read_text_entry", "write_text_entry"]

FORMAT = 1  # bump when the entry layout or the meaning of the dump changes


def cache_dir() -> Path | None:
    """Where entries live, or None when the cache is turned off."""
    from pathlib import Path

    d = _cache_dir()
    return None if d is None else Path(d)


def _cache_dir() -> str | None:
    """``cache_dir`` as a string (the hit path does not import pathlib)."""
    if os.environ.get("PLR_NO_CACHE", "") not in ("", "0"):
        return None
    explicit = os.environ.get("PLR_CACHE_DIR")
    if explicit:
        d = explicit
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "plr")
    try:
        st = os.stat(d)
    except OSError:
        return d  # created private on first write
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
        return None  # someone else could write entries: not a cache to trust
    return d


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _code_fingerprint() -> bytes:
    """plr's own code: an entry made by other code (an upgrade, an edit in a checkout) is stale."""
    h = _sha256(f"plr {__version__} cache {FORMAT}\0".encode())
    pkg = os.path.dirname(os.path.realpath(__file__))
    files = sorted(e.path for e in os.scandir(pkg) if e.name.endswith(".py"))
    for f in [*files, _grammar_file(pkg)]:
        try:
            st = os.stat(f)
        except OSError:
            continue
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.digest()


def _grammar_file(pkg: str) -> str:
    """``resources.grammar_path()`` without importing importlib.resources: package data in
    ``dsl/_data`` (a wheel), else the checkout's top level (see dsl/resources.py)."""
    packaged = os.path.join(pkg, "_data", "grammar")
    folder = packaged if os.path.isdir(packaged) else os.path.join(os.path.dirname(pkg), "grammar")
    return os.path.join(folder, "plr.lark")


def _sha(data: bytes) -> str:
    return _sha256(data).hexdigest()


def _read_entry(path: str) -> dict[str, Any] | None:
    import json

    try:
        entry = json.loads(_read_bytes(path))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or not isinstance(entry.get("policy"), dict):
        return None
    return entry


def _deps_unchanged(deps: Any) -> bool:
    if not isinstance(deps, list):
        return False
    for dep in deps:
        if not (isinstance(dep, list) and len(dep) == 2 and all(isinstance(x, str) for x in dep)):
            return False
        try:
            if _sha(read_policy_bytes(dep[0])) != dep[1]:
                return False
        except (OSError, ValueError):  # gone, or no longer a regular file of a sane size
            return False
    return True


def _write_entry(directory: str, path: str, entry: dict[str, Any]) -> None:
    """Best effort: a cache that cannot be written only costs speed."""
    import json

    # ASCII: a lone surrogate (valid in JSON text) cannot be encoded as UTF-8
    _write_bytes(directory, path, json.dumps(entry, ensure_ascii=True, separators=(",", ":")).encode("ascii"))


def _write_bytes(directory: str, path: str, data: bytes) -> None:
    """Atomically (temp file + rename) in ``directory``, created private; errors are ignored."""
    import tempfile

    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except (OSError, ValueError):
        pass


def _compile_recording(path: str) -> tuple[dict[str, Any], list[list[str]]]:
    """Compile a .plr file, noting the SHA-256 of every file the compiler read."""
    from .compiler import compile_files
    from .resolve import read_source

    deps: list[list[str]] = []

    def reader(p: str) -> str:
        data, text = read_source(p)
        deps.append([p, _sha(data)])
        return text

    policy = compile_files([path], reader=reader)
    return policy.to_dict(), deps


def load_cached(path: str) -> dict[str, Any]:
    """The canonical dump of the policy at ``path`` (``.json`` loaded, anything else compiled),
    from the cache when nothing changed; PlrError exactly as the uncached load would raise."""
    try:
        raw = read_policy_bytes(path)  # a FIFO is refused, never waited on; a huge file too
    except (OSError, ValueError) as e:
        from .errors import PlrError

        raise PlrError.at(f"cannot read policy: {getattr(e, 'strerror', None) or e}", path) from None
    is_json = path.endswith(".json")
    directory = _cache_dir()
    entry_path: str | None = None
    if directory is not None:
        kind = b"json" if is_json else os.path.abspath(path).encode("utf-8", "surrogateescape")
        key = _sha256(_code_fingerprint() + b"\0" + kind + b"\0" + raw).hexdigest()
        entry_path = os.path.join(directory, f"{key}.json")
        entry = _read_entry(entry_path)
        if entry is not None and (is_json or _deps_unchanged(entry.get("deps"))):
            return entry["policy"]  # type: ignore[no-any-return]
    if is_json:
        from .policy import load_policy

        data, deps = load_policy(raw, name=path).to_dict(), []
    else:
        data, deps = _compile_recording(path)
    if directory is not None and entry_path is not None:
        _write_entry(directory, entry_path, {"format": FORMAT, "source": os.path.abspath(path), "deps": deps, "policy": data})
    return data


def _text_header(key: str) -> bytes:
    return f"plr text entry {FORMAT} {_sha(key.encode('utf-8', 'surrogateescape'))}\n".encode("ascii")


def read_text_entry(name: str, key: str) -> str | None:
    """The text kept under ``name`` if it was written with the same ``key``, else None (a miss:
    no entry, another key, a corrupt file or the cache turned off). A header line and the
    text, not JSON: `plr --help` reads it without importing the JSON module."""
    directory = _cache_dir()
    if directory is None:
        return None
    try:
        data = _read_bytes(os.path.join(directory, f"{name}.text"))
    except OSError:
        return None
    header = _text_header(key)
    if not data.startswith(header):
        return None
    try:
        return data[len(header) :].decode("utf-8")
    except UnicodeDecodeError:
        return None


def write_text_entry(name: str, key: str, text: str) -> None:
    """Keep ``text`` under ``name`` for ``key`` (best effort, atomic, only the user can read it)."""
    directory = _cache_dir()
    if directory is None:
        return
    try:
        data = _text_header(key) + text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not worth keeping
        return
    _write_bytes(directory, os.path.join(directory, f"{name}.text"), data)
