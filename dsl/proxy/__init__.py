"""The enforcing MCP proxy (``plr proxy``): policy decisions in front of one MCP server.

Modules: ``core`` (decisions, approvals, forwarding), ``stdio`` and ``http`` (the two fronts),
``serve`` (wiring), ``audit`` (the JSON Lines log), ``approvals`` (the local SQLite queue),
``reload`` (policy loading and ``--watch``). Needs the ``mcp`` SDK (``pip install 'plr[proxy]'``),
imported only by ``core``, ``stdio``, ``http`` and ``serve``.
"""

from __future__ import annotations

__all__ = ["ProxyOptions", "Proxy", "serve"]


def __getattr__(name: str):  # lazy: importing dsl.proxy must not pull in the MCP SDK
    if name in ("ProxyOptions", "Proxy"):
        from . import core

        return getattr(core, name)
    if name == "serve":
        from .serve import serve

        return serve
    raise AttributeError(name)
