"""Decisions and their audit records: what the policy says about one ``tools/call``, and the
line in the audit log that says it.

``Decisions`` holds the engine, the policy it runs (swapped whole by a hot reload), the audit
log and the pin check. ``decide`` never raises (an engine error is a deny); ``record`` raises
when the record cannot be written, and the caller then fails closed (``fail_closed``: the call
is denied, never forwarded). ``denied`` is the tool result a denied call gets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from ..engine import Decision, Engine
from ..engine.arguments import argument_problem
from ..engine.prepare import _default_deny
from .audit import AuditLog, args_sha256, record_head, record_text, redact, utc_now
from .errors import UpstreamErrorAnswer, log, secs, short
from .pins import PinCheck
from .reload import LoadedPolicy

__all__ = ["DECISION_META_KEY", "Decisions", "ToolCall", "denied", "deny_text", "new_call_id"]

DECISION_META_KEY = "plr/decision"


_ID_POOL: list[bytes] = []  # 8-byte ids read from the kernel's CSPRNG 512 at a time


def _forget_ids() -> None:
    _ID_POOL.clear()  # a forked child must never hand out its parent's ids


os.register_at_fork(after_in_child=_forget_ids)


def new_call_id() -> str:
    """A call id: 64 random bits as 16 hex digits, unpredictable (``os.urandom``), as uuid4 was.

    One urandom read per 512 ids instead of one per call: a system call is a few per cent of
    the proxy's time per call (issue #20); the bytes are the same kind of bytes."""
    pool = _ID_POOL
    if not pool:
        block = os.urandom(8 * 512)
        pool.extend(block[i : i + 8] for i in range(0, len(block), 8))
    return pool.pop().hex()


@dataclass(slots=True)
class ToolCall:
    """One tools/call as the proxy decides and audits it: what is asked, by whom, and the id
    that ties its audit records together (a 2026-07-28 approval retry takes the first round's)."""

    id: str
    tool: str
    args: Any
    session: str
    identity: str | None


def deny_text(tool: str, d: Decision) -> str:
    """``plr: cancel-task denied by policy.plr:11: REASON`` (+ retry hint when rate limited)."""
    where = f" by {d.rule}" if d.rule else " by policy"
    text = f"plr: {tool} denied{where}: {d.reason}"
    if d.retry_after is not None and "retry after" not in d.reason:
        text += f"; retry after {secs(d.retry_after)} s"
    return text


def denied(tool: str, d: Decision, code: str | None = None) -> types.CallToolResult:
    """The tool result of a denied call: an error naming the tool, rule and reason, and the
    decision in ``_meta`` for programs."""
    meta = {
        DECISION_META_KEY: {
            "effect": "deny",
            "code": code or d.code,
            "rule": d.rule,
            "reason": d.reason,
            "retry_after": d.retry_after,
        }
    }
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=deny_text(tool, d))], is_error=True, _meta=meta
    )


