"""The audit log, the approval queue, `plr audit` / `plr approvals`, and small proxy helpers."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dsl.state.sqlite import SqliteApprovalQueue
from dsl.proxy.audit import AuditLog, args_sha256, parse_since, read_records, redact, rotated_paths

from .conftest import run_proxy_cli


def rec(i: int, **kw) -> dict:
    base = {
        "ts": "2026-01-01T00:00:00.000Z",
        "session": "s",
        "identity": None,
        "server": "x",
        "tool": "t",
        "args_sha256": "0" * 64,
        "effect": "allow",
        "code": "allowed",
        "rule": None,
        "reason": "r",
        "policy_sha256": "1" * 64,
        "latency_us": i,
    }
    base.update(kw)
    return base


def test_audit_lines_are_whole_even_after_a_torn_write(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.write(rec(1))
    log.close()
    with open(path, "ab") as f:  # a crash mid-write: half a line, no newline
        f.write(b'{"ts": "2026-01-01T00:00:01.000Z", "tool": "hal')
    log = AuditLog(path)
    log.write(rec(2))
    log.close()
    errors: list[str] = []
    got = list(read_records([path], errors))
    assert [r["latency_us"] for r in got] == [1, 2]
    assert len(errors) == 1 and "torn" in errors[0]
    out = run_proxy_cli("audit", str(path), "--format", "json")
    assert out.returncode == 0 and len(out.stdout_text.splitlines()) == 2
    assert "skipped a line" in out.stderr_text


def test_a_write_that_fails_part_way_does_not_swallow_the_next_record(tmp_path: Path, monkeypatch) -> None:
    """Disk full in the middle of a record: that write fails (the proxy then denies the call),
    and the next record, once there is room again, is a line of its own, not glued to the torn one."""
    import errno

    import dsl.proxy.audit as audit_mod

    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.write(rec(1))
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd: int, data) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:20]))  # part of the record gets in ...
        raise OSError(errno.ENOSPC, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(audit_mod.os, "write", full_disk)
    with pytest.raises(OSError):
        log.write(rec(2))
    monkeypatch.setattr(audit_mod.os, "write", real_write)
    log.write(rec(3))
    log.close()
    errors: list[str] = []
    assert [r["latency_us"] for r in read_records([path], errors)] == [1, 3]
    assert len(errors) == 1 and "torn" in errors[0]


def test_audit_rotation_keeps_every_record(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path, max_bytes=2000, backups=50)
    for i in range(100):
        log.write(rec(i))
    log.close()
    files = rotated_paths(path)
    assert len(files) > 3 and files[-1] == path
    assert all(f.stat().st_size < 2000 + 400 for f in files)
    # each rotated file ends with the record that took it to the limit: not one record later
    assert all(2000 <= f.stat().st_size for f in files[:-1]), [f.stat().st_size for f in files]
    assert [r["latency_us"] for r in read_records(files)] == list(range(100))
    out = run_proxy_cli("audit", str(path), "--format", "json")
    assert len(out.stdout_text.splitlines()) == 100
    out = run_proxy_cli("audit", str(path), "--format", "json", "--no-rotated")
    assert len(out.stdout_text.splitlines()) < 100


def test_two_writers_sharing_a_file_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    a, b = AuditLog(path), AuditLog(path)
    big = "x" * 50_000
    for i in range(50):
        (a if i % 2 else b).write(rec(i, reason=big))
    a.close()
    b.close()
    assert sorted(r["latency_us"] for r in read_records([path])) == list(range(50))


def test_two_writers_rotating_a_shared_file_keep_every_record_near_the_limit(tmp_path: Path) -> None:
    """The size check after a write counts the size seen before it and what it added; another
    writer's record in between is counted by the next check: a file is rotated at most one
    record of the other writer late, and no record is lost."""
    path = tmp_path / "a.jsonl"
    a, b = AuditLog(path, max_bytes=3000, backups=200), AuditLog(path, max_bytes=3000, backups=200)
    for i in range(200):
        (a if i % 2 else b).write(rec(i))
    a.close()
    b.close()
    files = rotated_paths(path)
    assert len(files) > 5
    one = max(len(line) for f in files for line in f.read_bytes().splitlines(keepends=True))
    assert all(3000 <= f.stat().st_size <= 3000 + 2 * one for f in files[:-1]), [f.stat().st_size for f in files]
    assert sorted(r["latency_us"] for r in read_records(files)) == list(range(200))


def test_audit_filters(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    now = dt.datetime.now(dt.timezone.utc)
    old = (now - dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    new = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    log = AuditLog(path)
    log.write(rec(1, ts=old, tool="cancel-task", effect="deny", code="require"))
    log.write(rec(2, ts=new, tool="cancel-task", effect="deny", code="rate_limited"))
    log.write(rec(3, ts=new, tool="get-task", effect="allow", identity="ops"))
    log.close()

    def ids(*args: str) -> list[int]:
        out = run_proxy_cli("audit", str(path), "--format", "json", *args)
        assert out.returncode == 0, out.stderr_text
        return [json.loads(x)["latency_us"] for x in out.stdout_text.splitlines()]

    assert ids("--effect", "deny") == [1, 2]
    assert ids("--tool", "get-task") == [3]
    assert ids("--since", "1h") == [2, 3]
    assert ids("--code", "rate_limited", "--code", "require") == [1, 2]
    assert ids("--identity", "ops") == [3]
    text = run_proxy_cli("audit", str(path), "--effect", "deny")
    assert "cancel-task  (rate_limited)" in text.stdout_text
    assert run_proxy_cli("audit", str(tmp_path / "missing.jsonl")).returncode == 2
    assert run_proxy_cli("audit", str(path), "--since", "yesterday").returncode == 2


def test_redact_and_hash() -> None:
    args = {"q": "x", "Authorization": "Bearer z", "nested": [{"client_secret": 1, "ok": 2}], "apiKey": "k"}
    assert redact(args) == {
        "q": "x",
        "Authorization": "[REDACTED]",
        "nested": [{"client_secret": "[REDACTED]", "ok": 2}],
        "apiKey": "[REDACTED]",
    }
    assert args_sha256({"b": 1, "a": 2}) == args_sha256({"a": 2, "b": 1}) != args_sha256({"a": 2})
    assert args_sha256(None) == args_sha256({})


@given(st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=10,
))
@settings(max_examples=200, deadline=None)
def test_the_args_hash_is_sha256_of_the_canonical_text(args: Any) -> None:
    """The audit hashes with CPython's own SHA-256 where it has one (not OpenSSL's, for speed):
    the same digest as hashlib's, of the canonical text (sorted keys, no spaces, UTF-8)."""
    import hashlib

    from dsl.proxy.audit import canonical_args

    text = canonical_args({"a": args})
    assert args_sha256({"a": args}) == hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    assert text == json.dumps({"a": args}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


_json_like = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(max_size=2),
        st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, "\ud800", 10**40]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(
            st.one_of(st.text(max_size=4), st.integers(), st.floats(), st.booleans(), st.none(), st.tuples(st.integers())),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=10,
)


