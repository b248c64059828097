"""The fast path writes its frames without building the SDK's models (fast_calls.py): the bytes
must be the ones the models write, for every name, arguments and result a client or server can
send, and validating a server's result once must answer as validating it, then shaping it, does."""

from __future__ import annotations

import json
import math
import typing
from typing import Any

import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client.session import _later_revision_fields
from mcp_types import methods

from dsl.proxy.fast_calls import (
    _one_surface,
    client_frame,
    client_frame_of_models,
    upstream_frame,
    upstream_frame_of_models,
)

ERA_2025 = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]

_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e16, 1e-7, 1.5e300, 5e-324, 1.0, 123456789.125]),
)
_ints = st.one_of(st.integers(), st.integers(min_value=2**63 - 2, max_value=2**70), st.integers(max_value=-(2**63) + 2))
_text = st.one_of(st.text(), st.sampled_from(["", "\u2028\u2029", "<script>&amp;", "\x00\x1f\x7f", "é😀", '"\\/']))
_scalars = st.one_of(st.none(), st.booleans(), _ints, _floats, _text)
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)), max_leaves=20)


def _through_the_front(name: str, arguments: Any) -> dict[str, Any]:
    """The params as the stdio front has them: the client's line, parsed by the SDK's adapter."""
    line = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}},
        allow_nan=True,
        ensure_ascii=False,
    )
    msg = types.jsonrpc_message_adapter.validate_json(line.encode("utf-8", "surrogatepass"), by_name=False)
    return msg.params


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(name=_text, arguments=st.one_of(st.none(), st.dictionaries(_text, _json, max_size=5)), up_id=st.integers(0, 2**40))
def test_the_upstream_frame_is_the_models_frame(name: str, arguments: Any, up_id: int) -> None:
    try:
        p = _through_the_front(name, arguments)
    except Exception:  # noqa: BLE001 - the front answers such a line itself: never forwarded
        return
    for meta in ({}, {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}):
        fast = upstream_frame(up_id, p["name"], p.get("arguments"), meta, "utf-8")
        assert fast == upstream_frame_of_models(up_id, p["name"], p.get("arguments"), meta).encode("utf-8")


def test_the_upstream_frame_edges() -> None:
    """Not finite floats (NaN, 1e400) are written as null, as pydantic writes them; big integers
    whole; U+2028 raw; another encoding goes through the models."""
    p = _through_the_front("t", {"a": float("nan"), "b": float("inf"), "c": 10**30, "d": "\u2028\x00"})
    assert math.isnan(p["arguments"]["a"])
    fast = upstream_frame(9, "t", p["arguments"], {}, "utf-8")
    assert fast == upstream_frame_of_models(9, "t", p["arguments"], {}).encode()
    assert b'"a":null,"b":null,"c":1000000000000000000000000000000' in fast
    assert upstream_frame(9, "t", {"x": "é"}, {}, "latin-1") == upstream_frame_of_models(9, "t", {"x": "é"}, {}).encode("latin-1")


_content = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _text}),
    st.fixed_dictionaries({"type": st.just("image"), "data": st.just("aGk="), "mimeType": st.just("image/png")}),
    st.fixed_dictionaries({"type": st.just("text"), "text": _text, "annotations": st.just({"priority": 0.5})}),
    st.dictionaries(_text, _json, max_size=3),  # anything: often invalid
)
_results = st.one_of(
    st.fixed_dictionaries(
        {"content": st.lists(_content, max_size=3)},
        optional={
            "isError": st.one_of(st.booleans(), st.none(), st.just("true"), st.just(1)),
            "structuredContent": st.one_of(st.dictionaries(_text, _json, max_size=3), _json),
            "_meta": st.one_of(st.dictionaries(_text, _json, max_size=2), st.none()),
            "resultType": st.sampled_from(["complete", "input_required", 3]),
            "requestState": _json,
            "inputRequests": _json,
            "ttlMs": st.one_of(_ints, _floats),
            "extra": _json,
        },
    ),
    st.dictionaries(_text, _json, max_size=4),
)


def _two_steps(server: str, client: str, raw: dict[str, Any]) -> tuple[str, Any]:
    """What the fast path did before: validate for the server's version, drop the later
    revisions' keys, shape for the client's version (each step's error told apart)."""
    try:
        methods.validate_server_result("tools/call", server, raw)
    except Exception as e:  # noqa: BLE001
        return "invalid", type(e)
    kept = {k: v for k, v in raw.items() if k not in _later_revision_fields("tools/call", server)}
    try:
        return "shaped", methods.serialize_server_result("tools/call", client, kept)
    except Exception as e:  # noqa: BLE001
        return "unshapeable", type(e)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_results, server=st.sampled_from(ERA_2025), client=st.sampled_from(ERA_2025))
