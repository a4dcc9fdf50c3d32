"""Costs REST API, under /api/v1/.

- `POST events` (one event) and `POST events/batch` (up to 1,000): needs a token with the
  `ingest` scope (or a signed-in member); 202 once the events are durably stored.
- `GET events`, `GET events/{uuid}`: the activity log (read scope), filtered and paginated.

Everything goes through `TenantScopedViewSetMixin` (via `accounts.api.TenantViewSet`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import TenantViewSet
from accounts.models import ApiToken, Organization, Project, Role
from accounts.throttling import ApiTokenRateThrottle
from lib.json_parser import JSONParser
from lib.text import unstorable

from . import ingestion, recommendations
from .models import CostEvent


class IngestRateThrottle(ApiTokenRateThrottle):
    """Ingestion has its own budget (INGEST_THROTTLE_RATE): a busy exporter must not use up the
    rate its team's dashboards and scripts read with."""

    scope = "ingest"


class IngestionJSONParser(JSONParser):
    """Lone surrogates reach ingestion, which refuses them per event (`costs.ingestion`), so
    one bad event in a batch does not fail the others. No depth walk either (it cost more than
    the parse): ingestion's validation never recurses into a value, nested values are refused
    per event, and JSON too deep for the decoder is still a 400."""

    refuse_lone_surrogates = False
    max_depth = None


class EventSerializer(serializers.ModelSerializer):
    """An event as reported; the schema documents the token conventions."""

    id = serializers.UUIDField(source="uuid", read_only=True)
    project = serializers.UUIDField(source="project.uuid", read_only=True)
    api_token = serializers.CharField(source="token_prefix", read_only=True)
    timestamp = serializers.DateTimeField(source="occurred_at")
    priced = serializers.BooleanField(source="is_priced", read_only=True)

    class Meta:
        model = CostEvent
        fields = [
            "id", "project", "api_token", "provider", "model", "input_tokens", "output_tokens", "cached_tokens",
            "reasoning_tokens", "cost_usd", "cost_source", "priced", "latency_ms", "status_code", "success",
            "timestamp", "received_at", "tags", "idempotency_key", "source",
        ]
        extra_kwargs = {
            "input_tokens": {"help_text": "Every prompt token, cached ones included."},
            "cached_tokens": {"help_text": "Prompt tokens read from the provider's cache; priced at the cache-read price instead of the input price."},
            "reasoning_tokens": {"help_text": "Part of output_tokens (not charged again)."},
            "cost_usd": {"help_text": "Empty when no price is known for the model (flagged, never $0)."},
        }


EVENT_EXAMPLE_FIELDS = {
    "provider": serializers.CharField(help_text="e.g. openai, anthropic, google-gla, groq"),
    "model": serializers.CharField(help_text="The model name as sent to the provider, e.g. gpt-4o-mini"),
    "input_tokens": serializers.IntegerField(required=False, help_text="Every prompt token, cached included."),
    "output_tokens": serializers.IntegerField(required=False),
    "cached_tokens": serializers.IntegerField(required=False, help_text="Part of input_tokens."),
    "reasoning_tokens": serializers.IntegerField(required=False, help_text="Part of output_tokens."),
    "cost_usd": serializers.DecimalField(max_digits=20, decimal_places=10, required=False, help_text="Omit to have Pulse price it."),
    "latency_ms": serializers.FloatField(required=False),
    "status_code": serializers.IntegerField(required=False),
    "success": serializers.BooleanField(required=False, help_text="Default: status_code < 400."),
    "timestamp": serializers.DateTimeField(required=False, help_text="Default now; no offset means UTC; at most 400 days old."),
    "tags": serializers.DictField(child=serializers.CharField(), required=False),
    "idempotency_key": serializers.CharField(required=False, help_text="Resending the same key in a project is acknowledged, never counted twice."),
    "source": serializers.ChoiceField(CostEvent.Source.choices, required=False),
}
EventInput = inline_serializer("EventInput", EVENT_EXAMPLE_FIELDS)
BatchInput = inline_serializer("BatchInput", {"events": EventInput.__class__(many=True)})
ItemErrorSerializer = inline_serializer(
    "ItemError", {"index": serializers.IntegerField(), "field": serializers.CharField(), "message": serializers.CharField()}
)
AcceptedSerializer = inline_serializer(
    "AcceptedEvent",
    {
        "id": serializers.UUIDField(), "duplicate": serializers.BooleanField(),
        "cost_usd": serializers.DecimalField(max_digits=20, decimal_places=10, allow_null=True),
    },
)
BatchResult = inline_serializer(
    "BatchResult",
    {
        "accepted": serializers.IntegerField(help_text="Stored now."),
        "duplicates": serializers.IntegerField(help_text="Already stored (same idempotency key); not counted again."),
        "rejected": serializers.IntegerField(),
        "errors": ItemErrorSerializer.__class__(many=True),
    },
)
PROJECT_PARAMETER = OpenApiParameter(
    "project", OpenApiTypes.UUID, OpenApiParameter.QUERY,
    description="The project to record into; only needed when the caller is not a project-bound token.",
)
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER,
    description="Makes a retried batch idempotent: events without their own key get `<key>:<index>`.",
)


