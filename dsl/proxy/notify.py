"""Telling a human that a call waits for them: `plr proxy --notify URL` (webhooks) and
`--notify-command CMD` (a local command, e.g. a desktop notification).

When the proxy files an approval request in its queue, ``Notifier.filed`` hands a message to a
background thread and returns at once: a notification never delays, blocks or changes a
decision (the call waits in the queue whatever happens to its notification). Each webhook is
POSTed a JSON message with a Slack-compatible ``text``; a failure is retried with backoff
(0.5 s, 1 s, 2 s), and one given up on is said on stderr and written to the audit log as an
``approval_notify_failed`` event.

The message names the tool, the reason, the rule, the identity, session and server, the
request's id and expiry, and a link to the console (``--console-url``) or the `plr approvals`
line that answers it. The call's arguments are not sent (a webhook leaves the machine; the
queue and the console show them to the approver).

``--notify-command`` runs CMD (split like a shell would, never through a shell) with the
message as JSON on stdin and in ``PLR_APPROVAL_*`` environment variables.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from ..vocab import terminal_text

__all__ = ["Notifier", "approval_message", "check_notify_url"]

BACKOFF = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd and 4th attempt
TIMEOUT = 5.0  # seconds a webhook or the command may take per attempt
MAX_BACKLOG = 1000  # messages waiting to be sent; more are dropped (and said), never queued without bound


def check_notify_url(url: str) -> str:
    """An http(s) URL with a host, else ValueError with a readable message."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as e:
        raise ValueError(f"`{url}` is not a valid URL: {e}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"`{url}` is not an http(s) URL; expected e.g. https://hooks.slack.com/services/...")
    return url


def approval_message(a: dict[str, Any], *, console_url: str | None, cli_hint: str = "") -> dict[str, Any]:
    """The JSON a webhook receives for one filed request ``a`` (the queue's fields)."""
    aid = str(a.get("id"))
    link = f"{console_url.rstrip('/')}/#req-{quote(aid, safe='')}" if console_url else None
    answer = link or f"plr approvals{cli_hint} grant {aid}"
    who = ", ".join(f"{k} {_code(a[k])}" for k in ("identity", "server") if a.get(k))
    # the reason too is inline code: a reason the engine wrote for a rule on every tool names the
    # called tool, which the agent chose (`*bold*`, a bare URL Slack would link)
    text = f"plr: approval needed for {_code(a.get('tool'))}: {_code(a.get('reason') or 'approval required')}"
    text += f" ({who})" if who else ""
    text += f". Answer: {answer}"
    msg = {
        "event": "approval_requested",
        "text": text,
        "approval": {k: a.get(k) for k in ("id", "tool", "reason", "rule", "identity", "session", "server", "expires", "args_sha256")},
    }
    if link:
        msg["console_url"] = link
    return msg


FIELD_MAX = 200  # characters of one field in the text; the JSON's `approval` has it whole


def _plain(value: object) -> str:
    """A field for the ``text`` that Slack and its look-alikes render: one line (control, bidi
    and line-separator characters escaped) with ``&``, ``<`` and ``>`` escaped, so a server's
    name or an agent's tool name can never add a line, a link (``<url|label>``) or a mention
    that looks like plr's own."""
    text = terminal_text(value)
    if len(text) > FIELD_MAX:
        text = text[: FIELD_MAX - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(value: object) -> str:
    """An untrusted name as inline code, so no formatting of its own (``*bold*``) applies: a
    backtick inside it, which would end the code span, is shown as a prime."""
    return "`" + _plain(value).replace("`", "‵") + "`"


class Notifier:
    """Sends approval notifications from one daemon thread, in order, with retries."""

    def __init__(
        self,
        urls: Sequence[str] = (),
        command: str | None = None,
        *,
        console_url: str | None = None,
        report: Callable[[str], None],
        backoff: Sequence[float] = BACKOFF,
        timeout: float = TIMEOUT,
    ) -> None:
        self.urls = list(urls)
        self.command = shlex.split(command) if command else None
        self.console_url = console_url
        self.report = report
        self.backoff = tuple(backoff)
        self.timeout = timeout
        self._q: queue.Queue[tuple[dict[str, Any], Any]] = queue.Queue(MAX_BACKLOG)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.urls or self.command)

    def filed(self, approval: dict[str, Any], *, audit: Any = None, cli_hint: str = "") -> None:
        """A request was filed: notify in the background (never raises, never blocks)."""
        try:
            msg = approval_message(approval, console_url=self.console_url, cli_hint=cli_hint)
            self._q.put_nowait((msg, audit))
        except queue.Full:
            self.report(f"plr proxy: too many approval notifications waiting; not sending one for {approval.get('id')}")
            return
        except Exception as e:  # noqa: BLE001 - a notification must never fail a call
            self.report(f"plr proxy: cannot notify of approval {approval.get('id')}: {type(e).__name__}: {e}")
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="plr-notify", daemon=True)
                self._thread.start()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every message so far was sent or given up on (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._q.unfinished_tasks

    # -- the sending thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            msg, audit = self._q.get()
            try:
                targets: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
                    (url, lambda m, u=url: self._post(u, m)) for url in self.urls
                ]
                if self.command:
                    targets.append((self.command[0], self._run_command))
                for target, send in targets:
                    self._with_retries(target, send, msg, audit)
            finally:
                self._q.task_done()

    def _with_retries(self, target: str, send: Callable[[dict[str, Any]], None], msg: dict[str, Any], audit: Any) -> None:
        error = ""
        for attempt in range(len(self.backoff) + 1):
            if attempt:
                time.sleep(self.backoff[attempt - 1])
            try:
                send(msg)
                return
            except Exception as e:  # noqa: BLE001 - retried, then reported
                error = f"{type(e).__name__}: {e}"
        aid = msg["approval"].get("id")
        shown = _hide_secret(target)
        self.report(f"plr proxy: could not notify {shown} of approval {aid} after {len(self.backoff) + 1} attempts: {error}")
        if audit is not None:
            from .audit import utc_now

            try:
                audit.write({"ts": utc_now(), "event": "approval_notify_failed", "approval_id": aid, "target": shown, "error": error})
            except Exception as e:  # noqa: BLE001
                self.report(f"plr proxy: could not write the audit record: {e}")

    def _post(self, url: str, msg: dict[str, Any]) -> None:
        body = json.dumps(msg, ensure_ascii=False).encode()
        req = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "plr-proxy"}
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as r:  # noqa: S310 - the operator's URL
            if not 200 <= r.status < 300:
                raise RuntimeError(f"HTTP {r.status}")

    def _run_command(self, msg: dict[str, Any]) -> None:
        assert self.command is not None
        a = msg["approval"]
        env = dict(os.environ)
        env.update(
            {
                "PLR_APPROVAL_ID": str(a.get("id") or ""),
                "PLR_APPROVAL_TOOL": str(a.get("tool") or ""),
                "PLR_APPROVAL_REASON": str(a.get("reason") or ""),
                "PLR_APPROVAL_TEXT": msg["text"],
                "PLR_APPROVAL_URL": str(msg.get("console_url") or ""),
            }
        )
        proc = subprocess.run(
            self.command,
            input=json.dumps(msg, ensure_ascii=False).encode(),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=self.timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.decode('utf-8', 'replace').strip()[:200]}")


def _hide_secret(target: str) -> str:
    """A webhook URL for a message: its path often is the secret (Slack's), so only the host."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https") and parts.hostname:
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"
    return target
