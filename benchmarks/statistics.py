"""Leaderboard statistics: per-model percentiles, jitter, error rate, cost and value score over a
time range, and per-bucket timelines for the charts.

Both functions read only the columns they need through `values_list` (one query for the
results, one for the current prices), so a page costs two queries however many models it shows.
Percentiles use linear interpolation between closest ranks (the same as
`statistics.quantiles(method="inclusive")`). Missing data is `None`, never 0 and never a crash.
"""

from __future__ import annotations

import math
import statistics as pystats
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from .models import BenchmarkResult, Price

RANGES: dict[str, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}

JITTER_GREEN_BELOW_MS = 200.0
JITTER_RED_ABOVE_MS = 500.0


def since_for(range_key: str) -> datetime:
    """The start of a range ("24h", "7d", "30d") counted back from now."""
    try:
        return timezone.now() - RANGES[range_key]
    except KeyError:
        raise ValueError(f"Unknown range {range_key!r}; expected one of {', '.join(RANGES)}.") from None


@dataclass
class ModelStats:
    model_uuid: str | None
    model_name: str
    provider_name: str
    is_aggregator: bool
    samples: int
    successes: int
    error_rate: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    tps_p50: float | None
    tps_p95: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    jitter_ms: float | None
    jitter_light: str | None
    cost_per_request_usd: Decimal | None
    blended_mtok_usd: Decimal | None
    value_score: float | None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; `q` in 0..1. None for no values."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return None
    if len(data) == 1:
        return float(data[0])
    position = (len(data) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    fraction = position - low
    return float(data[low] + (data[high] - data[low]) * fraction)


def jitter_light(jitter_ms: float | None) -> str | None:
    if jitter_ms is None:
        return None
    if jitter_ms < JITTER_GREEN_BELOW_MS:
        return "green"
    if jitter_ms <= JITTER_RED_ABOVE_MS:
        return "yellow"
    return "red"


def _jitter(latencies: Sequence[float]) -> float | None:
    return float(pystats.pstdev(latencies)) if len(latencies) >= 2 else None


_COLUMNS = (
    "model_id", "model__uuid", "model_name", "provider_name", "provider__is_aggregator",
    "success", "ttft_ms", "tps", "total_latency_ms", "cost_usd", "is_priced",
)


@dataclass
class _Group:
    model_id: int | None = None
    model_uuid: str | None = None
    is_aggregator: bool = False
    samples: int = 0
    successes: int = 0
    ttft: list[float] = field(default_factory=list)
    tps: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    costs: list[Decimal] = field(default_factory=list)


def _current_prices(model_ids: Iterable[int], now: datetime) -> dict[int, Price]:
    """The price in force now per model (an operator's override beating bundled data), in one
    query; mirrors `PriceQuerySet.valid_at`."""
    current: dict[int, Price] = {}
    rows = Price.objects.filter(model_id__in=set(model_ids), valid_from__lte=now).order_by("-valid_from", "-id")
    for price in rows:
        best = current.get(price.model_id)
        if best is None or (price.source == Price.Source.ADMIN and best.source != Price.Source.ADMIN):
            current[price.model_id] = price
    return current


def model_stats(results: QuerySet[BenchmarkResult], since: datetime) -> list[ModelStats]:
    """One ModelStats per (model name, provider name) with results since `since`, fastest
    (lowest TTFT p50) first; models without a successful result last."""
    groups: dict[tuple[str, str], _Group] = {}
    rows = results.filter(created_at__gte=since).order_by().values_list(*_COLUMNS)
    for (model_id, model_uuid, model_name, provider_name, is_aggregator,
         success, ttft, tps, latency, cost, is_priced) in rows:
        group = groups.setdefault((model_name, provider_name), _Group())
        if group.model_id is None and model_id is not None:
            group.model_id, group.model_uuid = model_id, str(model_uuid)
        group.is_aggregator = group.is_aggregator or bool(is_aggregator)
        group.samples += 1
        if not success:
            continue
        group.successes += 1
        if ttft is not None:
            group.ttft.append(ttft)
        if tps is not None:
            group.tps.append(tps)
        if latency is not None:
            group.latency.append(latency)
        if is_priced and cost is not None:
            group.costs.append(cost)

    prices = _current_prices((g.model_id for g in groups.values() if g.model_id is not None), timezone.now())
    stats: list[ModelStats] = []
    for (model_name, provider_name), group in groups.items():
        price = prices.get(group.model_id) if group.model_id is not None else None
        blended = price.blended_mtok if price is not None else None
        tps_p50 = percentile(group.tps, 0.5)
        value = tps_p50 / float(blended) if tps_p50 is not None and blended else None
        jitter = _jitter(group.latency)
        stats.append(ModelStats(
            model_uuid=group.model_uuid, model_name=model_name, provider_name=provider_name,
            is_aggregator=group.is_aggregator, samples=group.samples, successes=group.successes,
            error_rate=(group.samples - group.successes) / group.samples if group.samples else 0.0,
            ttft_p50_ms=percentile(group.ttft, 0.5), ttft_p95_ms=percentile(group.ttft, 0.95),
            tps_p50=tps_p50, tps_p95=percentile(group.tps, 0.95),
            latency_p50_ms=percentile(group.latency, 0.5), latency_p95_ms=percentile(group.latency, 0.95),
            jitter_ms=jitter, jitter_light=jitter_light(jitter),
            cost_per_request_usd=sum(group.costs, Decimal(0)) / len(group.costs) if group.costs else None,
            blended_mtok_usd=blended, value_score=value,
        ))
    stats.sort(key=lambda s: (s.ttft_p50_ms is None, s.ttft_p50_ms or 0.0, s.model_name, s.provider_name))
    return stats


def timeline(results: QuerySet[BenchmarkResult], since: datetime, *, buckets: int = 24) -> dict:
    """Per-bucket p50 TTFT / TPS / latency and error rate per model, from `since` to now, in
    `buckets` equal buckets. Empty buckets are None (the charts span the gaps)."""
    buckets = max(1, buckets)
    now = timezone.now()
    width = max(now - since, timedelta(seconds=1)) / buckets
    labels = [(since + width * i).isoformat() for i in range(buckets)]

    per_model: dict[tuple[str, str], list[dict[str, list]]] = {}
    rows = (
        results.filter(created_at__gte=since, created_at__lte=now).order_by()
        .values_list("model_name", "provider_name", "created_at", "success", "ttft_ms", "tps", "total_latency_ms")
    )
    for model_name, provider_name, created_at, success, ttft, tps, latency in rows:
        slots = per_model.get((model_name, provider_name))
        if slots is None:
            slots = per_model[(model_name, provider_name)] = [
                {"n": [0], "ok": [0], "ttft": [], "tps": [], "latency": []} for _ in range(buckets)
            ]
        index = min(int((created_at - since) / width), buckets - 1)
        slot = slots[index]
        slot["n"][0] += 1
        if success:
            slot["ok"][0] += 1
            for key, value in (("ttft", ttft), ("tps", tps), ("latency", latency)):
                if value is not None:
                    slot[key].append(value)

    names = [name for name, _ in per_model]
    series = []
    for (model_name, provider_name), slots in sorted(per_model.items()):
        label = model_name if names.count(model_name) == 1 else f"{model_name} ({provider_name})"
        series.append({
            "model": label,
            "provider": provider_name,
            "ttft_p50_ms": [percentile(s["ttft"], 0.5) for s in slots],
            "tps_p50": [percentile(s["tps"], 0.5) for s in slots],
            "latency_p50_ms": [percentile(s["latency"], 0.5) for s in slots],
            "error_rate": [(s["n"][0] - s["ok"][0]) / s["n"][0] if s["n"][0] else None for s in slots],
        })
    return {"labels": labels, "series": series}
