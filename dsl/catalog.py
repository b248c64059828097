"""The stdlib catalogues: list them, read one, and regenerate one from a live MCP server.

Risk classes come from the server's own tool annotations when it has them
(``destructiveHint`` → destructive, ``readOnlyHint`` → read, otherwise write); a person
reviews the generated block before it lands in ``stdlib_rules/`` (execute tools, for
example, are never annotated as such).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import ir
from .resources import stdlib_dir


@dataclass(frozen=True)
class CatalogueInfo:
    module: str  # import name: stdlib/NAME
    server: str
    tools: tuple[tuple[str, str], ...]  # (tool, risk)
    header: str  # the file's leading comment (package and version it was read from)
    inferred: frozenset[str] = frozenset()  # tools whose class is a guess, not the server's annotation
    # (tool, text) of the tools that have one: the harvested first sentence, or a hand-written
    # entry's `description "..."`
    descriptions: tuple[tuple[str, str], ...] = ()

    def description(self, tool: str) -> str:
        """The tool's description, or "" when the catalogue gives none."""
        return dict(self.descriptions).get(tool, "")


GENERATED_MARK = "by `plr catalog harvest`"


def catalogue_dir() -> Path:
    """Where the harvested catalogues' JSON lives (shipped in the wheel beside the .plr files)."""
    return stdlib_dir() / "catalogues"


@lru_cache(maxsize=None)
def document(stem: str) -> dict[str, Any] | None:
    """The harvested JSON catalogue ``catalogues/STEM.json`` (STEM: server-NAME), read once."""
    path = catalogue_dir() / f"{stem}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def documents() -> list[dict[str, Any]]:
    """Every harvested catalogue document, available or not, by name."""
    out = []
    for path in sorted(catalogue_dir().glob("server-*.json")):
        doc = document(path.stem)
        if doc is not None:
            out.append(doc)
    return out


def is_generated(path: Path) -> bool:
    """Whether a stdlib .plr was written by the harvest (its JSON then says everything it does)."""
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(400)
    except OSError:
        return False
    return GENERATED_MARK in head


def _from_document(path: Path, doc: dict[str, Any]) -> CatalogueInfo:
    tools = doc.get("tools", [])
    header = f"Catalogue: {doc['package']} {doc['version']} ({doc['registry']}), read live on {doc['harvested']}"
    return CatalogueInfo(
        f"stdlib/{path.stem}",
        doc["server"],
        tuple((t["name"], t["risk"]) for t in tools),
        header,
        frozenset(t["name"] for t in tools if "inferred" in t),
        tuple((t["name"], t["description"]) for t in tools if t.get("description")),
    )


def catalogues_of_module(module: ir.Module, import_name: str, header: str) -> list[CatalogueInfo]:
    """The `server` blocks of one hand-written stdlib module, each tool's `description` kept."""
    out = []
    for cat in module.of(ir.Catalogue):
        tools = tuple((t.name, t.risk) for t in cat.tools)
        described = tuple((t.name, t.description) for t in cat.tools if t.description)
        out.append(CatalogueInfo(import_name, cat.server, tools, header, descriptions=described))
    return out


@lru_cache(maxsize=1)
def _stdlib_catalogues() -> tuple[CatalogueInfo, ...]:
    from .lower import lower_source

    out: list[CatalogueInfo] = []
    for path in sorted(stdlib_dir().glob("*.plr")):
        doc = document(path.stem) if is_generated(path) else None
        if doc is not None and doc.get("status") == "ok":
            out.append(_from_document(path, doc))
            continue
        text = path.read_text(encoding="utf-8")
        module = lower_source(text, f"stdlib/{path.name}", str(path))
        header = "\n".join(line[1:].strip() for line in text.splitlines() if line.startswith("#")).strip()
        out += catalogues_of_module(module, f"stdlib/{path.stem}", header.splitlines()[0] if header else "")
    return tuple(out)


def stdlib_catalogues() -> list[CatalogueInfo]:
    """Every `server` block shipped in stdlib_rules/, by module name. A generated catalogue is
    read from its JSON (hundreds of them parse in no time that way); a hand-written one is parsed."""
    return list(_stdlib_catalogues())


def tool_schemas(stem: str) -> dict[str, dict[str, Any]]:
    """Tool name -> compact input schema, from the harvested JSON of stdlib/STEM (empty when the
    catalogue was never harvested)."""
    doc = document(stem)
    if not doc:
        return {}
    return {t["name"]: t.get("schema") or {} for t in doc.get("tools", [])}


