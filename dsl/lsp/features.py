"""What the language server answers, without pygls: completion, hover, definitions, references,
formatting and quick fixes, in the server's own positions (``source.Pos``: 0-based lines and
code-point columns) and absolute file paths.

Every answer comes from two places: the text as typed (``source.Source``, which works while a
statement is half written) and the latest build of the policy the file belongs to
(``workspace.RootResult``: the catalogues in scope, the rules per tool, the compiled JSON), so a
hover says what `plr compile` would write and a tool name completes from the catalogues that
`plr check` would use. While a file has no build that parsed it (an editor opens a half-written
file), completion takes the catalogues from its ``import`` and ``server`` statements written
whole (``Workspace.partial_result``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

from .. import ir
from ..arg_check import argument_names
from . import words
from .source import (
    CALL,
    CATALOGUE,
    CONDITION,
    DATA,
    GLOB,
    IMPORT,
    OBJECT,
    SERVER,
    SERVER_NAME,
    TEST,
    TOOL,
    TOOL_ROLES,
    TOP,
    Pos,
    Range,
    Source,
    Token,
    word_range,
)
from .workspace import RootResult, Workspace, abs_file

Location = tuple[str, Range]  # (absolute path, range)

# Completion item kinds (the LSP numbers, so this module needs no LSP types).
K_KEYWORD, K_VALUE, K_FUNCTION, K_VARIABLE, K_CONSTANT, K_FILE, K_MODULE, K_FIELD, K_OPERATOR = 14, 12, 3, 6, 21, 17, 9, 5, 24


@dataclass
class Item:
    """One completion: ``label`` replaces ``replace`` (a range of offsets) with ``insert``."""

    label: str
    kind: int
    detail: str = ""
    documentation: str = ""
    insert: str | None = None
    replace: tuple[int, int] | None = None
    sort: str = ""


@dataclass
class Fix:
    """One quick fix: replace ``range`` with ``new_text``."""

    title: str
    range: Range
    new_text: str


# --- what the grammar accepts today ---------------------------------------------------------


@lru_cache(maxsize=1)
def _grammar_words() -> frozenset[str]:
    """The words the grammar takes now: its quoted keywords and the functions of its FN terminal.
    A word of issue #15 (`every`, `def`, `lower`) is offered by completion only once the parser
    takes it (highlighting knows them all already)."""
    from ..resources import grammar_text

    text = re.sub(r"//[^\n]*", "", grammar_text())
    found = set(re.findall(r'(?<![A-Za-z0-9_.\\])"([a-z][a-z_]*)"', text))
    for line in re.findall(r"^FN[.0-9]*:[^\n]*", text, flags=re.MULTILINE):
        found.update(re.findall(r"[a-z][a-z_]+", line.split("(?=")[0]))
    return frozenset(found | {"server", "as"})


def supported(word: str) -> bool:
    return word in _grammar_words()


# --- programs --------------------------------------------------------------------------------


def _display(result: RootResult, path: str) -> str | None:
    """The name ``path`` has in ``result``'s program (its key in ``prog.sources``)."""
    for name in result.prog.sources:
        if abs_file(name) == path:
            return name
    return None


def _span_range(span: ir.Span) -> Range:
    start = (max(span.line - 1, 0), max(span.col - 1, 0))
    if span.end_line:
        return start, (span.end_line - 1, max(span.end_col - 1, 0))
    return start, start


def _span_location(span: ir.Span) -> Location:
    return abs_file(span.file), _span_range(span)


def catalogue_entries(result: RootResult | None, tool: str) -> list[tuple[str, ir.CatalogueTool]]:
    """Every (server, entry) declaring ``tool`` in the program."""
    if result is None:
        return []
    return [(server, t) for server, entries in result.prog.servers.items() for t in entries if t.name == tool]


def description(result: RootResult, entry: ir.CatalogueTool) -> str:
    """A catalogue entry's description: its trailing comment, else the comment lines right above."""
    text = result.prog.sources.get(entry.span.file, "")
    lines = text.split("\n")
    i = entry.span.line - 1
    if not 0 <= i < len(lines):
        return ""
    m = re.search(r'^\s*tool\s+"(?:[^"\\]|\\.)*"\s+\w+\s*#\s?(.*)$', lines[i])
    if m:
        return m.group(1).strip()
    above: list[str] = []
    j = i - 1
    while j >= 0 and lines[j].strip().startswith("#"):
        above.insert(0, lines[j].strip()[1:].strip())
        j -= 1
    if j >= 0 and lines[j].rstrip().endswith("{"):  # a comment over the whole server block is not the tool's
        return ""
    return " ".join(above)


def tool_names(result: RootResult | None) -> dict[str, tuple[tuple[str, str], ...]]:
    """Tool -> its (server, class) declarations, for every tool of the catalogues in scope."""
    return dict(result.prog.catalogue) if result is not None else {}


