"""The `plr` command. Thin: parse flags, call the library, print, return an exit code.

Exit codes scripts can rely on: 0 ok, 1 a test/check/format failure, 2 usage or input error, 5 `plr test` ran no test.

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
  root_help.py  `plr --help` as click rendered it last time, printed without importing click
Start-up is part of the interface (`plr eval` runs in loops; benchmarks/bench_cli.py): this
module imports neither click nor a command until it is needed, a command's module is imported
only when that command runs, and heavy modules are imported inside the commands. `plr eval`
does not import click at all when click would read its command line in only one way (see
eval.py's ``fast_eval``).
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # typing itself is not imported: it is a tenth of `plr --help` on a bare interpreter
if TYPE_CHECKING:
    from typing import Any

    import click

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
# Every command is imported only when it is named (or when --help lists them all and the help is
# not cached). This set is kept for the modules that asked for it before that was true.
LAZY_COMMANDS = frozenset({"proxy", "approvals", "audit", "console"})
# `plr --help` is wrapped to the terminal, at most this wide (root_help.py renders with it too)
MAX_CONTENT_WIDTH = 100
HELP_OPTION_NAMES = ("-h", "--help")
EXIT_INPUT = 2  # output.EXIT_INPUT, without importing click to say it

_cli: click.Group | None = None


def _load(name: str) -> click.Command:
    module, attr = COMMANDS[name]
    command: click.Command = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    return command


def _build() -> click.Group:
    """The click group of `plr`: built on first use, so `plr --help` from the cache never
    imports click, and its commands load one by one as they are named."""
    import click

    class Group(click.Group):
        """`plr`: lists ``COMMANDS`` in their order, importing a command when it is first named."""

        def list_commands(self, ctx: click.Context) -> list[str]:
            return [*COMMANDS, *(n for n in self.commands if n not in COMMANDS)]

        def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
            if name in COMMANDS and name not in self.commands:
                self.add_command(_load(name), name)
            return super().get_command(ctx, name)

        def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
            try:
                return super().resolve_command(ctx, args)
            except click.UsageError as e:
                # "Did you mean" from every command, not only those imported so far
                no_such = getattr(click.exceptions, "NoSuchCommand", None)
                if no_such is None or not isinstance(e, no_such):
                    raise
                raise no_such(e.command_name, possibilities=list(COMMANDS), ctx=ctx) from None

    @click.group(
        cls=Group,
        context_settings={"help_option_names": list(HELP_OPTION_NAMES), "max_content_width": MAX_CONTENT_WIDTH},
    )
    @click.version_option(package_name="plr", prog_name="plr")
    def plr() -> None:
        """plr: policy-as-code for AI agents' MCP tool calls.

        Write rules in .plr files, compile them to a PolicyLayer-style JSON policy, test them,
        and enforce them in front of a real MCP server.

        \b
        A 30-second tour, in an empty folder:
          plr init memory                          # policy.plr + its tests, for a real MCP server
          plr test                                 # run the rule tests (default: this folder)
          plr compile policy.plr -o policy.json    # .plr -> JSON policy
          plr eval policy.plr --tool delete_entities --explain   # held for approval, and why

        Exit codes: 0 ok, 1 a test/check/format failure, 2 usage or input error, 5 `plr test` ran no test.
        """

    return plr


def __getattr__(name: str) -> Any:
    """``dsl.cli.cli``, the click group, built when first asked for (tests and tools use it)."""
    global _cli
    if name == "cli":
        if _cli is None:
            _cli = _build()
        return _cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: no input ever produces a traceback; a bug is reported in one line."""
    for stream in (sys.stdout, sys.stderr):
        # text we did not escape ourselves (a file name that is not UTF-8) is shown as \\udcff,
        # never an encoding error part-way through the output
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if len(args) == 1 and args[0] in HELP_OPTION_NAMES:
            from .root_help import print_root_help

            print_root_help()  # from the cache, or rendered by click (and cached)
            sys.exit(0)
        if args[:1] == ["eval"]:
            from .eval import fast_eval

            fast_eval(args)  # runs it without click when click would read it in only one way
        __getattr__("cli").main(args=args, prog_name="plr", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except RecursionError:
        _say("plr: error: input is nested too deeply to process")
        sys.exit(EXIT_INPUT)
    except Exception as e:  # noqa: BLE001 - last line of defence
        _say(f"plr: internal error: {type(e).__name__}: {e} (please report this)")
        sys.exit(EXIT_INPUT)


def _say(line: str) -> None:
    import click

    click.echo(line, err=True)
