"""Modules → one Program: follow imports, build the catalogue, expand selectors to tool names.

File access goes through a ``reader`` callable so the stage stays testable without a disk.
Every problem is collected (all files, all statements); nothing stops at the first error.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import ir
from .errors import Diagnostic, PlrError, line_of
from .lower import lower_source
from .names import NameError_, Names, resolve_names, resolved_rule
from .resources import stdlib_dir
from .validate import DuplicateKey, locate_duplicate, tool_name_problem, unique_keys
from .vocab import has_glob_chars

Reader = Callable[[str], str]


def read_text(path: str) -> str:
    """Read a policy file as UTF-8 text; a clear error for binary or unreadable files."""
    return read_source(path)[1]


def read_source(path: str) -> tuple[bytes, str]:
    """A policy file's bytes and their text (the compiled-policy cache hashes what was read).

    Read by ``read_policy_bytes``, the reader of `plr compile` and the proxy: a regular file
    only (a FIFO or a device is refused, never waited on) of at most ``MAX_POLICY_BYTES``. So
    every caller that takes the default reader (`plr test`, `plr watch`, the cache) refuses
    what `plr compile` refuses, with the same words."""
    from .reading import read_policy_bytes

    data = read_policy_bytes(path)  # OSError (the message only) or ValueError, as callers expect
    try:
        return data, data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (invalid byte at offset {e.start}); is this a .plr file?") from None


@dataclass
class ResolvedRule:
    rule: ir.Rule
    tools: tuple[str, ...]  # expanded selector; empty for `all tools`
    module: ir.Module


@dataclass
class Program:
    """Everything the checks and the compiler need, in a deterministic order."""

    modules: list[ir.Module] = field(default_factory=list)
    roots: list[ir.Module] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # display file -> text
    rule_names: dict[str, str] = field(default_factory=dict)  # display file -> name in `rule`
    # tool -> every (server, class) declaring it, in load order. A tool two catalogues class
    # differently has every one of those classes: each class selector selects it.
    catalogue: dict[str, tuple[tuple[str, ir.Risk], ...]] = field(default_factory=dict)
    servers: dict[str, list[ir.CatalogueTool]] = field(default_factory=dict)
    rules: list[ResolvedRule] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # display file -> display files it imports (a name is seen by the files importing its file)
    imports_of: dict[str, list[str]] = field(default_factory=dict)
    # (display file, name) -> the document of its `import data` (absent when it could not be read)
    data: dict[tuple[str, str], Any] = field(default_factory=dict)
    data_files: list[str] = field(default_factory=list)  # absolute paths of the data files read

    def classes_of(self, tool: str) -> tuple[ir.Risk, ...]:
        """The risk classes of a catalogue tool (empty when no catalogue declares it)."""
        return tuple(dict.fromkeys(risk for _, risk in self.catalogue.get(tool, ())))

    def rule_name(self, span: ir.Span) -> str:
        # a file name that is not UTF-8 reaches Python as lone surrogates, which no JSON output
        # can carry: its bytes are written as \xNN escapes instead
        name = self.rule_names.get(span.file, span.file)
        return f"{os.fsencode(name).decode('utf-8', 'backslashreplace')}:{span.line}"

    def in_stdlib(self, span: ir.Span) -> bool:
        """Whether ``span`` is in a file of plr's standard library (not the user's to change)."""
        return self.rule_name(span).startswith("stdlib/")

    def diagnostic(self, severity: str, message: str, span: ir.Span) -> Diagnostic:
        width = max(1, span.end_col - span.col) if span.end_line == span.line else 1
        return Diagnostic(
            severity,  # type: ignore[arg-type]
            message,
            span.file,
            span.line,
            span.col,
            line_of(self.sources.get(span.file, ""), span.line),
            width,
        )

    def error(self, message: str, span: ir.Span) -> None:
        self.diagnostics.append(self.diagnostic("error", message, span))

    def warn(self, message: str, span: ir.Span) -> None:
        self.diagnostics.append(self.diagnostic("warning", message, span))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def statements(self, kind: type) -> list:  # type: ignore[type-arg]
        return [s for m in self.modules for s in m.statements if isinstance(s, kind)]


def display_name(path: str) -> str:
    """How a file is named in messages: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def load_program(
    paths: list[str],
    reader: Reader = read_text,
    texts: dict[str, str] | None = None,
) -> Program:
    """Load root files (and their imports, each once); never raises for bad input.

    ``texts`` maps a display name to source text for roots that are not files (stdin, tests).
    """
    prog = Program()
    loaded: dict[str, ir.Module | None] = {}
    edges: dict[str, list[tuple[ir.Import, str]]] = {}  # display file -> (its import, the file it loads)
    base_dir = ""
    first = paths[0] if paths else next(iter(texts or {}), "")
    if first and not (texts and first in texts):
        base_dir = os.path.dirname(os.path.abspath(first))

    def rule_name_for(abs_path: str, display: str) -> str:
        std = stdlib_dir()
        try:
            if Path(abs_path).resolve().is_relative_to(std.resolve()):
                return "stdlib/" + Path(abs_path).resolve().relative_to(std.resolve()).as_posix()
        except (OSError, ValueError):
            pass
        if not base_dir or not abs_path:
            return display
        rel = os.path.relpath(abs_path, base_dir)
        return Path(rel).as_posix()

    def load(abs_path: str, display: str, stack: list[str], text: str | None = None) -> ir.Module | None:
        key = abs_path or display
        if key in loaded:
            return loaded[key]
        loaded[key] = None
        if text is None:
            try:
                text = reader(abs_path)
            except (OSError, ValueError) as e:
                prog.diagnostics.append(Diagnostic("error", f"cannot read {display}: {e}", display))
                return None
        prog.sources[display] = text
        prog.rule_names[display] = rule_name_for(abs_path, display)
        try:
            module = lower_source(text, display, abs_path)
        except PlrError as e:
            prog.diagnostics.extend(e.diagnostics)
            return None
        except RecursionError:
            prog.diagnostics.append(Diagnostic("error", "file is nested too deeply to read", display))
            return None
        except Exception as e:  # noqa: BLE001 - a lowering bug must be an error, not a crash
            cause = getattr(e, "orig_exc", e)
            prog.diagnostics.append(
                Diagnostic("error", f"internal error while reading this file: {type(cause).__name__}: {cause}", display)
            )
            return None
        loaded[key] = module
        prog.modules.append(module)
        imported = prog.imports_of.setdefault(display, [])
        for data_imp in module.data_imports:
            _load_data(prog, data_imp, display, abs_path, reader)
        for imp in module.imports:
            target = _import_target(imp.path, abs_path)
            if target is None:
                prog.error(_stdlib_missing(imp.path), imp.span)
                continue
            if target in stack or target == abs_path:
                chain = " -> ".join(display_name(p) for p in [*stack, abs_path, target])
                prog.error(f"import cycle: {chain}", imp.span)
                continue
            if not os.path.isfile(target):
                prog.error(f"cannot import `{imp.path}`: no such file ({display_name(target)}){_stdlib_hint(imp.path)}", imp.span)
                continue
            child = load(target, display_name(target), [*stack, abs_path])
            if child is not None:
                imported.append(child.file)
                edges.setdefault(display, []).append((imp, child.file))
        return module

    for p in paths:
        abs_p = os.path.abspath(p)
        module = load(abs_p, display_name(abs_p) if os.path.isabs(p) else os.path.normpath(p), [])
        if module is not None and module not in prog.roots:
            prog.roots.append(module)
    for name, text in (texts or {}).items():
        module = load("", name, [], text)
        if module is not None:
            prog.roots.append(module)

    _build_catalogue(prog)
    names = resolve_names(prog)
    _expand_selectors(prog, names)
    _check_named_patterns(prog, names)
    _check_tool_names(prog)
    _warn_imported_default(prog, edges)
    return prog


