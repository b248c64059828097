"""RE2 everywhere: linear-time matching, so no pattern or input can stall a decision."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors are reported to the policy author, not to stderr


@lru_cache(maxsize=4096)
def compile_re2(pattern: str) -> Any:
    """Compile with RE2 or raise ValueError with RE2's own explanation."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as e:
        arg = e.args[0] if e.args else ""
        detail = (arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)) or "not valid RE2"
        raise ValueError(f"invalid regular expression {pattern!r}: {detail}") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None
