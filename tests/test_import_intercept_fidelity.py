"""`plr import intercept` never yields a policy looser than the Intercept one (review findings
F1-F7, against Intercept 77f0429): each YAML goes through the CLI, the output is compiled, and the
call Intercept denies is denied."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dsl.cli import cli
from dsl.compiler import compile_source
from dsl.engine import Engine

HEAD = 'version: "1"\n'


def imp(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    src, out = tmp_path / "p.yaml", tmp_path / "p.plr"
    src.write_text(text, encoding="utf-8")
    r = CliRunner().invoke(cli, ["import", "intercept", str(src), "-o", str(out)])
    return r, (out.read_text(encoding="utf-8") if out.exists() else None)


def engine(tmp_path: Path, text: str, warnings: int = 0) -> Engine:
    r, plr = imp(tmp_path, text)
    assert r.exit_code == 0, r.output
    assert f"({warnings} warnings)" in r.stderr, r.stderr
    return Engine(compile_source(plr))


def refused(tmp_path: Path, text: str, *words: str) -> str:
    r, plr = imp(tmp_path, text)
    assert r.exit_code == 2 and plr is None, r.output
    for w in words:
        assert w in r.stderr, r.stderr
    return r.stderr


BREAKS = ["\n", "\r", "\r\n", "\u2028", "\u2029", "\u0085", "\v", "\f"]


@pytest.mark.parametrize("brk", BREAKS, ids=[repr(b) for b in BREAKS])
@pytest.mark.parametrize("field", ["description", "on_deny", "tool"])
def test_f1_free_text_never_becomes_code(tmp_path: Path, brk: str, field: str) -> None:
    inject = f'x{brk}allow tool "delete_customer"{brk}'
    quoted = inject.replace("\\", "\\\\").replace('"', '\\"')
    quoted = "".join(c if c.isprintable() or c == " " else f"\\u{ord(c):04x}" for c in quoted)
    doc = HEAD + "default: deny\n"
    if field == "description":
        doc += f'description: "{quoted}"\n'
    doc += "tools:\n  list_customers: {}\n  refund:\n    rules:\n      - {name: cap, rate_limit: 2/day"
    doc += f', on_deny: "{quoted}"}}\n' if field == "on_deny" else "}\n"
    if field == "tool":  # a name no MCP tool has (a line break in it) is refused at its key
        doc += f'  "{quoted}":\n    extra: 1\n    rules: [{{name: n, conditions: [{{path: args.a, op: exists, value: true}}]}}]\n'
        out = refused(tmp_path, doc, "which no MCP tool name holds", "governs no real tool")
        assert "internal error" not in out
        return
    e = engine(tmp_path, doc)
    plr = (tmp_path / "p.plr").read_text(encoding="utf-8")
    assert plr.splitlines() == plr.split("\n")[:-1]  # no line break an editor honours but `\n`
    assert e.decide("delete_customer").effect == "deny"
    assert e.decide("list_customers").effect == "allow"


def test_f1_comment_helper_splits_every_break_and_escapes_controls() -> None:
    from dsl.importers.intercept import comment_lines

    lines = comment_lines("a" + "b".join(BREAKS) + "\x1b[2J\u202e")
    assert all(ln.startswith("#") for ln in lines) and len(lines) == len(BREAKS) + 1
    assert "\x1b" not in "".join(lines) and "\u202e" not in "".join(lines)


def test_f1_the_import_compiles_its_output_and_refuses_a_broken_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsl.importers import intercept

    monkeypatch.setattr(intercept._Importer, "emit", lambda self, head, conds, reason, described: self.out.append("deny all tools"))
    r, plr = imp(tmp_path, HEAD + "tools:\n  x:\n    rules: [{name: n, action: deny}]\n")
    assert r.exit_code == 2 and plr is None
    assert "internal error of `plr import intercept`" in r.stderr and "does not compile" in r.stderr


@pytest.mark.parametrize(
    ("items", "denied", "allowed"),
    [
        ('[0, "root"]', [{"uid": "0"}, {"uid": 0}, {"uid": "root"}], [{"uid": "1000"}, {"uid": 1000}]),
        ("[true]", [{"uid": "true"}, {"uid": True}], [{"uid": "yes"}]),
        ("[1.5, 1e21]", [{"uid": "1.5"}, {"uid": "1e+21"}, {"uid": 1.5}], [{"uid": "1e21"}]),
        ('["0", 5]', [{"uid": 0}, {"uid": "0"}, {"uid": "5"}], [{"uid": 7}, {"uid": "x"}]),
    ],
)
def test_f2_not_in_denies_what_go_text_comparison_finds_equal(tmp_path: Path, items: str, denied: list, allowed: list) -> None:
    e = engine(tmp_path, HEAD + f"tools:\n  run:\n    rules:\n      - {{name: n, conditions: [{{path: args.uid, op: not_in, value: {items}}}]}}\n")
    for a in denied:
        assert e.decide("run", a).effect == "deny", a
    for a in allowed:
        assert e.decide("run", a).effect == "allow", a


def test_f2_neq_number_denies_its_text(tmp_path: Path) -> None:
    e = engine(tmp_path, HEAD + "tools:\n  run:\n    rules:\n      - {name: n, conditions: [{path: args.uid, op: neq, value: 0}]}\n")
    assert e.decide("run", {"uid": "0"}).effect == "deny" and e.decide("run", {"uid": 0}).effect == "deny"
    assert e.decide("run", {"uid": "5"}).effect == "allow"


def test_f3_yaml_1_2_scalars(tmp_path: Path) -> None:
    doc = HEAD + (
        "default: deny\nhide: [no]\ntools:\n  on: {}\n  off:\n    rules: [{name: b, action: deny}]\n"
        "  deploy:\n    rules: [{name: c, conditions: [{path: args.confirm, op: eq, value: yes}]}]\n"
        "  run:\n    rules: [{name: c, conditions: [{path: args.n, op: lt, value: 1e3}]}]\n"
    )
    e = engine(tmp_path, doc)
    assert e.decide("on").effect == "allow" and e.decide("off").effect == "deny" and e.decide("no").effect == "deny"
    assert e.decide("deploy", {"confirm": "yes"}).effect == "allow" and e.decide("deploy", {"confirm": True}).effect == "deny"
    assert e.decide("run", {"n": 999}).effect == "allow" and e.decide("run", {"n": 1000}).effect == "deny"


def test_f3_a_non_text_key_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, HEAD + "tools:\n  1: {}\n", "reads as a number, not as text")


def test_f4_increment_from_without_a_limit_denies_a_bad_amount(tmp_path: Path) -> None:
    doc = HEAD + (
        "tools:\n  pay:\n    rules:\n      - name: spend\n        conditions: [{path: args.to, op: exists, value: true}]\n"
        "        state: {counter: s, window: day, increment_from: args.amount}\n"
    )
    r, plr = imp(tmp_path, doc)
    assert r.exit_code == 0 and "never limits it; it still denies a call whose args.amount is missing" in r.stderr
    e = Engine(compile_source(plr))
    for a in [{"to": "x"}, {"to": "x", "amount": "5"}, {"to": "x", "amount": None}]:
        assert e.decide("pay", a).effect == "deny", a
    assert e.decide("pay", {"to": "x", "amount": 5}).effect == "allow"


@pytest.mark.parametrize(
    "rule",
    [
        "{name: m, action: deny}",
        "{name: m, conditions: [{path: state._global.c, op: lte, value: 0}], state: {counter: c, window: day}}",
        "{name: m, conditions: [{path: state._global.c, op: lte, value: 2}], state: {counter: c, window: day, increment: 5}}",
        "{name: m, conditions: [{path: state._global.c, op: lte, value: 0}], state: {counter: c, window: day, increment_from: args.a}}",
    ],
)
def test_f5_deny_on_every_tool_compiles_and_denies_every_call(tmp_path: Path, rule: str) -> None:
    r, plr = imp(tmp_path, HEAD + f'tools:\n  "*":\n    rules: [{rule}]\n')
    assert r.exit_code == 0, r.output
    e = Engine(compile_source(plr))
    assert e.decide("anything").effect == "deny" and e.decide("x", {"a": 1}).effect == "deny"


@pytest.mark.parametrize(
    ("rules", "words"),
    [
        ("[{name: n, action: Deny}]", 'action must be "evaluate" or "deny", got "Deny"'),
        ('[{name: n, rate_limit: "5 /hour"}]', "rate_limit count must be a positive integer"),
        ("[{name: n, conditions: [{path: args.a, op: regex, value: 123}]}]", "regex value must be a string"),
        ('[{name: n, conditions: [{path: args.a, op: lt, value: "100"}]}]', 'operator "lt" requires a numeric value'),
        ("[{action: deny}]", "rule must have a name"),
        ("[{name: a, rate_limit: 5/hour}, {name: b, rate_limit: 9/hour}]", 'duplicate state counter "_rate_hour"'),
        ("[{name: a, conditions: [{path: state.c.n, op: lt, value: 3}]}]", "no matching state block"),
    ],
)
def test_f6_what_intercept_refuses_to_start_with_is_refused(tmp_path: Path, rules: str, words: str) -> None:
    err = refused(tmp_path, HEAD + f"default: deny\ntools:\n  c:\n    rules: {rules}\n", words, "Intercept refuses to start")
    assert ":4:" in err.splitlines()[0] or ":5:" in err.splitlines()[0]  # located


@pytest.mark.parametrize("hide", ['[a, a]', '[a, " "]'])
def test_f6_bad_hide_entries_are_refused(tmp_path: Path, hide: str) -> None:
    refused(tmp_path, HEAD + f"hide: {hide}\n", "hide")


def test_f6_a_signed_rate_limit_is_what_go_reads(tmp_path: Path) -> None:
    e = engine(tmp_path, HEAD + 'tools:\n  c:\n    rules: [{name: n, rate_limit: "+2/hour"}]\n')
    assert [e.decide("c").effect for _ in range(3)] == ["allow", "allow", "deny"]


def test_f6_no_allow_for_a_tool_whose_rule_is_only_partly_carried_over(tmp_path: Path) -> None:
    doc = HEAD + (
        "default: deny\ntools:\n  o:\n    rules: [{name: o, conditions: [{path: args.a, op: exists, value: true}], "
        "state: {counter: n, window: day}}]\n"
        "  c:\n    rules: [{name: c, conditions: [{path: state.o.n, op: lt, value: 3}]}]\n"
    )
    r, plr = imp(tmp_path, doc)
    assert r.exit_code == 0 and 'allow tool "c"' not in plr
    assert Engine(compile_source(plr)).decide("c").effect == "deny"


def test_f7_empty_not_in_and_neq_null_allow_as_intercept_does(tmp_path: Path) -> None:
    e = engine(tmp_path, HEAD + (
        "tools:\n  a:\n    rules: [{name: n, conditions: [{path: args.x, op: not_in, value: []}]}]\n"
        "  b:\n    rules: [{name: n, conditions: [{path: args.x, op: neq, value: null}]}]\n"
    ))  # fmt: skip
    assert e.decide("a", {"x": "v"}).effect == "allow" and e.decide("a", {}).effect == "deny"
    assert e.decide("b", {"x": "v"}).effect == "allow" and e.decide("b", {"x": "<nil>"}).effect == "deny"


LOSSY = """version: "1"
default: allow
tools:
  pay:
    rules:
      - name: daily cap
        action: evaluate
        state: {counter: spent, window: day}
        conditions:
          - {path: state.pay.spent, op: lt, value: 5}
      - name: small ones only while under the cap
        action: evaluate
        conditions:
          - {path: state.pay.spent, op: gte, value: 0}
          - {path: args.amount, op: lt, value: 100}
  list: {}
