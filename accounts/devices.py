"""Known devices: a browser that has signed in to an account before (OWASP "device cookies").

Every successful sign-in sets a signed, long-lived, HttpOnly cookie naming the account and a
random id for that browser. Sign-in limits (accounts/signin_limits.py) count failures and code
requests that present a valid cookie for the account only against that cookie, so guesses from
anywhere else can never refuse the owner's own browser, while a stolen cookie is still limited.

Nothing is stored server-side: the cookie is signed with SECRET_KEY under its own salt and
carries its own timestamp, so a forged, altered or expired cookie is simply an unknown device.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from .models import User

COOKIE_NAME = "pulse_device"
SALT = "accounts.device-cookie"
MAX_AGE = int(timedelta(days=365).total_seconds())


def remember(response: HttpResponseBase, user: User) -> None:
    """Mark the browser that receives `response` as a known device of `user`."""
    device_id = secrets.token_urlsafe(16)
    response.set_signed_cookie(
        COOKIE_NAME,
        f"{user.pk}:{device_id}",
        salt=SALT,
        max_age=MAX_AGE,
        httponly=True,  # scripts never see it, so an XSS cannot lift it
        secure=settings.SESSION_COOKIE_SECURE,
        samesite="Lax",
    )


def known_device(request: HttpRequest, email: str) -> str | None:
    """The id of this browser if it holds a valid device cookie for the account `email` signs
    in to, else None (no cookie, forged, expired, or another account's)."""
    value = request.get_signed_cookie(COOKIE_NAME, default=None, salt=SALT, max_age=MAX_AGE)
    if not value or not email:
        return None
    user_pk, _, device_id = value.partition(":")
    try:
        pk = uuid.UUID(user_pk)
    except ValueError:
        return None
    # Bound to the user, not the address: an email later given up and registered by someone
    # else does not make this browser a known device of the new account.
    if not device_id or not User.objects.filter(pk=pk, email__iexact=email).exists():
        return None
    return device_id
