"""Round-trip properties on generated programs (``tests/strategies.py``).

* compiling never raises anything but ``PlrError``;
* ``load_policy(p.to_json()) == p`` (with and without source locations);
* ``plr fmt`` keeps the compiled policy and is idempotent (when ``dsl/format.py`` exists);
* ``decompile`` then compile is a fixed point (when ``dsl/decompile.py`` exists).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
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


def test_format_keeps_policy_and_is_idempotent() -> None:
    fmt = pytest.importorskip("dsl.format")

    @SETTINGS
    @given(programs())
    def check(src: str) -> None:
        p = compiled(src, source=False)
        assume(p is not None)
        once = fmt.format_source(src, "p.plr")
        again = compiled(once, source=False)
        assert again is not None, f"formatted text does not compile:\n{once}"
        assert again.to_json() == p.to_json(), (
            f"formatting changed the policy\n--- source ---\n{src}\n--- formatted ---\n{once}"
        )
        assert fmt.format_source(once, "p.plr") == once, (
            f"not idempotent\n--- source ---\n{src}\n--- formatted ---\n{once}"
        )

    check()


def test_decompile_then_compile_is_a_fixed_point() -> None:
    dec = pytest.importorskip("dsl.decompile")

    @SETTINGS
    @given(programs())
    def check(src: str) -> None:
        p = compiled(src)
        assume(p is not None)
        text = dec.decompile(p)
        again = compiled(text, source=False)
        assert again is not None, f"decompiled text does not compile:\n{text}"
        assert again.to_json() == p.to_json(source=False), (
            f"decompile -> compile changed the policy\n--- source ---\n{src}\n--- decompiled ---\n{text}"
        )

    check()
