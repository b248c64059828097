"""``python -m dsl.proxy ...`` == ``plr proxy ...`` (also works before cli.py registers the command)."""

from __future__ import annotations

import sys


def main() -> None:
    from ..cli import cli
    from ..cli import main as plr_main
    from ..cli_proxy import register

    register(cli)
    argv = sys.argv[1:]
    if not argv or argv[0] not in ("proxy", "approvals", "audit"):
        argv = ["proxy", *argv]
    plr_main(argv)


if __name__ == "__main__":
    main()
