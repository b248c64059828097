"""Where the grammar and the stdlib rules live, installed or in a checkout.

In a wheel they are package data under ``dsl/_data`` (see pyproject's force-include); in a
source checkout or an editable install they sit at the repository's top level.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def _data_dir(name: str) -> Path:
    packaged = resources.files("dsl") / "_data" / name
    if packaged.is_dir():
        return Path(str(packaged))
    return _CHECKOUT / name


@lru_cache(maxsize=1)
def grammar_text() -> str:
    return (_data_dir("grammar") / "plr.lark").read_text(encoding="utf-8")


def grammar_path() -> Path:
    return _data_dir("grammar") / "plr.lark"


def stdlib_dir() -> Path:
    return _data_dir("stdlib_rules")
