"""Operators' view of budgets, rules, webhooks and the alert history. Alerts and deliveries are
read-only: an alert row is the exactly-once claim for its threshold or incident, so deleting one
by hand would let the same alert be sent again. Operators can re-queue a failed delivery."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from costs.admin import ReadOnlyAdmin

from .forms import WebhookAdminForm
from .models import Alert, AlertRule, Budget, Delivery, EmailOptOut, Webhook
from .notify import queue_deliveries


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "project", "api_token", "amount", "currency", "period", "enforcement",
                    "is_enabled"]
    list_filter = ["period", "enforcement", "currency", "is_enabled"]
    list_select_related = ["organization", "project", "api_token"]
    search_fields = ["name", "organization__name", "project__name"]
    raw_id_fields = ["organization", "project", "api_token", "created_by"]
    filter_horizontal = ["notify_members", "webhooks"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return Budget.objects.dangerously_unscoped()


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "metric", "threshold", "state", "last_value", "last_evaluated_at",
                    "incident_count", "is_enabled"]
    list_filter = ["metric", "state", "is_enabled"]
    list_select_related = ["organization"]
    search_fields = ["name", "organization__name"]
    raw_id_fields = ["organization", "target", "catalog_model", "created_by"]
    readonly_fields = ["state", "state_changed_at", "last_value", "last_sample_size", "last_evaluated_at",
                       "incident_count"]
    filter_horizontal = ["notify_members", "webhooks"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return AlertRule.objects.dangerously_unscoped()


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    # The URL may itself be a credential (Slack) and the secret signs payloads: neither is shown.
    # The URL is write-only (its help text shows the masked form); the secret is not a field.
    form = WebhookAdminForm
    fields = ["organization", "name", "new_url", "format", "is_enabled", "created_by"]
    list_display = ["name", "organization", "masked_url", "format", "is_enabled", "created_at"]
    list_filter = ["format", "is_enabled"]
    search_fields = ["name", "organization__name"]
    raw_id_fields = ["organization", "created_by"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return Webhook.objects.dangerously_unscoped()


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ["channel", "address", "webhook", "status", "attempts", "last_status_code", "last_error_shown", "sent_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("webhook")

    @admin.display(description="last error")
    def last_error_shown(self, delivery: Delivery) -> str:
        return delivery.shown_error  # a webhook's URL masked

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organization", "kind", "severity", "title"]
    list_filter = ["kind", "severity"]
    list_select_related = ["organization"]
    search_fields = ["title", "=uuid"]
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return Alert.objects.dangerously_unscoped()


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "alert", "channel", "address", "webhook", "status", "attempts", "last_status_code",
                    "sent_at"]
    list_filter = ["status", "channel"]
    list_select_related = ["alert", "webhook"]
    search_fields = ["address", "=uuid"]
    actions = ["retry_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return Delivery.objects.dangerously_unscoped()

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return obj is None and request.user.is_superuser  # only so the retry action is offered

    @admin.action(description="Retry the selected failed deliveries now")
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        failed = queryset.filter(status=Delivery.Status.FAILED)
        ids = list(failed.values_list("id", flat=True))
        failed.update(status=Delivery.Status.PENDING, next_attempt_at=timezone.now(), attempts=0)
        queue_deliveries(ids)
        self.message_user(request, f"Queued {len(ids)} deliveries.", messages.SUCCESS)


@admin.register(EmailOptOut)
class EmailOptOutAdmin(admin.ModelAdmin):
    list_display = ["email", "created_at"]
    search_fields = ["email"]
