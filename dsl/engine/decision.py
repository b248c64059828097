"""What a decision is: its effect, its code, its reason, and (when asked) the checks behind it.

Plain frozen data with no behaviour: the proxy logs it, ``plr eval`` prints it, ``plr test``
compares it; none of them needs the engine that made it.
"""

from __future__ import annotations

from typing import Any, Literal

from .records import Record, _set

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


class TraceStep(Record, dataclass=True):
    """One check made while deciding; ``result`` is a bool, or text when there is more to say."""

    __slots__ = ("check", "result", "rule")  # a frozen dataclass, written out (records.py)
    check: str
    result: bool | str
    rule: str | None

    def __init__(self, check: str, result: bool | str, rule: str | None = None) -> None:
        _set(self, "check", check)
        _set(self, "result", result)
        _set(self, "rule", rule)

    def __eq__(self, other: object) -> bool:  # Record's, written out: tests compare traces step by step
        if other.__class__ is self.__class__:
            return (self.check, self.result, self.rule) == (other.check, other.result, other.rule)  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.check, self.result, self.rule))


class Decision(
    Record,
    compare=("effect", "code", "reason", "rule", "retry_after", "trace"),
    show=("effect", "code", "reason", "rule", "retry_after", "trace"),
    dataclass=True,
):
    """What to do with one call, why, and (with ``explain=True``) every check that was made."""

    __slots__ = ("effect", "code", "reason", "rule", "retry_after", "trace", "charge")  # a frozen dataclass, written out
    effect: Effect
    code: Code
    reason: str
    rule: str | None
    retry_after: float | None
    trace: tuple[TraceStep, ...] | None
    # an allowed call's `refund on error` receipt (``dsl.engine.core.Charge``): what
    # ``Engine.refund`` gives back if the upstream answers with an error; not compared, not shown
    charge: Any

    def __init__(
        self,
        effect: Effect,
        code: Code,
        reason: str,
        rule: str | None = None,
        retry_after: float | None = None,
        trace: tuple[TraceStep, ...] | None = None,
        charge: Any = None,
    ) -> None:
        _set(self, "effect", effect)
        _set(self, "code", code)
        _set(self, "reason", reason)
        _set(self, "rule", rule)
        _set(self, "retry_after", retry_after)
        _set(self, "trace", trace)
        _set(self, "charge", charge)

    def __eq__(self, other: object) -> bool:  # Record's, written out (the proxy and tests compare decisions)
        if other.__class__ is self.__class__:
            return (self.effect, self.code, self.reason, self.rule, self.retry_after, self.trace) == (
                other.effect, other.code, other.reason, other.rule, other.retry_after, other.trace,  # type: ignore[attr-defined]
            )  # fmt: skip
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.effect, self.code, self.reason, self.rule, self.retry_after, self.trace))

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable form (``plr eval --format json``, audit log)."""
        return {
            "effect": self.effect,
            "code": self.code,
            "reason": self.reason,
            "rule": self.rule,
            "retry_after": self.retry_after,
        }