def search(word: str) -> list[tuple[CatalogueInfo, str, str]]:
    """(catalogue, tool, risk) for every tool whose name, or description, contains ``word``
    (case-insensitive); name matches first."""
    w = word.lower()
    by_name, by_desc = [], []
    for c in stdlib_catalogues():
        descriptions = dict(c.descriptions)
        for name, risk in c.tools:
            if w in name.lower():
                by_name.append((c, name, risk))
            elif w in descriptions.get(name, "").lower():
                by_desc.append((c, name, risk))
    return by_name + by_desc


def risk_of(annotations: Any) -> str:
    if annotations is None:
        return "write"
    if getattr(annotations, "destructive_hint", None) and not getattr(annotations, "read_only_hint", None):
        return "destructive"
    if getattr(annotations, "read_only_hint", None):
        return "read"
    return "write"


async def _list_tools(command: list[str], env: dict[str, str] | None, timeout: float) -> list[dict[str, Any]]:
    import anyio
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    tools: list[dict[str, Any]] = []
    with anyio.fail_after(timeout):
        async with Client(params, mode="auto", cache=None) as client:
            cursor = None
            for _ in range(1000):  # a server paging forever is cut off
                res = await client.session.list_tools(params=_page(cursor))
                tools.extend(t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in res.tools)
                cursor = res.next_cursor
                if not cursor:
                    break
    return tools


def _page(cursor: str | None) -> Any:
    from mcp import types

    return types.PaginatedRequestParams(cursor=cursor) if cursor else None


