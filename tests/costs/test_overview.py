"""The costs overview on the project dashboard (/projects/<uuid>/): KPI tiles, the two charts'
data, calendar trends, recent activity and recommendations add up to the events ingested; money
follows the person's currency; ranges; the empty state; personas; a bound on queries."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiToken
from costs.display import MoneyDisplay
from costs.ingestion import ingest
from costs.models import ExchangeRate
from costs.overview import Overview, calendar_starts
from costs.recommendations import Recommendation
from costs.summary import rollups_of
from tests.conftest import Personas

from .test_pages import PRICED, UNPRICED, backend, call, catalog, text_of  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

# acme-large: $2 in, $8 out per Mtok -> 1000 in + 200 out = $0.0036 a call.
PER_CALL = Decimal("0.0036")


def url(personas: Personas, query: str = "") -> str:
    return f"/projects/{personas.project.uuid}/{query}"


def tile(response, name: str) -> str:
    """The text of one KPI tile."""
    html = response.content.decode()
    match = re.search(rf'data-testid="kpi-{name}">(.*?)</div></div>', html, re.S)
    assert match, name
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


@pytest.fixture
def traffic(personas, catalog, backend):  # noqa: F811 (fixtures imported above)
    """Acme: three priced calls and one unpriced call an hour ago, one priced call 20 days ago;
    Bravo: one call of its own (never on Acme's page)."""
    now = timezone.now()
    # An hour ago, but never yesterday: in the first hour of a UTC day the calls stay on today.
    recent = max(now - timedelta(hours=1), now.replace(hour=0, minute=0, second=0, microsecond=0)).isoformat()
    result = ingest(personas.project, [
        call(timestamp=recent), call(timestamp=recent), call(status_code=500, success=False, timestamp=recent),
        call(model=UNPRICED, input_tokens=5000, output_tokens=1000, timestamp=recent),
        call(timestamp=(now - timedelta(days=20)).isoformat()),
    ], token=backend)
    assert not result.errors
    ingest(personas.other_project, [call(model="bravo-secret-model")])


# ----------------------------------------------------------------------------- personas


@pytest.mark.parametrize("persona", ["owner", "admin", "member", "viewer"])
def test_every_member_sees_the_overview(client, personas, traffic, persona):
    client.force_login(personas.user(persona))
    response = client.get(url(personas))
    assert response.status_code == 200
    assert 'data-testid="spend-card"' in response.content.decode()


def test_an_outsider_gets_404_and_never_sees_another_tenants_models(client, personas, traffic):
    client.force_login(personas.outsider)
    assert client.get(url(personas)).status_code == 404
    own = client.get(f"/projects/{personas.other_project.uuid}/").content.decode()
    assert "bravo-secret-model" in own and PRICED not in own


def test_an_anonymous_visitor_is_sent_to_sign_in(client, personas):
    response = client.get(url(personas))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_dashboard_is_read_only(client, personas):
    client.force_login(personas.owner)
    assert client.post(url(personas)).status_code == 405


# ----------------------------------------------------------------------------- the numbers


def test_the_tiles_add_up_to_the_events(client, personas, traffic):
    client.force_login(personas.viewer)
    response = client.get(url(personas))
    # 30 days: four priced calls (one failed, still billed) and one unpriced.
    assert tile(response, "cost").startswith("Total cost $0.0144")
    assert "excludes 1 unpriced" in tile(response, "cost")
    assert tile(response, "requests").startswith("Requests 5")
    assert "1 failed" in tile(response, "requests")
    assert tile(response, "tokens").startswith(f"Tokens {4 * 1200 + 6000:,}")
    # Cost per 1K tokens leaves the unpriced call's tokens out: 0.0144 * 1000 / 4800.
    assert tile(response, "per-1k").startswith("Cost per 1K tokens $0.003")
    assert "Change vs previous 30 days —" in tile(response, "change")  # nothing before


def test_the_charts_carry_every_day_and_every_priced_model(client, personas, traffic):
    client.force_login(personas.owner)
    overview = client.get(url(personas)).context["overview"]
    spend = overview.spend_chart
    assert len(spend["labels"]) == len(spend["tokens"]) == len(spend["cost"]) == 30
    assert spend["labels"][-1] == timezone.now().astimezone(UTC).date().isoformat()
    assert sum(spend["tokens"]) == 4 * 1200 + 6000
    assert Decimal(str(sum(spend["cost"]))).quantize(Decimal("1e-6")) == 4 * PER_CALL
    assert spend["currency"] == "USD"
    # The unpriced model is no $0 slice: it is listed beside the chart.
    assert overview.model_chart["labels"] == [f"acme-ai/{PRICED}"]
    assert overview.model_chart["cost"] == [float(4 * PER_CALL)]
    assert [m["model"] for m in overview.unpriced_models] == [UNPRICED]
    html = client.get(url(personas)).content.decode()
    assert 'data-testid="unpriced-warning"' in html and "In the last 30 days these models" in html


def test_money_follows_the_persons_currency(client, personas, traffic):
    ExchangeRate.objects.create(currency="GBP", date=date(2026, 11, 20), per_usd=Decimal("0.75"))
    personas.viewer.display_currency = "GBP"
    personas.viewer.save()
    client.force_login(personas.viewer)
    response = client.get(url(personas))
    assert tile(response, "cost").startswith("Total cost £0.0108")  # 0.0144 * 0.75
    text = text_of(response)
    assert "GBP rates as of 20 Nov 2026" in text
    # No dollar amount but the unpriced warning's "not $0" and the recommendations' notes,
    # which quote USD list prices (and say so).
    html = re.sub(r"<details>.*?</details>", "", response.content.decode(), flags=re.S)
    assert re.findall(r"\$\d", re.sub(r"<[^>]+>", "", html).replace("not $0", "")) == []
    spend = response.context["overview"].spend_chart
    assert spend["currency"] == "GBP" and spend["symbol"] == "£"
    assert Decimal(str(sum(spend["cost"]))).quantize(Decimal("1e-6")) == Decimal("0.0108")


@pytest.mark.parametrize(("query", "key", "requests"), [
    ("?range=7d", "7d", 4), ("?range=30d", "30d", 5), ("?range=90d", "90d", 5), ("", "30d", 5),
    ("?range=bogus", "30d", 5), ("?range=", "30d", 5), ("?range=7d&range=x%00", "30d", 5),
])
def test_the_range_picks_the_period_and_bad_values_fall_back(client, personas, traffic, query, key, requests):
    client.force_login(personas.owner)
    response = client.get(url(personas, query))
    assert response.status_code == 200
    overview = response.context["overview"]
    assert overview.range_key == key
    assert overview.summary.totals.requests == requests
    assert len(overview.spend_chart["labels"]) == int(key[:-1])
    assert f'aria-current="true">{key}</a>' in response.content.decode()


def test_change_vs_previous_period_shows_direction(client, personas, catalog, backend):  # noqa: F811
    now = timezone.now()
    ingest(personas.project, [
        call(timestamp=(now - timedelta(days=40)).isoformat()),  # previous 30 days: one call
        call(), call(),                                          # this period: two
    ], token=backend)
    client.force_login(personas.owner)
    response = client.get(url(personas))
    assert tile(response, "change").startswith("Change vs previous 30 days ▲ 100.0")
    assert 'class="change up warn"' in response.content.decode()  # more spend: the warning colour
    assert "was $0.0036" in tile(response, "change")


# ----------------------------------------------------------------------------- trends, recent activity


def test_calendar_starts_are_utc_weeks_months_and_quarters():
    starts = calendar_starts(date(2026, 5, 14))  # a Thursday
    assert starts["This week"] == (date(2026, 5, 11), date(2026, 5, 4))
    assert starts["This month"] == (date(2026, 5, 1), date(2026, 4, 1))
    assert starts["This quarter"] == (date(2026, 4, 1), date(2026, 1, 1))
    assert calendar_starts(date(2026, 1, 2))["This quarter"] == (date(2026, 1, 1), date(2025, 10, 1))
    assert calendar_starts(date(2026, 1, 2))["This month"] == (date(2026, 1, 1), date(2025, 12, 1))


def test_trends_compare_the_same_stretch_of_the_previous_week(personas, catalog, backend):  # noqa: F811
    # A Wednesday noon in the past, so every event is before the real clock.
    today = timezone.now().astimezone(UTC).date()
    wednesday = today - timedelta(days=(today.weekday() - 2) % 7 + 7)
    now = datetime(wednesday.year, wednesday.month, wednesday.day, 12, tzinfo=UTC)
    ingest(personas.project, [
        call(timestamp=(now - timedelta(hours=2)).isoformat()),                   # this week so far
        call(timestamp=(now - timedelta(days=7, hours=2)).isoformat()),          # last week, same stretch
        call(timestamp=(now - timedelta(days=7) + timedelta(hours=2)).isoformat()),  # last week, later
    ], token=backend)
    overview = Overview.build(personas.project, personas.owner, shown=MoneyDisplay.for_request(None), now=now)
    week = next(t for t in overview.trends if t.label == "This week")
    assert week.cost_usd == PER_CALL
    assert week.previous_cost_usd == PER_CALL
    assert week.previous_whole_cost_usd == 2 * PER_CALL
    assert week.cost_change_pct == 0
    assert week.tokens == week.previous_tokens == 1200


def test_recent_activity_lists_five_days_linked_to_the_activity_log(client, personas, traffic):
    client.force_login(personas.owner)
    response = client.get(url(personas))
    overview = response.context["overview"]
    assert len(overview.recent_days) == 5
    today = overview.recent_days[0]
    assert today.day == timezone.now().astimezone(UTC).date()  # Acme's time zone is UTC
    assert (today.requests, today.tokens, today.cost_usd) == (4, 3 * 1200 + 6000, 3 * PER_CALL)
    link = f"/projects/{personas.project.uuid}/activity/?start={today.day:%Y-%m-%d}&amp;end={today.day:%Y-%m-%d}"
    assert link in response.content.decode()
    # The link shows the same calls.
    log = client.get(link.replace("&amp;", "&"))
    assert log.content.decode().count('data-testid="event-row"') == today.requests
    events = overview.recent_events
    assert len(events) == 5 and events[0].occurred_at >= events[-1].occurred_at
    assert response.content.decode().count('data-testid="recent-event"') == 5


def test_recent_days_follow_the_organizations_time_zone(client, personas, catalog, backend):  # noqa: F811
    personas.org.time_zone = "America/Los_Angeles"
    personas.org.save()
    ingest(personas.project, [call(timestamp=(timezone.now() - timedelta(minutes=5)).isoformat())], token=backend)
    client.force_login(personas.owner)
    overview = client.get(url(personas)).context["overview"]
    local_today = timezone.now().astimezone(timezone.zoneinfo.ZoneInfo("America/Los_Angeles")).date()
    assert overview.recent_days[0].day == local_today and overview.recent_days[0].requests == 1


# ----------------------------------------------------------------------------- recommendations


def test_recommendations_show_saving_speed_and_assumptions_in_the_persons_currency(client, personas, traffic, monkeypatch):
    rec = Recommendation(
        kind="cheaper_model", provider="acme-ai", model=PRICED,
        title=f"Move 50% of {PRICED} traffic to openai/gpt-4o-mini: save $1,234.50/month",
        detail="At your average … costs $0.000100 per request against $0.003600.",
        monthly_saving_usd=Decimal("1234.50"), assumptions=["Traffic of the last 30 days scaled to 30 days."],
        numbers={"current_cost_per_request_usd": "0.00360000", "candidate_cost_per_request_usd": "0.00010000",
                 "current_ttft_p50_ms": 420.0, "current_tps_p50": 80.2,
                 "candidate_ttft_p50_ms": 310.4, "candidate_tps_p50": 120.9},
    )
    monkeypatch.setattr("costs.overview.recommend", lambda project, now=None: [rec] * 4)
    ExchangeRate.objects.create(currency="EUR", date=date(2026, 11, 20), per_usd=Decimal("0.5"))
    personas.owner.display_currency = "EUR"
    personas.owner.save()
    client.force_login(personas.owner)
    response = client.get(url(personas))
    html = response.content.decode()
    assert html.count('data-testid="recommendation"') == 3
    assert f"Move 50% of {PRICED} traffic to openai/gpt-4o-mini</strong>" in html
    assert "save €617.25/month" in text_of(response)
    assert "TTFT 310 ms vs 420 ms now" in text_of(response) and "121 vs 80 tokens/s" in text_of(response)
    assert "<summary>Assumptions</summary>" in html and "Traffic of the last 30 days" in html
    assert "$0.000100" not in html  # the USD detail is replaced by converted per-request costs


def test_real_recommendations_render(client, personas):
    ingest(personas.project, [
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 6000, "output_tokens": 300,
         "timestamp": (timezone.now() - timedelta(hours=i)).isoformat()} for i in range(50)
    ])
    client.force_login(personas.viewer)
    response = client.get(url(personas))
    assert response.status_code == 200
    tips = response.context["overview"].recommendations
    assert 1 <= len(tips) <= 3
    assert all("$" not in tip.headline for tip in tips)
    assert 'data-testid="recommendation"' in response.content.decode()


