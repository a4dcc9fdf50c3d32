"""A webhook URL is a credential (whoever holds a Slack incoming-webhook URL can post to the
channel), so it is stored like one, with the one secret field: the column holds Fernet ciphertext
whichever way the URL arrives (ORM, API, page, admin), the plaintext is read only to send and to
check it, and every page, response and delivery error shows it masked."""

from __future__ import annotations

import importlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django.urls import reverse

from alerts import notify
from alerts.models import Alert, Delivery, Webhook, mask_url, redact_url
from lib.encrypted import decrypt, encrypt, is_fernet_token
from tests.conftest import client_as, make_user

pytestmark = pytest.mark.django_db

SLACK = "https://hooks.slack.com/services/T0AT/B0REST/SeCrEtPaThAtRest42"
SLACK_PATH = "/services/T0AT/B0REST/SeCrEtPaThAtRest42"
MASKED = "https://hooks.slack.com/…st42"
OTHER = "https://hooks.example.com/pulse/AnOtHeRsEcReT-9f3e"
MIGRATION = importlib.import_module("alerts.migrations.0003_encrypt_webhook_urls")


def column(pk: int, name: str = "url") -> str:
    """The column as PostgreSQL holds it, bypassing the field."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {name} FROM alerts_webhook WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def write_raw(pk: int, value: str) -> None:
    """What the old URLField left behind: the URL in clear."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE alerts_webhook SET url = %s WHERE id = %s", [value, pk])


def assert_stored_encrypted(pk: int, url: str) -> None:
    raw = column(pk)
    assert is_fernet_token(raw) and url not in raw and url.rsplit("/", 1)[-1] not in raw
    assert decrypt(raw) == url


def make_webhook(personas, url: str = SLACK, name: str = "Ops Slack") -> Webhook:
    webhook = Webhook(organization=personas.org, name=name, url=url, format=Webhook.Format.SLACK)
    webhook.rotate_secret()
    webhook.save()
    return webhook


@pytest.fixture
def operator():
    return make_user("ops@pulse.example", is_staff=True, is_superuser=True)


# ---------------------------------------------------------------------------------------------
# At rest: ciphertext, whichever way the URL is written
# ---------------------------------------------------------------------------------------------
def test_the_orm_stores_only_ciphertext_however_the_url_is_written(personas):
    created = Webhook.objects.create(organization=personas.org, name="create", url=SLACK)
    assert_stored_encrypted(created.pk, SLACK)
    assert created.url.reveal() == SLACK and Webhook.objects.get(pk=created.pk).url.reveal() == SLACK

    created.url = OTHER  # encrypted as it is assigned: the instance never holds it in clear
    assert OTHER not in created.url
    created.save()
    assert_stored_encrypted(created.pk, OTHER)

    Webhook.objects.filter(pk=created.pk).update(url=SLACK)
    assert_stored_encrypted(created.pk, SLACK)
    bulk = Webhook.objects.bulk_create([Webhook(organization=personas.org, name="bulk", url=OTHER)])
    assert_stored_encrypted(bulk[0].pk, OTHER)


def test_the_api_stores_only_ciphertext_and_answers_with_the_masked_url(personas, api_as):
    client = api_as("member")
    created = client.post("/api/v1/webhooks", {"organization": str(personas.org.uuid), "name": "API",
                                               "url": SLACK, "format": "slack"}, format="json")
    assert created.status_code == 201, created.content
    webhook = Webhook.objects.get(uuid=created.json()["uuid"])
    assert_stored_encrypted(webhook.pk, SLACK)
    assert created.json()["url_masked"] == MASKED

    changed = client.patch(f"/api/v1/webhooks/{webhook.uuid}", {"url": OTHER}, format="json")
    assert changed.status_code == 200, changed.content
    assert_stored_encrypted(webhook.pk, OTHER)
    ciphertext = column(webhook.pk)
    for response in (created, changed, client.get(f"/api/v1/webhooks/{webhook.uuid}"), client.get("/api/v1/webhooks")):
        body = response.content.decode()
        assert SLACK not in body and OTHER not in body and "SeCrEt" not in body and ciphertext not in body