def _outcome(encode: Any, value: Any) -> tuple[str, str]:
    try:
        return "text", encode(value)
    except Exception as e:  # noqa: BLE001 - the error is the outcome compared
        return type(e).__name__, str(e)


@given(
    value=_json_like,
    sort_keys=st.booleans(), ensure_ascii=st.booleans(), allow_nan=st.booleans(), skipkeys=st.booleans(),
    separators=st.sampled_from([(",", ":"), (", ", ": "), None]), default=st.sampled_from([None, repr]),
)  # fmt: skip
@example(value=[float("nan")], sort_keys=False, ensure_ascii=False, allow_nan=False, skipkeys=False,
         separators=None, default=None)  # (refused both ways)
@example(value={"a": float("-inf")}, sort_keys=True, ensure_ascii=True, allow_nan=True, skipkeys=False,
         separators=None, default=None)  # (written both ways)
@example(value={(1,): 1, "b": 2}, sort_keys=False, ensure_ascii=False, allow_nan=True, skipkeys=True,
         separators=None, default=None)  # (a key JSON cannot have: skipped)
@example(value={(1,): 1}, sort_keys=False, ensure_ascii=False, allow_nan=True, skipkeys=False,
         separators=None, default=repr)  # (refused: ``default`` is for values, not keys)
