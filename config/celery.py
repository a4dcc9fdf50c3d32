"""The Celery app. Tasks live in each app's tasks.py. Periodic tasks are declared here in code;
django-celery-beat's database scheduler copies them into the database on start, where operators
can change their intervals in the admin."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pulse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The serverless local broker keeps messages in folders; create them so a fresh checkout runs.
for _option in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
    _folder = app.conf.broker_transport_options.get(_option)
    if _folder:
        Path(_folder).mkdir(parents=True, exist_ok=True)

# `expires` keeps a stalled beat (or a stopped worker) from piling up copies of the same job.
app.conf.beat_schedule = {
    "accounts.expire-invitations": {
        "task": "accounts.tasks.expire_invitations",
        "schedule": 60 * 60,
        "options": {"expires": 30 * 60},
    },
    "benchmarks.public-run": {
        "task": "benchmarks.tasks.run_public_benchmarks",
        "schedule": 15 * 60,
        "options": {"expires": 10 * 60},
    },
    "benchmarks.sync-models": {
        "task": "benchmarks.tasks.sync_models",
        "schedule": 7 * 24 * 60 * 60,
        "options": {"expires": 6 * 60 * 60},
    },
    "benchmarks.sync-prices": {
        "task": "benchmarks.tasks.sync_prices",
        "schedule": 24 * 60 * 60,
        "options": {"expires": 60 * 60},
    },
    # Safety net: a re-pricing triggered by a new price may have been lost with its worker.
    "costs.reprice-unpriced": {
        "task": "costs.tasks.reprice_unpriced",
        "schedule": 60 * 60,
        "options": {"expires": 30 * 60},
    },
    # Budgets are evaluated right after ingestion; this catches lost evaluations and forecasts,
    # which move with time alone. Rules likewise after each run, and for their time windows.
    "alerts.evaluate-budgets": {
        "task": "alerts.tasks.evaluate_all_budgets",
        "schedule": 5 * 60,
        "options": {"expires": 4 * 60},
    },
    "alerts.evaluate-rules": {
        "task": "alerts.tasks.evaluate_rules",
        "schedule": 5 * 60,
        "options": {"expires": 4 * 60},
    },
    "alerts.retry-deliveries": {
        "task": "alerts.tasks.retry_deliveries",
        "schedule": 60,
        "options": {"expires": 50},
    },
    # Gateway bodies are kept for their project's retention period, then deleted in chunks.
    "costs.purge-expired-bodies": {
        "task": "costs.tasks.purge_expired_bodies",
        "schedule": 60 * 60,
        "options": {"expires": 30 * 60},
    },
    "costs.fetch-exchange-rates": {
        "task": "costs.tasks.fetch_exchange_rates",
        "schedule": 24 * 60 * 60,
        "options": {"expires": 60 * 60},
    },
}