def test_the_pages_store_only_ciphertext_and_never_show_it(personas):
    client = client_as(personas.member)
    created = client.post(reverse("webhook_create", args=[personas.org.uuid]),
                          {"name": "Page", "new_url": SLACK, "format": "slack", "is_enabled": "on"})
    assert created.status_code == 200
    webhook = Webhook.objects.get(name="Page")
    assert_stored_encrypted(webhook.pk, SLACK)

    edit = reverse("webhook_edit", args=[personas.org.uuid, webhook.uuid])
    assert client.post(edit, {"name": "Page", "new_url": OTHER, "format": "json"}).status_code == 302
    assert_stored_encrypted(webhook.pk, OTHER)
    ciphertext = column(webhook.pk)
    for html in (client.get(edit).content.decode(),
                 client.get(reverse("alert_channels", args=[personas.org.uuid])).content.decode()):
        assert OTHER not in html and "AnOtHeRsEcReT" not in html and ciphertext not in html
        assert mask_url(OTHER) in html


# ---------------------------------------------------------------------------------------------
# The admin: write-only like the pages, never the URL nor its ciphertext
# ---------------------------------------------------------------------------------------------
def test_the_admin_shows_neither_the_url_nor_its_ciphertext(client, operator, personas):
    webhook = make_webhook(personas)
    alert = Alert.objects.create(organization=personas.org, kind=Alert.Kind.TEST, title="t", message="m")
    Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook,
                            status=Delivery.Status.FAILED, last_error=f"ConnectError: could not reach {SLACK}")
    client.force_login(operator)

    pages = [client.get(reverse("admin:alerts_webhook_changelist")),
             client.get(reverse("admin:alerts_webhook_change", args=[webhook.pk])),
             client.get(reverse("admin:alerts_alert_change", args=[alert.pk]))]

    ciphertext = column(webhook.pk)
    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200
        assert SLACK not in html and "SeCrEtPaTh" not in html and ciphertext not in html
        assert webhook.secret.reveal() not in html and column(webhook.pk, "secret") not in html
        assert MASKED in html
    assert f"ConnectError: could not reach {MASKED}" in pages[2].content.decode()


def test_the_admin_keeps_replaces_and_checks_the_url(client, operator, personas):
    webhook = make_webhook(personas)
    ciphertext = column(webhook.pk)
    change = reverse("admin:alerts_webhook_change", args=[webhook.pk])
    form = {"organization": personas.org.pk, "name": "Renamed", "format": "slack", "is_enabled": "on"}
    client.force_login(operator)

    assert client.post(change, {**form, "new_url": ""}).status_code == 302
    assert column(webhook.pk) == ciphertext  # kept as it was, not encrypted again
    webhook.refresh_from_db()
    assert webhook.name == "Renamed" and webhook.url.reveal() == SLACK

    with override_settings(TENANT_EGRESS_ALLOW_PRIVATE=False):
        refused = client.post(change, {**form, "new_url": "http://127.0.0.1:9/x"})
    assert refused.status_code == 200 and "Pulse does not send requests there" in refused.content.decode()
    assert "new_url" in refused.context["adminform"].form.errors and column(webhook.pk) == ciphertext
    ftp = client.post(change, {**form, "new_url": "ftp://files.example/hook"})
    assert ftp.status_code == 200 and "new_url" in ftp.context["adminform"].form.errors
    assert "ftp://files.example/hook" not in ftp.content.decode()  # nor a typed one, on an error

    assert client.post(change, {**form, "new_url": OTHER}).status_code == 302
    assert_stored_encrypted(webhook.pk, OTHER)

    add = reverse("admin:alerts_webhook_add")
    missing = client.post(add, {**form, "name": "No URL", "new_url": ""})
    assert missing.status_code == 200 and "new_url" in missing.context["adminform"].form.errors
    assert client.post(add, {**form, "name": "Added", "new_url": SLACK}).status_code == 302
    assert_stored_encrypted(Webhook.objects.get(name="Added").pk, SLACK)


# ---------------------------------------------------------------------------------------------
# Checks run on the plaintext (field validators would see ciphertext)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["ftp://files.example/hook", "not a url", "javascript:alert(1)",
                                 "https://hooks.example/" + "x" * 480, "http://[::1"])
def test_clean_refuses_a_bad_url_on_the_url_field(personas, url):
    webhook = Webhook(organization=personas.org, name="Bad", url=url)
    with pytest.raises(ValidationError) as raised:
        webhook.full_clean()
    assert list(raised.value.message_dict) == ["url"]


