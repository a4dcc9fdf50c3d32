"""Recommendations from a project's own traffic and the price table; each states its numbers
and assumptions, never vague advice.

Kinds:
- `cheaper_model`: for each model the project uses, models in a comparable tier (same blended
  price band, at least the same context window, chat models of direct providers in the
  genai-prices catalog) that would have served the same traffic (its average input, cached and
  output tokens per request) for less; the monthly saving if `share` of the traffic moved; the
  candidate's and the current model's p50 TTFT and TPS from the public benchmarks when Pulse
  has measured them.
- `price_rise`: a model whose price went up in the last 90 days.
- `prompt_caching`: heavy input, no cached tokens, on a model whose provider offers a cache-read
  price: the saving if half the input were served from the cache.
- `concentration`: one model takes most of the spend (a single point of price and outage risk).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from django.db.models import Sum
from django.utils import timezone
from genai_prices import data_snapshot

from accounts.models import Project
from benchmarks import statistics
from benchmarks.models import BenchmarkResult, Model, Price
from benchmarks.prices import base_price

from .models import CostRollup
from .money import decimal_string
from .pricing import PriceBook

WINDOW_DAYS = 30
MILLION = Decimal(1_000_000)
# Blended $/Mtok (3:1 input:output) bands that define "a comparable tier".
BANDS = (Decimal("0.5"), Decimal("3"), Decimal("10"))
CANDIDATE_PROVIDERS = ("openai", "anthropic", "google", "mistral", "deepseek", "groq", "x-ai", "together", "fireworks")
NOT_CHAT = ("embed", "tts", "whisper", "image", "dall-e", "moderation", "audio", "realtime", "transcribe", "search", "vision-preview")
MIN_SAVING_SHARE = Decimal("0.10")  # below 10 % cheaper, switching is not worth the risk
CONCENTRATION = Decimal("0.70")


@dataclass
class Recommendation:
    kind: str
    provider: str
    model: str
    title: str
    detail: str
    monthly_saving_usd: Decimal | None = None
    assumptions: list[str] = field(default_factory=list)
    numbers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["monthly_saving_usd"] = None if self.monthly_saving_usd is None else decimal_string(self.monthly_saving_usd)
        return data


@dataclass
class Traffic:
    provider: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: Decimal

    @property
    def avg_input(self) -> Decimal:
        return Decimal(self.input_tokens) / self.requests

    @property
    def avg_output(self) -> Decimal:
        return Decimal(self.output_tokens) / self.requests

    @property
    def avg_cached(self) -> Decimal:
        return Decimal(self.cached_tokens) / self.requests


@dataclass
class Candidate:
    provider: str
    model: str
    name: str
    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal | None
    context_window: int | None

    @property
    def blended(self) -> Decimal:
        return (3 * self.input_mtok + self.output_mtok) / 4

    def cost_per_request(self, t: Traffic) -> Decimal:
        cache_read = self.cache_read_mtok if self.cache_read_mtok is not None else self.input_mtok
        uncached = t.avg_input - t.avg_cached
        return (uncached * self.input_mtok + t.avg_cached * cache_read + t.avg_output * self.output_mtok) / MILLION


def band_of(blended: Decimal) -> int:
    return sum(1 for edge in BANDS if blended >= edge)


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def traffic_of(project: Project, since: datetime) -> list[Traffic]:
    rows = (
        CostRollup.objects.dangerously_unscoped()
        .filter(project=project, granularity=CostRollup.Granularity.DAY, tag_key="", bucket__gte=since)
        .values("provider", "model")
        .annotate(r=Sum("requests"), i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cached_tokens"), cost=Sum("cost_usd"))
    )
    return [Traffic(r["provider"], r["model"], r["r"], r["i"], r["o"], r["c"], r["cost"] or Decimal(0)) for r in rows if r["r"]]


def catalog_candidates(now: datetime) -> list[Candidate]:
    snapshot = data_snapshot.get_snapshot()
    found = []
    for provider in snapshot.providers:
        if provider.id not in CANDIDATE_PROVIDERS:
            continue
        for info in provider.models:
            if info.deprecated or any(word in info.id for word in NOT_CHAT):
                continue
            prices = info.get_prices(now)
            input_mtok, output_mtok = base_price(prices.input_mtok), base_price(prices.output_mtok)
            if not input_mtok or not output_mtok:
                continue
            found.append(Candidate(provider.id, info.id, info.name or info.id, input_mtok, output_mtok,
                                   base_price(prices.cache_read_mtok), info.context_window))
    return found


def benchmark_speed(since: datetime) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """(provider, model) -> (p50 TTFT ms, p50 TPS) from the public benchmarks, keyed both by the
    provider's genai-prices id (what events carry) and by its lower-cased name."""
    stats = statistics.model_stats(BenchmarkResult.objects.public(), since)
    ids = dict(
        Model.objects.filter(uuid__in=[s.model_uuid for s in stats if s.model_uuid])
        .values_list("uuid", "provider__genai_prices_id")
    )
    speeds = {}
    for s in stats:
        speed = (s.ttft_p50_ms, s.tps_p50)
        speeds[(s.provider_name.lower(), s.model_name)] = speed
        genai_id = ids.get(UUID(str(s.model_uuid))) if s.model_uuid else None
        if genai_id:
            speeds[(genai_id, s.model_name)] = speed
    return speeds