def defined_names(ws: Workspace, path: str) -> dict[str, tuple[str, Location, str]]:
    """Names usable in ``path``: name -> (kind, where it is defined, what it stands for)."""
    out: dict[str, tuple[str, Location, str]] = {}
    result = ws.result_for(path)
    if result is not None:
        from ..format import literal_text

        for module in result.prog.modules:
            for st in module.statements:
                name, name_span = getattr(st, "name", None), getattr(st, "name_span", None)
                if not isinstance(name, str) or not isinstance(name_span, ir.Span):
                    continue
                if isinstance(st, ir.Let):
                    try:
                        shown = f"let {name} = {literal_text(st.value)}"
                    except (TypeError, ValueError):
                        shown = f"let {name}"
                    kind = "let"
                elif isinstance(st, ir.DataImport):
                    shown, kind = f'import data "{st.path}" as {name}', "data"
                else:
                    shown, kind = _statement_line(result, name_span), "def"
                out.setdefault(name, (kind, _span_location(name_span), shown))
    src = ws.source(path)
    if src is not None:  # names as typed, also while the file does not parse
        for name, (kind, tok) in src.definitions().items():
            if name not in out:
                out[name] = (kind, (path, src.range_of(tok)), src.line_text(src.pos(tok.start)[0]).strip())
    return out


def _statement_line(result: RootResult, span: ir.Span) -> str:
    lines = result.prog.sources.get(span.file, "").split("\n")
    return lines[span.line - 1].strip() if 0 < span.line <= len(lines) else ""


# --- completion --------------------------------------------------------------------------------


def complete(ws: Workspace, path: str, pos: Pos) -> list[Item]:
    """Completions at ``pos``: keywords in context, tool names from the catalogues in scope (with
    class and description), names, path roots, argument names and imports."""
    src = ws.source(path)
    if src is None:
        return []
    offset = src.offset(pos)
    if src.in_comment(offset):
        return []
    result = ws.result_for(path)
    if result is None or path not in result.modules:
        # no build parsed the file yet (it never parsed, or the first build is still running):
        # its imports and catalogues written whole are known all the same
        result = ws.partial_result(path, offset) or result
    i = src.index_before(offset)
    tok = src.tokens[i] if i >= 0 else None
    if tok is not None and tok.kind == "string" and tok.start < offset and (not tok.closed or offset < tok.end):
        return _complete_string(ws, path, src, i, offset, result)
    start, _ = word_range(src, offset)
    span = (start, offset)
    if tok is not None and tok.kind == "name" and tok.end == offset:
        i -= 1  # the word being typed: what comes before it decides
    elif tok is not None and tok.end > offset:
        return []  # inside a number or an operator
    items = _complete_words(ws, path, src, i, result)
    for item in items:
        if item.replace is None:
            item.replace = span
    return items


def _complete_string(ws: Workspace, path: str, src: Source, i: int, offset: int, result: RootResult | None) -> list[Item]:
    tok = src.tokens[i]
    role = src.string_role(i)
    replace = (tok.start + 1, tok.end - 1 if tok.closed else offset)
    items: list[Item] = []
    if role in (TOOL, CALL, GLOB):
        for name, decls in sorted(tool_names(result).items()):
            classes = list(dict.fromkeys(risk for _, risk in decls))
            servers = list(dict.fromkeys(server for server, _ in decls))
            desc = ""
            if result is not None:
                desc = next((d for _, e in catalogue_entries(result, name) if (d := description(result, e))), "")
            items.append(
                Item(
                    label=name,
                    kind=K_VALUE,
                    detail=f"{' and '.join(classes)} · server {', '.join(servers)}",
                    documentation=desc,
                    insert=json.dumps(name, ensure_ascii=False)[1:-1],
                    replace=replace,
                )
            )
    elif role == IMPORT:
        for module, doc in _stdlib_modules():
            items.append(Item(label=module, kind=K_MODULE, detail="stdlib", documentation=doc, insert=module, replace=replace))
        for rel in _nearby_files(path, ".plr"):
            items.append(Item(label=rel, kind=K_FILE, detail="file", insert=rel, replace=replace))
    elif role == DATA:
        for rel in _nearby_files(path, ".json"):
            items.append(Item(label=rel, kind=K_FILE, detail="JSON file", insert=rel, replace=replace))
    elif role == SERVER_NAME and result is not None:
        for server in sorted(result.prog.servers):
            items.append(Item(label=server, kind=K_VALUE, detail="server", insert=server, replace=replace))
    return items


@lru_cache(maxsize=1)
def _stdlib_modules() -> tuple[tuple[str, str], ...]:
    from ..resources import stdlib_dir

    out = []
    for p in sorted(stdlib_dir().glob("*.plr")):
        lines = p.read_text(encoding="utf-8").split("\n")
        head = " ".join(l.lstrip("# ").strip() for l in lines[:3] if l.startswith("#"))
        out.append((f"stdlib/{p.stem}", head))
    return tuple(out)


