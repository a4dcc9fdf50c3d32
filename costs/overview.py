"""The costs overview on a project's dashboard: everything the page shows, assembled here so
the view stays one call.

    overview = Overview.build(project, user, shown=MoneyDisplay.for_request(request), range_key="30d")
    overview.summary.totals.cost_usd, overview.chart, overview.trends, overview.recent_days, …

Reads the rollups (`costs.summary`) and never scans raw events, except for the five newest
events (an index-ordered LIMIT 5). Queries: `Summary.build` (6), the calendar trends (1), the
recent days in the organization's time zone (1), the newest events (1), and the
recommendations (a few, cached for `RECOMMENDATIONS_TTL`).

Money stays USD `Decimal` in every field but the chart series, which are the only numbers
handed to JavaScript: those are converted to the person's currency here (the page's `money`
tag does the same for everything rendered on the server).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import Project, User

from .display import MoneyDisplay
from .models import CostEvent, CostRollup
from .recommendations import Recommendation, recommend
from .summary import RANGE_DAYS, Period, Summary, pct_change, rollups_of

DEFAULT_RANGE = "30d"
RECENT_DAYS = 5
RECENT_EVENTS = 5
TOP_RECOMMENDATIONS = 3
# Recommendations read 30 days of traffic, the price catalogue and a week of benchmark results:
# they change slowly, and computing them on every dashboard view would dominate its time.
RECOMMENDATIONS_TTL = 600
# The doughnut keeps the biggest models and folds the rest into one slice, so it stays legible.
DISTRIBUTION_SLICES = 7
CHART_PLACES = Decimal("0.000001")


def range_key_of(raw: str | None) -> str:
    """The range a `?range=` asks for; anything unknown falls back to the default (never a 400:
    it is a page, and a stale bookmark should still open it)."""
    return raw if raw in RANGE_DAYS else DEFAULT_RANGE


# ----------------------------------------------------------------------------- calendar trends


@dataclass(frozen=True)
class Trend:
    """This calendar week/month/quarter so far against the same stretch of the previous one."""

    label: str
    current: Period
    previous: Period
    previous_whole: Period
    cost_usd: Decimal
    previous_cost_usd: Decimal
    previous_whole_cost_usd: Decimal
    tokens: int
    previous_tokens: int

    @property
    def cost_change_pct(self) -> float | None:
        return pct_change(self.cost_usd, self.previous_cost_usd)

    @property
    def tokens_change_pct(self) -> float | None:
        return pct_change(self.tokens, self.previous_tokens)


def _quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _months_back(day: date, months: int) -> date:
    """The first of the month `months` before `day`'s month."""
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def calendar_starts(today: date) -> dict[str, tuple[date, date]]:
    """label -> (start of this period, start of the previous one), UTC calendar periods."""
    week = today - timedelta(days=today.weekday())
    month = today.replace(day=1)
    quarter = _quarter_start(today)
    return {
        "This week": (week, week - timedelta(days=7)),
        "This month": (month, _months_back(month, 1)),
        "This quarter": (quarter, _months_back(quarter, 3)),
    }


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def trends(rollups, now: datetime) -> list[Trend]:
    """Week, month and quarter to date against the same elapsed time of the previous period (to
    the hour, as `Summary`'s comparison does: a half-finished week is not compared with a whole
    one), plus the previous period's whole total for reference. One query: filtered sums."""
    periods = {}
    for label, (start, previous_start) in calendar_starts(now.astimezone(UTC).date()).items():
        current = Period(_midnight(start), now, to_now=True)
        # The same elapsed time, cut at the end of the previous period when it is shorter
        # (31 March against February).
        previous_end = min(_midnight(previous_start) + (now - _midnight(start)), _midnight(start))
        previous = Period(_midnight(previous_start), previous_end)
        periods[label] = (current, previous, Period(_midnight(previous_start), _midnight(start)))
    sums = {}
    for i, triple in enumerate(periods.values()):
        for n, period in enumerate(triple):
            condition = period.rollup_filter()
            sums[f"cost_{i}_{n}"] = Sum("cost_usd", filter=condition)
            sums[f"input_{i}_{n}"] = Sum("input_tokens", filter=condition)
            sums[f"output_{i}_{n}"] = Sum("output_tokens", filter=condition)
    # Only the rows some sum reads: hourly rows just for the previous periods' partial last days
    # (a plain `bucket >= earliest` would also aggregate months of hourly rows for nothing).
    wanted = Q()
    for triple in periods.values():
        for period in triple:
            wanted |= period.rollup_filter()
    row = rollups.untagged().filter(wanted).aggregate(**sums)

    def cost(i: int, n: int) -> Decimal:
        return row[f"cost_{i}_{n}"] or Decimal(0)

    def tokens(i: int, n: int) -> int:
        return (row[f"input_{i}_{n}"] or 0) + (row[f"output_{i}_{n}"] or 0)

    return [
        Trend(label=label, current=current, previous=previous, previous_whole=whole,
              cost_usd=cost(i, 0), previous_cost_usd=cost(i, 1), previous_whole_cost_usd=cost(i, 2),
              tokens=tokens(i, 0), previous_tokens=tokens(i, 1))
        for i, (label, (current, previous, whole)) in enumerate(periods.items())
    ]


