"""Sign-in limits lock out the guesser, never the account's owner.

Password failures count per (account, address) and per address: five wrong passwords for an
account from one address refuse that address for that account (a 429 with a page that says why)
while its owner still signs in from anywhere else. An account has a ceiling for guesses spread
over many addresses, but it applies only to devices the account has not signed in from: a
browser that has (it holds a signed device cookie) counts only its own failures, so the owner's
own browser always gets in. Emailed-code requests follow the same rule. The Django admin signs
in through the same page.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.core import mail, signing
from django.test import Client, RequestFactory, override_settings
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from accounts import devices
from accounts.models import User
from accounts.signin_limits import (
    TOO_MANY_CODES_FOR_ACCOUNT,
    TOO_MANY_CODES_FROM_DEVICE,
    TOO_MANY_CODES_FROM_HERE,
    TOO_MANY_FOR_ACCOUNT,
    TOO_MANY_FROM_DEVICE,
    TOO_MANY_FROM_HERE,
)
from accounts.throttling import ApiTokenRateThrottle
from tests.conftest import PASSWORD, make_user
from tests.outbox import link_in, only_email_to, signed_in_user

pytestmark = pytest.mark.django_db

ATTACKER, OWNER, ELSEWHERE = "203.0.113.7", "198.51.100.20", "192.0.2.99"
WRONG = "not the password"
NOT_CORRECT = "The email address and/or password you specified are not correct."
CODE_SENT = "/accounts/login/code/confirm/"


def sign_in(email: str, password: str, address: str, client: Client | None = None, next_url: str = ""):
    client = client or Client(REMOTE_ADDR=address)
    url = f"/accounts/login/?next={next_url}" if next_url else "/accounts/login/"
    return client.post(url, {"login": email, "password": password}, REMOTE_ADDR=address)


def request_code(email: str, address: str, client: Client | None = None):
    client = client or Client(REMOTE_ADDR=address)
    return client.post("/accounts/login/code/", {"email": email}, REMOTE_ADDR=address)


@pytest.fixture
def user() -> User:
    return make_user("victim@a.example")


def known_device(user: User, address: str = OWNER) -> Client:
    """The owner's browser: it signed in with the password once, then signed out."""
    browser = Client(REMOTE_ADDR=address)
    assert sign_in(user.email, PASSWORD, address, browser).status_code == 302
    assert browser.post("/accounts/logout/", REMOTE_ADDR=address).status_code == 302
    assert signed_in_user(browser) is None and devices.COOKIE_NAME in browser.cookies
    return browser


def fail_five_times(email: str, address: str) -> None:
    for _attempt in range(5):
        response = sign_in(email, WRONG, address)
        assert response.status_code == 200 and NOT_CORRECT in response.content.decode()


def exhaust_every_limit_from_many_addresses(email: str, addresses: list[str]) -> None:
    """A guesser with many addresses spends the account's ceiling for unknown devices."""
    for address in addresses:
        fail_five_times(email, address)
    refused = sign_in(email, WRONG, "192.0.2.200")
    assert refused.status_code == 429 and TOO_MANY_FOR_ACCOUNT in refused.content.decode()


def test_the_rates():
    rates = settings.ACCOUNT_RATE_LIMITS
    assert (rates["login_failed"], rates["login_failed_here"]) == ("10/m/ip", "5/5m/key")
    assert (rates["login_failed_account"], rates["login_failed_device"]) == ("50/h/key", "5/5m/key")
    assert (rates["request_login_code"], rates["login_code_here"]) == ("20/m/ip", "3/m/key")
    assert (rates["login_code_account"], rates["login_code_device"]) == ("20/h/key", "3/m/key")


def test_five_failures_from_one_address_do_not_lock_the_owner_out_elsewhere(user):
    fail_five_times(user.email, ATTACKER)

    owner = Client(REMOTE_ADDR=OWNER)
    response = sign_in(user.email, PASSWORD, OWNER, owner)

    assert response.status_code == 302
    assert owner.get("/settings/").status_code == 200  # really signed in


def test_the_guessing_address_gets_a_429_with_a_clear_message_even_with_the_right_password(user):
    fail_five_times(user.email, ATTACKER)

    attacker = Client(REMOTE_ADDR=ATTACKER)
    refused = sign_in(user.email, PASSWORD, ATTACKER, attacker)

    assert refused.status_code == 429
    assert TOO_MANY_FROM_HERE in refused.content.decode()
    assert attacker.get("/settings/").status_code == 302  # not signed in


def test_a_successful_sign_in_is_not_counted_as_a_failure(user):
    for _attempt in range(4):
        sign_in(user.email, WRONG, OWNER)
    for _attempt in range(3):  # the owner finally remembers it, more than once
        assert sign_in(user.email, PASSWORD, OWNER).status_code == 302

    assert sign_in(user.email, WRONG, OWNER).status_code == 200  # the 5th failure, still allowed
    assert sign_in(user.email, PASSWORD, OWNER).status_code == 429


