"""What an approver is shown of a call: arguments cut to size, never silently.

The queues themselves (``SqliteApprovalQueue``, ``RedisApprovalQueue``, ``open_queue``) are
``dsl.state``'s: the proxy files a request and waits, ``plr approvals`` answers it, and both
show the call's arguments through the helpers here.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["short_args", "cut_marked", "args_for_display", "args_cut", "args_lookalikes", "SHOWN_MAX"]


def short_args(args_text: str, limit: int = 120) -> str:
    """One line's worth of the arguments; what is cut is said, never silently dropped."""
    if len(args_text) <= limit:
        return args_text
    return f"{args_text[: limit - 40]}… [{len(args_text) - (limit - 40)} more characters: plr approvals show ID]"


# What an approver is shown of a call's arguments, at most (a queue entry stays small). A human
# must not approve what they cannot see: whatever is cut is named, so they can decline instead.
SHOWN_MAX = 65536


_CUT_NOTE = " … [{n} more characters not shown: decline unless you know what they are]"
_CUT_AT_END = re.compile(r" … \[([1-9][0-9]*) more characters not shown: decline unless you know what they are\]\Z")


def cut_marked(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a note of how many more it has."""
    if len(text) <= limit:
        return text
    return text[:limit] + _CUT_NOTE.format(n=len(text) - limit)


def args_cut(args_text: str, limit: int = SHOWN_MAX) -> int | None:
    """How many characters of the call's arguments ``args_for_display`` cut from ``args_text``
    (its stored form), or None when nothing was cut.

    Unambiguous, and not for the arguments to fake: whole arguments are JSON, and a cut text never
    is (its first ``limit`` characters end inside the JSON object and its note holds no quote, so
    it cannot close a string either); a cut text is exactly ``limit`` characters and then the note.
    So a value that ends with a copy of the note is still JSON (not cut), and a cut is always seen.
    """
    m = _CUT_AT_END.search(args_text)
    if m is None or m.start() != limit:
        return None
    try:
        json.loads(args_text)
    except (ValueError, RecursionError):
        return int(m.group(1))
    return None


def args_for_display(args: Any, limit: int = SHOWN_MAX) -> str:
    """The arguments as the approver reads them: exactly the values that run on a grant, nothing
    redacted (the queue is readable by its owner only; redaction is the audit log's business)."""
    try:
        text = json.dumps(args, ensure_ascii=False, sort_keys=True, default=repr)
    except (ValueError, RecursionError, TypeError):
        return "<unprintable>"
    return cut_marked(text, limit)


def args_lookalikes(args_text: str) -> str | None:
    """A warning for the approver when a request's arguments hold words whose letters look like
    others (``vocab.lookalike_words``: `exаmple.com` with a Cyrillic а reads as example.com and is
    another domain), or None. The words of every key and string value count; Approve stays
    possible (Ukrainian text beside a brand name is honest), the approver is told what to check."""
    import json

    from ..vocab import json_strings, lookalike_words

    try:
        value = json.loads(args_text)
    except (ValueError, RecursionError):
        return None  # (unreadable arguments have their own warning)
    # every string: the queue keeps at most 64 KiB of readable arguments (cut ones are not JSON),
    # so padding cannot push a spoofed word past a count
    found, more = lookalike_words("\n".join(json_strings(value)))
    if not found:
        return None
    words = "; ".join(f"`{w}` holds {letters}" for w, letters in found)
    if more:
        words += f"; and {more} more such word{'s' if more != 1 else ''} (plr approvals show ID lists the arguments)"
    return f"look-alike letters: {words}. What you read is not what the server gets: check these before you approve."
