"""What every approval queue promises (SQLite on one machine, Redis in a fleet), and the
record ``plr approvals`` shows, whichever backend holds it.

A request is filed by the proxy for one call (tool + canonical-arguments hash) and waited on;
the operator grants or denies it. A grant is consumed by the one waiting call (``granted`` ->
``used`` in one atomic step), so it can never approve a second call; no answer within the
timeout -> ``expired`` -> deny.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["ApprovalBackend", "Approval", "APPROVAL_COLUMNS", "operator_name"]

APPROVAL_COLUMNS = (
    "id created expires status tool args args_sha256 session identity server rule reason pid decided_at decided_by note"
).split()


@dataclass(frozen=True)
class Approval:
    """One request as the operator sees it, whichever backend holds it."""

    id: str
    created: float
    expires: float
    status: str
    tool: str
    args: str
    args_sha256: str
    session: str | None
    identity: str | None
    server: str | None
    rule: str | None
    reason: str | None
    pid: int | None
    decided_at: float | None
    decided_by: str | None
    note: str | None

    def effective_status(self, now: float | None = None) -> str:
        """A pending request past its expiry reads as ``expired`` before anyone settles it."""
        if self.status == "pending" and (now or time.time()) >= self.expires:
            return "expired"
        return self.status

    def to_dict(self) -> dict[str, Any]:
        d = {c: getattr(self, c) for c in APPROVAL_COLUMNS}
        d["status"] = self.effective_status()
        return d


@runtime_checkable
class ApprovalBackend(Protocol):
    """What the proxy and ``plr approvals`` need from a queue (SQLite or Redis).

    A backend that cannot be reached raises ``StateUnavailable`` (the proxy then denies the call
    with ``state_unavailable``); any other exception also denies (``approval_unavailable``).
    """

    where: str  # for messages: the file or the redis URL (password hidden)
    cli_hint: str  # the `plr approvals` options that reach this queue, e.g. " --db FILE" or ""

    def file(
        self,
        *,
        tool: str,
        args_text: str,
        args_hash: str,
        timeout: float,
        session: str | None = None,
        identity: str | None = None,
        server: str | None = None,
        rule: str | None = None,
        reason: str | None = None,
    ) -> str:
        """Add a pending request; returns its id (blocking: call it from a worker thread)."""
        ...

    async def wait(self, aid: str, args_hash: str, timeout: float) -> str:
        """``granted`` (consumed now) | ``denied`` | ``expired``; cancels the request if cancelled."""
        ...

    def cancel(self, aid: str) -> None: ...

    def list(self, *, include_done: bool = False, limit: int = 200) -> list["Approval"]: ...

    def get(self, aid: str) -> "Approval | None": ...

    def answer(self, aid: str, grant: bool, note: str | None = None, who: str | None = None) -> tuple[bool, str]:
        """Grant or deny a pending, unexpired request: (done, status now; ``unknown`` if no such id)."""
        ...


def operator_name() -> str | None:
    """Who answers a request when the caller does not say (recorded as ``decided_by``)."""
    import getpass  # the operator's side only: keeps it off the engine's import

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return None
