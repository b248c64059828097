"""The enforcing MCP proxy (``plr proxy``): policy decisions in front of one MCP server.

Where things live (one concern a module; the parts take what they need as constructor arguments):

- ``core``: ``Proxy``, the coordinator: builds the parts, wires them together, and tells them
  about the upstream server's life (lost, restarted and re-checked, back, given up).
- ``options``: ``ProxyOptions`` (the command line) and ``Background`` (the task group it serves in).
- ``front_server``: the MCP ``Server`` the fronts serve: mirrors the upstream's capabilities and
  forwards resources, prompts, completion, logging level and ping.
- ``tools``: ``tools/list`` (pins reviewed, hidden tools dropped) and ``tools/call`` (decide, ask
  a human if needed, write the audit record, then forward; fail closed).
- ``deciding``: decisions and audit records: the engine, the denied result, ``deny_text``.
- ``approval_flow``: asking a human: elicitation in both protocol eras, the approval queue wait,
  the sealed 2026-07-28 request state and its nonces.
- ``pins``: tool pinning: the pin store (``ToolPins``) and the proxy's checks (``PinCheck``:
  each listing reviewed, a server that came back re-checked, calls refused until it is).
- ``sessions``: front sessions: a request's session key and identity, the HTTP ``FrontLink``s,
  who waits on the upstream, and so which client a shared server's request is for.
- ``session_upstreams``: one upstream session per front session (``--upstream URL`` over HTTP):
  ``--max-sessions`` quotas, a session the upstream forgot reopened.
- ``forwarding``: requests sent upstream: which upstream session, the ``--upstream-timeout``
  deadline (still while a human answers), progress, parameters rebuilt.
- ``relay``: upstream -> client: notifications, server-to-client requests (elicitation,
  sampling, roots) and resource subscriptions on a shared server.
- ``errors``: upstream failures mapped to JSON-RPC errors; one-line descriptions, never a traceback.
- ``upstream``: the upstream server's life (start, supervise, restart a command) and
  ``SharedUpstream``, the shared client as requests see it through restarts.
- ``stdio`` and ``http``: the two fronts (framing, malformed lines, bearer tokens, ``FrontLink``);
  ``serve``: wiring a front, the upstream and ``--watch`` together.
- ``audit`` (the JSON Lines log), ``approvals`` (what an approver is shown; the queues are
  ``dsl.state``'s), ``reload`` (policy loading and ``--watch``).

Importing ``dsl.proxy`` itself does not pull in the MCP SDK: ``Proxy``, ``ProxyOptions`` and
``serve`` are loaded on first use.
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
