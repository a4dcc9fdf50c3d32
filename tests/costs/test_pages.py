"""The cost pages: the activity log (filters, pagination, money in the person's currency,
unpriced calls flagged), one event with its cost explained, the streamed CSV export, per-token
usage on the API tokens page, and the display-currency preference (settings page and /me).

Every page is checked for the personas of tests/conftest.py: members of Acme of any role read
it, the outsider (who owns "Bravo") gets 404, an anonymous visitor is sent to sign in."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiToken
from benchmarks.models import Model, Price, Provider, ProviderKind
from costs.ingestion import ingest
from costs.models import CostEvent, ExchangeRate
from tests.conftest import Personas

pytestmark = pytest.mark.django_db

PRICED = "acme-large"
UNPRICED = "mystery-model"


@pytest.fixture
def catalog(db) -> Price:
    """acme-ai/acme-large at $2 in, $8 out, $0.50 cache read per Mtok."""
    provider = Provider.objects.create(
        name="Acme AI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://acme.example/v1", genai_prices_id="acme-ai",
    )
    model = Model.objects.create(provider=provider, name=PRICED)
    return Price.objects.create(
        model=model, input_mtok=Decimal("2"), output_mtok=Decimal("8"), cache_read_mtok=Decimal("0.5"),
        valid_from=timezone.now() - timedelta(days=365), source=Price.Source.GENAI_PRICES,
    )


def call(**overrides) -> dict:
    return {"provider": "acme-ai", "model": PRICED, "input_tokens": 1000, "output_tokens": 200,
            "timestamp": (timezone.now() - timedelta(hours=1)).isoformat()} | overrides


@pytest.fixture
def backend(personas: Personas) -> ApiToken:
    token, _ = ApiToken.issue(project=personas.project, name="backend", scopes=["ingest"], by=personas.owner)
    return token


@pytest.fixture
def events(personas: Personas, catalog: Price, backend: ApiToken) -> dict[str, CostEvent]:
    """Acme: a priced chat call, a cached one, a failed one, an unpriced one, an old one (40 days);
    Bravo: one call of its own."""
    now = timezone.now()
    result = ingest(personas.project, [
        call(input_tokens=1_000_000, cached_tokens=400_000, output_tokens=100_000, tags={"feature": "chat"},
             latency_ms=812.5, status_code=200, idempotency_key="cached-one"),
        call(tags={"feature": "search", "environment": "prod"}),
        call(status_code=429, success=False, output_tokens=0, tags={"feature": "chat"}),
        call(model=UNPRICED, input_tokens=5000, output_tokens=1000),
        call(timestamp=(now - timedelta(days=40)).isoformat(), tags={"feature": "archive"}),
    ], token=backend)
    assert not result.errors
    ingest(personas.other_project, [call(model="bravo-secret-model", tags={"feature": "bravo"})])
    by_key = {e.idempotency_key: e for e in CostEvent.objects.dangerously_unscoped().filter(project=personas.project)}
    return {
        "cached": by_key["cached-one"],
        "unpriced": CostEvent.objects.dangerously_unscoped().get(model=UNPRICED),
        "bravo": CostEvent.objects.dangerously_unscoped().get(project=personas.other_project),
    }


def activity_url(personas: Personas) -> str:
    return f"/projects/{personas.project.uuid}/activity/"


def export_url(personas: Personas) -> str:
    return f"/projects/{personas.project.uuid}/activity/export.csv"


def text_of(response) -> str:
    """The page's text, tags stripped and spaces collapsed (money sits in its own span)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", response.content.decode()))


def rows_of(response) -> int:
    return response.content.decode().count('data-testid="event-row"')


def csv_of(response) -> list[dict[str, str]]:
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


# ----------------------------------------------------------------------------- personas


PAGES = {
    "activity": lambda p, e: activity_url(p),
    "detail": lambda p, e: f"/projects/{p.project.uuid}/activity/{e['cached'].uuid}/",
    "export": lambda p, e: export_url(p),
}


@pytest.mark.parametrize("page", list(PAGES))
@pytest.mark.parametrize("persona", ["owner", "admin", "member", "viewer"])
def test_every_member_of_the_organization_can_read_the_cost_pages(client, personas, events, page, persona):
    client.force_login(personas.user(persona))
    response = client.get(PAGES[page](personas, events))
    assert response.status_code == 200
    if page != "export":
        assert "Acme" in response.content.decode()


@pytest.mark.parametrize("page", list(PAGES))
def test_the_outsider_gets_404_and_anonymous_visitors_are_sent_to_sign_in(client, personas, events, page):
    url = PAGES[page](personas, events)
    assert client.get(url).status_code == 302
    assert "/accounts/login/" in client.get(url)["Location"]
    client.force_login(personas.outsider)
    response = client.get(url)
    assert response.status_code == 404
    assert PRICED not in response.content.decode()


