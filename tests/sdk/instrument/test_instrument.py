"""instrument() itself: once per client however often it is called, copies included; the
provider named as Pulse prices it; tags; calls through Pulse's gateway left to the gateway; and
never an error raised into the caller's code by the recording."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from decimal import Decimal

import openai
import pulse_sdk
import pytest

from costs.models import CostEvent
from gateway.consumer import Consumer
from tests.gateway.conftest import SIM_PRICES, sim_catalog_prices

from .conftest import HELLO, sim_anthropic, sim_openai


def test_instrumenting_twice_records_each_call_once(sim, sdk):
    with sim_openai(sim) as client:
        assert pulse_sdk.instrument(client, pulse=sdk.client) is client
        pulse_sdk.instrument(client, pulse=sdk.client, tags={"again": True})
        client.chat.completions.create(model="sim-instant", messages=HELLO)
        list(client.chat.completions.create(model="sim-instant", messages=HELLO, stream=True))

    events = sdk.events(2)
    assert len(events) == 2
    assert all(event.tags == {"again": "true"} for event in events)  # the last settings apply


def test_resources_made_before_instrument_are_recorded_too(sim, sdk):
    with sim_openai(sim) as client:
        completions = client.chat.completions  # made before: it holds the client's post() already
        embeddings = client.embeddings
        pulse_sdk.instrument(client, pulse=sdk.client)
        completions.create(model="sim-instant", messages=HELLO)
        embeddings.create(model="sim-embed", input="one two")

    assert [event.endpoint for event in sdk.events(2)] == ["chat", "embeddings"]


def test_copies_are_instrumented_and_record_once(sim, sdk):
    with sim_openai(sim) as client:
        pulse_sdk.instrument(client, pulse=sdk.client, tags={"client": "original"})
        copy = client.with_options(timeout=5.0)
        copy.chat.completions.create(model="sim-instant", messages=HELLO)
        pulse_sdk.instrument(copy, pulse=sdk.client, tags={"client": "copy"})  # again, on the copy
        copy.chat.completions.create(model="sim-instant", messages=HELLO)
        client.copy(max_retries=1).chat.completions.create(model="sim-instant", messages=HELLO)
        client.chat.completions.create(model="sim-instant", messages=HELLO)

    events = sdk.events(4)
    assert [event.tags["client"] for event in events] == ["original", "copy", "original", "original"]


def test_uninstrument_stops_recording(sim, sdk):
    with sim_openai(sim) as client:
        pulse_sdk.instrument(client, pulse=sdk.client)
        client.chat.completions.create(model="sim-instant", messages=HELLO)
        responses = client.responses  # made while instrumented
        pulse_sdk.uninstrument(client)
        client.chat.completions.create(model="sim-instant", messages=HELLO)
        responses.create(model="sim-instant", input="hello")
        list(client.with_options(timeout=5.0).chat.completions.create(model="sim-instant", messages=HELLO, stream=True))
        pulse_sdk.uninstrument(client)  # twice: nothing to undo

    assert len(sdk.events(1)) == 1
    assert "post" not in vars(client)


def test_other_objects_are_returned_unchanged_with_a_warning(caplog):
    thing = object()
    with caplog.at_level(logging.WARNING, logger="pulse_sdk"):
        assert pulse_sdk.instrument(thing) is thing
    assert "not object: its calls are not recorded" in caplog.text
    assert pulse_sdk.uninstrument(thing) is thing


@pytest.mark.parametrize(("base_url", "provider"), [
    ("https://api.openai.com/v1", "openai"),
    ("https://api.groq.com/openai/v1", "groq"),
    ("https://api.together.xyz/v1", "together"),
    ("https://api.mistral.ai/v1", "mistral"),
    ("https://api.deepseek.com", "deepseek"),
    ("https://openrouter.ai/api/v1", "openrouter"),
    ("https://api.fireworks.ai/inference/v1", "fireworks"),
    ("https://api.x.ai/v1", "x-ai"),
    ("https://generativelanguage.googleapis.com/v1beta/openai/", "google"),
    ("https://my-resource.openai.azure.com/openai", "azure"),
    ("http://localhost:8000/v1", "openai"),  # a host Pulse does not know: the SDK's own name
])
def test_the_provider_is_named_by_the_base_url_host(base_url, provider, tracked):
    with openai.OpenAI(base_url=base_url, api_key="sk") as client:
        pulse_sdk.instrument(client, pulse=tracked)
        assert vars(client)["_pulse_instrumentation"].settings.provider == provider


def test_the_names_are_those_pulse_prices_under():
    """Every provider name the host table gives is a provider genai-prices (Pulse's price source) knows."""
    from genai_prices import data_snapshot
    from pulse_sdk.instrument.providers import HOSTS

    known = {provider.id for provider in data_snapshot.get_snapshot().providers}
    assert set(HOSTS.values()) <= known


def test_provider_overrides_the_name_and_prices_the_call(sim, sdk):
    sim_catalog_prices()  # sim-fast costs $1/$2 per million under "pulse-sim"
    with sim_openai(sim) as client:
        pulse_sdk.instrument(client, pulse=sdk.client, provider="pulse-sim")
        client.chat.completions.create(model="sim-fast", messages=HELLO)
    with sim_anthropic(sim) as client:
        pulse_sdk.instrument(client, pulse=sdk.client)
        client.messages.create(model="sim-fast", max_tokens=8, messages=HELLO)

    priced, unpriced = sdk.events(2)
    input_price, output_price = (Decimal(price) for price in SIM_PRICES["sim-fast"])
    assert priced.provider == "pulse-sim"
    assert priced.cost_usd == (4 * input_price + 64 * output_price) / 1_000_000
    assert (unpriced.provider, unpriced.cost_usd) == ("anthropic", None)  # no price for an unknown model


def test_tags_of_instrument_and_of_the_context(openai_client, sim, sdk):
    pulse_sdk.instrument(openai_client, pulse=sdk.client, tags={"service": "api", "feature": "default"})
    with pulse_sdk.tags(feature="search", user="u-42"):
        openai_client.chat.completions.create(model="sim-instant", messages=HELLO)
        stream = openai_client.chat.completions.create(model="sim-instant", messages=HELLO, stream=True)
    with pulse_sdk.tags(feature="elsewhere"):  # a stream carries the tags of where it began
        list(stream)
    openai_client.chat.completions.create(model="sim-instant", messages=HELLO)

    tags = [event.tags for event in sdk.events(3)]
    assert tags == [{"service": "api", "feature": "search", "user": "u-42"}] * 2 + [{"service": "api", "feature": "default"}]


def test_tags_follow_each_asyncio_task(sim, sdk):
    client = pulse_sdk.instrument(sim_openai(sim, is_async=True), pulse=sdk.client)

    async def ask(user: str) -> None:
        with pulse_sdk.tags(user=user):
            await asyncio.sleep(0)
            stream = await client.chat.completions.create(model="sim-fast", messages=HELLO, stream=True)
            async for _chunk in stream:
                await asyncio.sleep(0)  # the tasks' streams interleave

    async def main() -> None:
        async with client:
            await asyncio.gather(*(ask(f"u-{n}") for n in range(5)))

    asyncio.run(main())
    assert sorted(event.tags["user"] for event in sdk.events(5)) == [f"u-{n}" for n in range(5)]


def test_calls_from_many_threads_are_each_recorded_once(openai_client, sdk):
    errors = []

    def calls() -> None:
        try:
            for _ in range(5):
                openai_client.chat.completions.create(model="sim-instant", messages=HELLO)
                list(openai_client.chat.completions.create(model="sim-instant", messages=HELLO, stream=True))
        except Exception as error:  # pragma: no cover - shown by the assert below
            errors.append(error)

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    events = sdk.events(80)
    assert len(events) == 80
    assert sum(event.streamed for event in events) == 40
    assert all(event.output_tokens == 16 and event.token_count_source == "usage" for event in events)


def test_a_failing_recorder_never_reaches_the_caller(sim, caplog, monkeypatch):
    from pulse_sdk.instrument import calls

    monkeypatch.setattr(calls, "_failures_logged", set())

    class Broken:
        def track(self, **fields):
            raise RuntimeError("the recorder is down")

    with sim_openai(sim) as client, caplog.at_level(logging.DEBUG, logger="pulse_sdk"):
        pulse_sdk.instrument(client, pulse=Broken())
        answer = client.chat.completions.create(model="sim-instant", messages=HELLO)
        chunks = list(client.chat.completions.create(model="sim-instant", messages=HELLO, stream=True))
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="sim-429", messages=HELLO)

    assert answer.choices[0].message.content and len(chunks) == 18
    failures = [record for record in caplog.records if "could not record" in record.getMessage()]
    assert [record.levelname for record in failures] == ["ERROR", "DEBUG", "DEBUG"]  # a traceback once, then a line
    assert failures[0].exc_info is not None and "the call itself went on" in failures[0].getMessage()


