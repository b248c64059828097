"""A browser's sign-in to the console does not last for ever: it ends after a while without use
(the page's own live refresh is use), a fixed time after sign-in however busy, at sign-out, and
when too many newer sign-ins push it out; an ended session is exactly no session, and its CSRF
token is void.

In process, through the ASGI interface (no server, no browser); time is a clock the test moves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from click.testing import CliRunner

from dsl.console.app import ConsoleConfig, create_app
from dsl.console.security import ConsoleGuard
from dsl.console.sources import AuditTail, QueueSource
from tests.console.conftest import ASGI_HOST, asgi_scope

TOKEN = "s3cret-token"
TOKENS = {TOKEN: "alice"}
HOST = ASGI_HOST
MIN = 60.0
HOUR = 3600.0


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.reads = 0  # how often the console read the time

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _console(tmp_path: Path, clock: Any = None, **kw: Any) -> tuple[Any, ConsoleGuard]:
    guard = ConsoleGuard(TOKENS, operator="os-user", **({"clock": clock} if clock else {}), **kw)
    guard.hosts[:] = [HOST]
    cfg = ConsoleConfig(
        queue=QueueSource(db=tmp_path / "approvals.sqlite"), audit=AuditTail([]), guard=guard, poll=0.005
    )
    return create_app(cfg), guard


def _scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return asgi_scope(method, path, headers)


def _call(
    app: Any, method: str, path: str, *, cookie: str | None = None, form: dict[str, str] | None = None
) -> tuple[int, list[tuple[str, str]], str]:
    """(status, headers, body) of one request sent straight to the ASGI application."""
    headers = {}
    if cookie is not None:
        headers["cookie"] = f"{app.guard.cookie_name}={cookie}"  # this console's own name
    body = b""
    if form is not None:
        body = urlencode(form).encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    sent: list[dict[str, Any]] = []
    given = False

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        with anyio.fail_after(5):
            await app(_scope(method, path, headers), receive, send)

    anyio.run(run)
    start = next(m for m in sent if m["type"] == "http.response.start")
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()
    return start["status"], [(k.decode(), v.decode()) for k, v in start["headers"]], text


def _header(headers: list[tuple[str, str]], name: str) -> str:
    return next(v for k, v in headers if k == name)


def _csrf(body: str) -> str:
    m = re.search(r'name="csrf-token" content="([0-9a-f]+)"', body)
    assert m, body[:500]
    return m.group(1)


def _sign_in(app: Any, cookie: str | None = None) -> tuple[str, str]:
    """Sign in as the sign-in page does: (the session's cookie value, its Set-Cookie header)."""
    status, _, body = _call(app, "GET", "/login", cookie=cookie)
    assert status == 200, body
    status, headers, body = _call(app, "POST", "/login", cookie=cookie, form={"token": TOKEN, "csrf": _csrf(body)})
    assert status == 303, body
    set_cookie = _header(headers, "set-cookie")
    m = re.match(rf"{re.escape(app.guard.cookie_name)}=([^;]+);", set_cookie)
    assert m, set_cookie
    return m.group(1), set_cookie


def _signed_in(app: Any, sid: str) -> bool:
    """Whether ``sid`` is a session, asked as a page, a fragment and the event stream ask: an
    ended session gets what no session gets (the sign-in page, 401, 401)."""
    status, headers, body = _call(app, "GET", "/", cookie=sid)
    if status == 200:
        assert "signed in as alice" in body
        return True
    assert (status, _header(headers, "location")) == (303, "/login")
    assert _call(app, "GET", "/fragments/approvals", cookie=sid)[0] == 401
    assert _call(app, "GET", "/events", cookie=sid)[0] == 401
    return False


# -- idle and absolute lifetimes ----------------------------------------------------------------


def test_a_session_works_until_it_has_not_been_used_for_the_idle_time(tmp_path: Path) -> None:
    clock = Clock()
    app, guard = _console(tmp_path, clock, idle=30 * MIN, lifetime=12 * HOUR)
    sid, _ = _sign_in(app)
    clock.advance(30 * MIN - 1)
    assert _signed_in(app, sid)  # used: the idle time starts again
    clock.advance(30 * MIN - 1)
    assert _call(app, "GET", "/fragments/approvals", cookie=sid)[0] == 200
    clock.advance(30 * MIN)  # 30 minutes without a request
    assert not _signed_in(app, sid)
    assert guard.live_sessions == 0  # forgotten, not only refused
    clock.advance(-31 * MIN)  # and nothing brings it back
    assert not _signed_in(app, sid)


def test_the_pages_live_refresh_keeps_the_session_alive(tmp_path: Path) -> None:
    clock = Clock()
    app, guard = _console(tmp_path, clock, idle=10 * MIN, lifetime=12 * HOUR)
    sid, _ = _sign_in(app)
    for _ in range(6):  # an hour of the page fetching its fragments, nothing else
        clock.advance(10 * MIN - 1)
        assert _call(app, "GET", "/fragments/approvals", cookie=sid)[0] == 200
    assert _signed_in(app, sid)


def test_an_open_event_stream_is_use_and_ends_with_the_session(tmp_path: Path) -> None:
    """The open page holds /events: while it is open the session does not go idle (a quiet queue
    sends nothing else); the stream ends when the session does, and its reconnect gets 401."""
    clock = Clock()
    app, guard = _console(tmp_path, clock, idle=10 * MIN, lifetime=2 * HOUR)
    sid, _ = _sign_in(app)
    sent: list[dict[str, Any]] = []
    gone = anyio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def looked() -> None:
        """Until the stream has looked at its session again (the clock is read for nothing else)."""
        seen = clock.reads
        while clock.reads == seen:
            await anyio.sleep(0.005)

    async def run() -> bool:
        ended = anyio.Event()

        async def stream() -> None:
            await app(_scope("GET", "/events", {"cookie": f"{guard.cookie_name}={sid}"}), receive, send)
            ended.set()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream)
                await looked()
                assert sent and sent[0]["status"] == 200
                for _ in range(9):  # 90 minutes, the stream the only request
                    clock.advance(10 * MIN - 1)
                    await looked()
                assert not ended.is_set()
                alive = guard.live_sessions == 1
                clock.advance(30 * MIN)  # past the absolute lifetime: the stream ends by itself
                await ended.wait()
                gone.set()
        return alive

    assert anyio.run(run)
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)
    assert not _signed_in(app, sid)


