"""Spend: every LLM call a project reports (`CostEvent`), its hourly and daily rollups
(`CostRollup`), the request and response of a gateway call when its project keeps them
(`CostEventBody`), and the exchange rates money is shown in (`ExchangeRate`).

Amounts are USD `Decimal`s in storage; other currencies exist only on the way out. Events are
written once and only their price may change later (an unpriced event priced when its model gets
a price); rollups are kept current in the same transaction as the events they count, so no page
or summary ever scans raw events.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Max, Sum, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from accounts.models import ApiToken, Project, TenantQuerySet
from benchmarks.providers import TokenCountSource as MeasuredTokenCount

from .money import Currency


class CostEventQuerySet(TenantQuerySet):
    organization_path = "project__organization"
    project_path = "project"

    def unpriced(self) -> CostEventQuerySet:
        return self.filter(cost_usd__isnull=True)

    def between(self, start: datetime | None, end: datetime | None) -> CostEventQuerySet:
        """Events from `start` (inclusive) to `end` (exclusive); either may be open."""
        qs = self
        if start is not None:
            qs = qs.filter(occurred_at__gte=start)
        if end is not None:
            qs = qs.filter(occurred_at__lt=end)
        return qs

    def received_after(self, moment: datetime, after_id: uuid.UUID | None = None) -> CostEventQuerySet:
        """Events stored after `moment`, oldest-stored first (`costevent_project_received`); with
        `after_id`, also those stored at exactly `moment` whose uuid sorts after it, so a reader
        paging through one batch (which shares one `received_at`) sees each event once."""
        qs = self.filter(received_at__gte=moment)
        later = models.Q(received_at__gt=moment)
        if after_id is not None:
            later |= models.Q(uuid__gt=after_id)
        return qs.filter(later).order_by("received_at", "uuid")

    def tagged(self, key: str, value: str) -> CostEventQuerySet:
        """Events whose tag `key` is `value`. KeyTextTransform takes the key literally (a key
        with "__" in it is not a nested lookup) and works on SQLite, where `contains` does not;
        the cast makes the comparison plain text (on SQLite a JSON key's `exact` lookup would
        parse the value as JSON and fail on "chat")."""
        tag_value = Cast(KeyTextTransform(key, "tags"), output_field=models.TextField())
        return self.alias(_tag_value=tag_value).filter(_tag_value=value)


class CostEvent(models.Model):
    """One LLM call, as reported by the team's code (API/SDK), the gateway or an import.

    Token conventions (OpenAI's, stated in the API schema): `input_tokens` counts every prompt
    token, cached ones included; `cached_tokens` is the part read from the provider's prompt
    cache and is priced at the cache-read price *instead of* the input price, never on top;
    `reasoning_tokens` are part of `output_tokens`.
    """

    class Source(models.TextChoices):
        API = "api", "API"
        SDK = "sdk", "SDK"
        GATEWAY = "gateway", "Gateway"
        IMPORT = "import", "Import"

    class CostSource(models.TextChoices):
        COMPUTED = "computed", "Computed from the price table"
        CLIENT = "client", "Sent by the client"
        UNPRICED = "unpriced", "No price known"

    class Endpoint(models.TextChoices):
        CHAT = "chat", "Chat completions"
        EMBEDDINGS = "embeddings", "Embeddings"
        MESSAGES = "messages", "Messages (Anthropic)"
        RESPONSES = "responses", "Responses (OpenAI)"
        COMPLETIONS = "completions", "Completions (legacy)"
        OTHER = "other", "Other"

    class TokenCountSource(models.TextChoices):
        # The benchmarks' names for the same two cases (benchmarks.providers.TokenCountSource),
        # labels included, so the API schema has one TokenCountSourceEnum for both.
        USAGE = MeasuredTokenCount.USAGE.value, MeasuredTokenCount.USAGE.value  # reported by the provider
        ESTIMATE = MeasuredTokenCount.ESTIMATE.value, MeasuredTokenCount.ESTIMATE.value  # counted without one

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="cost_events")
    api_token = models.ForeignKey(
        ApiToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="cost_events",
        help_text="The key that reported the event.",
    )
    # The prefix is kept apart from the FK so rollups and history still say which key it was
    # after the key is deleted.
    token_prefix = models.CharField(max_length=32, blank=True, default="")
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    cost_source = models.CharField(max_length=16, choices=CostSource.choices)
    price = models.ForeignKey(
        "benchmarks.Price", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The price the cost was computed with.",
    )
    latency_ms = models.FloatField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    success = models.BooleanField(default=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    tags = models.JSONField(default=dict, blank=True)
    # NULL, not "", for "none": the unique constraint only covers events that carry a key.
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    # What any caller may report about the call (the API, the SDK and the gateway)…
    ttft_ms = models.FloatField(null=True, blank=True, help_text="Time to the first token of a streamed answer.")
    # db_default: rows written by hand (bench COPYs, psql) need not know the newer columns.
    streamed = models.BooleanField(default=False, db_default=False)
    endpoint = models.CharField(max_length=16, choices=Endpoint.choices, blank=True, default="", db_default="")
    end_user = models.CharField(
        max_length=128, blank=True, default="", db_default="",
        help_text="Who the call was made for (OpenAI's `user`, Anthropic's metadata.user_id).",
    )
    token_count_source = models.CharField(
        max_length=16, choices=TokenCountSource.choices, blank=True, default="", db_default="",
        help_text="Empty: not stated (the client's own count).",
    )
    # …and what only the gateway knows (accepted only through its trusted path, never from the API).
    route = models.CharField(
        max_length=128, blank=True, default="", db_default="", help_text="The model name the caller asked the gateway for.",
    )
    upstream = models.CharField(
        max_length=200, blank=True, default="", db_default="", help_text="Where the gateway sent it: connection/model.",
    )
    cache_hit = models.BooleanField(default=False, db_default=False)
    saved_usd = models.DecimalField(
        max_digits=20, decimal_places=10, null=True, blank=True,
        help_text="What a cache hit would have cost had it gone upstream.",
    )
    # Diagnostics read on one event's page, never aggregated: {"attempts": [{"upstream",
    # "status_code", "error"}…] (failed tries before the answer), "overhead_ms": time in Pulse}.
    gateway = models.JSONField(default=dict, blank=True, db_default=Value({}, models.JSONField()))

    objects = CostEventQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            # Retries of one event or batch are acknowledged, never counted twice.
            models.UniqueConstraint(
                "project", "idempotency_key", name="costevent_unique_idempotency_key_per_project",
                condition=models.Q(idempotency_key__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["project", "-occurred_at"], name="costevent_project_time"),
            # The events API's cursor (`?received_after=`, e.g. `pulse tail`): what was stored
            # since a moment, whatever its own timestamp, without reading the rest of the project.
            models.Index(fields=["project", "received_at"], name="costevent_project_received"),
            models.Index(
                fields=["provider", "model"], name="costevent_unpriced",
                condition=models.Q(cost_usd__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"

    @property
    def is_priced(self) -> bool:
        return self.cost_usd is not None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def attempts(self) -> list[dict]:
        return list((self.gateway or {}).get("attempts") or [])

    @property
    def overhead_ms(self) -> float | None:
        return (self.gateway or {}).get("overhead_ms")


class CostRollupQuerySet(TenantQuerySet):
    organization_path = "project__organization"
    project_path = "project"

    def hourly(self) -> CostRollupQuerySet:
        return self.filter(granularity=CostRollup.Granularity.HOUR)

    def daily(self) -> CostRollupQuerySet:
        return self.filter(granularity=CostRollup.Granularity.DAY)

    def untagged(self) -> CostRollupQuerySet:
        """The rows that count every event once (tag rows count an event once per tag key)."""
        return self.filter(tag_key="")

    def unpriced_models(self, since: datetime) -> models.QuerySet:
        """Provider/model pairs with events nobody could price since `since`, most requests
        first: one group-by over the daily untagged rows (`costrollup_project_range`). The
        token volume is that of the rows holding unpriced events (a model priced halfway
        through a day counts its whole day)."""
        return (
            self.daily().untagged().filter(bucket__gte=since, unpriced_requests__gt=0)
            .values("provider", "model")
            .annotate(requests=Sum("unpriced_requests"), tokens=Sum(F("input_tokens") + F("output_tokens")))
            .order_by("-requests", "provider", "model")
        )

    def usage_by_token(self, since: datetime) -> models.QuerySet:
        """Per API token prefix since `since`: spend, requests, tokens and the last day it sent
        anything, in one group-by over the daily untagged rows."""
        return (
            self.daily().untagged().filter(bucket__gte=since)
            .values("token_prefix")
            .annotate(
                cost_usd=Sum("cost_usd"), requests=Sum("requests"), unpriced=Sum("unpriced_requests"),
                tokens=Sum(F("input_tokens") + F("output_tokens")), last_day=Max("bucket"),
            )
            .order_by()
        )

    def models_seen(self) -> list[tuple[str, str]]:
        """Every (provider, model) the project has reported, for the activity log's filters."""
        rows = self.daily().untagged().values_list("provider", "model").distinct().order_by("provider", "model")
        return list(rows)


class CostRollup(models.Model):
    """Sums of events per project × bucket × provider × model × API token × (tag key, value).

    Each event is counted in the untagged row of its bucket (`tag_key == ""`) and once more in
    a row per rolled-up tag key it carries (`settings.COST_ROLLUP_TAG_KEYS`), so a breakdown by
    tag is one indexed group-by, and totals come from the untagged rows alone. Buckets are UTC
    hours and UTC days. Maintained by `costs.ingestion` with `INSERT … ON CONFLICT DO UPDATE`
    increments; never edited by hand.
    """

    class Granularity(models.TextChoices):
        HOUR = "h", "Hour"
        DAY = "d", "Day"
        # Summed over providers, models and tokens (untagged: the day's totals; tagged: per tag
        # value): a daily series or a tag breakdown over 90 days reads one row per day (and
        # value) instead of one per day x model x token.
        DAY_TOTALS = "t", "Day, over all models and tokens"

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="cost_rollups")
    granularity = models.CharField(max_length=1, choices=Granularity.choices)
    bucket = models.DateTimeField()
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    token_prefix = models.CharField(max_length=32, default="", blank=True)
    tag_key = models.CharField(max_length=64, default="", blank=True)
    tag_value = models.CharField(max_length=128, default="", blank=True)
    requests = models.BigIntegerField(default=0)
    failures = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=10, default=Decimal(0))
    unpriced_requests = models.BigIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0)
    latency_count = models.BigIntegerField(default=0)
    # Gateway cache hits among `requests`, and what they would have cost upstream.
    cache_hits = models.BigIntegerField(default=0, db_default=0)
    saved_usd = models.DecimalField(max_digits=24, decimal_places=10, default=Decimal(0), db_default=Decimal(0))

    objects = CostRollupQuerySet.as_manager()

    ROLLUP_KEY = ("project_id", "granularity", "bucket", "provider", "model", "token_prefix", "tag_key", "tag_value")
    COUNTERS = (
        "requests", "failures", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens",
        "cost_usd", "unpriced_requests", "latency_ms_sum", "latency_count", "cache_hits", "saved_usd",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "project", "granularity", "bucket", "provider", "model", "token_prefix", "tag_key", "tag_value",
                name="costrollup_one_row_per_key",
            ),
        ]
        indexes = [
            # Summaries: one project, one granularity, untagged or one tag key, over a range.
            models.Index(fields=["project", "granularity", "tag_key", "bucket"], name="costrollup_project_range"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} {self.granularity} {self.bucket:%Y-%m-%d %H:00} {self.provider}/{self.model}"


class CostEventBodyQuerySet(TenantQuerySet):
    organization_path = "event__project__organization"
    project_path = "event__project"

    def kept(self, now: datetime | None = None) -> CostEventBodyQuerySet:
        """Bodies still within their retention period (an expired one is not shown even before
        the periodic purge has deleted it)."""
        return self.filter(expires_at__gt=now or timezone.now())

    def expired(self, now: datetime | None = None) -> CostEventBodyQuerySet:
        return self.filter(expires_at__lte=now or timezone.now())

    def purge_expired(self, *, chunk: int = 1000, now: datetime | None = None) -> int:
        """Delete every expired body, `chunk` rows per statement (each its own short transaction,
        so a purge of millions never holds locks or bloats one transaction). Safe to run
        concurrently: a row deleted by another purge is simply not counted twice. Returns how
        many were deleted."""
        now = now or timezone.now()
        deleted = 0
        while True:
            ids = list(self.expired(now).order_by("expires_at").values_list("pk", flat=True)[:chunk])
            if not ids:
                return deleted
            count, _ = self.filter(pk__in=ids).delete()
            deleted += count


class CostEventBody(models.Model):
    """The request and response of one gateway call, kept only when its project opted in
    (GatewaySettings.store_bodies), truncated to the project's byte limit, until `expires_at`
    (its retention period after the call); `costs.tasks.purge_expired_bodies` deletes them.

    Apart from `CostEvent` because it is large, optional and short-lived: the events table
    stays narrow for the scans and exports that never read bodies, and PostgreSQL compresses
    the text out of line (TOAST)."""

    event = models.OneToOneField(CostEvent, on_delete=models.CASCADE, primary_key=True, related_name="body")
    request = models.TextField(blank=True, default="")
    response = models.TextField(blank=True, default="")
    truncated = models.BooleanField(default=False, help_text="Cut to the project's body size limit.")
    expires_at = models.DateTimeField()

    objects = CostEventBodyQuerySet.as_manager()

    class Meta:
        indexes = [
            # The purge: expired bodies, oldest first, in chunks.
            models.Index(fields=["expires_at"], name="costeventbody_expiry"),
        ]

    def __str__(self) -> str:
        return f"Bodies of event {self.event_id}"


class ExchangeRate(models.Model):
    """How many units of `currency` one US dollar bought on `date` (USD itself is always 1)."""

    class Source(models.TextChoices):
        BUNDLED = "bundled", "Bundled with Pulse"
        FETCHED = "fetched", "Fetched from the rates provider"
        ADMIN = "admin", "Set by an operator"

    date = models.DateField()
    currency = models.CharField(max_length=3, choices=Currency.choices)
    per_usd = models.DecimalField(max_digits=16, decimal_places=8)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.ADMIN)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-date", "currency"]
        constraints = [models.UniqueConstraint("currency", "date", name="exchangerate_one_per_currency_per_day")]

    def __str__(self) -> str:
        return f"1 USD = {self.per_usd} {self.currency} on {self.date}"


def rollup_tag_keys() -> tuple[str, ...]:
    return tuple(settings.COST_ROLLUP_TAG_KEYS)
