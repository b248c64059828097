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

``ToolPins`` is the pin store; ``PinCheck`` is the proxy's use of it: each ``tools/list`` page
from the server is reviewed (changes reported on stderr), a server that came back (a restart, a
session the upstream forgot) is listed and checked before it serves anyone, and while such a
check has failed every call is refused until a client's ``tools/list`` covers every tool again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import mcp_types as types
from pydantic import TypeAdapter

from .errors import why

__all__ = ["PinMode", "PinChange", "ToolPins", "PinCheck", "PinsFileError", "fingerprint"]

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


_PAGE: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])  # a tools/list page, kept as the wire dict


class PinCheck:
    """The proxy's side of pinning: reviews the server's ``tools/list`` pages, re-checks a server
    that came back, and refuses calls while such a check has failed (``unchecked``)."""

    def __init__(self, pins: ToolPins, *, timeout: float | None, report: Callable[[str], None]) -> None:
        self.pins = pins
        self.timeout = timeout  # --upstream-timeout of a re-check's listing (None: none)
        self.report = report
        # a server that came back and whose tools could not be checked: calls denied until a tools/list
        self.unchecked = False

    def refusal(self, tool: str) -> str | None:
        """Why a call to ``tool`` is refused before the engine sees it (None: it is not)."""
        changed = self.pins.withheld(tool)
        if changed is not None:
            return changed.reason()
        return self.refusal_of_absent()

    def refusal_of_absent(self) -> str | None:
        """Why a call to a tool the server does not have is refused before the engine sees it
        (None: it is not). A hidden tool gets this answer, whatever its pin says."""
        if self.unchecked:
            return "the restarted server's tools could not be checked against their pins; list the tools again"
        return None

    def review(self, tools: list[Any]) -> list[Any]:
        """Tool pinning on one ``tools/list`` page from the server; reports changes on stderr."""
        shown, changes = self.pins.review(tools)
        for change in changes:
            served = "still served (--pin-tools warn)"
            self.report(f"plr proxy: {change.summary()}: " + (served if self.pins.mode == "warn" else "withheld"))
        if self.pins.write_error is not None:
            self.report(f"plr proxy: {self.pins.write_error}; pins kept in memory only")
            self.pins.write_error = None
        return shown

    async def listed(self, whole: bool, client: Callable[[], Any]) -> None:
        """A client listed tools (each page reviewed): a failed check ends only when every tool has
        been seen again, so unless that page was the whole list, the server that serves this
        client (``client()``, None: none) is listed and checked in full now."""
        if not self.unchecked:
            return
        if whole:
            self.unchecked = False
            return
        up = client()
        if up is not None:
            await self.recheck(up)

    async def recheck(self, client: Any) -> None:
        """List a server's tools (that came back after a restart or a lost session) and check them
        against the pins now, not at the client's next tools/list. Never raises: if the list
        fails, every call is denied (``tool_changed``) until a tools/list succeeds."""
        if self.pins.mode == "off":
            return
        try:
            with anyio.fail_after(self.timeout):
                cursor: str | None = None
                for _ in range(1000):  # pages, bounded
                    req = types.ListToolsRequest(params=types.PaginatedRequestParams(cursor=cursor))
                    res = await client.session.send_request(req, _PAGE)
                    self.review(res.get("tools") or [])
                    cursor = res.get("nextCursor")
                    if not isinstance(cursor, str):
                        break
            self.unchecked = False
        except anyio.get_cancelled_exc_class():
            self.unchecked = True  # cut short: unchecked, so calls are denied until a list
            raise
        except Exception as e:  # noqa: BLE001
            self.unchecked = True
            self.report(
                f"plr proxy: could not check the server's tools against their pins ({why(e)}); "
                "calls are denied until a tools/list succeeds"
            )
