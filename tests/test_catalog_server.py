"""`plr catalog --from-server` against servers that misbehave: one clear line, never a traceback
or an endless wait."""

from __future__ import annotations

import sys

import pytest

from dsl import catalog
from tests.conftest import run_plr

pytest.importorskip("mcp")


def test_a_server_that_prints_garbage_gets_one_line_not_a_traceback() -> None:
    proc = run_plr("catalog", "--from-server", "foo", "--", sys.executable, "-c", "print('garbage')")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr_text and "could not read tools/list" in proc.stderr_text
    assert all(len(line) <= 400 for line in proc.stderr_text.splitlines())


def test_a_server_that_never_answers_is_given_up_with_a_clear_error() -> None:
    with pytest.raises(TimeoutError, match="no tools/list answer within 1 s"):
        catalog.tools_from_server([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
