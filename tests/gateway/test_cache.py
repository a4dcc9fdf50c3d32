"""The exact-match cache: canonical keys, storing and expiry, counters, and replays that the
official `openai` and `anthropic` packages parse like the real thing (streams from the
simulated provider are assembled, stored, and replayed through the SDKs)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import anthropic
import httpx
import httpx2
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from httpx_sse import connect_sse
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from benchmarks.simulator import SimulatedProvider
from gateway import cache
from gateway.cache import (
    CachedAnswer,
    as_sse_events,
    assemble_anthropic_stream,
    assemble_openai_stream,
    cache_key,
    count,
    lookup,
    store,
)
from gateway.redis import key, sync_client

from . import backends
from .backends import run

gw_backend = backends.gw_backend

PROJECT = 101
CHAT = {
    "model": "fast-chat", "messages": [{"role": "user", "content": "Say hi"}], "temperature": 0,
    "max_tokens": 50, "response_format": {"type": "text"},
}


# ------------------------------------------------------------------------------ the key


def test_the_same_request_in_another_key_order_has_the_same_key():
    reordered = {
        "response_format": {"type": "text"}, "max_tokens": 50, "temperature": 0,
        "messages": [{"content": "Say hi", "role": "user"}], "model": "fast-chat",
    }
    assert cache_key(PROJECT, "chat", CHAT) == cache_key(PROJECT, "chat", reordered)


@pytest.mark.parametrize("change", [
    {"temperature": 0.7}, {"model": "gpt-4o-mini"}, {"max_tokens": 51}, {"n": 2}, {"seed": 7}, {"top_p": 0.5},
    {"messages": [{"role": "user", "content": "Say hello"}]}, {"tools": [{"type": "function", "function": {"name": "f"}}]},
    {"response_format": {"type": "json_object"}}, {"logprobs": True},
])
def test_anything_that_changes_the_answer_changes_the_key(change):
    assert cache_key(PROJECT, "chat", CHAT) != cache_key(PROJECT, "chat", {**CHAT, **change})


@pytest.mark.parametrize("change", [
    {"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}, {"user": "end-user-42"},
    {"metadata": {"run": "7"}}, {"store": True}, {"service_tier": "flex"}, {"safety_identifier": "u1"},
    {"prompt_cache_key": "k"}, {"temperature": 0.0},
])
def test_delivery_identity_and_spelling_of_numbers_do_not(change):
    assert cache_key(PROJECT, "chat", CHAT) == cache_key(PROJECT, "chat", {**CHAT, **change})


def test_projects_and_endpoints_never_share_entries():
    digest = cache_key(PROJECT, "chat", CHAT)
    assert digest != cache_key(PROJECT + 1, "chat", CHAT)
    assert digest != cache_key(PROJECT, "messages", CHAT)
    prefix, project, sha = digest.rsplit(":", 2)
    assert prefix == key("cache") and project == str(PROJECT) and len(sha) == 64
    assert int(sha, 16) >= 0


# ------------------------------------------------------------------------------ store, lookup, expiry


def completion(text: str = "Hello there, how can I help you today?") -> dict:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_800_000_000, "model": "sim-fast",
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
    }


def answer_of(body: dict, endpoint: str = "chat", cost: int = 1234) -> CachedAnswer:
    return CachedAnswer(endpoint=endpoint, body=body, upstream="sim/sim-fast", provider="openai",
                        model="sim-fast", usage=body.get("usage", {}), cost_micro_usd=cost)


def test_a_stored_answer_is_found_until_it_expires(gw_backend):
    entry = cache_key(PROJECT, "chat", CHAT)
    assert run(lambda r: lookup(r, entry)) is None
    assert run(lambda r: store(r, entry, answer_of(completion()), 120)) is True
    found = run(lambda r: lookup(r, entry))
    assert found == answer_of(completion())
    assert 0 < sync_client().pttl(entry) <= 120_000
    sync_client().pexpire(entry, 1)  # what the TTL does, without waiting for it
    sync_client().delete(entry)
    assert run(lambda r: lookup(r, entry)) is None


def test_an_answer_larger_than_the_bound_is_not_stored(gw_backend):
    entry = cache_key(PROJECT, "chat", CHAT)
    huge = completion("x" * (cache.MAX_ANSWER_BYTES + 1))
    assert run(lambda r: store(r, entry, answer_of(huge), 120)) is False
    assert run(lambda r: lookup(r, entry)) is None


def test_an_unreadable_entry_is_a_miss(gw_backend):
    entry = cache_key(PROJECT, "chat", CHAT)
    sync_client().set(entry, b'{"endpoint": "chat", "unknown_field": 1}')
    assert run(lambda r: lookup(r, entry)) is None


def test_embeddings_are_stored_and_never_streamed(gw_backend):
    body = {"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    entry = cache_key(PROJECT, "embeddings", {"model": "embed", "input": "hello"})
    run(lambda r: store(r, entry, answer_of(body, "embeddings"), 60))
    found = run(lambda r: lookup(r, entry))
    CreateEmbeddingResponse.model_validate(found.body)
    with pytest.raises(ValueError):
        as_sse_events(found)


def test_count_keeps_totals_and_hourly_counters(gw_backend):
    async def outcomes(r):
        await count(r, PROJECT, "miss")
        await count(r, PROJECT, "hit", saved_micro_usd=1500)
        await count(r, PROJECT, "hit", saved_micro_usd=500)
        await count(r, PROJECT, "bypass")

    run(outcomes)
    client = sync_client()
    expected = {b"hit": b"2", b"miss": b"1", b"bypass": b"1", b"saved_micro_usd": b"2000"}
    assert client.hgetall(cache.totals_key(PROJECT)) == expected
    hour = cache.hourly_key(PROJECT, datetime.now(UTC))
    assert client.hgetall(hour) == expected
    assert 0 < client.ttl(hour) <= cache.HOURLY_TTL_S
    with pytest.raises(ValueError):
        run(lambda r: count(r, PROJECT, "maybe"))


# ------------------------------------------------------------------------------ replay: OpenAI


def sse_payloads(events: list[bytes]) -> list[str]:
    payloads = []
    for event in events:
        text = event.decode()
        assert text.startswith("data: ") and text.endswith("\n\n")
        payloads.append(text[len("data: "):-2])
    return payloads


def test_a_chat_answer_replays_as_openai_chunks():
    answer = answer_of(completion())
    payloads = sse_payloads(as_sse_events(answer))
    assert payloads[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(p)) for p in payloads[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert "".join(content) == answer.body["choices"][0]["message"]["content"]
    assert len(content) > 1  # streamed in pieces
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.id == "chatcmpl-1" for c in chunks)
    assert "usage" not in json.loads(payloads[0])  # not asked for: not even null


def test_the_usage_chunk_comes_only_when_the_replaying_request_asks():
    payloads = sse_payloads(as_sse_events(answer_of(completion()), include_usage=True))
    chunks = [ChatCompletionChunk.model_validate(json.loads(p)) for p in payloads[:-1]]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 21
    assert all(c.usage is None for c in chunks[:-1])
    assert "usage" in json.loads(payloads[0])  # null, as OpenAI sends it


def test_tool_calls_and_refusals_survive_a_replay():
    body = completion()
    body["choices"] = [
        {"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
            ]}},
        {"index": 1, "finish_reason": "stop", "logprobs": None,
         "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."}},
    ]
    payloads = sse_payloads(as_sse_events(answer_of(body), include_usage=True))
    chunks = [json.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assembled = assemble_openai_stream(chunks)
    ChatCompletion.model_validate(assembled)
    assert assembled["choices"] == body["choices"]
    assert assembled["usage"] == body["usage"]


def test_the_openai_sdk_streams_a_replay_like_an_upstream_stream():
    """The replayed bytes, served to the official client as an upstream would serve them."""
    answer = answer_of(completion())
    body = b"".join(as_sse_events(answer, include_usage=True))
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=body))
    client = openai.OpenAI(base_url="http://gateway.test/v1", api_key="pk_live_x",
                           http_client=httpx.Client(transport=transport))
    stream = client.chat.completions.create(model="fast-chat", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        answer.body["choices"][0]["message"]["content"])
    assert chunks[-1].usage.completion_tokens == 12


# ------------------------------------------------------------------------------ replay: Anthropic


MESSAGE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
    "content": [
        {"type": "thinking", "thinking": "The user greets me. I greet back.", "signature": "c2lnbmF0dXJl"},
        {"type": "text", "text": "Hello! How can I help you today?"},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo", "days": [1, 2]}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 30, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
}


def named_events(events: list[bytes]) -> list[tuple[str, dict]]:
    parsed = []
    for event in events:
        name_line, data_line, *rest = event.decode().split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ") and rest == ["", ""]
        parsed.append((name_line[len("event: "):], json.loads(data_line[len("data: "):])))
    return parsed


def test_a_messages_answer_replays_as_anthropic_events():
    events = named_events(as_sse_events(answer_of(MESSAGE, "messages")))
    adapter = TypeAdapter(RawMessageStreamEvent)
    for name, data in events:
        assert adapter.validate_python(data).type == name
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 3
    assembled = assemble_anthropic_stream(events)
    Message.model_validate(assembled)
    assert assembled == MESSAGE


def test_the_anthropic_sdk_streams_a_replay_like_an_upstream_stream():
    body = b"".join(as_sse_events(answer_of(MESSAGE, "messages")))
    # the anthropic package brings its own fork of httpx (httpx2)
    transport = httpx2.MockTransport(lambda request: httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=body))
    client = anthropic.Anthropic(base_url="http://gateway.test", api_key="pk_live_x",
                                 http_client=httpx2.Client(transport=transport))
    with client.messages.stream(model="claude-sonnet-4", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_message()
    assert final.model_dump(exclude_none=True, exclude_defaults=True) == Message.model_validate(MESSAGE).model_dump(
        exclude_none=True, exclude_defaults=True)


# ------------------------------------------------------------------------------ streams from the simulator


@pytest.fixture(scope="module")
def simulator():
    with SimulatedProvider() as provider:
        yield provider


def read_sse(url: str, body: dict, headers: dict) -> list[tuple[str, str]]:
    with httpx.Client(timeout=30) as client, connect_sse(client, "POST", url, json=body, headers=headers) as source:
        return [(event.event, event.data) for event in source.iter_sse()]


@pytest.mark.parametrize("model", ["sim-fast", "sim-bundled", "sim-reasoning"])
def test_a_streamed_openai_miss_assembles_into_the_non_streamed_answer(simulator, model):
    url, headers = simulator.base_url + "/openai/v1/chat/completions", {"Authorization": "Bearer sk-sim"}
    request = {"model": model, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 24}
    plain = httpx.post(url, json=request, headers=headers, timeout=30).json()
    events = read_sse(url, {**request, "stream": True, "stream_options": {"include_usage": True}}, headers)
    assert events[-1][1] == "[DONE]"
    assembled = assemble_openai_stream([json.loads(data) for _, data in events[:-1]])
    ChatCompletion.model_validate(assembled)
    assert assembled["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert assembled["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert assembled["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
    # stored and replayed, it streams the same text again
    replayed = [json.loads(p) for p in sse_payloads(as_sse_events(answer_of(assembled)))[:-1]]
    assert assemble_openai_stream(replayed)["choices"] == assembled["choices"]


def test_a_streamed_anthropic_miss_assembles_into_the_non_streamed_answer(simulator):
    url = simulator.base_url + "/anthropic/v1/messages"
    headers = {"x-api-key": "sk-ant-sim", "anthropic-version": "2023-06-01"}
    request = {"model": "sim-reasoning", "max_tokens": 40, "messages": [{"role": "user", "content": "Say hi"}]}
    plain = httpx.post(url, json=request, headers=headers, timeout=30).json()
    events = [(name, json.loads(data)) for name, data in read_sse(url, {**request, "stream": True}, headers)]
    assembled = assemble_anthropic_stream(events)
    Message.model_validate(assembled)
    assert assembled["content"] == plain["content"]
    assert (assembled["stop_reason"], assembled["usage"]["output_tokens"]) == (
        plain["stop_reason"], plain["usage"]["output_tokens"])
    again = assemble_anthropic_stream(named_events(as_sse_events(answer_of(copy.deepcopy(assembled), "messages"))))
    assert again["content"] == assembled["content"]
