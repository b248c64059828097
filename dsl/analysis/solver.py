"""The one place that imports z3: lazily, with the message a user without the extra needs.

z3-solver is an optional extra (``pip install 'plr[analyze]'``): ``plr compile`` and the proxy
never pay for it, and a missing solver is a clear usage error (exit 2), never a traceback.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

__all__ = ["AnalysisUnavailable", "z3", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'plr[analyze]'"  # (messages say it as ``extras.install_hint`` does)


class AnalysisUnavailable(Exception):
    """z3-solver is not installed: the analysis commands cannot give exact answers."""


def z3(command: str = "plr diff") -> ModuleType:
    """The z3 module, or AnalysisUnavailable naming the extra to install."""
    try:
        import z3 as module
    except ImportError:
        from ..extras import install_hint

        raise AnalysisUnavailable(f"{command} needs the analyze extra: {install_hint('analyze')}") from None
    return module


def check(solver: Any) -> str:
    """``sat``, ``unsat`` or ``unknown`` as text (z3's result objects compare awkwardly)."""
    return str(solver.check())
