"""Forms for budgets, performance rules, webhooks and the alert history's filters.

The rules are the models' (field validators and `clean()`, which the API enforces too): these
forms only turn what a page can offer (one "scope" select, thresholds typed as "50, 80, 100", a
window kind and size) into model fields, and put the models' errors back on the field the
person actually filled in. The organization always comes from the URL, never from the form.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import QuerySet

from accounts.models import ApiToken, Organization, Project, User
from benchmarks.models import Model as CatalogModel
from benchmarks.models import Target
from costs.forms import DayRangeFilterForm
from costs.models import rollup_tag_keys

from .models import (
    MAX_EXTRA_EMAILS,
    WEBHOOK_URL_MAX_LENGTH,
    Alert,
    AlertRule,
    Budget,
    Severity,
    Webhook,
    validate_members,
)

# ---------------------------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------------------------


class ThresholdsField(forms.CharField):
    """Whole percentages typed as "50, 80, 100"; the list's own rules (validate_thresholds on
    Budget.thresholds) run on the parsed list when the model is cleaned."""

    def to_python(self, value: object) -> list[int]:
        text = super().to_python(value)
        items = [item.strip().rstrip("%").strip() for item in re.split(r"[,;\s]+", text) if item.strip()]
        numbers, wrong = [], []
        for item in items:
            if re.fullmatch(r"\d{1,6}", item):
                numbers.append(int(item))
            else:
                wrong.append(item)
        if wrong:
            raise ValidationError(
                f"Not a whole percentage: {', '.join(wrong)}. Write e.g. 50, 80, 100.", code="invalid"
            )
        return numbers

    def prepare_value(self, value: object) -> object:
        return ", ".join(str(t) for t in value) if isinstance(value, list) else value


class EmailListField(forms.CharField):
    """Addresses one per line, or separated by commas; each checked by validate_extra_emails
    (on Recipients.extra_emails) when the model is cleaned."""

    widget = forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "autocapitalize": "off"})

    def to_python(self, value: object) -> list[str]:
        text = super().to_python(value)
        addresses = [item.strip() for item in re.split(r"[\n,;]+", text)]
        return list(dict.fromkeys(a for a in addresses if a))

    def prepare_value(self, value: object) -> object:
        return "\n".join(value) if isinstance(value, list) else value


class MemberChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: User) -> str:
        name = obj.get_full_name()
        return f"{name} ({obj.email})" if name else obj.email


class WriteOnlyURLInput(forms.URLInput):
    """Never renders a value: webhook URLs (Slack's, for one) are credentials, so neither the
    stored one nor one typed into a form that came back with errors goes into the page."""

    def format_value(self, value: object) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# Shared behaviour
# ---------------------------------------------------------------------------------------------


class ModelRulesForm(forms.ModelForm):
    """A ModelForm some of whose model fields are set from other form fields (`mapped_fields`:
    model field -> the form field that sets it). Those model fields are still validated (their
    validators and `clean()`), and their errors are shown on the form field that set them."""

    mapped_fields: dict[str, str] = {}

    def _get_validation_exclusions(self) -> set[str]:
        return set(super()._get_validation_exclusions()) - set(self.mapped_fields)

    def _update_errors(self, errors: ValidationError) -> None:
        if hasattr(errors, "error_dict"):
            remapped: dict[str, list] = {}
            for field, messages in errors.error_dict.items():
                name = self.mapped_fields.get(field, field)
                if name not in self.fields and name != NON_FIELD_ERRORS:
                    name = NON_FIELD_ERRORS
                if name != NON_FIELD_ERRORS and name in self.errors:
                    continue  # the form field's own error already says what is wrong
                remapped.setdefault(name, []).extend(messages)
            errors = ValidationError(remapped)
        super()._update_errors(errors)


class RecipientsForm(ModelRulesForm):
    """Who hears about a budget's or rule's alerts: members (checkboxes), extra addresses and the
    organization's webhooks."""

    notify_members = MemberChoiceField(
        queryset=User.objects.none(), required=False, widget=forms.CheckboxSelectMultiple,
        label="Email these members", help_text="Each can turn alert emails off in their account settings.",
    )
    extra_emails = EmailListField(
        required=False, label="Also email",
        help_text=f"Other addresses (a team list, on-call), one per line or comma separated; at most {MAX_EXTRA_EMAILS}.",
    )
    webhooks = forms.ModelMultipleChoiceField(
        queryset=Webhook.objects.none(), required=False, widget=forms.CheckboxSelectMultiple,
        label="Post to webhooks",
    )

    def __init__(self, *args: object, organization: Organization, user: User, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.instance.organization = organization
        self.fields["notify_members"].queryset = User.objects.filter(
            memberships__organization=organization
        ).order_by("email")
        webhooks = Webhook.objects.visible_to(user).filter(organization=organization)
        self.fields["webhooks"].queryset = webhooks
        if not webhooks.exists():
            self.fields["webhooks"].help_text = "No webhooks yet: add one (Slack or your own endpoint) under Channels."
        if self.instance.pk is None and not self.is_bound:
            self.initial.setdefault("notify_members", [user.pk])  # the creator hears about it

    def clean_notify_members(self) -> QuerySet:
        members = self.cleaned_data["notify_members"]
        validate_members(self.organization, list(members))
        return members


# ---------------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------------
ORGANIZATION_SCOPE = "organization"


class BudgetForm(RecipientsForm):
    scope = forms.ChoiceField(
        label="Spending of",
        help_text="An organization-wide budget counts every project's spend; an API token's, the calls made with it.",
    )
    tag_key = forms.ChoiceField(required=False, label="Only calls tagged")
    thresholds = ThresholdsField(
        label="Alert at (% of the amount)", initial="50, 80, 100",
        help_text="Whole percentages, comma separated; each alerts once per period. Above 100 is allowed.",
    )

    mapped_fields = {"project": "scope", "api_token": "scope"}

    class Meta:
        model = Budget
        fields = [
            "name", "model", "tag_key", "tag_value", "amount", "currency", "period", "thresholds",
            "enforcement", "forecast_alerts", "notify_members", "extra_emails", "webhooks", "is_enabled",
        ]
        labels = {
            "model": "Only this model", "tag_value": "Tag value", "forecast_alerts": "Forecast alerts",
            "is_enabled": "Enabled", "enforcement": "When spent",
        }
        help_texts = {
            "model": "Optional: the model name as reported in cost events (any provider).",
            "tag_value": "With a tag key: only calls whose tag has this value.",
            "amount": "Per period, in the currency below (spend is converted at the latest exchange rate).",
            "period": "Calendar days, weeks (from Monday) or months in the organization's time zone.",
            "forecast_alerts": "Also alert once per period when the current run rate would pass the amount.",
            "is_enabled": "Disabled budgets are neither evaluated nor enforced.",
        }
        widgets = {
            "enforcement": forms.RadioSelect,
            "amount": forms.NumberInput(attrs={"min": "0.01", "step": "0.01", "inputmode": "decimal"}),
            "model": forms.TextInput(attrs={"placeholder": "e.g. gpt-4o-mini", "spellcheck": "false"}),
        }

    field_order = ["name", "scope", "model", "tag_key", "tag_value", "amount", "currency", "period"]

    def __init__(self, *args: object, organization: Organization, user: User, **kwargs: object) -> None:
        super().__init__(*args, organization=organization, user=user, **kwargs)
        self.projects = {str(p.uuid): p for p in Project.objects.visible_to(user).filter(organization=organization)}
        tokens = ApiToken.objects.visible_to(user).filter(organization=organization).select_related("project")
        current_token = self.instance.api_token_id
        self.tokens = {
            str(t.uuid): t for t in tokens if t.revoked_at is None or t.pk == current_token
        }
        token_choices = [
            (f"token:{key}", f"{t.name} ({t.masked}, {t.project.name if t.project_id else 'organization-wide'})")
            for key, t in self.tokens.items()
        ]
        choices: list = [(ORGANIZATION_SCOPE, f"The whole organization ({organization.name})")]
        choices.append(("Projects", [(f"project:{key}", p.name) for key, p in self.projects.items()]))
        if token_choices:
            choices.append(("API tokens", token_choices))
        self.fields["scope"].choices = choices
        if self.instance.api_token_id:
            self.initial.setdefault("scope", f"token:{self.instance.api_token.uuid}")
        elif self.instance.project_id:
            self.initial.setdefault("scope", f"project:{self.instance.project.uuid}")
        self.fields["tag_key"].choices = [("", "Any tags"), *((k, k) for k in rollup_tag_keys())]
        self.fields["tag_key"].help_text = "Budgets can filter on the tag keys Pulse rolls up."

    def clean_scope(self) -> str:
        scope = self.cleaned_data["scope"]
        kind, _, key = scope.partition(":")
        # Only choices offered above get here (ChoiceField refused anything else), so the project
        # or token is this organization's; Budget.clean() checks again for the API's sake.
        self.instance.project = self.projects[key] if kind == "project" else None
        self.instance.api_token = self.tokens[key] if kind == "token" else None
        return scope


# ---------------------------------------------------------------------------------------------
# Performance rules
# ---------------------------------------------------------------------------------------------
class AlertRuleForm(RecipientsForm):
    subject = forms.ChoiceField(
        label="Watch",
        help_text="One of your private targets (all its models, or one), or a public catalog model's results.",
    )
    window_kind = forms.ChoiceField(
        label="Judge", choices=[("results", "the last N results"), ("minutes", "the results of the last N minutes")],
        widget=forms.RadioSelect, initial="results",
    )
    window_size = forms.IntegerField(
        label="N (results or minutes)", min_value=1, initial=20,
        help_text="Results: 1 to 1,000. Minutes: 5 to 10,080 (a week).",
    )

    mapped_fields = {
        "target": "subject", "catalog_model": "subject", "model_name": "subject",
        "window_results": "window_size", "window_minutes": "window_size",
    }

    class Meta:
        model = AlertRule
        fields = ["name", "metric", "threshold", "min_results", "notify_members", "extra_emails", "webhooks", "is_enabled"]
        labels = {"metric": "Alert when", "threshold": "Threshold", "min_results": "Minimum results", "is_enabled": "Enabled"}
        help_texts = {
            "threshold": "Milliseconds, tokens per second or percent, as the metric says.",
            "min_results": "Fewer results than this in the window: “not enough data”, no alert either way.",
        }
        widgets = {"threshold": forms.NumberInput(attrs={"min": 0, "step": "any"})}

    field_order = ["name", "subject", "metric", "threshold", "window_kind", "window_size", "min_results"]

    def __init__(self, *args: object, organization: Organization, user: User, **kwargs: object) -> None:
        super().__init__(*args, organization=organization, user=user, **kwargs)
        rule = self.instance
        self.targets = {
            str(t.uuid): t for t in Target.objects.visible_to(user).filter(organization=organization).order_by("name")
        }
        catalog = CatalogModel.objects.filter(is_active=True)
        if rule.catalog_model_id:  # keep a watched model selectable after it left the schedule
            catalog = catalog | CatalogModel.objects.filter(pk=rule.catalog_model_id)
        self.catalog = {str(m.uuid): m for m in catalog.select_related("provider").order_by("provider__name", "name")}
        target_choices = []
        for key, target in self.targets.items():
            target_choices.append((f"target:{key}", f"{target.name} (all models)"))
            target_choices += [(f"target:{key}:{name}", f"{target.name} / {name}") for name in target.model_names]
        if rule.target_id and rule.model_name and rule.model_name not in rule.target.model_names:
            target_choices.append((f"target:{rule.target.uuid}:{rule.model_name}", f"{rule.target.name} / {rule.model_name}"))
        choices: list = [("", "Choose…")]
        if target_choices:
            choices.append(("Your private targets", target_choices))
        by_provider: dict[str, list] = {}
        for key, model in self.catalog.items():
            by_provider.setdefault(f"Public: {model.provider.name}", []).append((f"model:{key}", model.name))
        choices += list(by_provider.items())
        self.fields["subject"].choices = choices
        if len(choices) == 1:
            self.fields["subject"].help_text = (
                "Nothing to watch yet: add a private target on the Benchmarks page, "
                "or wait for the public catalog's models to be benchmarked."
            )
        self.fields["metric"].choices = [("", "Choose a metric…"), *AlertRule.Metric.choices]
        if rule.target_id:
            self.initial.setdefault(
                "subject", f"target:{rule.target.uuid}" + (f":{rule.model_name}" if rule.model_name else "")
            )
        elif rule.catalog_model_id:
            self.initial.setdefault("subject", f"model:{rule.catalog_model.uuid}")
        if rule.window_minutes:
            self.initial.setdefault("window_kind", "minutes")
            self.initial.setdefault("window_size", rule.window_minutes)
        elif rule.window_results:
            self.initial.setdefault("window_size", rule.window_results)

    def clean_subject(self) -> str:
        subject = self.cleaned_data["subject"]
        kind, _, rest = subject.partition(":")
        key, _, model_name = rest.partition(":")
        rule = self.instance
        rule.target = self.targets[key] if kind == "target" else None
        rule.model_name = model_name if kind == "target" else ""
        rule.catalog_model = self.catalog[key] if kind == "model" else None
        return subject

    def clean(self) -> dict:
        cleaned = super().clean()
        kind, size = cleaned.get("window_kind"), cleaned.get("window_size")
        if kind and size:
            self.instance.window_results = size if kind == "results" else None
            self.instance.window_minutes = size if kind == "minutes" else None
        return cleaned


# ---------------------------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------------------------
class WebhookURLForm(ModelRulesForm):
    """The URL is write-only, like a target's API key: typed in, never shown again (the pages and
    the admin show `masked_url`). Editing with the URL left empty keeps the stored one. The model
    encrypts it as it is assigned and checks it in `Webhook.clean()` (errors land on `new_url`)."""

    new_url = forms.URLField(
        label="URL", max_length=WEBHOOK_URL_MAX_LENGTH, assume_scheme="https", required=False,
        widget=WriteOnlyURLInput(attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "https://hooks.slack.com/services/…"}),
    )

    mapped_fields = {"url": "new_url"}

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        url = self.fields["new_url"]
        if self.instance.pk is None:
            url.required = True
            url.help_text = "Where alerts are POSTed. Kept like a password: never shown in full again."
        else:
            url.help_text = f"Now {self.instance.masked_url}. Leave empty to keep it; type a new one to replace it."

    def clean_new_url(self) -> str:
        new_url = self.cleaned_data["new_url"]
        if new_url:
            self.instance.url = new_url  # encrypted there and then
        return new_url


class WebhookForm(WebhookURLForm):
    """A webhook of one organization, on the channels page."""

    class Meta:
        model = Webhook
        fields = ["name", "format", "is_enabled"]
        labels = {"is_enabled": "Enabled"}
        help_texts = {
            "format": "“JSON (signed)” for your own endpoint; “Slack-compatible” for Slack, Mattermost, "
            "Discord's /slack URL or a Teams workflow.",
            "is_enabled": "Disabled webhooks receive nothing, test alerts included.",
        }
        widgets = {"format": forms.RadioSelect}

    field_order = ["name", "new_url", "format", "is_enabled"]

    def __init__(self, *args: object, organization: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.instance.organization = organization


class WebhookAdminForm(WebhookURLForm):
    """The operators' admin: the same write-only URL; the secret is not a field at all."""

    class Meta:
        model = Webhook
        fields = ["organization", "name", "format", "is_enabled", "created_by"]


# ---------------------------------------------------------------------------------------------
# Alert history filters
# ---------------------------------------------------------------------------------------------
class AlertFilterForm(DayRangeFilterForm):
    """The alert history's filters (From/To and the reporting rules: `DayRangeFilterForm`)."""

    field_order = ["kind", "severity", "budget", "rule", "start", "end"]

    kind = forms.ChoiceField(required=False, label="Kind")
    severity = forms.ChoiceField(required=False, label="Severity")
    budget = forms.ModelChoiceField(queryset=Budget.objects.none(), required=False, to_field_name="uuid",
                                    empty_label="Any budget")
    rule = forms.ModelChoiceField(queryset=AlertRule.objects.none(), required=False, to_field_name="uuid",
                                  empty_label="Any rule", label="Performance rule")

    def __init__(self, data: object, *, organization: Organization, user: User) -> None:
        super().__init__(data)
        self.zone = ZoneInfo(organization.time_zone)
        self.fields["kind"].choices = [("", "Any kind"), *Alert.Kind.choices]
        self.fields["severity"].choices = [("", "Any severity"), *Severity.choices]
        self.fields["budget"].queryset = Budget.objects.visible_to(user).filter(organization=organization)
        self.fields["rule"].queryset = AlertRule.objects.visible_to(user).filter(organization=organization)

    def apply(self, alerts: QuerySet) -> QuerySet:
        self.is_valid()  # fills cleaned_data with the valid fields and errors for the others
        data = self.cleaned_data
        if data.get("kind"):
            alerts = alerts.filter(kind=data["kind"])
        if data.get("severity"):
            alerts = alerts.filter(severity=data["severity"])
        if data.get("budget"):
            alerts = alerts.filter(budget=data["budget"])
        if data.get("rule"):
            alerts = alerts.filter(rule=data["rule"])
        start, end = self.day_bounds()
        if start:
            alerts = alerts.filter(created_at__gte=start)
        if end:
            alerts = alerts.filter(created_at__lt=end)
        return alerts

    @property
    def is_filtered(self) -> bool:
        return any(self.cleaned_data.get(name) for name in self.fields) if hasattr(self, "cleaned_data") else False