def test_one_address_trying_many_accounts_is_limited_across_them(user):
    for n in range(10):
        assert sign_in(f"guess{n}@c.example", WRONG, ATTACKER).status_code == 200

    refused = sign_in("guess10@c.example", WRONG, ATTACKER)

    assert refused.status_code == 429 and TOO_MANY_FROM_HERE in refused.content.decode()
    assert sign_in(user.email, PASSWORD, OWNER).status_code == 302


def test_behind_a_trusted_proxy_each_client_address_counts_on_its_own(user, settings):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    for _attempt in range(5):
        Client().post("/accounts/login/", {"login": user.email, "password": WRONG},
                      REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=ATTACKER)

    owner = Client().post("/accounts/login/", {"login": user.email, "password": PASSWORD},
                          REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=OWNER)
    attacker = Client().post("/accounts/login/", {"login": user.email, "password": PASSWORD},
                             REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=ATTACKER)

    assert (owner.status_code, attacker.status_code) == (302, 429)


def test_without_trusted_proxies_a_forged_forwarded_for_changes_nothing(user):
    for n in range(5):  # a guesser rotating a forged header is still one address
        sign_in(user.email, WRONG, ATTACKER, Client(HTTP_X_FORWARDED_FOR=f"198.18.0.{n}"))

    refused = Client().post("/accounts/login/", {"login": user.email, "password": PASSWORD},
                            REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR="198.18.0.99")

    assert refused.status_code == 429


def test_a_password_reset_lifts_the_accounts_ceiling(user):
    for n in range(10):
        fail_five_times(user.email, f"10.9.{n}.1")
    owner = Client(REMOTE_ADDR=OWNER)
    owner.post("/accounts/password/reset/", {"email": user.email}, REMOTE_ADDR=OWNER)
    form = owner.get(link_in(only_email_to(user.email), "/accounts/password/reset/key/"), follow=True, REMOTE_ADDR=OWNER)
    new_password = "a brand new passphrase 42"
    done = owner.post(form.redirect_chain[-1][0], {"password1": new_password, "password2": new_password}, REMOTE_ADDR=OWNER)
    assert done.status_code == 302

    assert sign_in(user.email, new_password, OWNER).status_code == 302


def test_the_admin_signs_in_through_the_same_limits(user):
    staff = make_user("operator@pulse.example", is_staff=True, is_superuser=True)
    fail_five_times(staff.email, ATTACKER)

    # The admin's own login form does not check passwords: it sends everyone to allauth's.
    direct = Client(REMOTE_ADDR=ATTACKER).post(
        "/admin/login/", {"username": staff.email, "password": PASSWORD}, REMOTE_ADDR=ATTACKER
    )
    assert direct.status_code == 302 and direct["Location"].startswith("/accounts/login/")
    assert sign_in(staff.email, PASSWORD, ATTACKER, next_url="/admin/").status_code == 429

    operator = Client(REMOTE_ADDR=OWNER)
    response = sign_in(staff.email, PASSWORD, OWNER, operator, next_url="/admin/")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert operator.get("/admin/").status_code == 200


# ---------------------------------------------------------------------------------------------
# Known devices: what others do never refuses the owner's own browser
# ---------------------------------------------------------------------------------------------
TEN_ADDRESSES = [f"10.9.{n}.1" for n in range(10)]
# allauth counts an IPv6 address per /64, so each of these is one "address"; a guesser gets
# ten of them in seconds.
TEN_IPV6_NETWORKS = [f"2001:db8:{n:x}::1" for n in range(10)]


@pytest.mark.parametrize("addresses", [TEN_ADDRESSES, TEN_IPV6_NETWORKS], ids=["ipv4", "ipv6-64s"])
def test_a_guesser_with_many_addresses_cannot_keep_the_owners_browser_out(user, addresses):
    browser = known_device(user)
    exhaust_every_limit_from_many_addresses(user.email, addresses)

    response = sign_in(user.email, PASSWORD, OWNER, browser)

    assert response.status_code == 302
    assert signed_in_user(browser) == user


def test_without_a_known_device_the_owner_is_told_how_to_get_in(user):
    exhaust_every_limit_from_many_addresses(user.email, TEN_ADDRESSES)

    refused = sign_in(user.email, PASSWORD, OWNER)

    assert refused.status_code == 429
    page = refused.content.decode()
    assert TOO_MANY_FOR_ACCOUNT in page
    assert "device you used before" in page and "code sent by email" in page
    assert 'href="/accounts/login/code/"' in page