def recommend(project: Project, *, share: Decimal = Decimal("0.5"), now: datetime | None = None) -> list[Recommendation]:
    now = now or timezone.now()
    since = (now - timedelta(days=WINDOW_DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    traffic = traffic_of(project, since)
    if not traffic:
        return []
    days = Decimal(max((now - since).days, 1))
    to_month = Decimal(30) / days
    book = PriceBook.for_pairs({(t.provider, t.model) for t in traffic}, adopt=False)
    candidates = catalog_candidates(now)
    speeds = benchmark_speed(now - timedelta(days=7))
    total_cost = sum((t.cost_usd for t in traffic), Decimal(0))
    found: list[Recommendation] = []

    for t in traffic:
        price = book.price_for(t.provider, t.model, now)
        if price is None:
            continue
        current = Candidate(t.provider, t.model, t.model, price.input_mtok, price.output_mtok, price.cache_read_mtok,
                            price.model.context_window)
        monthly_requests = Decimal(t.requests) * to_month
        current_per_request = current.cost_per_request(t)
        band = band_of(current.blended)
        cheaper = []
        for c in candidates:
            if (c.provider, c.model) == (t.provider, t.model) or band_of(c.blended) != band:
                continue
            if current.context_window and (c.context_window or 0) < current.context_window:
                continue
            per_request = c.cost_per_request(t)
            if per_request <= current_per_request * (1 - MIN_SAVING_SHARE):
                cheaper.append((per_request, c))
        best: dict[str, tuple[Decimal, Candidate]] = {}  # one offer per model (e.g. Claude direct vs on Vertex)
        for per_request, c in sorted(cheaper, key=lambda pair: pair[0]):
            best.setdefault(c.model, (per_request, c))
        for per_request, c in list(best.values())[:3]:
            saving = (current_per_request - per_request) * monthly_requests * share
            current_speed = speeds.get((t.provider, t.model), (None, None))
            candidate_speed = speeds.get((c.provider, c.model), (None, None))
            found.append(Recommendation(
                kind="cheaper_model", provider=t.provider, model=t.model,
                title=f"Move {share:.0%} of {t.model} traffic to {c.provider}/{c.model}: save ${_money(saving)}/month",
                detail=(f"At your average {t.avg_input:.0f} input ({t.avg_cached:.0f} cached) and {t.avg_output:.0f} output "
                        f"tokens per request, {c.model} costs ${per_request:.6f} per request against ${current_per_request:.6f} "
                        f"for {t.model} ({(1 - per_request / current_per_request):.0%} less)."),
                monthly_saving_usd=_money(saving),
                assumptions=[
                    f"Traffic of the last {days} days ({t.requests:,} requests) scaled to 30 days: {monthly_requests:,.0f} requests.",
                    f"{share:.0%} of it moves; the other model answers in as many tokens.",
                    f"Comparable tier: the same blended price band (3:1 input:output; bands at $0.5, $3, $10 per Mtok) "
                    f"and at least {current.context_window or 'the same'} tokens of context. Check quality on your own prompts.",
                    "Prices: genai-prices' current list prices for the candidate, Pulse's price table for the current model.",
                ],
                numbers={
                    "current_cost_per_request_usd": decimal_string(current_per_request.quantize(Decimal("1e-8"))),
                    "candidate_cost_per_request_usd": decimal_string(per_request.quantize(Decimal("1e-8"))),
                    "monthly_requests": int(monthly_requests),
                    "share": decimal_string(share),
                    "candidate_provider": c.provider, "candidate_model": c.model,
                    "current_ttft_p50_ms": current_speed[0], "current_tps_p50": current_speed[1],
                    "candidate_ttft_p50_ms": candidate_speed[0], "candidate_tps_p50": candidate_speed[1],
                },
            ))

        previous = (
            Price.objects.filter(model=price.model, valid_from__lt=price.valid_from).order_by("-valid_from").first()
            if price.valid_from >= now - timedelta(days=90) else None
        )
        if previous is not None and price.blended_mtok > previous.blended_mtok:
            extra = (current_per_request - Candidate("", "", "", previous.input_mtok, previous.output_mtok,
                                                     previous.cache_read_mtok, None).cost_per_request(t)) * monthly_requests
            found.append(Recommendation(
                kind="price_rise", provider=t.provider, model=t.model,
                title=f"{t.model} got more expensive on {price.valid_from:%Y-%m-%d}: +${_money(extra)}/month at your volume",
                detail=(f"Blended price went from ${previous.blended_mtok:.4f} to ${price.blended_mtok:.4f} per Mtok "
                        f"(input ${previous.input_mtok} → ${price.input_mtok}, output ${previous.output_mtok} → ${price.output_mtok})."),
                monthly_saving_usd=None,
                assumptions=[f"Your last {days} days of traffic scaled to 30 days ({monthly_requests:,.0f} requests)."],
                numbers={"previous_blended_mtok": str(previous.blended_mtok), "blended_mtok": str(price.blended_mtok),
                         "monthly_extra_usd": str(_money(extra))},
            ))

        heavy_input = t.input_tokens >= 5 * max(t.output_tokens, 1) and t.avg_input >= 1024
        if heavy_input and t.cached_tokens == 0 and price.cache_read_mtok is not None and price.cache_read_mtok < price.input_mtok:
            saving = (t.avg_input / 2) * (price.input_mtok - price.cache_read_mtok) / MILLION * monthly_requests
            found.append(Recommendation(
                kind="prompt_caching", provider=t.provider, model=t.model,
                title=f"Use prompt caching on {t.model}: save up to ${_money(saving)}/month",
                detail=(f"{t.model} averages {t.avg_input:.0f} input and {t.avg_output:.0f} output tokens per request, with no "
                        f"cached tokens. Cached input costs ${price.cache_read_mtok}/Mtok instead of ${price.input_mtok}/Mtok."),
                monthly_saving_usd=_money(saving),
                assumptions=["Half of each prompt is a stable prefix (system prompt, tools, documents) the provider can cache.",
                             "Cache writes are charged like input (some providers charge a premium for them)."],
                numbers={"avg_input_tokens": int(t.avg_input), "cache_read_mtok": str(price.cache_read_mtok),
                         "input_mtok": str(price.input_mtok)},
            ))

    if total_cost > 0:
        top = max(traffic, key=lambda t: t.cost_usd)
        top_share = top.cost_usd / total_cost
        if top_share >= CONCENTRATION and len(traffic) >= 1:
            found.append(Recommendation(
                kind="concentration", provider=top.provider, model=top.model,
                title=f"{top.model} takes {top_share:.0%} of your spend",
                detail=("One model carries most of the cost: a price change or an outage of it hits the whole project. "
                        "Benchmark an alternative on the Benchmarks page and keep it ready as a fallback."),
                assumptions=[f"Spend over the last {days} days: ${_money(total_cost)} in all, ${_money(top.cost_usd)} on {top.model}."],
                numbers={"share": decimal_string(top_share.quantize(Decimal("0.001"))), "model_cost_usd": decimal_string(_money(top.cost_usd))},
            ))
    return sorted(found, key=lambda r: -(r.monthly_saving_usd or Decimal(0)))