def _check_tool_names(prog: Program) -> None:
    """A tool name no MCP tool can bear (whitespace, a control or a format character) in a rule's
    selector is an error: `deny tool "delete_file "` would govern no tool and leave `delete_file`
    to the default, a fail-open no reader sees. In a comparison of `tool` it is a warning: that is
    how a policy still reaches a server that names a tool so against the MCP spec, as a condition
    on `tool` reaches tools beyond the catalogues (docs/language.md, "Selectors"). (Catalogue
    entries: ``_build_catalogue``; the JSON loader: ``validate.check_tool_names``.)"""
    for rr in prog.rules:
        sel = rr.rule.selector
        names = sel.names if sel.kind in ("tool", "list") else (sel.pattern or "",) if sel.kind == "glob" else ()
        effect = "this glob would match no tool" if sel.kind == "glob" else "this rule would govern no tool"
        for name in names:
            problem = tool_name_problem(name, effect)
            if problem is not None:
                prog.error(problem, _name_span(prog, sel, name) if sel.kind == "list" else sel.span)
    written = [d.body for m in prog.modules for d in m.defs]  # a predicate no rule calls yet
    for leaf in (c for root in [*(rr.rule.condition for rr in prog.rules), *written] for c in _leaves(root)):
        if leaf.path.root != "tool" or leaf.path.steps or leaf.op not in ("eq", "neq", "in", "not_in"):
            continue
        values = leaf.value if isinstance(leaf.value, list) else [leaf.value]
        for value in values:
            if not isinstance(value, str):
                continue
            problem = tool_name_problem(value, "this comparison is about no tool a conforming server has")
            if problem is not None:
                prog.warn(
                    f"{problem} (a warning, not an error: a condition on `tool` is how a policy reaches the "
                    "tool of a server that breaks this rule)",
                    leaf.span,
                )
                break


