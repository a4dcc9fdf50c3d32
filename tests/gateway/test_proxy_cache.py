"""How the proxy uses the answer cache (gateway/cache.py, part B2's): a miss is forwarded and
stored, a hit is replayed in the shape asked for without calling the upstream and recorded at $0
with what it saved, `x-pulse-cache` on every response and as a per-request override.

A miss is stored before its response ends: the very next request finds it."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

HELLO = [{"role": "user", "content": "say hello to the gateway"}]


def cache_header(raw) -> str:
    return raw.headers["x-pulse-cache"]


def test_a_repeated_request_is_replayed_from_the_cache_and_recorded_at_no_cost(
        gateway_world, openai_client, simulator, recorded_calls):
    gateway_world.settings(cache_enabled=True)

    first = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
    second = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)

    assert (cache_header(first), cache_header(second)) == ("MISS", "HIT")
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.headers["x-pulse-upstream"] == "sim-openai/sim-fast"
    assert len(simulator.requests()) == 1
    miss, hit = recorded_calls(2)
    assert (miss.event["cache_hit"], hit.event["cache_hit"]) == (False, True)
    assert hit.event["cost_usd"] == "0" and "cost_usd" not in miss.event
    # sim-fast: 5 input tokens at $1/Mtok and 64 output at $2/Mtok would have cost $0.000133.
    assert Decimal(hit.event["saved_usd"]) == Decimal("0.000133")
    assert (hit.event["input_tokens"], hit.event["output_tokens"]) == (5, 64)


def test_a_cached_answer_is_replayed_as_a_stream_when_one_is_asked_for(gateway_world, openai_client, simulator):
    gateway_world.settings(cache_enabled=True)
    answer = openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True})
    chunks = list(raw.parse())

    assert cache_header(raw) == "HIT" and len(simulator.requests()) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


def test_a_streamed_miss_is_stored_for_the_next_caller(gateway_world, openai_client, simulator):
    gateway_world.settings(cache_enabled=True)
    streamed = list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))

    raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)

    assert cache_header(raw) == "HIT" and len(simulator.requests()) == 1
    assert raw.parse().choices[0].message.content == "".join(
        c.choices[0].delta.content or "" for c in streamed if c.choices)


def test_the_cache_header_overrides_the_projects_choice(gateway_world, openai_client, simulator):
    gateway_world.settings(cache_enabled=True)
    off = {"x-pulse-cache": "off"}
    first = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO, extra_headers=off)
    second = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO, extra_headers=off)
    assert (cache_header(first), cache_header(second)) == ("BYPASS", "BYPASS")
    assert len(simulator.requests()) == 2

    gateway_world.settings(cache_enabled=False)
    on = {"x-pulse-cache": "on"}
    third = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO, extra_headers=on)
    fourth = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO, extra_headers=on)
    assert (cache_header(third), cache_header(fourth)) == ("MISS", "HIT")


def test_failed_answers_are_not_cached(gateway_world, openai_client, simulator):
    gateway_world.settings(cache_enabled=True)
    gateway_world.route("broken", [(gateway_world.openai_connection, "sim-404")])

    for _ in range(2):
        with pytest.raises(openai.NotFoundError) as raised:  # the upstream's 404, passed through
            openai_client.chat.completions.create(model="broken", messages=HELLO)
        assert cache_header(raised.value.response) == "MISS"
    assert len(simulator.requests()) == 2


def test_embeddings_are_cached_too(gateway_world, openai_client, simulator):
    gateway_world.settings(cache_enabled=True)
    first = openai_client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    second = openai_client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    assert (cache_header(first), cache_header(second)) == ("MISS", "HIT")
    assert second.parse().data[0].embedding == first.parse().data[0].embedding