@pytest.mark.parametrize("page", list(PAGES))
def test_the_pages_only_read(client, personas, events, page):
    client.force_login(personas.owner)
    assert client.post(PAGES[page](personas, events)).status_code == 405


def test_another_projects_event_is_not_found_through_this_project(client, personas, events):
    client.force_login(personas.owner)
    response = client.get(f"/projects/{personas.project.uuid}/activity/{events['bravo'].uuid}/")
    assert response.status_code == 404
    client.force_login(personas.outsider)  # the outsider cannot reach Acme's event via Bravo either
    assert client.get(f"/projects/{personas.other_project.uuid}/activity/{events['cached'].uuid}/").status_code == 404


def test_the_nav_links_to_the_activity_log(client, personas, events):
    client.force_login(personas.viewer)
    html = client.get(f"/projects/{personas.project.uuid}/").content.decode()
    assert f'href="{activity_url(personas)}"' in html


# ----------------------------------------------------------------------------- the log


def test_the_log_lists_the_projects_events_newest_first_with_their_details(client, personas, events):
    client.force_login(personas.viewer)
    response = client.get(activity_url(personas))
    html = response.content.decode()
    assert rows_of(response) == 4  # the 40-day-old call is outside the default 30 days
    assert "bravo-secret-model" not in html
    assert "1,000,000 / 400,000 / 100,000" in html
    assert "$2.20" in html  # 600K x $2 + 400K x $0.5 + 100K x $8 per Mtok
    assert "812 ms" in html or "813 ms" in html
    assert "feature=chat" in html and "429" in html
    assert f"{events['cached'].token_prefix}…" in html and "backend" in html
    events_on_page = [e.occurred_at for e in response.context["page"].object_list]
    assert events_on_page == sorted(events_on_page, reverse=True)


def test_times_are_shown_in_the_organizations_time_zone(client, personas, events):
    personas.org.time_zone = "Asia/Kolkata"  # +05:30, so no UTC hour can be mistaken for it
    personas.org.save()
    client.force_login(personas.owner)
    html = client.get(activity_url(personas)).content.decode()
    local = events["cached"].occurred_at.astimezone(timezone.get_fixed_timezone(330))
    assert local.strftime("%H:%M:%S") in html and "times in Asia/Kolkata" in html


def test_an_unpriced_call_shows_a_badge_and_the_page_warns_about_its_model(client, personas, events):
    client.force_login(personas.viewer)
    html = client.get(activity_url(personas)).content.decode()
    assert 'class="badge warn"' in html and ">unpriced<" in html
    assert 'data-testid="unpriced-warning"' in html
    warning = html[html.index('data-testid="unpriced-warning"'):]
    warning = warning[: warning.index("</div>")]
    assert f"acme-ai/{UNPRICED}" in warning and "1 request" in warning and "6,000 tokens" in warning
    assert "unknown, not $0" in warning and "admin" in warning
    assert f"acme-ai/{PRICED}" not in warning


def test_no_warning_when_every_call_is_priced(client, personas, catalog):
    ingest(personas.project, [call()])
    client.force_login(personas.viewer)
    assert 'data-testid="unpriced-warning"' not in client.get(activity_url(personas)).content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"model": UNPRICED}, 1),
        ({"model": PRICED}, 3),
        ({"provider": "acme-ai"}, 4),
        ({"tag": "feature=chat"}, 2),
        ({"tag": " environment = prod "}, 1),
        ({"tag": "feature=nothing"}, 0),
        ({"status": "failed"}, 1),
        ({"status": "success"}, 3),
        ({"unpriced": "on"}, 1),
        ({"range": "90d"}, 5),
        ({"range": "24h", "tag": "feature=archive"}, 0),
        ({"range": "90d", "tag": "feature=archive"}, 1),
        ({"token": "-"}, 0),
    ],
)
def test_the_filters_narrow_the_log(client, personas, events, query, expected):
    client.force_login(personas.viewer)
    response = client.get(activity_url(personas), query)
    assert response.status_code == 200
    assert response.context["filter_errors"] == []
    assert rows_of(response) == expected


def test_the_token_filter(client, personas, events, backend):
    ingest(personas.project, [call(tags={"feature": "signed-in"})])  # no token: a signed-in sender
    client.force_login(personas.viewer)
    assert rows_of(client.get(activity_url(personas), {"token": backend.prefix})) == 4
    assert rows_of(client.get(activity_url(personas), {"token": "-"})) == 1


