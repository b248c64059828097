"""Policy files are regular files of a bounded size: a FIFO, a socket or a device named like a
policy is refused at once (never waited on), an oversized file is refused like an oversized URL
source, and a refused reload keeps the old policy, says so on stderr in one escaped line, and
leaves the watcher free for the next change. Real `plr proxy` processes, real `plr` commands."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from dsl.proxy.reload import MAX_POLICY_BYTES, read_policy_bytes
from tests.conftest import ROOT, run_plr

from .conftest import CODEX_POLICY, ProxySetup, base_env, run_proxy_cli
from .helpers import text

pytestmark = pytest.mark.anyio

TIGHTER = CODEX_POLICY.replace('hide tool "purge-workspace"', 'hide tools ["purge-workspace", "list-tasks"]')
# a file name that tries to forge a line of the proxy's on its stderr
FORGED = "evil\n\x1b[2Kplr proxy: reloaded policy.plr"


def params(setup: ProxySetup, policy: Path, *extra: str) -> StdioServerParameters:
    """`plr proxy --policy POLICY` (a file or a folder) in front of the fake codex worker."""
    args = setup.proxy_args(*extra)
    args[args.index("--policy") + 1] = str(policy)
    return StdioServerParameters(
        command=sys.executable, args=args, env=base_env(FAKE_CODEX_LOG=str(setup.calls_log)), cwd=str(ROOT)
    )


async def line_starting(path: Path, prefix: str, after: int = 0) -> str:
    """The first stderr line (after the first ``after`` lines) that starts with ``prefix``."""
    while True:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for line in lines[after:]:
            if line.startswith(prefix):
                return line
        await anyio.sleep(0.05)


def oversized(path: Path) -> Path:
    """A policy that would compile (and allow everything) but is one byte over the cap."""
    head = b"default allow\n#"
    path.write_bytes(head + b"x" * (MAX_POLICY_BYTES - len(head)) + b"\n")
    assert path.stat().st_size == MAX_POLICY_BYTES + 1
    return path


def assert_one_clean_line_exit_2(proc: Any, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr_text)
    assert "Traceback" not in proc.stderr_text and "internal error" not in proc.stderr_text, proc.stderr_text
    for n in needles:
        assert n in proc.stderr_text, proc.stderr_text


async def test_a_fifo_in_the_watched_folder_does_not_hang_reload_and_a_later_tightening_applies(
    setup: ProxySetup,
) -> None:
    """The attack: a FIFO named `*.plr` in the policy folder. Reading it would wait for a writer
    for ever, in the one reload that must finish before the next begins, so a later tightening
    would never apply. It is refused at once, in one escaped stderr line; the old policy stays
    in force; once it is gone, the tightened policy written meanwhile applies."""
    folder = setup.tmp / "policies"
    folder.mkdir()
    (folder / "policy.plr").write_text(CODEX_POLICY)
    errpath = setup.tmp / "stderr.txt"
    with errpath.open("w") as errlog:
        async with Client(stdio_client(params(setup, folder, "--watch"), errlog=errlog), mode="legacy", cache=None) as c:
            with anyio.fail_after(30):
                assert not (await c.call_tool("list-tasks", {})).is_error
                await anyio.sleep(0.5)  # the watcher is up
                fifo = folder / FORGED
                os.mkfifo(fifo)
                with anyio.fail_after(15):  # without the fix: no line ever, the reload waits on the FIFO
                    refused = await line_starting(errpath, "plr proxy: policy reload failed, keeping the previous policy: ")
                assert "a FIFO (named pipe), not a regular file" in refused and "evil" in refused
                assert "\x1b" not in refused and "\\u000a\\u001b[2Kplr proxy: reloaded policy.plr" in refused
                assert not (await c.call_tool("list-tasks", {})).is_error  # the old policy decides
                new = setup.tmp / "policy.plr.new"
                new.write_text(TIGHTER)
                new.replace(folder / "policy.plr")  # an atomic save
                fifo.unlink()
                seen = len(errpath.read_text().splitlines())
                reloaded = await line_starting(errpath, "plr proxy: reloaded policy", after=seen - 1)
                assert str(folder) in reloaded
                r = await c.call_tool("list-tasks", {})
                assert r.is_error and "not allowed by policy" in text(r)
    assert setup.called_tools() == ["list-tasks", "list-tasks"]


async def test_an_oversized_policy_file_is_refused_on_reload(setup: ProxySetup) -> None:
    errpath = setup.tmp / "stderr.txt"
    with errpath.open("w") as errlog:
        async with Client(stdio_client(setup.params("--watch"), errlog=errlog), mode="legacy", cache=None) as c:
            with anyio.fail_after(30):
                assert (await c.call_tool("purge-workspace", {})).is_error
                await anyio.sleep(0.5)  # the watcher is up
                oversized(setup.tmp / "big.tmp").replace(setup.policy)
                refused = await line_starting(errpath, "plr proxy: policy reload failed")
                assert f"larger than {MAX_POLICY_BYTES} bytes" in refused and str(setup.policy) in refused
                still = await c.call_tool("purge-workspace", {})
                assert still.is_error and "not allowed by policy" in text(still)  # not `default allow`
    assert setup.called_tools() == []


def test_special_or_oversized_policy_files_refuse_the_start(setup: ProxySetup) -> None:
    """At start a policy that is not a regular file, or is too big, is no policy: exit 2 at once."""
    fifo = setup.tmp / "fifo.plr"
    os.mkfifo(fifo)
    fifo_json = setup.tmp / "fifo.json"
    os.mkfifo(fifo_json)
    folder = setup.tmp / "policies"
    folder.mkdir()
    (folder / "policy.plr").write_text(CODEX_POLICY)
    os.mkfifo(folder / "other.plr")
    big = oversized(setup.tmp / "big.plr")
    for policy, why in (
        (fifo, "a FIFO (named pipe), not a regular file"),
        (fifo_json, "a FIFO (named pipe), not a regular file"),
        (folder, "a FIFO (named pipe), not a regular file"),
        (big, f"larger than {MAX_POLICY_BYTES} bytes"),
    ):
        args = setup.proxy_args()
        args[args.index("--policy") + 1] = str(policy)
        proc = run_proxy_cli(*args[2:], timeout=20)  # without the fix: the start waits on the FIFO
        assert_one_clean_line_exit_2(proc, why, "not starting")
    assert setup.calls() == []


def test_compile_check_fmt_decompile_refuse_a_fifo_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "policy.plr"
    os.mkfifo(fifo)
    fifo_json = tmp_path / "policy.json"
    os.mkfifo(fifo_json)
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "good.plr").write_text('default deny\nallow tool "a"\n')
    os.mkfifo(folder / "pipe.plr")
    why = "a FIFO (named pipe), not a regular file: plr reads policies only from regular files"
    for args in (
        ("compile", str(fifo)),
        ("check", str(fifo)),
        ("check", str(folder)),
        ("compile", str(folder)),
        ("fmt", "--check", str(fifo)),
        ("fmt", "--check", str(folder)),
        ("decompile", str(fifo_json)),
    ):
        proc = run_plr(*args, timeout=20)  # without the fix: TimeoutExpired
        assert_one_clean_line_exit_2(proc, why)
    # the JSON report of `check` carries the error, located at the file
    proc = run_plr("check", "--format", "json", str(folder), timeout=20)
    assert proc.returncode == 2 and "pipe.plr" in proc.stdout_text and "FIFO" in proc.stdout_text


def test_compile_and_check_refuse_an_oversized_file(tmp_path: Path) -> None:
    big = oversized(tmp_path / "big.plr")
    for cmd in ("compile", "check"):
        assert_one_clean_line_exit_2(run_plr(cmd, str(big), timeout=30), f"larger than {MAX_POLICY_BYTES} bytes")


def test_the_reader_takes_regular_files_and_symlinks_to_them_only(tmp_path: Path, monkeypatch) -> None:
    import dsl.proxy.reload as reload

    good = tmp_path / "good.plr"
    good.write_text("default deny\n")
    link = tmp_path / "link.plr"
    link.symlink_to(good)
    assert read_policy_bytes(link) == b"default deny\n"
    dev = tmp_path / "dev.plr"
    dev.symlink_to("/dev/zero")  # would never end
    with pytest.raises(ValueError, match="a character device, not a regular file"):
        read_policy_bytes(dev)
    sock_path = tmp_path / "s.plr"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(ValueError, match="a socket, not a regular file"):
            read_policy_bytes(sock_path)
    with pytest.raises(ValueError, match="larger than 5 bytes"):
        read_policy_bytes(good, limit=5)
    # a file that grows after its size was checked: the bounded read still stops at the cap
    real_fstat = os.fstat
    reads: list[int] = []
    real_read = os.read

    def small_fstat(fd: int) -> Any:
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, *tuple(st)[1:6], 1, *tuple(st)[7:]))

    def counted_read(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(reload.os, "fstat", small_fstat)
    monkeypatch.setattr(reload.os, "read", counted_read)
    with pytest.raises(ValueError, match="larger than 5 bytes"):
        read_policy_bytes(good, limit=5)
    assert sum(reads) <= 6  # never more than the cap and one byte


async def test_a_reload_that_never_finishes_is_given_up_and_the_next_change_applies(tmp_path: Path, monkeypatch) -> None:
    """Whatever a file does (a stalled network mount), a reload has a deadline: it is reported and
    the watcher takes the next change."""
    import threading

    import dsl.proxy.reload as reload
    from dsl.proxy.reload import watch_policy

    path = tmp_path / "policy.plr"
    path.write_text("default deny\n")
    release = threading.Event()
    real_load = reload.load_policy_file
    first = [True]

    def stalls_once(p: str) -> Any:
        if first[0]:
            first[0] = False
            release.wait(20)  # a read that does not return
        return real_load(p)

    monkeypatch.setattr(reload, "load_policy_file", stalls_once)
    monkeypatch.setattr(reload, "RELOAD_TIMEOUT", 1.0)
    applied: list[Any] = []
    reports: list[str] = []
    stop_event = anyio.Event()
    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: watch_policy(str(path), applied.append, reports.append, stop_event=stop_event))
                await anyio.sleep(0.5)  # the watcher is up
                path.write_text('default deny\nallow tool "a"\n')
                while not any("took longer than 1 s" in r for r in reports):
                    await anyio.sleep(0.05)
                path.write_text('default deny\nallow tool "b"\n')
                while not applied:
                    await anyio.sleep(0.05)
                stop_event.set()
    finally:
        release.set()
    assert reports[0].startswith("plr proxy: policy reload failed, keeping the previous policy: ")
    assert [list(p.policy.tools) for p in applied] == [["b"]]
