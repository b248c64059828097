"""Asking a human: what happens to a call whose decision is ``approval_required``.

``ApprovalFlow.approve`` picks the channel (``--approval auto|elicit|queue|deny``): MCP
elicitation in the handshake era (the proxy asks the client and waits), elicitation in the
2026-07-28 era (the proxy answers ``InputRequiredResult`` with a sealed request state; the
client's retry carries the answer), or the approval queue (``plr approvals grant ID``, SQLite or
the shared ``--state`` queue). The answer is decided again with ``approved=True``, so limits
still apply. Every channel fails closed: no answer, a broken channel or an unreachable queue is
a deny.

``RequestSeals`` binds a 2026-07-28 approval round to one call: the request state is an HMAC'd
token (this call's tool and arguments, its session, when it was asked, a nonce spent once), so a
client cannot move an approval to other arguments, forge one or replay it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ..engine import Decision, StateUnavailable
from .approvals import args_for_display, cut_marked
from .audit import args_sha256, canonical_args
from .deciding import Decisions, ToolCall, denied
from .errors import secs

__all__ = ["APPROVAL_KEY", "APPROVAL_SCHEMA", "ApprovalFlow", "RequestSeals", "upstream_inputs"]

APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approve": {"type": "boolean"}},
    "required": ["approve"],
}
APPROVAL_KEY = "plr.approval"  # our key in InputRequiredResult.input_requests (kept apart from upstream keys)
STATE_PREFIX = "plr1."
ELICIT_ARGS_MAX = 8000  # characters of arguments in an approval question (more is named, not dropped)

# An answer: (the final decision, its latency in µs, the channel, the queue's approval id)
Answered = tuple[Decision, int, str | None, str | None, str | None]  # decision, latency, channel, request id, who answered


def upstream_inputs(params: types.CallToolRequestParams) -> dict[str, Any]:
    """What of a retried call's input round belongs to a 2026-07-28 upstream and is passed on to
    it: its own input responses and request state, never the proxy's approval answer or seal."""
    extra = {k: v for k, v in (params.input_responses or {}).items() if k != APPROVAL_KEY}
    if not extra:
        return {}
    out: dict[str, Any] = {
        "inputResponses": {k: v.model_dump(by_alias=True, mode="json", exclude_none=True) for k, v in extra.items()}
    }
    if params.request_state and not params.request_state.startswith(STATE_PREFIX):
        out["requestState"] = params.request_state
    return out


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class RequestSeals:
    """Sealed 2026-07-28 request states (HMAC with a secret of this process) and their spent nonces."""

    def __init__(self) -> None:
        self._secret = os.urandom(32)
        self._used_nonces: dict[str, float] = {}
        self._nonce_prune_at = 4096

    @staticmethod
    def fingerprint(c: ToolCall) -> str:
        return hashlib.sha256(f"{c.tool}\x00{canonical_args(c.args)}".encode("utf-8", "surrogatepass")).hexdigest()

    def seal(self, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        mac = _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
        return f"{STATE_PREFIX}{body}.{mac}"

    def unseal(self, state: str | None) -> dict[str, Any] | None:
        if not state or not state.startswith(STATE_PREFIX):
            return None
        try:
            body, mac = state[len(STATE_PREFIX) :].split(".", 1)
            want = _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(want, mac):
                return None
            out = json.loads(_unb64(body))
            return out if isinstance(out, dict) else None
        except (ValueError, TypeError):
            return None

    def spend_nonce(self, nonce: str, expires: float, now: float | None = None) -> bool:
        """Spend a seal's nonce once; ``expires`` on ``time.monotonic()``, as the seal's ``iat``:
        a seal verifies only in the process that made it, so no wall clock is needed, and a wall
        clock stepping back after a prune would make a pruned nonce's seal young again (a replay).
        ``now``: the reading the seal's age was checked with (a later one could prune this very
        nonce, expired in between, before it is looked up)."""
        now = time.monotonic() if now is None else now
        if len(self._used_nonces) > self._nonce_prune_at:  # amortised: not a rebuild per retry
            self._used_nonces = {k: v for k, v in self._used_nonces.items() if v > now}
            self._nonce_prune_at = max(4096, 2 * len(self._used_nonces))
        if nonce in self._used_nonces:
            return False
        self._used_nonces[nonce] = expires
        return True


def _form_capable(ctx: Any) -> bool:
    caps = ctx.session.client_capabilities
    el = getattr(caps, "elicitation", None) if caps is not None else None
    if el is None:
        return False
    return el.form is not None or el.url is None  # `{}` means form (2025-06-18 wording)


def _pending_keys(c: ToolCall) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """Who a waiting call counts against for --max-pending-approvals: its identity and its session."""
    return ("identity", c.identity), ("session", c.session)


class ApprovalFlow:
    """Asks a human about a call that needs approval, over the channel ``mode`` allows."""

    def __init__(
        self,
        decisions: Decisions,
        mode: str,
        timeout: float,
        *,
        state: Any = None,
        approvals_db: Path | None = None,
        audit_path: Path | None = None,
        report: Callable[[str], None],
        max_pending: int = 20,
        notifier: Any = None,
    ) -> None:
        self.decisions = decisions
        # --notify / --notify-command (notify.Notifier): told of each request filed in the queue,
        # in the background; it never delays or changes a decision
        self.notifier = notifier
        # at most this many calls wait for a human per identity and per session (0: no cap), so
        # an agent looping on a tool that needs approval cannot bury its approver
        self.max_pending = max_pending
        self._pending: dict[tuple[str, Any], int] = {}
        self.mode = mode  # --approval
        self.timeout = timeout  # --approval-timeout
        self.state = state  # --state (its shared queue), else the SQLite queue at approvals_db
        self.approvals_db = approvals_db
        self.audit_path = audit_path  # the default queue lives beside the audit log
        self.report = report
        self.seals = RequestSeals()
        self._queue: Any = None

    def _message(self, c: ToolCall, d: Decision) -> str:
        # the client already holds these arguments: shown whole (up to a bound that is named)
        return f"Allow {c.tool}({cut_marked(canonical_args(c.args), ELICIT_ARGS_MAX)})? {self._why(d)}"

    def _why(self, d: Decision) -> str:
        """The rule's reason, and the `description` its author gave it: what a human weighs."""
        described = self.decisions.loaded.policy.descriptions.get(d.rule) if d.rule else None
        return f"{d.reason} ({described})" if described else d.reason

    async def approve(self, ctx: Any, params: types.CallToolRequestParams, c: ToolCall, d: Decision, us: int) -> Any:
        """Ask a human. Returns a final (Decision, latency, channel, id, who answered), or a result to
        return as is."""
        mode = self.mode
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        can_elicit = _form_capable(ctx) and (modern or ctx.session.can_send_request)
        if mode == "deny" or (mode == "elicit" and not can_elicit):
            nd = Decision(
                "deny", d.code, f"{d.reason} (approval required, but no approval channel is available)", d.rule
            )
            return nd, us, "unavailable", None, None
        # a call its limit would refuse once approved is refused now: a human is not asked for it
        # (an agent looping on a limited tool must not flood the approver); only a 2026-07-28
        # retry whose sealed request state verifies is let through, to be decided with its answer
        # (``_approve_modern``: a forged or stray answer must not switch the check off)
        use_elicit = mode == "elicit" or (mode == "auto" and can_elicit)
        if use_elicit and modern:
            return await self._approve_modern(params, c, d, us)
        limited = self.decisions.limited_once_approved(c)
        if limited is not None:
            return limited, us, None, None, None
        crowded = self._crowded(c)
        if crowded is not None:
            why = f"{d.reason} (approval required, but {crowded}; wait for a human to answer those first)"
            return Decision("deny", "approval_unavailable", why, d.rule), us, None, None, None
        keys = _pending_keys(c)
        for k in keys:
            self._pending[k] = self._pending.get(k, 0) + 1
        try:
            return await self._ask(ctx, c, d, us, use_elicit)
        finally:
            for k in keys:
                self._pending[k] -= 1
                if not self._pending[k]:
                    del self._pending[k]

    def _crowded(self, c: ToolCall) -> str | None:
        """Why no more of ``c``'s calls may wait for a human now, or None."""
        if not self.max_pending:
            return None
        for key in _pending_keys(c):
            if self._pending.get(key, 0) >= self.max_pending:
                return f"{self.max_pending} calls of this {key[0]} already wait for a human (--max-pending-approvals)"
        return None

    async def _ask(self, ctx: Any, c: ToolCall, d: Decision, us: int, use_elicit: bool) -> Answered:
        # the ask-record comes before the wait (the operator's tail -f sees the pending call)
        if use_elicit:
            self.decisions.record(c, d, us, approval="elicitation")
            answer = await self._elicit_legacy(ctx, c, d)
            return self._after_answer(answer, c, d, "elicitation", None)
        answer, aid = await self._ask_queue(c, d, us)
        by = await self._decided_by(aid) if answer in ("granted", "denied") else None
        return self._after_answer(answer, c, d, "queue", aid, by)

    async def _decided_by(self, aid: str | None) -> str | None:
        """Who answered the queue's request ``aid`` (its ``decided_by``), for the outcome record:
        the log then names the approver on its own, whatever becomes of the queue. None when
        the queue cannot say (the call's decision does not depend on it)."""
        if aid is None or self._queue is None:
            return None
        q = self._queue
        try:
            req = await anyio.to_thread.run_sync(q.get, aid)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:  # noqa: BLE001 - only the record's detail is lost
            return None
        by = getattr(req, "decided_by", None)
        return by if isinstance(by, str) and by else None

    def _after_answer(
        self, answer: str, c: ToolCall, d: Decision, channel: str, aid: str | None, by: str | None = None
    ) -> Answered:
        if answer == "granted":
            nd, us2 = self.decisions.decide(c, True)
            if nd.effect == "approval_required":  # cannot happen with approved=True; fail closed anyway
                nd = Decision("deny", nd.code, nd.reason, nd.rule)
            return nd, us2, channel, aid, by
        why = {
            "denied": "a human declined this call",
            "expired": f"no approval within {secs(self.timeout)} s",
            "unavailable": "approval required, but the approval channel failed",
            "state_unavailable": "approval required, but the shared approval queue is unreachable",
        }.get(answer, "not approved")
        if answer == "expired" and channel == "queue" and self._queue is not None:
            # the agent's only view of the queue: say what a human runs, so the retry can be answered
            why += (
                f"; it waited in the approval queue, where a human answers with "
                f"`plr approvals{self._queue.cli_hint} grant ID` while a call waits: retry to ask again"
            )
        codes = {"denied": "approval_declined", "expired": "approval_timeout", "state_unavailable": "state_unavailable"}
        code = codes.get(answer, "approval_unavailable")
        return Decision("deny", code, f"{d.reason} ({why})", d.rule), 0, channel, aid, by  # type: ignore[arg-type]

    # -- handshake era: ask the client, and wait -----------------------------------------------

    async def _elicit_legacy(self, ctx: Any, c: ToolCall, d: Decision) -> str:
        msg = self._message(c, d)
        try:
            with anyio.fail_after(self.timeout):
                res = await ctx.session.elicit_form(msg, APPROVAL_SCHEMA, related_request_id=ctx.request_id)
        except TimeoutError:
            return "expired"
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as e:  # noqa: BLE001 - the client failed to answer: not approved
            self.report(f"plr proxy: elicitation failed for {c.tool}: {type(e).__name__}: {e}")
            return "unavailable"
        ok = res.action == "accept" and (res.content or {}).get("approve") is True
        return "granted" if ok else "denied"

    # -- the queue: `plr approvals grant ID` ------------------------------------------------------

    def _queue_obj(self) -> Any:
        if self._queue is None:
            from ..state import open_queue
            from ..state.sqlite import queue_db_path

            # the place the proxy named when it started (dsl.state.queue_location makes the same choice)
            self._queue = open_queue(self.state, queue_db_path(self.approvals_db, self.audit_path))
        return self._queue

    async def _ask_queue(self, c: ToolCall, d: Decision, us: int) -> tuple[str, str | None]:
        """File the request, write the ask-record (with the request's id, so the log joins the
        queue), say what a human runs, and wait. A record that cannot be written cancels the
        request (nobody may grant a call that will not run) and fails the call closed."""
        answer, aid, q = await self._file(c, d)
        try:
            self.decisions.record(c, d, us, approval="queue", approval_id=aid)
        except BaseException:
            if aid is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await anyio.to_thread.run_sync(q.cancel, aid)
                    except Exception:  # noqa: BLE001 - the call is refused either way
                        pass
            raise
        if aid is None:
            return answer or "unavailable", None
        db = q.cli_hint
        if self.notifier:
            self._notify(c, d, aid, db)
        self.report(
            f"plr proxy: approval needed for {c.tool} ({self._why(d)}); "
            f"run `plr approvals{db} grant {aid}` or `plr approvals{db} deny {aid}` "
            f"within {secs(self.timeout)} s"
        )
        try:
            return await q.wait(aid, args_sha256(c.args), self.timeout), aid
        except anyio.get_cancelled_exc_class():
            raise
        except StateUnavailable:
            return "state_unavailable", aid
        except Exception as e:  # noqa: BLE001
            self.report(f"plr proxy: approval queue failed: {type(e).__name__}: {e}")
            return "unavailable", aid

    def _notify(self, c: ToolCall, d: Decision, aid: str, cli_hint: str) -> None:
        """Hand the filed request to the notifier (it returns at once; failures are its own)."""
        request = {
            "id": aid,
            "tool": c.tool,
            "reason": self._why(d),
            "rule": d.rule,
            "identity": c.identity,
            "session": c.session,
            "server": self.decisions.server_name,
            "expires": time.time() + self.timeout,
            "args_sha256": args_sha256(c.args),
        }
        self.notifier.filed(request, audit=self.decisions.audit, cli_hint=cli_hint)

    async def _file(self, c: ToolCall, d: Decision) -> tuple[str | None, str | None, Any]:
        """(None, the request's id, the queue), or (why not, None, None) when it cannot be filed."""
        try:
            q = self._queue_obj()
            shown = args_for_display(c.args)
            h = args_sha256(c.args)
            aid = await anyio.to_thread.run_sync(
                lambda: q.file(
                    tool=c.tool,
                    args_text=shown,
                    args_hash=h,
                    timeout=self.timeout,
                    session=c.session,
                    identity=c.identity,
                    server=self.decisions.server_name,
                    rule=d.rule,
                    reason=self._why(d),  # what `plr approvals` and the console show the human
                )
            )
        except anyio.get_cancelled_exc_class():
            raise
        except StateUnavailable:  # a shared queue that cannot be reached (reported once, not per call)
            return "state_unavailable", None, None
        except Exception as e:  # noqa: BLE001
            self.report(f"plr proxy: cannot file an approval request: {type(e).__name__}: {e}")
            return "unavailable", None, None
        return None, aid, q

    # -- 2026-07-28: return InputRequiredResult; the retried call carries the answer --------------

    async def _approve_modern(self, params: types.CallToolRequestParams, c: ToolCall, d: Decision, us: int) -> Any:
        fp = self.seals.fingerprint(c)
        responses = params.input_responses or {}
        resp = responses.get(APPROVAL_KEY)
        st = self.seals.unseal(params.request_state) if resp is not None else None
        if st is None or st.get("fp") != fp or st.get("sess") != c.session:
            # no answer, or one whose seal does not verify: the limit look-ahead (``approve``) applies
            limited = self.decisions.limited_once_approved(c)
            if limited is not None:
                return limited, us, None, None, None
        if resp is None:
            # first round: ask, bound to this exact call, this session and a deadline
            nonce = uuid.uuid4().hex
            state = self.seals.seal({"fp": fp, "sess": c.session, "iat": time.monotonic(), "n": nonce, "call": c.id})
            self.decisions.record(c, d, us, approval="elicitation")
            req = types.ElicitRequest(
                params=types.ElicitRequestFormParams(message=self._message(c, d), requested_schema=APPROVAL_SCHEMA)
            )
            return types.InputRequiredResult(input_requests={APPROVAL_KEY: req}, request_state=state)
        # the retry: request_state is attacker-controlled until verified (above)
        if st is None or st.get("fp") != fp or st.get("sess") != c.session:
            why = f"{d.reason} (the approval does not match this call)"
            return Decision("deny", "approval_unavailable", why, d.rule), 0, "elicitation", None, None
        c.id = str(st.get("call") or c.id)  # the retry's records join the first round's
        issued = float(st.get("iat", 0))
        now = time.monotonic()
        if not 0 <= now - issued <= self.timeout:
            answer = "expired"
        elif not self.seals.spend_nonce(str(st.get("n")), issued + self.timeout, now):
            why = f"{d.reason} (this approval was already used)"
            return Decision("deny", "approval_unavailable", why, d.rule), 0, "elicitation", None, None
        else:
            ok = (
                isinstance(resp, types.ElicitResult)
                and resp.action == "accept"
                and (resp.content or {}).get("approve") is True
            )
            answer = "granted" if ok else "denied"
        nd, us2, channel, aid, by = self._after_answer(answer, c, d, "elicitation", None)
        if nd.effect != "allow":
            self.decisions.record(c, nd, us2, effect="deny", approval=channel)
            return denied(c.tool, nd)
        return nd, us2, channel, aid, by
