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
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiToken, Organization, Project, Role, TenantQuerySet
from benchmarks.models import validate_base_url
from benchmarks.providers import KIND_MAX_LENGTH, kind_choices
from costs.pricing import normalize_provider
from lib import egress
from lib.encrypted import EncryptedSecretField

MAX_UPSTREAMS_PER_ROUTE = 10
MAX_WEIGHT = 1000
MAX_CACHE_TTL_SECONDS = 30 * 86400
MAX_BODY_RETENTION_DAYS = 90
MAX_BODY_BYTES = 1_000_000
MAX_LIMIT = 10**12
MODEL_NAME_MAX_LENGTH = 128

# What callers send as `model` and what upstreams expect: OpenAI's, Anthropic's, OpenRouter's
# ("meta-llama/llama-3-8b"), Ollama's ("llama3:8b") names all fit; white space and control
# characters never belong in one and would only make a route no client can name.
validate_model_name = RegexValidator(
    r"^[^\s\x00-\x1f\x7f]+$",
    message="A model name without spaces or control characters, e.g. gpt-4o-mini or fast-chat.",
    code="invalid_model_name",
)


def save_or_explain(instance: models.Model) -> None:
    """instance.save(); if a unique constraint fails because a concurrent save took the name
    between clean() and this save, the ValidationError clean() gives now (400 on the field),
    not an IntegrityError (500)."""
    try:
        with transaction.atomic():  # a savepoint: the transaction around stays usable
            instance.save()
    except IntegrityError:
        instance.full_clean()
        raise


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
        errors: dict[str, str] = {}
        # Calls are priced and rolled up under this name, the way ingestion normalises it.
        self.provider = normalize_provider(self.provider or "")
        if not self.provider:
            errors["provider"] = "Name the provider calls are priced under, e.g. openai."
        if self.organization_id is not None:
            if self.name and _queryable(self.name) and self._name_taken():
                errors["name"] = f"{self.organization.name} already has a connection named “{self.name}”."
            # A first check for a clear field error; every upstream call checks again where the
            # socket is opened (lib/egress.py).
            if self.base_url:
                refused = egress.refusal(self.base_url, allow_private=self.organization.allows_private_egress)
                if refused:
                    errors["base_url"] = refused
        if errors:
            raise ValidationError(errors)

    def _name_taken(self) -> bool:
        clash = Connection.objects.filter(organization_id=self.organization_id, name=self.name)
        return clash.exclude(pk=self.pk).exists() if self.pk else clash.exists()

    @property
    def has_key(self) -> bool:
        return bool(self.api_key)

    def key_would_follow_to_another_host(self, new_base_url: str) -> bool:
        """Whether moving to `new_base_url` would send the stored key to another origin (scheme,
        host or port). Forms and the API then ask for the key again: whoever may edit a
        connection must not be able to point it at their own server and receive the key that
        someone else entered for OpenAI."""
        if not self.pk or not self.api_key or not new_base_url:
            return False
        stored = Connection.objects.filter(pk=self.pk).values_list("base_url", flat=True).first()
        return stored is not None and _origin(stored) != _origin(new_base_url)

    def routes_using(self) -> RouteQuerySet:
        return Route.objects.filter(upstreams__connection=self).select_related("project").distinct()


def _queryable(text: str) -> bool:
    """Whether a value can be looked up at all: PostgreSQL text holds no NUL character (the
    field's own validation reports it; clean() runs anyway and must not fail on the query)."""
    return "\x00" not in text


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:  # a malformed port: the URL field's own validator reports it
        return ("", url, None)


class RouteQuerySet(TenantQuerySet):
    organization_path = "project__organization"
    project_path = "project"

    def callable(self) -> RouteQuerySet:
        """Routes a gateway caller may name as `model` (what GET /v1/models lists): enabled,
        with at least one upstream on an enabled connection."""
        return self.filter(is_enabled=True, upstreams__connection__is_enabled=True).distinct()


