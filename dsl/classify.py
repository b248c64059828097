"""Risk classes of harvested tools: the server's own annotations first, then reviewed rules on
names and descriptions. Pure functions, so a reviewer can read (and test) every rule here.

Why this order: a server's ``readOnlyHint``/``destructiveHint`` is its author's statement and
the only source that is not a guess; everything else is marked ``inferred`` and listed for a
person to review (``plr catalog harvest`` writes that list). The rules are biased to the
stricter class: a tool whose name says nothing is ``write``, never ``read``, and a tool guessed
``read`` whose description speaks of writing or deleting is moved up (the issue's rule: never
``read`` by guess alone when the description mentions writing or deleting).

A ``readOnlyHint: true`` is still only a claim by the server, the party a policy does not
trust: a tool annotated read (like one guessed read) whose name joins a second action, whose
description opens a clause with an acting verb, or whose input schema takes a path to write to
or offers a writing operation is raised to the stricter class and marked ``inferred``
(``acts_despite_read``).

A router (one tool that runs one of many sub-commands, named by an argument) is classed by the
most severe sub-command it can run, not by its name: when the catalogue lists the sub-commands
(an enum on its ``command``/``action``/``operation``/``method`` property), by the strictest of
them; when it cannot (a free string, or a description that says it routes commands),
``destructive`` (``router_class``). Otherwise `deny destructive tools unless approved` would let
a router named after its service (``keyvault``) delete unapproved. The sub-commands are read
wherever a schema lists them: an enum behind a ``$ref``, an ``anyOf``/``oneOf`` of enums or
consts, the variants of a root union. A server's annotation is weighed as elsewhere: a
``readOnlyHint: true`` gives way to an acting sub-command or to unlisted ones (it is a claim,
as above); a ``destructiveHint: false`` only to a listed sub-command that deletes or runs code,
as it gives way to a name that starts with `delete_`.
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
    "format", "hide", "unhide",
)
READ = (
    "get", "list", "read", "search", "find", "fetch", "describe", "show", "view", "lookup",
    "retrieve", "inspect", "browse", "check", "count", "status", "info", "details", "stats",
    "explain", "analyze", "analyse", "validate", "diff", "compare", "preview", "estimate",
    "snapshot", "screenshot", "download", "summarize", "summarise", "docs",
    "look", "see", "peek", "tail", "head", "watch", "poll", "wait", "ping", "health",
    "whoami", "me", "history", "logs", "metrics", "report", "overview", "help", "discover", "scan",
    "audit", "verify", "test", "lint", "suggest", "recommend", "calculate",
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

# words in a description that forbid a guessed `read` (anywhere, in any form: a guess gives way
# to any mention). `set` and `trigger` are not here: mostly nouns ("a set of", "Apex triggers"),
# they count where they are verbs (description_acts below)
_MENTIONS_DELETE = re.compile(
    r"\b(delet|remov|drop|purg|destroy|eras|truncat|wip(e|ing)|overwrit|terminat|cancel)\w*", re.I
)
_MENTIONS_WRITE = re.compile(
    r"\b(writ(e|es|ing)|wrote|creat|updat|modif|edit(s|ing)?\b|insert|upload|send(s|ing)?\b|post(s|ing)?\b|"
    r"chang(e|es|ing)\b|sav(e|es|ing)\b|execut|run(s|ning)?\b|"
    r"appl(y|ies|ying)\b|replac(e|es|ing)\b|transfer(s|ring)?\b|unhid(e|es|ing)\b|submit(s|ting)?\b)\w*",
    re.I,
)

# Evidence that a tool classed `read` acts after all. Checked for a guessed `read` and for a
# server's own `readOnlyHint: true` alike: the annotation is a claim by the party a policy does
# not trust, so a name, description or input schema that says the tool writes wins over it.
# These checks look at how a word is used (its place in the name or sentence, its form), not at
# every mention: a read tool's description names the data it reads ("comments", "a set of
# events", "added, deleted, or updated" items, "Apex triggers"), and those must not count.

# a name word that makes a tool not read wherever it stands (findAndReplaceInDoc): verbs that a
# read tool's name does not carry as nouns (`list_commits`, `get_tags`, `get_run_logs` stay read)
NAME_VERBS_ANYWHERE = (
    "replace", "create", "delete", "remove", "insert", "upsert", "overwrite", "modify", "rename", "unhide", "update",
)
# a name word after one of these is a second action (get_or_create, fetch_and_store)
_CONJUNCTIONS = ("and", "or", "then")
# verbs that, at the start of a description or of one of its clauses (after , ; : ( or and/or/
# then), say what the tool does: "Find and replace text", "Report a bug, submit a feature request"
# (not after a dash: "post-install script", "genai-model-eval-create-run" name things)
STRONG_VERBS: dict[str, str] = {
    **dict.fromkeys(
        ("delete", "remove", "overwrite", "erase", "purge", "destroy", "wipe", "truncate", "drop", "cancel", "revoke", "terminate"),
        "destructive",
    ),
    **dict.fromkeys(
        ("create", "write", "add", "insert", "upload", "modify", "save", "apply", "replace", "submit", "rename", "unhide",
         "hide", "edit", "append", "install", "publish", "send", "upsert", "attach", "assign", "move", "enable", "invite",
         "approve", "reject"),
        "write",
    ),
}
# verbs that are as often nouns ("a set of", "Apex triggers", "ownership transfer"): an action
# only as a description's first word or before an object ("set the current context", "sets
# hiddenByUser=false", "trigger a deploy"); never in "set up"
WEAK_VERBS: dict[str, str] = {
    **dict.fromkeys(("reset", "clear", "disable"), "destructive"),
    **dict.fromkeys(
        ("set", "trigger", "transfer", "update", "change", "post", "share", "format", "store", "mark", "schedule", "archive",
         "restore", "commit", "push", "merge", "register", "deploy"),
        "write",
    ),
}
_OBJECT_WORDS = frozenset(
    ("a", "an", "the", "its", "their", "this", "that", "these", "those", "all", "each", "every", "one", "new", "current", "your", "any", "my")
)
_CLAUSE_MARKS = frozenset(",;:()[]")
# input schema properties that name a place on disk the tool writes to (outputPath, local_path,
# savePath, saveTo, outDir, downloadsDir, destinationPath): a `read` tool that takes one writes
_SAVE_WORDS = frozenset(("save", "saves"))
_PLACE_WORDS = frozenset(("path", "file", "filename", "dir", "directory", "folder"))
_WHERE_WORDS = frozenset(("local", "output", "out", "dest", "destination", "download", "downloads", "target"))
# properties whose enum lists what a tool does: a value `set`/`create`/`delete` is an action
_OPERATION_PROPERTIES = frozenset(("operation", "action", "op", "mode", "command", "subcommand"))
# properties (compared without case, `_` or `-`: subCommand, sub_command) whose value picks the
# sub-command a router runs. Not `mode`: an output mode (`values | formulas`) is no sub-command.
# `tool`/`toolName` only beside an argument bag (a gateway: `tool` + `arguments`); alone it
# names a subject (codacy's linter to run, the tool whose past calls to list)
TOOL_PROPERTIES = frozenset(("tool", "toolname"))
SUBCOMMAND_PROPERTIES = frozenset(("command", "subcommand", "cmd", "action", "operation", "op", "method")) | TOOL_PROPERTIES
# a router's bag of arguments for the sub-command it runs: an object that lists no properties.
# A free `command` without one is a command line (run_command: execute), a filter (`operation`,
# `method` of a read tool) or a setting (a container's `command`), not a router
ARGUMENT_BAGS = frozenset(("parameters", "params", "args", "arguments", "payload", "body", "input", "options"))
# bags named for arguments count in any shape that lists no properties: positional (`args:
# [..]`), JSON in a string (`parameters: "{..}"`) or untyped (`parameters: {}`). A string
# `body`, `input` or `payload` is data (an HTTP body, a text), not arguments
POSITIONAL_BAGS = frozenset(("parameters", "params", "args", "arguments"))
# a description that says the tool routes commands ("a hierarchical MCP command router")
_ROUTES_COMMANDS = re.compile(
    r"\b(sub-?)?command (router|dispatcher)\b|\b(routes|dispatches)\b[^.]{0,40}?\b(sub-?)?commands?\b", re.I
)
# how many enum values a catalogue keeps (dsl.harvest cuts longer enums): a sub-command enum this
# long may have lost entries, which are then not listed
ENUM_KEPT = 30
ROUTER_WHY = "its sub-commands are not listed, so it is classed by the most severe it could run"


# A tool that hands a task to an autonomous agent (a browser or computer-use agent, a coding
# agent) runs whatever actions that agent's model picks at run time, out of the policy's sight,
# as a shell runs whatever command it is given: `execute` (agent_acts). Named so (the name's
# last word `agent`, not a `user_agent` setting nor `manage_agent`, a tool about agents) or
# described so ("autonomously execute", "delegate a task to an autonomous coding agent", "a
# computer-use agent"; not "lists the autonomous agents", "Autonomous Databases").
_AGENT_DESCRIBED = re.compile(
    r"\bautonomous(ly)?\s+(execut(e|es|ing)|perform(s|ing)?|run(s|ning)?|complet(e|es|ing)|carr(y|ies|ying) out|acts?)\b"
    r"|\b(execut(e|es|ing)|perform(s|ing)?|run(s|ning)?|complet(e|es|ing))\b[^.]{0,40}?\bautonomously\b"
    r"|\b(to|using|with|via|by)\s+(an?\s+)?autonomous\b[^.]{0,20}?\bagent\b"
    r"|\b(to|using|with|via|by)\s+(an?\s+|the\s+)?[\w ]{0,20}?\bcomputer[- ]use\s+agent\b|^\s*an?\s+computer[- ]use\s+agent\b",
    re.I,
)
AGENT_WHY = "it hands the task to an autonomous agent, whose actions the policy cannot see"


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


def classify(
    name: str, description: str = "", annotations: dict[str, Any] | None = None, schema: dict[str, Any] | None = None
) -> Classification:
    """The risk class of one tool (see the module docstring for the order of the sources).
    ``schema``: the tool's input schema (the compact one a catalogue keeps is enough)."""
    annotated = _annotated(annotations)
    guessed = _guess(name, description, schema)
    lead = re.match(r"([A-Za-z]+)[_-]", name)
    if lead and (lead.group(1).lower() in OVERWRITE or lead.group(1).lower() in DESTRUCTIVE):
        verb = lead.group(1).lower()
        if annotated is None or annotated[0] != "destructive":
            said = f"{annotated[1]} said {annotated[0]}; " if annotated else ""
            return Classification("destructive", True, f"{said}name starts with {verb}: it replaces or deletes data")
    if annotated is not None:
        risk, why = annotated
        # a router's sub-commands (router_class with the annotations): under a read claim, any
        # listed acting one or unlisted ones; under destructiveHint: false, a listed one that
        # deletes or runs code, as a name starting with delete_ overrules it (below)
        routed = router_class(description, schema, annotations)
        if risk == "read":
            # the server's word is a claim, not a proof: what its own name (a second action joined
            # by and/or), description or schema says the tool does raises the class
            acts = _stricter(_stricter(acts_despite_read(name, description, schema, name_anywhere=False), routed), agent_acts(name, description))
            if acts:
                return Classification(acts[0], True, f"{why} said read, but {acts[1]}")
        if routed:
            return Classification(routed[0], True, f"{why} said {risk}, but {routed[1]}")
        # execute cannot be said in annotations: a tool the server calls non-destructive whose
        # name says it runs code or queries is execute, and that part is a guess
        if risk == "write" and guessed.risk == "execute":
            return Classification("execute", True, f"{why}; {guessed.why}")
        return Classification(risk, False, why)
    routed = router_class(description, schema)
    if routed and _SEVERITY[routed[0]] > _SEVERITY[guessed.risk]:
        return Classification(routed[0], True, f"{guessed.why}, but {routed[1]}")
    return guessed


