"""What the hot path knows about tokens and projects, without SQL on a warm cache.

    store = StateStore()
    token = await store.token(r, prefix)          # TokenState | None (no such token)
    project = await store.project(r, project_id)  # ProjectState | None (no such project)

Snapshots are built from the database (`build_token_state`, `build_project_state`, sync, run
through `sync_to_async` on a miss only), kept in Redis (shared by every gateway process, TTL
GATEWAY_STATE_REDIS_TTL_S) and in process (GATEWAY_STATE_LOCAL_TTL_S, 1 s by default: a revoked
token stops working within it). Concurrent misses for one key build it once.

Invalidation (gateway/signals.py) bumps a generation counter in Redis and deletes the snapshot.
Every snapshot carries the generations it was built under, and a read accepts it only if they
still match. That closes the race in which a build that started before a change (it read the
old rows) writes its snapshot after the change's invalidation: the stale snapshot has an old
generation and is rebuilt instead of served for minutes. Generations: one per token prefix, one
per project, and one for everything (prices, which every project's routes use).

Provider keys: the in-process copy holds them decrypted; Redis only ever holds the Fernet
ciphertext (lib.encrypted), decrypted once per process and ciphertext.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from functools import lru_cache
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiToken, Project
from lib.encrypted import decrypt

from . import redis as gateway_redis

logger = logging.getLogger(__name__)

MICRO = Decimal(1_000_000)
BENCHMARK_WINDOW = timedelta(hours=24)  # the benchmark p50 TTFT is over the last day's results
BENCHMARK_MAX_ROWS = 5_000  # newest first: enough for a stable median, a bounded query
LOCAL_MAX_ENTRIES = 50_000  # a flood of made-up token prefixes must not grow the process


# -- the snapshots ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenState:  # by token prefix
    token_id: int
    prefix: str
    secret_hash: str
    organization_id: int
    project_id: int | None
    scopes: tuple[str, ...]
    revoked: bool
    expires_at: float | None  # epoch seconds
    name: str = ""

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class LimitSpec:  # None = unlimited
    rpm: int | None
    tpm: int | None
    rpd: int | None
    tpd: int | None


@dataclass(frozen=True)
class BudgetState:  # one hard budget covering the project
    budget_id: int
    period_start: float  # epoch seconds, the current period
    period_end: float
    amount_micro_usd: int  # amount converted to USD at today's rate, ×1e6
    spent_micro_usd: int  # DB spend this period when the state was built
    token_id: int | None
    model: str
    tag_key: str
    tag_value: str  # narrowing filters ("" = none)


@dataclass(frozen=True)
class UpstreamState:
    connection_id: int
    connection_name: str
    kind: str
    provider: str
    base_url: str
    api_key: str = field(repr=False)  # decrypted; the in-process copy only, never in Redis
    allow_private: bool
    model: str
    weight: int
    input_micro_per_mtok: int | None
    output_micro_per_mtok: int | None
    cached_micro_per_mtok: int | None
    benchmark_ttft_p50_ms: float | None
    encrypted_api_key: str = field(default="", repr=False)  # what Redis holds instead of api_key

    @property
    def label(self) -> str:
        return f"{self.connection_name}/{self.model}"

    @property
    def priced(self) -> bool:
        return self.input_micro_per_mtok is not None and self.output_micro_per_mtok is not None

    def cost_micro_usd(self, *, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> int | None:
        """Micro-dollars for these counts at the current price (rounded up: budgets never
        under-reserve), or None when unpriced. Cached input at the cache-read price."""
        if not self.priced:
            return None
        cached = min(max(cached_tokens, 0), input_tokens)
        cached_price = self.cached_micro_per_mtok if self.cached_micro_per_mtok is not None else self.input_micro_per_mtok
        total = ((input_tokens - cached) * self.input_micro_per_mtok + cached * cached_price
                 + output_tokens * self.output_micro_per_mtok)
        return -(-total // 1_000_000)


@dataclass(frozen=True)
class RouteState:
    name: str
    strategy: str
    upstreams: tuple[UpstreamState, ...]
    created_at: float = 0.0  # epoch seconds (GET /v1/models says when a model appeared)


@dataclass(frozen=True)
class ProjectState:
    project_id: int
    project_uuid: str
    organization_id: int
    cache_enabled: bool
    cache_ttl_seconds: int
    store_bodies: bool
    body_max_bytes: int
    routes: dict[str, RouteState]
    project_limits: LimitSpec | None
    token_limits: dict[int, LimitSpec]
    hard_budgets: tuple[BudgetState, ...]
    body_retention_days: int = 7
    valid_until: float | None = None  # epoch: the earliest budget period end (the snapshot's periods expire)

    def limits_for(self, token_id: int) -> tuple[LimitSpec | None, LimitSpec | None]:
        return self.project_limits, self.token_limits.get(token_id)


# -- (de)serialization for Redis --------------------------------------------------------------


def token_to_json(state: TokenState) -> dict:
    return asdict(state)


def token_from_json(data: dict) -> TokenState:
    return TokenState(**{**data, "scopes": tuple(data["scopes"])})


@lru_cache(maxsize=4096)
def _decrypted(ciphertext: str) -> str:
    return decrypt(ciphertext) if ciphertext else ""


def project_to_json(state: ProjectState) -> dict:
    data = asdict(state)
    for route in data["routes"].values():
        for upstream in route["upstreams"]:
            upstream.pop("api_key")  # only the ciphertext goes to Redis
    data["token_limits"] = {str(token_id): spec for token_id, spec in data["token_limits"].items()}
    return data


def _limit(data: dict | None) -> LimitSpec | None:
    return LimitSpec(**data) if data is not None else None


def project_from_json(data: dict) -> ProjectState:
    routes = {
        name: RouteState(
            name=route["name"], strategy=route["strategy"], created_at=route["created_at"],
            upstreams=tuple(
                UpstreamState(**upstream, api_key=_decrypted(upstream["encrypted_api_key"]))
                for upstream in route["upstreams"]
            ),
        )
        for name, route in data["routes"].items()
    }
    return ProjectState(**{
        **data, "routes": routes, "project_limits": _limit(data["project_limits"]),
        "token_limits": {int(token_id): _limit(spec) for token_id, spec in data["token_limits"].items()},
        "hard_budgets": tuple(BudgetState(**budget) for budget in data["hard_budgets"]),
    })


# -- building from the database (sync; on a miss only) -----------------------------------------


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def build_token_state(prefix: str) -> TokenState | None:
    close_old_connections()  # no request cycle here to retire a broken or old connection
    row = (
        ApiToken.objects.filter(prefix=prefix)
        .values_list("id", "secret_hash", "organization_id", "project_id", "scopes", "revoked_at", "expires_at", "name")
        .first()
    )
    if row is None:
        return None
    token_id, secret_hash, organization_id, project_id, scopes, revoked_at, expires_at, name = row
    return TokenState(
        token_id=token_id, prefix=prefix, secret_hash=secret_hash, organization_id=organization_id,
        project_id=project_id, scopes=tuple(scopes or ()), revoked=revoked_at is not None,
        expires_at=_epoch(expires_at), name=name,
    )


def _micro(amount: Decimal | None) -> int | None:
    return int((amount * MICRO).to_integral_value(rounding=ROUND_CEILING)) if amount is not None else None


def _prices(pairs: set[tuple[str, str]], now: datetime) -> dict[tuple[str, str], tuple[int | None, int | None, int | None]]:
    """The price in force now per (provider, model), in micro-USD per million tokens."""
    from costs.pricing import PriceBook

    if not pairs:
        return {}
    book = PriceBook.for_pairs(pairs)
    prices = {}
    for pair in pairs:
        price = book.price_for(*pair, now)
        if price is None:
            prices[pair] = (None, None, None)
        else:
            prices[pair] = (_micro(price.input_mtok), _micro(price.output_mtok), _micro(price.cache_read_mtok))
    return prices


def _benchmark_ttft(pairs: set[tuple[str, str]], organization_id: int, now: datetime) -> dict[tuple[str, str], float]:
    """p50 TTFT of the last day's successful benchmark results per (provider, model): public
    results and the organization's own. A benchmark Provider matches a connection's provider
    by genai-prices id or name, as pricing does (costs/pricing.py)."""
    from benchmarks.models import BenchmarkResult, Provider
    from benchmarks.statistics import percentile

    names = {provider.lower() for provider, _ in pairs}
    if not names:
        return {}
    matching = Q()
    for name in names:
        matching |= Q(genai_prices_id__iexact=name) | Q(name__iexact=name)
    provider_names: dict[int, set[str]] = {}
    for provider_id, name, prices_id in Provider.objects.filter(matching).values_list("id", "name", "genai_prices_id"):
        provider_names[provider_id] = {n for n in (name.lower(), (prices_id or "").lower()) if n in names}
    if not provider_names:
        return {}
    rows = (
        BenchmarkResult.objects.filter(
            Q(organization__isnull=True) | Q(organization_id=organization_id),
            provider_id__in=provider_names, model_name__in={model for _, model in pairs},
            success=True, ttft_ms__isnull=False, created_at__gte=now - BENCHMARK_WINDOW,
        )
        .order_by("-created_at")
        .values_list("provider_id", "model_name", "ttft_ms")[:BENCHMARK_MAX_ROWS]
    )
    samples: dict[tuple[str, str], list[float]] = {}
    for provider_id, model, ttft in rows:
        for name in provider_names[provider_id]:
            samples.setdefault((name, model), []).append(ttft)
    return {pair: percentile(values, 0.5) for pair, values in samples.items()}


def _upstreams(project: Project, now: datetime) -> dict[str, RouteState]:
    from .models import Route, RouteUpstream

    routes = {name: (strategy, created_at.timestamp()) for name, strategy, created_at in
              Route.objects.filter(project=project, is_enabled=True).values_list("name", "strategy", "created_at")}
    rows = list(
        RouteUpstream.objects.filter(route__project=project, route__is_enabled=True, connection__is_enabled=True)
        .select_related("route", "connection")
        .order_by("route_id", "position", "id")
    )
    pairs = {(row.connection.provider.lower(), row.model) for row in rows}
    prices = _prices(pairs, now)
    ttft = _benchmark_ttft(pairs, project.organization_id, now)
    allow_private = project.organization.allows_private_egress
    upstreams: dict[str, list[UpstreamState]] = {name: [] for name in routes}
    for row in rows:
        connection = row.connection
        pair = (connection.provider.lower(), row.model)
        input_price, output_price, cached_price = prices.get(pair, (None, None, None))
        ciphertext = str(connection.api_key or "")
        upstreams[row.route.name].append(UpstreamState(
            connection_id=connection.id, connection_name=connection.name, kind=connection.kind,
            provider=connection.provider.lower(), base_url=connection.base_url,
            api_key=_decrypted(ciphertext), encrypted_api_key=ciphertext, allow_private=allow_private,
            model=row.model, weight=row.weight, input_micro_per_mtok=input_price,
            output_micro_per_mtok=output_price, cached_micro_per_mtok=cached_price,
            benchmark_ttft_p50_ms=ttft.get(pair),
        ))
    return {
        name: RouteState(name=name, strategy=strategy, upstreams=tuple(upstreams[name]), created_at=created_at)
        for name, (strategy, created_at) in routes.items()
    }


def _limits(project: Project) -> tuple[LimitSpec | None, dict[int, LimitSpec]]:
    from .models import RateLimit

    project_limits, token_limits = None, {}
    for limit in RateLimit.objects.filter(project=project):
        spec = LimitSpec(rpm=limit.requests_per_minute, tpm=limit.tokens_per_minute,
                         rpd=limit.requests_per_day, tpd=limit.tokens_per_day)
        if limit.api_token_id is None:
            project_limits = spec
        else:
            token_limits[limit.api_token_id] = spec
    return project_limits, token_limits


def _hard_budgets(project: Project, now: datetime) -> tuple[BudgetState, ...]:
    """The enabled hard budgets covering the project, as of now. `admission.budget_state` also
    brings each budget's Redis ledger up to date with the DB's spend (exactly: see admission)."""
    from alerts.models import Budget
    from costs.currency import Rates

    from .admission import budget_state

    budgets = list(
        Budget.objects.enabled().filter(enforcement=Budget.Enforcement.HARD).covering(project)
        .select_related("api_token", "organization", "project")
    )
    if not budgets:
        return ()
    rates = Rates.latest()
    return tuple(budget_state(budget, now=now, rates=rates) for budget in budgets)


def build_project_state(project_id: int, now: datetime | None = None) -> ProjectState | None:
    from .models import GatewaySettings

    close_old_connections()
    now = now or timezone.now()
    project = Project.objects.select_related("organization").filter(pk=project_id).first()
    if project is None:
        return None
    options = GatewaySettings.objects.filter(project=project).first() or GatewaySettings(project=project)
    project_limits, token_limits = _limits(project)
    budgets = _hard_budgets(project, now)
    return ProjectState(
        project_id=project.id, project_uuid=str(project.uuid), organization_id=project.organization_id,
        cache_enabled=options.cache_enabled, cache_ttl_seconds=options.cache_ttl_seconds,
        store_bodies=options.store_bodies, body_max_bytes=options.body_max_bytes,
        body_retention_days=options.body_retention_days,
        routes=_upstreams(project, now), project_limits=project_limits, token_limits=token_limits,
        hard_budgets=budgets, valid_until=min((b.period_end for b in budgets), default=None),
    )


# -- keys and invalidation ----------------------------------------------------------------------


def token_key(prefix: str) -> str:
    return gateway_redis.key("state", "token", prefix)


def project_key(project_id: int) -> str:
    return gateway_redis.key("state", "project", str(project_id))


def token_generation_key(prefix: str) -> str:
    return gateway_redis.key("state", "gen", "token", prefix)


def project_generation_key(project_id: int) -> str:
    return gateway_redis.key("state", "gen", "project", str(project_id))


def global_generation_key() -> str:
    return gateway_redis.key("state", "gen", "all")


def invalidate(*, token_prefixes: Iterable[str] = (), project_ids: Iterable[int] = (), everything: bool = False) -> None:
    """Retire snapshots (sync: Django's signals call it). Bumping the generation is what makes
    it safe; deleting the snapshot only frees its memory early."""
    client = gateway_redis.sync_client()
    pipe = client.pipeline(transaction=False)
    for prefix in token_prefixes:
        pipe.incr(token_generation_key(prefix))
        pipe.delete(token_key(prefix))
    for project_id in project_ids:
        pipe.incr(project_generation_key(project_id))
        pipe.delete(project_key(project_id))
    if everything:
        pipe.incr(global_generation_key())
    pipe.execute()


# -- the store ------------------------------------------------------------------------------------

_MISSING = object()


class _LocalCache:
    """key -> (value, expires at, monotonic). A TTL of 0 turns it off."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[Any, float]] = {}

    def get(self, key: str) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return _MISSING
        if entry[1] <= self._clock():
            del self._entries[key]
            return _MISSING
        return entry[0]

    def put(self, key: str, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._entries) >= LOCAL_MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (value, self._clock() + ttl)

    def clear(self) -> None:
        self._entries.clear()


def _generation(raw: bytes | None) -> int:
    return int(raw) if raw else 0


class StateStore:
    """One per process (gateway.proxy holds it); safe for one event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.local = _LocalCache(clock)
        self._building: dict[str, asyncio.Future] = {}

    async def token(self, r, prefix: str) -> TokenState | None:
        return await self._get(
            r, token_key(prefix), (token_generation_key(prefix),),
            lambda: sync_to_async(build_token_state)(prefix), token_to_json, token_from_json,
            ttl=lambda state: settings.GATEWAY_STATE_REDIS_TTL_S,
        )

    async def project(self, r, project_id: int) -> ProjectState | None:
        return await self._get(
            r, project_key(project_id), (project_generation_key(project_id), global_generation_key()),
            lambda: sync_to_async(build_project_state)(project_id), project_to_json, project_from_json,
            ttl=_project_ttl,
        )

    async def _get(self, r, key: str, generation_keys: tuple[str, ...], build: Callable[[], Awaitable[Any]],
                   encode: Callable[[Any], dict], decode: Callable[[dict], Any], *, ttl: Callable[[Any], int]) -> Any:
        local_ttl = settings.GATEWAY_STATE_LOCAL_TTL_S
        value = self.local.get(key)
        if value is not _MISSING:
            return value
        pending = self._building.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._building[key] = future
        try:
            value = await self._load(r, key, generation_keys, build, encode, decode, ttl)
            future.set_result(value)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._building[key]
        self.local.put(key, value, local_ttl)
        return value

    async def _load(self, r, key, generation_keys, build, encode, decode, ttl) -> Any:
        raw, *generations = await r.mget(key, *generation_keys)
        current = [_generation(g) for g in generations]
        if raw is not None:
            stored = orjson.loads(raw)
            if stored["gen"] == current:
                return decode(stored["state"]) if stored["state"] is not None else None
        value = await build()
        data = {"gen": current, "state": encode(value) if value is not None else None}
        await r.set(key, orjson.dumps(data), ex=ttl(value))
        return value


def _project_ttl(state: ProjectState | None) -> int:
    """Redis TTL of a project snapshot: its budgets' periods must not outlive their end."""
    ttl = settings.GATEWAY_STATE_REDIS_TTL_S
    if state is not None and state.valid_until is not None:
        ttl = min(ttl, math.ceil(state.valid_until - datetime.now(UTC).timestamp()))
    return max(1, ttl)