@dataclass(frozen=True)
class UpstreamSpec:
    """One upstream as a form or the API gives it, before it is saved in its route's order."""

    connection: Connection
    model: str
    weight: int = 1


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
        max_length=MODEL_NAME_MAX_LENGTH, validators=[validate_model_name],
        help_text="The model name callers send, e.g. gpt-4o-mini, or an alias such as fast-chat.",
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

    def clean(self) -> None:
        if self.project_id is not None and self.name and _queryable(self.name):
            clash = Route.objects.filter(project_id=self.project_id, name=self.name)
            if (clash.exclude(pk=self.pk) if self.pk else clash).exists():
                raise ValidationError({"name": f"{self.project.name} already has a route named “{self.name}”."})

    def check_upstreams(self, specs: list[UpstreamSpec]) -> None:
        """The rules on a route's upstream list (the fields' own rules are the RouteUpstream
        model's); raises UpstreamsInvalid with each problem on its upstream's index."""
        overall: list[str] = []
        per_upstream: dict[int, dict[str, list[str]]] = {}
        if not specs:
            overall.append("Add at least one upstream: a connection and the model name it expects.")
        elif len(specs) > MAX_UPSTREAMS_PER_ROUTE:
            overall.append(f"At most {MAX_UPSTREAMS_PER_ROUTE} upstreams per route.")
        seen: set[tuple[int, str]] = set()
        for index, spec in enumerate(specs):
            problems: dict[str, list[str]] = {}
            if spec.connection.organization_id != self.project.organization_id:
                problems["connection"] = ["Choose a connection of this project's organization."]
            if not 1 <= spec.weight <= MAX_WEIGHT:
                problems["weight"] = [f"A weight from 1 to {MAX_WEIGHT}."]
            if (spec.connection.pk, spec.model) in seen:
                problems["model"] = [f"{spec.connection.name}/{spec.model} is listed twice; list each upstream once."]
            seen.add((spec.connection.pk, spec.model))
            if problems:
                per_upstream[index] = problems
        if overall or per_upstream:
            raise UpstreamsInvalid(overall, per_upstream)

    @transaction.atomic
    def replace_upstreams(self, specs: list[UpstreamSpec]) -> list[RouteUpstream]:
        """Make `specs`, in this order, the route's upstreams (check_upstreams() first). Saved
        one by one, not in bulk: the gateway's cached configuration is invalidated by each
        row's save and delete signals (gateway/signals.py), which bulk_create does not send."""
        self.upstreams.all().delete()
        upstreams = []
        for position, spec in enumerate(specs):
            upstream = RouteUpstream(
                route=self, connection=spec.connection, model=spec.model, weight=spec.weight, position=position
            )
            upstream.save()
            upstreams.append(upstream)
        return upstreams


class UpstreamsInvalid(ValidationError):
    """What is wrong with a route's upstream list: `overall` for the list as a whole and
    `per_upstream[index][field]` for one upstream, so a form or the API can show each message
    where it belongs."""

    def __init__(self, overall: list[str], per_upstream: dict[int, dict[str, list[str]]]) -> None:
        self.overall = overall
        self.per_upstream = per_upstream
        messages = [*overall] + [
            f"Upstream {index + 1}: {message}"
            for index, problems in sorted(per_upstream.items()) for found in problems.values() for message in found
        ]
        super().__init__({"upstreams": messages})


class RouteUpstreamQuerySet(TenantQuerySet):
    organization_path = "route__project__organization"
    project_path = "route__project"


class RouteUpstream(models.Model):
    """One place a route may send a call: a connection and the model name it expects there."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="upstreams")
    # RESTRICT, not CASCADE: deleting a connection must not quietly empty the routes that use it
    # (it is refused while any does); an organization's or project's deletion, which removes the
    # upstreams too, still goes through.
    connection = models.ForeignKey(Connection, on_delete=models.RESTRICT, related_name="route_upstreams")
    model = models.CharField(
        max_length=MODEL_NAME_MAX_LENGTH, validators=[validate_model_name],
        help_text="The model name the upstream expects.",
    )
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

    @classmethod
    def current(cls, project: Project) -> GatewaySettings:
        """What applies now, for reading: the saved row, or the defaults (unsaved) when the
        project never changed them. Reading never creates the row."""
        return cls.objects.filter(project=project).first() or cls(project=project)


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

    LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "requests_per_day", "tokens_per_day")

    class Scope(models.TextChoices):
        PROJECT = "project", "The whole project's calls"
        TOKEN = "token", "One API token's calls"

    @property
    def scope(self) -> str:
        return self.Scope.TOKEN if self.api_token_id else self.Scope.PROJECT

    def clean(self) -> None:
        if self.api_token_id and self.project_id and self.api_token.project_id != self.project_id:
            raise ValidationError({"api_token": "Choose a token of this project."})
        if all(getattr(self, name) is None for name in self.LIMIT_FIELDS):
            raise ValidationError("Set at least one limit (requests or tokens, per minute or per day).")
        if self.project_id is not None:
            clash = RateLimit.objects.filter(project_id=self.project_id, api_token_id=self.api_token_id)
            if (clash.exclude(pk=self.pk) if self.pk else clash).exists():
                if self.api_token_id:
                    raise ValidationError({"api_token": "This token already has limits here; change those instead."})
                raise ValidationError({"api_token": "The project already has project-wide limits; change those instead."})

    def as_dict(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in self.LIMIT_FIELDS}
