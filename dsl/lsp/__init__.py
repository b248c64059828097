"""`plr lsp`: a Language Server for .plr files (stdio), and what it shares with other editors.

* ``words``: the language's words, grouped (also used by the Pygments lexer and the TextMate test).
* ``analysis``: everything the server knows, without pygls: the workspace's policies checked
  exactly as ``plr check`` checks them, tokens, completion, hover, definitions, references,
  formatting and quick fixes, in the server's own (0-based, code point) positions.
* ``server``: the pygls wiring (LSP types, UTF-16 positions, when to re-check).
* ``client``: a small stdio JSON-RPC client (Content-Length framing) for tests and benchmarks.

pygls is an optional dependency (``pip install 'plr[lsp]'``); only ``server`` imports it.
"""

from __future__ import annotations

MISSING_PYGLS = (
    "plr lsp needs the language server extra: pip install 'plr[lsp]' (it adds pygls); "
    "the other commands work without it"
)


def pygls_problem() -> str | None:
    """None when pygls can be imported, else the one-line message ``plr lsp`` prints."""
    try:
        import pygls.lsp.server  # noqa: F401
    except ImportError as e:
        return f"{MISSING_PYGLS} ({e})"
    return None
