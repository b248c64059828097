"""PolicyLayer v1 JSON → readable .plr (``plr import policylayer``): ``dsl.decompile``, whose
``# note:`` comments name what plr writes differently; they are returned as warnings too."""

from __future__ import annotations

from ..decompile import decompile
from ..policy import load_policy
from .intercept import ImportResult

__all__ = ["import_policylayer"]


def import_policylayer(raw: str | bytes, name: str = "<policy>") -> ImportResult:
    """The policy as .plr text; PlrError (located) if it is not a PolicyLayer v1 / plr policy."""
    text = decompile(load_policy(raw, name=name))
    notes = [line.split("# note:", 1)[1].strip() for line in text.splitlines() if "# note:" in line]
    return ImportResult(text, notes)
