"""Cost summary REST API, under /api/v1/costs/ (read scope; viewers and up).

- `GET costs/summary?project=&range=30d|from=&to=&currency=&tag=`: totals, breakdowns by model,
  provider, day, API key and tag, the previous-period comparison and the month-end forecast.
  `?format=csv` (or `Accept: text/csv`) streams its day and model breakdowns as CSV instead.
- `GET costs/tokens?project=&range=…`: per-API-key spend, tokens, latency and success rate.

A project-bound token reads its own project; anyone else names one with `?project=` (404 unless
visible). Money is converted from USD with the latest stored rate and written as a string with
6 decimal places (a cost per 1K tokens is often a fraction of a cent); each response says
which rate and which day's rate it used. The domain work is in `costs.summary`; this is the
events API's sibling rather than part of `costs/api.py` so each file stays about one thing.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import renderers, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from accounts.api import TenantViewSet
from accounts.models import User
from lib.dates import DayParam
from lib.json_renderer import JSONRenderer

from .currency import Rates
from .export import MONEY_PLACES, summary_csv_response
from .models import CostRollup
from .money import Currency
from .summary import RANGE_DAYS, Period, Summary, token_usage

DEFAULT_RANGE = "30d"


class CSVRenderer(renderers.BaseRenderer):
    """Lets `?format=csv` / `Accept: text/csv` through content negotiation; the view streams the
    body itself (StreamingHttpResponse), so this never renders data."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: object, accepted_media_type: str | None = None, renderer_context: dict | None = None) -> bytes:
        raise NotImplementedError("CSV bodies are streamed by the view.")


# ---------------------------------------------------------------------------------------------
# Query parameters
# ---------------------------------------------------------------------------------------------
class CurrencyField(serializers.ChoiceField):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(choices=Currency.choices, **kwargs)

    def to_internal_value(self, data: object) -> str:
        return super().to_internal_value(str(data).strip().upper())


class PeriodQuerySerializer(serializers.Serializer):
    project = serializers.UUIDField(
        required=False, help_text="The project; only needed when the caller is not a project-bound token."
    )
    range = serializers.ChoiceField(
        choices=list(RANGE_DAYS), required=False,
        help_text=f"From the start of the UTC day N−1 days ago to now (default {DEFAULT_RANGE}). Not with from/to.",
    )
    from_date = DayParam(required=False, help_text="First UTC day (YYYY-MM-DD), with `to`.")
    to = DayParam(required=False, help_text="Last UTC day, included (YYYY-MM-DD), with `from`.")
    currency = CurrencyField(
        required=False, help_text="Money's currency; default: your display currency (USD for API tokens)."
    )

    def get_fields(self) -> dict:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_date")  # `from` is a Python keyword
        return fields

    def validate(self, attrs: dict) -> dict:
        first, last = attrs.get("from"), attrs.get("to")
        try:
            if first is None and last is None:
                attrs["period"] = Period.for_range(attrs.get("range", DEFAULT_RANGE), timezone.now())
            elif "range" in attrs:
                raise serializers.ValidationError({"range": "Give either range or from/to, not both."})
            elif first is None or last is None:
                missing = "from" if first is None else "to"
                raise serializers.ValidationError({missing: "Give both from and to (YYYY-MM-DD)."})
            else:
                attrs["period"] = Period.between(first, last, timezone.now())
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from error
        return attrs


class SummaryQuerySerializer(PeriodQuerySerializer):
    tag = serializers.CharField(
        required=False, max_length=64,
        help_text="Also break down by this tag key (e.g. feature); only rolled-up keys have data.",
    )


