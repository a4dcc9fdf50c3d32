from django.apps import AppConfig


class GatewayConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (invalidates the hot path's cached configuration)
