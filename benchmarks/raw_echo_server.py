"""The fastest MCP server the standard library allows, for measuring what the proxy adds.

One tool, ``echo``, returns its ``text``. It reads newline-delimited JSON-RPC on stdin and answers
each request at once on stdout: no SDK, no task, nothing that would hide the proxy's own cost in the
server's (the SDK-based ``echo_server.py`` takes longer per call than the proxy should add).
Run: ``python benchmarks/raw_echo_server.py`` (stdio), or ``... --http PORT`` for the same server
over streamable HTTP on 127.0.0.1 (``POST /mcp``, one JSON answer per request, keep-alive, no
session: the HTTP baseline of the benchmark).
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


def serve_http(port: int) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a connection per call would measure TCP, not MCP
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                msg = json.loads(body)
            except ValueError:
                msg = None
            reply = answer(msg) if isinstance(msg, dict) else None
            if reply is None:
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            data = json.dumps(reply, separators=(",", ":")).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - no server-initiated stream
            self.send_response(405)
            self.send_header("content-length", "0")
            self.end_headers()

        do_DELETE = do_GET  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        serve_http(int(sys.argv[2]))
        return
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
