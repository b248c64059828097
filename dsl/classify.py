"""Risk classes of harvested tools: the server's own annotations first, then reviewed rules on
names and descriptions. Pure functions, so a reviewer can read (and test) every rule here.

Why this order: a server's ``readOnlyHint``/``destructiveHint`` is its author's statement and
the only source that is not a guess; everything else is marked ``inferred`` and listed for a
person to review (``plr catalog harvest`` writes that list). The rules are biased to the
stricter class: a tool whose name says nothing is ``write``, never ``read``, and a tool guessed
``read`` whose description speaks of writing or deleting is moved up (the issue's rule: never
``read`` by guess alone when the description mentions writing or deleting).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# the reviewed vocabulary: a word (or a simple inflection of it: -s, -es, -d, -ed, -ing) in a
# tool's name puts the tool in that class. The order of RULES is the order of severity.
DESTRUCTIVE = (
    "delete", "remove", "drop", "cancel", "purge", "destroy", "erase", "truncate", "wipe", "kill",
    "terminate", "revoke", "uninstall", "unlink", "rm", "rmdir", "reset", "clear", "overwrite", "force",
    "deactivate", "disable", "ban", "evict", "discard", "abort", "undeploy", "prune", "flush", "unpublish",
)
EXECUTE = (
    "exec", "execute", "run", "eval", "evaluate", "shell", "query", "sql", "command", "script",
    "invoke", "spawn", "bash", "terminal", "javascript", "js", "python", "code", "compute", "trigger",
)
WRITE = (
    "create", "update", "send", "post", "write", "add", "set", "edit", "put", "patch", "insert",
    "upload", "move", "rename", "merge", "push", "publish", "modify", "save", "apply", "assign",
    "comment", "reply", "install", "deploy", "start", "stop", "restart", "click", "type", "press",
    "fill", "select", "navigate", "drag", "hover", "upsert", "replace", "import", "export",
    "generate", "open", "close", "enable", "approve", "reject", "submit", "schedule", "invite",
    "share", "copy", "duplicate", "link", "attach", "tag", "label", "mark", "change", "configure",
    "register", "subscribe", "unsubscribe", "resolve", "reopen", "transition", "commit", "checkout",
    "clone", "build", "upgrade", "scale", "rollback", "restore", "store", "remember", "record",
    "log", "notify", "message", "email", "book", "pay", "charge", "refund", "transfer", "init",
    "initialize", "login", "logout", "authenticate", "connect", "disconnect", "sync", "fork",
    "pin", "unpin", "archive", "lock", "unlock", "mute", "unmute", "react", "resize", "scroll",
    "upload", "mutate", "make", "new", "manage", "handle", "perform", "do", "process", "convert",
)
READ = (
    "get", "list", "read", "search", "find", "fetch", "describe", "show", "view", "lookup",
    "retrieve", "inspect", "browse", "check", "count", "status", "info", "details", "stats",
    "explain", "analyze", "analyse", "validate", "diff", "compare", "preview", "estimate",
    "snapshot", "screenshot", "download", "summarize", "summarise", "docs",
    "look", "see", "peek", "tail", "head", "watch", "poll", "wait", "ping", "health",
    "whoami", "me", "history", "logs", "metrics", "report", "overview", "help", "discover", "scan",
    "audit", "verify", "test", "lint", "suggest", "recommend", "calculate", "format",
    "translate", "think", "sequentialthinking", "plan", "echo", "tree", "stat", "exists", "diagnose",
)
# a tool whose name starts with one of these replaces or loses data whatever it is annotated
# (write_file overwrites a file, push_files replaces files on a branch, merge changes a base
# branch for good): destructive, as the hand-reviewed catalogues class them
OVERWRITE = ("write", "edit", "move", "push", "merge", "overwrite")
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("destructive", DESTRUCTIVE),
    ("execute", EXECUTE),
    ("write", WRITE),
    ("read", READ),
)
_WORD_CLASS: dict[str, str] = {}
for _risk, _words in reversed(RULES):  # the more severe class wins a word listed twice
    for _w in _words:
        _WORD_CLASS[_w] = _risk

# words in a description that forbid a guessed `read`
_MENTIONS_DELETE = re.compile(
    r"\b(delet|remov|drop|purg|destroy|eras|truncat|wip(e|ing)|overwrit|terminat|cancel)\w*", re.I
)
_MENTIONS_WRITE = re.compile(
    r"\b(writ(e|es|ing)|wrote|creat|updat|modif|edit(s|ing)?\b|insert|upload|send(s|ing)?\b|post(s|ing)?\b|"
    r"chang(e|es|ing)\b|sav(e|es|ing)\b|execut|run(s|ning)?\b)\w*",
    re.I,
)


@dataclass(frozen=True)
class Classification:
    risk: str  # read | write | destructive | execute
    inferred: bool  # not from the server's own annotations
    why: str  # which annotation or rule decided, for the review report


def name_words(name: str) -> list[str]:
    """A tool name's words, lower case: snake_case, kebab-case, dotted, camelCase and digits split."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return [w for w in re.split(r"[^A-Za-z]+", spaced.lower()) if w]


