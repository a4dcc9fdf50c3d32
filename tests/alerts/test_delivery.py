"""Alert emails: their subject, parts and headers, who gets them (opt-outs, people who left), and
what happens when the mail provider is down (retries with backoff, then failed for good)."""

from __future__ import annotations

import smtplib
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from accounts.models import Membership
from alerts import notify, tasks
from alerts.budgets import evaluate_budget
from alerts.models import Alert, Delivery, EmailOptOut

from .conftest import make_budget, spend

pytestmark = pytest.mark.django_db

FAILING = "tests.alerts.test_delivery.FailingBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


class FailingBackend(BaseEmailBackend):
    """A mail provider that is down."""

    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


def budget_alert(personas, *, members=None, extra_emails=(), amount="8.50") -> Alert:
    budget = make_budget(personas, project=personas.project, members=members if members is not None else [personas.owner],
                         extra_emails=list(extra_emails))
    spend(personas.project, amount)
    return evaluate_budget(budget)[-1]


def email_deliveries(alert) -> list[Delivery]:
    return list(alert.deliveries.filter(channel=Delivery.Channel.EMAIL).order_by("address"))


def test_the_alert_email(personas, settings):
    settings.SITE_URL = "https://pulse.example.com"
    alert = budget_alert(personas)
    (delivery,) = email_deliveries(alert)
    assert notify.send_delivery(delivery.id).status == Delivery.Status.SENT
    (email,) = mail.outbox
    assert email.subject == "Project Production: 80 % of the $10 monthly budget used"
    assert email.to == ["owner@a.example"]
    assert "Budget “Prod” has used 85.0 %: $8.50 of $10" in email.body
    assert "It passed 50 % in the same step." in email.body
    html, mimetype = email.alternatives[0]
    assert mimetype == "text/html" and "80 % of the $10 monthly budget used" in html
    assert f"https://pulse.example.com/orgs/{personas.org.uuid}/alerts/budgets/" in email.body

    unsubscribe = email.extra_headers["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://pulse.example.com/alerts/unsubscribe/") and unsubscribe.endswith("/>")
    token = unsubscribe.rstrip("/>").rsplit("/", 1)[1]
    assert notify.address_of_unsubscribe_token(token) == "owner@a.example"
    assert notify.address_of_unsubscribe_token(token[:-2] + "xx") is None
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe.strip("<>") in email.body and unsubscribe.strip("<>") in html

    # Message-ID: the delivery's, in the sent message and in any re-rendering of it.
    message_id = f"<{delivery.uuid}@pulse.example.com>"
    assert email.message()["Message-ID"] == message_id
    assert notify.email_message(Delivery.objects.get(pk=delivery.pk)).message()["Message-ID"] == message_id
    assert notify.send_delivery(delivery.id) is None  # sent: never again
    assert len(mail.outbox) == 1


def test_each_recipient_is_emailed_once(personas):
    alert = budget_alert(personas, members=[personas.owner, personas.member],
                         extra_emails=["OWNER@a.example", "finance@a.example"])
    deliveries = email_deliveries(alert)
    assert [d.address for d in deliveries] == ["finance@a.example", "member@a.example", "owner@a.example"]
    for delivery in deliveries:
        notify.send_delivery(delivery.id)
    assert sorted(m.to[0] for m in mail.outbox) == ["finance@a.example", "member@a.example", "owner@a.example"]


def test_an_opted_out_address_is_skipped_and_the_others_still_sent(personas):
    EmailOptOut.set("Member@A.example", opted_out=True)
    alert = budget_alert(personas, members=[personas.owner, personas.member], extra_emails=["finance@a.example"])
    statuses = {d.address: d.status for d in email_deliveries(alert)}
    assert statuses == {"finance@a.example": "pending", "member@a.example": "skipped", "owner@a.example": "pending"}
    EmailOptOut.set("finance@a.example", opted_out=True)  # after the alert, before the send
    for delivery in email_deliveries(alert):
        notify.send_delivery(delivery.id)
    assert [m.to for m in mail.outbox] == [["owner@a.example"]]
    finance = alert.deliveries.get(address="finance@a.example")
    assert finance.status == Delivery.Status.SKIPPED and "opted out" in finance.last_error


def test_people_who_left_the_organization_or_never_joined_get_nothing(personas):
    Membership.objects.get(organization=personas.org, user=personas.member).delete()
    alert = budget_alert(personas, members=[personas.owner, personas.member, personas.outsider])
    assert [d.address for d in email_deliveries(alert)] == ["owner@a.example"]


