"""/api/v1/budgets, alert-rules, webhooks and alerts (alerts/api.py)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter(trailing_slash=False)
router.register("budgets", api.BudgetViewSet, basename="budget")
router.register("alert-rules", api.AlertRuleViewSet, basename="alert-rule")
router.register("webhooks", api.WebhookViewSet, basename="webhook")
router.register("alerts", api.AlertViewSet, basename="alert")

urlpatterns = router.urls