def test_from_and_to_dates_are_days_in_the_organizations_zone_and_win_over_the_range(client, personas, events):
    client.force_login(personas.viewer)
    old_day = (timezone.now() - timedelta(days=40)).date()
    response = client.get(activity_url(personas), {"range": "24h", "start": old_day - timedelta(days=1), "end": old_day + timedelta(days=1)})
    assert rows_of(response) == 1
    response = client.get(activity_url(personas), {"start": date.today() - timedelta(days=2)})
    assert rows_of(response) == 4


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"tag": "no equals sign"}, "Tag"),
        ({"start": "yesterday"}, "From"),
        ({"start": "2026-02-30"}, "From"),
        ({"model": "not-a-model-we-saw"}, "Model"),
        ({"token": "pk_live_nonexistent"}, "API token"),
        ({"status": "exploded"}, "Status"),
        ({"range": "1000y"}, "Period"),
        ({"start": "2026-03-02", "end": "2026-03-01"}, "To"),
    ],
)
def test_invalid_filters_are_reported_on_the_form_and_ignored_never_a_500(client, personas, events, query, field):
    client.force_login(personas.viewer)
    response = client.get(activity_url(personas), query)
    assert response.status_code == 200
    errors = response.context["filter_errors"]
    assert len(errors) == 1 and errors[0].startswith(f"{field}:") and "ignored" in errors[0]
    assert 'data-testid="filter-errors"' in response.content.decode()


def test_the_log_is_paginated_50_a_page(client, personas, catalog):
    base = timezone.now() - timedelta(hours=2)
    ingest(personas.project, [call(timestamp=(base + timedelta(seconds=i)).isoformat(), idempotency_key=f"k{i}") for i in range(120)])
    client.force_login(personas.viewer)
    first = client.get(activity_url(personas))
    assert rows_of(first) == 50 and "Page 1 of 3" in first.content.decode()
    assert first.context["page"].object_list[0].idempotency_key == "k119"  # newest first
    last = client.get(activity_url(personas), {"page": 3, "model": PRICED})
    assert rows_of(last) == 20 and last.context["page"].object_list[-1].idempotency_key == "k0"
    assert 'href="?page=2&amp;model=acme-large"' in last.content.decode()  # the filters stay on
    assert rows_of(client.get(activity_url(personas), {"page": "lots"})) == 50  # a bad page is page 1


# ----------------------------------------------------------------------------- money


def test_money_is_shown_in_the_currency_the_person_picked(client, personas, events):
    ExchangeRate.objects.create(currency="GBP", date=date(2026, 11, 20), per_usd=Decimal("0.75"))
    client.force_login(personas.viewer)
    response = client.post("/settings/", {"first_name": "", "last_name": "", "display_currency": "GBP"})
    assert response.status_code == 302
    html = client.get(activity_url(personas)).content.decode()
    assert "£1.65" in html  # $2.20 x 0.75
    assert "$2.20" not in html
    assert "GBP rates as of 20 Nov 2026" in html
    detail = text_of(client.get(PAGES["detail"](personas, events)))
    assert "£1.65" in detail and "£1.50 per Mtok" in detail  # the $2 input price, converted too


def test_the_rates_are_read_once_per_request(client, personas, events):
    client.force_login(personas.viewer)
    client.get(activity_url(personas))
    with CaptureQueriesContext(connection) as queries:
        client.get(activity_url(personas))
    assert sum("costs_exchangerate" in q["sql"] for q in queries.captured_queries) == 1


def test_the_settings_page_refuses_an_unknown_currency(client, personas):
    client.force_login(personas.viewer)
    assert client.get("/settings/").status_code == 200
    response = client.post("/settings/", {"display_currency": "XYZ"})
    assert response.status_code == 400
    personas.viewer.refresh_from_db()
    assert personas.viewer.display_currency == "USD"


def test_the_user_menu_links_to_account_settings(client, personas):
    client.force_login(personas.viewer)
    assert 'href="/settings/"' in client.get(f"/projects/{personas.project.uuid}/").content.decode()


def test_me_reads_and_changes_the_display_currency(api_as, token_client):
    api = api_as("viewer")
    assert api.get("/api/v1/me").json()["user"]["display_currency"] == "USD"
    response = api.patch("/api/v1/me", {"display_currency": "eur"}, format="json")
    assert response.status_code == 200 and response.json()["user"]["display_currency"] == "EUR"
    bad = api.patch("/api/v1/me", {"display_currency": "XYZ"}, format="json")
    assert bad.status_code == 400 and "display_currency" in bad.json()
    assert api.get("/api/v1/me").json()["user"]["display_currency"] == "EUR"
    client, _ = token_client(["read", "write"])
    assert client.patch("/api/v1/me", {"display_currency": "GBP"}, format="json").status_code == 403


