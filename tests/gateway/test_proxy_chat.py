"""Chat completions through the gateway with the official OpenAI client: plain and streamed, usage
included only when asked, chunks forwarded as they come, what is recorded, and the headers."""

from __future__ import annotations

from dataclasses import replace

import openai
import pytest

from benchmarks.simulator import DEFAULT_PROFILES, Fault, ModelProfile

HELLO = [{"role": "user", "content": "say hello to the gateway"}]  # 5 words: 5 prompt tokens
FAST = DEFAULT_PROFILES["sim-fast"]


def test_a_plain_chat_completion_is_the_upstreams_answer_with_pulses_headers(gateway_world, openai_client, simulator):
    raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
    answer = raw.parse()

    assert answer.model == "sim-fast"  # the upstream's answer, passed through
    assert len(answer.choices[0].message.content.split()) == FAST.output_tokens
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (5, FAST.output_tokens)
    [sent] = simulator.requests()
    assert (sent["model"], sent["stream"], sent["prompt_tokens"]) == ("sim-fast", False, 5)
    assert len(raw.headers["x-pulse-request-id"]) == 32
    assert float(raw.headers["x-pulse-overhead-ms"]) >= 0
    assert raw.headers["x-pulse-cache"] == "BYPASS"
    assert raw.headers["x-pulse-upstream"] == "sim-openai/sim-fast"


def test_a_plain_call_is_recorded_with_the_providers_counts_tags_and_end_user(gateway_world, openai_client,
                                                                             recorded_calls):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, user="end-user-42",
        extra_headers={"x-pulse-tags": "feature=search, env=prod"},
    )

    [record] = recorded_calls(1)
    event = record.event
    assert record.request_id == raw.headers["x-pulse-request-id"]
    assert (record.project_id, record.token_id) == (gateway_world.project.id, gateway_world.token.id)
    assert event["idempotency_key"] == "gw-" + record.request_id
    assert (event["provider"], event["model"], event["route"], event["upstream"]) == (
        "pulse-sim", "sim-fast", "gpt-4o-mini", "sim-openai/sim-fast")
    assert (event["input_tokens"], event["output_tokens"], event["token_count_source"]) == (5, FAST.output_tokens, "provider")
    assert (event["status_code"], event["success"], event["streamed"], event["endpoint"]) == (200, True, False, "chat")
    assert event["tags"] == {"feature": "search", "env": "prod"}
    assert event["end_user"] == "end-user-42"
    assert event["source"] == "gateway" and event["cache_hit"] is False and event["attempts"] == []
    assert event["latency_ms"] >= event["overhead_ms"] >= 0
    assert record.bodies is None  # the project did not opt in


def test_a_stream_hides_the_usage_chunk_the_gateway_asked_for_but_records_the_usage(gateway_world, openai_client,
                                                                                   simulator, recorded_calls):
    chunks = list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == FAST.output_tokens
    assert all(chunk.choices for chunk in chunks)  # no usage-only chunk
    assert all(chunk.usage is None for chunk in chunks)
    assert "usage" not in chunks[-1].model_dump(exclude_unset=True)
    [record] = recorded_calls(1)
    event = record.event
    assert (event["input_tokens"], event["output_tokens"], event["token_count_source"]) == (5, FAST.output_tokens, "provider")
    assert event["streamed"] is True and 0 < event["ttft_ms"] <= event["latency_ms"]


def test_a_stream_keeps_the_usage_chunk_when_the_caller_asks_for_it(gateway_world, openai_client):
    chunks = list(openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}))

    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, FAST.output_tokens)


def test_usage_riding_on_a_chunk_with_choices_is_stripped_from_that_chunk_only(gateway_world, openai_client, simulator):
    simulator.set_profile("sim-usage-on-finish", replace(FAST, usage_with_choices=True, output_tokens=8))
    gateway_world.route("folded", [(gateway_world.openai_connection, "sim-usage-on-finish")])

    chunks = list(openai_client.chat.completions.create(model="folded", messages=HELLO, stream=True))

    assert chunks[-1].choices[0].finish_reason == "stop"  # the chunk is kept, its usage removed
    assert all(chunk.usage is None for chunk in chunks)
    assert len("".join(c.choices[0].delta.content or "" for c in chunks).split()) == 8


