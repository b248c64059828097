"""Tool pinning: a tool whose definition changes behind the proxy is withheld until re-pinned.

A server that is trusted when it is added can later change what a tool says it does (a "rug
pull": the new description tells the model to send secrets along, or the schema grows a
field). The model reads descriptions, so the defence must act on ``tools/list``: the first
definition seen of each tool is pinned (a SHA-256 per field of its canonical JSON); a later
``tools/list`` that shows a different definition gets that tool withheld (``deny`` mode: the
changed description never reaches the model, and calls to the tool are denied with code
``tool_changed``) or only reported (``warn``). A tool that goes back to its pinned definition
is served again; a new tool is pinned when first seen (trust on first use).

Pins live for the proxy's lifetime, or in a JSON file (``--pins FILE``) so they survive
restarts: a server that changed while the proxy was down is caught at the first list. The
file is the source of truth and may be shared by several proxies (one per agent session is
the usual stdio setup): each review re-reads it under an exclusive lock, the first pin of a
tool wins, and new pins are merged in before the lock is released, so no proxy overwrites
another's pins. To accept a change, delete the tool's entry (or the file); running proxies
pin the definition they see at their next list. Pins are keyed by tool name: use one file per
upstream server. A pins file that cannot be read is an error at start-up (fail closed), never
an empty pin set; if it becomes unreadable later, the pins in memory stay in force.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["PinMode", "PinChange", "ToolPins", "PinsFileError", "fingerprint"]

PinMode = Literal["deny", "warn", "off"]
FORMAT = 1
_VOLATILE = frozenset({"_meta"})  # transport metadata, not what the tool is or does


class PinsFileError(Exception):
    """The pins file exists but is not a pins file plr wrote: refuse to guess."""


@dataclass(frozen=True)
class PinChange:
    tool: str
    fields: tuple[str, ...]  # which top-level fields differ from the pin ("name" never does)

    def summary(self) -> str:
        return f"tool `{self.tool}` changed its {', '.join(self.fields) or 'definition'} since it was pinned"

    def reason(self) -> str:
        return f"{self.summary()}; it is withheld until an operator reviews the change and re-pins it"


def _canonical(value: Any) -> bytes:
    # ASCII escapes: a lone surrogate in a server's text must hash, not raise
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str).encode()


def fingerprint(tool: dict[str, Any]) -> dict[str, str]:
    """SHA-256 per field of a ``tools/list`` entry (volatile ``_meta`` left out)."""
    return {k: hashlib.sha256(_canonical(v)).hexdigest() for k, v in tool.items() if k not in _VOLATILE}


class ToolPins:
    """The pinned definitions and the tools currently withheld; thread- and task-safe."""

    def __init__(self, mode: PinMode = "deny", path: str | None = None) -> None:
        self.mode: PinMode = mode
        self.path = path
        self._lock = threading.Lock()
        self._pins: dict[str, dict[str, str]] = {}
        if path and mode != "off":
            with self._file_lock():
                self._pins = self._read(path)
        self._changed: dict[str, PinChange] = {}
        self._unsaved: set[str] = set()  # pinned while the file could not be written
        self.write_error: str | None = None

    @staticmethod
    def _read(path: str) -> dict[str, dict[str, str]]:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as e:
            raise PinsFileError(f"cannot read the pins file {path}: {e}") from None
        tools = data.get("tools") if isinstance(data, dict) and data.get("format") == FORMAT else None
        if not isinstance(tools, dict) or not all(
            isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) for v in tools.values()
        ):
            raise PinsFileError(f"{path} is not a plr pins file (expected {{\"format\": 1, \"tools\": {{...}}}})")
        return {str(k): dict(v) for k, v in tools.items()}

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """An exclusive lock on ``FILE.lock`` while the pins file is read and merged (POSIX)."""
        if self.path is None:
            yield
            return
        try:
            import fcntl
        except ImportError:  # no fcntl: proxies sharing a file may race; one proxy is still exact
            yield
            return
        try:
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield  # cannot create the lock file: the write below reports the problem
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _sync(self) -> None:
        """The file is the truth: adopt it (another proxy may have pinned since; an operator may
        have removed an entry to accept a change), keeping only our pins it never received."""
        assert self.path is not None
        try:
            on_disk = self._read(self.path)
        except PinsFileError as e:
            self.write_error = f"{e}; the pins in memory stay in force"
            return
        for name in self._unsaved:
            on_disk.setdefault(name, self._pins[name])
        self._pins = on_disk

    def _write(self) -> None:
        """Atomically (temp file + rename): a crash leaves the old file or the new one."""
        assert self.path is not None
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pins-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"format": FORMAT, "tools": self._pins}, f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise

    def review(self, tools: list[Any]) -> tuple[list[Any], list[PinChange]]:
        """One upstream ``tools/list`` page: the entries to pass on, and the newly changed tools.

        Pins new tools, withholds (``deny``) or keeps (``warn``) changed ones, and serves again a
        tool whose definition is back to its pin. Entries that are not named tools pass through
        untouched (the caller's filters deal with them).
        """
        if self.mode == "off":
            return tools, []
        with self._lock, self._file_lock():
            if self.path is not None:
                self._sync()
            return self._review_locked(tools)

    def _review_locked(self, tools: list[Any]) -> tuple[list[Any], list[PinChange]]:
        out: list[Any] = []
        fresh: list[PinChange] = []
        new: list[str] = []
        for t in tools:
            name = t.get("name") if isinstance(t, dict) else None
            if not isinstance(name, str):
                out.append(t)
                continue
            now = fingerprint(t)
            pin = self._pins.get(name)
            if pin is None or pin == now:
                if pin is None:
                    self._pins[name] = now
                    new.append(name)
                self._changed.pop(name, None)
                out.append(t)
                continue
            fields = tuple(sorted(k for k in pin.keys() | now.keys() if pin.get(k) != now.get(k)))
            change = PinChange(name, fields)
            if self._changed.get(name) != change:
                fresh.append(change)
            self._changed[name] = change
            if self.mode == "warn":
                out.append(t)
        if new and self.path is not None:
            self._unsaved.update(new)
            try:
                self._write()
                self._unsaved.clear()
                self.write_error = None
            except OSError as e:  # the pins stay in force in memory; the caller reports
                self.write_error = f"cannot write the pins file {self.path}: {e.strerror or e}"
        return out, fresh

    def withheld(self, tool: str) -> PinChange | None:
        """The change that withholds ``tool`` (``deny`` mode only), else None."""
        if self.mode != "deny":
            return None
        return self._changed.get(tool)
