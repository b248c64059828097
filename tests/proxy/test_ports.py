"""``wait_for_port`` waits for the test's own server, not for whatever answers on its port: with
two workers, another worker's server can take a port ``free_port`` found free."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.proxy.conftest import free_port, listening_pids, stop, wait_for_port


def test_a_port_another_process_listens_on_is_not_taken_for_ours() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert listening_pids(port) == {os.getpid()}
        ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            with pytest.raises(RuntimeError, match="taken by another process"):
                wait_for_port(port, ours, timeout=5)
        finally:
            stop(ours)


@pytest.mark.parametrize("wrap", ["exec {}", "{}; true"], ids=["the process", "its child"])
def test_our_own_listener_is_found(wrap: str) -> None:
    port = free_port()
    server = f"{sys.executable} -m http.server --bind 127.0.0.1 {port}"
    ours = subprocess.Popen(["bash", "-c", wrap.format(server)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, ours, timeout=20)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        os.killpg(ours.pid, signal.SIGTERM)  # the child too
        ours.wait(timeout=10)
