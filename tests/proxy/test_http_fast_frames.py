"""The HTTP fast path (dsl/proxy/http_fast.py) builds the upstream request's body and the client's
answer without the SDK's models: what it builds must be what the models build, for every name,
arguments and result a client or server can send (the differential test, tests/proxy/
test_http_fast.py, compares the two paths end to end on fewer of them)."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace
from typing import Any

import mcp_types as types
import pydantic_core
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp.client.session import _clamp_inbound_ttl, _later_revision_fields
from mcp.shared.dispatcher import coerce_request_id
from mcp.server.streamable_http import EventMessage, StreamableHTTPServerTransport
from mcp_types import methods

from dsl.proxy.forwarding import RAW
from dsl.proxy.http_fast import (
    HttpFastCalls,
    _frame_dump,
    _json_native,
    _request_dump,
    _result_event,
    request_dump_of_models,
)

from .test_fast_frames import ERA_2025, _json, _results, _text


def _through_the_front(name: Any, arguments: Any) -> dict[str, Any]:
    """The params as the HTTP fast path has them: the POST body parsed (``pydantic_core.from_json``)
    and validated by the SDK's adapter."""
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}},
        allow_nan=True,
        ensure_ascii=False,
    )
    raw = pydantic_core.from_json(body.encode("utf-8", "surrogatepass"))
    return types.jsonrpc_message_adapter.validate_python(raw, by_name=False).params


