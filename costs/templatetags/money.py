"""`{% money amount_usd %}` and `{% rates_as_of %}`: every money figure on a page, in the
signed-in person's display currency (see `costs.display`).

    {% load money %}
    {% money event.cost_usd %}     -> "£0.0093", or an "unpriced" badge for None
    {% rates_as_of %}              -> "GBP rates as of 2 Nov 2026" (nothing for USD)
"""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.utils.dateformat import format as format_date
from django.utils.html import format_html

from costs.display import MoneyDisplay

register = template.Library()


@register.simple_tag(takes_context=True)
def money(context: template.Context, amount_usd: Decimal | None, badge: bool = True) -> str:
    """A USD amount in the user's currency; None is a cost nobody knows, shown as such."""
    shown = MoneyDisplay.for_request(context.get("request"))
    if amount_usd is None:
        if not badge:
            return "unpriced"
        return format_html('<span class="badge warn" title="{}">unpriced</span>', "No price is known for this model yet")
    return format_html('<span class="money">{}</span>', shown.format(amount_usd))


@register.simple_tag(takes_context=True)
def rates_as_of(context: template.Context) -> str:
    """Where money is converted, the day of the rate used (DESIGN: always shown with its date)."""
    shown = MoneyDisplay.for_request(context.get("request"))
    if shown.as_of is None:
        return ""
    return format_html(
        '<span class="small muted" data-testid="rates-as-of">{} rates as of {}</span>',
        shown.currency, format_date(shown.as_of, "j M Y"),
    )


@register.simple_tag(takes_context=True)
def currency_code(context: template.Context) -> str:
    return MoneyDisplay.for_request(context.get("request")).currency
