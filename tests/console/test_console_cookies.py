"""The console's session cookie.

- Its name is the console process's own (``plr_console_`` and a random suffix): browsers send a
  host's cookies to every port of it, so two consoles on one host name must not overwrite (sign
  out) each other's sign-in; sign-in, the CSRF token and sign-out all read that one name.
- It is Secure when the browser signed in on an HTTPS page (its Origin says so; a proxy's
  ``X-Forwarded-Proto`` is not trusted), and with ``--behind-https`` always Secure and
  ``__Host-`` prefixed, a sign-in from a plain-HTTP page beyond loopback refused.

Most tests call the ASGI application in process with a small cookie jar that behaves as a
browser's does for one host name (every port shares it); the others start real consoles, and
one drives headless Chromium (the browser's own cookie rules are the point).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import pytest
from click.testing import CliRunner

from dsl.console.app import ConsoleConfig, create_app
from dsl.console.security import ConsoleGuard
from dsl.console.sources import AuditTail, QueueSource
from dsl.state.sqlite import SqliteApprovalQueue
from tests.console.conftest import ASGI_HOST, asgi_scope

TOKENS = {"tok-a": "alice", "tok-b": "bob"}
OTHER_HOST = "console.test:8767"  # a second console on the same host name, another port
LOOPBACK_HOSTS = ["127.0.0.1:8766", "localhost:8766", "[::1]:8766"]


class Jar:
    """A browser's cookies for one host name: sent to every port of it, replaced by name."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def take(self, set_cookie: str) -> None:
        name, _, rest = set_cookie.partition("=")
        value, *attrs = rest.split(";")
        if any(a.strip().lower() == "max-age=0" for a in attrs):
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value


def _console(tmp_path: Path, hosts: list[str] | None = None, **kw: Any) -> tuple[Any, ConsoleGuard]:
    guard = ConsoleGuard(TOKENS, operator="os-user", **kw)
    guard.hosts[:] = hosts or [ASGI_HOST]
    queue = QueueSource(db=tmp_path / "approvals.sqlite")
    return create_app(ConsoleConfig(queue=queue, audit=AuditTail([]), guard=guard)), guard


def _call(
    app: Any,
    method: str,
    path: str,
    *,
    page: str = f"http://{ASGI_HOST}",
    cookie: str = "",
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, list[tuple[str, str]], str]:
    """(status, headers, body) of one request from the page at ``page`` (its Origin; the Host is
    the page's), sent straight to the ASGI application."""
    hdrs = {"host": urlsplit(page).netloc, "origin": page, **(headers or {})}
    if cookie:
        hdrs["cookie"] = cookie
    body = urlencode(form).encode() if form is not None else b""
    if form is not None:
        hdrs["content-type"] = "application/x-www-form-urlencoded"
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        with anyio.fail_after(5):
            await app(asgi_scope(method, path, hdrs), receive, send)

    anyio.run(run)
    start = next(m for m in sent if m["type"] == "http.response.start")
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()
    return start["status"], [(k.decode(), v.decode()) for k, v in start["headers"]], text


def _set_cookies(headers: list[tuple[str, str]]) -> list[str]:
    return [v for k, v in headers if k == "set-cookie"]


def _csrf(body: str) -> str:
    m = re.search(r'name="csrf-token" content="([0-9a-f]+)"', body)
    assert m, body[:500]
    return m.group(1)


def _sign_in(app: Any, jar: Jar, token: str = "tok-a", page: str = f"http://{ASGI_HOST}") -> str:
    """Sign in as the sign-in page does, the browser keeping what it is given: the Set-Cookie."""
    status, _, body = _call(app, "GET", "/login", page=page, cookie=jar.header())
    assert status == 200, body
    status, headers, body = _call(
        app, "POST", "/login", page=page, cookie=jar.header(), form={"token": token, "csrf": _csrf(body)}
    )
    assert status == 303, body
    (set_cookie,) = _set_cookies(headers)
    jar.take(set_cookie)
    return set_cookie


def _who(app: Any, jar: Jar, page: str = f"http://{ASGI_HOST}") -> str | None:
    """Who the browser is signed in as on this console (None: it is sent to the sign-in page)."""
    status, headers, body = _call(app, "GET", "/", page=page, cookie=jar.header())
    if status == 303:
        assert dict(headers)["location"] == "/login"
        return None
    m = re.search(r'class="who">signed in as ([^<]+)<', body)
    assert status == 200 and m, body[:500]
    return m.group(1)