def _warn_imported_default(prog: Program, edges: dict[str, list[tuple[ir.Import, str]]]) -> None:
    """A `default allow` that an imported file (not plr's stdlib) sets is the whole policy's
    default, while the file compiled says none and reads as `default deny` (language.md): every
    tool no rule mentions is allowed by a line its reader does not see. A warning at the import
    of each root file that brings it in (docs/language.md, `import`): not an error, since one
    `default` across all loaded files is the language's rule and a shared base file may mean it."""
    defaults = prog.statements(ir.Default)
    if len(defaults) != 1 or defaults[0].effect != "allow":
        return  # none, deny, or a duplicate (an error of its own)
    span = defaults[0].span
    if prog.in_stdlib(span) or any(root.file == span.file for root in prog.roots):
        return
    where = f"{span.file}:{span.line}"
    for root in prog.roots:
        chain = _import_chain(edges, root.file, span.file)
        if not chain:
            continue
        through = " -> ".join(imp.path for imp, _ in chain)
        prog.warn(
            f"`default allow` comes from {where}, which this file imports"
            + (f" ({through})" if len(chain) > 1 else "")
            + ": every tool that no rule mentions is allowed, though this file has no `default` (which reads "
            "as deny). If allow is meant, move `default allow` into this file; if not, delete it there",
            chain[0][0].span,
        )


_STRING = re.compile(r'"[^"\\\n\r]*(?:\\.[^"\\\n\r]*)*"')  # the grammar's STRING


def _name_span(prog: Program, sel: ir.Selector, name: str) -> ir.Span:
    """Where ``name`` is written in a `tools [...]` selector on one line (the selector's place otherwise)."""
    span = sel.span
    if span.line != span.end_line:
        return span
    text = line_of(prog.sources.get(span.file, ""), span.line)
    for m in _STRING.finditer(text, max(span.col - 1, 0), max(span.end_col - 1, 0)):
        try:
            if json.loads(m.group()) == name:
                col, end = m.start() + 1, m.end() + 1
                return ir.Span(file=span.file, line=span.line, col=col, end_line=span.line, end_col=end)
        except ValueError:
            continue
    return span


