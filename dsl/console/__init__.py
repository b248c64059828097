"""`plr console`: the humans in the loop answer approval requests and read the audit log in a
browser (docs/console.md).

- ``sources``: the approval queue (SQLite or a fleet's Redis, opened as `plr approvals` opens
  it, never created), the audit logs (read incrementally) and the policy; all I/O is here;
- ``counts``: the audit page's chart and counts (pure; its filters are ``dsl.audit_filters``,
  shared with `plr audit`);
- ``render``: the HTML (pure, everything escaped);
- ``security``: sign-in with the proxy's token file, CSRF tokens, Host and Origin checks;
- ``app``: the starlette application (pages, fragments, server-sent events, decisions);
- ``static/``: one small script and one stylesheet, shipped in the wheel.
"""

from __future__ import annotations

__all__ = ["ConsoleConfig", "create_app"]


def __getattr__(name: str) -> object:  # starlette is imported only when the console starts
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