def test_one_validation_is_the_two_steps(raw: dict[str, Any], server: str, client: str) -> None:
    assert _one_surface(server, client)
    try:
        once: tuple[str, Any] = ("shaped", methods.serialize_server_result("tools/call", server, raw))
    except Exception as e:  # noqa: BLE001
        once = ("invalid", type(e))
    assert once == _two_steps(server, client, raw)
    if once[0] == "shaped":
        rid = 7
        assert client_frame(rid, once[1]) == client_frame_of_models(rid, once[1])


def test_one_surface_only_where_the_models_are_one() -> None:
    assert not _one_surface("2025-11-25", "2026-07-28")
    assert not _one_surface("2026-07-28", "2025-11-25")
    assert not _one_surface("2026-07-28", "2026-07-28")  # a union of results: the two steps
    assert not _one_surface("1999-01-01", "2025-11-25")


@pytest.mark.parametrize("rid", [0, -1, 2**53 + 1, "", "1", "é\u2028", "x" * 300])
@given(result=st.dictionaries(_text, _json, max_size=4))
@settings(max_examples=60)
def test_the_client_frame_is_the_models_frame(rid: Any, result: dict[str, Any]) -> None:
    assert client_frame(rid, result) == client_frame_of_models(rid, result)


# -- the two shortcuts for the 2025-era models -------------------------------------------------


def test_the_shortcuts_rely_on_these_fields() -> None:
    """What ``take_now`` and ``_plain_text`` assume of the models (a new SDK changing them fails
    here first): a str name and dict arguments with no constraint, text blocks of two fields, no
    validators anywhere, unknown keys ignored."""
    request = methods.CLIENT_REQUESTS[("tools/call", "2025-11-25")]
    params = request.model_fields["params"].annotation
    assert {k: (repr(f.annotation), f.metadata) for k, f in params.model_fields.items() if k in ("name", "arguments")} == {
        "name": ("<class 'str'>", []),
        "arguments": ("dict[str, typing.Any] | None", []),
    }
    assert {k for k, f in params.model_fields.items() if f.is_required()} == {"name"}
    result = methods.SERVER_RESULTS[("tools/call", "2025-11-25")]
    text = typing.get_args(typing.get_args(result.model_fields["content"].annotation)[0])[0]  # TextContent
    assert text.__name__ == "TextContent"
    for model in (request, params, result, text):
        decorators = model.__pydantic_decorators__
        assert not (decorators.validators or decorators.field_validators or decorators.model_validators), model
        assert not (decorators.field_serializers or decorators.model_serializers), model
        assert model.model_config.get("extra", "ignore") == "ignore" and not model.model_config.get("strict"), model
    assert list(result.model_fields) == ["meta", "content", "is_error", "structured_content"]
    assert [(k, f.is_required()) for k, f in text.model_fields.items()] == [
        ("meta", False),
        ("annotations", False),
        ("text", True),
        ("type", True),
    ]
    for v in ERA_2025:
        assert methods.CLIENT_REQUESTS[("tools/call", v)] is request
        assert methods.SERVER_RESULTS[("tools/call", v)] is result


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=_text, arguments=st.one_of(st.none(), st.dictionaries(_text, _json, max_size=5)), version=st.sampled_from(ERA_2025))
def test_a_checked_request_always_passes_the_model(name: str, arguments: Any, version: str) -> None:
    """``take_now`` skips ``validate_client_request`` for a str name and dict (or no) arguments:
    the model never refuses those."""
    try:
        p = _through_the_front(name, arguments)
    except Exception:  # noqa: BLE001
        return
    if arguments is None:
        p = {"name": p["name"]}
    methods.validate_client_request("tools/call", version, p)


