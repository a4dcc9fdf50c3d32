"""@track_cost: a function that returns a provider's answer (object or dict, OpenAI's or
Anthropic's shape) records it with its tags; its value and its exceptions go through unchanged."""

from __future__ import annotations

import asyncio
import logging

import anthropic
import openai
import pulse_sdk
import pytest

from benchmarks.simulator import ModelProfile

from .answers import ANTHROPIC_MESSAGE, EMBEDDINGS_ANSWER, OPENAI_CHAT, RESPONSES_ANSWER
from .conftest import HELLO, sim_anthropic, sim_openai


def test_an_answer_object_is_recorded_with_the_feature_and_returned_unchanged(sim, sdk):
    client = sim_openai(sim)

    @pulse_sdk.track_cost(feature="search", pulse=sdk.client, team="growth")
    def search(question: str) -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(model="sim-fast", messages=[{"role": "user", "content": question}])

    answer = search("say hello to pulse")

    assert answer.model == "sim-fast" and answer.usage.prompt_tokens == 4
    [event] = sdk.events(1)
    assert (event.provider, event.model, event.endpoint, event.source) == ("openai", "sim-fast", "chat", "sdk")
    assert (event.input_tokens, event.output_tokens, event.token_count_source) == (4, 64, "usage")
    assert event.tags == {"feature": "search", "team": "growth"}
    assert event.latency_ms >= 50 and event.success
    assert search.__name__ == "search"  # functools.wraps


def test_dicts_of_either_shape_count_as_pulse_counts(sdk):
    answers = iter([OPENAI_CHAT, ANTHROPIC_MESSAGE, RESPONSES_ANSWER, EMBEDDINGS_ANSWER])

    @pulse_sdk.track_cost(pulse=sdk.client)
    def call() -> dict:
        return next(answers)

    returned = [call() for _ in range(4)]

    assert returned[1] is ANTHROPIC_MESSAGE
    counts = [(e.provider, e.model, e.endpoint, e.input_tokens, e.cached_tokens, e.output_tokens, e.reasoning_tokens)
              for e in sdk.events(4)]
    assert counts == [
        ("openai", "gpt-4o-mini-2024-07-18", "chat", 120, 100, 30, 10),
        ("anthropic", "claude-3-5-haiku-20241022", "messages", 125, 100, 7, 0),  # 20 + cache read + cache write
        ("openai", "o4-mini", "responses", 50, 10, 40, 32),
        ("openai", "text-embedding-3-small", "embeddings", 9, 0, 0, 0),
    ]


def test_an_async_function_returning_an_anthropic_message(sim, sdk):
    sim.set_profile("sim-cache", ModelProfile(ttft_ms=5, inter_token_ms=0, output_tokens=8, cached_tokens=3))
    client = sim_anthropic(sim, is_async=True)

    @pulse_sdk.track_cost(feature="summary", provider="anthropic-sim", pulse=sdk.client)
    async def summarize() -> anthropic.types.Message:
        return await client.messages.create(model="sim-cache", max_tokens=64, messages=HELLO)

    message = asyncio.run(summarize())

    assert message.usage.cache_read_input_tokens == 3
    [event] = sdk.events(1)
    assert (event.provider, event.endpoint, event.input_tokens, event.cached_tokens, event.output_tokens) == (
        "anthropic-sim", "messages", 4, 3, 8)
    assert event.tags == {"feature": "summary"}


def test_an_api_error_is_recorded_as_failed_and_raised_unchanged(sim, sdk):
    client = sim_openai(sim)

    @pulse_sdk.track_cost(feature="search", pulse=sdk.client)
    def search() -> None:
        client.chat.completions.create(model="sim-429", messages=HELLO)

    with pytest.raises(openai.RateLimitError) as raised:
        search()

    assert raised.value.status_code == 429 and "Rate limit reached" in str(raised.value)
    [event] = sdk.events(1)
    assert (event.model, event.success, event.status_code, event.endpoint) == ("sim-429", False, 429, "chat")
    assert (event.input_tokens, event.output_tokens, event.tags) == (0, 0, {"feature": "search"})


def test_other_exceptions_and_other_values_record_nothing(sdk, caplog):
    @pulse_sdk.track_cost(pulse=sdk.client)
    def broken() -> None:
        raise ValueError("not the provider's")

    @pulse_sdk.track_cost(pulse=sdk.client)
    def text() -> str:
        return "no usage here"

    with pytest.raises(ValueError, match="not the provider's"):
        broken()
    with caplog.at_level(logging.WARNING, logger="pulse_sdk"):
        assert text() == "no usage here"
        assert text() == "no usage here"

    assert sdk.events(0) == []
    assert caplog.text.count("returned str, which reports no usage: nothing is recorded") == 1  # once per function


def test_tags_of_the_context_apply_in_each_asyncio_task(sdk):
    @pulse_sdk.track_cost(feature="chat", pulse=sdk.client)
    async def answer(n: int) -> dict:
        await asyncio.sleep(0.01 * (5 - n))  # finish in the reverse order of their start
        return OPENAI_CHAT

    async def for_user(n: int) -> dict:
        with pulse_sdk.tags(user=f"u-{n}", feature="overridden"):
            return await answer(n)

    async def main() -> list:
        return await asyncio.gather(*(for_user(n) for n in range(5)))

    assert asyncio.run(main()) == [OPENAI_CHAT] * 5
    tags = sorted((event.tags["user"], event.tags["feature"]) for event in sdk.events(5))
    assert tags == [(f"u-{n}", "chat") for n in range(5)]  # the decorator's own tag wins over the block's


def test_an_instrumented_call_inside_is_recorded_once_with_the_decorator_tags(openai_client, sdk):
    @pulse_sdk.track_cost(feature="search", pulse=sdk.client)
    def search() -> openai.types.chat.ChatCompletion:
        return openai_client.chat.completions.create(model="sim-instant", messages=HELLO)

    @pulse_sdk.track_cost
    def bare() -> openai.types.chat.ChatCompletion:
        return openai_client.chat.completions.create(model="sim-instant", messages=HELLO)

    search()
    bare()

    first, second = sdk.events(2)
    assert (first.tags, first.streamed, first.endpoint) == ({"feature": "search"}, False, "chat")
    assert second.tags == {}
