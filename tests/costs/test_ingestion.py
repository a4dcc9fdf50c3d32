"""Ingestion: pricing (cached tokens, price history, unpriced then re-priced), idempotency,
partial batches, validation, tenancy, and rollups that always equal the raw events."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from benchmarks.models import Model, Price, Provider, ProviderKind
from costs import ingestion
from costs.models import CostEvent, CostRollup

pytestmark = pytest.mark.django_db

URL = "/api/v1/events"
BATCH_URL = "/api/v1/events/batch"


@pytest.fixture
def catalog(db):
    """A small price catalog: 'acme-ai' with one model whose price halves 10 days ago."""
    provider = Provider.objects.create(
        name="Acme AI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://acme.example/v1", genai_prices_id="acme-ai"
    )
    model = Model.objects.create(provider=provider, name="acme-large")
    change = timezone.now() - timedelta(days=10)
    old = Price.objects.create(
        model=model, input_mtok=Decimal("4"), output_mtok=Decimal("16"), cache_read_mtok=Decimal("1"),
        valid_from=change - timedelta(days=365), source=Price.Source.GENAI_PRICES,
    )
    new = Price.objects.create(
        model=model, input_mtok=Decimal("2"), output_mtok=Decimal("8"), cache_read_mtok=Decimal("0.5"),
        valid_from=change, source=Price.Source.GENAI_PRICES,
    )
    return {"model": model, "change": change, "old": old, "new": new}


def event(**overrides) -> dict:
    return {"provider": "acme-ai", "model": "acme-large", "input_tokens": 1000, "output_tokens": 200} | overrides


def rollup_totals(project, **filters) -> dict:
    rows = CostRollup.objects.dangerously_unscoped().filter(project=project, tag_key="", **filters)
    return rows.aggregate(requests=Sum("requests"), cost=Sum("cost_usd"), unpriced=Sum("unpriced_requests"),
                          input=Sum("input_tokens"), output=Sum("output_tokens"), cached=Sum("cached_tokens"))


# ----------------------------------------------------------------------------- pricing


def test_cached_tokens_are_priced_at_the_cache_read_price_instead_of_on_top(token_client, catalog):
    client, _ = token_client(["ingest"])
    response = client.post(URL, event(input_tokens=1_000_000, cached_tokens=400_000, output_tokens=100_000), format="json")
    assert response.status_code == 202, response.content
    # 600K uncached x $2 + 400K cached x $0.5 + 100K out x $8 per Mtok = 1.2 + 0.2 + 0.8
    assert response.json()["cost_usd"] == "2.2000000000"
    stored = CostEvent.objects.dangerously_unscoped().get(uuid=response.json()["id"])
    assert (stored.cost_source, stored.price_id) == (CostEvent.CostSource.COMPUTED, catalog["new"].id)


def test_each_event_is_priced_as_of_its_own_timestamp(token_client, catalog, personas):
    client, _ = token_client(["ingest"])
    before = (catalog["change"] - timedelta(hours=1)).isoformat()
    after = (catalog["change"] + timedelta(hours=1)).isoformat()
    body = {"events": [event(input_tokens=1_000_000, output_tokens=0, timestamp=before),
                       event(input_tokens=1_000_000, output_tokens=0, timestamp=after)]}
    assert client.post(BATCH_URL, body, format="json").status_code == 202
    costs = list(CostEvent.objects.dangerously_unscoped().order_by("occurred_at").values_list("cost_usd", flat=True))
    assert costs == [Decimal("4"), Decimal("2")]
    assert rollup_totals(personas.project, granularity="d")["cost"] == Decimal("6")


def test_a_client_sent_cost_is_kept_as_sent(token_client, catalog):
    client, _ = token_client(["ingest"])
    response = client.post(URL, event(cost_usd="0.0123"), format="json")
    stored = CostEvent.objects.dangerously_unscoped().get(uuid=response.json()["id"])
    assert (stored.cost_usd, stored.cost_source) == (Decimal("0.0123"), CostEvent.CostSource.CLIENT)


def test_an_unknown_model_is_stored_unpriced_and_priced_once_a_price_exists(token_client, catalog, personas):
    client, _ = token_client(["ingest"])
    response = client.post(URL, event(model="acme-small", input_tokens=2_000_000, output_tokens=0), format="json")
    assert response.status_code == 202
    assert response.json()["cost_usd"] is None  # unknown, never $0
    stored = CostEvent.objects.dangerously_unscoped().get()
    assert (stored.cost_usd, stored.cost_source) == (None, CostEvent.CostSource.UNPRICED)
    assert rollup_totals(personas.project, granularity="h") | {} == rollup_totals(personas.project, granularity="h")
    assert rollup_totals(personas.project, granularity="h")["unpriced"] == 1
    assert rollup_totals(personas.project, granularity="h")["cost"] == Decimal(0)

    assert ingestion.reprice_unpriced() == 0  # still no price: nothing changes
    small = Model.objects.create(provider=catalog["model"].provider, name="acme-small")
    Price.objects.create(model=small, input_mtok=Decimal("0.5"), output_mtok=Decimal("1"))  # an admin price, from now

    assert ingestion.reprice_unpriced() == 1
    stored.refresh_from_db()
    assert (stored.cost_usd, stored.cost_source) == (Decimal("1"), CostEvent.CostSource.COMPUTED)
    for granularity in ("h", "d"):
        totals = rollup_totals(personas.project, granularity=granularity)
        assert (totals["cost"], totals["unpriced"], totals["requests"]) == (Decimal("1"), 0, 1)
    assert ingestion.reprice_unpriced() == 0  # idempotent


def test_a_model_genai_prices_knows_is_adopted_into_the_catalog_and_priced(token_client, personas):
    client, _ = token_client(["ingest"])
    response = client.post(URL, event(provider="OpenAI", model="gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=0), format="json")
    assert response.status_code == 202
    assert response.json()["cost_usd"] is not None and Decimal(response.json()["cost_usd"]) > 0
    adopted = Model.objects.get(provider__genai_prices_id="openai", name="gpt-4o")
    assert adopted.prices.exists() and not adopted.is_active  # priced, not benchmarked


def test_an_admin_price_beats_the_bundled_one(token_client, catalog):
    Price.objects.create(model=catalog["model"], input_mtok=Decimal("1"), output_mtok=Decimal("1"),
                         valid_from=catalog["change"] - timedelta(days=30), source=Price.Source.ADMIN)
    client, _ = token_client(["ingest"])
    response = client.post(URL, event(input_tokens=1_000_000, output_tokens=0), format="json")
    assert Decimal(response.json()["cost_usd"]) == Decimal("1")


# ----------------------------------------------------------------------------- idempotency


def test_a_resent_event_is_acknowledged_and_never_counted_twice(token_client, catalog, personas):
    client, _ = token_client(["ingest"])
    first = client.post(URL, event(idempotency_key="call-1"), format="json")
    again = client.post(URL, event(idempotency_key="call-1", input_tokens=999), format="json")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == {**first.json(), "duplicate": True}
    assert CostEvent.objects.dangerously_unscoped().count() == 1
    assert rollup_totals(personas.project, granularity="d")["requests"] == 1


def test_a_retried_batch_with_an_idempotency_key_header_counts_once(token_client, catalog, personas):
    client, _ = token_client(["ingest"])
    body = {"events": [event(), event(), event(idempotency_key="own")]}
    first = client.post(BATCH_URL, body, format="json", HTTP_IDEMPOTENCY_KEY="batch-7")
    again = client.post(BATCH_URL, body, format="json", HTTP_IDEMPOTENCY_KEY="batch-7")
    assert first.json() | {} == {"accepted": 3, "duplicates": 0, "rejected": 0, "errors": []}
    assert again.json() == {"accepted": 0, "duplicates": 3, "rejected": 0, "errors": []}
    assert rollup_totals(personas.project, granularity="h")["requests"] == 3


def test_the_same_key_twice_in_one_batch_is_stored_once(token_client, catalog):
    client, _ = token_client(["ingest"])
    response = client.post(BATCH_URL, {"events": [event(idempotency_key="k"), event(idempotency_key="k")]}, format="json")
    assert response.json()["accepted"] == 1 and response.json()["duplicates"] == 1
    assert CostEvent.objects.dangerously_unscoped().count() == 1


def test_idempotency_keys_are_per_project(token_client, catalog, personas):
    acme, _ = token_client(["ingest"])
    bravo, _ = token_client(["ingest"], project=personas.other_project)
    assert acme.post(URL, event(idempotency_key="same"), format="json").json()["duplicate"] is False
    assert bravo.post(URL, event(idempotency_key="same"), format="json").json()["duplicate"] is False


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_batch_are_counted_once(token_client, catalog, personas):
    """Eight threads send the same keyed batch at once against PostgreSQL."""
    body = {"events": [event(idempotency_key=f"c-{i}") for i in range(50)]}
    answers, barrier = [], threading.Barrier(8)

    def send() -> None:
        client, _ = token_client(["ingest"])
        barrier.wait()
        answers.append(client.post(BATCH_URL, body, format="json").json())
        connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(a["accepted"] for a in answers) == 50
    assert sum(a["duplicates"] for a in answers) == 50 * 7
    assert CostEvent.objects.dangerously_unscoped().count() == 50
    assert rollup_totals(personas.project, granularity="h")["requests"] == 50
    assert rollup_totals(personas.project, granularity="d")["requests"] == 50


# ----------------------------------------------------------------------------- validation


def test_a_partial_batch_stores_the_good_events_and_reports_each_bad_one(token_client, catalog):
    client, _ = token_client(["ingest"])
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    body = {"events": [
        event(),
        event(input_tokens=-5),
        event(timestamp=future),
        "not an object",
        event(model=""),
        event(cached_tokens=5000),
        event(inputtokens=3),
        event(idempotency_key="fine"),
    ]}
    response = client.post(BATCH_URL, body, format="json")
    assert response.status_code == 202
    data = response.json()
    assert (data["accepted"], data["rejected"]) == (2, 6)
    errors = {(e["index"], e["field"]) for e in data["errors"]}
    assert errors == {(1, "input_tokens"), (2, "timestamp"), (3, "non_field_errors"), (4, "model"),
                      (5, "cached_tokens"), (6, "inputtokens")}
    assert all(e["message"] for e in data["errors"])
    assert CostEvent.objects.dangerously_unscoped().count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([event()], "events"),
        ({"events": []}, "events"),
        ({"events": "nope"}, "events"),
        ({"events": [event()] * 1001}, "events"),
    ],
)
def test_a_wholly_bad_batch_is_a_400_with_a_message(token_client, catalog, body, field):
    client, _ = token_client(["ingest"])
    response = client.post(BATCH_URL, body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert CostEvent.objects.dangerously_unscoped().count() == 0


def test_a_batch_of_only_bad_events_is_a_400_with_every_error(token_client, catalog):
    client, _ = token_client(["ingest"])
    response = client.post(BATCH_URL, {"events": [event(provider=None), event(output_tokens="many")]}, format="json")
    assert response.status_code == 400
    assert {(e["index"], e["field"]) for e in response.json()["errors"]} == {(0, "provider"), (1, "output_tokens")}


def test_malformed_json_is_a_400(token_client):
    client, _ = token_client(["ingest"])
    response = client.post(BATCH_URL, data="{not json", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timestamp": "2020-01-01T00:00:00Z"}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"status_code": 99}, "status_code"),
        ({"cost_usd": "-1"}, "cost_usd"),
        ({"cost_usd": "NaN"}, "cost_usd"),
        ({"tags": ["a"]}, "tags"),
        ({"tags": {"k": {"nested": 1}}}, "tags"),
        ({"source": "carrier-pigeon"}, "source"),
        ({"reasoning_tokens": 500}, "reasoning_tokens"),
        ({"input_tokens": 1.5}, "input_tokens"),
        ({"success": "yes"}, "success"),
    ],
)
def test_a_bad_single_event_is_a_400_per_field(token_client, catalog, overrides, field):
    client, _ = token_client(["ingest"])
    response = client.post(URL, event(**overrides), format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()


def test_defaults_timestamps_without_offset_and_success_from_status(token_client, catalog):
    client, _ = token_client(["ingest"])
    client.post(URL, event(timestamp="2026-11-20T10:00:00", status_code=429, tags={"feature": "search", "n": 3}), format="json")
    stored = CostEvent.objects.dangerously_unscoped().get()
    assert stored.occurred_at == datetime(2026, 11, 20, 10, tzinfo=UTC) or stored.occurred_at.tzinfo is not None
    assert stored.success is False and stored.tags == {"feature": "search", "n": "3"}


# ----------------------------------------------------------------------------- tenancy


def test_ingestion_needs_the_ingest_scope(token_client, catalog):
    client, _ = token_client(["read", "write"])
    assert client.post(URL, event(), format="json").status_code == 403


def test_a_read_token_lists_and_shows_events_of_its_project_only(token_client, catalog, personas):
    ingest, _ = token_client(["ingest"])
    made = ingest.post(URL, event(), format="json").json()["id"]
    bravo, _ = token_client(["ingest"], project=personas.other_project)
    theirs = bravo.post(URL, event(), format="json").json()["id"]
    reader, _ = token_client(["read"])
    listed = reader.get(URL).json()["results"]
    assert [e["id"] for e in listed] == [made]
    assert reader.get(f"{URL}/{made}").status_code == 200
    assert reader.get(f"{URL}/{theirs}").status_code == 404


def test_people_record_into_a_named_project_by_role(api_as, catalog, personas):
    url = f"{URL}?project={personas.project.uuid}"
    assert api_as("member").post(url, event(), format="json").status_code == 202
    assert api_as("viewer").post(url, event(), format="json").status_code == 403
    assert api_as("outsider").post(url, event(), format="json").status_code == 404
    assert api_as("member").post(URL, event(), format="json").status_code == 400  # which project?
    assert api_as("member").post(f"{URL}?project=nope", event(), format="json").status_code == 400
    assert api_as("viewer").get(URL).status_code == 200
    assert api_as("outsider").get(URL).json()["results"] == []


# ----------------------------------------------------------------------------- rollups


def raw_totals(project, granularity: str) -> dict:
    """What the rollups must say, computed from the raw events in Python."""
    totals: dict = {}
    for e in CostEvent.objects.dangerously_unscoped().filter(project=project):
        bucket = e.occurred_at.replace(minute=0, second=0, microsecond=0)
        if granularity in ("d", "t"):
            bucket = bucket.replace(hour=0)
        tagged = [(k, e.tags[k]) for k in ("feature", "team") if k in e.tags]
        if granularity == "t":  # day totals and per tag value, over all models
            keys = [(bucket, "", "", "")] + [(bucket, "", k, v) for k, v in tagged]
        else:
            keys = [(bucket, e.model, "", "")] + [(bucket, e.model, k, v) for k, v in tagged]
        for key in keys:
            t = totals.setdefault(key, [0, 0, 0, Decimal(0), 0, 0])
            t[0] += 1
            t[1] += e.input_tokens
            t[2] += e.output_tokens
            t[3] += e.cost_usd or 0
            t[4] += e.cost_usd is None
            t[5] += not e.success
    return totals


def rolled_up(project, granularity: str) -> dict:
    rows = CostRollup.objects.dangerously_unscoped().filter(project=project, granularity=granularity)
    grouped = rows.values("bucket", "model", "tag_key", "tag_value").annotate(
        r=Sum("requests"), i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd"),
        u=Sum("unpriced_requests"), f=Sum("failures"), n=Count("id"),
    )
    return {(g["bucket"], g["model"], g["tag_key"], g["tag_value"]): [g["r"], g["i"], g["o"], g["c"], g["u"], g["f"]]
            for g in grouped}


events_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "model": st.sampled_from(["acme-large", "acme-unknown"]),
            "input_tokens": st.integers(0, 50_000),
            "output_tokens": st.integers(0, 5_000),
            "minutes_ago": st.integers(0, 60 * 24 * 3),
            "status_code": st.sampled_from([200, 200, 500]),
            "tags": st.dictionaries(st.sampled_from(["feature", "team", "other"]), st.sampled_from(["a", "b"]), max_size=3),
            "key": st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"])),
        }
    ),
    min_size=1, max_size=30,
)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(events_strategy, min_size=1, max_size=3))
def test_rollups_equal_an_aggregation_over_the_raw_events(catalog, personas, batches, settings):
    settings.COST_ROLLUP_TAG_KEYS = ["feature", "team"]
    CostEvent.objects.dangerously_unscoped().delete()
    CostRollup.objects.dangerously_unscoped().delete()
    now = timezone.now()
    for batch in batches:
        items = [
            {"provider": "acme-ai", "model": e["model"], "input_tokens": e["input_tokens"], "output_tokens": e["output_tokens"],
             "timestamp": (now - timedelta(minutes=e["minutes_ago"])).isoformat(), "status_code": e["status_code"],
             "tags": e["tags"], **({"idempotency_key": e["key"]} if e["key"] else {})}
            for e in batch
        ]
        ingestion.ingest(personas.project, items)
    for granularity in ("h", "d", "t"):
        expected = raw_totals(personas.project, granularity)
        assert rolled_up(personas.project, granularity) == {
            key: [v[0], v[1], v[2], v[3], v[4], v[5]] for key, v in expected.items()
        }


def test_a_price_change_reaches_the_next_batch_despite_the_memo(token_client, catalog):
    client, _ = token_client(["ingest"])
    first = client.post(URL, event(input_tokens=1_000_000, output_tokens=0), format="json").json()
    Price.objects.create(model=catalog["model"], input_mtok=Decimal("3"), output_mtok=Decimal("3"),
                         valid_from=timezone.now() - timedelta(minutes=1), source=Price.Source.ADMIN)
    second = client.post(URL, event(input_tokens=1_000_000, output_tokens=0), format="json").json()
    assert (Decimal(first["cost_usd"]), Decimal(second["cost_usd"])) == (Decimal("2"), Decimal("3"))
