"""A small LSP client over a child's stdin/stdout, as an editor talks to `plr lsp`.

JSON-RPC 2.0 with ``Content-Length`` framing, one reader thread. Requests block for their
response; notifications from the server are kept in order and waited for by method and
predicate; requests from the server (``client/registerCapability``, progress) are answered
with ``null`` as a minimal editor would. Used by the tests (tests/test_lsp.py) and the
benchmark (benchmarks/bench_lsp.py); not needed to run the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["LspClient", "LspError", "uri"]


class LspError(Exception):
    """An error response, or a server that died or did not answer in time."""


def uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


class LspClient:
    def __init__(
        self,
        cmd: Sequence[str] | None = None,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        cmd = list(cmd) if cmd is not None else [sys.executable, "-m", "dsl.cli", "lsp"]
        # the server's stderr goes to a file, never a pipe nobody reads (a full pipe would stop it)
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self._next = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._responses: dict[int, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="lsp-client-reader", daemon=True)
        self._reader.start()
        self.versions: dict[str, int] = {}

    # -- framing --------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body)
            self.proc.stdin.flush()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        try:
            while True:
                length = None
                while True:
                    line = out.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    if name.lower() == "content-length":
                        length = int(value.strip())
                if length is None:
                    continue
                message = json.loads(out.read(length))
                if "id" in message and "method" in message:  # a request from the server
                    self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                    continue
                with self._cond:
                    if "id" in message:
                        self._responses[message["id"]] = message
                    else:
                        self.notifications.append(message)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    # -- requests and notifications -------------------------------------------------------
    def request(self, method: str, params: Any = None, timeout: float = 60) -> Any:
        with self._cond:
            self._next += 1
            rid = self._next
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._responses:
                if self._closed:
                    raise LspError(f"{method}: the server exited ({self._stderr_tail()})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LspError(f"{method}: no answer in {timeout} s")
                self._cond.wait(left)
            reply = self._responses.pop(rid)
        if "error" in reply:
            raise LspError(f"{method}: {reply['error']}")
        return reply.get("result")

    def notify(self, method: str, params: Any = None) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait_for(
        self, method: str, predicate: Callable[[Any], bool] = lambda p: True, timeout: float = 60, after: int = 0
    ) -> Any:
        """The params of the first notification ``method`` (from index ``after``) that satisfies
        ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for note in self.notifications[after:]:
                    if note.get("method") == method and predicate(note.get("params")):
                        return note.get("params")
                if self._closed:
                    raise LspError(f"waiting for {method}: the server exited ({self._stderr_tail()})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LspError(f"no {method} in {timeout} s")
                self._cond.wait(left)

    def mark(self) -> int:
        """The index of the next notification (for ``wait_for(after=...)``)."""
        with self._cond:
            return len(self.notifications)

    def diagnostics(self, path: str | Path, timeout: float = 60, after: int = 0) -> list[dict[str, Any]]:
        """The next diagnostics published for ``path`` (from notification ``after`` on)."""
        target = uri(path)
        params = self.wait_for("textDocument/publishDiagnostics", lambda p: p["uri"] == target, timeout, after)
        return list(params["diagnostics"])

    def stderr_text(self) -> str:
        """What the server wrote to stderr so far."""
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def _stderr_tail(self) -> str:
        state = "still running" if self.proc.poll() is None else f"exit {self.proc.returncode}"
        return f"{state}; stderr: {self.stderr_text()[-2000:]}"

    # -- an editor's session --------------------------------------------------------------
    def initialize(self, root: str | Path | None = None, capabilities: dict[str, Any] | None = None) -> Any:
        params: dict[str, Any] = {"processId": None, "capabilities": capabilities or {}}
        if root is not None:
            params["rootUri"] = uri(root)
            params["workspaceFolders"] = [{"uri": uri(root), "name": Path(root).name}]
        result = self.request("initialize", params)
        self.notify("initialized", {})
        return result

    def open(self, path: str | Path, text: str | None = None) -> None:
        text = Path(path).read_text(encoding="utf-8") if text is None else text
        self.versions[uri(path)] = 1
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri(path), "languageId": "plr", "version": 1, "text": text}},
        )

    def change(self, path: str | Path, text: str) -> None:
        key = uri(path)
        self.versions[key] = self.versions.get(key, 1) + 1
        self.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": key, "version": self.versions[key]}, "contentChanges": [{"text": text}]},
        )

    def close(self, path: str | Path) -> None:
        self.notify("textDocument/didClose", {"textDocument": {"uri": uri(path)}})

    def at(self, method: str, path: str | Path, line: int, character: int, **extra: Any) -> Any:
        params = {"textDocument": {"uri": uri(path)}, "position": {"line": line, "character": character}, **extra}
        return self.request(method, params)

    def shutdown(self, timeout: float = 20) -> int:
        """shutdown, exit, and the server's exit code."""
        try:
            if self.proc.poll() is None:
                self.request("shutdown", None, timeout=timeout)
                self.notify("exit")
        except (LspError, OSError):
            pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass

    def __enter__(self) -> "LspClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
