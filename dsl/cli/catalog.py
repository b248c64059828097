"""`plr catalog` (list, search, drift check), `plr catalog harvest` and `plr init`: the stdlib
catalogues of real MCP servers, and a starter policy (with its tests) written from one of them."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import click

from .output import EXIT_FAIL as EXIT_FINDING, EXIT_INPUT, fail, shown, style

if TYPE_CHECKING:
    from ..catalog import CatalogueInfo


class _CatalogCommand(click.Command):
    """`plr catalog` with one subcommand: `plr catalog harvest …` runs ``harvest_cmd`` (a plain
    group would take every SERVER argument for a subcommand name)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: object) -> click.Context:
        if args and args[0] == "harvest":
            return harvest_cmd.make_context("harvest", list(args[1:]), parent=parent, **extra)  # type: ignore[arg-type]
        return super().make_context(info_name, args, parent=parent, **extra)  # type: ignore[arg-type]


@click.command("catalog", cls=_CatalogCommand)
@click.argument("server", required=False)
@click.option("--search", "word", metavar="WORD", help="Tools across all catalogues whose name or description contains WORD (exit 1 when none does).")
@click.option("--check", "check", is_flag=True, help="Compare a live server with SERVER's catalogue: plr catalog --check SERVER -- CMD ARGS... (exit 1 on drift).")
@click.option("--from-server", "from_server", is_flag=True, help="Read the tool list of a live stdio server: plr catalog --from-server NAME -- CMD ARGS...")
@click.option("--timeout", type=click.FloatRange(min=1), default=60, show_default=True, help="Seconds to wait for a live server's tools/list.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def catalog_cmd(server: str | None, word: str | None, check: bool, from_server: bool, timeout: float, fmt: str, command: tuple[str, ...]) -> None:
    """List the stdlib catalogues: servers, their tools and risk classes.

    SERVER is a catalogue's name as `plr catalog` lists it (`github`) or as a policy imports it
    (`server-github`, `stdlib/server-github`); a part of a name shows every catalogue whose name
    contains it. A name no catalogue has gets the nearest names.

    A class marked `inferred` was not given by the server's own annotations but by plr's
    reviewed rules on names and descriptions (docs/catalogue.md): review it before relying on it.

    With --from-server, start a live MCP server over stdio, read its tools/list and print a
    `server` block (risk classes from the tools' annotations) to review and save. With --check,
    compare a live server with a catalogue (added or removed tools, changed input schemas or
    annotations): exit 1 on drift, for CI. `plr catalog harvest --help`: rebuild catalogues from
    the reviewed source list.

    \b
    Examples:
      plr catalog                             # every catalogue
      plr catalog memory                      # one, by name
      plr catalog --search issue              # every tool about issues, with server and class
      plr catalog --check memory -- npx -y @modelcontextprotocol/server-memory
      plr catalog --from-server my-server -- npx -y @modelcontextprotocol/server-memory
      plr catalog harvest --only memory --out stdlib_rules

    Exit 0: done; 1: --search found no tool (with --format json: `[]` and exit 0) or --check
    found drift; 2: no catalogue has that name, a live server could not be read, or a usage error.
    """
    from .. import catalog

    if from_server:
        _from_server(server, command, timeout)
        return
    if check:
        _check(server, command, timeout)
        return
    if server in _SUBCOMMAND_WORDS and len(command) <= 1 and not catalog.named(server):
        _not_a_subcommand(server, command)
    if command:
        raise click.UsageError("a server command after -- goes with --check or --from-server")
    if word is not None:
        _search(word, fmt)
        return
    found = catalog.find(server) if server else catalog.stdlib_catalogues()
    if not found:
        fail(catalog.unknown_name_message(server or "", catalog.stdlib_catalogues()))
    if fmt == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "import": c.module,
                        "server": c.server,
                        "tools": dict(c.tools),
                        "inferred": sorted(c.inferred),
                        "descriptions": dict(c.descriptions),  # only the tools that have one
                    }
                    for c in found
                ],
                indent=2,
            )
        )
        return
    if not server:  # the overview: one line per catalogue
        for c in found:
            inferred = f", {len(c.inferred)} inferred" if c.inferred else ""
            click.echo(f"{style(catalog.short_name(c), 'cyan', True):<28} {len(c.tools):>4} tools{inferred}  import \"{c.module}\"")
        click.echo(f"{len(found)} catalogues; `plr catalog NAME` lists one, `plr catalog --search WORD` finds a tool")
        return
    for c in found:
        click.echo(style(c.server, "cyan", True) + f"  (import \"{c.module}\")")
        if c.header:
            click.echo(f"  {c.header}")
        descriptions = dict(c.descriptions)
        for name, risk in c.tools:
            mark = "  (inferred)" if name in c.inferred else ""
            # a description comes from the server (or a catalogue file): escaped for the terminal
            about = f"  {shown(descriptions[name])}" if descriptions.get(name) else ""
            click.echo(f"    {name:<34} {risk + mark:<24}{about}".rstrip())


