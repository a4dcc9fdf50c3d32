"""Signing up, signing in (password, emailed code, one-click link), resetting a password and
signing out, through the server-rendered allauth pages."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import mail, signing
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives
from django.test import Client

from accounts import magic_link
from accounts.models import Membership, Organization, Role, User
from accounts.signin_limits import TOO_MANY_CODES_FROM_HERE
from tests.conftest import PASSWORD, make_user
from tests.outbox import html_of, link_in, only_email_to, signed_in_user

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a different, longer passphrase"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def dashboard_url(user: User) -> str:
    project = Organization.objects.visible_to(user).get().projects.get()
    return f"/projects/{project.uuid}/"


def sign_up(client, email: str = "new@c.example") -> None:
    response = client.post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == "/accounts/confirm-email/"


def request_code(client, email: str):
    return client.post("/accounts/login/code/", {"email": email})


def code_from(message: EmailMultiAlternatives) -> str:
    match = re.search(r"Your sign-in code: (\S+)", message.subject)
    assert match, message.subject
    return match.group(1)


def normalized(page, email: str) -> str:
    """The page's HTML with the address and per-request secrets blanked out."""
    html = page.content.decode().replace(email, "EMAIL")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", html)


def password_login(client, email: str, password: str):
    return client.post("/accounts/login/", {"login": email, "password": password})


@pytest.fixture
def own_redis(settings) -> None:
    """Rate-limit counters in a Redis database of this test's own.

    The suite's autouse `cache.clear()` is a FLUSHDB of the shared database: a pytest run started
    by someone else mid-test would wipe the counters these tests build up and make them flaky.
    """
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": settings.REDIS_URL.rsplit("/", 1)[0] + "/15",
        }
    }
    cache.clear()


@pytest.fixture
def user() -> User:
    user = make_user("dana@c.example")
    Organization.create_for_owner(user, name="Dana's organization")
    return user


@pytest.fixture
def login_code_email(client, user: User) -> EmailMultiAlternatives:
    """Dana asked for a sign-in code; this is the email she got."""
    response = request_code(client, user.email)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/code/confirm/"
    return only_email_to(user.email)


# ---------------------------------------------------------------------------------------------
# Signup and email verification
# ---------------------------------------------------------------------------------------------
def test_signup_sends_one_verification_email_with_text_and_html(client):
    sign_up(client, "new@c.example")

    message = only_email_to("new@c.example")
    assert "Confirm your email" in message.subject
    assert "new@c.example" in message.body
    assert "new@c.example" in html_of(message)
    assert link_in(message, "/accounts/confirm-email/").startswith("/accounts/confirm-email/")
    assert len(mail.outbox) == 1


def test_signup_creates_a_personal_organization_owned_by_the_new_user_with_one_project(client):
    sign_up(client, "new@c.example")

    user = User.objects.get(email="new@c.example")
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.name == "new's organization"
    assert membership.organization.projects.count() == 1


