from __future__ import annotations

from rest_framework.routers import SimpleRouter

from . import api, summary_api

router = SimpleRouter(trailing_slash=False)
router.register("events", api.EventViewSet, basename="cost-event")
router.register("costs/recommendations", api.RecommendationViewSet, basename="cost-recommendation")
router.register("costs", summary_api.CostSummaryViewSet, basename="cost-summary")

urlpatterns = router.urls