def _nearby_files(path: str, suffix: str) -> list[str]:
    """Files with ``suffix`` in the folder of ``path`` and its subfolders (a few levels), relative."""
    base = os.path.dirname(path)
    out: list[str] = []
    for root, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("__snapshots__", "node_modules"))
        if root[len(base) :].count(os.sep) >= 3:
            dirs[:] = []
        for f in sorted(files):
            full = os.path.join(root, f)
            if f.endswith(suffix) and full != path:
                out.append("./" + os.path.relpath(full, base).replace(os.sep, "/"))
        if len(out) > 200:
            break
    return out


def _kw(word: str, sort: str = "1") -> Item:
    return Item(label=word, kind=K_KEYWORD, detail=words.KEYWORD_HELP.get(word, ""), sort=sort)


def _kws(items: Iterable[str], sort: str = "1") -> list[Item]:
    return [_kw(w, sort) for w in items if supported(w)]


def _statement_starts() -> list[Item]:
    return _kws(words.STATEMENT_STARTS, "2")


_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_VALUE_OPS = {"==", "!=", "<", "<=", ">", ">=", "in", "contains", "starts_with", "ends_with", "matches"}


def _complete_words(ws: Workspace, path: str, src: Source, i: int, result: RootResult | None) -> list[Item]:
    """Words that may follow token ``i`` (the token before the one being typed)."""
    prev = src.tokens[i] if i >= 0 else None
    block = src.block_after(i)
    if prev is None:
        return _statement_starts()
    p2 = src.prev(i)
    if block == SERVER:
        if prev.kind == "string" and p2 is not None and p2.is_word("tool"):
            return _kws(words.RISKS)
        return _kws(["tool"])
    if block == TEST:
        return _complete_test(prev, p2)
    if block == OBJECT:
        return _kws(words.CONSTANTS) if prev.text == ":" else []
    if block == CONDITION:
        return _complete_condition(ws, path, src, i, result, top=False)
    stmt = src.statement(i)
    head = stmt[0]
    if _ends_statement(src, i):
        follow = _rule_follow(src, i) if head.is_word("allow", "deny", "hide", "limit") else []
        return follow + _statement_starts()
    if head.is_word("allow", "deny", "hide", "limit"):
        if any(t.is_word("if", "unless") for t in stmt[1:]):
            return _complete_condition(ws, path, src, i, result, top=True)
        if len(stmt) == 1:
            return _selector_items()
        if prev.is_word(*words.RISKS) or prev.is_word("all"):
            return _kws(["tools"])
        return _rule_follow(src, i)
    if head.is_word("default") and len(stmt) == 1:
        return _kws(["allow", "deny"])
    if head.is_word("import"):
        if len(stmt) == 1:
            return _kws(["data"])
        if prev.kind == "string" and len(stmt) == 3:
            return _kws(["as"])
    return []


def _selector_items() -> list[Item]:
    items = _kws(["tool", "tools", "all"])
    items += [Item(label=f"{risk} tools", kind=K_KEYWORD, detail=f"every tool a catalogue classes as {risk}") for risk in words.RISKS]
    items.append(Item(label="all tools", kind=K_KEYWORD, detail=words.KEYWORD_HELP["all"]))
    return items


def _ends_statement(src: Source, i: int) -> bool:
    """Whether a statement may end after token ``i`` (so a new one may start)."""
    tok = src.tokens[i]
    stmt = src.statement(i)
    head = stmt[0]
    if tok.text == "}" and tok.kind == "punct" and tok.block == TOP:
        return True
    if head.is_word("package"):
        return tok.kind == "name" and len(stmt) >= 2
    if head.is_word("import"):
        return tok.kind == "string" and len(stmt) == 2 or (len(stmt) >= 5 and tok.kind == "name")
    if head.is_word("default"):
        return len(stmt) >= 2
    if head.is_word("let"):
        return len(stmt) >= 4 and (tok.kind in ("string", "number") or tok.text == "]" or tok.is_word(*words.CONSTANTS))
    if tok.kind == "string" and src.prev(i) is not None and src.prev(i).is_word("reason"):  # type: ignore[union-attr]
        return True
    if head.is_word("allow", "deny", "hide", "limit"):
        if head.is_word("limit"):
            return tok.is_word(*words.UNITS, *words.SCOPES) or (tok.kind == "number" and tok.text[-1:] in "smhd" and src.prev(i).is_word("per"))  # type: ignore[union-attr]
        if any(t.is_word("if", "unless") for t in stmt[1:]):
            return _after_comparison(src, i)
        return _selector_done(src, i)
    return False


def _selector_done(src: Source, i: int) -> bool:
    tok, p1 = src.tokens[i], src.prev(i)
    if tok.kind == "string" and p1 is not None and p1.is_word("tool", "tools"):
        return True
    if tok.text == "]":
        return True
    return tok.is_word("tools") and p1 is not None and (p1.is_word("all", *words.RISKS))


def _after_comparison(src: Source, i: int) -> bool:
    """Whether a comparison (or a condition block) is complete after token ``i``."""
    tok, p1 = src.tokens[i], src.prev(i)
    if tok.is_word("exists", "missing", "approved") or tok.text in ("]", "}", ")"):
        return True
    if tok.kind in ("string", "number") or tok.is_word(*words.CONSTANTS):
        return p1 is not None and (p1.text in _VALUE_OPS or p1.text == "in")
    if tok.kind == "name" and p1 is not None and (p1.text in _VALUE_OPS or p1.is_word("in")):
        return True  # a name standing for a value (`identity in admins`)
    return False


