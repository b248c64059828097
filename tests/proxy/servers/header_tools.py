"""A stdlib-only MCP server over stdio whose tools declare ``x-mcp-header`` arguments.

A 2026-07-28 client over HTTP sends such an argument also as an ``Mcp-Param-NAME`` header, and
the SDK checks the header against the tool's input schema before the call is handled. Its tools:
``echo`` (no such argument), ``geo`` and ``vault`` (a ``region`` argument sent as
``Mcp-Param-Region``); each answers its arguments as JSON text. An unknown tool gets an
``isError`` result naming it, as FastMCP servers answer.
"""

from __future__ import annotations

import json
from typing import Any

from raw_echo import serve  # (this folder: the script's own)

_REGION = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}
TOOLS = [
    {"name": "echo", "inputSchema": {"type": "object"}},
    {"name": "geo", "inputSchema": _REGION},
    {"name": "vault", "inputSchema": _REGION},
]
NAMES = {t["name"] for t in TOOLS}


def answer(name: Any, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if name in NAMES:
        return "result", {"content": [{"type": "text", "text": json.dumps(args, sort_keys=True)}], "isError": False}
    return "result", {"content": [{"type": "text", "text": f"Unknown tool: {name}"}], "isError": True}


if __name__ == "__main__":
    serve(TOOLS, "header-tools", answer)
