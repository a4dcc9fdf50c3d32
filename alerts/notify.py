"""Raising an alert, and getting it to its recipients.

    alert = raise_alert(organization=…, kind=…, budget=…, period_start=…, threshold=…,
                        title=…, message=…, recipients=budget)     # None: already raised
    send_delivery(delivery_id)                                       # one attempt (the task)

`raise_alert` inserts the `Alert` (its unique constraints make it the claim) and one `Delivery`
per recipient in the caller's transaction; the deliveries are queued only once that commits.
Each delivery is attempted by `alerts.tasks.deliver`: claimed with `SELECT … FOR UPDATE SKIP
LOCKED` (two workers never send the same one at once), sent, and recorded. A failure is retried
with backoff (`RETRY_DELAYS`) up to `Delivery.MAX_ATTEMPTS`; the beat task
`alerts.retry-deliveries` re-queues any due delivery whose queued retry was lost. One channel
failing never holds up another: every recipient is its own delivery.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.emails import render_email
from accounts.models import Organization

from . import webhooks
from .models import Alert, Delivery, EmailOptOut, Recipients, Webhook

logger = logging.getLogger(__name__)

# After attempt n fails, the next one is RETRY_DELAYS[n-1] later (the last repeats).
RETRY_DELAYS = [timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=30),
                timedelta(hours=1), timedelta(hours=2), timedelta(hours=4)]
# A delivery claimed ("sending") longer than this was lost with its worker: due again.
STALE_SENDING = timedelta(minutes=10)
UNSUBSCRIBE_SALT = "alerts.unsubscribe"


def raise_alert(
    *, organization: Organization, kind: str, title: str, message: str, recipients: Recipients | None,
    link: str = "", data: dict | None = None, severity: str = "warning", **claim: object,
) -> Alert | None:
    """Insert the alert; None if an alert with the same claim (budget, period, threshold / rule,
    incident) exists, in which case nothing is sent. With `recipients`, also notify them."""
    try:
        with transaction.atomic():  # a savepoint: losing the claim must not abort the caller
            alert = Alert.objects.create(
                organization=organization, kind=kind, title=title[:300], message=message, link=link,
                data=data or {}, severity=severity, **claim,
            )
    except IntegrityError:
        return None
    if recipients is not None:
        notify(alert, recipients)
    return alert


def notify(alert: Alert, recipients: Recipients) -> list[Delivery]:
    """One delivery per email address and per enabled webhook; queued once committed. Addresses
    that opted out are recorded as skipped, so the log says why nobody was emailed."""
    addresses = recipients.email_addresses()
    opted_out = EmailOptOut.opted_out(addresses)
    deliveries = [
        Delivery(
            alert=alert, channel=Delivery.Channel.EMAIL, address=address,
            status=Delivery.Status.SKIPPED if address in opted_out else Delivery.Status.PENDING,
        )
        for address in addresses
    ]
    deliveries += [
        Delivery(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook)
        for webhook in recipients.enabled_webhooks()
    ]
    created = Delivery.objects.bulk_create(deliveries)
    queue_deliveries([d.id for d in created if d.status == Delivery.Status.PENDING])
    return created


def queue_deliveries(ids: list[int]) -> None:
    if not ids:
        return

    def send() -> None:
        from .tasks import deliver

        for delivery_id in ids:
            try:
                deliver.delay(delivery_id)
            except Exception:  # the broker is down: the retry beat task picks these up
                logger.exception("Could not queue alert delivery %s", delivery_id)

    transaction.on_commit(send)


def send_test_alert(organization: Organization, *, by_name: str, webhook: Webhook | None = None,
                    address: str | None = None) -> Alert:
    """A "send test alert" button: one alert of kind test, to one webhook or one address, sent
    through the same path as real ones (so the delivery log shows whether it arrived)."""
    with transaction.atomic():
        alert = Alert.objects.create(
            organization=organization, kind=Alert.Kind.TEST, severity="info",
            title=f"Test alert from Pulse for {organization.name}",
            message=f"{by_name} sent this test to check that alerts arrive. Nothing is wrong.",
            link=reverse("alert_history", args=[organization.uuid]), data={"test": True},
        )
        if webhook is not None:
            delivery = Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook)
        else:
            delivery = Delivery.objects.create(alert=alert, channel=Delivery.Channel.EMAIL, address=address.lower())
        queue_deliveries([delivery.id])
    return alert


# ----------------------------------------------------------------------------- sending


def unsubscribe_token(address: str) -> str:
    return signing.dumps(address.lower(), salt=UNSUBSCRIBE_SALT, compress=True)


def address_of_unsubscribe_token(token: str) -> str | None:
    try:
        return signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None


def unsubscribe_url(address: str) -> str:
    return f"{settings.SITE_URL}{reverse('alert_unsubscribe', args=[unsubscribe_token(address)])}"


def email_message(delivery: Delivery):
    alert = delivery.alert
    unsubscribe = unsubscribe_url(delivery.address)
    domain = urlsplit(settings.SITE_URL).hostname or "pulse.local"
    headers = {
        # RFC 8058 one-click unsubscribe: mail providers POST to the URL.
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        # Stable per delivery: if a crash makes us send it twice, mail clients show it once.
        "Message-ID": f"<{delivery.uuid}@{domain}>",
        "X-Pulse-Alert": str(alert.uuid),
    }
    context = {
        "alert": alert, "organization": alert.organization, "unsubscribe_url": unsubscribe,
        "alert_url": f"{settings.SITE_URL}{alert.link}" if alert.link else settings.SITE_URL,
        "settings_url": f"{settings.SITE_URL}{reverse('account_settings')}",
    }
    return render_email("alert", delivery.address, context, headers=headers)


def _claim(delivery_id: int, now: datetime) -> Delivery | None:
    """Take the delivery for one attempt, unless it is done, not yet due, or being sent."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("alert__organization", "webhook")
            .filter(id=delivery_id, next_attempt_at__lte=now)
            .filter(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING])
            .first()
        )
        if delivery is None:
            return None
        if delivery.status == Delivery.Status.SENDING and delivery.last_attempt_at and (
            now - delivery.last_attempt_at < STALE_SENDING
        ):
            return None  # another worker has it in hand right now
        delivery.status, delivery.attempts, delivery.last_attempt_at = Delivery.Status.SENDING, delivery.attempts + 1, now
        delivery.save(update_fields=["status", "attempts", "last_attempt_at"])
    return delivery


