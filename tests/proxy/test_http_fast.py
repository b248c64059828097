"""The HTTP fast path for ``tools/call`` (dsl/proxy/http_fast.py) against the SDK path it stands in for.

Two real proxies (``plr proxy --listen ... --upstream URL``), one with the fast path and one
without (``PLR_PROXY_FAST=0``), each in front of its own recording streamable-HTTP server, are
sent the same requests one after another: generated calls (valid, denied, hostile, oversized, odd
ids and parameters, unknown and hidden tools, a rate limit running out) and answers of every kind
from the server (JSON, an event stream with a log message or a ping of its own before the answer,
an error, an invalid result, a forgotten session). The client must get the same bytes (status,
headers and body, the session id aside), the audit log the same records, and the server the same
requests (headers and bodies, byte for byte). Deadlines, a client's cancellation and the session
ownership checks are compared the same way. Each run also checks that the fast path really served
calls, or the comparison would prove nothing.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .conftest import ROOT, base_env

pytestmark = pytest.mark.slow

POLICY = """default deny
hide tool "secret"
allow tool "echo" if len(args.text) <= 2000
deny tool "echo" if args.text contains "DROP"
limit tool "echo" to 25 per hour
allow tool "fail"
allow tool "bad"
allow tool "oops"
allow tool "ask"
allow tool "sse"
allow tool "ping"
allow tool "slow"
allow tool "gone"
allow tool "chunked"
allow tool "gzip"
allow tool "close"
allow tool "moved"
allow tool "many"
allow tool "stall"
allow tool "rich"
allow tool "large"
allow tool "drip"
allow tool "wait" if approved
"""
# what differs between two runs of the same calls: when, how long, and random ids
VOLATILE = ("ts", "latency_us", "call", "session")
TOOLS = [{"name": n, "inputSchema": {"type": "object"}} for n in
         ("echo", "fail", "bad", "oops", "ask", "sse", "ping", "slow", "gone", "secret", "wait", "chunked", "gzip", "close", "moved", "many", "stall", "rich")]  # fmt: skip


class _Upstream:
    """A stdlib streamable-HTTP MCP server in a thread that writes down every request it gets."""

    def __init__(self) -> None:
        self.log: list[tuple[str, list[tuple[str, str]], bytes]] = []
        self.sessions = 0
        self.forgotten: set[str] = set()
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _record(self, body: bytes) -> None:
                headers = [(k.lower(), v) for k, v in self.headers.items() if k.lower() != "host"]
                with owner.lock:
                    owner.log.append((self.command, headers, body))

            def _send(self, status: int, body: bytes = b"", ctype: str | None = None, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                if ctype:
                    self.send_header("content-type", ctype)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - no standalone stream
                self._record(b"")
                self._send(405)

            def do_DELETE(self) -> None:  # noqa: N802
                self._record(b"")
                self._send(200)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                self._record(body)
                msg = json.loads(body)
                sid = self.headers.get("mcp-session-id")
                if sid in owner.forgotten:
                    self._send(404)
                    return
                if "method" not in msg or "id" not in msg:
                    self._send(202)  # a notification, or the client's answer to our request
                    return
                method, rid, params = msg["method"], msg["id"], msg.get("params") or {}
                if method == "initialize":
                    with owner.lock:
                        owner.sessions += 1
                        new = f"up-session-{owner.sessions}"
                    result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                              "capabilities": {"tools": {}, "logging": {}}, "serverInfo": {"name": "rec", "version": "1"}}  # fmt: skip
                    self._json({"jsonrpc": "2.0", "id": rid, "result": result}, {"mcp-session-id": new})
                    return
                if method == "tools/list":
                    self._json({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
                    return
                if method != "tools/call":
                    self._json({"jsonrpc": "2.0", "id": rid, "result": {}} if method == "ping"
                               else {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}})  # fmt: skip
                    return
                name, args = params.get("name"), params.get("arguments")
                args = args if isinstance(args, dict) else {}
                echo = {"content": [{"type": "text", "text": json.dumps(args, sort_keys=True)}], "isError": False}
                if name == "fail":
                    self._json({"jsonrpc": "2.0", "id": rid, "error": {"code": -32000, "message": "boom", "data": {"why": 1}}})
                elif name == "bad":
                    self._json({"jsonrpc": "2.0", "id": rid, "result": {"content": "not a list"}})
                elif name == "oops":
                    self._json({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "no"}], "isError": True}})
                elif name == "ask":
                    self._json({"jsonrpc": "2.0", "id": rid, "result": {"resultType": "input_required", "inputRequests": {}}})
                elif name == "sse":  # a log message on the call's own stream, then the answer
                    note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": f"about {rid}"}}
                    self._events([note, {"jsonrpc": "2.0", "id": rid, "result": echo}])
                elif name == "ping":  # a request of the server's on the call's stream (the client answers it)
                    self._events([{"jsonrpc": "2.0", "id": f"srv-{rid}", "method": "ping"}, {"jsonrpc": "2.0", "id": rid, "result": echo}])
                elif name == "slow":
                    time.sleep(float(args.get("seconds", 1)))
                    self._json({"jsonrpc": "2.0", "id": rid, "result": echo})
                elif name == "chunked":  # the answer in chunks
                    data = json.dumps({"jsonrpc": "2.0", "id": rid, "result": echo}).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for part in (data[:7], data[7:]):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        time.sleep(0.05)  # (the proxy reads the answer in pieces)
                    self.wfile.write(b"0\r\n\r\n")
                elif name == "gzip":  # a compressed answer
                    import gzip

                    data = gzip.compress(json.dumps({"jsonrpc": "2.0", "id": rid, "result": echo}).encode())
                    self._send(200, data, "application/json", {"content-encoding": "gzip"})
                elif name == "close":  # the server closes the connection after answering
                    self.close_connection = True
                    self._json({"jsonrpc": "2.0", "id": rid, "result": echo}, {"connection": "close"})
                elif name == "moved" and self.path == "/mcp":  # a redirect within the origin (followed)
                    self._send(307, b"", None, {"location": "/mcp/moved"})
                elif name == "many":  # many log messages on the call's stream, then the answer
                    notes = [{"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": f"note {i}"}}
                             for i in range(int(args.get("n", 40)))]  # fmt: skip
                    self._events([*notes, {"jsonrpc": "2.0", "id": rid, "result": echo}])
                elif name == "stall":  # log messages at once, the answer only after a while
                    self.close_connection = True
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    self.end_headers()
                    for i in range(int(args.get("n", 20))):
                        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": f"n{i}"}}
                        self.wfile.write(b"event: message\ndata: " + json.dumps(note).encode() + b"\n\n")
                    self.wfile.flush()
                    time.sleep(float(args.get("seconds", 3)))
                    self.wfile.write(b"event: message\ndata: " + json.dumps({"jsonrpc": "2.0", "id": rid, "result": echo}).encode() + b"\n\n")
                    self.wfile.flush()
                elif name == "rich":  # a result of every kind of field, and some no 2025-era client knows
                    rich = {"content": [{"type": "text", "text": "t", "annotations": {"priority": 0.5}},
                                        {"type": "image", "data": "aGk=", "mimeType": "image/png"}],
                            "structuredContent": {"a": [1, 2.5, None], "args": args}, "isError": False,
                            "_meta": {"k": "v"}, "unknownKey": 1, "ttlMs": -5, "cacheScope": "private"}  # fmt: skip
                    self._json({"jsonrpc": "2.0", "id": rid, "result": rich})
                elif name == "drip":  # a JSON answer in parts, a while apart
                    data = json.dumps({"jsonrpc": "2.0", "id": rid, "result": echo}).encode()
                    n = int(args.get("parts", 4))
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    step = -(-len(data) // n)
                    for i in range(0, len(data), step):
                        time.sleep(float(args.get("gap", 0.5)))
                        part = data[i : i + step]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                elif name == "large":  # a large answer to a small request
                    big = {"content": [{"type": "text", "text": "z" * int(args.get("n", 3 * 2**20))}], "isError": False}
                    self._json({"jsonrpc": "2.0", "id": rid, "result": big})
                elif name == "gone":  # the server forgets the session (it restarted)
                    with owner.lock:
                        owner.forgotten.add(sid or "")
                    self._send(404)
                else:
                    self._json({"jsonrpc": "2.0", "id": rid, "result": echo})

            def _json(self, msg: dict[str, Any], extra: dict[str, str] | None = None) -> None:
                self._send(200, json.dumps(msg).encode(), "application/json", extra)

            def _events(self, msgs: list[dict[str, Any]]) -> None:
                data = b"".join(b"event: message\ndata: " + json.dumps(m).encode() + b"\n\n" for m in msgs)
                self._send(200, data, "text/event-stream")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def requests(self) -> list[tuple[str, list[tuple[str, str]], bytes]]:
        with self.lock:
            return list(self.log)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Client:
    """Streamable HTTP on one keep-alive connection, keeping everything each answer holds."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.port = port
        self.token = token
        self.session: str | None = None

    def post(self, data: bytes, *, session: str | None = None, headers: dict[str, str] | None = None,
             chunked: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:  # fmt: skip
        h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        sid = session or self.session
        if sid:
            h["mcp-session-id"] = sid
            h["mcp-protocol-version"] = "2025-06-18"
        if self.token:
            h["authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        self.conn.request("POST", "/mcp", body=iter([data]) if chunked else data, headers=h, encode_chunked=chunked)
        resp = self.conn.getresponse()
        body = resp.read()
        kept = [(k.lower(), v) for k, v in resp.getheaders() if k.lower() not in ("date", "server")]
        return resp.status, kept, body

    def send(self, msg: Any, **kw: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        return self.post(json.dumps(msg).encode(), **kw)

    def start(self) -> None:
        status, headers, _ = self.send({"jsonrpc": "2.0", "id": "init", "method": "initialize",
                                        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                                   "clientInfo": {"name": "t", "version": "1"}}})  # fmt: skip
        assert status == 200, status
        self.session = dict(headers)["mcp-session-id"]
        status, _, _ = self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert status == 202

    def close(self) -> None:
        self.conn.close()


class _Run:
    """One proxy process in front of its own recording server."""

    def __init__(self, tmp: Path, fast: bool, *extra: str, policy: str = POLICY, tokens: dict[str, str] | None = None,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "policy.plr").write_text(policy)
        self.audit = tmp / "audit.jsonl"
        self.upstream = _Upstream()
        self.port = _free_port()
        args = list(extra)
        if tokens is not None:
            (tmp / "tokens.json").write_text(json.dumps(tokens))
            args += ["--auth-tokens", str(tmp / "tokens.json")]
        env = {**base_env(PLR_PROXY_FAST="report" if fast else "0"), **(env or {})}
        cmd = [sys.executable, "-m", "dsl.proxy", "--policy", str(tmp / "policy.plr"), "--audit", str(self.audit),
               "--approvals-db", str(tmp / "approvals.sqlite"), "--approval", "deny", *args,
               "--listen", f"127.0.0.1:{self.port}", "--upstream", f"http://127.0.0.1:{self.upstream.port}/mcp"]  # fmt: skip
        self.stderr_path = tmp / "stderr.txt"
        self.stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr, env=env, cwd=ROOT)
        deadline = time.monotonic() + 30
        while b"listening on" not in self.stderr_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the proxy did not start:\n{self.stderr_path.read_text(errors='replace')}")
            time.sleep(0.05)

    def client(self, token: str | None = None) -> _Client:
        return _Client(self.port, token)

    def close(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        self.upstream.close()
        return self.stderr_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        lines = self.audit.read_text().splitlines() if self.audit.exists() else []
        recs = [json.loads(x) for x in lines if x.strip()]
        return [{k: v for k, v in r.items() if k not in VOLATILE} for r in recs if "event" not in r]


class _Served(int):
    """How many calls the fast path served; ``direct``: of which answered without httpx; ``held``:
    of which started from the front's protocol (``http.HeldPosts``); ``early``: of which taken in
    its callback (``take_now``); ``now``: of which answered from the upstream connection's
    callback, with no task (``answer_now``); ``quick``: of which before they lasted (``_LASTS``:
    none of ``_enlist``'s registrations made)."""

    direct = 0
    held = 0
    early = 0
    now = 0
    quick = 0


def _served(stderr: str) -> _Served:
    for line in stderr.splitlines():
        if "the fast path served" in line:
            served = _Served(line.split("served")[1].split()[0])
            served.direct = int(line.split("(")[1].split()[0])
            served.held = int(line.split("(")[1].split(", ")[1].split()[0])
            served.early = int(line.split("(")[1].split(", ")[2].split()[0])
            served.now = int(line.split("(")[1].split(", ")[3].split()[0])
            served.quick = int(line.split("(")[1].split(", ")[4].split()[0])
            return served
    raise AssertionError(f"no fast-path report in the proxy's stderr:\n{stderr[-2000:]}")


def _plain(value: Any, sessions: list[str]) -> Any:
    """``value`` without what differs between two runs: the front's session ids, and the seconds a
    rate-limited call is told to wait (they run on a clock)."""
    text = json.dumps(value, default=lambda b: b.decode("utf-8", "replace"))
    for i, sid in enumerate(sessions):
        text = text.replace(sid, f"SESSION-{i}")
    text = re.sub(r"retry after [0-9.]+ s", "retry after N s", text)
    text = re.sub(r'\\"retry_after\\": ?[0-9.e+-]+', r'\\"retry_after\\":0', text)  # inside an event's data
    text = re.sub(r'"retry_after": [0-9.e+-]+', '"retry_after": "N"', text)
    return json.loads(text)


def _unstamped(request: list[Any]) -> list[Any]:
    """An upstream request without its MCP-Protocol-Version header."""
    method, headers, *rest = request
    return [method, [h for h in headers if str(h[0]).lower() != "mcp-protocol-version"], *rest]


def _both(tmp: Path, script: Any, *extra: str, **kw: Any) -> tuple[list[Any], list[Any], list[Any], _Served]:
    """Run ``script(run, sessions) -> observations`` against both paths (``sessions``: a list the
    script appends the front session ids it opens to); returns the fast run's observations, audit
    records and upstream requests, and how many calls the fast path served."""
    out = []
    served = _Served(0)
    for fast in (True, False):
        run = _Run(tmp / ("fast" if fast else "sdk"), fast, *extra, **kw)
        sessions: list[str] = []
        try:
            seen = script(run, sessions)
            time.sleep(0.2)  # a relayed answer to the server's own request may still be on its way
        finally:
            stderr = run.close()
        if fast:
            served = _served(stderr)
        out.append((_plain(seen, sessions), _plain(run.records(), sessions), _plain(run.upstream.requests(), sessions)))
    (fa, fr, fu), (sa, sr, su) = out
    # the SDK client opens its standalone stream (a GET) in a task of its own, whenever that runs:
    # where it falls among the POSTs differs from run to run, on either path; so do how often it
    # tries again before its session ends, and whether it carries MCP-Protocol-Version (stamped
    # from the first message after the handshake that carries it, which that task may or may not
    # come after). None of that is the proxy's: the GETs are compared as a set, unstamped
    fu, fg = [r for r in fu if r[0] != "GET"], sorted({json.dumps(_unstamped(r)) for r in fu if r[0] == "GET"})
    su, sg = [r for r in su if r[0] != "GET"], sorted({json.dumps(_unstamped(r)) for r in su if r[0] == "GET"})
    assert fg == sg, "the server got different GETs"
    for i, (f, s) in enumerate(zip(fa, sa)):
        assert f == s, f"the client's answers differ at {i}:\n{f}\n{s}"
    assert fr == sr, "the audit records differ"
    assert fu == su, "the server got different requests"
    return fa, fr, fu, served


def _call(rid: Any, name: Any, args: Any = None, **more: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if args is not None:
        params["arguments"] = args
    params.update(more)
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


def _answer(observed: Any) -> dict[str, Any]:
    """The JSON-RPC answer in an event-stream body (its last event), as ``_plain`` leaves it."""
    status, _, body = observed
    assert status == 200, observed
    text = body.decode() if isinstance(body, bytes) else body
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])


# -- generated calls ---------------------------------------------------------------------------

_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["DROP TABLE x", "x" * 2001, "\u202e\x00\x1b[31m", "é" * 50, "<script>", "a\nb", "\ud800"]),
)
_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.floats(allow_nan=False, allow_infinity=False), _text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)
_args = st.one_of(
    st.fixed_dictionaries({"text": _text}),
    st.fixed_dictionaries({"text": _text}, optional={"extra": _value}),
    st.dictionaries(st.text(max_size=6), _value, max_size=3),
)
_tool = st.sampled_from(["echo", "echo", "echo", "echo", "fail", "bad", "oops", "ask", "sse", "ping",
                         "nope", "secret", "wait", "Echo"])  # fmt: skip
