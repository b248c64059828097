"""The committed catalogues: each read live (pinned package, version, date), reproduced exactly
from its JSON, usable with every rule pack, and small enough for the wheel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl import catalog, harvest
from dsl.compiler import compile_source
from tests.conftest import ROOT

STDLIB = ROOT / "stdlib_rules"
CATALOGUES = STDLIB / "catalogues"
DOCS = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(CATALOGUES.glob("server-*.json"))}
AVAILABLE = {stem: d for stem, d in DOCS.items() if d["status"] == "ok"}
GENERATED = sorted(p for p in STDLIB.glob("server-*.plr") if catalog.is_generated(p))
SOURCES = {s.name: s for s in harvest.load_sources(CATALOGUES / "sources.toml")}
# the wheel ships this data (zip-deflated): budgets for it on disk and in the wheel
DATA_BUDGET_BYTES = 4_000_000
WHEEL_BUDGET_BYTES = 600_000


def test_at_least_100_servers_and_1000_tools_each_read_live():
    assert len(AVAILABLE) >= 100, f"{len(AVAILABLE)} servers listed their tools"
    assert sum(len(d["tools"]) for d in AVAILABLE.values()) >= 1000


def test_every_source_has_its_record_and_every_record_its_source():
    assert {f"server-{n}" for n in SOURCES} == set(DOCS)
    for stem, doc in DOCS.items():
        src = SOURCES[doc["name"]]
        assert (doc["package"], doc["version"], doc["registry"]) == (src.package, src.version, src.registry), stem
        assert doc["harvested"][:2] == "20" and doc["format"] == harvest.CATALOGUE_FORMAT
        if doc["status"] != "ok":
            assert doc["reason"] and "tools" not in doc, stem  # why, and nothing invented


def test_the_committed_files_are_exactly_what_finish_makes_of_the_json(tmp_path: Path):
    """Classes re-derived by the reviewed rules, one class per name, the generated .plr: a hand
    edit of a generated file or of a class in the JSON fails here."""
    out = tmp_path / "stdlib"
    (out / "catalogues").mkdir(parents=True)
    for p in CATALOGUES.glob("server-*.json"):
        (out / "catalogues" / p.name).write_bytes(p.read_bytes())
    for p in STDLIB.glob("server-*.plr"):
        if not catalog.is_generated(p):
            (out / p.name).write_bytes(p.read_bytes())
    harvest.finish(out)
    for p in CATALOGUES.glob("server-*.json"):
        assert (out / "catalogues" / p.name).read_text() == p.read_text(), p.name
    assert sorted(p.name for p in out.glob("server-*.plr") if catalog.is_generated(p)) == [p.name for p in GENERATED]
    for p in GENERATED:
        assert (out / p.name).read_text() == p.read_text(), p.name


def test_every_class_not_from_annotations_is_marked_inferred():
    for stem, doc in AVAILABLE.items():
        for t in doc["tools"]:
            assert ("inferred" in t) != ("from" in t), (stem, t["name"])
            if "from" in t and t["from"] != "hand-reviewed catalogue":
                assert t.get("annotations"), (stem, t["name"])  # `from` means the server said so
        if catalog.is_generated(STDLIB / f"{stem}.plr"):
            text = (STDLIB / f"{stem}.plr").read_text()
            assert text.count("# inferred") == sum("inferred" in t for t in doc["tools"]), stem


def test_no_guessed_read_whose_description_mentions_writing_or_deleting():
    from dsl.classify import _MENTIONS_DELETE, _MENTIONS_WRITE

    for stem, doc in AVAILABLE.items():
        for t in doc["tools"]:
            if t["risk"] == "read" and "inferred" in t:
                desc = t.get("description", "")
                assert not _MENTIONS_DELETE.search(desc) and not _MENTIONS_WRITE.search(desc), (stem, t["name"], desc)


def test_hand_reviewed_catalogues_name_the_tools_the_live_server_lists():
    for name, src in SOURCES.items():
        if src.plr == "hand" and AVAILABLE.get(f"server-{name}"):
            info = next(c for c in catalog.stdlib_catalogues() if c.module == f"stdlib/server-{name}")
            assert sorted(t for t, _ in info.tools) == sorted(t["name"] for t in AVAILABLE[f"server-{name}"]["tools"]), name


def test_the_catalogue_data_stays_small():
    import zlib

    files = [*CATALOGUES.iterdir(), *GENERATED]
    size = sum(p.stat().st_size for p in files)
    assert size <= DATA_BUDGET_BYTES, f"{size} bytes of catalogue data (budget {DATA_BUDGET_BYTES})"
    in_wheel = sum(len(zlib.compress(p.read_bytes(), 6)) for p in files)  # a wheel deflates each file
    assert in_wheel <= WHEEL_BUDGET_BYTES, f"{in_wheel} bytes in the wheel (budget {WHEEL_BUDGET_BYTES})"


@pytest.mark.parametrize("pack", ["baseline", "read_only", "strict"])
def test_the_rule_packs_apply_to_every_generated_catalogue(pack: str):
    for p in GENERATED:
        policy = compile_source(f'import "stdlib/{p.stem}"\nimport "stdlib/{pack}"\n', f"{p.stem}.plr")
        doc = AVAILABLE[p.stem]
        reads = {t["name"] for t in doc["tools"] if t["risk"] == "read"}
        if pack == "read_only":
            assert set(policy.tools) <= reads, p.stem  # nothing but reads is callable
        elif pack == "baseline":
            for t in doc["tools"]:
                if t["risk"] == "destructive":
                    assert policy.tools[t["name"]].action == "require_approval", (p.stem, t["name"])


def test_plr_init_works_for_generated_catalogues_and_their_starters_pass(tmp_path: Path):
    from tests.conftest import run_plr

    picked = GENERATED[:: max(1, len(GENERATED) // 10)]  # a spread of them: one `plr test` for all
    for p in picked:
        name = p.stem.removeprefix("server-")
        proc = run_plr("init", name, "--dir", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr_text
    proc = run_plr("test", str(tmp_path))
    assert proc.returncode == 0, proc.stdout_text + proc.stderr_text
    # a test per class the catalogue has, and the unknown tool's
    from dsl.catalog import find

    expected = sum(1 + len({risk for _, risk in find(p.stem.removeprefix("server-"))[0].tools}) for p in picked)
    assert f"{expected} passed" in proc.stdout_text, proc.stdout_text
