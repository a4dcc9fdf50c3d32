"""What a project spent, where, and where the month is heading — read from `CostRollup` only.

    period = Period.last_days(30)                       # or Period.between(date(…), date(…))
    summary = Summary.build([project], period, tag="feature")
    summary.totals.cost_usd, summary.by_model, summary.forecast.forecast_usd, …

Every amount is USD `Decimal` (conversion happens on the way out, `costs.currency`). Raw events
are never scanned: one grouped query per breakdown over the rollups, whatever the volume
(`Summary.build` makes 6 queries, 7 with a tag breakdown; `token_usage` 2).

Conventions:
- Totals, model/provider/day/token breakdowns come from the untagged rows (`tag_key == ""`),
  which count each event once; a tag breakdown comes from that tag key's rows.
- A range ("7d") runs from the start of the UTC day N−1 days ago to now, on daily rows. Its
  previous period is the same stretch N days earlier, cut at the same time of day (to the hour,
  from hourly rows), so a half-finished today is compared with a half-finished day.
- Explicit dates (`from`/`to`) are whole UTC days, both included; the previous period is the
  same number of days just before.
- `tokens` means input + output tokens (cached tokens are part of the input, reasoning tokens
  part of the output).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import ApiToken, Project

from .models import CostRollup

RANGE_DAYS = {"7d": 7, "30d": 30, "90d": 90}
# Rollups go back as far as ingestion accepts events (ingestion.MAX_AGE).
MAX_DAYS = 400
RUN_RATE_DAYS = 7
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
SIGNED_IN = "Signed-in people (no API key)"
COUNTERS = CostRollup.COUNTERS


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _days(span: timedelta) -> Decimal:
    return Decimal(span.total_seconds()) / Decimal(86400)


def pct_change(current: Decimal | int, previous: Decimal | int) -> float | None:
    """Percentage change, None when there is nothing to compare with."""
    if not previous:
        return None
    return round(float((Decimal(current) - Decimal(previous)) * 100 / Decimal(previous)), 2)


# ----------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC; `start` is a midnight. `to_now` periods end at the request's `now`
    and count today's daily row in full; others end at a midnight, or — for the previous period
    of a range — mid-day, where the last partial day is read from hourly rows."""

    start: datetime
    end: datetime
    to_now: bool = False
    range_key: str | None = None

    @classmethod
    def last_days(cls, days: int, now: datetime | None = None, range_key: str | None = None) -> Period:
        now = now or timezone.now()
        return cls(_midnight(now) - (days - 1) * DAY, now, to_now=True, range_key=range_key)

    @classmethod
    def for_range(cls, range_key: str, now: datetime | None = None) -> Period:
        if range_key not in RANGE_DAYS:
            raise ValidationError({"range": f"Must be one of {', '.join(RANGE_DAYS)}."})
        return cls.last_days(RANGE_DAYS[range_key], now, range_key=range_key)

    @classmethod
    def between(cls, first: date, last: date, now: datetime | None = None) -> Period:
        """Whole UTC days from `first` to `last`, both included."""
        today = (now or timezone.now()).astimezone(UTC).date()
        if last < first:
            raise ValidationError({"to": "Must be on or after from."})
        if last > today:
            raise ValidationError({"to": f"Cannot be after today ({today.isoformat()}, UTC)."})
        if (last - first).days + 1 > MAX_DAYS:
            raise ValidationError({"from": f"A period spans at most {MAX_DAYS} days."})
        return cls(_day_start(first), _day_start(last) + DAY)

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def days(self) -> list[date]:
        return [self.first_day + timedelta(days=n) for n in range((self.last_day - self.first_day).days + 1)]

    @property
    def length_days(self) -> Decimal:
        """Elapsed days (fractional for a period that runs to now): what daily averages divide by."""
        return _days(self.end - self.start)

    def previous(self) -> Period:
        """The equal period before: shifted back by its number of calendar days."""
        shift = len(self.days) * DAY
        return Period(self.start - shift, self.end - shift)

    def rollup_filter(self, day: str = CostRollup.Granularity.DAY) -> Q:
        """Whole days from `day` rows (DAY, or DAY_TOTALS where providers, models and tokens
        are not needed), a partial last day from its hourly rows."""
        if self.to_now:
            return Q(granularity=day, bucket__gte=self.start, bucket__lte=_midnight(self.end))
        whole_days_end = _midnight(self.end)
        condition = Q(granularity=day, bucket__gte=self.start, bucket__lt=whole_days_end)
        if self.end > whole_days_end:  # a partial last day: its hours so far (the current hour in full)
            condition |= Q(granularity=CostRollup.Granularity.HOUR, bucket__gte=whole_days_end, bucket__lt=self.end)
        return condition


