"""Fixtures for the console's tests: a real `plr console` process, and one headless Chromium
(Debian's, driven by Playwright) per module.

A missing chromium fails the browser tests with one line saying what to install; nothing here
is skipped silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.proxy.conftest import ProxySetup, base_env, free_port, stop, wait_for_port

ARTIFACTS = Path(os.environ.get("PLR_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"


@dataclass
class Console:
    """A running `plr console` and where it is."""

    proc: subprocess.Popen[bytes]
    url: str
    stderr: Path

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        return self.request("GET", path, headers=headers)

    def request(
        self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, dict[str, str]]:
        """(status, body, headers) without following redirects."""

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):  # noqa: ANN002, ANN003
                return None

        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)


ASGI_HOST = "console.test:8766"  # the Host of the requests sent straight to the ASGI application


def asgi_scope(method: str, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The ASGI scope of one request to the console's application, from its own page (Host and
    Origin set, ``headers`` added), for tests that call the application without a server."""
    hdrs = {"host": ASGI_HOST, "origin": f"http://{ASGI_HOST}", **(headers or {})}
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in hdrs.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8766),
    }


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def setup(tmp_path: Path) -> ProxySetup:
    """A proxy-under-test's files (tests/proxy's fixture: the fake codex worker and its policy)."""
    return ProxySetup(tmp_path)


@pytest.fixture
def start_console(tmp_path: Path) -> Iterator:
    """``start_console(*args)``: `plr console ARGS --listen 127.0.0.1:FREE`, stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, host: str = "127.0.0.1") -> Console:
        port = free_port()
        err = tmp_path / f"console-{port}.txt"
        proc = subprocess.Popen(
            [sys.executable, "-m", "dsl.cli", "console", *args, "--listen", f"{host}:{port}"],
            cwd=str(ROOT),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err.open("wb"),
            env=base_env(),
        )
        procs.append(proc)
        try:
            wait_for_port(port, proc)
        except RuntimeError as e:
            raise RuntimeError(f"{e}: {err.read_text()}") from None
        deadline = time.monotonic() + 10
        while "open http" not in err.read_text() and time.monotonic() < deadline:  # hosts known once announced
            time.sleep(0.02)
        return Console(proc, f"http://127.0.0.1:{port}", err)

    yield start
    for p in procs:
        stop(p)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """One headless Chromium for the module (Debian's: Playwright's own download is unreachable)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def screenshot(page, name: str) -> Path:  # noqa: ANN001
    """Keep a screenshot of ``page`` as a test artifact (test-artifacts/console/, or $PLR_TEST_ARTIFACTS)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