def _class_of_word(word: str) -> tuple[str, str] | None:
    for candidate in (word, *_stems(word)):
        if candidate in _WORD_CLASS:
            return _WORD_CLASS[candidate], candidate
    return None


def _stems(word: str) -> list[str]:
    out = []
    for suffix in ("ing", "ies", "es", "ed", "s", "d"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            stem = word[: -len(suffix)]
            out.append(stem)
            if suffix == "ies":
                out.append(stem + "y")
            if suffix in ("ing", "ed"):
                out.append(stem + "e")
    return out


def _annotated(annotations: dict[str, Any] | None) -> tuple[str, str] | None:
    """The class a server's own hints give, or None when they do not give one.

    ``readOnlyHint: true`` is read; ``destructiveHint: true`` is destructive; ``readOnlyHint:
    false`` with ``destructiveHint: false`` is write. ``readOnlyHint: false`` alone is
    destructive: the MCP spec's default for ``destructiveHint`` is true."""
    if not annotations:
        return None
    ro, de = annotations.get("readOnlyHint"), annotations.get("destructiveHint")
    if ro is True:
        return "read", "readOnlyHint"
    if de is True:
        return "destructive", "destructiveHint"
    if de is False:
        return "write", "destructiveHint: false"
    if ro is False:
        return "destructive", "readOnlyHint: false (destructiveHint defaults to true)"
    return None


def classify(name: str, description: str = "", annotations: dict[str, Any] | None = None) -> Classification:
    """The risk class of one tool (see the module docstring for the order of the sources)."""
    annotated = _annotated(annotations)
    guessed = _guess(name, description)
    lead = re.match(r"([A-Za-z]+)[_-]", name)
    if lead and (lead.group(1).lower() in OVERWRITE or lead.group(1).lower() in DESTRUCTIVE):
        verb = lead.group(1).lower()
        if annotated is None or annotated[0] != "destructive":
            said = f"{annotated[1]} said {annotated[0]}; " if annotated else ""
            return Classification("destructive", True, f"{said}name starts with {verb}: it replaces or deletes data")
    if annotated is not None:
        risk, why = annotated
        # execute cannot be said in annotations: a tool the server calls non-destructive whose
        # name says it runs code or queries is execute, and that part is a guess
        if risk == "write" and guessed.risk == "execute":
            return Classification("execute", True, f"{why}; {guessed.why}")
        return Classification(risk, False, why)
    return guessed


def _guess(name: str, description: str) -> Classification:
    risk, why = "write", "no rule matched (write by default, never read by guess)"
    for word in name_words(name):
        hit = _class_of_word(word)
        if hit:
            risk, why = hit[0], f"name: {hit[1]}"
            break
    else:
        first = re.split(r"(?<=[.!?])\s", description.strip(), maxsplit=1)[0] if description else ""
        for word in re.findall(r"[A-Za-z]+", first.lower())[:3]:
            hit = _class_of_word(word)
            if hit:
                risk, why = hit[0], f"description: {hit[1]}"
                break
    if risk == "read" and description:
        m = _MENTIONS_DELETE.search(description)
        if m:
            return Classification("destructive", True, f"{why}, but the description mentions `{m.group(0)}`")
        m = _MENTIONS_WRITE.search(description)
        if m:
            return Classification("write", True, f"{why}, but the description mentions `{m.group(0)}`")
    return Classification(risk, True, why)
