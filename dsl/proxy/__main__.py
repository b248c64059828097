"""``python -m dsl.proxy ...`` == ``plr proxy ...`` (``approvals`` and ``audit`` too)."""

from __future__ import annotations

import sys


def main() -> None:
    from ..cli import main as plr_main

    argv = sys.argv[1:]
    if not argv or argv[0] not in ("proxy", "approvals", "audit"):
        argv = ["proxy", *argv]
    plr_main(argv)


if __name__ == "__main__":
    main()