_rid = st.one_of(st.integers(-(2**31), 2**53 - 1), st.text(min_size=0, max_size=8))


@st.composite
def _body(draw: Any) -> bytes:
    """One POST body: mostly a plain tools/call; sometimes without arguments, with null or odd
    ones, extra parameters or members, a progress token, a name that is not a string, an id
    that is not a string or an integer, another JSON-RPC version, a batch, or not JSON at all."""
    params: dict[str, Any] = {"name": draw(_tool)}
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": draw(_rid), "method": "tools/call", "params": params}
    shape = draw(st.integers(0, 14))
    if shape == 0:
        pass  # no arguments
    elif shape == 1:
        params["arguments"] = None
    elif shape == 2:
        params["arguments"] = draw(st.sampled_from([[1, 2], "text", 7]))
    elif shape == 3:
        params.update(arguments={"text": "hi"}, _meta={"progressToken": draw(_rid)})
    elif shape == 4:
        params.update(arguments={"text": "hi"}, task={"ttl": 1000})
    elif shape == 5:
        params["name"] = draw(st.sampled_from([None, 7, ["echo"]]))
    elif shape == 6:
        params["arguments"] = {"text": "n", "big": draw(st.sampled_from([2**53, -(2**53) - 5, 2**70]))}
    elif shape == 7:
        msg["id"] = draw(st.sampled_from([1.5, None, True, [1], {"a": 1}]))
        params["arguments"] = {"text": "odd id"}
    elif shape == 8:
        params["arguments"] = {"text": "x"}
        msg[draw(st.sampled_from(["extra", "result"]))] = 1
    elif shape == 9:
        params["arguments"] = {"text": "v"}
        msg["jsonrpc"] = draw(st.sampled_from(["1.0", 2.0]))
    elif shape == 10:
        params["arguments"] = {"text": "batch"}
        return json.dumps([msg]).encode()
    elif shape == 11:
        return draw(st.sampled_from([b"{", b"null", b'"tools/call"', b'{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "name": "secret"}}']))
    else:
        params["arguments"] = draw(_args)
    return json.dumps(msg, ensure_ascii=draw(st.booleans())).encode()


