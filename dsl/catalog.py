"""The stdlib catalogues: list them, read one, and regenerate one from a live MCP server.

Risk classes come from the server's own tool annotations when it has them
(``destructiveHint`` → destructive, ``readOnlyHint`` → read, otherwise write); a person
reviews the generated block before it lands in ``stdlib_rules/`` (execute tools, for
example, are never annotated as such).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ir
from .resources import stdlib_dir


@dataclass(frozen=True)
class CatalogueInfo:
    module: str  # import name: stdlib/NAME
    server: str
    tools: tuple[tuple[str, str], ...]  # (tool, risk)
    header: str  # the file's leading comment (package and version it was read from)


def stdlib_catalogues() -> list[CatalogueInfo]:
    """Every `server` block shipped in stdlib_rules/, by module name."""
    from .lower import lower_source

    out: list[CatalogueInfo] = []
    for path in sorted(stdlib_dir().glob("*.plr")):
        text = path.read_text(encoding="utf-8")
        module = lower_source(text, f"stdlib/{path.name}", str(path))
        header = "\n".join(line[1:].strip() for line in text.splitlines() if line.startswith("#")).strip()
        for cat in module.of(ir.Catalogue):
            tools = tuple((t.name, t.risk) for t in cat.tools)
            out.append(CatalogueInfo(f"stdlib/{path.stem}", cat.server, tools, header.splitlines()[0] if header else ""))
    return out


def risk_of(annotations: Any) -> str:
    if annotations is None:
        return "write"
    if getattr(annotations, "destructive_hint", None) and not getattr(annotations, "read_only_hint", None):
        return "destructive"
    if getattr(annotations, "read_only_hint", None):
        return "read"
    return "write"


async def _list_tools(command: list[str], env: dict[str, str] | None, timeout: float) -> list[tuple[str, str, str]]:
    import anyio
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    tools: list[tuple[str, str, str]] = []
    with anyio.fail_after(timeout):
        async with Client(params, mode="auto", cache=None) as client:
            cursor = None
            while True:
                res = await client.session.list_tools(params=_page(cursor))
                for t in res.tools:
                    tools.append((t.name, risk_of(t.annotations), (t.description or "").strip().splitlines()[0:1][0] if t.description else ""))
                cursor = res.next_cursor
                if not cursor:
                    break
    return tools


def _page(cursor: str | None) -> Any:
    from mcp import types

    return types.PaginatedRequestParams(cursor=cursor) if cursor else None


def tools_from_server(command: list[str], env: dict[str, str] | None = None, timeout: float = 20.0) -> list[tuple[str, str, str]]:
    """(name, risk, first line of description) for each tool a live stdio server lists.

    Raises (TimeoutError when the server does not answer within ``timeout`` seconds); what the
    SDK logs about a misbehaving server (a line that is not JSON-RPC) is one line on stderr,
    never a traceback."""
    import logging

    import anyio

    from .proxy.core import TracebackFilter  # the proxy's own: one line per record (PLR_DEBUG keeps tracebacks)

    sdk = logging.getLogger("mcp")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("plr catalog: the server: %(message)s"))
    handler.addFilter(TracebackFilter())
    saved = sdk.propagate
    sdk.addHandler(handler)
    sdk.propagate = False
    try:
        return anyio.run(_list_tools, command, env, timeout)
    except TimeoutError:
        raise TimeoutError(f"no tools/list answer within {timeout:g} s") from None
    finally:
        sdk.removeHandler(handler)
        sdk.propagate = saved


def catalogue_text(server: str, tools: list[tuple[str, str, str]], source: str = "") -> str:
    """A `server` block for stdlib_rules/, with a header saying where it was read from."""
    import json

    lines = []
    if source:
        lines.append(f"# Catalogue of {source}, read from the live server's tools/list.")
        lines.append("# Risk classes from the server's annotations; reviewed by hand (execute is never annotated).")
    lines.append(f"server {json.dumps(server)} {{")
    width = max((len(json.dumps(n)) for n, _, _ in tools), default=0)
    for name, risk, desc in sorted(tools):
        comment = f"  # {desc[:70]}" if desc else ""
        lines.append(f"    tool {json.dumps(name).ljust(width)} {risk}{comment}")
    lines.append("}")
    return "\n".join(lines) + "\n"


STARTER = """# Starter policy for {server} ({module}): destructive tools need a person,
# execute tools are rate limited, reads are free, everything else is denied.
package {package}

import "{module}"

default deny

allow read tools
{write_rule}
deny destructive tools unless approved
    reason "Destructive: a human must approve"
{execute_rule}"""

STARTER_TEST = """import "./{policy}"

test "reads are allowed" {{
{read_call}}}

test "destructive calls need a human" {{
{destructive_calls}}}

test "unknown tools are denied" {{
    call "no-such-tool" -> deny default
}}
"""


def starter_files(info: CatalogueInfo, policy_name: str) -> tuple[str, str]:
    """A starter policy and its test file for one catalogue (`plr init`)."""
    import json
    import re

    by_risk: dict[str, list[str]] = {}
    for name, risk in info.tools:
        by_risk.setdefault(risk, []).append(name)
    package = re.sub(r"[^A-Za-z0-9_]", "_", info.server).strip("_") or "policy"
    write_rule = "allow write tools\n" if by_risk.get("write") else ""
    execute_rule = (
        "\nallow execute tools\nlimit execute tools to 30 per minute per session\n" if by_risk.get("execute") else ""
    )
    policy = STARTER.format(
        server=info.server, module=info.module, package=package, write_rule=write_rule, execute_rule=execute_rule
    )
    read_call = (
        f"    call {json.dumps(by_risk['read'][0])} -> allow\n" if by_risk.get("read") else "    call \"no-such-tool\" -> deny\n"
    )
    destructive = by_risk.get("destructive", [])
    if destructive:
        d = json.dumps(destructive[0])
        destructive_calls = f"    call {d} -> approval_required\n    call {d} approved -> allow\n"
    else:
        destructive_calls = '    call "no-such-tool" approved -> deny default\n'
    test = STARTER_TEST.format(policy=policy_name, read_call=read_call, destructive_calls=destructive_calls)
    return policy, test


def find(name: str) -> list[CatalogueInfo]:
    """Catalogues whose module or server name contains ``name``."""
    name = name.lower()
    return [c for c in stdlib_catalogues() if name in c.module.lower() or name in c.server.lower()]


def write_new(path: Path, text: str) -> None:
    if path.exists():
        raise FileExistsError(f"{path} exists; not overwriting it")
    path.write_text(text, encoding="utf-8")
