"""/api/v1/benchmarks/…: the catalog, private targets, runs, results and statistics."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter(trailing_slash=False)
router.register("providers", api.ProviderViewSet, basename="benchmark-provider")
router.register("models", api.ModelViewSet, basename="benchmark-model")
router.register("targets", api.TargetViewSet, basename="benchmark-target")
router.register("runs", api.RunViewSet, basename="benchmark-run")
router.register("results", api.ResultViewSet, basename="benchmark-result")

urlpatterns = [
    path("stats", api.StatsView.as_view(), name="benchmark-stats"),
    *router.urls,
]