_text_blocks = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": _text}),
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image", "Text", ""]), "text": _json}),
        st.fixed_dictionaries({"type": st.just("text")}, optional={"text": _text, "annotations": _json, "_meta": _json}),
    ),
    max_size=4,
)
_strictly_plain = st.fixed_dictionaries(
    {"content": st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": _text}), max_size=3)},
    optional={"isError": st.booleans()},
)
_plain_results = _strictly_plain | st.fixed_dictionaries(
    {},
    optional={
        "content": st.one_of(_text_blocks, _json),
        "isError": st.one_of(st.booleans(), st.none(), st.just("true"), st.just(0), st.just(1.0)),
        "structuredContent": _json,
        "_meta": _json,
    },
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_plain_results)
def test_plain_text_is_what_the_model_makes(raw: dict[str, Any]) -> None:
    from dsl.proxy.fast_calls import _plain_text

    shaped = _plain_text(raw)
    try:
        expected = methods.serialize_server_result("tools/call", "2025-11-25", raw)
    except Exception:  # noqa: BLE001
        assert shaped is None  # the model refuses it: so must the shortcut (it leaves it to the model)
        return
    if shaped is not None:
        assert shaped == expected
        assert list(shaped) == list(expected)  # the same keys in the same order: the same bytes
        assert client_frame(1, shaped) == client_frame_of_models(1, expected)


def test_plain_text_takes_the_commonest_results() -> None:
    from dsl.proxy.fast_calls import _plain_text

    assert _plain_text({"content": [{"type": "text", "text": "hi"}]}) == {"content": [{"text": "hi", "type": "text"}]}
    assert _plain_text({"content": [], "isError": True}) == {"content": [], "isError": True}
    assert _plain_text({"content": [{"type": "text", "text": "hi", "annotations": None}]}) is None
    assert _plain_text({"content": [], "structuredContent": {}}) is None


_ids = st.one_of(_ints, _text, st.none(), st.booleans(), _floats, st.lists(_ints, max_size=2))
_envelopes = st.one_of(
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": _ids, "result": _json}),
    st.fixed_dictionaries({"jsonrpc": st.sampled_from(["2.0", "1.0", 2.0, None]), "id": _ids,
                           "result": st.dictionaries(_text, _json, max_size=4)}),  # fmt: skip
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": _ids, "result": st.dictionaries(_text, _json, max_size=3)},
                          optional={"error": st.dictionaries(_text, _json, max_size=2), "method": _text,
                                    "params": _json, "x": _json}),  # fmt: skip
    _json,
)


