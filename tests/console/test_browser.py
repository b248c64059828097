"""The console in a real browser, in front of a real proxy: a real MCP client's call waits for a
human, the request appears on the open page by itself (server-sent events) with its arguments,
and Approve / Deny in the page decide the waiting call.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.console.conftest import screenshot
from tests.proxy.conftest import ProxySetup
from tests.proxy.helpers import text

pytestmark = pytest.mark.slow

HOSTILE = "<script>alert('x')</script>"
LONG = "line of a long prompt " * 40


class Calls:
    """A real MCP client, in a thread of its own, making calls through `plr proxy --approval queue`."""

    def __init__(self, setup: ProxySetup, calls: list[tuple[str, dict[str, Any]]]) -> None:
        self.results: list[Any] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(setup, calls), daemon=True)
        self._thread.start()

    def _run(self, setup: ProxySetup, calls: list[tuple[str, dict[str, Any]]]) -> None:
        from mcp import Client

        async def go() -> None:
            params = setup.params("--approval", "queue", "--approval-timeout", "60")
            async with Client(params, mode="legacy", cache=None) as c:
                for tool, args in calls:
                    self.results.append(await c.call_tool(tool, args))

        try:
            anyio.run(go)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            self.done.set()

    def wait(self, n: int, timeout: float = 60) -> list[Any]:
        import time

        deadline = time.monotonic() + timeout
        while len(self.results) < n and time.monotonic() < deadline and not self.done.is_set():
            time.sleep(0.05)
        assert self.error is None, self.error
        assert len(self.results) >= n, "the client's call did not complete"
        return self.results


def test_approve_and_deny_in_the_browser(tmp_path: Path, browser, start_console) -> None:  # noqa: ANN001
    setup = ProxySetup(tmp_path)
    console = start_console("--db", str(setup.db), "--audit", str(setup.audit), "--policy", str(setup.policy))
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(console.url + "/")
    # the queue does not exist until the proxy's first request: the page says so, never "empty"
    assert "no approval queue" in page.locator("#approvals").inner_text()

    calls = Calls(
        setup,
        [
            ("cancel-task", {"task_id": HOSTILE, "comment": LONG}),
            ("cancel-task", {"task_id": "t-2"}),
        ],
    )
    # 1. the request appears by itself (live), with its arguments, rule and reason
    request = page.locator("article.request").filter(has_text="cancel-task")
    request.wait_for(timeout=60000)
    body = request.inner_text()
    assert HOSTILE in body  # shown as text, never run
    assert "Destructive: cancels running tasks" in body and "policy.plr:" in body
    assert "characters: show all" in body  # the long value is folded
    assert page.locator("#live").inner_text() == "live"
    screenshot(page, "approvals-pending")
    request.get_by_role("button", name="Approve", exact=True).click()
    page.locator(".notice").wait_for()
    assert "granted by" in page.locator(".notice").inner_text()
    [granted] = calls.wait(1)
    assert not granted.is_error, text(granted)
    assert setup.called_tools() == ["cancel-task"]

    # 2. the next one: denied with a note
    request = page.locator("article.request").filter(has_text="t-2")
    request.wait_for(timeout=60000)
    request.get_by_label("Note").fill("not during the release")
    request.get_by_role("button", name="Deny", exact=True).click()
    _, refused = calls.wait(2)
    assert refused.is_error and "a human declined this call" in text(refused)
    assert setup.called_tools() == ["cancel-task"]  # the denied call never reached the server
    notice = page.locator(".notice").inner_text()
    assert "denied by" in notice and "not during the release" in notice
    screenshot(page, "approvals-answered")

    # the queue recorded both answers, with who and the note; the console's decisions are the CLI's
    from dsl.state.sqlite import SqliteApprovalQueue

    answered = {json.loads(a.args)["task_id"]: a for a in SqliteApprovalQueue(setup.db, create=False).list(include_done=True)}
    assert answered[HOSTILE].status == "used" and answered[HOSTILE].decided_by
    assert answered["t-2"].status == "denied" and answered["t-2"].note == "not during the release"
    assert not dialogs  # the hostile argument never ran

    # 3. the audit page lists the decisions; a click shows the whole record
    page.goto(console.url + "/audit")
    recs = page.locator("li.rec")
    assert recs.count() == len([r for r in setup.records()])
    first = recs.filter(has_text="approval_declined").first
    first.locator("summary").click()
    assert '"approval_id"' in first.locator("pre.record").inner_text()
    assert page.locator("svg.chart rect").count() > 0
    page.select_option("select[name=effect]", "deny")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("li.rec").count() == 1
    screenshot(page, "audit")
    page.goto(console.url + "/policy")
    assert page.locator("table.policy").inner_text().count("cancel-task") == 1
    screenshot(page, "policy")
    page.close()
