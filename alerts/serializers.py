"""Serializers of the alerts API (alerts/api.py): budgets, alert rules, webhooks, alerts.

The rules live on the models and are shared with the page forms: every write builds the object
it would save and runs its `full_clean()` (field validators, then `Budget.clean()` /
`AlertRule.clean()`, then the database constraints), and each Django error becomes a 400 on the
field it names. The recipients (members by email, webhooks by uuid) are checked here, against the
object's own organization: members via `validate_members`, webhooks by organization.
"""

from __future__ import annotations

import copy

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models, transaction
from django.db.models.functions import Lower
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from accounts.api import OwnedByVisibleOrganization
from accounts.models import ApiToken, Organization, Project, User
from benchmarks.models import Model as CatalogModel
from benchmarks.models import Target, validate_base_url
from lib.dates import MomentParam
from lib.strict_fields import (
    StrictEmailField,
    StrictListField,
    StrictModelSerializer,
    StrictSlugRelatedField,
    StrictURLField,
)

from .models import (
    MAX_EXTRA_EMAILS,
    WEBHOOK_URL_MAX_LENGTH,
    Alert,
    AlertRule,
    Budget,
    Delivery,
    Severity,
    Webhook,
    validate_extra_emails,
    validate_members,
    validate_thresholds,
)

RECIPIENT_FIELDS = ("notify_members", "webhooks")


