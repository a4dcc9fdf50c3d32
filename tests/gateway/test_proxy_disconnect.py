"""A caller that leaves mid-stream: the gateway cancels the upstream request (the simulator sees
its client go) and still records the call with the tokens known so far, estimated from the text
that had arrived (peers lose this spend)."""

from __future__ import annotations

import time
from dataclasses import replace

from benchmarks.simulator import DEFAULT_PROFILES, Fault

HELLO = [{"role": "user", "content": "say hello to the gateway"}]  # 5 prompt tokens
# Ten chunks, then nothing for a minute: the caller leaves during the pause.
PAUSING = replace(DEFAULT_PROFILES["sim-fast"], output_tokens=40, fault=Fault("stall", after_chunks=10, stall_seconds=60))


def wait_until(condition, deadline_s: float = 15.0) -> bool:
    """Poll `condition` until it holds or the deadline passes (a bound, never a timing claim)."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_caller_leaving_mid_stream_cancels_the_upstream_and_the_call_is_still_recorded(
        gateway_world, openai_client, simulator, recorded_calls):
    simulator.set_profile("sim-pausing", PAUSING)
    gateway_world.route("pausing", [(gateway_world.openai_connection, "sim-pausing")])

    received = 0
    with openai_client.chat.completions.create(model="pausing", messages=HELLO, stream=True) as stream:
        for chunk in stream:
            received += bool(chunk.choices and chunk.choices[0].delta.content)
            if received == 10:
                break  # leaving the block closes the connection

    [record] = recorded_calls(1)
    event = record.event
    assert (event["status_code"], event["success"]) == (499, False)
    assert event["token_count_source"] == "estimate"
    assert (event["input_tokens"], event["output_tokens"]) == (5, 10)  # the prompt, and the ten words received
    assert wait_until(lambda: simulator.requests()[0]["client_left"])
    [upstream] = simulator.requests()
    assert upstream["completed"] is False and upstream["output_tokens"] == 10


def test_an_anthropic_stream_left_mid_way_keeps_the_input_count_the_upstream_gave(
        gateway_world, anthropic_client, simulator, recorded_calls):
    simulator.set_profile("sim-pausing", PAUSING)
    gateway_world.route("pausing", [(gateway_world.anthropic_connection, "sim-pausing")])

    with anthropic_client.messages.stream(model="pausing", max_tokens=100, messages=HELLO) as stream:
        for index, _text in enumerate(stream.text_stream):
            if index == 9:
                break

    [record] = recorded_calls(1)
    event = record.event
    assert (event["status_code"], event["endpoint"], event["token_count_source"]) == (499, "messages", "estimate")
    assert (event["input_tokens"], event["output_tokens"]) == (5, 10)
    assert wait_until(lambda: simulator.requests()[0]["client_left"])