# what other tools call "show one" and "list all": `plr catalog show githb` means `plr catalog githb`
_SUBCOMMAND_WORDS = frozenset({"show", "list", "ls", "info", "get", "describe"})


def _not_a_subcommand(word: str, rest: tuple[str, ...]) -> None:
    """`plr catalog show NAME` / `plr catalog list`: no such subcommand; say the command that
    does it, and for a NAME no catalogue has, the nearest names straight away. Exits 2."""
    from .. import catalog

    if rest:
        found = catalog.find(rest[0])
        if not found:
            fail(catalog.unknown_name_message(rest[0], catalog.stdlib_catalogues()))
        fail(f"`plr catalog` has no `{word}` subcommand; `plr catalog {shown(rest[0])}` lists that catalogue")
    fail(f"`plr catalog` has no `{word}` subcommand; `plr catalog` lists every catalogue, `plr catalog NAME` one")


def _search(word: str, fmt: str) -> None:
    from .. import catalog

    if not word.strip():
        raise click.BadParameter("give a word to search for", param_hint="--search")
    hits = catalog.search(word.strip())
    if fmt == "json":
        rows = []
        for c, t, r in hits:
            row = {"tool": t, "risk": r, "inferred": t in c.inferred, "server": c.server, "import": c.module}
            about = c.description(t)
            if about:  # only a tool that has one: the absence of a key says "none given"
                row["description"] = about
            rows.append(row)
        click.echo(json.dumps(rows, indent=2))
        return
    if not hits:
        _no_hit(word.strip())
        sys.exit(EXIT_FINDING)
    for c, tool, risk in hits:
        mark = " (inferred)" if tool in c.inferred else ""
        click.echo(f"{tool:<40} {risk + mark:<24} {c.server:<28} import \"{c.module}\"")
        about = c.description(tool)
        if about:  # on its own line: one hit's first line stays tool, class, server, import
            click.echo(f"    {shown(about)}")


def _no_hit(word: str) -> None:
    """What an empty --search says on stderr: that nothing was found (exit 1, as grep), where
    it looked, and, when WORD names a catalogue rather than a tool, the command that lists it."""
    from .. import catalog

    click.echo(f"no tool in any catalogue matches `{shown(word)}` (exit 1: nothing found)", err=True)
    named = catalog.find(word)
    if len(named) == 1:
        name = catalog.short_name(named[0])
        click.echo(f"  `{shown(word)}` names a catalogue, not a tool: `plr catalog {name}` lists its tools", err=True)
    click.echo(
        "  --search looks for WORD inside tool names and descriptions: try a shorter word "
        "(`issue`, `delete`), or `plr catalog` for the catalogues",
        err=True,
    )


def _live_tools(command: tuple[str, ...], timeout: float) -> list:  # type: ignore[type-arg]
    """A live server's tools/list; a server that cannot be started or asked is an input error
    (exit 2), shown in one line."""
    from .. import catalog

    try:
        return catalog.raw_tools_from_server(list(command), env=dict(os.environ), timeout=timeout)
    except Exception as e:  # noqa: BLE001 - any failure to talk to the server is an input error
        cause: BaseException = e
        while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        click.echo(f"plr: error: could not read tools/list from `{' '.join(command)}`: {type(cause).__name__}: {cause}", err=True)
        sys.exit(EXIT_INPUT)


def _check(server: str | None, command: tuple[str, ...], timeout: float) -> None:
    """`plr catalog --check SERVER -- CMD`: exit 1 when the live server differs from its catalogue."""
    from .. import catalog

    if not server or not command:
        raise click.UsageError("plr catalog --check SERVER -- CMD ARGS...")
    found = _one_catalogue(server)
    lines = catalog.drift(catalog.expected_tools(found[0]), _live_tools(command, timeout))
    for line in lines:
        click.echo(line)
    if lines:
        click.echo(f"{found[0].module}: the live server differs from the catalogue ({len(lines)} changes)", err=True)
        sys.exit(EXIT_FINDING)
    click.echo(f"{found[0].module}: the live server matches the catalogue")


