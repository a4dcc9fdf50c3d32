from __future__ import annotations

from celery import shared_task

from . import prices


@shared_task(name="benchmarks.tasks.sync_prices")
def sync_prices() -> str:
    """Daily: add any new or changed prices from genai-prices' bundled data."""
    return str(prices.sync_prices())
