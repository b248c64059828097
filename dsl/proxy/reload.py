"""Loading the policy file, and hot reload (``--watch``).

``load_policy_file`` accepts a compiled ``.json`` policy or ``.plr`` sources and raises
``PlrError`` on any failure. ``watch_policy`` follows the file with watchfiles; on each change
it loads the new policy completely (compile, validate, prepare) in a worker thread and only
then swaps it into the engine with ``Engine.replace_policy`` (one assignment, so a concurrent
decision sees either the old or the new policy, never a mix; limit counters are kept). A broken
file leaves the old policy in force and the error is reported.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..errors import PlrError

__all__ = ["LoadedPolicy", "load_policy_file", "watch_policy"]


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Any  # dsl.policy.Policy
    sha256: str
    path: str


def load_policy_file(path: str | os.PathLike[str]) -> LoadedPolicy:
    """A ``.json`` policy through the loader, anything else compiled as ``.plr``; PlrError on failure."""
    p = str(path)
    if not os.path.exists(p):
        raise PlrError.at("no such file", p)
    try:
        if os.path.isdir(p) or not p.endswith(".json"):
            from ..compiler import compile_files

            paths = sorted(str(x) for x in Path(p).rglob("*.plr")) if os.path.isdir(p) else [p]
            if not paths:
                raise PlrError.at("no .plr files in this directory", p)
            policy = compile_files(paths)
        else:
            from ..policy import load_policy

            policy = load_policy(p)
    except PlrError:
        raise
    except RecursionError:
        raise PlrError.at("policy is nested too deeply", p) from None
    except (OSError, UnicodeDecodeError) as e:
        raise PlrError.at(f"cannot read the policy: {e}", p) from None
    text = policy.to_json()
    return LoadedPolicy(policy, hashlib.sha256(text.encode()).hexdigest(), p)


async def watch_policy(
    path: str,
    apply: Callable[[LoadedPolicy], None],
    report: Callable[[str], None],
    *,
    debounce_ms: int = 50,
    stop_event: anyio.Event | None = None,
) -> None:
    """Reload ``path`` on every change until cancelled; ``apply`` must swap atomically or raise."""
    from watchfiles import awatch

    target = os.path.abspath(path)
    watch_dir = target if os.path.isdir(target) else os.path.dirname(target)

    def relevant(_change: Any, changed: str) -> bool:
        changed = os.path.abspath(changed)
        if changed == target:
            return True
        # a .plr policy may import sibling files: any .plr change recompiles it
        return changed.endswith(".plr") and not target.endswith(".json")

    async for _changes in awatch(
        watch_dir,
        watch_filter=relevant,
        debounce=debounce_ms,
        step=25,
        stop_event=stop_event,
        recursive=os.path.isdir(target),
    ):
        try:
            loaded = await anyio.to_thread.run_sync(load_policy_file, path)
            apply(loaded)
        except PlrError as e:
            report(f"plr proxy: policy reload failed, keeping the previous policy:\n{e}")
        except Exception as e:  # noqa: BLE001 - never let a reload crash the proxy
            report(f"plr proxy: policy reload failed, keeping the previous policy: {type(e).__name__}: {e}")
        else:
            report(f"plr proxy: reloaded policy {path} (sha256 {loaded.sha256[:12]})")
