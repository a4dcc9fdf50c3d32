"""Serializers of the gateway's management API (gateway/api.py): connections, routes with their
upstreams, a project's settings, rate limits, and the models a project may call.

The rules live on the models (gateway/models.py) and are shared with the page forms: every write
builds the object it would save and runs its `full_clean()`, and a route's upstream list goes
through `Route.check_upstreams()`; each Django error becomes a 400 on the field (or the upstream
index) it names. Unknown fields are refused rather than ignored: a misspelt `weigth` silently
dropped would route traffic differently from what the caller wrote.

A connection's API key is write-only: responses say `has_key`, never the key or any part of it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.utils.encoders import JSONEncoder

from accounts.api import OwnedByVisibleOrganization
from accounts.models import ApiToken, Organization, Project, User
from alerts.serializers import django_errors_as_api_errors
from benchmarks.models import validate_base_url
from lib.strict_fields import (
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
    StrictModelSerializer,
    StrictSlugRelatedField,
    StrictURLField,
)

from .models import (
    MAX_LIMIT,
    MAX_UPSTREAMS_PER_ROUTE,
    Connection,
    GatewaySettings,
    RateLimit,
    Route,
    RouteUpstream,
    UpstreamsInvalid,
    UpstreamSpec,
    save_or_explain,
)

API_KEY_MAX_LENGTH = 1000


# ---------------------------------------------------------------------------------------------
# The shared base: unknown fields refused, the model's own validation
# ---------------------------------------------------------------------------------------------
class RefusesUnknownFields:
    """Keys that are not fields are a 400 each ("Unknown field."), and the OpenAPI schema says
    `additionalProperties: false` (accounts/api_schema.py reads `rejects_unknown_fields`). A
    read-only field is accepted only with the value it already has (timestamps are ignored), so a
    body read with GET can be sent back with PUT, but nobody believes they changed what cannot."""

    rejects_unknown_fields = True
    # Bookkeeping a client cannot mean to set; a stale copy of them sent back is no mistake.
    IGNORED_READ_ONLY = frozenset({"created_at", "updated_at"})
    # Nested items (a route's upstreams) carry derived read-only values (label, connection
    # name) that follow from their writable fields: ignored, as DRF does.
    ignores_read_only_values = False

    def to_internal_value(self, data: object) -> dict:
        if isinstance(data, Mapping):
            errors = {}
            for name, value in data.items():
                field = self.fields.get(name)
                if field is None:
                    errors[name] = ["Unknown field."]
                elif (
                    field.read_only and name not in self.IGNORED_READ_ONLY and not self.ignores_read_only_values
                    and not self._is_current(field, value)
                ):
                    errors[name] = ["Read-only: leave it out."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)

    def _is_current(self, field: serializers.Field, value: object) -> bool:
        if self.instance is None or isinstance(self.instance, list):
            return False
        try:
            shown = field.to_representation(field.get_attribute(self.instance))
        except (AttributeError, KeyError, SkipField):
            return False
        return json.loads(json.dumps(shown, cls=JSONEncoder)) == value


class FixedOwnerMixin:
    """The owner of the object (`project`) is named on creation and never changes; on an update
    the field is read-only, as the organization is for organization-owned objects (the schema's
    update requests leave it out: accounts/api_schema.update_variant)."""

    organization_fixed_after_creation = True
    owner_field = "project"

    def get_fields(self) -> dict:
        fields = super().get_fields()
        principal = self.context.get("principal")  # absent while the OpenAPI schema is generated
        if principal is not None:
            fields[self.owner_field].queryset = Project.objects.visible_to(principal).select_related("organization")
        if self.instance is not None:
            fields[self.owner_field].read_only = True
        return fields


class CleanedModelSerializer(RefusesUnknownFields, StrictModelSerializer):
    """Validates the object it would save with the model's `full_clean()`, as forms do; the
    database constraints run last, once clean() has said per field what is wrong."""

    @property
    def principal(self) -> User | ApiToken | None:
        return self.context.get("principal")

    def model_fields_of(self, attrs: dict) -> dict:
        """The attributes that are the model's own columns (not nested lists, not write-only extras)."""
        return attrs

    def validate(self, attrs: dict) -> dict:
        candidate = copy.copy(self.instance) if self.instance is not None else self.Meta.model()
        for name, value in self.model_fields_of(attrs).items():
            setattr(candidate, name, value)
        try:
            candidate.full_clean(validate_constraints=False)
            candidate.validate_constraints()
        except DjangoValidationError as error:
            raise django_errors_as_api_errors(error) from None
        # clean() may normalise (a connection's provider is lower-cased): keep what it approved.
        attrs.update({name: getattr(candidate, name) for name in self.model_fields_of(attrs)})
        self.candidate = candidate
        return attrs

    def _save(self, instance: models.Model, validated_data: dict) -> models.Model:
        for name, value in validated_data.items():
            setattr(instance, name, value)
        save_or_explain(instance)  # a name taken meanwhile: 400 on the field (the exception handler)
        return instance

    def create(self, validated_data: dict) -> models.Model:
        return self._save(self.Meta.model(), validated_data)

    def update(self, instance: models.Model, validated_data: dict) -> models.Model:
        return self._save(instance, validated_data)


