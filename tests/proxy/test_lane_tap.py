"""The fast path answers its calls in the server pipe's read callback (``UpstreamLane.tap``) and
writes them to the client without waiting (``_Writer.write_now``): whatever it does not answer
must reach the SDK's reader whole, in order, unchanged; nothing may be half written."""

from __future__ import annotations

import json
import os
import select
from typing import Any

import anyio
import pytest

from dsl.proxy.lane import UpstreamLane
from dsl.proxy.stdio import _Writer


class _Reader:
    """An asyncio StreamReader's two feeding methods, recorded."""

    def __init__(self) -> None:
        self.fed: list[bytes] = []
        self.eof = False

    def feed_data(self, data: bytes) -> None:
        assert data, "never an empty feed"
        self.fed.append(bytes(data))

    def feed_eof(self) -> None:
        self.eof = True


class _Stdout:
    def __init__(self) -> None:
        self._stream = _Reader()


class _Owner:
    def __init__(self, answer: Any = True) -> None:
        self.answer = answer
        self.seen: list[Any] = []

    def finish_now(self, call: Any, message: Any) -> bool:
        self.seen.append(message)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return bool(self.answer)


class _Call:
    def __init__(self, owner: _Owner) -> None:
        self.owner = owner


def _tapped(calls: dict[int, Any] | None = None) -> tuple[UpstreamLane, _Reader, Any, Any]:
    lane = UpstreamLane()
    lane.calls = dict(calls or {})
    out = _Stdout()
    assert lane.tap(out, "utf-8")
    return lane, out._stream, out._stream.feed_data, out._stream.feed_eof


def _answer(rid: int, text: str = "ok") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}]}}).encode() + b"\n"


NOTE = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}\n'


def test_with_nothing_in_flight_whole_lines_go_straight_on() -> None:
    _, reader, feed, _ = _tapped()
    feed(NOTE + _answer(3))
    assert reader.fed == [NOTE + _answer(3)]


def test_lines_cut_across_reads_go_on_whole_and_in_order() -> None:
    _, reader, feed, eof = _tapped()
    stream = NOTE + _answer(1) + NOTE + b'{"jsonrpc":"2.0","id":9,"result":{}}'  # the last has no newline yet
    for i in range(0, len(stream), 7):
        feed(stream[i : i + 7])
    assert all(chunk.endswith(b"\n") for chunk in reader.fed)  # never part of a line
    assert b"".join(reader.fed) == NOTE + _answer(1) + NOTE
    eof()
    assert b"".join(reader.fed) == stream and reader.eof  # the unfinished line goes on before the end


def test_the_answer_to_a_fast_call_is_taken_and_only_it() -> None:
    owner = _Owner(True)
    lane, reader, feed, _ = _tapped({5: _Call(owner)})
    feed(NOTE + _answer(4) + _answer(5, "mine") + NOTE)
    assert b"".join(reader.fed) == NOTE + _answer(4) + NOTE
    assert [m.id for m in owner.seen] == [5] and owner.seen[0].result["content"][0]["text"] == "mine"
    assert 5 not in lane.calls


@pytest.mark.parametrize("answer", [False, RuntimeError("a bug")])
def test_an_answer_not_written_at_once_goes_on_to_the_task_unchanged(answer: Any) -> None:
    owner = _Owner(answer)
    lane, reader, feed, _ = _tapped({5: _Call(owner)})
    line = _answer(5, "later")
    feed(NOTE + line)
    assert b"".join(reader.fed) == NOTE + line
    assert 5 in lane.calls  # the task's lane.take finds it


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","id":5,"error":{"code":-32000,"message":"boom"}}\n',  # an error answer: the task maps it
        b'{"jsonrpc":"2.0","id":5,"\\u0072esult":{"content":[]}}\n',  # spelled otherwise: the task parses it
        b'{"jsonrpc":"2.0","id":5,"result":\n',  # not JSON-RPC at all
        b'{"jsonrpc":"2.0","id":5,"result":{"x":"\xff"}}\n',  # not UTF-8
        b'{"jsonrpc":"2.0","id":6,"method":"ping","params":{"result":1}}\n',  # the server's own request
    ],
)
def test_anything_but_a_result_of_ours_goes_on(line: bytes) -> None:
    owner = _Owner(True)
    lane, reader, feed, _ = _tapped({5: _Call(owner)})
    feed(line)
    assert reader.fed == [line]
    assert 5 in lane.calls


def test_another_encoding_is_not_tapped() -> None:
    lane = UpstreamLane()
    out = _Stdout()
    before = out._stream.feed_data
    assert not lane.tap(out, "utf-16")
    assert out._stream.feed_data == before
    assert not lane.tap(object(), "utf-8")  # not the asyncio backend's reader


