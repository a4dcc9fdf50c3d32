"""Webhooks against a real HTTP server on 127.0.0.1: the documented payload and signature, the
Slack format, retries on 5xx, 410 as permanent, and dead or slow endpoints never holding up the
email of the same alert."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.core import mail

from alerts import notify, webhooks
from alerts.budgets import evaluate_budget
from alerts.models import Delivery, Webhook

from .conftest import make_budget, spend

pytestmark = pytest.mark.django_db


class Receiver(ThreadingHTTPServer):
    """Records every request; answers with the queued status codes (then 200), after `delay`."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/pulse"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Receiver = self.server
        server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        time.sleep(server.delay)
        status = server.statuses.pop(0) if server.statuses else 200
        reply = b"gone" if status == 410 else (b"boom" if status >= 500 else b"ok")
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def make_webhook(personas, url: str, *, format: str = Webhook.Format.JSON, name: str = "Ops hook") -> tuple[Webhook, str]:
    webhook = Webhook(organization=personas.org, name=name, url=url, format=format)
    secret = webhook.rotate_secret()
    webhook.save()
    return webhook, secret


def alert_to(personas, *hooks: Webhook, members=None):
    budget = make_budget(personas, project=personas.project, members=members or [personas.owner])
    budget.webhooks.add(*hooks)
    spend(personas.project, "8.50")
    return evaluate_budget(budget)[-1]


def webhook_delivery(alert, webhook) -> Delivery:
    return alert.deliveries.get(channel=Delivery.Channel.WEBHOOK, webhook=webhook)


def test_the_json_payload_and_its_signature(personas, receiver, settings):
    settings.SITE_URL = "https://pulse.example.com"
    webhook, secret = make_webhook(personas, receiver.url)
    alert = alert_to(personas, webhook)
    delivery = webhook_delivery(alert, webhook)
    sent = notify.send_delivery(delivery.id)
    assert (sent.status, sent.last_status_code, sent.attempts, sent.last_error) == (Delivery.Status.SENT, 200, 1, "")

    (request,) = receiver.requests
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/hooks/pulse"
    assert headers["Content-Type"] == "application/json"
    assert headers["Pulse-Event"] == "budget.threshold"
    assert headers["Pulse-Delivery"] == str(delivery.uuid)
    assert headers["User-Agent"] == "Pulse-Webhooks/1"
    payload = json.loads(body)
    assert set(payload) == {"id", "type", "severity", "created_at", "organization", "title", "message", "url", "data"}
    assert payload["id"] == str(alert.uuid) and payload["type"] == "budget.threshold"
    assert payload["severity"] == "warning"
    assert payload["created_at"] == alert.created_at.isoformat()
    assert payload["organization"] == {"id": str(personas.org.uuid), "name": "Acme"}
    assert payload["title"] == "Project Production: 80 % of the $10 monthly budget used"
    assert payload["message"] == alert.message
    assert payload["url"] == f"https://pulse.example.com/orgs/{personas.org.uuid}/alerts/budgets/{alert.budget.uuid}/"
    data = payload["data"]
    assert (data["threshold"], data["amount"], data["spent"], data["currency"], data["percent"]) == (80, "10.00", "8.50", "USD", "85.0")
    assert data["budget"] == str(alert.budget.uuid) and data["scope"] == "project"

    signature = headers["Pulse-Signature"]
    timestamp = int(dict(part.split("=", 1) for part in signature.split(","))["t"])
    assert abs(timestamp - time.time()) < 10
    assert webhooks.verify_signature(secret, body, signature)
    assert not webhooks.verify_signature(secret, body.replace(b"8.50", b"0.50"), signature)
    assert not webhooks.verify_signature("whsec_other", body, signature)
    assert not webhooks.verify_signature(secret, body, signature, now=timestamp + 301)
    assert webhooks.verify_signature(secret, body, signature, now=timestamp + 299)
    assert not webhooks.verify_signature(secret, body, "garbage")
    assert not webhooks.verify_signature(secret, body, f"t={timestamp}")


