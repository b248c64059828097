"""The policy files of a `plr test` or `plr watch` run, each checked by ``read_policy_bytes``
(the reader `plr compile` and the proxy use) before anything else opens it.

Finding the roots of a run reads every file found (which imports which, which has tests); a
FIFO or device under the folder would make that read wait for ever, and a huge file would be
read whole. So each file found is first read the safe way: a regular file of at most
``MAX_POLICY_BYTES``; one that is not gets the error `plr compile` gives it, and the run goes
on without it.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import tester
from .errors import Diagnostic

__all__ = ["readable_policy_files"]


def readable_policy_files(paths: Iterable[str]) -> tuple[list[str], list[Diagnostic]]:
    """(the `.plr` files under ``paths`` that can be read, an error for each that cannot)."""
    from .reading import read_policy_bytes

    ok: list[str] = []
    refused: list[Diagnostic] = []
    for f in tester.discover(paths):
        try:
            read_policy_bytes(f)
        except (OSError, ValueError) as e:
            refused.append(Diagnostic("error", f"cannot read {f}: {e}", f))
        else:
            ok.append(f)
    return ok, refused
