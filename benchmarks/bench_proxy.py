"""Proxy overhead: ``tools/call`` through ``plr proxy`` against a direct stdio connection.

The server is ``benchmarks/echo_server.py`` (the official SDK's ``MCPServer``, one ``echo``
tool). The client is a minimal newline-delimited JSON-RPC client on the process's pipes, so
the client adds as little as possible to both sides:

* latency: sequential ``tools/call`` round trips, p50/p99, direct vs through the proxy; the
  added latency is the difference of the medians (target ≤ 1 ms);
* throughput: 1,000 calls written at once; every response must arrive exactly once and carry
  the text of its own request (target: none lost or mismatched). Whether responses came back
  in request order is reported too (JSON-RPC allows any order).

The proxy always writes its audit log (one flushed JSON line per decision, before the call is
forwarded); the benchmark points it at a temporary file, and in the full run also at
``/dev/null`` to separate the cost of the disk from the cost of the proxy. Start-up (spawn to
the ``initialize`` answer) is reported too.

If ``plr proxy`` does not exist yet, the section is one TODO row.
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bench_cli import plr_command
from .harness import Config, Row, Section, fmt_ns, percentile, status_of

NAME = "proxy"
TITLE = "Proxy: tools/call through plr proxy vs direct stdio"
ROOT = Path(__file__).resolve().parent.parent
SERVER = Path(__file__).resolve().parent / "echo_server.py"
ADDED_P50_TARGET_NS = 1_000_000.0
POLICY = 'default deny\nallow tool "echo" if len(args.text) <= 10000\ndeny tool "echo" if args.text contains "DROP"\n'
READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class _Plan:
    calls: int
    concurrent: int
    devnull: bool  # also measure with the audit log going to /dev/null


def _plan(cfg: Config) -> _Plan:
    return _Plan(50, 100, False) if cfg.quick else _Plan(2_000, 1_000, True)


def _env() -> dict[str, str]:
    env = dict(os.environ, NO_COLOR="1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def proxy_available() -> tuple[bool, str]:
    """Is ``plr proxy`` there? (It is built by another issue; until then this is a TODO.)"""
    if not (ROOT / "dsl" / "proxy").is_dir():
        return False, "dsl/proxy does not exist"
    cmd = [*plr_command()[0], "proxy", "--help"]
    proc = subprocess.run(cmd, capture_output=True, env=_env(), cwd=ROOT, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        return False, f"`plr proxy --help` exits {proc.returncode}: {last[:200]}"
    return True, ""


class _Client:
    """Newline-delimited JSON-RPC over a child's stdin/stdout; a thread reads responses."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT
        )
        self._responses: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr: list[bytes] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self._id = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and "id" in msg and ("result" in msg or "error" in msg):
                self._responses.put(msg)
        self._responses.put(None)

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        msg = self._responses.get(timeout=READ_TIMEOUT_S)
        if msg is None:
            tail = b"".join(self._stderr[-20:]).decode("utf-8", "replace")
            raise RuntimeError(f"the server closed its output; stderr: {tail[-800:]}")
        return msg

    def next_id(self) -> int:
        self._id += 1
        return self._id

    def initialize(self) -> None:
        self.send({"jsonrpc": "2.0", "id": self.next_id(), "method": "initialize",
                   "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                              "clientInfo": {"name": "plr-bench", "version": "1"}}})  # fmt: skip
        reply = self.recv()
        if "error" in reply:
            raise RuntimeError(f"initialize failed: {reply['error']}")
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call(self, text: str) -> dict[str, Any]:
        i = self.next_id()
        self.send({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"text": text}}})  # fmt: skip
        return self.recv()

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _text_of(reply: dict[str, Any]) -> str | None:
    try:
        return str(reply["result"]["content"][0]["text"])
    except (KeyError, IndexError, TypeError):
        return None


def _latency(client: _Client, calls: int) -> tuple[float, float, list[int]]:
    for i in range(min(50, calls)):  # warm up
        client.call(f"warm-{i}")
    samples: list[int] = []
    pc = time.perf_counter_ns
    for i in range(calls):
        t0 = pc()
        reply = client.call(f"m-{i}")
        samples.append(pc() - t0)
        if _text_of(reply) != f"m-{i}":
            raise RuntimeError(f"unexpected reply to call {i}: {str(reply)[:300]}")
    s = sorted(samples)
    return percentile(s, 0.5), percentile(s, 0.99), samples