def _text_of(value: Any, how: int) -> str:
    text = json.dumps(value, allow_nan=True, ensure_ascii=how == 1)
    if how == 2:  # keys repeated: the last one counts, for both
        text = text.replace('{"jsonrpc": "2.0", ', '{"jsonrpc": "1.0", "jsonrpc": "2.0", ', 1)
    return text


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_envelopes, st.integers(0, 2), st.booleans())
def test_a_server_message_is_the_adapters(value: Any, how: int, as_bytes: bool) -> None:
    """``server_message`` reads every text as ``jsonrpc_message_adapter.validate_json`` does: the
    same model, fields and set fields, or the same error (invalid JSON and truncated texts too);
    a text ``plain_response`` reads is a response with its id and result, and ``response_parts``
    (the answer's path without a model) gives a response's id and result, else None."""
    from pydantic import ValidationError

    from dsl.proxy.fast_calls import plain_response, response_parts, server_message

    text = _text_of(value, how)
    for t in (text, text[: len(text) // 2]):
        data: bytes | str = t.encode("utf-8", "surrogatepass") if as_bytes else t
        try:
            expected = types.jsonrpc_message_adapter.validate_json(data, by_name=False)
        except ValidationError as e:
            with pytest.raises(ValidationError) as got:
                server_message(data)
            assert _nan_equal(got.value.errors(), e.errors())  # (an input may hold NaN, never == itself)
            assert plain_response(data) is None
            with pytest.raises(ValidationError):
                response_parts(data)
            continue
        got_msg = server_message(data)
        _same_message(got_msg, expected)
        plain = plain_response(data)
        if plain is not None:
            assert isinstance(expected, types.JSONRPCResponse)
            assert _nan_equal([plain["id"], plain["result"]], [expected.id, expected.result])
        parts = response_parts(data)
        if isinstance(expected, types.JSONRPCResponse):
            assert parts is not None and _nan_equal(list(parts), [expected.id, expected.result])
        else:
            assert parts is None


_requests = st.one_of(
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": _ids, "method": _text, "params": st.dictionaries(_text, _json, max_size=4)}),
    st.fixed_dictionaries({"jsonrpc": st.sampled_from(["2.0", "1.0", 2.0, None]), "id": _ids,
                           "method": st.one_of(_text, _json), "params": _json}),  # fmt: skip
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": _ids, "method": _text},
                          optional={"params": st.dictionaries(_text, _json, max_size=3), "result": _json, "x": _json}),  # fmt: skip
    _json,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests, st.integers(0, 2))
def test_a_client_request_is_the_adapters(value: Any, how: int) -> None:
    """``client_request`` reads every parsed value as ``jsonrpc_message_adapter.validate_python``
    does: the same model, fields and set fields, or the same error; ``request_parts`` (the HTTP
    fast path's reading, with no model) gives a request's id, method and params, else None."""
    import pydantic_core
    from pydantic import ValidationError

    from dsl.proxy.fast_calls import client_request, request_parts

    try:
        raw = pydantic_core.from_json(_text_of(value, how))
    except ValueError:
        return
    try:
        expected = types.jsonrpc_message_adapter.validate_python(raw, by_name=False)
    except ValidationError as e:
        with pytest.raises(ValidationError) as got:
            client_request(raw)
        assert _nan_equal(got.value.errors(), e.errors())
        with pytest.raises(ValidationError):
            request_parts(raw)
        return
    got_msg = client_request(raw)
    _same_message(got_msg, expected)
    parts = request_parts(raw)
    if isinstance(expected, types.JSONRPCRequest):
        assert parts is not None
        assert _nan_equal(list(parts), [expected.id, expected.method, expected.params])
        assert [parts[0].__class__, parts[1].__class__] == [expected.id.__class__, str]
    else:
        assert parts is None


def test_a_client_request_takes_the_commonest_request_without_the_adapter() -> None:
    """The shortcut is taken for a plain request (else the test above would prove nothing)."""
    from unittest import mock

    from dsl.proxy.fast_calls import client_request

    with mock.patch.object(types.jsonrpc_message_adapter, "validate_python", side_effect=AssertionError("validated")):
        m = client_request({"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"name": "echo"}})
        assert (m.id, m.method, m.params) == ("a", "tools/call", {"name": "echo"})
        for other in ({"jsonrpc": "2.0", "id": True, "method": "m", "params": {}},
                      {"jsonrpc": "2.0", "id": 1, "method": "m", "params": []}, {"jsonrpc": "2.0", "id": 1, "method": "m"}):  # fmt: skip
            with pytest.raises(AssertionError, match="validated"):
                client_request(other)


def _same_message(got: Any, expected: Any) -> None:
    """The same model, dump, set fields and JSON (an input may hold NaN, never == itself)."""
    assert type(got) is type(expected)
    assert got.model_dump() == expected.model_dump() or _nan_equal(got.model_dump(), expected.model_dump())
    assert got.model_fields_set == expected.model_fields_set
    assert got.model_dump_json(by_alias=True, exclude_unset=True) == expected.model_dump_json(by_alias=True, exclude_unset=True)


def _nan_equal(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, allow_nan=True, default=repr) == json.dumps(b, sort_keys=True, allow_nan=True, default=repr)


def test_a_server_message_takes_the_commonest_answer_without_the_adapter() -> None:
    """The shortcut is taken for a plain response (else the test above would prove nothing)."""
    from unittest import mock

    from dsl.proxy.fast_calls import server_message

    with mock.patch.object(types.jsonrpc_message_adapter, "validate_json", side_effect=AssertionError("validated")):
        m = server_message(b'{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi"}]}}')
        assert (m.id, m.result["content"][0]["text"]) == (7, "hi")
        with pytest.raises(AssertionError, match="validated"):
            server_message(b'{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"x"}}')


def test_the_trace_context_is_written_upstream_as_the_sdk_writes_it() -> None:
    """``trace_context_into`` skips OpenTelemetry only where it writes nothing: a span or baggage
    in the current context, or a propagator other than the default ones, is written as
    ``inject_trace_context`` writes it."""
    from unittest import mock

    from mcp.shared._otel import inject_trace_context
    from opentelemetry import baggage, context, trace
    from opentelemetry.propagate import get_global_textmap, set_global_textmap
    from opentelemetry.propagators.textmap import TextMapPropagator

    from dsl.proxy import fast_calls
    from dsl.proxy.fast_calls import trace_context_into

    def both() -> tuple[dict[str, Any], dict[str, Any]]:
        ours: dict[str, Any] = {}
        sdk: dict[str, Any] = {}
        trace_context_into(ours)
        inject_trace_context(sdk)
        return ours, sdk

    with mock.patch.object(fast_calls, "inject_trace_context", side_effect=AssertionError("asked")):
        meta: dict[str, Any] = {}
        trace_context_into(meta)  # the proxy's own context, no tracer: OpenTelemetry is not asked
        assert meta == {}
    span = trace.NonRecordingSpan(trace.SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=trace.TraceFlags(1)))
    token = context.attach(trace.set_span_in_context(span))
    try:
        ours, sdk = both()
        assert ours == sdk and ours["traceparent"].startswith("00-00000000000000000000000000000abc-")
    finally:
        context.detach(token)
    token = context.attach(baggage.set_baggage("tenant", "a"))
    try:
        ours, sdk = both()
        assert ours == sdk == {"baggage": "tenant=a"}
    finally:
        context.detach(token)

    class Constant(TextMapPropagator):
        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
            return context

        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            carrier["x-always"] = "1"

        @property
        def fields(self) -> set[str]:
            return {"x-always"}

    before = get_global_textmap()
    set_global_textmap(Constant())
    try:
        assert both() == ({"x-always": "1"}, {"x-always": "1"})
    finally:
        set_global_textmap(before)
    assert both() == ({}, {})
    before._propagators.append(Constant())  # the default composite changed in place
    try:
        assert both() == ({"x-always": "1"}, {"x-always": "1"})
    finally:
        before._propagators.pop()
    assert both() == ({}, {})