def raw_tools_from_server(command: list[str], env: dict[str, str] | None = None, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The tools a live stdio server lists, as JSON (name, description, inputSchema, annotations).

    Raises (TimeoutError when the server does not answer within ``timeout`` seconds); what the
    SDK logs about a misbehaving server (a line that is not JSON-RPC) is one line on stderr,
    never a traceback."""
    import logging

    import anyio

    from .proxy.core import TracebackFilter  # the proxy's own: one line per record (PLR_DEBUG keeps tracebacks)

    sdk = logging.getLogger("mcp")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("plr catalog: the server: %(message)s"))
    handler.addFilter(TracebackFilter())
    saved = sdk.propagate
    sdk.addHandler(handler)
    sdk.propagate = False
    try:
        return anyio.run(_list_tools, command, env, timeout)
    except TimeoutError:
        raise TimeoutError(f"no tools/list answer within {timeout:g} s") from None
    finally:
        sdk.removeHandler(handler)
        sdk.propagate = saved


def tools_from_server(command: list[str], env: dict[str, str] | None = None, timeout: float = 20.0) -> list[tuple[str, str, str]]:
    """(name, risk, first line of description) for each tool a live stdio server lists."""
    out = []
    for t in raw_tools_from_server(command, env, timeout):
        desc = (t.get("description") or "").strip().splitlines()
        out.append((t["name"], risk_of_hints(t.get("annotations")), desc[0] if desc else ""))
    return out


def risk_of_hints(annotations: dict[str, Any] | None) -> str:
    """`risk_of` for annotations as JSON (camelCase hints)."""
    a = annotations or {}
    if a.get("destructiveHint") and not a.get("readOnlyHint"):
        return "destructive"
    if a.get("readOnlyHint"):
        return "read"
    return "write"


def drift(expected: dict[str, dict[str, Any] | None], live: list[dict[str, Any]]) -> list[str]:
    """How a live server's tools differ from its catalogue, one line per difference.

    ``expected``: tool name -> its harvested entry (compact schema, annotations), or None for a
    hand-written catalogue that records names only (then only names are compared)."""
    from .harvest import _HINTS, compact_schema

    lines: list[str] = []
    live_by_name = {t["name"]: t for t in live}
    for name in sorted(set(live_by_name) - set(expected)):
        lines.append(f"added: {name}")
    for name in sorted(set(expected) - set(live_by_name)):
        lines.append(f"removed: {name}")
    for name in sorted(set(expected) & set(live_by_name)):
        entry = expected[name]
        if entry is None:
            continue
        raw = live_by_name[name]
        if compact_schema(raw.get("inputSchema") or {}) != (entry.get("schema") or {}):
            lines.append(f"changed schema: {name}")
        hints = {k: v for k, v in (raw.get("annotations") or {}).items() if k in _HINTS and isinstance(v, bool)}
        if hints != (entry.get("annotations") or {}):
            lines.append(f"changed annotations: {name} ({entry.get('annotations') or {}} -> {hints})")
    return lines


def expected_tools(info: CatalogueInfo) -> dict[str, dict[str, Any] | None]:
    """What `drift` compares a live server with: the harvested entries when there are some (a
    hand-written catalogue's harvested JSON included), else the catalogue's names."""
    doc = document(info.module.removeprefix("stdlib/"))
    if doc and doc.get("status") == "ok":
        return {t["name"]: t for t in doc["tools"]}
    return {name: None for name, _ in info.tools}


def catalogue_text(server: str, tools: list[tuple[str, str, str]], source: str = "") -> str:
    """A `server` block for stdlib_rules/, with a header saying where it was read from."""
    import json

    lines = []
    if source:
        lines.append(f"# Catalogue of {source}, read from the live server's tools/list.")
        lines.append("# Risk classes from the server's annotations; reviewed by hand (execute is never annotated).")
    lines.append(f"server {json.dumps(server)} {{")
    width = max((len(json.dumps(n)) for n, _, _ in tools), default=0)
    for name, risk, desc in sorted(tools):
        comment = f"  # {desc[:70]}" if desc else ""
        lines.append(f"    tool {json.dumps(name).ljust(width)} {risk}{comment}")
    lines.append("}")
    return "\n".join(lines) + "\n"


STARTER = """{header}
package {package}

import "{module}"

default deny
{rules}"""

# what each class's rule lets through, for the header (only the classes the catalogue has)
_STARTER_SAYS = {
    "destructive": "destructive tools need a person",
    "execute": "execute tools run at most 30 a minute per session",
    "write": "write tools are allowed",
    "read": "reads are allowed",
}
_STARTER_RULES = {
    "read": "allow read tools\n",
    "write": "allow write tools\n",
    "destructive": 'deny destructive tools unless approved\n    reason "Destructive: a human must approve"\n',
    "execute": "allow execute tools\nlimit execute tools to 30 per minute per session\n",
}


def starter_files(info: CatalogueInfo, policy_name: str) -> tuple[str, str]:
    """A starter policy and its test file for one catalogue (`plr init`). Its header says what
    its rules do, it writes a rule only for a class the catalogue has (a rule selecting nothing
    is a warning), and each test calls a real tool of the class it is about: a test of a made-up
    tool would pass whatever the rules said."""
    import json
    import re

    by_risk: dict[str, list[str]] = {}
    for name, risk in info.tools:
        by_risk.setdefault(risk, []).append(name)
    package = re.sub(r"[^A-Za-z0-9_]", "_", info.server).strip("_") or "policy"
    order = ("read", "write", "destructive", "execute")
    present = [r for r in order if by_risk.get(r)]
    said = [_STARTER_SAYS[r] for r in ("destructive", "execute", "write", "read") if r in present]
    summary = ", ".join([*said, "everything else is denied."]) if said else "every tool is denied."
    rules = "".join(f"\n{_STARTER_RULES[r]}" for r in present)
    import textwrap

    header = textwrap.fill(f"Starter policy for {info.server} ({info.module}): {summary}", 96, initial_indent="# ",
                           subsequent_indent="# ", break_on_hyphens=False, break_long_words=False)  # fmt: skip
    policy = STARTER.format(header=header, package=package, module=info.module, rules=rules)
    tests = [f'import "./{policy_name}"\n']
    first = {r: json.dumps(sorted(by_risk[r])[0]) for r in present}
    if "read" in first:
        tests.append(f'test "reads are allowed" {{\n    call {first["read"]} -> allow\n}}\n')
    if "write" in first:
        tests.append(f'test "writes are allowed" {{\n    call {first["write"]} -> allow\n}}\n')
    if "destructive" in first:
        d = first["destructive"]
        tests.append(f'test "destructive calls need a human" {{\n    call {d} -> approval_required\n    call {d} approved -> allow\n}}\n')
    if "execute" in first:
        tests.append(f'test "execute tools are allowed" {{\n    call {first["execute"]} -> allow\n}}\n')
    tests.append('test "unknown tools are denied" {\n    call "no-such-tool" -> deny default\n}\n')
    return policy, "\n".join(tests)


def stdlib_core(name: str) -> str:
    """A stdlib module or catalogue name in any of its spellings, reduced to one: `stdlib/server-github.plr`,
    `server-github`, `GitHub` and `github` are all `github` (what `plr catalog` lists it as)."""
    return name.strip().lower().removeprefix("stdlib/").removesuffix(".plr").removeprefix("server-")


def nearest_stdlib_names(wanted: str, names: list[str], n: int = 3) -> list[str]:
    """The stdlib module names (file stems: `server-github`, `baseline`) ``wanted`` most likely
    meant, best first, ``n`` at most: the same name spelt another way, difflib's close matches,
    then the names that start with it. Shared by the import error and `plr catalog`/`plr init`,
    so both suggest the same names for the same slip."""
    import difflib

    # `server-` is compared apart: it is common to nearly all names, so with it every catalogue would
    # look close to every other; `memory` finds `server-memory`, `play` finds `server-playwright`
    core = stdlib_core(wanted)
    by_core: dict[str, str] = {}
    for name in names:
        by_core.setdefault(stdlib_core(name), name)
    starts = [by_core[c] for c in sorted(by_core) if len(core) >= 3 and c.startswith(core)]
    similar = [by_core[c] for c in difflib.get_close_matches(core, list(by_core), n=n, cutoff=0.75)]
    exact = [by_core[core]] if core in by_core else []  # `memory` for `server-memory`, or a case slip
    return list(dict.fromkeys([*exact, *similar, *starts]))[:n]


def short_name(info: CatalogueInfo) -> str:
    """The name `plr catalog` lists a catalogue by: `github` for `stdlib/server-github` (whose
    `server` block says `server-github`), `mcp-codex-worker` for `stdlib/mcp-codex-worker`."""
    return stdlib_core(info.module)


def named(name: str) -> list[CatalogueInfo]:
    """The catalogue ``name`` names in any spelling (see ``find``), without the catalogues whose
    names merely contain it: `ls` names none (`browser-tools` contains it)."""
    core = stdlib_core(name)
    return [c for c in stdlib_catalogues() if core in (stdlib_core(c.module), stdlib_core(c.server))]


def find(name: str) -> list[CatalogueInfo]:
    """The catalogues ``name`` means: the one it names in any spelling (`github`,
    `server-github`, `stdlib/server-github`, `stdlib/server-github.plr`, or its `server` block's
    name), else every catalogue whose name contains it (`brave` is both brave-search ones).
    Every spelling is tried first as a whole name, so `server-brave-search` is one catalogue,
    not also `server-brave-search-legacy`, which merely contains it."""
    exact = named(name)
    if exact:
        return exact
    core = stdlib_core(name)
    every = stdlib_catalogues()
    raw = name.strip().lower()
    return [c for c in every if any(w in n for w in (raw, core) for n in (c.module.lower(), c.server.lower()))]


def unknown_name_message(name: str, every: list[CatalogueInfo]) -> str:
    """Why no catalogue matched ``name``: the nearest names (as `plr catalog` lists them, with
    their import), then where the list is. The full list (~170 names) is `plr catalog`'s to
    show, never dumped into an error."""
    from .vocab import terminal_text

    by_stem = {c.module.removeprefix("stdlib/"): c for c in every}
    close = [by_stem[s] for s in nearest_stdlib_names(name, list(by_stem))]
    head = f"no catalogue is called `{terminal_text(name)}`"
    if close:
        shown = [f'`{short_name(c)}` (import "{c.module}")' for c in close]
        head += "; did you mean " + (", ".join(shown[:-1]) + " or " if len(shown) > 1 else "") + shown[-1] + "?"
    return (
        f"{head}\n  `plr catalog` lists the {len(every)} catalogues by name; "
        "`plr catalog --search WORD` finds one by its tools"
    )


def ambiguous_name_message(name: str, found: list[CatalogueInfo], most: int = 10) -> str:
    """``name`` is part of several catalogues' names: the first ``most`` of them, by the name
    `plr catalog` lists them under (one spelling for all, so the list can be copied back)."""
    from .vocab import terminal_text

    names = [short_name(c) for c in found]
    listed = ", ".join(names[:most])
    if len(names) > most:
        listed += f" and {len(names) - most} more (`plr catalog` lists every name)"
    return f"`{terminal_text(name)}` matches {len(found)} catalogues; choose one of: {listed}"


def write_new(path: Path, text: str) -> None:
    if path.exists():
        raise FileExistsError(f"{path} exists; not overwriting it")
    path.write_text(text, encoding="utf-8")
