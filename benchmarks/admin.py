from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .forms import SecretKeyForm
from .models import BenchmarkResult, Model, Price, Provider, Run, Target


class ModelInline(admin.TabularInline):
    model = Model
    extra = 0
    fields = ["name", "display_name", "context_window", "is_active", "is_available", "last_seen_at"]
    readonly_fields = ["last_seen_at"]
    show_change_link = True


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = SecretKeyForm
    list_display = ["name", "kind", "base_url", "is_aggregator", "is_active", "has_stored_key", "api_key_env"]
    list_filter = ["kind", "is_aggregator", "is_active"]
    search_fields = ["name", "base_url"]
    exclude = ["api_key"]
    inlines = [ModelInline]

    @admin.display(boolean=True, description="stored key")
    def has_stored_key(self, obj: Provider) -> bool:
        return bool(obj.api_key)


class PriceInline(admin.TabularInline):
    model = Price
    extra = 1
    fields = ["input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "valid_from", "source"]


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["name", "provider", "is_active", "is_available", "context_window", "first_seen_at", "last_seen_at"]
    list_select_related = ["provider"]
    list_filter = ["is_active", "is_available", "provider"]
    list_editable = ["is_active"]
    search_fields = ["name", "display_name", "provider__name"]
    inlines = [PriceInline]


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["model", "input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "valid_from", "source"]
    list_select_related = ["model__provider"]
    list_filter = ["source", "model__provider"]
    search_fields = ["model__name"]
    autocomplete_fields = ["model"]


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin):
    form = SecretKeyForm
    list_display = ["name", "organization", "kind", "base_url", "interval_minutes", "is_enabled"]
    list_select_related = ["organization"]
    list_filter = ["kind", "is_enabled"]
    search_fields = ["name", "organization__name", "base_url"]
    exclude = ["api_key"]
    autocomplete_fields = ["organization"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "triggered_by", "status", "created_at", "finished_at"]
    list_select_related = ["organization"]
    list_filter = ["status", "triggered_by"]
    search_fields = ["name", "organization__name"]
    date_hierarchy = "created_at"


@admin.register(BenchmarkResult)
class BenchmarkResultAdmin(admin.ModelAdmin):
    list_display = ["model_name", "provider_name", "success", "ttft_ms", "tps", "total_latency_ms", "status_code", "error_kind", "cost_usd", "created_at"]
    list_filter = ["success", "error_kind", "token_count_source", "provider"]
    search_fields = ["model_name", "provider_name", "error_message"]
    date_hierarchy = "created_at"
    raw_id_fields = ["run", "model", "provider", "target", "organization"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # results come from runs
