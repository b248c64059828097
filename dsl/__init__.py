"""plr: policy-as-code for AI agents' MCP tool calls.

Public API (imported lazily so ``plr --help`` stays fast)::

    policy = dsl.compile_files(["policy.plr"])    # -> dsl.Policy; raises dsl.PlrError
    policy = dsl.load_policy("policy.json")       # path, JSON text or dict
    engine = dsl.Engine(policy)
    engine.decide("cancel-task", {"task_id": "t1"}, session="s1")
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: `plr --help` pays for every module
if TYPE_CHECKING:
    from typing import Any

    from .errors import Diagnostic, PlrError

__all__ = [
    "Diagnostic",
    "PlrError",
    "Policy",
    "load_policy",
    "compile_files",
    "compile_source",
    "Engine",
    "Decision",
]
__version__ = "0.1.0"

_LAZY = {
    "Diagnostic": ("errors", "Diagnostic"),
    "PlrError": ("errors", "PlrError"),
    "Policy": ("policy", "Policy"),
    "load_policy": ("policy", "load_policy"),
    "compile_files": ("compiler", "compile_files"),
    "compile_source": ("compiler", "compile_source"),
    "Engine": ("engine", "Engine"),
    "Decision": ("engine", "Decision"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        mod, attr = _LAZY[name]
        value = getattr(import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dsl' has no attribute {name!r}")
