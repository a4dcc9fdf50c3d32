from __future__ import annotations

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Budgets and alerts"

    def ready(self) -> None:
        from . import signals  # noqa: F401 (connects the receivers)
