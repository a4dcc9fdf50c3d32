"""instrument(openai.OpenAI / AsyncOpenAI): every generation call is one event in Pulse, with the
provider's usage, its latency and TTFT, however the caller consumes the answer.

The simulator's sim-fast answers 64 one-token words after 50 ms, and counts the prompt in words
(HELLO: 4), so every count below is exact; sim-429/sim-500 fail with that status,
sim-disconnect drops the connection after 3 words, sim-error-event sends an error chunk there.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import time

import openai
import pulse_sdk
import pytest
from pulse_sdk.instrument import streams

from benchmarks.simulator import ModelProfile
from costs.models import CostEvent

from .conftest import HELLO, sim_openai

FAST_WORDS = 64


def assert_full_chat(event: CostEvent, *, streamed: bool, endpoint: str = "chat") -> None:
    assert (event.provider, event.model, event.source) == ("openai", "sim-fast", "sdk")
    assert (event.input_tokens, event.output_tokens, event.cached_tokens, event.reasoning_tokens) == (4, FAST_WORDS, 0, 0)
    assert (event.success, event.status_code, event.streamed, event.endpoint) == (True, 200, streamed, endpoint)
    assert event.token_count_source == "usage"
    assert event.latency_ms >= 50  # the simulator's time to first token
    if streamed:
        assert 50 <= event.ttft_ms < event.latency_ms
    else:
        assert event.ttft_ms is None


# -- chat completions -----------------------------------------------------------------------------


def test_a_chat_completion_is_one_event_with_its_usage(openai_client, sdk):
    answer = openai_client.chat.completions.create(model="sim-fast", messages=HELLO, user="u-42")

    [event] = sdk.events(1)
    assert_full_chat(event, streamed=False)
    assert event.end_user == "u-42"
    assert answer.usage.completion_tokens == FAST_WORDS  # the caller's answer is untouched


@pytest.mark.parametrize("raw_events", [True, False], ids=["usage event skipped unparsed", "usage chunk held back"])
def test_a_streamed_chat_read_to_its_end_is_one_event_with_usage_the_caller_never_sees(
        openai_client, sim, sdk, monkeypatch, raw_events):
    if not raw_events:  # as for an SDK whose Stream has no _iter_events(): the parsed chunk is held back
        monkeypatch.setattr(streams, "_skip_usage_event", lambda call, stream, is_async: None)
    chunks = list(openai_client.chat.completions.create(model="sim-fast", messages=HELLO, stream=True))

    [event] = sdk.events(1)
    assert_full_chat(event, streamed=True)
    # Pulse asked for the usage chunk; the caller, who did not, gets the stream they would have had:
    assert sim.requests()[-1]["completed"]
    assert len(chunks) == 1 + FAST_WORDS + 1  # role chunk, words, finish
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None and "usage" not in chunk.to_dict() for chunk in chunks)


@pytest.mark.parametrize("profile", [
    ModelProfile(ttft_ms=5, inter_token_ms=0, output_tokens=8, usage_with_choices=True),
    ModelProfile(ttft_ms=5, inter_token_ms=0, output_tokens=8, usage_on_every_chunk=True),
], ids=["usage on the finish chunk", "usage on every chunk"])
def test_usage_on_chunks_with_choices_is_hidden_too(sim, sdk, profile):
    """Some OpenAI-compatible servers put the usage on chunks that also carry choices."""
    sim.set_profile("sim-usage", profile)
    with sim_openai(sim) as client:
        pulse_sdk.instrument(client, pulse=sdk.client)
        chunks = list(client.chat.completions.create(model="sim-usage", messages=HELLO, stream=True))

    assert len(chunks) == 1 + 8 + 1 and chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None and "usage" not in chunk.to_dict() for chunk in chunks)
    [event] = sdk.events(1)
    assert (event.input_tokens, event.output_tokens, event.token_count_source) == (4, 8, "usage")


def test_a_caller_who_asked_for_usage_still_gets_the_usage_chunk(openai_client, sdk):
    chunks = list(openai_client.chat.completions.create(
        model="sim-fast", messages=HELLO, stream=True, stream_options={"include_usage": True}))

    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == FAST_WORDS
    [event] = sdk.events(1)
    assert_full_chat(event, streamed=True)


def test_a_stream_closed_early_is_recorded_once_with_estimated_counts(openai_client, sdk):
    stream = openai_client.chat.completions.create(model="sim-fast", messages=HELLO, stream=True)
    read = [next(stream) for _ in range(6)]  # the role chunk and 5 words
    stream.close()
    stream.close()  # a second close records nothing more

    assert [chunk.choices[0].delta.content for chunk in read][0] == ""  # the role chunk
    [event] = sdk.events(1)
    assert (event.input_tokens, event.output_tokens) == (4, 5)  # the prompt's words, the words received
    assert (event.token_count_source, event.success, event.status_code) == ("estimate", True, 200)
    assert event.ttft_ms >= 50


def test_a_stream_left_inside_with_is_recorded_when_the_block_exits(openai_client, sdk):
    with openai_client.chat.completions.create(model="sim-fast", messages=HELLO, stream=True) as stream:
        for index, _chunk in enumerate(stream):
            if index == 3:
                break

    [event] = sdk.events(1)
    assert (event.output_tokens, event.token_count_source) == (3, "estimate")


def test_a_stream_dropped_unfinished_is_recorded_by_the_garbage_collector(openai_client, sdk):
    stream = openai_client.chat.completions.create(model="sim-fast", messages=HELLO, stream=True)
    next(stream), next(stream), next(stream)
    never_read = openai_client.chat.completions.create(model="sim-fast", messages=HELLO, stream=True)
    time.sleep(0.3)  # the time a stream took is until its last item, not until it was collected
    del stream, never_read
    gc.collect()

    events = sdk.events(2)
    assert len(events) == 2
    assert sorted(event.output_tokens for event in events) == [0, 2]
    assert all(event.token_count_source == "estimate" and event.streamed for event in events)
    assert all(event.latency_ms < 250 for event in events)


def test_the_stream_helper_and_parse_are_recorded_once_each(openai_client, sdk):
    with openai_client.chat.completions.stream(model="sim-fast", messages=HELLO) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    parsed = openai_client.chat.completions.parse(model="sim-fast", messages=HELLO)

    assert "content.done" in events and final.choices[0].message.content
    assert parsed.choices[0].message.parsed is None  # no response_format: nothing to parse, still an answer
    streamed, plain = sdk.events(2)
    assert_full_chat(streamed, streamed=True)
    assert_full_chat(plain, streamed=False)


def test_with_raw_response_is_recorded_and_parses_to_the_same_objects(openai_client, sdk):
    raw = openai_client.chat.completions.with_raw_response.create(model="sim-fast", messages=HELLO)
    raw_stream = openai_client.chat.completions.with_raw_response.create(model="sim-fast", messages=HELLO, stream=True)

    assert raw.headers["content-type"].startswith("application/json")
    assert raw.parse().usage.prompt_tokens == 4
    assert len(list(raw_stream.parse())) == 1 + FAST_WORDS + 1
    plain, streamed = sdk.events(2)
    assert_full_chat(plain, streamed=False)
    assert_full_chat(streamed, streamed=True)


def test_reasoning_and_cached_tokens_are_recorded_as_reported(sim, sdk):
    from benchmarks.simulator import DEFAULT_PROFILES, ModelProfile

    sim.set_profile("sim-cached", ModelProfile(ttft_ms=5, inter_token_ms=0, output_tokens=8, reasoning_tokens=5,
                                               cached_tokens=3))
    assert "sim-cached" not in DEFAULT_PROFILES
    with sim_openai(sim) as client:
        pulse_sdk.instrument(client, pulse=sdk.client)
        client.chat.completions.create(model="sim-cached", messages=HELLO)
        list(client.chat.completions.create(model="sim-cached", messages=HELLO, stream=True))

    for event in sdk.events(2):
        assert (event.input_tokens, event.cached_tokens, event.output_tokens, event.reasoning_tokens) == (4, 3, 13, 5)


def test_an_answer_without_usage_is_estimated(openai_client, sdk):
    openai_client.chat.completions.create(model="sim-no-usage", messages=HELLO)
    list(openai_client.chat.completions.create(model="sim-no-usage", messages=HELLO, stream=True))

    for event in sdk.events(2):
        assert (event.input_tokens, event.output_tokens, event.token_count_source) == (4, FAST_WORDS, "estimate")


# -- the other endpoints --------------------------------------------------------------------------


def test_embeddings_are_recorded_with_their_input_tokens(openai_client, sdk):
    openai_client.embeddings.create(model="sim-embed", input=["one two three", "four five"])

    [event] = sdk.events(1)
    assert (event.endpoint, event.model, event.input_tokens, event.output_tokens) == ("embeddings", "sim-embed", 5, 0)
    assert (event.streamed, event.token_count_source) == (False, "usage")


def test_legacy_completions_plain_and_streamed(openai_client, sdk):
    openai_client.completions.create(model="sim-fast", prompt="say hello to pulse")
    chunks = list(openai_client.completions.create(model="sim-fast", prompt="say hello to pulse", stream=True))

    assert len(chunks) == FAST_WORDS + 1 and all("usage" not in chunk.to_dict() for chunk in chunks)
    plain, streamed = sdk.events(2)
    assert_full_chat(plain, streamed=False, endpoint="completions")
    assert_full_chat(streamed, streamed=True, endpoint="completions")


def test_responses_plain_streamed_the_stream_helper_and_parse(openai_client, sdk):
    answer = openai_client.responses.create(model="sim-fast", input="say hello to pulse", user="u-7")
    events = list(openai_client.responses.create(model="sim-fast", input="say hello to pulse", stream=True))
    with openai_client.responses.stream(model="sim-fast", input="say hello to pulse") as stream:
        final = stream.get_final_response()
    parsed = openai_client.responses.parse(model="sim-fast", input="say hello to pulse")

    assert answer.usage.output_tokens == FAST_WORDS and events[-1].type == "response.completed"
    assert final.output_text.split() == answer.output_text.split() == parsed.output_text.split()
    plain, streamed, helper, parse = sdk.events(4)
    assert_full_chat(plain, streamed=False, endpoint="responses")
    assert plain.end_user == "u-7"
    assert_full_chat(streamed, streamed=True, endpoint="responses")
    assert_full_chat(helper, streamed=True, endpoint="responses")
    assert_full_chat(parse, streamed=False, endpoint="responses")


def test_paths_that_generate_nothing_are_not_recorded(openai_client, sdk, sim):
    with pytest.raises(openai.NotFoundError):  # the simulator has no cancel: a 404, not a call to record
        openai_client.responses.cancel("resp_123")
    openai_client.chat.completions.create(model="sim-fast", messages=HELLO)

    assert len(sdk.events(1)) == 1


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "error", "status"), [
    ("sim-429", openai.RateLimitError, 429),
    ("sim-500", openai.InternalServerError, 500),
])
def test_an_api_error_is_recorded_and_raised_unchanged(openai_client, sdk, model, error, status):
    with pytest.raises(error) as raised:
        openai_client.chat.completions.create(model=model, messages=HELLO)
    with pytest.raises(error):
        openai_client.chat.completions.create(model=model, messages=HELLO, stream=True)

    assert raised.value.status_code == status
    for event in sdk.events(2):
        assert (event.model, event.success, event.status_code) == (model, False, status)
        assert (event.input_tokens, event.output_tokens, event.token_count_source) == (0, 0, "")
        assert event.latency_ms > 0


def test_a_connection_error_and_a_timeout_are_recorded_without_a_status(sim, sdk):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens there once the socket is closed
    with openai.OpenAI(base_url=f"http://127.0.0.1:{closed_port}/v1", api_key="sk", max_retries=0) as client:
        pulse_sdk.instrument(client, pulse=sdk.client)
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="sim-fast", messages=HELLO)
    with sim_openai(sim, timeout=0.3) as client:
        pulse_sdk.instrument(client, pulse=sdk.client)
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="sim-stall", messages=HELLO)

    refused, timed_out = sdk.events(2)
    assert (refused.model, refused.success, refused.status_code) == ("sim-fast", False, None)
    assert (timed_out.model, timed_out.success, timed_out.status_code) == ("sim-stall", False, None)
    assert timed_out.latency_ms >= 300


@pytest.mark.parametrize("model", ["sim-disconnect", "sim-error-event"])
def test_a_stream_that_breaks_midway_is_recorded_as_failed_with_what_came(openai_client, sdk, model):
    received = []
    with pytest.raises(openai.APIError):
        for chunk in openai_client.chat.completions.create(model=model, messages=HELLO, stream=True):
            received.append(chunk)

    [event] = sdk.events(1)
    assert (event.success, event.streamed, event.token_count_source) == (False, True, "estimate")
    assert (event.input_tokens, event.output_tokens) == (4, len(received) - 1)  # the words before the break


# -- async ----------------------------------------------------------------------------------------


def test_async_chat_plain_streamed_and_closed_early(async_openai_client, sdk):
    async def calls() -> int:
        async with async_openai_client as client:
            await client.chat.completions.create(model="sim-fast", messages=HELLO)
            chunks = [chunk async for chunk in await client.chat.completions.create(
                model="sim-fast", messages=HELLO, stream=True)]
            stream = await client.chat.completions.create(model="sim-fast", messages=HELLO, stream=True)
            await stream.__anext__(), await stream.__anext__(), await stream.__anext__()
            await stream.close()
            async with await client.chat.completions.create(model="sim-fast", messages=HELLO, stream=True) as stream:
                await stream.__anext__(), await stream.__anext__()
            dropped = await client.chat.completions.create(model="sim-fast", messages=HELLO, stream=True)
            await dropped.__anext__(), await dropped.__anext__(), await dropped.__anext__(), await dropped.__anext__()
            del dropped
            gc.collect()
            return len(chunks)

    assert asyncio.run(calls()) == 1 + FAST_WORDS + 1
    plain, streamed, closed, exited, dropped = sdk.events(5)
    assert_full_chat(plain, streamed=False)
    assert_full_chat(streamed, streamed=True)
    assert [(event.output_tokens, event.token_count_source) for event in (closed, exited, dropped)] == [
        (2, "estimate"), (1, "estimate"), (3, "estimate")]


def test_async_responses_stream_and_errors(async_openai_client, sdk):
    async def calls() -> None:
        async with async_openai_client as client:
            async with client.responses.stream(model="sim-fast", input="say hello to pulse") as stream:
                await stream.get_final_response()
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model="sim-429", messages=HELLO)

    asyncio.run(calls())
    streamed, failed = sdk.events(2)
    assert_full_chat(streamed, streamed=True, endpoint="responses")
    assert (failed.success, failed.status_code) == (False, 429)


def test_the_stream_helpers_left_early_are_recorded_when_they_close(openai_client, sdk):
    """ChatCompletionStream and ResponseStream close the HTTP response themselves, not the Stream."""
    deltas = 0
    with openai_client.chat.completions.stream(model="sim-fast", messages=HELLO) as stream:
        for event in stream:
            deltas += event.type == "content.delta" and bool(event.delta)
            if deltas == 3:
                break
    deltas = 0
    with openai_client.responses.stream(model="sim-fast", input="say hello to pulse") as stream:
        for event in stream:
            deltas += event.type == "response.output_text.delta"
            if deltas == 5:
                break

    chat, responses = sdk.events(2)
    assert (chat.output_tokens, chat.token_count_source, chat.endpoint) == (3, "estimate", "chat")
    assert (responses.output_tokens, responses.token_count_source, responses.endpoint) == (5, "estimate", "responses")
