"""What a decision is: its effect, its code, its reason, and (when asked) the checks behind it.

Plain frozen data with no behaviour: the proxy logs it, ``plr eval`` prints it, ``plr test``
compares it; none of them needs the engine that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Effect", "Code", "TraceStep", "Decision"]

Effect = Literal["allow", "deny", "approval_required"]
# "allowed" (a governed tool passed every check) is not in the spec's list, which names only the
# codes of refusals and of the default; an allowed call still needs a code to print and log.
# "tool_changed" is the proxy's (dsl/proxy/pins.py): a pinned tool's definition changed.
# "invalid_args": arguments a server would read as another value than the one decided on
# (dsl/engine/arguments.py).
Code = Literal[
    "allowed", "hidden", "denied", "default", "deny_if", "require", "rate_limited", "error", "state_unavailable",
    "tool_changed", "invalid_args",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One check made while deciding; ``result`` is a bool, or text when there is more to say."""

    check: str
    result: bool | str
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one call, why, and (with ``explain=True``) every check that was made."""

    effect: Effect
    code: Code
    reason: str
    rule: str | None = None
    retry_after: float | None = None
    trace: tuple[TraceStep, ...] | None = None
    # an allowed call's `refund on error` receipt (``dsl.engine.core.Charge``): what
    # ``Engine.refund`` gives back if the upstream answers with an error; not compared
    charge: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable form (``plr eval --format json``, audit log)."""
        return {
            "effect": self.effect,
            "code": self.code,
            "reason": self.reason,
            "rule": self.rule,
            "retry_after": self.retry_after,
        }