# ----------------------------------------------------------------------------- usage


@dataclass
class Usage:
    """Counters summed over some rollup rows, and what follows from them. Breakdown rows are
    Usage subclasses carrying their key (model, day, token…), so every row has the same figures."""

    requests: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced_requests: int = 0
    latency_ms_sum: float = 0.0
    latency_count: int = 0
    # Requests the gateway answered from its cache ($0 each), and what they would have cost.
    cache_hits: int = 0
    saved_usd: Decimal = Decimal(0)
    # Tokens of requests without a price: kept out of cost per 1K tokens (they have no cost, not
    # a zero cost). Exact per model; proportional for a model priced for part of its requests.
    unpriced_tokens: int = 0

    @classmethod
    def of(cls, row: dict, **key: object) -> Usage:
        usage = cls(**{name: row[name] or 0 for name in COUNTERS}, **key)
        usage.cost_usd = Decimal(usage.cost_usd)
        usage.saved_usd = Decimal(usage.saved_usd)
        return usage

    def add(self, other: Usage) -> Usage:
        for name in SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def success_rate(self) -> float | None:
        return None if not self.requests else round((self.requests - self.failures) / self.requests, 4)

    @property
    def avg_latency_ms(self) -> float | None:
        return None if not self.latency_count else round(self.latency_ms_sum / self.latency_count, 1)

    @property
    def cache_hit_rate(self) -> float | None:
        return None if not self.requests else round(self.cache_hits / self.requests, 4)

    @property
    def cost_per_1k_tokens_usd(self) -> Decimal | None:
        priced_tokens = self.tokens - self.unpriced_tokens
        return None if priced_tokens <= 0 else self.cost_usd * 1000 / priced_tokens


SUMMED = (*COUNTERS, "unpriced_tokens")


def _sums() -> dict[str, Sum]:
    return {name: Sum(name) for name in COUNTERS}


@dataclass
class ModelUsage(Usage):
    provider: str = ""
    model: str = ""


@dataclass
class ProviderUsage(Usage):
    provider: str = ""


@dataclass
class DayUsage(Usage):
    day: date | None = None


@dataclass
class TokenUsage(Usage):
    """One API key's traffic. `name` is the key's name, or its prefix once the key is deleted;
    the empty prefix is traffic recorded by signed-in people (no key)."""

    prefix: str = ""
    name: str = ""
    deleted: bool = False


@dataclass
class TagUsage(Usage):
    value: str = ""


@dataclass
class Comparison:
    """This period against the previous equal one."""

    previous: Period
    usage: Usage
    cost_change_pct: float | None
    tokens_change_pct: float | None
    requests_change_pct: float | None


@dataclass
class Forecast:
    month_start: date
    month_to_date_usd: Decimal
    run_rate_usd_per_day: Decimal
    run_rate_basis: str  # "last_7_complete_days" | "month_so_far"
    days_left: Decimal
    forecast_usd: Decimal
    method: str


# ----------------------------------------------------------------------------- queries


def rollups_of(projects: Iterable[Project]) -> QuerySet:
    """The projects' rollups. Callers pass projects they already resolved through tenancy
    (`visible_to`), so no further scoping happens here."""
    return CostRollup.objects.filter(project_id__in=[p.id for p in projects])


def by_model(rollups: QuerySet, period: Period) -> list[ModelUsage]:
    rows = rollups.untagged().filter(period.rollup_filter()).values("provider", "model").annotate(**_sums())
    result = []
    for row in rows:
        usage = ModelUsage.of(row, provider=row["provider"], model=row["model"])
        if usage.unpriced_requests:
            usage.unpriced_tokens = usage.tokens * usage.unpriced_requests // usage.requests
        result.append(usage)
    return sorted(result, key=lambda m: (-m.cost_usd, -m.tokens, m.provider, m.model))


