"""Operators' view of the gateway's configuration. A connection's key is write-only here as
everywhere (the form offers a new key or its removal, never the stored one); a route's upstreams
are edited inline, under the same rules as on the pages and in the API."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from .forms import ConnectionKeyRules
from .models import (
    Connection,
    GatewaySettings,
    RateLimit,
    Route,
    RouteUpstream,
    UpstreamsInvalid,
    UpstreamSpec,
)


class ConnectionAdminForm(ConnectionKeyRules):
    base_url = forms.URLField(label="Base URL", max_length=300, assume_scheme="https")

    class Meta:
        model = Connection
        exclude = ["api_key"]


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionAdminForm
    fields = ["organization", "name", "kind", "provider", "base_url", "new_api_key", "clear_api_key", "is_enabled",
              "created_by"]
    list_display = ["name", "organization", "kind", "provider", "base_url", "has_stored_key", "is_enabled", "created_at"]
    list_select_related = ["organization"]
    list_filter = ["kind", "is_enabled"]
    search_fields = ["name", "organization__name", "provider", "base_url"]
    raw_id_fields = ["organization", "created_by"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return Connection.objects.dangerously_unscoped()

    @admin.display(boolean=True, description="stored key")
    def has_stored_key(self, connection: Connection) -> bool:
        return connection.has_key


class UpstreamInlineFormSet(forms.BaseInlineFormSet):
    """The route's upstream list under Route.check_upstreams(), as on the pages and in the API
    (one organization, 1-10 upstreams, no duplicates)."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors) or self.instance.project_id is None:
            return
        kept = sorted(
            (form for form in self.forms
             if form.cleaned_data and not form.cleaned_data.get("DELETE") and form.cleaned_data.get("connection")),
            key=lambda form: form.cleaned_data.get("position") or 0,
        )
        specs = [
            UpstreamSpec(connection=form.cleaned_data["connection"], model=form.cleaned_data["model"],
                         weight=form.cleaned_data["weight"])
            for form in kept
        ]
        try:
            self.instance.check_upstreams(specs)
        except UpstreamsInvalid as invalid:
            for index, problems in invalid.per_upstream.items():
                for field, messages in problems.items():
                    kept[index].add_error(field, messages)
            if invalid.overall:
                raise ValidationError(invalid.overall) from None


class RouteUpstreamInline(admin.TabularInline):
    model = RouteUpstream
    formset = UpstreamInlineFormSet
    fields = ["position", "connection", "model", "weight"]
    raw_id_fields = ["connection"]
    extra = 0
    ordering = ["position", "id"]


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "strategy", "upstream_count", "is_enabled", "updated_at"]
    list_select_related = ["project__organization"]
    list_filter = ["strategy", "is_enabled"]
    search_fields = ["name", "project__name", "project__organization__name"]
    raw_id_fields = ["project"]
    inlines = [RouteUpstreamInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return Route.objects.dangerously_unscoped()

    @admin.display(description="upstreams")
    def upstream_count(self, route: Route) -> int:
        return route.upstreams.count()


@admin.register(GatewaySettings)
class GatewaySettingsAdmin(admin.ModelAdmin):
    list_display = ["project", "cache_enabled", "cache_ttl_seconds", "store_bodies", "body_retention_days",
                    "body_max_bytes", "updated_at"]
    list_select_related = ["project__organization"]
    list_filter = ["cache_enabled", "store_bodies"]
    search_fields = ["project__name", "project__organization__name"]
    raw_id_fields = ["project"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return GatewaySettings.objects.dangerously_unscoped()


@admin.register(RateLimit)
class RateLimitAdmin(admin.ModelAdmin):
    list_display = ["__str__", "project", "api_token", "requests_per_minute", "tokens_per_minute", "requests_per_day",
                    "tokens_per_day"]
    list_select_related = ["project__organization", "api_token"]
    search_fields = ["project__name", "project__organization__name", "api_token__name", "api_token__prefix"]
    raw_id_fields = ["project", "api_token"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return RateLimit.objects.dangerously_unscoped()
