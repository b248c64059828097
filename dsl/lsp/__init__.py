"""`plr lsp`: a Language Server for .plr files (stdio), and what it shares with other editors.

* ``words``: the language's words, grouped (also used by the Pygments lexer and the TextMate test).
* ``source``: a text as it is being typed: tolerant tokens, blocks, statements, what a string names.
* ``workspace``: the workspace's policies checked exactly as ``plr check`` checks them, with the
  editor's unsaved texts; the builds kept for the features.
* ``features``: completion, hover, definitions, references, formatting and quick fixes, in the
  server's own positions (0-based lines, code-point columns). None of these three needs pygls.
* ``server``: the pygls wiring (LSP types, UTF-16 positions, when to check again).
* ``client``: a small stdio JSON-RPC client (Content-Length framing) for tests and benchmarks.

pygls is an optional dependency (``pip install 'plr[lsp]'``); only ``server`` imports it.
"""

from __future__ import annotations

PLAIN_HINT = "pip install 'plr[lsp]'"
MISSING_PYGLS = (
    "plr lsp needs the language server extra: pip install 'plr[lsp]' (it adds pygls); "
    "the other commands work without it"
)


def pygls_problem() -> str | None:
    """None when pygls can be imported, else the one-line message ``plr lsp`` prints."""
    try:
        import pygls.lsp.server  # noqa: F401
    except ImportError as e:
        from ..extras import install_hint

        hint = install_hint("lsp")
        return f"{MISSING_PYGLS.replace(PLAIN_HINT, hint)} ({e})"
    return None
