"""`plr proxy`: its flags and help. What it does with them is in ``proxy_run``, imported only
when the proxy starts, so `plr --help` does not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

_F = TypeVar("_F", bound=Callable[..., Any])


def _seconds(flag: str, low: float, default: float, help: str) -> Callable[[_F], _F]:
    """A duration flag: SECONDS, at least ``low``, its default shown in --help."""
    return click.option(flag, type=click.FloatRange(min=low), default=default, show_default=True, metavar="SECONDS", help=help)


def _count(flag: str, low: int, default: int, help: str) -> Callable[[_F], _F]:
    """A whole-number flag: N, at least ``low``, its default shown in --help."""
    return click.option(flag, type=click.IntRange(min=low), default=default, show_default=True, metavar="N", help=help)


@click.command(
    "proxy",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--policy",
    "-p",
    required=True,
    type=click.Path(),
    help="A .plr file (or directory), a compiled .json policy, an http(s):// URL, or a Redis key "
    "redis://HOST:PORT/DB#KEY holding policy JSON or .plr text (one policy for a fleet).",
)
@click.option(
    "--audit", type=click.Path(dir_okay=False), help="Audit log (JSON Lines). Default: ~/.local/state/plr/audit.jsonl."
)
@click.option("--identity", help="Who the agent acts for (the policy's `identity`).")
@click.option(
    "--server-name", help="The policy's `server` and the audit log's `server` (default: the upstream server's name)."
)
@click.option(
    "--watch",
    is_flag=True,
    help="Reload the policy when it changes: files on save, URLs and Redis keys by polling (--policy-poll) "
    "and Redis pub/sub; a broken or unreachable policy keeps the old one.",
)
@_seconds(
    "--policy-poll",
    low=0.05,
    default=2.0,
    help="With --watch: how often a URL or Redis policy is re-read.",
)
@click.option(
    "--state",
    metavar="STORE",
    envvar="PLR_STATE",
    help="Where limit counters live. redis://HOST:PORT/DB: shared with other replicas, with the approval "
    "queue; Redis unreachable -> calls needing it are denied (state_unavailable) until it returns. A Redis that "
    "may evict keys (maxmemory with a policy but noeviction), or will not say (INFO refused), would reset counters: "
    "the proxy refuses to start, and denies those calls if it turns so later, unless the URL says "
    "?allow_eviction=1 (then it warns). "
    "sqlite or sqlite:PATH: a file shared by this machine's proxies, surviving restarts (the default when "
    "the policy has a limit or --watch is on; the path is printed at start). memory: this process only "
    "(counters restart with the client). Env: PLR_STATE.",
)
@click.option(
    "--log-args",
    is_flag=True,
    help="Store call arguments in the audit log (secret-looking keys redacted); default: only a hash.",
)
@click.option(
    "--approval",
    type=click.Choice(["queue", "elicit", "auto", "deny"]),
    default="queue",
    show_default=True,
    help="How to ask a human. queue: a queue the agent cannot touch, answered with `plr approvals grant/deny` "
    "(the safe default). elicit: trust the MCP client to show a human a dialog (a desktop client; an "
    "autonomous agent's client could approve its own calls). auto: elicit when the client can, else "
    "the queue. deny: never ask.",
)
@_seconds(
    "--approval-timeout",
    low=0.1,
    default=120.0,
    help="No answer in time -> deny.",
)
@_count(
    "--max-pending-approvals",
    low=0,
    default=20,
    help="At most N calls per identity and per session wait for a human at once; the next is denied "
    "(so an agent cannot bury its approver). 0: no cap.",
)
@click.option(
    "--approvals-db",
    type=click.Path(dir_okay=False),
    help="The approval queue (SQLite). Default: approvals.sqlite next to the audit log.",
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Serve streamable HTTP here instead of stdio. Without --auth-tokens only on loopback (127.0.0.1, "
    "localhost, ::1; see --insecure-no-auth).",
)
@click.option(
    "--upstream", metavar="URL", help="The upstream server's streamable HTTP URL (instead of a command after --)."
)
@click.option(
    "--upstream-mode",
    type=click.Choice(["legacy", "auto", "2026-07-28"]),
    default="legacy",
    show_default=True,
    help="Protocol era towards the upstream server (auto probes server/discover first).",
)
@click.option(
    "--pin-tools",
    "pin_mode",
    type=click.Choice(["deny", "warn", "off"]),
    default="deny",
    show_default=True,
    help="A tool whose definition (description, schema, annotations) changes after the proxy first saw it: "
    "deny = withhold it from tools/list and deny its calls (code tool_changed); warn = only report it.",
)
@click.option(
    "--strict-tools",
    is_flag=True,
    help="Refuse to start when a rule names a tool the server does not offer (a typo, a renamed tool, "
    "the wrong server: such a rule does nothing), and on --watch keep the old policy instead of one that "
    "does. Without it the proxy only reports, at start, on tools/list_changed and on every reload, which "
    "policy tools the server lacks and which server tools no rule names (stderr and the audit log).",
)
@click.option(
    "--pins",
    "pins_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Keep the pinned tool definitions in FILE so they survive restarts (created on first use). "
    "To accept a changed tool, delete its entry and restart.",
)
@_count(
    "--max-sessions",
    low=1,
    default=64,
    help="With --listen and --upstream URL: at most N client sessions hold their own upstream session; "
    "beyond that a new session's requests get a JSON-RPC error until one ends.",
)
@_count(
    "--max-sessions-per-identity",
    low=0,
    default=0,
    help="With --max-sessions: at most N of them per identity (with --auth-tokens), so one identity "
    "cannot hold them all; 0: no per-identity share.",
)
@click.option(
    "--auth-tokens",
    type=click.Path(dir_okay=False, exists=True),
    help='HTTP only: JSON {"TOKEN": "identity"}; requests need "Authorization: Bearer TOKEN".',
)
@click.option(
    "--allow-host",
    "allow_host",
    multiple=True,
    metavar="HOST[:PORT]",
    help="HTTP only, repeatable: also accept requests whose Host (and Origin) names HOST (on any port) or "
    "HOST:PORT, e.g. the name a reverse proxy forwards. Otherwise only the --listen address (on loopback or "
    "0.0.0.0 also localhost, 127.0.0.1 and [::1]) is accepted, others get 421: a web page cannot reach the "
    "proxy through a DNS name it controls (DNS rebinding). With --auth-tokens the check applies on loopback "
    "and whenever this flag is given.",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Let --listen use an address other than loopback (0.0.0.0, a LAN address) without --auth-tokens, "
    "which it otherwise refuses. This gives up authentication: anyone who can reach the port calls tools as "
    "--identity, spends its limits and files approval requests in its name. Host checks still apply "
    "(--allow-host).",
)
@_seconds(
    "--read-timeout",
    low=0.1,
    default=10.0,
    help="HTTP only: a client connection must send a request's headers within this long (of connecting, or of "
    "its previous response), then its body within this long again (plus 1 s per 64 KiB); one that stalls is "
    "closed, so half-sent requests (slowloris) cannot pile up.",
)
@_count(
    "--max-connections",
    low=1,
    default=512,
    help="HTTP only: at most N client connections at once. At the cap a new connection closes the one that has "
    "waited longest on its client for a request (a stalled one, never one being served); if none waits, the "
    "new one gets 503.",
)
@_seconds(
    "--session-idle-timeout",
    low=0.5,
    default=1800.0,
    help="HTTP only: a client session with no request in flight and no open stream for this long is ended (its "
    "Mcp-Session-Id then answers 404; with --upstream URL its upstream session is closed too).",
)
@_seconds(
    "--upstream-timeout",
    low=0,
    default=60.0,
    help="A request the upstream server has not answered after this long gets a JSON-RPC error (the server "
    "is sent a cancellation); progress restarts the clock, a human answering a relayed elicitation stops "
    "it. 0: wait for ever.",
)
@_seconds(
    "--start-timeout",
    low=0,
    default=60.0,
    help="The upstream server must start and complete its MCP handshake within this long (a command "
    "fetched by npx on first use can be slow). 0: wait for ever.",
)
@_count(
    "--max-restarts",
    low=0,
    default=3,
    help="A server started after -- that dies is started again (backoff 0.5 s, 1 s, 2 s, ... up to 10 s) at "
    "most N times in a row; the count resets once it stays up 60 s. Calls in flight when it died get an "
    "error, never a silent resend. 0: never restart.",
)
@click.option(
    "--audit-max-bytes",
    type=click.IntRange(min=0),
    default=10 * 1024 * 1024,
    show_default=True,
    help="Rotate the audit log at this size (0: never).",
)
@click.option(
    "--audit-backups", type=click.IntRange(min=1), default=5, show_default=True, help="Rotated audit files to keep."
)
@click.option(
    "--notify",
    "notify",
    multiple=True,
    metavar="URL",
    help="Repeatable: POST a JSON message (with a Slack-compatible `text`) to URL when a call waits in the "
    "approval queue; retried with backoff, never delays or changes a decision; failures go to stderr and the "
    "audit log. The call's arguments are not sent.",
)
@click.option(
    "--notify-command",
    metavar="CMD",
    help="Run CMD (no shell) when a call waits in the approval queue: the message as JSON on stdin and in "
    "PLR_APPROVAL_ID, PLR_APPROVAL_TOOL, PLR_APPROVAL_TEXT, PLR_APPROVAL_URL (e.g. a desktop notification).",
)
@click.option(
    "--console-url",
    metavar="URL",
    help="Where `plr console` serves this proxy's queue: notifications link to the request there.",
)
@click.option(
    "--metrics",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (decisions, latency, pending approvals, "
    "limit rejections, the policy's sha256); with --listen also at /metrics of the HTTP front. Needs "
    "pip install 'plr[metrics]'.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def proxy_cmd(**options: Any) -> None:
    """Enforce a policy in front of one MCP server (stdio, or streamable HTTP with --listen).

    Every tools/call is decided before the server sees it: denied calls get a tool error naming
    the rule and reason, hidden tools vanish from tools/list, approval_required asks a human, and
    one audit record per decision is written and flushed before anything is forwarded.

    \b
    Examples:
      plr proxy --policy policy.plr -- npx -y @modelcontextprotocol/server-memory
      plr proxy --policy policy.json --audit audit.jsonl --watch -- python server.py
      plr proxy --policy policy.plr --listen 127.0.0.1:8765 --upstream http://127.0.0.1:9000/mcp
      plr proxy --policy policy.plr --notify https://hooks.slack.com/services/T/B/X \\
        --console-url http://127.0.0.1:8766 --metrics 127.0.0.1:9464 -- python server.py

    \b
    In an MCP client's config (e.g. claude_desktop_config.json):
      {"mcpServers": {"memory": {"command": "plr", "args": ["proxy", "--policy",
        "/path/policy.plr", "--", "npx", "-y", "@modelcontextprotocol/server-memory"]}}}
    """
    from .proxy_run import ProxyCommandOptions, run_proxy

    run_proxy(ProxyCommandOptions(**options))