def django_errors_as_api_errors(error: DjangoValidationError) -> serializers.ValidationError:
    """A model's ValidationError as DRF's: one list of messages per field ("__all__" becomes
    non_field_errors)."""
    if not hasattr(error, "error_dict"):
        return serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: error.messages})
    return serializers.ValidationError(
        {
            (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
            for field, messages in error.message_dict.items()
        }
    )


# ---------------------------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------------------------
@extend_schema_field({"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 1000}})
class ThresholdsField(serializers.JSONField):
    """A JSON list of whole percentages; checked by the model's own validator, so a string, a
    0 or a duplicate gets the same message as on the page."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("validators", [validate_thresholds])
        kwargs.setdefault(
            "help_text", "Percentages of the amount that raise an alert once per period, e.g. [50, 80, 100] (1-1000)."
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> object:
        # JSON Schema's integer includes 50.0, as lib/strict_fields.StrictIntegerField does; the
        # model's validator (which also sees the page form's values) wants ints.
        if isinstance(data, list):
            data = [int(item) if isinstance(item, float) and item.is_integer() else item for item in data]
        return super().to_internal_value(data)


@extend_schema_field({"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": MAX_EXTRA_EMAILS})
class ExtraEmailsField(serializers.JSONField):
    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("validators", [validate_extra_emails])
        kwargs.setdefault("help_text", f"Other addresses that get alert emails (at most {MAX_EXTRA_EMAILS}).")
        super().__init__(**kwargs)


class MemberEmailsField(StrictListField):
    """Members who get alert emails, by email address. Checked against the organization in
    `RecipientsSerializer.validate`, where the organization is known."""

    child = StrictEmailField()

    def to_representation(self, value: models.Manager) -> list[str]:
        return [user.email for user in value.all()]  # .all(): uses the viewset's prefetch


# ---------------------------------------------------------------------------------------------
# The shared base: model validation and recipients
# ---------------------------------------------------------------------------------------------
class ModelCleanSerializer(OwnedByVisibleOrganization, StrictModelSerializer):
    """A ModelSerializer whose writes are validated by the model's `full_clean()`, as forms are,
    and which saves many-to-many fields after the object. Subclasses may add `check_rules()` for rules
    that need the organization or the caller (the instance passed is the one to be saved)."""

    organization = StrictSlugRelatedField(
        slug_field="uuid", queryset=Organization.objects.none(),
        help_text="The organization's uuid; set on creation, never changes.",
    )

    @property
    def principal(self) -> User | ApiToken | None:
        return self.context.get("principal")

    def _concrete(self, attrs: dict) -> dict:
        return {name: value for name, value in attrs.items() if name not in RECIPIENT_FIELDS}

    def validate(self, attrs: dict) -> dict:
        candidate = copy.copy(self.instance) if self.instance is not None else self.Meta.model()
        concrete = self._concrete(attrs)
        for name, value in concrete.items():
            setattr(candidate, name, value)
        self.check_rules(candidate, attrs)
        try:
            candidate.full_clean(validate_constraints=False)
            # The check constraints mirror rules clean() just reported per field; run them only
            # once it passed, as a last guard, so a mistake is not reported twice.
            candidate.validate_constraints()
        except DjangoValidationError as error:
            raise django_errors_as_api_errors(error) from None
        # clean() may normalise (Budget sorts its thresholds): save what it approved.
        attrs.update({name: getattr(candidate, name) for name in concrete})
        return attrs

    def check_rules(self, candidate: models.Model, attrs: dict) -> None:
        """Rules that need the organization or the caller; raise serializers.ValidationError."""

    def _save(self, instance: models.Model, validated_data: dict) -> models.Model:
        related = {name: validated_data.pop(name) for name in RECIPIENT_FIELDS if name in validated_data}
        with transaction.atomic():
            for name, value in validated_data.items():
                setattr(instance, name, value)
            instance.save()
            for name, value in related.items():
                getattr(instance, name).set(value)
        return instance

    def create(self, validated_data: dict) -> models.Model:
        return self._save(self.Meta.model(), validated_data)

    def update(self, instance: models.Model, validated_data: dict) -> models.Model:
        return self._save(instance, validated_data)


class RecipientsSerializer(ModelCleanSerializer):
    """Who hears about a budget's or rule's alerts: members (emails), extra addresses, webhooks."""

    notify_members = MemberEmailsField(
        required=False, max_length=200,
        help_text="Email addresses of members of the organization who get alert emails.",
    )
    extra_emails = ExtraEmailsField(required=False)
    webhooks = StrictSlugRelatedField(
        slug_field="uuid", many=True, required=False, queryset=Webhook.objects.none(),
        help_text="Uuids of the organization's webhooks that receive the alerts.",
    )

    def get_fields(self) -> dict:
        fields = super().get_fields()
        if self.principal is not None:
            fields["webhooks"].child_relation.queryset = Webhook.objects.visible_to(self.principal)
        return fields

    def validate(self, attrs: dict) -> dict:
        organization = attrs.get("organization") or self.instance.organization
        if "notify_members" in attrs:
            attrs["notify_members"] = self._members(organization, attrs["notify_members"])
        strangers = [w.name for w in attrs.get("webhooks", []) if w.organization_id != organization.pk]
        if strangers:
            raise serializers.ValidationError(
                {"webhooks": [f"Not webhooks of {organization.name}: {', '.join(strangers)}."]}
            )
        return super().validate(attrs)

    def _members(self, organization: Organization, emails: list[str]) -> list[User]:
        wanted = list(dict.fromkeys(email.lower() for email in emails))
        users = list(User.objects.annotate(email_lower=Lower("email")).filter(email_lower__in=wanted))
        found = {user.email.lower() for user in users}
        # An address with no account is reported exactly like a non-member (an unsaved User,
        # which is no one's member), so the answer never tells whether someone has an account.
        unknown = [User(email=email) for email in wanted if email not in found]
        try:
            validate_members(organization, users + unknown)
        except DjangoValidationError as error:
            raise serializers.ValidationError({"notify_members": error.messages}) from None
        return users


# ---------------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------------
class BudgetSerializer(RecipientsSerializer):
    scope = serializers.ChoiceField(
        choices=Budget.Scope.choices, read_only=True,
        help_text="What the budget covers: the whole organization, one project or one API token.",
    )
    project = StrictSlugRelatedField(
        slug_field="uuid", queryset=Project.objects.none(), allow_null=True, required=False,
        help_text="Only this project's spend (a project of the organization). Not with api_token.",
    )
    api_token = StrictSlugRelatedField(
        slug_field="uuid", queryset=ApiToken.objects.none(), allow_null=True, required=False,
        help_text="Only this API token's spend (a token of the organization). Not with project.",
    )
    thresholds = ThresholdsField(required=False)

    class Meta:
        model = Budget
        fields = [
            "uuid", "organization", "name", "scope", "project", "api_token", "model", "tag_key", "tag_value",
            "amount", "currency", "period", "thresholds", "enforcement", "forecast_alerts",
            "notify_members", "extra_emails", "webhooks", "is_enabled", "created_at", "updated_at",
        ]
        read_only_fields = ["uuid", "scope", "created_at", "updated_at"]
        extra_kwargs = {
            "amount": {"help_text": "The limit per period, in `currency` (a decimal string, e.g. \"500.00\")."},
            "tag_key": {"help_text": "Only spend tagged tag_key=tag_value (a rolled-up tag key); with tag_value."},
            "tag_value": {"help_text": "See tag_key."},
            "period": {"help_text": "Calendar day, ISO week or month, in the organization's time zone."},
            "enforcement": {"help_text": "hard: the status reports blocked once the amount is spent (the gateway refuses)."},
        }

    def get_fields(self) -> dict:
        fields = super().get_fields()
        if self.principal is not None:
            fields["project"].queryset = Project.objects.visible_to(self.principal)
            fields["api_token"].queryset = ApiToken.objects.visible_to(self.principal)
        return fields

    def check_rules(self, candidate: Budget, attrs: dict) -> None:
        token = self.principal
        if isinstance(token, ApiToken) and token.project_id and candidate.project_id != token.project_id:
            # A project-bound token sees only its project's budgets; it may not make (or move a
            # budget to) one it could not see afterwards.
            raise serializers.ValidationError(
                {"project": [f"This API token is bound to project {token.project.name}: "
                             f"its budgets must be for that project ({token.project.uuid})."]}
            )


class BudgetStatusSerializer(serializers.Serializer):
    """Where a budget stands now (`alerts.budgets.BudgetStatus`). Money in the budget's currency
    unless named _usd; decimals are strings."""

    budget = serializers.UUIDField(source="budget.uuid")
    period_start = serializers.DateTimeField(source="period.start", help_text="The current period's start (UTC).")
    period_end = serializers.DateTimeField(source="period.end", help_text="The current period's end, exclusive (UTC).")
    time_zone = serializers.CharField(source="period.time_zone", help_text="The organization's time zone.")
    currency = serializers.CharField()
    amount = serializers.DecimalField(max_digits=None, decimal_places=2)
    spent = serializers.DecimalField(max_digits=None, decimal_places=2, help_text="Spent so far this period.")
    spent_usd = serializers.DecimalField(max_digits=None, decimal_places=6)
    percent = serializers.DecimalField(max_digits=None, decimal_places=1, help_text="spent / amount × 100.")
    remaining = serializers.DecimalField(max_digits=None, decimal_places=2, help_text="Never below 0.")
    days_left = serializers.DecimalField(max_digits=None, decimal_places=1, help_text="Days left in the period.")
    forecast = serializers.DecimalField(
        max_digits=None, decimal_places=2,
        help_text="Spent so far plus the recent run rate until the period's end.",
    )
    forecast_percent = serializers.DecimalField(max_digits=None, decimal_places=1)
    forecast_exceeds_at = serializers.DateTimeField(
        allow_null=True, help_text="When the forecast reaches the amount, if it does within the period.",
    )
    exceeded = serializers.BooleanField(help_text="spent >= amount.")
    blocked = serializers.BooleanField(
        help_text="A hard budget that is spent: the gateway refuses requests in its scope until the next period.",
    )
    enforcement = serializers.ChoiceField(choices=Budget.Enforcement.choices, source="budget.enforcement")
    thresholds_crossed = serializers.ListField(
        child=serializers.IntegerField(), source="crossed", help_text="The thresholds this period's spend has reached.",
    )
    exchange_rate_date = serializers.DateField(
        source="rate_date", allow_null=True, help_text="The day of the USD exchange rate used (null for USD).",
    )


# ---------------------------------------------------------------------------------------------
# Alert rules
# ---------------------------------------------------------------------------------------------
class AlertRuleSerializer(RecipientsSerializer):
    target = StrictSlugRelatedField(
        slug_field="uuid", queryset=Target.objects.none(), allow_null=True, required=False,
        help_text="A private benchmark target of the organization (or give catalog_model).",
    )
    catalog_model = StrictSlugRelatedField(
        slug_field="uuid", queryset=CatalogModel.objects.all(), allow_null=True, required=False,
        help_text="A public catalog model, judged on its public benchmark results (or give target).",
    )
    condition = serializers.CharField(
        source="condition_label", read_only=True, help_text="The condition in words.",
    )

    class Meta:
        model = AlertRule
        fields = [
            "uuid", "organization", "name", "target", "catalog_model", "model_name", "metric", "threshold",
            "window_results", "window_minutes", "min_results", "notify_members", "extra_emails", "webhooks",
            "is_enabled", "condition", "state", "state_changed_at", "last_value", "last_sample_size",
            "last_evaluated_at", "incident_count", "created_at",
        ]
        read_only_fields = [
            "uuid", "condition", "state", "state_changed_at", "last_value", "last_sample_size",
            "last_evaluated_at", "incident_count", "created_at",
        ]
        extra_kwargs = {
            "metric": {"help_text": "What is measured; tps_median fires below the threshold, the others above."},
            "threshold": {"help_text": "Milliseconds, tokens per second or percent, depending on the metric."},
            "window_results": {"help_text": "Judge the last N results (1-1000); or give window_minutes."},
            "window_minutes": {"help_text": "Judge the results of the last N minutes (5-10080); or give window_results."},
            "min_results": {"help_text": "Fewer results than this in the window: no_data, nobody is notified."},
            "state": {"help_text": "ok, firing, or no_data (too few results to judge)."},
        }

    def get_fields(self) -> dict:
        fields = super().get_fields()
        if self.principal is not None:
            fields["target"].queryset = Target.objects.visible_to(self.principal)
        return fields


# ---------------------------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------------------------
class WebhookSerializer(ModelCleanSerializer):
    # The model checks the URL in clean() (its field holds ciphertext); the same rules here give
    # DRF's own messages for a malformed value before anything is encrypted.
    url = StrictURLField(
        max_length=WEBHOOK_URL_MAX_LENGTH, write_only=True, validators=[validate_base_url],
        help_text="The http(s) endpoint. Write-only: it can be a credential (Slack's are), so reads show url_masked.",
    )
    url_masked = serializers.CharField(
        source="masked_url", read_only=True, help_text="The URL with its path, query and user:password hidden but the last 4 characters.",
    )

    class Meta:
        model = Webhook
        fields = ["uuid", "organization", "name", "url", "url_masked", "format", "is_enabled", "created_at"]
        read_only_fields = ["uuid", "url_masked", "created_at"]
        extra_kwargs = {
            "format": {"help_text": "json: the signed JSON payload; slack: a Slack-compatible {\"text\": …} message."},
        }

    def get_fields(self) -> dict:
        fields = super().get_fields()
        if self.instance is not None:
            fields["url"].required = False  # a change may keep the URL
        return fields


class NewWebhookSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True, source="raw_secret",
        help_text="The signing secret (HMAC-SHA256 of the body). Shown only in this response.",
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = [*WebhookSerializer.Meta.read_only_fields, "secret"]

    def create(self, validated_data: dict) -> Webhook:
        webhook = Webhook()
        webhook.raw_secret = webhook.rotate_secret()  # stored encrypted; the raw one only in this response
        return self._save(webhook, validated_data)


class WebhookSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret. Shown only in this response; the old one stops working now.")


class TestAlertSerializer(serializers.Serializer):
    alert = serializers.UUIDField(help_text="The test alert (in /alerts).")
    delivery = serializers.UUIDField(help_text="Its delivery to this webhook (in /webhooks/{uuid}/deliveries).")


# ---------------------------------------------------------------------------------------------
# Alerts and deliveries
# ---------------------------------------------------------------------------------------------
class DeliverySerializer(StrictModelSerializer):
    recipient = serializers.CharField(
        source="recipient_label", read_only=True, help_text="The email address, or the webhook's name.",
    )
    webhook = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    last_error = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = [
            "uuid", "channel", "recipient", "webhook", "status", "attempts", "last_status_code", "last_error",
            "created_at", "last_attempt_at", "next_attempt_at", "sent_at",
        ]
        read_only_fields = fields

    def get_last_error(self, delivery: Delivery) -> str:
        return delivery.shown_error  # a webhook's URL is a credential: masked


class WebhookDeliverySerializer(DeliverySerializer):
    """A delivery in a webhook's log, with the alert it carried."""

    alert = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    alert_kind = serializers.ChoiceField(choices=Alert.Kind.choices, source="alert.kind", read_only=True)
    alert_title = serializers.CharField(source="alert.title", read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = ["uuid", "alert", "alert_kind", "alert_title", *DeliverySerializer.Meta.fields[1:]]
        read_only_fields = fields


class AlertSerializer(StrictModelSerializer):
    organization = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    budget = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    rule = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    link = serializers.SerializerMethodField(help_text="The page to look at (absolute URL), or empty.")
    deliveries = DeliverySerializer(many=True, read_only=True)

    class Meta:
        model = Alert
        fields = [
            "uuid", "organization", "kind", "severity", "title", "message", "link", "data", "budget", "rule",
            "period_start", "threshold", "incident", "created_at", "deliveries",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "data": {"help_text": "The numbers behind the alert (budget: spent, amount, percent…; decimals as strings)."},
            "period_start": {"help_text": "Budget alerts: the period the alert belongs to."},
            "threshold": {"help_text": "Budget threshold alerts: the percentage crossed."},
            "incident": {"help_text": "Rule alerts: the rule's incident number."},
        }

    @extend_schema_field(OpenApiTypes.URI)
    def get_link(self, alert: Alert) -> str:
        return f"{settings.SITE_URL}{alert.link}" if alert.link else ""


class AlertFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Alert.Kind.choices, required=False, help_text="Only alerts of this kind.")
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    budget = serializers.UUIDField(required=False, help_text="Only this budget's alerts.")
    rule = serializers.UUIDField(required=False, help_text="Only this rule's alerts.")
    since = MomentParam(required=False, help_text="ISO 8601; alerts raised at or after this time.")
    until = MomentParam(required=False, help_text="ISO 8601; alerts raised before this time.")

    def validate(self, attrs: dict) -> dict:
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        return attrs


class BudgetFilterSerializer(serializers.Serializer):
    project = serializers.UUIDField(required=False, help_text="Only budgets of this project (project-scoped ones).")
