"""`plr diff`, `plr analyze` and `plr query`: exact answers about what a policy decides.

They need z3 (``pip install 'plr[analyze]'``), imported only when one of them runs; without
it they say so and exit 2. See docs/analysis.md.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import Any

import click

from .output import EXIT_FAIL, EXIT_INPUT, EXIT_OK, fail, input_error


def _load(path: str) -> dict[str, Any]:
    from ..analysis.inputs import load_side
    from ..errors import PlrError

    try:
        return load_side(path)
    except PlrError as e:
        input_error(e)


def _unavailable(e: Exception) -> None:
    fail(str(e))


@click.command("diff")
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path(), required=False)
@click.option("--git", "rev", metavar="REV", help="Take OLD from this git revision of the same path (then give one path).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option(
    "--fail-on",
    type=click.Choice(["any", "loosen"]),
    default="any",
    show_default=True,
    help="any: exit 1 on any change; loosen: only when something becomes more permissive, cannot be decided, or a policy of a folder is removed.",
)
def diff_cmd(old: str, new: str | None, rev: str | None, fmt: str, fail_on: str) -> None:
    """Every kind of call whose decision changes from OLD to NEW, each with an example call.

    OLD and NEW are .plr files or folders, or compiled .json policies. A folder holds one
    policy per entry point (the files `plr test` compiles); two folders are compared policy by
    policy, paired by path, and added or removed policies are listed (a removed one counts as
    loosening). "No change" is a proof
    (z3), not a search that gave up; what cannot be decided is listed as unknown. Each example
    call has been re-run on both policies with the real engine. Limits are compared as
    parameters (max, window, per, if).

    Exit 0 when no decision or limit changes, 1 when some do (--fail-on loosen: only when one
    is more permissive, or undecided), 2 on errors.

    \b
    Examples:
      plr diff old.plr new.plr
      plr diff policy.json policy.plr --format json
      plr diff --git origin/main policies/ --format markdown --fail-on loosen
    """
    from ..analysis.inputs import git_revision
    from ..analysis.solver import AnalysisUnavailable
    from ..errors import PlrError

    if rev is not None:
        if new is not None:
            fail("--git takes one path: OLD is that path in the revision, NEW the working copy")
        new = old
    elif new is None:
        fail("give OLD and NEW, or one path with --git REV")
    assert new is not None
    new_set = _load_all(new)
    with ExitStack() as stack:
        if rev is not None:
            try:
                old = stack.enter_context(git_revision(rev, old))
            except PlrError as e:
                input_error(e)
        old_set = _load_all(old)
    from ..analysis import diff as diff_mod
    from ..analysis import report

    try:
        if len(old_set) == 1 and len(new_set) == 1:  # one policy each, whatever the names
            result: Any = diff_mod.diff_policies(next(iter(old_set.values())), next(iter(new_set.values())))
        else:
            result = diff_mod.diff_folders(old_set, new_set)
    except AnalysisUnavailable as e:
        _unavailable(e)
    render = {"text": report.diff_text, "json": report.diff_json, "markdown": report.diff_markdown}[fmt]
    click.echo(render(result), nl=False)
    sys.exit(EXIT_FAIL if diff_mod.fails(result, fail_on) else EXIT_OK)


def _load_all(path: str) -> dict[str, dict[str, Any]]:
    from ..analysis.inputs import load_policies
    from ..errors import PlrError

    try:
        return load_policies(path)
    except PlrError as e:
        input_error(e)


@click.command("analyze")
@click.argument("policy", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def analyze_cmd(policy: str, fmt: str) -> None:
    """Rules that can never matter, proven: conditions that never hold or always hold, rules
    shadowed by an earlier check, tools that can never be allowed.

    Each finding names the rule by file:line; an example call (shadowed rules, a deny_if that
    always holds) is shown only once the real engine has confirmed it, otherwise the finding
    is listed as unknown. Exit 0 when nothing is found, 1 when something is (or is unknown),
    2 on errors.

    \b
    Examples:
      plr analyze policy.plr
      plr analyze policy.json --format json
    """
    from ..analysis.solver import AnalysisUnavailable

    data = _load(policy)
    from ..analysis import report
    from ..analysis.analyze import analyze_policy

    try:
        result = analyze_policy(data)
    except AnalysisUnavailable as e:
        _unavailable(e)
    click.echo((report.findings_json if fmt == "json" else report.findings_text)(result), nl=False)
    sys.exit(EXIT_FAIL if result.findings or result.unknown else EXIT_OK)


@click.command("query")
@click.argument("policy", type=click.Path())
@click.option("--can", "effect", required=True, type=click.Choice(["allow", "deny", "approval_required"]))
@click.option("--tool", "-t", required=True, help="The tool of the call.")
@click.option("--identity", help="Only calls with this identity.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def query_cmd(policy: str, effect: str, tool: str, identity: str | None, fmt: str) -> None:
    """Can a call of TOOL get this decision? Prints one such call (exit 0), or says that none
    can (exit 1, a proof); 2 on errors or when it cannot be decided. A deny also counts when
    it comes from a limit (the call repeated until its limit is reached) or from arguments the
    engine refuses (invalid_args); the answer says so.

    \b
    Examples:
      plr query policy.plr --can allow --tool purge-workspace
      plr query policy.plr --can allow --tool cancel-task --identity guest --format json
    """
    import json

    from ..analysis.solver import AnalysisUnavailable

    data = _load(policy)
    from ..analysis.query import query_policy
    from ..analysis.report import _call, _decision

    try:
        r = query_policy(data, effect, tool, identity)
    except AnalysisUnavailable as e:
        _unavailable(e)
    how = _how(r) if r.possible else None
    from ..vocab import terminal_text
    from .eval import near_tool

    if (near := near_tool(data, tool)) is not None:  # "no call of `cancle-task` gets allow" is a proof, of the wrong tool
        click.echo(terminal_text(f"plr query: note: the policy names no tool `{tool}`: did you mean `{near}`?"), err=True)
    if fmt == "json":
        doc = {"possible": r.possible, "call": r.call, "decision": r.decision, "reason": r.reason or None}
        if r.possible:
            doc.update(via=r.via, repeat=r.repeat, note=how or None)
        click.echo(json.dumps(doc))
    elif r.possible:
        click.echo(f"yes: {_call(r.call)} -> {_decision(r.decision)}{how and f' ({how})'}")  # type: ignore[arg-type]
    elif r.possible is False:
        click.echo(f"no: no call of `{tool}`{' with identity ' + json.dumps(identity) if identity else ''} gets {effect}")
    else:
        click.echo(f"plr: error: cannot decide: {r.reason}", err=True)
    sys.exit(EXIT_OK if r.possible else EXIT_FAIL if r.possible is False else EXIT_INPUT)


def _how(r: Any) -> str:
    """How a `plr query` answer comes about when the call alone does not show it."""
    if r.via == "limit":
        n = r.repeat
        nth = f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"
        return f"once its limit is reached: the {nth} such call in a row, on fresh counters; the earlier ones are allowed"
    if r.via == "invalid_args":
        return (
            "no rule and no limit denies a call: a call whose arguments a server would read as another "
            "value (here an integer beyond 2^53) is denied before any rule"
        )
    return ""
