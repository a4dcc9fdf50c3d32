"""Costs REST API, under /api/v1/.

- `POST events` (one event) and `POST events/batch` (up to 1,000): needs a token with the
  `ingest` scope (or a signed-in member); 202 once the events are durably stored.
- `GET events`, `GET events/{uuid}`: the activity log (read scope), paginated, with the
  activity page's filters (`?project=`, range or since/until, provider, model, token, tag,
  status, source, unpriced, endpoint, end_user, cache_hit). Gateway calls carry their route,
  upstream, cache hit and saving, failed attempts and overhead, which only the gateway records.

Everything goes through `TenantScopedViewSetMixin` (via `accounts.api.TenantViewSet`).
"""

from __future__ import annotations

import re
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import TenantViewSet
from accounts.api_schema import NOT_BLANK, FieldErrorsSerializer
from accounts.models import ApiToken, Organization, Project, Role
from accounts.throttling import ApiTokenRateThrottle
from lib.json_parser import JSONParser
from lib.pagination import PageNumberPagination
from lib.strict_fields import (
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictFloatField,
    StrictIntegerField,
    StrictModelSerializer,
    StrictRegexField,
)
from lib.text import unstorable

from . import ingestion, recommendations
from .forms import NOT_A_TOKEN, RANGES, TAG
from .ingestion import MAX_TAG_KEY, MAX_TAG_VALUE
from .models import CostEvent, CostEventQuerySet
from .money import decimal_string


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


class EventSerializer(StrictModelSerializer):
    """An event as reported; the schema documents the token conventions."""

    id = serializers.UUIDField(source="uuid", read_only=True)
    project = serializers.UUIDField(source="project.uuid", read_only=True)
    api_token = serializers.CharField(source="token_prefix", read_only=True)
    timestamp = serializers.DateTimeField(source="occurred_at")
    priced = serializers.BooleanField(source="is_priced", read_only=True)
    attempts = serializers.ListField(
        child=inline_serializer("GatewayAttempt", {
            "upstream": serializers.CharField(), "status_code": serializers.IntegerField(allow_null=True),
            "error": serializers.CharField(),
        }),
        read_only=True, help_text="Gateway calls: the upstreams tried and failed before the one that answered.",
    )
    overhead_ms = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Gateway calls: time spent in Pulse rather than upstream.",
    )

    class Meta:
        model = CostEvent
        fields = [
            "id", "project", "api_token", "provider", "model", "input_tokens", "output_tokens", "cached_tokens",
            "reasoning_tokens", "cost_usd", "cost_source", "priced", "latency_ms", "status_code", "success",
            "timestamp", "received_at", "tags", "idempotency_key", "source", "ttft_ms", "streamed", "endpoint",
            "end_user", "token_count_source", "route", "upstream", "cache_hit", "saved_usd", "attempts", "overhead_ms",
        ]
        extra_kwargs = {
            "input_tokens": {"help_text": "Every prompt token, cached ones included."},
            "cached_tokens": {"help_text": "Prompt tokens read from the provider's cache; priced at the cache-read price instead of the input price."},
            "reasoning_tokens": {"help_text": "Part of output_tokens (not charged again)."},
            "cost_usd": {"help_text": "Empty when no price is known for the model (flagged, never $0)."},
            "token_count_source": {"help_text": "usage: the provider's count; estimate: counted without one; empty: not stated."},
            "cache_hit": {"help_text": "Answered from the gateway's cache (at no cost)."},
            "saved_usd": {"help_text": "A cache hit: what the call would have cost upstream; empty when unknown."},
        }


# What ingestion (costs.ingestion.validate) accepts, stated in the schema: bounds, lengths, and
# the JSON types it takes besides the obvious one (a number or a string for cost_usd, Unix
# seconds for timestamp, numbers and booleans as tag values).
@extend_schema_field({
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": int(ingestion.MAX_COST_USD)},
        {"type": "string", "pattern": r"^[0-9]{1,7}(\.[0-9]{1,20})?$"},
    ],
    "description": f"US dollars, 0 to {ingestion.MAX_COST_USD:,} (a number or a decimal string); omit to have Pulse price it.",
})
class ClientCostField(serializers.JSONField):
    pass


