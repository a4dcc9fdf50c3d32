"""Leaderboard statistics from BenchmarkResult rows created directly (no simulator)."""

from __future__ import annotations

import statistics as pystats
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from benchmarks import statistics
from benchmarks.models import BenchmarkResult, Model, Price, Provider, ProviderKind, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def run() -> Run:
    return Run.objects.create(name="test", triggered_by=Run.Trigger.SCHEDULE)


@pytest.fixture
def direct() -> Provider:
    return Provider.objects.create(name="Direct", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://d.example/v1")


@pytest.fixture
def aggregator() -> Provider:
    return Provider.objects.create(
        name="Router", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://r.example/v1", is_aggregator=True
    )


def add(run: Run, model: Model | None, *, success: bool = True, ttft: float | None = 100.0, tps: float | None = 50.0,
        latency: float | None = 1000.0, cost: Decimal | None = None, ago: timedelta = timedelta(minutes=5),
        provider_name: str | None = None, model_name: str | None = None) -> BenchmarkResult:
    return BenchmarkResult.objects.create(
        run=run, model=model, provider=model.provider if model else None,
        model_name=model_name or model.name, provider_name=provider_name or model.provider.name,
        success=success, ttft_ms=ttft if success else None, tps=tps if success else None,
        total_latency_ms=latency if success else None,
        cost_usd=cost, is_priced=cost is not None, error_kind="" if success else "server_error",
        created_at=timezone.now() - ago,
    )


def since_24h():
    return statistics.since_for("24h")


def test_ranges_and_since_for():
    assert statistics.RANGES == {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
    before = timezone.now()
    since = statistics.since_for("7d")
    assert before - timedelta(days=7) <= since <= timezone.now() - timedelta(days=7)
    with pytest.raises(ValueError):
        statistics.since_for("1y")


def test_percentiles_interpolate_linearly_like_quantiles_inclusive(run, direct):
    model = Model.objects.create(provider=direct, name="m")
    ttfts = [100.0, 200.0, 300.0, 400.0, 1000.0]
    for value in ttfts:
        add(run, model, ttft=value, tps=value / 10, latency=value * 2)

    [stats] = statistics.model_stats(BenchmarkResult.objects.public(), since_24h())
    expected = pystats.quantiles(ttfts, n=100, method="inclusive")
    assert stats.ttft_p50_ms == pytest.approx(300.0) == pytest.approx(pystats.median(ttfts))
    assert stats.ttft_p95_ms == pytest.approx(expected[94]) == pytest.approx(880.0)
    assert stats.tps_p50 == pytest.approx(30.0) and stats.tps_p95 == pytest.approx(88.0)
    assert stats.latency_p50_ms == pytest.approx(600.0) and stats.latency_p95_ms == pytest.approx(1760.0)
    assert (stats.samples, stats.successes, stats.error_rate) == (5, 5, 0.0)
    assert stats.model_uuid == str(model.uuid) and stats.provider_name == "Direct" and not stats.is_aggregator


def test_single_value_percentile_and_no_jitter_below_two_samples(run, direct):
    add(run, Model.objects.create(provider=direct, name="once"), ttft=123.0)
    [stats] = statistics.model_stats(BenchmarkResult.objects.public(), since_24h())
    assert stats.ttft_p50_ms == stats.ttft_p95_ms == 123.0
    assert stats.jitter_ms is None and stats.jitter_light is None


@pytest.mark.parametrize(
    ("jitter", "light"),
    [(0.0, "green"), (199.9, "green"), (200.0, "yellow"), (350.0, "yellow"), (500.0, "yellow"), (500.1, "red"), (None, None)],
)
def test_jitter_light_boundaries(jitter, light):
    assert statistics.jitter_light(jitter) == light


def test_jitter_is_the_population_std_dev_of_successful_latencies(run, direct):
    model = Model.objects.create(provider=direct, name="jittery")
    for latency in (1000.0, 1600.0):  # pstdev = 300
        add(run, model, latency=latency)
    add(run, model, success=False)  # failures do not count
    [stats] = statistics.model_stats(BenchmarkResult.objects.public(), since_24h())
    assert stats.jitter_ms == pytest.approx(300.0) and stats.jitter_light == "yellow"


def test_error_rate_counts_failures_over_all_samples(run, direct):
    model = Model.objects.create(provider=direct, name="flaky")
    for success in (True, True, True, False):
        add(run, model, success=success)
    [stats] = statistics.model_stats(BenchmarkResult.objects.public(), since_24h())
    assert (stats.samples, stats.successes, stats.error_rate) == (4, 3, 0.25)


def test_a_model_with_only_failures_has_no_latencies_and_error_rate_one(run, direct):
    model = Model.objects.create(provider=direct, name="down")
    add(run, model, success=False)
    add(run, model, success=False)
    fast = Model.objects.create(provider=direct, name="fast")
    add(run, fast, ttft=50.0)
    first, last = statistics.model_stats(BenchmarkResult.objects.public(), since_24h())
    assert first.model_name == "fast"  # sorted by TTFT p50, None last
    assert last.model_name == "down" and last.error_rate == 1.0 and last.successes == 0
    assert last.ttft_p50_ms is last.tps_p50 is last.latency_p50_ms is last.jitter_ms is last.jitter_light is None
    assert last.cost_per_request_usd is None and last.value_score is None


def test_cost_value_score_and_current_blended_price(run, direct):
    model = Model.objects.create(provider=direct, name="priced")
    old = timezone.now() - timedelta(days=10)
    Price.objects.create(model=model, input_mtok=Decimal("10"), output_mtok=Decimal("10"), valid_from=old,
                         source=Price.Source.GENAI_PRICES)
    # The current price: blended (3*1 + 5)/4 = 2 $/Mtok.
    Price.objects.create(model=model, input_mtok=Decimal("1"), output_mtok=Decimal("5"),
                         valid_from=timezone.now() - timedelta(days=1), source=Price.Source.GENAI_PRICES)
    Price.objects.create(model=model, input_mtok=Decimal("0"), output_mtok=Decimal("0"),
                         valid_from=timezone.now() + timedelta(days=1), source=Price.Source.GENAI_PRICES)  # future
    add(run, model, tps=100.0, cost=Decimal("0.0002"))
    add(run, model, tps=60.0, cost=Decimal("0.0004"))
    add(run, model, tps=80.0, cost=None)  # unpriced result: not in the mean
    add(run, model, success=False)

    [stats] = statistics.model_stats(BenchmarkResult.objects.public(), since_24h())
    assert stats.blended_mtok_usd == Decimal("2")
    assert stats.cost_per_request_usd == Decimal("0.0003")
    assert stats.tps_p50 == 80.0 and stats.value_score == pytest.approx(40.0)


def test_an_operator_override_beats_newer_bundled_prices(run, direct):
    model = Model.objects.create(provider=direct, name="override")
    Price.objects.create(model=model, input_mtok=Decimal("4"), output_mtok=Decimal("4"),
                         valid_from=timezone.now() - timedelta(days=5), source=Price.Source.ADMIN)
    Price.objects.create(model=model, input_mtok=Decimal("8"), output_mtok=Decimal("8"),
                         valid_from=timezone.now() - timedelta(days=1), source=Price.Source.GENAI_PRICES)
    add(run, model, tps=40.0)
    [stats] = statistics.model_stats(BenchmarkResult.objects.public(), since_24h())
    assert stats.blended_mtok_usd == Price.objects.valid_at(model, timezone.now()).blended_mtok == Decimal("4")
    assert stats.value_score == pytest.approx(10.0)


def test_unpriced_and_zero_priced_models_have_no_value_score(run, direct):
    unpriced = Model.objects.create(provider=direct, name="unpriced")
    free = Model.objects.create(provider=direct, name="free")
    Price.objects.create(model=free, input_mtok=Decimal("0"), output_mtok=Decimal("0"),
                         valid_from=timezone.now() - timedelta(days=1))
    add(run, unpriced, ttft=10.0)
    add(run, free, ttft=20.0, cost=Decimal("0"))
    by_name = {s.model_name: s for s in statistics.model_stats(BenchmarkResult.objects.public(), since_24h())}
    assert by_name["unpriced"].blended_mtok_usd is None and by_name["unpriced"].cost_per_request_usd is None
    assert by_name["unpriced"].value_score is None
    assert by_name["free"].blended_mtok_usd == Decimal("0") and by_name["free"].value_score is None
    assert by_name["free"].cost_per_request_usd == Decimal("0")


def test_ranges_filter_results_and_groups_are_per_model_and_provider(run, direct, aggregator):
    mine = Model.objects.create(provider=direct, name="same-name")
    resold = Model.objects.create(provider=aggregator, name="same-name")
    add(run, mine, ttft=100.0)
    add(run, mine, ttft=900.0, ago=timedelta(days=3))
    add(run, resold, ttft=300.0, ago=timedelta(days=20))
    add(run, None, ttft=50.0, provider_name="Our gateway", model_name="private", ago=timedelta(days=40))

    day = statistics.model_stats(BenchmarkResult.objects.public(), statistics.since_for("24h"))
    assert [(s.provider_name, s.samples) for s in day] == [("Direct", 1)]
    week = statistics.model_stats(BenchmarkResult.objects.public(), statistics.since_for("7d"))
    assert [(s.provider_name, s.ttft_p50_ms) for s in week] == [("Direct", 500.0)]
    month = statistics.model_stats(BenchmarkResult.objects.public(), statistics.since_for("30d"))
    assert [(s.provider_name, s.is_aggregator) for s in month] == [("Router", True), ("Direct", False)]


def test_empty_results_and_a_constant_number_of_queries(run, direct):
    assert statistics.model_stats(BenchmarkResult.objects.public(), since_24h()) == []
    for i in range(5):
        model = Model.objects.create(provider=direct, name=f"m{i}")
        Price.objects.create(model=model, input_mtok=Decimal("1"), output_mtok=Decimal("1"),
                             valid_from=timezone.now() - timedelta(days=1))
        add(run, model)
    with CaptureQueriesContext(connection) as queries:
        stats = statistics.model_stats(BenchmarkResult.objects.public(), since_24h())
    assert len(stats) == 5 and len(queries) == 2


def test_timeline_buckets_with_gaps(run, direct):
    model = Model.objects.create(provider=direct, name="m")
    add(run, model, ttft=100.0, ago=timedelta(minutes=30))
    add(run, model, ttft=300.0, ago=timedelta(minutes=20))
    add(run, model, success=False, ago=timedelta(minutes=10))
    add(run, model, ttft=700.0, ago=timedelta(hours=5, minutes=30))
    add(run, model, ttft=1.0, ago=timedelta(days=2))  # outside the range

    line = statistics.timeline(BenchmarkResult.objects.public(), statistics.since_for("24h"), buckets=24)
    assert len(line["labels"]) == 24 and line["labels"] == sorted(line["labels"])
    [series] = line["series"]
    assert series["model"] == "m"
    assert series["ttft_p50_ms"][23] == 200.0 and series["error_rate"][23] == pytest.approx(1 / 3)
    assert series["ttft_p50_ms"][18] == 700.0 and series["error_rate"][18] == 0.0
    assert series["ttft_p50_ms"][0] is None and series["error_rate"][0] is None
    assert sum(v is not None for v in series["tps_p50"]) == 2


def test_timeline_of_nothing_and_of_only_failures(run, direct):
    empty = statistics.timeline(BenchmarkResult.objects.public(), since_24h(), buckets=6)
    assert len(empty["labels"]) == 6 and empty["series"] == []
    add(run, Model.objects.create(provider=direct, name="down"), success=False)
    [series] = statistics.timeline(BenchmarkResult.objects.public(), since_24h(), buckets=6)["series"]
    assert series["latency_p50_ms"] == [None] * 6 and series["error_rate"][-1] == 1.0
