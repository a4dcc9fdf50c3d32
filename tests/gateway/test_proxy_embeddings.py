"""/v1/embeddings and /v1/models through the gateway with the official OpenAI client, and the
simulator's OpenAI-format embeddings endpoint they run against."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import openai
import pytest

from benchmarks.simulator import embedding_vector


def test_embeddings_are_the_upstreams_and_are_recorded(gateway_world, openai_client, simulator, recorded_calls):
    raw = openai_client.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                           input=["one two three", "four"], user="u-1")
    answer = raw.parse()

    assert [item.index for item in answer.data] == [0, 1]
    assert answer.data[0].embedding == pytest.approx(embedding_vector("sim-embed", "one two three", 1536))
    assert math.isclose(sum(v * v for v in answer.data[1].embedding), 1.0, rel_tol=1e-6)
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (4, 4)
    assert raw.headers["x-pulse-upstream"] == "sim-openai/sim-embed"
    [record] = recorded_calls(1)
    event = record.event
    assert (event["endpoint"], event["input_tokens"], event["output_tokens"], event["end_user"]) == ("embeddings", 4, 0, "u-1")


def test_dimensions_are_honoured_and_an_input_always_embeds_the_same(openai_client):
    first = openai_client.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=64)
    second = openai_client.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=64)

    assert len(first.data[0].embedding) == 64
    assert first.data[0].embedding == second.data[0].embedding


def test_base64_embeddings_are_little_endian_float32(gateway_world):
    with gateway_world.http() as http:
        response = http.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hello",
                                                     "dimensions": 8, "encoding_format": "base64"})
    packed = base64.b64decode(response.json()["data"][0]["embedding"])
    assert list(struct.unpack("<8f", packed)) == pytest.approx(embedding_vector("sim-embed", "hello", 8), rel=1e-6)


def test_token_id_inputs_are_embedded(openai_client):
    answer = openai_client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert len(answer.data) == 2


def test_embeddings_through_a_gemini_connection_use_its_openai_compatible_endpoint(gateway_world, openai_client):
    gemini = gateway_world.connection("sim-gemini", "gemini")
    gateway_world.route("gemini-embed", [(gemini, "sim-embed")])

    answer = openai_client.embeddings.create(model="gemini-embed", input="hello")

    assert len(answer.data[0].embedding) == 1536


def test_a_route_of_anthropic_upstreams_serves_no_embeddings(openai_client):
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.embeddings.create(model="claude-3-5-haiku", input="hello")
    assert "no upstream that serves embeddings" in raised.value.response.json()["error"]["message"]


def test_the_simulator_refuses_what_openai_refuses(simulator):
    url = simulator.base_url_for("openai_compatible") + "/embeddings"
    auth = {"Authorization": "Bearer sk-sim"}
    assert httpx.post(url, json={"model": "sim-embed", "input": "a"}).status_code == 401
    assert httpx.post(url, json={"model": "nope", "input": "a"}, headers=auth).status_code == 404
    assert httpx.post(url, json={"model": "sim-embed", "input": []}, headers=auth).status_code == 400
    assert httpx.post(url, json={"model": "sim-embed", "input": "a", "dimensions": 0}, headers=auth).status_code == 400
    assert httpx.post(url, json={"model": "sim-500", "input": "a"}, headers=auth).status_code == 500


# -- /v1/models --------------------------------------------------------------------------------------


def test_models_lists_the_projects_routes(gateway_world, openai_client):
    gateway_world.route("fast-chat", [(gateway_world.openai_connection, "sim-fast")])

    models = openai_client.models.list()

    assert [model.id for model in models] == ["claude-3-5-haiku", "fast-chat", "gpt-4o-mini", "text-embedding-3-small"]
    assert {model.owned_by for model in models} == {"pulse"} and all(model.created > 0 for model in models)
    assert openai_client.models.retrieve("fast-chat").id == "fast-chat"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("gpt-5")


def test_a_disabled_route_is_neither_listed_nor_served(gateway_world, openai_client):
    route = gateway_world.routes["gpt-4o-mini"]
    route.is_enabled = False
    route.save()

    assert "gpt-4o-mini" not in [model.id for model in openai_client.models.list()]
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_models_needs_a_gateway_token(gateway_world):
    with pytest.raises(openai.AuthenticationError):
        gateway_world.openai(api_key="pk_live_" + "y" * 60).models.list()
