"""`plr catalog harvest`: read the tools of real MCP servers, live, into the stdlib catalogues.

For each server of a reviewed source list (``stdlib_rules/catalogues/sources.toml``: package,
version, how to start it, placeholder environment) the harvest

1. installs the exact package version into a cache folder (npm: ``npm install --prefix``;
   PyPI: a virtual environment), never a global install;
2. starts it over stdio in a throwaway HOME with an environment built from nothing but PATH,
   that HOME and the source's placeholders (dummy API keys): no credential of the person
   running the harvest can reach a server;
3. reads ``tools/list`` (every page) with a time bound, in a child Python process of its own;
4. stops it: the SDK kills the server's process group, and afterwards every process still
   carrying that throwaway HOME is killed with its group (a daemon that escaped the group);
5. writes the catalogue: one compact JSON file per server (name, description's first
   sentence, a compact input schema, annotations, risk class and where it came from), plus a
   generated ``server-NAME.plr`` that ``import "stdlib/server-NAME"`` reads.

A server that cannot list its tools without a real account is recorded with the reason
(``status: unavailable``), never filled in from its README.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from .classify import ENUM_KEPT, classify, router_class

CATALOGUE_FORMAT = 1
DESCRIPTION_CHARS = 160  # a catalogue keeps the first sentence of a description, this long at most
REASON_CHARS = 300


@dataclass(frozen=True)
class Source:
    """One reviewed entry of the source list."""

    name: str  # catalogue name: stdlib/server-NAME
    package: str
    version: str
    registry: str = "npm"  # npm | pypi
    bin: str = ""  # the executable the package installs (default: its only one)
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    plr: str = "generated"  # generated | hand (a hand-reviewed server-NAME.plr is kept as it is)
    note: str = ""
    server: str = ""  # the `server` block's name (default: name)

    @property
    def server_name(self) -> str:
        return self.server or self.name

    @property
    def module(self) -> str:
        return f"stdlib/server-{self.name}"


def load_sources(path: Path) -> list[Source]:
    """The source list; a malformed entry is a ValueError naming it."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out: list[Source] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("server", [])):
        try:
            src = Source(
                name=entry["name"],
                package=entry["package"],
                version=entry["version"],
                registry=entry.get("registry", "npm"),
                bin=entry.get("bin", ""),
                args=tuple(entry.get("args", ())),
                env=dict(entry.get("env", {})),
                plr=entry.get("plr", "generated"),
                note=entry.get("note", ""),
                server=entry.get("server", ""),
            )
        except KeyError as e:
            raise ValueError(f"{path}: server entry {i + 1} has no `{e.args[0]}`") from None
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", src.name):
            raise ValueError(f"{path}: server name `{src.name}` must be lower-case letters, digits and dashes")
        if src.registry not in ("npm", "pypi") or src.plr not in ("generated", "hand"):
            raise ValueError(f"{path}: server `{src.name}`: registry npm|pypi, plr generated|hand")
        if src.name in seen:
            raise ValueError(f"{path}: server `{src.name}` is listed twice")
        seen.add(src.name)
        out.append(src)
    return out


# --- compact schemas -------------------------------------------------------------------------