"""


def test_a_rule_only_partly_carried_over_denies_its_tool_under_default_allow(tmp_path: Path) -> None:
    # the condition on another counter cannot be written in plr; without it `default allow` would
    # let through calls Intercept refuses (its conditions are all required): the tool is denied
    e = engine(tmp_path, LOSSY, warnings=2)
    assert e.decide("pay", {"amount": 5}).effect == "deny"
    assert "not carried over" in e.decide("pay", {"amount": 5}).reason
    assert e.decide("list", {}).effect == "allow"  # the other tools are as they were


def test_a_star_rule_only_partly_carried_over_denies_every_call(tmp_path: Path) -> None:
    text = LOSSY.replace("  pay:", '  "*":').replace("state.pay.spent", "state._global.spent")
    e = engine(tmp_path, text, warnings=2)
    assert e.decide("list", {}).effect == "deny" and e.decide("anything", {}).effect == "deny"


@pytest.mark.parametrize("char", ["\u202e", "\u2028", "\u0085", "\x1b"])
def test_a_condition_path_with_a_bidi_or_line_separator_is_written_escaped(tmp_path: Path, char: str) -> None:
    escaped = "\\u%04x" % ord(char)
    text = (
        'version: "1"\ndefault: allow\ntools:\n  t:\n    rules:\n      - name: r\n        action: evaluate\n'
        f'        conditions:\n          - {{path: "args.a{escaped}b", op: eq, value: "v"}}\n'
    )
    r, plr = imp(tmp_path, text)
    assert r.exit_code == 0, r.output
    assert char not in plr and f'args["a{escaped}b"]' in plr, plr
    e = Engine(compile_source(plr))
    assert e.decide("t", {f"a{char}b": "v"}).effect == "allow" and e.decide("t", {f"a{char}b": "w"}).effect == "deny"


def test_an_object_as_a_condition_value_is_refused_at_its_place(tmp_path: Path) -> None:
    text = (
        'version: "1"\ndefault: allow\ntools:\n  t:\n    rules:\n      - name: r\n        action: evaluate\n'
        '        conditions:\n          - {path: "args.a", op: eq, value: {k: v}}\n'
    )
    err = refused(tmp_path, text, "is no value plr can compare with")
    assert "p.yaml:9:45: error:" in err and "internal error" not in err


@pytest.mark.parametrize("field", ["description", "tool"])
def test_a_lone_surrogate_is_refused_as_input_not_reported_as_an_internal_error(tmp_path: Path, field: str) -> None:
    if field == "description":
        text = 'version: "1"\ndescription: "x\\ud800y"\ndefault: allow\ntools:\n  t: {}\n'
    else:
        text = 'version: "1"\ndefault: allow\ntools:\n  "t\\ud800": {}\n'
    err = refused(tmp_path, text, "U+D800, a lone surrogate")
    assert "internal error" not in err