# ---------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------
class ConnectionSerializer(OwnedByVisibleOrganization, CleanedModelSerializer):
    organization = StrictSlugRelatedField(
        slug_field="uuid", queryset=Organization.objects.none(),
        help_text="The organization's uuid; set on creation, never changes.",
    )
    # The model field's own lazy choices: each serializer instance reads the provider registry.
    kind = StrictChoiceField(
        choices=Connection._meta.get_field("kind").choices,
        help_text="The wire format: openai_compatible (OpenAI, Groq, Together, OpenRouter, DeepSeek, Mistral, "
        "Fireworks, vLLM, Ollama, and Anthropic or Gemini through their OpenAI-compatible endpoints), anthropic "
        "(native Messages API, for /v1/messages) or gemini.",
    )
    # DRF drops a model URLField's URLValidators (it adds its own), so the scheme rule goes here too.
    base_url = StrictURLField(
        max_length=300, validators=[validate_base_url],
        help_text="The API root, e.g. https://api.openai.com/v1. Private addresses are refused unless an operator "
        "allowed them for the organization.",
    )
    api_key = StrictCharField(
        write_only=True, required=False, allow_blank=True, max_length=API_KEY_MAX_LENGTH, trim_whitespace=True,
        help_text="Stored encrypted and never returned. Omit it to keep the stored key, send \"\" to remove it. "
        "Changing base_url to another host needs the key again.",
    )
    has_key = serializers.BooleanField(read_only=True, help_text="Whether an API key is stored.")
    route_count = serializers.SerializerMethodField(help_text="How many routes (of any project) use this connection.")

    class Meta:
        model = Connection
        fields = [
            "uuid", "organization", "name", "kind", "provider", "base_url", "api_key", "has_key", "is_enabled",
            "route_count", "created_at", "updated_at",
        ]
        read_only_fields = ["uuid", "has_key", "route_count", "created_at", "updated_at"]
        validators: list = []  # the name clash is reported on "name" by Connection.clean()
        extra_kwargs = {
            "name": {"help_text": "Unique in the organization; shown in x-pulse-upstream as name/model."},
            "provider": {"help_text": "The provider calls are priced and rolled up under (e.g. openai, groq, anthropic)."},
            "is_enabled": {"help_text": "A disabled connection is skipped by every route."},
        }

    def get_route_count(self, connection: Connection) -> int:
        counted = getattr(connection, "route_count", None)
        return counted if counted is not None else connection.routes_using().count()

    def model_fields_of(self, attrs: dict) -> dict:
        return {name: value for name, value in attrs.items() if name != "api_key"}

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if (
            self.instance is not None and "api_key" not in attrs and "base_url" in attrs
            and self.instance.key_would_follow_to_another_host(attrs["base_url"])
        ):
            raise serializers.ValidationError({"api_key": [
                "The base URL now points at another host: send the API key again (or \"\" to remove it), "
                "so the stored key is never sent anywhere it was not entered for."
            ]})
        return attrs

    # _save(): an omitted api_key keeps the stored one; "" removes it; the field encrypts the rest.


