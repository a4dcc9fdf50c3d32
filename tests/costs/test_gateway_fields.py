"""What a gateway call adds to a cost event, and where it shows.

- The public doors (`POST /api/v1/events`, `/events/batch`) take `ttft_ms`, `streamed`,
  `endpoint`, `end_user` and `token_count_source`; the gateway's own fields (route, upstream,
  cache hit and saving, attempts, overhead, bodies, source "gateway") only through the trusted
  door the gateway's consumer uses, never from an API caller (a 400 per field, per item).
- Rollups count cache hits and what they saved, in the same statement as the rest; summaries and
  the dashboard's "Saved by the cache" tile read them.
- Kept request/response bodies: stored with new events only, capped, expiring after their
  retention period, purged in chunks by a beat task, shown (escaped, JSON pretty-printed) on the
  activity detail page to the project's members and to no one else.
- The events API, the activity log (badges, filters) and the CSV export show the new fields.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from config.celery import app as celery_app
from costs import ingestion, tasks
from costs.ingestion import ingest
from costs.models import CostEvent, CostEventBody, CostRollup
from costs.summary import Period, Summary
from gateway.models import GatewaySettings, Route
from tests.conftest import Personas

from .test_pages import call, catalog, text_of  # noqa: F401 (catalog: a fixture)

# Every test prices acme-ai/acme-large (tests/costs/test_pages.py's catalog).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("catalog")]

EVENTS = "/api/v1/events"
COST = Decimal("0.0036")  # acme-large: 1,000 in x $2 + 200 out x $8 per Mtok


def gateway_call(n: int = 1, **overrides) -> dict:
    """An item as the gateway's consumer hands it to ingestion."""
    return call(
        idempotency_key=f"gw-req-{n}", source="gateway", latency_ms=400.0, ttft_ms=88.5, streamed=True, endpoint="chat",
        end_user="user-7", token_count_source="usage", route="fast-chat", upstream="simulator/acme-large",
        cache_hit=False, attempts=[], overhead_ms=0.4,
    ) | overrides


def trusted(project, *items, token=None) -> ingestion.IngestResult:
    result = ingest(project, list(items), token=token, trusted=True)
    assert not result.errors, result.errors
    return result


def stored(key: str) -> CostEvent:
    return CostEvent.objects.dangerously_unscoped().get(idempotency_key=key)