def _money(value: object) -> str | None:
    return None if value is None else str(value)


class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    queryset = CostEvent.objects.all()
    serializer_class = EventSerializer
    parser_classes = [IngestionJSONParser]
    write_scope = ApiToken.Scope.INGEST
    write_role = Role.MEMBER

    def get_throttles(self) -> list:
        if self.request.method == "POST":
            return [IngestRateThrottle()]
        return super().get_throttles()

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("project")

    def organization_of(self, obj: CostEvent) -> Organization:
        return obj.project.organization

    def _ingest(self, items: list, project: Project) -> ingestion.IngestResult:
        token = self.principal if isinstance(self.principal, ApiToken) else None
        batch_key = self.request.headers.get("Idempotency-Key")
        problem = batch_key and unstorable(batch_key)
        if problem:  # every event's derived key would carry it
            raise ValidationError({"Idempotency-Key": [problem]})
        return ingestion.ingest(project, items, token=token, batch_key=batch_key)

    @extend_schema(
        parameters=[PROJECT_PARAMETER],
        request=EventInput,
        responses={202: AcceptedSerializer, 400: OpenApiResponse(description="Errors per field.")},
        summary="Record one LLM call",
    )
    def create(self, request: Request) -> Response:
        project = self.requested_project(self.write_role)
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Send one event as a JSON object."]})
        result = self._ingest([dict(request.data)], project)
        if result.errors:
            errors: dict[str, list[str]] = {}
            for error in result.errors:
                errors.setdefault(error.field, []).append(error.message)
            raise ValidationError(errors)
        accepted = result.accepted[0]
        return Response(
            {"id": accepted.event_uuid, "duplicate": accepted.duplicate, "cost_usd": _money(accepted.cost_usd)},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        parameters=[PROJECT_PARAMETER, IDEMPOTENCY_HEADER],
        request=BatchInput,
        responses={202: BatchResult, 400: BatchResult},
        summary="Record up to 1,000 LLM calls; valid ones are stored even if others are not",
    )
    @action(detail=False, methods=["post"], url_path="batch")
    def batch(self, request: Request) -> Response:
        project = self.requested_project(self.write_role)
        events = request.data.get("events") if isinstance(request.data, dict) else None
        if not isinstance(events, list):
            raise ValidationError({"events": ["Send {\"events\": [...]}, a list of events."]})
        if not events:
            raise ValidationError({"events": ["The list is empty."]})
        if len(events) > ingestion.MAX_BATCH:
            raise ValidationError({"events": [f"At most {ingestion.MAX_BATCH:,} events per batch (got {len(events):,}); split it."]})
        result = self._ingest(events, project)
        body = {
            "accepted": result.inserted,
            "duplicates": result.duplicates,
            "rejected": result.rejected,
            "errors": [error.as_dict() for error in result.errors],
        }
        # Nothing stored and nothing already stored: the request as a whole was bad.
        code = status.HTTP_400_BAD_REQUEST if not result.accepted else status.HTTP_202_ACCEPTED
        return Response(body, status=code)


RecommendationSerializer = inline_serializer(
    "Recommendation",
    {
        "kind": serializers.CharField(help_text="cheaper_model, price_rise, prompt_caching or concentration"),
        "provider": serializers.CharField(), "model": serializers.CharField(),
        "title": serializers.CharField(), "detail": serializers.CharField(),
        "monthly_saving_usd": serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True),
        "assumptions": serializers.ListField(child=serializers.CharField()),
        "numbers": serializers.DictField(),
    },
)


class RecommendationViewSet(TenantViewSet):
    """Cheaper models, price rises, prompt caching and concentration, from the project's own
    last 30 days of traffic; each with its numbers and assumptions."""

    queryset = CostEvent.objects.all()

    @extend_schema(
        parameters=[
            PROJECT_PARAMETER,
            OpenApiParameter("share", OpenApiTypes.FLOAT, OpenApiParameter.QUERY,
                             description="Share of a model's traffic assumed to move (0.05-1; default 0.5)."),
        ],
        responses={200: inline_serializer("Recommendations", {"results": RecommendationSerializer.__class__(many=True)})},
        summary="Recommendations to spend less",
    )
    def list(self, request: Request) -> Response:
        project = self.requested_project()
        try:
            share = Decimal(request.query_params.get("share", "0.5"))
            if not share.is_finite() or not Decimal("0.05") <= share <= 1:
                raise InvalidOperation
        except InvalidOperation:
            raise ValidationError({"share": ["Must be a number between 0.05 and 1."]}) from None
        return Response({"results": [r.as_dict() for r in recommendations.recommend(project, share=share)]})
