"""manage.py sync_prices: add new or changed prices from genai-prices' bundled data."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from benchmarks.prices import sync_prices


class Command(BaseCommand):
    help = "Add price history rows from genai-prices' bundled data (operators' overrides are kept)."

    def handle(self, *args: object, **options: object) -> None:
        report = sync_prices()
        self.stdout.write(self.style.SUCCESS(str(report)))
        for name in report.unpriced:
            self.stdout.write(self.style.WARNING(f"  unpriced: {name} (add a price in the admin)"))