def test_deliveries_are_queued_once_the_alert_commits(personas, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        alert = budget_alert(personas, members=[personas.owner, personas.member])
    assert sorted(queued.of("deliver")) == sorted((d.id,) for d in email_deliveries(alert))


# ----------------------------------------------------------------------------- provider down


def test_a_provider_outage_is_retried_with_backoff_and_then_sent(personas, settings):
    settings.EMAIL_BACKEND = FAILING
    alert = budget_alert(personas)
    (delivery,) = email_deliveries(alert)
    before = timezone.now()
    failed = notify.send_delivery(delivery.id)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.PENDING, 1)
    assert delivery.last_error == "SMTPServerDisconnected: Connection unexpectedly closed"
    assert timedelta(seconds=30) <= delivery.next_attempt_at - before <= timedelta(seconds=35)
    assert failed.sent_at is None and mail.outbox == []

    assert notify.send_delivery(delivery.id) is None  # not due yet: nothing happens
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert delivery.id not in notify.due_deliveries()
    assert delivery.id in notify.due_deliveries(now=delivery.next_attempt_at + timedelta(seconds=31))

    settings.EMAIL_BACKEND = LOCMEM
    sent = notify.send_delivery(delivery.id, now=delivery.next_attempt_at + timedelta(seconds=1))
    assert (sent.status, sent.attempts, sent.last_error) == (Delivery.Status.SENT, 2, "")
    assert len(mail.outbox) == 1
    assert delivery.id not in notify.due_deliveries(now=timezone.now() + timedelta(days=1))


def test_after_max_attempts_a_delivery_fails_for_good(personas, settings):
    settings.EMAIL_BACKEND = FAILING
    (delivery,) = email_deliveries(budget_alert(personas))
    delays = []
    for attempt in range(1, Delivery.MAX_ATTEMPTS + 1):
        delivery.refresh_from_db()
        before = timezone.now()
        result = notify.send_delivery(delivery.id, now=delivery.next_attempt_at + timedelta(seconds=1))
        assert result.attempts == attempt
        if result.status == Delivery.Status.PENDING:
            delays.append(round((result.next_attempt_at - before).total_seconds() / 60, 1))
    assert delays == [0.5, 2.0, 10.0, 30.0, 60.0, 120.0, 240.0]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.FAILED, Delivery.MAX_ATTEMPTS)
    assert notify.send_delivery(delivery.id, now=timezone.now() + timedelta(days=1)) is None
    assert delivery.id not in notify.due_deliveries(now=timezone.now() + timedelta(days=1))


def test_due_deliveries_finds_lost_retries_and_abandoned_claims(personas):
    alert = budget_alert(personas, members=[personas.owner, personas.member, personas.admin])
    due, abandoned, in_hand = email_deliveries(alert)
    now = timezone.now()
    Delivery.objects.filter(pk=due.pk).update(next_attempt_at=now - timedelta(minutes=1))
    Delivery.objects.filter(pk=abandoned.pk).update(status=Delivery.Status.SENDING, attempts=1,
                                                    last_attempt_at=now - timedelta(minutes=11))
    Delivery.objects.filter(pk=in_hand.pk).update(status=Delivery.Status.SENDING, attempts=1,
                                                  last_attempt_at=now - timedelta(minutes=2))
    assert sorted(notify.due_deliveries(now=now)) == sorted([due.id, abandoned.id])

    assert notify.send_delivery(in_hand.id) is None  # another worker has it right now
    retaken = notify.send_delivery(abandoned.id)
    assert (retaken.status, retaken.attempts) == (Delivery.Status.SENT, 2)
    assert mail.outbox[-1].to == [abandoned.address]


def test_the_deliver_task_schedules_its_own_retry(personas, settings, monkeypatch):
    settings.EMAIL_BACKEND = FAILING
    (delivery,) = email_deliveries(budget_alert(personas))
    retries = []
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda args, countdown: retries.append((args, countdown)))
    assert tasks.deliver(delivery.id) == Delivery.Status.PENDING
    ((args, countdown),) = retries
    assert args == (delivery.id,) and 29 <= countdown <= 30
    assert tasks.deliver(delivery.id) is None and len(retries) == 1  # not due: no second retry queued


def test_the_retry_beat_task_requeues_what_is_due(personas, queued):
    (delivery,) = email_deliveries(budget_alert(personas, amount="9"))
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    assert tasks.retry_deliveries() == 1
    assert queued.of("deliver") == [(delivery.id,)]


def test_a_test_alert_goes_through_the_same_path(personas):
    alert = notify.send_test_alert(personas.org, by_name="Olive", address="Ops@A.example")
    (delivery,) = alert.deliveries.all()
    assert delivery.address == "ops@a.example"
    assert notify.send_delivery(delivery.id).status == Delivery.Status.SENT
    assert mail.outbox[0].subject == "Test alert from Pulse for Acme"