@extend_schema_field({
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
    "description": "ISO 8601 (no offset means UTC) or Unix seconds; default now. "
    f"At most {ingestion.MAX_AGE.days} days old and not in the future.",
})
class EventTimeField(serializers.JSONField):
    pass


@extend_schema_field({
    "type": "object", "maxProperties": ingestion.MAX_TAGS,
    "additionalProperties": {
        "anyOf": [{"type": "string", "maxLength": ingestion.MAX_TAG_VALUE}, {"type": "number"}, {"type": "boolean"}],
    },
    "description": f"At most {ingestion.MAX_TAGS} tags; keys of 1-{ingestion.MAX_TAG_KEY} characters, "
    f"values of at most {ingestion.MAX_TAG_VALUE}.",
})
class TagsField(serializers.JSONField):
    pass


def _name(limit: int, help_text: str) -> StrictRegexField:
    # Ingestion strips the value first: white space alone is empty.
    return StrictRegexField(NOT_BLANK, max_length=limit, help_text=help_text)


def _tokens(help_text: str = "") -> StrictIntegerField:
    return StrictIntegerField(required=False, min_value=0, max_value=ingestion.MAX_TOKENS, help_text=help_text)


EVENT_EXAMPLE_FIELDS = {
    "provider": _name(64, "e.g. openai, anthropic, google-gla, groq"),
    "model": _name(128, "The model name as sent to the provider, e.g. gpt-4o-mini"),
    "input_tokens": _tokens("Every prompt token, cached included."),
    "output_tokens": _tokens(),
    "cached_tokens": _tokens("Part of input_tokens (so at most input_tokens)."),
    "reasoning_tokens": _tokens("Part of output_tokens (so at most output_tokens)."),
    "cost_usd": ClientCostField(required=False),
    "latency_ms": StrictFloatField(required=False, min_value=0, max_value=ingestion.MAX_LATENCY_MS),
    "status_code": StrictIntegerField(required=False, min_value=100, max_value=599),
    "success": StrictBooleanField(required=False, help_text="Default: status_code < 400."),
    "timestamp": EventTimeField(required=False),
    "tags": TagsField(required=False),
    "idempotency_key": StrictRegexField(
        NOT_BLANK, max_length=128, required=False,
        help_text="Resending the same key in a project is acknowledged, never counted twice.",
    ),
    "source": StrictChoiceField(
        [(value, label) for value, label in CostEvent.Source.choices if value in ingestion.PUBLIC_SOURCES],
        required=False, help_text="Default api. Only the gateway records gateway calls.",
    ),
    "ttft_ms": StrictFloatField(
        required=False, min_value=0, max_value=ingestion.MAX_LATENCY_MS, help_text="Time to the first token (streamed calls).",
    ),
    "streamed": StrictBooleanField(required=False, help_text="Default false."),
    "endpoint": StrictChoiceField(CostEvent.Endpoint.choices, required=False),
    "end_user": StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=ingestion.MAX_END_USER,
        help_text="Who the call was made for, e.g. OpenAI's `user`.",
    ),
    "token_count_source": StrictChoiceField(
        CostEvent.TokenCountSource.choices, required=False,
        help_text="usage: the counts are the provider's; estimate: counted without one.",
    ),
}
EventInput = inline_serializer("EventInput", EVENT_EXAMPLE_FIELDS)
EventInput.__class__.rejects_unknown_fields = True  # ingestion does: "Unknown field."


@extend_schema_field({
    "type": "array", "minItems": 1, "maxItems": ingestion.MAX_BATCH,
    # A bad event does not fail its batch: it is refused alone and reported in `errors`, so
    # the batch accepts any item; the ones to send are EventInput's.
    "items": {"anyOf": [{"$ref": "#/components/schemas/EventInputRequest"}, {}]},
    "description": "Events as for POST /events. An invalid one is rejected on its own (see `errors` "
    "in the answer, by index); the others are stored.",
})
class BatchEventsField(serializers.ListField):
    pass


