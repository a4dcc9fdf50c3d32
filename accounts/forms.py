from __future__ import annotations

from datetime import timedelta

from allauth.account import app_settings as allauth_settings
from allauth.account.adapter import get_adapter
from allauth.account.forms import RequestLoginCodeForm as AllauthRequestLoginCodeForm
from allauth.account.internal.userkit import filter_users_by_email
from allauth.core import context
from django import forms
from django.utils import timezone

from alerts.models import EmailOptOut

from . import signin_limits
from .models import ApiToken, Organization, Project, Role, User


class OrganizationForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ["name", "time_zone"]
        help_texts = {"time_zone": "Budgets' days, weeks and months start at midnight in this zone."}


class AccountSettingsForm(forms.ModelForm):
    email_alerts = forms.BooleanField(
        required=False, label="Email me alerts",
        help_text="Budget and performance alerts of the budgets and rules that name you. The same switch "
        "as the unsubscribe link in alert emails.",
    )

    class Meta:
        model = User
        fields = ["first_name", "last_name", "display_currency"]
        labels = {"display_currency": "Show money in"}
        help_texts = {
            "display_currency": "Costs are stored in US dollars and converted with the latest stored "
            "exchange rate, whose date is shown next to the figures.",
        }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Opting out is kept per address (EmailOptOut), so it also covers the unsubscribe link.
        self.fields["email_alerts"].initial = not EmailOptOut.opted_out([self.instance.email])

    def save(self, commit: bool = True) -> User:
        user = super().save(commit=commit)
        EmailOptOut.set(user.email, opted_out=not self.cleaned_data["email_alerts"])
        return user


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name"]

    def __init__(self, *args: object, organization: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        clash = self.organization.projects.filter(name__iexact=name)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError(f"{self.organization.name} already has a project named “{name}”.")
        return name


class ProjectDeleteForm(forms.Form):
    confirm_name = forms.CharField(label="Type the project's name to confirm")

    def __init__(self, *args: object, project: Project, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_confirm_name(self) -> str:
        value = self.cleaned_data["confirm_name"]
        if value.strip() != self.project.name:
            raise forms.ValidationError("The name does not match; nothing was deleted.")
        return value


class InvitationForm(forms.Form):
    email = forms.EmailField()
    role = forms.TypedChoiceField(choices=Role.choices, coerce=int, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.TypedChoiceField(choices=Role.choices, coerce=int)


class ApiTokenForm(forms.Form):
    EXPIRY_CHOICES = [("", "Never"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")]

    name = forms.CharField(max_length=100, help_text="Where it is used, e.g. “production backend”.")
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiToken.Scope.READ],
        help_text="read: GET the API · write: change data · ingest: send cost events · gateway: proxy LLM calls",
    )
    expires_in_days = forms.TypedChoiceField(
        choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False, label="Expires"
    )

    def expires_at(self) -> timezone.datetime | None:
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=days) if days else None


class RequestLoginCodeForm(AllauthRequestLoginCodeForm):
    """allauth's form (ACCOUNT_FORMS), counting requests through accounts/signin_limits.py.

    allauth limits code requests per email alone, so anyone could keep an owner from getting a
    code by asking for one first. Only the rate limiting differs from allauth's clean_email()
    (65.x, whose internal user lookup this calls the same way).
    """

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        if not email:
            return email
        users = filter_users_by_email(email, is_active=True, prefer_verified=True, for_login=True)
        if not users and not allauth_settings.PREVENT_ENUMERATION:
            raise get_adapter().validation_error("unknown_email")
        try:
            signin_limits.consume_code_request(context.request, email)
        except signin_limits.TooMany as refused:
            raise forms.ValidationError(refused.message, code="too_many_login_attempts") from None
        self._user = users[0] if users else None
        return email