# ----------------------------------------------------------------------------- detail


def test_the_detail_page_shows_the_price_used_and_the_arithmetic(client, personas, events, catalog):
    client.force_login(personas.viewer)
    html = text_of(client.get(PAGES["detail"](personas, events)))
    assert str(events["cached"].uuid) in html
    assert "Acme AI / acme-large" in html
    assert "$2.00 per Mtok" in html and "$8.00 per Mtok" in html and "$0.50 per Mtok" in html
    assert "600,000 × $2.00 / 1M" in html and "$1.20" in html
    assert "400,000 × $0.50 / 1M" in html and "$0.20" in html
    assert "100,000 × $8.00 / 1M" in html and "$0.80" in html
    assert "812.5 ms" in html and "feature=chat" in html and "cached-one" in html


def test_the_detail_page_of_an_unpriced_call_says_the_cost_is_unknown(client, personas, events):
    client.force_login(personas.viewer)
    html = client.get(f"/projects/{personas.project.uuid}/activity/{events['unpriced'].uuid}/").content.decode()
    assert ">unpriced<" in html and "unknown (not $0)" in html
    assert 'data-testid="breakdown"' not in html


# ----------------------------------------------------------------------------- CSV


def test_the_export_streams_every_matching_event_as_csv(client, personas, events):
    client.force_login(personas.viewer)
    response = client.get(export_url(personas), {"range": "90d"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="pulse-acme-production-events-{timezone.now():%Y-%m-%d}.csv"' in response["Content-Disposition"]
    rows = csv_of(response)
    assert len(rows) == 5
    assert "bravo-secret-model" not in {r["model"] for r in rows}
    cached = next(r for r in rows if r["idempotency_key"] == "cached-one")
    assert Decimal(cached["cost_usd"]) == Decimal("2.2")
    assert cached["api_token_name"] == "backend" and cached["tags"] == '{"feature": "chat"}'
    assert cached["occurred_at"].endswith("+00:00")  # Acme's zone is UTC; the offset is written
    unpriced = next(r for r in rows if r["model"] == UNPRICED)
    assert unpriced["cost_usd"] == "" and unpriced["cost_source"] == "unpriced"  # unknown, not 0


def test_the_export_respects_the_filters(client, personas, events):
    client.force_login(personas.viewer)
    rows = csv_of(client.get(export_url(personas), {"tag": "feature=chat", "status": "failed"}))
    assert [r["status_code"] for r in rows] == ["429"]


def test_the_export_is_in_the_persons_currency_with_usd_always(client, personas, events):
    ExchangeRate.objects.create(currency="EUR", date=date(2026, 11, 20), per_usd=Decimal("0.9"))
    personas.viewer.display_currency = "EUR"
    personas.viewer.save()
    client.force_login(personas.viewer)
    rows = csv_of(client.get(export_url(personas), {"model": PRICED, "tag": "feature=chat", "status": "success"}))
    assert list(rows[0])[8:10] == ["cost_usd", "cost_eur"]
    assert (Decimal(rows[0]["cost_usd"]), Decimal(rows[0]["cost_eur"])) == (Decimal("2.2"), Decimal("1.98"))


def test_the_export_defuses_spreadsheet_formulas(client, personas, catalog):
    ingest(personas.project, [call(tags={"feature": "=HYPERLINK(\"http://evil\")"}, idempotency_key="@SUM(A1)")])
    client.force_login(personas.viewer)
    row = csv_of(client.get(export_url(personas)))[0]
    assert row["idempotency_key"] == "'@SUM(A1)" and row["tags"].startswith("{")


def test_the_export_of_another_tenant_is_404(client, personas, events):
    client.force_login(personas.outsider)
    assert client.get(export_url(personas)).status_code == 404


# ----------------------------------------------------------------------------- API tokens page


def test_the_api_tokens_page_shows_each_tokens_usage(client, personas, events, backend):
    idle, _ = ApiToken.issue(project=personas.project, name="idle one", scopes=["read"], by=personas.owner)
    client.force_login(personas.viewer)
    response = client.get(f"/projects/{personas.project.uuid}/tokens/")
    html = response.content.decode()
    tokens = {t.name: t for t in response.context["tokens"]}
    usage = tokens["backend"].usage
    assert usage["requests"] == 4 and usage["unpriced"] == 1  # the 40-day-old call is outside 30 days
    assert usage["tokens"] == 1_100_000 + 1200 + 1000 + 6000
    assert tokens["idle one"].usage is None
    assert "4 req" in html and "+ 1 unpriced" in html
