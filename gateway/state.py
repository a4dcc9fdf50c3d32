"""The hot path's snapshot of what the database says about tokens and projects.

Part B1 builds these from the database and caches them in Redis and in process; this module
holds only the frozen dataclasses the other parts of the gateway consume (B1's full version,
with the builders, replaces it)."""

from __future__ import annotations

from dataclasses import dataclass


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
    token_id: int | None  # narrowing filters ("" = none)
    model: str
    tag_key: str
    tag_value: str


@dataclass(frozen=True)
class UpstreamState:
    connection_id: int
    connection_name: str
    kind: str
    provider: str
    base_url: str
    api_key: str  # decrypted; the in-process copy only — NEVER written to Redis in clear
    allow_private: bool
    model: str
    weight: int
    input_micro_per_mtok: int | None
    output_micro_per_mtok: int | None
    cached_micro_per_mtok: int | None
    benchmark_ttft_p50_ms: float | None

    @property
    def label(self) -> str:
        return f"{self.connection_name}/{self.model}"


@dataclass(frozen=True)
class RouteState:
    name: str
    strategy: str
    upstreams: tuple[UpstreamState, ...]


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
