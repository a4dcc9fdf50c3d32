"""Which upstreams a call tries, in which order.

    order(route, live_ttft={...}, rng=random)      -> the route's upstreams by its strategy
    healthy(candidates, breakers, now)             -> without open breakers (and who must probe)

Strategies:
- ordered: the route's order; the rest are fallbacks in that order.
- weighted: one upstream drawn at random by weight, then the others by weight as fallbacks
  (each drawn from those left), so traffic splits by weight and fallbacks still exist.
- fastest: lowest p50 TTFT first. The score blends the gateway's own recent measurements of the
  upstream (live) with Pulse's benchmark p50: the more live samples, the more they count
  (`LIVE_WEIGHT_SAMPLES` samples weigh as much as the benchmark). An upstream with neither
  comes after those with data, in route order.
- cheapest: lowest current price first (3:1 input:output blend per million tokens, as the
  leaderboard blends); unpriced upstreams last, in route order.

Open breakers: a candidate whose breaker is open is skipped; one cooled down is tried only by
the caller that wins its probe. If every candidate is open, the one open longest is tried
anyway (a call that might succeed beats a certain 502).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence

from .breaker import PROBE, SKIP, USE, Breaker
from .state import RouteState, UpstreamState

ORDERED, WEIGHTED, FASTEST, CHEAPEST = "ordered", "weighted", "fastest", "cheapest"
LIVE_WEIGHT_SAMPLES = 10

UpstreamId = tuple[int, str]  # (connection id, model)


def upstream_id(upstream: UpstreamState) -> UpstreamId:
    return (upstream.connection_id, upstream.model)


def order(route: RouteState, upstreams: Sequence[UpstreamState], *,
          live_ttft: Mapping[UpstreamId, Sequence[float]] | None = None,
          rng: random.Random | None = None) -> list[UpstreamState]:
    """`upstreams` (the route's, those that serve the endpoint) in the order to try them."""
    if route.strategy == WEIGHTED:
        return by_weight(upstreams, rng or random)
    if route.strategy == FASTEST:
        return fastest_first(upstreams, live_ttft or {})
    if route.strategy == CHEAPEST:
        return cheapest_first(upstreams)
    return list(upstreams)


def by_weight(upstreams: Sequence[UpstreamState], rng: random.Random) -> list[UpstreamState]:
    left, ordered = list(upstreams), []
    while left:
        chosen = rng.choices(range(len(left)), weights=[max(u.weight, 1) for u in left])[0]
        ordered.append(left.pop(chosen))
    return ordered


def ttft_score(upstream: UpstreamState, live: Sequence[float]) -> float | None:
    """The blended p50 TTFT (ms), or None with no data at all."""
    benchmark = upstream.benchmark_ttft_p50_ms
    if not live:
        return benchmark
    measured = statistics.median(live)
    if benchmark is None:
        return measured
    share = len(live) / (len(live) + LIVE_WEIGHT_SAMPLES)
    return share * measured + (1 - share) * benchmark


def fastest_first(upstreams: Sequence[UpstreamState], live_ttft: Mapping[UpstreamId, Sequence[float]]) -> list[UpstreamState]:
    scored = [(ttft_score(u, live_ttft.get(upstream_id(u), ())), position, u) for position, u in enumerate(upstreams)]
    return [u for score, position, u in sorted(scored, key=lambda s: (s[0] is None, s[0] or 0.0, s[1]))]


def blended_price(upstream: UpstreamState) -> float | None:
    if not upstream.priced:
        return None
    return (3 * upstream.input_micro_per_mtok + upstream.output_micro_per_mtok) / 4


def cheapest_first(upstreams: Sequence[UpstreamState]) -> list[UpstreamState]:
    priced = [(blended_price(u), position, u) for position, u in enumerate(upstreams)]
    return [u for price, position, u in sorted(priced, key=lambda s: (s[0] is None, s[0] or 0.0, s[1]))]


def healthy(candidates: Sequence[UpstreamState], breakers: Mapping[UpstreamId, Breaker], now: float,
            cooldown_s: float) -> tuple[list[UpstreamState], set[UpstreamId]]:
    """The candidates to try, in order, and those among them that need a probe claim first."""
    usable, probes = [], set()
    for upstream in candidates:
        breaker = breakers.get(upstream_id(upstream), Breaker())
        verdict = breaker.verdict(now, cooldown_s)
        if verdict == USE:
            usable.append(upstream)
        elif verdict == PROBE:
            usable.append(upstream)
            probes.add(upstream_id(upstream))
        else:
            assert verdict == SKIP
    if usable or not candidates:
        return usable, probes
    oldest = min(candidates, key=lambda u: breakers.get(upstream_id(u), Breaker()).opened_at)
    return [oldest], set()
