"""Who may use the console and how a request proves it came from the console's own page.

- Listening beyond loopback needs ``--auth-tokens`` (the proxy's file: ``{"TOKEN": "identity"}``);
  a browser signs in once with its token and gets an HttpOnly, SameSite=Strict session cookie
  named for this process alone (``plr_console_`` and a random suffix: browsers send a host's
  cookies to every port of it, so two consoles on one host name must not share a name), Secure
  when the sign-in page was HTTPS, always Secure and ``__Host-`` prefixed with ``behind_https``;
  a script may send ``Authorization: Bearer TOKEN`` instead. A session ends when it has not been
  used for ``idle`` seconds (the page's open event stream and its refreshes are use), ``lifetime``
  seconds after sign-in however much it is used, at sign-out, or when ``max_sessions`` newer ones
  push it out; an ended session is forgotten and is exactly no session. Times are read on
  ``time.monotonic`` (a wall clock stepped back must not make a session young again). The token's identity is recorded as
  ``decided_by`` of every decision. Without tokens (loopback only) the console acts as the user
  it runs as, exactly as `plr approvals grant` does.
- Every state-changing request (POST) must carry the CSRF token of the page it came from (an
  HMAC of this process's secret and the live session, so an ended session's token is void) and an ``Origin`` (or, failing that, a
  ``Referer``) naming the host it was sent to; the ``Host`` must name the listener (the proxy's
  DNS-rebinding names, ``dsl.listener_names``) unless a public listener with tokens is reached by
  any name, as the proxy's HTTP front allows.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

__all__ = ["ConsoleGuard", "COOKIE_PREFIX", "DEFAULT_IDLE", "DEFAULT_LIFETIME", "MAX_SESSIONS", "lifetime_problem"]

# the session cookie is COOKIE_PREFIX and a random suffix, new at every start (``ConsoleGuard.cookie_name``):
# browsers do not keep cookies apart by port, so a fixed name would let two consoles on one host
# name overwrite (sign out) each other's sign-in; a restart signs everyone out anyway
COOKIE_PREFIX = "plr_console_"
HOST_PREFIX = "__Host-"  # with behind_https: the browser keeps it only if Secure, Path=/, no Domain
# NIST SP 800-63B's AAL2 re-authentication bounds (also OWASP ASVS level 2): a session idle for
# 30 minutes, or 12 hours after sign-in however busy, must sign in again. Approving an agent's
# tool call is a privileged act; a working day is one sign-in, a lunch break another.
DEFAULT_IDLE = 30 * 60.0
DEFAULT_LIFETIME = 12 * 3600.0
LONGEST = 30 * 24 * 3600.0  # no lifetime beyond 30 days
MAX_SESSIONS = 1000  # live sessions at once; the oldest sign-in is forgotten to make room
PER_IDENTITY = 20  # live sessions of one identity (its browsers); its own oldest makes room
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # not no-referrer: a POST would then carry Origin: null
    (b"cache-control", b"no-store"),
]


def lifetime_problem(seconds: float) -> str | None:
    """Why ``seconds`` cannot be a session lifetime (None: it can)."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or math.isnan(seconds):
        return "is not a number"
    if seconds <= 0:
        return "must be more than zero"
    if seconds > LONGEST:
        return "must be at most 30 days"
    return None


@dataclass
class _Session:
    identity: str
    signed_in: float  # clock() at sign-in
    used: float  # clock() at the last request that showed the cookie