# -- writing to the client without waiting ------------------------------------------------------


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.set_blocking(w, False)
    return r, w


def test_a_small_frame_is_written_whole() -> None:
    r, w = _pipe()
    try:
        writer = _Writer(w)
        assert writer.atomic
        assert writer.write_now(b'{"id":1}\n')
        assert os.read(r, 100) == b'{"id":1}\n'
    finally:
        os.close(r)
        os.close(w)


def test_a_full_pipe_takes_nothing_not_half_a_frame() -> None:
    r, w = _pipe()
    try:
        writer = _Writer(w)
        filler = 0
        while True:  # fill the pipe to its last few bytes
            try:
                filler += os.write(w, b"x" * 512)
            except BlockingIOError:
                break
        frame = b'{"jsonrpc":"2.0","id":1,"result":{}}\n'
        assert not writer.write_now(frame)
        got = b""
        while len(got) < filler:
            got += os.read(r, 65536)
        assert got == b"x" * filler  # not a byte of the frame
    finally:
        os.close(r)
        os.close(w)


def test_a_frame_a_pipe_may_cut_is_left_to_the_task() -> None:
    r, w = _pipe()
    try:
        writer = _Writer(w)
        assert not writer.write_now(b"x" * (select.PIPE_BUF + 1))
        assert writer.write_now(b"x" * (select.PIPE_BUF - 1) + b"\n")
    finally:
        os.close(r)
        os.close(w)


def test_not_while_another_frame_is_half_written() -> None:
    async def main() -> None:
        r, w = _pipe()
        try:
            writer = _Writer(w)
            async with writer.lock:  # a slow write holds it
                assert not writer.write_now(b"{}\n")
            assert writer.write_now(b"{}\n")
        finally:
            os.close(r)
            os.close(w)

    anyio.run(main)


def test_a_blocking_pipe_or_a_file_is_never_written_this_way(tmp_path: Any) -> None:
    r, w = os.pipe()  # blocking: a write could block the event loop
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        assert not _Writer(w).atomic and not _Writer(w).write_now(b"{}\n")
        assert not _Writer(fd).atomic
    finally:
        for x in (r, w, fd):
            os.close(x)


# -- the note of an answer comes before the client has it ---------------------------------------


class _Events:
    """One log of what the fast path did, in order: its notes and its writes to the client."""

    def __init__(self, takes: bool) -> None:
        self.log: list[str] = []
        self.takes = takes  # does the client's pipe take the answer at once?

    # Decisions
    def answered(self, d: Any, seconds: float, *, error: Any = None, result: Any = None) -> None:
        self.log.append("noted")

    # the stdio front's reader
    def reply_now(self, frame: bytes, rid: Any) -> bool:
        self.log.append("written" if self.takes else "refused")
        return self.takes

    async def reply_frame(self, frame: bytes, rid: Any) -> None:
        self.log.append("written later")

    # FrontSessions
    def fast_call_ended(self) -> None:
        pass


def _fast_call(events: _Events) -> tuple[Any, Any, Any]:
    from types import SimpleNamespace

    from mcp import types

    from mcp.shared.dispatcher import coerce_request_id

    from dsl.proxy.fast_calls import FastCalls, _Call as FastCall

    fast = FastCalls.__new__(FastCalls)
    fast.decisions = events
    fast.sessions = events
    fast.shared = SimpleNamespace(client=None, restarting=False)
    fast.by_front = {}
    fast.answered_now = 0
    call = FastCall(owner=fast, front=events, front_id=7, up_id=5, lane=UpstreamLane(), tool="t", version="2025-06-18", decision=object())
    fast.by_front[coerce_request_id(7)] = call
    answer = types.JSONRPCResponse(jsonrpc="2.0", id=5, result={"content": [{"type": "text", "text": "x"}], "isError": True})
    return fast, call, answer


def test_an_answer_written_at_once_is_noted_before_the_client_has_it() -> None:
    """A refund (read by other processes through a shared limit store) and the server's time (read
    by a metrics scrape) must be there by the time the client can act on the answer."""
    events = _Events(takes=True)
    fast, call, answer = _fast_call(events)
    assert fast.finish_now(call, answer)
    assert events.log == ["noted", "written"]
    assert call.done and fast.answered_now == 1 and not fast.by_front


def test_an_answer_the_pipe_refuses_is_noted_once_and_finished_by_the_task() -> None:
    events = _Events(takes=False)
    fast, call, answer = _fast_call(events)
    assert not fast.finish_now(call, answer)
    assert events.log == ["noted", "refused"] and not call.done
    anyio.run(fast.finish, call, answer)
    assert events.log == ["noted", "refused", "written later"]  # not noted twice: one refund only
    assert call.done and fast.answered_now == 0