def test_clean_accepts_a_good_url_and_refuses_a_private_one(personas):
    Webhook(organization=personas.org, name="Good", url="https://hooks.example/" + "x" * 478).full_clean()  # 500
    with override_settings(TENANT_EGRESS_ALLOW_PRIVATE=False), pytest.raises(ValidationError) as raised:
        Webhook(organization=personas.org, name="Inside", url="http://169.254.169.254/latest/").full_clean()
    assert "Pulse does not send requests there" in raised.value.message_dict["url"][0]
    with pytest.raises(ValidationError) as blank:
        Webhook(organization=personas.org, name="None").full_clean()
    assert list(blank.value.message_dict) == ["url"]


# ---------------------------------------------------------------------------------------------
# Sending: the plaintext reaches the receiver; what it says back is stored masked
# ---------------------------------------------------------------------------------------------
class QuotingReceiver(ThreadingHTTPServer):
    """Answers 404 quoting the URL and the path it was called at, as many servers do."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), QuotingHandler)
        self.paths: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class QuotingHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.paths.append(self.path)
        reply = f"No hook at {self.server.url(self.path)} (path {self.path})".encode()
        self.send_response(404)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def quoting_receiver():
    server = QuotingReceiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def deliver_test_alert(webhook: Webhook) -> Delivery:
    alert = Alert.objects.create(organization=webhook.organization, kind=Alert.Kind.TEST, title="t", message="m")
    delivery = Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook)
    notify.send_delivery(delivery.id)
    delivery.refresh_from_db()
    return delivery


def test_a_reply_quoting_the_url_is_stored_and_shown_masked(personas, quoting_receiver, api_as):
    url = quoting_receiver.url(SLACK_PATH)
    webhook = make_webhook(personas, url)

    delivery = deliver_test_alert(webhook)

    assert quoting_receiver.paths == [SLACK_PATH]  # the decrypted URL was called
    assert delivery.status == Delivery.Status.PENDING and delivery.last_status_code == 404
    assert url not in delivery.last_error and SLACK_PATH not in delivery.last_error  # not even in the table
    assert delivery.last_error == f"HTTP 404: No hook at {mask_url(url)} (path /…st42)"
    log = api_as("owner").get(f"/api/v1/webhooks/{webhook.uuid}/deliveries").content.decode()
    page = client_as(personas.owner).get(reverse("alert_channels", args=[personas.org.uuid])).content.decode()
    for shown in (log, page):
        assert "SeCrEtPaTh" not in shown and mask_url(url) in shown


def test_an_error_stored_before_urls_were_redacted_is_still_shown_masked(personas, api_as):
    webhook = make_webhook(personas)
    alert = Alert.objects.create(organization=personas.org, kind=Alert.Kind.TEST, title="t", message="m")
    Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook,
                            status=Delivery.Status.FAILED, last_error=f"ConnectError: {SLACK} / POST {SLACK_PATH}")
    org = personas.org
    client, api = client_as(personas.owner), api_as("owner")

    shown = [client.get(reverse("alert_channels", args=[org.uuid])), client.get(reverse("alert_detail", args=[org.uuid, alert.uuid])),
             api.get(f"/api/v1/webhooks/{webhook.uuid}/deliveries"), api.get(f"/api/v1/alerts/{alert.uuid}"),
             api.get("/api/v1/alerts")]

    for response in shown:
        body = response.content.decode()
        assert response.status_code == 200 and "SeCrEtPaTh" not in body
        assert f"ConnectError: {MASKED} / POST /…st42" in body


def test_a_url_encrypted_with_a_key_rotated_away(personas, settings, api_as):
    webhook = make_webhook(personas)
    settings.CREDENTIALS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    webhook = Webhook.objects.get(pk=webhook.pk)
    assert webhook.masked_url == Webhook.UNDECRYPTABLE
    page = client_as(personas.owner).get(reverse("alert_channels", args=[personas.org.uuid]))
    listed = api_as("owner").get("/api/v1/webhooks")
    assert page.status_code == listed.status_code == 200
    assert listed.json()["results"][0]["url_masked"] == Webhook.UNDECRYPTABLE
    with pytest.raises(ValidationError) as raised:
        webhook.full_clean()
    assert "cannot be decrypted" in raised.value.message_dict["url"][0]

    delivery = deliver_test_alert(webhook)
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 1  # retrying cannot help
    assert "cannot be decrypted" in delivery.last_error


# ---------------------------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "shown"), [
    (SLACK, MASKED),
    ("https://hooks.example", "https://hooks.example"),  # a bare host is no secret
    ("https://hooks.example/", "https://hooks.example/"),
    ("https://hooks.example/?token=abcdefgh", "https://hooks.example/…efgh"),
    ("https://bot:pa55word@hooks.example", "https://hooks.example/…mple"),
    ("https://bot:pa55word@hooks.example/h", "https://hooks.example/…le/h"),
    ("http://[fd00::1]:8080/in/secret", "http://[fd00::1]:8080/…cret"),
    ("http://[::1", "…[::1"),
])
def test_what_is_shown_of_a_url(url, shown):
    assert mask_url(url) == shown
    assert "pa55word" not in mask_url(url)


def test_redacting_masks_the_url_and_its_path_alone():
    text = f"Error at {SLACK}; Cannot POST {SLACK_PATH}"
    assert redact_url(text, SLACK) == f"Error at {MASKED}; Cannot POST /…st42"
    assert redact_url("", SLACK) == "" and redact_url("plain", "") == "plain"
    assert redact_url("https://hooks.example is down", "https://hooks.example") == "https://hooks.example is down"


# ---------------------------------------------------------------------------------------------
# The migration
# ---------------------------------------------------------------------------------------------
def test_the_data_migration_encrypts_urls_in_clear_masks_them_in_errors_and_reverses(personas):
    plain, kept, lost = (Webhook.objects.create(organization=personas.org, name=n, url=OTHER) for n in "abc")
    write_raw(plain.pk, SLACK)
    rotated_away = Fernet(Fernet.generate_key()).encrypt(OTHER.encode()).decode()
    write_raw(lost.pk, rotated_away)
    kept_ciphertext = column(kept.pk)
    alert = Alert.objects.create(organization=personas.org, kind=Alert.Kind.TEST, title="t", message="m")
    quoting, other = (
        Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=hook, last_error=error)
        for hook, error in [(plain, f"ConnectError: {SLACK} / POST {SLACK_PATH}"), (kept, "HTTP 500: boom")]
    )

    MIGRATION.encrypt_plaintext_urls(apps, None)

    assert_stored_encrypted(plain.pk, SLACK)
    assert column(kept.pk) == kept_ciphertext and column(lost.pk) == rotated_away  # ciphertext left alone
    quoting.refresh_from_db()
    other.refresh_from_db()
    assert quoting.last_error == f"ConnectError: {MASKED} / POST /…st42" and other.last_error == "HTTP 500: boom"
    encrypted = column(plain.pk)
    MIGRATION.encrypt_plaintext_urls(apps, None)
    assert column(plain.pk) == encrypted  # a second run changes nothing

    Webhook.objects.filter(pk=lost.pk).delete()  # its key is gone: rolling back cannot decrypt it
    MIGRATION.decrypt_urls(apps, connection.schema_editor())
    assert column(plain.pk) == SLACK and column(kept.pk) == OTHER


def test_the_schema_migration_round_trips_on_postgresql(personas):
    """Back to 0002 (the URL decrypted into a varchar(500) column) and forward again (text,
    encrypted), in this test's transaction (PostgreSQL DDL is transactional)."""
    webhook = make_webhook(personas)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks: ALTER TABLE refuses them
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()

    executor.migrate([("alerts", "0002_encrypt_plaintext_webhook_secrets")])
    assert column(webhook.pk) == SLACK
    with connection.cursor() as cursor:
        cursor.execute("SELECT data_type, character_maximum_length FROM information_schema.columns "
                       "WHERE table_name = 'alerts_webhook' AND column_name = 'url'")
        assert cursor.fetchone() == ("character varying", 500)

    executor = MigrationExecutor(connection)
    executor.migrate(leaves)
    assert_stored_encrypted(webhook.pk, SLACK)
    assert Webhook.objects.get(pk=webhook.pk).url.reveal() == SLACK
    assert encrypt(SLACK) != column(webhook.pk)  # randomized: nothing could filter on it
