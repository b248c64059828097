"""The console's web application (starlette): pages, fragments, server-sent events, decisions.

The pages are rendered on the server (``render``); ``static/console.js`` only swaps in fresh
fragments when ``/events`` says something changed (never moving the approvals list under the
pointer, see its header), counts down expiries and keeps the page's place. Without JavaScript
every page still works (forms post the id of the request they were rendered in, the server
redirects back).

A decision (``POST /approvals/ID``) is the queue's own ``answer`` with the signed-in identity as
``who``: exactly `plr approvals grant/deny`, so the waiting call proceeds or is denied at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request, cookie_parser
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Match, Route

from . import render
from ..audit_filters import AuditFilter
from .security import SECURITY_HEADERS, ConsoleGuard, header_map
from .sources import AuditTail, PolicyView, QueueSource

__all__ = ["ConsoleConfig", "create_app", "public", "IDENTITY"]

MAX_FORM = 16 * 1024  # a decision is an id, a note and a token
STATIC = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}


@dataclass
class ConsoleConfig:
    """What `plr console` was given, opened."""

    queue: QueueSource
    audit: AuditTail
    guard: ConsoleGuard
    policy: PolicyView | None = None
    poll: float = 0.5  # seconds between the server's looks at the queue and logs, per event stream
    _audit_lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh_audit(self) -> None:
        with self._audit_lock:
            self.audit.refresh()


IDENTITY = "plr.identity"  # the scope key where ``Guarded`` leaves the signed-in identity (None: nobody)


def public(endpoint: Any) -> Any:
    """Mark a route's endpoint as open to a visitor who has not signed in (the sign-in page
    itself, the script and stylesheet). Every other route needs a signed-in identity: ``Guarded``
    refuses the request before the endpoint runs, so a new route cannot forget the check."""
    endpoint.plr_public = True
    return endpoint


def is_public(route: Any) -> bool:
    return bool(getattr(getattr(route, "endpoint", None), "plr_public", False))


class Guarded:
    """ASGI middleware, in front of every route: the Host check on every request, the Origin
    check on every POST, the sign-in check on every route not marked ``public`` (a request
    without a valid session or bearer token is answered 401 on a fragment or event stream, and
    sent to /login otherwise; an expired or signed-out session is no session), and the security
    headers (CSP without inline script, no framing, no caching) on every answer. The identity is
    left in ``scope[IDENTITY]`` for the endpoints."""

    def __init__(self, app: Starlette, guard: ConsoleGuard) -> None:
        self.app = app
        self.guard = guard

    def _public(self, scope: Any) -> bool:
        """Whether the route this request goes to is open without sign-in; a path no route
        serves is not (it answers 404 only to someone signed in)."""
        partial = None
        for route in self.app.routes:  # the route the router will pick: the first full match
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return is_public(route)
            if match == Match.PARTIAL and partial is None:
                partial = route  # the path, not the method: answered 405, no endpoint runs
        return partial is not None and is_public(partial)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websocket route: none can slip past the sign-in check
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        headers = header_map(scope)
        why = None
        if not self.guard.host_ok(headers.get("host")):
            why = (421, "plr console: this Host does not name the console (DNS rebinding?)")
        elif scope["method"] not in ("GET", "HEAD") and not self.guard.origin_ok(headers):
            why = (403, "plr console: a state-changing request must come from the console's own page (Origin)")
        if why is not None:
            await PlainTextResponse(why[1], status_code=why[0], headers=dict(_headers()))(scope, receive, send)
            return
        # the cookies as starlette reads them for the endpoints (the CSRF token is bound to the same session)
        identity = self.guard.identity(headers, cookie_parser(headers.get("cookie", "")))
        if identity is None and not self._public(scope):
            await _need_login(scope["path"])(scope, receive, _with_headers(send))
            return
        scope = {**scope, IDENTITY: identity}
        await self.app(scope, receive, _with_headers(send))


def _with_headers(send: Any) -> Any:
    """``send`` with the security headers added to the response's start."""

    async def with_headers(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return with_headers


def _need_login(path: str) -> Response:
    """What a request without a signed-in identity gets: a fragment or the event stream (read
    by the page's script) a 401, anything else the sign-in page."""
    if path.startswith(("/fragments/", "/events")):
        return PlainTextResponse("plr console: sign in first", status_code=401)
    return RedirectResponse("/login", status_code=303)


def _headers() -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) for k, v in SECURITY_HEADERS]