def _rule_follow(src: Source, i: int) -> list[Item]:
    """What may follow a rule's selector or condition."""
    stmt = src.statement(i)
    head = stmt[0]
    tok = src.tokens[i]
    has_guard = any(t.is_word("if", "unless") for t in stmt[1:])
    if head.is_word("limit"):
        if not any(t.is_word("to") for t in stmt):
            return _kws(["to"]) if _selector_done(src, i) else []
        if tok.is_word("per"):
            units_seen = any(t.is_word(*words.UNITS) or (t.kind == "number" and t.text[-1:] in "smhd") for t in stmt)
            return _kws(words.SCOPES) if units_seen else _kws(words.UNITS)
        if tok.kind == "number" and src.prev(i) is not None and src.prev(i).is_word("to"):  # type: ignore[union-attr]
            return _kws(["per"])
        if tok.is_word(*words.UNITS) or tok.kind == "number":
            return _kws(["per", "reason", "if"] if not has_guard else ["reason"])
        return _kws(["reason"])
    if has_guard:
        return _kws(["and", "or", "reason"])
    if head.is_word("allow"):
        return _kws(["if", "reason"])
    if head.is_word("deny"):
        return _kws(["if", "unless", "reason"])
    return _kws(["reason"])


def _complete_test(prev: Token, p2: Token | None) -> list[Item]:
    if prev.text == "->":
        return _kws(words.EFFECTS)
    if prev.is_word(*words.EFFECTS) and p2 is not None and p2.text == "->":
        return _kws([*words.CODES, "reason"])
    if prev.is_word("as"):
        return _kws(["identity", "session", "server"])
    if prev.kind == "string" and p2 is not None and p2.is_word("call"):
        return [Item(label="->", kind=K_OPERATOR, detail="the expected decision follows"), *_kws(["approved"])]
    if prev.is_word("approved") or (prev.text == "}" and prev.block == TEST):
        return [Item(label="->", kind=K_OPERATOR, detail="the expected decision follows"), *_kws(words.TEST_STEPS)]
    return _kws(["call", "as", "identity", "session", "server", "repeat", "after", "visible"])


def _complete_condition(ws: Workspace, path: str, src: Source, i: int, result: RootResult | None, top: bool) -> list[Item]:
    prev = src.tokens[i]
    if prev.text == "." and prev.kind == "punct":
        return _complete_field(ws, path, src, i, result)
    if prev.is_word("if", "unless", "and", "or", "not") or prev.text in ("(", "{") or (
        prev.kind == "punct" and prev.text == "}" and not top
    ) or _after_comparison(src, i) and not top and prev.block == CONDITION and prev.text != ")":
        items = _condition_starts(ws, path)
        if _after_comparison(src, i):
            items = _kws(["and", "or"]) + items
        return items
    if prev.text in _VALUE_OPS or prev.is_word("in"):
        return _value_items(ws, path)
    if _after_comparison(src, i):
        items = _kws(["and", "or", "reason"])
        return items + (_statement_starts() if top else [])
    if prev.kind == "name" or prev.text in ("]", ")"):
        ops = [Item(label=op, kind=K_OPERATOR, detail="compare") for op in _COMPARISONS]
        return ops + _kws(["in", "not", "contains", "starts_with", "ends_with", "matches", "exists", "missing"])
    return []


def _condition_starts(ws: Workspace, path: str) -> list[Item]:
    items = [Item(label=r, kind=K_VARIABLE, detail=words.KEYWORD_HELP.get(r, "path root"), sort="0") for r in words.PATH_ROOTS]
    items += [
        Item(label=fn, kind=K_FUNCTION, detail=words.KEYWORD_HELP.get(fn, ""), insert=f"{fn}(", sort="1")
        for fn in words.FUNCTIONS
        if supported(fn)
    ]
    items += _kws(["not", *words.QUANTIFIERS])
    for name, (kind, _where, shown) in sorted(defined_names(ws, path).items()):
        if kind == "def":
            items.append(Item(label=name, kind=K_FUNCTION, detail=shown, insert=f"{name}(", sort="0"))
    return items


def _value_items(ws: Workspace, path: str) -> list[Item]:
    items = [
        Item(label=name, kind=K_CONSTANT if kind == "let" else K_MODULE, detail=shown, sort="0")
        for name, (kind, _where, shown) in sorted(defined_names(ws, path).items())
        if kind in ("let", "data")
    ]
    return items + _kws(words.CONSTANTS)


