"""The words of the .plr language, grouped the way editors show them.

One list for the Pygments lexer (``dsl.pygments_lexer``), the language server's completion and
hover, and the test that holds the TextMate grammar (``editors/plr.tmLanguage.json``) to the same
words. It is wider than the grammar of the moment: ``let``, ``def``, ``import data … as``,
``every``/``some … in`` and the value functions of issue #15 are here so that highlighting knows
them whatever the parser accepts today; ``tests/test_editors.py`` checks that every keyword the
grammar (``grammar/plr.lark``) does accept is in some group here.

Pure data: importing it costs nothing and needs neither pygls nor Pygments.
"""

from __future__ import annotations

# Statements that declare something (a name, a file, a catalogue, a test).
DECLARATIONS = ("package", "import", "data", "as", "let", "def", "default", "server", "test")
# Rules and what follows a rule's selector.
RULES = ("allow", "deny", "hide", "limit", "if", "unless", "reason", "description")
SELECTOR_WORDS = ("tool", "tools", "all")
RISKS = ("read", "write", "destructive", "execute")
LIMIT_WORDS = ("to", "per", "of", "calendar", "refund", "on", "error")
UNITS = ("second", "minute", "hour", "day", "week", "month")
SCOPES = ("session", "identity", "global")
# Words of conditions: boolean operators, word operators, quantifiers.
LOGIC = ("and", "or", "not")
WORD_OPERATORS = ("in", "contains", "starts_with", "ends_with", "matches", "exists", "missing")
QUANTIFIERS = ("every", "some")
CONSTANTS = ("true", "false", "null")
# Value functions on the left of a comparison: count/len today, the string functions of #15.
FUNCTIONS = ("count", "len", "lower", "upper", "trim", "normpath", "basename", "dirname")
# What a path starts with (dsl.vocab.PATH_ROOTS; `tool`, `session`, `identity` and `server` are
# also keywords where a keyword may stand).
PATH_ROOTS = ("args", "identity", "session", "server", "tool", "approved")
# `test` blocks: steps, effects and decision codes.
TEST_STEPS = ("call", "approved", "as", "repeat", "after", "visible", "identity", "session", "server")
EFFECTS = ("allow", "deny", "approval_required")
CODES = ("allowed", "hidden", "denied", "default", "deny_if", "require", "rate_limited")

# Every reserved-looking word an editor colours as a keyword (constants, functions and path
# roots have colours of their own).
KEYWORDS = tuple(
    dict.fromkeys(
        [
            *DECLARATIONS, *RULES, *SELECTOR_WORDS, *RISKS, *LIMIT_WORDS, *UNITS, *SCOPES, *LOGIC,
            *WORD_OPERATORS, *QUANTIFIERS, *TEST_STEPS, *EFFECTS, *CODES,
        ]
    )
)  # fmt: skip

# Words that start a statement (completion at the start of a line).
STATEMENT_STARTS = ("package", "import", "let", "def", "default", "server", "allow", "deny", "hide", "limit", "test")