def _guess(name: str, description: str, schema: dict[str, Any] | None = None) -> Classification:
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
    agent = agent_acts(name, description)
    if agent and _SEVERITY[agent[0]] > _SEVERITY[risk]:
        return Classification(agent[0], True, agent[1] if risk == "write" and why.startswith("no rule") else f"{why}, but {agent[1]}")
    if risk == "read" and description:
        m = _MENTIONS_DELETE.search(description)
        if m:
            return Classification("destructive", True, f"{why}, but the description mentions `{m.group(0)}`")
    if risk == "read":
        acts = acts_despite_read(name, description, schema, name_anywhere=True)
        if acts:
            return Classification(acts[0], True, f"{why}, but {acts[1]}")
    if risk == "read" and description:
        m = _MENTIONS_WRITE.search(description)
        if m:
            return Classification("write", True, f"{why}, but the description mentions `{m.group(0)}`")
    return Classification(risk, True, why)


def agent_acts(name: str, description: str = "") -> tuple[str, str] | None:
    """("execute", why) when the tool delegates to an autonomous agent (see _AGENT_DESCRIBED):
    its name ends in `agent` and says nothing else it does (`browser_use_agent`, not
    `manage_agent` or `set_user_agent`), or its description says so."""
    words = name_words(name)
    if len(words) >= 2 and words[-1] == "agent" and words[-2] not in ("user", "mcp"):
        if not any(_class_of_word(w) and _class_of_word(w)[0] != "execute" for w in words[:-1]):  # type: ignore[index]
            return "execute", f"name: agent ({AGENT_WHY})"
    m = _AGENT_DESCRIBED.search(description or "")
    if m:
        return "execute", f"the description says `{m.group(0)}` ({AGENT_WHY})"
    return None


