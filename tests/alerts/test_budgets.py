"""Budgets: periods (rollover, time zones, DST), forecasts, amount changes, hard budgets, scopes
and filters, and `cost_between` against the raw events. Spend goes in through `ingest()`."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db.models import Sum
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import ApiToken, Project
from alerts import budgets, tasks
from alerts.budgets import BudgetPeriod, BudgetStatus, evaluate_budget
from alerts.models import Alert, Budget, Delivery
from costs.ingestion import ingest
from costs.models import CostEvent, CostRollup, ExchangeRate
from costs.summary import cost_between

from .conftest import make_budget, past_november_year, spend

pytestmark = pytest.mark.django_db

NY = "America/New_York"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def thresholds_alerted(budget, **filters) -> list[int]:
    return sorted(Alert.objects.filter(budget=budget, kind=Alert.Kind.BUDGET_THRESHOLD, **filters)
                  .values_list("threshold", flat=True))


def set_time_zone(org, name: str) -> None:
    org.time_zone = name
    org.save(update_fields=["time_zone"])


# ----------------------------------------------------------------------------- periods


def test_a_monthly_budget_alerted_in_november_alerts_again_in_december(personas):
    year = past_november_year()
    budget = make_budget(personas, project=personas.project, members=[personas.owner], forecast_alerts=False)
    spend(personas.project, "8.50", utc(year, 11, 10, 12))
    november = evaluate_budget(budget, now=utc(year, 11, 20))
    assert [a.threshold for a in november] == [50, 80]
    assert {a.period_start for a in november} == {utc(year, 11, 1)}
    assert evaluate_budget(budget, now=utc(year, 11, 30, 23)) == []

    spend(personas.project, "9", utc(year, 12, 3, 10))
    december = evaluate_budget(budget, now=utc(year, 12, 4))
    assert [a.threshold for a in december] == [50, 80]
    assert {a.period_start for a in december} == {utc(year, 12, 1)}
    assert evaluate_budget(budget, now=utc(year, 12, 4, 1)) == []
    assert thresholds_alerted(budget) == [50, 50, 80, 80]
    # One email per period (the highest threshold crossed), not one per threshold.
    assert Delivery.objects.filter(alert__budget=budget).count() == 2


def test_a_daily_budget_starts_over_at_midnight(personas):
    year = past_november_year()
    budget = make_budget(personas, period=Budget.Period.DAY, forecast_alerts=False)
    spend(personas.project, "6", utc(year, 11, 10, 10))
    assert [a.threshold for a in evaluate_budget(budget, now=utc(year, 11, 10, 12))] == [50]
    assert evaluate_budget(budget, now=utc(year, 11, 10, 23, 59)) == []
    assert BudgetStatus.of(budget, now=utc(year, 11, 11, 0, 30)).spent == 0
    spend(personas.project, "5", utc(year, 11, 11, 1))
    raised = evaluate_budget(budget, now=utc(year, 11, 11, 2))
    assert [(a.threshold, a.period_start) for a in raised] == [(50, utc(year, 11, 11))]


def test_weekly_budgets_follow_iso_weeks_starting_monday(personas):
    year = past_november_year()
    sunday = utc(year, 11, 30) - timedelta(days=(utc(year, 11, 30).weekday() + 1) % 7)
    assert sunday.weekday() == 6
    monday = sunday + timedelta(days=1)
    period = BudgetPeriod.containing(Budget.Period.WEEK, "UTC", sunday + timedelta(hours=23))
    assert (period.start, period.end) == (monday - timedelta(days=7), monday)

    budget = make_budget(personas, period=Budget.Period.WEEK, forecast_alerts=False)
    spend(personas.project, "3", monday - timedelta(days=7, hours=-1))  # Monday 01:00 of that week
    spend(personas.project, "3", sunday + timedelta(hours=22))
    assert [a.threshold for a in evaluate_budget(budget, now=sunday + timedelta(hours=23))] == [50]
    spend(personas.project, "5", monday + timedelta(hours=1))
    assert BudgetStatus.of(budget, now=monday + timedelta(hours=2)).spent == Decimal("5")
    raised = evaluate_budget(budget, now=monday + timedelta(hours=2))
    assert [(a.threshold, a.period_start) for a in raised] == [(50, monday)]


# ----------------------------------------------------------------------------- time zones


def test_the_last_local_hour_of_november_in_new_york_counts_in_november(personas):
    year = past_november_year()
    set_time_zone(personas.org, NY)
    budget = make_budget(personas, project=personas.project, forecast_alerts=False)
    spend(personas.project, "2", utc(year, 11, 1, 3, 30))  # Oct 31, 23:30 EDT: October
    spend(personas.project, "6", utc(year, 12, 1, 4, 30))  # Nov 30, 23:30 EST: November
    spend(personas.project, "1", utc(year, 12, 1, 5, 30))  # Dec 1, 00:30 EST: December

    november = BudgetStatus.of(budget, now=utc(year, 12, 1, 4, 59))
    assert (november.period.start, november.period.end) == (utc(year, 11, 1, 4), utc(year, 12, 1, 5))
    assert november.spent == Decimal("6")
    raised = evaluate_budget(budget, now=utc(year, 12, 1, 4, 59))
    assert [(a.threshold, a.period_start) for a in raised] == [(50, utc(year, 11, 1, 4))]
    assert "Sun 1 Nov" in raised[0].message or f"1 Nov {year}" in raised[0].message

    december = BudgetStatus.of(budget, now=utc(year, 12, 2, 12))
    assert december.period.start == utc(year, 12, 1, 5)
    assert december.period.local_start == datetime(year, 12, 1, tzinfo=ZoneInfo(NY))
    assert december.spent == Decimal("1")
    assert evaluate_budget(budget, now=utc(year, 12, 2, 12)) == []


@pytest.mark.parametrize(("zone", "december_starts"), [("Europe/Berlin", (11, 30, 23)), ("Asia/Tokyo", (11, 30, 15))])
def test_positive_offsets_move_the_boundary_the_other_way(personas, zone, december_starts):
    year = past_november_year()
    set_time_zone(personas.org, zone)
    budget = make_budget(personas)
    boundary = utc(year, *december_starts)
    spend(personas.project, "4", boundary - timedelta(minutes=30))  # Nov 30, 23:30 local
    spend(personas.project, "7", boundary + timedelta(minutes=30))  # Dec 1, 00:30 local
    november = BudgetStatus.of(budget, now=boundary - timedelta(minutes=1))
    december = BudgetStatus.of(budget, now=boundary + timedelta(hours=5))
    assert november.period.end == december.period.start == boundary
    assert (november.spent, december.spent) == (Decimal("4"), Decimal("7"))
    assert december.period.local_start.hour == 0


def test_a_daily_budget_across_the_us_dst_change_is_23_or_25_hours_long(personas):
    spring = BudgetPeriod.containing(Budget.Period.DAY, NY, utc(2026, 3, 8, 12))
    autumn = BudgetPeriod.containing(Budget.Period.DAY, NY, utc(2026, 11, 1, 12))
    plain = BudgetPeriod.containing(Budget.Period.DAY, NY, utc(2026, 11, 5, 12))
    assert spring.end - spring.start == timedelta(hours=23)
    assert autumn.end - autumn.start == timedelta(hours=25)
    assert plain.end - plain.start == timedelta(hours=24)
    assert (autumn.start, autumn.end) == (utc(2026, 11, 1, 4), utc(2026, 11, 2, 5))

    # And the spend of such a day: its first and its 25th hour count, the next day's first does not.
    year = past_november_year()
    first_sunday = next(utc(year, 11, d) for d in range(1, 8) if utc(year, 11, d).weekday() == 6)
    set_time_zone(personas.org, NY)
    budget = make_budget(personas, period=Budget.Period.DAY)
    spend(personas.project, "1", first_sunday + timedelta(hours=4, minutes=30))   # 00:30 EDT
    spend(personas.project, "2", first_sunday + timedelta(hours=28, minutes=30))  # 23:30 EST
    spend(personas.project, "4", first_sunday + timedelta(hours=29, minutes=30))  # Monday 00:30 EST
    status = BudgetStatus.of(budget, now=first_sunday + timedelta(hours=28, minutes=59))
    assert status.period.end - status.period.start == timedelta(hours=25)
    assert status.spent == Decimal("3")


# ----------------------------------------------------------------------------- forecast


def steady_spend(project, end: datetime, hours: int, per_hour: str = "1") -> None:
    items = [{"provider": "openai", "model": "gpt-test", "cost_usd": per_hour,
              "timestamp": (end - timedelta(hours=h, minutes=30)).isoformat()} for h in range(hours)]
    assert ingest(project, items).inserted == hours


def test_steady_spend_projected_past_the_amount_raises_one_forecast_alert(personas):
    year = past_november_year()
    now = utc(year, 11, 15, 12)
    steady_spend(personas.project, now, hours=7 * 24)  # $24 a day for the last week: $168 so far
    budget = make_budget(personas, amount=Decimal("500"), members=[personas.owner])
    status = BudgetStatus.of(budget, now=now)
    assert status.spent == Decimal("168")
    assert status.run_rate_per_day.quantize(Decimal("0.01")) == Decimal("24.00")
    assert status.forecast.quantize(Decimal("0.01")) == Decimal("540.00")  # 168 + 24 × 15.5 days
    exceeds = now + timedelta(days=(500 - 168) / 24)
    assert abs((status.forecast_exceeds_at - exceeds).total_seconds()) < 1

    raised = evaluate_budget(budget, now=now)
    assert [a.kind for a in raised] == [Alert.Kind.BUDGET_FORECAST]
    assert f"projected to exceed the $500 monthly budget by {exceeds:%a %-d %b}" in raised[0].title
    assert raised[0].deliveries.count() == 1
    assert evaluate_budget(budget, now=now + timedelta(hours=1)) == []
    assert evaluate_budget(budget, now=now + timedelta(days=1)) == []
    assert Alert.objects.filter(budget=budget, kind=Alert.Kind.BUDGET_FORECAST).count() == 1


def test_no_forecast_alert_while_the_forecast_stays_under_the_amount(personas):
    year = past_november_year()
    now = utc(year, 11, 15, 12)
    steady_spend(personas.project, now, hours=7 * 24)
    budget = make_budget(personas, amount=Decimal("600"))
    status = BudgetStatus.of(budget, now=now)
    assert status.forecast < Decimal("600") and status.forecast_exceeds_at is None
    assert evaluate_budget(budget, now=now) == []
    # Turned off: never, even when it would pass.
    off = make_budget(personas, name="No forecast", amount=Decimal("500"), forecast_alerts=False)
    assert evaluate_budget(off, now=now) == []


def test_a_daily_budget_forecast_uses_the_last_six_hours(personas):
    year = past_november_year()
    now = utc(year, 11, 15, 12)
    steady_spend(personas.project, now, hours=6, per_hour="1")  # 6 today; $1/h for the 12 h left
    budget = make_budget(personas, period=Budget.Period.DAY, amount=Decimal("15"), thresholds=[100])
    status = BudgetStatus.of(budget, now=now)
    assert status.forecast.quantize(Decimal("0.01")) == Decimal("18.00")
    raised = evaluate_budget(budget, now=now)
    assert [a.kind for a in raised] == [Alert.Kind.BUDGET_FORECAST]
    assert "projected to exceed the $15 daily budget by" in raised[0].title


def test_a_rename_does_not_rearm_a_forecast_alert(personas):
    """The forecast dips under the amount by itself (spend paused), the budget is saved with a new
    name: the forecast alert keeps its slot, so when spend resumes nobody hears it twice."""
    year = past_november_year()
    now = utc(year, 11, 15, 12)
    steady_spend(personas.project, now, hours=7 * 24)
    budget = make_budget(personas, amount=Decimal("500"), thresholds=[100])
    assert len(evaluate_budget(budget, now=now)) == 1
    quiet = now + timedelta(days=3)  # three days without spend: the week's rate drops to ~$13.7
    assert BudgetStatus.of(budget, now=quiet).forecast_exceeds_at is None
    budget.name = "Renamed"
    budget.save()
    assert budgets.rearm_uncrossed(budget, now=quiet) == 0
    steady_spend(personas.project, quiet + timedelta(days=2), hours=2 * 24, per_hour="3")
    assert evaluate_budget(budget, now=quiet + timedelta(days=2)) == []
    assert Alert.objects.filter(budget=budget, kind=Alert.Kind.BUDGET_FORECAST).count() == 1


# ----------------------------------------------------------------------------- amount changes


def test_raising_the_amount_rearms_and_a_later_crossing_alerts_again(personas):
    budget = make_budget(personas, members=[personas.owner])
    spend(personas.project, "8.50")
    assert [a.threshold for a in evaluate_budget(budget)] == [50, 80]
    budget.amount = Decimal("20")  # 42.5 %: neither 50 nor 80 is crossed any more
    budget.save()
    assert tasks.reevaluate_budget(budget.id) == 0
    assert sorted(Alert.objects.filter(budget=budget, rearmed=True).values_list("threshold", flat=True)) == [50, 80]
    assert evaluate_budget(budget) == []

    spend(personas.project, "8")  # 82.5 % of $20
    raised = evaluate_budget(budget)
    assert [a.threshold for a in raised] == [50, 80]
    assert "80 % of the $20 monthly budget" in raised[-1].title
    assert thresholds_alerted(budget) == [50, 50, 80, 80]
    assert evaluate_budget(budget) == []


def test_raising_the_amount_keeps_the_thresholds_still_crossed(personas):
    budget = make_budget(personas)
    spend(personas.project, "8.50")
    evaluate_budget(budget)
    budget.amount = Decimal("12")  # 70.8 %: 50 still crossed, 80 not
    budget.save()
    assert budgets.rearm_uncrossed(budget) == 1
    assert list(Alert.objects.filter(budget=budget, rearmed=True).values_list("threshold", flat=True)) == [80]
    assert evaluate_budget(budget) == []


def test_lowering_the_amount_or_saving_never_resends_a_crossed_threshold(personas):
    budget = make_budget(personas, members=[personas.owner])
    spend(personas.project, "8.50")
    evaluate_budget(budget)
    sent = Delivery.objects.filter(alert__budget=budget).count()
    budget.name = "Renamed"
    budget.save()
    assert tasks.reevaluate_budget(budget.id) == 0
    budget.amount = Decimal("9")  # 94 %: nothing new crossed
    budget.save()
    assert tasks.reevaluate_budget(budget.id) == 0
    budget.amount = Decimal("8")  # 106 %: only 100 is new
    budget.save()
    assert tasks.reevaluate_budget(budget.id) == 1
    assert thresholds_alerted(budget) == [50, 80, 100]
    assert Alert.objects.filter(budget=budget, rearmed=True).count() == 0
    assert Delivery.objects.filter(alert__budget=budget).count() == sent + 1


def test_editing_the_thresholds_back_and_forth_never_resends_one_still_crossed(personas):
    budget = make_budget(personas, members=[personas.owner])
    spend(personas.project, "8.50")
    evaluate_budget(budget)
    budget.thresholds = [50, 90, 100]
    budget.save()
    tasks.reevaluate_budget(budget.id)
    budget.thresholds = [50, 80, 100]
    budget.save()
    assert tasks.reevaluate_budget(budget.id) == 0
    assert thresholds_alerted(budget) == [50, 80]


def test_thresholds_stored_out_of_order_still_send_the_highest(personas):
    budget = make_budget(personas, thresholds=[80, 50], members=[personas.owner])
    spend(personas.project, "9")
    raised = evaluate_budget(budget)
    assert sorted(a.threshold for a in raised) == [50, 80]
    top = Alert.objects.get(budget=budget, threshold=80)
    assert top.deliveries.count() == 1 and "It passed 50 % in the same step." in top.message
    assert Alert.objects.get(budget=budget, threshold=50).data["superseded_by"] == 80


# ----------------------------------------------------------------------------- hard budgets


def test_a_hard_budget_blocks_once_spent_a_soft_one_never(personas):
    hard = make_budget(personas, name="Hard", enforcement=Budget.Enforcement.HARD)
    soft = make_budget(personas, name="Soft")
    spend(personas.project, "9.99")
    assert BudgetStatus.of(hard).blocked is False
    spend(personas.project, "0.01")
    assert BudgetStatus.of(hard).blocked is True
    assert BudgetStatus.of(soft).blocked is False and BudgetStatus.of(soft).exceeded is True
    top = evaluate_budget(hard)[-1]
    assert top.threshold == 100 and top.data["blocked"] is True
    assert "hard budget" in top.message

    # Ingestion never drops events because a budget is spent: they are all stored and counted.
    result = ingest(personas.project, [{"provider": "openai", "model": "gpt-test", "cost_usd": "1"} for _ in range(5)])
    assert (result.inserted, result.rejected) == (5, 0)
    assert BudgetStatus.of(hard).spent == Decimal("15")


# ----------------------------------------------------------------------------- scopes & filters


@pytest.fixture
def staging(personas) -> Project:
    return Project.objects.create(organization=personas.org, name="Staging")


def test_scopes_sum_the_right_projects_and_tokens(personas, staging):
    year = past_november_year()
    now = utc(year, 11, 20, 12)
    token, _ = ApiToken.issue(project=personas.project, name="ci", scopes=["ingest"], by=personas.owner)
    days = [utc(year, 11, 3, 5), utc(year, 11, 12, 23), utc(year, 11, 20, 11)]  # whole days and a ragged edge
    for at in days:
        spend(personas.project, "1", at)
        spend(personas.project, "2", at, token=token)
        spend(staging, "4", at)
        spend(personas.other_project, "100", at)
    org = make_budget(personas, name="Org", amount=Decimal("1000"))
    project = make_budget(personas, name="Prod", project=personas.project, amount=Decimal("1000"))
    by_token = make_budget(personas, name="CI", api_token=token, amount=Decimal("1000"))
    spent = {b.name: BudgetStatus.of(b, now=now).spent for b in (org, project, by_token)}
    assert spent == {"Org": Decimal("21"), "Prod": Decimal("9"), "CI": Decimal("6")}
    assert org.scope == Budget.Scope.ORGANIZATION and by_token.scope == Budget.Scope.TOKEN
    assert by_token.scope_label() == "API token ci"


def test_an_organization_wide_token_budget_counts_that_token_in_every_project(personas, staging):
    token = ApiToken.objects.create(organization=personas.org, project=None, name="org-wide",
                                    prefix="pk_live_orgwide001", secret_hash="x" * 64, scopes=["ingest"])
    spend(personas.project, "1", token=token)
    spend(staging, "2", token=token)
    spend(staging, "4")
    budget = make_budget(personas, api_token=token)
    assert BudgetStatus.of(budget).spent == Decimal("3")
    assert set(Budget.objects.covering(staging)) == {budget}


def test_model_and_tag_filters(personas, settings):
    settings.COST_ROLLUP_TAG_KEYS = ["feature"]
    year = past_november_year()
    now = utc(year, 11, 20, 12)
    for at in (utc(year, 11, 2, 10), utc(year, 11, 20, 9)):
        spend(personas.project, "1", at, model="small", tags={"feature": "search"})
        spend(personas.project, "2", at, model="large", tags={"feature": "search"})
        spend(personas.project, "4", at, model="large", tags={"feature": "chat"})
        spend(personas.project, "8", at, model="large")
    cases = {
        "all": {}, "large": {"model": "large"}, "search": {"tag_key": "feature", "tag_value": "search"},
        "large search": {"model": "large", "tag_key": "feature", "tag_value": "search"},
    }
    spent = {name: BudgetStatus.of(make_budget(personas, name=name, **f), now=now).spent for name, f in cases.items()}
    assert spent == {"all": Decimal("30"), "large": Decimal("28"), "search": Decimal("6"), "large search": Decimal("4")}
    assert make_budget(personas, name="x", model="large", tag_key="feature", tag_value="search").scope_label() == (
        "Organization Acme, model large, feature=search"
    )


def test_a_gbp_budget_is_compared_at_the_exchange_rate(personas):
    ExchangeRate.objects.update_or_create(currency="GBP", date=timezone.now().date(), defaults={"per_usd": Decimal("0.5")})
    budget = make_budget(personas, currency="GBP", amount=Decimal("10"), members=[personas.owner])
    spend(personas.project, "17")  # £8.50
    status = BudgetStatus.of(budget)
    assert (status.spent_usd, status.spent, status.percent) == (Decimal("17"), Decimal("8.5"), Decimal("85"))
    top = evaluate_budget(budget)[-1]
    assert top.title == "Organization Acme: 80 % of the £10 monthly budget used"
    assert top.data["currency"] == "GBP" and top.data["spent"] == "8.50"


def test_a_disabled_budget_raises_nothing(personas):
    budget = make_budget(personas, is_enabled=False)
    spend(personas.project, "20")
    assert evaluate_budget(budget) == []
    assert not Alert.objects.exists()


# ----------------------------------------------------------------------------- cost_between


def _floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil(moment: datetime) -> datetime:
    return moment if moment == _floor(moment) else _floor(moment) + timedelta(hours=1)


def test_cost_between_equals_the_raw_events_over_random_ranges(personas, settings):
    """Dense spend (every hour of four days, several models, tokens and tags), then random ranges
    with ragged hour and day edges, each narrowed at random: the rollup sum equals the raw sum
    over the same hours (cost_between counts whole hours: start floored, end rounded up)."""
    settings.COST_ROLLUP_TAG_KEYS = ["feature"]
    token, _ = ApiToken.issue(project=personas.project, name="t", scopes=["ingest"], by=personas.owner)
    base = _floor(timezone.now()).replace(hour=0) - timedelta(days=5)
    rng = random.Random(20261123)
    untokened, tokened = [], []
    for hour in range(4 * 24):
        for n in range(4):
            item = {"provider": "openai", "model": "ab"[(hour + n) % 2], "cost_usd": str(Decimal(rng.randint(1, 999)) / 100),
                    "timestamp": (base + timedelta(hours=hour, minutes=rng.randint(0, 59))).isoformat()}
            tag = [None, "x", "y"][(hour * 3 + n) % 3]
            if tag:
                item["tags"] = {"feature": tag}
            (tokened if n % 2 else untokened).append(item)
    assert ingest(personas.project, untokened).inserted == len(untokened)
    assert ingest(personas.project, tokened, token=token).inserted == len(tokened)
    rollups = CostRollup.objects.filter(project=personas.project)
    narrowings = [{}, {"model": "a"}, {"token_prefix": token.prefix}, {"tag_key": "feature", "tag_value": "x"},
                  {"model": "b", "token_prefix": token.prefix, "tag_key": "feature", "tag_value": "y"}]

    @hypothesis_settings(max_examples=150, deadline=None)
    @given(start_minute=st.integers(-6 * 60, 4 * 24 * 60 + 6 * 60), seconds=st.integers(0, 59),
           length=st.integers(0, 3 * 24 * 60), narrow=st.sampled_from(narrowings))
    def check(start_minute, seconds, length, narrow):
        start = base + timedelta(minutes=start_minute, seconds=seconds)
        end = start + timedelta(minutes=length)
        raw = CostEvent.objects.filter(project=personas.project, occurred_at__gte=_floor(start), occurred_at__lt=_ceil(end))
        if "model" in narrow:
            raw = raw.filter(model=narrow["model"])
        if "token_prefix" in narrow:
            raw = raw.filter(token_prefix=narrow["token_prefix"])
        if "tag_key" in narrow:
            raw = raw.tagged("feature", narrow["tag_value"])
        expected = raw.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
        assert cost_between(rollups, start, end, **narrow) == expected

    check()


def test_cost_between_at_exact_midnights_and_hours(personas):
    day = _floor(timezone.now()).replace(hour=0) - timedelta(days=3)
    for hours in (-1, 0, 1, 23, 24, 25, 47, 48):
        spend(personas.project, "1", day + timedelta(hours=hours, minutes=30))
    rollups = CostRollup.objects.filter(project=personas.project)
    assert cost_between(rollups, day, day + timedelta(days=2)) == Decimal("6")
    assert cost_between(rollups, day, day + timedelta(days=1)) == Decimal("3")
    assert cost_between(rollups, day + timedelta(hours=1), day + timedelta(hours=24)) == Decimal("2")
    assert cost_between(rollups, day + timedelta(hours=24), day + timedelta(hours=24)) == Decimal("0")
    assert cost_between(rollups, day + timedelta(hours=25), day + timedelta(hours=24)) == Decimal("0")


def test_raising_the_amount_past_the_forecast_rearms_the_forecast_alert(personas):
    year = past_november_year()
    now = utc(year, 11, 15, 12)
    steady_spend(personas.project, now, hours=7 * 24)  # forecast $540
    budget = make_budget(personas, amount=Decimal("500"), thresholds=[100])
    assert len(evaluate_budget(budget, now=now)) == 1
    budget.amount = Decimal("1000")
    budget.save()
    assert budgets.rearm_uncrossed(budget, now=now) == 1
    assert evaluate_budget(budget, now=now) == []
    budget.amount = Decimal("520")
    budget.save()
    assert budgets.rearm_uncrossed(budget, now=now) == 0
    raised = evaluate_budget(budget, now=now)
    assert [a.kind for a in raised] == [Alert.Kind.BUDGET_FORECAST] and "$520" in raised[0].title
