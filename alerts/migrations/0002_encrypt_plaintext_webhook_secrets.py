"""Encrypt webhook signing secrets that were stored in clear (written before the field encrypted
by itself); Fernet ciphertext is left alone, whichever key made it."""

from django.db import migrations

from lib.encrypted import encrypt_plaintext_rows


def encrypt_plaintext_secrets(apps, schema_editor):
    encrypt_plaintext_rows(apps.get_model("alerts", "Webhook"), "secret")


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0001_initial"),
    ]

    # Not reversible into plaintext on purpose: a no-op backwards leaves the secrets encrypted.
    operations = [migrations.RunPython(encrypt_plaintext_secrets, migrations.RunPython.noop)]