def test_before_verifying_the_new_user_cannot_reach_the_app(client):
    sign_up(client, "new@c.example")
    user = User.objects.get(email="new@c.example")
    assert signed_in_user(client) is None

    dashboard = client.get(dashboard_url(user))
    assert dashboard.status_code == 302
    assert dashboard["Location"].startswith("/accounts/login/")

    # The right password does not help: allauth sends them back to "check your inbox".
    response = password_login(client, "new@c.example", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert signed_in_user(client) is None
    assert client.get(dashboard_url(user)).status_code == 302


def test_following_the_verification_link_signs_in_and_lands_on_the_project_dashboard(client):
    sign_up(client, "new@c.example")
    confirm_path = link_in(only_email_to("new@c.example"), "/accounts/confirm-email/")

    page = client.get(confirm_path)
    assert page.status_code == 200
    assert signed_in_user(client) is None  # a GET (a mail scanner) confirms nothing
    response = client.post(confirm_path, follow=True)

    user = User.objects.get(email="new@c.example")
    assert EmailAddress.objects.get(user=user).verified
    assert signed_in_user(client) == user
    assert response.redirect_chain[-1][0] == dashboard_url(user)
    assert response.status_code == 200
    assert client.get(dashboard_url(user)).status_code == 200


def test_signing_up_with_a_taken_address_emails_its_owner_and_reveals_nothing(client, user):
    response = client.post(
        "/accounts/signup/",
        {"email": user.email.upper(), "password1": PASSWORD, "password2": PASSWORD},
    )

    # The same answer as for a new address...
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    # ...but no second account, and the owner hears about it with a way back in.
    assert User.objects.filter(email__iexact=user.email).count() == 1
    message = only_email_to(user.email)
    assert "already have" in message.subject
    assert link_in(message, "/accounts/password/reset/") == "/accounts/password/reset/"


# ---------------------------------------------------------------------------------------------
# Login by emailed code
# ---------------------------------------------------------------------------------------------
def test_the_login_code_email_has_the_code_in_the_subject_and_body_and_a_one_click_link(
    login_code_email,
):
    code = code_from(login_code_email)
    assert code in login_code_email.body
    assert code in html_of(login_code_email)
    assert link_in(login_code_email, "/accounts/login/link/").startswith("/accounts/login/link/")


def test_entering_the_emailed_code_signs_in(client, user, login_code_email):
    response = client.post(
        "/accounts/login/code/confirm/", {"code": code_from(login_code_email)}, follow=True
    )

    assert signed_in_user(client) == user
    assert response.redirect_chain[-1][0] == dashboard_url(user)


def test_a_wrong_code_three_times_invalidates_the_code(client, user, login_code_email):
    assert settings.ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS == 3
    code = code_from(login_code_email)

    for _attempt in range(2):
        response = client.post("/accounts/login/code/confirm/", {"code": "WRONG1"})
        assert response.status_code == 200
        assert "Incorrect code" in response.content.decode()
    third = client.post("/accounts/login/code/confirm/", {"code": "WRONG1"})
    assert third.status_code == 302
    assert third["Location"] == "/accounts/login/code/"

    # The right code no longer works: the attempt was thrown away.
    response = client.post("/accounts/login/code/confirm/", {"code": code})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/code/"
    assert signed_in_user(client) is None


def test_a_code_for_an_unknown_email_sends_the_unknown_account_email_and_reveals_nothing(
    client, user
):
    known = request_code(client, user.email)
    known_page = client.get(known["Location"])
    client.logout()
    client.cookies.clear()

    unknown = request_code(client, "nobody@c.example")
    unknown_page = client.get(unknown["Location"])

    assert unknown.status_code == known.status_code == 302
    assert unknown["Location"] == known["Location"] == "/accounts/login/code/confirm/"
    assert unknown_page.status_code == known_page.status_code == 200
    # The "check your inbox" page reads the same whether or not the account exists.
    assert normalized(unknown_page, "nobody@c.example") == normalized(known_page, user.email)
    message = only_email_to("nobody@c.example")
    assert "unknown account" in message.subject.lower()
    assert "/accounts/signup/" in message.body
    assert "/accounts/signup/" in html_of(message)
    assert "code" not in message.subject.lower()


def test_requesting_codes_is_rate_limited_per_email_and_address(client, user, own_redis):
    # Per (email, address), not per email alone: others' requests never refuse the owner's
    # (tests/accounts/test_login_lockout.py holds that and the per-email cap).
    assert settings.ACCOUNT_RATE_LIMITS["login_code_here"] == "3/m/key"
    for _attempt in range(3):
        client.cookies.clear()  # a fresh browser each time, as a script hammering the form
        assert request_code(client, user.email).status_code == 302
    client.cookies.clear()

    response = request_code(client, user.email)

    assert response.status_code == 200
    assert TOO_MANY_CODES_FROM_HERE in response.content.decode()
    assert len([m for m in mail.outbox if user.email in m.to]) == 3
    # Another address is not affected.
    assert request_code(client, "someone-else@c.example").status_code == 302


# ---------------------------------------------------------------------------------------------
# One-click link (magic link)
# ---------------------------------------------------------------------------------------------
def test_opening_the_link_shows_a_confirmation_and_does_not_sign_in(client, user, login_code_email):
    link = link_in(login_code_email, "/accounts/login/link/")
    client.logout()

    page = client.get(link)

    assert page.status_code == 200
    assert user.email in page.content.decode()
    assert '<form method="post"' in page.content.decode()
    assert signed_in_user(client) is None
    assert client.get(link).status_code == 200  # a scanner's prefetch did not use it up


def test_confirming_the_link_signs_in_and_lands_on_the_dashboard(client, user, login_code_email):
    link = link_in(login_code_email, "/accounts/login/link/")

    response = client.post(link, follow=True)

    assert signed_in_user(client) == user
    assert response.redirect_chain[-1][0] == dashboard_url(user)
    assert response.status_code == 200


def test_a_link_sign_in_also_lasts_seven_days(client, user, login_code_email):
    response = client.post(link_in(login_code_email, "/accounts/login/link/"))

    assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 7 * 24 * 60 * 60


def test_the_link_works_once(client, user, login_code_email):
    link = link_in(login_code_email, "/accounts/login/link/")
    client.post(link)
    client.logout()

    assert client.get(link).status_code == 400
    again = client.post(link)

    assert again.status_code == 400
    assert signed_in_user(client) is None


def test_the_link_stops_working_once_the_code_was_used(client, user, login_code_email):
    link = link_in(login_code_email, "/accounts/login/link/")
    client.post("/accounts/login/code/confirm/", {"code": code_from(login_code_email)})
    client.logout()

    assert client.post(link).status_code == 400
    assert signed_in_user(client) is None


def test_the_link_stops_working_once_the_password_changes(client, user, login_code_email):
    link = link_in(login_code_email, "/accounts/login/link/")
    user.set_password(NEW_PASSWORD)
    user.save()

    assert client.post(link).status_code == 400
    assert signed_in_user(client) is None


def test_the_confirmation_button_works_with_csrf_checks_on(user, login_code_email):
    browser = Client(enforce_csrf_checks=True)
    link = link_in(login_code_email, "/accounts/login/link/")
    page = browser.get(link).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    assert browser.post(link).status_code == 403  # no token, no sign-in
    response = browser.post(link, {"csrfmiddlewaretoken": csrf})

    assert response.status_code == 302
    assert signed_in_user(browser) == user


def test_a_tampered_link_is_refused(client, user):
    token = magic_link.make_token(user)
    payload, rest = token.split(":", 1)
    tampered = ("A" if payload[0] != "A" else "B") + payload[1:] + ":" + rest

    assert client.post(f"/accounts/login/link/{tampered}/").status_code == 400
    assert client.post(f"/accounts/login/link/{token}x/").status_code == 400
    assert client.post("/accounts/login/link/not-a-token/").status_code == 400
    assert signed_in_user(client) is None


def test_a_value_signed_for_another_purpose_is_not_a_link(client, user):
    # Same payload and same SECRET_KEY, but not the magic link's salt.
    payload = {"u": str(user.pk), "f": magic_link._fingerprint(user)}
    other_purpose = signing.dumps(payload, salt="accounts.something-else")

    assert client.post(f"/accounts/login/link/{other_purpose}/").status_code == 400
    assert signed_in_user(client) is None


def test_an_expired_link_is_refused(client, user, monkeypatch):
    issued_at = time.time() - settings.ACCOUNT_LOGIN_BY_CODE_TIMEOUT - 1
    with monkeypatch.context() as patch:
        patch.setattr(signing.time, "time", lambda: issued_at)
        link = magic_link.link_for(user)

    response = client.post(urlsplit(link).path)

    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert signed_in_user(client) is None


def test_a_link_for_a_deactivated_user_is_refused(client, user):
    link = urlsplit(magic_link.link_for(user)).path
    user.is_active = False
    user.save()

    assert client.post(link).status_code == 400
    assert signed_in_user(client) is None


# ---------------------------------------------------------------------------------------------
# Password reset
# ---------------------------------------------------------------------------------------------
def test_password_reset_email_lets_you_set_a_new_password_and_the_old_one_stops_working(
    client, user
):
    response = client.post("/accounts/password/reset/", {"email": user.email})
    assert response.status_code == 302
    message = only_email_to(user.email)
    assert "Reset your password" in message.subject
    reset_link = link_in(message, "/accounts/password/reset/key/")

    # allauth moves the key into the session and redirects to a key-less URL.
    form_page = client.get(reset_link, follow=True)
    assert form_page.status_code == 200
    form_url = form_page.redirect_chain[-1][0]
    done = client.post(form_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert done["Location"] == "/accounts/password/reset/key/done/"
    assert signed_in_user(client) is None  # ACCOUNT_LOGIN_ON_PASSWORD_RESET is off

    assert password_login(client, user.email, PASSWORD).status_code == 200
    assert signed_in_user(client) is None
    assert password_login(client, user.email, NEW_PASSWORD).status_code == 302
    assert signed_in_user(client) == user


def test_a_password_reset_link_works_once(client, user):
    client.post("/accounts/password/reset/", {"email": user.email})
    reset_link = link_in(only_email_to(user.email), "/accounts/password/reset/key/")
    form_url = client.get(reset_link, follow=True).redirect_chain[-1][0]
    client.post(form_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    again = client.get(reset_link, follow=True)

    assert "password1" not in again.content.decode()
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


# ---------------------------------------------------------------------------------------------
# Password login, sessions, logout
# ---------------------------------------------------------------------------------------------
def test_password_login_lands_on_the_dashboard(client, user):
    response = client.post(
        "/accounts/login/", {"login": user.email, "password": PASSWORD}, follow=True
    )

    assert signed_in_user(client) == user
    assert response.redirect_chain[-1][0] == dashboard_url(user)


def test_sessions_last_seven_days(client, user):
    assert settings.SESSION_COOKIE_AGE == 7 * 24 * 60 * 60
    assert settings.ACCOUNT_SESSION_REMEMBER is True  # always remembered, no checkbox

    response = password_login(client, user.email, PASSWORD)

    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["max-age"] == 7 * 24 * 60 * 60
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


def test_logout_is_a_post(client, user):
    client.force_login(user)

    client.get("/accounts/logout/")
    assert signed_in_user(client) == user  # a GET only shows the "are you sure" page

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert signed_in_user(client) is None
    assert client.get(dashboard_url(user)).status_code == 302


# ---------------------------------------------------------------------------------------------
# Rate limits on failed logins
# ---------------------------------------------------------------------------------------------
def test_repeated_failed_logins_for_one_account_are_rate_limited(client, user, own_redis):
    assert settings.ACCOUNT_RATE_LIMITS["login_failed_here"] == "5/5m/key"  # per (account, address)
    for _attempt in range(5):
        response = password_login(client, user.email, "wrong password")
        assert response.status_code == 200
        assert "not correct" in response.content.decode()

    # Now even the right password is turned away from this address, with a 429 that says why
    # (other addresses are not: see test_login_lockout.py).
    response = password_login(client, user.email, PASSWORD)

    assert response.status_code == 429
    assert "Too many failed sign-in attempts from your network" in response.content.decode()
    assert signed_in_user(client) is None


def test_the_failed_login_limit_is_per_account(client, user, own_redis):
    other = make_user("erin@c.example")
    Organization.create_for_owner(other, name="Erin's organization")
    for _attempt in range(5):
        password_login(client, user.email, "wrong password")

    response = password_login(client, other.email, PASSWORD)

    assert response.status_code == 302
    assert signed_in_user(client) == other


def test_a_successful_login_does_not_count_as_a_failure(client, user, own_redis):
    for _attempt in range(4):
        password_login(client, user.email, "wrong password")
    assert password_login(client, user.email, PASSWORD).status_code == 302
    client.logout()

    # Still one failure left before the limit, as before the successful login.
    assert "not correct" in password_login(client, user.email, "wrong").content.decode()
    assert "Too many" in password_login(client, user.email, PASSWORD).content.decode()
