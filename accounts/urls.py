from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/link/<str:token>/", views.magic_link_login, name="magic_link"),
    path("settings/", views.account_settings, name="account_settings"),
    path("projects/<uuid:project_uuid>/", views.project_dashboard, name="project_dashboard"),
    path("projects/<uuid:project_uuid>/settings/", views.project_settings, name="project_settings"),
    path("projects/<uuid:project_uuid>/tokens/", views.api_tokens, name="api_tokens"),
    path(
        "projects/<uuid:project_uuid>/tokens/<uuid:token_uuid>/revoke/",
        views.api_token_revoke,
        name="api_token_revoke",
    ),
    path("orgs/new/", views.organization_create, name="organization_create"),
    path("orgs/<uuid:organization_uuid>/", views.organization_settings, name="organization_settings"),
    path("orgs/<uuid:organization_uuid>/projects/new/", views.project_create, name="project_create"),
    path(
        "orgs/<uuid:organization_uuid>/members/<uuid:membership_uuid>/",
        views.member_update,
        name="member_update",
    ),
    path("orgs/<uuid:organization_uuid>/invitations/", views.invitation_create, name="invitation_create"),
    path(
        "orgs/<uuid:organization_uuid>/invitations/<uuid:invitation_uuid>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
]
