"""Routing strategies (ordered, weighted, fastest, cheapest) and skipping open breakers: the pure
functions, then the live gateway choosing by prices and speeds it learned."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from benchmarks.models import BenchmarkResult, Model, Price, Provider, Run
from benchmarks.simulator import DEFAULT_PROFILES
from gateway import breaker, routing
from gateway.breaker import Breaker
from gateway.redis import sync_client
from gateway.state import RouteState, UpstreamState, build_project_state
from tests.gateway.conftest import SIM_PROVIDER

HELLO = [{"role": "user", "content": "hello"}]


def upstream(model: str, *, weight: int = 1, price: tuple[int, int] | None = None, bench: float | None = None,
             connection_id: int = 1) -> UpstreamState:
    return UpstreamState(
        connection_id=connection_id, connection_name="c", kind="openai_compatible", provider="p",
        base_url="http://x/v1", api_key="", allow_private=True, model=model, weight=weight,
        input_micro_per_mtok=price[0] if price else None, output_micro_per_mtok=price[1] if price else None,
        cached_micro_per_mtok=None, benchmark_ttft_p50_ms=bench,
    )


def route(strategy: str, *upstreams: UpstreamState) -> RouteState:
    return RouteState(name="r", strategy=strategy, upstreams=upstreams)


def models(upstreams) -> list[str]:
    return [u.model for u in upstreams]


def test_ordered_keeps_the_routes_order():
    r = route("ordered", upstream("a"), upstream("b"), upstream("c"))
    assert models(routing.order(r, r.upstreams)) == ["a", "b", "c"]


def test_weighted_splits_traffic_by_weight_and_keeps_the_rest_as_fallbacks():
    r = route("weighted", upstream("a", weight=3), upstream("b", weight=1))
    rng = random.Random(7)
    orders = [models(routing.order(r, r.upstreams, rng=rng)) for _ in range(4000)]

    firsts = Counter(order[0] for order in orders)
    assert 2800 < firsts["a"] < 3200  # 3:1, with a fixed seed
    assert all(sorted(order) == ["a", "b"] for order in orders)


def test_fastest_blends_live_measurements_with_the_benchmark_and_puts_unknowns_last_in_order():
    a = upstream("a", bench=300.0)
    b = upstream("b", bench=100.0)
    c = upstream("c")
    d = upstream("d", connection_id=2)
    r = route("fastest", c, a, d, b)

    assert models(routing.order(r, r.upstreams)) == ["b", "a", "c", "d"]
    live = {routing.upstream_id(a): [50.0] * 40}  # 40 samples of 50 ms outweigh a's benchmark
    assert routing.ttft_score(a, [50.0] * 40) == pytest.approx(0.8 * 50 + 0.2 * 300)
    assert models(routing.order(r, r.upstreams, live_ttft=live)) == ["a", "b", "c", "d"]
    assert models(routing.order(r, r.upstreams, live_ttft={routing.upstream_id(d): [10.0]})) == ["d", "b", "a", "c"]


def test_cheapest_orders_by_the_blended_price_and_puts_unpriced_last():
    r = route("cheapest", upstream("free?"), upstream("dear", price=(10_000_000, 30_000_000)),
              upstream("cheap", price=(100_000, 400_000)), upstream("mid", price=(1_000_000, 1_000_000)))
    assert models(routing.order(r, r.upstreams)) == ["cheap", "mid", "dear", "free?"]


def test_open_breakers_are_skipped_cooled_ones_need_a_probe_and_all_open_tries_the_oldest():
    a, b, c = upstream("a"), upstream("b"), upstream("c")
    now = 1000.0
    breakers = {
        routing.upstream_id(a): Breaker("open", 5, opened_at=now - 10),  # still cooling down
        routing.upstream_id(b): Breaker("open", 5, opened_at=now - 100),  # cooled down
    }
    usable, probes = routing.healthy([a, b, c], breakers, now, cooldown_s=30)
    assert models(usable) == ["b", "c"] and probes == {routing.upstream_id(b)}

    breakers[routing.upstream_id(b)] = Breaker("half_open", 5, opened_at=now - 100, probe_until=now + 5)
    breakers[routing.upstream_id(c)] = Breaker("open", 5, opened_at=now - 20)
    usable, probes = routing.healthy([a, b, c], breakers, now, cooldown_s=30)
    assert models(usable) == ["b"] and probes == set()  # every one skipped: the one open longest


# -- live ---------------------------------------------------------------------------------------------


def price(model_name: str, input_mtok: str, output_mtok: str) -> None:
    provider = Provider.objects.get(name=SIM_PROVIDER)
    model, _ = Model.objects.get_or_create(provider=provider, name=model_name)
    Price.objects.create(model=model, input_mtok=Decimal(input_mtok), output_mtok=Decimal(output_mtok),
                         valid_from=timezone.now() - timedelta(days=1))


def test_cheapest_calls_the_upstream_with_the_lowest_current_price(gateway_world, openai_client, simulator):
    simulator.set_profile("sim-cheap", DEFAULT_PROFILES["sim-fast"])
    simulator.set_profile("sim-unpriced", DEFAULT_PROFILES["sim-fast"])
    price("sim-cheap", "0.01", "0.02")
    conn = gateway_world.openai_connection
    gateway_world.route("thrifty", [(conn, "sim-unpriced"), (conn, "sim-fast"), (conn, "sim-cheap")], strategy="cheapest")

    raw = openai_client.chat.completions.with_raw_response.create(model="thrifty", messages=HELLO)

    assert raw.headers["x-pulse-upstream"] == "sim-openai/sim-cheap"


def test_a_new_price_changes_the_choice_at_once(gateway_world, openai_client, simulator):
    simulator.set_profile("sim-cheap", DEFAULT_PROFILES["sim-fast"])
    price("sim-cheap", "5", "5")
    conn = gateway_world.openai_connection
    gateway_world.route("thrifty", [(conn, "sim-cheap"), (conn, "sim-fast")], strategy="cheapest")
    assert openai_client.chat.completions.with_raw_response.create(
        model="thrifty", messages=HELLO).headers["x-pulse-upstream"] == "sim-openai/sim-fast"

    price("sim-cheap", "0.01", "0.01")  # a newer price: the snapshot of every project is retired

    assert openai_client.chat.completions.with_raw_response.create(
        model="thrifty", messages=HELLO).headers["x-pulse-upstream"] == "sim-openai/sim-cheap"


def test_fastest_calls_the_upstream_with_the_lowest_live_ttft(gateway_world, openai_client, simulator):
    simulator.set_profile("sim-quick", replace(DEFAULT_PROFILES["sim-fast"], ttft_ms=5))
    conn = gateway_world.openai_connection
    gateway_world.route("speedy", [(conn, "sim-medium"), (conn, "sim-quick")], strategy="fastest")
    client = sync_client()
    client.lpush(breaker.ttft_key(conn.id, "sim-medium"), *["400"] * 5)
    client.lpush(breaker.ttft_key(conn.id, "sim-quick"), *["20"] * 5)

    raw = openai_client.chat.completions.with_raw_response.create(model="speedy", messages=HELLO)

    assert raw.headers["x-pulse-upstream"] == "sim-openai/sim-quick"


def test_streamed_calls_teach_the_gateway_each_upstreams_ttft(gateway_world, openai_client):
    conn = gateway_world.openai_connection
    list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))

    deadline = time.monotonic() + 15
    while not sync_client().llen(breaker.ttft_key(conn.id, "sim-fast")) and time.monotonic() < deadline:
        time.sleep(0.02)
    [sample] = sync_client().lrange(breaker.ttft_key(conn.id, "sim-fast"), 0, -1)
    assert float(sample) > 0


def test_the_benchmark_p50_ttft_of_a_model_reaches_its_upstreams(gateway_world):
    provider = Provider.objects.get(name=SIM_PROVIDER)
    model = Model.objects.get(provider=provider, name="sim-fast")
    run = Run.objects.create(name="bench", triggered_by=Run.Trigger.SCHEDULE)
    for ttft in (100.0, 200.0, 300.0, 5000.0):
        BenchmarkResult.objects.create(run=run, provider=provider, model=model, provider_name=provider.name,
                                       model_name="sim-fast", success=True, ttft_ms=ttft)
    old = BenchmarkResult.objects.create(run=run, provider=provider, model=model, provider_name=provider.name,
                                         model_name="sim-fast", success=True, ttft_ms=1.0)
    BenchmarkResult.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))

    state = build_project_state(gateway_world.project.id)

    [fast] = state.routes["gpt-4o-mini"].upstreams
    assert fast.benchmark_ttft_p50_ms == 250.0  # the last day's results only
    [embed] = state.routes["text-embedding-3-small"].upstreams
    assert embed.benchmark_ttft_p50_ms is None
