"""Proxy overhead: ``tools/call`` through ``plr proxy`` against a direct stdio connection.

The server is ``benchmarks/raw_echo_server.py``: one ``echo`` tool in the standard library only,
answering each line at once, so the proxy's own cost is not hidden in the server's (the SDK's
``MCPServer`` takes longer per call than the proxy should add). The client is a minimal
newline-delimited JSON-RPC client on the process's pipes, so it adds as little as possible to
both sides. Issue #20's targets:

* latency: sequential ``tools/call`` round trips, p50/p99, direct vs through the proxy. The
  connections are open side by side and measured in alternating rounds (direct, proxy, ...,
  then the reverse order), so a machine that gets busier or quieter during the run moves both
  alike; the added latency is the median over rounds of (proxy round p50 − direct round p50)
  (target ≤ 300 µs);
* throughput with 50 calls in flight, as the issue measured it: the official ``mcp`` client
  (``ClientSession``, 50 ``call_tool`` in flight) direct and through the proxy, interleaved
  rounds (``sdk_throughput.py``); calls/s through the proxy over calls/s direct (target ≥ 0.7×),
  every answer checked against its own call. The same window driven by the minimal client is
  reported beside it (INFO): with a client that costs almost nothing per call, the ratio is the
  proxy's own CPU per call against the echo server's, the ceiling a Python relay is measured by;
* a burst: 1,000 calls written at once; every response must arrive exactly once and carry the
  text of its own request (target: none lost or mismatched);
* memory: the proxy's resident set (``/proc/PID/status``) after a warm-up and after 10,000 more
  calls (target: flat, i.e. growth ≤ 10% + 2 MiB);
* start-up: spawn to the ``initialize`` answer, reported;
* over HTTP: the same server over streamable HTTP (``raw_echo_server.py --http``), called
  directly and through ``plr proxy --listen`` with ``--upstream`` (both on keep-alive
  connections, interleaved rounds): the added p50, against the same 300 µs. A bare relay
  (``http_relay.py``: httptools both ways, nothing checked or recorded) joins the same rounds,
  reported: the floor of a Python process between the two sockets on this machine.

The proxy always writes its audit log (one flushed JSON line per decision, before the call is
forwarded); the benchmark points it at a temporary file, and in the full run also at
``/dev/null`` to separate the cost of the disk from the cost of the proxy, and runs the proxy
once more with its fast path off (``PLR_PROXY_FAST=0``: every call through the MCP SDK's
server and client sessions) to show what the fast path saves.

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

from . import sdk_throughput
from .bench_cli import plr_command
from .harness import Config, Row, Section, fmt_ns, percentile, status_of

NAME = "proxy"
TITLE = "Proxy: tools/call through plr proxy vs direct stdio"
ROOT = Path(__file__).resolve().parent.parent
SERVER = Path(__file__).resolve().parent / "raw_echo_server.py"
RELAY = Path(__file__).resolve().parent / "http_relay.py"
ADDED_P50_TARGET_NS = 300_000.0
WINDOW = 50  # calls in flight for the throughput target
THROUGHPUT_TARGET = 0.7  # proxy calls/s over direct calls/s
RSS_SLACK = (1.10, 2 * 1024 * 1024)  # "flat": at most 10% + 2 MiB of growth
POLICY = 'default deny\nallow tool "echo" if len(args.text) <= 10000\ndeny tool "echo" if args.text contains "DROP"\n'
READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class _Plan:
    calls: int
    rounds: int  # the calls are split into this many alternating rounds
    concurrent: int
    windowed: int  # calls of the throughput run (WINDOW in flight)
    rss_calls: int  # calls between the two resident-set readings
    variants: bool  # also measure the audit log on /dev/null and the fast path off


def _plan(cfg: Config) -> _Plan:
    if cfg.quick:
        return _Plan(50, 5, 100, 200, 500, False)
    return _Plan(2_000, 20, 1_000, 5_000, 10_000, True)


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

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**_env(), **(env or {})}, cwd=ROOT
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


class _HttpClient:
    """Streamable HTTP on one keep-alive connection: ``POST`` a message, read its one answer
    (JSON, or the ``data:`` lines of an event stream), keeping the session id and version."""

    def __init__(self, url: str) -> None:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.path = parts.path or "/"
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=READ_TIMEOUT_S)
        self.session: str | None = None
        self.version: str | None = None
        self._id = 0

    def _post(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if self.session:
            headers["mcp-session-id"] = self.session
        if self.version:
            headers["mcp-protocol-version"] = self.version
        self.conn.request("POST", self.path, body=json.dumps(msg).encode(), headers=headers)
        resp = self.conn.getresponse()
        body = resp.read()
        self.session = resp.getheader("mcp-session-id") or self.session
        if resp.status == 202 or not body:
            return None
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {body[:300]!r}")
        if (resp.getheader("content-type") or "").startswith("text/event-stream"):
            for line in body.decode("utf-8", "replace").splitlines():
                if line.startswith("data:"):
                    data = json.loads(line[5:])
                    if isinstance(data, dict) and "id" in data and ("result" in data or "error" in data):
                        return data
            raise RuntimeError(f"no answer in the event stream: {body[:300]!r}")
        answer: dict[str, Any] = json.loads(body)
        return answer

    def initialize(self) -> None:
        self._id += 1
        reply = self._post({"jsonrpc": "2.0", "id": self._id, "method": "initialize",
                            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                       "clientInfo": {"name": "plr-bench", "version": "1"}}})  # fmt: skip
        if reply is None or "error" in reply:
            raise RuntimeError(f"initialize failed: {reply}")
        self.version = reply["result"]["protocolVersion"]
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call(self, text: str) -> dict[str, Any]:
        self._id += 1
        reply = self._post({"jsonrpc": "2.0", "id": self._id, "method": "tools/call",
                            "params": {"name": "echo", "arguments": {"text": text}}})  # fmt: skip
        if reply is None:
            raise RuntimeError("no answer to a tools/call")
        return reply

    def close(self) -> None:
        self.conn.close()


def _wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    import socket

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {seconds:g} s")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _measure_http(policy: Path, audit: str, plan: _Plan) -> dict[str, dict[str, Any]]:
    """The stdlib echo server over HTTP, called directly and through ``plr proxy --listen``."""
    procs: list[subprocess.Popen[bytes]] = []
    clients: dict[str, _HttpClient] = {}
    try:
        up, front = _free_port(), _free_port()
        server = subprocess.Popen([sys.executable, str(SERVER), "--http", str(up)], env=_env(), cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append(server)
        _wait_port(up, server)
        cmd = [*plr_command()[0], "proxy", "--policy", str(policy), "--audit", audit, "--listen", f"127.0.0.1:{front}",
               "--upstream", f"http://127.0.0.1:{up}/mcp"]  # fmt: skip
        proxy = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proxy)
        _wait_port(front, proxy)
        floor = _free_port()
        relay = subprocess.Popen([sys.executable, str(RELAY), str(floor), str(up)], env=_env(), cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append(relay)
        _wait_port(floor, relay)
        clients = {
            "direct": _HttpClient(f"http://127.0.0.1:{up}/mcp"),
            "plr proxy": _HttpClient(f"http://127.0.0.1:{front}/mcp"),
            "bare relay": _HttpClient(f"http://127.0.0.1:{floor}/mcp"),
        }
        for c in clients.values():
            c.initialize()
        pids = {"plr proxy": proxy.pid, "bare relay": relay.pid}
        before = {k: _cpu_seconds(pid) for k, pid in pids.items()}
        out = _interleaved(clients, plan.calls, plan.rounds)  # type: ignore[arg-type]
        for k, pid in pids.items():  # (idle but for its own calls while the other connections run)
            used, start = _cpu_seconds(pid), before[k]
            calls = min(50, plan.calls) + max(1, plan.calls // plan.rounds) * plan.rounds
            out[k]["cpu_per_call_s"] = None if used is None or start is None else (used - start) / calls
        return out
    finally:
        for c in clients.values():
            c.close()
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _text_of(reply: dict[str, Any]) -> str | None:
    try:
        return str(reply["result"]["content"][0]["text"])
    except (KeyError, IndexError, TypeError):
        return None


def _timed_calls(client: _Client, n: int, tag: str) -> list[int]:
    samples: list[int] = []
    pc = time.perf_counter_ns
    for i in range(n):
        t0 = pc()
        reply = client.call(f"{tag}-{i}")
        samples.append(pc() - t0)
        if _text_of(reply) != f"{tag}-{i}":
            raise RuntimeError(f"unexpected reply to call {tag}-{i}: {str(reply)[:300]}")
    return samples


def _interleaved(clients: dict[str, _Client], calls: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Sequential calls on every connection in alternating rounds; per connection: all samples and
    each round's p50 (the rounds line up across connections, so they can be paired)."""
    for name, c in clients.items():
        _timed_calls(c, min(50, calls), f"warm-{name}")
    per = max(1, calls // rounds)
    out: dict[str, dict[str, Any]] = {k: {"samples": [], "round_p50_ns": []} for k in clients}
    names = list(clients)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            s = _timed_calls(clients[name], per, f"r{r}")
            out[name]["samples"].extend(s)
            out[name]["round_p50_ns"].append(percentile(sorted(s), 0.5))
    for res in out.values():
        s = sorted(res["samples"])
        res.update(p50_ns=percentile(s, 0.5), p99_ns=percentile(s, 0.99), mean_ns=statistics.fmean(s), calls=len(s))
        del res["samples"]
    return out


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


def _windowed(client: _Client, n: int, window: int) -> dict[str, Any]:
    """``n`` calls with ``window`` of them in flight: a new one is written as each answer arrives."""
    expected: dict[int, str] = {}

    def write(k: int) -> None:
        i = client.next_id()
        expected[i] = f"win-{k}-{i}"
        client.send({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                     "params": {"name": "echo", "arguments": {"text": expected[i]}}})  # fmt: skip

    t0 = time.perf_counter()
    written = 0
    for _ in range(min(window, n)):
        write(written)
        written += 1
    bad = 0
    for _ in range(n):
        reply = client.recv()
        rid = reply.get("id")
        if not isinstance(rid, int) or _text_of(reply) != expected.pop(rid, None):
            bad += 1
        if written < n:
            write(written)
            written += 1
    elapsed = time.perf_counter() - t0
    return {"calls": n, "window": window, "seconds": elapsed, "calls_per_s": n / elapsed if elapsed > 0 else 0.0,
            "bad": bad + len(expected)}  # fmt: skip


def _cpu_seconds(pid: int) -> float | None:
    """The CPU time ``pid`` has used, user and system (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _rss_bytes(pid: int) -> int | None:
    """The resident set of ``pid`` (Linux ``/proc``; None elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rss_growth(client: _Client, n: int) -> dict[str, Any]:
    """The proxy's resident set after a warm-up, then after ``n`` more calls (WINDOW in flight)."""
    _windowed(client, min(1_000, n), WINDOW)
    before = _rss_bytes(client.proc.pid)
    _windowed(client, n, WINDOW)
    after = _rss_bytes(client.proc.pid)
    return {"calls": n, "before": before, "after": after}


def _measure(cmds: dict[str, tuple[list[str], dict[str, str]]], plan: _Plan) -> dict[str, dict[str, Any]]:
    """Start every connection, measure latency interleaved, then each one's throughput, burst and
    (for the proxy) memory."""
    clients: dict[str, _Client] = {}
    starts: dict[str, float] = {}
    try:
        for name, (cmd, env) in cmds.items():
            t0 = time.perf_counter()
            clients[name] = _Client(cmd, env)
            clients[name].initialize()
            starts[name] = time.perf_counter() - t0
        results = _interleaved(clients, plan.calls, plan.rounds)
        for name, c in clients.items():
            results[name]["start_s"] = starts[name]
            results[name]["windowed"] = _windowed(c, plan.windowed, WINDOW)
            results[name]["burst"] = _burst(c, plan.concurrent)
        results["plr proxy"]["rss"] = _rss_growth(clients["plr proxy"], plan.rss_calls)
    finally:
        for c in clients.values():
            c.close()
    return results


def _added_row(
    case: str, res: dict[str, Any], direct: dict[str, Any], shown: str, baseline_name: str, plan: _Plan, *, judged: bool
) -> Row:
    """A proxied connection's latency against the direct one measured in the same rounds: the
    added p50 is the median over paired rounds (held to the target when ``judged``)."""
    added = statistics.median(p - d for p, d in zip(res["round_p50_ns"], direct["round_p50_ns"]))
    return Row(
        section=NAME,
        case=case,
        result=f"p50 {fmt_ns(res['p50_ns'])} · p99 {fmt_ns(res['p99_ns'])}",
        values={**res, "added_p50_ns": added},
        baseline=f"{shown} p50 {fmt_ns(direct['p50_ns'])}",
        baseline_name=baseline_name,
        baseline_values={"p50_ns": direct["p50_ns"], "p99_ns": direct["p99_ns"]},
        ratio=added,
        ratio_text=f"+{fmt_ns(added)} added (median of {plan.rounds} paired rounds)",
        target="added p50 ≤ 300 µs",
        status=status_of(added <= ADDED_P50_TARGET_NS) if judged else "INFO",
    )


def run(cfg: Config) -> Section:
    section = Section(NAME, TITLE)
    ok, why = proxy_available()
    if not ok:
        section.rows.append(
            Row(NAME, "proxy: not built yet", "TODO", target="added p50 ≤ 300 µs; none lost", status="TODO", note=why)
        )
        return section
    plan = _plan(cfg)
    with tempfile.TemporaryDirectory(prefix="plr-bench-proxy-") as tmp:
        policy = Path(tmp) / "echo.plr"
        policy.write_text(POLICY, encoding="utf-8")
        server = [sys.executable, str(SERVER)]
        proxy = [*plr_command()[0], "proxy", "--policy", str(policy)]
        audit_file = str(Path(tmp) / "audit.jsonl")
        cmds: dict[str, tuple[list[str], dict[str, str]]] = {
            "direct": (server, {}),
            "plr proxy": ([*proxy, "--audit", audit_file, "--", *server], {}),
        }
        if plan.variants:
            cmds["plr proxy, audit /dev/null"] = ([*proxy, "--audit", os.devnull, "--", *server], {})
            slow_audit = str(Path(tmp) / "audit-sdk.jsonl")
            cmds["plr proxy, fast path off"] = ([*proxy, "--audit", slow_audit, "--", *server], {"PLR_PROXY_FAST": "0"})
        results = _measure(cmds, plan)
        sdk = sdk_throughput.measure({k: (cmd, {**_env(), **env}) for k, (cmd, env) in list(cmds.items())[:2]},
                                     plan.windowed, plan.rounds // 2 or 1, WINDOW)  # fmt: skip
        over_http = _measure_http(policy, str(Path(tmp) / "audit-http.jsonl"), plan)
    direct = results.pop("direct")
    variants = results
    section.rows.append(
        Row(NAME, f"direct stdio, {plan.calls:,} sequential calls",
            f"p50 {fmt_ns(direct['p50_ns'])} · p99 {fmt_ns(direct['p99_ns'])}", values=direct)
    )  # fmt: skip
    for label, res in variants.items():
        section.rows.append(
            _added_row(f"{label}, {plan.calls:,} calls", res, direct, "direct", "direct stdio to the same server", plan,
                       judged=label == "plr proxy")
        )  # fmt: skip
    sdk_ratio = sdk_throughput.paired_ratio(sdk["plr proxy"], sdk["direct"])
    section.rows.append(
        Row(
            section=NAME,
            case=f"{sdk['plr proxy']['calls']:,} calls, {WINDOW} in flight, official mcp client, plr proxy",
            result=f"{sdk['plr proxy']['calls_per_s']:,.0f} calls/s, {sdk['plr proxy']['bad']} wrong",
            values=sdk["plr proxy"],
            baseline=f"direct {sdk['direct']['calls_per_s']:,.0f} calls/s",
            baseline_name="the mcp ClientSession on the same server directly, interleaved rounds",
            baseline_values=sdk["direct"],
            ratio=sdk_ratio,
            ratio_text=f"{sdk_ratio:.2f}× direct",
            target=f"≥ {THROUGHPUT_TARGET}× direct, none wrong",
            status=status_of(sdk_ratio >= THROUGHPUT_TARGET and sdk["plr proxy"]["bad"] == 0 and sdk["direct"]["bad"] == 0),
            note="the median of paired round ratios; the client an agent runs is the slower side",
        )
    )
    for label, res in variants.items():
        w, dw = res["windowed"], direct["windowed"]
        ratio = w["calls_per_s"] / dw["calls_per_s"] if dw["calls_per_s"] else 0.0
        section.rows.append(
            Row(
                section=NAME,
                case=f"{w['calls']:,} calls, {WINDOW} in flight, minimal client, {label}",
                result=f"{w['calls_per_s']:,.0f} calls/s, {w['bad']} wrong or lost",
                values=w,
                baseline=f"direct {dw['calls_per_s']:,.0f} calls/s",
                baseline_name="direct stdio to the same server, same window",
                baseline_values=dw,
                ratio=ratio,
                ratio_text=f"{ratio:.2f}× direct",
                target="none wrong (ratio reported)",
                status="FAIL" if w["bad"] or dw["bad"] else "INFO",
                note="the proxy's own CPU per call against a client and server that cost almost nothing"
                if label == "plr proxy" else "",
            )
        )
    rss = variants["plr proxy"]["rss"]
    if rss["before"] is not None and rss["after"] is not None:
        growth = rss["after"] - rss["before"]
        flat = rss["after"] <= rss["before"] * RSS_SLACK[0] + RSS_SLACK[1]
        section.rows.append(
            Row(
                section=NAME,
                case=f"proxy memory over {rss['calls']:,} calls",
                result=f"RSS {rss['before'] / 2**20:.1f} → {rss['after'] / 2**20:.1f} MiB ({growth / 2**20:+.1f} MiB)",
                values=rss,
                target="flat (≤ +10% + 2 MiB)",
                status=status_of(flat),
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
    section.rows.append(
        _added_row(f"over HTTP: plr proxy --listen, {plan.calls:,} calls", over_http["plr proxy"], over_http["direct"],
                   "direct HTTP", "the same server over HTTP, directly (keep-alive)", plan, judged=True)
    )  # fmt: skip
    floor = _added_row(f"over HTTP: a bare relay (nothing checked), {plan.calls:,} calls", over_http["bare relay"],
                       over_http["direct"], "direct HTTP", "the same server over HTTP, directly (keep-alive)", plan,
                       judged=False)  # fmt: skip
    floor.target = "reported: the floor of a relay in Python"
    floor.note = "benchmarks/http_relay.py: asyncio + httptools both ways, no check, decision or audit record"
    section.rows.append(floor)
    cpu = {k: over_http[k].get("cpu_per_call_s") for k in ("plr proxy", "bare relay")}
    if None not in cpu.values():
        section.rows.append(
            Row(
                section=NAME,
                case="over HTTP: CPU per call, plr proxy and the bare relay",
                result=f"plr proxy {fmt_ns(cpu['plr proxy'] * 1e9)}, bare relay {fmt_ns(cpu['bare relay'] * 1e9)}",
                values={k.replace(" ", "_") + "_cpu_per_call_s": v for k, v in cpu.items()},
                note="each process's own CPU time (user and system, from /proc) over the interleaved rounds, per call: "
                "steadier than the latency on a busy machine",
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
