"""The numbers the Gateway page shows: the cache's hit rate, savings, entries and bytes, and
each configured limit's current usage."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson

from accounts.models import ApiToken
from gateway import cache
from gateway.admission import admit
from gateway.cache import CachedAnswer, cache_key, count, store
from gateway.models import RateLimit
from gateway.redis import sync_client
from gateway.stats import CacheHour, LimitUsage, WindowUsage, cache_hourly, cache_stats, limit_usage

from . import backends
from .backends import limits, project_state, run

gw_backend = backends.gw_backend

PROJECT = 303


def answer(text: str) -> CachedAnswer:
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    return CachedAnswer(endpoint="chat", body=body, upstream="sim/m", provider="openai", model="m", cost_micro_usd=10)


def size(a: CachedAnswer) -> int:
    return len(orjson.dumps(asdict(a)))


def entry(n: int) -> str:
    return cache_key(PROJECT, "chat", {"model": "m", "messages": [{"role": "user", "content": str(n)}]})


def test_cache_stats_before_any_traffic(gw_backend):
    stats = cache_stats(PROJECT)
    assert (stats.hits, stats.misses, stats.bypass, stats.entries, stats.memory_bytes) == (0, 0, 0, 0, 0)
    assert stats.hit_rate is None and stats.saved_usd == Decimal(0)


def test_cache_stats_count_outcomes_savings_entries_and_bytes(gw_backend):
    short, long = answer("hi"), answer("a much longer answer " * 20)

    async def traffic(r):
        await count(r, PROJECT, "miss")
        await store(r, entry(1), short, 600)
        await count(r, PROJECT, "miss")
        await store(r, entry(2), long, 600)
        await count(r, PROJECT, "hit", saved_micro_usd=1_250_000)
        await count(r, PROJECT, "hit", saved_micro_usd=250_000)
        await count(r, PROJECT, "hit", saved_micro_usd=0)
        await count(r, PROJECT, "bypass")
        await store(r, entry(2), long, 600)  # stored again: replaces, not adds

    run(traffic)
    stats = cache_stats(PROJECT)
    assert (stats.hits, stats.misses, stats.bypass) == (3, 2, 1)
    assert stats.hit_rate == 0.6
    assert stats.saved_usd == Decimal("1.5")
    assert stats.entries == 2
    assert stats.memory_bytes == size(short) + size(long)
    assert cache_stats(PROJECT + 1).entries == 0  # per project


def test_cache_hourly_gives_every_hour_of_a_range(gw_backend):
    async def traffic(r):
        await count(r, PROJECT, "hit", saved_micro_usd=2_000_000)
        await count(r, PROJECT, "miss")

    run(traffic)
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    sync_client().hset(cache.hourly_key(PROJECT, this_hour - timedelta(hours=2)), "bypass", 3)
    rows = cache_hourly(PROJECT, this_hour - timedelta(hours=2, minutes=30), this_hour + timedelta(minutes=1))
    assert rows == [
        CacheHour(this_hour - timedelta(hours=3), 0, 0, 0, Decimal(0)),
        CacheHour(this_hour - timedelta(hours=2), 0, 0, 3, Decimal(0)),
        CacheHour(this_hour - timedelta(hours=1), 0, 0, 0, Decimal(0)),
        CacheHour(this_hour, 1, 1, 0, Decimal(2)),
    ]


def test_expired_entries_leave_the_numbers(gw_backend):
    first, second = answer("one"), answer("two two")
    run(lambda r: store(r, entry(1), first, 600))
    run(lambda r: store(r, entry(2), second, 600))
    client = sync_client()
    # entry 1 expires: what its TTL does, without waiting for it
    digest = entry(1).rsplit(":", 1)[1]
    client.zadd(cache.index_key(PROJECT), {digest: time.time() * 1000 - 1})
    client.delete(entry(1))
    stats = cache_stats(PROJECT)
    assert (stats.entries, stats.memory_bytes) == (1, size(second))
    # the next store forgets it for good
    third = answer("three")
    run(lambda r: store(r, entry(3), third, 600))
    assert client.zcard(cache.index_key(PROJECT)) == 2
    assert client.hget(cache.sizes_key(PROJECT), digest) is None
    assert int(client.get(cache.bytes_key(PROJECT))) == size(second) + size(third)
    assert cache_stats(PROJECT).memory_bytes == size(second) + size(third)
    assert 0 < client.pttl(cache.index_key(PROJECT)) <= 600_000


def test_limit_usage_shows_each_configured_limit(gw_backend, personas):
    project = personas.project
    busy, _ = ApiToken.issue(project=project, name="busy", scopes=["gateway"], by=personas.owner)
    idle, _ = ApiToken.issue(project=project, name="idle", scopes=["gateway"], by=personas.owner)
    RateLimit.objects.create(project=project, requests_per_minute=10, tokens_per_day=100_000)
    RateLimit.objects.create(project=project, api_token=busy, requests_per_minute=4, tokens_per_minute=1000)
    state = project_state(project_id=project.id, project_limits=limits(rpm=10, tpd=100_000),
                          token_limits={busy.id: limits(rpm=4, tpm=1000)})
    now = time.time()

    async def three_calls(r):
        for _ in range(3):
            decision = await admit(r, project=state, token_id=busy.id, estimated_tokens=200, budgets=[],
                                   max_cost_micro_usd=0, now=now)
            assert decision.allowed

    run(three_calls)
    usage = limit_usage(project.id, [busy.id, idle.id], now=now)
    assert usage[None] == LimitUsage(
        rpm=WindowUsage(limit=10, used=3, remaining=7, resets_in_s=18.0), tpm=None, rpd=None,
        tpd=WindowUsage(limit=100_000, used=600, remaining=99_400, resets_in_s=518.4),
    )
    assert usage[busy.id] == LimitUsage(
        rpm=WindowUsage(limit=4, used=3, remaining=1, resets_in_s=45.0),
        tpm=WindowUsage(limit=1000, used=600, remaining=400, resets_in_s=36.0), rpd=None, tpd=None,
    )
    assert usage[idle.id] == LimitUsage(None, None, None, None)
    # half a minute later the minute buckets have drained by half
    later = limit_usage(project.id, [busy.id], now=now + 30)
    assert (later[busy.id].rpm.used, later[busy.id].tpm.used, later[None].rpm.used) == (1, 100, 0)
    # on Redis's clock (a few ms later), what is still counting rounds up
    assert limit_usage(project.id, [busy.id])[busy.id].rpm.used == 3
