"""Fixtures for the proxy tests: real processes (the proxy, the fake codex worker, npm servers).

Nothing here mocks MCP: the tests drive the SDK's ``Client`` against ``python -m dsl.proxy``
(the same code as ``plr proxy``), which starts the upstream server as a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, npm_cache, npm_install

HERE = Path(__file__).resolve().parent
FAKE_SERVER = HERE / "servers" / "fake_codex.py"
NPM_CACHE = Path(os.environ.get("PLR_TEST_NPM_CACHE", Path.home() / ".cache" / "plr-tests" / "npm"))
SERVER_MEMORY_VERSION = os.environ.get("PLR_TEST_SERVER_MEMORY_VERSION", "2026.8.31")

# the fake codex worker's five tools, as a policy declares them
CODEX_SERVER = """\
server "mcp-codex-worker" {
    tool "spawn-task" execute
    tool "get-task" read
    tool "list-tasks" read
    tool "cancel-task" destructive
    tool "purge-workspace" destructive
}
"""

CODEX_POLICY = f"""\
package codex_worker

{CODEX_SERVER}
default deny

allow read tools
allow tool "spawn-task" if len(args.prompt) <= 20000

hide tool "purge-workspace"

deny tool "cancel-task" unless approved
    reason "Destructive: cancels running tasks; a human must approve"

deny tool "cancel-task" if count(args.task_id) > 5
    reason "Cancel at most five tasks per call"

limit tool "get-task" to 3 per minute per session
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(ROOT), "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    env.pop("PLR_APPROVALS_DB", None)
    env.update(extra)
    return env


class ProxySetup:
    """Paths and command lines of one proxy-under-test."""

    def __init__(self, tmp: Path, policy_text: str = CODEX_POLICY) -> None:
        self.tmp = tmp
        self.policy = tmp / "policy.plr"
        self.policy.write_text(policy_text)
        self.audit = tmp / "audit.jsonl"
        self.calls_log = tmp / "calls.jsonl"
        self.db = tmp / "approvals.sqlite"
        self.stderr = tmp / "proxy-stderr.txt"

    def server_cmd(self) -> list[str]:
        return [sys.executable, str(FAKE_SERVER)]

    def proxy_args(self, *extra: str, server: list[str] | None = None) -> list[str]:
        args = [
            "-m",
            "dsl.proxy",
            "--policy",
            str(self.policy),
            "--audit",
            str(self.audit),
            "--approvals-db",
            str(self.db),
            # these e2e clients play the human in an elicitation dialog: trust them, as a desktop
            # client is trusted (the default, the queue, has tests of its own)
            *(() if "--approval" in extra else ("--approval", "auto")),
            *extra,
        ]
        if server is not False:  # type: ignore[comparison-overlap]
            args += ["--", *(server or self.server_cmd())]
        return args

    def params(self, *extra: str, server: list[str] | None = None, env: dict[str, str] | None = None) -> Any:
        from mcp import StdioServerParameters

        return StdioServerParameters(
            command=sys.executable,
            args=self.proxy_args(*extra, server=server),
            env=base_env(FAKE_CODEX_LOG=str(self.calls_log), **(env or {})),
            cwd=str(ROOT),
        )

    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_log.exists():
            return []
        return [json.loads(line) for line in self.calls_log.read_text().splitlines() if line.strip()]

    def called_tools(self) -> list[str]:
        return [c["tool"] for c in self.calls()]

    def records(self) -> list[dict[str, Any]]:
        """The decision records of the audit log (not its events, such as ``tools_compared``)."""
        return [r for r in self.all_records() if "event" not in r]

    def all_records(self) -> list[dict[str, Any]]:
        if not self.audit.exists():
            return []
        out = []
        for line in self.audit.read_text().splitlines():
            line = line.strip()
            if line:
                out.append(json.loads(line))
        return out


@pytest.fixture
def setup(tmp_path: Path) -> ProxySetup:
    return ProxySetup(tmp_path)