def test_chunks_are_forwarded_as_the_upstream_sends_them(gateway_world, openai_client, simulator):
    """The upstream stalls for a minute after its third chunk: the caller already has three
    chunks while the simulator has sent three and is still holding the rest back."""
    stalling = replace(FAST, output_tokens=10, fault=Fault("stall", after_chunks=3, stall_seconds=60))
    simulator.set_profile("sim-stalling", stalling)
    gateway_world.route("stalling", [(gateway_world.openai_connection, "sim-stalling")])

    with openai_client.chat.completions.create(model="stalling", messages=HELLO, stream=True) as stream:
        received = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.model_extra["pulse_sim"])
            if len(received) == 3:
                break
        [upstream] = simulator.requests()

    assert upstream["chunks"] == 3 and upstream["completed"] is False
    assert [stamp["seq"] for stamp in received] == [1, 2, 3]  # after the role chunk, in order


def test_reasoning_and_cached_tokens_are_recorded(gateway_world, openai_client, simulator, recorded_calls):
    simulator.set_profile("sim-thinking", replace(FAST, reasoning_tokens=16, cached_tokens=3, output_tokens=8))
    gateway_world.route("thinking", [(gateway_world.openai_connection, "sim-thinking")])

    openai_client.chat.completions.create(model="thinking", messages=HELLO)

    [record] = recorded_calls(1)
    event = record.event
    assert (event["input_tokens"], event["cached_tokens"]) == (5, 3)
    assert (event["output_tokens"], event["reasoning_tokens"]) == (24, 16)


@pytest.mark.parametrize("stream", [False, True])
def test_without_usage_from_the_upstream_the_tokens_are_estimated(gateway_world, openai_client, simulator,
                                                                  recorded_calls, stream):
    gateway_world.route("no-usage", [(gateway_world.openai_connection, "sim-no-usage")])

    answer = openai_client.chat.completions.create(model="no-usage", messages=HELLO, stream=stream)
    if stream:
        list(answer)

    [record] = recorded_calls(1)
    event = record.event
    assert event["token_count_source"] == "estimate"
    assert (event["input_tokens"], event["output_tokens"]) == (5, DEFAULT_PROFILES["sim-no-usage"].output_tokens)


def test_bodies_are_recorded_truncated_when_the_project_opts_in(gateway_world, openai_client, recorded_calls):
    gateway_world.settings(store_bodies=True, body_max_bytes=256, body_retention_days=3)

    openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    [record] = recorded_calls(1)
    assert record.bodies["retention_days"] == 3 and record.bodies["truncated"] is True
    assert "say hello to the gateway" in record.bodies["request"]
    assert "chatcmpl-" in record.bodies["response"] and len(record.bodies["response"]) == 256


def test_each_call_has_its_own_request_id(gateway_world, openai_client):
    ids = {openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
           .headers["x-pulse-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_every_chunk_of_a_model_that_sends_several_tokens_a_chunk_arrives_in_order(gateway_world, openai_client, simulator):
    simulator.set_profile("sim-chunky", ModelProfile(ttft_ms=5, inter_token_ms=1, output_tokens=40, tokens_per_chunk=4))
    gateway_world.route("chunky", [(gateway_world.openai_connection, "sim-chunky")])

    chunks = [c for c in openai_client.chat.completions.create(model="chunky", messages=HELLO, stream=True)
              if c.choices and c.choices[0].delta.content]

    assert len(chunks) == 10
    assert [c.model_extra["pulse_sim"]["seq"] for c in chunks] == list(range(1, 11))


def test_once_the_caller_has_its_answer_the_call_is_already_recorded(gateway_world, openai_client, simulator):
    """The record is in the durable stream before the response ends: a gateway killed right after
    a caller got its answer cannot lose that call."""
    from django.conf import settings

    from gateway.redis import sync_client

    gateway_world.route("broken", [(gateway_world.openai_connection, "sim-500")])
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert sync_client().xlen(settings.GATEWAY_CALL_STREAM) == 1
    list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
    assert sync_client().xlen(settings.GATEWAY_CALL_STREAM) == 2
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(model="broken", messages=HELLO)
    assert sync_client().xlen(settings.GATEWAY_CALL_STREAM) == 3