def test_the_absolute_lifetime_ends_a_session_however_busy(tmp_path: Path) -> None:
    clock = Clock()
    app, _ = _console(tmp_path, clock, idle=30 * MIN, lifetime=12 * HOUR)
    sid, _ = _sign_in(app)
    for _ in range(29):  # a request every 24 minutes (never idle) for 11 hours 36 minutes
        clock.advance(24 * MIN)
        assert _call(app, "GET", "/fragments/approvals", cookie=sid)[0] == 200
    clock.advance(24 * MIN)  # 12 hours since sign-in, 24 minutes since the last request
    assert not _signed_in(app, sid)
    fresh, _ = _sign_in(app)  # signing in again is the way back
    assert _signed_in(app, fresh)


def test_the_defaults_are_30_minutes_idle_and_12_hours_in_all(tmp_path: Path) -> None:
    clock = Clock()
    app, guard = _console(tmp_path, clock)
    assert (guard.idle, guard.lifetime) == (30 * MIN, 12 * HOUR)
    sid, set_cookie = _sign_in(app)
    assert "Max-Age" not in set_cookie
    clock.advance(30 * MIN)
    assert not _signed_in(app, sid)


# -- the cookie ---------------------------------------------------------------------------------


def test_the_cookie_is_a_browser_sessions_and_never_outlives_the_browser(tmp_path: Path) -> None:
    app, _ = _console(tmp_path, Clock(), idle=15 * MIN, lifetime=8 * HOUR)
    _, set_cookie = _sign_in(app)
    attrs = [a.strip() for a in set_cookie.split(";")]
    assert not any(a.lower().startswith(("max-age", "expires")) for a in attrs), attrs  # not kept on disk
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attrs)


# -- the bound ------------------------------------------------------------------------------------


def test_signing_in_in_a_loop_evicts_the_oldest_session(tmp_path: Path) -> None:
    clock = Clock()
    app, guard = _console(tmp_path, clock, max_sessions=3)
    sids = []
    for _ in range(4):
        sids.append(_sign_in(app)[0])
        clock.advance(1)
    assert guard.live_sessions == 3
    assert not _signed_in(app, sids[0])  # the oldest went
    assert all(_signed_in(app, s) for s in sids[1:])
    for _ in range(500):
        assert guard.sign_in(TOKEN) is not None
    assert guard.live_sessions == 3 and len(guard._sessions) == 3


def test_one_identity_signing_in_in_a_loop_pushes_out_only_its_own_sessions() -> None:
    # a token holder cannot sign everyone else out by filling the bound with its own sign-ins
    guard = ConsoleGuard({"tok-a": "alice", "tok-m": "mallory"}, operator=None, clock=Clock())
    alice, _ = guard.sign_in("tok-a")
    for _ in range(2000):
        assert guard.sign_in("tok-m") is not None
    assert guard.identity({}, {guard.cookie_name: alice}) == "alice"
    assert guard.live_sessions == 1 + guard.per_identity


