from __future__ import annotations

import logging

from celery import shared_task

from . import discovery, execution, prices
from .models import Run, Target

logger = logging.getLogger(__name__)


@shared_task(name="benchmarks.tasks.sync_prices")
def sync_prices() -> str:
    """Daily: add any new or changed prices from genai-prices' bundled data."""
    return str(prices.sync_prices())


@shared_task(name="benchmarks.tasks.sync_models")
def sync_models() -> str:
    """Weekly: list each active provider's models; add new ones (inactive), mark vanished ones."""
    return str(discovery.sync_models())


@shared_task(name="benchmarks.tasks.run_public_benchmarks", ignore_result=False)
def run_public_benchmarks() -> str | None:
    """Every 15 minutes (editable in the admin): benchmark every active public model. Skips,
    rather than overlaps, when the previous public run is still going."""
    try:
        run = execution.start_run(
            name="Scheduled public benchmark", triggered_by=Run.Trigger.SCHEDULE,
            schedule_key=execution.PUBLIC_SCHEDULE,
        )
    except execution.RunAlreadyActive:
        logger.info("Public benchmark run skipped: the previous one is still active")
        return None
    return str(execution.execute_run(run).uuid)


@shared_task(name="benchmarks.tasks.run_target", ignore_result=False)
def run_target(target_uuid: str) -> str | None:
    """A private target's beat schedule (benchmarks/schedules.py): benchmark it now. Skips,
    rather than overlaps, while another run of the same target is pending or running (including
    a "Run now"), and does nothing for a target that was paused or deleted since beat sent this."""
    target = (
        Target.objects.dangerously_unscoped().select_related("organization")
        .filter(uuid=target_uuid, is_enabled=True).first()
    )
    if target is None:
        logger.info("Scheduled run of target %s skipped: it is paused or gone", target_uuid)
        return None
    try:
        run = execution.start_run(
            name=f"{target.name} (scheduled)", triggered_by=Run.Trigger.SCHEDULE,
            organization=target.organization, target=target, schedule_key=target.schedule_key,
        )
    except execution.RunAlreadyActive:
        logger.info("Scheduled run of target %s skipped: the previous one is still active", target_uuid)
        return None
    return str(execution.execute_run(run).uuid)


@shared_task(name="benchmarks.tasks.execute_run", ignore_result=False)
def execute_run(run_uuid: str) -> str:
    """Execute a run created by "Run now" (page or API)."""
    run = Run.objects.dangerously_unscoped().select_related("target").get(uuid=run_uuid)
    return execution.execute_run(run).status
