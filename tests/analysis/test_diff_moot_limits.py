"""A limit dropped or loosened on a tool the new policy never allows is no loosening (a new
user's walkthrough: `plr diff --fail-on loosen` failed a change that only tightened, because the
`cancel-task` limit went with the rule that had let it run)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from dsl.cli import cli

OLD = """server "w" {
    tool "get-task" read
    tool "cancel-task" destructive
}
default deny
allow read tools
deny tool "cancel-task" unless approved
limit tool "cancel-task" to 10 per minute per session
limit tool "get-task" to 100 per minute per session
"""


def _diff(tmp_path: Path, new: str, *extra: str) -> tuple[int, str]:
    (tmp_path / "old.plr").write_text(OLD, encoding="utf-8")
    (tmp_path / "new.plr").write_text(new, encoding="utf-8")
    r = CliRunner().invoke(cli, ["diff", str(tmp_path / "old.plr"), str(tmp_path / "new.plr"), *extra])
    return r.exit_code, r.output


def test_a_limit_dropped_with_the_rule_that_let_its_tool_run_is_moot(tmp_path: Path) -> None:
    new = OLD.replace('deny tool "cancel-task" unless approved\n', "").replace('limit tool "cancel-task" to 10 per minute per session\n', "")
    code, out = _diff(tmp_path, new, "--fail-on", "loosen")
    assert code == 0, out
    assert "moot: limit on `cancel-task`" in out and "never allowed by the new policy" in out
    code, out = _diff(tmp_path, new, "--format", "json")
    (lim,) = json.loads(out)["limits"]
    assert (lim["tool"], lim["kind"], lim["new"]) == ("cancel-task", "moot", None)


def test_a_limit_dropped_on_a_tool_still_allowed_is_a_loosening(tmp_path: Path) -> None:
    new = OLD.replace('limit tool "get-task" to 100 per minute per session\n', "")
    code, out = _diff(tmp_path, new, "--fail-on", "loosen")
    assert code == 1 and "loosen: limit on `get-task`" in out, out
    raised = OLD.replace("to 10 per minute", "to 20 per minute")  # cancel-task still runs when approved
    code, out = _diff(tmp_path, raised, "--fail-on", "loosen")
    assert code == 1 and "loosen: limit on `cancel-task`" in out, out
