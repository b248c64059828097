"""A minimal MCP server over stdio for the proxy benchmark: one tool, ``echo``, returns its text.

Built with the official SDK (``mcp.server.mcpserver.MCPServer``), like the servers plr's proxy
sits in front of. Run: ``python benchmarks/echo_server.py``.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

app = MCPServer("plr-bench-echo")


@app.tool()
def echo(text: str) -> str:
    """Return ``text`` unchanged."""
    return text


if __name__ == "__main__":
    app.run("stdio")