# One line of help per keyword, for hover and completion (docs/language.md says it at length).
KEYWORD_HELP: dict[str, str] = {
    "package": "`package NAME`: names the compiled policy (`\"package\"` in the JSON); at most one per file.",
    "import": '`import "PATH"` loads another file (`stdlib/NAME` or a path relative to this file); '
    '`import data "FILE.json" as NAME` names a JSON file\'s values.',
    "data": '`import data "FILE.json" as NAME`: the JSON file\'s values, read at compile time, as `NAME.path`.',
    "as": '`import data "FILE.json" as NAME`; in a test, `as identity "x"` sets who calls.',
    "let": "`let NAME = LITERAL`: a named constant, usable wherever a literal is.",
    "def": "`def NAME(PARAMS) { CONDITIONS }`: a named predicate, used as a condition and inlined at compile time.",
    "default": "`default allow` / `default deny`: the decision for tools no rule mentions (at most one across all files).",
    "server": '`server "NAME" { tool "T" CLASS ... }`: a catalogue of one MCP server\'s tools and their risk classes.',
    "test": '`test "NAME" { ... }`: a rule test, run by `plr test` against the compiled JSON.',
    "allow": "`allow SEL [if COND]`: makes the selected tools callable (only when COND holds, with `if`).",
    "deny": "`deny SEL [if COND | unless COND]`: denies them always, when COND holds, or unless it holds "
    "(`unless approved` asks a human).",
    "hide": "`hide SEL`: removes the tools from `tools/list` and denies them at call time; hiding wins over everything.",
    "limit": "`limit SEL to N per UNIT [per SCOPE]`: a sliding-window quota of allowed calls.",
    "if": "`if COND`: the rule applies when COND holds.",
    "unless": "`deny SEL unless COND`: denied unless COND holds; approval is asked when COND would hold once approved.",
    "reason": '`reason "TEXT"`: the text the agent sees when this rule denies.',
    "tool": '`tool "NAME"`: one tool by name; as a path, the name of the tool being called.',
    "tools": '`tools ["a", "b"]`, `tools "prefix-*"`, `read tools`, `all tools`: several tools.',
    "all": "`all tools`: every call (`hide all tools`, `limit all tools …`).",
    "read": "risk class `read`: the tool only reads.",
    "write": "risk class `write`: the tool changes something that can be changed back.",
    "destructive": "risk class `destructive`: the tool deletes or overwrites.",
    "execute": "risk class `execute`: the tool runs code or fetches from outside.",
    "to": "`limit SEL to N per UNIT`: at most N calls per window.",
    "per": "`per UNIT` (second, minute, hour, day or a duration such as 90s) and `per SCOPE` (session, identity, global).",
    "second": "a window of 1 second.",
    "minute": "a window of 60 seconds.",
    "hour": "a window of 3600 seconds.",
    "day": "a window of 86400 seconds.",
    "session": "limit scope `session` (the default): one quota per session; as a path, the caller's session id.",
    "identity": "limit scope `identity`: one quota per caller; as a path, the caller's identity.",
    "global": "limit scope `global`: one quota shared by every caller.",
    "of": "`limit SEL to N of args.PATH per UNIT`: a spend cap, adding up a numeric argument instead of counting calls.",
    "calendar": "`per calendar minute|hour|day|week|month [\"ZONE\"]`: a window that resets at the calendar boundary (UTC unless a zone is given).",
    "refund": "`refund on error`: a call the upstream answers with an error gives its count (or amount) back.",
    "on": "`refund on error`: see `refund`.",
    "error": "`refund on error`: see `refund`.",
    "week": "a calendar week (`per calendar week`), Monday to Monday.",
    "month": "a calendar month (`per calendar month`).",
    "description": '`description "TEXT"`: what a rule (or catalogue entry) is for, shown by `plr catalog`, `--explain` and the approval prompt.',
    "and": "both conditions hold (`not` binds tightest, then `and`, then `or`).",
    "or": "either condition holds.",
    "not": "`not C`: C does not hold (the only way to make a false comparison on a missing path true).",
    "in": "`PATH in [...]`: the value equals an item of the list.",
    "contains": '`PATH contains "x"`: a string contains the text, or a list holds the value.',
    "starts_with": '`PATH starts_with "x"`: a string that starts with the text.',
    "ends_with": '`PATH ends_with "x"`: a string that ends with the text.',
    "matches": '`PATH matches "RE"`: a string that an RE2 regular expression matches (anywhere; anchor with ^ and $).',
    "exists": "`PATH exists`: the value is present and not null.",
    "missing": "`PATH missing`: the value is absent or null.",
    "every": "`every NAME in PATH { C }`: PATH is a list and every item satisfies C (true for an empty list).",
    "some": "`some NAME in PATH { C }`: PATH is a list and at least one item satisfies C.",
    "true": "the boolean true.",
    "false": "the boolean false.",
    "null": "JSON null (absent to `exists` and `missing`).",
    "count": "`count(PATH)`: the number of items of a list (1 for a single value, 0 when missing or null).",
    "len": "`len(PATH)`: the length of a string, list or object.",
    "lower": "`lower(PATH)`: the string in lower case.",
    "upper": "`upper(PATH)`: the string in upper case.",
    "trim": "`trim(PATH)`: the string without leading and trailing white space.",
    "normpath": "`normpath(PATH)`: the POSIX path with `//`, `.` and `..` collapsed.",
    "basename": "`basename(PATH)`: the last part of a POSIX path.",
    "dirname": "`dirname(PATH)`: a POSIX path without its last part.",
    "args": "`args.NAME`: an argument of the call (`args.a.b`, `args.items[0]`, `args[\"key with spaces\"]`).",
    "approved": "`approved`: true when a human approved this call; in a test, `call ... approved`.",
    "call": '`call "TOOL" {ARGS} [approved] -> EFFECT [CODE] [reason "TEXT"]`: one decision the test expects.',
    "repeat": "`repeat N { STEPS }`: the steps N times.",
    "after": "`after DURATION`: advances the test's clock (limits).",
    "visible": '`visible ["a", "b"]`: exactly these tools are listed to the client.',
    "approval_required": "the call waits for a human's approval.",
    "allowed": "decision code: a governed tool was allowed.",
    "hidden": "decision code: the tool is hidden.",
    "denied": "decision code: an unconditional deny.",
    "deny_if": "decision code: a `deny … if` condition held.",
    "require": "decision code: a `deny … unless` or `allow … if` condition failed.",
    "rate_limited": "decision code: a limit was reached.",
}
