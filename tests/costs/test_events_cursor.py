"""GET /api/v1/events?received_after=…&after_id=…: the cursor a follower (`pulse tail`) reads new
events with. Events come oldest-stored first whatever their own timestamp, a batch that shares one
`received_at` is paged through exactly once, the query is served by an index (never a scan of the
project), and tenancy is the events API's: outsiders 404, a bound token reads its own project."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from costs.ingestion import ingest
from costs.models import CostEvent

pytestmark = pytest.mark.django_db

URL = "/api/v1/events"


def record(project, key: str, *, received_ago: timedelta, **fields) -> CostEvent:
    item = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "idempotency_key": key} | fields
    result = ingest(project, [item])
    assert result.inserted == 1, result.errors
    event = CostEvent.objects.get(uuid=result.accepted[0].event_uuid)
    CostEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - received_ago)
    event.refresh_from_db()
    return event


@pytest.fixture
def stored(personas) -> dict[str, CostEvent]:
    """Acme events stored 30, 20 and 10 minutes ago; the last one happened 200 days before it
    arrived (a backfill). And one Bravo event, stored 5 minutes ago."""
    old_timestamp = (timezone.now() - timedelta(days=200)).isoformat()
    return {
        "first": record(personas.project, "first", received_ago=timedelta(minutes=30)),
        "second": record(personas.project, "second", received_ago=timedelta(minutes=20)),
        "backfill": record(personas.project, "backfill", received_ago=timedelta(minutes=10), timestamp=old_timestamp),
        "bravo": record(personas.other_project, "bravo", received_ago=timedelta(minutes=5)),
    }


def keys(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [event["idempotency_key"] for event in response.json()["results"]]


def test_received_after_lists_what_was_stored_since_oldest_first_whatever_its_timestamp(token_client, stored):
    reader, _token = token_client(["read"])
    after_first = stored["first"].received_at.isoformat()

    assert keys(reader.get(URL, {"received_after": after_first})) == ["second", "backfill"]
    # Without the cursor the log is newest-*happened* first: the backfill is last.
    assert keys(reader.get(URL)) == ["second", "first", "backfill"]
    assert keys(reader.get(URL, {"received_after": timezone.now().isoformat()})) == []


def test_the_received_at_a_follower_reads_back_is_the_exact_cursor(token_client, stored):
    """The answer's `received_at` (to the microsecond) passed back excludes that event itself."""
    reader, _token = token_client(["read"])
    listed = reader.get(URL, {"received_after": stored["first"].received_at.isoformat()}).json()["results"]
    last = listed[-1]

    assert keys(reader.get(URL, {"received_after": last["received_at"]})) == []
    assert keys(reader.get(URL, {"received_after": listed[0]["received_at"]})) == ["backfill"]


def test_a_batch_sharing_one_received_at_is_paged_through_once_with_after_id(token_client, personas):
    items = [{"provider": "openai", "model": "gpt-4o-mini", "idempotency_key": f"b{i}"} for i in range(7)]
    assert ingest(personas.project, items).inserted == 7
    start = (CostEvent.objects.get(idempotency_key="b0").received_at - timedelta(seconds=1)).isoformat()
    reader, _token = token_client(["read"])

    seen: list[str] = []
    query = {"received_after": start, "page_size": 3}
    while True:
        page = reader.get(URL, query).json()["results"]
        seen += [event["idempotency_key"] for event in page]
        if len(page) < 3:
            break
        query = {"received_after": page[-1]["received_at"], "after_id": page[-1]["id"], "page_size": 3}

    assert sorted(seen) == [f"b{i}" for i in range(7)] and len(seen) == 7
    in_id_order = sorted(CostEvent.objects.filter(idempotency_key__in=seen), key=lambda e: e.uuid)
    assert seen == [event.idempotency_key for event in in_id_order]


def test_the_cursor_keeps_to_the_callers_projects(api_as, token_client, personas, stored):
    since = {"received_after": (timezone.now() - timedelta(hours=1)).isoformat()}
    reader, _token = token_client(["read"])

    assert keys(reader.get(URL, since)) == ["first", "second", "backfill"]
    assert reader.get(URL, since | {"project": str(personas.other_project.uuid)}).status_code == 404
    assert api_as("outsider").get(URL, since | {"project": str(personas.project.uuid)}).status_code == 404
    assert keys(api_as("outsider").get(URL, since)) == ["bravo"]
    assert keys(api_as("viewer").get(URL, since | {"project": str(personas.project.uuid)})) == ["first", "second", "backfill"]


def test_the_cursor_needs_the_read_scope_and_a_caller(api_client, token_client, stored):
    since = {"received_after": timezone.now().isoformat()}
    ingest_only, _token = token_client(["ingest"])

    assert api_client.get(URL, since).status_code == 401
    refused = ingest_only.get(URL, since)
    assert refused.status_code == 403 and "'read' scope" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"received_after": "a while ago"}, "received_after"),
        ({"received_after": "2026-01-01T00:00:00Z", "after_id": "not-a-uuid"}, "after_id"),
        ({"after_id": str(uuid.uuid4())}, "after_id"),
    ],
)
def test_a_bad_cursor_is_a_400_naming_it(token_client, query, field):
    reader, _token = token_client(["read"])
    response = reader.get(URL, query)
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]


def test_page_size_is_bounded(token_client, personas):
    items = [{"provider": "openai", "model": "gpt-4o-mini"} for _ in range(60)]
    assert ingest(personas.project, items).inserted == 60
    reader, _token = token_client(["read"])

    assert len(reader.get(URL).json()["results"]) == 50
    assert len(reader.get(URL, {"page_size": 7}).json()["results"]) == 7
    assert len(reader.get(URL, {"page_size": 1000}).json()["results"]) == 60
    for bad in ("0", "1001", "ten", ""):
        refused = reader.get(URL, {"page_size": bad})
        assert refused.status_code == 400 and list(refused.json()) == ["page_size"], bad


def test_the_cursor_is_read_from_the_index_not_by_scanning_the_project(personas, stored):
    """Forced off sequential scans, PostgreSQL must still have an index that serves the query
    (on a table this small it would otherwise rightly prefer a scan)."""
    events = CostEvent.objects.filter(project=personas.project).received_after(timezone.now(), uuid.uuid4())[:50]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        sql, params = events.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "costevent_project_received" in plan, plan


def test_the_schema_documents_the_cursor(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/events"]["get"]["parameters"]}

    assert parameters["received_after"]["schema"]["format"] == "date-time"
    assert "oldest-stored first" in parameters["received_after"]["description"]
    assert parameters["after_id"]["schema"]["format"] == "uuid"
    assert parameters["page_size"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
