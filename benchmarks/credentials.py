"""Provider API keys at rest: Fernet-encrypted with CREDENTIALS_ENCRYPTION_KEY (comma-separated
keys rotate: the first encrypts, all decrypt). Keys are never logged or shown again."""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(plaintext: str) -> str:
    return _fernet(tuple(settings.CREDENTIALS_ENCRYPTION_KEYS)).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(tuple(settings.CREDENTIALS_ENCRYPTION_KEYS)).decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise ValueError(
            "A stored credential cannot be decrypted with CREDENTIALS_ENCRYPTION_KEY (was the key rotated away?)."
        ) from error


class EncryptedSecret(str):
    """The stored value is ciphertext; `.reveal()` decrypts it only where it is used."""

    def reveal(self) -> str:
        return decrypt(self) if self else ""

    def __repr__(self) -> str:  # never show a secret in logs or tracebacks
        return "EncryptedSecret('…')" if self else "EncryptedSecret('')"


class EncryptedSecretField(models.TextField):
    """Holds ciphertext. Assign `encrypt(raw)` (see `set_secret` helpers on models); reading
    gives an EncryptedSecret whose `.reveal()` returns the plaintext."""

    def from_db_value(self, value: str | None, expression: object, connection: object) -> EncryptedSecret | None:
        return None if value is None else EncryptedSecret(value)