# ----------------------------------------------------------------------------- recent activity


@dataclass
class RecentDay:
    """One day in the organization's time zone (what the activity log's date filter means)."""

    day: date
    requests: int = 0
    tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced_requests: int = 0


def recent_days(rollups, zone: ZoneInfo, now: datetime, days: int = RECENT_DAYS) -> list[RecentDay]:
    """The last `days` local days, newest first, from the hourly rows (one query, at most
    24 × days groups), so each day matches the activity log filtered to that date. Hours are
    UTC: in a zone with a half-hour offset a day borrows half an hour of its neighbour."""
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=zone)
    result = {today - timedelta(days=n): RecentDay(day=today - timedelta(days=n)) for n in range(days)}
    # A UTC organization's days are the daily rows: 24 times fewer rows to add up.
    granularity = CostRollup.Granularity.DAY if zone.key in ("UTC", "Etc/UTC") else CostRollup.Granularity.HOUR
    rows = (
        rollups.untagged().filter(granularity=granularity, bucket__gte=since)
        .values("bucket")
        .annotate(requests=Sum("requests"), input=Sum("input_tokens"), output=Sum("output_tokens"),
                  cost=Sum("cost_usd"), unpriced=Sum("unpriced_requests"))
        .order_by()
    )
    for row in rows:
        day = result.get(row["bucket"].astimezone(zone).date())
        if day is None:
            continue
        day.requests += row["requests"] or 0
        day.tokens += (row["input"] or 0) + (row["output"] or 0)
        day.cost_usd += row["cost"] or Decimal(0)
        day.unpriced_requests += row["unpriced"] or 0
    return list(result.values())


# ----------------------------------------------------------------------------- charts


def _chart_money(shown: MoneyDisplay, amount_usd: Decimal) -> float:
    # Floats only here: Chart.js plots numbers, and a pixel does not need a Decimal.
    return float(shown.convert(amount_usd).quantize(CHART_PLACES))


def spend_chart(summary: Summary, shown: MoneyDisplay) -> dict:
    """Daily tokens (left axis) and cost in the person's currency (right axis), zero-filled."""
    return {
        "labels": [d.day.isoformat() for d in summary.by_day],
        "tokens": [d.tokens for d in summary.by_day],
        "cost": [_chart_money(shown, d.cost_usd) for d in summary.by_day],
        "currency": shown.currency,
        "symbol": shown.symbol,
    }


def model_chart(summary: Summary, shown: MoneyDisplay) -> dict:
    """Priced cost by model. Unpriced requests have no cost (not a zero one): they are listed
    beside the chart, never drawn as a $0 slice."""
    priced = [m for m in summary.by_model if m.cost_usd > 0]
    slices = [(f"{m.provider}/{m.model}", m.cost_usd) for m in priced[:DISTRIBUTION_SLICES]]
    rest = priced[DISTRIBUTION_SLICES:]
    if rest:
        slices.append((f"{len(rest)} other models", sum((m.cost_usd for m in rest), Decimal(0))))
    return {
        "labels": [label for label, _ in slices],
        "cost": [_chart_money(shown, amount) for _, amount in slices],
        "currency": shown.currency,
        "symbol": shown.symbol,
    }


# ----------------------------------------------------------------------------- recommendations


# Titles end in a USD amount ("…: save $12.34/month"); the page shows that amount itself, in the
# person's currency, so the title loses it.
_TITLE_MONEY = re.compile(r":\s*(?:save (?:up to )?|\+)\$[\d,.]+/month$")


