"""What the proxy says when something fails: upstream failures mapped to JSON-RPC errors, and
one-line descriptions of exceptions (never a traceback: an MCP client shows our stderr to its user).

``map_error`` turns whatever an upstream request raised into the ``MCPError`` the client gets
(a closed connection, a timeout, an invalid result, anything else); ``UpstreamTimeout`` is the
proxy's own deadline passing. ``why``, ``short`` and ``secs`` are the wording helpers every part
uses; ``TracebackFilter`` keeps the proxy's log records to one line each.
"""

from __future__ import annotations

import logging
import math
import os

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from ..vocab import terminal_text

__all__ = [
    "CLOSED",
    "TracebackFilter",
    "UpstreamTimeout",
    "map_error",
    "secs",
    "short",
    "why",
    "why_failed",
]

log = logging.getLogger("plr.proxy")

CLOSED = "plr: the upstream MCP server closed the connection (it exited or crashed)"


def secs(x: float) -> str:
    """Seconds for a human, rounded up (a retry hint must never be too early)."""
    if x >= 10 or float(x).is_integer():
        return str(int(math.ceil(x)))
    return f"{math.ceil(x * 10) / 10:.1f}".rstrip("0").rstrip(".")


def short(value: str, limit: int = 400) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def why(e: BaseException) -> str:
    """One line about a bad message (a pydantic error's first problem, without the input)."""
    if isinstance(e, ValidationError):
        try:
            errs = e.errors(include_url=False, include_input=False)
        except Exception:  # noqa: BLE001
            errs = []
        if errs:
            first = errs[0]
            where = ".".join(str(x) for x in first.get("loc", ()) if x != "") or "message"
            more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
            return short(f"{where}: {first.get('msg', 'invalid')}{more}", 300)
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return short(f"{type(e).__name__}: {text}", 300)


def why_failed(e: BaseException) -> str:
    """One line about why an upstream connection failed (the innermost of a group of one)."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return why(e)


class TracebackFilter(logging.Filter):
    """Log records keep one line about their exception, never the traceback (``PLR_DEBUG=1``
    keeps tracebacks). Installed on the proxy's log handler: an MCP client shows our stderr to
    its user, and a hostile server must not be able to make it scroll with stack dumps."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not os.environ.get("PLR_DEBUG"):
            exc = record.exc_info[1]
            if exc is not None:
                record.msg = f"{record.getMessage()}: {why(exc)}"
                record.args = None
            record.exc_info = None
            record.exc_text = None
        # one line, escaped: what a server chose (a tool name, an error text) cannot forge a line
        record.msg, record.args = terminal_text(record.getMessage()), None
        return True


class UpstreamTimeout(MCPError):
    """The proxy's deadline for an upstream request passed: the client got this error, while
    the server may still be working on the request."""


class UpstreamAbandoned(MCPError):
    """The proxy gave up waiting for an upstream request (it is shutting down)."""


class UpstreamErrorAnswer(MCPError):
    """The upstream server's own JSON-RPC error answer to a request, passed on as it came (not an
    error the proxy made: a deadline, a closed connection, an abandoned request). Only such an
    answer, or a result with ``isError``, says the call failed (``refund on error``)."""


def map_error(e: BaseException, *, restarting: bool) -> MCPError:
    """The JSON-RPC error a client gets for an upstream request that raised ``e`` (``restarting``:
    the shared server died and is being started again, which the message then says)."""
    if isinstance(e, MCPError):
        # the SDK's own "connection closed" (-32000 is also a server's to use for its own errors)
        if e.error.code == types.CONNECTION_CLOSED and e.error.message == "Connection closed":
            more = "; the proxy is restarting it" if restarting else ""
            return MCPError(code=types.INTERNAL_ERROR, message=CLOSED + more)
        if e.error.code == types.REQUEST_TIMEOUT:
            return MCPError(code=types.INTERNAL_ERROR, message="plr: the upstream MCP server did not answer in time")
        if type(e) is MCPError:  # how the SDK raises a server's error response
            return UpstreamErrorAnswer(code=e.error.code, message=e.error.message, data=e.error.data)
        return e
    if isinstance(e, ValidationError):
        return MCPError(code=types.INTERNAL_ERROR, message="plr: the upstream MCP server sent an invalid result")
    if isinstance(e, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)):
        return MCPError(code=types.INTERNAL_ERROR, message=CLOSED)
    log.exception("upstream request failed")
    return MCPError(code=types.INTERNAL_ERROR, message=f"plr: upstream request failed: {type(e).__name__}")
