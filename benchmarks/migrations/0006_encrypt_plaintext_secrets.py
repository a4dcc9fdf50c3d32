"""Encrypt provider and target API keys that were stored in clear: before the field encrypted by
itself, `Target.objects.create(api_key="sk-…")` (a shell, a data import) wrote the key as given,
and the next run failed with "cannot be decrypted". Values already Fernet ciphertext are left
alone, whichever key made them."""

from django.db import migrations

from lib.encrypted import encrypt_plaintext_rows


def encrypt_plaintext_keys(apps, schema_editor):
    for name in ("Provider", "Target"):
        encrypt_plaintext_rows(apps.get_model("benchmarks", name), "api_key")


class Migration(migrations.Migration):
    dependencies = [
        ("benchmarks", "0005_kind_choices_from_provider_registry"),
    ]

    # Not reversible into plaintext on purpose: a no-op backwards leaves the keys encrypted.
    operations = [migrations.RunPython(encrypt_plaintext_keys, migrations.RunPython.noop)]
