"""Round-trip properties on generated programs (``tests/strategies.py``).

* compiling never raises anything but ``PlrError``;
* ``load_policy(p.to_json()) == p`` (with and without source locations);

fmt and decompile on the same generated programs are checked, with their stronger assertions
(comments kept, canonical output, no approximation notes), in test_format.py and
test_decompile.py.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, assume, given, settings

from dsl.compiler import compile_source
from dsl.errors import PlrError
from dsl.policy import load_policy
from tests.strategies import programs

EXAMPLES = int(os.environ.get("PLR_ROUNDTRIP_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def compiled(src: str, **kw: Any) -> Any:
    """The compiled policy, or None for a program with errors (the generator keeps those rare)."""
    try:
        return compile_source(src, "p.plr", **kw)
    except PlrError:
        return None


def test_generated_programs_compile_or_raise_plr_error() -> None:
    outcome: Counter[str] = Counter()

    @SETTINGS
    @given(programs())
    def check(src: str) -> None:
        try:
            compile_source(src, "p.plr")
            outcome["ok"] += 1
        except PlrError:
            outcome["error"] += 1

    check()
    assert outcome["error"] <= 0.2 * sum(outcome.values()), outcome


@SETTINGS
@given(programs())
def test_load_dump_roundtrip(src: str) -> None:
    p = compiled(src)
    assume(p is not None)
    assert load_policy(p.to_json()) == p
    assert load_policy(p.to_json()).to_json() == p.to_json()
    bare = p.strip_source()
    assert load_policy(p.to_json(source=False)) == bare
    assert bare.to_json() == p.to_json(source=False)
