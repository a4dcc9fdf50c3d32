"""instrument(anthropic.Anthropic / AsyncAnthropic): messages.create (plain and streamed) and the
messages.stream() helper are one event each, with Anthropic's usage in Pulse's conventions
(input counts cache reads and writes too)."""

from __future__ import annotations

import asyncio
import gc

import anthropic
import pulse_sdk
import pytest

from benchmarks.simulator import ModelProfile
from costs.models import CostEvent

from .conftest import HELLO, sim_anthropic

FAST_WORDS = 64


def assert_full_message(event: CostEvent, *, streamed: bool, output: int = FAST_WORDS) -> None:
    assert (event.provider, event.model, event.source, event.endpoint) == ("anthropic", "sim-fast", "sdk", "messages")
    assert (event.input_tokens, event.output_tokens, event.cached_tokens, event.reasoning_tokens) == (4, output, 0, 0)
    assert (event.success, event.status_code, event.streamed, event.token_count_source) == (True, 200, streamed, "usage")
    if streamed:
        assert 50 <= event.ttft_ms < event.latency_ms
    else:
        assert event.ttft_ms is None and event.latency_ms >= 50


def test_a_message_is_one_event_with_its_user(anthropic_client, sdk):
    message = anthropic_client.messages.create(model="sim-fast", max_tokens=1024, messages=HELLO,
                                               metadata={"user_id": "u-42"})

    [event] = sdk.events(1)
    assert_full_message(event, streamed=False)
    assert event.end_user == "u-42"
    assert message.usage.output_tokens == FAST_WORDS


def test_a_streamed_message_read_to_its_end(anthropic_client, sdk):
    events = list(anthropic_client.messages.create(model="sim-fast", max_tokens=1024, messages=HELLO, stream=True))

    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    [event] = sdk.events(1)
    assert_full_message(event, streamed=True)


def test_the_stream_helper_keeps_its_interface_and_is_recorded_once(anthropic_client, sdk):
    with anthropic_client.messages.stream(model="sim-fast", max_tokens=1024, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        assert stream.response.status_code == 200

    assert final.content[0].text == text and final.usage.output_tokens == FAST_WORDS
    [event] = sdk.events(1)
    assert_full_message(event, streamed=True)


def test_the_stream_helper_left_early_is_recorded_with_estimated_output(anthropic_client, sdk):
    with anthropic_client.messages.stream(model="sim-fast", max_tokens=1024, messages=HELLO) as stream:
        for index, _text in enumerate(stream.text_stream):
            if index == 4:
                break

    [event] = sdk.events(1)
    # message_start said the input (4) and 1 output token so far; 5 words came before the exit.
    assert (event.input_tokens, event.output_tokens, event.token_count_source) == (4, 5, "estimate")
    assert (event.success, event.streamed) == (True, True)


def test_a_dropped_stream_is_recorded_by_the_garbage_collector(anthropic_client, sdk):
    stream = anthropic_client.messages.create(model="sim-fast", max_tokens=1024, messages=HELLO, stream=True)
    for index, _event in enumerate(stream):
        if index == 4:  # message_start, content_block_start, 3 text deltas
            break
    del stream
    gc.collect()

    [event] = sdk.events(1)
    assert (event.input_tokens, event.output_tokens, event.token_count_source) == (4, 3, "estimate")


def test_cache_reads_and_writes_count_as_input(sim, sdk):
    sim.set_profile("sim-cache", ModelProfile(ttft_ms=5, inter_token_ms=0, output_tokens=8, cached_tokens=3))
    with sim_anthropic(sim) as client:
        pulse_sdk.instrument(client, pulse=sdk.client)
        message = client.messages.create(model="sim-cache", max_tokens=64, messages=HELLO)
        with client.messages.stream(model="sim-cache", max_tokens=64, messages=HELLO) as stream:
            stream.until_done()

    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (1, 3)  # Anthropic's terms
    for event in sdk.events(2):
        assert (event.input_tokens, event.cached_tokens, event.output_tokens) == (4, 3, 8)  # Pulse's


@pytest.mark.parametrize(("model", "error", "status"), [
    ("sim-429", anthropic.RateLimitError, 429),
    ("sim-500", anthropic.InternalServerError, 500),
])
def test_an_api_error_is_recorded_and_raised_unchanged(anthropic_client, sdk, model, error, status):
    with pytest.raises(error):
        anthropic_client.messages.create(model=model, max_tokens=64, messages=HELLO)
    with pytest.raises(error), anthropic_client.messages.stream(model=model, max_tokens=64, messages=HELLO):
        pass

    for event in sdk.events(2):
        assert (event.model, event.success, event.status_code, event.output_tokens) == (model, False, status, 0)


def test_an_error_event_midway_fails_the_call(anthropic_client, sdk):
    with pytest.raises(anthropic.APIStatusError):
        for _event in anthropic_client.messages.create(model="sim-error-event", max_tokens=64, messages=HELLO, stream=True):
            pass

    [event] = sdk.events(1)
    assert (event.success, event.input_tokens, event.output_tokens, event.token_count_source) == (False, 4, 3, "estimate")


def test_async_messages_plain_streamed_and_the_helper(async_anthropic_client, sdk):
    async def calls() -> str:
        async with async_anthropic_client as client:
            await client.messages.create(model="sim-fast", max_tokens=1024, messages=HELLO)
            [event async for event in await client.messages.create(
                model="sim-fast", max_tokens=1024, messages=HELLO, stream=True)]
            async with client.messages.stream(model="sim-fast", max_tokens=10, messages=HELLO) as stream:
                return await stream.get_final_text()

    assert len(asyncio.run(calls()).split()) == 10
    plain, streamed, helper = sdk.events(3)
    assert_full_message(plain, streamed=False)
    assert_full_message(streamed, streamed=True)
    assert_full_message(helper, streamed=True, output=10)


def test_beta_messages_and_parse_are_recorded_too(anthropic_client, sdk):
    beta = anthropic_client.beta.messages.create(model="sim-fast", max_tokens=1024, messages=HELLO)
    parsed = anthropic_client.messages.parse(model="sim-fast", max_tokens=1024, messages=HELLO)
    with anthropic_client.beta.messages.stream(model="sim-fast", max_tokens=1024, messages=HELLO) as stream:
        stream.until_done()

    assert beta.usage.output_tokens == parsed.usage.output_tokens == FAST_WORDS
    plain_beta, plain_parse, streamed = sdk.events(3)
    assert_full_message(plain_beta, streamed=False)
    assert_full_message(plain_parse, streamed=False)
    assert_full_message(streamed, streamed=True)
