"""Run every target of one benchmark run at once, on one event loop, independent of the database.

    results = run_targets_sync(targets, on_result=show_progress)   # [(target, Measurement), ...]

The caller (a Celery task, a management command, a bench script) builds the `RunTarget`s and stores
the `Measurement`s; this module only measures, following the runner rules in DESIGN.md:

- all targets start together (a semaphore caps only very large runs), so a run takes about as long
  as its slowest target rather than the sum of all of them;
- one shared client (`providers.transport.benchmark_client`: httpx's API on aiohttp's faster
  connection handling) whose pool is as wide as the run, so no target ever waits for a
  connection; HTTP/1.1, one stream per fresh connection, which keeps each stream's timing
  independent of the others' (see `benchmark_client` for why connections are not reused);
  one client per egress policy, in fact: targets that may not reach private addresses (a
  tenant's, lib/egress.py) never share a client with those that may (an operator's);
- each target is bounded by its own `StreamRequest` timeouts (the adapter enforces them);
- a failure is a result: nothing one target does (or the `on_result` callback does for it) can
  cancel or crash another;
- a unique prompt per request (a short random nonce line in front), so a provider's prompt cache
  cannot make one run's TTFT look better than another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from .providers import ErrorKind, Measurement, StreamRequest, adapter_for
from .providers.transport import benchmark_client

logger = logging.getLogger(__name__)

OnResult = Callable[["RunTarget", Measurement], Awaitable[None] | None]

DEFAULT_MAX_CONCURRENCY = 256


@dataclass(frozen=True)
class RunTarget:
    """One thing to measure in a run. `key` is the caller's own id (e.g. a Model's pk)."""

    key: str
    kind: str  # a provider kind, see benchmarks.providers.ADAPTERS
    request: StreamRequest
    unique_prompt: bool = True
    # Whether the base URL may reach private and local addresses (lib/egress.py). Off unless the
    # caller says so: operators' own providers may; a tenant's target only when its
    # organization is allowed (Organization.allows_private_egress).
    allow_private: bool = False

    def prompt_for(self, nonce: str) -> str:
        """The prompt actually sent: with a nonce line in front when `unique_prompt` is set.

        In front, not behind, because provider prompt caches match on prefixes."""
        if not self.unique_prompt:
            return self.request.prompt
        return f"[run {nonce}] {self.request.prompt}"


def new_run_id() -> str:
    """Random per run; combined with each target's position it makes every nonce unique."""
    return secrets.token_hex(3)


async def run_targets(
    targets: Sequence[RunTarget],
    *,
    on_result: OnResult | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> list[tuple[RunTarget, Measurement]]:
    """Measure all targets concurrently; results in input order, one per target, never raises
    for a target's failure (only cancellation of the whole run propagates)."""
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be >= 1")
    if not targets:
        return []
    width = min(len(targets), max_concurrency)
    gate = asyncio.Semaphore(width)
    run_id = new_run_id()
    results: list[Measurement | None] = [None] * len(targets)

    async def one(client: httpx.AsyncClient, index: int, target: RunTarget) -> None:
        async with gate:
            measurement = await _measure(client, target, target.prompt_for(f"{run_id}-{index}"))
        results[index] = measurement
        if on_result is not None:
            await _notify(on_result, target, measurement)

    async with contextlib.AsyncExitStack() as stack:
        clients: dict[bool, httpx.AsyncClient] = {}
        for policy in sorted({target.allow_private for target in targets}):
            count = sum(1 for target in targets if target.allow_private == policy)
            clients[policy] = await stack.enter_async_context(
                benchmark_client(min(count, max_concurrency), allow_private=policy)
            )
        async with asyncio.TaskGroup() as group:
            for index, target in enumerate(targets):
                group.create_task(one(clients[target.allow_private], index, target), name=f"pulse-target-{target.key}")
    return [(target, measurement) for target, measurement in zip(targets, results, strict=True)]  # type: ignore[misc]


def run_targets_sync(
    targets: Sequence[RunTarget],
    *,
    on_result: OnResult | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> list[tuple[RunTarget, Measurement]]:
    """`run_targets` on a fresh event loop, for Celery tasks and management commands."""
    return asyncio.run(run_targets(targets, on_result=on_result, max_concurrency=max_concurrency))


async def _measure(client: httpx.AsyncClient, target: RunTarget, prompt: str) -> Measurement:
    started_at, sent_ns, started = datetime.now(UTC), time.time_ns(), time.perf_counter_ns()
    try:
        return await adapter_for(target.kind).stream(client, target.request, prompt=prompt)
    except Exception as error:  # a bug in one adapter must not sink the run
        logger.exception(
            "Benchmark target %s (%s, %s) failed unexpectedly",
            target.key,
            target.kind,
            target.request.model,
        )
        return Measurement(
            model=target.request.model,
            started_at=started_at,
            request_sent_ns=sent_ns,
            success=False,
            error_kind=ErrorKind.CONNECT_ERROR,
            error_message=f"Unexpected error: {type(error).__name__}: {error}"[:1000],
            total_latency_ms=(time.perf_counter_ns() - started) / 1e6,
        )


async def _notify(on_result: OnResult, target: RunTarget, measurement: Measurement) -> None:
    try:
        outcome = on_result(target, measurement)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:  # progress reporting must not cost a result
        logger.exception("on_result failed for benchmark target %s", target.key)