def run_proxy_cli(*args: str, input: bytes | None = None, timeout: float = 60, env: dict[str, str] | None = None):
    """``python -m dsl.proxy ARGS`` (== ``plr proxy|approvals|audit ...``) as a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "dsl.proxy", *args],
        cwd=str(ROOT),
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env or base_env(),
    )
    proc.stdout_text = proc.stdout.decode("utf-8", "replace")  # type: ignore[attr-defined]
    proc.stderr_text = proc.stderr.decode("utf-8", "replace")  # type: ignore[attr-defined]
    return proc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20) -> None:
    """Wait until ``proc`` (or, without it, anything) listens on ``port``.

    With two workers, a port ``free_port`` found free can be taken by the other worker's server
    before ours binds it: answering is then not enough, the listener must be ``proc``'s own (or
    its child's), or the test would talk to another test's server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with code {proc.returncode}")
        owners = listening_pids(port)
        if owners is None:  # no /proc: answering is all we can see
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                pass
        elif owners and (proc is None or any(_descends_from(pid, proc.pid) for pid in owners)):
            return
        elif owners:
            raise RuntimeError(f"127.0.0.1:{port} is taken by another process (pids {sorted(owners)}), not {proc.pid}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def listening_pids(port: int) -> set[int] | None:
    """The pids holding a listening TCP socket on ``port`` (None where /proc cannot tell)."""
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        inodes.add(f"socket:[{cols[9]}]")
    except OSError:
        return None
    pids: set[int] = set()
    if not inodes:
        return pids
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                if os.readlink(fd.path) in inodes:
                    pids.add(int(entry.name))
                    break
        except OSError:  # gone, or not ours to read
            continue
    return pids


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])  # the parent's pid
        except (OSError, ValueError, IndexError):
            return False
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process we started (by pid), waiting a bounded time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def http_server(script: Path, env: dict[str, str], port: int | None = None) -> Iterator[str]:
    """A test MCP server (``script --http PORT``) on 127.0.0.1 (``port``, or a free one); yields its URL."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), "--http", str(port)],
        cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)


@contextmanager
def http_proxy_process(
    setup: ProxySetup, *extra: str, upstream: str | list[str], env: dict[str, str]
) -> Iterator[str]:
    """``plr proxy --listen`` in front of a URL or a command; yields its URL, and checks that it
    stops cleanly (exit 0) on SIGTERM."""
    port = free_port()
    args = setup.proxy_args("--listen", f"127.0.0.1:{port}", *extra, server=False)  # type: ignore[arg-type]
    args += ["--upstream", upstream] if isinstance(upstream, str) else ["--", *upstream]
    with setup.stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=str(ROOT),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        try:
            wait_for_port(port, proc)
            yield f"http://127.0.0.1:{port}/mcp"
            proc.terminate()
            assert proc.wait(timeout=15) == 0, setup.stderr.read_text()
        finally:
            stop(proc)


# --- npm servers -----------------------------------------------------------------------------


def _node_tools() -> tuple[str, str] | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None
    return node, npm


@pytest.fixture(scope="session")
def server_memory() -> list[str]:
    """The command line of ``@modelcontextprotocol/server-memory``, installed once into a cache dir."""
    tools = _node_tools()
    if tools is None:
        # a missing service is a failure, never a silent skip of end-to-end tests (.ci/run installs it)
        if os.environ.get("PLR_SKIP_NODE") == "1":
            pytest.skip("node/npm not installed and PLR_SKIP_NODE=1")
        pytest.fail("node and npm are not installed: .ci/run installs them (apt-get install nodejs npm; macOS: brew install node)")
    node, npm = tools
    pkg = NPM_CACHE / "node_modules" / "@modelcontextprotocol" / "server-memory"
    entry = pkg / "dist" / "index.js"
    with npm_cache(NPM_CACHE):
        if not entry.exists():
            npm_install(npm, NPM_CACHE, "plr-test-npm-cache", f"@modelcontextprotocol/server-memory@{SERVER_MEMORY_VERSION}")
    if not entry.exists():
        # the package layout changed: fall back to its declared bin
        meta = json.loads((pkg / "package.json").read_text())
        binv = meta.get("bin")
        rel = binv if isinstance(binv, str) else next(iter((binv or {}).values()), None)
        if not rel:
            pytest.fail(f"cannot find the entry point of {pkg}")
        entry = pkg / rel
    return [node, str(entry)]


# --- in-process proxies (same code, in-memory transports: fast edge-case tests) ------------------


def load_fake_server(calls_log: Path) -> Any:
    """A fresh instance of the fake codex worker module (its own task table), recording to calls_log."""
    import importlib.util

    name = f"fake_codex_{id(calls_log)}_{time.monotonic_ns()}"
    spec = importlib.util.spec_from_file_location(name, FAKE_SERVER)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod._LOG = str(calls_log)
    return mod


class InProcess:
    def __init__(self, proxy: Any, server: Any, init: Any) -> None:
        self.proxy, self.server, self.init = proxy, server, init


def inprocess(setup: ProxySetup, transport: str = "stdio", on_fake: Any = None, **options: Any):
    """``async with inprocess(setup, approval_mode=...) as ip``: a Proxy wired to an in-process fake
    server; connect a front client with ``Client(ip.server, mode=...)``. ``on_fake(module)`` may
    change the fake server before anyone connects."""
    from contextlib import asynccontextmanager

    import anyio
    from mcp import Client

    from dsl.proxy.core import Proxy, ProxyOptions
    from dsl.proxy.reload import load_policy_file

    @asynccontextmanager
    async def cm():
        fake = load_fake_server(setup.calls_log)
        if on_fake is not None:
            on_fake(fake)
        opts = ProxyOptions(
            policy_path=str(setup.policy),
            audit_path=setup.audit,
            approvals_db=setup.db,
            stderr=lambda s: setup.stderr.open("a").write(s + "\n"),
            **{"approval_mode": "auto", **options},
        )
        proxy = Proxy(opts, load_policy_file(setup.policy), transport=transport)
        async with anyio.create_task_group() as tg:
            proxy.tasks.tg = tg
            async with Client(
                fake.mcp,
                mode="legacy",
                cache=None,
                message_handler=proxy.relay.upstream_message,
                elicitation_callback=proxy.relay.elicitation,
            ) as up:
                proxy.up = up
                server, init = proxy.build_server()
                yield InProcess(proxy, server, init)
            tg.cancel_scope.cancel()

    return cm()