class Decisions:
    """The policy's decisions on tool calls and their audit records."""

    def __init__(
        self,
        loaded: LoadedPolicy,
        pins: PinCheck,
        *,
        limit_store: Any = None,
        audit: AuditLog | None = None,
        server_name: str | None = None,
        log_args: bool = False,
        report: Callable[[str], None],
        metrics: Any = None,
    ) -> None:
        self.engine = Engine(loaded.policy, store=limit_store)
        self.metrics = metrics  # --metrics: a metrics.ProxyMetrics, told how long the server took
        self.loaded = loaded
        self.pins = pins
        self.audit = audit
        self.server_name = server_name  # the records' "server" (the upstream's name once known)
        self._heads: dict[tuple[Any, Any, Any], str] = {}  # (session, identity, server) -> ``record_head``
        self.log_args = log_args
        self.report = report
        self._last_hidden: frozenset[str] = frozenset(loaded.policy.hide)

    def apply_policy(self, loaded: LoadedPolicy) -> bool:
        """Hot reload: prepare fully, then swap (raises and keeps the old policy on failure).
        Returns whether the hidden tools changed (the clients are then told their list changed)."""
        self.engine.replace_policy(loaded.policy)
        self.loaded = loaded
        hidden = frozenset(loaded.policy.hide)
        if hidden == self._last_hidden:
            return False
        self._last_hidden = hidden
        return True

    def visible(self, names: list[Any]) -> set[Any]:
        """Which of the listed tool names the policy lets a client see."""
        return set(self.engine.visible(names))

    def shown(self, tool: Any) -> bool:
        """Whether the policy now lets a client see ``tool`` (the test ``tools/list`` applies)."""
        return bool(self.engine.visible((tool,)))

    def decide(self, c: ToolCall, approved: bool) -> tuple[Decision, int]:
        """The decision for ``c`` and how long it took (µs). Never raises: an error is a deny."""
        t0 = time.perf_counter_ns()
        try:
            changed = self.pins.refusal(c.tool)
            withheld = None
            if changed is not None:  # before the engine: a withheld tool counts against no limit
                if self.shown(c.tool):
                    return Decision("deny", "tool_changed", changed), (time.perf_counter_ns() - t0) // 1000
                # a hidden tool answers as a name the server does not have (refused only while the
                # server's tools are unchecked); its audit record still says it changed
                absent = self.pins.refusal_of_absent()
                if absent is not None:
                    return Decision("deny", "tool_changed", absent), (time.perf_counter_ns() - t0) // 1000
                withheld = changed
            # NaN (forwarded as null) or an integer a JavaScript server rounds: the server would act on
            # another value than the one decided on, whatever the tool (so also for an unknown one)
            why = argument_problem(c.args)
            if why is not None:
                return Decision("deny", "invalid_args", why), (time.perf_counter_ns() - t0) // 1000
            d = self.engine.decide(
                c.tool, c.args, identity=c.identity, session=c.session, server=self.server_name, approved=approved
            )
            if withheld is not None and d.code == "hidden":  # (the agent sees `hidden` as absence, never this reason)
                d = Decision(d.effect, d.code, f"{d.reason}; {withheld}", d.rule)
        except Exception as e:  # noqa: BLE001 - the engine promises not to raise; fail closed if it does
            d = Decision("deny", "error", f"internal error while deciding: {type(e).__name__}: {e}")
        return d, (time.perf_counter_ns() - t0) // 1000

    def answered(self, d: Decision, seconds: float, *, error: BaseException | None = None, result: Any = None) -> None:
        """The upstream server answered an allowed call after ``seconds``: with ``result`` (a
        ``tools/call`` result, as a dict) or the error ``error``. A call it reports as failed (its
        own error answer, or ``isError``) gives back what it took from its `refund on error`
        limits; a call it did not answer (a deadline, a closed connection) keeps it spent: the
        server may have acted. Never raises."""
        failed = isinstance(error, UpstreamErrorAnswer) or (isinstance(result, dict) and result.get("isError") is True)
        if error is not None and not isinstance(error, UpstreamErrorAnswer):
            return  # not an answer: no latency to tell, nothing given back
        if self.metrics is not None:
            try:
                self.metrics.observe_upstream(seconds)
            except Exception:  # noqa: BLE001 - metrics never change an answer
                pass
        if failed and d.charge is not None:
            self.engine.refund(d)

    def limited_once_approved(self, c: ToolCall) -> Decision | None:
        """The rate-limit denial ``c`` would get once approved (None: its limits let it through)."""
        return self.engine.rate_limit_if_approved(c.tool, identity=c.identity, session=c.session)

    def record(
        self,
        c: ToolCall,
        d: Decision,
        latency_us: int,
        *,
        effect: str | None = None,
        approval: str | None = None,
        approval_id: str | None = None,
        decided_by: str | None = None,
    ) -> None:
        """Write one decision record, outcome from ``d`` (effect may be overridden: an
        ``approval_required`` that was not approved is logged as a deny). Raises OSError if it
        cannot be written."""
        if self.audit is None:
            return
        ts = utc_now()
        sha = args_sha256(c.args)
        if d.retry_after is None and approval is None and approval_id is None and not self.log_args:
            text = self._record_text(c, d, ts, sha, effect or d.effect, latency_us)
            if text is not None:
                self.audit.write(text)
                return
        rec: dict[str, Any] = {
            "ts": ts,
            "session": c.session,
            "identity": c.identity,
            "server": self.server_name,
            "tool": c.tool,
            "args_sha256": sha,
            "effect": effect or d.effect,
            "code": d.code,
            "rule": d.rule,
            "reason": d.reason,
            "policy_sha256": self.loaded.sha256,
            "latency_us": latency_us,
            "call": c.id,
        }
        if d.retry_after is not None:
            rec["retry_after"] = d.retry_after
        if approval is not None:
            rec["approval"] = approval
        if approval_id is not None:
            rec["approval_id"] = approval_id
        if decided_by is not None:
            rec["decided_by"] = decided_by
        if self.log_args:
            rec["args"] = redact(c.args)
        self.audit.write(rec)

    def _record_text(self, c: ToolCall, d: Decision, ts: str, sha: str, effect: str, latency_us: int) -> str | None:
        """``record``'s record as its JSON text, the part its session's records share written once
        (None: the encoder writes it)."""
        key = (c.session, c.identity, self.server_name)
        head = self._heads.get(key)
        if head is None:
            head = record_head(*key)
            if head is None:
                return None
            if len(head) <= 512:  # (kept for the session's next records; an outsized one is not)
                if len(self._heads) >= 1024:
                    self._heads.clear()
                self._heads[key] = head
        return record_text(ts, head, c.tool, sha, effect, d.code, d.rule, d.reason, self.loaded.sha256, latency_us, c.id)

    def needs_the_sdk_path(self, d: Decision) -> bool:
        """A decision the fast paths leave to the SDK path, which has counted nothing yet: a
        human's approval, or a hidden tool under `default allow` (answered as the server answers a
        tool it does not have)."""
        return d.effect == "approval_required" or (d.code == "hidden" and self.loaded.policy.default == "allow")

    def record_taken(self, c: ToolCall, d: Decision, latency_us: int) -> types.CallToolResult | None:
        """Record a fast path's decision (not one ``needs_the_sdk_path``) before anything is
        forwarded. None: forward the call; else the answer the client gets instead, the denial as
        the agent sees it, or, when the record cannot be written, the failure (fail closed)."""
        try:
            if d.effect != "allow":
                self.record(c, d, latency_us, effect="deny")
                return denied(c.tool, self.as_the_agent_sees_it(c.tool, d))
            self.record(c, d, latency_us)
        except Exception as e:  # noqa: BLE001 - fail closed: nothing is forwarded
            return self.fail_closed(c, e)
        return None

    def as_the_agent_sees_it(self, tool: str, d: Decision) -> Decision:
        """A hidden tool answers exactly as a tool that does not exist (under `default deny`: the
        default's denial), so an agent cannot enumerate hidden names; the audit keeps `hidden`."""
        if d.code == "hidden" and self.loaded.policy.default == "deny":
            return _default_deny(tool)
        return d

    def fail_closed(self, c: ToolCall, e: BaseException) -> types.CallToolResult:
        """An internal error while deciding or recording ``c``: denied (and recorded if possible)."""
        d = Decision("deny", "error", f"internal error in the proxy: {type(e).__name__}: {short(str(e), 200)}")
        log.error("plr proxy: denying %s: %s", c.tool, d.reason)
        self.report(f"plr proxy: denied {c.tool} after an internal error: {type(e).__name__}: {e}")
        try:
            self.record(c, d, 0)
        except Exception as e2:  # noqa: BLE001
            self.report(f"plr proxy: could not write the audit record: {e2}")
        return denied(c.tool, d)
