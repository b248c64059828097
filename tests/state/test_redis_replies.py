"""The Redis limit store admits a call only on its scripts' explicit word: any other answer (a
Redis-speaking proxy or a broken server replying nil, 0, an empty list or an empty string)
denies the call with ``state_unavailable``, never reads as room left."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from dsl.compiler import compile_source
from dsl.engine import Engine
from dsl.state.redis import RedisState


def _command(buf: bytes) -> tuple[list[bytes] | None, bytes]:
    """One RESP array command off the front of ``buf`` (None: not all of it is there yet)."""
    if not buf.startswith(b"*") or b"\r\n" not in buf:
        return None, buf
    j = buf.index(b"\r\n")
    i, args = j + 2, []
    for _ in range(int(buf[1:j])):
        if b"\r\n" not in buf[i:]:
            return None, buf
        j = buf.index(b"\r\n", i)
        start = j + 2
        end = start + int(buf[i + 1 : j])
        if len(buf) < end + 2:
            return None, buf
        args.append(buf[start:end])
        i = end + 2
    return args, buf[i:]


@pytest.fixture
def odd_redis() -> Iterator[list[bytes]]:
    """A server that speaks the handshake and answers every script with ``reply[0]``."""
    reply = [b"$-1\r\n"]
    srv = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def serve(c: socket.socket) -> None:
        try:
            answer(c)
        except OSError:  # closed at the end of the test
            pass

    def answer(c: socket.socket) -> None:
        buf = b""
        while data := c.recv(65536):
            buf += data
            while (found := _command(buf))[0] is not None:
                args, buf = found
                cmd = args[0].upper()
                if cmd in (b"EVALSHA", b"EVAL"):
                    c.sendall(reply[0])
                elif cmd == b"PING":
                    c.sendall(b"+PONG\r\n")
                elif cmd == b"HELLO":
                    c.sendall(b"%1\r\n$5\r\nproto\r\n:3\r\n")
                elif cmd == b"SCRIPT":
                    c.sendall(b"$40\r\n" + b"0" * 40 + b"\r\n")
                else:
                    c.sendall(b"+OK\r\n")

    def accept() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    reply.append(str(srv.getsockname()[1]).encode())
    yield reply
    srv.close()
    for c in conns:
        c.close()


REPLIES = {
    "nil": b"$-1\r\n",
    "integer 0": b":0\r\n",
    "empty list": b"*0\r\n",
    "empty string": b"$0\r\n\r\n",
    "OK": b"+OK\r\n",
    "a list of one": b"*1\r\n:1\r\n",
    "an index out of range": b"*2\r\n$3\r\n0.5\r\n:7\r\n",
    "a negative wait": b"*2\r\n$2\r\n-1\r\n:0\r\n",
    "another word": b"$5\r\nadmit\r\n",
}


@pytest.mark.parametrize("limit", ["limit all tools to 2 per hour per global", "limit all tools to 2 per hour per global refund on error"])
@pytest.mark.parametrize("reply", list(REPLIES.values()), ids=list(REPLIES))
def test_an_answer_that_is_not_the_scripts_word_denies(odd_redis: list[bytes], reply: bytes, limit: str) -> None:
    odd_redis[0] = reply
    state = RedisState(f"redis://127.0.0.1:{int(odd_redis[1])}/0")
    engine = Engine(compile_source(f"default allow\n{limit}\n"), store=state.limit_store)
    decisions = [engine.decide("t", {}) for _ in range(3)]
    assert [(d.effect, d.code) for d in decisions] == [("deny", "state_unavailable")] * 3, decisions[0].reason


@pytest.mark.parametrize("reply", [b"$8\r\nadmitted\r\n", b"+admitted\r\n"], ids=["bulk", "status"])
def test_the_scripts_word_admits(odd_redis: list[bytes], reply: bytes) -> None:
    """The control: the same server answering the word admits, so the refusals above are the
    reply's doing, not the fake server's."""
    odd_redis[0] = reply
    state = RedisState(f"redis://127.0.0.1:{int(odd_redis[1])}/0")
    engine = Engine(compile_source("default allow\nlimit all tools to 2 per hour per global\n"), store=state.limit_store)
    assert engine.decide("t", {}).effect == "allow"