@given(bodies=st.lists(_body(), min_size=35, max_size=50))
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          phases=[Phase.explicit, Phase.generate])  # each example runs two proxies: no shrinking
def test_generated_calls_get_the_same_answers_records_and_upstream_bytes(tmp_path_factory: pytest.TempPathFactory, bodies: list[bytes]) -> None:
    tmp = tmp_path_factory.mktemp("httpfast")

    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client()
        c.start()
        sessions.append(c.session or "")
        seen = [c.send(_call("first", "echo", {"text": "opens the upstream session"}))]
        for body in bodies:
            seen.append(c.post(body))
            if b'"ping"' in body:
                time.sleep(0.1)  # the answer to the server's ping goes out on its own
        c.close()
        return seen

    answers, _, _, served = _both(tmp, script)
    assert len(answers) == len(bodies) + 1
    assert served >= 5, f"the fast path served only {served} of {len(bodies)} calls"


def test_every_kind_of_answer_is_the_same_on_both_paths(tmp_path: Path) -> None:
    """A fixed script that surely reaches each outcome: allowed, deny_if, require, rate limit,
    hidden, default, an upstream error, invalid results, isError, a log message and a ping of
    the server's on the call's stream, a call needing approval (the SDK path both times), answers
    chunked, compressed, on a connection the server closes and after a redirect, results with
    every kind of field (and fields no 2025-era client knows), arguments that are not finite
    numbers (refused), an oversized
    body, and a session the server forgot (then a new upstream session)."""
    calls = [("echo", {"text": "hi"}), ("echo", {"text": "DROP"}), ("echo", {"text": "x" * 3000}),
             ("fail", {}), ("bad", {}), ("oops", {}), ("ask", {}), ("sse", {"text": "s"}), ("ping", {"a": 1}),
             ("secret", {}), ("nope", {}), ("wait", {}), ("echo", {"n": 2**53 + 1, "text": "big"}),
             ("chunked", {"c": 1}), ("gzip", {"g": 1}), ("close", {"x": 1}), ("close", {"x": 2}), ("moved", {"m": 1}),
             ("rich", {}), ("rich", {"nested": {"n": None}}), ("large", {"n": 3 * 2**20}),
             ("echo", {"text": "not finite", "x": float("inf"), "y": [float("nan"), {"z": -float("inf")}], "n": None}),
             ("raw", b'{"jsonrpc": "2.0", "id": "raw", "method": "tools/call", "params": {"name": "echo", '
                     b'"arguments": {"text": "1e400", "big": 1e400, "list": [-1e999, 1.5e300, 0.1]}}}'),
             *[("echo", {"text": str(i)}) for i in range(30)], ("gone", {}), ("oops", {"after": 1}),
             ("oops", {"again": 1})]  # fmt: skip

    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client()
        c.start()
        sessions.append(c.session or "")
        seen = []
        for i, (name, args) in enumerate(calls):
            seen.append(c.post(args) if isinstance(args, bytes) else c.send(_call(i, name, args)))
            if name == "ping":
                time.sleep(0.2)
        seen.append(c.post(json.dumps(_call("huge", "echo", {"text": "y" * (5 * 2**20)})).encode()))
        c.close()
        return seen

    answers, records, upstream, served = _both(tmp_path, script)
    codes = [r["code"] for r in records]
    for code in ("allowed", "deny_if", "require", "rate_limited", "hidden", "default", "invalid_args"):
        assert code in codes, code
    assert _answer(answers[3])["error"]["message"] == "boom"  # the server's own error, passed on
    assert "invalid result" in _answer(answers[4])["error"]["message"]
    assert '"method":"notifications/message"' in answers[7][2]  # relayed on the call's own stream
    assert any('"id":"srv-8","result":{}' in body for _, _, body in upstream)  # the server's ping answered
    for i in range(13, 18):  # chunked, compressed, a closed connection (twice), a redirect: all answered
        assert _answer(answers[i])["result"]["isError"] is False, answers[i]
    assert any(path == "POST" and '"name":"moved"' in body for path, _, body in upstream)
    rich = _answer(answers[18])["result"]  # shaped for the client: its fields, no others
    assert rich["structuredContent"]["a"] == [1, 2.5, None] and "unknownKey" not in rich and "ttlMs" not in rich
    assert _answer(answers[20])["result"]["content"][0]["text"] == "z" * (3 * 2**20)  # over the read's high-water mark
    for i in (21, 22):  # numbers that are not finite: refused before anything is forwarded
        assert "NaN or Infinity" in _answer(answers[i])["result"]["content"][0]["text"]
    assert not any("not finite" in body or "1e400" in body for _, _, body in upstream)
    assert "no longer knows this session" in _answer(answers[-4])["error"]["message"]
    assert _answer(answers[-3])["result"]["content"][0]["text"] == "no"  # a new upstream session
    assert answers[-1][0] == 413
    # all but the first (it opens the upstream session), the one that needs a human, and the one
    # after the server forgot the session (it opens the new one)
    assert served == len(calls) - 3
    # the plain JSON answers read without httpx, the others (an event stream, a compressed answer,
    # a redirect, a 404, the server's ping) by httpx after the same bytes went out
    assert 30 <= served.direct <= served - 5, served.direct
    assert served.held == served  # every call's body was in before it started
    # taken in the front protocol's callback, written upstream before the task started: all but
    # the calls that found no idle connection or no kept request head (a session's first calls,
    # the ones after an answer that closed its connection)
    assert 30 <= served.early < served, served.early
    # of those, answered from the upstream connection's callback: the plain JSON results (the
    # others went on in their task: an error, an invalid result, an event stream, a compressed
    # answer, a redirect, a large answer, the session the server forgot)
    assert 25 <= served.now <= served.early - 5, (served.now, served.early)


