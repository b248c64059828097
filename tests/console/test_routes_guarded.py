"""Every console route but the sign-in page and the static files refuses a visitor who has not
signed in (when tokens are configured). The routes are read from the application itself, so a
route added without thought is tested too: this fails if a new route answers without sign-in.

In process, through the ASGI interface: no server is started.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio

from dsl.console.app import ConsoleConfig, create_app, is_public, public
from dsl.console.security import ConsoleGuard
from dsl.console.sources import AuditTail, QueueSource
from tests.console.conftest import ASGI_HOST, asgi_scope

TOKENS = {"s3cret-token": "alice"}
HOST = ASGI_HOST
PUBLIC_PATHS = {"/login", "/static/{name}"}  # the only routes a visitor may reach unsigned


def _app(tmp_path: Path, tokens: dict[str, str] | None = TOKENS) -> Any:
    guard = ConsoleGuard(tokens, operator="os-user")
    guard.hosts[:] = [HOST]
    cfg = ConsoleConfig(queue=QueueSource(db=tmp_path / "approvals.sqlite"), audit=AuditTail([]), guard=guard)
    return create_app(cfg)


def _call(app: Any, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """(status, headers) of one request sent straight to the ASGI application."""
    sent: list[dict[str, Any]] = []
    scope = asgi_scope(method, path, headers)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        with anyio.fail_after(5):
            await app(scope, receive, send)

    anyio.run(run)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def _requests(app: Any) -> list[tuple[str, str, str, bool]]:
    """(method, concrete path, route path, public) for every method of every route of the app."""
    out = []
    for route in app.app.routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted(route.methods or {"GET"}):
            out.append((method, path, route.path, is_public(route)))
    return out


def test_only_the_sign_in_page_and_static_files_are_public(tmp_path: Path) -> None:
    routes = _requests(_app(tmp_path))
    assert {r[2] for r in routes if r[3]} == PUBLIC_PATHS  # making a route public is a decision: say it here
    assert {r[2] for r in routes if not r[3]} >= {"/", "/approvals/{aid}", "/events", "/fragments/audit", "/policy"}


def test_every_route_that_is_not_public_refuses_an_unsigned_request(tmp_path: Path) -> None:
    app = _app(tmp_path)
    checked = 0
    for method, path, route, is_pub in _requests(app):
        if is_pub:
            continue
        for headers in ({}, {"authorization": "Bearer wrong-token"}, {"cookie": f"{app.guard.cookie_name}=forged-session"}):
            status, h = _call(app, method, path, headers)
            refused = status == 401 or (status == 303 and h.get("location") == "/login")
            assert refused, f"{method} {route} answered {status} without sign-in ({headers})"
            assert h.get("x-frame-options") == "DENY"  # a refusal carries the security headers too
            checked += 1
    assert checked >= 3 * 8


def test_a_path_no_route_serves_is_refused_before_it_is_looked_up(tmp_path: Path) -> None:
    assert _call(_app(tmp_path), "GET", "/no-such-page")[0] == 303


def test_a_signed_in_request_gets_through_the_same_guard(tmp_path: Path) -> None:
    """The refusals above are the guard's, not routes that always refuse."""
    app = _app(tmp_path)
    bearer = {"authorization": "Bearer s3cret-token"}
    for path in ("/", "/fragments/approvals", "/audit", "/fragments/audit", "/policy"):
        assert _call(app, "GET", path, bearer)[0] == 200, path
    assert _call(app, "GET", "/no-such-page", bearer)[0] == 404
    # without tokens (loopback only) the console acts as the user it runs as
    assert _call(_app(tmp_path, tokens=None), "GET", "/policy")[0] == 200


def test_public_routes_answer_without_sign_in(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert _call(app, "GET", "/login")[0] == 200
    assert _call(app, "GET", "/static/console.css")[0] == 200
    assert _call(app, "GET", "/static/nope.js")[0] == 404


def test_a_route_added_without_the_public_mark_is_guarded(tmp_path: Path) -> None:
    """A new route is guarded by default: the check sits in front of the router, not in each endpoint."""
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    app = _app(tmp_path)

    async def secret(request: Any) -> Any:
        return PlainTextResponse("secret")

    app.app.router.routes.append(Route("/new-page", secret))
    assert _call(app, "GET", "/new-page")[0] == 303
    assert _call(app, "GET", "/new-page", {"authorization": "Bearer s3cret-token"})[0] == 200
    async def open_page(request: Any) -> Any:
        return PlainTextResponse("open")

    app.app.router.routes.append(Route("/open-page", public(open_page)))
    assert _call(app, "GET", "/open-page")[0] == 200


def test_a_guarded_route_behind_a_public_path_that_only_differs_in_method_stays_guarded(tmp_path: Path) -> None:
    """The guard asks about the route the router will pick (the first full match), not any
    route whose path matches: a public GET route does not open a guarded POST on the same path."""
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    app = _app(tmp_path)

    async def open_page(request: Any) -> Any:
        return PlainTextResponse("open")

    async def change(request: Any) -> Any:
        return PlainTextResponse("changed")

    app.app.router.routes.insert(0, Route("/both", public(open_page), methods=["GET"]))
    app.app.router.routes.append(Route("/both", change, methods=["POST"]))
    assert _call(app, "GET", "/both")[0] == 200
    assert _call(app, "POST", "/both")[0] == 303  # the guarded endpoint, not reached unsigned
    assert _call(app, "POST", "/both", {"authorization": "Bearer s3cret-token"})[0] == 200


def test_a_websocket_is_closed_before_any_route(tmp_path: Path) -> None:
    app = _app(tmp_path)
    sent: list[dict[str, Any]] = []
    scope = {"type": "websocket", "path": "/events", "headers": [(b"host", HOST.encode())], "query_string": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(lambda: app(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]
