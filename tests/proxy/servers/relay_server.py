"""A small MCP server for the relay tests: it talks back to its caller and records its sessions.

Every session it sees, every session that ends and every cancelled call is appended (and
flushed) as one JSON line ``{"event", "session", "pid"}`` to the file named by ``RELAY_LOG``,
so a test can prove what the server saw on its side of the proxy.

Tools: ``whoami`` (the server-side session id), ``say`` (a log message to the caller),
``work`` (progress to the caller), ``ask`` (an elicitation to the caller), ``sample`` and
``roots`` (sampling and roots requests to the caller), ``caps`` (what the caller declared),
``wait`` (sleeps; records a cancellation), ``stubborn`` (ignores cancellation, then logs and
asks), ``later`` (answers at once, then a background job of the caller's logs and asks after
``seconds``: a message of a call that has returned), ``change`` (``notifications/tools/list_changed`` to
every live session), ``put``/``get`` (state shared by every session of this process;
``RELAY_GET_DESCRIPTION`` sets ``get``'s description).

Run: ``python relay_server.py`` (stdio) or ``python relay_server.py --http PORT``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import BaseModel

mcp = MCPServer("relay-test", version="0.0.1")
LOG = os.environ.get("RELAY_LOG")
SESSIONS: dict[str, Any] = {}  # server-side session id -> a ServerSession of it (its standalone channel)
STORE: dict[str, str] = {}
BACKGROUND: set[Any] = set()  # background jobs of `later` (kept referenced until done)


class Confirm(BaseModel):
    ok: bool


def _record(event: str, session: str) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, "session": session, "pid": os.getpid()}) + "\n")
            f.flush()


def _track(ctx: Context) -> str:
    """The caller's session id; a new session is recorded and watched until it ends."""
    session = ctx.request_context.session
    conn = session._connection  # test server: the connection outlives the request
    sid = conn.session_id or "stdio"
    if sid not in SESSIONS:
        SESSIONS[sid] = session
        _record("open", sid)

        def ended() -> None:
            SESSIONS.pop(sid, None)
            _record("closed", sid)

        conn.exit_stack.callback(ended)
    return sid


@mcp.tool()
async def whoami(ctx: Context) -> str:
    return _track(ctx)


@mcp.tool()
async def say(text: str, ctx: Context) -> str:
    sid = _track(ctx)
    await ctx.info(text)
    return sid


@mcp.tool()
async def work(steps: int, ctx: Context) -> str:
    sid = _track(ctx)
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"{sid} step {i + 1}")
        await anyio.sleep(0.02)
    return sid


@mcp.tool()
async def ask(question: str, ctx: Context) -> str:
    _track(ctx)
    try:
        answer = await ctx.elicit(question, Confirm)
    except Exception as e:  # the test reads what the proxy answered
        return json.dumps({"error": str(e)})
    return json.dumps({"action": answer.action, "ok": getattr(getattr(answer, "data", None), "ok", None)})


@mcp.tool()
async def sample(prompt: str, ctx: Context) -> str:
    _track(ctx)
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))
    try:
        result = await ctx.request_context.session.create_message(
            [message], max_tokens=20, related_request_id=ctx.request_id
        )
    except Exception as e:  # the test reads what the proxy answered
        return json.dumps({"error": str(e)})
    return result.content.text if isinstance(result.content, types.TextContent) else ""


@mcp.tool()
async def roots(ctx: Context) -> str:
    _track(ctx)
    try:
        result = await ctx.request_context.session.list_roots()
    except Exception as e:
        return json.dumps({"error": str(e)})
    return json.dumps([str(r.uri) for r in result.roots])


@mcp.tool()
async def caps(ctx: Context) -> str:
    _track(ctx)
    declared = ctx.client_capabilities or types.ClientCapabilities()
    return json.dumps([k for k in ("elicitation", "sampling", "roots") if getattr(declared, k) is not None])


@mcp.tool()
async def wait(seconds: float, ctx: Context) -> str:
    sid = _track(ctx)
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        _record("cancelled", sid)
        raise
    return sid


@mcp.tool()
async def stubborn(seconds: float, text: str, ctx: Context) -> str:
    """Ignores cancellation: sleeps, then logs ``text`` and asks the caller about it."""
    sid = _track(ctx)
    with anyio.CancelScope(shield=True):
        await anyio.sleep(seconds)
        await ctx.info(text)
        try:
            await ctx.elicit(text, Confirm)
        except Exception:  # noqa: BLE001 - refused by the proxy as ambiguous
            _record("ask refused", sid)
    return sid


@mcp.tool()
async def later(seconds: float, text: str, ctx: Context) -> str:
    """Returns at once; ``seconds`` later a background job of this call logs ``text`` and asks
    the caller about it, with nothing on the wire that ties either to a request."""
    sid = _track(ctx)
    session = ctx.request_context.session

    async def job() -> None:
        await anyio.sleep(seconds)
        await session.send_log_message(level="info", data=text)
        try:
            res = await session.elicit_form(text, {"type": "object", "properties": {"ok": {"type": "boolean"}}})
            _record(f"answered {res.action} {json.dumps(res.content)}", sid)
        except Exception:  # noqa: BLE001 - refused by the proxy as ambiguous
            _record("ask refused", sid)

    BACKGROUND.add(asyncio.get_running_loop().create_task(job()))
    return sid


@mcp.tool()
async def change(ctx: Context) -> int:
    _track(ctx)
    sent = 0
    for session in list(SESSIONS.values()):
        try:
            await session.send_tool_list_changed()
            sent += 1
        except Exception:  # a session that went away
            pass
    return sent


@mcp.resource("relay://note", name="note")
def note() -> str:
    return STORE.get("note", "")


async def _subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    _record(f"subscribe {params.uri}", "?")
    return types.EmptyResult()


async def _unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    _record(f"unsubscribe {params.uri}", "?")
    return types.EmptyResult()


mcp._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _subscribe)  # noqa: SLF001
mcp._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, _unsubscribe)  # noqa: SLF001


@mcp.tool()
async def touch(uri: str, ctx: Context) -> int:
    """resources/updated for ``uri`` on every session of this server (it cannot know who subscribed
    through a proxy: the proxy must route it)."""
    _track(ctx)
    sent = 0
    for session in list(SESSIONS.values()):
        try:
            await session.send_resource_updated(uri)
            sent += 1
        except Exception:  # a session that went away
            pass
    return sent


@mcp.tool()
async def crash(ctx: Context) -> str:
    """The server dies in the middle of this call (the proxy restarts a command upstream)."""
    _track(ctx)
    os._exit(3)


@mcp.tool()
async def put(key: str, value: str, ctx: Context) -> str:
    _track(ctx)
    STORE[key] = value
    return "ok"


@mcp.tool(description=os.environ.get("RELAY_GET_DESCRIPTION"))  # a server that comes back changed
async def get(key: str, ctx: Context) -> str:
    _track(ctx)
    return STORE.get(key, "")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--http":
        mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run(transport="stdio")