def test_a_deadline_answers_the_client_and_cancels_upstream_alike(tmp_path: Path) -> None:
    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client()
        c.start()
        sessions.append(c.session or "")
        seen = [c.send(_call(0, "echo", {"text": "open"})), c.send(_call(1, "echo", {"text": "warm"})),
                c.send(_call(2, "slow", {"seconds": 2.5}))]  # fmt: skip
        time.sleep(2)  # the server answers the abandoned call (dropped) and reads the cancel
        seen.append(c.send(_call(3, "echo", {"text": "after"})))
        c.close()
        return seen

    answers, _, upstream, served = _both(tmp_path, script, "--upstream-timeout", "1")
    assert "did not answer within 1 s" in _answer(answers[2])["error"]["message"]
    assert _answer(answers[3])["result"]["isError"] is False
    assert any("notifications/cancelled" in body for _, _, body in upstream)
    # the slow call was written upstream from the front's callback (the warm-up left a connection
    # and a request head), its deadline then kept by its task; the call after it needs a new
    # connection (the abandoned call's was closed), so its task writes it
    # (the callbacks left the slow call to its task when its deadline came)
    assert served == 3 and served.early == 1 and served.now == 0, (served, served.early, served.now)


def test_a_cancelled_call_is_answered_as_cancelled_and_the_server_is_told_alike(tmp_path: Path) -> None:
    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client()
        c.start()
        sessions.append(c.session or "")
        seen = [c.send(_call(0, "echo", {"text": "open"})), c.send(_call(1, "echo", {"text": "warm"}))]
        box: list[Any] = []
        t = threading.Thread(target=lambda: box.append(c.send(_call("c", "slow", {"seconds": 1.5}))))
        t.start()
        time.sleep(0.5)
        other = run.client()
        other.session = c.session
        seen.append(other.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "c", "reason": "user"}}))
        t.join(10)
        seen.append(box[0])
        time.sleep(1.5)
        # the id is free again: reusing it is not "still in flight"
        seen.append(c.send(_call("c", "echo", {"text": "again"})))
        c.close()
        other.close()
        return seen

    answers, _, upstream, served = _both(tmp_path, script)
    assert _answer(answers[3])["error"]["message"] == "Request cancelled"
    assert _answer(answers[4])["result"]["isError"] is False
    assert any("notifications/cancelled" in body for _, _, body in upstream)
    # the warm-up, the call cancelled (written upstream from the front's callback) and the one
    # that reuses its id (on a new connection: the cancelled call's was closed)
    # (the callbacks left the cancelled call to its task, which answers it cancelled)
    assert served == 3 and served.early == 1 and served.now == 0, (served, served.early, served.now)