@settings(max_examples=400, deadline=None)
def test_an_encoder_made_once_writes_what_the_encoder_writes(
    value: Any, sort_keys: bool, ensure_ascii: bool, allow_nan: bool, skipkeys: bool, separators: Any, default: Any
) -> None:
    """``encoding_once`` (the C encoder built once, not per call) gives the text ``encode`` gives,
    or fails as it fails (a NaN refused, a value it cannot write, keys that cannot be sorted)."""
    from dsl.proxy.audit import encoding_once

    encoder = json.JSONEncoder(
        sort_keys=sort_keys, ensure_ascii=ensure_ascii, allow_nan=allow_nan, skipkeys=skipkeys,
        separators=separators, default=default,
    )  # fmt: skip
    once = encoding_once(encoder)
    assert once != encoder.encode  # (the C encoder is there: this is what is compared; a bound method is new each time)
    assert _outcome(once, value) == _outcome(encoder.encode, value)
    assert _outcome(once, value) == _outcome(encoder.encode, value)  # (nothing kept from the last call)


def test_an_encoder_made_once_falls_back_to_encode_where_it_cannot_be_the_same() -> None:
    from dsl.proxy.audit import encoding_once

    class Mine(json.JSONEncoder):
        def encode(self, o: Any) -> str:
            return "mine"

    indenting = json.JSONEncoder(indent=2)
    assert encoding_once(indenting) == indenting.encode
    mine = Mine()
    assert encoding_once(mine)({}) == "mine"
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(RecursionError):  # (encode raises ValueError; neither writes a text)
        encoding_once(json.JSONEncoder())(looped)
    from dsl.proxy.audit import canonical_args

    assert canonical_args(looped) == repr(looped)  # the audit's fallback, as before


def test_the_args_hash_is_openssls_on_a_host_in_fips_mode() -> None:
    import hashlib
    from unittest import mock

    import _hashlib

    from dsl.proxy import audit

    assert audit._plain_sha256() is not hashlib.sha256  # (CPython's own, where it has one)
    with mock.patch.object(_hashlib, "get_fips_mode", return_value=1):
        assert audit._plain_sha256() is hashlib.sha256
    with mock.patch.object(audit, "_builtin_sha256", side_effect=ValueError("broken")):
        assert audit._plain_sha256() is hashlib.sha256


def test_parse_since() -> None:
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
    assert parse_since("90s", now) == now - dt.timedelta(seconds=90)
    assert parse_since("2d", now) == now - dt.timedelta(days=2)
    assert parse_since("2026-01-01T10:00:00Z", now) == dt.datetime(2026, 1, 1, 10, tzinfo=dt.timezone.utc)
    with pytest.raises(ValueError):
        parse_since("soon", now)


def test_queue_grant_is_consumed_once_and_bound_to_the_arguments(tmp_path: Path) -> None:
    q = SqliteApprovalQueue(tmp_path / "q.sqlite")
    assert oct(os.stat(tmp_path / "q.sqlite").st_mode & 0o777) == "0o600"
    aid = q.file(tool="cancel-task", args_text="{}", args_hash="h1", timeout=60)
    assert [a.id for a in q.list()] == [aid]
    assert q._settle(aid, "h1") is None  # pending
    assert q.answer(aid, True) == (True, "granted")
    assert q._settle(aid, "other-args") == "denied"  # a grant never covers other arguments
    assert q._settle(aid, "h1") == "denied"
    aid2 = q.file(tool="cancel-task", args_text="{}", args_hash="h2", timeout=60)
    assert q.answer(aid2, True) == (True, "granted")
    assert q._settle(aid2, "h2") == "granted"
    assert q._settle(aid2, "h2") == "denied"  # used: exactly one call
    assert q.get(aid2).status == "used"
    assert q.answer(aid2, False) == (False, "used")
    assert q.answer("nope", True) == (False, "unknown")
    aid3 = q.file(tool="t", args_text="{}", args_hash="h", timeout=0.01)
    time.sleep(0.02)
    assert q.list() == [] and q.answer(aid3, True) == (False, "expired")