def test_the_owners_browser_gets_in_even_from_the_guessers_own_network(user):
    browser = known_device(user, ATTACKER)  # e.g. the same office NAT or carrier-grade NAT
    fail_five_times(user.email, ATTACKER)
    for n in range(5):  # and the address has sprayed other accounts up to its limit
        sign_in(f"guess{n}@c.example", WRONG, ATTACKER)
    assert sign_in("guess5@c.example", WRONG, ATTACKER).status_code == 429

    assert sign_in(user.email, PASSWORD, ATTACKER, browser).status_code == 302


def test_a_known_devices_failures_count_against_that_device_only_so_a_stolen_cookie_is_limited(user):
    browser = known_device(user)
    thief = Client(REMOTE_ADDR=ATTACKER)
    thief.cookies[devices.COOKIE_NAME] = browser.cookies[devices.COOKIE_NAME].value

    fail_five_times_with = [sign_in(user.email, WRONG, ATTACKER, thief) for _attempt in range(5)]
    assert all(response.status_code == 200 for response in fail_five_times_with)
    refused = sign_in(user.email, PASSWORD, ATTACKER, thief)

    assert refused.status_code == 429 and TOO_MANY_FROM_DEVICE in refused.content.decode()
    # Those failures were the device's, not the address's: the same address without the
    # cookie still has its own five tries at this account.
    assert sign_in(user.email, PASSWORD, ATTACKER).status_code == 302


@pytest.mark.parametrize("tamper", ["forged", "another account's"])
def test_a_forged_or_foreign_device_cookie_is_an_unknown_device(user, tamper):
    guesser = Client(REMOTE_ADDR=ATTACKER)
    if tamper == "forged":
        guesser.cookies[devices.COOKIE_NAME] = f"{user.pk}:made-up:not-a-signature"
    else:  # the guesser's own account signed in from this browser
        mallory = make_user("mallory@c.example")
        assert sign_in(mallory.email, PASSWORD, ATTACKER, guesser).status_code == 302
        guesser.post("/accounts/logout/", REMOTE_ADDR=ATTACKER)
        assert devices.COOKIE_NAME in guesser.cookies

    for _attempt in range(5):
        assert sign_in(user.email, WRONG, ATTACKER, guesser).status_code == 200
    refused = sign_in(user.email, PASSWORD, ATTACKER, guesser)

    assert refused.status_code == 429 and TOO_MANY_FROM_HERE in refused.content.decode()


def test_the_device_cookie_is_signed_httponly_and_long_lived(user):
    browser = Client(REMOTE_ADDR=OWNER)
    response = sign_in(user.email, PASSWORD, OWNER, browser)

    cookie = response.cookies[devices.COOKIE_NAME]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert cookie["max-age"] >= 365 * 24 * 3600
    assert cookie.value.startswith(f"{user.pk}:") and cookie.value.count(":") >= 2  # value:signature
    # Two sign-ins are two devices: failures of one never count against the other.
    again = sign_in(user.email, PASSWORD, OWNER, Client(REMOTE_ADDR=OWNER))
    assert again.cookies[devices.COOKIE_NAME].value != cookie.value


def test_a_device_cookie_is_known_only_for_its_own_account_and_only_for_a_year(user, monkeypatch):
    other = make_user("someone@c.example")
    signer = signing.get_cookie_signer(salt=devices.COOKIE_NAME + devices.SALT)  # as set_signed_cookie
    fresh = signer.sign(f"{user.pk}:device-1")
    now = time.time()
    with monkeypatch.context() as past:
        past.setattr(signing.time, "time", lambda: now - devices.MAX_AGE - 60)
        expired = signer.sign(f"{user.pk}:device-1")

    def known(cookie: str, email: str) -> str | None:
        request = RequestFactory().post("/accounts/login/")
        request.COOKIES[devices.COOKIE_NAME] = cookie
        return devices.known_device(request, email)

    assert known(fresh, user.email) == known(fresh, user.email.upper()) == "device-1"
    assert known(fresh, other.email) is None
    assert known(expired, user.email) is None
    assert known(signer.sign("not-a-uuid:device-1"), user.email) is None
    assert known(fresh.replace("device-1", "device-2"), user.email) is None  # signature broken


def test_signing_in_by_emailed_code_also_marks_the_device(user):
    browser = Client(REMOTE_ADDR=OWNER)
    assert request_code(user.email, OWNER, browser)["Location"] == CODE_SENT
    code = only_email_to(user.email).subject.rsplit(" ", 1)[-1]

    response = browser.post(CODE_SENT, {"code": code}, REMOTE_ADDR=OWNER)

    assert response.status_code == 302 and signed_in_user(browser) == user
    assert devices.COOKIE_NAME in response.cookies


