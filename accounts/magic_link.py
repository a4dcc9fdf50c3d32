"""One-click sign-in links, sent in the same email as allauth's sign-in code.

The link carries a signed, timestamped token naming the user and a fingerprint of their
`last_login` and password hash. Signing in changes `last_login`, so a link works once; it also
expires with the code (ACCOUNT_LOGIN_BY_CODE_TIMEOUT). Nothing is stored server-side.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from .models import User

SALT = "accounts.magic-link"


def _fingerprint(user: User) -> str:
    return salted_hmac(SALT, f"{user.pk}|{user.last_login}|{user.password}").hexdigest()[:32]


def make_token(user: User) -> str:
    return signing.dumps({"u": str(user.pk), "f": _fingerprint(user)}, salt=SALT)


def user_for_token(token: str) -> User | None:
    """The active user the token signs in, or None if it is forged, expired or already used."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.ACCOUNT_LOGIN_BY_CODE_TIMEOUT)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    user = User.objects.filter(pk=data.get("u"), is_active=True).first()
    if user is None or not constant_time_compare(_fingerprint(user), data.get("f", "")):
        return None
    return user


def link_for(user: User) -> str:
    return settings.SITE_URL + reverse("magic_link", args=[make_token(user)])
