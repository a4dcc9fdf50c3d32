"""Helpers for the tests of the gateway's Redis state (cache, limits, budgets): the two
backends, a way to run a coroutine against the gateway's async client, and state factories.

    @pytest.fixture(params=BACKENDS) ... gw_backend      # "redis" (shared server) or "standin" (fakeredis)
    run(lambda r: admit(r, ...))                          # in a fresh event loop, client closed after
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from django.test import override_settings

from gateway import redis as gateway_redis
from gateway.state import BudgetState, LimitSpec, ProjectState

T = TypeVar("T")
BACKENDS = ["redis", "standin"]


@pytest.fixture(params=BACKENDS)
def gw_backend(request) -> str:
    """Every test using it runs against the real Redis and against the in-process stand-in
    (what `make run` uses without REDIS_URL). The stand-in starts empty for each test; the real
    Redis's keys of this checkout are cleared by tests/conftest.py."""
    gateway_redis.reset_for_fork()  # drop clients cached by an earlier test for the other backend
    if request.param == "standin":
        with override_settings(GATEWAY_REDIS_URL=""):
            assert not gateway_redis.is_shared()
            yield request.param
    else:
        assert gateway_redis.is_shared()
        yield request.param
    gateway_redis.reset_for_fork()


def run(make: Callable[..., Awaitable[T]]) -> T:
    """Run `make(r)` in a new event loop with the gateway's async client for that loop."""

    async def main() -> T:
        r = gateway_redis.async_client()
        try:
            return await make(r)
        finally:
            await r.aclose()

    return asyncio.run(main())


def project_state(
    *, project_id: int = 101, project_limits: LimitSpec | None = None,
    token_limits: dict[int, LimitSpec] | None = None, budgets: tuple[BudgetState, ...] = (),
) -> ProjectState:
    return ProjectState(
        project_id=project_id, project_uuid="00000000-0000-0000-0000-000000000101", organization_id=1,
        cache_enabled=True, cache_ttl_seconds=3600, store_bodies=False, body_max_bytes=32768, routes={},
        project_limits=project_limits, token_limits=token_limits or {}, hard_budgets=budgets,
    )


def limits(rpm: int | None = None, tpm: int | None = None, rpd: int | None = None, tpd: int | None = None) -> LimitSpec:
    return LimitSpec(rpm=rpm, tpm=tpm, rpd=rpd, tpd=tpd)


def budget_state(
    budget_id: int = 7, *, amount: int, spent: int = 0, start: float | None = None, length: float = 86400,
    token_id: int | None = None, model: str = "", tag_key: str = "", tag_value: str = "",
) -> BudgetState:
    """A hard budget whose current period started an hour ago (unless `start` is given)."""
    start = time.time() - 3600 if start is None else start
    return BudgetState(
        budget_id=budget_id, period_start=start, period_end=start + length, amount_micro_usd=amount,
        spent_micro_usd=spent, token_id=token_id, model=model, tag_key=tag_key, tag_value=tag_value,
    )