def _stricter(a: tuple[str, str] | None, b: tuple[str, str] | None) -> tuple[str, str] | None:
    if a is None or (b is not None and _SEVERITY[b[0]] > _SEVERITY[a[0]]):
        return b
    return a


_SEVERITY = {"read": 0, "write": 1, "execute": 2, "destructive": 3}


def acts_despite_read(
    name: str, description: str = "", schema: dict[str, Any] | None = None, name_anywhere: bool = True
) -> tuple[str, str] | None:
    """(class, why) when a tool otherwise classed ``read`` writes or deletes after all, else None:
    the strictest of what its name, description and input schema say. ``name_anywhere``: also
    count a verb of NAME_VERBS_ANYWHERE in any place of the name (for a guessed ``read``; a
    server's annotation is overruled by a second action joined by and/or, not by a lone word
    such as `get_create_fields`)."""
    found = _stricter(_name_acts(name, name_anywhere), description_acts(description))
    return _stricter(found, schema_acts(schema))


def _name_acts(name: str, anywhere: bool) -> tuple[str, str] | None:
    words = name_words(name)
    found = None
    for i, word in enumerate(words):
        if i and words[i - 1] in _CONJUNCTIONS:
            hit = _class_of_word(word)
            if hit and hit[0] != "read":
                found = _stricter(found, (hit[0], f"the name also says `{words[i - 1]} {word}`"))
        if anywhere and word in NAME_VERBS_ANYWHERE:
            found = _stricter(found, (_WORD_CLASS[word], f"the name says `{word}`"))
    return found