def test_approvals_cli(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite"
    q = SqliteApprovalQueue(db)
    aid = q.file(
        tool="cancel-task",
        args_text='{"task_id": "t-1"}',
        args_hash="h",
        timeout=60,
        identity="ops",
        rule="p.plr:3",
        reason="a human must approve",
    )
    out = run_proxy_cli("approvals", "--db", str(db), "list")
    assert aid in out.stdout_text and 'cancel-task({"task_id": "t-1"})' in out.stdout_text
    assert "a human must approve  [p.plr:3]" in out.stdout_text
    js = json.loads(run_proxy_cli("approvals", "--db", str(db), "list", "--format", "json").stdout_text)
    assert js[0]["id"] == aid and js[0]["status"] == "pending"
    assert run_proxy_cli("approvals", "--db", str(db), "deny", aid, "--note", "no").returncode == 0
    assert q.get(aid).status == "denied" and q.get(aid).note == "no"
    assert "no pending" in run_proxy_cli("approvals", "--db", str(db), "list").stdout_text
    assert aid in run_proxy_cli("approvals", "--db", str(db), "list", "--all").stdout_text
    missing = run_proxy_cli("approvals", "--db", str(db), "grant", "feedbeef")
    assert missing.returncode == 2 and "no approval request feedbeef" in missing.stderr_text
    # the queue lives next to the audit log unless told otherwise; only the proxy creates it
    audit = tmp_path / "logs" / "audit.jsonl"
    out = run_proxy_cli("approvals", "--audit", str(audit), "list")  # no such log: a mistyped path
    assert out.returncode == 2 and "no approval queue at" in out.stderr_text
    assert not (tmp_path / "logs").exists()
    audit.parent.mkdir()
    audit.touch()  # a proxy runs with this log but has not asked for an approval yet: no queue either
    out = run_proxy_cli("approvals", "--audit", str(audit), "list")
    assert out.returncode == 2 and out.stdout_text == "" and "no approval queue at" in out.stderr_text
    assert not (tmp_path / "logs" / "approvals.sqlite").exists()
    SqliteApprovalQueue(tmp_path / "logs" / "approvals.sqlite").file(tool="t", args_text="{}", args_hash="h", timeout=60)
    assert "t({})" in run_proxy_cli("approvals", "--audit", str(audit), "list").stdout_text


def test_an_approver_sees_the_whole_call_or_is_told_what_is_hidden(tmp_path: Path) -> None:
    """A long argument list: `list` says how much it cut and where to read it all; `show` prints
    every argument (the review's "t-PRODUCTION" hidden at character 700); text the agent chose
    cannot fake a line or reverse itself on the operator's terminal."""
    from dsl.proxy.approvals import args_for_display, cut_marked

    args = {"task_id": ["y" * 700, "t-PRODUCTION"], "monkey": "banana", "api_key": "sk-1", "note": "a\u202eb\nc"}
    shown = args_for_display(args)
    # the approver sees what will run: a secret-looking key's value too (the audit log redacts it)
    assert "t-PRODUCTION" in shown and '"monkey": "banana"' in shown and '"api_key": "sk-1"' in shown
    assert cut_marked("x" * 10, 4) == "xxxx … [6 more characters not shown: decline unless you know what they are]"
    db = tmp_path / "q.sqlite"
    q = SqliteApprovalQueue(db)
    aid = q.file(tool="cancel-\u202etask", args_text=shown, args_hash="h", timeout=60, reason="why\nfake line")
    listed = run_proxy_cli("approvals", "--db", str(db), "list").stdout_text
    assert f"more characters: plr approvals show {aid}]" in listed and "t-PRODUCTION" not in listed
    assert "\u202e" not in listed and "\\u202e" in listed and "why\\u000afake line" in listed
    out = run_proxy_cli("approvals", "--db", str(db), "show", aid)
    assert out.returncode == 0, out.stderr_text
    assert '"t-PRODUCTION"' in out.stdout_text and "\u202e" not in out.stdout_text
    assert f"id:          {aid}" in out.stdout_text and "status:      pending" in out.stdout_text
    missing = run_proxy_cli("approvals", "--db", str(db), "show", "feedbeef")
    assert missing.returncode == 2 and "no approval request feedbeef" in missing.stderr_text


def test_redaction_is_by_secret_words_not_substrings() -> None:
    from dsl.proxy.audit import is_secret_key

    secret = ["api_key", "apiKey", "apikey", "x-api-key", "privateKey", "access_token", "clientsecret",
              "Authorization", "auth", "AUTH_TOKEN", "sessionId", "SESSIONID", "password", "db_pass", "Cookie"]  # fmt: skip
    plain = ["monkey", "author", "keyboard", "passenger", "private", "note", "keys_count", "authority"]
    assert [k for k in secret if not is_secret_key(k)] == []
    assert [k for k in plain if is_secret_key(k)] == []


def test_bad_client_lines_get_the_right_error() -> None:
    pytest.importorskip("mcp")
    from dsl.proxy.stdio import error_for_bad_line

    assert error_for_bad_line(b"   \n") is None
    assert error_for_bad_line(b"nope").error.code == -32700
    e = error_for_bad_line(b'{"jsonrpc": "2.0", "id": 3, "method": 1}')
    assert (e.id, e.error.code) == (3, -32600)
    assert error_for_bad_line(b'{"jsonrpc": "2.0", "id": true, "method": "x"}').id is None
    assert error_for_bad_line(b'{"jsonrpc": "1.0", "method": "x"}') is None  # a notification: never answered
    assert error_for_bad_line(b'{"jsonrpc": "2.0", "id": 4, "result": 5, "error": 1}') is None  # a response
    assert error_for_bad_line(b"[]").error.code == -32600


def test_bearer_tokens() -> None:
    from dsl.proxy.http import identity_for_header

    tokens = {"abc": "ops", "xyz": "dev"}
    assert identity_for_header(tokens, "Bearer abc") == "ops"
    assert identity_for_header(tokens, "bearer xyz") == "dev"
    assert identity_for_header(tokens, "Bearer abcd") is None
    assert identity_for_header(tokens, "Basic abc") is None
    assert identity_for_header(tokens, None) is None


def test_proxy_usage_errors(tmp_path: Path) -> None:
    p = tmp_path / "p.plr"
    p.write_text("default allow\n")
    both = run_proxy_cli("--policy", str(p), "--upstream", "http://127.0.0.1:1/mcp", "--", "x")
    assert both.returncode == 2 and "either as a command" in both.stderr_text
    neither = run_proxy_cli("--policy", str(p))
    assert neither.returncode == 2
    bad_listen = run_proxy_cli("--policy", str(p), "--listen", "nohost", "--", "x")
    assert bad_listen.returncode == 2 and "HOST:PORT" in bad_listen.stderr_text
    tokens_stdio = run_proxy_cli("--policy", str(p), "--auth-tokens", str(p), "--", "x")
    assert tokens_stdio.returncode == 2 and "--listen" in tokens_stdio.stderr_text
    assert "plr proxy --policy policy.plr -- npx" in run_proxy_cli("--help").stdout_text


@pytest.mark.anyio
async def test_front_stdio_answers_overlong_and_broken_lines(monkeypatch, tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    import anyio

    from dsl.proxy import stdio

    monkeypatch.setattr(stdio, "MAX_LINE", 1000)
    r_in, w_in = os.pipe()
    out_path = tmp_path / "out.jsonl"
    ok = b'{"jsonrpc": "2.0", "id": 5, "method": "ping"}\n'
    os.write(w_in, b"x" * 3000 + b"\n" + b"nope\n" + b"y" * 1500 + ok)  # overlong, bad, overlong + next
    os.write(w_in, ok)
    os.close(w_in)
    with open(out_path, "wb", buffering=0) as out, os.fdopen(r_in, "rb") as inp:
        with anyio.fail_after(10):
            async with stdio.front_stdio(inp, out) as (read, write):
                got = [m async for m in read]
                await write.aclose()
    lines = [json.loads(x) for x in out_path.read_text().splitlines()]
    assert [x["error"]["code"] for x in lines] == [-32700, -32700, -32700]
    assert "too large" in lines[0]["error"]["message"]
    assert [m.message.id for m in got] == [5]  # the line glued to an overlong one is dropped with it


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_approvals_never_create_a_queue_and_refuse_a_named_one_that_is_missing(tmp_path: Path) -> None:
    """Only the proxy (the writer) creates the queue: a mistyped --db is an error, not an empty queue."""
    from .conftest import base_env

    for db in (tmp_path / "nodir" / "q.sqlite", tmp_path / "q.sqlite"):
        for args in (("list",), ("list", "--format", "json"), ("show", "feedbeef"), ("grant", "feedbeef")):
            out = run_proxy_cli("approvals", "--db", str(db), *args)
            assert out.returncode == 2, (args, out.stdout_text, out.stderr_text)
            assert f"no approval queue at {db}" in out.stderr_text and "Traceback" not in out.stderr_text
            assert out.stdout_text == ""
        out = run_proxy_cli("approvals", "list", env=base_env(PLR_APPROVALS_DB=str(db)))
        assert out.returncode == 2 and "no approval queue at" in out.stderr_text
    assert list(tmp_path.iterdir()) == []
    # the default place, before any proxy asked: no queue either (exit 2, never an empty list), and
    # still nothing is created
    env = base_env(XDG_STATE_HOME=str(tmp_path / "state"))
    for args in (("list",), ("list", "--format", "json"), ("grant", "feedbeef")):
        out = run_proxy_cli("approvals", *args, env=env)
        assert out.returncode == 2 and out.stdout_text == "", (args, out.stdout_text)
        assert f"no approval queue at {tmp_path / 'state' / 'plr' / 'approvals.sqlite'}" in out.stderr_text
    assert not (tmp_path / "state").exists()


def test_approvals_on_a_file_that_is_not_a_queue(tmp_path: Path) -> None:
    db = tmp_path / "garbage.sqlite"
    db.write_bytes(b"this is not an SQLite database, it is just text\n" * 20)
    before = db.read_bytes()
    for args in (("list",), ("show", "feedbeef"), ("deny", "feedbeef")):
        out = run_proxy_cli("approvals", "--db", str(db), *args)
        assert out.returncode == 2, out.stderr_text
        assert "not an SQLite database" in out.stderr_text and str(db) in out.stderr_text
        assert "internal error" not in out.stderr_text and "Traceback" not in out.stderr_text
    assert db.read_bytes() == before


def test_audit_since_too_far_back_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps(rec(1)) + "\n")
    for since in ("99999999999d", "999999999999999w"):
        out = run_proxy_cli("audit", str(path), "--since", since)
        assert out.returncode == 2 and "--since" in out.stderr_text, out.stderr_text
        assert "internal error" not in out.stderr_text and "Traceback" not in out.stderr_text
    with pytest.raises(ValueError):
        parse_since("99999999999d")
    # a record whose ts is junk or relative is skipped by --since, not read as "two days ago"
    path.write_text(json.dumps(rec(1, ts="2d")) + "\n" + json.dumps(rec(2, ts="99999999999d")) + "\n")
    out = run_proxy_cli("audit", str(path), "--since", "1h", "--format", "json")
    assert out.returncode == 0 and out.stdout_text == ""


def test_audit_record_with_a_lone_surrogate_is_escaped_and_later_records_survive(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text(
        '{"ts":"2026-11-25T12:00:00Z","tool":"a\\ud800b","effect":"deny"}\n'
        + json.dumps(rec(2, tool="later")) + "\n"
    )
    out = run_proxy_cli("audit", str(path))
    assert out.returncode == 0, out.stderr_text
    assert "a\\ud800b" in out.stdout_text and "later" in out.stdout_text
    out = run_proxy_cli("audit", str(path), "--format", "json")
    assert out.returncode == 0, out.stderr_text
    lines = [json.loads(line) for line in out.stdout.decode("utf-8").splitlines()]  # valid UTF-8, valid JSON
    assert [r["tool"] for r in lines] == ["a\ud800b", "later"]  # the same value, escaped in the text


_field = st.one_of(st.none(), st.text(), st.text(st.characters(categories=["Cs", "Cc", "Zl", "Zp", "Po"]), max_size=5))


@given(
    session=_field, identity=_field, server=_field, tool=_field, effect=_field, code=_field, rule=_field,
    reason=_field, policy=_field, call=_field, latency=st.one_of(st.integers(), st.booleans(), st.floats(), st.none()),
    odd=st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2), st.binary(max_size=2)),
    where=st.sampled_from(["session", "identity", "server", "tool", "effect", "code", "rule", "reason", "policy", "call"]),
)  # fmt: skip
@settings(max_examples=400, deadline=None)
def test_a_record_written_as_text_is_the_encoders_record(
    session: Any, identity: Any, server: Any, tool: Any, effect: Any, code: Any, rule: Any, reason: Any,
    policy: Any, call: Any, latency: Any, odd: Any, where: str,
) -> None:
    """``record_text`` (a decision record written without encoding the whole dict, its session's
    part once) is the text the encoder writes of the same record, or None where it cannot be."""
    from dsl.proxy.audit import _RECORD, record_head, record_text

    if odd is not None:  # a value that is not a str or None in one place or another
        values = {"session": session, "identity": identity, "server": server, "tool": tool, "effect": effect,
                  "code": code, "rule": rule, "reason": reason, "policy": policy, "call": call}  # fmt: skip
        values[where] = odd
        session, identity, server, tool, effect, code, rule, reason, policy, call = values.values()
    rec = {"ts": "2026-12-07T04:00:00.123Z", "session": session, "identity": identity, "server": server,
           "tool": tool, "args_sha256": "ab" * 32, "effect": effect, "code": code, "rule": rule, "reason": reason,
           "policy_sha256": policy, "latency_us": latency, "call": call}  # fmt: skip
    head = record_head(session, identity, server)
    text = None if head is None else record_text(
        rec["ts"], head, tool, rec["args_sha256"], effect, code, rule, reason, policy, latency, call
    )
    plain = odd is None and latency.__class__ is int
    assert (text is not None) == plain
    if text is not None:
        assert text == _RECORD.encode(rec)


