"""Retries and fallbacks with the simulator's faults: the next upstream on connection errors,
timeouts, 429 and 5xx before the first byte; Retry-After honoured within the retry budget; at most
GATEWAY_MAX_ATTEMPTS tries; and never a retry once bytes reached the caller."""

from __future__ import annotations

from dataclasses import replace

import openai
import pytest

from benchmarks.simulator import DEFAULT_PROFILES, Fault
from tests.gateway.conftest import free_port

HELLO = [{"role": "user", "content": "hello"}]
FAST = DEFAULT_PROFILES["sim-fast"]


def models_called(simulator) -> list[str]:
    return [request["model"] for request in simulator.requests()]


@pytest.mark.parametrize("failing", ["sim-500", "sim-429", "sim-flaky-always"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_upstream_falls_back_to_the_next(gateway_world, openai_client, simulator, recorded_calls,
                                                   failing, stream):
    simulator.set_profile("sim-flaky-always", replace(FAST, fault=Fault("status", status_code=503)))
    conn = gateway_world.openai_connection
    gateway_world.route("resilient", [(conn, failing), (conn, "sim-fast")])

    raw = openai_client.chat.completions.with_raw_response.create(model="resilient", messages=HELLO, stream=stream)
    answer = raw.parse()
    if stream:
        assert len("".join(c.choices[0].delta.content or "" for c in answer if c.choices).split()) == FAST.output_tokens
    else:
        assert answer.model == "sim-fast"

    assert raw.headers["x-pulse-upstream"] == "sim-openai/sim-fast"
    assert models_called(simulator) == [failing, "sim-fast"]
    [record] = recorded_calls(1)
    [attempt] = record.event["attempts"]
    assert attempt["upstream"] == f"sim-openai/{failing}" and attempt["status_code"] in (429, 500, 503)
    assert record.event["success"] is True and record.event["upstream"] == "sim-openai/sim-fast"


def test_a_connection_error_falls_back_to_the_next(gateway_world, openai_client, simulator, recorded_calls):
    closed = gateway_world.connection("nobody-home", base_url=f"http://127.0.0.1:{free_port()}/v1")
    gateway_world.route("resilient", [(closed, "sim-fast"), (gateway_world.openai_connection, "sim-fast")])

    raw = openai_client.chat.completions.with_raw_response.create(model="resilient", messages=HELLO)

    assert raw.headers["x-pulse-upstream"] == "sim-openai/sim-fast"
    [record] = recorded_calls(1)
    assert "could not reach the upstream" in record.event["attempts"][0]["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_disconnects_before_the_first_byte_is_replaced(gateway_world, openai_client, simulator, stream):
    """The stream is cut before any content (and, streaming, before any event at all)."""
    cut = replace(FAST, role_chunk_first=False, fault=Fault("disconnect_mid_stream", after_chunks=0))
    simulator.set_profile("sim-cut", cut)
    conn = gateway_world.openai_connection
    gateway_world.route("resilient", [(conn, "sim-cut"), (conn, "sim-fast")])

    answer = openai_client.chat.completions.create(model="resilient", messages=HELLO, stream=stream)
    text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices) if stream else answer.choices[0].message.content

    assert len(text.split()) == FAST.output_tokens
    assert models_called(simulator) == ["sim-cut", "sim-fast"]


def test_a_stream_that_ends_before_its_first_content_is_replaced(gateway_world, openai_client, simulator):
    conn = gateway_world.openai_connection
    gateway_world.route("resilient", [(conn, "sim-empty"), (conn, "sim-error-event-at-once"), (conn, "sim-fast")])
    simulator.set_profile("sim-error-event-at-once", replace(FAST, fault=Fault("error_event", after_chunks=0)))

    chunks = list(openai_client.chat.completions.create(model="resilient", messages=HELLO, stream=True))

    assert chunks[-1].choices[0].finish_reason == "stop"
    assert models_called(simulator) == ["sim-empty", "sim-error-event-at-once", "sim-fast"]


def test_bytes_sent_are_never_retried_a_broken_stream_ends_with_an_error_the_sdk_raises(
        gateway_world, openai_client, simulator, recorded_calls):
    conn = gateway_world.openai_connection
    gateway_world.route("resilient", [(conn, "sim-disconnect"), (conn, "sim-fast")])

    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in openai_client.chat.completions.create(model="resilient", messages=HELLO, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    assert "broke off the stream" in str(raised.value)
    assert len(received) == 3  # what the upstream sent before it broke
    assert models_called(simulator) == ["sim-disconnect"]  # the fallback was never asked
    [record] = recorded_calls(1)
    event = record.event
    assert (event["status_code"], event["success"]) == (502, False)
    assert event["output_tokens"] == 3 and event["token_count_source"] == "estimate"


def test_at_most_max_attempts_upstreams_are_tried_and_the_last_error_is_passed_through(
        gateway_world, openai_client, simulator):
    conn = gateway_world.openai_connection
    gateway_world.route("doomed", [(conn, "sim-500"), (conn, "sim-429"), (conn, "sim-unavailable"), (conn, "sim-fast")])
    simulator.set_profile("sim-unavailable", replace(FAST, fault=Fault("status", status_code=503)))

    with pytest.raises(openai.InternalServerError) as raised:
        openai_client.chat.completions.create(model="doomed", messages=HELLO)

    assert raised.value.status_code == 503  # the third, and last, attempt's answer
    assert models_called(simulator) == ["sim-500", "sim-429", "sim-unavailable"]


def test_a_single_upstream_is_retried_after_its_retry_after(gateway_world, openai_client, simulator):
    simulator.set_profile("sim-429-once", replace(FAST, fault=Fault("status", status_code=429, retry_after=1, first=1)))
    gateway_world.route("patient", [(gateway_world.openai_connection, "sim-429-once")])

    raw = openai_client.chat.completions.with_raw_response.create(model="patient", messages=HELLO)

    assert raw.parse().model == "sim-429-once"
    first, second = simulator.requests()
    assert (first["status"], second["status"]) == (429, 200)
    assert second["received_ns"] - first["received_ns"] >= 1_000_000_000  # it waited as told
    assert float(raw.headers["x-pulse-overhead-ms"]) < 1000  # the wait is the upstream's, not Pulse's


def test_a_retry_after_longer_than_the_retry_budget_is_passed_to_the_caller(gateway_world, start_gateway, simulator):
    gateway = start_gateway(GATEWAY_RETRY_BUDGET_S="5")
    simulator.set_profile("sim-429-long", replace(FAST, fault=Fault("status", status_code=429, retry_after=60)))
    gateway_world.route("impatient", [(gateway_world.openai_connection, "sim-429-long")])
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway_world.raw_token, max_retries=0)

    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="impatient", messages=HELLO)

    assert raised.value.response.headers["retry-after"] == "60"
    assert models_called(simulator) == ["sim-429-long"]


def test_an_upstream_that_does_not_answer_in_time_is_replaced_or_a_504(gateway_world, start_gateway, simulator):
    gateway = start_gateway(GATEWAY_FIRST_BYTE_TIMEOUT_S="0.5")
    conn = gateway_world.openai_connection
    gateway_world.route("slow-then-fast", [(conn, "sim-stall"), (conn, "sim-fast")])
    gateway_world.route("only-slow", [(conn, "sim-stall")])
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway_world.raw_token, max_retries=0)

    answer = client.chat.completions.with_raw_response.create(model="slow-then-fast", messages=HELLO)
    assert answer.headers["x-pulse-upstream"] == "sim-openai/sim-fast"

    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="only-slow", messages=HELLO)
    assert raised.value.status_code == 504
    assert raised.value.response.json()["error"]["code"] == "upstream_timeout"


def test_a_stream_that_stalls_after_it_started_ends_with_an_error(gateway_world, start_gateway, simulator):
    gateway = start_gateway(GATEWAY_READ_TIMEOUT_S="0.5")
    conn = gateway_world.openai_connection
    gateway_world.route("stalls", [(conn, "sim-stall"), (conn, "sim-fast")])
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway_world.raw_token, max_retries=0)

    with pytest.raises(openai.APIError) as raised:
        list(client.chat.completions.create(model="stalls", messages=HELLO, stream=True))

    assert "read timeout" in str(raised.value)
    assert models_called(simulator) == ["sim-stall"]
