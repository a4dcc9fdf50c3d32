"""Where a budget stands, and raising its alerts exactly once.

    status = BudgetStatus.of(budget)           # spend this period, percent, forecast, blocked
    evaluate_budget(budget)                    # raise any alert now due (each at most once)

Periods are calendar days, ISO weeks (Monday) and months in the organization's time zone,
stored and compared in UTC. Spend comes from the cost rollups (`costs.summary.cost_between`, hour
resolution), in USD; the budget's amount is converted with the latest exchange rate, so a GBP
budget is compared in GBP at today's rate.

Forecast: spent so far + the recent run rate × time left in the period. The run rate is the
average over the last complete hours of a window that fits the period (`RUN_RATE_WINDOW`): a
week for monthly budgets, three days for weekly ones, six hours for daily ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Project
from costs.currency import Rates
from costs.models import CostRollup
from costs.money import SYMBOLS, Currency
from costs.summary import cost_between

from .models import Alert, Budget, Severity
from .notify import notify, raise_alert

RUN_RATE_WINDOW = {
    Budget.Period.MONTH: timedelta(days=7),
    Budget.Period.WEEK: timedelta(days=3),
    Budget.Period.DAY: timedelta(hours=6),
}
PERIOD_WORD = {Budget.Period.DAY: "daily", Budget.Period.WEEK: "weekly", Budget.Period.MONTH: "monthly"}
CENT = Decimal("0.01")


def format_amount(amount: Decimal, currency: str) -> str:
    """"$500" for whole amounts, "$412.50" otherwise (subjects and messages, not tables)."""
    rounded = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    text = f"{rounded:,.0f}" if rounded == rounded.to_integral_value() else f"{rounded:,.2f}"
    sign = "-" if rounded < 0 else ""
    return f"{sign}{SYMBOLS[Currency(currency)]}{text.lstrip('-')}"


@dataclass(frozen=True)
class BudgetPeriod:
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    time_zone: str

    @classmethod
    def containing(cls, period: str, time_zone: str, moment: datetime) -> BudgetPeriod:
        zone = ZoneInfo(time_zone)
        local_day = moment.astimezone(zone).date()
        if period == Budget.Period.DAY:
            first, after = local_day, local_day + timedelta(days=1)
        elif period == Budget.Period.WEEK:
            first = local_day - timedelta(days=local_day.weekday())
            after = first + timedelta(days=7)
        else:
            first = local_day.replace(day=1)
            after = (first + timedelta(days=32)).replace(day=1)

        def midnight(day: date) -> datetime:  # local midnight (zoneinfo resolves DST) in UTC
            return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)

        return cls(midnight(first), midnight(after), time_zone)

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(ZoneInfo(self.time_zone))

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(ZoneInfo(self.time_zone))


def scoped_rollups(budget: Budget):
    """The rollups of the projects the budget covers (callers add the token/model/tag narrowing)."""
    if budget.project_id:
        return CostRollup.objects.filter(project_id=budget.project_id)
    if budget.api_token_id and budget.api_token.project_id:
        return CostRollup.objects.filter(project_id=budget.api_token.project_id)
    project_ids = list(Project.objects.filter(organization_id=budget.organization_id).values_list("id", flat=True))
    return CostRollup.objects.filter(project_id__in=project_ids)


def spend_usd(budget: Budget, start: datetime, end: datetime) -> Decimal:
    return cost_between(
        scoped_rollups(budget), start, end, model=budget.model,
        token_prefix=budget.api_token.prefix if budget.api_token_id else "",
        tag_key=budget.tag_key, tag_value=budget.tag_value,
    )


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    period: BudgetPeriod
    now: datetime
    spent_usd: Decimal
    spent: Decimal  # in the budget's currency
    amount: Decimal
    currency: str
    rate_date: date | None
    percent: Decimal
    run_rate_per_day: Decimal  # budget currency
    forecast: Decimal  # budget currency, at the period's end
    forecast_exceeds_at: datetime | None  # when the forecast reaches the amount, if within the period

    @classmethod
    def of(cls, budget: Budget, now: datetime | None = None, rates: Rates | None = None) -> BudgetStatus:
        now = now or timezone.now()
        rates = rates or Rates.latest()
        period = BudgetPeriod.containing(budget.period, budget.organization.time_zone, now)
        spent_usd = spend_usd(budget, period.start, now)
        per_usd = rates.per_usd[budget.currency]
        spent = spent_usd * per_usd
        percent = (spent / budget.amount * 100) if budget.amount else Decimal(0)
        # Run rate over the window's complete hours, so a half-finished hour does not count as one.
        window = RUN_RATE_WINDOW[Budget.Period(budget.period)]
        hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        recent = spend_usd(budget, hour - window, hour) * per_usd
        per_second = recent / Decimal(window.total_seconds())
        left = Decimal(max((period.end - now).total_seconds(), 0))
        forecast = spent + per_second * left
        exceeds_at = None
        if spent < budget.amount <= forecast and per_second > 0:
            exceeds_at = now + timedelta(seconds=float((budget.amount - spent) / per_second))
        return cls(
            budget=budget, period=period, now=now, spent_usd=spent_usd, spent=spent, amount=budget.amount,
            currency=budget.currency, rate_date=rates.as_of(budget.currency), percent=percent,
            run_rate_per_day=per_second * 86400, forecast=forecast, forecast_exceeds_at=exceeds_at,
        )

    @property
    def exceeded(self) -> bool:
        return self.spent >= self.amount

    @property
    def blocked(self) -> bool:
        """A hard budget that is spent: the gateway refuses requests until the next period."""
        return self.budget.is_hard and self.exceeded

    @property
    def remaining(self) -> Decimal:
        return max(self.amount - self.spent, Decimal(0))

    @property
    def days_left(self) -> Decimal:
        return Decimal(max((self.period.end - self.now).total_seconds(), 0)) / 86400

    @property
    def forecast_percent(self) -> Decimal:
        return self.forecast / self.amount * 100 if self.amount else Decimal(0)

    @property
    def crossed(self) -> list[int]:
        """Ascending whatever order they were stored in (only `Budget.clean` sorts them):
        evaluators claim in this order, and the last one claimed is the one that is sent."""
        return sorted(t for t in self.budget.thresholds if self.percent >= t)

    def as_data(self) -> dict:
        """The numbers an alert records (JSON: decimals as strings)."""
        return {
            "budget": str(self.budget.uuid), "budget_name": self.budget.name, "scope": self.budget.scope,
            "scope_label": self.budget.scope_label(), "period": self.budget.period,
            "period_start": self.period.start.isoformat(), "period_end": self.period.end.isoformat(),
            "time_zone": self.period.time_zone, "currency": self.currency,
            "amount": str(self.amount), "spent": str(self.spent.quantize(CENT)),
            "spent_usd": str(self.spent_usd.quantize(Decimal("0.000001"))),
            "percent": str(self.percent.quantize(Decimal("0.1"))),
            "forecast": str(self.forecast.quantize(CENT)),
            "forecast_exceeds_at": self.forecast_exceeds_at.isoformat() if self.forecast_exceeds_at else None,
            "enforcement": self.budget.enforcement, "blocked": self.blocked,
            "exchange_rate_date": self.rate_date.isoformat() if self.rate_date else None,
        }

    # Texts ------------------------------------------------------------------------------------
    def _budget_phrase(self) -> str:
        return f"the {format_amount(self.amount, self.currency)} {PERIOD_WORD[Budget.Period(self.budget.period)]} budget"

    def _period_phrase(self) -> str:
        start = self.period.local_start
        word = {Budget.Period.DAY: "day", Budget.Period.WEEK: "week", Budget.Period.MONTH: "month"}[
            Budget.Period(self.budget.period)
        ]
        return f"the {word} starting {start:%a %-d %b %Y} ({self.period.time_zone})"

    def threshold_texts(self, threshold: int, also: list[int]) -> tuple[str, str]:
        title = f"{self.budget.scope_label()}: {threshold} % of {self._budget_phrase()} used"
        lines = [
            f"Budget “{self.budget.name}” has used {self.percent.quantize(Decimal('0.1'))} %: "
            f"{format_amount(self.spent, self.currency)} of {format_amount(self.amount, self.currency)} "
            f"in {self._period_phrase()}.",
        ]
        if also:
            lines.append(f"It passed {', '.join(f'{t} %' for t in also)} in the same step.")
        days = self.days_left.quantize(Decimal("0.1"))
        lines.append(
            f"{days} days left in the period; at the current rate it ends near "
            f"{format_amount(self.forecast, self.currency)}."
        )
        if self.budget.is_hard and self.exceeded:
            lines.append("This is a hard budget: the gateway now refuses requests in its scope until the next period.")
        return title, "\n".join(lines)

    def forecast_texts(self) -> tuple[str, str]:
        local = self.forecast_exceeds_at.astimezone(ZoneInfo(self.period.time_zone))
        title = f"{self.budget.scope_label()}: projected to exceed {self._budget_phrase()} by {local:%a %-d %b}"
        message = (
            f"Budget “{self.budget.name}” has used {format_amount(self.spent, self.currency)} "
            f"({self.percent.quantize(Decimal('0.1'))} %) in {self._period_phrase()}. At the recent rate of "
            f"{format_amount(self.run_rate_per_day, self.currency)} a day it reaches "
            f"{format_amount(self.amount, self.currency)} around {local:%a %-d %b %H:%M} and ends the period near "
            f"{format_amount(self.forecast, self.currency)} ({self.forecast_percent.quantize(Decimal('1'))} %)."
        )
        return title, message


def budget_link(budget: Budget) -> str:
    return reverse("budget_detail", args=[budget.organization.uuid, budget.uuid])


def evaluate_budget(budget: Budget, now: datetime | None = None) -> list[Alert]:
    """Raise the alerts now due for this budget: every threshold crossed this period that has
    no alert yet, and the forecast alert. Safe to run anywhere, any number of times at once:
    each alert is claimed by inserting it (unique constraints), and only the winner notifies.

    When one step crosses several thresholds (a large batch, a budget lowered), every threshold
    gets its history entry but only the highest is sent, saying it passed the others too."""
    if not budget.is_enabled:
        return []
    status = BudgetStatus.of(budget, now)
    link = budget_link(budget)
    raised: list[Alert] = []
    with transaction.atomic():
        # Ascending, so that concurrent evaluators claim in the same order and never deadlock.
        claimed = []
        crossed = status.crossed
        for threshold in crossed:
            severity = Severity.CRITICAL if threshold >= 100 else Severity.WARNING
            title, message = status.threshold_texts(threshold, [])
            alert = raise_alert(
                organization=budget.organization, kind=Alert.Kind.BUDGET_THRESHOLD, budget=budget,
                period_start=status.period.start, threshold=threshold, severity=severity, title=title,
                message=message, link=link, data={**status.as_data(), "threshold": threshold},
                recipients=None,
            )
            if alert is not None:
                claimed.append(alert)
        if claimed:
            top = claimed[-1]
            title, message = status.threshold_texts(top.threshold, [a.threshold for a in claimed[:-1]])
            top.title, top.message = title, message
            top.save(update_fields=["title", "message"])
            for alert in claimed[:-1]:
                alert.data = {**alert.data, "superseded_by": top.threshold}
                alert.save(update_fields=["data"])
            notify(top, budget)
            raised.extend(claimed)
        if budget.forecast_alerts and status.forecast_exceeds_at and status.forecast_exceeds_at < status.period.end:
            title, message = status.forecast_texts()
            alert = raise_alert(
                organization=budget.organization, kind=Alert.Kind.BUDGET_FORECAST, budget=budget,
                period_start=status.period.start, severity=Severity.WARNING, title=title, message=message,
                link=link, data=status.as_data(), recipients=budget,
            )
            if alert is not None:
                raised.append(alert)
    return raised


def rearm_uncrossed(budget: Budget, now: datetime | None = None) -> int:
    """After a budget's amount, currency or thresholds change: this period's threshold alerts
    that are no longer crossed give up their slot, so crossing them again alerts again. Those
    still crossed keep it (never re-sent). Returns how many were re-armed."""
    status = BudgetStatus.of(budget, now)
    this_period = Alert.objects.filter(budget=budget, period_start=status.period.start, rearmed=False)
    # Judged by the spend, not by membership of the current list: a threshold taken out of the
    # list and put back while still crossed must not be sent again.
    rearmed = this_period.filter(kind=Alert.Kind.BUDGET_THRESHOLD, threshold__gt=status.percent).update(rearmed=True)
    if not (status.forecast_exceeds_at and status.forecast_exceeds_at < status.period.end):
        # Only if the amount or currency changed since the forecast alert: the forecast also dips
        # under the amount by itself (a quiet day), and a save that changed neither (a rename)
        # must not make its next rise alert a second time in the period.
        changed = [
            alert.id for alert in this_period.filter(kind=Alert.Kind.BUDGET_FORECAST)
            if Decimal(alert.data.get("amount", "0")) != budget.amount or alert.data.get("currency") != budget.currency
        ]
        rearmed += Alert.objects.filter(id__in=changed).update(rearmed=True)
    return rearmed


def budgets_covering(project_ids: list[int]) -> list[Budget]:
    projects = Project.objects.filter(id__in=project_ids)
    budgets: dict[int, Budget] = {}
    for project in projects:
        for budget in Budget.objects.dangerously_unscoped().enabled().covering(project).select_related(
            "organization", "project", "api_token"
        ):
            budgets[budget.id] = budget
    return list(budgets.values())


def evaluate_budgets(budgets: list[Budget], now: datetime | None = None) -> int:
    raised = 0
    for budget in budgets:
        raised += len(evaluate_budget(budget, now))
    return raised
