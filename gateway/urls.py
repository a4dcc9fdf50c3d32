from __future__ import annotations

from django.urls import path

from . import views

project = "projects/<uuid:project_uuid>/gateway/"
organization = "orgs/<uuid:organization_uuid>/gateway/connections/"

urlpatterns = [
    path(project, views.gateway, name="gateway"),
    path(f"{project}token/", views.gateway_token_create, name="gateway_token_create"),
    path(f"{project}settings/", views.gateway_settings, name="gateway_settings"),
    path(f"{project}routes/new/", views.route_create, name="gateway_route_create"),
    path(f"{project}routes/<uuid:route_uuid>/edit/", views.route_edit, name="gateway_route_edit"),
    path(f"{project}routes/<uuid:route_uuid>/delete/", views.route_delete, name="gateway_route_delete"),
    path(f"{project}limits/new/", views.limit_create, name="gateway_limit_create"),
    path(f"{project}limits/<uuid:limit_uuid>/edit/", views.limit_edit, name="gateway_limit_edit"),
    path(f"{project}limits/<uuid:limit_uuid>/delete/", views.limit_delete, name="gateway_limit_delete"),
    path(organization, views.connections, name="gateway_connections"),
    path(f"{organization}new/", views.connection_create, name="gateway_connection_create"),
    path(f"{organization}<uuid:connection_uuid>/edit/", views.connection_edit, name="gateway_connection_edit"),
    path(f"{organization}<uuid:connection_uuid>/delete/", views.connection_delete, name="gateway_connection_delete"),
]
