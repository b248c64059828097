"""The fastest MCP server the standard library allows, for measuring what the proxy adds.

One tool, ``echo``, returns its ``text``. It reads newline-delimited JSON-RPC on stdin and answers
each request at once on stdout: no SDK, no task, nothing that would hide the proxy's own cost in the
server's (the SDK-based ``echo_server.py`` takes longer per call than the proxy should add).
Run: ``python benchmarks/raw_echo_server.py``.
"""

from __future__ import annotations

import json
import sys

TOOL = {
    "name": "echo",
    "description": "Return text unchanged.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


def answer(msg: dict) -> dict | None:
    method, rid = msg.get("method"), msg.get("id")
    if rid is None or not isinstance(method, str):
        return None  # a notification (or a response): nothing to say
    if method == "initialize":
        version = (msg.get("params") or {}).get("protocolVersion") or "2025-06-18"
        result: dict = {
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "plr-raw-echo", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        params = msg.get("params") or {}
        if params.get("name") != "echo":
            result = {"content": [{"type": "text", "text": f"unknown tool {params.get('name')}"}], "isError": True}
        else:
            text = (params.get("arguments") or {}).get("text", "")
            result = {"content": [{"type": "text", "text": str(text)}], "isError": False}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def main() -> None:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        reply = answer(msg) if isinstance(msg, dict) else None
        if reply is not None:
            out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
            out.flush()


if __name__ == "__main__":
    main()
