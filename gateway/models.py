"""What the gateway is configured with: where calls may go, and how a project routes and limits them.

    Connection     an organization's provider endpoint (kind, base URL, API key encrypted at rest)
    Route          a project's model name or alias → upstreams, with a strategy
    RouteUpstream  one (connection, upstream model, weight) of a route, in order
    GatewaySettings  a project's cache and body-logging choices (one row per project, created lazily)
    RateLimit      RPM/TPM/RPD/TPD for a whole project or one of its API tokens

The proxy itself (gateway/proxy.py and friends) never reads these tables per request: it reads a
snapshot built from them and cached in Redis and in process (gateway/state.py), which the
signals in gateway/signals.py invalidate on every change.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiToken, Organization, Project, Role, TenantQuerySet
from benchmarks.models import validate_base_url
from benchmarks.providers import KIND_MAX_LENGTH, kind_choices
from lib import egress
from lib.encrypted import EncryptedSecretField

MAX_UPSTREAMS_PER_ROUTE = 10
MAX_WEIGHT = 1000
MAX_CACHE_TTL_SECONDS = 30 * 86400
MAX_BODY_RETENTION_DAYS = 90
MAX_BODY_BYTES = 1_000_000
MAX_LIMIT = 10**12


class ConnectionQuerySet(TenantQuerySet):
    organization_path = "organization"

    def enabled(self) -> ConnectionQuerySet:
        return self.filter(is_enabled=True)


class Connection(models.Model):
    """An organization's way to reach one provider: wire format, base URL and API key.

    OpenAI-compatible connections cover OpenAI, Groq, Together, OpenRouter, DeepSeek, Mistral,
    Fireworks, vLLM, Ollama, and Anthropic and Gemini through their OpenAI-compatible endpoints;
    `anthropic` connections also serve `/v1/messages` natively. `provider` is the name calls are
    priced and rolled up under (genai-prices' provider id, e.g. "openai", "groq").
    """

    MANAGE_ROLE = Role.MEMBER  # keys are write-only, so no role can read one back

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="gateway_connections")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=KIND_MAX_LENGTH, choices=kind_choices)
    provider = models.CharField(
        max_length=64, help_text="The provider calls are priced under, e.g. openai, anthropic, groq."
    )
    base_url = models.URLField(max_length=300, validators=[validate_base_url])
    api_key = EncryptedSecretField(blank=True, default="")
    is_enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint("organization", "name", name="gateway_connection_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.organization} / {self.name}"

    def clean(self) -> None:
        # A first check for a clear field error; every upstream call checks again where the
        # socket is opened (lib/egress.py).
        if self.base_url and self.organization_id is not None:
            refused = egress.refusal(self.base_url, allow_private=self.organization.allows_private_egress)
            if refused:
                raise ValidationError({"base_url": refused})

    @property
    def has_key(self) -> bool:
        return bool(self.api_key)


class RouteQuerySet(TenantQuerySet):
    organization_path = "project__organization"
    project_path = "project"


class Route(models.Model):
    """What a model name (or an alias such as `fast-chat`) means for one project's callers."""

    class Strategy(models.TextChoices):
        ORDERED = "ordered", "Ordered (first healthy upstream, fall back in order)"
        WEIGHTED = "weighted", "Weighted (random by weight)"
        FASTEST = "fastest", "Fastest (lowest recent p50 TTFT)"
        CHEAPEST = "cheapest", "Cheapest (lowest current price)"

    MANAGE_ROLE = Role.MEMBER

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gateway_routes")
    name = models.CharField(
        max_length=128, help_text="The model name callers send, e.g. gpt-4o-mini, or an alias such as fast-chat."
    )
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.ORDERED)
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RouteQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint("project", "name", name="gateway_route_unique_name")]

    def __str__(self) -> str:
        return f"{self.project} / {self.name}"


class RouteUpstreamQuerySet(TenantQuerySet):
    organization_path = "route__project__organization"
    project_path = "route__project"


class RouteUpstream(models.Model):
    """One place a route may send a call: a connection and the model name it expects there."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="upstreams")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="route_upstreams")
    model = models.CharField(max_length=128, help_text="The model name the upstream expects.")
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_WEIGHT)])
    position = models.PositiveSmallIntegerField(default=0)

    objects = RouteUpstreamQuerySet.as_manager()

    class Meta:
        ordering = ["route", "position", "id"]

    def __str__(self) -> str:
        return f"{self.connection.name}/{self.model}"

    def clean(self) -> None:
        if self.route_id and self.connection_id and self.connection.organization_id != self.route.project.organization_id:
            raise ValidationError({"connection": "Choose a connection of this project's organization."})

    @property
    def label(self) -> str:
        """What `x-pulse-upstream` and the recorded event say: connection name / upstream model."""
        return f"{self.connection.name}/{self.model}"


class GatewaySettingsQuerySet(TenantQuerySet):
    organization_path = "project__organization"
    project_path = "project"


class GatewaySettings(models.Model):
    """A project's gateway choices. `GatewaySettings.of(project)` creates the row with defaults."""

    MANAGE_ROLE = Role.MEMBER

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="gateway_settings")
    cache_enabled = models.BooleanField(
        default=False, help_text="Replay identical requests from the cache (callers may override per request)."
    )
    cache_ttl_seconds = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(1), MaxValueValidator(MAX_CACHE_TTL_SECONDS)]
    )
    store_bodies = models.BooleanField(
        default=False, help_text="Keep request and response bodies (truncated) for the activity page."
    )
    body_retention_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(MAX_BODY_RETENTION_DAYS)]
    )
    body_max_bytes = models.PositiveIntegerField(
        default=32_768, validators=[MinValueValidator(256), MaxValueValidator(MAX_BODY_BYTES)]
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = GatewaySettingsQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "gateway settings"

    def __str__(self) -> str:
        return f"Gateway settings of {self.project}"

    @classmethod
    def of(cls, project: Project) -> GatewaySettings:
        settings_, _ = cls.objects.get_or_create(project=project)
        return settings_


class RateLimitQuerySet(TenantQuerySet):
    organization_path = "project__organization"
    project_path = "project"


def _limit_field(help_text: str) -> models.PositiveBigIntegerField:
    return models.PositiveBigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_LIMIT)], help_text=help_text
    )


class RateLimit(models.Model):
    """Requests and tokens per minute and per day, for a whole project (no token) or one token.
    Empty means unlimited. Enforced atomically in Redis across gateway processes."""

    MANAGE_ROLE = Role.MEMBER

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gateway_rate_limits")
    api_token = models.ForeignKey(
        ApiToken, on_delete=models.CASCADE, null=True, blank=True, related_name="gateway_rate_limits",
        help_text="Empty: the limit covers the whole project.",
    )
    requests_per_minute = _limit_field("RPM")
    tokens_per_minute = _limit_field("TPM")
    requests_per_day = _limit_field("RPD")
    tokens_per_day = _limit_field("TPD")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RateLimitQuerySet.as_manager()

    class Meta:
        ordering = ["project", "api_token"]
        constraints = [
            models.UniqueConstraint(
                "project", condition=Q(api_token__isnull=True), name="gateway_ratelimit_one_per_project"
            ),
            models.UniqueConstraint(
                "project", "api_token", condition=Q(api_token__isnull=False), name="gateway_ratelimit_one_per_token"
            ),
        ]

    def __str__(self) -> str:
        return f"Limits of {self.api_token or self.project}"

    def clean(self) -> None:
        if self.api_token_id and self.project_id and self.api_token.project_id != self.project_id:
            raise ValidationError({"api_token": "Choose a token of this project."})
