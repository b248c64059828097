"""An open console page whose session ends (its lifetime, here) says so and offers the way back,
instead of "reconnecting…" for ever: the browser does not retry an event stream answered 401,
and nothing on the page can be decided any more (headless Chromium, a real `plr console`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl.proxy.approvals import args_for_display
from dsl.proxy.audit import args_sha256
from dsl.state.sqlite import SqliteApprovalQueue

pytestmark = pytest.mark.slow


def test_a_page_whose_session_ended_says_signed_out_and_links_to_sign_in(tmp_path: Path, start_console, browser) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    q = SqliteApprovalQueue(tmp_path / "approvals.sqlite")
    q.file(tool="cancel-task", args_text=args_for_display({"task_id": "t-1"}), args_hash=args_sha256({"task_id": "t-1"}),
           timeout=300, identity="agent", session="s1", reason="needs a human")  # fmt: skip
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"s3cret-token": "alice@ops"}))
    # a lifetime of 0.002 h (7.2 s): long enough to sign in and see the page live
    c = start_console("--db", str(q.path), "--auth-tokens", str(tokens), "--session-lifetime", "0.002")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(c.url + "/")
        page.fill("input[name=token]", "s3cret-token")
        page.click("button[type=submit]")
        expect(page.locator("#live")).to_have_text("live", timeout=10000)
        approve = page.get_by_role("button", name="Approve")
        expect(approve).to_be_enabled()
        expect(page.locator("#live")).to_have_text("signed out: the session ended", timeout=20000)
        expect(page.locator("#sign-in-again")).to_have_attribute("href", "/login")
        expect(approve).to_be_disabled()
        page.click("#sign-in-again")
        expect(page.locator("input[name=token]")).to_be_visible()
    finally:
        page.close()