def _complete_field(ws: Workspace, path: str, src: Source, i: int, result: RootResult | None) -> list[Item]:
    """After a dot: the argument names known for the rule's tools (the harvested catalogues'
    input schemas, with their types, then the workspace's conditions and test calls), or a
    data file's keys."""
    j = i - 1
    steps: list[str] = []
    while j >= 0 and src.tokens[j].kind == "name":
        steps.insert(0, src.tokens[j].text)
        if j >= 1 and src.tokens[j - 1].text == ".":
            j -= 2
            continue
        break
    if not steps:
        return []
    root = steps[0]
    if root == "args":
        tools = _statement_tools(src, i)
        typed = argument_names(result.prog, tools, steps[1:]) if result is not None else {}
        used = _argument_names(result, tools, steps[1:]) - set(typed)
        return [Item(label=a, kind=K_FIELD, detail=f"argument: {t}") for a, t in sorted(typed.items())] + [
            Item(label=a, kind=K_FIELD, detail="argument") for a in sorted(used)
        ]
    if result is not None:
        for (_file, name), value in result.prog.data.items():
            if name == root:
                for step in steps[1:]:
                    value = value.get(step) if isinstance(value, dict) else None
                if isinstance(value, dict):
                    return [
                        Item(label=k, kind=K_FIELD, detail=_short_json(v)) for k, v in sorted(value.items()) if isinstance(k, str)
                    ]
    return []