def by_provider(models: Sequence[ModelUsage]) -> list[ProviderUsage]:
    """Folded from the model breakdown: a provider is the sum of its models, no extra query."""
    providers: dict[str, ProviderUsage] = {}
    for m in models:
        providers.setdefault(m.provider, ProviderUsage(provider=m.provider)).add(m)
    return sorted(providers.values(), key=lambda p: (-p.cost_usd, p.provider))


def by_day(rollups: QuerySet, period: Period) -> list[DayUsage]:
    """Every day of the period, zero-filled."""
    rows = (
        rollups.untagged().filter(period.rollup_filter(day=CostRollup.Granularity.DAY_TOTALS))
        .values("bucket").annotate(**_sums())
    )
    days = {day: DayUsage(day=day) for day in period.days}
    for row in rows:
        day = row["bucket"].astimezone(UTC).date()  # hourly rows of a partial day fold into it
        if day in days:
            days[day].add(Usage.of(row))
    return list(days.values())


def by_token(rollups: QuerySet, period: Period, projects: Sequence[Project]) -> list[TokenUsage]:
    rows = list(rollups.untagged().filter(period.rollup_filter()).values("token_prefix").annotate(**_sums()))
    prefixes = [row["token_prefix"] for row in rows if row["token_prefix"]]
    names = dict(
        ApiToken.objects.filter(organization_id__in={p.organization_id for p in projects}, prefix__in=prefixes)
        .values_list("prefix", "name")
    ) if prefixes else {}
    result = []
    for row in rows:
        prefix = row["token_prefix"]
        if not prefix:
            result.append(TokenUsage.of(row, prefix="", name=SIGNED_IN, deleted=False))
        else:
            result.append(TokenUsage.of(row, prefix=prefix, name=names.get(prefix, prefix), deleted=prefix not in names))
    return sorted(result, key=lambda t: (-t.cost_usd, t.prefix))


def by_tag(rollups: QuerySet, period: Period, tag_key: str) -> list[TagUsage]:
    rows = (
        rollups.filter(tag_key=tag_key).filter(period.rollup_filter(day=CostRollup.Granularity.DAY_TOTALS))
        .values("tag_value").annotate(**_sums())
    )
    return sorted((TagUsage.of(row, value=row["tag_value"]) for row in rows), key=lambda t: (-t.cost_usd, t.value))


def compare(rollups: QuerySet, current: Usage, period: Period) -> Comparison:
    previous = period.previous()
    usage = Usage.of(
        rollups.untagged().filter(previous.rollup_filter(day=CostRollup.Granularity.DAY_TOTALS)).aggregate(**_sums())
    )
    return Comparison(
        previous=previous, usage=usage,
        cost_change_pct=pct_change(current.cost_usd, usage.cost_usd),
        tokens_change_pct=pct_change(current.tokens, usage.tokens),
        requests_change_pct=pct_change(current.requests, usage.requests),
    )


def forecast(rollups: QuerySet, now: datetime) -> Forecast:
    """Month-end spend: spent so far this UTC calendar month + run rate × days left, where the
    run rate is the average daily cost of the last 7 complete days, or of the month so far while
    the month has fewer than 7 complete days. One query (two filtered sums)."""
    today = _midnight(now)
    month_start = today.replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    week_start = today - RUN_RATE_DAYS * DAY
    sums = rollups.untagged().filter(
        granularity=CostRollup.Granularity.DAY_TOTALS, bucket__gte=min(month_start, week_start), bucket__lte=today,
    ).aggregate(
        month=Sum("cost_usd", filter=Q(bucket__gte=month_start)),
        week=Sum("cost_usd", filter=Q(bucket__gte=week_start, bucket__lt=today)),
    )
    month_to_date = sums["month"] or Decimal(0)
    complete_days = (today - month_start).days
    if complete_days >= RUN_RATE_DAYS:
        basis, rate = "last_7_complete_days", (sums["week"] or Decimal(0)) / RUN_RATE_DAYS
        method = "Spent this UTC month so far + average daily cost of the last 7 complete UTC days × days left."
    else:
        elapsed = _days(now - month_start)
        basis, rate = "month_so_far", (month_to_date / elapsed if elapsed else Decimal(0))
        method = (
            "Spent this UTC month so far + average daily cost of the month so far (fewer than 7 complete "
            "days yet) × days left."
        )
    days_left = _days(next_month - now)
    return Forecast(
        month_start=month_start.date(), month_to_date_usd=month_to_date, run_rate_usd_per_day=rate,
        run_rate_basis=basis, days_left=days_left, forecast_usd=month_to_date + rate * days_left, method=method,
    )


