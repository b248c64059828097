"""pytest plugin (entry point ``pytest11``): ``pytest --plr`` collects .plr test blocks."""

from __future__ import annotations

from typing import Any


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("plr")
    group.addoption(
        "--plr",
        action="store_true",
        default=False,
        help="collect the test blocks of .plr files as pytest items (run against the compiled policy)",
    )
