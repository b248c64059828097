"""Small helpers shared by the proxy tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import anyio
from mcp import types


def text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def sha(args: Any) -> str:
    canon = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


class Human:
    """An elicitation callback that answers from a script: ("accept", True), ("decline", None),
    ("cancel", None) or ("slow", seconds) (answers accept after sleeping)."""

    def __init__(self, answers: Iterable[tuple[str, Any]] = ()) -> None:
        self.answers = list(answers)
        self.seen: list[Any] = []

    async def __call__(self, ctx: Any, params: Any) -> types.ElicitResult:
        self.seen.append(params)
        action, value = self.answers.pop(0) if self.answers else ("accept", True)
        if action == "slow":
            await anyio.sleep(value)
            return types.ElicitResult(action="accept", content={"approve": True})
        if action == "accept":
            content = value if isinstance(value, dict) else {"approve": value}
            return types.ElicitResult(action="accept", content=content)
        return types.ElicitResult(action=action)
