"""Tenants' webhook URLs cannot reach the operator's own network in production: refused with a
field error when saved, and refused where each delivery's connection is opened (lib/egress.py),
so a name that rebinds to 127.0.0.1 after the save gets nothing either."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from alerts import notify
from alerts.models import Alert, Delivery, Webhook
from tests.conftest import client_as
from tests.local_server import INTERNAL_SECRET, PUBLIC_STAND_IN, InternalService, rebinding_dns

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_refused")]


@pytest.fixture
def internal():
    with InternalService() as service:
        yield service


def deliver(personas, url: str) -> Delivery:
    """Store a webhook at `url` as it was saved (no save-time check), and deliver one alert."""
    webhook = Webhook(organization=personas.org, name="Hook", url=url)
    webhook.rotate_secret()
    webhook.save()
    alert = Alert.objects.create(organization=personas.org, kind=Alert.Kind.TEST, title="t", message="m")
    delivery = Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook)
    notify.send_delivery(delivery.id)
    delivery.refresh_from_db()
    return delivery


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/", "http://127.0.0.1:8000/hook", "http://localhost/hook",
     "http://[::ffff:127.0.0.1]/hook", "http://[fd00::1]/", "http://0.0.0.0/", "http://10.0.0.1/"],
)
def test_saving_a_webhook_to_a_private_address_is_a_400_on_the_url(api_as, personas, url):
    response = api_as("owner").post(
        "/api/v1/webhooks", {"organization": str(personas.org.uuid), "name": "Inside", "url": url}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()) == ["url"]
    assert "Pulse does not send requests there" in response.json()["url"][0]
    assert not Webhook.objects.filter(name="Inside").exists()


def test_the_webhooks_page_shows_the_refusal_on_the_url_field(personas):
    url = reverse("webhook_create", args=[personas.org.uuid])

    response = client_as(personas.owner).post(url, {"name": "Inside", "new_url": "http://127.0.0.1/hook", "format": "json"})

    assert response.status_code == 400  # the form comes back with its errors
    assert "127.0.0.1 is a private, local or reserved address" in response.content.decode()
    assert not Webhook.objects.filter(name="Inside").exists()


def test_a_stored_webhook_pointing_inside_fails_for_good_and_sends_nothing(personas, internal):
    delivery = deliver(personas, internal.url("/hook"))

    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 1  # permanent: no retry
    assert delivery.last_error == "127.0.0.1 is a private, local or reserved address; Pulse does not send requests there."
    assert internal.hits == []


def test_a_webhook_name_that_rebinds_after_the_save_is_refused_at_connect_time(personas, internal, monkeypatch, api_as):
    with rebinding_dns(monkeypatch, "hooks.attacker.example", [PUBLIC_STAND_IN, "127.0.0.1"]) as lookups:
        url = internal.url("/hook", host="hooks.attacker.example")
        saved = api_as("owner").post(
            "/api/v1/webhooks", {"organization": str(personas.org.uuid), "name": "Rebinds", "url": url}, format="json"
        )
        assert saved.status_code == 201, saved.content  # the save-time lookup saw a public address

        webhook = Webhook.objects.get(name="Rebinds")
        alert = Alert.objects.create(organization=personas.org, kind=Alert.Kind.TEST, title="t", message="m")
        delivery = Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook)
        notify.send_delivery(delivery.id)

    delivery.refresh_from_db()
    assert lookups == [PUBLIC_STAND_IN, "127.0.0.1"]
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 1
    assert delivery.last_error.startswith("hooks.attacker.example resolves to a private, local or reserved address")
    assert "127.0.0.1" not in delivery.last_error
    assert internal.hits == []


def test_an_organization_allowed_in_the_admin_may_post_to_its_private_network(personas, internal, api_as):
    personas.org.allow_private_egress = True
    personas.org.save()

    saved = api_as("owner").post(
        "/api/v1/webhooks", {"organization": str(personas.org.uuid), "name": "Ours", "url": internal.url("/ok")},
        format="json",
    )
    delivery = deliver(personas, internal.url("/hook"))

    assert saved.status_code == 201, saved.content
    assert delivery.status == Delivery.Status.SENT and internal.hits == ["POST /hook"]


def test_metadata_addresses_stay_refused_for_an_allowed_organization(personas, api_as):
    personas.org.allow_private_egress = True
    personas.org.save()

    response = api_as("owner").post(
        "/api/v1/webhooks",
        {"organization": str(personas.org.uuid), "name": "Metadata", "url": "http://169.254.169.254/latest/"},
        format="json",
    )

    assert response.status_code == 400 and "cloud metadata address" in response.json()["url"][0]


def test_link_local_stays_refused_for_an_allowed_organization(personas, api_as):
    personas.org.allow_private_egress = True
    personas.org.save()

    response = api_as("owner").post(
        "/api/v1/webhooks",
        {"organization": str(personas.org.uuid), "name": "Time sync", "url": "http://169.254.169.123/hook"},
        format="json",
    )

    assert response.status_code == 400 and "a link-local address" in response.json()["url"][0]


def test_the_secret_of_an_internal_service_is_never_in_the_delivery_log(personas, internal):
    with override_settings(TENANT_EGRESS_ALLOW_PRIVATE=True):
        reached = deliver(personas, internal.url("/allowed"))
    refused = deliver(personas, internal.url("/refused"))

    assert internal.hits == ["POST /allowed"]
    assert reached.status == Delivery.Status.SENT  # so the service does answer; refused got nothing
    assert INTERNAL_SECRET not in refused.last_error
