"""Alerts REST API, under /api/v1/.

- `budgets` (CRUD) and `budgets/{uuid}/status`: spending limits, and where one stands now
  (`blocked` is what a gateway checks before forwarding a request).
- `alert-rules` (CRUD): performance conditions on benchmark results.
- `webhooks` (CRUD), `webhooks/{uuid}/rotate-secret`, `…/test`, `…/deliveries`: the URL is
  write-only (reads show it masked) and the signing secret is shown once, on creation or rotation.
- `alerts`: the alert history with each alert's deliveries, filtered and paginated.

Reading needs the viewer role (tokens: the read scope); writing needs `alerts.models.MANAGE_ROLE`
(tokens: the write scope), as on the pages. Everything goes through `TenantScopedViewSetMixin`
(via `accounts.api.TenantViewSet`); the rules on the fields are the models' (`full_clean()`,
see alerts/serializers.py). A project-bound token sees the budgets its project's spend counts
against (organization-wide, its project's, its tokens') so a gateway can read `blocked`, changes
only its own project's, and of the alert history sees what those budgets raised besides the
organization's other alerts.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, Q, QuerySet
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, permissions, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import TenantViewSet
from accounts.models import ApiToken, User

from . import notify
from .budgets import BudgetStatus
from .models import MANAGE_ROLE, Alert, AlertRule, Budget, Delivery, Webhook
from .serializers import (
    AlertFilterSerializer,
    AlertRuleSerializer,
    AlertSerializer,
    BudgetFilterSerializer,
    BudgetSerializer,
    BudgetStatusSerializer,
    NewWebhookSerializer,
    TestAlertSerializer,
    WebhookDeliverySerializer,
    WebhookSecretSerializer,
    WebhookSerializer,
)

BUDGET_KINDS = [Alert.Kind.BUDGET_THRESHOLD, Alert.Kind.BUDGET_FORECAST]
WEBHOOK_LOG_LENGTH = 100
ERRORS_PER_FIELD = OpenApiResponse(description="Bad input: a list of messages per field.")
TOO_WEAK = OpenApiResponse(
    description="Too weak a role (writing needs the member role), or a token without the needed scope."
)
NOT_FOUND = OpenApiResponse(description="No such object among those you can see.")


def alerts_visible_to(principal: User | ApiToken, alerts: QuerySet) -> QuerySet:
    """Narrow already-scoped alerts for a project-bound token: budget alerts only of the budgets
    it can see (its project's), so another project's spend never shows through the history."""
    if isinstance(principal, ApiToken) and principal.project_id:
        alerts = alerts.filter(~Q(kind__in=BUDGET_KINDS) | Q(budget__in=Budget.objects.visible_to(principal)))
    return alerts


class ManagedByMembersViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
    mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantViewSet,
):
    """CRUD for what members manage (budgets, rules, webhooks), as on the pages."""

    write_role = MANAGE_ROLE
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]

    @property
    def caller_name(self) -> str:
        principal = self.principal
        if isinstance(principal, ApiToken):
            return f"The API token “{principal.name}”"
        return principal.get_full_name() or principal.email

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        # Refuse a too-weak role (403) before looking at the rest of the body, so a viewer is told
        # "not allowed" rather than what else is wrong with it. An organization the caller cannot
        # see is left to the field's own 400 ("does not exist"), as for one that does not exist.
        if isinstance(request.data, dict) and "organization" in request.data:
            field = self.get_serializer().fields["organization"]
            try:
                organization = field.run_validation(request.data["organization"])
            except (serializers.ValidationError, DjangoValidationError):  # e.g. not a uuid
                organization = None
            if organization is not None:
                self.require_role(organization, self.write_role)
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: serializers.ModelSerializer) -> None:
        self.require_role(serializer.validated_data["organization"], self.write_role)
        serializer.save(created_by=self.principal if isinstance(self.principal, User) else None)


def crud_schema(
    noun: str, plural: str, serializer: type[serializers.Serializer], extra: str = "", filters: list | None = None,
) -> dict:
    """Summaries and the error responses of the CRUD actions (every 4xx body says why)."""
    return {
        "list": extend_schema(
            summary=f"List {plural}", description=f"The {plural} of your organizations. {extra}".strip(),
            parameters=filters or [],
        ),
        "retrieve": extend_schema(summary=f"Get a {noun}", responses={200: serializer, 404: NOT_FOUND}),
        "create": extend_schema(
            summary=f"Create a {noun}", description="Needs the member role in the organization (tokens: the write scope).",
            responses={201: serializer, 400: ERRORS_PER_FIELD, 403: TOO_WEAK},
        ),
        "update": extend_schema(
            summary=f"Replace a {noun}", description="The organization never changes.",
            responses={200: serializer, 400: ERRORS_PER_FIELD, 403: TOO_WEAK, 404: NOT_FOUND},
        ),
        "partial_update": extend_schema(
            summary=f"Change a {noun}", description="Only the fields sent change; the organization never does.",
            responses={200: serializer, 400: ERRORS_PER_FIELD, 403: TOO_WEAK, 404: NOT_FOUND},
        ),
        "destroy": extend_schema(summary=f"Delete a {noun}", responses={204: None, 403: TOO_WEAK, 404: NOT_FOUND}),
    }


# ---------------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------------
@extend_schema_view(
    **crud_schema(
        "budget", "budgets", BudgetSerializer,
        "With `?project=`, only the budgets of that project. A project-bound token sees the budgets covering its project and changes only its project's own.",
        filters=[BudgetFilterSerializer],
    )
)
class BudgetViewSet(ManagedByMembersViewSet):
    """Spending limits per calendar period in the organization's time zone, for the whole
    organization, one project or one API token (optionally one model or one tag value).
    Thresholds alert once per period each; a forecast alert warns ahead; a hard budget also
    reports `blocked` in its status once spent. Amounts are decimal strings."""

    queryset = Budget.objects.all()
    serializer_class = BudgetSerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = queryset.select_related("organization", "project", "api_token").prefetch_related(
            "notify_members", "webhooks"
        )
        if self.action == "list":
            params = BudgetFilterSerializer(data=self.request.query_params.dict())
            params.is_valid(raise_exception=True)
            if "project" in params.validated_data:
                queryset = queryset.filter(project__uuid=params.validated_data["project"])
        return queryset

    def check_object_permissions(self, request: Request, obj: Budget) -> None:
        super().check_object_permissions(request, obj)
        if request.method not in permissions.SAFE_METHODS and not obj.changeable_by(self.principal):
            raise PermissionDenied(
                "This API token is bound to one project: it can read the budgets that cover it, "
                "but change only that project's own budgets."
            )

    @extend_schema(
        summary="Where a budget stands now",
        description="Spend so far this period (in the budget's currency, converted at the latest "
        "exchange rate), the run-rate forecast, the thresholds crossed, and `blocked`: true when a "
        "hard budget is spent, so a gateway refuses requests in its scope until the next period. "
        "Decimals are strings. A token needs the `read` or the `gateway` scope.",
        responses={200: BudgetStatusSerializer, 404: NOT_FOUND},
    )
    # A gateway token checks `blocked` before forwarding; it reads nothing else with that scope.
    @action(
        detail=True, methods=["get"], url_path="status", serializer_class=BudgetStatusSerializer,
        also_accepted_scopes=(ApiToken.Scope.GATEWAY,),
    )
    def budget_status(self, request: Request, uuid: str | None = None) -> Response:
        budget = self.get_object()
        return Response(BudgetStatusSerializer(BudgetStatus.of(budget)).data)


# ---------------------------------------------------------------------------------------------
# Alert rules
# ---------------------------------------------------------------------------------------------
@extend_schema_view(**crud_schema("performance alert rule", "performance alert rules", AlertRuleSerializer))
class AlertRuleViewSet(ManagedByMembersViewSet):
    """Performance conditions on benchmark results of a private target (optionally one of its
    models) or of a public catalog model, over the last N results or N minutes. A rule fires
    once when breached and resolves once when it recovers; `state`, `last_value` and
    `incident_count` are kept by the evaluation after each run (read-only)."""

    queryset = AlertRule.objects.all()
    serializer_class = AlertRuleSerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("organization", "target", "catalog_model").prefetch_related(
            "notify_members", "webhooks"
        )


# ---------------------------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------------------------
@extend_schema_view(
    **(
        crud_schema("webhook", "webhooks", WebhookSerializer)
        | {
            "create": extend_schema(
                summary="Create a webhook",
                description="The response carries the signing `secret`, shown only this once "
                "(rotate it to get a new one). Needs the member role (tokens: the write scope).",
                responses={201: NewWebhookSerializer, 400: ERRORS_PER_FIELD, 403: TOO_WEAK},
            )
        }
    )
)
class WebhookViewSet(ManagedByMembersViewSet):
    """HTTPS endpoints that receive alerts: signed JSON (`Pulse-Signature: t=…,v1=<HMAC-SHA256 of
    "t.body">`) or Slack-compatible messages. The URL is write-only, as it can be a credential;
    reads show `url_masked`."""

    queryset = Webhook.objects.all()
    serializer_class = WebhookSerializer

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return NewWebhookSerializer if self.action == "create" else super().get_serializer_class()

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("organization")

    @extend_schema(
        summary="Rotate a webhook's signing secret",
        description="The old secret stops working at once; the new one is shown only in this response.",
        request=None, responses={200: WebhookSecretSerializer, 403: TOO_WEAK, 404: NOT_FOUND},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret", serializer_class=WebhookSecretSerializer)
    def rotate_secret(self, request: Request, uuid: str | None = None) -> Response:
        webhook = self.get_object()
        secret = webhook.rotate_secret()
        webhook.save(update_fields=["secret"])
        return Response({"secret": secret})

    @extend_schema(
        summary="Send a test alert to a webhook",
        description="Raises an alert of kind `test` and delivers it to this webhook only, the way "
        "real alerts go; its delivery shows in `/webhooks/{uuid}/deliveries`.",
        request=None,
        responses={
            202: TestAlertSerializer, 403: TOO_WEAK, 404: NOT_FOUND,
            409: OpenApiResponse(description="The webhook is disabled."),
        },
    )
    @action(detail=True, methods=["post"], url_path="test", serializer_class=TestAlertSerializer)
    def send_test(self, request: Request, uuid: str | None = None) -> Response:
        webhook = self.get_object()
        if not webhook.is_enabled:
            return Response(
                {"detail": f"The webhook {webhook.name} is disabled; enable it to test it."},
                status=status.HTTP_409_CONFLICT,
            )
        alert = notify.send_test_alert(webhook.organization, by_name=self.caller_name, webhook=webhook)
        delivery = alert.deliveries.get()
        return Response({"alert": alert.uuid, "delivery": delivery.uuid}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="A webhook's delivery log",
        description=f"Its last {WEBHOOK_LOG_LENGTH} deliveries, newest first: status, attempts, the "
        "last HTTP status code and error.",
        responses={200: WebhookDeliverySerializer(many=True), 404: NOT_FOUND},
    )
    @action(
        detail=True, methods=["get"], url_path="deliveries", serializer_class=WebhookDeliverySerializer,
        pagination_class=None,
    )
    def deliveries(self, request: Request, uuid: str | None = None) -> Response:
        webhook = self.get_object()
        alerts = alerts_visible_to(self.principal, Alert.objects.visible_to(self.principal))
        log = (
            Delivery.objects.visible_to(self.principal)
            .filter(webhook=webhook, alert__in=alerts)
            .select_related("alert", "webhook")
            .order_by("-created_at", "-id")[:WEBHOOK_LOG_LENGTH]
        )
        return Response(WebhookDeliverySerializer(log, many=True).data)


# ---------------------------------------------------------------------------------------------
# Alert history
# ---------------------------------------------------------------------------------------------
@extend_schema_view(
    list=extend_schema(summary="The alert history", parameters=[AlertFilterSerializer], responses={200: AlertSerializer(many=True), 400: ERRORS_PER_FIELD}),
    retrieve=extend_schema(summary="One alert, with its deliveries", responses={200: AlertSerializer, 404: NOT_FOUND}),
)
class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Alerts raised for your organizations, newest first, each with its deliveries (one per
    email address or webhook, with attempts and errors). Read-only."""

    queryset = Alert.objects.all()
    serializer_class = AlertSerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        deliveries = Delivery.objects.select_related("webhook").order_by("created_at", "id")
        queryset = alerts_visible_to(self.principal, queryset).select_related("organization", "budget", "rule")
        queryset = queryset.prefetch_related(Prefetch("deliveries", queryset=deliveries))
        if self.action != "list":
            return queryset
        params = AlertFilterSerializer(data=self.request.query_params.dict())
        params.is_valid(raise_exception=True)
        filters = params.validated_data
        lookups = {
            "kind": "kind", "severity": "severity", "budget": "budget__uuid", "rule": "rule__uuid",
            "since": "created_at__gte", "until": "created_at__lt",
        }
        return queryset.filter(**{lookup: filters[name] for name, lookup in lookups.items() if name in filters})

