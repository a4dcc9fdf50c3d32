"""Small filters for the alerts pages and the dashboard's budgets card.

    {% load alerts %}
    {{ amount|in_currency:budget.currency }}   -> "$10", "£412.50" (a budget's own currency)
    {{ alert|delivery_summary }}               -> "2 sent · 1 failed" (needs with_delivery_counts)
    {{ rule|rule_value }}                      -> "812 ms", "41.5 tok/s", "2.0 %"
"""

from __future__ import annotations

from decimal import Decimal

from django import template

from alerts import display
from alerts.budgets import format_amount
from alerts.models import Alert, AlertRule

register = template.Library()


@register.filter
def in_currency(amount: Decimal | str | None, currency: str) -> str:
    """Budget amounts are in the budget's currency, not the viewer's (unlike `{% money %}`)."""
    if amount is None or amount == "":
        return "—"
    return format_amount(Decimal(amount), currency)


@register.filter
def delivery_summary(alert: Alert) -> str:
    return display.delivery_summary(alert)


@register.filter
def rule_value(rule: AlertRule) -> str:
    return display.rule_value_text(rule)