def _burst(client: _Client, n: int) -> dict[str, Any]:
    """``n`` calls written back to back, then every response read and checked."""
    expected: dict[int, str] = {}
    msgs: list[bytes] = []
    for k in range(n):
        i = client.next_id()
        expected[i] = f"burst-{k}-{i}"
        call = {"name": "echo", "arguments": {"text": expected[i]}}
        msgs.append(json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": call}).encode() + b"\n")

    def write_all() -> None:
        stdin = client.proc.stdin
        assert stdin is not None
        for m in msgs:
            stdin.write(m)
        stdin.flush()

    t0 = time.perf_counter()
    writer = threading.Thread(target=write_all)
    writer.start()
    order: list[int] = []
    mismatched = 0
    duplicates = 0
    lost = 0
    seen: set[int] = set()
    for _ in range(n):
        try:
            reply = client.recv()
        except queue.Empty:
            break
        rid = reply.get("id")
        if not isinstance(rid, int) or rid not in expected:
            mismatched += 1
            continue
        if rid in seen:
            duplicates += 1
        seen.add(rid)
        order.append(rid)
        if _text_of(reply) != expected[rid]:
            mismatched += 1
    elapsed = time.perf_counter() - t0
    writer.join()
    lost = len(set(expected) - seen)
    return {
        "calls": n,
        "seconds": elapsed,
        "calls_per_s": n / elapsed if elapsed > 0 else 0.0,
        "lost": lost,
        "mismatched": mismatched,
        "duplicates": duplicates,
        "in_order": order == sorted(order),
    }


def _measure(cmd: list[str], plan: _Plan) -> dict[str, Any]:
    t0 = time.perf_counter()
    client = _Client(cmd)
    try:
        client.initialize()
        start_s = time.perf_counter() - t0
        p50, p99, samples = _latency(client, plan.calls)
        burst = _burst(client, plan.concurrent)
    finally:
        client.close()
    return {"p50_ns": p50, "p99_ns": p99, "mean_ns": statistics.fmean(samples), "calls": plan.calls,
            "start_s": start_s, "burst": burst}  # fmt: skip


def run(cfg: Config) -> Section:
    section = Section(NAME, TITLE)
    ok, why = proxy_available()
    if not ok:
        section.rows.append(
            Row(NAME, "proxy: not built yet", "TODO", target="added p50 ≤ 1 ms; none lost", status="TODO", note=why)
        )
        return section
    plan = _plan(cfg)
    with tempfile.TemporaryDirectory(prefix="plr-bench-proxy-") as tmp:
        policy = Path(tmp) / "echo.plr"
        policy.write_text(POLICY, encoding="utf-8")
        server = [sys.executable, str(SERVER)]
        proxy = [*plr_command()[0], "proxy", "--policy", str(policy)]
        direct = _measure(server, plan)
        audit_file = str(Path(tmp) / "audit.jsonl")
        variants = {"plr proxy": _measure([*proxy, "--audit", audit_file, "--", *server], plan)}
        if plan.devnull:
            variants["plr proxy, audit /dev/null"] = _measure([*proxy, "--audit", os.devnull, "--", *server], plan)
    section.rows.append(
        Row(NAME, f"direct stdio, {plan.calls:,} sequential calls",
            f"p50 {fmt_ns(direct['p50_ns'])} · p99 {fmt_ns(direct['p99_ns'])}", values=direct)
    )  # fmt: skip
    for label, res in variants.items():
        added = res["p50_ns"] - direct["p50_ns"]
        section.rows.append(
            Row(
                section=NAME,
                case=f"{label}, {plan.calls:,} calls",
                result=f"p50 {fmt_ns(res['p50_ns'])} · p99 {fmt_ns(res['p99_ns'])}",
                values={**res, "added_p50_ns": added},
                baseline=f"direct p50 {fmt_ns(direct['p50_ns'])}",
                baseline_name="direct stdio to the same server",
                baseline_values={"p50_ns": direct["p50_ns"], "p99_ns": direct["p99_ns"]},
                ratio=added,
                ratio_text=f"+{fmt_ns(added)} added",
                target="added p50 ≤ 1 ms",
                status=status_of(added <= ADDED_P50_TARGET_NS),
            )
        )
    for label, res in {"direct": direct, **variants}.items():
        b = res["burst"]
        bad = b["lost"] + b["mismatched"] + b["duplicates"]
        section.rows.append(
            Row(
                section=NAME,
                case=f"{b['calls']:,} concurrent calls, {label}",
                result=f"{b['calls_per_s']:,.0f} calls/s, {b['lost']} lost, {b['mismatched']} mismatched",
                values=b,
                target="none lost or mismatched",
                status=status_of(bad == 0),
                note="" if b["in_order"] else "responses came back out of request order (allowed by JSON-RPC)",
            )
        )
    starts = {"direct": direct, **variants}
    section.rows.append(
        Row(
            section=NAME,
            case="start-up: spawn to the initialize answer",
            result=", ".join(f"{k} {fmt_ns(v['start_s'] * 1e9)}" for k, v in list(starts.items())[:2]),
            values={k: v["start_s"] for k, v in starts.items()},
            note="the proxy imports the MCP SDK, compiles the policy and starts the server before it answers",
        )
    )
    return section
