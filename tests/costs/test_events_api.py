"""GET /api/v1/events: the activity log's filters as query parameters, `?project=` through the
tenancy mixin, a 400 naming the parameter for a bad value; and the money in ingestion's answer
written as a plain decimal string."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from costs.ingestion import ingest

pytestmark = pytest.mark.django_db

URL = "/api/v1/events"


def record(project, token=None, **fields) -> None:
    item = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 5} | fields
    result = ingest(project, [item], token=token)
    assert result.inserted == 1, result.errors


@pytest.fixture
def events(personas, token_client):
    """Six events of Acme/Production (one sent with an API token) and one of Bravo."""
    _client, token = token_client(["ingest"])
    now = timezone.now()
    project = personas.project
    record(project, idempotency_key="chat", tags={"feature": "chat"}, cost_usd="0.01")
    record(project, idempotency_key="failed", status_code=500, cost_usd="0.02")
    record(project, idempotency_key="claude", provider="anthropic", model="claude-haiku", cost_usd="0.03")
    record(project, idempotency_key="unpriced", provider="acme", model="no-price-known")
    record(project, idempotency_key="sdk", source="sdk", token=token, cost_usd="0.04")
    record(project, idempotency_key="old", timestamp=(now - timedelta(days=10)).isoformat(), cost_usd="0.05")
    record(personas.other_project, idempotency_key="bravo", cost_usd="0.06")
    return token


def keys(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {event["idempotency_key"] for event in response.json()["results"]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"chat", "failed", "claude", "unpriced", "sdk", "old"}),
        ({"provider": "anthropic"}, {"claude"}),
        ({"model": "no-price-known"}, {"unpriced"}),
        ({"model": "never-seen"}, set()),
        ({"tag": "feature=chat"}, {"chat"}),
        ({"tag": " feature = chat "}, {"chat"}),
        ({"status": "failed"}, {"failed"}),
        ({"status": "success"}, {"chat", "claude", "unpriced", "sdk", "old"}),
        ({"source": "sdk"}, {"sdk"}),
        ({"unpriced": "true"}, {"unpriced"}),
        ({"unpriced": "false"}, {"chat", "failed", "claude", "sdk", "old"}),
        ({"token": "-"}, {"chat", "failed", "claude", "unpriced", "old"}),
        ({"range": "7d"}, {"chat", "failed", "claude", "unpriced", "sdk"}),
        ({"range": "7d", "provider": "openai", "status": "success"}, {"chat", "sdk"}),
    ],
)
def test_the_activity_filters_narrow_the_list(api_as, personas, events, query, expected):
    response = api_as("viewer").get(URL, {"project": str(personas.project.uuid), **query})
    assert keys(response) == expected


def test_since_and_until_bound_the_time(api_as, personas, events):
    now = timezone.now()
    client = api_as("viewer")
    project = str(personas.project.uuid)
    since = (now - timedelta(days=11)).isoformat()
    until = (now - timedelta(days=9)).isoformat()
    assert keys(client.get(URL, {"project": project, "since": since, "until": until})) == {"old"}
    assert "old" not in keys(client.get(URL, {"project": project, "since": until}))


def test_the_token_filter_takes_a_token_prefix(api_as, personas, events):
    response = api_as("viewer").get(URL, {"project": str(personas.project.uuid), "token": events.prefix})
    assert keys(response) == {"sdk"}


def test_project_narrows_a_persons_list_and_others_projects_are_not_found(api_as, personas, events):
    client = api_as("owner")
    assert "bravo" not in keys(client.get(URL))  # without ?project=, every project the person sees
    assert keys(client.get(URL, {"project": str(personas.project.uuid)})) >= {"chat"}
    assert client.get(URL, {"project": str(personas.other_project.uuid)}).status_code == 404
    assert keys(api_as("outsider").get(URL, {"project": str(personas.other_project.uuid)})) == {"bravo"}


def test_a_project_bound_token_reads_its_own_project_only(token_client, personas, events):
    reader, _token = token_client(["read"])
    assert keys(reader.get(URL)) == {"chat", "failed", "claude", "unpriced", "sdk", "old"}
    assert keys(reader.get(URL, {"project": str(personas.project.uuid)})) == keys(reader.get(URL))
    assert reader.get(URL, {"project": str(personas.other_project.uuid)}).status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"project": "not-a-uuid"}, "project"),
        ({"range": "1y"}, "range"),
        ({"range": "7d", "since": "2026-01-01T00:00:00Z"}, "range"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"until": "0001-01-01T00:00:00+14:00"}, "until"),  # before year 1 in UTC
        ({"since": "9999-12-31T23:59:59-14:00"}, "since"),  # after year 9999 in UTC
        ({"tag": "no equals sign"}, "tag"),
        ({"status": "maybe"}, "status"),
        ({"source": "carrier-pigeon"}, "source"),
        ({"unpriced": "perhaps"}, "unpriced"),
        ({"model": "m" * 129}, "model"),
        ({"model": "gpt\x00"}, "model"),
        ({"provider": ""}, "provider"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(api_as, personas, events, query, field):
    response = api_as("viewer").get(URL, {"project": str(personas.project.uuid), **query})
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]


def test_an_event_recorded_at_zero_cost_answers_a_plain_decimal(token_client):
    client, _token = token_client(["ingest"])
    body = {"provider": "openai", "model": "gpt-4o-mini", "cost_usd": "0", "input_tokens": 1}
    response = client.post(URL, body, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["cost_usd"] == "0.0000000000"
    tiny = client.post(URL, body | {"cost_usd": "0.00000001"}, format="json").json()
    assert tiny["cost_usd"] == "0.0000000100"


def test_an_empty_project_parameter_is_a_bad_uuid_not_the_tokens_own_project(token_client):
    """The schema says `project` is a uuid; an empty one is refused, never read as "absent"."""
    client, _token = token_client(["ingest", "read"])
    body = {"provider": "openai", "model": "gpt-4o-mini"}
    assert client.post(f"{URL}?project=", body, format="json").status_code == 400
    assert client.post(f"{URL}/batch?project=", {"events": [body]}, format="json").status_code == 400
    assert list(client.get(f"{URL}?project=").json()) == ["project"]
    assert client.post(URL, body, format="json").status_code == 202  # absent: the token's project