def _import_chain(edges: dict[str, list[tuple[ir.Import, str]]], start: str, goal: str) -> list[tuple[ir.Import, str]]:
    """The first (breadth-first, in source order) chain of imports from ``start`` to ``goal``."""
    paths: dict[str, list[tuple[ir.Import, str]]] = {start: []}
    queue = [start]
    for file in queue:
        for imp, child in edges.get(file, ()):
            if child in paths:
                continue
            paths[child] = [*paths[file], (imp, child)]
            if child == goal:
                return paths[child]
            queue.append(child)
    return []


def _check_named_patterns(prog: Program, names: Names) -> None:
    r"""`matches NAME`, where the `let` or `import data` value holds a backspace (U+0008): JSON's
    `\b` as written in a `let` or a data file, not the word boundary meant (a pattern written in
    place is checked where it is written, at its escape). How the value was spelled is gone by
    now, so a backspace is refused however written: RE2 spells one `\\x08`."""
    for module in prog.modules:
        roots = [r.condition for r in module.rules] + [d.body for d in module.defs]
        for leaf in (c for root in roots for c in _leaves(root)):
            if leaf.op != "regex" or not isinstance(leaf.value, ir.Ref):
                continue
            try:
                value = names.literal(leaf.value, module.file)
            except (NameError_, RecursionError):
                continue  # reported where the rule is resolved
            if isinstance(value, str) and "\x08" in value:
                prog.error(
                    f"`{leaf.value.text()}` holds a backspace (U+0008), not a word boundary: `\\b` in a JSON "
                    "string (a `let`, a data file) is a backspace. Write `\\\\b` there for a word boundary "
                    "(`\\\\x08` if a backspace is truly meant)",
                    leaf.value.span,
                )


def _leaves(c: ir.Condition | None) -> list[ir.Compare]:
    """The comparisons of a condition as written (calls of predicates not followed)."""
    out: list[ir.Compare] = []
    stack = [c]
    while stack:
        x = stack.pop()
        if isinstance(x, ir.Compare):
            out.append(x)
        elif isinstance(x, (ir.And, ir.Or)):
            stack.extend(x.items)
        elif isinstance(x, ir.Not):
            stack.append(x.item)
        elif isinstance(x, ir.Quantifier):
            stack.append(x.body)
    return out


def _load_data(prog: Program, imp: ir.DataImport, display: str, importer: str, reader: Reader) -> None:
    """Read one `import data` file (relative to the importing file) through ``reader``, so the
    compiled-policy cache records it like any imported .plr file."""
    base = os.path.dirname(importer) if importer else os.getcwd()
    target = os.path.normpath(os.path.join(base, imp.path))
    shown = display_name(target)
    if not imp.path.endswith(".json"):
        prog.error(f"`import data` reads a JSON file: `{imp.path}` does not end in .json", imp.span)
        return
    try:
        text = reader(target)
    except (OSError, ValueError) as e:
        prog.error(f"cannot read data file `{imp.path}` ({shown}): {e}", imp.span)
        return
    try:
        value = json.loads(text, parse_constant=_no_constant, object_pairs_hook=unique_keys)
    except DuplicateKey as e:
        d = locate_duplicate(text, e)
        where = f" (line {d.line}, column {d.col})" if d.line else ""
        prog.error(f"data file `{imp.path}`: {d}{where}", imp.span)
        return
    except json.JSONDecodeError as e:
        prog.error(f"data file `{imp.path}` is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}", imp.span)
        return
    except (ValueError, RecursionError) as e:
        prog.error(f"data file `{imp.path}` is not valid JSON: {e}", imp.span)
        return
    prog.data[(display, imp.name)] = value
    prog.data_files.append(target)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _import_target(spec: str, importer: str) -> str | None:
    if spec.startswith("stdlib/"):
        name = spec[len("stdlib/") :]
        if not name.endswith(".plr"):
            name += ".plr"
        candidate = stdlib_dir() / name
        return str(candidate) if candidate.is_file() else None
    base = os.path.dirname(importer) if importer else os.getcwd()
    return os.path.normpath(os.path.join(base, spec))


