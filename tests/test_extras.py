"""Optional extras are named the way that installs them: `pip install 'plr[analyze]'` from an
index, or from the checkout plr was installed from (pip's PEP 610 record), where the README's
`pip install .` leaves no index entry to install an extra from. And `plr import intercept`
without PyYAML says which extra it needs instead of an internal error."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dsl import extras
from tests.conftest import ROOT


class _Dist:
    def __init__(self, direct_url: dict | None) -> None:
        self.text = None if direct_url is None else json.dumps(direct_url)

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return self.text


@pytest.mark.parametrize(
    "direct_url, hint",
    [
        ({"url": "file:///home/me/src/plr", "dir_info": {"editable": True}}, "pip install '/home/me/src/plr[analyze]'"),
        ({"url": "file:///home/me/my%20src/plr", "dir_info": {}}, "pip install '/home/me/my src/plr[analyze]'"),
        (None, "pip install 'plr[analyze]'"),  # from an index: no record
        ({"url": "https://files.example/plr-0.1.0.whl", "archive_info": {}}, "pip install 'plr[analyze]'"),
    ],
)
def test_the_hint_names_the_checkout_plr_was_installed_from(monkeypatch: pytest.MonkeyPatch, direct_url: dict | None, hint: str) -> None:
    from importlib import metadata

    monkeypatch.setattr(metadata, "distribution", lambda name: _Dist(direct_url))
    extras._checkout.cache_clear()
    try:
        assert extras.install_hint("analyze") == hint
    finally:
        extras._checkout.cache_clear()


def test_every_extra_a_message_names_is_declared() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    import re

    named = {m for path in (ROOT / "dsl").rglob("*.py") for m in re.findall(r"install_hint\([\"']([a-z]+)[\"']\)", path.read_text(encoding="utf-8"))}
    assert named and named <= set(declared), named - set(declared)
    assert any(d.lower().startswith("pyyaml") for d in declared["intercept"])


def test_import_intercept_without_pyyaml_names_its_extra(tmp_path: Path) -> None:
    policy = tmp_path / "ic.yaml"
    policy.write_text("version: '1'\nversion_tag: t\ndefault: allow\ntools: {}\n", encoding="utf-8")
    code = "import sys; sys.modules['yaml'] = None; from dsl.cli import main; sys.argv = ['plr'] + sys.argv[1:]; main()"
    proc = subprocess.run([sys.executable, "-c", code, "import", "intercept", str(policy)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "needs PyYAML (the intercept extra): pip install" in proc.stderr and "[intercept]" in proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
