#!/usr/bin/env python3
"""Regenerate a stdlib catalogue from a live MCP server and show how it differs.

    python tools/regen_catalog.py server-memory -- npx -y @modelcontextprotocol/server-memory

Prints the fresh `server` block and a diff of tool names against stdlib_rules/NAME.plr;
review risk classes by hand before saving (annotations are hints, execute is never one).
A tool the stdlib catalogue already lists keeps its reviewed class in the printed block (the
server's annotations often say less: server-github has none, so every tool would read
`write`, push_files included); each such difference is listed on stderr.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from dsl.catalog import catalogue_text, find, tools_from_server  # noqa: E402


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 1:
        print(__doc__, file=sys.stderr)
        return 2
    name, command = argv[0], argv[2:]
    tools = tools_from_server(command, env=dict(os.environ))
    known = find(name)
    if known:
        tools, changed = keep_reviewed_classes(tools, dict(known[0].tools))
        for tool, server_says, reviewed in changed:
            print(f"# class kept: {tool} is {reviewed} in {known[0].module} (the server says {server_says})", file=sys.stderr)
    print(catalogue_text(name, tools, " ".join(command)), end="")
    if known:
        old = {t for t, _ in known[0].tools}
        new = {t for t, _, _ in tools}
        for t in sorted(new - old):
            print(f"# new tool: {t}", file=sys.stderr)
        for t in sorted(old - new):
            print(f"# gone from the server: {t}", file=sys.stderr)
    return 0


def keep_reviewed_classes(
    tools: list[tuple[str, str, str]], reviewed: dict[str, str]
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """The live tools with the class a person gave each known one; and (tool, live, reviewed)
    for every class that differs."""
    out: list[tuple[str, str, str]] = []
    changed: list[tuple[str, str, str]] = []
    for tool, risk, desc in tools:
        kept = reviewed.get(tool, risk)
        if kept != risk:
            changed.append((tool, risk, kept))
        out.append((tool, kept, desc))
    return out, changed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
