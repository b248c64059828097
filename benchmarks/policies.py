"""Generated `.plr` policies for the benchmarks: deterministic text, sized by tools or rules.

Two families:

* ``decision_policy(n_tools)``: the three measured tools plus filler tools of mixed kinds, so
  the decision benchmark can show that the cost of a decision does not depend on how many
  tools the policy governs.
* ``compile_policy(n_rules)``: a realistic mix for the compile benchmark: a catalogue, allow
  and deny rules with and without conditions, reasons, limits, hidden and denied tools, one
  risk-class selector and tool lists. Every tool is declared in the catalogue, so the policy
  compiles without errors and with no warnings (as a maintained policy would).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The tools measured by the decision benchmark, and a call that passes every check of each
# (so every condition is evaluated: the worst case for a tool that ends up allowed).
PLAIN_TOOL = "bench-plain"  # (a) allowed, no conditions
FIVE_TOOL = "bench-five"  # (b) five conditions, one of them a regex
LIMIT_TOOL = "bench-limit"  # (c) allowed with a sliding-window limit

FIVE_RULES = f"""\
allow tool "{FIVE_TOOL}" if identity in ["agent-1", "agent-2", "agent-3"]
deny tool "{FIVE_TOOL}" if args.amount > 10000
    reason "Amounts over 10000 need a human"
deny tool "{FIVE_TOOL}" if args.path matches "(?s)^/etc/.*\\\\.conf$"
    reason "No writes to /etc/*.conf"
deny tool "{FIVE_TOOL}" if args.mode == "force"
deny tool "{FIVE_TOOL}" unless args.reason exists
    reason "Say why (args.reason)"
"""

# The limit never fills: the virtual clock advances 0.1 s per call, so at most 600 calls are
# ever inside the one-minute window while the limit allows 1000 (each call drops one old hit
# and records one new one: the steady state of a busy tool).
LIMIT_MAX = 1000
LIMIT_WINDOW_S = 60
LIMIT_CLOCK_STEP_S = 0.1

LIMIT_RULES = f"""\
allow tool "{LIMIT_TOOL}"
limit tool "{LIMIT_TOOL}" to {LIMIT_MAX} per minute per session
"""


# (d) a quantifier and a value function: `every` over a call's ten paths, each normalised and
# compared, through a `let` and a `def` (inlined at compile time, so they cost nothing here).
EVERY_TOOL = "bench-every"
EVERY_POLICY = f"""\
package bench.every

let workspace = "/workspace/"

def in_workspace(p) {{
    normpath(p) starts_with workspace
}}

default deny

