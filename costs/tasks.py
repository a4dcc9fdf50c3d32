from __future__ import annotations

from celery import shared_task

from . import currency, ingestion


@shared_task(acks_late=True, reject_on_worker_lost=True)
def reprice_unpriced() -> int:
    """Idempotent (claims rows with SKIP LOCKED and re-checks them), so a redelivery after a
    worker crash only finishes the work."""
    return ingestion.reprice_unpriced()


@shared_task(autoretry_for=(Exception,), retry_backoff=60, max_retries=5)
def fetch_exchange_rates() -> int:
    return len(currency.fetch_rates())
