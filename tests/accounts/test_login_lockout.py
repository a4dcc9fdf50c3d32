"""Password sign-in failures lock out the guesser, not the account's owner.

Failures count per (account, address): five wrong passwords for an account from one address
refuse that address for that account (a 429 with a page that says why) while its owner still
signs in from anywhere else. One address trying many accounts is limited across them, and an
account has a generous ceiling for guesses spread over many addresses, past which its owner
still signs in with an emailed code. The Django admin signs in through the same page.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from accounts.adapter import TOO_MANY_FOR_ACCOUNT, TOO_MANY_FROM_HERE
from accounts.models import User
from tests.conftest import PASSWORD, make_user
from tests.outbox import link_in, only_email_to

pytestmark = pytest.mark.django_db

ATTACKER, OWNER, ELSEWHERE = "203.0.113.7", "198.51.100.20", "192.0.2.99"
WRONG = "not the password"
NOT_CORRECT = "The email address and/or password you specified are not correct."


def sign_in(email: str, password: str, address: str, client: Client | None = None, next_url: str = ""):
    client = client or Client(REMOTE_ADDR=address)
    url = f"/accounts/login/?next={next_url}" if next_url else "/accounts/login/"
    return client.post(url, {"login": email, "password": password}, REMOTE_ADDR=address)


@pytest.fixture
def user() -> User:
    return make_user("victim@a.example")


def fail_five_times(email: str, address: str) -> None:
    for _attempt in range(5):
        response = sign_in(email, WRONG, address)
        assert response.status_code == 200 and NOT_CORRECT in response.content.decode()


def test_the_rates_are_per_account_and_address_per_address_and_a_ceiling_per_account():
    assert settings.ACCOUNT_RATE_LIMITS["login_failed"] == "10/m/ip,5/5m/key"
    assert settings.ACCOUNT_RATE_LIMITS["login_failed_account"] == "50/h/key"


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


def test_guesses_spread_over_many_addresses_meet_a_ceiling_and_the_emailed_code_still_works(user):
    for n in range(10):
        fail_five_times(user.email, f"10.9.{n}.1")

    refused = sign_in(user.email, PASSWORD, OWNER)

    assert refused.status_code == 429
    assert TOO_MANY_FOR_ACCOUNT in refused.content.decode()
    # The refused attempt did not count against the owner's address.
    code = Client(REMOTE_ADDR=OWNER).post("/accounts/login/code/", {"email": user.email}, REMOTE_ADDR=OWNER)
    assert code.status_code == 302 and code["Location"] == "/accounts/login/code/confirm/"


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
