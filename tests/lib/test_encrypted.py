"""lib/encrypted.py: the one field for every stored secret. Whatever way a secret reaches it
(create, assignment, update(), bulk_create), the database holds Fernet ciphertext, `.reveal()`
gives the plaintext back before and after saving, nothing is encrypted twice, "" stays "", keys
rotate, and no repr shows a secret."""

from __future__ import annotations

import importlib
import json

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core import serializers
from django.db import connection

from alerts.models import Webhook
from benchmarks.models import Provider, ProviderKind, Target
from lib.encrypted import EncryptedSecret, decrypt, encrypt, encrypt_plaintext_rows, is_fernet_token

pytestmark = pytest.mark.django_db

SECRET = "sk-x-very-secret"


def stored(model: type, pk: int, column: str = "api_key") -> str:
    """The column as the database holds it, bypassing the field."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def write_raw(model: type, pk: int, value: str, column: str = "api_key") -> None:
    """What a shell, a data import or the old field could leave behind."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {model._meta.db_table} SET {column} = %s WHERE id = %s", [value, pk])  # noqa: S608


def make_target(personas, name: str = "vLLM", **fields: object) -> Target:
    return Target.objects.create(organization=personas.org, name=name, kind=ProviderKind.OPENAI_COMPATIBLE,
                                 base_url="https://vllm.example/v1", model_names=["llama"], **fields)


def test_create_with_a_plaintext_key_stores_ciphertext_that_decrypts_to_it(personas):
    target = make_target(personas, api_key=SECRET)

    column = stored(Target, target.pk)
    assert column != SECRET and SECRET not in column and is_fernet_token(column)
    assert decrypt(column) == SECRET
    assert isinstance(target.api_key, EncryptedSecret) and target.api_key.reveal() == SECRET  # right away
    assert Target.objects.get(pk=target.pk).api_key.reveal() == SECRET  # and after a fresh read
    target.refresh_from_db()
    assert target.api_key.reveal() == SECRET and target.api_key == column


def test_assigning_plaintext_encrypts_at_once_and_saving_twice_never_double_encrypts(personas):
    target = make_target(personas)
    target.api_key = SECRET
    assert target.api_key != SECRET and target.api_key.reveal() == SECRET  # nothing in clear, even unsaved
    target.save()
    first = stored(Target, target.pk)
    target.save()
    target.save(update_fields=["api_key"])
    assert stored(Target, target.pk) == first and decrypt(first) == SECRET

    copy = make_target(personas, name="copy", api_key=Target.objects.get(pk=target.pk).api_key)
    assert stored(Target, copy.pk) == first  # ciphertext copied between rows stays that ciphertext
    assert encrypt(target.api_key) is target.api_key


def test_update_and_bulk_create_encrypt_plaintext_too(personas):
    target = make_target(personas)
    Target.objects.filter(pk=target.pk).update(api_key=SECRET)
    assert stored(Target, target.pk) != SECRET and decrypt(stored(Target, target.pk)) == SECRET

    Target.objects.filter(pk=target.pk).update(api_key=encrypt("sk-second"))  # ciphertext as given
    assert decrypt(stored(Target, target.pk)) == "sk-second"

    made = Target.objects.bulk_create([
        Target(organization=personas.org, name=f"bulk {i}", kind=ProviderKind.GEMINI,
               base_url="https://g.example", model_names=["m"], api_key=f"sk-bulk-{i}")
        for i in range(2)
    ])
    for i, row in enumerate(made):
        assert decrypt(stored(Target, row.pk)) == f"sk-bulk-{i}"
        assert row.api_key.reveal() == f"sk-bulk-{i}"

    made[0].api_key = "sk-bulk-updated"
    Target.objects.bulk_update(made, ["api_key"])
    assert decrypt(stored(Target, made[0].pk)) == "sk-bulk-updated"
    assert decrypt(stored(Target, made[1].pk)) == "sk-bulk-1"  # its ciphertext, written back as it was

    created, _ = Target.objects.update_or_create(organization=personas.org, name="bulk 1",
                                                 defaults={"api_key": "sk-upserted"})
    assert decrypt(stored(Target, created.pk)) == "sk-upserted"