allow tool "{EVERY_TOOL}" if every p in args.paths {{ in_workspace(p) }}
"""
EVERY_PATHS = [f"/workspace/src/pkg_{i}/./module_{i}.py" if i % 3 else f"/workspace//docs/{i}.md" for i in range(10)]


@dataclass(frozen=True)
class Call:
    """One call to decide: what the benchmark times, for plr and for Cedar alike."""

    tool: str
    args: dict[str, Any] | None = None
    identity: str | None = "agent-1"
    session: str | None = "session-1"
    expect: str = "allow"


MEASURED_CALLS: dict[str, Call] = {
    "a": Call(PLAIN_TOOL),
    "b": Call(FIVE_TOOL, {"amount": 2500, "path": "/home/u/notes.txt", "mode": "safe", "reason": "monthly report"}),
    "c": Call(LIMIT_TOOL),
}

# Calls that must be refused (or allowed) for the same reasons by plr and by the Cedar
# translation: the benchmark checks both agree before it times anything.
PROBE_CALLS: tuple[Call, ...] = (
    *MEASURED_CALLS.values(),
    Call(FIVE_TOOL, {**(MEASURED_CALLS["b"].args or {}), "amount": 20000}, expect="deny"),
    Call(FIVE_TOOL, {**(MEASURED_CALLS["b"].args or {}), "path": "/etc/app/main.conf"}, expect="deny"),
    Call(FIVE_TOOL, {**(MEASURED_CALLS["b"].args or {}), "mode": "force"}, expect="deny"),
    Call(FIVE_TOOL, {"amount": 1, "path": "/tmp/x", "mode": "safe"}, expect="deny"),
    Call(FIVE_TOOL, MEASURED_CALLS["b"].args, identity="intruder", expect="deny"),
    Call("not-in-the-policy", expect="deny"),
    Call("filler-00003", {"amount": 5}, expect="allow"),
    Call("filler-00003", {"amount": 500}, expect="deny"),
    Call("filler-00004", {"env": "prod"}, expect="deny"),
    Call("filler-00004", {"env": "dev"}, expect="allow"),
)


def _filler(i: int) -> str:
    """Rules for filler tool ``i``: a rotation of the shapes real policies have."""
    t = f"filler-{i:05d}"
    kind = i % 5
    if kind == 0:
        return f'allow tool "{t}"\n'
    if kind == 1:
        return f'allow tool "{t}" if identity == "agent-{i % 7}"\n'
    if kind == 2:
        return f'deny tool "{t}"\n    reason "Tool {i} is retired"\n'
    if kind == 3:
        return f'allow tool "{t}"\ndeny tool "{t}" if args.amount > {100 + i % 50}\n'
    return (
        f'allow tool "{t}" if args.env in ["dev", "staging"]\n'
        f'limit tool "{t}" to {10 + i % 20} per minute per identity\n'
    )


def decision_policy(n_tools: int) -> str:
    """A `default deny` policy governing ``n_tools`` tools (the three measured ones included)."""
    if n_tools < 3:
        raise ValueError("the decision policy has at least the three measured tools")
    parts = [
        "package bench.decision\n",
        "default deny\n",
        f'allow tool "{PLAIN_TOOL}"\n',
        FIVE_RULES,
        LIMIT_RULES,
    ]
    parts.extend(_filler(i) for i in range(n_tools - 3))
    return "\n".join(parts)


# --- compile benchmark ----------------------------------------------------------------------


@dataclass
class _Writer:
    lines: list[str] = field(default_factory=list)
    rules: int = 0

    def rule(self, text: str) -> None:
        self.lines.append(text)
        self.rules += 1


# Risk class per tool group (see _tool_group): hidden and denied tools are never `read`, so the
# one `allow read tools` rule does not collide with them (that would be a warning).
_GROUP_RISK = ("read", "write", "destructive", "execute", "destructive", "execute", "write", "read")


def _tool_group(w: _Writer, t: str, i: int) -> None:
    """Four rules (one or two for hidden and denied tools) about tool ``t``."""
    g = i % 8
    if g == 0:
        w.rule(f'allow tool "{t}"')
        w.rule(f'deny tool "{t}" if args.amount > {1000 + i}\n    reason "Amount over {1000 + i} for {t}"')
        w.rule(f'deny tool "{t}" if args.path matches "^/etc/"')
        w.rule(f'limit tool "{t}" to 10 per minute per session')
    elif g == 1:
        w.rule(f'allow tool "{t}" if identity in ["agent-1", "agent-2", "agent-{i}"]')
        w.rule(f'deny tool "{t}" if args.mode == "force"')
        w.rule(f'deny tool "{t}" unless args.reason exists\n    reason "Say why"')
        w.rule(f'limit tool "{t}" to 100 per hour per identity')
    elif g == 2:
        w.rule(f'deny tool "{t}" unless approved\n    reason "A human approves {t}"')
        w.rule(f'deny tool "{t}" if count(args.ids) > 5')
        w.rule(f'deny tool "{t}" if not (args.env in ["dev", "staging"]) or args.force == true')
        w.rule(f'limit tool "{t}" to 5 per 10s')
    elif g == 3:
        w.rule(f'allow tool "{t}" if {{\n    args.query starts_with "SELECT"\n    len(args.query) <= 4000\n}}')
        w.rule(f'deny tool "{t}" if args.query contains "DROP"')
        w.rule(f'deny tool "{t}" if not (args.db == "analytics" or identity == "dba")')
        w.rule(f'limit tool "{t}" to 30 per minute per identity')
    elif g == 4:
        w.rule(f'hide tool "{t}"')
    elif g == 5:
        w.rule(f'deny tool "{t}"\n    reason "Retired on {2020 + i % 6}-01-01"')
    elif g == 6:
        w.rule(f'allow tool "{t}" if args.size < {i + 1} or identity == "admin"')
        w.rule(f'deny tool "{t}" if args.target ends_with ".prod"')
        w.rule(f'limit tool "{t}" to 1000 per day per global')
    else:
        w.rule(f'deny tool "{t}" if args.tags[0] == "secret" or args.meta["owner id"] missing')
        w.rule(f'limit tool "{t}" to 60 per minute')


def compile_policy(n_rules: int) -> str:
    """About ``n_rules`` rules (exactly, give or take the last group), plus a catalogue."""
    w = _Writer()
    tools: list[str] = []
    i = 0
    # One risk-class rule and one tool-list rule per policy, as most real policies have.
    w.rule("allow read tools")
    while w.rules < n_rules:
        t = f"svc{i // 500}-tool-{i:05d}"
        tools.append(t)
        _tool_group(w, t, i)
        i += 1
    if len(tools) >= 2:
        w.rule(f'deny tools ["{tools[0]}", "{tools[1]}"] if args.dry_run == false and args.force == true')
    header = ["package bench.compile", "", "default deny", ""]
    # The catalogue: one `server` block per 500 tools, risks in rotation.
    for s in range(0, len(tools), 500):
        header.append(f'server "svc{s // 500}" {{')
        header.extend(f'    tool "{t}" {_GROUP_RISK[(s + k) % 8]}' for k, t in enumerate(tools[s : s + 500]))
        header.append("}")
        header.append("")
    return "\n".join(header) + "\n" + "\n\n".join(w.lines) + "\n"


def count_rules(text: str) -> int:
    """Rules in generated text (statements starting a line with a rule keyword)."""
    return sum(1 for line in text.splitlines() if line.startswith(("allow ", "deny ", "hide ", "limit ")))
