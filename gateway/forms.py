"""Forms of the gateway's pages (and the admin's connection form). The rules are the models'
(gateway/models.py), shared with the API; the owner (organization or project) always comes from
the URL, never from the form. Keys are write-only: no form renders a stored key, or even one
the user just typed when the form comes back with errors."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from accounts.models import ApiToken, Organization, Project
from benchmarks.forms import SecretKeyForm

from .models import (
    MAX_UPSTREAMS_PER_ROUTE,
    MAX_WEIGHT,
    Connection,
    GatewaySettings,
    RateLimit,
    Route,
    RouteUpstream,
    UpstreamsInvalid,
    UpstreamSpec,
)

KEY_FOLLOWS_MESSAGE = (
    "The base URL now points at another host: enter the API key again (or remove it), so the stored key is "
    "never sent anywhere it was not entered for."
)


# ---------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------
class ConnectionKeyRules(SecretKeyForm):
    """The key is write-only (SecretKeyForm), and moving a connection to another host needs it
    typed again (Connection.key_would_follow_to_another_host). Shared by the page and the admin."""

    def clean(self) -> dict:
        cleaned = super().clean()
        base_url = cleaned.get("base_url")
        keeps_key = not cleaned.get("new_api_key") and not cleaned.get("clear_api_key")
        if keeps_key and base_url and self.instance.key_would_follow_to_another_host(base_url):
            self.add_error("new_api_key", KEY_FOLLOWS_MESSAGE)
        return cleaned


class ConnectionForm(ConnectionKeyRules):
    # Declared for assume_scheme: a URL typed without a scheme means https, not http.
    base_url = forms.URLField(
        label="Base URL", max_length=300, assume_scheme="https",
        help_text="The API root, e.g. https://api.openai.com/v1, https://api.groq.com/openai/v1 or "
        "http://your-vllm:8000/v1 (Anthropic native: https://api.anthropic.com).",
    )

    class Meta:
        model = Connection
        fields = ["name", "kind", "provider", "base_url", "is_enabled"]
        labels = {"kind": "Wire format", "is_enabled": "Enabled"}
        help_texts = {
            "name": "Unique in the organization; shown in x-pulse-upstream as name/model.",
            "kind": "OpenAI-compatible covers OpenAI, Groq, Together, OpenRouter, DeepSeek, Mistral, Fireworks, "
            "vLLM, Ollama, and Anthropic or Gemini through their OpenAI-compatible endpoints. Anthropic (native) "
            "serves /v1/messages.",
            "provider": "The provider calls are priced and rolled up under, e.g. openai, groq, anthropic.",
            "is_enabled": "A disabled connection is skipped by every route.",
        }

    field_order = ["name", "kind", "provider", "base_url", "new_api_key", "clear_api_key", "is_enabled"]

    def __init__(self, *args: object, organization: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.instance.organization = organization
        self.describe_key_fields(without_key="Calls are then sent without one.")


# ---------------------------------------------------------------------------------------------
# Routes and their upstreams
# ---------------------------------------------------------------------------------------------
class RouteForm(forms.ModelForm):
    class Meta:
        model = Route
        fields = ["name", "strategy", "is_enabled"]
        labels = {"name": "Model name or alias", "is_enabled": "Enabled"}
        help_texts = {
            "name": "What callers send as model, e.g. gpt-4o-mini, or an alias such as fast-chat. Unique in the project.",
            "strategy": "How an upstream is chosen for each call; the others are the fallbacks.",
            "is_enabled": "A disabled route answers 404 model_not_found, like an unknown one.",
        }
        widgets = {"name": forms.TextInput(attrs={"spellcheck": "false", "autocapitalize": "off"})}

    def __init__(self, *args: object, project: Project, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.instance.project = project


class UpstreamForm(forms.ModelForm):
    """One row of a route's upstream list; its order comes from the formset."""

    class Meta:
        model = RouteUpstream
        fields = ["connection", "model", "weight"]
        labels = {"model": "Upstream model"}
        help_texts = {"model": "", "weight": ""}
        widgets = {
            "model": forms.TextInput(attrs={"spellcheck": "false", "autocapitalize": "off", "placeholder": "e.g. gpt-4o-mini"}),
            "weight": forms.NumberInput(attrs={"min": 1, "max": MAX_WEIGHT}),
        }

    def __init__(self, *args: object, organization: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        connection = self.fields["connection"]
        connection.queryset = Connection.objects.filter(organization=organization).order_by("name")
        connection.to_field_name = "uuid"  # objects are named by uuid, never by sequential id
        connection.label_from_instance = lambda c: c.name if c.is_enabled else f"{c.name} (disabled)"
        connection.empty_label = "Choose a connection"
        self.fields["weight"].initial = 1
        self.fields["weight"].required = False

    def clean_weight(self) -> int:
        weight = self.cleaned_data.get("weight")
        return 1 if weight is None else weight  # left blank: the default

    def as_spec(self) -> UpstreamSpec:
        data = self.cleaned_data
        return UpstreamSpec(connection=data["connection"], model=data["model"], weight=data["weight"])


class BaseUpstreamFormSet(forms.BaseFormSet):
    """The route's upstreams, in the order given by the rows' Order numbers (then as listed);
    blank rows are ignored and ticked ones removed. The list's rules are the route's
    (Route.check_upstreams), with each problem shown on its row."""

    def __init__(self, *args: object, route: Route, **kwargs: object) -> None:
        self.route = route
        kwargs.setdefault("form_kwargs", {})["organization"] = route.project.organization
        super().__init__(*args, **kwargs)

    def kept_forms(self) -> list[UpstreamForm]:
        """The rows that are upstreams: the route's own unless ticked for removal, and the blank
        ones filled in; sorted by their Order number (rows without one last, as listed)."""
        kept = [
            (index, form) for index, form in enumerate(self.forms)
            if not self._should_delete_form(form) and (index < self.initial_form_count() or form.has_changed())
        ]

        def order(item: tuple[int, UpstreamForm]) -> tuple[bool, int, int]:
            number = item[1].cleaned_data.get("ORDER")
            return (number is None, number or 0, item[0])

        return [form for _, form in sorted(kept, key=order)]

    def specs(self) -> list[UpstreamSpec]:
        return [form.as_spec() for form in self.kept_forms()]

    def clean(self) -> None:
        if any(self.errors):
            return  # each row says what is wrong with it first
        kept = self.kept_forms()
        try:
            self.route.check_upstreams([form.as_spec() for form in kept])
        except UpstreamsInvalid as invalid:
            for index, problems in invalid.per_upstream.items():
                for field, messages in problems.items():
                    kept[index].add_error(field, messages)
            if invalid.overall:
                raise ValidationError(invalid.overall) from None


BLANK_UPSTREAM_ROWS = 2  # room to add upstreams without JavaScript


def upstream_formset(data: object, route: Route) -> BaseUpstreamFormSet:
    """The formset for `route`: its upstreams in order, then blank rows up to the maximum."""
    initial = [
        {"connection": upstream.connection.uuid, "model": upstream.model, "weight": upstream.weight}
        for upstream in (route.upstreams.select_related("connection").order_by("position", "id") if route.pk else [])
    ]
    formset_class = forms.formset_factory(
        UpstreamForm, formset=BaseUpstreamFormSet, can_order=True, can_delete=True, can_delete_extra=False,
        extra=max(0, min(BLANK_UPSTREAM_ROWS + (0 if initial else 1), MAX_UPSTREAMS_PER_ROUTE - len(initial))),
        max_num=MAX_UPSTREAMS_PER_ROUTE, absolute_max=MAX_UPSTREAMS_PER_ROUTE, validate_max=True,
    )
    return formset_class(data, initial=initial, prefix="upstreams", route=route)


# ---------------------------------------------------------------------------------------------
# Settings and limits
# ---------------------------------------------------------------------------------------------
class GatewaySettingsForm(forms.ModelForm):
    class Meta:
        model = GatewaySettings
        fields = ["cache_enabled", "cache_ttl_seconds", "store_bodies", "body_retention_days", "body_max_bytes"]
        labels = {
            "cache_enabled": "Cache identical requests",
            "cache_ttl_seconds": "Cache entries live for (seconds)",
            "store_bodies": "Store request and response bodies",
            "body_retention_days": "Keep stored bodies for (days)",
            "body_max_bytes": "Cut each stored body at (bytes)",
        }
        help_texts = {
            "cache_enabled": "Exact-match cache: a hit is replayed at $0. Callers may override per request with "
            "x-pulse-cache: on|off.",
            "cache_ttl_seconds": "1 second to 30 days.",
            "store_bodies": "Shown on the activity detail page. Off by default: prompts may hold personal data.",
            "body_retention_days": "1 to 90.",
            "body_max_bytes": "256 to 1,000,000.",
        }


class RateLimitForm(forms.ModelForm):
    class Meta:
        model = RateLimit
        fields = ["api_token", "requests_per_minute", "tokens_per_minute", "requests_per_day", "tokens_per_day"]
        labels = {
            "api_token": "Applies to",
            "requests_per_minute": "Requests per minute (RPM)",
            "tokens_per_minute": "Tokens per minute (TPM)",
            "requests_per_day": "Requests per day (RPD)",
            "tokens_per_day": "Tokens per day (TPD)",
        }
        help_texts = {
            "api_token": "The whole project, or the calls of one of its tokens.",
            "requests_per_minute": "Leave blank for no limit.",
            "tokens_per_minute": "Input and output tokens. Leave blank for no limit.",
            "requests_per_day": "Leave blank for no limit.",
            "tokens_per_day": "Leave blank for no limit.",
        }

    def __init__(self, *args: object, project: Project, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.instance.project = project
        token = self.fields["api_token"]
        token.queryset = ApiToken.objects.filter(project=project, revoked_at__isnull=True).order_by("name")
        token.to_field_name = "uuid"
        if self.instance.api_token_id:  # the instance's initial value is its id: name it by uuid
            self.initial["api_token"] = self.instance.api_token.uuid
        token.empty_label = "The whole project"
        token.label_from_instance = lambda api_token: f"{api_token.name} ({api_token.masked})"
