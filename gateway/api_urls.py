"""/api/v1/gateway/… (gateway/api.py)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter(trailing_slash=False)
router.register("connections", api.ConnectionViewSet, basename="gateway-connection")
router.register("routes", api.RouteViewSet, basename="gateway-route")
router.register("limits", api.RateLimitViewSet, basename="gateway-limit")
router.register("settings", api.GatewaySettingsViewSet, basename="gateway-settings")

urlpatterns = [
    path("models", api.CallableModelsView.as_view(), name="gateway-models"),
    *router.urls,
]