def _stdlib_missing(spec: str) -> str:
    """Why ``import "stdlib/..."`` found nothing: the likeliest names first, then what the stdlib
    holds, summed up (the full list of its catalogues is `plr catalog`'s to show)."""
    if not spec.startswith("stdlib/"):
        return f"cannot import `{spec}`"
    return stdlib_missing_message(spec, sorted(p.stem for p in stdlib_dir().glob("*.plr")))


def _stdlib_hint(spec: str) -> str:
    """For a file import that does not exist but names a stdlib module (`import "server-github"`,
    `import "github"`): how that module is imported, since the file was most likely never meant.
    Only a bare name (no folder) is taken for one: `./rules/baseline.plr` is someone's own file."""
    from .catalog import stdlib_core

    bare = spec.removeprefix("./")
    if not bare or "/" in bare or "\\" in bare:
        return ""
    wanted = stdlib_core(bare)
    for path in sorted(stdlib_dir().glob("*.plr")):
        if stdlib_core(path.stem) == wanted:
            return f"; the stdlib module of that name is imported as `stdlib/{path.stem}`"
    return ""


def stdlib_missing_message(spec: str, names: list[str], width: int = 100) -> str:
    """The message for a missing stdlib module ``spec`` given the modules there are: a
    did-you-mean (``server-NAME`` for a bare ``NAME``, difflib's close matches, the names that
    start with it; three at most), then the modules in two groups, the rule packs by name and
    the server catalogues counted, wrapped at ``width`` with the continuation lines indented
    (the old one-line list of every module was 5,000 characters). Pure: tested without files."""
    import textwrap

    from .catalog import nearest_stdlib_names

    close = nearest_stdlib_names(spec, names)
    head = f"no stdlib module `{spec}`"
    if close:
        shown = [f"`stdlib/{c}`" for c in close]
        head += "; did you mean " + (", ".join(shown[:-1]) + " or " if len(shown) > 1 else "") + shown[-1] + "?"
    servers = [n for n in names if n.startswith("server-")]
    others = [f"stdlib/{n}" for n in names if not n.startswith("server-")]
    summary = f"the stdlib has {len(names)} modules: " + ", ".join(others)
    if servers:
        summary += (
            f"{' and ' if others else ''}{len(servers)} server catalogues `stdlib/server-NAME` "
            "(`plr catalog` lists them, `plr catalog --search WORD` finds a server by its tools)"
        )
    return head + "\n" + textwrap.fill(summary, width, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)


