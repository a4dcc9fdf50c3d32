"""Webhook URLs are credentials (whoever has a Slack incoming-webhook URL can post to the channel):
store them encrypted with the one secret field, like the signing secrets (0002).

Forwards: the column becomes text (ciphertext is longer than the URL); each URL stored in clear is
encrypted, and where a delivery's stored error quotes it (or its path), it is masked there, so no column
keeps it in clear. Backwards: the URLs are decrypted into the plain column again, so the previous
code (which reads the column as the URL) keeps sending; run it only to roll a deploy back.
"""

from urllib.parse import urlsplit

from django.db import migrations

import lib.encrypted
from lib.encrypted import decrypt, encrypt_plaintext_rows, is_fernet_token


def masked(url):
    """alerts.models.mask_url as it is at this migration (frozen: migrations do not import app code)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"…{url[-4:]}"
    host = parts.netloc.rpartition("@")[2]
    if host == parts.netloc and not (parts.path.strip("/") or parts.query or parts.fragment):
        return url
    return f"{parts.scheme}://{host}/…{url[-4:]}"


def redacted(text, url):
    """alerts.models.redact_url as it is at this migration."""
    text = text.replace(url, masked(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    tail = url.removeprefix(f"{parts.scheme}://{parts.netloc}")
    return text.replace(tail, f"/…{url[-4:]}") if tail.strip("/") else text


def encrypt_plaintext_urls(apps, schema_editor):
    Webhook = apps.get_model("alerts", "Webhook")
    Delivery = apps.get_model("alerts", "Delivery")
    for pk, stored in Webhook._base_manager.exclude(url="").values_list("pk", "url").iterator():
        if is_fernet_token(stored):
            continue  # already ciphertext (a second run, or a row written by the new field)
        url = str(stored)  # read back wrapped as ciphertext, but it is the plaintext URL
        errors = Delivery._base_manager.filter(webhook_id=pk).exclude(last_error="").values_list("pk", "last_error")
        for delivery_pk, error in errors.iterator():
            if redacted(error, url) != error:
                Delivery._base_manager.filter(pk=delivery_pk).update(last_error=redacted(error, url))
    encrypt_plaintext_rows(Webhook, "url")


def decrypt_urls(apps, schema_editor):
    Webhook = apps.get_model("alerts", "Webhook")
    table = schema_editor.quote_name(Webhook._meta.db_table)
    rows = Webhook._base_manager.exclude(url="").values_list("pk", "url")
    with schema_editor.connection.cursor() as cursor:
        for pk, stored in rows.iterator():
            if is_fernet_token(stored):
                # Raw SQL: through the field, the plaintext would be encrypted again.
                cursor.execute(f"UPDATE {table} SET url = %s WHERE id = %s", [decrypt(stored), pk])  # noqa: S608


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0002_encrypt_plaintext_webhook_secrets"),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhook",
            name="url",
            field=lib.encrypted.EncryptedSecretField(),
        ),
        migrations.RunPython(encrypt_plaintext_urls, decrypt_urls),
    ]