def _models(up_id: int, name: str, arguments: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The body the SDK path hands ``httpx`` (``json=``): ``ClientSession.send_request`` then
    ``JSONRPCDispatcher.send_raw_request``."""
    data = request_dump_of_models(name, arguments)
    params = dict(data["params"])
    if meta:
        params["_meta"] = meta
    frame = types.JSONRPCRequest(jsonrpc="2.0", id=up_id, method="tools/call", params=params)
    return frame.model_dump(by_alias=True, mode="json", exclude_unset=True)


def _fast(up_id: int, name: str, arguments: Any, meta: dict[str, Any]) -> dict[str, Any]:
    data = _request_dump(name, arguments)
    params = dict(data["params"])
    if meta:
        params["_meta"] = meta
    return _frame_dump(up_id, params)


def _as_httpx_writes_it(body: dict[str, Any]) -> str:
    # httpx's ``json=``: json.dumps, ensure_ascii off, compact, NaN refused (here: told as NaN)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=True)


_METAS = ({}, {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(name=_text, arguments=st.one_of(st.none(), st.dictionaries(_text, _json, max_size=5)), up_id=st.integers(0, 2**40))
def test_the_upstream_body_is_the_models_body(name: str, arguments: Any, up_id: int) -> None:
    try:
        p = _through_the_front(name, arguments)
    except Exception:  # noqa: BLE001 - the front answers such a body itself: never forwarded
        return
    for meta in _METAS:
        fast, models = _fast(up_id, p["name"], p.get("arguments"), meta), _models(up_id, p["name"], p.get("arguments"), meta)
        assert _as_httpx_writes_it(fast) == _as_httpx_writes_it(models)


def test_the_upstream_body_edges() -> None:
    """A float that is not finite (NaN, Infinity, 1e400, deep in the arguments too) becomes None
    as the models make it; None values stay (the dump drops None fields, not None values); big
    integers whole; no arguments: no ``arguments``."""
    p = _through_the_front("t", {"a": float("nan"), "b": [1, {"c": float("inf")}], "d": 10**30, "e": None})
    assert math.isnan(p["arguments"]["a"])
    assert not _json_native(p["arguments"])
    for meta in _METAS:
        assert _as_httpx_writes_it(_fast(5, "t", p["arguments"], meta)) == _as_httpx_writes_it(_models(5, "t", p["arguments"], meta))
    assert _fast(5, "t", p["arguments"], {})["params"]["arguments"] == {"a": None, "b": [1, {"c": None}], "d": 10**30, "e": None}
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"x":1e400,"y":[-1e999]}}}'
    p = types.jsonrpc_message_adapter.validate_python(pydantic_core.from_json(body), by_name=False).params
    assert _fast(1, "t", p["arguments"], {}) == _models(1, "t", p["arguments"], {})
    assert _fast(1, "t", p["arguments"], {})["params"]["arguments"] == {"x": None, "y": [None]}
    assert _fast(2, "t", None, {}) == _models(2, "t", None, {}) == {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "t"}}
    assert _json_native({"a": [1, 2.5, "x", None, True, {"b": -0.0}]})
    assert not _json_native({"a": (1,)}) and not _json_native({1: 2}) and not _json_native({"a": b"x"})
    deep: Any = {}
    for _ in range(5000):  # deeper than Python recurses: the models say what becomes of it
        deep = {"d": deep}
    with pytest.raises(ValueError) as by_models:
        request_dump_of_models("t", deep)
    with pytest.raises(ValueError) as by_fast:
        _request_dump("t", deep)
    assert str(by_fast.value) == str(by_models.value)


def _event_of_models(rid: Any, result: dict[str, Any]) -> bytes:
    """``HttpFastCalls._event`` of the answer ``_result_message`` makes (the SDK transport's event)."""
    transport = SimpleNamespace(_create_event_data=lambda m: StreamableHTTPServerTransport._create_event_data(None, m))  # type: ignore[arg-type]
    assert EventMessage  # (what _event wraps the message in)
    return HttpFastCalls._event(transport, types.JSONRPCResponse(jsonrpc="2.0", id=rid, result=result))


@pytest.mark.parametrize("rid", [0, -1, 2**53 + 1, "", "1", "é\u2028", "a\nb", "x" * 300])
@given(result=st.dictionaries(_text, _json, max_size=4))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_the_answer_event_is_the_models_event(rid: Any, result: dict[str, Any]) -> None:
    try:
        expected = _event_of_models(rid, result)
    except Exception as e:  # noqa: BLE001 - what the models cannot write, the shortcut cannot either
        with pytest.raises(type(e)):
            _result_event(rid, result)
        return
    assert _result_event(rid, result) == expected


def _two_steps(server: str, client: str, raw: dict[str, Any]) -> tuple[str, Any]:
    """What the HTTP fast path did before: validate for the server's version, drop the later
    revisions' keys, copy (``RAW``), shape for the client's version (``_result_message``)."""
    raw = copy.deepcopy(raw)
    _clamp_inbound_ttl(raw)
    try:
        methods.validate_server_result("tools/call", server, raw)
    except Exception as e:  # noqa: BLE001
        return "invalid", type(e)
    result = RAW.validate_python({k: v for k, v in raw.items() if k not in _later_revision_fields("tools/call", server)})
    if result.get("resultType") == "input_required":
        return "input_required", None
    try:
        shaped = methods.serialize_server_result("tools/call", client, result)
    except Exception as e:  # noqa: BLE001
        return "unshapeable", type(e)
    return "shaped", (result, shaped)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_results, server=st.sampled_from(ERA_2025), client=st.sampled_from(ERA_2025))
def test_the_upstream_result_is_the_two_steps(raw: dict[str, Any], server: str, client: str) -> None:
    from mcp.shared.exceptions import MCPError

    expected = _two_steps(server, client, raw)
    session = SimpleNamespace(_negotiated_version=server)
    try:
        result, shaped = HttpFastCalls._upstream_result(session, copy.deepcopy(raw), client)
    except MCPError:
        assert expected == ("input_required", None)
        return
    except Exception as e:  # noqa: BLE001
        assert expected == ("invalid", type(e))
        return
    assert shaped is not None  # every 2025-era pair has one model
    assert expected == ("shaped", (result, shaped))
    assert list(shaped) == list(expected[1][1])  # the same keys in the same order: the same bytes
    assert _result_event(3, shaped) == _event_of_models(3, expected[1][1])


def test_a_result_of_another_model_is_shaped_by_the_runner() -> None:
    """Where the client's model is not the server's (another era), ``_upstream_result`` leaves the
    shaping to ``_result_message``, as before."""
    session = SimpleNamespace(_negotiated_version="2025-11-25")
    result, shaped = HttpFastCalls._upstream_result(session, {"content": [{"type": "text", "text": "x"}]}, "2026-07-28")
    assert shaped is None and result == {"content": [{"type": "text", "text": "x"}]}


def _request_seen(request: Any) -> tuple[Any, ...]:
    """All of an ``httpx`` request a hook or the transport reads."""
    return (request.method, str(request.url), request.url.raw_path, request.headers.raw, request.read(),
            request.extensions, type(request.stream), request.headers.encoding)  # fmt: skip


@pytest.mark.parametrize(
    "client_kw",
    [
        {},
        {"headers": {"User-Agent": "mcp", "X-Extra": "1", "Accept": "*/*"}},
        {"headers": [("X-Twice", "a"), ("x-twice", "b")], "timeout": 7.5},
        {"cookies": {"c": "1"}},  # a jar: httpx builds each request
        {"params": {"q": "1"}},
    ],
)
def test_a_built_post_is_the_one_httpx_builds(client_kw: dict[str, Any]) -> None:
    """``_build_post`` reuses the header list of the first request to a URL with the same headers:
    every later request is still the one ``client.build_request`` makes (headers in their order
    and spelling, ``Content-Length`` of this body, the body as httpx encodes it)."""
    import httpx2

    from dsl.proxy.http_fast import _build_post
    from dsl.proxy.raw_transport import RawTransport

    client = httpx2.AsyncClient(transport=RawTransport(), **client_kw)
    bodies = [{"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "é" * i, "arguments": {"t": "x" * (i * 37)}}}
              for i in range(6)]  # fmt: skip
    header_sets = [
        {"accept": "application/json, text/event-stream", "content-type": "application/json"},
        {"accept": "application/json, text/event-stream", "content-type": "application/json", "mcp-session-id": "s1",
         "mcp-protocol-version": "2025-11-25"},  # fmt: skip
        {"Accept": "text/plain", "content-type": "application/json", "mcp-session-id": "s2", "Content-Length": "3"},
    ]
    for url in ("http://127.0.0.1:9/mcp", "http://[::1]:8080/a/b?x=1", "http://example.com/mcp"):
        for headers in header_sets:
            for body in bodies:
                assert _request_seen(_build_post(client, url, body, headers)) == _request_seen(
                    client.build_request("POST", url, json=body, headers=headers)
                )
    assert client._transport.heads or client_kw.get("cookies") or client_kw.get("params")
    client.cookies.set("late", "1")  # a cookie set later: httpx builds them again
    body = bodies[1]
    url, headers = "http://127.0.0.1:9/mcp", header_sets[1]
    assert _request_seen(_build_post(client, url, body, headers)) == _request_seen(
        client.build_request("POST", url, json=body, headers=headers)
    )
    assert b"late=1" in dict(_build_post(client, url, body, headers).headers.raw)[b"Cookie"]


def _wire_bytes(request: Any) -> bytes:
    """What ``RawTransport.handle_async_request`` writes for ``request``: sent to a transport whose
    connection only records it."""
    import asyncio

    from dsl.proxy.raw_transport import RawTransport

    transport = RawTransport()
    written: list[bytes] = []

    async def send(key: Any, data: bytes, timeouts: Any, *, head_only: bool = False) -> Any:
        written.append(data)
        raise ConnectionError("recorded")

    transport.send = send  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        asyncio.run(transport.handle_async_request(request))
    return written[0]


@pytest.mark.parametrize(
    "client_kw",
    [{}, {"headers": {"User-Agent": "mcp", "X-Extra": "1", "Accept": "*/*"}}, {"timeout": 7.5}],
)
def test_a_direct_post_is_the_bytes_httpx_would_have_written(client_kw: dict[str, Any]) -> None:
    """``_direct`` writes a request without ``httpx`` once ``_build_post`` kept its head: the same
    bytes ``RawTransport`` writes for the request ``client.build_request`` makes (for every body,
    URL and header set, non-ASCII names included), to the URL's host and port, with the client's
    timeouts."""
    import httpx2

    from dsl.proxy.http_fast import UpstreamWire, _build_post, _direct
    from dsl.proxy.raw_transport import RawTransport

    client = httpx2.AsyncClient(transport=RawTransport(), **client_kw)
    client.event_hooks = {"request": [], "response": [UpstreamWire("http://x/mcp").on_response]}
    bodies = [{"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "é" * i, "arguments": {"t": "x" * (i * 37)}}}
              for i in range(6)]  # fmt: skip
    header_sets = [
        {"accept": "application/json, text/event-stream", "content-type": "application/json", "mcp-session-id": "s1",
         "mcp-protocol-version": "2025-11-25"},  # fmt: skip
        {"Accept": "text/plain", "content-type": "application/json", "mcp-session-id": "s2", "Content-Length": "3"},
    ]
    for url, key in (("http://127.0.0.1:9/mcp", (b"127.0.0.1", 9)), ("http://[::1]:8080/a/b?x=1", (b"::1", 8080)),
                     ("http://example.com/mcp", (b"example.com", 80))):  # fmt: skip
        for headers in header_sets:
            assert _direct(client, url, bodies[0], headers) is None  # no head kept yet: httpx builds it
            _build_post(client, url, bodies[0], headers)
            for body in bodies:
                direct = _direct(client, url, body, headers)
                if "Content-Length" in headers:  # a length of the caller's: httpx builds every one
                    assert direct is None
                    continue
                assert direct is not None
                assert direct == (key, _wire_bytes(client.build_request("POST", url, json=body, headers=headers)),
                                  client.timeout.as_dict())  # fmt: skip


def test_a_direct_post_is_refused_where_httpx_would_do_more() -> None:
    """A cookie in the jar, query parameters, a request hook or a response hook not marked
    ``inert_for_calls``: ``httpx`` sends it (``_direct`` gives None)."""
    import httpx2

    from dsl.proxy.http_fast import UpstreamWire, _build_post, _direct
    from dsl.proxy.raw_transport import RawTransport

    url, headers, body = "http://127.0.0.1:9/mcp", {"mcp-session-id": "s1"}, {"jsonrpc": "2.0", "id": 1}

    async def other(_: Any) -> None:
        pass

    own = UpstreamWire(url).on_response
    for kw, hooks, cookie in (
        ({}, {"request": [], "response": [own]}, False),  # (the one it takes)
        ({"params": {"q": "1"}}, {"request": [], "response": [own]}, False),
        ({}, {"request": [other], "response": [own]}, False),
        ({}, {"request": [], "response": [own, other]}, False),
        ({}, {"request": [], "response": [own]}, True),
    ):
        client = httpx2.AsyncClient(transport=RawTransport(), **kw)
        client.event_hooks = hooks
        _build_post(client, url, body, headers)
        if cookie:
            client.cookies.set("c", "1")
        taken = _direct(client, url, body, headers) is not None
        assert taken == (not kw and hooks["request"] == [] and hooks["response"] == [own] and not cookie), (kw, hooks, cookie)


def test_only_a_plain_json_answer_is_read_without_httpx() -> None:
    """``_plain_json``: a 200 with one JSON Content-Type and nothing httpx would act on; any other
    status, a second Content-Type, an encoding or a cookie to keep: httpx reads it."""
    from dsl.proxy.http_fast import _plain_json
    from dsl.proxy.raw_transport import _Answer

    def answer(status: int, *headers: tuple[bytes, bytes]) -> Any:
        a = _Answer()
        a.status, a.headers = status, list(headers)
        return a

    json_ = (b"Content-Type", b"application/json; charset=utf-8")
    assert _plain_json(answer(200, json_, (b"content-length", b"2")))
    assert _plain_json(answer(200, (b"content-type", b"APPLICATION/JSON")))
    for a in (
        answer(201, json_), answer(404, json_), answer(307, json_, (b"location", b"/x")),
        answer(200), answer(200, (b"content-type", b"text/event-stream")),
        answer(200, json_, json_), answer(200, json_, (b"content-encoding", b"gzip")),
        answer(200, json_, (b"Set-Cookie", b"a=1")), answer(200, json_, (b"set-cookie2", b"a=1")),
    ):  # fmt: skip
        assert not _plain_json(a), a.headers


def test_run_now_ends_a_coroutine_that_does_not_wait_and_steps_one_that_does() -> None:
    """``_run_now`` (answers written from a callback): a send that does not wait ends before it
    returns; one that waits on a future (or yields bare) goes on as a task would step it; one that
    fails is reported (False), never raised into the callback."""
    import asyncio

    from dsl.proxy.http_fast import _run_now

    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[str] = []

        async def quick() -> None:
            seen.append("quick")

        assert _run_now(quick()) is True and seen == ["quick"]
        fut = loop.create_future()

        async def waits() -> None:
            seen.append(await fut)
            await asyncio.sleep(0)  # (a bare yield)
            seen.append("after")

        assert _run_now(waits()) is True and seen == ["quick"]
        fut.set_result("got")
        for _ in range(5):
            await asyncio.sleep(0)
        assert seen == ["quick", "got", "after"]

        async def fails() -> None:
            raise RuntimeError("the transport is gone")

        assert _run_now(fails()) is False

    asyncio.run(main())


# -- the held POST's one parse (``RequestIdGate.begin``) -------------------------------------------


def _held(body: bytes) -> Any:
    from dsl.proxy.http import RequestIdGate

    return RequestIdGate(None).begin({"headers": [(b"mcp-session-id", b"s1")]}, body)


# text with lone surrogates (which only ``json.loads`` reads, escaped), among others
_odd_text = st.one_of(_text, st.text(st.characters(categories=["Cs", "Lu", "Nd", "Zs"]), max_size=4))


@given(body=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _odd_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_odd_text, inner, max_size=3)),
    max_leaves=8,
), rid=st.one_of(st.integers(), st.text(max_size=5)), ascii_only=st.booleans(),
   wrap=st.sampled_from([b"", b"\xef\xbb\xbf", b" "]), depth=st.sampled_from([0, 0, 0, 150, 250]))  # fmt: skip
