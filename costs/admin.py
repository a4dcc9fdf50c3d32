"""Operators' view of spend data. Events and rollups are read-only here: an event is written
once by `costs.ingestion` (only re-pricing changes it) and its rollups are kept in step with it
in the same transaction, so an edit or delete by hand would make the two disagree. Exchange
rates are what operators do enter."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import CostEvent, CostRollup, ExchangeRate


class ReadOnlyAdmin(admin.ModelAdmin):
    # Millions of rows: counting them all for "N total" on every page would dominate the load.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CostEvent)
class CostEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "project", "provider", "model", "input_tokens", "cached_tokens", "output_tokens",
                    "cost_usd", "cost_source", "success", "status_code", "token_prefix"]
    list_select_related = ["project__organization"]
    list_filter = ["cost_source", "success", "source", "cache_hit", "endpoint", "provider"]
    search_fields = ["model", "=idempotency_key", "=uuid", "=end_user", "route"]
    date_hierarchy = "occurred_at"
    raw_id_fields = ["project", "api_token", "price"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return CostEvent.objects.dangerously_unscoped()


@admin.register(CostRollup)
class CostRollupAdmin(ReadOnlyAdmin):
    list_display = ["bucket", "granularity", "project", "provider", "model", "token_prefix", "tag_key", "tag_value",
                    "requests", "failures", "cost_usd", "unpriced_requests"]
    list_select_related = ["project__organization"]
    list_filter = ["granularity", "provider", "tag_key"]
    search_fields = ["model", "token_prefix", "tag_value"]
    date_hierarchy = "bucket"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return CostRollup.objects.dangerously_unscoped()


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    list_display = ["date", "currency", "per_usd", "source", "created_at"]
    list_filter = ["currency", "source"]
    date_hierarchy = "date"
    fields = ["date", "currency", "per_usd", "source"]
    readonly_fields = ["source"]

    def save_model(self, request: HttpRequest, obj: ExchangeRate, form: object, change: bool) -> None:
        obj.source = ExchangeRate.Source.ADMIN  # whatever it was, an operator has now set it
        super().save_model(request, obj, form, change)
