"""The per-call fields every audit record takes, made cheaply (#20) and still what they were:
call ids unpredictable and unique (also across a fork), timestamps exact to the millisecond."""

from __future__ import annotations

import datetime as dt
import os
import re
import time

import pytest

from dsl.proxy import audit
from dsl.proxy.deciding import new_call_id


def test_call_ids_are_16_hex_digits_and_never_repeat():
    ids = [new_call_id() for _ in range(5_000)]  # several refills of the pool
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_call_ids_come_from_the_kernels_random_source(monkeypatch: pytest.MonkeyPatch):
    from dsl.proxy import deciding

    deciding._ID_POOL.clear()
    reads: list[int] = []

    def urandom(n: int) -> bytes:
        reads.append(n)
        return bytes(range(8)) * (n // 8)

    monkeypatch.setattr(deciding.os, "urandom", urandom)
    assert new_call_id() == "0001020304050607"
    assert reads == [4096]
    deciding._ID_POOL.clear()  # no predictable ids left for the tests that follow


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_hands_out_its_parents_ids():
    new_call_id()  # the pool is filled
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(w, ",".join(new_call_id() for _ in range(20)).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        child = set(f.read().split(","))
    os.waitpid(pid, 0)
    parent = {new_call_id() for _ in range(20)}
    assert len(child) == 20 and not child & parent


def test_utc_now_is_the_utc_time_to_the_millisecond():
    for _ in range(200):
        before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        text = audit.utc_now()
        after = dt.datetime.now(dt.timezone.utc)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
        at = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        assert before <= at <= after
        time.sleep(0.007)  # crosses second boundaries now and then


def test_utc_now_formats_a_new_second_afresh(monkeypatch: pytest.MonkeyPatch):
    t = [1_764_547_199_999_000_000]  # 2025-11-30T23:59:59.999Z
    monkeypatch.setattr(audit.time, "time_ns", lambda: t[0])
    assert audit.utc_now() == "2025-11-30T23:59:59.999Z"
    t[0] += 1_000_000
    assert audit.utc_now() == "2025-12-01T00:00:00.000Z"
    t[0] += 45_000_000
    assert audit.utc_now() == "2025-12-01T00:00:00.045Z"
