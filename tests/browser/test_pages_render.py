"""Every main page renders in Chromium, light and dark, desktop and phone-sized, with no console
errors and nothing fetched from outside the server (no CDN: Chart.js and Swagger UI are ours).

The screenshots land in test-artifacts/screenshots/pages-<variant>-<page>.png for review."""

from __future__ import annotations

import re

import pytest

from accounts.models import ApiToken, Invitation, Role
from tests.conftest import PASSWORD

from .conftest import DESKTOP, MOBILE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VARIANTS = {
    "light": {"viewport": DESKTOP, "dark": False},
    "dark": {"viewport": DESKTOP, "dark": True},
    "mobile": {"viewport": MOBILE, "dark": False},
    "mobile-dark": {"viewport": MOBILE, "dark": True},
}


def theme_of(page) -> str:
    return page.evaluate("document.documentElement.getAttribute('data-theme')")


def assert_fits_the_viewport(page, name: str) -> None:
    """Nothing makes the page scroll sideways (tables scroll inside their own box)."""
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{name}: the page is {overflow}px wider than the viewport"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_main_pages_render_cleanly(open_browser, personas, variant):
    config = VARIANTS[variant]
    b = open_browser(viewport=config["viewport"], color_scheme="light")
    page = b.page
    project, org, owner = personas.project, personas.org, personas.owner
    ApiToken.issue(project=project, name="production backend", scopes=["read", "ingest"], by=owner)
    Invitation.issue(org, "grace@hopper.example", Role.MEMBER, by=owner)

    def visit(name: str, path: str) -> None:
        page.goto(b.url(path))
        page.wait_for_load_state("networkidle")
        if path != "/api/docs/":  # Swagger UI's own page has no theme toggle
            assert theme_of(page) == ("dark" if config["dark"] else "light"), (
                f"{name} lost the theme"
            )
        assert_fits_the_viewport(page, name)
        b.shot(f"pages-{variant}-{name}")

    # --- Anonymous -----------------------------------------------------------------------------
    page.goto(b.url("/"))
    assert theme_of(page) == "light"
    if config["dark"]:
        page.click("#theme-toggle")
        assert theme_of(page) == "dark"  # and it sticks for every next page (localStorage)
    visit("01-landing", "/")
    assert page.get_by_role("link", name="Create a free account").is_visible()
    visit("02-login", "/accounts/login/")
    visit("03-signup", "/accounts/signup/")

    # --- Sign in through the form --------------------------------------------------------------
    page.goto(b.url("/accounts/login/"))
    page.fill("input[name=login]", owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile(rf"/projects/{project.uuid}/$"))

    visit("04-dashboard", f"/projects/{project.uuid}/")
    assert page.locator("[data-testid=kpis] .kpi").count() >= 4
    assert page.get_by_test_id("overview-empty").is_visible()  # no cost events: no charts yet

    visit("05-api-tokens", f"/projects/{project.uuid}/tokens/")
    assert page.locator("table").get_by_text("production backend").is_visible()

    visit("06-project-settings", f"/projects/{project.uuid}/settings/")
    assert page.get_by_role("button", name="Delete project").is_visible()

    visit("07-organization-settings", f"/orgs/{org.uuid}/")
    assert page.locator("[data-testid=member-row]").count() == 4
    assert page.get_by_text("grace@hopper.example").is_visible()

    visit("08-alerts", "/alerts/")
    assert page.get_by_role("heading", name="Alerts").is_visible()

    visit("09-email-addresses", "/accounts/email/")
    assert page.locator("main").get_by_text(owner.email).first.is_visible()
    visit("10-change-password", "/accounts/password/change/")

    page.goto(b.url("/api/docs/"))
    page.wait_for_selector(".swagger-ui .info .title")
    page.wait_for_load_state("networkidle")
    assert page.locator(".swagger-ui").count() >= 1
    assert "Pulse API" in page.locator(".swagger-ui .info .title").inner_text()
    b.shot(f"pages-{variant}-11-api-docs")

    b.assert_clean()
