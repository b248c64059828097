"""The HTTP front defends itself: slowloris, idle sessions, DNS rebinding (issue #14, items 8, 9).

Real processes throughout: `plr proxy --listen ...` (``python -m dsl.proxy``) in front of the fake
codex worker as its command, raw sockets for the attacker, raw HTTP where a header must be forged,
and the SDK's ``Client`` as the valid agent. The guards run on both of the front's protocols
(httptools, the default, and h11: ``PLR_PROXY_HTTP``).
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx2
import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import ROOT

from .conftest import FAKE_SERVER, ProxySetup, base_env, free_port, run_proxy_cli, stop
from .helpers import text

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INIT = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}  # fmt: skip


@pytest.fixture(params=["httptools", "h11"])
def front(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The HTTP protocol the proxy under test serves with (``PLR_PROXY_HTTP``; base_env passes it)."""
    if request.param == "httptools":
        pytest.importorskip("httptools")
    monkeypatch.setenv("PLR_PROXY_HTTP", request.param)
    return str(request.param)


@contextmanager
def proxy_on(setup: ProxySetup, listen: str, *extra: str, connect: str = "127.0.0.1") -> Iterator[int]:
    """``plr proxy --listen LISTEN EXTRA -- fake codex worker``; yields its port once ``connect``
    accepts connections on it, and checks that it stops cleanly (exit 0) on SIGTERM."""
    port = free_port()
    args = setup.proxy_args("--listen", listen.replace("PORT", str(port)), *extra)
    with setup.stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err, env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, setup.stderr.read_text()
                try:
                    socket.create_connection((connect, port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"nothing listens on {connect}:{port}"
                    time.sleep(0.05)
            yield port
            proc.terminate()
            assert proc.wait(timeout=15) == 0, setup.stderr.read_text()
        finally:
            stop(proc)
    assert "Traceback" not in setup.stderr.read_text()


def stalled(port: int, n: int, data: bytes) -> list[socket.socket]:
    """``n`` connections that each send ``data`` (part of a request) and then nothing."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if data:
            s.sendall(data)
        socks.append(s)
    return socks


def closed_by_server(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the server has closed (they read EOF or a reset; a refusal's 503
    counts once its connection is closed too)."""
    n = 0
    for s in socks:
        if not select.select([s], [], [], 0)[0]:
            continue
        try:
            while s.recv(65536, socket.MSG_DONTWAIT):
                pass
            n += 1  # b"": EOF
        except BlockingIOError:
            pass  # data (a 503) but not closed yet
        except OSError:
            n += 1  # reset
    return n


def wait_closed(socks: list[socket.socket], at_least: int, bound: float) -> int:
    deadline = time.monotonic() + bound
    n = closed_by_server(socks)
    while n < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
        n = closed_by_server(socks)
    return n


async def valid_client_is_served(url: str) -> None:
    """A real MCP session: handshake, tools/list and an allowed call, answered by the server."""
    async with Client(url, mode="legacy", cache=None) as c:
        names = [t.name for t in (await c.list_tools()).tools]
        assert "get-task" in names
        r = await c.call_tool("list-tasks", {})
        assert not r.is_error, text(r)


HALF_HEADERS = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-"
HALF_BODY = (
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Accept: application/json, text/event-stream\r\nContent-Length: 200\r\n\r\n{\"jsonrpc\": \"2.0\", "
)


# --- 8. slowloris: half-sent requests are capped and reaped; a valid client is still served -----


@pytest.mark.usefixtures("front")
async def test_stalled_connections_cannot_lock_out_a_valid_client(setup: ProxySetup) -> None:
    """200 connections that never finish their headers, against --max-connections 64 and a read
    timeout far away: the proxy keeps at most 64 of them (each newcomer closes the one that has
    waited longest), and a valid client still gets its whole session served."""
    with proxy_on(setup, "127.0.0.1:PORT", "--max-connections", "64", "--read-timeout", "60") as port:
        socks = stalled(port, 200, HALF_HEADERS)
        try:
            assert wait_closed(socks, 200 - 64, bound=20) >= 200 - 64
            with anyio.fail_after(30):
                await valid_client_is_served(f"http://127.0.0.1:{port}/mcp")
            assert closed_by_server(socks) < 200  # served while stalled connections were still held
        finally:
            for s in socks:
                s.close()
    assert setup.called_tools() == ["list-tasks"]
    says = "64 HTTP connections open (--max-connections): closing the ones that wait longest on their clients"
    assert setup.stderr.read_text().count(says) == 1  # one line, not one per connection


async def open_session(url: str) -> str:
    """A handshake-era session opened over raw HTTP (its connection closed after): its id."""
    async with httpx2.AsyncClient(timeout=20) as h:
        r = await h.post(url, json=INIT, headers=ACCEPT)
        assert r.status_code == 200, r.text
        sid = r.headers["mcp-session-id"]
        heads = {**ACCEPT, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}
        r = await h.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=heads)
        assert r.status_code == 202, r.text
    return sid


@pytest.mark.usefixtures("front")
async def test_at_the_connection_cap_with_nobody_stalled_a_newcomer_gets_503(setup: ProxySetup) -> None:
    """--max-connections 3, all three held by sessions' open event streams (busy, never chosen to
    make room): a fourth connection is answered 503 and closed; once a stream ends, clients are
    served again."""
    from contextlib import AsyncExitStack

    with proxy_on(setup, "127.0.0.1:PORT", "--max-connections", "3") as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(60):
            sids = [await open_session(url) for _ in range(3)]
            async with AsyncExitStack() as streams:
                for sid in sids:
                    h = await streams.enter_async_context(httpx2.AsyncClient(timeout=20))
                    heads = {"accept": "text/event-stream", "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}
                    r = await streams.enter_async_context(h.stream("GET", url, headers=heads))
                    assert r.status_code == 200
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    # (sending a request first could earn a reset instead: it would arrive after the close)
                    got = b""
                    while chunk := s.recv(4096):
                        got += chunk
                assert got.startswith(b"HTTP/1.1 503") and b"too many connections" in got, got
            await valid_client_is_served(url)
    assert "3 HTTP connections open (--max-connections): all busy, refusing new ones (503)" in setup.stderr.read_text()


@pytest.mark.usefixtures("front")
async def test_half_sent_requests_are_closed_after_the_read_timeout(setup: ProxySetup) -> None:
    """Connections that stop inside their headers, inside their body, or send nothing at all are
    closed once --read-timeout passes (uvicorn alone keeps them for ever), and a valid client is
    served meanwhile."""
    with proxy_on(setup, "127.0.0.1:PORT", "--read-timeout", "1") as port:
        socks = stalled(port, 200, HALF_HEADERS) + stalled(port, 10, HALF_BODY) + stalled(port, 10, b"")
        try:
            with anyio.fail_after(30):
                await valid_client_is_served(f"http://127.0.0.1:{port}/mcp")
            assert wait_closed(socks, len(socks), bound=20) == len(socks)
        finally:
            for s in socks:
                s.close()
        with anyio.fail_after(30):  # and the proxy serves on
            await valid_client_is_served(f"http://127.0.0.1:{port}/mcp")


@pytest.mark.usefixtures("front")
async def test_a_connection_stalled_after_a_slow_body_gets_the_read_timeout_not_the_bodys(setup: ProxySetup) -> None:
    """A body earns its sender more time (a second per 64 KiB), for that body only: once its
    request is answered, a connection that stops inside its next request's head is closed after
    --read-timeout, not after the time the body earned."""
    with proxy_on(setup, "127.0.0.1:PORT", "--read-timeout", "1") as port:
        body = b"x" * (640 * 1024)  # 10 s more while it comes
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                      b"Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n" % (port, len(body)))  # fmt: skip
            for i in range(0, len(body), len(body) // 8):  # over ~1.6 s: past the first second
                s.sendall(body[i : i + len(body) // 8])
                time.sleep(0.2)
            got = b""
            while b"\r\n\r\n" not in got:
                got += s.recv(65536)
            assert got.startswith(b"HTTP/1.1 4"), got  # (a POST with no session: answered at once)
            time.sleep(0.3)
            if select.select([s], [], [], 0)[0]:
                s.recv(65536)  # (the rest of the answer)
            answered = time.monotonic()
            s.sendall(HALF_HEADERS)
            assert wait_closed([s], 1, bound=10) == 1
            took = time.monotonic() - answered
        assert took < 3, took  # (what the body earned would give ~5 s)


@pytest.mark.usefixtures("front")
async def test_an_idle_session_expires(setup: ProxySetup) -> None:
    """A handshake-era session with nothing in flight for --session-idle-timeout is ended: its id
    answers 404 afterwards."""
    with proxy_on(setup, "127.0.0.1:PORT", "--session-idle-timeout", "1") as port:
        url = f"http://127.0.0.1:{port}/mcp"
        sid = await open_session(url)
        heads = {**ACCEPT, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}
        async with httpx2.AsyncClient(timeout=20) as h:
            r = await h.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=heads)
            assert r.status_code == 200, r.text  # alive while used
            await anyio.sleep(4)
            r = await h.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=heads)
            assert r.status_code == 404, r.text


# --- 9. DNS rebinding: Host/Origin checked on every loopback spelling; no open public listener ---


async def post_init(port: int, connect: str = "127.0.0.1", **headers: str) -> int:
    async with httpx2.AsyncClient(timeout=20) as h:
        r = await h.post(f"http://{connect}:{port}/mcp", json=INIT, headers={**ACCEPT, **headers})
    return r.status_code


@pytest.mark.usefixtures("front")
@pytest.mark.parametrize(
    ("listen", "connect", "tokens"),
    [("LOCALHOST", "127.0.0.1", False), ("127.0.0.2", "127.0.0.2", False), ("127.0.0.2", "127.0.0.2", True)],
    ids=["LOCALHOST", "127.0.0.2", "127.0.0.2-with-tokens"],
)
async def test_any_loopback_spelling_checks_host_and_origin(
    setup: ProxySetup, listen: str, connect: str, tokens: bool
) -> None:
    """A page served from a name the attacker controls (DNS rebinding) sends its own name as Host
    and Origin: on every spelling of loopback (with or without --auth-tokens) that is refused (421
    for Host, 403 for Origin), while the listener's own names and --allow-host names pass."""
    extra: list[str] = ["--allow-host", "mcp.example"]
    auth: dict[str, str] = {}
    if tokens:
        path = setup.tmp / "tokens.json"
        path.write_text(json.dumps({"tok-a": "alice"}))
        extra += ["--auth-tokens", str(path)]
        auth = {"authorization": "Bearer tok-a"}
    with proxy_on(setup, f"{listen}:PORT", *extra, connect=connect) as port:
        with anyio.fail_after(60):
            status = lambda **h: post_init(port, connect, **auth, **h)  # noqa: E731
            assert await status(host="evil.example") == 421
            assert await status(host=f"evil.example:{port}") == 421
            assert await status(host="mcp.example.evil.example") == 421
            assert await status(host=f"{connect}:{port}", origin="http://evil.example") == 403
            assert await status(host=f"{connect}:{port}", origin=f"http://evil.example:{port}") == 403
            assert await status(host=f"{listen}:{port}") == 200  # the listener's own name, as given
            assert await status(host=f"localhost:{port}", origin=f"http://localhost:{port}") == 200
            assert await status(host=f"mcp.example:{port}", origin="https://mcp.example") == 200  # --allow-host
            http = httpx2.AsyncClient(headers=auth)
            url = f"http://{connect}:{port}/mcp"
            async with Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None) as c:
                assert not (await c.call_tool("list-tasks", {})).is_error
    assert setup.called_tools() == ["list-tasks"]


def test_a_public_listener_without_tokens_refuses_to_start(setup: ProxySetup) -> None:
    """0.0.0.0 without --auth-tokens: one line naming the way out, exit 2, nothing started."""
    port = free_port()
    proc = run_proxy_cli(
        "--policy", str(setup.policy), "--audit", str(setup.audit), "--listen", f"0.0.0.0:{port}",
        "--", sys.executable, str(FAKE_SERVER), env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr_text
    lines = proc.stderr_text.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0 without --auth-tokens" in lines[0], lines
    assert "--insecure-no-auth" in lines[0] and "Traceback" not in proc.stderr_text
    assert setup.calls() == [] and not setup.audit.exists()


@pytest.mark.usefixtures("front")
async def test_insecure_no_auth_starts_a_public_listener_that_still_checks_host(setup: ProxySetup) -> None:
    """With --insecure-no-auth 0.0.0.0 is served (a warning says what was given up), and Host is
    still checked: loopback names and --allow-host HOST:PORT pass, anything else is 421."""
    with proxy_on(setup, "0.0.0.0:PORT", "--insecure-no-auth", "--allow-host", "MCP.example:8443") as port:
        with anyio.fail_after(60):
            assert await post_init(port, host="evil.example") == 421
            assert await post_init(port, host=f"0.0.0.0:{port}") == 421
            assert await post_init(port, host="mcp.example:1") == 421  # the port named is the only one
            assert await post_init(port, host=f"127.0.0.1:{port}") == 200
            assert await post_init(port, host="mcp.example:8443") == 200
    assert "without --auth-tokens (--insecure-no-auth)" in setup.stderr.read_text()


def test_http_flags_are_checked_before_anything_starts(setup: ProxySetup) -> None:
    """Bad --allow-host values and HTTP-only flags without --listen: one line each, exit 2."""
    base = ("--policy", str(setup.policy), "--audit", str(setup.audit))
    server = ("--", sys.executable, str(FAKE_SERVER))
    cases: list[tuple[tuple[str, ...], str]] = [
        (("--listen", "127.0.0.1:0", "--allow-host", "http://evil.example"), "is not HOST or HOST:PORT"),
        (("--listen", "127.0.0.1:0", "--allow-host", "*"), "is not HOST or HOST:PORT"),
        (("--listen", "127.0.0.1:0", "--allow-host", "a.example:99999"), "not from 1 to 65535"),
        (("--allow-host", "a.example"), "--allow-host applies to the HTTP front only"),
        (("--insecure-no-auth",), "--insecure-no-auth applies to the HTTP front only"),
        (("--listen", "127.0.0.1:0", "--read-timeout", "0"), "--read-timeout"),
    ]
    for args, says in cases:
        proc = run_proxy_cli(*base, *args, *server, env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)))
        assert proc.returncode == 2, (args, proc.stderr_text)
        assert says in proc.stderr_text and "Traceback" not in proc.stderr_text, (args, proc.stderr_text)
    assert setup.calls() == []


def test_a_connection_cap_past_the_open_files_limit_refuses_to_start(setup: ProxySetup) -> None:
    """Past the open-files limit the listener could accept nobody, so --max-connections must fit
    under it: the proxy raises its soft limit when it may, and otherwise says so (exit 2)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    proc = subprocess.run(
        [sys.executable, *setup.proxy_args("--listen", "127.0.0.1:0", "--max-connections", "512")],
        cwd=str(ROOT), capture_output=True, timeout=60, preexec_fn=limit,
        env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)),
    )  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "--max-connections 512 needs 768 open files" in err and "Traceback" not in err
    assert setup.calls() == []


@pytest.mark.parametrize("forced", [None, "h11"], ids=["default", "PLR_PROXY_HTTP=h11"])
def test_the_proxy_serves_with_httptools_unless_h11_is_forced(
    setup: ProxySetup, monkeypatch: pytest.MonkeyPatch, forced: str | None
) -> None:
    """A header value with a DEL byte: llhttp refuses it (uvicorn's 400), h11 lets it through to
    the SDK (which answers the GET without a session itself): which parser the running proxy uses."""
    pytest.importorskip("httptools")
    if forced is None:
        monkeypatch.delenv("PLR_PROXY_HTTP", raising=False)
    else:
        monkeypatch.setenv("PLR_PROXY_HTTP", forced)
    with proxy_on(setup, "127.0.0.1:PORT") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nX: a\x7fb\r\n\r\n".encode())
            got = b""
            while chunk := s.recv(4096):
                got += chunk
    status = got.split(b" ", 2)[1]
    if forced is None:
        assert status == b"400" and got.endswith(b"Invalid HTTP request received."), got
    else:
        assert status != b"400" and b"Invalid HTTP request received." not in got, got
