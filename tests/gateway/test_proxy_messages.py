"""/v1/messages (Anthropic's Messages API) with the official Anthropic client: plain and streamed,
Anthropic's token conventions turned into Pulse's, errors in Anthropic's shape; and the other
ways Anthropic connections and the x-api-key header are used."""

from __future__ import annotations

from dataclasses import replace

import anthropic
import pytest

from benchmarks.simulator import DEFAULT_PROFILES, Fault

HELLO = [{"role": "user", "content": "say hello to the gateway"}]  # 5 prompt tokens
FAST = DEFAULT_PROFILES["sim-fast"]


def test_a_message_is_the_upstreams_answer_and_is_recorded(gateway_world, anthropic_client, simulator, recorded_calls):
    simulator.set_profile("sim-cached", replace(FAST, cached_tokens=2, output_tokens=12))
    gateway_world.route("claude-cached", [(gateway_world.anthropic_connection, "sim-cached")])

    message = anthropic_client.messages.create(model="claude-cached", max_tokens=100, messages=HELLO)

    assert message.model == "sim-cached" and len(message.content[0].text.split()) == 12
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (3, 2)  # Anthropic's own counts
    [record] = recorded_calls(1)
    event = record.event
    assert (event["endpoint"], event["streamed"], event["upstream"]) == ("messages", False, "sim-anthropic/sim-cached")
    # Pulse counts every prompt token as input, the cached ones beside them.
    assert (event["input_tokens"], event["cached_tokens"], event["output_tokens"]) == (5, 2, 12)
    assert event["token_count_source"] == "provider"


def test_a_streamed_message_arrives_event_by_event(gateway_world, anthropic_client, simulator, recorded_calls):
    with anthropic_client.messages.stream(model="claude-3-5-haiku", max_tokens=100, messages=HELLO,
                                          metadata={"user_id": "user-7"}) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(texts) == FAST.output_tokens and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == FAST.output_tokens
    [record] = recorded_calls(1)
    event = record.event
    assert (event["streamed"], event["end_user"], event["token_count_source"]) == (True, "user-7", "provider")
    assert (event["input_tokens"], event["output_tokens"]) == (5, FAST.output_tokens)


def test_errors_on_messages_are_in_anthropics_shape(gateway_world, anthropic_client):
    with pytest.raises(anthropic.NotFoundError) as raised:
        anthropic_client.messages.create(model="claude-9", max_tokens=10, messages=HELLO)
    body = raised.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "claude-9" in body["error"]["message"]

    with pytest.raises(anthropic.AuthenticationError) as raised:
        gateway_world.anthropic(api_key="pk_live_" + "x" * 60).messages.create(
            model="claude-3-5-haiku", max_tokens=10, messages=HELLO)
    assert raised.value.response.json()["error"]["type"] == "authentication_error"


def test_a_message_without_max_tokens_is_a_bad_request_in_anthropics_shape(gateway_world):
    with gateway_world.http() as http:
        response = http.post("/v1/messages", json={"model": "claude-3-5-haiku", "messages": HELLO},
                             headers={"anthropic-version": "2023-06-01"})
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": response.json()["error"]["message"]}
    assert "max_tokens" in response.json()["error"]["message"]


def test_a_route_without_an_anthropic_upstream_cannot_serve_messages(gateway_world, anthropic_client):
    with pytest.raises(anthropic.BadRequestError) as raised:
        anthropic_client.messages.create(model="gpt-4o-mini", max_tokens=10, messages=HELLO)
    assert "Anthropic connection" in raised.value.response.json()["error"]["message"]


def test_an_anthropic_upstream_error_is_passed_through_as_anthropic_sent_it(gateway_world, anthropic_client, simulator):
    simulator.set_profile("sim-overloaded", replace(FAST, fault=Fault("status", status_code=529)))
    gateway_world.route("overloaded", [(gateway_world.anthropic_connection, "sim-overloaded")])

    with pytest.raises(anthropic.APIStatusError) as raised:
        anthropic_client.messages.create(model="overloaded", max_tokens=10, messages=HELLO)

    assert raised.value.status_code == 529
    assert raised.value.response.json()["error"]["type"] == "overloaded_error"


def test_a_message_falls_back_to_another_anthropic_upstream(gateway_world, anthropic_client, simulator):
    conn = gateway_world.anthropic_connection
    gateway_world.route("claude-resilient", [(conn, "sim-500"), (conn, "sim-fast")])

    with anthropic_client.messages.stream(model="claude-resilient", max_tokens=100, messages=HELLO) as stream:
        assert len(list(stream.text_stream)) == FAST.output_tokens
    assert [r["model"] for r in simulator.requests()] == ["sim-500", "sim-fast"]


def test_chat_completions_routed_to_an_anthropic_connection_use_its_openai_compatible_endpoint(
        gateway_world, openai_client, simulator):
    answer = openai_client.chat.completions.create(model="claude-3-5-haiku", messages=HELLO)

    assert answer.object == "chat.completion" and answer.model == "sim-fast"
    [sent] = simulator.requests()
    assert sent["kind"] == "openai_compatible"  # the OpenAI-format endpoint under the Anthropic base URL


def test_the_x_api_key_header_is_accepted_on_every_endpoint(gateway_world):
    with gateway_world.http() as http:
        response = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HELLO},
                             headers={"Authorization": "", "x-api-key": gateway_world.raw_token})
    assert response.status_code == 200


def test_the_anthropic_client_lists_the_projects_routes(anthropic_client):
    assert [model.id for model in anthropic_client.models.list()] == [
        "claude-3-5-haiku", "gpt-4o-mini", "text-embedding-3-small"]
