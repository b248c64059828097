"""A stdlib-only MCP server over stdio whose tools declare ``x-mcp-header`` arguments.

A 2026-07-28 client over HTTP sends such an argument also as an ``Mcp-Param-NAME`` header, and
the SDK checks the header against the tool's input schema before the call is handled. Its tools:
``echo`` (no such argument), ``geo`` and ``vault`` (a ``region`` argument sent as
``Mcp-Param-Region``); each answers its arguments as JSON text. An unknown tool gets an
``isError`` result naming it, as FastMCP servers answer.
"""

from __future__ import annotations

import json
import sys

_REGION = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}
TOOLS = [
    {"name": "echo", "inputSchema": {"type": "object"}},
    {"name": "geo", "inputSchema": _REGION},
    {"name": "vault", "inputSchema": _REGION},
]
NAMES = {t["name"] for t in TOOLS}


def main() -> None:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict) or "id" not in msg or not isinstance(msg.get("method"), str):
            continue
        method, rid, params = msg["method"], msg["id"], msg.get("params") or {}
        kind, body = "result", {}
        if method == "initialize":
            body = {"protocolVersion": params.get("protocolVersion", "2025-06-18"), "capabilities": {"tools": {}},
                    "serverInfo": {"name": "header-tools", "version": "1"}}  # fmt: skip
        elif method == "tools/list":
            body = {"tools": TOOLS}
        elif method == "tools/call":
            name, args = params.get("name"), params.get("arguments")
            if name in NAMES:
                text = json.dumps(args if isinstance(args, dict) else {}, sort_keys=True)
                body = {"content": [{"type": "text", "text": text}], "isError": False}
            else:
                body = {"content": [{"type": "text", "text": f"Unknown tool: {name}"}], "isError": True}
        elif method != "ping":
            kind, body = "error", {"code": -32601, "message": "Method not found"}
        out.write(json.dumps({"jsonrpc": "2.0", "id": rid, kind: body}).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
