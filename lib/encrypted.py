"""Secrets at rest (provider API keys, webhook signing secrets): one model field for all of them,
Fernet-encrypted with CREDENTIALS_ENCRYPTION_KEYS (the first key encrypts, every key decrypts, so
keys rotate). Keys are never logged or shown again.

The field cannot be given plaintext by mistake. One rule keeps it unambiguous: an
`EncryptedSecret` is ciphertext, any other string is plaintext. Whatever is assigned to the
field's attribute (`Target(api_key="sk-…")`, `objects.create(...)`, `bulk_create`,
`target.api_key = raw`) is encrypted there and then, so the attribute always holds an
EncryptedSecret (`.reveal()` works before and after saving) and a save writes what it holds;
plaintext reaching the database another way (`.update(api_key=raw)`) is encrypted by
`get_prep_value`. Deserialized values (loaddata, data imports) arrive as plain strings either
way, so `to_python` tells them apart by shape: a Fernet token is kept, anything else encrypted. An EncryptedSecret is never encrypted again, so saving twice or copying a
value from one row to another cannot double-encrypt. `""` stays `""` (no secret).
"""

from __future__ import annotations

import base64
import binascii
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models
from django.db.models.query_utils import DeferredAttribute

# A Fernet token: version byte 0x80, 8-byte timestamp, 16-byte IV, AES-CBC blocks, 32-byte HMAC.
_FERNET_VERSION = 0x80
_FERNET_OVERHEAD = 1 + 8 + 16 + 32
_AES_BLOCK = 16


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _keys() -> MultiFernet:
    return _fernet(tuple(settings.CREDENTIALS_ENCRYPTION_KEYS))


class EncryptedSecret(str):
    """Ciphertext as stored; `.reveal()` decrypts it only where it is used."""

    __slots__ = ()

    def reveal(self) -> str:
        return decrypt(self) if self else ""

    def __repr__(self) -> str:  # never show a secret (or its ciphertext) in logs or tracebacks
        return "EncryptedSecret('…')" if self else "EncryptedSecret('')"


def encrypt(plaintext: str) -> EncryptedSecret:
    """The ciphertext of `plaintext`; an EncryptedSecret is already ciphertext and comes back as
    it is, so nothing is ever encrypted twice."""
    if isinstance(plaintext, EncryptedSecret):
        return plaintext
    if not plaintext:
        return EncryptedSecret("")
    return EncryptedSecret(_keys().encrypt(plaintext.encode()).decode())


def decrypt(token: str) -> str:
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise ValueError(
            "A stored credential cannot be decrypted with CREDENTIALS_ENCRYPTION_KEY (was the key rotated away?)."
        ) from error


def as_secret(value: object) -> EncryptedSecret | None:
    """What the field holds for `value`: None stays None, ciphertext stays, any string is
    encrypted."""
    if value is None:
        return None
    if not isinstance(value, str):
        # An SQL expression or a number here would bypass encryption (or store nonsense).
        raise TypeError(f"A secret must be a string, not {type(value).__name__}.")
    return encrypt(value)


def is_fernet_token(value: str) -> bool:
    """Whether `value` has the shape of a Fernet token, whichever key made it. Only for telling
    plaintext from ciphertext where a value comes without its type: rows written in clear
    (before the field encrypted by itself) in a data migration, and deserialized values
    (`to_python`). A token made with a key since rotated away is still ciphertext, not a key;
    no provider's key or signing secret has this shape (version byte 0x80, whole AES blocks)."""
    try:
        raw = base64.b64decode(value.encode("ascii"), altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return False
    body = len(raw) - _FERNET_OVERHEAD
    return bool(raw) and raw[0] == _FERNET_VERSION and body >= _AES_BLOCK and body % _AES_BLOCK == 0


def encrypt_plaintext_rows(model: type[models.Model], field_name: str) -> int:
    """Encrypt the stored values of `field_name` that are not Fernet ciphertext (plaintext
    written before the field encrypted by itself); returns how many. For data migrations."""
    rows = model._base_manager.exclude(**{field_name: ""}).values_list("pk", field_name)
    fixed = 0
    for pk, stored in rows.iterator():
        if not is_fernet_token(stored):
            # str(): the value read back is wrapped as ciphertext, but this one is plaintext.
            model._base_manager.filter(pk=pk).update(**{field_name: encrypt(str(stored))})
            fixed += 1
    return fixed


class _SecretAttribute(DeferredAttribute):
    """The model attribute of an EncryptedSecretField: a value is encrypted as it is assigned,
    so an instance never holds a secret in clear."""

    def __set__(self, instance: models.Model, value: object) -> None:
        instance.__dict__[self.field.attname] = as_secret(value)


class EncryptedSecretField(models.TextField):
    """A secret stored encrypted. Assign the plaintext (or ""); read an EncryptedSecret and call
    `.reveal()` where the plaintext is needed. Never filter on it: ciphertext is randomized."""

    descriptor_class = _SecretAttribute

    def from_db_value(self, value: str | None, expression: object, connection: object) -> EncryptedSecret | None:
        return None if value is None else EncryptedSecret(value)

    def to_python(self, value: Any) -> EncryptedSecret | None:
        # full_clean() calls this with the attribute's EncryptedSecret. Deserialization
        # (loaddata, the python and JSON serializers) calls it with a plain string: the
        # ciphertext a dump wrote (value_to_string), or plaintext a hand-written fixture or a
        # data import put there. Taking every string as ciphertext stored such plaintext as it
        # was and the next reveal() failed, so only a string shaped like a Fernet token counts
        # as ciphertext (whichever key made it: a rotated-away one is still not a secret in
        # clear); anything else is encrypted here.
        if value is None or isinstance(value, EncryptedSecret):
            return value
        if isinstance(value, str) and is_fernet_token(value):
            return EncryptedSecret(value)
        return as_secret(value)

    def get_prep_value(self, value: Any) -> str | None:
        # Not TextField's: that goes through to_python, which takes strings as ciphertext. Here a
        # plain string is plaintext on its way to the database (e.g. QuerySet.update()).
        secret = as_secret(models.Field.get_prep_value(self, value))
        return None if secret is None else str(secret)
