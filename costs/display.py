"""Money as a person sees it: USD amounts converted to their display currency and formatted.

    shown = MoneyDisplay.for_request(request)    # the rates are read once per request
    shown.format(Decimal("0.0123"))              # -> "£0.009348"
    shown.format(None)                           # -> "unpriced" (unknown is never $0)

Pages use it through the `money` template tag, the CSV export directly, so both agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.http import HttpRequest

from .currency import Rates, currency_of
from .money import SYMBOLS, Currency

UNPRICED = "unpriced"
_REQUEST_ATTRIBUTE = "_pulse_money_display"
# Per-event costs are often fractions of a cent: below one unit they keep four significant
# digits (never fewer than two decimals), so "$0.000123" does not read as "$0.00".
_SIGNIFICANT_BELOW_ONE = 4
_MAX_DECIMALS = 8


def significant(amount: Decimal) -> Decimal:
    """`amount` rounded for display: cents from 1 up, four significant digits below."""
    if amount == 0 or abs(amount) >= 1:
        return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    leading_zeros = -abs(amount).adjusted() - 1
    decimals = min(max(2, leading_zeros + _SIGNIFICANT_BELOW_ONE), _MAX_DECIMALS)
    rounded = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    # Trailing zeros past the cents say nothing ("$0.50", not "$0.5000").
    while decimals > 2 and rounded == rounded.quantize(Decimal(1).scaleb(1 - decimals)):
        decimals -= 1
        rounded = rounded.quantize(Decimal(1).scaleb(-decimals))
    return rounded


@dataclass(frozen=True)
class MoneyDisplay:
    rates: Rates
    currency: str

    @classmethod
    def for_request(cls, request: HttpRequest | None) -> MoneyDisplay:
        cached = getattr(request, _REQUEST_ATTRIBUTE, None)
        if cached is not None:
            return cached
        user = getattr(request, "user", None)
        try:
            currency = currency_of(getattr(user, "display_currency", None))
        except ValueError:  # a value from before the choices changed: show USD, do not fail
            currency = Currency.USD
        display = cls(Rates.latest(), currency)
        if request is not None:
            setattr(request, _REQUEST_ATTRIBUTE, display)
        return display

    @property
    def symbol(self) -> str:
        return SYMBOLS[Currency(self.currency)]

    @property
    def as_of(self) -> date | None:
        return self.rates.as_of(self.currency)

    def convert(self, amount_usd: Decimal | None) -> Decimal | None:
        return self.rates.convert(amount_usd, self.currency)

    def format(self, amount_usd: Decimal | None) -> str:
        converted = self.convert(amount_usd)
        if converted is None:
            return UNPRICED
        rounded = significant(converted)
        sign = "-" if rounded < 0 else ""
        return f"{sign}{self.symbol}{abs(rounded):,f}"