def test_tags_the_server_would_refuse_are_left_out_with_a_warning(sim, sdk, caplog):
    tags = {"team": "growth", "": "empty key", "long": "x" * 129, "object": object(), "nan": float("nan"), "n": 7}
    with sim_openai(sim) as client, caplog.at_level(logging.WARNING, logger="pulse_sdk"):
        pulse_sdk.instrument(client, pulse=sdk.client, tags=tags)
        client.chat.completions.create(model="sim-instant", messages=HELLO)

    [event] = sdk.events(1)
    assert event.tags == {"team": "growth", "n": "7"}
    assert caplog.text.count("pulse_sdk.instrument(): the tag") == 4


def test_with_streaming_response_is_not_recorded_and_works_as_without_pulse(openai_client, sdk):
    with openai_client.chat.completions.with_streaming_response.create(model="sim-instant", messages=HELLO) as response:
        assert response.parse().usage.completion_tokens == 16
    openai_client.chat.completions.create(model="sim-instant", messages=HELLO)

    assert len(sdk.events(1)) == 1


@pytest.mark.skipif(importlib.util.find_spec("pulse_sdk.client") is None,
                    reason="pulse_sdk.Client (part A of issue 12) is not merged on this branch yet")
def test_without_pulse_the_default_client_records(sim, pulse, monkeypatch):
    monkeypatch.setenv("PULSE_API_KEY", pulse.ingest_key)
    monkeypatch.setenv("PULSE_BASE_URL", pulse.url)
    default = pulse_sdk.init()
    try:
        with sim_openai(sim) as client:
            pulse_sdk.instrument(client)
            client.chat.completions.create(model="sim-instant", messages=HELLO)
        assert default.flush(10.0)
        [event] = pulse.events()
        assert (event.source, event.model, event.output_tokens) == ("sdk", "sim-instant", 16)
    finally:
        default.close()


