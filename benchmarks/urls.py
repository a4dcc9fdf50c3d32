from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("leaderboard/", views.leaderboard, name="leaderboard"),
    path("orgs/<uuid:organization_uuid>/benchmarks/", views.organization_benchmarks, name="organization_benchmarks"),
    path("orgs/<uuid:organization_uuid>/benchmarks/targets/new/", views.target_create, name="benchmark_target_create"),
    path(
        "orgs/<uuid:organization_uuid>/benchmarks/targets/<uuid:target_uuid>/edit/",
        views.target_edit,
        name="benchmark_target_edit",
    ),
    path(
        "orgs/<uuid:organization_uuid>/benchmarks/targets/<uuid:target_uuid>/delete/",
        views.target_delete,
        name="benchmark_target_delete",
    ),
    path(
        "orgs/<uuid:organization_uuid>/benchmarks/targets/<uuid:target_uuid>/enabled/",
        views.target_set_enabled,
        name="benchmark_target_set_enabled",
    ),
    path(
        "orgs/<uuid:organization_uuid>/benchmarks/targets/<uuid:target_uuid>/run/",
        views.target_run_now,
        name="benchmark_target_run",
    ),
    path(
        "orgs/<uuid:organization_uuid>/benchmarks/runs/<uuid:run_uuid>/",
        views.run_detail,
        name="benchmark_run_detail",
    ),
]
