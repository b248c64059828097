"""Client-side helpers for the fleet tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client, types

LIMIT_POLICY = """\
default deny
allow tool "get-task"
limit tool "get-task" to 10 per minute per session
allow tool "list-tasks"
deny tool "cancel-task" unless approved
    reason "Destructive: cancels running tasks; a human must approve"
"""


def code_of(res: types.CallToolResult) -> str:
    """``allowed`` for a forwarded call, else the proxy's decision code (``rate_limited``, ...)."""
    if not res.is_error:
        return "allowed"
    meta = (res.meta or {}).get("plr/decision") or {}
    return str(meta.get("code") or "upstream_error")


@asynccontextmanager
async def agent(url: str, name: str = "agent", mode: str = "auto") -> AsyncIterator[Any]:
    """An MCP client. In the stateless 2026-07-28 era (``mode="auto"``) the proxy's session is
    identity + client info, so the same agent name is the same session on every replica."""
    info = types.Implementation(name=name, version="1")
    async with Client(url, mode=mode, cache=None, client_info=info) as c:
        yield c