class ConsoleGuard:
    """Sessions, CSRF tokens and the Host/Origin checks of one console process.

    ``idle`` and ``lifetime`` are seconds on ``clock`` (``time.monotonic``; a test passes its own).
    ``behind_https``: the operator says browsers reach the console over HTTPS (a TLS-terminating
    reverse proxy), so its cookie is always Secure and ``__Host-`` prefixed, and a sign-in from a
    plain-HTTP page beyond loopback is refused. Every call is made on the server's event loop,
    one at a time."""

    def __init__(
        self,
        tokens: Mapping[str, str] | None,
        *,
        operator: str | None,
        check_hosts: bool = True,
        idle: float = DEFAULT_IDLE,
        lifetime: float = DEFAULT_LIFETIME,
        max_sessions: int = MAX_SESSIONS,
        behind_https: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("idle", idle), ("lifetime", lifetime)):
            why = lifetime_problem(value)
            if why is not None:
                raise ValueError(f"session {name} {value!r} {why}")
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"max_sessions {max_sessions!r} must be a whole number of at least 1")
        self.tokens = dict(tokens) if tokens else None
        self.operator = operator  # who decides when there are no tokens (the console's OS user)
        self.check_hosts = check_hosts
        self.hosts: list[str] = []  # the Host values that name the listener (filled once bound)
        self.idle = float(idle)
        self.lifetime = float(lifetime)
        self.max_sessions = max_sessions
        self.per_identity = min(PER_IDENTITY, max_sessions)
        self._clock = clock
        self._secret = os.urandom(32)
        self.behind_https = bool(behind_https)
        # this process's cookie name, read by sign-in, sign-out, the CSRF token and every request alike
        self.cookie_name = (HOST_PREFIX if self.behind_https else "") + COOKIE_PREFIX + secrets.token_hex(6)
        self._sessions: dict[str, _Session] = {}  # cookie value -> session, oldest sign-in first

    # -- sessions -----------------------------------------------------------------------------

    @property
    def live_sessions(self) -> int:
        self._sweep()
        return len(self._sessions)

    def _ended(self, s: _Session, now: float) -> bool:
        return now - s.signed_in >= self.lifetime or now - s.used >= self.idle

    def _live(self, sid: str | None, *, use: bool = False) -> _Session | None:
        """The live session of cookie value ``sid`` (an ended one is forgotten here); ``use``
        counts this request as use (resets the idle time)."""
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None:
            return None
        now = self._clock()
        if self._ended(s, now):
            del self._sessions[sid]
            return None
        if use:
            s.used = now
        return s

    def _sweep(self) -> None:
        now = self._clock()
        for sid in [sid for sid, s in self._sessions.items() if self._ended(s, now)]:
            del self._sessions[sid]

    # -- identity -----------------------------------------------------------------------------

    def identity(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
        """The signed-in identity, or None (tokens required and none valid)."""
        if self.tokens is None:
            return self.operator or "(console)"
        from ..proxy.http import identity_for_header

        auth = headers.get("authorization")
        if auth:
            return identity_for_header(self.tokens, auth)
        s = self._live(cookies.get(self.cookie_name), use=True)  # a request with the cookie is use
        return s.identity if s is not None else None

    def still_signed_in(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        """For a long request (the event stream): whether its sign-in still holds; an open
        stream of a page counts as use of its session, as the page's refreshes do."""
        return self.identity(headers, cookies) is not None

    def sign_in(self, token: str, replacing: str | None = None) -> tuple[str, str] | None:
        """(cookie value, identity) for a valid token, else None. ``replacing``: the cookie the
        browser had (its session, if any, ends: one browser, one session)."""
        from ..proxy.http import identity_for_header

        if self.tokens is None:
            return None
        who = identity_for_header(self.tokens, f"Bearer {token}")
        if who is None:
            return None
        if replacing:
            self._sessions.pop(replacing, None)
        self._sweep()
        # one identity's sign-ins make room among its own first: a token holder signing in in a
        # loop pushes out its own oldest sessions, never another identity's
        own = [k for k, v in self._sessions.items() if v.identity == who]
        while own and len(own) >= self.per_identity:
            del self._sessions[own.pop(0)]
        while len(self._sessions) >= self.max_sessions:  # signing in in a loop cannot grow memory
            del self._sessions[next(iter(self._sessions))]  # the oldest sign-in
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        self._sessions[sid] = _Session(who, now, now)
        return sid, who

    def sign_out(self, cookies: Mapping[str, str]) -> None:
        self._sessions.pop(cookies.get(self.cookie_name, ""), None)

    # -- CSRF ---------------------------------------------------------------------------------

    def csrf(self, cookies: Mapping[str, str]) -> str:
        """The CSRF token of this browser's session (the page embeds it in every form). Only a
        live session has its own: a cookie whose session ended (signed out, expired, pushed
        out) gets the token of no session, so the ended session's token no longer passes."""
        sid = cookies.get(self.cookie_name)
        key = f"session:{sid}" if self._live(sid) is not None else "anonymous"
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, cookies: Mapping[str, str], given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf(cookies), given or "")

    # -- Host and Origin ----------------------------------------------------------------------

    def host_ok(self, host: str | None) -> bool:
        if not self.check_hosts:
            return True
        host = (host or "").lower()
        for name in self.hosts:  # exact, or the proxy's "name:*" (that name on any port)
            if host == name or (name.endswith(":*") and host.startswith(name[:-1]) and host[len(name) - 1 :].isdigit()):
                return True
        return False

    def origin_ok(self, headers: Mapping[str, str]) -> bool:
        """A state-changing request comes from a page of this very console: its Origin (or
        Referer, when a browser sent no Origin) has the scheme http(s) and the request's Host."""
        host = (headers.get("host") or "").lower()
        page = _page(headers)
        return bool(host) and page is not None and page.scheme in ("http", "https") and page.netloc.lower() == host

    # -- the cookie ---------------------------------------------------------------------------

    def https_refusal(self, headers: Mapping[str, str]) -> str | None:
        """With ``behind_https``, why a sign-in sent from this page is refused (None: it is not):
        a plain-HTTP page beyond loopback would never get its Secure cookie back (a sign-in loop),
        and its token crossed the network in clear; say so instead."""
        if not self.behind_https:
            return None
        page = _page(headers)
        if page is not None and (page.scheme == "https" or _loopback_name(page.hostname or "")):
            return None
        return (
            "plr console: this console is reached over HTTPS (--behind-https): sign in on its https:// "
            "address (the token just sent over plain HTTP may have been read: consider replacing it)"
        )

    def cookie_header(self, sid: str, headers: Mapping[str, str], *, clear: bool = False) -> bytes:
        """The session cookie's Set-Cookie value for the request with ``headers``: a browser
        session's cookie, no Max-Age (OWASP's advice for session cookies: closing the browser
        drops it; the server ends it sooner). Secure with ``behind_https``, or when the page the
        request came from was HTTPS (its Origin, the browser's own word, not a proxy's
        X-Forwarded-Proto): a browser on HTTPS keeps a Secure cookie, so this cannot sign it out."""
        page = _page(headers)
        secure = self.behind_https or (page is not None and page.scheme == "https")
        attrs = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
        if clear:
            return f"{self.cookie_name}={attrs}; Max-Age=0".encode()
        return f"{self.cookie_name}={sid}{attrs}".encode()


def _page(headers: Mapping[str, str]) -> SplitResult | None:
    """The page a request came from: its Origin, else its Referer (a browser sends one on every
    POST; neither can be set by a page's script), parsed; None without one."""
    source = headers.get("origin") or headers.get("referer")
    if not source or source == "null":
        return None
    try:
        return urlsplit(source)
    except ValueError:
        return None


def _loopback_name(host: str) -> bool:
    """Whether a page's host name is loopback as browsers see it (they keep Secure cookies set
    over plain HTTP there): ``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1``. Never looked
    up: the name comes from the request."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def header_map(scope: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers, lower-case names; the first of a repeated one wins."""
    out: dict[str, str] = {}
    for k, v in scope.get("headers") or []:
        out.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
    return out
