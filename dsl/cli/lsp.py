"""`plr lsp`: the language server, for editors (docs/editors.md)."""

from __future__ import annotations

import click

from .output import fail


@click.command("lsp")
@click.option("--stdio", is_flag=True, help="Talk LSP over stdin/stdout (the default and only transport; editors pass it).")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Append the server's log to this file.")
def lsp_cmd(stdio: bool, log_file: str | None) -> None:
    """Run the plr language server over stdin/stdout (for editors).

    Diagnostics are exactly `plr check`'s, for every policy of the workspace; completion of
    keywords, tool names (from the catalogues in scope) and names; hover (a tool's catalogue
    entry and rules, a rule's compiled JSON); go to definition; find references; formatting
    (`plr fmt`); a quick fix for each "did you mean". Needs the extra: pip install 'plr[lsp]'.

    \b
    Editors start it themselves; see docs/editors.md for VS Code, Neovim and Helix:
      plr lsp
    """
    from ..lsp import pygls_problem

    problem = pygls_problem()
    if problem:
        fail(problem)
    from ..lsp.server import serve

    serve(log_file)