def _build_catalogue(prog: Program) -> None:
    """Collect the `server` blocks. One server declaring a tool twice with two classes is an
    error; two servers classing one tool name differently is allowed (a name is matched
    whatever server it comes from) but warned about: the tool then has both classes, so a
    rule on either class selects it (`deny destructive tools` is never dodged by a `read`
    declaration elsewhere, whichever file is loaded first)."""
    first_decl: dict[tuple[str, ir.Risk], tuple[str, ir.CatalogueTool]] = {}
    for cat in prog.statements(ir.Catalogue):
        entries = prog.servers.setdefault(cat.server, [])
        seen = {t.name: t for t in entries}
        for tool in cat.tools:
            if has_glob_chars(tool.name):
                # a class or glob rule would carry it into `hide` or `tools`, where `*` and `?` are
                # refused (a wildcard there is every tool, or a typo'd pattern); the MCP spec's
                # tool names are letters, digits, `_`, `-` and `.`
                prog.error(
                    f"tool `{tool.name}` of server `{cat.server}`: `*` and `?` cannot be in a catalogued "
                    "tool name (MCP tool names are letters, digits, `_`, `-` and `.`); a server's tool "
                    f'named so is governed by a condition on every call: `all tools if tool == "{tool.name}"`',
                    tool.span,
                )
                continue
            problem = tool_name_problem(tool.name, "a rule naming it would govern no tool")
            if problem is not None:
                prog.error(
                    f"server `{cat.server}`: {problem} (the tool of a server that breaks this rule is governed by "
                    'a condition on every call: `all tools if tool == "..."`)',
                    tool.span,
                )
                continue
            if tool.name in seen:
                if seen[tool.name].risk != tool.risk:
                    prog.error(
                        f"tool `{tool.name}` of server `{cat.server}` is declared twice, "
                        f"as {seen[tool.name].risk} and as {tool.risk}",
                        tool.span,
                    )
                continue
            seen[tool.name] = tool
            entries.append(tool)
            decls = prog.catalogue.get(tool.name, ())
            others = [risk for _, risk in decls if risk != tool.risk]
            if others and (tool.name, tool.risk) not in first_decl:
                classes = " and ".join(dict.fromkeys([*(r for _, r in decls), tool.risk]))
                _warn_two_classes(prog, first_decl[(tool.name, others[0])], (cat.server, tool), classes)
            first_decl.setdefault((tool.name, tool.risk), (cat.server, tool))
            prog.catalogue[tool.name] = (*decls, (cat.server, tool.risk))


def _warn_two_classes(
    prog: Program, first: tuple[str, ir.CatalogueTool], later: tuple[str, ir.CatalogueTool], classes: str
) -> None:
    """Warn at the later declaration, unless that one is in the stdlib and the first is not:
    the warning belongs in a file the user can change (a catalogue of their own is loaded
    before the stdlib modules it imports)."""
    here, there = later, first
    if prog.in_stdlib(later[1].span) and not prog.in_stdlib(first[1].span):
        here, there = first, later
    tool = here[1]
    prog.warn(
        f"tool `{tool.name}` is classified as {tool.risk} here but as {there[1].risk} by server "
        f"`{there[0]}` ({prog.rule_name(there[1].span)}): it counts as {classes}, so rules on "
        "each of those classes select it",
        tool.span,
    )


def glob_regex(pattern: str) -> "re.Pattern[str]":
    """The language's globs: `*` any run of characters, `?` one; everything else literal
    (unlike fnmatch, `[...]` is not a character class: tool names may contain brackets)."""
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _expand_selectors(prog: Program, names: Names) -> None:
    known = sorted(prog.catalogue)
    for module in prog.modules:
        for written in module.rules:
            rule = resolved_rule(names, written, module.file)
            sel = rule.selector
            tools: tuple[str, ...] = ()
            if sel.kind in ("tool", "list"):
                tools = tuple(dict.fromkeys(sel.names))
            elif sel.kind == "glob":
                pattern = sel.pattern or ""
                matcher = glob_regex(pattern)
                tools = tuple(t for t in known if matcher.fullmatch(t))
                if not tools:
                    where = "any declared catalogue" if known else "a catalogue (none is declared or imported)"
                    prog.error(f'glob `{pattern}` matches no tool in {where}', sel.span)
            elif sel.kind == "class":
                tools = tuple(t for t in known if sel.risk in prog.classes_of(t))
                if not tools:
                    prog.warn(f"no catalogue classifies any tool as {sel.risk}: this rule selects nothing", sel.span)
            prog.rules.append(ResolvedRule(rule=rule, tools=tools, module=module))


