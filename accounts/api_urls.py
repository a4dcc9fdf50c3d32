from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter(trailing_slash=False)
router.register("organizations", api.OrganizationViewSet, basename="organization")
router.register(r"organizations/(?P<organization_uuid>[^/.]+)/members", api.MemberViewSet, basename="member")
router.register(
    r"organizations/(?P<organization_uuid>[^/.]+)/invitations", api.InvitationViewSet, basename="invitation"
)
router.register("projects", api.ProjectViewSet, basename="project")
router.register(r"projects/(?P<project_uuid>[^/.]+)/tokens", api.ApiTokenViewSet, basename="api-token")

urlpatterns = [
    path("me", api.MeView.as_view(), name="api-me"),
    path("benchmarks/", include("benchmarks.api_urls")),
    path("", include("costs.api_urls")),
    path("", include("alerts.api_urls")),
    path("gateway/", include("gateway.api_urls")),
    *router.urls,
]
