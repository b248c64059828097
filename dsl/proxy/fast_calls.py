"""``tools/call`` at the message level: the stdio front with a command upstream, without the SDK's
per-request machinery in between.

Through the SDK a call crosses five tasks and as many memory streams (the front's dispatcher, its
handler task, the forwarding task, the client's dispatcher, the upstream writer), which is most
of what the proxy adds to a call. Here the line the stdio front has parsed is decided, audited and
written to the server's stdin by the task that read it, and the server's answer is written back to
the client by the task that reads the server's output: no task is made per call.

It is the same call, not a shortcut around the checks: the client's request is validated as the
SDK validates it (``validate_client_request``), decided by the same ``Decisions`` (pins, argument
checks, the engine, its limits), recorded by the same audit log before anything is forwarded (a
failure denies: fail closed), and the upstream request is built exactly as the SDK path builds it
(same models, same serialisation, ids from the same counter), so the server reads the same bytes.
The answer is checked and shaped as the SDK path does (``validate_server_result`` for the server's
protocol version, ``serialize_server_result`` for the client's), errors go through the same
``map_error``, and ``--upstream-timeout``, a client's cancellation, a human answering an elicitation
(deadlines stand still) and a server that dies behave as they do there. A test runs generated calls
through both paths and compares what the client, the server and the audit log see.

Everything else takes the SDK path, unchanged: every other method, a call with ``_meta`` (a
progress token) or any other parameter, a call that needs a human's approval (approval is checked
before any limit, so deciding it here counted nothing), a hidden tool under ``default allow``
(answered as the server answers an absent tool), the 2026-07-28 era on either side, a server that is
being restarted, the first request of a session (the SDK path learns the session from it), and every
call of a client that can answer the server's own questions (elicitation, sampling, roots): the SDK's
session relays those only while it handles the call itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.client.session import _clamp_inbound_ttl, _later_revision_fields
from mcp.shared._otel import inject_trace_context
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params, handler_exception_to_error_data
from mcp_types import methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from opentelemetry import context as otel_context
from opentelemetry.propagate import get_global_textmap
from pydantic_core import from_json, to_json

from ..engine import Decision
from .deciding import Decisions, ToolCall, new_call_id
from .errors import UpstreamTimeout, map_error, secs
from .forwarding import Deadlines
from .http import id_key
from .lane import UpstreamLane, lane_of
from .options import Background

if TYPE_CHECKING:
    from .sessions import FrontSessions
    from .upstream import SharedUpstream

__all__ = ["FastCalls", "checked_result", "client_frame", "client_request", "plain_call", "request_needs_check", "upstream_frame"]

_PARAM_KEYS = frozenset({"name", "arguments"})


@dataclass(eq=False, slots=True)
class _Call:
    """One call of the fast path on its way through the server."""

    owner: FastCalls
    front: Any  # the stdio front's reader: ``reply(msg, rid)``, ``reply_frame(data, rid)``
    front_id: Any
    up_id: int
    lane: UpstreamLane
    tool: str
    version: str  # the client's protocol version
    decision: Decision  # what allowed it (its charge is given back if the server says it failed)
    sent: float = 0.0  # perf_counter() when written to the server
    timer: asyncio.TimerHandle | None = None
    budget: float = 0.0  # seconds left while the deadline stands still (a human answers)
    deadline: float = 0.0  # loop time at which it expires
    paused: bool = False
    done: bool = False
    noted: bool = False  # its answer noted (``Decisions.answered``) by ``finish_now`` already


class FastCalls:
    """Takes the ``tools/call`` requests of the stdio front that need nothing of the SDK."""

    def __init__(
        self,
        *,
        decisions: Decisions,
        sessions: FrontSessions,
        shared: SharedUpstream,
        timeout: float | None,
        deadlines: Deadlines,
        tasks: Background,
        cacheable: bool,
    ) -> None:
        self.decisions = decisions
        self.sessions = sessions
        self.shared = shared
        self.timeout = timeout or None  # --upstream-timeout (None: wait for ever)
        self.deadlines = deadlines
        deadlines.listeners.append(self)  # a human answering stops our deadlines too
        self.tasks = tasks
        # a cache hint on tools/call results would change the answer's shape: the SDK path then
        self.enabled = not cacheable
        # the client's id (keyed as the SDK's dispatcher and the stdio front key ids in flight:
        # ``coerce_request_id``, by ``http.id_key``, so a cancel of "07" finds call 7, as the SDK's
        # would) -> its call
        self.by_front: dict[Any, _Call] = {}
        self.taken = 0  # calls served here (PLR_PROXY_FAST=report prints it at exit, for tests)
        self.answered_now = 0  # of which answered in the server pipe's read callback (finish_now)

    # -- the client's messages -----------------------------------------------------------------

    def wants(self, msg: Any) -> bool:
        """Should the front hand ``msg`` to ``take`` (a tools/call, or a cancellation of ours)?"""
        if not self.enabled:
            return False
        if isinstance(msg, types.JSONRPCRequest):
            return msg.method == "tools/call"
        return bool(self.by_front) and isinstance(msg, types.JSONRPCNotification) and msg.method == "notifications/cancelled"

    async def take(self, msg: Any, front: Any) -> bool:
        """Handle ``msg`` here (True), or leave it to the SDK path (False: nothing was done)."""
        out = self.take_now(msg, front)
        if out is True or out is False:
            return out
        await out()
        return True

    def take_now(self, msg: Any, front: Any) -> bool | Callable[[], Awaitable[None]]:
        """``take`` without waiting, run by the front's reader callback itself (no task hop): True
        when done (forwarded), False for the SDK path (nothing was done), or the answer the
        client is still owed (decided and recorded): the caller awaits it before reading on, so a
        client that does not read our answers stops being read."""
        if isinstance(msg, types.JSONRPCNotification):
            self._cancelled(msg)
            return False  # the SDK's session sees the cancellation too (it knows no such id)
        lane, version = self._ready()
        if lane is None:
            return False
        p = msg.params
        if not plain_call(p, version):
            return False  # the SDK path answers it as it always has
        decisions = self.decisions
        sessions = self.sessions
        args = p.get("arguments")
        c = ToolCall(new_call_id(), p["name"], args if args is not None else {}, sessions.process_session, sessions.identity)
        d, us = decisions.decide(c, False)
        if decisions.needs_the_sdk_path(d):
            return False
        self.taken += 1
        result = decisions.record_taken(c, d, us)
        if result is not None:
            return partial(self._answer, front, msg.id, version, result.model_dump(by_alias=True, mode="json", exclude_none=True))
        return self._forward(front, msg.id, version, lane, p, c.tool, d)

    def _ready(self) -> tuple[UpstreamLane | None, str]:
        """The lane of the live shared server and the client's protocol version, when the fast
        path can serve a call now (else None: the SDK path)."""
        sessions = self.sessions
        front = sessions.front_session
        if front is None or sessions.front_version in MODERN_PROTOCOL_VERSIONS:
            return None, ""
        caps = front.client_capabilities
        if caps is not None and (caps.elicitation is not None or caps.sampling is not None or caps.roots is not None):
            # the server may ask this client something during the call: the SDK's session can only
            # relay that while it handles the call itself
            return None, ""
        shared = self.shared
        if shared.restarting or shared.modern:
            return None, ""
        lane = lane_of(shared.client)
        if lane is None or not lane.open or lane.congested():
            return None, ""
        return lane, sessions.front_version or ""

    def _forward(
        self, front: Any, rid: Any, version: str, lane: UpstreamLane, p: dict[str, Any], tool: str, d: Decision
    ) -> bool | Callable[[], Awaitable[None]]:
        """Send the call upstream, built as the SDK path builds it (its answer comes to ``finish``);
        True, or the error the client is owed when the server's stdin is gone."""
        meta: dict[str, Any] = {}
        trace_context_into(meta)  # as the SDK's dispatcher does (nothing without a tracer)
        up_id = lane.next_id()
        data = upstream_frame(up_id, p["name"], p.get("arguments"), meta, lane.encoding)
        call = _Call(self, front, rid, up_id, lane, tool, version, d)
        lane.calls[up_id] = call
        self.by_front[id_key(rid)] = call
        self.sessions.fast_call_started()
        self._arm(call)
        call.sent = time.perf_counter()
        try:
            lane.send_now(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
            if self._settle(call):
                lane.calls.pop(up_id, None)
                return partial(self._error, call, map_error(e, restarting=self.shared.restarting))
        return True

    # -- the server's answers ------------------------------------------------------------------

    async def finish(self, call: _Call, message: Any) -> None:
        """The server answered ``call`` (``message``, a response or an error): the client's answer,
        checked and shaped as on the SDK path."""
        if not self._settle(call):
            return
        took = time.perf_counter() - call.sent
        if isinstance(message, types.JSONRPCError):
            e = MCPError(code=message.error.code, message=message.error.message, data=message.error.data)
            mapped = map_error(e, restarting=self.shared.restarting)
            self.decisions.answered(call.decision, took, error=mapped)
            await self._error(call, mapped)
            return
        try:
            result, shaped = self._upstream_result(message.result, call.version)
        except MCPError as e:  # made here, as Forwarder.exchange makes it: not the server's error answer
            mapped = e
            self.decisions.answered(call.decision, took, error=mapped)
            await self._error(call, mapped)
            return
        except Exception as e:  # noqa: BLE001 - as the SDK path maps it
            mapped = map_error(e, restarting=self.shared.restarting)
            self.decisions.answered(call.decision, took, error=mapped)
            await self._error(call, mapped)
            return
        if not call.noted:
            self.decisions.answered(call.decision, took, result=result)
        if shaped is not None:
            await call.front.reply_frame(client_frame(call.front_id, shaped), call.front_id)
            return
        await self._answer(call.front, call.front_id, call.version, result)

    def finish_now(self, call: _Call, message: Any) -> bool:
        """``finish`` of a result, done at once in the server pipe's read callback (True), when
        it is valid, shaped without a second model and written to the client whole without
        waiting; else nothing was done (False: ``finish`` takes it, from the start)."""
        if call.done:
            return False
        took = time.perf_counter() - call.sent
        try:
            result, shaped = self._upstream_result(message.result, call.version)
        except Exception:  # noqa: BLE001 - an error to map: finish's
            return False
        if shaped is None:
            return False
        # noted before the client has its answer, as ``finish`` notes it: a refund (read by other
        # processes through a shared limit store) or the server's time (read by a metrics scrape)
        # is there by the time the client can act on the answer
        self.decisions.answered(call.decision, took, result=result)
        if not call.front.reply_now(client_frame(call.front_id, shaped), call.front_id):
            call.noted = True  # (``finish``, which takes it from here, does not note it again)
            return False
        self._settle(call)
        self.answered_now += 1
        return True

    def _upstream_result(self, raw: Any, client_version: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """What ``ClientSession.send_request`` and ``Forwarder.exchange`` make of the server's
        result, and, when the client's protocol version has the same result model as the
        server's (every 2025-era pair), that result already shaped for the client: the model
        ignores unknown keys, so validating it once gives what validating it, dropping the later
        revisions' keys and shaping it for the client gives (None: ``_answer`` shapes it)."""
        client = self.shared.client
        version = (client.protocol_version if client is not None else None) or "2025-11-25"
        raw, shaped = checked_result(raw, version, client_version)
        if raw.get("resultType") == "input_required":
            raise MCPError(
                code=types.INTERNAL_ERROR,
                message="plr: the upstream server asked for input that cannot be relayed to a 2025-era client",
            )
        return raw, shaped

    def upstream_closed(self, call: _Call) -> None:
        """The server's output ended with ``call`` unanswered: the error the SDK path gives."""
        if not self._settle(call):
            return
        e = map_error(MCPError(code=types.CONNECTION_CLOSED, message="Connection closed"), restarting=self.shared.restarting)
        self.tasks.spawn(self._error, call, e)

    # -- deadlines and cancellation ------------------------------------------------------------

    def _arm(self, call: _Call) -> None:
        if self.timeout is None:
            return
        call.budget = self.timeout
        if self.deadlines.human_waiting:
            call.paused = True
            return
        self._start_timer(call, self.timeout)

    def _start_timer(self, call: _Call, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        call.deadline = loop.time() + seconds
        call.timer = loop.call_later(seconds, self._expired, call)

    def _expired(self, call: _Call) -> None:
        if not self._settle(call):
            return
        call.lane.calls.pop(call.up_id, None)
        self.sessions.fast_call_abandoned()
        e = UpstreamTimeout(
            code=types.INTERNAL_ERROR,
            message=f"plr: the upstream MCP server did not answer within {secs(self.timeout or 0)} s (--upstream-timeout)",
        )
        self.tasks.spawn(self._time_out, call, e)

    async def _time_out(self, call: _Call, e: MCPError) -> None:
        await self._error(call, e)
        self._courtesy_cancel(call)

    def pause(self) -> None:
        """A human answers an elicitation the server asked: every deadline stands still."""
        loop = asyncio.get_running_loop()
        for call in self.by_front.values():
            if call.timer is not None and not call.paused:
                call.timer.cancel()
                call.timer = None
                call.budget = max(0.0, call.deadline - loop.time())
                call.paused = True

    def resume(self) -> None:
        for call in list(self.by_front.values()):
            if call.paused:
                call.paused = False
                self._start_timer(call, call.budget)

    def _cancelled(self, msg: types.JSONRPCNotification) -> None:
        """The client cancelled a call of ours: never answered (as the SDK does), and the server
        is told, as the SDK tells it when a request is abandoned."""
        rid = cancelled_request_id_from_params(msg.params)
        call = self.by_front.get(id_key(rid)) if rid is not None else None
        if call is None or not self._settle(call):
            return
        call.lane.calls.pop(call.up_id, None)
        self.sessions.fast_call_abandoned()
        call.front.release(call.front_id)
        self._courtesy_cancel(call)

    def _courtesy_cancel(self, call: _Call) -> None:
        note = types.JSONRPCNotification(
            jsonrpc="2.0",
            method="notifications/cancelled",
            params={"requestId": call.up_id, "reason": "caller cancelled"},
        )
        try:
            call.lane.send_now((note.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode(call.lane.encoding))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the server is gone: nothing to cancel

    # -- answers to the client -----------------------------------------------------------------

    def _settle(self, call: _Call) -> bool:
        """Mark ``call`` answered once (False: it already was: timed out, cancelled, answered)."""
        if call.done:
            return False
        call.done = True
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        self.by_front.pop(id_key(call.front_id), None)
        self.sessions.fast_call_ended()
        return True

    async def _answer(self, front: Any, rid: Any, version: str, dumped: dict[str, Any]) -> None:
        """A result, shaped for the client's protocol version as the SDK's runner shapes it."""
        try:
            dumped = methods.serialize_server_result("tools/call", version, dumped)
        except Exception:  # noqa: BLE001 - the runner's answer to an invalid handler result
            err = types.ErrorData(code=types.INTERNAL_ERROR, message="Handler returned an invalid result")
            await front.reply(types.JSONRPCError(jsonrpc="2.0", id=rid, error=err), rid)
            return
        await front.reply_frame(client_frame(rid, dumped), rid)

    async def _error(self, call: _Call, e: BaseException) -> None:
        err = handler_exception_to_error_data(e) or types.ErrorData(code=0, message=str(e))
        await call.front.reply(types.JSONRPCError(jsonrpc="2.0", id=call.front_id, error=err), call.front_id)


def plain_call(p: Any, version: str) -> bool:
    """Are ``p`` the params of a ``tools/call`` the fast paths take: a str name and a dict (or no)
    arguments, nothing else, valid for the client's protocol ``version`` as the SDK validates
    them? (Anything else takes the SDK path, which answers it as it always has.)"""
    if not isinstance(p, dict) or not p.keys() <= _PARAM_KEYS:
        return False
    name, args = p.get("name"), p.get("arguments")
    if name.__class__ is not str or not (args is None or args.__class__ is dict):
        return False
    if request_needs_check(version):
        try:
            methods.validate_client_request("tools/call", version, p)
        except Exception:  # noqa: BLE001 - invalid
            return False
    return True  # else: such params always pass the 2025-era model


def request_needs_check(version: str) -> bool:
    """Must a ``tools/call`` request whose params are a str name and a dict (or no) arguments,
    nothing else, still go through ``validate_client_request`` for ``version``? Not for the
    2025-era model, which never refuses those."""
    return methods.CLIENT_REQUESTS.get(("tools/call", version)) is not _REQUEST_2025


def checked_result(raw: Any, version: str, client_version: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A server's ``tools/call`` result as ``ClientSession.send_request`` checks it for the
    server's protocol ``version`` (a negative ``ttlMs`` floored, validated, the later revisions'
    keys dropped), and, when the client's version has the same result model (every 2025-era
    pair), that result already shaped for the client: the model ignores unknown keys, so
    validating it once gives what validating it, dropping those keys and shaping it gives
    (None: the caller shapes it). Raises what the validation raises.

    The commonest result, text blocks and ``isError`` alone, under the 2025-era model on both
    sides, is shaped at once: it has no ``ttlMs`` to floor and no key of a later revision."""
    if _plain_2025(version, client_version):
        shaped = _plain_text(raw)
        if shaped is not None:
            return dict(raw), shaped
    raw = dict(raw)  # a JSONRPCResponse's result is a dict
    _clamp_inbound_ttl(raw)
    shaped: dict[str, Any] | None = None
    try:
        if _one_surface(version, client_version):  # (a result _plain_text shapes was shaped above)
            shaped = methods.serialize_server_result("tools/call", version, raw)
        else:
            methods.validate_server_result("tools/call", version, raw)
    except KeyError:
        pass
    if not (foreign := _later_revision_fields("tools/call", version)).isdisjoint(raw):
        raw = {k: v for k, v in raw.items() if k not in foreign}
    return raw, shaped


# The 2025-era models of a tools/call request and result, for which two shortcuts hold (each
# held to the model by tests/proxy/test_fast_frames.py, which also pins the fields they rely on).
_REQUEST_2025 = methods.CLIENT_REQUESTS.get(("tools/call", "2025-11-25"))
_RESULT_2025 = methods.SERVER_RESULTS.get(("tools/call", "2025-11-25"))


def _plain_text(raw: dict[str, Any]) -> dict[str, Any] | None:
    """``serialize_server_result`` of the commonest result, text blocks and ``isError`` and
    nothing else, for the 2025-era model (None: any other result, which the model shapes)."""
    if not raw.keys() <= _TEXT_KEYS:
        return None
    content = raw.get("content")
    if content.__class__ is not list:
        return None
    blocks = []
    for b in content:
        if b.__class__ is not dict or len(b) != 2 or b.get("type") != "text" or (text := b.get("text")).__class__ is not str:
            return None
        blocks.append({"text": text, "type": "text"})  # the model's field order
    out: dict[str, Any] = {"content": blocks}
    is_error = raw.get("isError")
    if is_error is not None:
        if is_error.__class__ is not bool:
            return None
        out["isError"] = is_error
    return out


_TEXT_KEYS = frozenset({"content", "isError"})


@cache
def _plain_2025(server_version: str, client_version: str) -> bool:
    """Does ``_plain_text`` shape these versions' results (one model, the 2025-era one)?"""
    return _one_surface(server_version, client_version) and methods.SERVER_RESULTS.get(("tools/call", server_version)) is _RESULT_2025


@cache
def _one_surface(server_version: str, client_version: str) -> bool:
    """Do the two versions' ``tools/call`` results have one model, that ignores unknown keys?"""
    server = methods.SERVER_RESULTS.get(("tools/call", server_version))
    client = methods.SERVER_RESULTS.get(("tools/call", client_version))
    if server is None or server is not client or not isinstance(server, type):
        return False
    return server.model_config.get("extra", "ignore") == "ignore"


def trace_context_into(meta: dict[str, Any]) -> None:
    """``inject_trace_context(meta)``, as the SDK's dispatcher calls it for every request, but not
    when it surely writes nothing: OpenTelemetry's default propagators (W3C trace context and
    baggage) write nothing from a context that holds nothing (no span, no baggage), the proxy's
    own with no tracer configured. ~5 µs of a call's way upstream, measured in the proxy; any
    other propagator, or a context that holds anything, is asked."""
    if not otel_context.get_current() and _default_propagators(get_global_textmap()):
        return
    inject_trace_context(meta)


# the global propagator last seen, its propagators then, and whether they are the default ones
# (one tuple, read at once: a thread replacing it never pairs one propagator with another's answer)
_DEFAULT_TEXTMAP: tuple[Any, Any, bool] = (None, None, False)


def _default_propagators(textmap: Any) -> bool:
    global _DEFAULT_TEXTMAP
    inner = getattr(textmap, "_propagators", None)
    seen, seen_inner, default = _DEFAULT_TEXTMAP
    if textmap is seen and inner == seen_inner:  # (the same objects: a list changed in place is seen)
        return default
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    default = (
        textmap.__class__ is CompositePropagator
        and isinstance(inner, list)
        and [p.__class__ for p in inner] == [TraceContextTextMapPropagator, W3CBaggagePropagator]
    )
    _DEFAULT_TEXTMAP = (textmap, list(inner) if isinstance(inner, list) else inner, default)
    return default


def upstream_frame(up_id: int, name: str, arguments: dict[str, Any] | None, meta: dict[str, Any], encoding: str) -> bytes:
    """The line the SDK path writes to the server for this call: ``JSONRPCRequest`` of the
    ``CallToolRequest`` dump, ``_meta`` last. The same bytes, without building the models (a
    JSON-parsed name and arguments pass through them unchanged, and pydantic writes a float
    that is not finite as null; tests/proxy/test_fast_frames.py holds the two equal), else the
    models themselves."""
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    if meta:
        params["_meta"] = meta
    if encoding.replace("-", "").lower() == "utf8":
        try:
            return to_json({"jsonrpc": "2.0", "id": up_id, "method": "tools/call", "params": params}, inf_nan_mode="null") + b"\n"
        except Exception:  # noqa: BLE001 - what pydantic_core cannot write: the models say what to do
            pass
    return upstream_frame_of_models(up_id, name, arguments, meta).encode(encoding)


def upstream_frame_of_models(up_id: int, name: str, arguments: dict[str, Any] | None, meta: dict[str, Any]) -> str:
    """``upstream_frame`` as the SDK path builds it (``Forwarder`` and the SDK's dispatcher)."""
    fwd: dict[str, Any] = {"name": name}
    if arguments is not None:
        fwd["arguments"] = arguments
    data = types.CallToolRequest(params=types.CallToolRequestParams.model_validate(fwd)).model_dump(
        by_alias=True, mode="json", exclude_none=True
    )
    out_params = dict(data["params"])
    if meta:
        out_params["_meta"] = meta
    frame = types.JSONRPCRequest(jsonrpc="2.0", id=up_id, method="tools/call", params=out_params)
    return frame.model_dump_json(by_alias=True, exclude_unset=True) + "\n"


def server_message(text: bytes | str) -> Any:
    """``jsonrpc_message_adapter.validate_json(text)``, the server's answer read as the SDK reads
    it. The commonest answer, a response with an int or str id and an object result and nothing
    else, is the model those values make without validating them again: for exactly those three
    keys the adapter picks the response model and keeps the values as parsed (held to the adapter
    by tests/proxy/test_fast_frames.py); anything else, invalid JSON included, goes through it."""
    raw = plain_response(text)
    if raw is not None:
        return types.JSONRPCResponse.model_construct(jsonrpc="2.0", id=raw["id"], result=raw["result"])
    return types.jsonrpc_message_adapter.validate_json(text, by_name=False)


def response_parts(text: bytes | str) -> tuple[Any, dict[str, Any]] | None:
    """The id and result of ``server_message(text)`` when it is a response (else None), without
    its model for the commonest one (for a caller that needs no model). Raises what
    ``server_message`` raises."""
    raw = plain_response(text)
    if raw is not None:
        return raw["id"], raw["result"]
    message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
    if message.__class__ is not types.JSONRPCResponse:
        return None
    return message.id, message.result


def plain_response(text: bytes | str) -> dict[str, Any] | None:
    """The commonest answer of ``server_message`` as the parsed dict, its ``id`` and ``result``
    what the model would hold (for a caller that needs no model); None: any other text."""
    try:
        raw = from_json(text)
    except ValueError:
        return None
    return raw if _plain_envelope(raw, _RESPONSE_KEYS) and raw["result"].__class__ is dict else None


_RESPONSE_KEYS = frozenset({"jsonrpc", "id", "result"})
_REQUEST_KEYS = frozenset({"jsonrpc", "id", "method", "params"})


def _plain_envelope(raw: Any, keys: frozenset[str]) -> bool:
    """A JSON object with exactly ``keys``, ``"jsonrpc": "2.0"`` and an int or str id: the frame of
    a message the shortcuts of ``server_message`` and ``client_request`` may take."""
    return (
        raw.__class__ is dict and raw.keys() == keys and raw["jsonrpc"] == "2.0" and raw["id"].__class__ in (int, str)
    )


def client_request(raw: Any) -> Any:
    """``jsonrpc_message_adapter.validate_python(raw)`` of a parsed JSON value, as the front reads a
    client's request. The commonest one, a request with an int or str id, a str method, an object
    of params and nothing else, is the model those values make without validating them again: for
    exactly those four keys the adapter picks the request model and keeps the values as parsed
    (held to the adapter by tests/proxy/test_fast_frames.py); anything else goes through it."""
    if _plain_request(raw):
        return types.JSONRPCRequest.model_construct(jsonrpc="2.0", id=raw["id"], method=raw["method"], params=raw["params"])
    return types.jsonrpc_message_adapter.validate_python(raw, by_name=False)


def _plain_request(raw: Any) -> bool:
    return _plain_envelope(raw, _REQUEST_KEYS) and raw["method"].__class__ is str and raw["params"].__class__ is dict


def request_parts(raw: Any) -> tuple[Any, str, Any] | None:
    """The id, method and params of ``client_request(raw)`` when it is a request (else None),
    without its model for the commonest one (for a caller that needs no model). Raises what
    ``client_request`` raises."""
    if _plain_request(raw):
        return raw["id"], raw["method"], raw["params"]
    message = client_request(raw)
    if not isinstance(message, types.JSONRPCRequest):
        return None
    return message.id, message.method, message.params


def client_frame(rid: Any, result: dict[str, Any]) -> bytes:
    """The line answering the client's request ``rid`` with ``result`` (a dumped result), as
    ``JSONRPCResponse.model_dump_json`` writes it (held equal by tests/proxy/test_fast_frames.py)."""
    try:
        return to_json({"jsonrpc": "2.0", "id": rid, "result": result}, inf_nan_mode="null") + b"\n"
    except Exception:  # noqa: BLE001
        return client_frame_of_models(rid, result)


def client_frame_of_models(rid: Any, result: dict[str, Any]) -> bytes:
    msg = types.JSONRPCResponse(jsonrpc="2.0", id=rid, result=result)
    return msg.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
