"""Sign-in limits that keep guessing and email bombing out without handing anyone a way to lock
an account's owner out.

Counted with allauth's own rate limiter (rates in ACCOUNT_RATE_LIMITS, counters in the cache):

- A request from a **known device** of the account (accounts/devices.py: a browser that signed
  in to it before) counts only against that device. Nothing anyone else does can refuse it, and
  a stolen device cookie is still limited.
- Any other request counts per address over all accounts, per (account, address), and against a
  ceiling per account. An attacker with many addresses (or IPv6 /64s, which allauth counts as
  one address each) can exhaust only that "unknown device" allowance; the owner's own browser
  keeps working, and is told so when refused.

Password attempts are counted before the password is checked; the adapter rolls the count back
when it was right, so only failures count. Code requests are counted when a code is sent.
"""

from __future__ import annotations

from allauth.core.internal import ratelimit
from django.core.cache import cache
from django.http import HttpRequest

from . import devices

APP = "allauth.account"

# Failed password sign-ins.
FAILED_FROM_ADDRESS = "login_failed"  # per address, over all accounts (allauth's own action name)
FAILED_HERE = "login_failed_here"  # per (account, address)
FAILED_ACCOUNT = "login_failed_account"  # per account, from unknown devices together
FAILED_DEVICE = "login_failed_device"  # per known device
# Emailed sign-in codes (each also carries the one-click link).
CODES_FROM_ADDRESS = "request_login_code"  # per address, over all accounts (allauth's own)
CODES_HERE = "login_code_here"  # per (email, address)
CODES_ACCOUNT = "login_code_account"  # per email, sent to unknown devices together
CODES_DEVICE = "login_code_device"  # per known device

KNOWN_DEVICE_HINT = "sign in from a device you used before, or use a code sent by email"
TOO_MANY_FROM_HERE = (
    "Too many failed sign-in attempts from your network. Wait a few minutes and try again, "
    f"or {KNOWN_DEVICE_HINT}."
)
TOO_MANY_FOR_ACCOUNT = (
    "This account has had too many failed sign-in attempts from devices it has not been used "
    f"on, so password sign-in from new devices is paused for up to an hour. To get in now, "
    f"{KNOWN_DEVICE_HINT}."
)
TOO_MANY_FROM_DEVICE = (
    "Too many failed sign-in attempts from this browser. Wait a few minutes and try again, "
    "or use a code sent by email."
)
TOO_MANY_CODES_FROM_HERE = "Too many sign-in codes requested from your network. Wait a minute and try again."
TOO_MANY_CODES_FOR_ACCOUNT = (
    "Too many sign-in codes have been sent to this address in the last hour. Request one from "
    "a device you used before, or try again later."
)
TOO_MANY_CODES_FROM_DEVICE = "Too many sign-in codes requested from this browser. Wait a minute and try again."


class TooMany(Exception):
    """A limit refused the request; `message` tells the person what happened and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def consume_password_attempt(request: HttpRequest, login: str) -> ratelimit.RateLimitUsage:
    """Count one password attempt at `login` (the normalized email), or raise TooMany.

    Returns the usage so the caller can roll it back when the password turns out right.
    """
    device = devices.known_device(request, login)
    if device:
        return _consume(request, [(FAILED_DEVICE, device, TOO_MANY_FROM_DEVICE)])
    address = ratelimit.get_ip(request)
    return _consume(request, [
        (FAILED_FROM_ADDRESS, None, TOO_MANY_FROM_HERE),
        (FAILED_HERE, f"{login}|{address}", TOO_MANY_FROM_HERE),
        (FAILED_ACCOUNT, login, TOO_MANY_FOR_ACCOUNT),
    ])


def consume_code_request(request: HttpRequest, email: str) -> None:
    """Count one emailed sign-in code for `email`, or raise TooMany.

    allauth counted these per email alone (3 a minute), so one request from anywhere made the
    owner's own request fail. Unknown devices now count per (email, address), plus a per-email
    cap high enough not to be a lever but low enough to stop bombing an inbox.
    """
    email = email.strip().lower()
    device = devices.known_device(request, email)
    if device:
        _consume(request, [(CODES_DEVICE, device, TOO_MANY_CODES_FROM_DEVICE)])
        return
    address = ratelimit.get_ip(request)
    _consume(request, [
        (CODES_FROM_ADDRESS, None, TOO_MANY_CODES_FROM_HERE),
        (CODES_HERE, f"{email}|{address}", TOO_MANY_CODES_FROM_HERE),
        (CODES_ACCOUNT, email, TOO_MANY_CODES_FOR_ACCOUNT),
    ])


def forget_failures_after_reset(request: HttpRequest, email: str) -> None:
    """After a password reset (which proves the inbox), the account's failures stop counting:
    those from the resetting address and its per-account ceiling.

    Never the per-address counter over all accounts: otherwise a guesser would reset the
    password of an account of their own to lift the limit on spraying everyone else's. allauth's
    ratelimit.clear() deletes every rate of an action, so only per-key counters are deleted here.
    """
    email = email.strip().lower()
    address = ratelimit.get_ip(request)
    _clear_per_key(request, FAILED_HERE, f"{email}|{address}")
    _clear_per_key(request, FAILED_ACCOUNT, email)


def _consume(request: HttpRequest, steps: list[tuple[str, str | None, str]]) -> ratelimit.RateLimitUsage:
    """Consume each (action, key) in turn. When one refuses, those already consumed are rolled
    back (a refused request did nothing, so it should not count) and TooMany carries its message."""
    used: list[ratelimit.SingleRateLimitUsage] = []
    for action, key, message in steps:
        usage = ratelimit.consume(request, app=APP, action=action, key=key)
        if not usage:
            ratelimit.RateLimitUsage(usage=used).rollback()
            raise TooMany(message)
        used.extend(usage.usage)
    return ratelimit.RateLimitUsage(usage=used)


def _clear_per_key(request: HttpRequest, action: str, key: str) -> None:
    for rate in ratelimit.get_rates(app=APP, action=action):
        if rate.per == "key":
            cache.delete(ratelimit.get_cache_key(request, app=APP, action=action, rate=rate, key=key))
