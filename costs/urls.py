from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("projects/<uuid:project_uuid>/activity/", views.activity_log, name="cost_activity"),
    path("projects/<uuid:project_uuid>/activity/export.csv", views.activity_export, name="cost_activity_export"),
    path(
        "projects/<uuid:project_uuid>/activity/<uuid:event_uuid>/",
        views.activity_detail,
        name="cost_activity_detail",
    ),
]
