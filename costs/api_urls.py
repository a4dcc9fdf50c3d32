from __future__ import annotations

from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter(trailing_slash=False)
router.register("events", api.EventViewSet, basename="cost-event")

urlpatterns = router.urls