@dataclass
class ToolRules:
    """Every rule that selects one tool, split by what it does (source order kept)."""

    hide: list[ResolvedRule] = field(default_factory=list)
    deny: list[ResolvedRule] = field(default_factory=list)  # unconditional
    deny_if: list[ResolvedRule] = field(default_factory=list)
    deny_unless: list[ResolvedRule] = field(default_factory=list)
    allow: list[ResolvedRule] = field(default_factory=list)  # unconditional
    allow_if: list[ResolvedRule] = field(default_factory=list)
    limit: list[ResolvedRule] = field(default_factory=list)

    def add(self, rr: ResolvedRule) -> None:
        r = rr.rule
        if r.kind == "hide":
            self.hide.append(rr)
        elif r.kind == "limit":
            self.limit.append(rr)
        elif r.kind == "allow":
            (self.allow_if if r.guard == "if" else self.allow).append(rr)
        elif r.guard == "if":
            self.deny_if.append(rr)
        elif r.guard == "unless":
            self.deny_unless.append(rr)
        else:
            self.deny.append(rr)

    def callable(self, default: str, granted: bool = False) -> bool:
        """The language's definition: default allow, an allow rule, or a `deny ... unless`; or,
        with ``granted`` (an `allow all tools if` rule exists), always: a tool with no grant of
        its own is callable when that rule's condition holds."""
        return default == "allow" or granted or self.own_grant()

    def own_grant(self) -> bool:
        """Whether a rule of this tool's own makes it callable (an allow, or a `deny … unless`)."""
        return bool(self.allow or self.allow_if or self.deny_unless)

    def all(self) -> list[ResolvedRule]:
        return [*self.hide, *self.deny, *self.deny_if, *self.deny_unless, *self.allow, *self.allow_if, *self.limit]


@dataclass
class AllToolsRules:
    """The rules on `all tools` but `hide`: what applies to every call, named tool or not."""

    deny_if: list[ResolvedRule] = field(default_factory=list)
    deny_unless: list[ResolvedRule] = field(default_factory=list)
    allow_if: list[ResolvedRule] = field(default_factory=list)  # grants: a tool with no grant of its own
    limit: list[ResolvedRule] = field(default_factory=list)


def all_tools_rules(prog: Program) -> AllToolsRules:
    """The `allow`/`deny`/`limit all tools` rules, by what they do (source order kept).
    Unconditional `allow`/`deny all tools` are errors (checks): they are left out."""
    out = AllToolsRules()
    for rr in prog.rules:
        r = rr.rule
        if r.selector.kind != "all" or r.kind == "hide":
            continue
        if r.kind == "limit":
            out.limit.append(rr)
        elif r.condition is None:
            continue
        elif r.kind == "allow":
            out.allow_if.append(rr)
        elif r.guard == "if":
            out.deny_if.append(rr)
        else:
            out.deny_unless.append(rr)
    return out


def rules_by_tool(prog: Program) -> tuple[dict[str, ToolRules], list[ResolvedRule], list[ResolvedRule]]:
    """Group rules per selected tool; also return the `hide all tools` and `limit all tools`
    rules (the other rules on all tools: ``all_tools_rules``)."""
    by_tool: dict[str, ToolRules] = {}
    hide_all: list[ResolvedRule] = []
    limit_all: list[ResolvedRule] = []
    for rr in prog.rules:
        if rr.rule.selector.kind == "all":
            if rr.rule.kind == "hide":
                hide_all.append(rr)
            elif rr.rule.kind == "limit":
                limit_all.append(rr)
            continue  # allow/deny all tools: all_tools_rules
        for tool in rr.tools:
            by_tool.setdefault(tool, ToolRules()).add(rr)
    return by_tool, hide_all, limit_all


def program_default(prog: Program) -> str:
    defaults = prog.statements(ir.Default)
    return defaults[0].effect if defaults else "deny"


def program_package(prog: Program) -> str | None:
    for m in [*prog.roots, *prog.modules]:
        pkgs = m.of(ir.Package)
        if pkgs:
            return pkgs[0].name
    return None
