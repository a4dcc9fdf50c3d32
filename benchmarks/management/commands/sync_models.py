"""manage.py sync_models: list each active provider's models; mark new and vanished ones."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from benchmarks.discovery import sync_models


class Command(BaseCommand):
    help = "Ask every active provider which models it serves: add new ones (inactive), mark vanished ones."

    def handle(self, *args: object, **options: object) -> None:
        report = sync_models()
        for outcome in report.providers:
            if outcome.error:
                self.stdout.write(self.style.ERROR(f"✗ {outcome}"))
                continue
            self.stdout.write(f"✓ {outcome}")
            for name in outcome.new:
                self.stdout.write(self.style.SUCCESS(f"    new: {name}"))
            for name in outcome.vanished:
                self.stdout.write(self.style.WARNING(f"    vanished: {name}"))
        style = self.style.WARNING if report.errors else self.style.SUCCESS
        self.stdout.write(style(str(report)))