def test_values_and_values_list_give_ciphertext_that_reveals(personas):
    target = make_target(personas, api_key=SECRET)
    value = Target.objects.values("api_key").get(pk=target.pk)["api_key"]
    flat = Target.objects.values_list("api_key", flat=True).get(pk=target.pk)
    assert isinstance(value, EncryptedSecret) and value.reveal() == flat.reveal() == SECRET
    deferred = Target.objects.only("name").get(pk=target.pk)
    assert deferred.api_key.reveal() == SECRET  # loaded on first access, through the same field
    assert SECRET not in repr(Target.objects.values("api_key").get(pk=target.pk))


def test_an_empty_secret_stays_empty(personas):
    target = make_target(personas)
    assert stored(Target, target.pk) == "" and target.api_key == "" and target.api_key.reveal() == ""
    target.api_key = SECRET
    target.save()
    target.api_key = ""
    target.save()
    assert stored(Target, target.pk) == "" and not target.api_key
    Target.objects.filter(pk=target.pk).update(api_key="")
    assert stored(Target, target.pk) == ""
    assert Target.objects.filter(api_key="").count() == 1


def test_every_stored_secret_uses_the_field(personas):
    webhook = Webhook.objects.create(organization=personas.org, name="Ops", url="https://hooks.example/x",
                                     secret="whsec_plain")
    assert decrypt(stored(Webhook, webhook.pk, "secret")) == "whsec_plain"
    assert decrypt(stored(Webhook, webhook.pk, "url")) == "https://hooks.example/x"  # a URL can be a credential
    raw = webhook.rotate_secret()
    webhook.save()
    assert decrypt(stored(Webhook, webhook.pk, "secret")) == raw != "whsec_plain"

    provider = Provider.objects.create(name="OpenAI", kind=ProviderKind.OPENAI_COMPATIBLE,
                                       base_url="https://api.openai.com/v1", api_key="sk-operator")
    assert decrypt(stored(Provider, provider.pk)) == "sk-operator"
    assert Provider.objects.get(pk=provider.pk).api_key_value() == "sk-operator"


