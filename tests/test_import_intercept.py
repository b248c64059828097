"""`plr import intercept`: every fixture of the peer imports and compiles, the imported policy
decides as Intercept does (its engine and handler semantics: per-store counters, calendar
windows, `lt N` allows N-1, first failing rule denies), and nothing is dropped silently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dsl.compiler import compile_source
from dsl.engine import Engine
from dsl.importers.intercept import import_intercept
from dsl.importers.policylayer import import_policylayer
from dsl.tester import VirtualClock

DATA = Path(__file__).parent / "data" / "intercept"
GOOD = sorted(p for p in DATA.glob("*.yaml") if not p.name.startswith("invalid"))


def imported(name: str) -> tuple[Engine, VirtualClock, str]:
    result = import_intercept((DATA / name).read_text(), Path(name).stem)
    clock = VirtualClock()
    return Engine(compile_source(result.text), clock=clock), clock, result.text


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_every_fixture_imports_and_compiles_without_losses(path: Path) -> None:
    result = import_intercept(path.read_text(), path.stem)
    compile_source(result.text)  # raises on any error
    assert result.warnings == []


def test_invalid_fixtures_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="<input>:7:20: error: not valid YAML"):
        import_intercept((DATA / "invalid_policy.yaml").read_text())
    with pytest.raises(ValueError, match='version "2"'):
        import_intercept((DATA / "invalid_schema.yaml").read_text())


def test_every_construct_not_carried_over_is_a_warning_and_a_comment() -> None:
    # what Intercept refuses to start with (unknown operator, `in` without a list, ...) is now
    # refused by the import too: what remains to warn about is Intercept-valid
    doc = yaml.safe_load((DATA / "valid_policy.yaml").read_text())
    doc["mystery"] = True
    doc["tools"]["other"] = {"rules": [{"name": "o", "conditions": [{"path": "args.a", "op": "exists", "value": True}],
                                        "state": {"counter": "n", "window": "day"}}]}  # fmt: skip
    doc["tools"]["some_tool"] = {"rules": [
        {"name": "reads another counter", "conditions": [{"path": "state.other.n", "op": "lt", "value": 3}]},
        {"name": "counts only", "conditions": [{"path": "args.a", "op": "exists", "value": True}],
         "state": {"counter": "n", "window": "day"}},
    ]}  # fmt: skip
    result = import_intercept(yaml.safe_dump(doc))
    compile_source(result.text)
    text = "\n".join(result.warnings)
    for what in ("mystery", "reads a counter", "never limits"):
        assert what in text, what
    for w in result.warnings:
        assert f"# not carried over ({w.split(':', 1)[0]})" in result.text
    # every rule of the fixture is either mapped or warned about: one outcome per rule
    rules = doc["tools"]["some_tool"]["rules"]
    for i in range(len(rules)):
        assert f"rules[{i}]" in text or rules[i].get("name", "") in result.text


def test_conditions_deny_as_intercept_does() -> None:
    e, _, _ = imported("valid_policy.yaml")
    assert e.decide("create_charge", {"amount": 50000, "currency": "usd"}).effect == "allow"
    d = e.decide("create_charge", {"amount": 50001, "currency": "usd"})
    assert (d.effect, d.reason) == ("deny", "Single charge cannot exceed $500.00")
    assert e.decide("create_charge", {"amount": 100, "currency": "gbp"}).reason == "Only USD and EUR charges are permitted"
    assert e.decide("create_charge", {"currency": "usd"}).effect == "deny"  # a missing path fails
    assert e.decide("delete_customer").reason == "Customer deletion is not permitted via AI agents"
    assert e.decide("unlisted_tool").effect == "allow"  # default allow


def test_lt_n_allows_n_minus_one_and_counters_are_per_store() -> None:
    e, clock, _ = imported("valid_policy.yaml")
    answers = [e.decide("create_refund", {"amount": 1}, session=f"s{i}").effect for i in range(10)]
    assert answers == ["allow"] * 9 + ["deny"]  # "Daily refund limit (10)" allows 9, across sessions
    clock.advance(86400)  # the next UTC day
    assert e.decide("create_refund", {"amount": 1}).effect == "allow"


def test_rate_limit_shorthand_allows_exactly_n() -> None:
    e, _, _ = imported("valid_policy.yaml")
    assert [e.decide("create_issue").effect for _ in range(6)] == ["allow"] * 5 + ["deny"]


def test_increment_from_is_a_spend_cap() -> None:
    e, _, _ = imported("valid_policy.yaml")
    for _ in range(19):
        assert e.decide("create_charge", {"amount": 50000, "currency": "usd"}).effect == "allow"
    d = e.decide("create_charge", {"amount": 50000, "currency": "usd"})  # 1,000,000 > 999,999
    assert d.code == "rate_limited" and "49999 left" in d.reason
    assert e.decide("create_charge", {"amount": 49999, "currency": "usd"}).effect == "allow"


def test_wildcard_counter_is_shared_by_every_tool_and_resets_at_the_minute() -> None:
    e, clock, _ = imported("valid_policy.yaml")
    clock.advance(30)
    for i in range(59):
        assert e.decide(f"tool_{i}").effect == "allow"
    d = e.decide("another")
    assert d.code == "rate_limited" and d.retry_after == pytest.approx(30)
    clock.advance(30)
    assert e.decide("another").effect == "allow"


def test_default_deny_allows_listed_tools_only() -> None:
    e, _, _ = imported("default_deny_policy.yaml")
    assert e.decide("read_file").effect == "allow"
    assert (e.decide("write_file").effect, e.decide("write_file").code) == ("deny", "default")
    assert e.decide("delete_customer").reason == "Customer deletion is not permitted"


def test_a_failed_call_is_given_back_as_intercept_rolls_back() -> None:
    e, _, _ = imported("default_deny_policy.yaml")
    first = [e.decide("create_issue") for _ in range(5)]
    assert e.decide("create_issue").effect == "deny"
    assert e.refund(first[0])
    assert e.decide("create_issue").effect == "allow"


def test_policylayer_json_import_is_decompile() -> None:
    policy = compile_source('default deny\nallow tool "a"\nlimit tool "a" to 3 per minute\n')
    result = import_policylayer(policy.to_json(source=False))
    assert compile_source(result.text, source=False).to_dict() == policy.strip_source().to_dict()


def test_the_command_writes_the_policy_and_reports_warnings(tmp_path: Path) -> None:
    src = tmp_path / "p.yaml"
    src.write_text('version: "1"\nextra: 1\ntools:\n  t:\n    rules: []\n')
    out = tmp_path / "p.plr"
    r = subprocess.run(
        [sys.executable, "-m", "dsl.cli", "import", "intercept", str(src), "-o", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "not carried over: extra" in r.stderr and "# not carried over (extra)" in out.read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "dsl.cli", "import", "intercept", str(DATA / "invalid_schema.yaml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and 'version "2"' in bad.stderr


def test_a_repeated_key_is_refused_not_the_last_kept() -> None:
    """A later `delete_repo: {rules: []}` would undo the deny above it without a word."""
    from dsl.importers.intercept import ImportError_, import_intercept

    text = 'version: "1"\ndefault: allow\ntools:\n  delete_repo:\n    rules: [{name: no deletes, action: deny}]\n  delete_repo:\n    rules: []\n'
    with pytest.raises(ImportError_, match=r'<input>:6:3: error: the key "delete_repo" is written twice'):
        import_intercept(text)
    as_json = '{"version": "1", "tools": {"x": {"rules": []}, "x": {"rules": []}}}'
    with pytest.raises(ImportError_, match="written twice"):
        import_intercept(as_json)


@pytest.mark.parametrize("doc", ['tools:\n  "delete_*":\n    rules: [{name: n, action: deny}]\n', 'hide: ["exec*"]\n'])
def test_a_wildcard_tool_name_is_refused_at_the_import(doc: str) -> None:
    """Intercept matches names exactly: such an entry governs no real tool, there or here."""
    from dsl.importers.intercept import ImportError_, import_intercept

    with pytest.raises(ImportError_, match=r"has `\*` or `\?`"):
        import_intercept('version: "1"\ndefault: allow\n' + doc)