# -- Pulse's gateway ------------------------------------------------------------------------------


def test_calls_through_the_gateway_are_left_to_the_gateway(gateway_world, sdk):
    with gateway_world.openai() as plain:
        expected = list(plain.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
    with gateway_world.openai() as client, gateway_world.anthropic() as claude:
        pulse_sdk.instrument(client, pulse=sdk.client)
        pulse_sdk.instrument(claude, pulse=sdk.client)
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
        client.embeddings.create(model="text-embedding-3-small", input="one two")
        claude.messages.create(model="claude-3-5-haiku", max_tokens=16, messages=HELLO)
        with pytest.raises(openai.NotFoundError):  # the gateway's own refusal: no route by that name
            client.chat.completions.create(model="no-such-route", messages=HELLO)

    Consumer().drain()
    events = sdk.events(5)  # the plain client's stream, the instrumented clients' four answered calls
    assert [(event.source, event.endpoint, event.streamed) for event in events] == [
        ("gateway", "chat", True), ("gateway", "chat", False), ("gateway", "chat", True),
        ("gateway", "embeddings", False), ("gateway", "messages", False)]
    assert CostEvent.objects.filter(source="sdk").count() == 0
    # The usage chunk the instrumented client asked for is kept from its caller.
    assert [chunk.choices and chunk.choices[0].finish_reason for chunk in chunks] == [
        chunk.choices and chunk.choices[0].finish_reason for chunk in expected]
    assert all("usage" not in chunk.to_dict() for chunk in chunks)


def test_async_calls_through_the_gateway_are_left_to_the_gateway(gateway_world, sdk):
    async def calls() -> None:
        client = pulse_sdk.instrument(openai.AsyncOpenAI(base_url=gateway_world.base_url, api_key=gateway_world.raw_token,
                                                         max_retries=0), pulse=sdk.client)
        claude = pulse_sdk.instrument(gateway_world.anthropic(), pulse=sdk.client)
        async with client:
            await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
            [chunk async for chunk in await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO,
                                                                            stream=True)]
        with claude, claude.messages.stream(model="claude-3-5-haiku", max_tokens=16, messages=HELLO) as stream:
            stream.until_done()

    asyncio.run(calls())
    Consumer().drain()
    events = sdk.events(3)
    assert [(event.source, event.endpoint, event.streamed) for event in events] == [
        ("gateway", "chat", False), ("gateway", "chat", True), ("gateway", "messages", True)]