def test_a_decision_record_reads_the_same_either_way(tmp_path: Path) -> None:
    """What ``Decisions.record`` writes as text is, line for line, what it writes of the dict (with
    an optional field, or a value that is not a str); a change of session, identity, server or
    policy is in the next record."""
    from dsl.engine import Decision
    from dsl.proxy.deciding import Decisions, ToolCall

    d = Decisions.__new__(Decisions)  # (only what ``record`` reads)
    d.audit = AuditLog(tmp_path / "a.jsonl")
    d.server_name = "srv"
    d.log_args = False
    d._heads = {}
    d.loaded = type("Loaded", (), {"sha256": "p1"})()
    allow = Decision("allow", "allowed", "allow\u2028\"x\"", rule='allow tool "echo"')
    calls = [ToolCall("c1", "echo", {"a": 1}, "s1", None), ToolCall("c2", "echo\u2029", {}, "s1", "alice"),
             ToolCall("c3", "echo", {}, "s2", "bob")]  # fmt: skip
    for c in calls:
        d.record(c, allow, 7)
    d.server_name = "srv2"
    d.loaded = type("Loaded", (), {"sha256": "p2"})()
    d.record(calls[0], allow, 8, effect="deny")
    d.record(calls[0], Decision("deny", "rate_limited", "slow down", retry_after=1.5), 9)  # the dict
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == 5 and "\u2028" not in "".join(lines) and "\\u2028" in lines[0]
    recs = [json.loads(x) for x in lines]
    assert [(r["session"], r["identity"], r["server"], r["policy_sha256"], r["effect"]) for r in recs] == [
        ("s1", None, "srv", "p1", "allow"), ("s1", "alice", "srv", "p1", "allow"), ("s2", "bob", "srv", "p1", "allow"),
        ("s1", None, "srv2", "p2", "deny"), ("s1", None, "srv2", "p2", "deny"),
    ]  # fmt: skip
    assert recs[4]["retry_after"] == 1.5 and list(recs[4])[:13] == list(recs[0])
    assert recs[1]["tool"] == "echo\u2029" and recs[1]["reason"] == "allow\u2028\"x\""

    # byte for byte: the same records, at the same time, with the text path and with the dict
    from unittest import mock

    from dsl.proxy import deciding

    written = []
    for path, texts in (("text.jsonl", True), ("dict.jsonl", False)):
        d.audit = AuditLog(tmp_path / path)
        d._heads = {}
        with mock.patch.object(deciding, "utc_now", return_value="2026-12-07T04:00:00.123Z"), \
             mock.patch.object(deciding, "record_text", wraps=deciding.record_text if texts else lambda *a: None) as made:  # fmt: skip
            for c in calls:
                d.record(c, allow, 7)
        assert made.call_count == 3
        written.append((tmp_path / path).read_bytes())
    assert written[0] == written[1]


def test_only_a_records_own_text_is_written_as_it_is(tmp_path: Path) -> None:
    """``AuditLog.write`` writes ``record_text``'s text as it is; any other str is a JSON string,
    so a caller that hands it one by mistake can never split a line or forge a record."""
    from dsl.proxy.audit import RecordText

    log = AuditLog(tmp_path / "a.jsonl")
    log.write(RecordText('{"ts":"t","event":"x"}'))
    log.write('{"forged":1}\n{"forged":2}')
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"ts": "t", "event": "x"}, '{"forged":1}\n{"forged":2}']