def test_the_slack_format_posts_text(personas, receiver):
    webhook, secret = make_webhook(personas, receiver.url, format=Webhook.Format.SLACK)
    alert = alert_to(personas, webhook)
    assert notify.send_delivery(webhook_delivery(alert, webhook).id).status == Delivery.Status.SENT
    (request,) = receiver.requests
    payload = json.loads(request["body"])
    assert list(payload) == ["text"]
    assert payload["text"].startswith(":warning: *Project Production: 80 % of the $10 monthly budget used*\n")
    assert payload["text"].endswith(f"/alerts/budgets/{alert.budget.uuid}/|Open in Pulse>")
    assert webhooks.verify_signature(secret, request["body"], request["headers"]["Pulse-Signature"])


def test_a_server_error_is_retried_and_the_retry_is_the_same_event(personas, receiver):
    receiver.statuses = [500]
    webhook, _ = make_webhook(personas, receiver.url)
    delivery = webhook_delivery(alert_to(personas, webhook), webhook)
    first = notify.send_delivery(delivery.id)
    assert (first.status, first.last_status_code, first.attempts) == (Delivery.Status.PENDING, 500, 1)
    assert first.last_error == "HTTP 500: boom"
    assert notify.send_delivery(delivery.id) is None and len(receiver.requests) == 1  # not due yet
    second = notify.send_delivery(delivery.id, now=first.next_attempt_at + timedelta(seconds=1))
    assert (second.status, second.last_status_code, second.attempts, second.last_error) == (Delivery.Status.SENT, 200, 2, "")
    one, two = (json.loads(r["body"]) for r in receiver.requests)
    assert one == two  # the same alert id: receivers deduplicate on it
    assert receiver.requests[0]["headers"]["Pulse-Delivery"] == receiver.requests[1]["headers"]["Pulse-Delivery"]


def test_410_gone_fails_for_good(personas, receiver):
    receiver.statuses = [410]
    webhook, _ = make_webhook(personas, receiver.url)
    delivery = webhook_delivery(alert_to(personas, webhook), webhook)
    result = notify.send_delivery(delivery.id)
    assert (result.status, result.last_status_code, result.attempts) == (Delivery.Status.FAILED, 410, 1)
    assert notify.send_delivery(delivery.id, now=result.next_attempt_at + timedelta(days=1)) is None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dead_and_slow_webhooks_do_not_hold_up_the_email(personas, receiver, monkeypatch):
    monkeypatch.setattr(webhooks, "TIMEOUT", httpx.Timeout(0.5))
    receiver.delay = 2.0
    dead, _ = make_webhook(personas, f"http://127.0.0.1:{closed_port()}/hook", name="Dead")
    slow, _ = make_webhook(personas, receiver.url, name="Slow")
    alert = alert_to(personas, dead, slow)
    assert alert.deliveries.count() == 3
    started = time.monotonic()
    dead_result = notify.send_delivery(webhook_delivery(alert, dead).id)
    slow_result = notify.send_delivery(webhook_delivery(alert, slow).id)
    assert time.monotonic() - started < 5
    assert dead_result.status == Delivery.Status.PENDING and dead_result.last_error.startswith("ConnectError")
    assert (slow_result.status, slow_result.last_error) == (Delivery.Status.PENDING, "Timed out: ReadTimeout")
    email = alert.deliveries.get(channel=Delivery.Channel.EMAIL)
    assert notify.send_delivery(email.id).status == Delivery.Status.SENT
    assert [m.to for m in mail.outbox] == [["owner@a.example"]]


def test_webhooks_without_a_secret_disabled_or_of_another_organization(personas, receiver):
    no_secret = Webhook.objects.create(organization=personas.org, name="No secret", url=receiver.url)
    disabled, _ = make_webhook(personas, receiver.url, name="Disabled")
    disabled.is_enabled = False
    disabled.save()
    foreign = Webhook.objects.create(organization=personas.other_org, name="Foreign", url=receiver.url, secret="x")
    alert = alert_to(personas, no_secret, disabled, foreign)
    (delivery,) = alert.deliveries.filter(channel=Delivery.Channel.WEBHOOK)
    assert delivery.webhook == no_secret
    result = notify.send_delivery(delivery.id)
    assert result.status == Delivery.Status.FAILED and "no signing secret" in result.last_error
    assert receiver.requests == []


def test_a_webhook_disabled_after_the_alert_is_not_called(personas, receiver):
    webhook, _ = make_webhook(personas, receiver.url)
    delivery = webhook_delivery(alert_to(personas, webhook), webhook)
    Webhook.objects.filter(pk=webhook.pk).update(is_enabled=False)
    assert notify.send_delivery(delivery.id).status == Delivery.Status.FAILED
    assert receiver.requests == []