def _verb(word: str, table: dict[str, str]) -> str | None:
    """``word``'s verb in ``table`` when it is its base or third-person form (not -ed/-ing: "added,
    deleted, or updated" items and "the editing history" describe data, they do no act)."""
    w = word.lower()
    for candidate in (w, w[:-1] if w.endswith("s") else "", w[:-2] if w.endswith("es") else "", w[:-3] + "y" if w.endswith("ies") else ""):
        if candidate and candidate in table:
            return candidate
    return None


def description_acts(description: str) -> tuple[str, str] | None:
    """(class, why) when a description says the tool writes or deletes: a verb of STRONG_VERBS
    opening the description or one of its clauses, or one of WEAK_VERBS opening it or taking an
    object there. A clause opens after , ; : ( [ ] and after and/or/then joining two clause
    openers ("Find and replace text"; not "Get view and edit restrictions": `edit` there is
    said of the restrictions read)."""
    tokens = re.findall(r"[A-Za-z]+|=|[^\sA-Za-z]", description or "")
    opens = [False] * len(tokens)
    found = None
    for i, tok in enumerate(tokens):
        if not tok[0].isalpha():
            continue
        prev = tokens[i - 1] if i else ""
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        after = tokens[i + 2] if i + 2 < len(tokens) else ""
        takes_object = nxt.lower() in _OBJECT_WORDS or after == "="
        if i == 0 or prev in _CLAUSE_MARKS:
            opens[i] = True
        elif prev.lower() in _CONJUNCTIONS and i >= 2:
            opens[i] = tokens[i - 2] in _CLAUSE_MARKS or opens[i - 2] or takes_object
        if not opens[i]:
            continue
        verb = _verb(tok, STRONG_VERBS)
        if verb:
            found = _stricter(found, (STRONG_VERBS[verb], f"the description says `{tok}`"))
            continue
        verb = _verb(tok, WEAK_VERBS)
        if verb and nxt.lower() != "up" and (i == 0 or takes_object):
            said = f"{tok} {nxt}" if nxt[:1].isalpha() else tok
            found = _stricter(found, (WEAK_VERBS[verb], f"the description says `{said}`"))
    return found


