"""Benchmarks: providers, their models and price history, and the runs and results that measure
them. Public benchmarks (operator-configured, organization empty) form the leaderboard; an
organization's private targets and their results are visible only to it (TenantQuerySet)."""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models import Case, IntegerField, OuterRef, Subquery, Value, When
from django.utils import timezone

from accounts.models import Organization, Role, TenantQuerySet
from lib import egress
from lib.encrypted import EncryptedSecretField

from .providers import KIND_MAX_LENGTH, ErrorKind, TokenCountSource, kind_choices

MILLION = Decimal(1_000_000)


# Named constants for the kinds registered when Pulse starts (ProviderKind.ANTHROPIC…), derived
# from the provider registry. The kind fields themselves take their choices from the live
# registry (`kind_choices`, a callable): a provider added later needs no migration.
ProviderKind = models.TextChoices(
    "ProviderKind", [(kind.upper(), (kind, label)) for kind, label in kind_choices()]
)


class Provider(models.Model):
    """An API that serves models: OpenAI, Groq, OpenRouter (an aggregator), Anthropic, Gemini…"""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=KIND_MAX_LENGTH, choices=kind_choices)
    base_url = models.URLField(max_length=300)
    is_aggregator = models.BooleanField(
        default=False, help_text="Resells other companies' models (e.g. OpenRouter), rather than serving its own."
    )
    api_key_env = models.CharField(
        max_length=64, blank=True, help_text="Environment variable holding the API key, e.g. OPENAI_API_KEY."
    )
    api_key = EncryptedSecretField(
        blank=True, default="", help_text="Encrypted; set in the admin to override the environment variable."
    )
    genai_prices_id = models.CharField(
        max_length=64, blank=True, help_text="This provider's id in genai-prices (for price sync), e.g. openai."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def api_key_value(self) -> str:
        """The key to call the provider with: the admin's encrypted override, else the env var."""
        if self.api_key:
            return self.api_key.reveal()
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""


class Model(models.Model):
    """A model a provider serves. `is_active` models are benchmarked; `is_available` says the
    provider still lists it (model discovery marks vanished ones)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200, help_text="The name the API expects, e.g. gpt-4o-mini.")
    display_name = models.CharField(max_length=200, blank=True)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=False, help_text="Benchmarked on the public schedule.")
    is_available = models.BooleanField(default=True, help_text="Listed by the provider's models API.")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["provider__name", "name"]
        constraints = [models.UniqueConstraint("provider", "name", name="model_unique_name_per_provider")]

    def __str__(self) -> str:
        return f"{self.provider.name} / {self.name}"

    def price_at(self, when: datetime) -> Price | None:
        return Price.objects.valid_at(self, when)


class PriceQuerySet(models.QuerySet):
    def valid_at(self, model: Model, when: datetime) -> Price | None:
        """The price in force at `when`: the latest one that started by then, an operator's
        override beating the bundled data."""
        admin_first = Case(When(source=Price.Source.ADMIN, then=Value(0)), default=Value(1), output_field=IntegerField())
        return (
            self.filter(model=model, valid_from__lte=when)
            .order_by(admin_first, "-valid_from", "-id")
            .first()
        )


class Price(models.Model):
    """USD per million tokens from `valid_from` on. A history: rows are added, never edited, so
    a result is always priced as it was when it happened."""

    class Source(models.TextChoices):
        GENAI_PRICES = "genai_prices", "genai-prices (bundled data)"
        ADMIN = "admin", "Operator override"

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="prices")
    input_mtok = models.DecimalField(max_digits=14, decimal_places=6)
    output_mtok = models.DecimalField(max_digits=14, decimal_places=6)
    cache_read_mtok = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cache_write_mtok = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    valid_from = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.ADMIN)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = PriceQuerySet.as_manager()

    class Meta:
        ordering = ["model", "-valid_from"]
        constraints = [
            models.UniqueConstraint("model", "source", "valid_from", name="price_one_per_model_source_start"),
        ]
        indexes = [
            # valid_at(): the latest price that started before a timestamp, per model.
            models.Index(fields=["model", "valid_from"], name="price_model_valid_from"),
        ]

    def __str__(self) -> str:
        return f"{self.model}: ${self.input_mtok} in / ${self.output_mtok} out per Mtok from {self.valid_from:%Y-%m-%d}"

    @property
    def blended_mtok(self) -> Decimal:
        """3:1 input:output, the usual blend for comparing models on one number."""
        return (3 * self.input_mtok + self.output_mtok) / 4

    def cost(self, *, input_tokens: int, output_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0) -> Decimal:
        """Cost in USD. `input_tokens` counts every prompt token; the cached part is charged at
        the cache-read price instead of (not on top of) the input price."""
        cached = min(cached_tokens, input_tokens)
        written = min(cache_write_tokens, input_tokens - cached)
        uncached = input_tokens - cached - written
        cache_read = self.cache_read_mtok if self.cache_read_mtok is not None else self.input_mtok
        cache_write = self.cache_write_mtok if self.cache_write_mtok is not None else self.input_mtok
        total = uncached * self.input_mtok + cached * cache_read + written * cache_write + output_tokens * self.output_mtok
        return total / MILLION


# The rules a private target must follow, whichever way it is written (page form, API, admin):
# they sit on the model fields, so ModelForm and ModelSerializer both enforce them.
TARGET_MAX_MODEL_NAMES = 100
TARGET_MODEL_NAME_MAX_LENGTH = 200
TARGET_MAX_TOKENS = 32768
TARGET_MIN_INTERVAL_MINUTES = 5  # more often would hammer the endpoint and the worker pool
TARGET_MAX_INTERVAL_MINUTES = 24 * 60

# Only HTTP(S): every adapter speaks HTTP, and ftp:// (which URLField allows) would only fail later.
validate_base_url = URLValidator(
    schemes=["http", "https"], message="Enter an http:// or https:// URL.", code="invalid_scheme"
)


def validate_model_names(value: object) -> None:
    """A non-empty list of distinct, non-blank model names (each becomes one request per run)."""
    if not isinstance(value, list) or not value:
        raise ValidationError("Enter at least one model name.", code="required")
    if len(value) > TARGET_MAX_MODEL_NAMES:
        raise ValidationError(f"At most {TARGET_MAX_MODEL_NAMES} model names.", code="max_length")
    for name in value:
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("Model names cannot be blank.", code="blank")
        if len(name) > TARGET_MODEL_NAME_MAX_LENGTH:
            raise ValidationError(
                f"{name[:40]}… is longer than {TARGET_MODEL_NAME_MAX_LENGTH} characters.", code="max_length"
            )
    duplicates = sorted({name for name in value if value.count(name) > 1})
    if duplicates:
        raise ValidationError(f"Listed twice: {', '.join(duplicates)}.", code="duplicate")


class TargetQuerySet(TenantQuerySet):
    def with_last_run_status(self) -> TargetQuerySet:
        """Annotate `last_run_status`: the status of each target's newest run (None if never run)."""
        newest = Run.objects.filter(target=OuterRef("pk")).order_by("-created_at", "-id").values("status")[:1]
        return self.annotate(last_run_status=Subquery(newest))

    def name_taken(self, organization: Organization, name: str, *, excluding: Target | None = None) -> bool:
        clash = self.filter(organization=organization, name=name)
        if excluding is not None and excluding.pk:
            clash = clash.exclude(pk=excluding.pk)
        return clash.exists()


class Target(models.Model):
    """An organization's own endpoint to benchmark privately, with its own key and prompt.

    Saving a target keeps its beat schedule (a django-celery-beat PeriodicTask) in step and
    deleting it removes the schedule; see benchmarks/schedules.py and benchmarks/signals.py."""

    # Adding, editing, pausing and deleting targets (and so writing their keys), on pages and in
    # the API alike. Members may: API tokens, which are never more than members, manage targets
    # too, and the keys are write-only, so no role can read one back.
    MANAGE_ROLE = Role.MEMBER

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="benchmark_targets")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=KIND_MAX_LENGTH, choices=kind_choices)
    base_url = models.URLField(max_length=300, validators=[validate_base_url])
    api_key = EncryptedSecretField(blank=True, default="")
    model_names = models.JSONField(
        default=list, validators=[validate_model_names], help_text="Model names to benchmark at this endpoint."
    )
    prompt = models.TextField(default="Explain, in about 150 words, why latency matters for chat applications.")
    max_tokens = models.PositiveIntegerField(
        default=256, validators=[MinValueValidator(1), MaxValueValidator(TARGET_MAX_TOKENS)]
    )
    interval_minutes = models.PositiveIntegerField(
        default=15,
        validators=[MinValueValidator(TARGET_MIN_INTERVAL_MINUTES), MaxValueValidator(TARGET_MAX_INTERVAL_MINUTES)],
        help_text="How often the schedule runs this target.",
    )
    is_enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = TargetQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint("organization", "name", name="target_unique_name_per_organization"),
        ]

    def __str__(self) -> str:
        return f"{self.organization} / {self.name}"

    def clean(self) -> None:
        # A first check, for a clear field error on the page, the API and the admin; each run
        # checks again where the connection is opened (lib/egress.py), which DNS rebinding and
        # redirects cannot get around.
        if self.base_url and self.organization_id is not None:
            refused = egress.refusal(self.base_url, allow_private=self.organization.allows_private_egress)
            if refused:
                raise ValidationError({"base_url": refused})

    def check_name_is_free(self) -> None:
        """The unique constraint, as a per-field message (forms and serializers exclude
        `organization`, so Django's own constraint check would skip it)."""
        if Target.objects.name_taken(self.organization, self.name, excluding=self):
            raise ValidationError({"name": f"{self.organization.name} already has a target named “{self.name}”."})

    @property
    def schedule_key(self) -> str:
        """Runs of this target share it, so two of them are never active at once."""
        return f"target:{self.uuid}"

    def sync_schedule(self) -> None:
        from . import schedules  # imported late: it imports django-celery-beat's models

        schedules.sync(self)


