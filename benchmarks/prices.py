"""Price history from genai-prices' bundled data.

genai-prices ships a snapshot of every provider's prices, some of them as periods ("from
2026-03-13 on"). Each period becomes a `Price` row with source genai_prices; rows are only ever
added, so a corrected or changed price starts a new row and history stays as it was. Operators'
own rows (source admin) are never touched and win over the bundled data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from genai_prices import data_snapshot, types

from .models import Model, Price, Provider

# The bundled data's unconstrained prices carry no start date: they hold "since always".
ALWAYS = datetime(2000, 1, 1, tzinfo=UTC)
FIELDS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")


@dataclass
class SyncReport:
    created: int = 0
    unchanged: int = 0
    unpriced: list[str] = field(default_factory=list)  # "provider / model" with no bundled price

    def __str__(self) -> str:
        return f"{self.created} price(s) added, {self.unchanged} unchanged, {len(self.unpriced)} model(s) unpriced"


def base_price(value: Decimal | types.TieredPrices | None) -> Decimal | None:
    """A flat price, or the base tier of a tiered one (tiers apply past e.g. 200K-token prompts)."""
    if value is None:
        return None
    return value.base if isinstance(value, types.TieredPrices) else Decimal(value)


def _periods(prices: types.ModelPrice | list[types.ConditionalPrice]) -> list[tuple[datetime, types.ModelPrice]]:
    if isinstance(prices, types.ModelPrice):
        return [(ALWAYS, prices)]
    periods = []
    for conditional in prices:
        constraint = conditional.constraint
        if constraint is None:
            periods.append((ALWAYS, conditional.prices))
        elif isinstance(constraint, types.StartDateConstraint):
            start = constraint.start_date
            start = datetime(start.year, start.month, start.day, tzinfo=UTC) if isinstance(start, date) else start
            periods.append((start, conditional.prices))
        # Time-of-day discounts (off-peak hours) are not a price history; they are skipped.
    return sorted(periods, key=lambda period: period[0])


def _values(model_price: types.ModelPrice) -> dict[str, Decimal | None]:
    return {name: base_price(getattr(model_price, name, None)) for name in FIELDS}


def _same(price: Price | None, values: dict[str, Decimal | None]) -> bool:
    return price is not None and all(getattr(price, name) == values[name] for name in FIELDS)


def sync_model(model: Model, info: types.ModelInfo, report: SyncReport) -> None:
    now = timezone.now()
    bundled = Price.objects.filter(model=model, source=Price.Source.GENAI_PRICES)
    for start, model_price in _periods(info.prices):
        values = _values(model_price)
        if values["input_mtok"] is None or values["output_mtok"] is None:
            continue  # e.g. image-only pricing
        existing = bundled.filter(valid_from=start).first()
        if existing is None:
            Price.objects.create(model=model, source=Price.Source.GENAI_PRICES, valid_from=start, **values)
            report.created += 1
        elif _same(existing, values) or start > now:
            report.unchanged += 1
        else:
            # The bundled data changed a period we already stored: the new value applies from now
            # on, unless a later sync already recorded it.
            current = bundled.filter(valid_from__lte=now).order_by("-valid_from").first()
            if _same(current, values):
                report.unchanged += 1
            else:
                Price.objects.create(model=model, source=Price.Source.GENAI_PRICES, valid_from=now, **values)
                report.created += 1


@transaction.atomic
def sync_prices() -> SyncReport:
    report = SyncReport()
    snapshot = data_snapshot.get_snapshot()
    bundled_providers = {provider.id: provider for provider in snapshot.providers}
    for provider in Provider.objects.exclude(genai_prices_id="").prefetch_related("models"):
        bundled = bundled_providers.get(provider.genai_prices_id)
        for model in provider.models.all():
            info = bundled.find_model(model.name) if bundled else None
            if info is None:
                report.unpriced.append(f"{provider.name} / {model.name}")
                continue
            sync_model(model, info, report)
    return report
