"""A new user's first session, end to end in Chromium: sign up, verify the email, see the
dashboard, create an API token, log out, and come back with an emailed sign-in code."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.core import mail

from accounts.models import ApiToken, User
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMAIL = "ada@lovelace.example"
LINK = re.compile(r"https?://[^\s\"'<>]+")
DASHBOARD = re.compile(r"/projects/[0-9a-f-]{36}/$")


def newest_email_to(address: str):
    sent = [message for message in mail.outbox if address in message.to]
    assert sent, f"no email to {address}; outbox: {[m.subject for m in mail.outbox]}"
    return sent[-1]


def path_of_link(message, contains: str) -> str:
    links = [link for link in LINK.findall(message.body) if contains in link]
    assert links, f"no {contains!r} link in {message.body!r}"
    return urlsplit(links[0]).path


def assert_dashboard(b) -> None:
    page = b.page
    assert DASHBOARD.search(urlsplit(page.url).path), page.url
    tiles = page.locator("[data-testid=kpis] .kpi")
    assert tiles.count() >= 4
    for label in ("Total cost", "Requests", "Tokens"):
        assert page.locator("[data-testid=kpis]").get_by_text(label, exact=True).is_visible()
    # A new project has no cost events: the page shows how to send them instead of empty charts.
    assert page.get_by_test_id("curl-example").is_visible()
    assert page.locator("canvas#spend-chart").count() == 0


def test_signup_verify_token_logout_and_sign_in_with_a_code(browser, live_server):
    b, page = browser, browser.page

    # --- Sign up -------------------------------------------------------------------------------
    page.goto(b.url("/accounts/signup/"))
    b.shot("flow-01-signup")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/accounts/confirm-email/")
    assert page.get_by_role("heading", name=re.compile("verify your email", re.I)).is_visible()
    b.shot("flow-02-verification-sent")
    assert User.objects.filter(email=EMAIL, is_active=True).exists()

    # --- Verify the address from the email ----------------------------------------------------
    confirmation = newest_email_to(EMAIL)
    page.goto(b.url(path_of_link(confirmation, "/accounts/confirm-email/")))
    b.shot("flow-03-confirm-email")
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(DASHBOARD)
    b.shot("flow-04-dashboard")
    assert_dashboard(b)

    # --- Create an API token ------------------------------------------------------------------
    page.locator("nav.nav").get_by_role("link", name="API tokens").click()
    page.wait_for_url("**/tokens/")
    page.fill("input[name=name]", "production backend")
    page.check("input[name=scopes][value=read]")
    page.check("input[name=scopes][value=ingest]")
    page.get_by_role("button", name="Create token").click()
    page.wait_for_load_state()
    raw = page.locator("#new-token-value").inner_text().strip()
    assert re.fullmatch(r"pk_live_[A-Za-z0-9_-]{40,}", raw), raw
    token = ApiToken.objects.get(project__organization__memberships__user__email=EMAIL)
    assert sorted(token.scopes) == ["ingest", "read"]
    assert raw.startswith(token.prefix)
    table = page.locator("table")
    assert table.get_by_text(token.masked).is_visible()
    assert table.get_by_text("production backend").is_visible()
    b.shot("flow-05-token-created")
    assert page.content().count(raw) == 1, "the raw token is shown exactly once"

    page.goto(page.url)  # a fresh GET of the tokens page, not a form resubmission
    html = page.content()
    assert raw not in html
    assert raw[len(token.prefix) :] not in html
    assert token.prefix in html
    assert page.locator("[data-testid=new-token]").count() == 0
    b.shot("flow-06-tokens-after-reload")

    # --- Log out through the user menu --------------------------------------------------------
    page.locator("[data-testid=user-menu] > summary").click()
    b.shot("flow-07-user-menu")
    page.locator("[data-testid=user-menu]").get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    assert page.locator("[data-testid=user-menu]").count() == 0

    # --- Sign in with an emailed code ---------------------------------------------------------
    page.goto(b.url("/accounts/login/"))
    b.shot("flow-08-login")
    page.get_by_role("link", name=re.compile("sign-in code", re.I)).click()
    page.wait_for_url("**/accounts/login/code/")
    page.fill("input[name=email]", EMAIL)
    b.shot("flow-09-request-code")
    sent_before = len(mail.outbox)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url("**/accounts/login/code/confirm/")
    assert len(mail.outbox) == sent_before + 1
    message = newest_email_to(EMAIL)
    code = re.search(r"Your sign-in code: (\S+)", message.subject).group(1)
    page.fill("input[name=code]", code)
    b.shot("flow-10-enter-code")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(DASHBOARD)
    assert_dashboard(b)
    b.shot("flow-11-dashboard-after-code-login")

    b.assert_clean()
