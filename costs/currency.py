"""Showing USD amounts in the user's currency.

    rates = Rates.latest()                       # one query; USD is always 1
    rates.convert(Decimal("12.5"), "GBP")        # -> Decimal in GBP
    rates.as_of("GBP")                           # the date the rate is from, shown next to money

Amounts are stored in USD; conversion happens only on the way out, always with the latest
stored rate (fetched daily when `EXCHANGE_RATES_API_KEY` is set, else the bundled or
operator-entered ones), and the page or API response says which day's rate it used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import ExchangeRate
from .money import SYMBOLS, Currency

logger = logging.getLogger(__name__)

# Used only when no rate was ever stored (a fresh database before its migration data exists).
FALLBACK = {Currency.GBP: (Decimal("0.76"), date(2026, 11, 2)), Currency.EUR: (Decimal("0.87"), date(2026, 11, 2))}


def currency_of(value: str | None, default: str = Currency.USD) -> str:
    """A valid currency code, or raise ValueError with a message fit for a 400."""
    if value is None or value == "":
        return default
    code = value.strip().upper()
    if code not in Currency.values:
        raise ValueError(f"Must be one of {', '.join(Currency.values)}.")
    return code


@dataclass(frozen=True)
class Rates:
    per_usd: dict[str, Decimal] = field(default_factory=dict)
    dates: dict[str, date | None] = field(default_factory=dict)

    @classmethod
    def latest(cls) -> Rates:
        per_usd: dict[str, Decimal] = {Currency.USD: Decimal(1)}
        dates: dict[str, date | None] = {Currency.USD: None}
        for code, (rate, day) in FALLBACK.items():
            per_usd[code], dates[code] = rate, day
        seen: set[str] = set()
        for rate in ExchangeRate.objects.order_by("currency", "-date").only("currency", "date", "per_usd"):
            if rate.currency not in seen:
                seen.add(rate.currency)
                per_usd[rate.currency], dates[rate.currency] = rate.per_usd, rate.date
        return cls(per_usd, dates)

    def convert(self, amount_usd: Decimal | None, currency: str) -> Decimal | None:
        if amount_usd is None:
            return None
        return amount_usd * self.per_usd[currency]

    def as_of(self, currency: str) -> date | None:
        return self.dates.get(currency)

    def describe(self, currency: str) -> dict:
        """What API responses carry next to converted money."""
        return {
            "currency": currency,
            "symbol": SYMBOLS[Currency(currency)],
            "rate_per_usd": str(self.per_usd[currency]),
            "rate_date": self.as_of(currency).isoformat() if self.as_of(currency) else None,
        }


def fetch_rates() -> list[ExchangeRate]:
    """Today's GBP and EUR rates from the configured provider (openexchangerates.org's format:
    `{"timestamp": …, "rates": {"GBP": 0.79, …}}`, base USD). Stores and returns them; does
    nothing without `EXCHANGE_RATES_API_KEY`."""
    if not settings.EXCHANGE_RATES_API_KEY:
        return []
    response = httpx.get(
        settings.EXCHANGE_RATES_URL,
        params={"app_id": settings.EXCHANGE_RATES_API_KEY, "symbols": "GBP,EUR"},
        timeout=10,
    )
    response.raise_for_status()
    payload = response.json()
    today = timezone.now().date()
    stored = []
    with transaction.atomic():
        for code in (Currency.GBP, Currency.EUR):
            value = payload.get("rates", {}).get(code)
            if value is None:
                logger.warning("Exchange rate provider returned no %s rate", code)
                continue
            rate, _ = ExchangeRate.objects.update_or_create(
                currency=code, date=today,
                defaults={"per_usd": Decimal(str(value)), "source": ExchangeRate.Source.FETCHED},
            )
            stored.append(rate)
    return stored