def text_of_html(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def words_of(html: str) -> str:
    """The page's text with every tag as a space (a <dt> and its <dd> stay apart)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# ----------------------------------------------------------------------------- the public doors


def test_the_api_takes_the_fields_any_caller_may_report(token_client, personas):
    client, _ = token_client(["ingest", "read"])
    response = client.post(EVENTS, {
        "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 5, "idempotency_key": "sdk-1",
        "ttft_ms": 120.5, "streamed": True, "endpoint": "chat", "end_user": " user-42 ", "token_count_source": "estimate",
    }, format="json")
    assert response.status_code == 202, response.content
    event = stored("sdk-1")
    assert (event.ttft_ms, event.streamed, event.endpoint, event.end_user, event.token_count_source, event.source) == (
        120.5, True, "chat", "user-42", "estimate", "api")
    assert (event.route, event.upstream, event.cache_hit, event.saved_usd, event.gateway) == ("", "", False, None, {})


@pytest.mark.parametrize(
    ("field", "value"),
    [("route", "fast-chat"), ("upstream", "openai/gpt-4o"), ("cache_hit", True), ("saved_usd", "0.1"),
     ("attempts", []), ("overhead_ms", 0.5), ("bodies", {"request": "", "response": ""})],
)
def test_an_api_caller_cannot_send_what_only_the_gateway_knows(token_client, field, value):
    client, _ = token_client(["ingest"])
    item = {"provider": "openai", "model": "gpt-4o-mini", field: value}
    response = client.post(EVENTS, item, format="json")
    assert response.status_code == 400
    assert response.json() == {field: ["Unknown field."]}
    batch = client.post(f"{EVENTS}/batch", {"events": [item, {"provider": "openai", "model": "gpt-4o-mini"}]}, format="json")
    assert batch.status_code == 202
    assert batch.json()["accepted"] == 1 and batch.json()["errors"] == [{"index": 0, "field": field, "message": "Unknown field."}]
    assert not CostEvent.objects.dangerously_unscoped().filter(cache_hit=True).exists()


def test_an_api_caller_cannot_pass_its_calls_off_as_the_gateways(token_client):
    client, _ = token_client(["ingest"])
    response = client.post(EVENTS, {"provider": "openai", "model": "gpt-4o-mini", "source": "gateway"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"source": ["Must be one of api, sdk, import."]}


@pytest.mark.parametrize(
    ("field", "value"),
    [("ttft_ms", -1), ("ttft_ms", "fast"), ("ttft_ms", True), ("streamed", "yes"), ("streamed", 1),
     ("endpoint", "chat_completions"), ("endpoint", ""), ("end_user", 42), ("end_user", "x" * 129), ("end_user", "nul\x00"),
     ("token_count_source", "provider"), ("token_count_source", "guess")],
)
def test_bad_values_of_the_new_fields_are_a_400_naming_the_field(token_client, field, value):
    client, _ = token_client(["ingest"])
    response = client.post(EVENTS, {"provider": "openai", "model": "gpt-4o-mini", field: value}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_the_events_api_shows_the_gateway_fields(api_as, personas):
    trusted(personas.project, gateway_call(1, attempts=[{"upstream": "primary/acme-large", "status_code": 429, "error": "rate limited"}]))
    response = api_as("viewer").get(EVENTS, {"project": str(personas.project.uuid)})
    (event,) = response.json()["results"]
    assert {key: event[key] for key in (
        "source", "ttft_ms", "streamed", "endpoint", "end_user", "token_count_source", "route", "upstream", "cache_hit",
        "saved_usd", "attempts", "overhead_ms")} == {
        "source": "gateway", "ttft_ms": 88.5, "streamed": True, "endpoint": "chat", "end_user": "user-7",
        "token_count_source": "usage", "route": "fast-chat", "upstream": "simulator/acme-large", "cache_hit": False,
        "saved_usd": None, "attempts": [{"upstream": "primary/acme-large", "status_code": 429, "error": "rate limited"}],
        "overhead_ms": 0.4,
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [({"endpoint": "embeddings"}, {"gw-req-2"}), ({"end_user": "user-9"}, {"gw-req-3"}),
     ({"cache_hit": "true"}, {"gw-req-3"}), ({"cache_hit": "false"}, {"gw-req-1", "gw-req-2"})],
)
def test_the_events_api_filters_by_endpoint_end_user_and_cache_hit(api_as, personas, query, expected):
    trusted(personas.project, gateway_call(1), gateway_call(2, endpoint="embeddings", output_tokens=0),
            gateway_call(3, end_user="user-9", cache_hit=True, cost_usd="0"))
    response = api_as("viewer").get(EVENTS, {"project": str(personas.project.uuid), **query})
    assert {e["idempotency_key"] for e in response.json()["results"]} == expected


# ----------------------------------------------------------------------------- the trusted door


def test_the_trusted_door_stores_the_gateways_fields(personas):
    trusted(personas.project, gateway_call(1, attempts=[{"upstream": "a/b", "status_code": None, "error": "connect timeout"}]))
    event = stored("gw-req-1")
    assert (event.source, event.route, event.upstream, event.cache_hit, event.cost_usd) == (
        "gateway", "fast-chat", "simulator/acme-large", False, COST)
    assert event.gateway == {"attempts": [{"upstream": "a/b", "status_code": None, "error": "connect timeout"}], "overhead_ms": 0.4}


def test_a_cache_hit_costs_nothing_and_saves_what_its_tokens_would_have_cost(personas):
    trusted(personas.project, gateway_call(1, cache_hit=True, cost_usd="0"),  # saving priced here
            gateway_call(2, cache_hit=True, cost_usd="0", saved_usd="0.5"),  # saving sent by the gateway
            gateway_call(3, cache_hit=True, cost_usd="0", model="no-price-known"))  # saving unknown
    assert (stored("gw-req-1").cost_usd, stored("gw-req-1").cost_source, stored("gw-req-1").saved_usd) == (Decimal(0), "client", COST)
    assert stored("gw-req-2").saved_usd == Decimal("0.5")
    assert stored("gw-req-3").saved_usd is None and stored("gw-req-3").cost_usd == Decimal(0)


def test_the_trusted_door_cuts_and_cleans_rather_than_losing_the_call(personas):
    """The call happened and was served: a detail out of shape is mended, not a reason to lose it."""
    trusted(personas.project,
            gateway_call(1, end_user="u" * 300 + "\x00", route="r" * 300, upstream="x" * 300, token_count_source="provider",
                         latency_ms=5_000_000, ttft_ms=-1, overhead_ms=-0.1,
                         attempts=[{"upstream": "a/b", "status_code": 0, "error": "refused"}, "garbage"]),
            gateway_call(2, end_user=42, attempts="none"))
    event = stored("gw-req-1")
    assert (len(event.end_user), len(event.route), len(event.upstream)) == (128, 128, 200)
    assert "\x00" not in event.end_user and event.token_count_source == "usage"
    assert (event.latency_ms, event.ttft_ms, event.overhead_ms) == (ingestion.MAX_LATENCY_MS, 0, 0)
    assert event.attempts == [{"upstream": "a/b", "status_code": None, "error": "refused"}]
    assert (stored("gw-req-2").end_user, stored("gw-req-2").attempts) == ("42", [])


def test_the_public_door_still_refuses_an_hour_long_latency(personas):
    result = ingest(personas.project, [call(latency_ms=5_000_000)])
    assert [error.field for error in result.errors] == ["latency_ms"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("cache_hit", "yes"), ("saved_usd", "-1"), ("overhead_ms", "slow"), ("streamed", 1), ("endpoint", "fine-tuning"),
     ("bodies", "text"), ("bodies", {"request": 1}), ("bodies", {"retention_days": 0}), ("source", "carrier-pigeon")],
)
def test_the_trusted_door_still_refuses_what_is_wrong(personas, field, value):
    result = ingest(personas.project, [gateway_call(1, **{field: value})], trusted=True)
    assert [error.field for error in result.errors] == [field]


# ----------------------------------------------------------------------------- rollups and summaries


def test_rollups_count_cache_hits_and_their_savings(personas):
    trusted(personas.project, gateway_call(1), gateway_call(2, cache_hit=True, cost_usd="0"),
            gateway_call(3, cache_hit=True, cost_usd="0", tags={"feature": "chat"}))
    for granularity in ("h", "d", "t"):
        rows = CostRollup.objects.dangerously_unscoped().filter(project=personas.project, granularity=granularity, tag_key="")
        assert rows.aggregate(requests=Sum("requests"), hits=Sum("cache_hits"), saved=Sum("saved_usd"), cost=Sum("cost_usd")) == {
            "requests": 3, "hits": 2, "saved": 2 * COST, "cost": COST}, granularity
    trusted(personas.project, gateway_call(2, cache_hit=True, cost_usd="0"))  # a redelivery: not counted again
    summary = Summary.build([personas.project], Period.for_range("7d"))
    assert (summary.totals.cache_hits, summary.totals.saved_usd, summary.totals.cache_hit_rate) == (2, 2 * COST, 0.6667)


def test_the_summary_api_reports_cache_hits_and_savings(token_client, personas):
    trusted(personas.project, gateway_call(1), gateway_call(2, cache_hit=True, cost_usd="0"))
    client, _ = token_client(["read"])
    totals = client.get("/api/v1/costs/summary", {"range": "7d"}).json()["totals"]
    assert (totals["cache_hits"], totals["saved"]) == (1, "0.003600")


# ----------------------------------------------------------------------------- bodies


BODIES = {"request": '{"model":"fast-chat","messages":[{"role":"user","content":"<script>alert(1)</script>"}]}',
          "response": "data: not json\n\n", "truncated": True, "retention_days": 3}


def test_bodies_are_stored_with_a_new_event_only(personas):
    trusted(personas.project, gateway_call(1, bodies=BODIES))
    body = CostEventBody.objects.dangerously_unscoped().get()
    event = stored("gw-req-1")
    assert (body.event_id, body.request, body.response, body.truncated) == (event.id, BODIES["request"], BODIES["response"], True)
    assert body.expires_at == event.occurred_at + timedelta(days=3)
    trusted(personas.project, gateway_call(1, bodies={**BODIES, "request": "a retry's copy"}))  # duplicate
    assert CostEventBody.objects.dangerously_unscoped().get().request == BODIES["request"]
    trusted(personas.project, gateway_call(2))  # no bodies: nothing stored
    assert CostEventBody.objects.dangerously_unscoped().count() == 1


def test_bodies_are_capped_defensively_without_cutting_a_character(personas, monkeypatch):
    monkeypatch.setattr(ingestion, "MAX_BODY_BYTES", 10)
    trusted(personas.project, gateway_call(1, bodies={"request": "ééééééé", "response": "ok\x00", "truncated": False}))
    body = CostEventBody.objects.dangerously_unscoped().get()
    assert (body.request, body.response, body.truncated) == ("ééééé", "ok", True)


def test_expired_bodies_are_purged_in_chunks_by_a_periodic_task(personas):
    long_ago = (timezone.now() - timedelta(days=10)).isoformat()
    trusted(personas.project, *(gateway_call(n, timestamp=long_ago, bodies={**BODIES, "retention_days": 7}) for n in range(5)),
            gateway_call(9, bodies={**BODIES, "retention_days": 7}))
    assert CostEventBody.objects.dangerously_unscoped().purge_expired(chunk=2) == 5
    assert list(CostEventBody.objects.dangerously_unscoped().values_list("event__idempotency_key", flat=True)) == ["gw-req-9"]
    assert CostEvent.objects.dangerously_unscoped().count() == 6  # the events stay
    assert tasks.purge_expired_bodies() == 0
    schedule = celery_app.conf.beat_schedule["costs.purge-expired-bodies"]
    assert schedule["task"] == tasks.purge_expired_bodies.name and schedule["options"]["expires"] < schedule["schedule"]


def detail_url(personas: Personas, event: CostEvent) -> str:
    return f"/projects/{personas.project.uuid}/activity/{event.uuid}/"


@pytest.fixture
def with_bodies(personas) -> CostEvent:
    trusted(personas.project, gateway_call(1, bodies=BODIES, attempts=[{"upstream": "primary/acme-large", "status_code": 503, "error": "overloaded"}]))
    return stored("gw-req-1")


@pytest.mark.parametrize("persona", ["owner", "admin", "member", "viewer"])
def test_members_see_the_bodies_on_the_detail_page(client, personas, with_bodies, persona):
    client.force_login(personas.user(persona))
    response = client.get(detail_url(personas, with_bodies))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="bodies"' in html and 'data-testid="truncated"' in html
    # Pretty-printed JSON, escaped: the client's text never becomes markup.
    pretty = json.dumps(json.loads(BODIES["request"]), indent=2)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert pretty.splitlines()[1].replace('"', "&quot;") in html
    assert "data: not json" in html  # not JSON: shown as sent


def test_the_outsider_gets_404_for_a_detail_page_with_bodies(client, personas, with_bodies):
    client.force_login(personas.outsider)
    response = client.get(detail_url(personas, with_bodies))
    assert response.status_code == 404
    assert "alert(1)" not in response.content.decode()
    assert client.get(f"/projects/{personas.other_project.uuid}/activity/{with_bodies.uuid}/").status_code == 404


def test_the_detail_page_shows_the_gateway_facts_and_hides_expired_bodies(client, personas, with_bodies):
    client.force_login(personas.viewer)
    text = words_of(client.get(detail_url(personas, with_bodies)).content.decode())
    for fact in ("Time to first token 88.5 ms", "Route fast-chat", "Upstream simulator/acme-large", "End user user-7",
                 "primary/acme-large 503 overloaded", "Gateway overhead 0.40 ms", "Token counts reported by the provider"):
        assert fact in text, fact
    CostEventBody.objects.dangerously_unscoped().update(expires_at=timezone.now() - timedelta(seconds=1))
    assert 'data-testid="bodies"' not in client.get(detail_url(personas, with_bodies)).content.decode()


def test_a_cache_hits_detail_says_what_it_saved(client, personas):
    trusted(personas.project, gateway_call(1, cache_hit=True, cost_usd="0"))
    client.force_login(personas.viewer)
    text = text_of(client.get(detail_url(personas, stored("gw-req-1"))))
    assert "answered from the gateway's cache" in text and "would have cost $0.0036" in text


# ----------------------------------------------------------------------------- the activity log and export


def test_the_log_shows_cache_hits_streaming_ttft_and_the_route(client, personas):
    trusted(personas.project, gateway_call(1, cache_hit=True, cost_usd="0"), gateway_call(2, streamed=False, ttft_ms=None))
    client.force_login(personas.viewer)
    html = client.get(f"/projects/{personas.project.uuid}/activity/").content.decode()
    assert html.count('data-testid="cache-hit"') == 1
    assert html.count('data-testid="stream-facts"') == 1 and "streamed · TTFT 89 ms" in text_of_html(html)
    assert html.count('data-testid="gateway-route"') == 2 and "fast-chat</code> → simulator/acme-large" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [({"endpoint": "embeddings"}, 1), ({"end_user": "user-9"}, 1), ({"end_user": "nobody"}, 0), ({"cache_hit": "on"}, 1), ({}, 3)],
)
def test_the_log_filters_by_endpoint_end_user_and_cache_hits(client, personas, query, expected):
    trusted(personas.project, gateway_call(1), gateway_call(2, endpoint="embeddings", output_tokens=0),
            gateway_call(3, end_user="user-9", cache_hit=True, cost_usd="0"))
    client.force_login(personas.viewer)
    html = client.get(f"/projects/{personas.project.uuid}/activity/", query).content.decode()
    assert html.count('data-testid="event-row"') == expected


def test_the_export_has_the_new_columns_after_the_old_ones(client, personas):
    trusted(personas.project, gateway_call(1, cache_hit=True, cost_usd="0", end_user="=cmd()"))
    client.force_login(personas.viewer)
    response = client.get(f"/projects/{personas.project.uuid}/activity/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert list(rows[0])[-9:] == ["ttft_ms", "streamed", "endpoint", "end_user", "token_count_source", "route", "upstream",
                                  "cache_hit", "saved_usd"]
    assert {key: rows[0][key] for key in list(rows[0])[-9:]} == {
        "ttft_ms": "88.5", "streamed": "true", "endpoint": "chat", "end_user": "'=cmd()", "token_count_source": "usage",
        "route": "fast-chat", "upstream": "simulator/acme-large", "cache_hit": "true", "saved_usd": "0.0036000000"}


# ----------------------------------------------------------------------------- the dashboard tile


def tile_text(html: str) -> str | None:
    match = re.search(r'data-testid="kpi-cache">(.*?)</div></div>', html, re.S)
    return None if match is None else re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


def test_the_dashboard_shows_what_the_cache_saved(client, personas):
    trusted(personas.project, gateway_call(1), gateway_call(2, cache_hit=True, cost_usd="0"),
            gateway_call(3, cache_hit=True, cost_usd="0"), gateway_call(4))
    client.force_login(personas.viewer)
    assert tile_text(client.get(f"/projects/{personas.project.uuid}/").content.decode()) == (
        "Saved by the cache $0.0072 2 hits · 50% of calls")


def test_the_tile_appears_once_the_project_uses_the_gateway(client, personas):
    ingest(personas.project, [call()])  # API traffic only: no tile
    client.force_login(personas.viewer)
    url = f"/projects/{personas.project.uuid}/"
    assert tile_text(client.get(url).content.decode()) is None
    settings_ = GatewaySettings.of(personas.project)
    settings_.cache_enabled = True
    settings_.save()
    assert tile_text(client.get(url).content.decode()) == "Saved by the cache $0.00 no hits in this period"
    settings_.cache_enabled = False
    settings_.save()
    Route.objects.create(project=personas.project, name="fast-chat")
    assert tile_text(client.get(url).content.decode()) is not None


def test_the_public_api_cannot_take_a_gateway_idempotency_key(personas):
    """An event sent first under "gw-<request id>" would turn the gateway's record of that call
    into a duplicate, and its spend would vanish from costs and budgets."""
    from costs.ingestion import ingest

    item = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "cost_usd": "0",
            "idempotency_key": "gw-0123456789abcdef"}
    result = ingest(personas.project, [item])
    assert [(e.field, e.index) for e in result.errors] == [("idempotency_key", 0)]
    trusted = ingest(personas.project, [dict(item, source="gateway")], trusted=True)
    assert not trusted.errors
