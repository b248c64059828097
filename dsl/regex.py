"""RE2 everywhere: linear-time matching, so no pattern or input can stall a decision.

re2 is imported by the first pattern compiled, not with this module: the engine imports this
module on every `plr eval`, and most policies have no regex.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

_re2: Any = None  # the re2 module, with plr's options, once a pattern needs it
_OPTIONS: Any = None


def _load() -> Any:
    global _re2, _OPTIONS
    if _re2 is None:
        import re2

        options = re2.Options()
        options.log_errors = False  # errors are reported to the policy author, not to stderr
        _OPTIONS, _re2 = options, re2
    return _re2


@lru_cache(maxsize=4096)
def compile_re2(pattern: str) -> Any:
    """Compile with RE2 or raise ValueError with RE2's own explanation."""
    re2 = _load()
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as e:
        arg = e.args[0] if e.args else ""
        detail = (arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)) or "not valid RE2"
        raise ValueError(f"invalid regular expression {pattern!r}: {detail}") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None


def re2_search_test(pattern: str) -> Callable[[str], bool]:
    """``pattern`` compiled once into "does it match anywhere in this str?".

    Same answer as ``compile_re2(pattern).search(s) is not None`` at a third of the cost: it
    calls RE2's ``Match`` directly instead of the wrapper's generator that builds a match
    object and maps byte offsets back to characters (a decision needs neither). A str that
    cannot be encoded (lone surrogate) raises, as ``search`` does: callers fail closed.
    """
    rx = compile_re2(pattern)
    match = getattr(getattr(rx, "_regexp", None), "Match", None)
    anchor = getattr(getattr(_re2, "_Anchor", None), "UNANCHORED", None)
    if match is None or anchor is None:  # a google-re2 without these internals: the public API
        search = rx.search
        return lambda s: search(s) is not None

    def test(s: str) -> bool:
        b = s.encode("utf-8")
        return match(anchor, b, 0, len(b))[0][0] != -1

    return test
