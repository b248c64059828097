"""Shared fixtures: paths of the checkout, the spec, and a runner for the `plr` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings

# The suite's property tests are repeatable: the same examples on every run, so CI passes or
# fails on the change, not on the draw. `HYPOTHESIS_PROFILE=explore` searches fresh examples;
# whatever it finds is pinned with @example before it is fixed.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# The spec's worked example: its policy is examples/codex_worker.plr, and its exact compiled
# JSON (byte for byte, as the spec prints it) is pinned in the repository, not read from beside it.
SPEC_PLR = EXAMPLES / "codex_worker.plr"
SPEC_JSON = ROOT / "tests" / "data" / "codex_worker.spec.json"
STDLIB = ROOT / "stdlib_rules"


def example_files() -> list[Path]:
    return sorted(EXAMPLES.rglob("*.plr"))


def nested_pytest_env(**extra: str) -> dict[str, str]:
    """The environment for a pytest run inside a test: without what an xdist worker sets for its
    own process (syrupy, for one, takes ``PYTEST_XDIST_WORKER`` to mean it is a worker itself and
    skips its snapshot report)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_") and k != "PYTEST_CURRENT_TEST"}
    return {**env, **extra}


@contextmanager
def npm_cache(cache: Path) -> Iterator[None]:
    """Hold ``cache`` (a folder npm installs test tools into, shared by every run on the machine)
    for this process alone: xdist's workers, or two runs of the suite, install and write there."""
    import fcntl

    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def npm_install(npm: str, cache: Path, name: str, *specs: str) -> None:
    """``npm install specs`` into ``cache`` (a private package called ``name``, made if missing),
    inside ``npm_cache``; a failure fails the test: node and npm are present, so it is an error."""
    if not (cache / "package.json").exists():
        (cache / "package.json").write_text(f'{{"name": "{name}", "private": true}}\n', encoding="utf-8")
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *specs], cwd=cache, capture_output=True, timeout=240
    )
    if proc.returncode != 0:
        pytest.fail(
            f"npm install {' '.join(specs)} failed (node and npm are present, so this is an error, not a skip):\n"
            + proc.stderr.decode(errors="replace")[-2000:]
        )


def run_plr(*args: str, cwd: Path | str | None = None, input: str | bytes | None = None, timeout: float = 60):
    """Run the CLI in a subprocess (as users do), returning the CompletedProcess."""
    env = dict(os.environ, NO_COLOR="1", PYTHONIOENCODING="utf-8")
    if isinstance(input, str):
        input = input.encode()
    proc = subprocess.run(
        [sys.executable, "-m", "dsl.cli", *args],
        cwd=str(cwd or ROOT),
        input=input,
        capture_output=True,
        timeout=timeout,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    proc.stdout_text = proc.stdout.decode("utf-8", "replace")  # type: ignore[attr-defined]
    proc.stderr_text = proc.stderr.decode("utf-8", "replace")  # type: ignore[attr-defined]
    return proc


@pytest.fixture
def plr():
    return run_plr


# --- stress mode: the suite under a saturated CPU ----------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stress",
        action="store_true",
        default=bool(os.environ.get("PLR_STRESS")),
        help="keep every core busy with a CPU burner while the suite runs (also PLR_STRESS=1): "
        "a test that fails only then depends on the machine's speed, which is a defect",
    )


_BURNERS: list[subprocess.Popen[bytes]] = []


def pytest_configure(config: pytest.Config) -> None:
    """With --stress, one busy-looping process per core for the whole run: started once, by the
    process that runs the tests or (under pytest-xdist, as ``.ci/run`` runs it) by the controller,
    not once per worker, so "every core busy" means the same however the suite is run."""
    if not config.getoption("--stress") or hasattr(config, "workerinput"):
        return
    # (each burner ends itself when the run is killed and it is left to another parent)
    burn = "import os\np = os.getppid()\nwhile os.getppid() == p:\n    for _ in range(1_000_000): pass"
    _BURNERS.extend(
        subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.DEVNULL) for _ in range(os.cpu_count() or 2)
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    while _BURNERS:
        b = _BURNERS.pop()
        b.kill()
        b.wait()


@pytest.fixture(autouse=True, scope="session")
def _local_modules_imported() -> None:
    """Hypothesis draws some values from the constants of the local modules imported so far (with
    derandomize too), and which those are depends on the tests a process ran before: every module
    of plr and its benchmarks is imported before the first test, so each test draws the same
    examples whether the suite runs in one process, on xdist's workers, or in part."""
    import importlib
    import pkgutil

    import benchmarks
    import dsl

    for package in (dsl, benchmarks):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not module.name.endswith(".__main__"):
                importlib.import_module(module.name)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The compiled-policy cache of every CLI run in the suite lives in a temp dir, not ~/.cache."""
    os.environ["PLR_CACHE_DIR"] = str(tmp_path_factory.mktemp("plr-cache"))
    # proxies started by module- or session-wide fixtures (before any test's own file is set)
    os.environ["PLR_LIMITS_DB"] = str(tmp_path_factory.mktemp("plr-limits-shared") / "limits.sqlite")


@pytest.fixture(autouse=True)
def _private_limit_counters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A proxy keeps its limit counters in a SQLite file by default (~/.local/state/plr): each test's
    proxies get a file of their own, so no test sees another's (or an earlier run's) counts."""
    global _limits_seq
    _limits_seq += 1
    base = tmp_path_factory.getbasetemp() / "plr-limits"
    base.mkdir(exist_ok=True)
    old = os.environ.get("PLR_LIMITS_DB")
    os.environ["PLR_LIMITS_DB"] = str(base / f"limits-{_limits_seq}.sqlite")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PLR_LIMITS_DB", None)
        else:
            os.environ["PLR_LIMITS_DB"] = old


_limits_seq = 0


# --- a real redis-server for the fleet tests ---------------------------------------------


class RedisServer:
    """A redis-server on a free 127.0.0.1 port, in a temp dir, with no persistence."""

    def __init__(self, workdir: Path) -> None:
        import shutil
        import socket

        exe = shutil.which("redis-server")
        if exe is None:
            if os.environ.get("PLR_SKIP_REDIS") == "1":
                pytest.skip("redis-server not installed and PLR_SKIP_REDIS=1")
            pytest.fail("redis-server is not installed: .ci/run installs it (apt-get install redis-server)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.exe = exe
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import time

        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # (its port taken meanwhile, say by another worker's)
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} on port {self.port}")
            try:
                info = redis.Redis(port=self.port, socket_connect_timeout=0.2).info("server")
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
                continue
            # ours, not another test's server that took this port between its runs
            if info.get("process_id") != self.proc.pid:
                raise RuntimeError(f"port {self.port} answers for another redis-server (pid {info.get('process_id')})")
            return
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def client(self):
        import redis

        return redis.Redis(port=self.port)


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()
