"""A webhook's ``text`` is rendered by Slack and its look-alikes: the fields someone else chose
(the agent's tool name, the server's name, the identity) must never add a line, a link or
formatting that reads as plr's own, e.g. a fake "Answer:" link to a page that asks the approver
for their console token."""

from __future__ import annotations

import re

from dsl.proxy.notify import FIELD_MAX, approval_message

CONSOLE = "http://127.0.0.1:8766"
FORGED_SERVER = "fs). Answer: <https://evil.example/login|http://127.0.0.1:8766/#req-ok>\n*Routine read-only call, safe to approve*"


def _text(**fields: object) -> str:
    base = {"id": "3f9c2a1b", "tool": "cancel-task", "reason": "a human must approve", "identity": "ops", "server": "tasks"}
    return approval_message({**base, **fields}, console_url=CONSOLE)["text"]


def test_plain_fields_read_as_before() -> None:
    assert _text() == (
        "plr: approval needed for `cancel-task`: `a human must approve` (identity `ops`, server `tasks`). "
        f"Answer: {CONSOLE}/#req-3f9c2a1b"
    )


def test_a_hostile_server_name_adds_no_link_line_or_formatting() -> None:
    text = _text(server=FORGED_SERVER)
    assert "\n" not in text
    assert "<" not in text and ">" not in text  # Slack's links and mentions: <url|label>, <!channel>
    assert text.count("Answer:") == 2 and text.endswith(f"Answer: {CONSOLE}/#req-3f9c2a1b")
    inside = re.search(r"server `([^`]*)`", text)
    assert inside and "*Routine" in inside.group(1)  # its asterisks inside inline code: not bold


def test_a_tool_name_cannot_close_its_code_span() -> None:
    text = _text(tool="x` *approve me* `y", identity="<!channel>")
    assert "`x\u2035 *approve me* \u2035y`" in text
    assert "&lt;!channel&gt;" in text


def test_control_and_bidi_characters_are_shown_escaped() -> None:
    text = _text(tool="get\u202etask", reason="line one\rline two\u2028three")
    assert "get\\u202etask" in text and "\r" not in text and "\u2028" not in text


def test_a_long_field_is_cut_in_the_text_and_whole_in_the_record() -> None:
    tool = "t" * 5000
    msg = approval_message({"id": "1", "tool": tool}, console_url=None)
    assert len(msg["text"]) < FIELD_MAX + 200 and "…" in msg["text"]
    assert msg["approval"]["tool"] == tool


def test_a_reason_naming_the_tool_cannot_close_its_code_span() -> None:
    """A reason the engine writes for a rule on every tool names the called tool: the agent's
    choice, e.g. one that closes a code span and adds bold text and a bare URL Slack would link."""
    tool = "fs` *Answer:* https://evil.example/approve?req=1 `x"
    text = _text(tool=tool, reason=f"tool `{tool}`: requirement not met")
    outside = re.sub(r"`[^`]*`", "", text)  # what Slack formats and links
    assert text.count("`") % 2 == 0
    assert "evil.example" not in outside and "*" not in outside
    assert outside.endswith(f"Answer: {CONSOLE}/#req-3f9c2a1b")
