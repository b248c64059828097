"""Does the policy govern the tools the server really has?

A rule about a tool the server does not offer (a typo, a renamed tool, the wrong server) does
nothing, and under ``default allow`` the real tool goes through ungoverned. ``plr check`` can only
see that when a catalogue lists the server's tools; the proxy sees the server itself. So at start,
on every ``notifications/tools/list_changed`` and on every policy reload, the proxy compares the
tools the policy names with the tools the server lists and says plainly, on stderr and in the
audit log, which policy tools the server lacks and which server tools no rule mentions. With
``--strict-tools`` a policy naming a tool the server lacks does not start (or, on reload, does
not replace the policy in force).

Pure comparison here (``compare``); the listing (``list_server_tools``) is the one I/O step.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from pydantic import TypeAdapter

from .audit import utc_now

__all__ = ["ToolsReport", "compare", "list_server_tools", "StrictToolsError"]

# names shown in one stderr line before "and N more" (the audit record keeps them all)
SHOWN_NAMES = 12
# pages of a tools/list the proxy follows before it stops (a server that pages for ever)
MAX_PAGES = 1000


class StrictToolsError(Exception):
    """--strict-tools at start: the policy names tools the server does not offer, or the
    server's tools could not be listed to tell."""


@dataclass(frozen=True)
class ToolsReport:
    """The policy's tools against the server's: what the author should hear about."""

    missing: tuple[str, ...]  # named by the policy, not offered by the server
    unmentioned: tuple[str, ...]  # offered by the server, named by no rule
    rules: dict[str, str]  # missing tool -> the rule (file:line) that names it, where known
    default: str  # the policy's default: what decides the unmentioned tools

    @property
    def clean(self) -> bool:
        return not self.missing and not self.unmentioned

    def lines(self, when: str) -> list[str]:
        """What stderr says (``when``: "at start", "after tools/list_changed", "in the new policy")."""
        out: list[str] = []
        if self.missing:
            names = _names([f"{json.dumps(t)} ({self.rules[t]})" if t in self.rules else json.dumps(t) for t in self.missing])
            out.append(
                f"plr proxy: {when}, the policy names {_count(self.missing, 'tool')} the server does not offer "
                f"(a typo, a renamed tool or another server? its rules do nothing): {names}"
            )
        if self.unmentioned:
            names = _names([json.dumps(t) for t in self.unmentioned])
            one = len(self.unmentioned) == 1
            out.append(
                f"plr proxy: {when}, {_count(self.unmentioned, 'server tool')} {'is' if one else 'are'} named by no "
                f"rule (`default {self.default}` decides {'it' if one else 'them'}): {names}"
            )
        return out

    def record(self, when: str, *, server: str | None, policy_sha256: str) -> dict[str, Any]:
        """The audit record: an event, not a decision (it has no ``tool`` nor ``effect``)."""
        return {
            "ts": utc_now(),
            "event": "tools_compared",
            "when": when,
            "server": server,
            "policy_sha256": policy_sha256,
            "policy_tools_missing": list(self.missing),
            "server_tools_unmentioned": list(self.unmentioned),
        }


def _count(names: tuple[str, ...], what: str) -> str:
    """"1 tool", "3 tools"."""
    return f"{len(names)} {what}{'' if len(names) == 1 else 's'}"


def _names(shown: list[str]) -> str:
    if len(shown) <= SHOWN_NAMES:
        return ", ".join(shown)
    return ", ".join(shown[:SHOWN_NAMES]) + f" and {len(shown) - SHOWN_NAMES} more"


def compare(policy: Any, server_tools: Iterable[str]) -> ToolsReport:
    """The tools ``policy`` (a ``dsl.policy.Policy``) names against the tools the server lists."""
    offered = set(server_tools)
    named = set(policy.tools) | set(policy.hide)
    rules = {name: t.rule for name, t in policy.tools.items() if t.rule and name not in offered}
    return ToolsReport(
        missing=tuple(sorted(named - offered)),
        unmentioned=tuple(sorted(offered - named)),
        rules=rules,
        default=policy.default,
    )


_PAGE: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])  # a tools/list page, kept as the wire dict


async def list_server_tools(client: Any, timeout: float | None) -> list[str]:
    """Every tool name the server lists (all pages, bounded); raises on failure or timeout."""
    names: list[str] = []
    with anyio.fail_after(timeout):
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            req = types.ListToolsRequest(params=types.PaginatedRequestParams(cursor=cursor))
            res = await client.session.send_request(req, _PAGE)
            for t in res.get("tools") or []:
                if isinstance(t, dict) and isinstance(t.get("name"), str):
                    names.append(t["name"])
            cursor = res.get("nextCursor")
            if not isinstance(cursor, str):
                break
    return names
