"""`plr eval`: one decision of one policy, with its reasons.

The command a script runs in a loop, so it loads the policy through the compiled-policy cache
(dsl/cache.py) and imports neither the parser nor pydantic on a cache hit. Nor click, whose
import alone costs more than the rest of a cached eval (benchmarks/bench_cli.py): a command
line that click would read in exactly one way and accept is run by ``fast_eval``, which
dsl/cli/__init__.py tries first, with the same code and the same output as click's
``eval_cmd``. Everything else goes to click as before: `-h`/`--help`, an unknown, repeated
short or malformed option, `--`, a missing or extra value, a usage error in --args (raised in
the command itself), shell completion, and streams click would rewrap (an ASCII locale, a
replaced ``sys.stdout``). tests/test_cli_eval_fast.py runs both ways on the same command lines
and compares every byte and exit code.
"""

from __future__ import annotations

import json
import os
import sys
from io import TextIOWrapper as _TextIOWrapper  # the class of sys.stdout: loaded by the interpreter itself
from typing import Any

from .output import input_error, shown, style

TYPE_CHECKING = False
if TYPE_CHECKING:
    import click


def load_policy_data(path: str, use_cache: bool = True) -> dict[str, Any]:
    """A .json policy through the loader, anything else compiled as .plr, as the canonical
    dump ``Engine.from_data`` prepares; PlrError on failure. See dsl/cache.py."""
    if not os.path.exists(path):
        from ..errors import PlrError

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


class _ArgsProblem(Exception):
    """What is wrong with --args; click reports it as a BadParameter of --args."""


def _not_json_number(word: str) -> float:
    raise ValueError(f"{word} is not a JSON number")


