from __future__ import annotations

from celery import shared_task

from . import currency, ingestion
from .models import CostEventBody


@shared_task(acks_late=True, reject_on_worker_lost=True)
def reprice_unpriced(chunk: int = ingestion.REPRICE_CHUNK) -> int:
    """Idempotent (each chunk is claimed with SKIP LOCKED, re-checked and committed with its
    rollup changes), so a redelivery after a worker crash only finishes the work."""
    return ingestion.reprice_unpriced(chunk=chunk)


@shared_task(autoretry_for=(Exception,), retry_backoff=60, max_retries=5)
def fetch_exchange_rates() -> int:
    return len(currency.fetch_rates())


@shared_task
def purge_expired_bodies() -> int:
    """Gateway request and response bodies past their retention date (beat, hourly). The detail
    page already hides an expired body; this frees the space."""
    return CostEventBody.objects.dangerously_unscoped().purge_expired()