# ---------------------------------------------------------------------------------------------
# Routes and their upstreams
# ---------------------------------------------------------------------------------------------
class UpstreamSerializer(RefusesUnknownFields, StrictModelSerializer):
    ignores_read_only_values = True
    connection = StrictSlugRelatedField(
        slug_field="uuid", queryset=Connection.objects.none(),
        help_text="A connection of the project's organization, by uuid.",
    )
    connection_name = serializers.CharField(source="connection.name", read_only=True)
    label = serializers.CharField(read_only=True, help_text="connection name/model, as in x-pulse-upstream.")
    weight = StrictIntegerField(
        min_value=1, max_value=1000, default=1,
        help_text="The share of traffic under the weighted strategy (1-1000); ignored by the others.",
    )

    class Meta:
        model = RouteUpstream
        fields = ["connection", "connection_name", "model", "weight", "label"]
        read_only_fields = ["connection_name", "label"]
        extra_kwargs = {"model": {"help_text": "The model name this upstream expects, e.g. gpt-4o-mini."}}

    def get_fields(self) -> dict:
        fields = super().get_fields()
        principal = self.context.get("principal")
        if principal is not None:
            fields["connection"].queryset = Connection.objects.visible_to(principal).select_related("organization")
        return fields


class RouteSerializer(FixedOwnerMixin, CleanedModelSerializer):
    project = StrictSlugRelatedField(
        slug_field="uuid", queryset=Project.objects.none(),
        help_text="The project's uuid; set on creation, never changes.",
    )
    upstreams = UpstreamSerializer(
        many=True, allow_empty=False, max_length=MAX_UPSTREAMS_PER_ROUTE,
        help_text=f"Where calls go, in order (1-{MAX_UPSTREAMS_PER_ROUTE}). A change replaces the whole list.",
    )

    class Meta:
        model = Route
        fields = ["uuid", "project", "name", "strategy", "is_enabled", "upstreams", "created_at", "updated_at"]
        read_only_fields = ["uuid", "created_at", "updated_at"]
        validators: list = []  # the name clash is reported on "name" by Route.clean()
        extra_kwargs = {
            "name": {"help_text": "The model name callers send (e.g. gpt-4o-mini) or an alias (e.g. fast-chat); "
                                  "unique in the project."},
            "strategy": {"help_text": "ordered: first healthy upstream, then the next; weighted: random by weight; "
                                      "fastest: lowest recent p50 time to first token; cheapest: lowest current price."},
            "is_enabled": {"help_text": "A disabled route answers 404 model_not_found, as an unknown one."},
        }

    def get_fields(self) -> dict:
        fields = super().get_fields()
        if self.instance is not None:
            fields["upstreams"].required = False  # a change may keep the upstreams
        return fields

    def model_fields_of(self, attrs: dict) -> dict:
        return {name: value for name, value in attrs.items() if name != "upstreams"}

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if "upstreams" in attrs:
            attrs["upstreams"] = [UpstreamSpec(**item) for item in attrs["upstreams"]]
            try:
                self.candidate.check_upstreams(attrs["upstreams"])
            except UpstreamsInvalid as invalid:
                raise serializers.ValidationError({"upstreams": _upstream_errors(invalid)}) from None
        return attrs

    def _save(self, route: Route, validated_data: dict) -> Route:
        specs = validated_data.pop("upstreams", None)
        route = super()._save(route, validated_data)
        if specs is not None:
            route.replace_upstreams(specs)
        return route


def _upstream_errors(invalid: UpstreamsInvalid) -> list[str] | dict[int, dict[str, list[str]]]:
    """DRF's shape for a nested list: messages for the list as a whole, or the problems of each
    upstream under its index (as DRF reports an item's own field errors)."""
    return invalid.overall or invalid.per_upstream


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
class GatewaySettingsSerializer(RefusesUnknownFields, StrictModelSerializer):
    project = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    updated_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Null while the project runs on the defaults.",
    )

    class Meta:
        model = GatewaySettings
        fields = [
            "project", "cache_enabled", "cache_ttl_seconds", "store_bodies", "body_retention_days", "body_max_bytes",
            "updated_at",
        ]
        read_only_fields = ["project", "updated_at"]
        extra_kwargs = {
            "cache_enabled": {"help_text": "Replay identical requests from the cache; callers may override per "
                                           "request with x-pulse-cache: on|off."},
            "cache_ttl_seconds": {"help_text": "How long a cached answer is replayed (1 s to 30 days)."},
            "store_bodies": {"help_text": "Keep request and response bodies (truncated) for the activity page."},
            "body_retention_days": {"help_text": "Stored bodies are deleted after this many days (1-90)."},
            "body_max_bytes": {"help_text": "Each stored body is cut to this many bytes (256 to 1,000,000)."},
        }

    def validate(self, attrs: dict) -> dict:
        candidate = copy.copy(self.instance)
        for name, value in attrs.items():
            setattr(candidate, name, value)
        try:
            candidate.full_clean(exclude=["project"])
        except DjangoValidationError as error:
            raise django_errors_as_api_errors(error) from None
        return attrs


