"""What the alerts pages, the dashboard card and the bell show, computed once in Python so the
templates only print it.

    meters = BudgetMeter.for_budgets(budgets, rates=rates)   # one status per budget, shared rates
    alerts = with_delivery_counts(alerts)                     # "2 sent · 1 failed" per row
    UnreadAlerts(user).count                                  # the bell's badge (one COUNT)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import cached_property
from zoneinfo import ZoneInfo

from django.db.models import Count, Q, QuerySet

from accounts.models import User
from costs.currency import Rates

from .budgets import PERIOD_WORD, BudgetStatus, format_amount
from .models import Alert, AlertRule, Budget, Delivery

UNREAD_CAP = 99  # the badge says "99+" beyond this; counting further is wasted work


@dataclass(frozen=True)
class Tick:
    threshold: int
    position: Decimal  # percent of the bar's width
    crossed: bool

    @property
    def anchor(self) -> str:
        """Labels near the ends are anchored inwards, so "100 %" does not hang off the bar."""
        if self.position >= 92:
            return "end"
        if self.position <= 8:
            return "start"
        return "middle"


@dataclass(frozen=True)
class BudgetMeter:
    """A budget's progress bar: spend and forecast as widths on a scale that reaches the highest
    threshold (at least 100 %), a tick per threshold, and the words around it."""

    budget: Budget
    status: BudgetStatus

    @classmethod
    def for_budgets(cls, budgets: Iterable[Budget], *, rates: Rates | None = None) -> list[BudgetMeter]:
        rates = rates or Rates.latest()
        return [cls(budget, BudgetStatus.of(budget, rates=rates)) for budget in budgets]

    @property
    def scale(self) -> Decimal:
        return Decimal(max([100, *self.budget.thresholds]))

    def _position(self, percent: Decimal) -> Decimal:
        return min(max(percent, Decimal(0)) / self.scale * 100, Decimal(100)).quantize(Decimal("0.01"))

    @property
    def fill(self) -> Decimal:
        return self._position(self.status.percent)

    @property
    def forecast_fill(self) -> Decimal:
        return self._position(self.status.forecast_percent)

    @property
    def ticks(self) -> list[Tick]:
        return [Tick(t, self._position(Decimal(t)), self.status.percent >= t) for t in self.budget.thresholds]

    @property
    def level(self) -> str:
        """The bar's colour: spent (bad), a threshold crossed (warn), else fine."""
        if self.status.exceeded:
            return "bad"
        return "warn" if self.status.crossed else "ok"

    @property
    def percent(self) -> Decimal:
        return self.status.percent.quantize(Decimal("0.1"))

    @property
    def spent_text(self) -> str:
        return format_amount(self.status.spent, self.status.currency)

    @property
    def amount_text(self) -> str:
        return format_amount(self.status.amount, self.status.currency)

    @property
    def forecast_text(self) -> str:
        return format_amount(self.status.forecast, self.status.currency)

    @property
    def remaining_text(self) -> str:
        return format_amount(self.status.remaining, self.status.currency)

    @property
    def days_left_text(self) -> str:
        days = self.status.days_left
        if days >= 2:
            return f"{int(days)} days left"
        hours = int(days * 24)
        return f"{hours} hour{'' if hours == 1 else 's'} left" if hours else "ends within the hour"

    @property
    def exceeds_on(self):
        """When the forecast passes the amount, in the organization's time zone (or None)."""
        moment = self.status.forecast_exceeds_at
        if moment is None or moment >= self.status.period.end:
            return None
        return moment.astimezone(ZoneInfo(self.status.period.time_zone))

    @property
    def period_text(self) -> str:
        period = self.status.period
        start, last = period.local_start, (period.local_end - timedelta(days=1))
        word = PERIOD_WORD[Budget.Period(self.budget.period)].capitalize()
        if self.budget.period == Budget.Period.DAY:
            return f"{word} · {start:%a %-d %b}"
        return f"{word} · {start:%-d %b} – {last:%-d %b %Y}"

    @property
    def label(self) -> str:
        """For screen readers, what the bar draws."""
        thresholds = ", ".join(f"{t} %" for t in self.budget.thresholds)
        return (
            f"{self.spent_text} of {self.amount_text} spent ({self.percent} %); "
            f"forecast {self.forecast_text}; alerts at {thresholds}"
        )


def rule_value_text(rule: AlertRule) -> str:
    """The rule's last measured value with its unit ("812 ms", "41.5 tok/s", "2.0 %")."""
    if rule.last_value is None:
        return ""
    if rule.metric == AlertRule.Metric.ERROR_RATE:
        return f"{rule.last_value:.1f} %"
    if rule.breached_below:
        return f"{rule.last_value:.1f} tok/s"
    return f"{rule.last_value:,.0f} ms"


def with_delivery_counts(alerts: QuerySet) -> QuerySet:
    """Annotate each alert with its deliveries by outcome (one query with the page's rows)."""
    return alerts.annotate(
        sent_count=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.SENT)),
        failed_count=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.FAILED)),
        waiting_count=Count(
            "deliveries", filter=Q(deliveries__status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING])
        ),
        skipped_count=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.SKIPPED)),
    )


def delivery_summary(alert: Alert) -> str:
    """ "2 sent · 1 failed" from `with_delivery_counts`; "no recipients" when there were none."""
    parts = [
        (alert.sent_count, "sent"), (alert.failed_count, "failed"),
        (alert.waiting_count, "pending"), (alert.skipped_count, "skipped"),
    ]
    shown = [f"{n} {word}" for n, word in parts if n]
    if not shown and alert.data.get("superseded_by"):
        # Thresholds crossed in one step: only the highest was sent, saying it passed this one.
        return f"sent with the {alert.data['superseded_by']} % alert"
    return " · ".join(shown) or "no recipients"


class UnreadAlerts:
    """Alerts in the person's organizations raised since they last opened the alert history
    (`alerts_seen_at`; all of them if never). Counted lazily, once, capped: the badge only
    needs to know "more than 99"."""

    def __init__(self, user: User) -> None:
        self.user = user

    @cached_property
    def count(self) -> int:
        alerts = Alert.objects.visible_to(self.user)
        if self.user.alerts_seen_at is not None:
            alerts = alerts.filter(created_at__gt=self.user.alerts_seen_at)
        return alerts.order_by()[: UNREAD_CAP + 1].count()

    @property
    def badge(self) -> str:
        return f"{UNREAD_CAP}+" if self.count > UNREAD_CAP else str(self.count)

    @property
    def label(self) -> str:
        return f"Alerts, {self.badge} unread" if self.count else "Alerts"
