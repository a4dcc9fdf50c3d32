"""REST API for benchmarks, under /api/v1/benchmarks/.

- `providers`, `models` (+ `models/{uuid}/prices`): the public catalog, readable by anyone signed in.
- `targets`: an organization's private endpoints (CRUD; the API key is write-only).
- `runs`: run history (yours, or `?public=true`), a run's results, and "run now".
- `results`: measurements, filtered and paginated (yours, or `?public=true`).
- `stats`: per-model statistics over 24h / 7d / 30d.

Tenant data goes through TenantScopedViewSetMixin (via accounts.api.TenantViewSet); the public
set (organization empty) is selected explicitly with `?public=true`, never by widening a scope.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Prefetch, Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import OwnedByVisibleOrganization, TenantViewSet
from accounts.api_schema import NOT_BLANK, ErrorSerializer
from accounts.models import Organization, Role, User
from accounts.tenancy import TenantScopedViewSetMixin
from lib.dates import MomentParam
from lib.strict_fields import (
    StrictCharField,
    StrictChoiceField,
    StrictListField,
    StrictModelSerializer,
    StrictSlugRelatedField,
    StrictURLField,
)

from . import execution, statistics, tasks
from .models import (
    TARGET_MAX_MODEL_NAMES,
    TARGET_MODEL_NAME_MAX_LENGTH,
    BenchmarkResult,
    Model,
    Price,
    Provider,
    Run,
    Target,
    validate_base_url,
    validate_model_names,
)

STAT_RANGES = list(statistics.RANGES)
PUBLIC_PARAMETER = OpenApiParameter(
    "public", OpenApiTypes.BOOL, OpenApiParameter.QUERY,
    description="true: the public benchmarks (shown to everyone) instead of your organizations' own.",
)


def wants_public(request: Request) -> bool:
    value = request.query_params.get("public", "").strip().lower()
    if value in ("", "false", "0", "no"):
        return False
    if value in ("true", "1", "yes"):
        return True
    raise serializers.ValidationError({"public": "Must be true or false."})


def mine_or_public(model: type[Run] | type[BenchmarkResult], scoped: QuerySet) -> QuerySet:
    """Rows of `scoped` (already tenant-scoped) plus the public ones (organization empty)."""
    return model.objects.filter(Q(pk__in=scoped.values("pk")) | Q(organization__isnull=True))


# ---------------------------------------------------------------------------------------------
# Serializers
# ---------------------------------------------------------------------------------------------
class ProviderSerializer(StrictModelSerializer):
    # Not a URI field: providers added from the price database (costs.pricing) have none yet.
    base_url = serializers.CharField(read_only=True, help_text="The API's base URL; empty when not known.")

    class Meta:
        model = Provider
        fields = ["uuid", "name", "kind", "base_url", "is_aggregator", "is_active", "created_at"]
        read_only_fields = fields


class ModelSerializer(StrictModelSerializer):
    provider = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    provider_name = serializers.CharField(source="provider.name", read_only=True)

    class Meta:
        model = Model
        fields = [
            "uuid", "provider", "provider_name", "name", "display_name", "context_window",
            "is_active", "is_available", "first_seen_at", "last_seen_at",
        ]
        read_only_fields = fields


class PriceSerializer(StrictModelSerializer):
    blended_mtok = serializers.DecimalField(
        max_digits=20, decimal_places=6, read_only=True, help_text="USD per million tokens, 3:1 input:output."
    )

    class Meta:
        model = Price
        fields = [
            "input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "blended_mtok",
            "valid_from", "source",
        ]
        read_only_fields = fields


@extend_schema_field({
    "type": "array", "minItems": 1, "maxItems": TARGET_MAX_MODEL_NAMES, "uniqueItems": True,
    "items": {"type": "string", "minLength": 1, "maxLength": TARGET_MODEL_NAME_MAX_LENGTH, "pattern": NOT_BLANK},
})
class ModelNamesField(StrictListField):
    """Distinct, non-blank names (validate_model_names), which the schema says too."""


class TargetSerializer(OwnedByVisibleOrganization, StrictModelSerializer):
    """The rules on a target's fields live on the model (benchmarks/models.py) and are shared
    with the page form; max_tokens and interval_minutes get their bounds from the model field
    validators. base_url and model_names are declared here only because DRF needs JSON-shaped
    fields for them, and they carry the same validators."""

    organization = StrictSlugRelatedField(slug_field="uuid", queryset=Organization.objects.none())
    # The model field's own lazy choices: each serializer instance reads the provider registry.
    kind = StrictChoiceField(choices=Target._meta.get_field("kind").choices)
    # DRF drops a model URLField's URLValidators (it adds its own), so the scheme rule goes here too.
    base_url = StrictURLField(max_length=300, validators=[validate_base_url])
    api_key = StrictCharField(
        write_only=True, required=False, allow_blank=True, max_length=1000, trim_whitespace=True,
        help_text="Stored encrypted and never returned; send an empty string to remove it.",
    )
    has_api_key = serializers.SerializerMethodField(help_text="Whether an API key is stored.")
    model_names = ModelNamesField(
        child=StrictCharField(max_length=TARGET_MODEL_NAME_MAX_LENGTH, allow_blank=False),
        allow_empty=False, min_length=1, max_length=TARGET_MAX_MODEL_NAMES, validators=[validate_model_names],
        help_text="Model names to benchmark at this endpoint.",
    )

    class Meta:
        model = Target
        fields = [
            "uuid", "organization", "name", "kind", "base_url", "api_key", "has_api_key", "model_names",
            "prompt", "max_tokens", "interval_minutes", "is_enabled", "created_at",
        ]
        read_only_fields = ["uuid", "has_api_key", "created_at"]
        validators: list = []  # the name clash is reported on "name" by validate()

    def get_has_api_key(self, target: Target) -> bool:
        return bool(target.api_key)

    def validate(self, attrs: dict) -> dict:
        organization = attrs.get("organization") or self.instance.organization
        name, base_url = attrs.get("name"), attrs.get("base_url")
        candidate = Target(
            pk=self.instance.pk if self.instance else None, organization=organization, name=name, base_url=base_url
        )
        try:
            if name is not None:
                candidate.check_name_is_free()
            if base_url is not None:
                candidate.clean()  # the model's rules, as the page form and the admin run them
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from error
        return attrs

    def _save(self, target: Target, validated_data: dict) -> Target:
        # An omitted api_key keeps the stored one; "" removes it; the field encrypts the rest.
        for field, value in validated_data.items():
            setattr(target, field, value)
        target.save()
        return target

    def create(self, validated_data: dict) -> Target:
        return self._save(Target(), validated_data)

    def update(self, instance: Target, validated_data: dict) -> Target:
        return self._save(instance, validated_data)


class ResultSerializer(StrictModelSerializer):
    run = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    # A private target's results have no catalog provider or model; a public one's no target.
    provider = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    model = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    target = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    # Empty on a success (and before tokens are counted). Declared because DRF drops allow_blank
    # from read-only model fields, and the schema would then refuse "".
    token_count_source = serializers.ChoiceField(
        choices=BenchmarkResult._meta.get_field("token_count_source").choices, allow_blank=True, read_only=True,
    )
    error_kind = serializers.ChoiceField(
        choices=BenchmarkResult._meta.get_field("error_kind").choices, allow_blank=True, read_only=True,
    )

    class Meta:
        model = BenchmarkResult
        fields = [
            "uuid", "run", "provider", "model", "target", "provider_name", "model_name",
            "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "token_count_source",
            "total_latency_ms", "ttft_ms", "tps", "mean_inter_chunk_ms", "chunk_count",
            "status_code", "success", "error_kind", "error_message", "retry_after_s",
            "cost_usd", "is_priced", "created_at",
        ]
        read_only_fields = fields


class RunResultSerializer(ResultSerializer):
    """A result inside its run: the run is implied."""

    class Meta(ResultSerializer.Meta):
        fields = [f for f in ResultSerializer.Meta.fields if f != "run"]
        read_only_fields = fields


class RunSerializer(StrictModelSerializer):
    # Public runs belong to no organization and benchmark no private target.
    organization = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    target = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)

    class Meta:
        model = Run
        fields = [
            "uuid", "name", "organization", "target", "triggered_by", "status",
            "created_at", "started_at", "finished_at",
        ]
        read_only_fields = fields


class RunDetailSerializer(RunSerializer):
    results = RunResultSerializer(many=True, read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "results"]
        read_only_fields = fields


class RunCreateSerializer(serializers.Serializer):
    target = StrictSlugRelatedField(
        slug_field="uuid", queryset=Target.objects.none(), help_text="The private target to benchmark now."
    )

    def get_fields(self) -> dict:
        fields = super().get_fields()
        principal = self.context.get("principal")
        if principal is not None:
            fields["target"].queryset = Target.objects.visible_to(principal).select_related("organization")
        return fields


class RunConflictSerializer(ErrorSerializer):
    run = serializers.UUIDField(
        allow_null=True, help_text="The run already pending or running (follow it at /runs/{uuid}); null if it just ended.",
    )


class ResultFilterSerializer(serializers.Serializer):
    model = serializers.UUIDField(required=False, help_text="Only this model's results.")
    provider = serializers.UUIDField(required=False, help_text="Only this provider's results.")
    target = serializers.UUIDField(required=False, help_text="Only this private target's results.")
    success = serializers.BooleanField(required=False, help_text="Only successes (true) or failures (false).")
    since = MomentParam(required=False, help_text="ISO 8601; results at or after this time.")
    until = MomentParam(required=False, help_text="ISO 8601; results before this time.")
    public = serializers.BooleanField(required=False, help_text="true: the public benchmarks' results.")

    def validate(self, attrs: dict) -> dict:
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "Must be after since."})
        return attrs


class ModelFilterSerializer(serializers.Serializer):
    provider = serializers.UUIDField(required=False)
    active = serializers.BooleanField(required=False)


class StatsQuerySerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=STAT_RANGES, default="24h", help_text="The time window.")
    public = serializers.BooleanField(default=False, help_text="true: the public benchmarks' statistics.")


class ModelStatsSerializer(serializers.Serializer):
    model_uuid = serializers.UUIDField(allow_null=True)
    model_name = serializers.CharField()
    provider_name = serializers.CharField()
    is_aggregator = serializers.BooleanField()
    samples = serializers.IntegerField()
    successes = serializers.IntegerField()
    error_rate = serializers.FloatField(help_text="Failures / samples, 0..1.")
    ttft_p50_ms = serializers.FloatField(allow_null=True)
    ttft_p95_ms = serializers.FloatField(allow_null=True)
    tps_p50 = serializers.FloatField(allow_null=True)
    tps_p95 = serializers.FloatField(allow_null=True)
    latency_p50_ms = serializers.FloatField(allow_null=True)
    latency_p95_ms = serializers.FloatField(allow_null=True)
    jitter_ms = serializers.FloatField(allow_null=True, help_text="Standard deviation of total latency.")
    jitter_light = serializers.CharField(allow_null=True, help_text="green < 200 ms, yellow 200–500, red > 500.")
    cost_per_request_usd = serializers.DecimalField(max_digits=30, decimal_places=10, allow_null=True)
    blended_mtok_usd = serializers.DecimalField(max_digits=30, decimal_places=6, allow_null=True)
    value_score = serializers.FloatField(allow_null=True, help_text="TPS per blended $/Mtok.")


class StatsSerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=STAT_RANGES)
    since = serializers.DateTimeField()
    public = serializers.BooleanField()
    models = ModelStatsSerializer(many=True)


# ---------------------------------------------------------------------------------------------
# The public catalog
# ---------------------------------------------------------------------------------------------
class ProviderViewSet(viewsets.ReadOnlyModelViewSet):
    """Providers benchmarked publicly (the catalog; no credentials are exposed)."""

    queryset = Provider.objects.all()
    serializer_class = ProviderSerializer
    permission_classes = [IsAuthenticated]
    lookup_field = "uuid"


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("provider", OpenApiTypes.UUID, OpenApiParameter.QUERY, description="Only this provider's models."),
            OpenApiParameter("active", OpenApiTypes.BOOL, OpenApiParameter.QUERY,
                             description="true: only models on the public benchmark schedule; false: only the others."),
        ]
    )
)
class ModelViewSet(viewsets.ReadOnlyModelViewSet):
    """Models of the catalog, and their price history."""

    queryset = Model.objects.select_related("provider")
    serializer_class = ModelSerializer
    permission_classes = [IsAuthenticated]
    lookup_field = "uuid"

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        if self.action != "list" or getattr(self, "swagger_fake_view", False):
            return queryset
        params = ModelFilterSerializer(data=self.request.query_params.dict())
        params.is_valid(raise_exception=True)
        if "provider" in params.validated_data:
            queryset = queryset.filter(provider__uuid=params.validated_data["provider"])
        if "active" in params.validated_data:
            queryset = queryset.filter(is_active=params.validated_data["active"])
        return queryset

    @extend_schema(responses=PriceSerializer(many=True), summary="A model's price history, newest first")
    @action(detail=True, methods=["get"], serializer_class=PriceSerializer)
    def prices(self, request: Request, uuid: str | None = None) -> Response:
        model = self.get_object()
        prices = Price.objects.filter(model=model).order_by("-valid_from", "-id")
        page = self.paginate_queryset(prices)
        serializer = PriceSerializer(page if page is not None else prices, many=True)
        return self.get_paginated_response(serializer.data) if page is not None else Response(serializer.data)


# ---------------------------------------------------------------------------------------------
# Tenant data
# ---------------------------------------------------------------------------------------------
class TargetViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
    mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantViewSet,
):
    """Your organizations' private benchmark targets. Members and up may change them (the same
    role as on the pages: Target.MANAGE_ROLE)."""

    queryset = Target.objects.all()
    serializer_class = TargetSerializer
    write_role = Target.MANAGE_ROLE
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("organization")

    def perform_create(self, serializer: TargetSerializer) -> None:
        self.require_role(serializer.validated_data["organization"], self.write_role)
        serializer.save(created_by=self.principal if isinstance(self.principal, User) else None)


@extend_schema_view(
    list=extend_schema(parameters=[PUBLIC_PARAMETER]),
    retrieve=extend_schema(description="A run of yours or a public run, with its results."),
)
class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, TenantViewSet):
    """Benchmark runs: your organizations' (or, with `?public=true`, the public ones)."""

    queryset = Run.objects.all()
    serializer_class = RunSerializer
    write_role = Role.MEMBER

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        # The public runs (no organization) are added explicitly, never by widening the scope.
        if self.action == "list" and wants_public(self.request):
            queryset = Run.objects.public()
        elif self.action == "retrieve":
            queryset = mine_or_public(Run, queryset)
        queryset = queryset.select_related("organization", "target")
        if self.action == "retrieve":
            results = BenchmarkResult.objects.select_related("provider", "model", "target").order_by("created_at")
            queryset = queryset.prefetch_related(Prefetch("results", queryset=results))
        return queryset

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "create":
            return RunCreateSerializer
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    def organization_of(self, obj: Run) -> Organization | None:
        return obj.organization

    @extend_schema(
        summary="Run now",
        description="Benchmark a private target now (needs the member role in its organization). "
        "The run is queued and returned as pending; follow it at /runs/{uuid}.",
        request=RunCreateSerializer,
        responses={
            202: RunSerializer,
            400: OpenApiResponse(description="Unknown target (or one you cannot see)."),
            403: OpenApiResponse(description="Too weak a role, or a token without the write scope."),
            409: OpenApiResponse(RunConflictSerializer, description="A run of this target is already pending or running."),
        },
    )
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target: Target = serializer.validated_data["target"]
        self.require_role(target.organization, Role.MEMBER)
        try:
            run = execution.start_run(
                name=f"Run now: {target.name}", triggered_by=Run.Trigger.API, organization=target.organization,
                target=target, created_by=self.principal if isinstance(self.principal, User) else None,
                schedule_key=target.schedule_key,
            )
        except execution.RunAlreadyActive:
            # Named, so a client can follow the run that is going instead (`pulse benchmarks run`).
            active = (
                Run.objects.visible_to(self.principal)
                .filter(schedule_key=target.schedule_key, status__in=[Run.Status.PENDING, Run.Status.RUNNING])
                .order_by("-created_at").first()
            )
            return Response(
                {
                    "detail": f"A run of {target.name} is already pending or running; wait for it to finish.",
                    "run": str(active.uuid) if active is not None else None,
                },
                status=status.HTTP_409_CONFLICT,
            )
        run_uuid = str(run.uuid)
        # Queue only once the run is committed, or the worker may not find it.
        transaction.on_commit(lambda: tasks.execute_run.delay(run_uuid))
        return Response(RunSerializer(run, context=self.get_serializer_context()).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(list=extend_schema(parameters=[ResultFilterSerializer]))
class ResultViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Benchmark results, newest first: your organizations' (or, with `?public=true`, the public ones)."""

    queryset = BenchmarkResult.objects.all()
    serializer_class = ResultSerializer

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        # The public results (no organization) are added explicitly, never by widening the scope.
        if self.action != "list":
            return mine_or_public(BenchmarkResult, queryset).select_related("run", "provider", "model", "target")
        params = ResultFilterSerializer(data=self.request.query_params.dict())
        params.is_valid(raise_exception=True)
        filters = params.validated_data
        if filters.get("public"):
            queryset = BenchmarkResult.objects.public()
        lookups = {
            "model": "model__uuid", "provider": "provider__uuid", "target": "target__uuid",
            "success": "success", "since": "created_at__gte", "until": "created_at__lt",
        }
        queryset = queryset.filter(**{lookup: filters[name] for name, lookup in lookups.items() if name in filters})
        return queryset.select_related("run", "provider", "model", "target")

    def organization_of(self, obj: BenchmarkResult) -> Organization | None:
        return obj.organization


class StatsView(TenantScopedViewSetMixin, GenericAPIView):
    """Per-model statistics: p50/p95 TTFT, TPS and latency, jitter, error rate, cost, value."""

    queryset = BenchmarkResult.objects.all()
    serializer_class = StatsSerializer
    pagination_class = None

    @extend_schema(
        parameters=[StatsQuerySerializer],
        responses={200: StatsSerializer, 400: OpenApiResponse(description="Unknown range.")},
    )
    def get(self, request: Request) -> Response:
        params = StatsQuerySerializer(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        range_key, public = params.validated_data["range"], params.validated_data["public"]
        try:
            since = statistics.since_for(range_key)
        except ValueError as error:
            raise serializers.ValidationError({"range": str(error)}) from error
        if public:
            results = BenchmarkResult.objects.public()
        else:
            results = self.get_queryset()
        stats = statistics.model_stats(results, since)
        data = {"range": range_key, "since": since, "public": public, "models": stats}
        return Response(StatsSerializer(data).data)