def create_app(cfg: ConsoleConfig) -> Any:
    """The console as an ASGI application."""
    guard = cfg.guard

    def who(request: Request) -> str | None:
        """The identity ``Guarded`` found (never None on a route that is not ``public``)."""
        return request.scope.get(IDENTITY)

    def html(body: str, *, title: str, active: str, request: Request, status: int = 200, banner: str = "") -> HTMLResponse:
        page = render.page(
            title, body, csrf=guard.csrf(request.cookies), active=active, who=who(request), banner=banner
        )
        return HTMLResponse(page, status_code=status)

    async def approvals_body(request: Request) -> str:
        view = await anyio.to_thread.run_sync(cfg.queue.view)
        notice = ""
        aid = request.query_params.get("answered")
        if aid:
            a, err = await anyio.to_thread.run_sync(cfg.queue.get, aid[:64])
            notice = render.answer_notice(aid[:64], a, err)
        return render.approvals_fragment(view, guard.csrf(request.cookies), notice=notice)

    async def index(request: Request) -> Response:
        aid = request.query_params.get("answered")
        frag = "/fragments/approvals" + (f"?answered={quote(aid[:64], safe='')}" if aid else "")  # keeps the notice
        body = f'<section id="approvals" data-fragment="{render.esc(frag)}">{await approvals_body(request)}</section>'
        return html(body, title="Approvals", active="approvals", request=request)

    async def approvals_fragment(request: Request) -> Response:
        return HTMLResponse(await approvals_body(request))

    async def decide(request: Request) -> Response:
        identity = who(request)
        if identity is None:  # Guarded let nobody through; checked again where a decision is recorded
            return _need_login(request.url.path)
        form = await _form(request)
        if form is None:
            return PlainTextResponse("plr console: the form is too large or not a form", status_code=400)
        if not guard.csrf_ok(request.cookies, form.get("csrf")):
            return PlainTextResponse("plr console: the form's CSRF token is missing or stale: reload the page", status_code=403)
        decision = form.get("decision")
        if decision not in ("grant", "deny"):
            return PlainTextResponse("plr console: decision must be grant or deny", status_code=400)
        aid = request.path_params["aid"]
        note = (form.get("note") or "").strip()[:1000] or None
        if decision == "grant":
            # the page disables Approve for a request whose arguments it cannot show whole; a
            # form posted anyway (an old page, a script) is refused here, before the queue is touched
            # (a request that cannot be read is not approved either: its arguments were not checked)
            a, err = await anyio.to_thread.run_sync(cfg.queue.get, aid)
            if err is not None:
                return PlainTextResponse(f"plr console: not approved: {err}", status_code=503)
            hidden = render.hidden_args(a.args) if a is not None else None
            if hidden is not None:
                return PlainTextResponse(f"plr console: not approved: {hidden}", status_code=409)
        try:
            await anyio.to_thread.run_sync(cfg.queue.answer, aid, decision == "grant", note, identity)
        except Exception:  # noqa: BLE001 - the page that follows reads the queue and says what it holds
            pass
        return RedirectResponse(f"/?answered={quote(aid, safe='')}#req-{quote(aid, safe='')}", status_code=303)

    async def audit_body(request: Request) -> str:
        await anyio.to_thread.run_sync(cfg.refresh_audit)
        f = AuditFilter.from_query(request.query_params)
        return render.audit_fragment(list(cfg.audit.records), f, cfg.audit.errors)

    async def audit(request: Request) -> Response:
        if not cfg.audit.paths:
            body = "<h2>Audit</h2><p>Start the console with <code>--audit FILE</code> (the proxy's audit log) to see its decisions.</p>"
        else:
            logs = ", ".join(f"<code>{render.esc(p)}</code>" for p in cfg.audit.paths)
            frag = f"/fragments/audit{render.audit_query(AuditFilter.from_query(request.query_params))}"
            body = f'<p class="where">audit: {logs}</p><section id="audit" data-fragment="{render.esc(frag)}">{await audit_body(request)}</section>'
        return html(body, title="Audit", active="audit", request=request)

    async def audit_fragment(request: Request) -> Response:
        return HTMLResponse(await audit_body(request))

    async def policy(request: Request) -> Response:
        await anyio.to_thread.run_sync(cfg.refresh_audit)
        seen: list[str] = []
        for r in cfg.audit.records:
            sha = r.get("policy_sha256")
            if isinstance(sha, str) and (not seen or seen[-1] != sha):
                seen.append(sha)
        return html(render.policy_page(cfg.policy, seen[-5:]), title="Policy", active="policy", request=request)

    async def events(request: Request) -> Response:
        """Server-sent events: ``approvals`` when the queue changed, ``audit`` when records came."""

        async def stream() -> Any:
            # the first look comes before the stream opens: what changes after the open is sent
            # (the page refreshes itself once when the stream opens, for what changed before it)
            last_q: Any = (await anyio.to_thread.run_sync(cfg.queue.view)).signature()
            await anyio.to_thread.run_sync(cfg.refresh_audit)
            last_a = cfg.audit.version
            idle = 0.0
            yield "retry: 2000\n\n"
            while True:
                await anyio.sleep(cfg.poll)
                # the open stream of a page is use of its session (the page is live), and it
                # ends with the session (expired or signed out): the reconnect then gets 401
                if not guard.still_signed_in(request.headers, request.cookies):
                    return
                view = await anyio.to_thread.run_sync(cfg.queue.view)
                await anyio.to_thread.run_sync(cfg.refresh_audit)
                sig = view.signature()
                sent = False
                if sig != last_q:
                    yield "event: approvals\ndata: changed\n\n"
                    sent = True
                    last_q = sig
                if cfg.audit.version != last_a:
                    yield "event: audit\ndata: changed\n\n"
                    sent = True
                    last_a = cfg.audit.version
                idle = 0.0 if sent else idle + cfg.poll
                if idle >= 15:  # a comment keeps proxies and the browser from closing the stream
                    yield ": keep-alive\n\n"
                    idle = 0.0

        return StreamingResponse(stream(), media_type="text/event-stream")

    @public
    async def login(request: Request) -> Response:
        if guard.tokens is None:
            return RedirectResponse("/", status_code=303)
        if request.method == "GET":
            return html(render.login_page(guard.csrf(request.cookies)), title="Sign in", active="", request=request)
        form = await _form(request)
        if form is None or not guard.csrf_ok(request.cookies, form.get("csrf")):
            return PlainTextResponse("plr console: the form's CSRF token is missing or stale: reload the page", status_code=403)
        refused = guard.https_refusal(request.headers)  # --behind-https: before the token is looked at
        if refused is not None:
            return PlainTextResponse(refused, status_code=403)
        got = guard.sign_in(form.get("token") or "", replacing=request.cookies.get(guard.cookie_name))
        if got is None:
            body = render.login_page(guard.csrf(request.cookies), "unknown token")
            return html(body, title="Sign in", active="", request=request, status=401)
        sid, _ = got
        resp = RedirectResponse("/", status_code=303)
        resp.raw_headers.append((b"set-cookie", guard.cookie_header(sid, request.headers)))
        return resp

    async def logout(request: Request) -> Response:
        form = await _form(request)
        if form is None or not guard.csrf_ok(request.cookies, form.get("csrf")):
            return PlainTextResponse("plr console: the form's CSRF token is missing or stale", status_code=403)
        guard.sign_out(request.cookies)
        resp = RedirectResponse("/login", status_code=303)
        resp.raw_headers.append((b"set-cookie", guard.cookie_header("", request.headers, clear=True)))
        return resp

    @public
    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404)
        data = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(data, media_type=STATIC[name])

    routes = [
        Route("/", index),
        Route("/fragments/approvals", approvals_fragment),
        Route("/approvals/{aid}", decide, methods=["POST"]),
        Route("/audit", audit),
        Route("/fragments/audit", audit_fragment),
        Route("/policy", policy),
        Route("/events", events),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/static/{name}", static),
    ]
    return Guarded(Starlette(routes=routes), guard)  # every route but the `public` ones needs sign-in


async def _form(request: Request) -> dict[str, str] | None:
    """An urlencoded form of at most ``MAX_FORM`` bytes (the first value of each field)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in parsed.items() if v}

