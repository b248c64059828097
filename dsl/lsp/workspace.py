"""The policies of an editor's workspace, checked exactly as `plr check` checks them.

``plr check FOLDER`` finds the .plr files under the folder, takes as roots the files with tests
and the files no other file imports (``dsl.tester``'s rule), builds each root with its imports
(``dsl.compiler.build``: load, resolve, every check) and reports each diagnostic once. This
class does the same with the editor's unsaved texts read in place of the files on disk, so the
server never disagrees with ``plr check``: same messages, same places, same severities. An open
file that no root loads (outside every workspace folder, or in an import cycle) is checked on
its own, as ``plr check FILE`` would check it.

After an edit only the roots that load the edited file are built again. A root's build is kept
(its ``Program``: catalogues, rules, names) for completion, hover and go to definition; for a
file that does not parse at the moment, the last build in which it did is used instead, so
completing inside a half-typed statement still knows the catalogues. A file that has not parsed
yet (an editor opens half-written files), or has no build yet, is completed from a partial build
(``partial_result``): its root loaded with only the file's ``import`` and ``server`` statements
that are written whole and parse, in place of its text.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .. import ir
from ..errors import Diagnostic
from .source import Source

Reader = Callable[[str], str]

_PARTIALS_KEPT = 8  # partial builds kept (one per file being completed in)
_TESTS = re.compile(r'^\s*test\s+"', re.MULTILINE)
_IMPORTS = re.compile(r'^\s*import\s+"([^"]+)"', re.MULTILINE)


def default_reader(path: str) -> str:
    """What `plr check` reads a policy with: a regular file only, size-capped, UTF-8."""
    from ..reading import read_policy_text

    return read_policy_text(path)


def abs_file(display: str) -> str:
    """A diagnostic's or program's file name (relative to the working directory, as
    ``dsl.resolve.display_name`` makes it) as an absolute path; ``<stdin>``-like names as they are."""
    if display.startswith("<") and display.endswith(">"):
        return display
    return os.path.abspath(display)


@dataclass
class RootResult:
    """One build of one root: the program, its diagnostics, and every file it read."""

    root: str
    prog: Any  # dsl.resolve.Program
    diagnostics: list[Diagnostic]
    files: frozenset[str]
    modules: dict[str, ir.Module] = field(default_factory=dict)  # absolute path -> module
    _policy: Any = None
    _compiled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def complete(self, path: str) -> bool:
        """Whether this build parsed ``path`` and every file it imports, directly or not."""
        module = self.modules.get(path)
        if module is None:
            return False
        by_file = {m.file: m for m in self.modules.values()}
        seen: set[str] = set()
        stack = [module]
        while stack:
            m = stack.pop()
            if m.file in seen:
                continue
            seen.add(m.file)
            loaded = self.prog.imports_of.get(m.file, [])
            if len(loaded) < len(m.imports):
                return False  # an import that did not load (missing, or a syntax error in it)
            stack.extend(by_file[f] for f in loaded if f in by_file)
        return True

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    def policy(self) -> Any:
        """The compiled policy (``dsl.policy.Policy``), or None while the program has errors."""
        with self._lock:
            if not self._compiled:
                self._compiled = True
                if self.ok and self.prog.modules:
                    from ..compiler import compile_program

                    try:
                        self._policy = compile_program(self.prog)
                    except Exception:  # noqa: BLE001 - hover must not fail on a compiler bug
                        self._policy = None
            return self._policy


class Workspace:
    """The editor's folders and open texts; ``check`` builds, ``diagnostics`` reports."""

    def __init__(self, folders: Iterable[str] = (), reader: Reader = default_reader) -> None:
        self.folders = [os.path.abspath(f) for f in folders]
        self.read = reader
        self.open: dict[str, str] = {}  # absolute path -> the editor's text
        self.files: list[str] = []  # .plr files under the folders
        self.roots: list[str] = []
        self.results: dict[str, RootResult] = {}  # root -> its latest build
        # file -> the latest build that parsed it and everything it imports (a catalogue being
        # edited into a syntax error does not take its tools away from the files importing it)
        self.last_good: dict[str, RootResult] = {}
        self._signature: dict[str, tuple[bool, tuple[str, ...]]] = {}
        self._sources: dict[str, tuple[str, Source]] = {}
        # file -> (its known text, its root, the open texts read, disk epoch, the partial build)
        self._partial: dict[str, tuple[str, str, dict[str, str | None], int, RootResult | None]] = {}
        self._epoch = 0  # counts the checks of everything (files on disk may have changed)
        self._lock = threading.RLock()

    # -- texts ----------------------------------------------------------------------------
    def text(self, path: str, overlay: dict[str, str] | None = None) -> str | None:
        texts = self.open if overlay is None else overlay
        if path in texts:
            return texts[path]
        try:
            return self.read(path)
        except (OSError, ValueError):
            return None

    def source(self, path: str) -> Source | None:
        """The lexed text of a file (the editor's when open), cached per text."""
        text = self.text(path)
        if text is None:
            return None
        cached = self._sources.get(path)
        if cached is not None and cached[0] == text:
            return cached[1]
        src = Source(text)
        self._sources[path] = (text, src)
        return src

    # -- roots ----------------------------------------------------------------------------
    def scan(self) -> None:
        """Find the .plr files under the folders again (new, deleted or renamed files)."""
        from ..tester import discover

        self.files = discover(f for f in self.folders if os.path.isdir(f))
        self._signature.clear()

    def _signature_of(self, path: str, overlay: dict[str, str]) -> tuple[bool, tuple[str, ...]]:
        """What decides whether a file is a root: it has tests; what it imports."""
        text = self.text(path, overlay) or ""
        return bool(_TESTS.search(text)), tuple(_IMPORTS.findall(text))

    def compute_roots(self, overlay: dict[str, str]) -> list[str]:
        """``dsl.tester.suite_roots`` with the editor's texts: files with tests, and files no
        other file imports."""
        from ..resources import stdlib_dir

        imported: set[str] = set()
        has_tests: set[str] = set()
        for f in self.files:
            tests, imports = self._signature[f] = self._signature_of(f, overlay)
            if tests:
                has_tests.add(f)
            for spec in imports:
                if spec.startswith("stdlib/"):
                    name = spec[len("stdlib/") :]
                    imported.add(os.path.realpath(stdlib_dir() / (name if name.endswith(".plr") else name + ".plr")))
                else:
                    imported.add(os.path.realpath(os.path.join(os.path.dirname(f), spec)))
        return [f for f in self.files if f in has_tests or os.path.realpath(f) not in imported]

    # -- checking -------------------------------------------------------------------------
    def build(self, root: str, overlay: dict[str, str]) -> RootResult:
        """Build one root as `plr check` does, reading the editor's texts for open files."""
        from ..compiler import build

        def reader(path: str) -> str:
            key = os.path.abspath(path)
            if key in overlay:
                return overlay[key]
            return self.read(path)

        prog, diags = build([root], reader=reader)
        files = {abs_file(f) for f in prog.sources} | {os.path.abspath(f) for f in prog.data_files}
        files |= {abs_file(d.file) for d in diags}  # a file that could not be read still counts
        files.add(root)
        modules = {m.path: m for m in prog.modules if m.path}
        return RootResult(root, prog, diags, frozenset(files), modules)

    def check(self, changed: Iterable[str] | None = None, overlay: dict[str, str] | None = None) -> set[str]:
        """Build the roots that read a changed file (every root when ``changed`` is None);
        return the files whose diagnostics may have changed. Safe to call from a worker thread:
        ``overlay`` is a copy of the open texts taken when the change arrived."""
        overlay = dict(self.open) if overlay is None else overlay
        with self._lock:
            every = changed is None
            if every:
                self._epoch += 1
            changed_set = set() if changed is None else {os.path.abspath(p) for p in changed}
            if every or any(
                p in self.files and self._signature.get(p) != self._signature_of(p, overlay) for p in changed_set
            ):
                self.roots = self.compute_roots(overlay)
            touched: set[str] = set()

            def refresh(root: str) -> RootResult:
                previous = self.results.get(root)
                if not every and previous is not None and root not in changed_set and not (changed_set & previous.files):
                    return previous
                result = self.build(root, overlay)
                self.results[root] = result
                for path in result.modules:
                    if result.complete(path):
                        self.last_good[path] = result
                touched.update(result.files, previous.files if previous is not None else ())
                return result

            covered: set[str] = set()
            for root in self.roots:
                covered |= refresh(root).files
            # an open file no root reads is checked on its own, as `plr check FILE` would
            orphans = [p for p in overlay if p not in covered and p not in self.roots]
            for root in orphans:
                refresh(root)
            keep = {*self.roots, *orphans}
            for old in [r for r in self.results if r not in keep]:
                touched |= self.results.pop(old).files
            return touched

    def diagnostics(self) -> dict[str, list[Diagnostic]]:
        """Every file's diagnostics over all roots, each once (as `plr check` prints them)."""
        out: dict[str, list[Diagnostic]] = {}
        seen: set[tuple[Any, ...]] = set()
        for root in list(self.results):
            result = self.results.get(root)
            if result is None:
                continue
            for d in result.diagnostics:
                key = (d.severity, d.file, d.line, d.col, d.message)
                if key in seen:
                    continue
                seen.add(key)
                out.setdefault(abs_file(d.file), []).append(d)
        return out

    # -- programs for the features --------------------------------------------------------
    def result_for(self, path: str) -> RootResult | None:
        """The build to answer questions about ``path`` from: a current one that parsed it and all
        it imports (its own root first), else the latest one that did, else a current one that
        parsed it, else any that read it."""
        path = os.path.abspath(path)
        results = list(self.results.values())
        own = self.results.get(path)
        parsed = [r for r in ([own] if own is not None else []) + results if path in r.modules]
        for result in parsed:
            if result.complete(path):
                return result
        good = self.last_good.get(path)
        if good is not None:
            return good
        if parsed:
            return parsed[0]
        for result in results:
            if path in result.files:
                return result
        return own

    def partial_result(self, path: str, skip: int | None = None) -> RootResult | None:
        """A build of what can be known of ``path`` without parsing all of it, for completion
        while the file has no build that parsed it (it never parsed, or it was not built yet).

        The file's ``import``, ``import data`` and ``server`` statements that are written whole
        (``Source.complete_statements``; not the one holding offset ``skip``, the one being
        typed) stand in for its text, at their places (the rest blanked), and the root that
        reads the file (else the file itself) is loaded with that text: the parser judges each
        statement (one that does not parse alone is left out), the imports are followed as
        `plr check` follows them, and an import that cannot be resolved brings nothing. No
        checks run and no policy is compiled. None when nothing is known (or on any failure:
        this never raises). Kept until the known text, an open text it read, or the files on
        disk (``check`` of everything) change."""
        try:
            return self._partial_result(os.path.abspath(path), skip)
        except Exception:  # noqa: BLE001 - completion answers from what there is
            return None

    def _partial_result(self, path: str, skip: int | None) -> RootResult | None:
        src = self.source(path)
        if src is None:
            return None
        spans = [(a, b) for a, b in src.complete_statements() if skip is None or not a <= skip <= b]
        if not spans:
            return None
        text = _keep_only(src.text, spans)
        root = path
        if path not in self.results:
            for result in list(self.results.values()):
                if path in result.files:
                    root = result.root
                    break
        cached = self._partial.get(path)
        if (
            cached is not None
            and cached[0] == text
            and cached[1] == root
            and cached[3] == self._epoch
            and all(self.open.get(f) == t for f, t in cached[2].items())
        ):
            return cached[4]
        epoch = self._epoch
        result = None
        for base in dict.fromkeys([root, path]):  # the file alone when its root no longer reads it
            result = self._load_known(base, path, src.text, spans, text)
            if result is not None:
                break
        read = {f: self.open.get(f) for f in (result.files if result is not None else ()) if f != path}
        self._partial.pop(path, None)
        self._partial[path] = (text, root, read, epoch, result)
        while len(self._partial) > _PARTIALS_KEPT:
            del self._partial[next(iter(self._partial))]  # the least recently built
        return result

    def _load_known(self, root: str, path: str, full: str, spans: list[tuple[int, int]], text: str) -> RootResult | None:
        """``_load_partial`` of ``text`` (``full`` with only ``spans`` kept); when the parser
        refuses one of them (`server "s" { tool "a" raed }`), of the others; None when ``root``
        does not load ``path``."""
        result = self._load_partial(root, path, text)
        if path in result.modules:
            return result
        from ..errors import PlrError
        from ..lower import lower_source

        def parses(span: tuple[int, int]) -> bool:
            try:
                lower_source(full[span[0] : span[1]], path)
            except (PlrError, RecursionError, ValueError):
                return False
            return True

        good = [span for span in spans if parses(span)]
        if not good or len(good) == len(spans):
            return None
        result = self._load_partial(root, path, _keep_only(full, good))
        return result if path in result.modules else None

    def _load_partial(self, root: str, path: str, text: str) -> RootResult:
        """Load ``root`` (with its imports, no checks) reading ``text`` for ``path``."""
        from ..resolve import load_program

        overlay = dict(self.open)
        overlay[path] = text

        def reader(p: str) -> str:
            key = os.path.abspath(p)
            if key in overlay:
                return overlay[key]
            return self.read(p)

        prog = load_program([root], reader=reader)
        files = {abs_file(f) for f in prog.sources} | {os.path.abspath(f) for f in prog.data_files}
        files.add(root)
        modules = {m.path: m for m in prog.modules if m.path}
        # no policy: a partial program is not the file's (`policy()` answers None)
        return RootResult(root, prog, list(prog.diagnostics), frozenset(files), modules, _compiled=True)

    def all_files(self) -> list[str]:
        """Every file the workspace knows: under its folders, open, or read by a root."""
        files = dict.fromkeys([*self.files, *self.open])
        for result in list(self.results.values()):
            files.update(dict.fromkeys(f for f in result.files if f.endswith(".plr")))
        return list(files)


def _keep_only(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with everything outside ``spans`` (sorted offsets) blanked: a line break stays a
    line break and the rest of a line becomes spaces, so what is kept is where it was (line and
    column); nothing after the last span."""
    out: list[str] = []
    at = 0
    for start, end in spans:
        gap = text[at:start]
        breaks = gap.count("\n")
        out.append("\n" * breaks + " " * (len(gap) - gap.rfind("\n") - 1 if breaks else len(gap)))
        out.append(text[start:end])
        at = end
    return "".join(out) + "\n"