@dataclass(frozen=True)
class Suggestion:
    """A recommendation as the dashboard shows it."""

    recommendation: Recommendation

    @property
    def headline(self) -> str:
        return _TITLE_MONEY.sub("", self.recommendation.title)

    @property
    def monthly_saving_usd(self) -> Decimal | None:
        return self.recommendation.monthly_saving_usd

    @property
    def monthly_extra_usd(self) -> Decimal | None:
        extra = self.recommendation.numbers.get("monthly_extra_usd")
        return Decimal(extra) if extra is not None else None

    @property
    def per_request_usd(self) -> tuple[Decimal, Decimal] | None:
        """(current, candidate) cost per request, for a cheaper model."""
        numbers = self.recommendation.numbers
        if "candidate_cost_per_request_usd" not in numbers:
            return None
        return Decimal(numbers["current_cost_per_request_usd"]), Decimal(numbers["candidate_cost_per_request_usd"])

    @property
    def speed(self) -> dict | None:
        """Benchmark p50 TTFT and TPS of the current and the candidate model, when measured."""
        numbers = self.recommendation.numbers
        keys = ("current_ttft_p50_ms", "current_tps_p50", "candidate_ttft_p50_ms", "candidate_tps_p50")
        if not any(numbers.get(key) is not None for key in keys):
            return None
        return {key: numbers.get(key) for key in keys}

    @property
    def detail(self) -> str:
        """The explanation, except for a cheaper model, whose USD per-request figures the page
        shows converted (`per_request_usd`)."""
        return "" if self.per_request_usd else self.recommendation.detail


def top_recommendations(project: Project, now: datetime) -> list[Suggestion]:
    key = f"costs:overview:recommendations:{project.uuid}"
    found = cache.get(key)
    if found is None:
        found = recommend(project, now=now)[:TOP_RECOMMENDATIONS]
        cache.set(key, found, RECOMMENDATIONS_TTL)
    return [Suggestion(r) for r in found]


# ----------------------------------------------------------------------------- the overview


@dataclass
class Overview:
    project: Project
    range_key: str
    summary: Summary
    trends: list[Trend]
    recent_days: list[RecentDay]
    recent_events: list[CostEvent]
    recommendations: list[Suggestion]
    spend_chart: dict
    model_chart: dict

    @classmethod
    def build(
        cls, project: Project, user: User, *, shown: MoneyDisplay, range_key: str | None = None,
        now: datetime | None = None,
    ) -> Overview:
        now = now or timezone.now()
        range_key = range_key_of(range_key)
        summary = Summary.build([project], Period.for_range(range_key, now), now=now)
        rollups = rollups_of([project])
        events = list(
            CostEvent.objects.visible_to(user).filter(project=project)
            .order_by("-occurred_at", "-id")[:RECENT_EVENTS]
        )
        has_traffic = bool(events)
        return cls(
            project=project, range_key=range_key, summary=summary,
            trends=trends(rollups, now) if has_traffic else [],
            recent_days=recent_days(rollups, ZoneInfo(project.organization.time_zone), now) if has_traffic else [],
            recent_events=events,
            recommendations=top_recommendations(project, now) if has_traffic else [],
            spend_chart=spend_chart(summary, shown),
            model_chart=model_chart(summary, shown),
        )

    @property
    def has_events(self) -> bool:
        """Whether the project ever sent a cost event (else the page explains how to)."""
        return bool(self.recent_events)

    @property
    def has_data_in_range(self) -> bool:
        return self.summary.totals.requests > 0

    @property
    def unpriced_models(self) -> list[dict]:
        """In the shape of the activity log's warning (`costs/_unpriced_warning.html`)."""
        return [
            {"provider": m.provider, "model": m.model, "requests": m.unpriced_requests, "tokens": m.unpriced_tokens}
            for m in self.summary.unpriced_models
        ]

    @property
    def priced_models(self) -> list:
        return [m for m in self.summary.by_model if m.cost_usd > 0]

    @property
    def range_days(self) -> int:
        return RANGE_DAYS[self.range_key]

    @property
    def range_label(self) -> str:
        return f"the last {self.range_days} days"

    @property
    def ranges(self) -> list[str]:
        return list(RANGE_DAYS)