def _attrs(set_cookie: str) -> tuple[str, set[str]]:
    """(the cookie's name, its attributes as written)."""
    first, *attrs = (a.strip() for a in set_cookie.split(";"))
    return first.partition("=")[0], set(attrs)


# -- one name per console -------------------------------------------------------------------------


def test_two_consoles_on_one_host_name_keep_their_own_sign_ins(tmp_path: Path) -> None:
    """The browser sends both consoles' cookies to both (ports do not separate cookies): signing
    in to the second, and out of it, leaves the first signed in."""
    a, guard_a = _console(tmp_path)
    b, guard_b = _console(tmp_path, hosts=[OTHER_HOST])
    b_page = f"http://{OTHER_HOST}"
    assert guard_a.cookie_name != guard_b.cookie_name
    jar = Jar()
    _sign_in(a, jar, "tok-a")
    _sign_in(b, jar, "tok-b", page=b_page)
    assert sorted(jar.cookies) == sorted([guard_a.cookie_name, guard_b.cookie_name])
    assert (_who(a, jar), _who(b, jar, page=b_page)) == ("alice", "bob")
    # signing in again to one ends only that console's previous sign-in
    _sign_in(b, jar, "tok-b", page=b_page)
    assert (_who(a, jar), guard_a.live_sessions, guard_b.live_sessions) == ("alice", 1, 1)
    # signing out of one clears only its own cookie
    csrf = _csrf(_call(b, "GET", "/", page=b_page, cookie=jar.header())[2])
    status, headers, _ = _call(b, "POST", "/logout", page=b_page, cookie=jar.header(), form={"csrf": csrf})
    assert status == 303
    for set_cookie in _set_cookies(headers):
        jar.take(set_cookie)
    assert list(jar.cookies) == [guard_a.cookie_name]
    assert (_who(a, jar), _who(b, jar, page=b_page)) == ("alice", None)


def test_the_name_is_the_console_process_own_and_stays_for_its_lifetime(tmp_path: Path) -> None:
    app, guard = _console(tmp_path)
    name = guard.cookie_name
    assert re.fullmatch(r"plr_console_[0-9a-f]{12}", name), name
    jar = Jar()
    assert _attrs(_sign_in(app, jar))[0] == name
    assert _attrs(_sign_in(app, jar))[0] == name  # a second sign-in: the same name, replaced
    assert list(jar.cookies) == [name]
    others = {ConsoleGuard(TOKENS, operator=None).cookie_name for _ in range(50)}  # each start: another
    assert len(others) == 50 and name not in others


def test_sign_in_csrf_and_sign_out_read_the_consoles_own_name(tmp_path: Path) -> None:
    q = SqliteApprovalQueue(tmp_path / "approvals.sqlite")
    aid = q.file(tool="cancel-task", args_text=json.dumps({"task_id": "t-1"}), args_hash="h", timeout=300)
    app, guard = _console(tmp_path)
    jar = Jar()
    _sign_in(app, jar)
    sid = jar.cookies[guard.cookie_name]
    assert _who(app, jar) == "alice"
    csrf = _csrf(_call(app, "GET", "/", cookie=jar.header())[2])
    # the session under any other name (the old shared `plr_console`, another console's) is no session
    for name in ("plr_console", guard.cookie_name + "0", "plr_console_000000000000"):
        elsewhere = f"{name}={sid}"
        assert _call(app, "GET", "/", cookie=elsewhere)[0] == 303
        assert not guard.csrf_ok({name: sid}, csrf)
        status, _, body = _call(app, "POST", f"/approvals/{aid}", cookie=elsewhere, form={"decision": "grant", "csrf": csrf})
        assert status == 303 and q.get(aid).status == "pending", body
    # under its own name the page's CSRF token decides
    status, _, body = _call(app, "POST", f"/approvals/{aid}", cookie=jar.header(), form={"decision": "grant", "csrf": csrf})
    assert status == 303, body
    assert (q.get(aid).status, q.get(aid).decided_by) == ("granted", "alice")
    # sign-out ends the session and clears the cookie of that same name
    status, headers, _ = _call(app, "POST", "/logout", cookie=jar.header(), form={"csrf": csrf})
    (cleared,) = _set_cookies(headers)
    assert status == 303 and _attrs(cleared) == (guard.cookie_name, {"Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=0"})
    jar.take(cleared)
    assert jar.cookies == {} and guard.live_sessions == 0
    assert _call(app, "GET", "/", cookie=f"{guard.cookie_name}={sid}")[0] == 303