def test_key_rotation_first_key_encrypts_every_key_decrypts(personas, settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIALS_ENCRYPTION_KEYS = [old_key]
    target = make_target(personas, api_key="sk-old")

    settings.CREDENTIALS_ENCRYPTION_KEYS = [new_key, old_key]
    assert Target.objects.get(pk=target.pk).api_key.reveal() == "sk-old"
    rotated = make_target(personas, name="rotated", api_key="sk-new")
    assert Fernet(new_key).decrypt(stored(Target, rotated.pk).encode()) == b"sk-new"

    settings.CREDENTIALS_ENCRYPTION_KEYS = [new_key]
    assert Target.objects.get(pk=rotated.pk).api_key.reveal() == "sk-new"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        Target.objects.get(pk=target.pk).api_key.reveal()


def test_no_repr_shows_a_secret_or_its_ciphertext(personas):
    target = make_target(personas, api_key=SECRET)
    ciphertext = stored(Target, target.pk)
    for shown in (repr(target.api_key), repr(Target.objects.get(pk=target.pk).api_key), repr(target),
                  repr(target.__dict__), repr(encrypt(SECRET))):
        assert SECRET not in shown and ciphertext not in shown
    assert repr(EncryptedSecret("")) == "EncryptedSecret('')"


def test_a_secret_must_be_a_string(personas):
    with pytest.raises(TypeError, match="must be a string"):
        Target(api_key=12345)


def test_serialized_rows_round_trip_without_plaintext_or_double_encryption(personas):
    target = make_target(personas, api_key=SECRET)
    dumped = serializers.serialize("json", Target.objects.filter(pk=target.pk))
    assert SECRET not in dumped
    loaded = next(serializers.deserialize("json", dumped)).object
    assert loaded.api_key == stored(Target, target.pk) and loaded.api_key.reveal() == SECRET


def test_is_fernet_token_tells_ciphertext_from_keys():
    other_key = Fernet(Fernet.generate_key())
    assert is_fernet_token(encrypt("sk")) and is_fernet_token(other_key.encrypt(b"x" * 40).decode())
    for plaintext in ("sk-proj-abc123", "whsec_" + "A" * 43, "", "gAAAAA", "ñ", "AAAA" * 30):
        assert not is_fernet_token(plaintext), plaintext


@pytest.mark.parametrize(("app", "migration", "function"), [
    ("benchmarks", "0006_encrypt_plaintext_secrets", "encrypt_plaintext_keys"),
    ("alerts", "0002_encrypt_plaintext_webhook_secrets", "encrypt_plaintext_secrets"),
])
def test_the_data_migrations_encrypt_rows_stored_in_clear_and_only_those(personas, app, migration, function):
    rotated_away = Fernet(Fernet.generate_key()).encrypt(b"sk-lost").decode()
    if app == "benchmarks":
        rows = [make_target(personas, name=f"t{i}") for i in range(4)]
        model, column = Target, "api_key"
        provider = Provider.objects.create(name="Old", kind=ProviderKind.ANTHROPIC, base_url="https://a.example")
        write_raw(Provider, provider.pk, "sk-ant-plain")
    else:
        rows = [Webhook.objects.create(organization=personas.org, name=f"w{i}", url="https://h.example")
                for i in range(4)]
        model, column = Webhook, "secret"
    good = encrypt("kept")
    for row, value in zip(rows, ["sk-plain", good, rotated_away, ""], strict=True):
        write_raw(model, row.pk, value, column)

    module = importlib.import_module(f"{app}.migrations.{migration}")
    getattr(module, function)(apps, None)

    plain, kept, lost, empty = (stored(model, row.pk, column) for row in rows)
    assert plain != "sk-plain" and decrypt(plain) == "sk-plain"
    assert kept == good and lost == rotated_away and empty == ""
    if app == "benchmarks":
        assert decrypt(stored(Provider, provider.pk)) == "sk-ant-plain"
    assert encrypt_plaintext_rows(model, column) == 0  # a second run finds nothing left to do


@pytest.mark.parametrize("format_", ["json", "python"])
def test_a_fixture_with_a_plaintext_secret_is_encrypted_when_loaded(personas, format_):
    """A hand-written fixture or a data import gives the key in clear; loading it must store
    ciphertext that reveals, not the plaintext (which reveal() then refused)."""
    target = make_target(personas, api_key="sk-old")
    rows = serializers.serialize("python", Target.objects.filter(pk=target.pk))
    rows[0]["fields"]["api_key"] = SECRET
    dumped = rows if format_ == "python" else json.dumps(rows, default=str)
    loaded = next(serializers.deserialize(format_, dumped))
    assert isinstance(loaded.object.api_key, EncryptedSecret) and loaded.object.api_key.reveal() == SECRET
    loaded.save()
    column = stored(Target, target.pk)
    assert SECRET not in column and is_fernet_token(column) and decrypt(column) == SECRET
    assert Target.objects.get(pk=target.pk).api_key.reveal() == SECRET


def test_to_python_keeps_ciphertext_and_encrypts_anything_else():
    field = Target._meta.get_field("api_key")
    other_key = Fernet(Fernet.generate_key()).encrypt(b"sk-rotated-away").decode()
    for ciphertext in (encrypt(SECRET), str(encrypt(SECRET)), other_key):
        assert field.to_python(ciphertext) == ciphertext  # never encrypted twice
    plain = field.to_python(SECRET)
    assert isinstance(plain, EncryptedSecret) and plain != SECRET and plain.reveal() == SECRET
    assert field.to_python("") == "" and field.to_python(None) is None
    with pytest.raises(TypeError, match="must be a string"):
        field.to_python(12345)