@example(body="\ud800", rid=1, ascii_only=True, wrap=b"", depth=0)  # each kind of body only json.loads reads,
@example(body="x", rid=1, ascii_only=True, wrap=b"\xef\xbb\xbf", depth=0)  # always tried
@example(body="x", rid=1, ascii_only=True, wrap=b"", depth=250)
@example(body={"x": ["\u2028", 1.5, None]}, rid="a", ascii_only=False, wrap=b" ", depth=3)  # and one both read
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_held_post_is_read_as_json_loads_reads_it_when_the_sdk_can_read_it(
    body: Any, rid: Any, ascii_only: bool, wrap: bytes, depth: int
) -> None:
    """``begin`` parses a held POST once, with the SDK's parser, for the id check and the fast
    path: where ``json.loads`` (the id check of every other POST) reads the same body, the two
    read the same request; where only ``json.loads`` can (a lone surrogate, a byte-order mark,
    nesting past the SDK parser's depth), the POST is not held (``serve`` runs)."""
    for _ in range(depth):
        body = [body]
    frame = wrap + json.dumps(
        {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": "echo", "arguments": body}},
        ensure_ascii=ascii_only,
    ).encode("utf-8", "surrogatepass")
    try:
        sdk = pydantic_core.from_json(frame)
    except ValueError:
        assert _held(frame) is None
        return
    req, sid, slot = _held(frame)
    assert req == json.loads(frame) == sdk
    assert (sid, slot) == ("s1", ("s1", coerce_request_id(rid)))  # keyed as the SDK's dispatcher keys it


@pytest.mark.parametrize(("frame", "slot"), [
    (b'{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{}}', ("s1", 2)),  # the last one, as the SDK reads it
    (b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"\\ud800"}}', None),  # only json.loads reads it
    (b'\xef\xbb\xbf{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{}}', None),  # a byte-order mark: the same
    (b'{"jsonrpc":"2.0","id":true,"method":"tools/call","params":{}}', None),  # a bad id: ``serve`` refuses it
    (b'{"jsonrpc":"2.0","method":"notifications/x"}', None),
    (b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{},"error":{"code":1,"message":"x"}}', None),  # refused
    (b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{},"\\u0072esult":{}}', None),  # by ``serve``
])  # fmt: skip
def test_a_held_post_only_the_sdk_reads_alike_is_left_to_serve(frame: bytes, slot: Any) -> None:
    got = _held(frame)
    assert (got and got[2]) == slot


def test_the_cookie_check_is_the_jars_own_answer() -> None:
    """``_has_cookies`` answers as ``bool(cookies)`` does, without iterating the jar: a cookie set,
    one deleted again (its path's table left empty), an expired one, a cleared jar; a jar of
    another make is taken to hold some (the direct POST is then refused)."""
    import httpx2

    from dsl.proxy.http_fast import _has_cookies

    cookies = httpx2.Cookies()
    seen = [(_has_cookies(cookies.jar), bool(cookies))]
    cookies.set("a", "1", domain="127.0.0.1")
    cookies.set("b", "2", domain="example.com", path="/x")
    seen.append((_has_cookies(cookies.jar), bool(cookies)))
    cookies.delete("a", domain="127.0.0.1")
    seen.append((_has_cookies(cookies.jar), bool(cookies)))
    cookies.delete("b", domain="example.com", path="/x")
    assert cookies.jar._cookies  # (the tables are left behind, empty)
    seen.append((_has_cookies(cookies.jar), bool(cookies)))
    cookies.set("c", "3")
    cookies.clear()
    seen.append((_has_cookies(cookies.jar), bool(cookies)))
    assert seen == [(False, False), (True, True), (True, True), (False, False), (False, False)]
    assert _has_cookies(object()) is True
