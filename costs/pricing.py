"""Which `Price` an event is charged at: the one catalog the benchmarks use (`benchmarks.Price`,
seeded from genai-prices, admin overrides win), looked up by the event's provider and model.

Events name a provider the way their SDK does ("openai", "anthropic", "google-gla", "groq") and a
model as sent to it ("gpt-4o-2024-08-06"). `PriceBook.for_events()` resolves each distinct pair
once per batch:

1. a catalog `Model` of a `Provider` whose genai-prices id or name is the event's provider, with
   the model's exact name (what operators configure, and what they override in the admin);
2. else genai-prices' own matcher (`find_provider_model`, which knows model aliases and dated
   snapshots), and the model it finds is *adopted* into the catalog with its bundled price
   history, so that the admin can see and override it like any other;
3. else the pair is unpriced: the event is stored with cost unknown, listed on the dashboard,
   and priced by `reprice_unpriced()` once an operator adds a price.

The price applied is the one valid at the event's own timestamp; an event older than a model's
first known price gets that first price (otherwise a price added today could never price the
unpriced events it was added for).
"""

from __future__ import annotations

import bisect
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.cache import cache
from django.db import transaction
from genai_prices import data_snapshot

from benchmarks.models import Model, Price, Provider
from benchmarks.prices import sync_model
from benchmarks.providers import kind_for_pricing_provider


def normalize_provider(name: str) -> str:
    return name.strip().lower()


@dataclass
class ModelPrices:
    """A catalog model's price history, ordered by start; admin rows beat bundled ones."""

    starts: list[datetime] = field(default_factory=list)
    prices: list[Price] = field(default_factory=list)

    def at(self, when: datetime) -> Price | None:
        if not self.prices:
            return None
        index = bisect.bisect_right(self.starts, when) - 1
        return self.prices[max(index, 0)]


def _histories(models: list[Model]) -> dict[int, ModelPrices]:
    """Per model: the effective price from each start on (at one start, admin beats bundled)."""
    by_model: dict[int, dict[datetime, Price]] = {model.id: {} for model in models}
    rows = Price.objects.filter(model__in=models).order_by("model_id", "valid_from", "id")
    for price in rows:
        current = by_model[price.model_id].get(price.valid_from)
        if current is None or price.source == Price.Source.ADMIN or current.source != Price.Source.ADMIN:
            by_model[price.model_id][price.valid_from] = price
    histories = {}
    for model_id, starts in by_model.items():
        ordered = sorted(starts.items())
        histories[model_id] = ModelPrices([s for s, _ in ordered], [p for _, p in ordered])
    return histories


def _admin_overrides_win(history: ModelPrices) -> ModelPrices:
    """Once an operator has set a price, bundled rows starting later do not replace it."""
    effective = ModelPrices()
    admin_seen = False
    for start, price in zip(history.starts, history.prices, strict=True):
        if price.source == Price.Source.ADMIN:
            admin_seen = True
        elif admin_seen:
            continue
        effective.starts.append(start)
        effective.prices.append(price)
    return effective


def _find_catalog_model(provider: str, model: str) -> Model | None:
    return (
        Model.objects.filter(name=model)
        .filter(provider__in=Provider.objects.filter(genai_prices_id__iexact=provider) | Provider.objects.filter(name__iexact=provider))
        .select_related("provider")
        .first()
    )


@transaction.atomic
def adopt_bundled_model(provider: str, model: str) -> Model | None:
    """Bring a model genai-prices knows into the catalog (not benchmarked, just priced)."""
    snapshot = data_snapshot.get_snapshot()
    try:
        bundled_provider, info = snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    catalog_provider = (
        Provider.objects.filter(genai_prices_id__iexact=bundled_provider.id).first()
        or Provider.objects.filter(name__iexact=bundled_provider.name).first()
    )
    if catalog_provider is None:
        catalog_provider, _ = Provider.objects.get_or_create(
            name=bundled_provider.name,
            defaults={
                "kind": kind_for_pricing_provider(bundled_provider.id),
                "base_url": "", "genai_prices_id": bundled_provider.id, "is_active": False,
            },
        )
    catalog_model, created = Model.objects.get_or_create(
        provider=catalog_provider, name=info.id,
        defaults={"display_name": info.name or "", "context_window": info.context_window, "is_active": False},
    )
    if created or not catalog_model.prices.exists():
        from benchmarks.prices import SyncReport

        sync_model(catalog_model, info, SyncReport())
    return catalog_model


CATALOG_VERSION_KEY = "costs:price-catalog-version"


def catalog_changed() -> None:
    """Called when a catalog Provider, Model or Price changes (signals): every process drops
    its memo of resolved prices before its next batch. A random version, not a counter, so a
    version that was evicted and re-created can never equal one a process still holds."""
    cache.set(CATALOG_VERSION_KEY, uuid.uuid4().hex, timeout=None)


class _Memo:
    """Per-process memo of pair resolutions and price histories, valid for one catalog version
    (one cache read per batch instead of a few queries per model)."""

    def __init__(self) -> None:
        self.version: object = None
        self.models: dict[tuple[str, str], Model | None] = {}
        self.histories: dict[int, ModelPrices] = {}

    def refresh(self) -> None:
        version = cache.get(CATALOG_VERSION_KEY)
        if version is None:
            version = uuid.uuid4().hex
            cache.add(CATALOG_VERSION_KEY, version, timeout=None)
            version = cache.get(CATALOG_VERSION_KEY, version)
        if version != self.version:
            self.version, self.models, self.histories = version, {}, {}


_memo = _Memo()


class PriceBook:
    """Prices for the (provider, model) pairs of one batch, resolved once per catalog version."""

    def __init__(self, models: dict[tuple[str, str], Model | None], histories: dict[int, ModelPrices]) -> None:
        self._models = models
        self._histories = histories

    @classmethod
    def for_pairs(cls, pairs: set[tuple[str, str]], *, adopt: bool = True) -> PriceBook:
        _memo.refresh()
        missing = [pair for pair in pairs if pair not in _memo.models]
        for provider, model in missing:
            found = _find_catalog_model(provider, model)
            if found is None and adopt:
                found = adopt_bundled_model(provider, model)
            if found is not None or adopt:  # without adopting, a miss is not the final answer
                _memo.models[(provider, model)] = found
        models = {pair: _memo.models.get(pair) for pair in pairs}
        unknown = [m for m in models.values() if m is not None and m.id not in _memo.histories]
        if unknown:
            _memo.histories.update({model_id: _admin_overrides_win(h) for model_id, h in _histories(unknown).items()})
        return cls(models, _memo.histories)

    def price_for(self, provider: str, model: str, when: datetime) -> Price | None:
        catalog_model = self._models.get((provider, model))
        if catalog_model is None:
            return None
        return self._histories[catalog_model.id].at(when)


COST_QUANTUM = Decimal("1e-10")  # CostEvent.cost_usd's decimal places


def as_stored(amount: Decimal) -> Decimal:
    """Rounded as the database stores it, so a response says what a later read will."""
    return amount.quantize(COST_QUANTUM)


def cost_of(price: Price, *, input_tokens: int, output_tokens: int, cached_tokens: int) -> Decimal:
    """Reasoning tokens are part of output tokens, so they are not charged again."""
    return as_stored(price.cost(input_tokens=input_tokens, output_tokens=output_tokens, cached_tokens=cached_tokens))