BatchInput = inline_serializer("BatchInput", {"events": BatchEventsField()})
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


def _money(value: Decimal | None) -> str | None:
    return None if value is None else decimal_string(value)


# The activity form's key=value rule without its named groups, which JSON Schema's regular
# expressions (ECMA 262) do not have.
TAG_PATTERN = re.sub(r"\?P<\w+>", "", TAG.pattern)


class EventFilterSerializer(serializers.Serializer):
    """The activity log's filters (costs.forms.ActivityFilterForm), as query parameters. Unlike
    the page, an invalid value is a 400 naming the parameter, and a model or provider never seen
    is simply no match (the page offers only those seen)."""

    project = serializers.UUIDField(
        required=False,
        help_text="Only this project's events (404 unless you can see it). A project-bound token "
        "always reads its own project; without it a person sees every project they can see.",
    )
    range = serializers.ChoiceField(
        choices=list(RANGES), required=False, help_text="Only the last 24h, 7d, 30d or 90d. Not with since/until.",
    )
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; events at or after this time.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; events before this time.")
    provider = serializers.CharField(required=False, max_length=64, help_text="Only this provider's events.")
    model = serializers.CharField(required=False, max_length=128, help_text="Only this model's events.")
    token = serializers.CharField(
        required=False, max_length=32,
        help_text=f"Only events sent with the API token of this prefix; `{NOT_A_TOKEN}`: only those "
        "recorded by signed-in people.",
    )
    tag = serializers.RegexField(
        TAG_PATTERN, required=False, max_length=MAX_TAG_KEY + MAX_TAG_VALUE + 1,
        help_text="Only events tagged key=value, e.g. feature=chat.",
        error_messages={"invalid": "Write a tag as key=value, e.g. feature=chat."},
    )
    status = serializers.ChoiceField(
        choices=["success", "failed"], required=False, help_text="Only successful or only failed calls.",
    )
    source = serializers.ChoiceField(CostEvent.Source.choices, required=False, help_text="Only events from this source.")
    unpriced = serializers.BooleanField(
        required=False, help_text="true: only events no price was known for; false: only priced ones.",
    )
    endpoint = serializers.ChoiceField(CostEvent.Endpoint.choices, required=False, help_text="Only calls of this API.")
    end_user = serializers.CharField(
        required=False, max_length=ingestion.MAX_END_USER, help_text="Only calls made for this end user.",
    )
    cache_hit = serializers.BooleanField(
        required=False, help_text="true: only calls the gateway answered from its cache; false: only the others.",
    )
    received_after = serializers.DateTimeField(
        required=False,
        help_text="A cursor for following new events (e.g. `pulse tail`): only events stored after this "
        "moment, whatever their own `timestamp` (a backfilled event is new when it arrives), listed "
        "oldest-stored first. To continue, pass the last event's `received_at` here and its `id` as "
        "`after_id`. Ingestion stamps `received_at` when a request arrives, so an event can be committed "
        "(and become visible) a moment after later-stamped ones: a follower re-reads the last few "
        "seconds and skips the ids it has.",
    )
    after_id = serializers.UUIDField(
        required=False,
        help_text="With received_after: the id of the last event you have of those stored at exactly that "
        "moment (a batch shares one `received_at`); the others stored then are listed after it, in id order.",
    )

    def validate_tag(self, value: str) -> tuple[str, str]:
        match = TAG.match(value)
        if match is None:
            raise serializers.ValidationError("Write a tag as key=value, e.g. feature=chat.")
        return match["key"], match["value"]

    def validate(self, attrs: dict) -> dict:
        if "range" in attrs and ("since" in attrs or "until" in attrs):
            raise serializers.ValidationError({"range": ["Give either range or since/until, not both."]})
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        if "after_id" in attrs and "received_after" not in attrs:
            raise serializers.ValidationError({"after_id": ["Only with received_after (the cursor it continues)."]})
        return attrs

    def apply(self, events: CostEventQuerySet) -> CostEventQuerySet:
        """`events` narrowed by the validated filters."""
        filters = self.validated_data
        if "range" in filters:
            events = events.between(timezone.now() - RANGES[filters["range"]], None)
        events = events.between(filters.get("since"), filters.get("until"))
        for name in ("provider", "model", "source", "endpoint", "end_user", "cache_hit"):
            if name in filters:
                events = events.filter(**{name: filters[name]})
        if "token" in filters:
            events = events.filter(token_prefix="" if filters["token"] == NOT_A_TOKEN else filters["token"])
        if "tag" in filters:
            events = events.tagged(*filters["tag"])
        if "status" in filters:
            events = events.filter(success=filters["status"] == "success")
        if "unpriced" in filters:
            events = events.unpriced() if filters["unpriced"] else events.exclude(cost_usd__isnull=True)
        if "received_after" in filters:
            events = events.received_after(filters["received_after"], filters.get("after_id"))
        return events