def schema_acts(schema: dict[str, Any] | None) -> tuple[str, str] | None:
    """(class, why) when an input schema says the tool writes: a property naming a place on disk
    to write to, or an operation property whose enum offers a writing or deleting action."""
    props = (schema or {}).get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return None
    found = None
    for key, sub in props.items():
        words = set(name_words(str(key)))
        if words & _SAVE_WORDS or (words & _WHERE_WORDS and words & _PLACE_WORDS):
            found = _stricter(found, ("write", f"it takes `{key}`, a place to write to"))
        if str(key).lower() in _OPERATION_PROPERTIES and isinstance(sub, dict) and isinstance(sub.get("enum"), list):
            for value in sub["enum"]:
                risk = _WORD_CLASS.get(value.lower()) if isinstance(value, str) else None
                if risk in ("write", "destructive"):
                    found = _stricter(found, (risk, f"its `{key}` can be `{value}`"))
    return found


def _pointer(root: dict[str, Any], ref: str) -> Any:
    """The part of ``root`` a local ``$ref`` ("#/$defs/Action") points at, else None."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for step in ref[2:].split("/"):
        step = step.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    return node


def _resolved(sub: Any, root: dict[str, Any]) -> dict[str, Any] | None:
    """``sub`` with its local ``$ref`` followed (pydantic's Enum parameters sit in ``$defs``);
    None for a reference the schema does not hold, which may stand for anything."""
    for _ in range(8):
        if not isinstance(sub, dict):
            return None
        ref = sub.get("$ref")
        if not isinstance(ref, str):
            return sub
        sub = _pointer(root, ref)
    return None


def _branches(sub: dict[str, Any], key: str) -> list[Any]:
    value = sub.get(key)
    return value if isinstance(value, list) else []


def _choices(sub: Any, root: dict[str, Any], depth: int = 0) -> tuple[list[Any], bool, int]:
    """(the values a property lists, whether it takes any other string, the length of an enum of
    it as long as a catalogue keeps, else 0). Values come from ``enum``/``const`` on the property, behind
    a ``$ref``, or in its ``anyOf``/``oneOf``/``allOf`` branches (Optional[Literal], an Enum, a
    oneOf of consts); a branch typed string (or untyped) without them takes any string."""
    node = _resolved(sub, root)
    if node is None or depth > 8:
        return [], True, 0
    if isinstance(node.get("enum"), list) or "const" in node:
        values = list(node["enum"]) if isinstance(node.get("enum"), list) else []
        if "const" in node:
            values.append(node["const"])
        longest = len(node["enum"]) if isinstance(node.get("enum"), list) else 0
        return values, False, longest if longest >= ENUM_KEPT else 0
    alternatives, conjuncts = _branches(node, "anyOf") + _branches(node, "oneOf"), _branches(node, "allOf")
    if not alternatives and not conjuncts:
        kind = node.get("type")
        return [], kind is None or "string" in (kind if isinstance(kind, list) else [kind]), 0
    values: list[Any] = []
    free, cut = False, 0
    for branch in alternatives:
        v, f, c = _choices(branch, root, depth + 1)
        values, free, cut = values + v, free or f, max(cut, c)
    if conjuncts:  # allOf: a branch that lists values restricts the others (allOf: [{$ref: Action}])
        parts = [_choices(branch, root, depth + 1) for branch in conjuncts]
        listing = [part for part in parts if part[0]]
        for v, _, c in listing:
            values, cut = values + v, max(cut, c)
        free = free or (not listing and all(part[1] for part in parts))
    return values, free, cut


def _shape(sub: Any, root: dict[str, Any], depth: int = 0) -> tuple[set[str], bool]:
    """(the JSON types a property's value may take, whether it lists properties of its own,
    directly or in its array items), across ``$ref`` and ``anyOf``/``oneOf``/``allOf``."""
    node = _resolved(sub, root)
    if node is None or depth > 8:
        return set(), False
    kind = node.get("type")
    kinds = {k for k in (kind if isinstance(kind, list) else [kind]) if isinstance(k, str)}
    items = _resolved(node.get("items"), root) if "items" in node else None
    lists = bool(node.get("properties")) or bool(items and items.get("properties"))
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in _branches(node, key):
            k, listed = _shape(branch, root, depth + 1)
            kinds, lists = kinds | k, lists or listed
    return kinds, lists


def _argument_bag(props: dict[str, Any], root: dict[str, Any]) -> str | None:
    """The name of a property holding a sub-command's arguments, if any: one of ARGUMENT_BAGS
    that lists no properties of its own and is an object; or, for POSITIONAL_BAGS, also an
    array (`args: [..]`), a string (JSON in a string) or untyped (`parameters: {}`)."""
    for key, sub in props.items():
        word = "".join(name_words(str(key)))
        if word not in ARGUMENT_BAGS:
            continue
        kinds, lists = _shape(sub, root)
        if lists:
            continue
        if "object" in kinds or (word in POSITIONAL_BAGS and (kinds & {"array", "string"} or not kinds - {"null"})):
            return str(key)
    return None


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema's top-level properties, with those of its root ``anyOf``/``oneOf``/``allOf``
    variants (a discriminated union: one variant per sub-command, each with its `action` const);
    a name in several variants takes the values of all."""
    merged: dict[str, Any] = {}
    variants = [schema] + [_resolved(v, schema) for key in ("anyOf", "oneOf", "allOf") for v in _branches(schema, key)]
    for variant in variants:
        props = variant.get("properties") if isinstance(variant, dict) else None
        for key, sub in (props if isinstance(props, dict) else {}).items():
            merged[key] = {"anyOf": [merged[key], sub]} if key in merged else sub
    return merged


def _participle(word: str) -> bool:
    """A past participle (`removed`, `failed`), not a word that ends so (`feed`, `embed`)."""
    return len(word) > 4 and word.endswith("ed") and not word.endswith("eed") and word != "embed"


def _entry_evidence(value: str) -> tuple[str, str] | None:
    """(class, word) of a listed sub-command as evidence against a server's annotation: only an
    entry with a known word counts (`versions` says nothing, it is not `write`), and not one
    that ends in a participle: `build_failed`, `merge_train_removed` name events a read tool
    filters by (gitlab's list_todos), not sub-commands it runs."""
    words = name_words(value)
    if not words or _participle(words[-1]):
        return None
    c = classify(value)
    return None if c.why.startswith("no rule matched") else (c.risk, value)


def router_class(
    description: str = "", schema: dict[str, Any] | None = None, annotations: dict[str, Any] | None = None
) -> tuple[str, str] | None:
    """(class, why) of a tool that runs sub-commands picked by an argument, else None.

    Enumerated sub-commands (an enum or consts on a SUBCOMMAND_PROPERTIES property, also
    behind a ``$ref`` or in ``anyOf``/``oneOf``/``allOf``) give the strictest of their classes,
    each classed as a tool of that name would be (so an unknown one is `write`, and `method:
    GET` stays read). Sub-commands that are not listed give ``destructive``: a free-string
    sub-command property next to an argument bag (azure's `command` + `parameters`), a
    description saying it routes commands (unless an enum lists them), or an enum as long as a
    catalogue keeps (the rest were cut). A `tool`/`toolName` property picks a sub-command only
    beside an argument bag (alone it names the subject: a linter to run, calls to list).

    ``annotations``: the server's hints, which an enum overrules only with evidence (an entry
    with a known word, not a participle: ``_entry_evidence``). Under ``readOnlyHint: true``
    (a claim, as in ``acts_despite_read``) unlisted sub-commands still give ``destructive``;
    under ``destructiveHint: false`` only a listed entry that deletes or runs code raises the
    class (as a name that starts with `delete_` does), and `method` does not count: a request's
    HTTP method is what the tool may store (postman's createCollectionRequest saves a `DELETE`
    request), and the server has said which."""
    stated = _annotated(annotations)
    if stated is not None and stated[0] == "destructive":
        return None
    root = schema if isinstance(schema, dict) else {}
    props = _properties(root)
    found: tuple[str, str] | None = None
    enumerated = False
    bag = _argument_bag(props, root)
    for key, sub in props.items():
        word = "".join(name_words(str(key)))
        if word not in SUBCOMMAND_PROPERTIES or (word in TOOL_PROPERTIES and not bag):
            continue
        if stated is not None and stated[0] == "write" and word == "method":
            continue
        values, free, cut = _choices(sub, root)
        values = [v for v in values if isinstance(v, str) and v.strip()]
        unlisted: list[str] = []
        if values:
            enumerated = True
            if cut:
                unlisted.append(f"`{key}` lists {cut} values, as many as a catalogue keeps: more may be cut")
            for value in values:
                hit = (classify(value).risk, value) if stated is None else _entry_evidence(value)
                if hit:
                    found = _stricter(found, (hit[0], f"its `{key}` can be `{value}`"))
        if bag and free:
            unlisted.append(f"`{key}` takes any string, `{bag}` its arguments")
        if stated is None or stated[0] == "read":
            for why in unlisted:
                found = _stricter(found, ("destructive", f"a command router ({why}): {ROUTER_WHY}"))
    if not enumerated and description and (stated is None or stated[0] == "read"):
        m = _ROUTES_COMMANDS.search(description)
        if m:
            found = _stricter(found, ("destructive", f"a command router (the description says `{m.group(0)}`): {ROUTER_WHY}"))
    if stated is not None and (found is None or _SEVERITY[found[0]] <= _SEVERITY[stated[0]]):
        return None
    return found