# -- Secure ---------------------------------------------------------------------------------------


def test_the_cookie_is_secure_when_the_browser_signs_in_over_https(tmp_path: Path) -> None:
    app, guard = _console(tmp_path)
    https = f"https://{ASGI_HOST}"
    jar = Jar()
    name, attrs = _attrs(_sign_in(app, jar, page=https))
    assert name == guard.cookie_name and not name.startswith("__Host-")
    assert attrs == {"Path=/", "HttpOnly", "SameSite=Strict", "Secure"}
    assert _who(app, jar, page=https) == "alice"
    csrf = _csrf(_call(app, "GET", "/", page=https, cookie=jar.header())[2])
    status, headers, _ = _call(app, "POST", "/logout", page=https, cookie=jar.header(), form={"csrf": csrf})
    assert status == 303 and "Secure" in _attrs(_set_cookies(headers)[0])[1]  # cleared with the same attributes
    # a browser that sent no Origin names the page in its Referer
    referer = {"origin": "", "referer": f"{https}/login"}
    _, _, body = _call(app, "GET", "/login", page=https, headers=referer)
    status, headers, _ = _call(app, "POST", "/login", page=https, headers=referer, form={"token": "tok-a", "csrf": _csrf(body)})
    assert status == 303 and "Secure" in _attrs(_set_cookies(headers)[0])[1]


@pytest.mark.parametrize(
    "extra",
    [{}, {"x-forwarded-proto": "https"}, {"forwarded": "proto=https"}, {"x-forwarded-ssl": "on"}],
    ids=["no-proxy-header", "x-forwarded-proto", "forwarded", "x-forwarded-ssl"],
)
def test_the_browsers_page_decides_secure_not_a_proxy_header(tmp_path: Path, extra: dict[str, str]) -> None:
    """Without --behind-https a page on plain HTTP gets a cookie it can keep (a Secure one would
    be dropped by the browser: no sign-in at all), an HTTPS page a Secure one; headers anyone can
    send (a proxy's, unless the operator says so) change neither."""
    app, guard = _console(tmp_path)
    for scheme, want in (("http", set()), ("https", {"Secure"})):
        page = f"{scheme}://{ASGI_HOST}"
        _, _, body = _call(app, "GET", "/login", page=page, headers=extra)
        status, headers, _ = _call(app, "POST", "/login", page=page, headers=extra, form={"token": "tok-a", "csrf": _csrf(body)})
        name, attrs = _attrs(_set_cookies(headers)[0])
        assert status == 303 and name == guard.cookie_name
        assert attrs == {"Path=/", "HttpOnly", "SameSite=Strict"} | want, scheme


def test_behind_https_the_cookie_is_always_secure_and_host_prefixed(tmp_path: Path) -> None:
    app, guard = _console(tmp_path, hosts=[ASGI_HOST, *LOOPBACK_HOSTS], behind_https=True)
    assert re.fullmatch(r"__Host-plr_console_[0-9a-f]{12}", guard.cookie_name), guard.cookie_name
    # __Host-: Secure, Path=/ and no Domain, or the browser drops it; from the HTTPS page and
    # from a loopback page alike (browsers keep Secure cookies of http://localhost, 127.0.0.1, [::1])
    for page in (f"https://{ASGI_HOST}", *(f"http://{h}" for h in LOOPBACK_HOSTS)):
        jar = Jar()
        name, attrs = _attrs(_sign_in(app, jar, page=page))
        assert name == guard.cookie_name and attrs == {"Path=/", "HttpOnly", "SameSite=Strict", "Secure"}, page
        assert _who(app, jar, page=page) == "alice"
        csrf = _csrf(_call(app, "GET", "/", page=page, cookie=jar.header())[2])
        status, headers, _ = _call(app, "POST", "/logout", page=page, cookie=jar.header(), form={"csrf": csrf})
        cleared = _attrs(_set_cookies(headers)[0])
        assert status == 303 and cleared == (guard.cookie_name, {"Path=/", "HttpOnly", "SameSite=Strict", "Secure", "Max-Age=0"})


