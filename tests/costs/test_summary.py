"""Cost summaries: totals and breakdowns equal what was ingested, the previous-period change,
the month-end forecast on a fixed clock, currencies with their rate date, tags, per-key
analytics (a deleted key too), unpriced models, CSV, a bounded number of queries, and the
personas (outsider 404, viewer 200, token without read scope 403, bad parameters 400)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiToken, Project, Role
from costs import ingestion
from costs.models import ExchangeRate
from costs.summary import Period, Summary

pytestmark = pytest.mark.django_db

URL = "/api/v1/costs/summary"
TOKENS_URL = "/api/v1/costs/tokens"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # a Friday; November has 30 days


@pytest.fixture
def clock(monkeypatch):
    """Freeze `timezone.now()` (summary, ingestion's timestamp checks, token expiry) at `NOW`;
    `clock.set(…)` moves it."""

    class Clock:
        now = NOW

        def set(self, moment: datetime) -> None:
            self.now = moment

    fixed = Clock()
    monkeypatch.setattr(timezone, "now", lambda: fixed.now)
    return fixed


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> str:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC).isoformat()


def key(personas, name: str) -> ApiToken:
    token, _ = ApiToken.issue(project=personas.project, name=name, scopes=["ingest"], by=personas.owner)
    return token


def record(project: Project, token: ApiToken | None, *events: dict) -> None:
    result = ingestion.ingest(project, [dict(e) for e in events], token=token)
    assert not result.errors, result.errors


def call(provider: str, model: str, when: str, cost: str | None, tokens_in: int, tokens_out: int, **extra) -> dict:
    event = {"provider": provider, "model": model, "timestamp": when, "input_tokens": tokens_in, "output_tokens": tokens_out}
    if cost is not None:
        event["cost_usd"] = cost
    return event | extra


@pytest.fixture
def spend(personas, clock):
    """This week (range 7d = Nov 14 00:00 .. Nov 20 12:00):
        search key: 2 × gpt-4o on Nov 19 ($1.50 each; 1000 in / 500 out; latency 100, 300; feature=search)
                    1 × acme-mystery on Nov 15 (no price known; 4000 in)
        chat key:   1 × claude on Nov 20 09:00 ($2; 2000 in / 1000 out; latency 200; HTTP 500; feature=chat)
    The week before, cut at 12:00 on Nov 13: $2 on Nov 10, $1 on Nov 13 11:30 (counted) and
    $100 on Nov 13 15:00 (after the cut: not counted in the comparison, counted in the run rate)."""
    search, chat = key(personas, "search key"), key(personas, "chat key")
    record(personas.project, search,
           call("openai", "gpt-4o", at(19, 10), "1.50", 1000, 500, cached_tokens=100, reasoning_tokens=50,
                latency_ms=100, tags={"feature": "search"}),
           call("openai", "gpt-4o", at(19, 10, 30), "1.50", 1000, 500, cached_tokens=100, reasoning_tokens=50,
                latency_ms=300, tags={"feature": "search"}),
           call("acme-ai", "acme-mystery", at(15, 8), None, 4000, 0),
           call("openai", "gpt-4o", at(10, 9), "2", 1000, 500),
           call("openai", "gpt-4o", at(13, 11, 30), "1", 100, 0),
           call("openai", "gpt-4o", at(13, 15), "100", 100, 0))
    record(personas.project, chat,
           call("anthropic", "claude-sonnet-4", at(20, 9), "2", 2000, 1000, latency_ms=200, status_code=500,
                tags={"feature": "chat"}))
    record(personas.other_project, None, call("openai", "gpt-4o", at(19, 10), "999", 1, 1))  # Bravo's: never counted
    return {"search": search, "chat": chat}


def get(client, url: str = URL, **params):
    return client.get(url, params)


# ----------------------------------------------------------------------------- the domain


def test_totals_and_breakdowns_equal_what_was_ingested(personas, spend, clock):
    summary = Summary.build([personas.project], Period.for_range("7d"), tag="feature")

    t = summary.totals
    assert (t.requests, t.failures, t.cost_usd, t.unpriced_requests) == (4, 1, Decimal("5"), 1)
    assert (t.input_tokens, t.output_tokens, t.cached_tokens, t.reasoning_tokens, t.tokens) == (8000, 2000, 200, 100, 10000)
    assert t.success_rate == 0.75 and t.avg_latency_ms == 200.0
    assert t.unpriced_tokens == 4000
    assert t.cost_per_1k_tokens_usd == Decimal("5") * 1000 / 6000  # the unpriced model's tokens left out
    assert summary.period.length_days == Decimal("6.5")
    assert summary.average_daily_cost_usd == Decimal("5") / Decimal("6.5")
    assert summary.average_daily_tokens == 1538

    assert [(m.provider, m.model, m.requests, m.cost_usd) for m in summary.by_model] == [
        ("openai", "gpt-4o", 2, Decimal("3")), ("anthropic", "claude-sonnet-4", 1, Decimal("2")),
        ("acme-ai", "acme-mystery", 1, Decimal("0")),
    ]
    assert [(p.provider, p.cost_usd) for p in summary.by_provider] == [
        ("openai", Decimal("3")), ("anthropic", Decimal("2")), ("acme-ai", Decimal("0")),
    ]
    assert [(d.day, d.requests, d.cost_usd) for d in summary.by_day] == [
        (date(2026, 11, 14), 0, 0), (date(2026, 11, 15), 1, 0), (date(2026, 11, 16), 0, 0),
        (date(2026, 11, 17), 0, 0), (date(2026, 11, 18), 0, 0), (date(2026, 11, 19), 2, Decimal("3")),
        (date(2026, 11, 20), 1, Decimal("2")),
    ]
    assert [(g.value, g.requests, g.cost_usd) for g in summary.by_tag] == [("search", 2, Decimal("3")), ("chat", 1, Decimal("2"))]


def test_the_previous_period_is_cut_at_the_same_time_of_day(personas, spend, clock):
    comparison = Summary.build([personas.project], Period.for_range("7d")).comparison
    assert comparison.previous.start == datetime(2026, 11, 7, tzinfo=UTC)
    assert comparison.previous.end == datetime(2026, 11, 13, 12, tzinfo=UTC)
    assert (comparison.usage.requests, comparison.usage.cost_usd, comparison.usage.tokens) == (2, Decimal("3"), 1600)
    assert comparison.cost_change_pct == 66.67  # $5 against $3
    assert comparison.requests_change_pct == 100.0
    assert comparison.tokens_change_pct == 525.0  # 10,000 against 1,600


def test_percent_change_is_none_without_a_previous_period(personas, clock):
    record(personas.project, None, call("openai", "gpt-4o", at(19, 10), "1", 10, 10))
    comparison = Summary.build([personas.project], Period.for_range("7d")).comparison
    assert (comparison.cost_change_pct, comparison.tokens_change_pct, comparison.requests_change_pct) == (None, None, None)


def test_explicit_dates_compare_with_the_same_number_of_days_before(personas, spend, clock):
    summary = Summary.build([personas.project], Period.between(date(2026, 11, 13), date(2026, 11, 19)))
    assert len(summary.by_day) == 7 and summary.period.length_days == 7
    assert summary.totals.cost_usd == Decimal("104")  # 1 + 100 + 0 + 3
    assert summary.comparison.previous.start == datetime(2026, 11, 6, tzinfo=UTC)
    assert summary.comparison.previous.end == datetime(2026, 11, 13, tzinfo=UTC)
    assert summary.comparison.usage.cost_usd == Decimal("2")


def test_forecast_uses_the_last_seven_complete_days(personas, spend, clock):
    forecast = Summary.build([personas.project], Period.for_range("30d")).forecast
    assert forecast.month_start == date(2026, 11, 1)
    assert forecast.month_to_date_usd == Decimal("108")  # 2 + 1 + 100 + 3 + 2
    assert forecast.run_rate_basis == "last_7_complete_days"
    assert forecast.run_rate_usd_per_day == Decimal("104") / 7  # Nov 13..19
    assert forecast.days_left == Decimal("10.5")  # Nov 20 12:00 .. Dec 1
    assert forecast.forecast_usd == Decimal("108") + Decimal("104") / 7 * Decimal("10.5")  # = 264
    assert round(forecast.forecast_usd, 6) == Decimal("264")
    assert "last 7 complete" in forecast.method


def test_forecast_early_in_the_month_uses_the_month_so_far(personas, clock):
    clock.set(datetime(2026, 11, 4, 6, 0, tzinfo=UTC))
    record(personas.project, None, call("openai", "gpt-4o", at(2, 10), "6.5", 10, 10),
           call("openai", "gpt-4o", at(30, 10, month=10), "1000", 10, 10))  # October: not this month
    forecast = Summary.build([personas.project], Period.for_range("7d")).forecast
    assert forecast.run_rate_basis == "month_so_far"
    assert forecast.run_rate_usd_per_day == Decimal("2")  # $6.50 over 3.25 days
    assert forecast.days_left == Decimal("26.75")
    assert forecast.forecast_usd == Decimal("60")  # 6.50 + 2 × 26.75


def test_a_summary_can_cover_several_projects(personas, clock):
    second = Project.objects.create(organization=personas.org, name="Staging")
    record(personas.project, None, call("openai", "gpt-4o", at(19, 10), "1", 10, 10))
    record(second, None, call("openai", "gpt-4o", at(19, 11), "2", 10, 10))
    summary = Summary.build([personas.project, second], Period.for_range("7d"))
    assert (summary.totals.cost_usd, summary.totals.requests) == (Decimal("3"), 2)


def test_the_summary_makes_a_fixed_number_of_queries(personas, spend, clock, django_assert_max_num_queries):
    with django_assert_max_num_queries(7):  # 5 aggregates + token names + the tag breakdown
        Summary.build([personas.project], Period.for_range("90d"), tag="feature")


# ----------------------------------------------------------------------------- the API


def test_the_api_returns_the_summary_in_the_requested_currency_with_the_rate_date(api_as, personas, spend, clock):
    ExchangeRate.objects.create(currency="GBP", date=date(2026, 11, 19), per_usd=Decimal("0.8"))
    response = get(api_as("viewer"), project=personas.project.uuid, range="7d", currency="gbp", tag="feature")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["currency"] == {"currency": "GBP", "symbol": "£", "rate_per_usd": "0.80000000", "rate_date": "2026-11-19"}
    assert data["projects"] == [str(personas.project.uuid)] and data["range"] == "7d"
    assert data["period"]["first_day"] == "2026-11-14" and data["period"]["last_day"] == "2026-11-20"
    totals = data["totals"]
    assert totals["cost"] == "4.000000"  # $5 × 0.8
    assert totals["cost_per_1k_tokens"] == "0.666667"  # £4 / 6,000 priced tokens × 1,000
    assert (totals["requests"], totals["failures"], totals["success_rate"], totals["tokens"]) == (4, 1, 0.75, 10000)
    assert data["comparison"]["cost_change_pct"] == 66.67
    assert data["comparison"]["previous_totals"]["cost"] == "2.400000"
    assert data["forecast"]["forecast"] == "211.200000"  # $264 × 0.8
    assert data["forecast"]["run_rate_basis"] == "last_7_complete_days" and data["forecast"]["method"]
    assert len(data["by_day"]) == 7 and data["by_day"][-1] == data["by_day"][-1] | {"date": "2026-11-20", "cost": "1.600000"}
    assert [p["provider"] for p in data["by_provider"]] == ["openai", "anthropic", "acme-ai"]
    assert [(g["value"], g["cost"]) for g in data["by_tag"]] == [("search", "2.400000"), ("chat", "1.600000")]
    assert data["tag_key"] == "feature"


def test_unpriced_models_are_listed_with_their_token_volume(api_as, personas, spend, clock):
    data = get(api_as("viewer"), project=personas.project.uuid, range="7d").json()
    assert [(m["model"], m["unpriced_requests"], m["unpriced_tokens"], m["tokens"], m["cost_per_1k_tokens"])
            for m in data["unpriced_models"]] == [("acme-mystery", 1, 4000, 4000, None)]


def test_the_default_currency_is_the_users_preference_and_usd_for_tokens(api_as, personas, token_client, spend, clock):
    personas.viewer.display_currency = "EUR"
    personas.viewer.save(update_fields=["display_currency"])
    assert get(api_as("viewer"), project=personas.project.uuid).json()["currency"]["currency"] == "EUR"
    reader, _ = token_client(["read"])
    data = get(reader).json()
    assert data["currency"]["currency"] == "USD" and data["currency"]["rate_date"] is None
    assert data["range"] == "30d" and data["totals"]["cost"] == "108.000000"  # a bound token reads its project


def test_per_key_analytics_include_a_deleted_key(api_as, personas, spend, clock):
    chat_prefix = spend["chat"].prefix
    spend["chat"].delete()
    response = get(api_as("viewer"), TOKENS_URL, project=personas.project.uuid, range="7d")
    assert response.status_code == 200, response.content
    rows = {row["prefix"]: row for row in response.json()["tokens"]}
    search = rows[spend["search"].prefix]
    assert (search["name"], search["deleted"], search["requests"], search["cost"]) == ("search key", False, 3, "3.000000")
    assert (search["avg_latency_ms"], search["success_rate"], search["tokens"]) == (200.0, 1.0, 7000)
    chat = rows[chat_prefix]
    assert (chat["name"], chat["deleted"], chat["success_rate"], chat["cost"]) == (chat_prefix, True, 0.0, "2.000000")


def test_csv_export_streams_the_day_and_model_breakdowns(api_as, personas, spend, clock):
    ExchangeRate.objects.create(currency="GBP", date=date(2026, 11, 19), per_usd=Decimal("0.8"))
    response = get(api_as("viewer"), project=personas.project.uuid, range="7d", currency="GBP", format="csv")
    assert response.status_code == 200
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="pulse-costs-production-2026-11-14-to-2026-11-20.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][-1] == "cost_gbp" and rows[0][:4] == ["breakdown", "date", "provider", "model"]
    days = [r for r in rows[1:] if r[0] == "day"]
    models = [r for r in rows[1:] if r[0] == "model"]
    assert [d[1] for d in days] == [f"2026-11-{n}" for n in range(14, 21)]
    assert days[-1][-1] == "1.600000"
    assert [(m[2], m[3], m[-1]) for m in models] == [
        ("openai", "gpt-4o", "2.400000"), ("anthropic", "claude-sonnet-4", "1.600000"), ("acme-ai", "acme-mystery", "0.000000"),
    ]


def test_csv_can_be_asked_for_with_the_accept_header_and_errors_stay_json(api_as, personas, spend, clock):
    client = api_as("viewer")
    ok = client.get(URL, {"project": personas.project.uuid}, HTTP_ACCEPT="text/csv")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/csv")
    bad = client.get(URL, {"project": personas.project.uuid, "range": "1y", "format": "csv"})
    assert bad.status_code == 400 and "range" in bad.json()


def test_the_api_makes_a_bounded_number_of_queries(token_client, spend, clock, django_assert_max_num_queries):
    reader, _ = token_client(["read"])
    with django_assert_max_num_queries(12):
        assert get(reader, range="90d", tag="feature").status_code == 200


# ----------------------------------------------------------------------------- personas and input


@pytest.mark.parametrize("name", ["owner", "admin", "member", "viewer"])
def test_every_member_can_read_the_summary(api_as, personas, spend, clock, name):
    assert get(api_as(name), project=personas.project.uuid).status_code == 200
    assert get(api_as(name), TOKENS_URL, project=personas.project.uuid).status_code == 200


def test_an_outsider_gets_404(api_as, personas, spend, clock):
    assert get(api_as("outsider"), project=personas.project.uuid).status_code == 404
    assert get(api_as("outsider"), TOKENS_URL, project=personas.project.uuid).status_code == 404


def test_a_token_needs_the_read_scope_and_sees_only_its_project(token_client, personas, spend, clock):
    ingest_only, _ = token_client(["ingest"])
    assert get(ingest_only).status_code == 403
    assert get(ingest_only, TOKENS_URL).status_code == 403
    reader, _ = token_client(["read"])
    assert get(reader, project=personas.other_project.uuid).status_code == 404
    assert get(reader, project=personas.project.uuid).status_code == 200


def test_signed_out_is_refused(api_client):
    assert get(api_client).status_code in (401, 403)


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({}, {"project"}),
        ({"project": "nope"}, {"project"}),
        ({"project": "P", "range": "1y", "currency": "XYZ", "tag": "x" * 65}, {"range", "currency", "tag"}),
        ({"project": "P", "from": "yesterday", "to": "2026-13-01"}, {"from", "to"}),
        ({"project": "P", "from": "2026-11-01"}, {"to"}),
        ({"project": "P", "to": "2026-11-01"}, {"from"}),
        ({"project": "P", "range": "7d", "from": "2026-11-01", "to": "2026-11-02"}, {"range"}),
        ({"project": "P", "from": "2026-11-10", "to": "2026-11-01"}, {"to"}),
        ({"project": "P", "from": "2026-11-10", "to": "2026-11-21"}, {"to"}),  # after today
        ({"project": "P", "from": "2025-01-01", "to": "2026-11-01"}, {"from"}),  # longer than 400 days
    ],
)
def test_malformed_parameters_are_a_400_with_a_message_per_field(api_as, personas, clock, params, fields):
    params = {k: (personas.project.uuid if v == "P" else v) for k, v in params.items()}
    for url in (URL, TOKENS_URL):
        response = get(api_as("viewer"), url, **({k: v for k, v in params.items() if url == URL or k != "tag"}))
        assert response.status_code == 400, response.content
        body = response.json()
        expected = fields - ({"tag"} if url == TOKENS_URL else set())
        assert set(body) == expected
        assert all(body[f] for f in expected)


def test_the_viewer_role_is_enough_and_write_methods_are_not_allowed(api_as, personas, clock):
    assert personas.org.role_of(personas.viewer) == Role.VIEWER
    assert api_as("owner").post(f"{URL}?project={personas.project.uuid}", {}).status_code == 405


def test_explicit_dates_through_the_api(api_as, personas, spend, clock):
    data = get(api_as("viewer"), project=personas.project.uuid, **{"from": "2026-11-13", "to": "2026-11-19"}).json()
    assert data["range"] is None and data["period"]["length_days"] == "7.00"
    assert data["totals"]["cost"] == "104.000000"
    assert (timezone.now() - NOW) == timedelta(0)
