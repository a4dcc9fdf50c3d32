"""Every error the gateway answers, as the official OpenAI client sees it (the exception it
raises for the status, and OpenAI's error shape), and hostile bodies that must never be a 500."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import openai
import pytest
from django.utils import timezone

from accounts.models import ApiToken
from gateway.models import RateLimit

HELLO = [{"role": "user", "content": "hello"}]


def error_of(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert exc.response.headers["x-pulse-request-id"]
    return body["error"]


def test_no_token_is_an_authentication_error(gateway_world):
    with gateway_world.http() as http:
        response = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HELLO},
                             headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "didn't provide an API key" in response.json()["error"]["message"]


@pytest.mark.parametrize("token", ["sk-not-pulse", "pk_live_abcdefghij" + "x" * 43, "pk_live_short"])
def test_a_wrong_token_is_an_authentication_error(gateway_world, token):
    with pytest.raises(openai.AuthenticationError) as raised:
        gateway_world.openai(api_key=token).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert error_of(raised.value)["code"] == "invalid_api_key"


def test_a_token_that_is_not_ascii_is_refused_not_crashed_on(gateway_world):
    with gateway_world.http() as http:
        response = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HELLO},
                             headers={"Authorization": "Bearer pk_live_\u00e9\u00e9".encode() + b"x" * 60})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_api_key")


def test_a_token_with_a_right_prefix_and_a_wrong_secret_is_refused(gateway_world):
    forged = gateway_world.raw_token[:-5] + "abcde"
    with pytest.raises(openai.AuthenticationError):
        gateway_world.openai(api_key=forged).chat.completions.create(model="gpt-4o-mini", messages=HELLO)


def test_a_revoked_token_stops_working_at_once(gateway_world, openai_client):
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    gateway_world.token.revoke(by=gateway_world.personas.owner)

    with pytest.raises(openai.AuthenticationError) as raised:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert "revoked" in error_of(raised.value)["message"]


def test_an_expired_token_says_when_it_expired(gateway_world, openai_client):
    ApiToken.objects.filter(pk=gateway_world.token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    gateway_world.token.refresh_from_db()
    gateway_world.token.save()  # the save's signal retires the cached token (an update has none)

    with pytest.raises(openai.AuthenticationError) as raised:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert "expired at" in error_of(raised.value)["message"]


def test_a_token_without_the_gateway_scope_is_refused(gateway_world):
    _, raw = gateway_world.issue_token(scopes=["read", "ingest"])
    with pytest.raises(openai.PermissionDeniedError) as raised:
        gateway_world.openai(api_key=raw).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    error = error_of(raised.value)
    assert error["code"] == "insufficient_scope" and "gateway scope" in error["message"]


def test_an_organization_wide_token_is_told_to_use_a_project_token(gateway_world):
    token, raw = gateway_world.issue_token()
    token.project = None
    token.save()
    with pytest.raises(openai.PermissionDeniedError) as raised:
        gateway_world.openai(api_key=raw).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert error_of(raised.value)["code"] == "project_token_required"


def test_an_unknown_model_is_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.chat.completions.create(model="gpt-5-ultra", messages=HELLO)
    error = error_of(raised.value)
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert "gpt-5-ultra" in error["message"]


def test_an_outsiders_token_cannot_use_another_projects_routes(gateway_world):
    personas = gateway_world.personas
    _, raw = gateway_world.issue_token(project=personas.other_project)
    outsider = gateway_world.openai(api_key=raw)

    with pytest.raises(openai.NotFoundError):
        outsider.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert [model.id for model in outsider.models.list()] == []
    assert gateway_world.simulator.requests() == []


def test_an_unknown_path_and_a_wrong_method_are_openai_shaped(gateway_world):
    with gateway_world.http() as http:
        unknown = http.post("/v1/completions/legacy", json={})
        wrong = http.get("/v1/chat/completions")
        slash = http.post("/v1/chat/completions/", json={})
        root = http.get("/v1")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_url")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"
    assert slash.status_code == 404 and root.status_code == 404


def test_an_oversized_body_is_refused_before_it_is_read(gateway_world, start_gateway):
    gateway = start_gateway(GATEWAY_MAX_BODY_BYTES="2000")
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5000}]})

    headers = {"Authorization": f"Bearer {gateway_world.raw_token}", "content-type": "application/json"}
    declared = httpx.post(f"{gateway.base_url}/v1/chat/completions", content=body, headers=headers)

    def chunked():
        yield body.encode()

    streamed = httpx.post(f"{gateway.base_url}/v1/chat/completions", content=chunked(), headers=headers)
    for response in (declared, streamed):
        assert (response.status_code, response.json()["error"]["code"]) == (413, "request_too_large")


def test_a_rate_limit_is_a_rate_limit_error_with_retry_after(gateway_world, openai_client):
    RateLimit.objects.create(project=gateway_world.project, requests_per_minute=1)

    first = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as raised:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    error = error_of(raised.value)
    assert error["code"] == "rate_limit_exceeded"
    assert int(raised.value.response.headers["retry-after"]) >= 1
    assert len(gateway_world.simulator.requests()) == 1


def test_a_spent_hard_budget_is_insufficient_quota(gateway_world, openai_client):
    from alerts.models import Budget

    Budget.objects.create(organization=gateway_world.org, project=gateway_world.project, name="tiny",
                          amount="0.01", enforcement=Budget.Enforcement.HARD)

    # max_tokens 10,000 at $2/Mtok reserves $0.02: more than the whole budget.
    with pytest.raises(openai.RateLimitError) as raised:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=10_000)
    error = error_of(raised.value)
    assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
    assert gateway_world.simulator.requests() == []


def test_an_upstream_server_error_is_passed_through_when_no_fallback_is_left(gateway_world, openai_client, simulator):
    gateway_world.route("broken", [(gateway_world.openai_connection, "sim-500")])

    with pytest.raises(openai.InternalServerError) as raised:
        openai_client.chat.completions.create(model="broken", messages=HELLO)

    assert raised.value.status_code == 500
    assert "The server had an error while processing your request" in error_of(raised.value)["message"]
    assert raised.value.response.headers["x-pulse-upstream"] == "sim-openai/sim-500"


@pytest.mark.parametrize(("model", "exception"), [("sim-404", openai.NotFoundError),
                                                  ("sim-401", openai.AuthenticationError)])
def test_an_upstream_client_error_is_passed_through_at_once(gateway_world, openai_client, simulator, model, exception):
    gateway_world.route("refusing", [(gateway_world.openai_connection, model), (gateway_world.openai_connection, "sim-fast")])

    with pytest.raises(exception) as raised:
        openai_client.chat.completions.create(model="refusing", messages=HELLO)

    assert raised.value.response.headers["x-pulse-upstream"] == f"sim-openai/{model}"
    assert [r["model"] for r in simulator.requests()] == [model]  # no fallback for the caller's own errors


# -- hostile bodies -------------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000

HOSTILE = {
    "not json": b"{model: gpt}",
    "not utf-8": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "lone surrogate": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "an array": b'[{"model": "gpt-4o-mini"}]',
    "a string": b'"hello"',
    "empty": b"",
    "missing model": b'{"messages": [{"role": "user", "content": "hi"}]}',
    "model a number": b'{"model": 4, "messages": [{"role": "user", "content": "hi"}]}',
    "model empty": b'{"model": "  ", "messages": [{"role": "user", "content": "hi"}]}',
    "messages not a list": b'{"model": "gpt-4o-mini", "messages": "hi"}',
    "messages empty": b'{"model": "gpt-4o-mini", "messages": []}',
    "a message not an object": b'{"model": "gpt-4o-mini", "messages": ["hi"]}',
    "stream a string": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
    "stream_options a list": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream_options": []}',
    "max_tokens huge": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 99999999999999999999999}',
    "max_tokens a float": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e308}',
    "max_tokens negative": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}',
    "max_tokens a bool": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": true}',
    "a huge exponent": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e99999}',
    "user an object": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "user": {"id": 1}}',
    "deeply nested": ('{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ' + DEEP + "}]}").encode(),
    "nested past Python's recursion limit, within orjson's": (
        '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ' + "[" * 1000 + "]" * 1000 + "}]}").encode(),
    "NaN": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_chat_bodies_are_a_400_never_a_500(gateway_world, body):
    with gateway_world.http() as http:
        response = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert gateway_world.simulator.requests() == []


@pytest.mark.parametrize("body", [
    b'{"model": "text-embedding-3-small"}',
    b'{"model": "text-embedding-3-small", "input": []}',
    b'{"model": "text-embedding-3-small", "input": [1, "a"]}',
    b'{"model": "text-embedding-3-small", "input": {"text": "a"}}',
    b'{"model": "text-embedding-3-small", "input": "a", "stream": true}',
], ids=["no input", "empty input", "mixed input", "input an object", "streamed"])
def test_hostile_embedding_bodies_are_a_400(gateway_world, body):
    with gateway_world.http() as http:
        response = http.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] in ("input", "stream")


@pytest.mark.parametrize("header", ["feature", "=search", "a" * 65 + "=x", "k=" + "v" * 129,
                                    ",".join(f"k{i}=v" for i in range(21))])
def test_a_bad_tags_header_is_a_400_naming_the_header(gateway_world, openai_client, header):
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, extra_headers={"x-pulse-tags": header})
    assert error_of(raised.value)["param"] == "x-pulse-tags"


def test_a_bad_cache_header_is_a_400(openai_client):
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, extra_headers={"x-pulse-cache": "maybe"})
    assert error_of(raised.value)["param"] == "x-pulse-cache"


def test_under_a_hard_budget_only_priced_upstreams_serve_and_an_unpriced_route_is_refused(
        gateway_world, openai_client, simulator):
    from alerts.models import Budget

    Budget.objects.create(organization=gateway_world.org, project=gateway_world.project, name="roomy",
                          amount="100", enforcement=Budget.Enforcement.HARD)
    conn = gateway_world.openai_connection
    gateway_world.route("mixed", [(conn, "sim-instant"), (conn, "sim-fast")])  # sim-instant has no price
    gateway_world.route("unpriced", [(conn, "sim-instant")])

    raw = openai_client.chat.completions.with_raw_response.create(model="mixed", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-pulse-upstream"] == "sim-openai/sim-fast"

    with pytest.raises(openai.RateLimitError) as raised:
        openai_client.chat.completions.create(model="unpriced", messages=[{"role": "user", "content": "hi"}])
    assert error_of(raised.value)["type"] == "insufficient_quota"
    assert [r["model"] for r in simulator.requests()] == ["sim-fast"]


@pytest.mark.parametrize("number", ["1e300", "-1e19", "18446744073709551616.0"])
def test_huge_whole_numbers_in_a_cached_request_are_never_a_500(gateway_world, number):
    """The cache key canonicalises 1.0 as 1; a 1e300 must not become an int orjson cannot write."""
    body = ('{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "seed": ' + number + "}").encode()
    with gateway_world.http() as http:
        response = http.post("/v1/chat/completions", content=body,
                             headers={"content-type": "application/json", "x-pulse-cache": "on"})
    assert response.status_code in (200, 400), response.text


def test_a_hard_budget_reserves_for_every_byte_of_the_prompt_not_only_message_text(gateway_world, openai_client):
    """Tools and tool-call arguments are prompt tokens too: a body of 200 KB of tool text under
    a budget with room for 50,000 tokens at sim-fast's $1/Mtok input is refused before forwarding."""
    from alerts.models import Budget

    Budget.objects.create(organization=gateway_world.org, project=gateway_world.project, name="small",
                          amount="0.05", enforcement=Budget.Enforcement.HARD)
    tool = {"type": "function", "function": {"name": "lookup", "description": "x " * 100_000,
                                             "parameters": {"type": "object", "properties": {}}}}
    with pytest.raises(openai.RateLimitError) as raised:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, tools=[tool], max_tokens=10)
    assert error_of(raised.value)["code"] == "budget_exceeded"
    assert gateway_world.simulator.requests() == []
