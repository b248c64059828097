"""The stdio front's own framing (dsl/proxy/stdio.py): whole frames under concurrent writers and a
slow client, and a client that stops reading ends the session instead of crashing the proxy."""

from __future__ import annotations

import json
import os
import threading

import anyio
import pytest

pytest.importorskip("mcp", reason="the proxy tests need the `mcp` SDK (pip install 'plr[test]')")

from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCNotification

from dsl.proxy import stdio

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_concurrent_large_answers_reach_a_slow_client_whole_and_once() -> None:
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    received = bytearray()

    def slow_client() -> None:
        while chunk := os.read(r_out, 7_000):  # small reads: the pipe fills, writers must wait
            received.extend(chunk)

    reader = threading.Thread(target=slow_client)
    reader.start()
    n = 120
    with os.fdopen(r_in, "rb", buffering=0) as inp, os.fdopen(w_out, "wb", buffering=0) as out:
        with anyio.fail_after(60):
            async with stdio.front_stdio(inp, out) as (_read, write):

                async def send(i: int) -> None:
                    note = JSONRPCNotification(jsonrpc="2.0", method="x/test", params={"i": i, "pad": "z" * (1000 * (i % 150))})
                    await write.send(SessionMessage(note))

                async with anyio.create_task_group() as tg:
                    for i in range(n):
                        tg.start_soon(send, i)
                os.close(w_in)  # EOF on stdin ends the front
    reader.join(timeout=30)
    frames = [json.loads(line) for line in bytes(received).split(b"\n") if line]
    assert sorted(f["params"]["i"] for f in frames) == list(range(n))
    assert all(len(f["params"]["pad"]) == 1000 * (f["params"]["i"] % 150) for f in frames)


async def test_client_that_stopped_reading_ends_the_session_cleanly() -> None:
    """Answering a broken line when nobody reads any more (EPIPE) stops reading; nothing raises."""
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    os.close(r_out)  # the client went away
    os.write(w_in, b"this is not json\n" + b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n')
    with os.fdopen(r_in, "rb", buffering=0) as inp, os.fdopen(w_out, "wb", buffering=0) as out:
        with anyio.fail_after(10):
            async with stdio.front_stdio(inp, out) as (read, _write):
                got = [m async for m in read]
    os.close(w_in)
    assert got == []  # the session ended at the first answer that could not be written