# ---------------------------------------------------------------------------------------------
# Emailed codes: others' requests never refuse the owner's
# ---------------------------------------------------------------------------------------------
def test_someone_elses_code_requests_do_not_refuse_the_owners(user):
    for _attempt in range(3):
        assert request_code(user.email, ATTACKER)["Location"] == CODE_SENT
    refused = request_code(user.email, ATTACKER)
    assert refused.status_code == 200 and TOO_MANY_CODES_FROM_HERE in refused.content.decode()

    owner = request_code(user.email, OWNER)

    assert owner.status_code == 302 and owner["Location"] == CODE_SENT
    assert len([m for m in mail.outbox if user.email in m.to]) == 4


def test_codes_from_many_addresses_meet_a_per_email_cap_and_a_known_device_still_gets_one(user):
    browser = known_device(user)
    for n in range(10):  # 20 codes: as many as the cap allows in an hour
        for _attempt in range(2):
            assert request_code(user.email, f"10.9.{n}.1")["Location"] == CODE_SENT
    mail.outbox.clear()

    bomber = request_code(user.email, "10.9.99.1")
    owner_elsewhere = request_code(user.email, ELSEWHERE)
    owner_browser = request_code(user.email, OWNER, browser)

    assert bomber.status_code == 200 and TOO_MANY_CODES_FOR_ACCOUNT in bomber.content.decode()
    assert owner_elsewhere.status_code == 200
    assert "device you used before" in owner_elsewhere.content.decode()
    assert owner_browser.status_code == 302 and owner_browser["Location"] == CODE_SENT
    assert len(mail.outbox) == 1  # the inbox got the owner's code and nothing else


def test_a_known_device_asking_for_codes_is_limited_on_its_own(user):
    device_cookie = known_device(user).cookies[devices.COOKIE_NAME].value

    def from_the_device() -> Client:
        # A fresh session each time: one session with a code pending is only sent back to it.
        client = Client(REMOTE_ADDR=OWNER)
        client.cookies[devices.COOKIE_NAME] = device_cookie
        return client

    for _attempt in range(3):
        assert request_code(user.email, OWNER, from_the_device())["Location"] == CODE_SENT
    refused = request_code(user.email, OWNER, from_the_device())

    assert refused.status_code == 200 and TOO_MANY_CODES_FROM_DEVICE in refused.content.decode()
    assert request_code(user.email, OWNER)["Location"] == CODE_SENT  # the address is unaffected
    assert len([m for m in mail.outbox if user.email in m.to]) == 4


# ---------------------------------------------------------------------------------------------
# A password reset lifts only the account's own counters
# ---------------------------------------------------------------------------------------------
def reset_password(email: str, address: str) -> str:
    browser = Client(REMOTE_ADDR=address)
    browser.post("/accounts/password/reset/", {"email": email}, REMOTE_ADDR=address)
    form = browser.get(link_in(only_email_to(email), "/accounts/password/reset/key/"), follow=True, REMOTE_ADDR=address)
    new_password = "a brand new passphrase 42"
    done = browser.post(form.redirect_chain[-1][0], {"password1": new_password, "password2": new_password}, REMOTE_ADDR=address)
    assert done.status_code == 302 and done["Location"] == "/accounts/password/reset/key/done/"
    return new_password


def test_resetting_ones_own_password_does_not_lift_the_per_address_limit(user):
    mallory = make_user("mallory@c.example")
    for n in range(10):
        assert sign_in(f"guess{n}@c.example", WRONG, ATTACKER).status_code == 200
    assert sign_in("guess10@c.example", WRONG, ATTACKER).status_code == 429

    reset_password(mallory.email, ATTACKER)

    refused = sign_in("guess11@c.example", WRONG, ATTACKER)
    assert refused.status_code == 429 and TOO_MANY_FROM_HERE in refused.content.decode()


# ---------------------------------------------------------------------------------------------
# The API's throttle reads the client address the same way
# ---------------------------------------------------------------------------------------------
def throttle_identity(**meta: str) -> str:
    request = Request(APIRequestFactory().get("/api/v1/projects/", **meta))
    return ApiTokenRateThrottle().get_cache_key(request, view=None)


def test_the_api_throttle_trusts_the_same_number_of_proxies_as_sign_in():
    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == settings.ALLAUTH_TRUSTED_PROXY_COUNT == 0


def test_a_forged_forwarded_for_does_not_change_the_api_throttle_identity():
    plain = throttle_identity(REMOTE_ADDR=ATTACKER)
    forged = throttle_identity(REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR="198.18.0.1")

    assert forged == plain and plain.endswith(f"ip:{ATTACKER}")


def test_behind_a_trusted_proxy_the_api_throttle_counts_the_client_address():
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}):
        identity = throttle_identity(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"198.18.0.1, {OWNER}")

    assert identity.endswith(f"ip:{OWNER}")
