"""Model discovery: ask each active provider which models it serves, mark new and vanished ones.

How to list one provider's models (URL, auth headers, paging, the names' shape) belongs to its
adapter (`ProviderAdapter.list_models`, benchmarks/providers/); this module only orchestrates.
New models are created inactive (an operator decides what the public schedule benchmarks); models
a provider no longer lists are marked unavailable, never deleted (their results stay).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from django.db import transaction
from django.utils import timezone

from lib import egress

from .models import Model, Provider
from .providers import adapter_for

logger = logging.getLogger(__name__)

TIMEOUT_S = 30.0


@dataclass
class ProviderSync:
    provider: str
    new: list[str] = field(default_factory=list)
    seen: int = 0
    vanished: list[str] = field(default_factory=list)
    error: str = ""

    def __str__(self) -> str:
        if self.error:
            return f"{self.provider}: skipped ({self.error})"
        return f"{self.provider}: {self.seen} listed, {len(self.new)} new, {len(self.vanished)} vanished"


@dataclass
class SyncReport:
    providers: list[ProviderSync] = field(default_factory=list)

    @property
    def new(self) -> int:
        return sum(len(p.new) for p in self.providers)

    @property
    def vanished(self) -> int:
        return sum(len(p.vanished) for p in self.providers)

    @property
    def errors(self) -> int:
        return sum(1 for p in self.providers if p.error)

    def __str__(self) -> str:
        return (f"{len(self.providers)} providers: {self.new} new models, {self.vanished} vanished, "
                f"{self.errors} failed")


def list_models(provider: Provider, client: httpx.Client) -> list[str]:
    """Raises ValueError for a kind no adapter is registered for."""
    return adapter_for(provider.kind).list_models(client, provider.base_url, provider.api_key_value())


def apply_listing(provider: Provider, names: list[str], now: datetime) -> ProviderSync:
    """Create the new models (inactive), refresh the listed ones, mark the missing ones."""
    outcome = ProviderSync(provider=provider.name, seen=len(set(names)))
    listed = set(names)
    with transaction.atomic():
        known = set(provider.models.values_list("name", flat=True))
        outcome.new = sorted(listed - known)
        Model.objects.bulk_create(
            [Model(provider=provider, name=name, is_active=False, is_available=True,
                   first_seen_at=now, last_seen_at=now) for name in outcome.new]
        )
        provider.models.filter(name__in=listed).update(last_seen_at=now, is_available=True)
        vanished = provider.models.exclude(name__in=listed).filter(is_available=True)
        outcome.vanished = sorted(vanished.values_list("name", flat=True))
        vanished.update(is_available=False)
    return outcome


def sync_models(client: httpx.Client | None = None) -> SyncReport:
    """List every active provider's models; a provider that fails is reported and skipped."""
    report = SyncReport()
    now = timezone.now()
    own_client = client is None
    # Through the one guarded way out (lib/egress.py). Public providers are operators' own
    # configuration, not tenant input, so private addresses are allowed (metadata never is).
    client = client or egress.guarded_client(allow_private=True, timeout=TIMEOUT_S)
    try:
        for provider in Provider.objects.filter(is_active=True).order_by("name"):
            try:
                names = list_models(provider, client)
                if not names:
                    # An empty answer is far likelier a broken endpoint than a provider that
                    # dropped every model: do not mark them all vanished on its word.
                    raise ValueError("the provider listed no models")
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as error:
                logger.warning("Model discovery failed for %s: %s", provider.name, error)
                report.providers.append(ProviderSync(provider=provider.name, error=_describe(error)))
                continue
            report.providers.append(apply_listing(provider, names, now))
    finally:
        if own_client:
            client.close()
    return report


def _describe(error: Exception) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code} from {error.request.url}"
    if isinstance(error, KeyError | TypeError | AttributeError):
        return f"unexpected response shape ({type(error).__name__}: {error})"
    return f"{type(error).__name__}: {error}" if isinstance(error, httpx.HTTPError) else str(error)
