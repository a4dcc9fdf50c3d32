"""The activity log's filters (GET form), shared by the page and its CSV export."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django import forms
from django.http import QueryDict
from django.utils import timezone

from accounts.models import ApiToken, Project, User
from lib.dates import DayField

from .activity import rollups_of
from .ingestion import MAX_END_USER, MAX_TAG_KEY, MAX_TAG_VALUE
from .models import CostEvent, CostEventQuerySet

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}
RANGE_LABELS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days"}
DEFAULT_RANGE = "30d"
NOT_A_TOKEN = "-"  # noqa: S105 (a filter value, not a secret): events sent by a signed-in person rather than with an API token
TAG = re.compile(rf"^\s*(?P<key>[\w.:-]{{1,{MAX_TAG_KEY}}})\s*=\s*(?P<value>.{{0,{MAX_TAG_VALUE}}}?)\s*$")


class DayRangeFilterForm(forms.Form):
    """Base of the GET filter forms with From/To dates: days in the organization's time zone
    (`self.zone`, set by the subclass), both inclusive. Bound to request.GET, an invalid field
    is reported and left out of the filter; the valid ones still apply (a typo in one box does
    not empty the page)."""

    # DayField: a date far enough from year 1 and 9999 that local midnights and the day after
    # `To` cannot overflow (`?end=9999-12-31` was a 500).
    start = DayField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = DayField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    zone: ZoneInfo

    def clean(self) -> dict:
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start > end:
            self.add_error("end", "The end date is before the start date.")
        return cleaned

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=self.zone)

    def day_bounds(self) -> tuple[datetime | None, datetime | None]:
        """[local midnight of From, local midnight after To): None where a date is not given."""
        data = self.cleaned_data if self.is_bound else {}
        start, end = data.get("start"), data.get("end")
        return (
            self._midnight(start) if start else None,
            self._midnight(end + timedelta(days=1)) if end else None,
        )

    def error_messages(self) -> list[str]:
        """One line per invalid field, saying it was left out."""
        lines = []
        for name, errors in self.errors.items():
            label = self[name].label if name in self.fields else "Filters"
            lines.append(f"{label}: {' '.join(errors)} This filter was ignored.")
        return lines


class ActivityFilterForm(DayRangeFilterForm):
    """The activity log's filters; a relative period or From/To dates."""

    field_order = ["range", "start", "end"]

    range = forms.ChoiceField(
        choices=[*RANGE_LABELS.items(), ("", "Custom dates")], required=False, label="Period",
    )
    provider = forms.ChoiceField(required=False)
    model = forms.ChoiceField(required=False)
    token = forms.ChoiceField(required=False, label="API token")
    tag = forms.CharField(
        required=False, max_length=MAX_TAG_KEY + MAX_TAG_VALUE + 1,
        widget=forms.TextInput(attrs={"placeholder": "feature=chat"}),
    )
    status = forms.ChoiceField(
        choices=[("", "Any status"), ("success", "Succeeded"), ("failed", "Failed")], required=False,
    )
    endpoint = forms.ChoiceField(choices=[("", "Any endpoint"), *CostEvent.Endpoint.choices], required=False)
    end_user = forms.CharField(
        required=False, max_length=MAX_END_USER, label="End user", widget=forms.TextInput(attrs={"placeholder": "user-42"}),
    )
    unpriced = forms.BooleanField(required=False, label="Unpriced only")
    cache_hit = forms.BooleanField(required=False, label="Cache hits only")

    def __init__(self, data: QueryDict, *, project: Project, user: User) -> None:
        if "range" not in data and not data.get("start") and not data.get("end"):
            data = data.copy()  # show the default period as chosen, not as "custom dates"
            data["range"] = DEFAULT_RANGE
        super().__init__(data)
        self.project = project
        self.zone = ZoneInfo(project.organization.time_zone)
        seen = rollups_of(project, user).models_seen()
        self.fields["provider"].choices = [("", "Any provider"), *((p, p) for p in sorted({p for p, _ in seen}))]
        self.fields["model"].choices = [("", "Any model"), *((m, m) for m in sorted({m for _, m in seen}))]
        tokens = {t.prefix: f"{t.name} ({t.masked})" for t in ApiToken.objects.visible_to(user).filter(project=project)}
        self.fields["token"].choices = [("", "Any token"), *tokens.items(), (NOT_A_TOKEN, "No token (signed-in people)")]

    def clean_tag(self) -> tuple[str, str] | None:
        raw = self.cleaned_data["tag"]
        if not raw:
            return None
        match = TAG.match(raw)
        if match is None:
            raise forms.ValidationError("Write a tag as key=value, e.g. feature=chat.")
        return match["key"], match["value"]

    # ------------------------------------------------------------------ what the filter means

    def period(self) -> tuple[datetime | None, datetime | None]:
        """From/to dates (days in the organization's time zone, both inclusive) win over a
        relative range; with neither, the default range."""
        if self.range_key == "":
            return self.day_bounds()
        return timezone.now() - RANGES[self.range_key or DEFAULT_RANGE], None

    @property
    def range_key(self) -> str:
        data = self.cleaned_data if self.is_bound else {}
        if data.get("start") or data.get("end"):
            return ""
        return data.get("range") or DEFAULT_RANGE

    def apply(self, events: CostEventQuerySet) -> CostEventQuerySet:
        self.is_valid()  # fills cleaned_data with the valid fields and errors for the others
        data = self.cleaned_data
        events = events.between(*self.period())
        if data.get("provider"):
            events = events.filter(provider=data["provider"])
        if data.get("model"):
            events = events.filter(model=data["model"])
        token = data.get("token")
        if token:
            events = events.filter(token_prefix="" if token == NOT_A_TOKEN else token)
        if data.get("tag"):
            events = events.tagged(*data["tag"])
        if data.get("status") == "success":
            events = events.filter(success=True)
        elif data.get("status") == "failed":
            events = events.filter(success=False)
        if data.get("unpriced"):
            events = events.unpriced()
        if data.get("endpoint"):
            events = events.filter(endpoint=data["endpoint"])
        if data.get("end_user"):
            events = events.filter(end_user=data["end_user"])
        if data.get("cache_hit"):
            events = events.filter(cache_hit=True)
        return events

