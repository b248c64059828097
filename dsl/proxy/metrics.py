"""Prometheus metrics of one proxy: `plr proxy --metrics HOST:PORT` (and `/metrics` on the HTTP
front when --metrics is given with --listen).

The decisions are counted from the proxy's own audit log, read incrementally when Prometheus
scrapes (every decision is a record there, written before the call goes on): nothing is added
to the path of a call, and what the metrics say is what the audit log says. A rotation is
followed without losing the records written just before it (the old file is read to its end
through the descriptor still open on it).

Exported (all prefixed ``plr_``):

- ``decisions_total{effect,code,tool}``: decision records;
- ``decision_latency_seconds``: a histogram of the records' ``latency_us`` (the policy's time);
- ``limit_rejections_total{tool}``: calls refused by a rate limit (code ``rate_limited``);
- ``approvals_pending``: requests waiting for a human in the proxy's queue, read at scrape time;
- ``approval_notifications_failed_total``: notifications given up on (their audit events);
- ``upstream_latency_seconds``, ``policy_reloads_total{result}``: fed by ``observe_upstream``
  and ``policy_reloaded`` (hooks the proxy core calls);
- ``policy_info{sha256}``: the policy in force (from the newest record, or the one started with).

prometheus-client is an optional dependency (``pip install 'plr[metrics]'``) imported only here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ProxyMetrics", "MetricsMissing", "need_prometheus"]

LATENCY_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1, 1.0)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MetricsMissing(RuntimeError):
    """prometheus-client is not installed."""


def need_prometheus() -> None:
    """Raise ``MetricsMissing`` with the install line when prometheus-client is absent."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        from ..extras import install_hint

        raise MetricsMissing(f"--metrics needs prometheus-client; install it with: {install_hint('metrics')}") from None


class _AuditReader:
    """The records appended to one audit log since the last look, across rotations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: Any = None
        self._buf = b""

    def _open(self, start_at_end: bool) -> None:
        try:
            self._f = open(self.path, "rb")  # noqa: SIM115 - kept open to read a rotated file to its end
        except OSError:
            self._f = None
            return
        if start_at_end:
            self._f.seek(0, os.SEEK_END)

    def start(self) -> None:
        """Count from now on: what the log held before this proxy started is not its traffic."""
        self._open(start_at_end=True)

    def read(self) -> list[dict[str, Any]]:
        import json

        out: list[dict[str, Any]] = []
        if self._f is None:
            self._open(start_at_end=False)
            if self._f is None:
                return out
        while True:
            self._buf += self._f.read()
            *lines, self._buf = self._buf.split(b"\n")  # a torn last line waits for its end
            for raw in lines:
                if raw.strip():
                    try:
                        rec = json.loads(raw.decode("utf-8", "replace"))
                    except (ValueError, RecursionError):
                        continue
                    if isinstance(rec, dict):
                        out.append(rec)
            try:
                moved = os.stat(self.path).st_ino != os.fstat(self._f.fileno()).st_ino
            except OSError:
                moved = True
            if not moved:
                return out
            self._f.close()  # the old file is read to its end: go on with the new one from its start
            self._buf = b""
            self._open(start_at_end=False)
            if self._f is None:
                return out


class ProxyMetrics:
    """The proxy's Prometheus registry and what feeds it."""

    def __init__(
        self,
        audit_path: Path | None,
        *,
        policy_sha256: str = "",
        pending: Callable[[], int] | None = None,
    ) -> None:
        need_prometheus()
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter("plr_decisions", "Decisions of the proxy, by effect, code and tool.", ["effect", "code", "tool"], registry=r)
        self.latency = Histogram("plr_decision_latency_seconds", "Time the policy took to decide a call.", buckets=LATENCY_BUCKETS, registry=r)
        self.limited = Counter("plr_limit_rejections", "Calls refused by a rate limit.", ["tool"], registry=r)
        self.upstream = Histogram("plr_upstream_latency_seconds", "Time the upstream server took to answer a forwarded call.", buckets=UPSTREAM_BUCKETS, registry=r)
        self.reloads = Counter("plr_policy_reloads", "Policy reloads by result (ok or failed).", ["result"], registry=r)
        self.notify_failed = Counter("plr_approval_notifications_failed", "Approval notifications given up on.", registry=r)
        self.pending_gauge = Gauge("plr_approvals_pending", "Approval requests waiting for a human in the proxy's queue.", registry=r)
        self.info = Info("plr_policy", "The policy in force.", registry=r)
        for result in ("ok", "failed"):
            self.reloads.labels(result)
        self._sha = policy_sha256
        self.info.info({"sha256": policy_sha256})
        self._pending = pending
        self._lock = threading.Lock()
        self._reader = _AuditReader(audit_path) if audit_path is not None else None
        if self._reader is not None:
            self._reader.start()
        if pending is not None:
            self.pending_gauge.set_function(self._count_pending)

    # -- fed from the audit log -------------------------------------------------------------

    def refresh(self) -> None:
        """Count the records written since the last scrape."""
        if self._reader is None:
            return
        with self._lock:
            for rec in self._reader.read():
                self.record(rec)

    def record(self, rec: dict[str, Any]) -> None:
        """One audit record (a decision; events such as tools_compared are not counted)."""
        if rec.get("event") == "approval_notify_failed":
            self.notify_failed.inc()
            return
        effect = rec.get("effect")
        if not isinstance(effect, str):
            return
        tool = str(rec.get("tool"))
        code = str(rec.get("code"))
        self.decisions.labels(effect, code, tool).inc()
        us = rec.get("latency_us")
        if isinstance(us, (int, float)) and not isinstance(us, bool) and us >= 0 and effect != "approval_required":
            self.latency.observe(us / 1e6)
        if code == "rate_limited":
            self.limited.labels(tool).inc()
        sha = rec.get("policy_sha256")
        if isinstance(sha, str) and sha != self._sha:
            self._sha = sha
            self.info.info({"sha256": sha})

    def _count_pending(self) -> float:
        try:
            return float(self._pending()) if self._pending is not None else 0.0
        except Exception:  # noqa: BLE001 - an unreachable queue: NaN, never a made-up zero
            return float("nan")

    # -- hooks the proxy core calls (one line each where the event happens) ----------------

    def observe_upstream(self, seconds: float) -> None:
        """A forwarded tools/call was answered after ``seconds``."""
        self.upstream.observe(seconds)

    def policy_reloaded(self, ok: bool, sha256: str | None = None) -> None:
        """A reload was applied (``ok``, with the new policy's sha256) or refused."""
        self.reloads.labels("ok" if ok else "failed").inc()
        if ok and sha256:
            self._sha = sha256
            self.info.info({"sha256": sha256})

    # -- exposition ---------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """(the text format, its content type), the audit log read first."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def asgi_app(self) -> Callable[..., Any]:
        """``GET /metrics`` as a bare ASGI app (the HTTP front mounts it)."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            import anyio.to_thread

            body, ctype = await anyio.to_thread.run_sync(self.exposition)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype.encode())]})
            await send({"type": "http.response.body", "body": body})

        return app

    def serve(self, host: str, port: int) -> Any:
        """Serve ``/metrics`` on HOST:PORT from a daemon thread (the proxy's loop is not involved)."""
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body, ctype = metrics.exposition()
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: stderr is the client's
                pass

        family_server = ThreadingHTTPServer
        if ":" in host:
            import socket

            class V6(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            family_server = V6
        server = family_server((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="plr-metrics", daemon=True).start()
        return server