def test_a_client_that_leaves_before_its_answer_frees_its_id_and_the_session_goes_on_alike(tmp_path: Path) -> None:
    """A call whose client closes its connection while the server works: the answer that comes
    later (from the upstream connection's callback on the fast path) goes nowhere and breaks
    nothing, the request id is free again, and the session's connection upstream serves the next
    call."""

    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client()
        c.start()
        sessions.append(c.session or "")
        seen = [c.send(_call(0, "echo", {"text": "open"})), c.send(_call(1, "echo", {"text": "warm"}))]
        body = json.dumps(_call("gone-client", "slow", {"seconds": 0.6})).encode()
        head = (f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{run.port}\r\ncontent-type: application/json\r\n"
                f"accept: application/json, text/event-stream\r\nmcp-session-id: {c.session}\r\n"
                f"mcp-protocol-version: 2025-06-18\r\ncontent-length: {len(body)}\r\n\r\n").encode()  # fmt: skip
        with socket.create_connection(("127.0.0.1", run.port)) as s:
            s.sendall(head + body)
            time.sleep(0.2)  # (the call is on its way upstream)
        time.sleep(1.2)  # the server answers it; nobody reads that answer
        seen.append(c.send(_call("gone-client", "echo", {"text": "same id"})))
        seen.append(c.send(_call(2, "echo", {"text": "next"})))
        c.close()
        return seen

    answers, records, upstream, served = _both(tmp_path, script)
    assert _answer(answers[2])["result"]["isError"] is False  # the id was free again
    assert _answer(answers[3])["result"]["isError"] is False
    assert sum('"name":"slow"' in body for _, _, body in upstream) == 1
    # the slow call was taken in the callback (the warm-up left a connection) and answered from the
    # upstream connection's, to a client gone; its connection then served the calls after it
    assert served == 4 and served.early == 3 and served.now == 3, (served, served.early, served.now)