class EventPagination(PageNumberPagination):
    """Pages of 50 unless `?page_size=` asks for 1 to 1,000: a follower of the cursor reads what
    arrived since its last look in one request rather than twenty. Unlike DRF's, a page size
    out of bounds is a 400, not quietly another size."""

    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size:,}."]})
        return size

    def get_schema_operation_parameters(self, view: object) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


@extend_schema_view(
    list=extend_schema(
        summary="The activity log",
        description="Events newest first, filtered like the activity page (which shows the last 30 "
        "days unless told otherwise; here, without range or since/until, every event). With "
        "`received_after`, a cursor instead: the events stored since then, oldest-stored first.",
        parameters=[EventFilterSerializer],
    ),
    retrieve=extend_schema(summary="One event"),
)
class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    queryset = CostEvent.objects.all()
    serializer_class = EventSerializer
    pagination_class = EventPagination
    parser_classes = [IngestionJSONParser]
    write_scope = ApiToken.Scope.INGEST
    write_role = Role.MEMBER

    def get_throttles(self) -> list:
        if self.request.method == "POST":
            return [IngestRateThrottle()]
        return super().get_throttles()

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = queryset.select_related("project")
        if self.action != "list":
            return queryset
        filters = EventFilterSerializer(data=self.request.query_params.dict())
        filters.is_valid(raise_exception=True)
        principal = self.principal
        if "project" in filters.validated_data or (isinstance(principal, ApiToken) and principal.project_id):
            queryset = queryset.filter(project=self.requested_project())
        return filters.apply(queryset)

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
        responses={
            202: BatchResult,
            400: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="BatchRefused", serializers=[BatchResult, FieldErrorsSerializer],
                    resource_type_field_name=None,
                ),
                description="No event stored: every item's errors (a BatchResult), or a request that "
                "is not a batch at all (messages per field, e.g. `events`).",
            ),
        },
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


class RecommendationQuerySerializer(serializers.Serializer):
    project = serializers.UUIDField(
        required=False, help_text="The project; only needed when the caller is not a project-bound token.",
    )
    # A number, not a decimal string: the schema can then state its bounds.
    share = serializers.FloatField(
        min_value=0.05, max_value=1, required=False,
        help_text="Share of a model's traffic assumed to move (0.05-1; default 0.5).",
    )


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


@extend_schema_serializer(many=False)  # one object holding the list, not a paginated list
class RecommendationsSerializer(serializers.Serializer):
    results = RecommendationSerializer.__class__(many=True)


class RecommendationViewSet(TenantViewSet):
    """Cheaper models, price rises, prompt caching and concentration, from the project's own
    last 30 days of traffic; each with its numbers and assumptions. Never paginated: a project
    has a handful."""

    queryset = CostEvent.objects.all()
    pagination_class = None

    @extend_schema(
        parameters=[RecommendationQuerySerializer],
        responses={200: RecommendationsSerializer},
        summary="Recommendations to spend less",
    )
    def list(self, request: Request) -> Response:
        params = RecommendationQuerySerializer(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        project = self.requested_project()
        share = Decimal(str(params.validated_data.get("share", "0.5")))
        return Response({"results": [r.as_dict() for r in recommendations.recommend(project, share=share)]})
