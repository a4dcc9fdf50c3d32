"""Forms for benchmark targets (pages) and provider keys (admin). Keys are write-only: no form
ever renders a stored key, or even one the user just typed when the form comes back with errors."""

from __future__ import annotations

import re

from django import forms
from django.core.exceptions import ValidationError

from accounts.models import Organization

from .models import (
    TARGET_MAX_INTERVAL_MINUTES,
    TARGET_MAX_TOKENS,
    TARGET_MIN_INTERVAL_MINUTES,
    Target,
)


class SecretKeyForm(forms.ModelForm):
    """Keys are write-only here: the form never shows the stored (encrypted) value."""

    new_api_key = forms.CharField(
        required=False, max_length=1000, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current key. Stored encrypted; never shown again.",
    )
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")

    def describe_key_fields(self, *, without_key: str) -> None:
        """Label the key fields for what is stored now (a new object, a key set, none); removing
        is offered only when there is a key. `without_key` says what happens then."""
        key = self.fields["new_api_key"]
        key.label = "API key"
        if self.instance.pk is None:
            del self.fields["clear_api_key"]
            key.help_text = "Optional (e.g. for a local vLLM or Ollama). Stored encrypted; never shown again."
        elif self.instance.api_key:
            key.help_text = "A key is set. Leave blank to keep it; type a new one to replace it."
            self.fields["clear_api_key"].label = "Remove the stored key"
            self.fields["clear_api_key"].help_text = without_key
        else:
            key.help_text = "No key is stored. Stored encrypted; never shown again."
            del self.fields["clear_api_key"]

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("clear_api_key") and cleaned.get("new_api_key"):
            self.add_error("clear_api_key", "Either enter a new key or remove the stored one, not both.")
        return cleaned

    def save(self, commit: bool = True):
        instance = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            instance.api_key = ""
        elif self.cleaned_data.get("new_api_key"):
            instance.api_key = self.cleaned_data["new_api_key"]  # the field encrypts it
        if commit:
            instance.save()
        return instance


class ModelNamesField(forms.CharField):
    """A list of model names typed one per line or separated by commas. The list's own rules
    (validate_model_names on Target.model_names) run on the parsed list."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "autocapitalize": "off"})

    def to_python(self, value: object) -> list[str]:
        text = super().to_python(value)
        names = [name.strip() for name in re.split(r"[\n,]", text)]
        return [name for name in names if name]

    def prepare_value(self, value: object) -> object:
        return "\n".join(value) if isinstance(value, list) else value


class TargetForm(SecretKeyForm):
    """Add or edit an organization's private target. The field rules are the model's (the API
    enforces the same ones); the organization comes from the URL, never from the form."""

    # Declared for assume_scheme: a URL typed without a scheme means https, not http.
    base_url = forms.URLField(
        label="Base URL", max_length=300, assume_scheme="https",
        help_text="The API root, e.g. https://api.openai.com/v1 or http://your-vllm:8000/v1.",
    )
    model_names = ModelNamesField(
        label="Model names", help_text="One per line, or separated by commas, exactly as the API expects them."
    )

    class Meta:
        model = Target
        fields = ["name", "kind", "base_url", "model_names", "prompt", "max_tokens", "interval_minutes", "is_enabled"]
        labels = {"interval_minutes": "Run every (minutes)", "is_enabled": "Enabled"}
        help_texts = {
            "prompt": "Sent as the user message on every run.",
            "max_tokens": f"1 to {TARGET_MAX_TOKENS:,}.",
            "interval_minutes": f"{TARGET_MIN_INTERVAL_MINUTES} to {TARGET_MAX_INTERVAL_MINUTES:,} (a day).",
            "is_enabled": "Paused targets are not run on their schedule; “Run now” still works.",
        }
        widgets = {
            "prompt": forms.Textarea(attrs={"rows": 3}),
            "max_tokens": forms.NumberInput(attrs={"min": 1, "max": TARGET_MAX_TOKENS}),
            "interval_minutes": forms.NumberInput(
                attrs={"min": TARGET_MIN_INTERVAL_MINUTES, "max": TARGET_MAX_INTERVAL_MINUTES}
            ),
        }

    field_order = ["name", "kind", "base_url", "new_api_key", "clear_api_key"]

    def __init__(self, *args: object, organization: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.instance.organization = organization
        self.describe_key_fields(without_key="Requests are then sent without one.")

    def _post_clean(self) -> None:
        super()._post_clean()
        if "name" in self.cleaned_data and not self.has_error("name"):
            try:
                self.instance.check_name_is_free()
            except ValidationError as error:
                self._update_errors(error)
