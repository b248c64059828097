"""`plr import intercept|policylayer`: another tool's policy → a readable .plr policy.

What is not carried over is a `#` comment in the output and a warning on stderr (exit 0: the
policy is written; read the warnings). An input plr cannot read, or one Intercept itself
refuses to start with, is exit 2 with the reason; so is a generated .plr that plr's compiler
refuses (an internal error of the import: nothing is written).
"""

from __future__ import annotations

import dataclasses
import os

import click

from .output import EXIT_INPUT, input_error, write_output, write_output_check

__all__ = ["import_group"]


@click.group("import")
def import_group() -> None:
    """Turn another tool's policy into a .plr policy.

    \b
    Examples:
      plr import intercept policy.yaml -o policy.plr
      plr import policylayer policy.json -o policy.plr
    """


def _read(path: str) -> str:
    from ..errors import PlrError
    from ..reading import read_policy_bytes

    try:
        raw = click.get_text_stream("stdin").read() if path == "-" else read_policy_bytes(path)
    except (OSError, ValueError) as e:
        input_error(PlrError.at(f"cannot read policy: {e}", path))
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            input_error(PlrError.at(f"not UTF-8 text: {e}", path))
    return raw  # type: ignore[no-any-return]


def _finish(result, source: str, output: str | None) -> None:  # type: ignore[no-untyped-def]
    for w in result.warnings:
        click.echo(f"{source}: warning: not carried over: {w}", err=True)
    if output and output != "-":
        write_output(output, result.text, sources=[source])
        click.echo(f"wrote {output} ({len(result.warnings)} warnings)", err=True)
    else:
        click.echo(result.text, nl=False)


@import_group.command("intercept")
@click.argument("policy", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), help="Write the .plr here (`-`: stdout).")
def intercept_cmd(policy: str, output: str | None) -> None:
    """An Intercept policy (YAML or JSON) → .plr, with the same decisions.

    Counters become `per global` calendar limits (Intercept counts per store, resets at UTC
    boundaries, `lt N` allows N-1 calls, and gives a failed call back: `refund on error`);
    `increment_from` becomes a spend cap. See docs/migrate.md.

    \b
    Example:
      plr import intercept intercept.yaml -o policy.plr && plr check policy.plr
    """
    from ..errors import PlrError
    from ..importers.intercept import ImportInternalError, import_intercept

    try:
        import yaml  # noqa: F401
    except ImportError:
        from ..extras import install_hint

        click.echo(f"plr import intercept: reading Intercept policies needs PyYAML (the intercept extra): {install_hint('intercept')}", err=True)
        raise SystemExit(EXIT_INPUT) from None
    if output and output != "-":
        write_output_check(output, [policy])
    name = os.path.splitext(os.path.basename(policy))[0] if policy != "-" else "imported"
    refused = "not an Intercept policy plr can import"
    try:
        result = import_intercept(_read(policy), name, file="<stdin>" if policy == "-" else policy)
    except ImportInternalError as e:  # the generated .plr does not compile: never written
        input_error(e)
    except PlrError as e:  # located: `file:line:col: error: …` and the line with a caret
        input_error(PlrError([dataclasses.replace(d, message=f"{refused}: {d.message}") for d in e.diagnostics]))
    except ValueError as e:
        input_error(PlrError.at(f"{refused}: {e}", policy))
    _finish(result, policy, output)


@import_group.command("policylayer")
@click.argument("policy", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), help="Write the .plr here (`-`: stdout).")
def policylayer_cmd(policy: str, output: str | None) -> None:
    """A PolicyLayer v1 JSON policy → .plr (what `plr decompile` does).

    \b
    Example:
      plr import policylayer policy.json -o policy.plr
    """
    from ..errors import PlrError
    from ..importers.policylayer import import_policylayer

    if output and output != "-":
        write_output_check(output, [policy])
    try:
        result = import_policylayer(_read(policy), policy)
    except PlrError as e:
        input_error(e)
    _finish(result, policy, output)
