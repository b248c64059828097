"""`plr lsp`: the pygls wiring of ``workspace`` and ``features``.

What an editor gets:

* diagnostics for every policy of the workspace (imports across files), exactly `plr check`'s:
  the same messages and severities, at ``line:col`` over the caret's width; after an edit, the
  roots that read the edited file are built again (in a worker thread; edits that arrive
  meanwhile are folded into the next build, so a burst of keystrokes costs one build, not many);
* completion, hover, go to definition, find references, formatting (`plr fmt`) and a quick fix
  for every "did you mean" (``features``).

The client's text is synchronised whole (``TextDocumentSyncKind.Full``): plr counts lines at
``\\n`` only, and applying incremental edits with a different idea of lines (pygls splits at form
feeds and U+2028 too) could put a change in the wrong place. Positions go to and from the
client's encoding (UTF-16 unless the client offers another) here, and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from . import features
from .source import Pos, Range
from .workspace import Workspace

log = logging.getLogger("plr.lsp")

SETTLE_S = 2.0  # how long a hover or a definition waits for a build in progress
SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning}


class PlrLanguageServer(LanguageServer):
    def __init__(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            plr_version = version("plr")
        except PackageNotFoundError:
            plr_version = "0"
        super().__init__("plr", plr_version, text_document_sync_kind=types.TextDocumentSyncKind.Full)
        self.plr = Workspace()
        self.published: dict[str, list[types.Diagnostic]] = {}
        self._dirty: set[str] = set()
        self._everything = False
        self._checker: asyncio.Task[None] | None = None
        self.checks = 0  # builds run (for tests and benchmarks: a burst of edits is one build)

    # -- positions ------------------------------------------------------------------------
    def _encoding(self) -> str:
        try:
            enc = self.workspace.position_encoding
        except RuntimeError:
            enc = None
        return str(getattr(enc, "value", enc) or "utf-16")

    def _line(self, path: str, line: int) -> str:
        src = self.plr.source(path)
        return src.line_text(line) if src is not None else ""

    def to_client(self, path: str, pos: Pos) -> types.Position:
        line, col = pos
        text = self._line(path, line)[:col]
        enc = self._encoding()
        if enc == "utf-8":
            units = len(text.encode("utf-8", "surrogatepass"))
        elif enc == "utf-32":
            units = len(text)
        else:
            units = len(text.encode("utf-16-le", "surrogatepass")) // 2
        return types.Position(line=max(line, 0), character=units + max(col - len(text), 0))

    def range_to_client(self, path: str, rng: Range) -> types.Range:
        return types.Range(start=self.to_client(path, rng[0]), end=self.to_client(path, rng[1]))

    def from_client(self, path: str, position: types.Position) -> Pos:
        text = self._line(path, position.line)
        enc = self._encoding()
        if enc == "utf-32":
            return position.line, min(position.character, len(text))
        units = 0
        for col, ch in enumerate(text):
            if units >= position.character:
                return position.line, col
            if enc == "utf-8":
                units += len(ch.encode("utf-8", "surrogatepass"))
            else:
                units += 2 if ord(ch) > 0xFFFF else 1
        return position.line, len(text)

    # -- diagnostics ----------------------------------------------------------------------
    def request_check(self, path: str | None) -> None:
        """Check again what ``path`` changes (everything when None), soon and at most one build at
        a time: edits that arrive during a build are folded into the next one."""
        if path is None:
            self._everything = True
        else:
            self._dirty.add(path)
        if self._checker is None or self._checker.done():
            self._checker = asyncio.get_running_loop().create_task(self._check_loop())

    async def settled(self, timeout: float = SETTLE_S) -> None:
        """Wait (a little) for the builds of edits already received, so an answer about the
        program (a hover, a definition, references) is about the text the editor shows."""
        task = self._checker
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - answer from what there is
                pass

    async def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty or self._everything:
            dirty, everything = self._dirty, self._everything
            self._dirty, self._everything = set(), False
            overlay = dict(self.plr.open)
            try:
                touched = await loop.run_in_executor(None, self.plr.check, None if everything else dirty, overlay)
            except Exception:  # noqa: BLE001 - a bug in one build must not stop the server
                log.exception("checking failed")
                continue
            self.checks += 1
            self.publish(touched)

    def publish(self, touched: set[str] | None = None) -> None:
        """Send the diagnostics of each file whose diagnostics changed (an empty list clears)."""
        by_file = self.plr.diagnostics()
        files = set(by_file) | set(self.published) if touched is None else (touched | set(by_file) | set(self.published))
        for path in sorted(files):
            if path.startswith("<"):
                continue
            diags = [self.lsp_diagnostic(path, d) for d in by_file.get(path, [])]
            previous = self.published.get(path)
            if previous == diags or (not diags and previous is None and not self._known(path)):
                continue  # nothing new (a stdlib file the server never said anything about stays unmentioned)
            self.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=from_fs_path(path) or path, diagnostics=diags)
            )
            if diags or self._known(path):
                self.published[path] = diags
            else:
                self.published.pop(path, None)

    def _known(self, path: str) -> bool:
        return path in self.plr.open or path in self.plr.files

    def lsp_diagnostic(self, path: str, d: Any) -> types.Diagnostic:
        """A `plr check` diagnostic: ``line:col`` over the caret's width (the file's first
        position for a diagnostic about the whole file)."""
        if d.line:
            start = (d.line - 1, max(d.col - 1, 0))
            rng: Range = (start, (start[0], start[1] + max(1, d.width)))
        else:
            rng = ((0, 0), (0, 0))
        return types.Diagnostic(
            range=self.range_to_client(path, rng),
            message=d.message,
            severity=SEVERITY.get(d.severity, types.DiagnosticSeverity.Error),
            source="plr",
        )


def _path(uri: str) -> str:
    return os.path.abspath(to_fs_path(uri) or uri)


def create_server() -> PlrLanguageServer:
    server = PlrLanguageServer()

    @server.feature(types.INITIALIZED)
    def initialized(ls: PlrLanguageServer, params: types.InitializedParams) -> None:
        folders = [to_fs_path(f.uri) for f in ls.workspace.folders.values()]
        if not folders and ls.workspace.root_path:
            folders = [ls.workspace.root_path]
        ls.plr.folders = [os.path.abspath(f) for f in folders if f]
        if ls.plr.folders and os.path.isdir(ls.plr.folders[0]):
            # file names in messages are relative to the working directory, as when `plr check`
            # runs at the top of the workspace
            os.chdir(ls.plr.folders[0])
        ls.plr.scan()
        ls.request_check(None)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def folders_changed(ls: PlrLanguageServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        gone = {_path(f.uri) for f in params.event.removed}
        ls.plr.folders = [f for f in ls.plr.folders if f not in gone] + [_path(f.uri) for f in params.event.added]
        ls.plr.scan()
        ls.request_check(None)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched(ls: PlrLanguageServer, params: types.DidChangeWatchedFilesParams) -> None:
        ls.plr.scan()
        ls.request_check(None)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: PlrLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        path = _path(params.text_document.uri)
        ls.plr.open[path] = params.text_document.text
        if path.endswith(".plr") and path not in ls.plr.files and any(
            path.startswith(f + os.sep) for f in ls.plr.folders
        ):
            ls.plr.scan()  # a file created since the last scan
        ls.request_check(path)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: PlrLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        path = _path(params.text_document.uri)
        ls.plr.open[path] = ls.workspace.get_text_document(params.text_document.uri).source
        ls.request_check(path)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: PlrLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.request_check(_path(params.text_document.uri))

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: PlrLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        path = _path(params.text_document.uri)
        ls.plr.open.pop(path, None)
        ls.request_check(path)  # its text on disk counts again (or, outside the workspace, nothing)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=['"', ".", " ", "[", "(", ">"]),
    )
    def completion(ls: PlrLanguageServer, params: types.CompletionParams) -> types.CompletionList:
        path = _path(params.text_document.uri)
        pos = ls.from_client(path, params.position)
        src = ls.plr.source(path)
        items = []
        for n, item in enumerate(features.complete(ls.plr, path, pos)):
            edit = None
            if item.replace is not None and src is not None:
                rng = (src.pos(item.replace[0]), src.pos(item.replace[1]))
                edit = types.TextEdit(range=ls.range_to_client(path, rng), new_text=item.insert or item.label)
            items.append(
                types.CompletionItem(
                    label=item.label,
                    kind=types.CompletionItemKind(item.kind),
                    detail=item.detail or None,
                    documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=item.documentation)
                    if item.documentation
                    else None,
                    text_edit=edit,
                    insert_text=None if edit else item.insert,
                    sort_text=f"{item.sort or '1'}{n:04d}",
                    filter_text=item.insert or item.label,
                )
            )
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls: PlrLanguageServer, params: types.HoverParams) -> types.Hover | None:
        await ls.settled()
        path = _path(params.text_document.uri)
        found = features.hover(ls.plr, path, ls.from_client(path, params.position))
        if found is None:
            return None
        text, rng = found
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
            range=ls.range_to_client(path, rng),
        )

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    async def definition(ls: PlrLanguageServer, params: types.DefinitionParams) -> list[types.Location]:
        await ls.settled()
        path = _path(params.text_document.uri)
        found = features.definition(ls.plr, path, ls.from_client(path, params.position))
        return [types.Location(uri=from_fs_path(f) or f, range=ls.range_to_client(f, r)) for f, r in found]

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    async def references(ls: PlrLanguageServer, params: types.ReferenceParams) -> list[types.Location]:
        await ls.settled()
        path = _path(params.text_document.uri)
        found = features.references(
            ls.plr, path, ls.from_client(path, params.position), params.context.include_declaration
        )
        return [types.Location(uri=from_fs_path(f) or f, range=ls.range_to_client(f, r)) for f, r in found]

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls: PlrLanguageServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
        path = _path(params.text_document.uri)
        found = features.formatting(ls.plr, path)
        if found is None:
            return None  # it does not parse: `plr fmt` refuses it too, and the diagnostics say why
        if found is False:
            return []
        rng, text = found  # type: ignore[misc]
        return [types.TextEdit(range=ls.range_to_client(path, rng), new_text=text)]

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(ls: PlrLanguageServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        path = _path(params.text_document.uri)
        uri = params.text_document.uri
        out: list[types.CodeAction] = []
        for diag in params.context.diagnostics:
            if diag.source not in (None, "plr"):
                continue
            rng = (ls.from_client(path, diag.range.start), ls.from_client(path, diag.range.end))
            for fix in features.quick_fixes(ls.plr, path, rng, diag.message):
                edit = types.TextEdit(range=ls.range_to_client(path, fix.range), new_text=fix.new_text)
                out.append(
                    types.CodeAction(
                        title=fix.title,
                        kind=types.CodeActionKind.QuickFix,
                        diagnostics=[diag],
                        is_preferred=True,
                        edit=types.WorkspaceEdit(changes={uri: [edit]}),
                    )
                )
        return out

    return server


def serve(log_file: str | None = None) -> None:
    """Run the server on stdin/stdout until the client says exit (or closes the pipe)."""
    if log_file:
        logging.basicConfig(filename=log_file, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    create_server().start_io()