_SCHEMA_KEYS = ("type", "properties", "required", "items", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions")
_ENUM_MAX = ENUM_KEPT  # the classifier reads an enum this long as perhaps cut


def compact_schema(schema: Any, depth: int = 0) -> Any:
    """A JSON Schema cut to what a policy author, the argument check and the classifier need:
    types, property names, required, items, enums (the first 30 values), a scalar ``const`` (a
    `oneOf` of consts lists a router's sub-commands, dsl.classify.router_class) and references.
    Descriptions, titles, defaults and examples go (they are most of a schema's size)."""
    if not isinstance(schema, dict) or depth > 8:
        return {}
    out: dict[str, Any] = {}
    for key in _SCHEMA_KEYS:
        if key not in schema:
            continue
        value = schema[key]
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {str(k): compact_schema(v, depth + 1) for k, v in value.items()}
        elif key == "items":
            out[key] = compact_schema(value, depth + 1) if isinstance(value, dict) else {}
        elif key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
            out[key] = [compact_schema(v, depth + 1) for v in value]
        elif key == "enum" and isinstance(value, list):
            out[key] = value[:_ENUM_MAX]
        elif key == "const" and (value is None or isinstance(value, (str, int, float, bool))):
            out[key] = value
        elif key in ("type", "required", "$ref"):
            out[key] = value
    ap = schema.get("additionalProperties")
    if ap is False:
        out["additionalProperties"] = False
    elif isinstance(ap, dict) and ap:
        out["additionalProperties"] = compact_schema(ap, depth + 1)
    return out


def first_sentence(text: str | None) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    m = re.search(r"(?<=[.!?])\s", text)
    cut = text[: m.start()] if m else text
    return cut if len(cut) <= DESCRIPTION_CHARS else cut[: DESCRIPTION_CHARS - 1].rstrip() + "…"


_HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


def tool_entry(raw: dict[str, Any]) -> dict[str, Any]:
    """One tool of a catalogue from what tools/list returned for it."""
    annotations = {k: raw["annotations"][k] for k in _HINTS if isinstance((raw.get("annotations") or {}).get(k), bool)}
    entry: dict[str, Any] = {"name": raw["name"]}
    desc = first_sentence(raw.get("description"))
    if desc:
        entry["description"] = desc
    if annotations:
        entry["annotations"] = annotations
    entry["schema"] = compact_schema(raw.get("inputSchema") or {})
    return classified(entry)


def classified(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with its risk class set from what the catalogue itself keeps (name, first
    sentence, annotations, compact input schema), so anyone can re-derive every class from the committed JSON."""
    c = classify(entry["name"], entry.get("description", ""), entry.get("annotations"), entry.get("schema"))
    out = {k: v for k, v in entry.items() if k not in ("risk", "inferred", "from")}
    out["risk"] = c.risk
    out["inferred" if c.inferred else "from"] = c.why
    return out


SEVERITY = {"read": 0, "write": 1, "execute": 2, "destructive": 3}


def _by_its_arguments(t: dict[str, Any]) -> bool:
    """Whether ``t``'s inferred class is a router's (``classify.router_class``): the class of
    the sub-commands its own arguments pick, which says nothing of another server's tool of the
    same name (azure's `search` router is no reason to class ripgrep's `search` destructive)."""
    if "inferred" not in t:
        return False
    routed = router_class(t.get("description", ""), t.get("schema"), t.get("annotations"))
    return routed is not None and routed[0] == t["risk"]


def harmonize(docs: list[dict[str, Any]], fixed: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Give a tool name the same class in every catalogue: the strictest any of them gives it.

    Two imported catalogues that class one name differently make the tool both (resolve warns);
    across the stdlib that would warn on ordinary imports and leave a `read` class that another
    server contradicts. A router's class, read from its own arguments, is not lent to other
    servers' tools of its name (they keep theirs; imported together, the name has both classes,
    so a rule on either selects it, and resolve warns). ``fixed``: classes of names in
    hand-reviewed catalogues, which win."""
    strictest: dict[str, tuple[str, str]] = {}
    routers = {id(t) for doc in docs for t in doc.get("tools", []) if _by_its_arguments(t)}
    for doc in docs:
        for t in doc.get("tools", []):
            have = strictest.get(t["name"])
            if id(t) not in routers and (have is None or SEVERITY[t["risk"]] > SEVERITY[have[0]]):
                strictest[t["name"]] = (t["risk"], doc["server"])
    for name, risk in (fixed or {}).items():
        strictest[name] = (risk, "a hand-reviewed stdlib catalogue")
    for doc in docs:
        for t in doc.get("tools", []):
            risk, where = strictest.get(t["name"], (t["risk"], ""))
            if risk != t["risk"] and (id(t) not in routers or SEVERITY[risk] > SEVERITY[t["risk"]]):
                why = t.pop("inferred", None) or t.pop("from", "")
                t["risk"] = risk
                t["inferred"] = f"{why}; {risk} as in {where} (one class per name across the stdlib)"
    return docs


def catalogue_document(src: Source, raw_tools: list[dict[str, Any]] | None, reason: str = "", when: str | None = None) -> dict[str, Any]:
    """The JSON catalogue of one server: its tools, or why it has none."""
    doc: dict[str, Any] = {
        "format": CATALOGUE_FORMAT,
        "server": src.server_name,
        "name": src.name,
        "import": src.module,
        "package": src.package,
        "version": src.version,
        "registry": src.registry,
        "harvested": when or date.today().isoformat(),
    }
    if raw_tools is None:
        doc["status"] = "unavailable"
        doc["reason"] = reason[:REASON_CHARS]
        return doc
    doc["status"] = "ok"
    unique = {t["name"]: t for t in raw_tools if isinstance(t.get("name"), str)}  # a name listed twice: its last entry
    doc["tools"] = sorted((tool_entry(t) for t in unique.values()), key=lambda t: t["name"])
    return doc


def plr_text(doc: dict[str, Any]) -> str:
    """The `server` block generated from a catalogue document (the file `import` reads)."""
    tools = doc["tools"]
    inferred = sum(1 for t in tools if "inferred" in t)
    lines = [
        f"# Catalogue: {doc['package']} {doc['version']} ({doc['registry']}), {len(tools)} tools read from the",
        f"# live server's tools/list on {doc['harvested']} by `plr catalog harvest`. Generated from",
        f"# catalogues/server-{doc['name']}.json: edit stdlib_rules/catalogues/sources.toml, not this file.",
        f"# {len(tools) - inferred} classes from the server's annotations; {inferred} inferred from names and",
        "# descriptions (marked `inferred`): review them before relying on a class.",
        f"server {json.dumps(doc['server'])} {{",
    ]
    from .validate import shown_name, tool_name_problem

    width = max((len(json.dumps(t["name"], ensure_ascii=False)) for t in tools), default=0)
    odd = []
    for t in tools:
        if tool_name_problem(t["name"]) is not None:  # not declarable: said below the block
            odd.append(t)
            continue
        mark = "  # inferred" if "inferred" in t else ""
        lines.append(f"    tool {json.dumps(t['name'], ensure_ascii=False).ljust(width)} {t['risk']}{mark}".rstrip())
    lines.append("}")
    for t in odd:  # a name with whitespace, a control or a format character cannot be a tool rule
        lines.append(f"# not declared: {shown_name(t['name'])} ({t['risk']}) holds a character no tool name may hold;")
        lines.append(f'# govern it by a condition: `deny all tools if tool == {shown_name(t["name"])}`')
    from .format import format_source

    # what `plr fmt` would make of it: shipped policies are kept formatted (a test checks)
    return format_source("\n".join(lines) + "\n", f"server-{doc['name']}.plr")


def write_catalogue(doc: dict[str, Any], out_dir: Path, plr: str = "generated") -> list[Path]:
    """Write server-NAME.json (always) and server-NAME.plr (for a generated catalogue with
    tools); return the paths written. JSON is one line per tool so a diff shows which changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cat_dir = out_dir / "catalogues"
    cat_dir.mkdir(exist_ok=True)
    path = cat_dir / f"server-{doc['name']}.json"
    path.write_text(dumps_catalogue(doc), encoding="utf-8")
    written = [path]
    plr_path = out_dir / f"server-{doc['name']}.plr"
    if plr == "generated" and doc.get("status") == "ok" and doc.get("tools"):
        plr_path.write_text(plr_text(doc), encoding="utf-8")
        written.append(plr_path)
    return written


def dumps_catalogue(doc: dict[str, Any]) -> str:
    head = {k: v for k, v in doc.items() if k != "tools"}
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    if "tools" not in doc:
        return text + "\n"
    rows = ",\n".join(json.dumps(t, ensure_ascii=False, separators=(",", ":"), sort_keys=True) for t in doc["tools"])
    return text[:-1] + ',"tools":[\n' + rows + "\n]}\n"


# --- starting servers ------------------------------------------------------------------------


def default_cache() -> Path:
    return Path(os.environ.get("PLR_HARVEST_CACHE") or Path.home() / ".cache" / "plr" / "harvest")


def clean_env(home: Path, cache: Path, extra: dict[str, str]) -> dict[str, str]:
    """An environment from nothing: no variable of the person running the harvest but PATH."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "npm_config_cache": str(cache / "npm-cache"),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env.update(extra)
    return env


def install(src: Source, cache: Path, timeout: float = 300.0) -> list[str]:
    """Install the exact version (once, in the cache) and return the command that starts it."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{src.package}@{src.version}")
    with tempfile.TemporaryDirectory(prefix="plr-install-") as tmp:
        home = Path(tmp)
        (home / "tmp").mkdir()
        env = clean_env(home, cache, {})
        if src.registry == "npm":
            prefix = cache / "npm" / safe
            pkg_dir = prefix / "node_modules" / src.package
            if not (pkg_dir / "package.json").is_file():
                prefix.mkdir(parents=True, exist_ok=True)
                (prefix / "package.json").write_text('{"name": "plr-harvest", "private": true}\n')
                # no install scripts: a catalogue needs the server's code, not the native builds and
                # browser downloads some packages run (which fail without their network anyway)
                _run(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline", "--loglevel=error", f"{src.package}@{src.version}"], prefix, env, timeout)
            return ["node", str(_npm_bin(pkg_dir, src)), *src.args]
        venv = cache / "pypi" / safe
        exe = venv / "bin" / (src.bin or src.package)
        if not exe.is_file():
            shutil.rmtree(venv, ignore_errors=True)
            _run([sys.executable, "-m", "venv", str(venv)], cache, env, timeout)
            _run([str(venv / "bin" / "pip"), "install", "--quiet", f"{src.package}=={src.version}"], cache, env, timeout)
        if not exe.is_file():
            raise RuntimeError(f"{src.package} installs no `{exe.name}` executable (set bin in the source list)")
        return [str(exe), *src.args]


def _npm_bin(pkg_dir: Path, src: Source) -> Path:
    meta = json.loads((pkg_dir / "package.json").read_text(encoding="utf-8"))
    bins = meta.get("bin")
    if isinstance(bins, str):
        target = bins
    elif isinstance(bins, dict) and bins:
        if src.bin:
            if src.bin not in bins:
                raise RuntimeError(f"{src.package} has no bin `{src.bin}` (it has {', '.join(bins)})")
            target = bins[src.bin]
        elif len(bins) == 1:
            target = next(iter(bins.values()))
        else:
            raise RuntimeError(f"{src.package} has several bins ({', '.join(bins)}): set bin in the source list")
    else:
        raise RuntimeError(f"{src.package} declares no bin to start")
    return (pkg_dir / target).resolve()


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, start_new_session=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"`{' '.join(cmd[:3])} …` failed: {' / '.join(tail)}")


def list_tools_live(command: list[str], env: dict[str, str], timeout: float, cwd: Path) -> tuple[list[dict[str, Any]] | None, str]:
    """(tools as the server listed them, "") or (None, why not): in a child process of its own,
    bounded by ``timeout``; every process that carries the throwaway HOME is killed after."""
    home = Path(env["HOME"])
    out, err = home / "tools.json", home / "server-stderr.txt"
    spec = json.dumps({"command": command, "env": env, "timeout": timeout, "out": str(out), "cwd": str(cwd)})
    child_env = {"PATH": env["PATH"], "HOME": env["HOME"], "LANG": "C.UTF-8", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with open(err, "wb") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dsl.harvest", "--child"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf, env=child_env, cwd=cwd, start_new_session=True,
        )
        try:
            proc.communicate(spec.encode(), timeout=timeout + 15)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid)
            proc.wait()
        finally:
            kill_by_home(home)
    if out.is_file():
        return json.loads(out.read_text(encoding="utf-8")), ""
    return None, _reason(err.read_text(encoding="utf-8", errors="replace"), proc.returncode)


def _reason(stderr: str, code: int | None) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.lstrip().startswith(("at ", "File \""))]
    marked = [ln for ln in lines if ln.startswith("plr-harvest:")]
    # what the server said: its error line, not the stack trace's punctuation or Node's version
    words = [ln for ln in lines if not ln.startswith(("plr-harvest:", "Node.js v", "^", "}", "{", "at ", "throw ")) and len(ln) > 3]
    errors = [ln for ln in words if re.search(r"error|required|missing|must|invalid|not set|not found|please|denied|unable|cannot|can't|failed", ln, re.I)]
    said = errors[-1:] or words[-2:]
    text = marked[-1].removeprefix("plr-harvest: ") if marked else f"the server exited (code {code}) without answering tools/list"
    if said:
        text += "; the server said: " + " / ".join(said)
    return text[:REASON_CHARS]


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_by_home(home: Path) -> int:
    """Kill every process (and its process group) whose environment has HOME=home: what a
    harvested server left behind. Only processes this harvest started carry that fresh path."""
    marker = b"HOME=" + os.fsencode(str(home)) + b"\0"
    own = os.getpgid(0)
    killed = 0
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker not in environ + b"\0":
            continue
        pid = int(entry.name)
        try:
            pgid = os.getpgid(pid)
            if pgid != own:
                os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, PermissionError):
            pass
    return killed


def _child() -> None:
    """`python -m dsl.harvest --child`: list one server's tools (spec on stdin), write them to
    the spec's `out` file. Errors are one `plr-harvest:` line on stderr."""
    import logging

    import anyio

    spec = json.loads(sys.stdin.read())
    logging.basicConfig(level=logging.CRITICAL)

    async def main() -> list[dict[str, Any]]:
        from mcp import Client, StdioServerParameters, types

        params = StdioServerParameters(command=spec["command"][0], args=spec["command"][1:], env=spec["env"], cwd=spec["cwd"])
        tools: list[dict[str, Any]] = []
        with anyio.fail_after(spec["timeout"]):
            async with Client(params, mode="auto", cache=None) as client:
                cursor = None
                for _ in range(1000):
                    res = await client.session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
                    tools.extend(t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in res.tools)
                    cursor = res.next_cursor
                    if not cursor:
                        break
        return tools

    try:
        tools = anyio.run(main)
    except BaseException as e:  # noqa: BLE001 - any failure is the server's reason, in one line
        cause: BaseException = e
        while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        if isinstance(cause, TimeoutError):
            msg = f"no tools/list answer within {spec['timeout']:g} s"
        else:
            msg = f"{type(cause).__name__}: {cause}".replace("\n", " ")
        print(f"plr-harvest: {msg}", file=sys.stderr, flush=True)
        os._exit(1)
    Path(spec["out"]).write_text(json.dumps(tools), encoding="utf-8")
    os._exit(0)  # the SDK has stopped the server; do not wait on stray threads


# --- one server, many servers ----------------------------------------------------------------


@dataclass
class Outcome:
    source: Source
    document: dict[str, Any]
    seconds: float


def harvest_one(src: Source, cache: Path, timeout: float = 60.0, when: str | None = None) -> Outcome:
    """Install, start, list, stop one server; never raises for a server that misbehaves."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="plr-harvest-home-") as tmp:
        home = Path(tmp)
        for sub in ("tmp", "work", ".config", ".cache"):
            (home / sub).mkdir()
        try:
            command = install(src, cache)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            doc = catalogue_document(src, None, _placeholders(f"install failed: {e}", None, cache), when)
            return Outcome(src, doc, time.monotonic() - started)
        env = clean_env(home, cache, {k: v.replace("{home}", str(home)) for k, v in src.env.items()})
        args = [a.replace("{home}", str(home)).replace("{work}", str(home / "work")) for a in command]
        tools, reason = list_tools_live(args, env, timeout, home / "work")
        doc = catalogue_document(src, tools, _placeholders(reason, home, cache), when)
    return Outcome(src, doc, time.monotonic() - started)


def _placeholders(reason: str, home: Path | None, cache: Path) -> str:
    """A reason as the committed record keeps it: the same on every run and every machine."""
    if home is not None:
        reason = reason.replace(str(home), "{home}")
    reason = re.sub(r"/tmp/plr-harvest-home-[A-Za-z0-9_]+", "{home}", reason)
    return reason.replace(str(cache), "{cache}")


def harvest(sources: list[Source], out_dir: Path, cache: Path, jobs: int = 2, timeout: float = 60.0, progress: Any = None) -> list[Outcome]:
    """Harvest ``sources`` ``jobs`` at a time and write their catalogues into ``out_dir``."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(harvest_one, s, cache, timeout) for s in sources]
        for future in as_completed(futures):  # written as each ends: a slow install holds no other back
            outcome = future.result()
            write_catalogue(outcome.document, out_dir, outcome.source.plr)
            outcomes.append(outcome)
            if progress:
                progress(outcome)
    order = {s.name: i for i, s in enumerate(sources)}
    return sorted(outcomes, key=lambda o: order[o.source.name])


def default_sources() -> Path:
    from .resources import stdlib_dir

    return stdlib_dir() / "catalogues" / "sources.toml"


def hand_classes(out_dir: Path) -> dict[str, dict[str, str]]:
    """stem -> {tool: class} of every hand-written catalogue in ``out_dir`` (not generated)."""
    from . import ir
    from .catalog import is_generated
    from .lower import lower_source

    out: dict[str, dict[str, str]] = {}
    for path in sorted(out_dir.glob("server-*.plr")):
        if is_generated(path):
            continue
        module = lower_source(path.read_text(encoding="utf-8"), path.name, str(path))
        out[path.stem] = {t.name: t.risk for cat in module.of(ir.Catalogue) for t in cat.tools}
    return out


def finish(out_dir: Path) -> list[dict[str, Any]]:
    """Re-derive every class in ``out_dir``'s catalogues (rules, then one class per name), and
    rewrite the JSON and the generated .plr files: the committed catalogues are exactly what
    this function makes of the harvested data, whichever servers were harvested this time."""
    hand = hand_classes(out_dir)
    fixed = {name: risk for tools in hand.values() for name, risk in tools.items()}
    docs = []
    for path in sorted((out_dir / "catalogues").glob("server-*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("status") == "ok":
            doc["tools"] = [classified(t) for t in doc["tools"]]
            if path.stem in hand:  # the reviewed file decides; its JSON keeps the schemas
                for t in doc["tools"]:
                    if t["name"] in hand[path.stem]:
                        t.pop("inferred", None)
                        t["risk"], t["from"] = hand[path.stem][t["name"]], "hand-reviewed catalogue"
        docs.append(doc)
    harmonize([d for d in docs if f"server-{d['name']}" not in hand], fixed)
    for doc in docs:
        write_catalogue(doc, out_dir, "hand" if f"server-{doc['name']}" in hand else "generated")
    return docs


def review_report(docs: list[dict[str, Any]]) -> str:
    """Markdown: every inferred class (for a person to confirm), then the unavailable servers."""
    lines = ["# Harvest review", "", "Classes not given by a server's own annotations; confirm or correct each.", ""]
    for doc in docs:
        rows = [t for t in doc.get("tools", []) if "inferred" in t]
        if rows:
            lines.append(f"## {doc['server']} ({doc['package']} {doc['version']})")
            lines.extend(f"- `{t['name']}` {t['risk']}: {t['inferred']}" for t in rows)
            lines.append("")
    down = [d for d in docs if d.get("status") != "ok"]
    if down:
        lines.append("## Servers without a catalogue")
        lines.extend(f"- {d['server']} ({d['package']} {d['version']}): {d.get('reason', '')}" for d in down)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        _child()