class _Kept:
    """A file whose ``close`` does nothing: ``http.client.HTTPResponse`` closes its file at the end
    of a body, and two pipelined answers are read off one."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def close(self) -> None:
        pass


def _pipelined(port: int, sid: str, msgs: list[dict[str, Any]]) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    """POST ``msgs`` in one write on one connection (pipelined) and read their answers in turn."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        data = b""
        for msg in msgs:
            body = json.dumps(msg).encode()
            data += (f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
                     f"accept: application/json, text/event-stream\r\nmcp-session-id: {sid}\r\n"
                     f"mcp-protocol-version: 2025-06-18\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
        s.sendall(data)
        f = _Kept(s.makefile("rb"))

        class _Sock:
            def makefile(self, mode: str) -> Any:
                return f

        for _ in msgs:
            resp = http.client.HTTPResponse(_Sock())  # type: ignore[arg-type]
            resp.begin()
            kept = [(k.lower(), v) for k, v in resp.getheaders() if k.lower() not in ("date", "server")]
            out.append((resp.status, kept, resp.read()))
    return out


def test_pipelined_calls_see_the_refund_of_the_call_before_them_alike(tmp_path: Path) -> None:
    """Two calls pipelined on one connection, under a limit of one that the server's failure
    gives back (`refund on error`): the second is decided after the first is answered and its
    failure refunded, as on the SDK path (a call answered from the callbacks starts the next
    request as its answer's end goes out, so its bookkeeping comes first)."""
    policy = 'default deny\nallow tool "echo"\nallow tool "slow"\nallow tool "oops"\nlimit tool "oops" to 1 per hour refund on error\n'

    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client()
        c.start()
        sessions.append(c.session or "")
        other = run.client()
        other.session = c.session
        seen = [c.send(_call(0, "echo", {"text": "open"})), c.send(_call(1, "echo", {"text": "warm"}))]
        # two calls at once: the session's upstream then keeps two idle connections, so the second
        # pipelined call finds one while the first one's is still reading its answer
        box: list[Any] = []
        t = threading.Thread(target=lambda: box.append(other.send(_call("w2", "slow", {"seconds": 0.3}))))
        t.start()
        seen.append(c.send(_call("w1", "slow", {"seconds": 0.3})))
        t.join(10)
        seen.append(box[0])
        seen += _pipelined(run.port, c.session or "", [_call(2, "oops", {"n": 1}), _call(3, "oops", {"n": 2})])
        seen.append(c.send(_call(4, "oops", {"n": 3})))
        c.close()
        return seen

    answers, records, _, served = _both(tmp_path, script, policy=policy)
    for answer in answers[4:]:
        assert _answer(answer)["result"]["content"][0]["text"] == "no", answer  # the server's own failure
    assert [r["code"] for r in records if r["tool"] == "oops"] == ["allowed", "allowed", "allowed"]
    assert served.now >= 2, (served, served.now)


def test_many_relayed_messages_reach_the_client_in_order_then_the_answer_alike(tmp_path: Path) -> None:
    """More messages relayed for one call than the per-request stream holds (16): each reaches the
    client, in order, and the answer follows them at once, as the SDK's writer drains the stream."""
    took: list[float] = []

    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client()
        c.start()
        sessions.append(c.session or "")
        seen = [c.send(_call(0, "echo", {"text": "open"}))]
        for i, n in enumerate((40, 17, 100)):
            # a plain call first leaves an idle connection (an event-stream answer read as far as
            # its result may close its own)
            seen.append(c.send(_call(f"w{i}", "echo", {"text": "warm"})))
            t0 = time.monotonic()
            seen.append(c.send(_call(i + 1, "many", {"n": n})))
            took.append(time.monotonic() - t0)
        c.close()
        return seen

    answers, _, _, served = _both(tmp_path, script)
    for answer, n in zip(answers[2::2], (40, 17, 100)):
        text = answer[2]
        assert text.count('"notifications/message"') == n
        assert [int(x) for x in re.findall(r"note (\d+)", text)] == list(range(n))
        assert text.index(f"note {n - 1}") < text.index('"result"')  # the answer comes last
        assert _answer(answer)["result"]["isError"] is False
    assert max(took) < 2.5, took  # (it was 5 s and more on the fast path, waiting for a stuck router)
    assert served == 6
    # every "many" call finds the warm-up's connection idle: written upstream from the front's
    # callback, its stream made by a relay (a warm-up after the first is too when the event
    # stream before it left its connection open)
    assert 3 <= served.early <= 5, served.early
    # a relay leaves a call answered from the callbacks to its task: only the early warm-ups are
    assert served.now == served.early - 3, (served.now, served.early)


def _first_note_and_answer(port: int, sid: str, msg: dict[str, Any]) -> tuple[float, float, bytes]:
    """POST ``msg`` and read its answer as it comes: seconds to the first relayed message, to the
    end of the answer, and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream",
         "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}  # fmt: skip
    t0 = time.monotonic()
    conn.request("POST", "/mcp", body=json.dumps(msg).encode(), headers=h)
    resp = conn.getresponse()
    body = b""
    first = None
    while chunk := resp.read1(65536):
        body += chunk
        if first is None and b"notifications/message" in body:
            first = time.monotonic() - t0
    conn.close()
    return first if first is not None else float("inf"), time.monotonic() - t0, body


def test_a_call_relaying_many_messages_streams_them_and_stalls_nothing_alike(tmp_path: Path) -> None:
    """The server sends 20 log messages at once and the answer 3 s later: the client gets the
    messages at once, and another request of the same session meanwhile is answered at once (the
    session's message router never waits on the call's stream), on both paths."""

    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client()
        c.start()
        sessions.append(c.session or "")
        seen: list[Any] = [c.send(_call(0, "echo", {"text": "open"}))]
        box: list[Any] = []
        started = time.monotonic()
        t = threading.Thread(target=lambda: box.append(_first_note_and_answer(run.port, c.session or "", _call(1, "stall", {"seconds": 3}))))
        t.start()
        time.sleep(1.0)
        other = run.client()
        other.session = c.session
        listed = other.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        listed_at = time.monotonic() - started
        t.join(30)
        first, total, body = box[0]
        # measured against the stalled call's own answer, not the clock: on a loaded machine both
        # move together, and a held stream or a stuck router puts them at the answer
        assert total > 2.5, total
        assert first < total - 1.5, (first, total)  # streamed as it came, not held until the answer
        assert listed_at < total - 0.5, (listed_at, total)  # (12 s on the fast path when the router was stuck)
        seen += [listed, body.decode()]
        c.close()
        other.close()
        return seen

    answers, _, _, served = _both(tmp_path, script, "--upstream-timeout", "30")
    assert answers[2].count('"notifications/message"') == 20
    assert answers[2].index('"n19"') < answers[2].index('"result"')
    assert served == 1  # the call (tools/list takes the SDK path)


def test_a_cancellation_however_its_json_is_spelled_cancels_alike(tmp_path: Path) -> None:
    """``notifications\\/cancelled`` (JSON's optional escape of "/", PHP's default) and ``\\u``
    escapes are the same notification to the SDK: the fast call stops, answered as cancelled,
    and the server is told."""
    spellings = [
        b'{"jsonrpc":"2.0","method":"notifications\\/cancelled","params":{"requestId":"c0","reason":"user"}}',
        b'{"jsonrpc":"2.0","method":"notifi\\u0063ations/cancelled","params":{"requestId":"\\u0063\\u0031"}}',
        b'{"jsonrpc":"2.0","params":{"requestId":"c2"},"method":"notifications/cancelled"}',
    ]

    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client()
        c.start()
        sessions.append(c.session or "")
        seen = [c.send(_call(0, "echo", {"text": "open"}))]
        other = run.client()
        other.session = c.session
        for i, body in enumerate(spellings):
            box: list[Any] = []
            t = threading.Thread(target=lambda i=i: box.append(c.send(_call(f"c{i}", "slow", {"seconds": 1.5}))))
            t.start()
            time.sleep(0.5)
            seen.append(other.post(body))
            t.join(10)
            seen.append(box[0])
            time.sleep(1.2)  # the server answers the abandoned call (dropped) and reads the cancel
        c.close()
        other.close()
        return seen

    answers, _, upstream, served = _both(tmp_path, script)
    for i in range(len(spellings)):
        assert answers[1 + 2 * i][0] == 202
        assert _answer(answers[2 + 2 * i])["error"]["message"] == "Request cancelled", answers[2 + 2 * i]
    assert sum("notifications/cancelled" in body for _, _, body in upstream) == len(spellings)
    assert served == len(spellings)


def test_another_identity_cannot_use_a_session_and_a_wrong_host_is_refused_alike(tmp_path: Path) -> None:
    tokens = {"tok-a": "alice", "tok-b": "bob"}

    def script(run: _Run, sessions: list[str]) -> list[Any]:
        a = run.client("tok-a")
        a.start()
        sessions.append(a.session or "")
        seen = [a.send(_call(0, "echo", {"text": "open"})), a.send(_call(1, "echo", {"text": "mine"}))]
        b = run.client("tok-b")
        b.session = a.session
        seen.append(b.send(_call(2, "echo", {"text": "theirs"})))  # another identity: as if no such session
        seen.append(b.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}))
        seen.append(a.send(_call(3, "echo", {"text": "evil host"}), headers={"host": "evil.example"}))
        seen.append(a.send(_call(4, "echo", {"text": "evil origin"}), headers={"origin": "http://evil.example"}))
        seen.append(a.send(_call(5, "echo", {"text": "no sse"}), headers={"accept": "application/json"}))
        seen.append(a.send(_call(6, "echo", {"text": "text"}), headers={"content-type": "text/plain"}))
        seen.append(a.send(_call(7, "echo", {"text": "unknown session"}), session="nope"))
        seen.append(a.send(_call(8, "echo", {"text": "modern"}), headers={"mcp-protocol-version": "2026-07-28"}))
        c = run.client("tok-x")
        seen.append(c.send(_call(9, "echo", {"text": "no token"}), session=a.session))
        seen.append(a.send(_call(10, "echo", {"text": "mine again"})))
        for x in (a, b, c):
            x.close()
        return seen

    answers, records, upstream, served = _both(tmp_path, script, tokens=tokens)
    assert [a[0] for a in answers[2:9]] == [404, 404, 421, 403, 406, 400, 404]
    assert answers[10][0] == 401
    assert all(r["identity"] == "alice" for r in records)
    assert not any('"theirs"' in body for _, _, body in upstream)
    assert served == served.held == 2  # calls 1 and 10


def test_posts_the_front_does_not_hold_take_the_middleware_and_are_served_alike(tmp_path: Path) -> None:
    """``http.HeldPosts`` starts a POST only once its body is in, and only when nothing outside
    ``RequestIdGate`` acts on it. A chunked body, an ``Expect: 100-continue``, a body over 64 KiB,
    ``X-Forwarded-*`` headers (uvicorn's ProxyHeadersMiddleware reads them) and a request without
    a known token (TokenGate answers it) start as uvicorn starts any request: the same answers,
    records and upstream bytes on both paths, and the fast path still serves the calls among them."""
    tokens = {"tok-a": "alice"}

    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client("tok-a")
        c.start()
        sessions.append(c.session or "")
        seen = [c.send(_call(0, "echo", {"text": "open"})), c.send(_call(1, "echo", {"text": "held"}))]
        seen.append(c.post(json.dumps(_call(2, "echo", {"text": "chunked"})).encode(), chunked=True))
        seen.append(c.send(_call(3, "echo", {"text": "expect"}), headers={"expect": "100-continue"}))
        seen.append(c.send(_call(4, "echo", {"text": "big", "pad": "z" * (70 * 1024)})))
        seen.append(c.send(_call(5, "echo", {"text": "forwarded"}), headers={"x-forwarded-for": "10.0.0.1"}))
        seen.append(c.send(_call(6, "echo", {"text": "proto"}), headers={"x-forwarded-proto": "https"}))
        seen.append(c.send(_call(7, "echo", {"text": "bad token"}), headers={"authorization": "Bearer nope"}))
        seen.append(c.send(_call(8, "echo", {"text": "held again"})))
        c.close()
        return seen

    answers, records, upstream, served = _both(tmp_path, script, tokens=tokens)
    assert [a[0] for a in answers] == [200] * 7 + [401, 200]
    for i in (1, 2, 3, 4, 5, 6, 8):
        assert _answer(answers[i])["result"]["isError"] is False, answers[i]
    assert served == 7 and served.held == 2  # calls 1 to 6 and 8; only 1 and 8 held
    assert sum(r["identity"] == "alice" for r in records) == len(records) == 8


@pytest.mark.skipif(os.environ.get("PLR_PROXY_FAST") == "0", reason="the fast path is off")
def test_a_call_taken_in_the_callback_whose_record_cannot_be_written_is_refused_not_forwarded(tmp_path: Path) -> None:
    """Fail closed on the front protocol's callback too (``take_now``): a call whose audit record
    cannot be written is answered with the failure and never reaches the server; the connection
    it would have used serves the next call once the log can be written again."""
    run = _Run(tmp_path / "on", True)
    try:
        c = run.client()
        c.start()
        for i in range(3):  # the session's upstream, the request head, an idle connection
            assert _answer(c.send(_call(i, "echo", {"text": f"warm {i}"})))["result"]["isError"] is False
        run.audit.rename(run.audit.with_name("moved.jsonl"))
        run.audit.mkdir()  # the log's name is now a directory: the record cannot be written
        refused = c.send(_call(3, "echo", {"text": "unrecorded"}))
        run.audit.rmdir()
        again = c.send(_call(4, "echo", {"text": "recorded again"}))
        c.close()
    finally:
        stderr = run.close()
    served = _served(stderr)
    failed = _answer(refused)["result"]
    assert failed["isError"] is True and "internal error in the proxy: IsADirectoryError" in json.dumps(failed), failed
    assert not any(b"unrecorded" in body for _, _, body in run.upstream.requests())
    assert _answer(again)["result"]["isError"] is False
    recs = [json.loads(line) for line in run.audit.read_text().splitlines()]
    assert [(r["tool"], r["code"]) for r in recs] == [("echo", "allowed")]  # the call after, in a new file
    # the first call opens the upstream session (the SDK path), the next builds the request head
    # (its task writes it); the others, the refused one included, are taken in the callback
    assert served == 4 and served.early == 3, (served, served.early)


@pytest.mark.skipif(os.environ.get("PLR_PROXY_FAST") == "0", reason="the fast path is off")
def test_a_call_answered_from_callbacks_is_ended_by_the_graceful_shutdown_as_one_with_a_task(tmp_path: Path) -> None:
    """SIGTERM while a call answered from the callbacks waits on a slow server: the server stopping
    gives it its task, so uvicorn's graceful shutdown (3 s) waits for it and then cancels it, as it
    does a call with a task from the start: the client gets its 500 then, and the proxy exits."""
    run = _Run(tmp_path / "on", True)
    box: list[Any] = []
    try:
        c = run.client()
        c.start()
        for i in range(3):  # the session's upstream, the request head, a call answered from the callbacks
            assert _answer(c.send(_call(i, "echo", {"text": f"warm {i}"})))["result"]["isError"] is False
        t = threading.Thread(target=lambda: box.append(c.send(_call(9, "slow", {"seconds": 8}))))
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        t.join(15)
        took = time.monotonic() - t0
        run.proc.wait(15)
    finally:
        stderr = run.close()
    assert box and box[0][0] == 500, box  # (uvicorn's answer to a request cancelled unanswered)
    assert 2.5 < took < 6, took
    served = _served(stderr)
    assert served.early == 2 and served.now == 1, (served.early, served.now)


@pytest.mark.skipif(os.environ.get("PLR_PROXY_FAST") == "0", reason="the fast path is off")
def test_a_call_pipelined_behind_one_when_the_server_stops_gets_its_task_too(tmp_path: Path) -> None:
    """SIGTERM while a call waits with another pipelined behind it: the first is answered within
    the graceful shutdown; the second, started by that answer after the stop began, has its task
    from the start (not the callbacks), so the shutdown cancels it in time: its client gets 500."""
    run = _Run(tmp_path / "on", True)
    box: list[Any] = []
    try:
        c = run.client()
        c.start()
        other = run.client()
        other.session = c.session
        for i in range(2):  # the session's upstream, the request head
            assert _answer(c.send(_call(i, "echo", {"text": f"warm {i}"})))["result"]["isError"] is False
        t = threading.Thread(target=lambda: box.append(other.send(_call("w", "slow", {"seconds": 0.3}))))
        t.start()  # (two calls at once: two idle connections upstream after)
        assert _answer(c.send(_call("v", "slow", {"seconds": 0.3})))["result"]["isError"] is False
        t.join(10)
        got: list[Any] = []
        sid = c.session or ""
        t = threading.Thread(target=lambda: got.extend(_pipelined(run.port, sid, [_call(7, "slow", {"seconds": 1}), _call(8, "slow", {"seconds": 8})])))
        t.start()
        time.sleep(0.5)
        run.proc.send_signal(signal.SIGTERM)
        t.join(20)
        run.proc.wait(15)
    finally:
        stderr = run.close()
    assert len(got) == 2, got
    assert _answer(got[0])["result"]["isError"] is False  # answered within the grace period
    assert got[1][0] == 500, got[1]  # (uvicorn's answer to a request cancelled unanswered)
    assert _served(stderr).now >= 1


@pytest.mark.skipif(os.environ.get("PLR_PROXY_FAST") == "0", reason="the fast path is off")
def test_a_call_answered_from_callbacks_keeps_the_read_timeout_between_two_reads(tmp_path: Path) -> None:
    """The upstream client's read timeout (here 1 s) bounds the wait between two reads of an
    answer, as it does for a call with a task: an answer that comes in parts 0.6 s apart (2.4 s
    in all) is read from the callbacks; one that does not come at all is given up after ~1 s (the
    connection's failure), long before --upstream-timeout."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import mcp.shared._httpx_utils as u\n\nu.MCP_DEFAULT_SSE_READ_TIMEOUT = 1.0\n")
    run = _Run(tmp_path / "on", True, "--upstream-timeout", "30", env={"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])})
    try:
        c = run.client()
        c.start()
        for i in range(2):  # the session's upstream, the request head
            assert _answer(c.send(_call(i, "echo", {"text": f"warm {i}"})))["result"]["isError"] is False
        dripped = c.send(_call(2, "drip", {"parts": 4, "gap": 0.6}))
        t0 = time.monotonic()
        stalled = c.send(_call(3, "slow", {"seconds": 4}))
        took = time.monotonic() - t0
        c.close()
    finally:
        stderr = run.close()
    assert _answer(dripped)["result"]["isError"] is False
    assert "error" in _answer(stalled), stalled
    assert 0.9 < took < 2.5, took
    served = _served(stderr)
    assert served.early == 2 and served.now == 1, (served.early, served.now)  # the drip from the callbacks


def test_the_fast_path_is_off_with_plr_proxy_fast_0(tmp_path: Path) -> None:
    run = _Run(tmp_path / "off", False)
    try:
        c = run.client()
        c.start()
        for i in range(3):
            assert _answer(c.send(_call(i, "echo", {"text": str(i)})))["result"]["isError"] is False
        c.close()
    finally:
        stderr = run.close()
    assert "the fast path served" not in stderr


@pytest.mark.skipif(os.environ.get("PLR_PROXY_FAST") == "0", reason="the fast path is off")
def test_the_fast_path_serves_repeated_calls(tmp_path: Path) -> None:
    run = _Run(tmp_path / "on", True)
    try:
        c = run.client()
        c.start()
        for i in range(20):
            assert json.loads(_answer(c.send(_call(i, "echo", {"text": str(i)})))["result"]["content"][0]["text"]) == {"text": str(i)}
        c.close()
    finally:
        stderr = run.close()
    assert _served(stderr) == 19


def test_without_a_deadline_the_calls_go_out_on_the_sdk_clients_connections_alike(tmp_path: Path) -> None:
    """``--upstream-timeout 0``: the SDK client's read timeout is the only bound, so the fast path
    sends with that client itself; still the same bytes everywhere."""

    def script(run: _Run, sessions: list[str]) -> list[Any]:
        c = run.client()
        c.start()
        sessions.append(c.session or "")
        seen = [c.send(_call(i, name, {"text": str(i)})) for i, name in enumerate(["echo", "echo", "sse", "chunked", "gzip", "fail"])]
        c.close()
        return seen

    answers, _, _, served = _both(tmp_path, script, "--upstream-timeout", "0")
    assert b"notifications/message" in json.dumps(answers[2]).encode()
    assert served == 5


def _echoed(reply: tuple[int, list[tuple[str, str]], bytes]) -> Any:
    status, _, _ = reply
    assert status == 200, reply
    return json.loads(_answer(reply)["result"]["content"][0]["text"])


def test_calls_answered_before_they_last_still_move_the_sessions_idle_deadline(tmp_path: Path) -> None:
    """A call answered from the callbacks before it lasts (``_LASTS``) is never counted in flight
    (no timer, no idle accounting); the session's idle deadline still runs from the end of its last call, as the
    SDK's transport sets it: a session that called until 2 s after it opened is alive 2.8 s after
    that last call, past the 4 s its opening alone would have given it, and ends 4 s after it."""
    # (a call ends before it lasts within 0.3 s here, however busy the machine: 2 ms by default)
    run = _Run(tmp_path / "on", True, "--session-idle-timeout", "4", env={"PLR_PROXY_LASTS": "0.3"})
    try:
        c = run.client()
        c.start()
        opened = time.monotonic()
        i = 0
        while time.monotonic() - opened < 2.0:
            assert _echoed(c.send(_call(i, "echo", {"text": str(i)}))) == {"text": str(i)}
            i += 1
            time.sleep(0.4)
        last = time.monotonic()
        time.sleep(max(0.0, opened + 4.8 - last))
        assert _echoed(c.send(_call(i, "echo", {"text": "still"}))) == {"text": "still"}
        time.sleep(5.5)
        other = run.client()  # (the first connection was closed by now: uvicorn's 5 s keep-alive)
        other.session = c.session
        status, _, _ = other.send(_call(i + 1, "echo", {"text": "gone"}))
        assert status == 404
        c.close()
        other.close()
    finally:
        stderr = run.close()
    served = _served(stderr)
    # (answered from the callbacks before they lasted, never counted in flight: the case at stake)
    assert served.now >= 3 and served.quick >= 3, (served, served.now, served.quick)


def test_a_call_that_lasts_past_the_idle_timeout_keeps_its_session(tmp_path: Path) -> None:
    """A call answered from the callbacks that lasts is counted in flight once it does (as the
    SDK's transport counts a request): its session does not end under it, however long it takes."""
    # (the last echo ends before it lasts within 0.3 s however busy the machine: 2 ms by default,
    # which a loaded machine can miss; the 5.5 s call lasts either way)
    run = _Run(tmp_path / "on", True, "--session-idle-timeout", "4", env={"PLR_PROXY_LASTS": "0.3"})
    try:
        c = run.client()
        c.start()
        assert _echoed(c.send(_call(0, "echo", {"text": "open"}))) == {"text": "open"}  # (the SDK path's)
        assert _echoed(c.send(_call(1, "echo", {"text": "warm"}))) == {"text": "warm"}  # (a kept connection)
        reply = c.send(_call(2, "slow", {"seconds": 5.5}))
        assert reply[0] == 200 and _answer(reply)["result"]["isError"] is False, reply
        assert _echoed(c.send(_call(3, "echo", {"text": "after"}))) == {"text": "after"}
        c.close()
    finally:
        stderr = run.close()
    served = _served(stderr)
    assert served.early == 2 and served.now == 2 and served.quick == 1, (served, served.early, served.now, served.quick)


@pytest.mark.parametrize("cancelled", [False, True])
def test_registrations_made_after_a_cancel_came_find_the_call_cancelled(cancelled: bool) -> None:
    """``answer_now`` makes a call's cancel scope, pings and deadline only once the call lasts or
    needs its task (``_enlist``); a cancel that came before (it finds no scope to cancel, and kicks
    the call to its task, whose ``kick`` calls ``_enlist``) must find the scope ``_enlist`` makes
    already cancelled, or the task would wait on the upstream for a call its client gave up. This
    holds ``_enlist`` itself to that (the timing of a cancel inside 2 ms cannot be arranged from
    outside the process)."""
    import asyncio

    from dsl.proxy.forwarding import Deadlines, _Timer
    from dsl.proxy.http_fast import HttpFastCalls, _Call, _Flight, _Reply
    from dsl.proxy.options import Background

    async def main() -> tuple[Any, Any, Any]:
        fast = HttpFastCalls.__new__(HttpFastCalls)
        fast.tasks, fast.deadlines = Background(), Deadlines()
        call = _Call("c")
        call.cancelled = cancelled
        flight = _Flight(call, ("s", "c"), "c", _Reply(None, ()), _Timer(5.0))
        assert flight.scope is None and call.scope is None  # (nothing made before it is needed)
        fast._enlist(flight)
        pings = flight.reply.timer
        flight.reply.stop_pings()
        return flight, call, pings

    flight, call, pings = asyncio.run(main())
    assert flight.scope is not None and call.scope is flight.scope
    assert flight.scope.cancel_called is cancelled
    assert pings is not None  # (its keep-alive pings armed)
    assert flight.scope.deadline != float("inf")  # (its deadline running)
