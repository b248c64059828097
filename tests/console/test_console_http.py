"""`plr console` over plain HTTP: who may decide, what a forged or cross-site request gets, what
the page says when the queue cannot be read, and that hostile text stays text.

Each test starts a real console process against a real SQLite queue (the one the proxy writes).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from dsl.state.sqlite import SqliteApprovalQueue
from tests.conftest import ROOT
from tests.proxy.conftest import base_env

pytestmark = pytest.mark.slow

HOSTILE = '<script>alert("x")</script>'


def _file(q: SqliteApprovalQueue, tool: str = "cancel-task", args: object = None, timeout: float = 300) -> str:
    return q.file(
        tool=tool,
        args_text=json.dumps(args if args is not None else {"task_id": "t-1"}),
        args_hash="h",
        timeout=timeout,
        identity="agent-7",
        rule="policy.plr:9",
        reason="a human must approve",
    )


def _csrf(body: str) -> str:
    m = re.search(r'name="csrf-token" content="([0-9a-f]+)"', body)
    assert m, body[:500]
    return m.group(1)


def _form(**fields: str) -> bytes:
    return urlencode(fields).encode()


def test_decisions_need_the_page_origin_and_csrf_and_are_the_queues(tmp_path: Path, start_console) -> None:  # noqa: ANN001
    q = SqliteApprovalQueue(tmp_path / "approvals.sqlite")
    aid = _file(q, tool=f"tool{HOSTILE}", args={"task_id": HOSTILE, "note\u202e": "x"})
    expired = _file(q, timeout=0.01)
    c = start_console("--db", str(q.path))
    status, body, headers = c.get("/")
    assert status == 200
    assert HOSTILE not in body and "&lt;script&gt;" in body  # escaped, never markup
    assert "\\u202e" in body  # a direction override is shown, not obeyed
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    csrf = _csrf(body)
    origin = {"Origin": c.url, "Content-Type": "application/x-www-form-urlencoded"}

    # DNS rebinding: a page of another name that resolves here is refused
    assert c.get("/", headers={"Host": "attacker.example:80"})[0] == 421
    # a cross-site form (another Origin, or none) is refused before anything is read
    for bad in ({"Origin": "http://attacker.example"}, {}, {"Origin": "null"}):
        st, _, _ = c.request("POST", f"/approvals/{aid}", _form(decision="grant", csrf=csrf), bad)
        assert st == 403
    # the right origin without the page's CSRF token is refused too
    st, text, _ = c.request("POST", f"/approvals/{aid}", _form(decision="grant", csrf="0" * 64), origin)
    assert st == 403 and "CSRF" in text
    assert q.get(aid).status == "pending"  # none of them touched the queue

    st, _, h = c.request("POST", f"/approvals/{aid}", _form(decision="deny", csrf=csrf, note="too risky"), origin)
    assert st == 303 and h["location"].startswith(f"/?answered={aid}")
    a = q.get(aid)
    assert (a.status, a.note) == ("denied", "too risky") and a.decided_by  # recorded as `plr approvals deny` would
    _, body, _ = c.get(f"/?answered={aid}")
    assert f"{aid} denied by {a.decided_by}" in body
    # a request past its expiry cannot be approved, and the page says what the queue holds
    st, _, _ = c.request("POST", f"/approvals/{expired}", _form(decision="grant", csrf=csrf), origin)
    assert st == 303 and q.get(expired).effective_status() == "expired"
    _, body, _ = c.get(f"/?answered={expired}")
    assert f"{expired} was not answered: it is expired" in body and "granted by" not in body


def test_live_events_say_when_a_request_is_filed(tmp_path: Path, start_console) -> None:  # noqa: ANN001
    q = SqliteApprovalQueue(tmp_path / "approvals.sqlite")
    c = start_console("--db", str(q.path))
    host, port = c.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        seen = b""
        while b"retry:" not in seen:  # the stream is open: the server has taken its first look
            seen += s.recv(4096)
        _file(q)
        while b"event: approvals" not in seen:
            chunk = s.recv(4096)
            assert chunk, seen
            seen += chunk
    assert b"text/event-stream" in seen


def test_tokens_sign_in_and_the_token_identity_decides(tmp_path: Path, start_console) -> None:  # noqa: ANN001
    q = SqliteApprovalQueue(tmp_path / "approvals.sqlite")
    aid = _file(q)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"s3cret-token": "alice@ops"}))
    c = start_console("--db", str(q.path), "--auth-tokens", str(tokens))
    st, _, h = c.get("/")
    assert st == 303 and h["location"] == "/login"
    assert c.get("/fragments/approvals")[0] == 401 and c.get("/events")[0] == 401
    st, body, h = c.get("/login")
    csrf = _csrf(body)
    origin = {"Origin": c.url, "Content-Type": "application/x-www-form-urlencoded"}
    assert c.request("POST", "/login", _form(token="wrong", csrf=csrf), origin)[0] == 401
    st, _, h = c.request("POST", "/login", _form(token="s3cret-token", csrf=csrf), origin)
    assert st == 303 and "HttpOnly" in h["set-cookie"] and "SameSite=Strict" in h["set-cookie"]
    cookie = h["set-cookie"].split(";")[0]
    st, body, _ = c.get("/", headers={"Cookie": cookie})
    assert st == 200 and "signed in as alice@ops" in body
    csrf = _csrf(body)  # bound to this session: the anonymous page's token no longer works
    st, _, _ = c.request(
        "POST", f"/approvals/{aid}", _form(decision="grant", csrf=_csrf(c.get("/login")[1])), {**origin, "Cookie": cookie}
    )
    assert st == 403
    st, _, _ = c.request("POST", f"/approvals/{aid}", _form(decision="grant", csrf=csrf), {**origin, "Cookie": cookie})
    assert st == 303
    assert (q.get(aid).status, q.get(aid).decided_by) == ("granted", "alice@ops")
    # a script may use the bearer token directly
    assert "alice@ops" in c.get("/", headers={"Authorization": "Bearer s3cret-token"})[1]


def test_a_queue_it_cannot_read_is_said_on_the_page(tmp_path: Path, start_console) -> None:  # noqa: ANN001
    bogus = tmp_path / "not-a-queue.sqlite"
    bogus.write_bytes(b"this is not sqlite" * 100)
    c = start_console("--db", str(bogus))
    _, body, _ = c.get("/")
    assert "cannot reach the approval queue" in body and "not an SQLite approval queue" in body
    assert "Pending" not in body  # never an empty list that looks like "nothing to approve"


def test_refuses_a_public_address_without_tokens() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dsl.cli", "console", "--listen", "0.0.0.0:0"],
        cwd=str(ROOT),
        capture_output=True,
        timeout=60,
        env=base_env(),
    )
    assert proc.returncode == 2
    assert b"refusing to listen on 0.0.0.0 without --auth-tokens" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_audit_filters_and_counts(tmp_path: Path, start_console) -> None:  # noqa: ANN001
    audit = tmp_path / "audit.jsonl"
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    recs = [
        {"ts": now, "tool": "get-task", "effect": "allow", "code": "allowed", "identity": "a", "session": "s1"},
        {"ts": now, "tool": "cancel-task", "effect": "deny", "code": "approval_declined", "identity": "b", "session": "s2"},
        {"ts": "2001-01-01T00:00:00.000Z", "tool": "get-task", "effect": "deny", "code": "rate_limited", "identity": "a", "session": "s1"},
        {"ts": now, "event": "tools_compared", "when": "at start"},
    ]
    audit.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"torn": ')
    c = start_console("--db", str(tmp_path / "q.sqlite"), "--audit", str(audit))
    _, body, _ = c.get("/audit")
    assert "Records: 3 of 3" in body  # the event is not a decision; the torn line waits
    _, body, _ = c.get("/audit?" + urlencode({"tool": "get-task", "since": "1h"}))
    assert "Records: 1 of 3" in body
    _, body, _ = c.get("/audit?" + urlencode({"identity": "a", "effect": "deny"}))
    assert "Records: 1 of 3" in body and "rate_limited" in body
    _, body, _ = c.get("/audit?since=yesterday")
    assert "since: expected 90s" in body
    with audit.open("a") as f:  # the torn line completes; a new record arrives
        f.write('"x"}\n' + json.dumps({**recs[0], "tool": "list-tasks"}) + "\n")
    _, body, _ = c.get("/fragments/audit")
    assert "Records: 4 of 4" in body and "list-tasks" in body