def send_delivery(delivery_id: int, now: datetime | None = None) -> Delivery | None:
    """One attempt at one delivery. Returns it (updated), or None if there was nothing to do.
    Failures are recorded and scheduled for retry, never raised."""
    now = now or timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return None
    status_code, error, permanent = None, "", False
    if delivery.channel == Delivery.Channel.EMAIL:
        if EmailOptOut.opted_out([delivery.address]):
            delivery.status, delivery.last_error = Delivery.Status.SKIPPED, "The address opted out of alert emails."
            delivery.save(update_fields=["status", "last_error"])
            return delivery
        try:
            email_message(delivery).send()
        except Exception as exc:  # SMTP errors, anymail's API errors: all worth a retry
            error = f"{type(exc).__name__}: {exc}"[:1000]
    elif delivery.webhook is None or not delivery.webhook.is_enabled:
        error, permanent = "The webhook was deleted or disabled.", True
    else:
        result = webhooks.post(delivery.webhook, delivery.alert, str(delivery.uuid))
        status_code, error, permanent = result.status_code, result.error, result.permanent
    delivery.last_status_code, delivery.last_error = status_code, error
    if not error:
        delivery.status, delivery.sent_at = Delivery.Status.SENT, timezone.now()
    elif permanent or delivery.attempts >= Delivery.MAX_ATTEMPTS:
        delivery.status = Delivery.Status.FAILED
    else:
        delivery.status = Delivery.Status.PENDING
        delivery.next_attempt_at = timezone.now() + RETRY_DELAYS[min(delivery.attempts, len(RETRY_DELAYS)) - 1]
    delivery.save(update_fields=["status", "sent_at", "last_status_code", "last_error", "next_attempt_at"])
    if delivery.status == Delivery.Status.FAILED:
        logger.warning("Alert delivery %s failed for good after %s attempts: %s", delivery.uuid, delivery.attempts, error)
    return delivery


def due_deliveries(now: datetime | None = None) -> list[int]:
    """Deliveries that should have been attempted by now: retries whose queued task was lost,
    and claims abandoned by a worker that died mid-send."""
    now = now or timezone.now()
    pending = Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now - timedelta(seconds=30))
    stale = Delivery.objects.filter(status=Delivery.Status.SENDING, last_attempt_at__lte=now - STALE_SENDING)
    return list(pending.values_list("id", flat=True)[:1000]) + list(stale.values_list("id", flat=True)[:1000])
