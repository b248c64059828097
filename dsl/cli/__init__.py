"""The `plr` command. Thin: parse flags, call the library, print, return an exit code.

Exit codes scripts can rely on: 0 ok, 1 a test/check/format failure, 2 usage or input error.

Which module owns which commands (a new command is a module and a line in ``COMMANDS``):
  files.py      compile, check, fmt, decompile, schema  (the policy-file commands)
  testing.py    test, watch
  importing.py  import intercept|policylayer  (other tools' policies -> .plr)
  eval.py       eval
  catalog.py    catalog, init
  proxy.py      proxy  (its flags; proxy_run.py checks them and starts the proxy)
  approvals.py  approvals list/show/grant/deny  (and opening a fleet's --state)
  audit.py      audit
  analysis.py   diff, analyze, query  (exact policy analysis with z3, the analyze extra)
  console.py    console  (approvals and audit in the browser: dsl/console)
  output.py     what they share: colour, escaping, diagnostics, exits, writing output files
Heavy modules are imported inside the commands so `plr --help` starts fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from .output import EXIT_INPUT

__all__ = ["COMMANDS", "cli", "main"]

# name -> (module in this package, attribute): in the order `plr --help` lists them (the
# teaching order, not alphabetical).
COMMANDS: dict[str, tuple[str, str]] = {
    "compile": ("files", "compile_cmd"),
    "check": ("files", "check_cmd"),
    "fmt": ("files", "fmt_cmd"),
    "test": ("testing", "test_cmd"),
    "eval": ("eval", "eval_cmd"),
    "watch": ("testing", "watch_cmd"),
    "catalog": ("catalog", "catalog_cmd"),
    "init": ("catalog", "init_cmd"),
    "decompile": ("files", "decompile_cmd"),
    "schema": ("files", "schema_cmd"),
    "import": ("importing", "import_group"),
    "proxy": ("proxy", "proxy_cmd"),
    "approvals": ("approvals", "approvals_group"),
    "audit": ("audit", "audit_cmd"),
    "console": ("console", "console_cmd"),
    "lsp": ("lsp", "lsp_cmd"),
    "diff": ("analysis", "diff_cmd"),
    "analyze": ("analysis", "analyze_cmd"),
    "query": ("analysis", "query_cmd"),
}
# imported only when named (or listed by --help): the other commands never pay for them, and a
# mistyped command is offered only the others as "Did you mean"
LAZY_COMMANDS = frozenset({"proxy", "approvals", "audit", "console"})


def _load(name: str) -> click.Command:
    module, attr = COMMANDS[name]
    command: click.Command = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    return command


class _Group(click.Group):
    """`plr`: lists ``COMMANDS`` in their order, loading a lazy one when it is first named."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(n for n in self.commands if n not in COMMANDS)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and name not in self.commands:
            self.add_command(_load(name), name)
        return super().get_command(ctx, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="plr", prog_name="plr")
def cli() -> None:
    """plr: policy-as-code for AI agents' MCP tool calls.

    Write rules in .plr files, compile them to a PolicyLayer-style JSON policy, test them,
    and enforce them in front of a real MCP server.

    \b
    A 30-second tour:
      plr compile examples/codex_worker.plr        # .plr -> JSON policy
      plr test examples/                            # run the rule tests
      plr eval examples/codex_worker.plr --tool cancel-task --args '{"task_id": "t1"}' --explain

    Exit codes: 0 ok, 1 a test/check/format failure, 2 usage or input error.
    """


for _name in COMMANDS:
    if _name not in LAZY_COMMANDS:
        cli.add_command(_load(_name), _name)


def main(argv: list[str] | None = None) -> None:
    """Entry point: no input ever produces a traceback; a bug is reported in one line."""
    for stream in (sys.stdout, sys.stderr):
        # text we did not escape ourselves (a file name that is not UTF-8) is shown as \\udcff,
        # never an encoding error part-way through the output
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass
    try:
        cli.main(args=argv, prog_name="plr", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except RecursionError:
        click.echo("plr: error: input is nested too deeply to process", err=True)
        sys.exit(EXIT_INPUT)
    except Exception as e:  # noqa: BLE001 - last line of defence
        click.echo(f"plr: internal error: {type(e).__name__}: {e} (please report this)", err=True)
        sys.exit(EXIT_INPUT)
