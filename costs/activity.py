"""The activity log: one event's cost explained, its request and response when kept, and what
the log's page shows around it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import ApiToken, Project, User

from .models import CostEvent, CostEventBody, CostRollup

MILLION = Decimal(1_000_000)
UNPRICED_WINDOW = timedelta(days=30)
USAGE_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class BreakdownLine:
    label: str
    tokens: int
    price_mtok: Decimal
    amount_usd: Decimal


def cost_breakdown(event: CostEvent) -> list[BreakdownLine]:
    """How `event.cost_usd` was computed from its price: the same arithmetic as
    `benchmarks.Price.cost()` (cached tokens at the cache-read price *instead of* the input
    price), line by line. Empty when the cost was not computed from a price."""
    price = event.price
    if price is None or event.cost_source != CostEvent.CostSource.COMPUTED:
        return []
    cached = min(event.cached_tokens, event.input_tokens)
    cache_read = price.cache_read_mtok if price.cache_read_mtok is not None else price.input_mtok
    lines = [
        ("Uncached input", event.input_tokens - cached, price.input_mtok),
        ("Cached input (cache read)", cached, cache_read),
        ("Output", event.output_tokens, price.output_mtok),
    ]
    return [BreakdownLine(label, tokens, mtok, tokens * mtok / MILLION) for label, tokens, mtok in lines]


@dataclass(frozen=True)
class BodyPart:
    """A request or response as the detail page shows it: JSON pretty-printed when it parses
    (a truncated body does not, and is shown as it was cut), anything else as sent."""

    name: str
    label: str
    text: str
    is_json: bool
    size_bytes: int

    @classmethod
    def of(cls, name: str, label: str, raw: str) -> BodyPart:
        try:
            text, is_json = json.dumps(json.loads(raw), indent=2, ensure_ascii=False), True
        except (ValueError, RecursionError):  # not JSON (or cut mid-way, or absurdly deep): verbatim
            text, is_json = raw, False
        return cls(name, label, text, is_json, len(raw.encode("utf-8")))


def kept_body(event: CostEvent, user: User) -> CostEventBody | None:
    """`event`'s bodies if they were stored and have not reached their retention date."""
    return CostEventBody.objects.visible_to(user).kept().filter(event=event).first()


def body_parts(body: CostEventBody) -> list[BodyPart]:
    return [BodyPart.of("request", "Request", body.request), BodyPart.of("response", "Response", body.response)]


def rollups_of(project: Project, user: User) -> QuerySet:
    return CostRollup.objects.visible_to(user).filter(project=project)


def unpriced_models(project: Project, user: User, *, now: datetime | None = None) -> list[dict]:
    """Models of `project` with events nobody could price in the last 30 days."""
    since = (now or timezone.now()) - UNPRICED_WINDOW
    return list(rollups_of(project, user).unpriced_models(since))


def token_names(project: Project, user: User) -> dict[str, str]:
    """prefix -> name for the project's tokens (events keep only the prefix)."""
    return dict(ApiToken.objects.visible_to(user).filter(project=project).values_list("prefix", "name"))


def usage_by_token(project: Project, user: User, *, now: datetime | None = None) -> dict[str, dict]:
    """prefix -> {cost_usd, requests, tokens, unpriced, last_day} over the last 30 days."""
    since = (now or timezone.now()) - USAGE_WINDOW
    return {row["token_prefix"]: row for row in rollups_of(project, user).usage_by_token(since)}