def _short_json(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _statement_tools(src: Source, i: int) -> set[str]:
    """The tools named by the selector of the rule holding token ``i`` (empty for other selectors)."""
    stmt = src.statement(i)
    out: set[str] = set()
    if stmt and stmt[0].is_word("allow", "deny", "limit"):
        for k, t in enumerate(stmt):
            if t.is_word("if", "unless"):
                break
            if t.kind == "string" and k >= 1 and (stmt[k - 1].is_word("tool") or stmt[k - 1].text in ("[", ",")):
                out.add(t.value())
    return out


def _argument_names(result: RootResult | None, tools: set[str], steps: list[str]) -> set[str]:
    """Argument names (after ``args.STEPS.``) used by the program's conditions and test calls,
    for ``tools`` (or for every tool when the rule names none)."""
    if result is None:
        return set()
    found: set[str] = set()
    depth = len(steps)

    def from_condition(c: ir.Condition | None) -> None:
        if c is None:
            return
        if isinstance(c, ir.Compare):
            p = c.path
            if p.root == "args" and len(p.steps) > depth and list(p.steps[:depth]) == steps and isinstance(p.steps[depth], str):
                found.add(p.steps[depth])
        elif isinstance(c, (ir.And, ir.Or)):
            for x in c.items:
                from_condition(x)
        elif isinstance(c, ir.Quantifier):  # its block reads the items of a list (and args too)
            from_condition(c.body)
        elif isinstance(c, ir.Not):
            from_condition(c.item)

    for rr in result.prog.rules:
        if not tools or tools & set(rr.tools):
            from_condition(rr.rule.condition)

    def from_steps(test_steps: Iterable[ir.Step]) -> None:
        for step in test_steps:
            if isinstance(step, ir.RepeatStep):
                from_steps(step.steps)
            elif isinstance(step, ir.CallStep) and step.args and (not tools or step.tool in tools):
                value: Any = step.args
                for s in steps:
                    value = value.get(s) if isinstance(value, dict) else None
                if isinstance(value, dict):
                    found.update(k for k in value if isinstance(k, str))

    for module in result.prog.modules:
        for test in module.tests:
            from_steps(test.steps)
    return found


# --- hover -------------------------------------------------------------------------------------


def hover(ws: Workspace, path: str, pos: Pos) -> tuple[str, Range] | None:
    """Markdown about the thing at ``pos``: a tool's catalogue entry and the rules that govern it,
    a rule's compiled JSON (and a limit in words), a name's value, a keyword's meaning."""
    src = ws.source(path)
    if src is None:
        return None
    offset = src.offset(pos)
    i = src.token_at(offset)
    if i is None:
        return None
    tok = src.tokens[i]
    rng = src.range_of(tok)
    result = ws.result_for(path)
    if tok.kind == "string":
        role = src.string_role(i)
        if role in TOOL_ROLES:
            if result is None or path not in result.modules:
                # no build parsed the file yet: its catalogues are known all the same (its rules are not)
                partial = ws.partial_result(path, offset)
                if partial is not None:
                    return _tool_hover(partial, tok.value(), partial=True), rng
            return _tool_hover(result, tok.value()), rng
        if role == GLOB:
            return _glob_hover(result, tok.value()), rng
        if role == IMPORT:
            target = _import_target(path, tok.value())
            return (f"`{tok.value()}` → `{target}`" if target else f"`{tok.value()}`: no such file"), rng
        return None
    if tok.kind != "name":
        return None
    p1 = src.prev(i)
    if p1 is not None and p1.text == ".":
        return None  # a field: `args.limit` is not the keyword
    if tok.block == TOP and tok.stmt == i and tok.is_word("allow", "deny", "hide", "limit") and result is not None:
        text = _rule_hover(result, path, src, i)
        if text:
            return text, rng
    names = defined_names(ws, path)
    if tok.text in names and not tok.is_word(*words.KEYWORDS):
        kind, (where, _r), shown = names[tok.text]
        text = f"```plr\n{shown}\n```\n{kind} · {os.path.relpath(where) if not where.startswith('<') else where}"
        if kind == "data" and result is not None:
            for (_f, name), value in result.prog.data.items():
                if name == tok.text:
                    text += f"\n\n```json\n{_clip(json.dumps(value, indent=2, ensure_ascii=False))}\n```"
        return text, rng
    help_text = words.KEYWORD_HELP.get(tok.text)
    if help_text:
        return help_text, rng
    return None


def _clip(text: str, lines: int = 40) -> str:
    parts = text.split("\n")
    return "\n".join(parts[:lines] + (["…"] if len(parts) > lines else []))


def _tool_hover(result: RootResult | None, tool: str, *, partial: bool = False) -> str:
    """``partial``: ``result`` holds only the file's imports and catalogues (it has not parsed yet),
    so the catalogue entry is said and the rules and compiled JSON are not guessed at."""
    head = f"**`{tool}`**"
    if result is None:
        return head + "\n\nno build of this policy yet"
    decls = result.prog.catalogue.get(tool, ())
    out: list[str] = []
    if decls:
        parts = [f"{risk} (server `{server}`)" for server, risk in dict.fromkeys(decls)]
        out.append(f"{head} — " + ", ".join(parts))
        for _server, entry in catalogue_entries(result, tool):
            desc = description(result, entry)
            if desc:
                out.append(f"\n{desc}")
                break
    else:
        out.append(f"{head} — in no catalogue in scope")
    if partial:
        out.append("\nThis file does not parse yet: the rules on this tool and its compiled JSON come with its first build.")
        return "\n".join(out)
    from ..resolve import rules_by_tool

    by_tool, hide_all, limit_all = rules_by_tool(result.prog)
    governing = [*(by_tool[tool].all() if tool in by_tool else []), *hide_all, *limit_all]
    if governing:
        out.append(f"\n**Rules** ({len(governing)}):")
        for rr in sorted(governing, key=lambda r: (r.rule.span.file, r.rule.span.line)):
            out.append(f"- `{result.prog.rule_name(rr.rule.span)}` {_md_code(_statement_line(result, rr.rule.span))}")
    else:
        out.append("\nNo rule names this tool.")
    policy = result.policy()
    if policy is None:
        out.append("\nThe policy has errors: no compiled JSON to show.")
    else:
        doc = policy.to_dict()
        if "*" in doc.get("hide", []) or tool in doc.get("hide", []):
            out.append("\n**Compiled**: hidden (`\"hide\"`): every call is denied and `tools/list` leaves it out.")
        elif tool in doc.get("tools", {}):
            entry = json.dumps(doc["tools"][tool], indent=2, ensure_ascii=False)
            out.append(f"\n**Compiled** (`tools[\"{tool}\"]`):\n```json\n{_clip(entry)}\n```")
        else:
            out.append(f"\n**Compiled**: no entry: `default {doc.get('default')}` decides.")
        if doc.get("all_tools", {}).get("limits"):
            out.append("`all_tools.limits` apply too.")
    return "\n".join(out)


def _md_code(text: str) -> str:
    text = text if len(text) <= 100 else text[:97] + "..."
    return f"`{text}`" if "`" not in text else text


def _glob_hover(result: RootResult | None, pattern: str) -> str:
    if result is None:
        return f"`{pattern}`"
    from ..resolve import glob_regex

    rx = glob_regex(pattern)
    hits = sorted(t for t in result.prog.catalogue if rx.fullmatch(t))
    if not hits:
        return f"`{pattern}` matches no tool in the catalogues in scope"
    shown = ", ".join(f"`{t}`" for t in hits[:30]) + (" …" if len(hits) > 30 else "")
    return f"`{pattern}` selects {len(hits)} tool{'s' if len(hits) != 1 else ''}: {shown}"


def _rule_at(result: RootResult, path: str, src: Source, i: int) -> Any:
    """The resolved rule whose statement starts at token ``i``."""
    display = _display(result, path)
    line, col = src.pos(src.tokens[i].start)
    for rr in result.prog.rules:
        span = rr.rule.span
        if span.file == display and span.line == line + 1 and span.col == col + 1:
            return rr
    return None


def _rule_hover(result: RootResult, path: str, src: Source, i: int) -> str | None:
    rr = _rule_at(result, path, src, i)
    if rr is None:
        return None
    rule = rr.rule
    name = result.prog.rule_name(rule.span)
    out = [f"**{rule.kind}** rule `{name}`"]
    sel = rule.selector
    if sel.kind == "all":
        out.append("selects every tool")
    elif rr.tools:
        shown = ", ".join(f"`{t}`" for t in rr.tools[:20]) + (" …" if len(rr.tools) > 20 else "")
        out.append(f"selects {len(rr.tools)} tool{'s' if len(rr.tools) != 1 else ''}: {shown}")
    else:
        out.append("selects no tool")
    if rule.limit is not None:
        out.append("\n" + limit_words(rule.limit, sel.kind == "all", len(rr.tools)))
    policy = result.policy()
    if policy is None:
        out.append("\nThe policy has errors: no compiled JSON to show.")
        return "\n".join(out)
    doc = policy.to_dict()
    fragments = rule_fragments(doc, name, rule.kind, rr.tools, sel.kind == "all")
    if fragments:
        out.append("\n**Compiled JSON** of this rule:\n```json\n" + _clip(json.dumps(fragments, indent=2, ensure_ascii=False)) + "\n```")
    else:
        out.append("\nThis rule adds nothing to the compiled JSON (another rule decides every tool it selects).")
    return "\n".join(out)


def rule_fragments(doc: dict[str, Any], name: str, kind: str, tools: Iterable[str], all_tools: bool) -> dict[str, Any]:
    """The parts of a compiled policy that one rule wrote: each JSON place (``tools.x.deny_if[0]``)
    holding an object whose ``rule`` is the rule's name; for `hide`, its tools in ``hide``."""
    out: dict[str, Any] = {}
    if kind == "hide":
        hidden = doc.get("hide", [])
        mine = ["*"] if all_tools and "*" in hidden else [t for t in tools if t in hidden]
        if mine:
            out["hide"] = mine
        return out

    def walk(value: Any, where: str, tool_entry: bool = False) -> None:
        if isinstance(value, dict):
            if value.get("rule") == name and not tool_entry:
                out[where] = value  # a condition or a limit: all of it is this rule's
                return
            if tool_entry and value.get("rule") == name:
                # the entry itself (the tool is callable, or denied, because of this rule)
                out[where] = {k: v for k, v in value.items() if k in ("action", "reason", "rule")}
            for k, v in value.items():
                walk(v, f"{where}.{k}" if where else k, where == "tools")
        elif isinstance(value, list):
            for n, v in enumerate(value):
                walk(v, f"{where}[{n}]")

    walk({"tools": doc.get("tools", {}), "all_tools": doc.get("all_tools", {})}, "")
    return out


_WINDOWS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
_SCOPES = {
    "session": "per session (each agent session has its own count)",
    "identity": "per identity (each caller has its own count, across sessions)",
    "global": "for all callers together (one count)",
}


def limit_words(limit: ir.Limit, all_tools: bool, n_tools: int) -> str:
    """A `limit` in a sentence."""
    window = _WINDOWS.get(limit.window) or _duration_words(limit.window)
    calls = f"{limit.max} call{'s' if limit.max != 1 else ''}"
    if all_tools:
        what = f"At most {calls} in all, of any tool, per {window}, {_SCOPES[limit.per]}"
    elif n_tools > 1:
        what = f"At most {calls} of each of its {n_tools} tools (a separate quota each) per {window}, {_SCOPES[limit.per]}"
    else:
        what = f"At most {calls} per {window}, {_SCOPES[limit.per]}"
    return (
        f"{what}. The window slides: a call counts for {limit.window} s after it was allowed. A call over "
        "the quota is denied (`rate_limited`) with the seconds to wait; denied calls use no quota."
    )


def _duration_words(seconds: int) -> str:
    for unit, word in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % unit == 0:
            n = seconds // unit
            return f"{n} {word}s"
    return f"{seconds} seconds"


def _import_target(path: str, spec: str) -> str | None:
    from ..resolve import _import_target as target_of

    target = target_of(spec, path)
    return target if target and os.path.isfile(target) else None


# --- definitions and references ------------------------------------------------------------------


def definition(ws: Workspace, path: str, pos: Pos) -> list[Location]:
    """Where the thing at ``pos`` is defined: an import's file, a tool's catalogue entries, a
    `let`/`def`/`import data` name's definition."""
    src = ws.source(path)
    if src is None:
        return []
    i = src.token_at(src.offset(pos))
    if i is None:
        return []
    tok = src.tokens[i]
    if tok.kind == "string":
        role = src.string_role(i)
        if role in (IMPORT, DATA):
            base = os.path.dirname(path)
            target = _import_target(path, tok.value()) if role == IMPORT else os.path.normpath(os.path.join(base, tok.value()))
            return [(target, ((0, 0), (0, 0)))] if target and os.path.isfile(target) else []
        if role in TOOL_ROLES:
            result = ws.result_for(path)
            return [_span_location(e.span) for _s, e in catalogue_entries(result, tok.value())]
        return []
    if tok.kind == "name":
        p1 = src.prev(i)
        if p1 is not None and p1.text == ".":
            return []
        names = defined_names(ws, path)
        if tok.text in names:
            return [names[tok.text][1]]
    return []


def references(ws: Workspace, path: str, pos: Pos, include_declaration: bool = True) -> list[Location]:
    """Every place the tool (or name) at ``pos`` is written, in every file of the workspace: rule
    selectors, tool lists, test calls, `visible` lists (and catalogue entries, as declarations)."""
    src = ws.source(path)
    if src is None:
        return []
    i = src.token_at(src.offset(pos))
    if i is None:
        return []
    tok = src.tokens[i]
    out: list[Location] = []
    if tok.kind == "string" and src.string_role(i) in TOOL_ROLES:
        tool = tok.value()
        roles = TOOL_ROLES if include_declaration else TOOL_ROLES - {CATALOGUE}
        for f in ws.all_files():
            other = ws.source(f)
            if other is None:
                continue
            for t, _role in other.strings(roles):
                if t.value() == tool:
                    out.append((f, other.range_of(t)))
        return out
    if tok.kind == "name" and (src.prev(i) is None or src.prev(i).text != "."):  # type: ignore[union-attr]
        names = defined_names(ws, path)
        if tok.text not in names:
            return []
        decl = names[tok.text][1]
        for f in ws.all_files():
            other = ws.source(f)
            if other is None:
                continue
            for k, t in enumerate(other.tokens):
                if t.is_word(tok.text) and (k == 0 or other.tokens[k - 1].text != "."):
                    loc = (f, other.range_of(t))
                    if include_declaration or loc != decl:
                        out.append(loc)
    return out


# --- formatting and quick fixes --------------------------------------------------------------------


def formatting(ws: Workspace, path: str) -> tuple[Range, str] | None | bool:
    """`plr fmt` of the open text: (the whole text's range, the new text); False when it is
    already canonical; None when it does not parse (plr fmt refuses it too)."""
    from ..errors import PlrError
    from ..format import format_source

    src = ws.source(path)
    if src is None:
        return None
    try:
        new = format_source(src.text, os.path.relpath(path))
    except PlrError:
        return None
    if new == src.text:
        return False
    return ((0, 0), src.pos(len(src.text))), new


_DID_YOU_MEAN = re.compile(r"did you mean `([^`]+)`\?")
_FIRST_QUOTED = re.compile(r"`([^`]+)`")


def quick_fixes(ws: Workspace, path: str, rng: Range, message: str) -> list[Fix]:
    """The fixes a diagnostic's message offers: every "did you mean `X`?", `=` for `==`, single
    quotes, and a rewrite the message spells out ("write `X`")."""
    src = ws.source(path)
    if src is None:
        return []
    line = src.line_text(rng[0][0])
    fixes: list[Fix] = []
    m = _DID_YOU_MEAN.search(message)
    if m:
        suggestion = m.group(1)
        wrong = next((q for q in _FIRST_QUOTED.findall(message) if q != suggestion), None)
        if wrong:
            fix = _replace_word(line, rng, wrong, suggestion)
            if fix is not None:
                fixes.append(fix)
    if message.startswith("`=` is not an operator"):
        col = rng[0][1]
        if line[col : col + 1] == "=" and line[col : col + 2] != "==":
            fixes.append(Fix("Write `==`", ((rng[0][0], col), (rng[0][0], col + 1)), "=="))
    if message.startswith("strings use double quotes"):
        col = rng[0][1]
        q = re.compile(r"'([^'\n]*)'").match(line, col)
        if q:
            fixes.append(
                Fix(
                    "Use double quotes",
                    ((rng[0][0], q.start()), (rng[0][0], q.end())),
                    json.dumps(q.group(1), ensure_ascii=False),
                )
            )
    rewrite = re.search(r"; (?:to require a value that is not null, )?write `([^`]+)`$", message)
    if rewrite and rng[0][0] == rng[1][0] and rng[1][1] > rng[0][1]:
        fixes.append(Fix(f"Rewrite as `{rewrite.group(1)}`", rng, rewrite.group(1)))
    return fixes


def _replace_word(line: str, rng: Range, wrong: str, suggestion: str) -> Fix | None:
    """Replace ``wrong`` (a word or a string's text) at or after the diagnostic's start on its line."""
    row, col = rng[0]
    end = rng[1][1] if rng[1][0] == row and rng[1][1] > col else len(line)
    quoted = json.dumps(wrong, ensure_ascii=False)
    k = line.find(quoted, col, max(end, col + len(quoted)))
    if k < 0:
        k = line.find(quoted, col)
    if k >= 0:  # a tool name in a string: replace the string's text
        new = json.dumps(suggestion, ensure_ascii=False)
        return Fix(f"Replace `{wrong}` with `{suggestion}`", ((row, k), (row, k + len(quoted))), new)
    for m in re.finditer(r"(?<![A-Za-z0-9_\-])" + re.escape(wrong) + r"(?![A-Za-z0-9_\-])", line):
        if m.start() < col:
            continue
        new = suggestion
        parts = suggestion.split(" ")
        before = line[: m.start()].rstrip().rsplit(None, 1)
        if len(parts) > 1 and before and before[-1] == parts[0]:
            new = " ".join(parts[1:])  # `per minutes` -> `per minute`, not `per per minute`
        return Fix(f"Replace `{wrong}` with `{new}`", ((row, m.start()), (row, m.end())), new)
    return None


__all__ = [
    "Fix",
    "Item",
    "Location",
    "complete",
    "definition",
    "formatting",
    "hover",
    "limit_words",
    "quick_fixes",
    "references",
    "rule_fragments",
    "supported",
]

