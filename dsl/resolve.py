"""Modules → one Program: follow imports, build the catalogue, expand selectors to tool names.

File access goes through a ``reader`` callable so the stage stays testable without a disk.
Every problem is collected (all files, all statements); nothing stops at the first error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import ir
from .errors import Diagnostic, PlrError, line_of
from .lower import lower_source
from .resources import stdlib_dir

Reader = Callable[[str], str]


def read_text(path: str) -> str:
    """Read a policy file as UTF-8 text; a clear error for binary or unreadable files."""
    return read_source(path)[1]


def read_source(path: str) -> tuple[bytes, str]:
    """A policy file's bytes and their text (the compiled-policy cache hashes what was read)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise OSError(e.strerror or str(e)) from None
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
    catalogue: dict[str, tuple[str, ir.Risk]] = field(default_factory=dict)  # tool -> (server, risk)
    servers: dict[str, list[ir.CatalogueTool]] = field(default_factory=dict)
    rules: list[ResolvedRule] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def rule_name(self, span: ir.Span) -> str:
        return f"{self.rule_names.get(span.file, span.file)}:{span.line}"

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
                prog.error(f"cannot import `{imp.path}`: no such file ({display_name(target)})", imp.span)
                continue
            load(target, display_name(target), [*stack, abs_path])
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
    _expand_selectors(prog)
    return prog


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
    if not spec.startswith("stdlib/"):
        return f"cannot import `{spec}`"
    names = sorted(p.stem for p in stdlib_dir().glob("*.plr"))
    return f"no stdlib module `{spec}`; available: " + ", ".join(f"stdlib/{n}" for n in names)


def _build_catalogue(prog: Program) -> None:
    for cat in prog.statements(ir.Catalogue):
        entries = prog.servers.setdefault(cat.server, [])
        seen = {t.name: t for t in entries}
        for tool in cat.tools:
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
            prog.catalogue.setdefault(tool.name, (cat.server, tool.risk))


def glob_regex(pattern: str) -> "re.Pattern[str]":
    """The language's globs: `*` any run of characters, `?` one; everything else literal
    (unlike fnmatch, `[...]` is not a character class: tool names may contain brackets)."""
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _expand_selectors(prog: Program) -> None:
    known = sorted(prog.catalogue)
    for module in prog.modules:
        for rule in module.rules:
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
                tools = tuple(t for t in known if prog.catalogue[t][1] == sel.risk)
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

    def callable(self, default: str) -> bool:
        """The language's definition: default allow, an allow rule, or a `deny ... unless`."""
        return default == "allow" or bool(self.allow or self.allow_if or self.deny_unless)

    def all(self) -> list[ResolvedRule]:
        return [*self.hide, *self.deny, *self.deny_if, *self.deny_unless, *self.allow, *self.allow_if, *self.limit]


def rules_by_tool(prog: Program) -> tuple[dict[str, ToolRules], list[ResolvedRule], list[ResolvedRule]]:
    """Group rules per selected tool; also return the `hide all tools` and `limit all tools` rules."""
    by_tool: dict[str, ToolRules] = {}
    hide_all: list[ResolvedRule] = []
    limit_all: list[ResolvedRule] = []
    for rr in prog.rules:
        if rr.rule.selector.kind == "all":
            if rr.rule.kind == "hide":
                hide_all.append(rr)
            elif rr.rule.kind == "limit":
                limit_all.append(rr)
            continue  # allow/deny all tools is an error reported by checks
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
