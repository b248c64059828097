"""`plr eval`: one decision of one policy, with its reasons.

The command a script runs in a loop, so it loads the policy through the compiled-policy cache
(dsl/cache.py) and imports neither the parser nor pydantic on a cache hit.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from .output import input_error, shown, style


def load_policy_data(path: str, use_cache: bool = True) -> dict[str, Any]:
    """A .json policy through the loader, anything else compiled as .plr, as the canonical
    dump ``Engine.from_data`` prepares; PlrError on failure. See dsl/cache.py."""
    from ..errors import PlrError

    if not os.path.exists(path):
        raise PlrError.at("no such file", path)
    if path.endswith((".yaml", ".yml")):  # no plr format: the loader says what it is and what to do
        from pathlib import Path

        from ..policy import load_policy

        return load_policy(Path(path)).to_dict()
    if use_cache:
        from ..cache import load_cached

        return load_cached(path)
    if path.endswith(".json"):
        from ..policy import load_policy

        return load_policy(path).to_dict()
    from ..compiler import compile_files

    return compile_files([path]).to_dict()


def _not_json_number(word: str) -> float:
    raise ValueError(f"{word} is not a JSON number")


def _finite_float(text: str) -> float:
    """A JSON number that fits a double; 1e400 would become infinity, which no MCP call carries."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def _call_arguments(args_json: str) -> dict[str, Any]:
    """--args as the call's arguments: a JSON object of the values an MCP call can carry
    (no NaN, no infinity); anything else is a usage error naming --args. ``@FILE`` reads the
    object from a file and ``-`` from stdin, as `opa eval --input` users expect."""
    if args_json == "-":
        args_json = click.get_text_stream("stdin").read()
    elif args_json.startswith("@"):
        try:
            with open(args_json[1:], encoding="utf-8") as f:
                args_json = f.read()
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or e
            raise click.BadParameter(f"cannot read {args_json[1:]}: {why}", param_hint="--args") from None
    try:
        args = json.loads(args_json, parse_constant=_not_json_number, parse_float=_finite_float)
    except (ValueError, RecursionError) as e:
        raise click.BadParameter(f"not valid JSON: {e}", param_hint="--args") from None
    if not isinstance(args, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(args), "a number")
        raise click.BadParameter(f"must be a JSON object (the call's arguments by name), not {kind}", param_hint="--args")
    return args


def _engine(policy: str, no_cache: bool) -> tuple[Any, dict[str, Any]]:
    """The policy's engine and the data it was prepared from; a broken policy exits 2 (its
    diagnostics printed)."""
    from ..engine import Engine
    from ..errors import PlrError

    try:
        data = load_policy_data(policy, use_cache=not no_cache)  # a broken policy fails here, once
        try:
            return Engine.from_data(data), data
        except PlrError:
            if no_cache:
                raise
            # a cache entry that does not prepare is a miss: load the policy itself
            data = load_policy_data(policy, use_cache=False)
            return Engine.from_data(data), data
    except PlrError as e:
        input_error(e)


def _description(data: dict[str, Any], rule: str | None) -> str | None:
    """The ``description "..."`` of the rule that decided (the JSON's ``descriptions``, by rule)."""
    descriptions = data.get("descriptions")
    if rule is None or not isinstance(descriptions, dict):
        return None
    text = descriptions.get(rule)
    return text if isinstance(text, str) else None


@click.command("eval")
@click.argument("policy", type=click.Path())
@click.option("--tool", "-t", required=True, help="Tool name of the call.")
@click.option(
    "--args",
    "args_json",
    default="{}",
    show_default=True,
    metavar="JSON|@FILE|-",
    help="The call's arguments as a JSON object: inline, @FILE to read it from a file, - from stdin.",
)
@click.option("--identity", help="Who the agent acts for.")
@click.option("--session", help="The agent session.")
@click.option("--server", help="The MCP server name.")
@click.option("--approved", is_flag=True, help="A human approved this call.")
@click.option(
    "--explain",
    is_flag=True,
    help="Print every check made and the rule it came from, and the deciding rule's description.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Validate/compile the policy even if the compiled-policy cache has it (also: PLR_NO_CACHE=1).",
)
def eval_cmd(
    policy: str,
    tool: str,
    args_json: str,
    identity: str | None,
    session: str | None,
    server: str | None,
    approved: bool,
    explain: bool,
    fmt: str,
    no_cache: bool,
) -> None:
    """Decide one tool call with a .plr or .json policy.

    The validated (or compiled) policy is cached by content in ~/.cache/plr, so the next
    eval of an unchanged policy skips validation; an edit to the policy or to any file it
    imports is picked up at once.

    \b
    Examples:
      plr eval policy.plr --tool cancel-task --args '{"task_id": "t1"}'
      plr eval policy.json --tool cancel-task --args '{"task_id": "t1"}' --approved --explain
      plr eval policy.plr --tool get-task --format json --explain   # checks, rule and its description
      plr eval policy.plr --tool write_file --args @call.json
      jq .arguments request.json | plr eval policy.plr --tool write_file --args -
    """
    args = _call_arguments(args_json)
    engine, data = _engine(policy, no_cache)
    d = engine.decide(tool, args, identity=identity, session=session, server=server, approved=approved, explain=explain)
    description = _description(data, d.rule) if explain else None
    if fmt == "json":
        out = d.to_dict()
        if explain:
            out["description"] = description
            out["trace"] = [{"check": t.check, "result": t.result, "rule": t.rule} for t in d.trace or ()]
        click.echo(json.dumps(out))
        return
    colour = {"allow": "green", "deny": "red"}.get(d.effect, "yellow")
    click.echo(style(d.effect, colour, True) + f" ({d.code})" + (f" by {d.rule}" if d.rule else ""))
    if d.reason:
        click.echo(f"  reason: {d.reason}")
    if description is not None:
        click.echo(f"  description: {shown(description)}")  # the author's text: no escapes reach the terminal
    if d.retry_after is not None:
        click.echo(f"  retry after: {d.retry_after:g} s")
    if explain:
        click.echo("  checks:")
        for t in d.trace or ():
            res = t.result if isinstance(t.result, str) else ("true" if t.result else "false")
            click.echo(f"    {t.check} -> {res}" + (f"   [{t.rule}]" if t.rule else ""))
