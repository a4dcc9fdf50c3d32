from __future__ import annotations

from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter(trailing_slash=False)
router.register("events", api.EventViewSet, basename="cost-event")
router.register("costs/recommendations", api.RecommendationViewSet, basename="cost-recommendation")

urlpatterns = router.urls
