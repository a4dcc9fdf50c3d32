from __future__ import annotations

from django.urls import path

from . import views

org = "orgs/<uuid:organization_uuid>/alerts/"

urlpatterns = [
    path("alerts/", views.alerts_home, name="alerts"),
    path("alerts/unsubscribe/<str:token>/", views.unsubscribe, name="alert_unsubscribe"),
    path(org, views.alert_history, name="alert_history"),
    path(f"{org}history/<uuid:alert_uuid>/", views.alert_detail, name="alert_detail"),
    path(f"{org}budgets/", views.budget_list, name="budget_list"),
    path(f"{org}budgets/new/", views.budget_create, name="budget_create"),
    path(f"{org}budgets/<uuid:budget_uuid>/", views.budget_detail, name="budget_detail"),
    path(f"{org}budgets/<uuid:budget_uuid>/edit/", views.budget_edit, name="budget_edit"),
    path(f"{org}budgets/<uuid:budget_uuid>/delete/", views.budget_delete, name="budget_delete"),
    path(f"{org}rules/", views.alert_rule_list, name="alert_rule_list"),
    path(f"{org}rules/new/", views.alert_rule_create, name="alert_rule_create"),
    path(f"{org}rules/<uuid:rule_uuid>/edit/", views.alert_rule_edit, name="alert_rule_edit"),
    path(f"{org}rules/<uuid:rule_uuid>/delete/", views.alert_rule_delete, name="alert_rule_delete"),
    path(f"{org}channels/", views.alert_channels, name="alert_channels"),
    path(f"{org}channels/email/test/", views.email_test, name="alert_email_test"),
    path(f"{org}channels/webhooks/new/", views.webhook_create, name="webhook_create"),
    path(f"{org}channels/webhooks/<uuid:webhook_uuid>/edit/", views.webhook_edit, name="webhook_edit"),
    path(f"{org}channels/webhooks/<uuid:webhook_uuid>/delete/", views.webhook_delete, name="webhook_delete"),
    path(f"{org}channels/webhooks/<uuid:webhook_uuid>/test/", views.webhook_test, name="webhook_test"),
    path(
        f"{org}channels/webhooks/<uuid:webhook_uuid>/rotate-secret/", views.webhook_rotate_secret,
        name="webhook_rotate_secret",
    ),
]