@pytest.mark.parametrize(
    "host", [ASGI_HOST, "10.0.0.5:8766", "127.0.0.1.nip.io:8766", "localhost.example:8766"]
)
def test_behind_https_a_sign_in_from_a_plain_http_page_is_refused_and_said(tmp_path: Path, host: str) -> None:
    """The browser would drop the Secure cookie there (a sign-in that silently loops), and the
    token crossed the network in clear: the page says so and no session is made. Names are
    never looked up: a name that resolves to loopback is not loopback."""
    app, guard = _console(tmp_path, hosts=[host], behind_https=True)
    page = f"http://{host}"
    _, _, body = _call(app, "GET", "/login", page=page)
    status, headers, body = _call(app, "POST", "/login", page=page, form={"token": "tok-a", "csrf": _csrf(body)})
    assert status == 403 and "--behind-https" in body and "https://" in body, body
    assert _set_cookies(headers) == [] and guard.live_sessions == 0


# -- the flag -------------------------------------------------------------------------------------


def test_behind_https_reaches_the_console_and_is_off_by_default(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from dsl.cli import console as cli

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tok-a": "alice"}))
    got: list[Any] = []
    monkeypatch.setattr(cli, "_serve", lambda cfg, *a: got.append(cfg.guard))
    base = ["--listen", "127.0.0.1:0", "--db", str(tmp_path / "q"), "--auth-tokens", str(tokens)]
    for args in ([], ["--behind-https"]):
        result = CliRunner().invoke(cli.console_cmd, [*base, *args])
        assert result.exit_code == 0, result.output
    assert [(g.behind_https, g.cookie_name.startswith("__Host-")) for g in got] == [(False, False), (True, True)]
    assert "--behind-https" in CliRunner().invoke(cli.console_cmd, ["--help"]).output


# -- real consoles --------------------------------------------------------------------------------


def _http_sign_in(c: Any, jar: Jar, token: str) -> str:
    """Sign in to the real console ``c`` over HTTP with the browser's cookies: the Set-Cookie."""
    _, body, _ = c.get("/login", headers={"Cookie": jar.header()} if jar.cookies else {})
    headers = {"Origin": c.url, "Content-Type": "application/x-www-form-urlencoded", "Cookie": jar.header()}
    status, _, h = c.request("POST", "/login", urlencode({"token": token, "csrf": _csrf(body)}).encode(), headers)
    assert status == 303, h
    jar.take(h["set-cookie"])
    return h["set-cookie"]


@pytest.mark.slow
def test_two_real_consoles_on_one_address_keep_their_own_sign_ins(tmp_path: Path, start_console) -> None:  # noqa: ANN001
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    first = start_console("--db", str(tmp_path / "q1.sqlite"), "--auth-tokens", str(tokens))
    second = start_console("--db", str(tmp_path / "q2.sqlite"), "--auth-tokens", str(tokens))
    jar = Jar()  # 127.0.0.1: one jar for both ports
    names = [_attrs(_http_sign_in(c, jar, t))[0] for c, t in ((first, "tok-a"), (second, "tok-b"))]
    assert names[0] != names[1] and sorted(jar.cookies) == sorted(names)
    for c, who in ((first, "alice"), (second, "bob")):
        status, body, _ = c.get("/", headers={"Cookie": jar.header()})
        assert status == 200 and f"signed in as {who}" in body


@pytest.mark.slow
def test_in_a_browser_two_consoles_and_a_behind_https_console_on_loopback(tmp_path: Path, start_console, browser) -> None:  # noqa: ANN001
    """Chromium keeps each console's cookie (signing in to one does not sign the other out), and
    keeps the __Host- Secure cookie of a --behind-https console reached on http://127.0.0.1."""
    from playwright.sync_api import expect

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    consoles = [
        (start_console("--db", str(tmp_path / "q1.sqlite"), "--auth-tokens", str(tokens)), "tok-a", "alice"),
        (start_console("--db", str(tmp_path / "q2.sqlite"), "--auth-tokens", str(tokens)), "tok-b", "bob"),
        (start_console("--db", str(tmp_path / "q3.sqlite"), "--auth-tokens", str(tokens), "--behind-https"), "tok-a", "alice"),
    ]
    context = browser.new_context()
    try:
        page = context.new_page()
        for c, token, _ in consoles:
            page.goto(c.url + "/")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            expect(page.locator(".who")).to_be_visible(timeout=10000)
        for c, _, who in consoles:  # each still signed in after the others' sign-ins
            page.goto(c.url + "/")
            expect(page.locator(".who")).to_have_text(f"signed in as {who}", timeout=10000)
        jar = {k["name"]: k for k in context.cookies()}
        assert len(jar) == 3 and sum(n.startswith("__Host-plr_console_") for n in jar) == 1, jar
        assert all(k["secure"] == k["name"].startswith("__Host-") for k in jar.values()), jar
    finally:
        context.close()