# ---------------------------------------------------------------------------------------------
# Rate limits
# ---------------------------------------------------------------------------------------------
def _limit_field(what: str) -> StrictIntegerField:
    return StrictIntegerField(
        min_value=1, max_value=MAX_LIMIT, allow_null=True, required=False,
        help_text=f"{what}; null (or left out) for no limit.",
    )


class RateLimitSerializer(FixedOwnerMixin, CleanedModelSerializer):
    project = StrictSlugRelatedField(
        slug_field="uuid", queryset=Project.objects.none(),
        help_text="The project's uuid; set on creation, never changes.",
    )
    api_token = StrictSlugRelatedField(
        slug_field="uuid", queryset=ApiToken.objects.none(), allow_null=True, required=False,
        help_text="A token of the project, by uuid: the limits apply to that token's calls. Null: to the whole project.",
    )
    scope = serializers.ChoiceField(
        choices=RateLimit.Scope.choices, read_only=True, help_text="project: the whole project's calls; token: one token's.",
    )
    api_token_name = serializers.SerializerMethodField(help_text="The token's name; null for project-wide limits.")
    requests_per_minute = _limit_field("Requests per minute (RPM)")
    tokens_per_minute = _limit_field("Tokens per minute (TPM), input and output")
    requests_per_day = _limit_field("Requests per day (RPD)")
    tokens_per_day = _limit_field("Tokens per day (TPD), input and output")

    class Meta:
        model = RateLimit
        fields = [
            "uuid", "project", "api_token", "api_token_name", "scope", "requests_per_minute", "tokens_per_minute",
            "requests_per_day", "tokens_per_day", "created_at", "updated_at",
        ]
        read_only_fields = ["uuid", "api_token_name", "scope", "created_at", "updated_at"]
        validators: list = []  # one row per project / per token: reported on api_token by RateLimit.clean()

    def get_fields(self) -> dict:
        fields = super().get_fields()
        if self.principal is not None:
            fields["api_token"].queryset = ApiToken.objects.visible_to(self.principal)
        return fields

    def get_api_token_name(self, limit: RateLimit) -> str | None:
        return limit.api_token.name if limit.api_token_id else None


# ---------------------------------------------------------------------------------------------
# The models a project may call
# ---------------------------------------------------------------------------------------------
class CallableModelSerializer(serializers.Serializer):
    id = serializers.CharField(source="name", help_text="The name to send as `model` (what GET /v1/models lists).")
    strategy = serializers.ChoiceField(choices=Route.Strategy.choices)
    upstreams = serializers.SerializerMethodField(help_text="Its enabled upstreams, in order, as connection/model.")

    def get_upstreams(self, route: Route) -> list[str]:
        return [upstream.label for upstream in route.upstreams.all() if upstream.connection.is_enabled]


class CallableModelsSerializer(serializers.Serializer):
    project = serializers.UUIDField()
    base_url = serializers.CharField(help_text="The gateway's base URL for the OpenAI SDK (GATEWAY_PUBLIC_URL).")
    models = CallableModelSerializer(many=True)


# ---------------------------------------------------------------------------------------------
# Filters (query parameters)
# ---------------------------------------------------------------------------------------------
class ConnectionFilterSerializer(serializers.Serializer):
    organization = serializers.UUIDField(required=False, help_text="Only this organization's connections.")


class ProjectFilterSerializer(serializers.Serializer):
    project = serializers.UUIDField(required=False, help_text="Only this project's.")
