"""`plr catalog` and `plr init`: the stdlib catalogues of real MCP servers, and a starter
policy (with its tests) written from one of them."""

from __future__ import annotations

import json
import os
import sys

import click

from .output import EXIT_INPUT, fail, style


@click.command("catalog")
@click.argument("server", required=False)
@click.option("--from-server", "from_server", is_flag=True, help="Read the tool list of a live stdio server: plr catalog --from-server NAME -- CMD ARGS...")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def catalog_cmd(server: str | None, from_server: bool, fmt: str, command: tuple[str, ...]) -> None:
    """List the stdlib catalogues: servers, their tools and risk classes.

    With --from-server, start a live MCP server over stdio, read its tools/list and print a
    `server` block (risk classes from the tools' annotations) to review and save.

    \b
    Examples:
      plr catalog                             # every catalogue
      plr catalog memory                      # one, by name
      plr catalog --from-server my-server -- npx -y @modelcontextprotocol/server-memory
    """
    from .. import catalog

    if from_server:
        _from_server(server, command)
        return
    found = catalog.find(server) if server else catalog.stdlib_catalogues()
    if not found:
        names = ", ".join(c.server for c in catalog.stdlib_catalogues())
        click.echo(f"plr: error: no catalogue matches `{server}`; known: {names}", err=True)
        sys.exit(EXIT_INPUT)
    if fmt == "json":
        click.echo(json.dumps([{"import": c.module, "server": c.server, "tools": dict(c.tools)} for c in found], indent=2))
        return
    for c in found:
        click.echo(style(c.server, "cyan", True) + f"  (import \"{c.module}\")")
        if c.header:
            click.echo(f"  {c.header}")
        for name, risk in c.tools:
            click.echo(f"    {name:<34} {risk}")


def _from_server(server: str | None, command: tuple[str, ...]) -> None:
    """`plr catalog --from-server`: a `server` block read from a live server's tools/list;
    a server that cannot be started or asked is an input error (exit 2), shown in one line."""
    from .. import catalog

    if not command:
        raise click.UsageError("give the server command after --: plr catalog --from-server NAME -- CMD ARGS...")
    try:
        tools = catalog.tools_from_server(list(command), env=dict(os.environ))
    except Exception as e:  # noqa: BLE001 - any failure to talk to the server is an input error
        cause: BaseException = e
        while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        click.echo(f"plr: error: could not read tools/list from `{' '.join(command)}`: {type(cause).__name__}: {cause}", err=True)
        sys.exit(EXIT_INPUT)
    click.echo(catalog.catalogue_text(server or "server", tools, " ".join(command)), nl=False)


@click.command("init")
@click.argument("server")
@click.option("--name", default="policy", show_default=True, help="File name stem: NAME.plr and NAME_test.plr.")
@click.option("--dir", "folder", default=".", type=click.Path(file_okay=False), show_default=True)
def init_cmd(server: str, name: str, folder: str) -> None:
    """Write a starter policy and its test file for a stdlib server.

    \b
    Example:
      plr init memory            # policy.plr + policy_test.plr for server-memory
      plr test .
    """
    from pathlib import Path

    from .. import catalog

    found = catalog.find(server)
    if len(found) != 1:
        names = ", ".join(c.server for c in (found or catalog.stdlib_catalogues()))
        click.echo(f"plr: error: `{server}` matches {len(found)} catalogues; choose one of: {names}", err=True)
        sys.exit(EXIT_INPUT)
    if not name or name in (".", "..") or "/" in name or os.sep in name or (os.altsep and os.altsep in name) or "\0" in name:
        raise click.BadParameter(f"`{name}` is not a file name stem (put the folder in --dir)", param_hint="--name")
    policy, test = catalog.starter_files(found[0], f"{name}.plr")
    targets = [Path(folder) / f"{name}.plr", Path(folder) / f"{name}_test.plr"]
    # check every target before writing any, so a refusal never leaves half a starter behind
    for t in targets:
        if os.path.lexists(t):
            fail(f"{t} exists; not overwriting it (choose another --name or --dir)")
    written: list[Path] = []
    try:
        os.makedirs(folder, exist_ok=True)
        for t, text in zip(targets, (policy, test)):
            catalog.write_new(t, text)
            written.append(t)
    except (OSError, ValueError) as e:
        for t in written:  # all or nothing
            t.unlink(missing_ok=True)
        fail(f"cannot write the starter files in {folder}: {getattr(e, 'strerror', None) or e}")
    click.echo(f"wrote {os.path.join(folder, name)}.plr and {name}_test.plr; next: plr test {folder}")
