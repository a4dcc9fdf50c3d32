"""Budgets, performance alert rules, webhooks, and the alerts they raise.

An `Alert` row is both the history entry people see and the *claim* that makes alerts
exactly-once: partial unique constraints allow one threshold alert per (budget, period start,
threshold), one forecast alert per (budget, period start) and one firing/resolved alert per rule
incident. Whoever inserts the row first (a worker, a thread, a request) sends it; everyone else
gets an IntegrityError and sends nothing. Each recipient of an alert is a `Delivery` row created
in the same transaction, sent (and retried) by a Celery task, with its attempts logged.
"""

from __future__ import annotations

import secrets
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxLengthValidator,
    MaxValueValidator,
    MinValueValidator,
    validate_email,
)
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiToken, Organization, Project, Role, TenantQuerySet, User
from benchmarks.models import Model as CatalogModel
from benchmarks.models import Target, validate_base_url
from costs.models import rollup_tag_keys
from costs.money import Currency
from lib import egress
from lib.encrypted import EncryptedSecretField

# Who may create, change and delete budgets, rules and webhooks (pages and API alike). Members,
# not admins: API tokens are at most members, and teams automate their budgets.
MANAGE_ROLE = Role.MEMBER
DEFAULT_THRESHOLDS = [50, 80, 100]
MAX_EXTRA_EMAILS = 20


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