class RunQuerySet(TenantQuerySet):
    def public(self) -> RunQuerySet:
        return self.filter(organization__isnull=True)


class Run(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Run now"
        API = "api", "API"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="benchmark_runs",
        help_text="Empty for public benchmark runs.",
    )
    target = models.ForeignKey(Target, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs")
    name = models.CharField(max_length=200)
    triggered_by = models.CharField(max_length=16, choices=Trigger.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    schedule_key = models.CharField(
        max_length=100, blank=True,
        help_text="Runs of one schedule share a key; at most one of them may be pending or running.",
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Two workers (or a slow run and the next beat tick) cannot both start a run of the
            # same schedule: the second insert fails instead of overlapping.
            models.UniqueConstraint(
                "schedule_key",
                condition=models.Q(status__in=["pending", "running"]) & ~models.Q(schedule_key=""),
                name="run_one_active_per_schedule",
            ),
        ]
        indexes = [
            # Run history pages: an organization's (or the public) runs, newest first.
            models.Index(fields=["organization", "-created_at"], name="run_org_created"),
        ]

    def __str__(self) -> str:
        return self.name


class BenchmarkResultQuerySet(TenantQuerySet):
    def public(self) -> BenchmarkResultQuerySet:
        return self.filter(organization__isnull=True)


class BenchmarkResult(models.Model):
    """One streamed request and what it measured. Provider/model/target deletion keeps the
    result (their names are kept here too); deleting the run deletes its results."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="results")
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="+",
        help_text="Copied from the run: tenant scoping and the time-range index need it here.",
    )
    provider = models.ForeignKey(Provider, on_delete=models.SET_NULL, null=True, blank=True, related_name="results")
    model = models.ForeignKey(Model, on_delete=models.SET_NULL, null=True, blank=True, related_name="results")
    target = models.ForeignKey(Target, on_delete=models.SET_NULL, null=True, blank=True, related_name="results")
    provider_name = models.CharField(max_length=100)
    model_name = models.CharField(max_length=200)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    cached_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    token_count_source = models.CharField(max_length=16, choices=[(s.value, s.value) for s in TokenCountSource], blank=True)
    total_latency_ms = models.FloatField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    tps = models.FloatField(null=True, blank=True)
    mean_inter_chunk_ms = models.FloatField(null=True, blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    success = models.BooleanField(default=False)
    error_kind = models.CharField(max_length=32, choices=[(k.value, k.value) for k in ErrorKind], blank=True)
    error_message = models.TextField(blank=True)
    retry_after_s = models.FloatField(null=True, blank=True)
    response_text = models.TextField(blank=True)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=10, null=True, blank=True)
    is_priced = models.BooleanField(default=False, help_text="False: no price was known; cost is unknown, not $0.")
    created_at = models.DateTimeField(default=timezone.now)

    objects = BenchmarkResultQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Leaderboard and charts: one model's results over a time range.
            models.Index(fields=["model", "created_at"], name="result_model_created"),
            # An organization's (or, with NULL, the public) results over a time range.
            models.Index(fields=["organization", "created_at"], name="result_org_created"),
            # A private target's history.
            models.Index(fields=["target", "created_at"], name="result_target_created"),
        ]

    def __str__(self) -> str:
        outcome = f"{self.ttft_ms:.0f} ms TTFT" if self.success and self.ttft_ms is not None else self.error_kind
        return f"{self.provider_name} / {self.model_name}: {outcome}"

    def price(self, price: Price | None) -> None:
        """Set cost from `price` (the one valid at created_at); no price means unknown, not $0."""
        if price is None or not self.success or self.output_tokens is None:
            self.cost_usd, self.is_priced = None, False
            return
        self.cost_usd = price.cost(
            input_tokens=self.input_tokens or 0, output_tokens=self.output_tokens, cached_tokens=self.cached_tokens or 0
        )
        self.is_priced = True
