"""The wire formats without a network: where each kind of upstream serves each endpoint, the body
sent upstream, usage in both formats, SSE split at any byte, the usage chunk stripped only when the
caller did not ask, and errors in both shapes."""

from __future__ import annotations

import orjson
import pytest

from gateway import wire
from gateway.errors import GatewayError, model_not_found
from gateway.proxy import tags_from


@pytest.mark.parametrize(("kind", "base", "endpoint", "url"), [
    ("openai_compatible", "https://api.openai.com/v1", "chat", "https://api.openai.com/v1/chat/completions"),
    ("openai_compatible", "https://api.groq.com/openai/v1/", "embeddings", "https://api.groq.com/openai/v1/embeddings"),
    ("openai_compatible", "https://api.openai.com/v1", "messages", None),
    ("anthropic", "https://api.anthropic.com", "messages", "https://api.anthropic.com/v1/messages"),
    ("anthropic", "https://api.anthropic.com/v1", "messages", "https://api.anthropic.com/v1/messages"),
    ("anthropic", "https://api.anthropic.com", "chat", "https://api.anthropic.com/v1/chat/completions"),
    ("anthropic", "https://api.anthropic.com/v1/", "chat", "https://api.anthropic.com/v1/chat/completions"),
    ("anthropic", "https://api.anthropic.com", "embeddings", None),
    ("gemini", "https://generativelanguage.googleapis.com", "chat",
     "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"),
    ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai/", "embeddings",
     "https://generativelanguage.googleapis.com/v1beta/openai/embeddings"),
])
def test_where_each_kind_of_upstream_serves_each_endpoint(kind, base, endpoint, url):
    assert wire.upstream_url(kind, base, endpoint) == url


def test_upstream_headers_follow_the_format():
    assert wire.upstream_headers("anthropic", "messages", "k") == {
        "content-type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01"}
    assert wire.upstream_headers("anthropic", "chat", "k")["authorization"] == "Bearer k"
    assert "authorization" not in wire.upstream_headers("openai_compatible", "chat", "")  # a keyless vLLM


def test_the_upstream_body_has_the_upstreams_model_and_asks_streams_for_usage():
    request = wire.validate("chat", orjson.dumps({"model": "fast-chat", "messages": [{"role": "user", "content": "hi"}],
                                                  "stream": True, "stream_options": {"other": 1}, "temperature": 0.2}))
    body = orjson.loads(wire.upstream_body(request, "gpt-4o-mini"))
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.2
    assert body["stream_options"] == {"other": 1, "include_usage": True}
    assert request.include_usage is False and request.body["model"] == "fast-chat"  # the caller's own body is untouched

    plain = wire.validate("chat", orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    assert "stream_options" not in orjson.loads(wire.upstream_body(plain, "x"))


def test_usage_in_both_formats_in_pulses_conventions():
    openai_usage = wire.openai_usage({"usage": {
        "prompt_tokens": 100, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 60},
        "completion_tokens_details": {"reasoning_tokens": 5}}})
    assert openai_usage == wire.Usage(100, 20, 60, 5)
    assert wire.openai_usage({"usage": None}) is None
    assert wire.openai_usage({"usage": {"prompt_tokens": 7, "total_tokens": 7}}) == wire.Usage(7, 0, None, None)  # embeddings
    anthropic = wire.anthropic_usage({"input_tokens": 10, "cache_read_input_tokens": 80,
                                      "cache_creation_input_tokens": 5, "output_tokens": 3})
    assert anthropic == wire.Usage(95, 3, 80, None)
    assert wire.openai_usage({"usage": {"prompt_tokens": -1, "completion_tokens": True}}) == wire.Usage(None, None, None, None)


def test_events_split_anywhere_come_out_whole_and_in_order():
    stream = (b'data: {"a":1}\n\n' b"event: ping\r\ndata: {}\r\n\r\n" b": comment\n\n" b"data: line1\ndata: line2\n\n")
    for cut in range(1, len(stream)):
        reader = wire.SSEReader()
        events = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [e.data for e in events if e.data] == [b'{"a":1}', b"{}", b"line1\nline2"]
        assert b"".join(e.raw for e in events) == stream
        assert [e.name for e in events if e.data] == ["", "ping", ""]


def test_an_event_cut_off_by_the_end_of_the_stream_is_still_read():
    reader = wire.SSEReader()
    assert reader.feed(b"data: [DONE]") == []
    assert reader.rest().data == b"[DONE]"


def chunk(choices: list, usage: object = "absent") -> wire.SSEEvent:
    payload = {"id": "c", "choices": choices}
    if usage != "absent":
        payload["usage"] = usage
    return wire.parse_event(wire.sse_data(payload))


def test_the_usage_chunk_the_gateway_asked_for_is_hidden_from_a_caller_that_did_not():
    stream = wire.StreamState("chat", include_usage=False)
    role = stream.take(chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}], None))
    text = stream.take(chunk([{"index": 0, "delta": {"content": "hi"}}], None))
    usage = stream.take(chunk([], {"prompt_tokens": 3, "completion_tokens": 1}))
    done = stream.take(wire.parse_event(b"data: [DONE]\n\n"))

    assert b"usage" not in role + text and usage == b""
    assert done == b"data: [DONE]\n\n" and stream.done
    assert stream.usage == wire.Usage(3, 1, None, None) and stream.joined_text == "hi"
    assert stream.content_started