def validate_thresholds(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Give one or more percentages, e.g. 50, 80, 100.")
    if len(value) > 10:
        raise ValidationError("At most 10 thresholds.")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 1000:
            raise ValidationError("Each threshold is a whole percentage from 1 to 1000.")
    if len(set(value)) != len(value):
        raise ValidationError("Each threshold once.")


def validate_extra_emails(value: object) -> None:
    if not isinstance(value, list):
        raise ValidationError("A list of email addresses.")
    if len(value) > MAX_EXTRA_EMAILS:
        raise ValidationError(f"At most {MAX_EXTRA_EMAILS} extra addresses.")
    for item in value:
        if not isinstance(item, str):
            raise ValidationError("A list of email addresses.")
        try:
            validate_email(item)
        except ValidationError:
            raise ValidationError(f"{item!r} is not an email address.") from None


def validate_members(organization: Organization, users: list[User]) -> None:
    """Alert emails go only to the organization's own members (others: extra addresses)."""
    member_ids = set(organization.memberships.values_list("user_id", flat=True))
    strangers = [u.email for u in users if u.pk not in member_ids]
    if strangers:
        raise ValidationError(f"Not members of {organization.name}: {', '.join(strangers)}.")


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


# ---------------------------------------------------------------------------------------------
# Channels
# ---------------------------------------------------------------------------------------------
class WebhookQuerySet(TenantQuerySet):
    pass


WEBHOOK_URL_MAX_LENGTH = 500
_validate_webhook_url_length = MaxLengthValidator(WEBHOOK_URL_MAX_LENGTH)


def mask_url(url: str) -> str:
    """What is shown of a URL that is a credential: scheme and host, then the last 4 characters,
    never the path, query or user:password. A bare host (nothing after it) is shown whole."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all ("http://[::1"): nothing of it but the tail
        return f"…{url[-4:]}"
    host = parts.netloc.rpartition("@")[2]  # user:password@ is a credential too
    if host == parts.netloc and not (parts.path.strip("/") or parts.query or parts.fragment):
        return url
    return f"{parts.scheme}://{host}/…{url[-4:]}"


def redact_url(text: str, url: str) -> str:
    """`text` (an error message, a receiver's reply) with `url` masked: the whole URL, and its
    path and query on their own, as a server saying "Cannot POST /services/T0/B0/x" quotes them."""
    if not (text and url):
        return text
    text = text.replace(url, mask_url(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    tail = url.removeprefix(f"{parts.scheme}://{parts.netloc}")
    return text.replace(tail, f"/…{url[-4:]}") if tail.strip("/") else text


class Webhook(models.Model):
    """An HTTPS endpoint that receives alerts as JSON, signed with HMAC-SHA256 (alerts/webhooks.py
    documents the payload and the signature), or as a Slack incoming-webhook message."""

    class Format(models.TextChoices):
        JSON = "json", "JSON (signed)"
        SLACK = "slack", "Slack-compatible"

    SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
    UNDECRYPTABLE = "(stored URL cannot be decrypted; enter it again)"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=100)
    # A chat webhook URL (Slack's, Discord's, a Teams workflow's) is itself a credential: whoever
    # has it can post to the channel. So it is encrypted at rest like the signing secret, assigned
    # in clear and read with `url.reveal()` only where a request is sent or the URL is checked;
    # everything else shows `masked_url`. Its rules (http(s), at most WEBHOOK_URL_MAX_LENGTH, not a
    # private address) are checked in clean() on the plaintext, since field validators would see
    # ciphertext. Nothing filters, orders or is unique on it (ciphertext is randomized): two
    # webhooks to one URL are legitimate (e.g. JSON and Slack formats, or two organizations sharing
    # a receiver), so there is no uniqueness rule to keep and no digest column.
    url = EncryptedSecretField()
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.JSON)
    # Encrypted at rest (CREDENTIALS_ENCRYPTION_KEY): Pulse needs the plaintext to sign with.
    secret = EncryptedSecretField(blank=True, default="")
    is_enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = WebhookQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def masked_url(self) -> str:
        """Shown instead of the URL, everywhere (pages, API, admin)."""
        try:
            url = self.url.reveal()
        except ValueError:  # encrypted with a key since rotated away: say so rather than fail the page
            return self.UNDECRYPTABLE
        return mask_url(url)

    def redact(self, text: str) -> str:
        """`text` (an error message, a response body) with this webhook's URL masked."""
        if not text:
            return text
        try:
            return redact_url(text, self.url.reveal())
        except ValueError:  # undecryptable: nothing to compare with
            return text

    def clean(self) -> None:
        if not self.url:
            return  # the field's own "cannot be blank"
        try:
            url = self.url.reveal()
        except ValueError as error:
            raise ValidationError({"url": str(error)}) from None
        try:
            _validate_webhook_url_length(url)
            validate_base_url(url)
        except ValidationError as error:
            raise ValidationError({"url": error.messages}) from None
        # A first check, for a clear field error; every delivery is checked again where the
        # connection is opened (lib/egress.py), which DNS rebinding cannot get around.
        refused = egress.refusal(url, allow_private=self.allows_private_egress)
        if refused:
            raise ValidationError({"url": refused})

    @property
    def allows_private_egress(self) -> bool:
        if self.organization_id is None:
            return settings.TENANT_EGRESS_ALLOW_PRIVATE
        return self.organization.allows_private_egress

    def rotate_secret(self) -> str:
        """Give the webhook a new signing secret; returns it (shown once)."""
        raw = f"{self.SECRET_PREFIX}{secrets.token_urlsafe(32)}"
        self.secret = raw  # the field encrypts it
        return raw


class EmailOptOut(models.Model):
    """An address that asked for no more alert emails (the List-Unsubscribe link, or a member's
    own setting). Keyed by address so it covers members and extra recipients alike."""

    email = models.EmailField(unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return self.email

    @classmethod
    def opted_out(cls, addresses: list[str]) -> set[str]:
        lowered = [a.lower() for a in addresses]
        return set(cls.objects.filter(email__in=lowered).values_list("email", flat=True))

    @classmethod
    def set(cls, email: str, *, opted_out: bool) -> None:
        if opted_out:
            cls.objects.get_or_create(email=email.lower())
        else:
            cls.objects.filter(email=email.lower()).delete()


class Recipients(models.Model):
    """Who hears about a budget's or rule's alerts: chosen members, extra addresses, webhooks."""

    notify_members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+",
        help_text="Members who get alert emails (they can opt out in their settings).",
    )
    extra_emails = models.JSONField(default=list, blank=True, validators=[validate_extra_emails])
    webhooks = models.ManyToManyField(Webhook, blank=True, related_name="+")

    class Meta:
        abstract = True

    def email_addresses(self) -> list[str]:
        """Current members among those chosen (people who left get nothing) and the extra
        addresses, lower-cased, each once."""
        members = self.notify_members.filter(memberships__organization_id=self.organization_id)
        addresses = [m.email.lower() for m in members] + [e.lower() for e in self.extra_emails]
        return list(dict.fromkeys(addresses))

    def enabled_webhooks(self) -> list[Webhook]:
        return list(self.webhooks.filter(organization_id=self.organization_id, is_enabled=True))


# ---------------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------------
class BudgetQuerySet(TenantQuerySet):
    project_path = "project"

    def visible_to(self, principal: User | ApiToken | None) -> BudgetQuerySet:
        """A project-bound token sees every budget its project's spend counts against
        (organization-wide, its project's, its tokens'), so a gateway holding it can read
        `blocked`; it may change only its own project's (`changeable_by`)."""
        if isinstance(principal, ApiToken) and principal.project_id:
            return self.filter(organization_id=principal.organization_id).covering(principal.project)
        return super().visible_to(principal)

    def enabled(self) -> BudgetQuerySet:
        return self.filter(is_enabled=True)

    def covering(self, project: Project) -> BudgetQuerySet:
        """Budgets whose spend includes this project's: organization-wide ones, the project's
        own, and those of its tokens (project-bound or organization-wide)."""
        return self.filter(organization_id=project.organization_id).filter(
            Q(project__isnull=True, api_token__isnull=True)
            | Q(project_id=project.id)
            | Q(api_token__project_id=project.id)
            | Q(api_token__isnull=False, api_token__project__isnull=True)
        )


class Budget(Recipients):
    """A spending limit over a calendar period in the organization's time zone.

    Scope: the whole organization, one project or one API token (`project`/`api_token` empty
    or set), optionally narrowed to one model or one rolled-up tag value. Soft budgets only
    alert; hard budgets also report `blocked` once spent, for the gateway to enforce.
    """

    class Period(models.TextChoices):
        DAY = "day", "Daily"
        WEEK = "week", "Weekly"
        MONTH = "month", "Monthly"

    class Enforcement(models.TextChoices):
        SOFT = "soft", "Soft (alert only)"
        HARD = "hard", "Hard (block the gateway when spent)"

    class Scope(models.TextChoices):
        ORGANIZATION = "organization", "Organization"
        PROJECT = "project", "Project"
        TOKEN = "token", "API token"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="budgets")
    name = models.CharField(max_length=100)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, blank=True, related_name="budgets")
    api_token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, null=True, blank=True, related_name="budgets")
    model = models.CharField(max_length=128, blank=True, help_text="Only this model's spend (any provider).")
    tag_key = models.CharField(max_length=64, blank=True)
    tag_value = models.CharField(max_length=128, blank=True)
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.USD)
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    thresholds = models.JSONField(default=default_thresholds, validators=[validate_thresholds])
    enforcement = models.CharField(max_length=8, choices=Enforcement.choices, default=Enforcement.SOFT)
    forecast_alerts = models.BooleanField(
        default=True, help_text="Also alert once per period when the run-rate forecast passes the amount."
    )
    is_enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BudgetQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(project__isnull=True) | Q(api_token__isnull=True), name="budget_one_scope"
            ),
            models.CheckConstraint(
                condition=(Q(tag_key="") & Q(tag_value="")) | (~Q(tag_key="") & ~Q(tag_value="")),
                name="budget_tag_key_and_value",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def scope(self) -> str:
        if self.api_token_id:
            return self.Scope.TOKEN
        if self.project_id:
            return self.Scope.PROJECT
        return self.Scope.ORGANIZATION

    def changeable_by(self, principal: User | ApiToken) -> bool:
        """A project-bound token sees budgets beyond its project but changes only its project's."""
        if isinstance(principal, ApiToken) and principal.project_id:
            return self.project_id == principal.project_id
        return True

    @property
    def is_hard(self) -> bool:
        return self.enforcement == self.Enforcement.HARD

    def scope_label(self) -> str:
        if self.api_token_id:
            label = f"API token {self.api_token.name}"
        elif self.project_id:
            label = f"Project {self.project.name}"
        else:
            label = f"Organization {self.organization.name}"
        if self.model:
            label += f", model {self.model}"
        if self.tag_key:
            label += f", {self.tag_key}={self.tag_value}"
        return label

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.project_id and self.api_token_id:
            errors["project"] = "Choose a project or an API token, not both."
        if self.project_id and self.project.organization_id != self.organization_id:
            errors["project"] = "That project belongs to another organization."
        if self.api_token_id and self.api_token.organization_id != self.organization_id:
            errors["api_token"] = "That API token belongs to another organization."  # noqa: S105
        if bool(self.tag_key) != bool(self.tag_value):
            errors["tag_value" if self.tag_key else "tag_key"] = "A tag filter needs both a key and a value."
        if self.tag_key and self.tag_key not in rollup_tag_keys():
            errors["tag_key"] = (
                f"Budgets can filter on the rolled-up tag keys: {', '.join(rollup_tag_keys())}."
            )
        if isinstance(self.thresholds, list) and all(isinstance(t, int) for t in self.thresholds):
            self.thresholds = sorted(self.thresholds)
        if errors:
            raise ValidationError(errors)


# ---------------------------------------------------------------------------------------------
# Performance rules
# ---------------------------------------------------------------------------------------------
class AlertRuleQuerySet(TenantQuerySet):
    def enabled(self) -> AlertRuleQuerySet:
        return self.filter(is_enabled=True)


class AlertRule(Recipients):
    """A condition on benchmark results of one private target (optionally one of its models) or
    one public catalog model. Fires once when breached, resolves once when it recovers."""

    class Metric(models.TextChoices):
        TTFT_P95 = "ttft_p95_ms", "p95 time to first token (ms) above"
        TTFT_MEDIAN = "ttft_median_ms", "Median time to first token (ms) above"
        LATENCY_P95 = "latency_p95_ms", "p95 total latency (ms) above"
        TPS_MEDIAN = "tps_median", "Median tokens per second below"
        ERROR_RATE = "error_rate_pct", "Error rate (%) above"

    BREACHED_BELOW = {Metric.TPS_MEDIAN}

    class State(models.TextChoices):
        OK = "ok", "OK"
        FIRING = "firing", "Firing"
        NO_DATA = "no_data", "Not enough data"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=100)
    target = models.ForeignKey(Target, on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rules")
    catalog_model = models.ForeignKey(
        CatalogModel, on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rules",
        help_text="A public catalog model (its public benchmark results).",
    )
    model_name = models.CharField(max_length=200, blank=True, help_text="With a target: only this model's results.")
    metric = models.CharField(max_length=16, choices=Metric.choices)
    threshold = models.FloatField(validators=[MinValueValidator(0)])
    window_results = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Judge the last N results…",
    )
    window_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(5), MaxValueValidator(7 * 24 * 60)],
        help_text="…or the results of the last N minutes.",
    )
    min_results = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(1000)])
    is_enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.NO_DATA)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_sample_size = models.PositiveIntegerField(default=0)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    incident_count = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = AlertRuleQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(target__isnull=False) & Q(catalog_model__isnull=True))
                | (Q(target__isnull=True) & Q(catalog_model__isnull=False)),
                name="alertrule_one_subject",
            ),
            models.CheckConstraint(
                condition=(Q(window_results__isnull=False) & Q(window_minutes__isnull=True))
                | (Q(window_results__isnull=True) & Q(window_minutes__isnull=False)),
                name="alertrule_one_window",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def breached_below(self) -> bool:
        return self.metric in self.BREACHED_BELOW

    def subject_label(self) -> str:
        if self.target_id:
            return f"{self.target.name}" + (f" / {self.model_name}" if self.model_name else "")
        return f"{self.catalog_model.provider.name} / {self.catalog_model.name}"

    def window_label(self) -> str:
        if self.window_results:
            return f"last {self.window_results} results"
        return f"last {self.window_minutes} minutes"

    def condition_label(self) -> str:
        return f"{self.get_metric_display()} {self.threshold:g} over the {self.window_label()}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if bool(self.target_id) == bool(self.catalog_model_id):
            errors["target"] = "Choose a private target or a public model (one of them)."
        if self.target_id and self.target.organization_id != self.organization_id:
            errors["target"] = "That target belongs to another organization."
        if self.model_name and not self.target_id:
            errors["model_name"] = "A model name narrows a private target only."
        if self.model_name and self.target_id and self.model_name not in self.target.model_names:
            errors["model_name"] = f"The target does not benchmark {self.model_name!r}."
        if bool(self.window_results) == bool(self.window_minutes):
            errors["window_results"] = "Choose a window: the last N results or the last N minutes (one of them)."
        if self.metric == self.Metric.ERROR_RATE and self.threshold is not None and self.threshold > 100:
            errors["threshold"] = "An error rate is a percentage from 0 to 100."
        if self.window_results and self.min_results > self.window_results:
            errors["min_results"] = "Cannot need more results than the window holds."
        if errors:
            raise ValidationError(errors)


# ---------------------------------------------------------------------------------------------
# Alerts and their deliveries
# ---------------------------------------------------------------------------------------------
class AlertQuerySet(TenantQuerySet):
    pass


class Alert(models.Model):
    """One alert, raised once; see the module docstring for how "once" is enforced."""

    class Kind(models.TextChoices):
        BUDGET_THRESHOLD = "budget.threshold", "Budget threshold crossed"
        BUDGET_FORECAST = "budget.forecast", "Budget forecast to be exceeded"
        RULE_FIRING = "rule.firing", "Performance rule firing"
        RULE_RESOLVED = "rule.resolved", "Performance rule resolved"
        TEST = "test", "Test alert"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.WARNING)
    # History outlives what raised it: the budget or rule may be deleted later.
    budget = models.ForeignKey(Budget, on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts")
    rule = models.ForeignKey(AlertRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts")
    period_start = models.DateTimeField(null=True, blank=True)
    threshold = models.PositiveSmallIntegerField(null=True, blank=True)
    incident = models.PositiveIntegerField(null=True, blank=True)
    # When a budget's amount rises so that a crossed threshold is no longer crossed, its alert is
    # re-armed: it stays in the history but no longer holds the once-per-period slot.
    rearmed = models.BooleanField(default=False)
    title = models.CharField(max_length=300)
    message = models.TextField()
    link = models.CharField(max_length=300, blank=True, help_text="Path of the page to look at.")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                "budget", "period_start", "threshold",
                condition=Q(kind="budget.threshold", rearmed=False), name="alert_once_per_budget_threshold",
            ),
            models.UniqueConstraint(
                "budget", "period_start",
                condition=Q(kind="budget.forecast", rearmed=False), name="alert_once_per_budget_forecast",
            ),
            models.UniqueConstraint(
                "rule", "incident", "kind",
                condition=Q(kind__in=["rule.firing", "rule.resolved"]), name="alert_once_per_rule_incident",
            ),
        ]
        indexes = [models.Index(fields=["organization", "-created_at"], name="alert_org_recent")]

    def __str__(self) -> str:
        return self.title


class DeliveryQuerySet(TenantQuerySet):
    organization_path = "alert__organization"

    def due(self, now: object) -> DeliveryQuerySet:
        return self.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING], next_attempt_at__lte=now)


class Delivery(models.Model):
    """One alert to one recipient (an email address or a webhook), and its attempts."""

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (opted out)"

    MAX_ATTEMPTS = 8

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    address = models.EmailField(blank=True)
    webhook = models.ForeignKey(Webhook, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint("alert", "address", condition=Q(channel="email"), name="delivery_once_per_address"),
            models.UniqueConstraint("alert", "webhook", condition=Q(channel="webhook"), name="delivery_once_per_webhook"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.alert} → {self.recipient_label}"

    @property
    def recipient_label(self) -> str:
        if self.channel == self.Channel.EMAIL:
            return self.address
        return self.webhook.name if self.webhook_id else "(deleted webhook)"

    @property
    def shown_error(self) -> str:
        """The last error as pages and the API show it: a webhook's URL masked, even if an error
        recorded before URLs were redacted when stored (alerts/webhooks.py) still holds it."""
        if self.last_error and self.webhook_id and self.webhook is not None:
            return self.webhook.redact(self.last_error)
        return self.last_error