# ---------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------
class MoneyField(serializers.DecimalField):
    """A USD amount shown in the response's currency (`context["rates"]`, `context["currency"]`)."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("help_text", "In the response's currency, 6 decimal places.")
        super().__init__(
            max_digits=30, decimal_places=MONEY_PLACES, coerce_to_string=True, rounding=ROUND_HALF_UP,
            read_only=True, **kwargs,
        )

    def to_representation(self, value: Decimal) -> str:
        return super().to_representation(self.context["rates"].convert(value, self.context["currency"]))


class CurrencySerializer(serializers.Serializer):
    currency = serializers.CharField()
    symbol = serializers.CharField()
    rate_per_usd = serializers.DecimalField(max_digits=16, decimal_places=8, help_text="Units of currency per USD.")
    rate_date = serializers.DateField(allow_null=True, help_text="The day of the rate used (null for USD).")


class PeriodSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="Inclusive, UTC.")
    end = serializers.DateTimeField(help_text="Exclusive, UTC.")
    first_day = serializers.DateField()
    last_day = serializers.DateField()
    length_days = serializers.DecimalField(max_digits=8, decimal_places=2, help_text="What daily averages divide by.")


class UsageSerializer(serializers.Serializer):
    cost = MoneyField(source="cost_usd")
    requests = serializers.IntegerField()
    failures = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True, help_text="(requests − failures) / requests, 0..1.")
    tokens = serializers.IntegerField(help_text="input_tokens + output_tokens.")
    input_tokens = serializers.IntegerField(help_text="Cached tokens included.")
    output_tokens = serializers.IntegerField(help_text="Reasoning tokens included.")
    cached_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField()
    unpriced_requests = serializers.IntegerField(help_text="Requests with no known price (no cost, not $0).")
    unpriced_tokens = serializers.IntegerField(help_text="Tokens of unpriced requests; left out of cost per 1K tokens.")
    cost_per_1k_tokens = MoneyField(source="cost_per_1k_tokens_usd", allow_null=True)
    avg_latency_ms = serializers.FloatField(allow_null=True)
    cache_hits = serializers.IntegerField(help_text="Requests the gateway answered from its cache (at no cost).")
    saved = MoneyField(source="saved_usd", help_text="What the cache hits would have cost upstream (6 decimal places).")


class ModelUsageSerializer(UsageSerializer):
    provider = serializers.CharField()
    model = serializers.CharField()


class ProviderUsageSerializer(UsageSerializer):
    provider = serializers.CharField()


class DayUsageSerializer(UsageSerializer):
    date = serializers.DateField(source="day")


class TokenUsageSerializer(UsageSerializer):
    prefix = serializers.CharField(help_text="The key's visible prefix; empty for calls recorded by signed-in people.")
    name = serializers.CharField(help_text="The key's name, or its prefix once the key is deleted.")
    deleted = serializers.BooleanField()


class TagUsageSerializer(UsageSerializer):
    value = serializers.CharField()


class ComparisonSerializer(serializers.Serializer):
    previous_period = PeriodSerializer(source="previous")
    previous_totals = UsageSerializer(source="usage")
    cost_change_pct = serializers.FloatField(allow_null=True, help_text="null when the previous period had none.")
    tokens_change_pct = serializers.FloatField(allow_null=True)
    requests_change_pct = serializers.FloatField(allow_null=True)


class ForecastSerializer(serializers.Serializer):
    month_start = serializers.DateField()
    month_to_date = MoneyField(source="month_to_date_usd")
    run_rate_per_day = MoneyField(source="run_rate_usd_per_day")
    run_rate_basis = serializers.ChoiceField(choices=["last_7_complete_days", "month_so_far"])
    days_left = serializers.DecimalField(max_digits=8, decimal_places=2)
    forecast = MoneyField(source="forecast_usd", help_text="Projected spend for the whole UTC month.")
    method = serializers.CharField()


class CurrencyContextMixin(serializers.Serializer):
    currency = serializers.SerializerMethodField()

    @extend_schema_field(CurrencySerializer)
    def get_currency(self, _obj: object) -> dict:
        return self.context["rates"].describe(self.context["currency"])


class SummarySerializer(CurrencyContextMixin):
    projects = serializers.SerializerMethodField()
    range = serializers.CharField(source="period.range_key", allow_null=True)
    period = PeriodSerializer()
    totals = UsageSerializer()
    average_daily_cost = MoneyField(source="average_daily_cost_usd")
    average_daily_tokens = serializers.IntegerField()
    comparison = ComparisonSerializer()
    forecast = ForecastSerializer()
    by_model = ModelUsageSerializer(many=True)
    by_provider = ProviderUsageSerializer(many=True)
    by_day = DayUsageSerializer(many=True, help_text="Every UTC day of the period, zero-filled.")
    by_token = TokenUsageSerializer(many=True)
    unpriced_models = ModelUsageSerializer(many=True, help_text="Models with unpriced requests, and their tokens.")
    tag_key = serializers.CharField(allow_null=True)
    by_tag = TagUsageSerializer(many=True, help_text="Empty unless ?tag= was given.")

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_projects(self, summary: Summary) -> list[str]:
        return [str(p.uuid) for p in summary.projects]


class TokenAnalyticsSerializer(CurrencyContextMixin):
    project = serializers.UUIDField()
    range = serializers.CharField(allow_null=True)
    period = PeriodSerializer()
    tokens = TokenUsageSerializer(many=True)


# ---------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------
BAD_PARAMETERS = OpenApiResponse(description="Malformed parameters: one message per field.")
NOT_VISIBLE = OpenApiResponse(description="No such project (or not yours).")
NO_READ_SCOPE = OpenApiResponse(description="An API token without the read scope.")


class CostSummaryViewSet(TenantViewSet):
    """Spend analytics from the rollups (never the raw events)."""

    queryset = CostRollup.objects.all()
    serializer_class = SummarySerializer
    pagination_class = None

    def finalize_response(self, request: Request, response: object, *args: object, **kwargs: object) -> object:
        # Only the summary itself is streamed as CSV; every other answer to a request that asked
        # for CSV — an error, OPTIONS, a 405 — is JSON (a download that fails should say why,
        # and CSVRenderer cannot render data).
        if isinstance(response, Response) and isinstance(getattr(request, "accepted_renderer", None), CSVRenderer):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = request.accepted_renderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    def _params(self, serializer_class: type[serializers.Serializer]) -> dict:
        params = serializer_class(data=self.request.query_params.dict())
        params.is_valid(raise_exception=True)
        return params.validated_data

    def _currency(self, params: dict) -> str:
        if "currency" in params:
            return params["currency"]
        principal = self.principal
        return principal.display_currency if isinstance(principal, User) else Currency.USD

    @extend_schema(
        summary="Spend summary of a project",
        parameters=[SummaryQuerySerializer],
        responses={
            (200, "application/json"): SummarySerializer,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="Day and model breakdowns (?format=csv)."),
            400: BAD_PARAMETERS, 403: NO_READ_SCOPE, 404: NOT_VISIBLE,
        },
    )
    @action(
        detail=False, methods=["get"], url_path="summary",
        renderer_classes=[*api_settings.DEFAULT_RENDERER_CLASSES, CSVRenderer],
    )
    def summary(self, request: Request) -> Response:
        params = self._params(SummaryQuerySerializer)
        project = self.requested_project()
        currency, rates = self._currency(params), Rates.latest()
        summary = Summary.build([project], params["period"], tag=params.get("tag"))
        if isinstance(request.accepted_renderer, CSVRenderer):
            return summary_csv_response(summary, rates, currency)
        return Response(SummarySerializer(summary, context={"rates": rates, "currency": currency}).data)

    @extend_schema(
        summary="Spend, tokens, latency and success rate per API key",
        parameters=[PeriodQuerySerializer],
        responses={200: TokenAnalyticsSerializer, 400: BAD_PARAMETERS, 403: NO_READ_SCOPE, 404: NOT_VISIBLE},
    )
    @action(detail=False, methods=["get"], url_path="tokens")
    def tokens(self, request: Request) -> Response:
        params = self._params(PeriodQuerySerializer)
        project = self.requested_project()
        currency, rates = self._currency(params), Rates.latest()
        period = params["period"]
        data = {"project": project.uuid, "range": period.range_key, "period": period, "tokens": token_usage([project], period)}
        return Response(TokenAnalyticsSerializer(data, context={"rates": rates, "currency": currency}).data)
