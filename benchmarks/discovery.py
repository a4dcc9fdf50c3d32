"""Model discovery: ask each active provider which models it serves, mark new and vanished ones.

One small listing function per wire format, each returning model names as the API expects them:

- OpenAI-compatible: `GET {base}/models` (base already ends in /v1) → `data[].id`, Bearer key;
- Anthropic: `GET {base}/v1/models` → `data[].id`, `x-api-key` + `anthropic-version` headers;
- Gemini: `GET {base}/v1beta/models` → `models[].name` without the "models/" prefix,
  `x-goog-api-key` header.

New models are created inactive (an operator decides what the public schedule benchmarks); models
a provider no longer lists are marked unavailable, never deleted (their results stay).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from django.db import transaction
from django.utils import timezone

from lib import egress

from .models import Model, Provider, ProviderKind

logger = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"
TIMEOUT_S = 30.0
MAX_PAGES = 50  # a provider that keeps saying "more" must not loop forever

Lister = Callable[[httpx.Client, str, str], list[str]]


def _get(client: httpx.Client, url: str, headers: dict[str, str], params: dict[str, str] | None = None) -> dict:
    response = client.get(url, headers=headers, params=params)
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"{url} returned {type(body).__name__}, expected a JSON object")
    return body


def list_openai_compatible(client: httpx.Client, base_url: str, api_key: str) -> list[str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = _get(client, f"{base_url.rstrip('/')}/models", headers)
    return [item["id"] for item in body["data"]]


def list_anthropic(client: httpx.Client, base_url: str, api_key: str) -> list[str]:
    headers = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
    names: list[str] = []
    params: dict[str, str] = {"limit": "1000"}
    for _ in range(MAX_PAGES):
        body = _get(client, f"{base_url.rstrip('/')}/v1/models", headers, params)
        names += [item["id"] for item in body["data"]]
        if not body.get("has_more") or not body.get("last_id"):
            break
        params = {"limit": "1000", "after_id": body["last_id"]}
    return names


def list_gemini(client: httpx.Client, base_url: str, api_key: str) -> list[str]:
    headers = {"x-goog-api-key": api_key}
    names: list[str] = []
    params: dict[str, str] = {"pageSize": "1000"}
    for _ in range(MAX_PAGES):
        body = _get(client, f"{base_url.rstrip('/')}/v1beta/models", headers, params)
        names += [item["name"].removeprefix("models/") for item in body.get("models", [])]
        if not body.get("nextPageToken"):
            break
        params = {"pageSize": "1000", "pageToken": body["nextPageToken"]}
    return names


LISTERS: dict[str, Lister] = {
    ProviderKind.OPENAI_COMPATIBLE: list_openai_compatible,
    ProviderKind.ANTHROPIC: list_anthropic,
    ProviderKind.GEMINI: list_gemini,
}


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
    try:
        lister = LISTERS[provider.kind]
    except KeyError:
        raise ValueError(f"unknown provider kind {provider.kind!r}") from None
    return lister(client, provider.base_url, provider.api_key_value())


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
