"""Webhook payloads, their signature, and posting them.

Payload (format "json"), `Content-Type: application/json`:

    {
      "id": "<alert uuid>",                 # the same on every retry: deduplicate on it
      "type": "budget.threshold" | "budget.forecast" | "rule.firing" | "rule.resolved" | "test",
      "severity": "info" | "warning" | "critical",
      "created_at": "2026-11-23T10:15:00+00:00",
      "organization": {"id": "<uuid>", "name": "Acme"},
      "title": "Project Acme: 80 % of the $500 monthly budget used",
      "message": "…",
      "url": "https://pulse.example.com/orgs/…/alerts/budgets/…/",
      "data": {…}                           # the numbers: budget, threshold, spent, amount, currency…
    }

Headers: `Pulse-Event` (the type), `Pulse-Delivery` (this delivery's uuid) and
`Pulse-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
HMAC-SHA256(key = the webhook's secret, message = "<t>.<raw body>"). A receiver recomputes it
over the raw body, compares in constant time (`verify_signature`) and rejects old timestamps
(replays). Format "slack" posts `{"text": …}` (Slack incoming webhooks, Mattermost, Discord's
/slack endpoint, Teams workflows), signed the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, replace

import httpx
from django.conf import settings

from lib import egress

from .models import Alert, Webhook, redact_url

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
SIGNATURE_HEADER = "Pulse-Signature"
TOLERANCE_SECONDS = 300
USER_AGENT = "Pulse-Webhooks/1"


def payload_of(alert: Alert) -> dict:
    return {
        "id": str(alert.uuid),
        "type": alert.kind,
        "severity": alert.severity,
        "created_at": alert.created_at.isoformat(),
        "organization": {"id": str(alert.organization.uuid), "name": alert.organization.name},
        "title": alert.title,
        "message": alert.message,
        "url": f"{settings.SITE_URL}{alert.link}" if alert.link else settings.SITE_URL,
        "data": alert.data,
    }


def slack_payload_of(alert: Alert) -> dict:
    icon = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}[alert.severity]
    if alert.kind == Alert.Kind.RULE_RESOLVED:
        icon = ":white_check_mark:"
    url = f"{settings.SITE_URL}{alert.link}" if alert.link else settings.SITE_URL
    return {"text": f"{icon} *{alert.title}*\n{alert.message}\n<{url}|Open in Pulse>"}


def body_of(webhook: Webhook, alert: Alert) -> bytes:
    payload = slack_payload_of(alert) if webhook.format == Webhook.Format.SLACK else payload_of(alert)
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    """What a receiver does (Python): True if `header` signs `body` with `secret`, recently."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True)
class PostResult:
    ok: bool
    status_code: int | None
    error: str
    permanent: bool = False  # retrying cannot help (410 Gone, a webhook without a secret)


def post(webhook: Webhook, alert: Alert, delivery_uuid: str) -> PostResult:
    """POST the alert once. 2xx is success; 410 Gone is permanent; anything else is retried.
    The error is stored and shown in the delivery log, so the URL (a credential) is masked in it."""
    try:
        url, secret = webhook.url.reveal(), webhook.secret.reveal()
    except ValueError as error:  # encrypted with a key since rotated away: retrying cannot help
        return PostResult(False, None, str(error), permanent=True)
    result = _post(webhook, alert, delivery_uuid, url, secret)
    return replace(result, error=redact_url(result.error, url))


def _post(webhook: Webhook, alert: Alert, delivery_uuid: str, url: str, secret: str) -> PostResult:
    """`post()` with the URL and secret decrypted."""
    if not secret:
        return PostResult(False, None, "The webhook has no signing secret; rotate it to get one.", permanent=True)
    body = body_of(webhook, alert)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Pulse-Event": alert.kind,
        "Pulse-Delivery": delivery_uuid,
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
    }
    try:
        # Checked where the connection is opened, not before: a name that resolves to a public
        # address for a check and to 127.0.0.1 a moment later (DNS rebinding) is still refused.
        with egress.guarded_client(
            allow_private=webhook.allows_private_egress, timeout=TIMEOUT, follow_redirects=False
        ) as client:
            response = client.post(url, content=body, headers=headers)
    except egress.EgressRefused as error:
        return PostResult(False, None, str(error), permanent=True)  # retrying cannot help
    except httpx.InvalidURL as error:  # stored without the save-time checks (a shell, an import)
        return PostResult(False, None, f"InvalidURL: {error}", permanent=True)
    except httpx.TimeoutException as error:
        return PostResult(False, None, f"Timed out: {type(error).__name__}")
    except httpx.HTTPError as error:
        return PostResult(False, None, f"{type(error).__name__}: {error}"[:500])
    if 200 <= response.status_code < 300:
        return PostResult(True, response.status_code, "")
    snippet = response.text[:200].strip()
    return PostResult(
        False, response.status_code, f"HTTP {response.status_code}" + (f": {snippet}" if snippet else ""),
        permanent=response.status_code == 410,
    )