def test_signing_in_again_ends_the_browsers_previous_session(tmp_path: Path) -> None:
    app, guard = _console(tmp_path, Clock())
    old, _ = _sign_in(app)
    new, _ = _sign_in(app, cookie=old)
    assert new != old and guard.live_sessions == 1
    assert not _signed_in(app, old) and _signed_in(app, new)


def test_an_unknown_token_makes_no_session(tmp_path: Path) -> None:
    app, guard = _console(tmp_path, Clock(), max_sessions=2)
    for _ in range(5):
        assert guard.sign_in("wrong") is None
    assert guard.live_sessions == 0


# -- CSRF -----------------------------------------------------------------------------------------


def test_a_signed_out_sessions_csrf_token_no_longer_passes(tmp_path: Path) -> None:
    app, guard = _console(tmp_path)  # the real clock: sign-out needs no time
    sid, _ = _sign_in(app)
    status, _, body = _call(app, "GET", "/", cookie=sid)
    token = _csrf(body)
    assert guard.csrf_ok({guard.cookie_name: sid}, token)
    status, headers, _ = _call(app, "POST", "/logout", cookie=sid, form={"csrf": token})
    assert status == 303 and "Max-Age=0" in _header(headers, "set-cookie")
    assert not guard.csrf_ok({guard.cookie_name: sid}, token)
    # a form of the signed-out page, posted with the old cookie, is refused as stale
    status, _, body = _call(app, "POST", "/login", cookie=sid, form={"token": TOKEN, "csrf": token})
    assert status == 403 and "CSRF" in body
    assert not _signed_in(app, sid)


def test_an_expired_sessions_csrf_token_no_longer_passes(tmp_path: Path) -> None:
    clock = Clock()
    app, guard = _console(tmp_path, clock, idle=10 * MIN)
    sid, _ = _sign_in(app)
    token = _csrf(_call(app, "GET", "/", cookie=sid)[2])
    clock.advance(10 * MIN)
    assert not guard.csrf_ok({guard.cookie_name: sid}, token)
    status, _, _ = _call(app, "POST", "/login", cookie=sid, form={"token": TOKEN, "csrf": token})
    assert status == 403
    # the page a stale cookie gets is the anonymous one, and its form works
    fresh, _ = _sign_in(app, cookie=sid)
    assert _signed_in(app, fresh)


# -- the options ----------------------------------------------------------------------------------


def test_the_guard_refuses_lifetimes_that_are_not_positive_numbers() -> None:
    for kw in ({"idle": 0}, {"idle": -5}, {"lifetime": float("nan")}, {"lifetime": float("inf")}, {"max_sessions": 0}):
        with pytest.raises(ValueError):
            ConsoleGuard(TOKENS, operator="os-user", **kw)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--session-idle", "0"], "Invalid value for '--session-idle': `0` minutes must be more than zero"),
        (["--session-idle", "-3"], "`-3` minutes must be more than zero"),
        (["--session-idle", "soon"], "`soon` is not a number of minutes"),
        (["--session-idle", "nan"], "`nan` minutes is not a number"),
        (["--session-lifetime", "0"], "Invalid value for '--session-lifetime': `0` hours must be more than zero"),
        (["--session-lifetime", "inf"], "`inf` hours must be at most 30 days"),
        (["--session-lifetime", "1000"], "`1000` hours must be at most 30 days"),
    ],
)
def test_bad_session_options_are_a_usage_error(tmp_path: Path, args: list[str], said: str, monkeypatch) -> None:  # noqa: ANN001
    from dsl.cli import console as cli

    monkeypatch.setattr(cli, "_serve", lambda *a, **k: pytest.fail("started despite a bad option"))
    result = CliRunner().invoke(cli.console_cmd, [*args, "--listen", "127.0.0.1:0", "--db", str(tmp_path / "q")])
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert "Traceback" not in result.output


def test_the_session_options_reach_the_console(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from dsl.cli import console as cli

    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"s3cret-token": "alice"}')
    got: list[Any] = []
    monkeypatch.setattr(cli, "_serve", lambda cfg, *a: got.append(cfg))
    base = ["--listen", "127.0.0.1:0", "--db", str(tmp_path / "q"), "--auth-tokens", str(tokens)]
    result = CliRunner().invoke(cli.console_cmd, [*base, "--session-idle", "5", "--session-lifetime", "1.5"])
    assert result.exit_code == 0, result.output
    assert (got[0].guard.idle, got[0].guard.lifetime) == (300, 5400)
    result = CliRunner().invoke(cli.console_cmd, base)
    assert result.exit_code == 0, result.output
    assert (got[1].guard.idle, got[1].guard.lifetime) == (30 * MIN, 12 * HOUR)
    help_text = CliRunner().invoke(cli.console_cmd, ["--help"]).output
    assert "--session-idle MINUTES" in help_text and "--session-lifetime HOURS" in help_text