def test_a_caller_that_asked_for_usage_gets_every_event_byte_for_byte():
    stream = wire.StreamState("chat", include_usage=True)
    event = chunk([], {"prompt_tokens": 3, "completion_tokens": 1})
    assert stream.take(event) == event.raw


def test_a_role_only_chunk_is_not_content_but_a_tool_call_is():
    stream = wire.StreamState("chat", include_usage=False)
    stream.take(chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]))
    assert not stream.content_started
    stream.take(chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}}]))
    assert stream.content_started


def test_anthropic_events_pass_through_and_teach_usage_and_text():
    stream = wire.StreamState("messages", include_usage=False)
    start = wire.parse_event(wire.sse_named("message_start", {"type": "message_start", "message": {
        "usage": {"input_tokens": 4, "cache_read_input_tokens": 2, "output_tokens": 1}}}))
    ping = wire.parse_event(wire.sse_named("ping", {"type": "ping"}))
    delta = wire.parse_event(wire.sse_named("content_block_delta", {
        "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hello"}}))
    end = wire.parse_event(wire.sse_named("message_delta", {"type": "message_delta", "usage": {"output_tokens": 9}}))
    stop = wire.parse_event(wire.sse_named("message_stop", {"type": "message_stop"}))

    assert [stream.take(e) for e in (start, ping)] == [start.raw, ping.raw] and not stream.content_started
    for event in (delta, end, stop):
        assert stream.take(event) == event.raw
    assert stream.content_started and stream.done and stream.joined_text == "hello"
    assert stream.usage == wire.Usage(6, 9, 2, None)


def test_an_error_event_is_noticed():
    stream = wire.StreamState("chat", include_usage=False)
    stream.take(wire.parse_event(wire.sse_data({"error": {"message": "overloaded"}})))
    assert stream.error == "overloaded"


def test_a_mid_stream_error_is_what_each_sdk_raises_on():
    openai_event = wire.parse_event(wire.mid_stream_error("chat", "broke"))
    assert orjson.loads(openai_event.data)["error"]["message"] == "broke"
    anthropic_event = wire.parse_event(wire.mid_stream_error("messages", "broke"))
    assert anthropic_event.name == "error" and orjson.loads(anthropic_event.data)["error"]["type"] == "api_error"


def test_the_prompt_text_is_read_from_every_shape_of_content():
    request = wire.validate("messages", orjson.dumps({
        "model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "two words"}]},
                     {"role": "assistant", "content": "ok"}]}))
    assert request.estimated_prompt_tokens() == 5


def test_errors_render_in_both_shapes():
    error = model_not_found("gpt-9")
    assert orjson.loads(error.body("openai")) == {"error": {
        "message": error.message, "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}
    assert orjson.loads(error.body("anthropic")) == {"type": "error", "error": {
        "type": "not_found_error", "message": error.message}}


@pytest.mark.parametrize(("header", "tags"), [
    ("feature=search,env=prod", {"feature": "search", "env": "prod"}),
    (" feature = search , ,env=prod ", {"feature": "search", "env": "prod"}),
    ("team=caf\u00e9".encode().decode("latin-1"), {"team": "caf\u00e9"}),  # UTF-8 bytes, as HTTP carries them
    ("empty=", {"empty": ""}),
])
def test_tags_headers(header, tags):
    assert tags_from({"x-pulse-tags": header}) == tags


def test_a_tags_header_that_is_not_utf8_is_refused():
    with pytest.raises(GatewayError) as raised:
        tags_from({"x-pulse-tags": "k=\xff"})
    assert raised.value.status == 400


def test_only_the_callers_feature_headers_go_upstream_never_its_token():
    caller = {"authorization": "Bearer pk_live_secret", "x-api-key": "pk_live_secret", "anthropic-beta": "tools-1",
              "anthropic-version": "2024-01-01", "openai-beta": "assistants=v2", "cookie": "a=b"}
    native = wire.upstream_headers("anthropic", "messages", "sk-upstream", caller)
    assert native == {"content-type": "application/json", "x-api-key": "sk-upstream",
                      "anthropic-version": "2024-01-01", "anthropic-beta": "tools-1"}
    chat = wire.upstream_headers("openai_compatible", "chat", "sk-upstream", caller)
    assert chat == {"content-type": "application/json", "authorization": "Bearer sk-upstream",
                    "openai-beta": "assistants=v2"}


def test_the_budget_bound_on_prompt_tokens_is_never_below_the_guess():
    request = wire.validate("chat", orjson.dumps({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "naïve café ☕ " * 20}]}))
    assert request.max_prompt_tokens() >= len("naïve café ☕ ".encode()) * 20 > request.estimated_prompt_tokens()
