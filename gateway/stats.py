"""Read-only numbers for the Gateway page and API: the cache's and the rate limits' state now.

    cache_stats(project.id)                   # CacheStats: hits, misses, bypass, hit rate, $ saved, entries, bytes
    cache_hourly(project.id, start, end)      # [CacheHour] per UTC hour in [start, end), for charts
    limit_usage(project.id, [token.id, ...])  # {None: project's LimitUsage, token id: LimitUsage}

Sync (Django views and serializers call them); a few Redis round trips, no scan.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from .admission import EPSILON, LIMIT_KINDS, MICRO, limit_key
from .cache import HOURLY_TTL_S, bytes_key, hourly_key, index_key, sizes_key, totals_key
from .models import RateLimit
from .redis import sync_client

# Expired entries the index has not forgotten yet, looked up to correct the byte count.
EXPIRED_SAMPLE = 10_000


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    bypass: int
    hit_rate: float | None  # hits / (hits + misses); None before the first lookup
    saved_usd: Decimal  # what the hits would have cost
    entries: int  # answers stored now
    memory_bytes: int  # their JSON (Redis's own overhead not included)


def cache_stats(project_id: int) -> CacheStats:
    client = sync_client()
    now_ms = time.time() * 1000
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(totals_key(project_id))
    pipe.zcount(index_key(project_id), f"({now_ms}", "+inf")
    pipe.zrangebyscore(index_key(project_id), "-inf", now_ms, start=0, num=EXPIRED_SAMPLE)
    pipe.get(bytes_key(project_id))
    totals, entries, expired, stored_bytes = pipe.execute()
    expired_bytes = sum(int(size) for size in client.hmget(sizes_key(project_id), expired) if size) if expired else 0
    counts = {name.decode(): int(value) for name, value in totals.items()}
    hits, misses = counts.get("hit", 0), counts.get("miss", 0)
    return CacheStats(
        hits=hits, misses=misses, bypass=counts.get("bypass", 0),
        hit_rate=hits / (hits + misses) if hits + misses else None,
        saved_usd=Decimal(counts.get("saved_micro_usd", 0)) / MICRO,
        entries=int(entries), memory_bytes=max(0, int(stored_bytes or 0) - expired_bytes),
    )


@dataclass(frozen=True)
class CacheHour:
    hour: datetime  # UTC, the hour's start
    hits: int
    misses: int
    bypass: int
    saved_usd: Decimal


def cache_hourly(project_id: int, start: datetime, end: datetime) -> list[CacheHour]:
    """Lookups per UTC hour in [start, end), quiet hours included; hours older than the
    counters are kept (HOURLY_TTL_S) are left out."""
    start = max(start.astimezone(UTC), datetime.now(UTC) - timedelta(seconds=HOURLY_TTL_S))
    hour = start.replace(minute=0, second=0, microsecond=0)
    end = end.astimezone(UTC)
    hours = []
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    pipe = sync_client().pipeline(transaction=False)
    for hour in hours:
        pipe.hgetall(hourly_key(project_id, hour))
    rows = []
    for hour, counters in zip(hours, pipe.execute() if hours else [], strict=True):
        counts = {name.decode(): int(value) for name, value in counters.items()}
        rows.append(CacheHour(hour, counts.get("hit", 0), counts.get("miss", 0), counts.get("bypass", 0),
                              Decimal(counts.get("saved_micro_usd", 0)) / MICRO))
    return rows


@dataclass(frozen=True)
class WindowUsage:
    limit: int
    used: int  # requests or tokens still counting against the limit (the bucket's level)
    remaining: int
    resets_in_s: float  # until nothing counts any more


@dataclass(frozen=True)
class LimitUsage:
    rpm: WindowUsage | None  # None: no such limit
    tpm: WindowUsage | None
    rpd: WindowUsage | None
    tpd: WindowUsage | None


def limit_usage(project_id: int, token_ids: Iterable[int], *, now: float | None = None) -> dict[int | None, LimitUsage]:
    """Current usage of each configured limit of the project (key None) and of each token."""
    token_ids = list(token_ids)
    rows = {row.api_token_id: row for row in RateLimit.objects.dangerously_unscoped().filter(project_id=project_id)}
    client = sync_client()
    if now is None:
        seconds, micros = client.time()
        now = seconds + micros / 1_000_000
    wanted: list[tuple[int | None, str, int]] = []  # (token id or None, kind, limit)
    for owner in (None, *token_ids):
        row = rows.get(owner)
        for kind in LIMIT_KINDS:
            value = getattr(row, _FIELDS[kind]) if row else None
            if value:
                wanted.append((owner, kind, value))
    pipe = client.pipeline(transaction=False)
    for owner, kind, _ in wanted:
        is_project = owner is None
        pipe.get(limit_key(is_project, project_id if is_project else owner, kind))
    usage: dict[int | None, dict[str, WindowUsage]] = {owner: {} for owner in (None, *token_ids)}
    for (owner, kind, limit), bucket in zip(wanted, pipe.execute() if wanted else [], strict=True):
        window_ms = LIMIT_KINDS[kind][1]
        current = 0.0
        if bucket is not None:  # "<level> <ms when measured>", as gateway/admission.py keeps it
            level, ts = bucket.split()
            elapsed = max(0.0, now * 1000 - float(ts))
            current = max(0.0, float(level) - elapsed * limit / window_ms)
        used = math.ceil(current - EPSILON) if current > EPSILON else 0
        usage[owner][kind] = WindowUsage(
            limit=limit, used=used, remaining=max(0, math.floor(limit - current + EPSILON)),
            resets_in_s=current * window_ms / limit / 1000,
        )
    return {owner: LimitUsage(**{kind: kinds.get(kind) for kind in LIMIT_KINDS}) for owner, kinds in usage.items()}


_FIELDS = {
    "rpm": "requests_per_minute", "tpm": "tokens_per_minute", "rpd": "requests_per_day", "tpd": "tokens_per_day",
}
