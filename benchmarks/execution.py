"""Turning a Run into measurements and stored results.

`start_run()` creates the Run (refusing to overlap another active run of the same schedule);
`execute_run()` builds one RunTarget per model, lets the runner measure them all concurrently,
and stores each result, priced at its own timestamp, as soon as it arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Organization, User

from .models import BenchmarkResult, Model, Price, Run, Target
from .providers import Measurement, StreamRequest
from .runner import RunTarget, run_targets_sync

logger = logging.getLogger(__name__)

PUBLIC_SCHEDULE = "public"
# Called with each stored result and how many of how many are done (e.g. live console progress).
OnMeasured = Callable[[BenchmarkResult, int, int], None]
# A run still "running" after this long lost its worker; it no longer blocks its schedule.
STALE_AFTER = timedelta(hours=1)


class RunAlreadyActive(Exception):
    """Another run of the same schedule is pending or running."""


@dataclass(frozen=True)
class Planned:
    """What one RunTarget stands for, to store its result against the right rows."""

    model: Model | None
    provider_name: str
    model_name: str


def start_run(
    *,
    name: str,
    triggered_by: str,
    organization: Organization | None = None,
    target: Target | None = None,
    created_by: User | None = None,
    schedule_key: str = "",
) -> Run:
    _expire_stale_runs(schedule_key)
    try:
        with transaction.atomic():
            return Run.objects.create(
                name=name, triggered_by=triggered_by, organization=organization, target=target,
                created_by=created_by, schedule_key=schedule_key,
            )
    except IntegrityError as error:  # run_one_active_per_schedule
        raise RunAlreadyActive(f"A run of schedule {schedule_key!r} is already pending or running.") from error


def _expire_stale_runs(schedule_key: str) -> None:
    if not schedule_key:
        return
    Run.objects.dangerously_unscoped().filter(
        schedule_key=schedule_key,
        status__in=[Run.Status.PENDING, Run.Status.RUNNING],
        created_at__lt=timezone.now() - STALE_AFTER,
    ).update(status=Run.Status.FAILED, finished_at=timezone.now())


def _request(base_url: str, api_key: str, model: str, prompt: str, max_tokens: int) -> StreamRequest:
    return StreamRequest(
        base_url=base_url, api_key=api_key, model=model, prompt=prompt, max_tokens=max_tokens,
        read_timeout_s=settings.BENCHMARK_READ_TIMEOUT_S, total_timeout_s=settings.BENCHMARK_TIMEOUT_S,
    )


def plan(run: Run) -> list[tuple[RunTarget, Planned]]:
    """One RunTarget per model: a private target's model names, or every active public model."""
    if run.target is not None:
        target = run.target
        key = target.api_key.reveal()
        # A tenant's URL: private addresses only if its organization is allowed (lib/egress.py).
        allow_private = target.organization.allows_private_egress
        return [
            (
                RunTarget(key=f"{target.uuid}:{name}", kind=target.kind, allow_private=allow_private,
                          request=_request(target.base_url, key, name, target.prompt, target.max_tokens)),
                Planned(model=None, provider_name=target.name, model_name=name),
            )
            for name in target.model_names
        ]
    models = Model.objects.filter(is_active=True, provider__is_active=True).select_related("provider")
    return [
        (
            # Operators configure public providers (not tenant input): they may be private.
            RunTarget(key=str(model.uuid), kind=model.provider.kind, allow_private=True,
                      request=_request(model.provider.base_url, model.provider.api_key_value(), model.name,
                                       settings.BENCHMARK_PROMPT, settings.BENCHMARK_MAX_TOKENS)),
            Planned(model=model, provider_name=model.provider.name, model_name=model.name),
        )
        for model in models
    ]


def store_result(run: Run, planned: Planned, measurement: Measurement) -> BenchmarkResult:
    result = BenchmarkResult(
        run=run, organization=run.organization, target=run.target,
        model=planned.model, provider=planned.model.provider if planned.model else None,
        provider_name=planned.provider_name, model_name=planned.model_name,
        input_tokens=measurement.input_tokens, output_tokens=measurement.output_tokens,
        cached_tokens=measurement.cached_tokens, reasoning_tokens=measurement.reasoning_tokens,
        token_count_source=measurement.token_count_source or "",
        total_latency_ms=measurement.total_latency_ms, ttft_ms=measurement.ttft_ms, tps=measurement.tps,
        mean_inter_chunk_ms=measurement.mean_inter_chunk_ms, chunk_count=measurement.chunk_count,
        status_code=measurement.status_code, success=measurement.success,
        error_kind=measurement.error_kind or "", error_message=measurement.error_message,
        retry_after_s=measurement.retry_after_s, response_text=measurement.response_text,
        created_at=measurement.started_at,
    )
    price = Price.objects.valid_at(planned.model, result.created_at) if planned.model else None
    result.price(price)
    result.save()
    return result


def execute_run(run: Run, on_measured: OnMeasured | None = None) -> Run:
    """Measure every planned target concurrently; each result is stored as it arrives, so a
    page showing the run fills in live. Failures of targets are results; the run finishes.
    `on_measured(result, done, total)` is told of each stored result (its errors are logged)."""
    run.status, run.started_at = Run.Status.RUNNING, timezone.now()
    run.save(update_fields=["status", "started_at"])
    planned = plan(run)
    by_key = {target.key: info for target, info in planned}
    done = 0

    def store(info: Planned, measurement: Measurement) -> None:
        nonlocal done
        result = store_result(run, info, measurement)
        done += 1
        if on_measured is not None:
            on_measured(result, done, len(planned))

    save = sync_to_async(store, thread_sensitive=True)

    async def on_result(target: RunTarget, measurement: Measurement) -> None:
        await save(by_key[target.key], measurement)

    try:
        run_targets_sync([target for target, _ in planned], on_result=on_result)
    except Exception:
        logger.exception("Benchmark run %s failed", run.uuid)
        run.status = Run.Status.FAILED
    else:
        run.status = Run.Status.FINISHED
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])
    return run