# ----------------------------------------------------------------------------- empty state


def test_a_project_without_events_explains_how_to_send_them(client, personas):
    _token, raw = ApiToken.issue(project=personas.project, name="backend", scopes=["ingest"], by=personas.owner)
    client.force_login(personas.owner)
    response = client.get(url(personas, "?range=7d"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="overview-empty"' in html
    assert f"/api/v1/events?project={personas.project.uuid}" in html
    assert "$PULSE_INGEST_TOKEN" in html and raw not in html and _token.prefix not in html
    assert 'id="spend-chart"' not in html and "chart.umd" not in html  # no chart drawn
    assert f"No budget covers {personas.project.name} yet" in html
    assert f'href="/orgs/{personas.org.uuid}/alerts/budgets/new/?scope=project:{personas.project.uuid}"' in html
    assert tile(response, "cost") == "Total cost — no cost events in this period"


def test_without_budgets_the_budgets_card_says_how_to_set_one(client, personas, traffic):
    client.force_login(personas.owner)
    html = client.get(url(personas)).content.decode()
    budgets = html[html.index('data-testid="budgets"'):]
    assert "No budget covers Production yet" in budgets and "$" not in budgets.split("</div>")[1]


# ----------------------------------------------------------------------------- queries


def test_the_dashboard_makes_a_bounded_number_of_queries(client, personas, traffic, django_assert_max_num_queries):
    client.force_login(personas.owner)
    client.get(url(personas))  # the session's first write and the recommendations' cache
    # 22: the budgets covering the project and the bell's unread count came with alerts.
    with django_assert_max_num_queries(22):
        assert client.get(url(personas, "?range=90d")).status_code == 200


def test_the_overview_reads_rollups_not_events(personas, traffic, django_assert_max_num_queries):
    shown = MoneyDisplay.for_request(None)
    with django_assert_max_num_queries(30) as captured:
        Overview.build(personas.project, personas.owner, shown=shown)
    event_queries = [q["sql"] for q in captured.captured_queries if '"costs_costevent"' in q["sql"]]
    assert len(event_queries) == 1 and "LIMIT 5" in event_queries[0]
    assert rollups_of([personas.project]).exists()


@pytest.mark.parametrize(("persona", "shown"), [("viewer", False), ("member", True)])
def test_the_create_token_shortcut_is_offered_only_to_those_who_may_create_tokens(client, personas, persona, shown):
    client.force_login(personas.user(persona))
    page = client.get(url(personas)).content.decode()
    assert ("Create an API token" in page) is shown
