"""How to install an optional extra, said the way that works for this installation.

The extras (``analyze``, ``lsp``, ``fleet``, ``metrics``, ``intercept``) are named in messages
when a command needs one. ``pip install 'plr[analyze]'`` fetches plr from an index; plr installed
from a checkout (``pip install .``, the README's way) has no such index entry, and the working
command is ``pip install '/path/to/checkout[analyze]'``. pip records where an installation came
from (PEP 610's ``direct_url.json``), so the hint names that folder when there is one.
"""

from __future__ import annotations

import json
import shlex
from functools import lru_cache
from urllib.parse import unquote, urlsplit

__all__ = ["install_hint"]


@lru_cache(maxsize=None)
def _checkout() -> str | None:
    """The local folder plr was installed from (editable or not), or None."""
    from importlib import metadata

    try:
        text = metadata.distribution("plr").read_text("direct_url.json")
        info = json.loads(text) if text else None
    except (metadata.PackageNotFoundError, ValueError, OSError):
        return None
    if not isinstance(info, dict) or "dir_info" not in info or not isinstance(info.get("url"), str):
        return None
    parts = urlsplit(info["url"])
    return unquote(parts.path) if parts.scheme == "file" and parts.path else None


def install_hint(extra: str) -> str:
    """``pip install 'plr[EXTRA]'``, or from the checkout plr was installed from."""
    where = _checkout()
    return f"pip install {shlex.quote(f'{where}[{extra}]')}" if where else f"pip install 'plr[{extra}]'"
