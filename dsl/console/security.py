"""Who may use the console and how a request proves it came from the console's own page.

- Listening beyond loopback needs ``--auth-tokens`` (the proxy's file: ``{"TOKEN": "identity"}``);
  a browser signs in once with its token and gets an HttpOnly, SameSite=Strict session cookie;
  a script may send ``Authorization: Bearer TOKEN`` instead. The token's identity is recorded as
  ``decided_by`` of every decision. Without tokens (loopback only) the console acts as the user
  it runs as, exactly as `plr approvals grant` does.
- Every state-changing request (POST) must carry the CSRF token of the page it came from (an
  HMAC of this process's secret and the session) and an ``Origin`` (or, failing that, a
  ``Referer``) naming the host it was sent to; the ``Host`` must name the listener (the proxy's
  DNS-rebinding names, ``dsl.listener_names``) unless a public listener with tokens is reached by
  any name, as the proxy's HTTP front allows.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ConsoleGuard", "SESSION_COOKIE"]

SESSION_COOKIE = "plr_console"
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


class ConsoleGuard:
    """Sessions, CSRF tokens and the Host/Origin checks of one console process."""

    def __init__(self, tokens: Mapping[str, str] | None, *, operator: str | None, check_hosts: bool = True) -> None:
        self.tokens = dict(tokens) if tokens else None
        self.operator = operator  # who decides when there are no tokens (the console's OS user)
        self.check_hosts = check_hosts
        self.hosts: list[str] = []  # the Host values that name the listener (filled once bound)
        self._secret = os.urandom(32)
        self._sessions: dict[str, str] = {}  # cookie value -> identity

    # -- identity -----------------------------------------------------------------------------

    def identity(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
        """The signed-in identity, or None (tokens required and none valid)."""
        if self.tokens is None:
            return self.operator or "(console)"
        from ..proxy.http import identity_for_header

        auth = headers.get("authorization")
        if auth:
            return identity_for_header(self.tokens, auth)
        sid = cookies.get(SESSION_COOKIE)
        return self._sessions.get(sid) if sid else None

    def sign_in(self, token: str) -> tuple[str, str] | None:
        """(cookie value, identity) for a valid token, else None."""
        from ..proxy.http import identity_for_header

        if self.tokens is None:
            return None
        who = identity_for_header(self.tokens, f"Bearer {token}")
        if who is None:
            return None
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = who
        return sid, who

    def sign_out(self, cookies: Mapping[str, str]) -> None:
        self._sessions.pop(cookies.get(SESSION_COOKIE, ""), None)

    # -- CSRF ---------------------------------------------------------------------------------

    def csrf(self, cookies: Mapping[str, str]) -> str:
        """The CSRF token of this browser's session (the page embeds it in every form)."""
        key = cookies.get(SESSION_COOKIE) or "anonymous"
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
        source = headers.get("origin") or headers.get("referer")
        if not source or source == "null" or not host:
            return False
        try:
            parts = urlsplit(source)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host


def cookie_header(sid: str, *, clear: bool = False) -> bytes:
    if clear:
        return f"{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0".encode()
    return f"{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict".encode()


def header_map(scope: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers, lower-case names; the first of a repeated one wins."""
    out: dict[str, str] = {}
    for k, v in scope.get("headers") or []:
        out.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
    return out