def _hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _next_midnight(moment: datetime) -> datetime:
    midnight = _midnight(moment)
    return midnight if midnight == moment else midnight + DAY


def cost_between(
    rollups: QuerySet, start: datetime, end: datetime, *, model: str = "", token_prefix: str = "",
    tag_key: str = "", tag_value: str = "",
) -> Decimal:
    """USD spent in [start, end), at hour resolution, optionally for one model, one API token
    prefix and/or one rolled-up tag value. One query: whole UTC days inside the range from daily
    rows (day totals when no model or token is asked for), the ragged edges from hourly rows.

    Hour resolution: a bound inside an hour counts that whole hour from its start, so for
    time zones with a 30- or 45-minute offset a local day boundary is off by that much."""
    start, end = _hour_floor(start), _hour_floor(end) if end == _hour_floor(end) else _hour_floor(end) + HOUR
    if end <= start:
        return Decimal(0)
    first_day, last_day = _next_midnight(start), _midnight(end)
    narrow = Q(tag_key=tag_key)
    if tag_key:
        narrow &= Q(tag_value=tag_value)
    if model:
        narrow &= Q(model=model)
    if token_prefix:
        narrow &= Q(token_prefix=token_prefix)
    day_granularity = CostRollup.Granularity.DAY if (model or token_prefix) else CostRollup.Granularity.DAY_TOTALS
    if first_day < last_day:
        spans = Q(granularity=day_granularity, bucket__gte=first_day, bucket__lt=last_day) | Q(
            granularity=CostRollup.Granularity.HOUR, bucket__gte=start, bucket__lt=first_day,
        ) | Q(granularity=CostRollup.Granularity.HOUR, bucket__gte=last_day, bucket__lt=end)
    else:  # within one UTC day, or across one midnight: hours only
        spans = Q(granularity=CostRollup.Granularity.HOUR, bucket__gte=start, bucket__lt=end)
    total = rollups.filter(narrow).filter(spans).aggregate(cost=Sum("cost_usd"))["cost"]
    return total or Decimal(0)


def token_usage(projects: Sequence[Project], period: Period) -> list[TokenUsage]:
    """Per-API-key analytics (the /costs/tokens endpoint): 2 queries."""
    return by_token(rollups_of(projects), period, projects)


# ----------------------------------------------------------------------------- the summary


@dataclass
class Summary:
    projects: list[Project]
    period: Period
    now: datetime
    totals: Usage
    by_model: list[ModelUsage]
    by_provider: list[ProviderUsage]
    by_day: list[DayUsage]
    by_token: list[TokenUsage]
    comparison: Comparison
    forecast: Forecast
    tag_key: str | None = None
    by_tag: list[TagUsage] = field(default_factory=list)

    @classmethod
    def build(
        cls, projects: Sequence[Project], period: Period, *, tag: str | None = None, now: datetime | None = None,
    ) -> Summary:
        now = now or timezone.now()
        projects = list(projects)
        rollups = rollups_of(projects)
        models = by_model(rollups, period)
        # Totals are the sum of the model rows (same untagged rows): exact, and one query fewer.
        totals = Usage()
        for m in models:
            totals.add(m)
        return cls(
            projects=projects, period=period, now=now, totals=totals, by_model=models,
            by_provider=by_provider(models), by_day=by_day(rollups, period),
            by_token=by_token(rollups, period, projects), comparison=compare(rollups, totals, period),
            forecast=forecast(rollups, now), tag_key=tag or None, by_tag=by_tag(rollups, period, tag) if tag else [],
        )

    @property
    def average_daily_cost_usd(self) -> Decimal:
        days = self.period.length_days
        return self.totals.cost_usd / days if days else Decimal(0)

    @property
    def average_daily_tokens(self) -> int:
        days = self.period.length_days
        return int(self.totals.tokens / days) if days else 0

    @property
    def unpriced_models(self) -> list[ModelUsage]:
        """Models with requests Pulse could not price, with their token volume."""
        return [m for m in self.by_model if m.unpriced_requests]
