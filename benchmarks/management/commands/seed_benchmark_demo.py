"""Demo benchmark catalog for `make run`: the in-repo simulated provider in all three wire
formats, so the leaderboard and charts fill in without any API key."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from benchmarks.models import Model, Price, Provider, ProviderKind
from benchmarks.simulator import base_url_for
from benchmarks.tasks import run_public_benchmarks

# (provider name, kind, aggregator?, models with their demo $/Mtok input/output; None = unpriced)
CATALOG = [
    ("Simulated OpenAI-compatible", ProviderKind.OPENAI_COMPATIBLE, False,
     {"sim-fast": ("0.15", "0.60"), "sim-medium": ("2.50", "10"), "sim-bundled": None}),
    ("Simulated Anthropic", ProviderKind.ANTHROPIC, False, {"sim-slow": ("3", "15"), "sim-reasoning": ("1", "5")}),
    ("Simulated Gemini", ProviderKind.GEMINI, False, {"sim-medium": ("1.25", "10")}),
    ("Simulated Router", ProviderKind.OPENAI_COMPATIBLE, True, {"sim-flaky": ("0.20", "0.80")}),
]


class Command(BaseCommand):
    help = "Register the simulated provider (manage.py simulate_provider) as demo benchmark targets."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-runs", dest="queue_runs", action="store_false", help="Do not queue demo runs.")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PULSE_SIMULATOR_PORT", "8765")))

    @transaction.atomic
    def handle(self, *args: object, port: int, **options: object) -> None:
        root = f"http://127.0.0.1:{port}"
        for name, kind, aggregator, models in CATALOG:
            provider, _ = Provider.objects.update_or_create(
                name=name, defaults={"kind": kind, "base_url": base_url_for(root, kind), "is_aggregator": aggregator},
            )
            provider.api_key = "sk-simulated-demo"  # the field encrypts it
            provider.save()
            for model_name, prices in models.items():
                model, _ = Model.objects.update_or_create(provider=provider, name=model_name, defaults={"is_active": True})
                if prices and not model.prices.exists():
                    Price.objects.create(model=model, input_mtok=Decimal(prices[0]), output_mtok=Decimal(prices[1]),
                                         valid_from=timezone.now() - timedelta(days=90))
        # Beat's first public run is 15 minutes away; queue three now (once the worker and the
        # simulator have started) so the leaderboard and its charts fill in within a minute.
        if options.get("queue_runs", True):
            for delay_s in (10, 30, 50):
                transaction.on_commit(lambda d=delay_s: run_public_benchmarks.apply_async(countdown=d, expires=600))
        self.stdout.write(self.style.SUCCESS(f"Demo benchmark catalog points at the simulated provider on {root}."))
