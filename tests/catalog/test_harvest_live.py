"""The harvest reproduces the committed catalogues: three real, small npm servers are installed
at their pinned versions, started in a throwaway HOME and read live by `plr catalog harvest`;
what it writes equals what is committed (the date aside). The other catalogues are recorded
output, pinned by tests/catalog/test_stdlib_catalogues.py.

Packages are cached like the proxy tests' (``PLR_TEST_NPM_CACHE``'s folder), so a second run
installs nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from dsl import catalog
from tests.conftest import ROOT, run_plr

STDLIB = ROOT / "stdlib_rules"
CACHE = Path(os.environ.get("PLR_TEST_HARVEST_CACHE", Path.home() / ".cache" / "plr-tests" / "harvest"))
SERVERS = ["memory", "sequential-thinking", "hello-world"]  # small, quick, no account needed


def without_date(path: Path) -> dict:
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.pop("harvested")
    return doc


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_the_harvest_reproduces_three_committed_catalogues(tmp_path: Path):
    if not shutil.which("npm"):
        pytest.fail("npm is not installed: .ci/run installs it (apt-get install nodejs npm)")
    out = tmp_path / "stdlib"
    out.mkdir()
    # the rest of the stdlib as committed, as when harvesting into stdlib_rules: hand-reviewed
    # catalogues decide their classes, and a name shared with another catalogue gets one class
    for p in STDLIB.glob("server-*.plr"):
        if not catalog.is_generated(p):
            shutil.copy(p, out / p.name)
    (out / "catalogues").mkdir()
    for p in (STDLIB / "catalogues").glob("server-*.json"):
        if p.stem.removeprefix("server-") not in SERVERS:
            shutil.copy(p, out / "catalogues" / p.name)
    args = ["catalog", "harvest", "--out", str(out), "--cache", str(CACHE), "--jobs", "3", "--timeout", "90"]
    for name in SERVERS:
        args += ["--only", name]
    proc = run_plr(*args, timeout=400)
    assert proc.returncode == 0, proc.stdout_text + proc.stderr_text
    assert "3 of 3 servers listed their tools" in proc.stdout_text, proc.stdout_text
    for name in SERVERS:
        committed = STDLIB / "catalogues" / f"server-{name}.json"
        assert without_date(out / "catalogues" / committed.name) == without_date(committed), name
        plr = STDLIB / f"server-{name}.plr"
        if catalog.is_generated(plr):
            harvested = (out / plr.name).read_text().splitlines()
            assert [ln for ln in harvested if "tools/list on" not in ln] == [
                ln for ln in plr.read_text().splitlines() if "tools/list on" not in ln
            ]