def _finite_float(text: str) -> float:
    """A JSON number that fits a double; 1e400 would become infinity, which no MCP call carries."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def _stdin() -> Any:
    """``click.get_text_stream("stdin")``: ``sys.stdin`` itself when click would use it as it is."""
    if _plain(sys.stdin):
        return sys.stdin
    import click

    return click.get_text_stream("stdin")


def _args_text(args_json: str) -> str:
    """--args as JSON text: inline, ``@FILE`` read from a file, ``-`` from stdin (as `opa eval
    --input` users expect)."""
    if args_json == "-":
        return _stdin().read()  # type: ignore[no-any-return]
    if args_json.startswith("@"):
        try:
            with open(args_json[1:], encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or e
            raise _ArgsProblem(f"cannot read {args_json[1:]}: {why}") from None
    return args_json


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are each written once: JSON keeps the last of a repeated key
    silently, so `{"path": "/etc/passwd", "path": "notes/x"}` would be decided as the second
    while it reads as the first (a repeated key in a test's call is an error too)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _ArgsProblem(f"the key {json.dumps(key)} is written twice in one object: write it once")
        out[key] = value
    return out


def _call_arguments(text: str) -> dict[str, Any]:
    """--args as the call's arguments: a JSON object of the values an MCP call can carry (no
    NaN, no infinity); anything else is a usage error naming --args."""
    try:
        args = json.loads(text, parse_constant=_not_json_number, parse_float=_finite_float, object_pairs_hook=_once)
    except _ArgsProblem:
        raise
    except (ValueError, RecursionError) as e:
        raise _ArgsProblem(f"not valid JSON: {e}") from None
    if not isinstance(args, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(args), "a number")
        raise _ArgsProblem(f"must be a JSON object (the call's arguments by name), not {kind}")
    return args


def _engine(policy: str, no_cache: bool) -> tuple[Any, dict[str, Any]]:
    """The policy's engine and the data it was prepared from; a broken policy exits 2 (its
    diagnostics printed)."""
    from ..engine import Engine

    try:
        data = load_policy_data(policy, use_cache=not no_cache)  # a broken policy fails here, once
        try:
            return Engine.from_data(data), data
        except Exception as e:
            if no_cache or not _plr_error(e):
                raise
            # a cache entry that does not prepare is a miss: load the policy itself
            data = load_policy_data(policy, use_cache=False)
            return Engine.from_data(data), data
    except Exception as e:
        if not _plr_error(e):
            raise
        input_error(e)


def _plr_error(e: Exception) -> bool:
    """``isinstance(e, PlrError)``, importing dsl.errors only once something failed."""
    from ..errors import PlrError

    return isinstance(e, PlrError)


def _description(data: dict[str, Any], rule: str | None) -> str | None:
    """The ``description "..."`` of the rule that decided (the JSON's ``descriptions``, by rule)."""
    descriptions = data.get("descriptions")
    if rule is None or not isinstance(descriptions, dict):
        return None
    text = descriptions.get(rule)
    return text if isinstance(text, str) else None


def near_tool(data: dict[str, Any], tool: str) -> str | None:
    """A tool the compiled policy names (its ``tools`` and ``hide``) close to ``tool``, when the
    policy does not name ``tool`` itself: what a typo'd --tool most likely meant."""
    import difflib

    tools = data.get("tools") if isinstance(data.get("tools"), dict) else {}
    if tool in tools:  # (the common case first: nothing built for a named tool)
        return None
    hide = data.get("hide") if isinstance(data.get("hide"), list) else []
    names = {n for n in [*tools, *hide] if isinstance(n, str)}
    if not names or tool in names:
        return None
    close = difflib.get_close_matches(tool, sorted(names), n=1, cutoff=0.75)
    return close[0] if close else None


def _decide(
    echo: Any, policy: str, tool: str, args: dict[str, Any], identity: str | None, session: str | None,
    server: str | None, approved: bool, explain: bool, fmt: str, no_cache: bool,
) -> None:  # fmt: skip
    """The command after its arguments are read: decide, and print through ``echo``."""
    engine, data = _engine(policy, no_cache)
    d = engine.decide(tool, args, identity=identity, session=session, server=server, approved=approved, explain=explain)
    if (near := near_tool(data, tool)) is not None:  # a typo'd --tool is decided as an unknown tool
        sys.stderr.write(f"plr eval: note: the policy names no tool `{shown(tool)}`: did you mean `{shown(near)}`?\n")
    description = _description(data, d.rule) if explain else None
    if fmt == "json":
        out = d.to_dict()
        if explain:
            out["description"] = description
            out["trace"] = [{"check": t.check, "result": t.result, "rule": t.rule} for t in d.trace or ()]
        echo(json.dumps(out))
        return
    colour = {"allow": "green", "deny": "red"}.get(d.effect, "yellow")
    echo(style(d.effect, colour, True) + f" ({d.code})" + (f" by {d.rule}" if d.rule else ""))
    if d.reason:
        echo(f"  reason: {d.reason}")
    if description is not None:
        echo(f"  description: {shown(description)}")  # the author's text: no escapes reach the terminal
    if d.retry_after is not None:
        echo(f"  retry after: {d.retry_after:g} s")
    if explain:
        echo("  checks:")
        for t in d.trace or ():
            res = t.result if isinstance(t.result, str) else ("true" if t.result else "false")
            echo(f"    {t.check} -> {res}" + (f"   [{t.rule}]" if t.rule else ""))


_EVAL_HELP = """Decide one tool call with a .plr or .json policy.

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

# --args already read by ``fast_eval`` when it hands a usage error over to click: (the --args
# value, its text or None, the problem reading it). Stdin or a FIFO cannot be read twice.
_handoff: tuple[str, str | None, _ArgsProblem] | None = None


def _read_args(args_json: str) -> str:
    global _handoff
    if _handoff is not None and _handoff[0] == args_json:
        _, text, problem = _handoff
        _handoff = None
        if text is None:
            raise problem
        return text
    return _args_text(args_json)


def _command() -> click.Command:
    """The click command: built when click reads the command line (help, errors, completion)."""
    import click

    @click.command("eval", help=_EVAL_HELP)
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
        try:
            args = _call_arguments(_read_args(args_json))
        except _ArgsProblem as e:
            raise click.BadParameter(str(e), param_hint="--args") from None
        _decide(click.echo, policy, tool, args, identity, session, server, approved, explain, fmt, no_cache)

    return eval_cmd


_eval_cmd: click.Command | None = None


def __getattr__(name: str) -> Any:
    """``eval_cmd``, the click command, made on first use (dsl/cli/__init__.py asks for it)."""
    global _eval_cmd
    if name == "eval_cmd":
        if _eval_cmd is None:
            _eval_cmd = _command()
        return _eval_cmd
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the command line without click ------------------------------------------------------

# eval_cmd's options that take a value (by every name click knows them by) and its flags
_VALUE_OPTIONS = {
    "--tool": "tool", "-t": "tool", "--args": "args_json", "--identity": "identity", "--session": "session",
    "--server": "server", "--format": "fmt",
}  # fmt: skip
_FLAGS = {"--approved": "approved", "--explain": "explain", "--no-cache": "no_cache"}
_FORMATS = ("text", "json")


def _plain(stream: Any) -> bool:
    """Whether click uses ``stream`` as it is: a text file of the interpreter's own kind whose
    encoding is not ASCII (click rewraps an ASCII one as UTF-8; click/_compat.py)."""
    if type(stream) is not _TextIOWrapper:
        return False
    import codecs

    try:
        return codecs.lookup(stream.encoding or "ascii").name != "ascii"
    except LookupError:
        return True  # click: not an ASCII encoding, so used as it is


def _fast_params(args: list[str]) -> dict[str, Any] | None:
    """``eval_cmd``'s parameters as click would pass them for ``plr ARGS`` (``args[0]`` is
    "eval"), or None when click could read ARGS otherwise, would refuse them or print help.

    click's parser (click/parser.py): a word that starts with ``-`` (and is not ``-`` alone) is
    an option; ``--name=value`` gives a long option its value; an option that takes a value
    takes the next word whatever it is; a repeated option keeps its last value; the other words
    are the arguments, wherever they stand. Only the exact spellings below are read here."""
    if any(not isinstance(a, str) for a in args) or os.environ.get("_PLR_COMPLETE"):
        return None  # shell completion (click's _PROG_COMPLETE variable) is click's
    params: dict[str, Any] = {
        "tool": None, "args_json": "{}", "identity": None, "session": None, "server": None, "approved": False,
        "explain": False, "fmt": "text", "no_cache": False,
    }  # fmt: skip
    words: list[str] = []
    i, n = 1, len(args)
    while i < n:
        word = args[i]
        i += 1
        if word[:1] != "-" or len(word) == 1:
            words.append(word)
        elif word in _VALUE_OPTIONS:
            if i == n:
                return None  # "requires an argument"
            params[_VALUE_OPTIONS[word]] = args[i]
            i += 1
        elif word in _FLAGS:
            params[_FLAGS[word]] = True
        else:
            name, _, value = word.partition("=")
            if not (name.startswith("--") and name in _VALUE_OPTIONS and name != word):
                return None  # help, `--`, unknown, a flag given a value, `-tX`, `-t=X`: click's
            params[_VALUE_OPTIONS[name]] = value
    if len(words) != 1 or params["tool"] is None or params["fmt"] not in _FORMATS:
        return None  # a missing or extra argument, no --tool, an unknown format: click's errors
    policy = words[0]
    try:  # click.Path(): an existing file it cannot read is refused
        os.stat(policy)
    except OSError:
        pass
    except Exception:  # noqa: BLE001 - a NUL in the name: whatever click does with it
        return None
    else:
        if not os.access(policy, os.R_OK):
            return None
    if not _plain(sys.stdout) or (params["args_json"] == "-" and not _plain(sys.stdin)):
        return None
    params["policy"] = policy
    return params


def _echo(line: str) -> None:
    """``click.echo(line)`` to a ``_plain`` stdout: escape sequences are stripped unless it is a
    terminal (click.utils.echo, click._compat.should_strip_ansi)."""
    out = sys.stdout
    line += "\n"
    if "\x1b" in line:
        try:
            tty = out.isatty()
        except Exception:  # noqa: BLE001 - click's isatty
            tty = False
        if not tty:
            import re

            line = re.sub(r"\033\[[;?0-9]*[a-zA-Z]", "", line)
    out.write(line)
    out.flush()


def fast_eval(args: list[str]) -> None:
    """Run `plr ARGS` (``args[0]`` is "eval") without click when ``_fast_params`` reads the
    command line, exiting as click's standalone mode would; return, having done nothing, when
    click must read it. A usage error in --args (found running the command) is click's to print,
    with its usage text: click runs the command again, with --args as already read."""
    global _handoff
    params = _fast_params(args)
    if params is None:
        return
    handoff = _run(params)  # exits, unless --args is refused
    _handoff = handoff
    try:
        from . import cli

        cli.main(args=args, prog_name="plr", standalone_mode=True)
    finally:
        _handoff = None


def _run(params: dict[str, Any]) -> tuple[str, str | None, _ArgsProblem]:
    """``eval_cmd`` under click's ``main``: its exits, its answers to Ctrl-C and a closed pipe."""
    try:
        source = params.pop("args_json")
        text: str | None = None
        try:
            text = _args_text(source)
            call = _call_arguments(text)
        except _ArgsProblem as problem:
            return (source, text, problem)
        _decide(_echo, args=call, **params)
    except (EOFError, KeyboardInterrupt):
        import click
        from gettext import gettext as _

        click.echo(file=sys.stderr)
        click.echo(_("Aborted!"), file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        import errno

        if e.errno != errno.EPIPE:
            raise
        from click.utils import PacifyFlushWrapper

        sys.stdout = PacifyFlushWrapper(sys.stdout)  # type: ignore[assignment]
        sys.stderr = PacifyFlushWrapper(sys.stderr)  # type: ignore[assignment]
        sys.exit(1)
    sys.exit(0)
