"""A stdlib-only MCP server over stdio that writes down every line it reads, byte for byte.

The proxy's fast path and its SDK path must send the server the same bytes; this server lets a
test compare them (``RAW_ECHO_LOG``: a file that gets each line read from stdin). Its tools:
``echo`` (returns ``text``), ``fail`` (a JSON-RPC error), ``bad`` (a result that is not a
CallToolResult), ``slow`` (answers after ``seconds``; other requests wait: one thread),
``die`` (exits without answering), ``ask`` (a 2026-07-28 ``input_required`` result), ``oops``
(a result with ``isError``: the tool failed).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

TOOLS = [{"name": n, "inputSchema": {"type": "object"}} for n in ("echo", "fail", "bad", "slow", "die", "ask", "secret", "oops")]


def result_for(name: object, args: dict) -> tuple[str, object]:
    if name == "fail":
        return "error", {"code": -32000, "message": "boom", "data": {"why": "asked to fail"}}
    if name == "bad":
        return "result", {"content": "not a list"}
    if name == "slow":
        time.sleep(float(args.get("seconds", 1)))
    if name == "die":
        os._exit(3)
    if name == "oops":
        return "result", {"content": [{"type": "text", "text": "it went wrong"}], "isError": True}
    if name == "ask":
        return "result", {"resultType": "input_required", "inputRequests": {}}
    return "result", {"content": [{"type": "text", "text": json.dumps(args, sort_keys=True)}], "isError": False}


def main() -> None:
    serve(TOOLS, "raw-echo", result_for)


def serve(tools: list[dict[str, Any]], name: str, answer: Callable[[Any, dict[str, Any]], tuple[str, dict[str, Any]]]) -> None:
    """The stdio loop: ``initialize``, ``tools/list`` (``tools``), ``ping`` and ``tools/call``
    (``answer(name, arguments)`` -> ("result" or "error", body)); other servers here reuse it."""
    log = os.environ.get("RAW_ECHO_LOG")
    record = open(log, "ab", buffering=0) if log else None  # noqa: SIM115 - open for the process's life
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if record is not None:
            record.write(line)
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
                    "serverInfo": {"name": name, "version": "1"}}  # fmt: skip
        elif method == "tools/list":
            body = {"tools": tools}
        elif method == "tools/call":
            args = params.get("arguments")
            kind, body = answer(params.get("name"), args if isinstance(args, dict) else {})
        elif method != "ping":
            kind, body = "error", {"code": -32601, "message": "Method not found"}
        out.write(json.dumps({"jsonrpc": "2.0", "id": rid, kind: body}).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