def _one_catalogue(name: str) -> list[CatalogueInfo]:
    """The one catalogue ``name`` means, for `--check` and `plr init`; none (with the nearest
    names) or several (listed, one spelling) exits 2."""
    from .. import catalog

    found = catalog.find(name)
    if not found:
        fail(catalog.unknown_name_message(name, catalog.stdlib_catalogues()))
    if len(found) > 1:
        fail(catalog.ambiguous_name_message(name, found))
    return found


def _from_server(server: str | None, command: tuple[str, ...], timeout: float) -> None:
    """`plr catalog --from-server`: a `server` block read from a live server's tools/list."""
    from .. import catalog

    if not command:
        raise click.UsageError("give the server command after --: plr catalog --from-server NAME -- CMD ARGS...")
    raw = _live_tools(command, timeout)
    tools = []
    for t in raw:
        desc = (t.get("description") or "").strip().splitlines()
        tools.append((t["name"], catalog.risk_of_hints(t.get("annotations")), desc[0] if desc else ""))
    click.echo(catalog.catalogue_text(server or "server", tools, " ".join(command)), nl=False)


@click.command("harvest")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder for server-NAME.plr and catalogues/server-NAME.json (the repository's: stdlib_rules).")
@click.option("--sources", "sources", type=click.Path(dir_okay=False, exists=True), help="Source list (default: the shipped stdlib_rules/catalogues/sources.toml).")
@click.option("--only", "only", multiple=True, metavar="NAME", help="Harvest only these servers of the list (repeatable).")
@click.option("--jobs", type=click.IntRange(1, 8), default=2, show_default=True, help="Servers harvested at a time.")
@click.option("--timeout", type=click.FloatRange(min=1), default=60, show_default=True, help="Seconds one server has to answer tools/list (installing is bounded apart).")
@click.option("--cache", type=click.Path(file_okay=False), help="Where packages are installed (default ~/.cache/plr/harvest, or PLR_HARVEST_CACHE).")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the review list (every inferred class, every unavailable server) as Markdown.")
def harvest_cmd(out: str, sources: str | None, only: tuple[str, ...], jobs: int, timeout: float, cache: str | None, report: str | None) -> None:
    """Read real MCP servers' tools live and write their catalogues.

    Each server of the reviewed source list is installed at its pinned version, started over
    stdio in a throwaway HOME with placeholder credentials only, asked for tools/list within
    the time bound, and stopped with its whole process group. A server that cannot list its
    tools without a real account is recorded as unavailable, with the reason.

    \b
    Examples:
      plr catalog harvest --out stdlib_rules --only memory --only time
      plr catalog harvest --sources my-servers.toml --out my-catalogues --report review.md
    """
    from pathlib import Path

    from .. import harvest

    src_path = Path(sources) if sources else harvest.default_sources()
    try:
        listed = harvest.load_sources(src_path)
    except (OSError, ValueError) as e:
        fail(f"cannot read the source list {src_path}: {e}")
    unknown = sorted(set(only) - {s.name for s in listed})
    if unknown:
        raise click.BadParameter(f"not in {src_path}: {', '.join(unknown)}", param_hint="--only")
    chosen = [s for s in listed if not only or s.name in only]

    def progress(o: "harvest.Outcome") -> None:
        d = o.document
        what = f"{len(d.get('tools', []))} tools" if d["status"] == "ok" else f"unavailable: {d.get('reason', '')}"
        click.echo(f"{o.source.name:<32} {o.seconds:6.1f} s  {what}")

    outcomes = harvest.harvest(chosen, Path(out), Path(cache) if cache else harvest.default_cache(), jobs, timeout, progress)
    docs = harvest.finish(Path(out))
    if report:
        Path(report).write_text(harvest.review_report(docs), encoding="utf-8")
    ok = sum(1 for o in outcomes if o.document["status"] == "ok")
    click.echo(f"{ok} of {len(outcomes)} servers listed their tools; catalogues in {out}")


@click.command("init")
@click.argument("server")
@click.option("--name", default="policy", show_default=True, help="File name stem: NAME.plr and NAME_test.plr.")
@click.option("--dir", "folder", default=".", type=click.Path(file_okay=False), show_default=True)
def init_cmd(server: str, name: str, folder: str) -> None:
    """Write a starter policy and its test file for a stdlib server.

    SERVER is a catalogue's name as `plr catalog` lists it (`memory`) or as a policy imports it
    (`server-memory`, `stdlib/server-memory`).

    \b
    Example:
      plr init memory            # policy.plr + policy_test.plr for server-memory
      plr test .
    """
    from pathlib import Path

    from .. import catalog

    found = _one_catalogue(server)
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
    click.echo(f"wrote {os.path.join(folder, name)}.plr and {os.path.join(folder, name)}_test.plr; next: plr test {folder}")
