"""The two methods the policy governs: ``tools/list`` and ``tools/call``.

``tools/list`` is forwarded, each page reviewed against the pins (a changed tool is withheld),
and the tools the policy hides are dropped. ``tools/call`` is decided first (``Decisions``); a
denial is a tool error naming the tool, rule and reason, and the upstream server never sees the
call; ``approval_required`` asks a human (``ApprovalFlow``); the audit record is written and
flushed before anything is forwarded, and a failure in any of that denies the call (fail closed).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError

from .approval_flow import ApprovalFlow, upstream_inputs
from .deciding import Decisions, ToolCall, denied, new_call_id
from .forwarding import RAW, Forwarder, rebuild
from .pins import PinCheck
from .sessions import FrontSessions

__all__ = ["ToolMethods"]


@dataclass(eq=False)
class ToolMethods:
    """The ``tools/list`` and ``tools/call`` handlers of the front server."""

    sessions: FrontSessions
    decisions: Decisions
    approvals: ApprovalFlow
    pin_check: PinCheck
    forwarding: Forwarder
    # input schemas of the last listing, hidden tools' too: Mcp-Param header checks (2026-07-28
    # HTTP) read them through ``input_schema``, which shows only what the policy shows now
    schemas: dict[str, Any] = field(default_factory=dict)

    def input_schema(self, name: str) -> Any:
        """The SDK's Mcp-Param header check (2026-07-28 HTTP, before the policy runs): the input
        schema of a tool the policy lets the client see, from the last listing; None (no check,
        as for a name the server does not have) for any other, so a hidden tool answers as an
        absent one. Asked at each call, so a reload that hides or shows a tool counts at once."""
        schema = self.schemas.get(name)
        if schema is None or not self.decisions.shown(name):
            return None
        return schema

    async def list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> dict[str, Any]:
        self.sessions.remember(ctx)
        res: dict[str, Any] = await self.forwarding.send(
            ctx, types.ListToolsRequest(params=types.PaginatedRequestParams.model_validate(rebuild(params))), RAW
        )
        tools = self.pin_check.review(res.get("tools") or [])
        whole = (params is None or params.cursor is None) and not res.get("nextCursor")
        await self.pin_check.listed(whole, lambda: self.forwarding.client_of(ctx))
        for t in tools:
            if isinstance(t, dict) and isinstance(t.get("name"), str):
                self.schemas[t["name"]] = t.get("inputSchema")
        visible = self.decisions.visible([t.get("name") for t in tools if isinstance(t, dict)])
        res["tools"] = [t for t in tools if isinstance(t, dict) and t.get("name") in visible]
        return res

    async def call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        self.sessions.remember(ctx)
        args = params.arguments if params.arguments is not None else {}
        c = ToolCall(new_call_id(), params.name, args, session="?", identity=None)
        # a session the upstream forgot is reopened (its tools checked against the pins) before
        # deciding, so the decision sees what the call would reach
        await self.forwarding.reopen_forgotten(ctx)
        decisions = self.decisions
        try:
            c.session = self.sessions.session_of(ctx)
            c.identity = self.sessions.identity_of(ctx)
            d, us = decisions.decide(c, False)
            approval = approval_id = decided_by = None
            if d.effect == "approval_required":
                outcome = await self.approvals.approve(ctx, params, c, d, us)
                if isinstance(outcome, types.InputRequiredResult | types.CallToolResult):
                    return outcome
                d, us, approval, approval_id, decided_by = outcome
            if d.effect != "allow":
                decisions.record(c, d, us, effect="deny", approval=approval, approval_id=approval_id, decided_by=decided_by)
                if d.code == "hidden" and decisions.loaded.policy.default == "allow":
                    absent = True  # answered below, as the server answers a tool it does not have
                else:
                    return denied(c.tool, decisions.as_the_agent_sees_it(c.tool, d))
            else:
                absent = False
                decisions.record(c, d, us, approval=approval, approval_id=approval_id, decided_by=decided_by)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as e:  # noqa: BLE001 - fail closed: nothing is forwarded
            return decisions.fail_closed(c, e)
        if absent:
            return await self._as_if_absent(ctx, params.name)
        # -- allowed and logged: forward ------------------------------------------------
        fwd = rebuild(params)
        fwd["arguments"] = params.arguments
        if params.arguments is None:
            fwd.pop("arguments", None)
        fwd.update(upstream_inputs(params))  # a 2026-07-28 upstream's own input round, passed through
        req = types.CallToolRequest(params=types.CallToolRequestParams.model_validate(fwd))
        t0 = time.perf_counter()
        try:
            result = await self.forwarding.send(ctx, req, RAW, progress=True)
        except MCPError as e:
            decisions.answered(d, time.perf_counter() - t0, error=e)
            raise
        decisions.answered(d, time.perf_counter() - t0, result=result)
        return result

    async def _as_if_absent(self, ctx: Any, name: str) -> Any:
        """Under `default allow` a tool the server does not have gets the server's own answer, so
        a hidden tool must get exactly that too, or an agent could tell hidden names from absent
        ones: the server is asked for a tool that surely does not exist (with no arguments: the
        hidden call's never reach it), and its answer comes back with that name made ``name``."""
        probe = f"plr-absent-{uuid.uuid4().hex}"
        req = types.CallToolRequest(params=types.CallToolRequestParams(name=probe, arguments={}))
        shown = json.dumps(name)[1:-1]  # the name as it stands inside JSON text
        try:
            res = await self.forwarding.send(ctx, req, RAW)
        except MCPError as e:
            raise MCPError(code=e.error.code, message=e.error.message.replace(probe, name), data=e.error.data) from None
        return json.loads(json.dumps(res).replace(probe, shown))
