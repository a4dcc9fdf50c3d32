"""Tenants' webhook URLs cannot reach the operator's own network in production."""

from __future__ import annotations

import pytest

from alerts import notify
from alerts.models import Alert, Delivery, Webhook
from config import egress


@pytest.fixture
def private_refused(settings):
    settings.TENANT_EGRESS_ALLOW_PRIVATE = False


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3/hook", "http://192.168.0.10/", "http://[::1]/hook", "http://100.64.0.1/", "http://0.0.0.0/",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(private_refused, url):
    assert "Pulse does not send requests there" in egress.refusal(url)


def test_public_addresses_and_unresolvable_hosts_pass(private_refused):
    assert egress.refusal("https://93.184.216.34/hook") is None
    assert egress.refusal("https://no-such-host.invalid/hook") is None  # fails later, like any dead host


def test_the_check_is_off_outside_production_by_default(settings):
    assert settings.TENANT_EGRESS_ALLOW_PRIVATE is True
    assert egress.refusal("http://127.0.0.1/hook") is None


def test_saving_a_webhook_to_a_private_address_is_a_400_on_the_url(private_refused, api_as, personas):
    response = api_as("owner").post(
        "/api/v1/webhooks",
        {"organization": str(personas.org.uuid), "name": "Metadata", "url": "http://169.254.169.254/latest/"},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()) == ["url"]
    assert not Webhook.objects.filter(name="Metadata").exists()


def test_a_stored_webhook_now_pointing_inside_fails_for_good_without_a_request(private_refused, personas):
    webhook = Webhook(organization=personas.org, name="Old", url="http://127.0.0.1:9/hook")
    webhook.rotate_secret()
    webhook.save()
    alert = Alert.objects.create(organization=personas.org, kind=Alert.Kind.TEST, title="t", message="m")
    delivery = Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook)

    notify.send_delivery(delivery.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == 1
    assert "private, local or reserved" in delivery.last_error
