"""The suite's property tests draw the same examples however the suite is run (README, "Testing"):
alone, in part, or on xdist's workers, after whatever tests a process ran before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, nested_pytest_env

PROBE = '''
import hashlib, os
from hypothesis import given, settings, strategies as st

seen = []

@settings(max_examples=300)
@given(st.text(), st.integers())
def test_probe(t, i):
    seen.append(repr((t, i)))

def test_report():
    with open(os.environ["PROBE_OUT"], "a") as f:
        f.write(hashlib.sha256("".join(seen).encode()).hexdigest() + "\\n")
'''

# a test module that imports plr modules the probe's process would not have imported otherwise
BEFORE = "import dsl.compiler, dsl.engine, dsl.format\n\ndef test_before():\n    assert dsl.compiler\n"


@pytest.mark.slow
@pytest.mark.parametrize("shared_conftest", [True, False])
def test_examples_do_not_depend_on_the_tests_run_before(tmp_path: Path, shared_conftest: bool) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "test_a_before.py").write_text(BEFORE)
    # the suite's conftest (its hypothesis profile and its fixtures), or only the profile: without
    # the fixture that imports every plr module first, the two runs draw different examples
    profile = 'from hypothesis import settings\nsettings.register_profile("r", derandomize=True)\nsettings.load_profile("r")\n'
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.conftest"]\n' if shared_conftest else profile)
    out = tmp_path / "hashes"
    env = nested_pytest_env(PYTHONPATH=str(ROOT), PROBE_OUT=str(out))
    for name in ("test_probe.py", "test_a_before.py test_probe.py"):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *name.split()],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    alone, after = out.read_text().split()
    # (the run without the fixture is the control: it shows the examples would move, so this test
    # can fail; should Hypothesis stop reading local modules' constants, it fails to say the fixture
    # can go)
    assert (alone == after) is shared_conftest
