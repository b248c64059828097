"""`plr console`: approvals and audit in the browser (docs/console.md).

The flags are checked first (a bad --listen, a public address without --auth-tokens, a tokens
file that cannot be read: exit 2, before anything listens); starlette and uvicorn are imported
only then.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .output import EXIT_INPUT

DEFAULT_LISTEN = "127.0.0.1:8766"


class _Lifetime(click.ParamType):
    """A session lifetime in ``unit`` (minutes or hours), given back in seconds: a finite number
    above zero, at most 30 days (``dsl.console.security.lifetime_problem``)."""

    def __init__(self, unit: str, seconds: float) -> None:
        self.unit, self.seconds = unit, seconds
        self.name = unit

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        from ..console.security import lifetime_problem

        try:
            n = float(str(value).strip())
        except ValueError:
            self.fail(f"`{value}` is not a number of {self.unit}", param, ctx)
        why = lifetime_problem(n * self.seconds)
        if why is not None:
            self.fail(f"`{value}` {self.unit} {why}", param, ctx)
        return n * self.seconds


@click.command("console")
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve. Beyond loopback (127.0.0.1, localhost, ::1) only with --auth-tokens.",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    envvar="PLR_APPROVALS_DB",
    help="The approval queue (the proxy's --approvals-db; default: approvals.sqlite next to the first --audit). "
    "Env: PLR_APPROVALS_DB.",
)
@click.option("--state", metavar="redis://HOST:PORT/DB", envvar="PLR_STATE", help="A fleet's queue in Redis (the proxies' --state). Env: PLR_STATE.")
@click.option(
    "--audit",
    "audits",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="An audit log to show (repeatable: several proxies' logs side by side).",
)
@click.option("--policy", "-p", help="The policy the proxy enforces (its --policy), shown on the Policy page.")
@click.option(
    "--auth-tokens",
    type=click.Path(dir_okay=False, exists=True),
    help='JSON {"TOKEN": "identity"} (the proxy\'s format): a browser signs in with a token, and its identity '
    "is recorded with every decision. Required beyond loopback.",
)
@click.option(
    "--allow-host",
    "allow_host",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Also accept requests whose Host names HOST (a reverse proxy's name); otherwise only the --listen "
    "address (on loopback also localhost, 127.0.0.1 and [::1]).",
)
@click.option(
    "--session-idle",
    "session_idle",
    type=_Lifetime("minutes", 60),
    default="30",
    show_default=True,
    metavar="MINUTES",
    help="With --auth-tokens: a browser's sign-in ends after this long without a request (an open "
    "console tab keeps it alive), so a sign-in left behind (tab closed, cookie copied) soon approves nothing.",
)
@click.option(
    "--session-lifetime",
    "session_lifetime",
    type=_Lifetime("hours", 3600),
    default="12",
    show_default=True,
    metavar="HOURS",
    help="With --auth-tokens: a browser's sign-in ends this long after it began, however busy (a stolen "
    "cookie is not good forever). At most 720 (30 days).",
)
@click.option(
    "--behind-https",
    "behind_https",
    is_flag=True,
    help="With --auth-tokens: browsers reach this console over HTTPS only (a TLS-terminating reverse "
    "proxy), so its sign-in cookie is always Secure and __Host- prefixed, and a sign-in from a plain-HTTP "
    "page beyond loopback is refused. Without it the cookie is Secure when the sign-in page was HTTPS.",
)
def console_cmd(
    listen: str,
    db: str | None,
    state: str | None,
    audits: tuple[str, ...],
    policy: str | None,
    auth_tokens: str | None,
    allow_host: tuple[str, ...],
    session_idle: float,
    session_lifetime: float,
    behind_https: bool,
) -> None:
    """Answer approval requests and read the audit log in a browser.

    Pending requests appear live (newest first) with their whole arguments, the rule that asked
    and its reason; Approve and Deny do exactly what `plr approvals grant/deny` does, and the
    waiting call proceeds or is denied at once. The Audit page filters and charts the
    decisions; the Policy page shows the policy in force.

    \b
    Examples:
      plr proxy --policy policy.plr --audit audit.jsonl -- npx -y @modelcontextprotocol/server-memory
      plr console --audit audit.jsonl --policy policy.plr       # then open http://127.0.0.1:8766/
      plr console --db /var/lib/plr/approvals.sqlite --audit a.jsonl --audit b.jsonl
      plr console --state redis://10.0.0.5:6379/0 --listen 0.0.0.0:8766 --auth-tokens tokens.json
      plr console --listen 0.0.0.0:8766 --auth-tokens tokens.json --session-idle 15 --session-lifetime 8
      plr console --auth-tokens tokens.json --allow-host approvals.ops.example --behind-https
    """
    from ..listener_names import is_loopback_listener
    from .listen_flags import load_tokens, parse_allow_host, parse_listen

    host, port = parse_listen(listen)
    allow = tuple(dict.fromkeys(parse_allow_host(v) for v in allow_host))
    if db and state:
        raise click.UsageError("--db and --state name two different approval queues; give one")
    loopback = is_loopback_listener(host)
    if not loopback and not auth_tokens:
        click.echo(
            f"plr console: refusing to listen on {host} without --auth-tokens: anyone who can reach it could "
            "approve tool calls; give --auth-tokens FILE or listen on 127.0.0.1",
            err=True,
        )
        sys.exit(EXIT_INPUT)
    tokens = load_tokens(auth_tokens, "plr console") if auth_tokens else None
    cfg = _config(
        db,
        state,
        audits,
        policy,
        tokens,
        check_hosts=loopback or bool(allow) or tokens is None,
        sessions={"idle": session_idle, "lifetime": session_lifetime, "behind_https": behind_https},
    )
    _serve(cfg, host, port, allow)


def _config(
    db: str | None,
    state: str | None,
    audits: tuple[str, ...],
    policy: str | None,
    tokens: Any,
    *,
    check_hosts: bool,
    sessions: dict[str, Any] | None = None,
) -> Any:
    from ..console.app import ConsoleConfig
    from ..console.security import ConsoleGuard
    from ..console.sources import AuditTail, QueueSource, load_policy_view
    from ..state.queue import operator_name
    from ..state.sqlite import queue_db_path

    if state:
        from .approvals import open_state

        shared = open_state(state, "plr console")
        queue = QueueSource(opener=shared.approval_queue, where=f"redis at {shared.display}")
    else:
        queue = QueueSource(db=queue_db_path(db, audits[0] if audits else None))
    view = load_policy_view(policy)
    if view is not None and view.error:
        click.echo(view.error, err=True)
        click.echo("plr console: the policy could not be loaded; not starting", err=True)
        sys.exit(EXIT_INPUT)
    guard = ConsoleGuard(tokens, operator=operator_name(), check_hosts=check_hosts, **(sessions or {}))
    return ConsoleConfig(queue=queue, audit=AuditTail([Path(a) for a in audits]), guard=guard, policy=view)


def _serve(cfg: Any, host: str, port: int, allow: tuple[str, ...]) -> None:
    import anyio
    import uvicorn

    from ..console.app import create_app
    from ..listener_names import allowed_names
    from ..vocab import terminal_text

    config = uvicorn.Config(
        create_app(cfg),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,  # open event streams end with the console
        ws="none",
    )
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            await anyio.sleep(0.02)
        ports = {sock.getsockname()[1] for s in server.servers for sock in s.sockets}
        cfg.guard.hosts[:] = allowed_names(host, ports, allow)[0]
        shown = f"[{host}]" if ":" in host else host
        click.echo(terminal_text(f"plr console: approvals queue {cfg.queue.where}"), err=True)
        for p in sorted(ports):
            click.echo(f"plr console: open http://{shown}:{p}/", err=True)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(announce)
            await server.serve()
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
