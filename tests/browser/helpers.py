"""What several browser tests share: signing a persona in, watching for CSP violations,
screenshots for review, the horizontal-overflow check, and a small priced model catalog."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.test import Client
from django.utils import timezone

from benchmarks.models import Model, Price, Provider, ProviderKind

from .conftest import DESKTOP

SHOTS = Path("/tmp/shots")
# Collects CSP violations (enforced or report-only) for the test to read; Playwright's init
# scripts are not subject to the page's CSP.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


def sign_in(b, user) -> None:
    """A session made by Django's test client, handed to the browser (the login form itself is
    covered by test_pages_render and test_signup_to_code_login)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    b.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": b.base_url}])


def open_signed_in(open_browser, user, viewport=DESKTOP):
    b = open_browser(viewport=viewport)
    b.context.add_init_script(WATCH_CSP)
    if user is not None:
        sign_in(b, user)
    return b


def assert_clean(b) -> None:
    b.assert_clean()
    assert b.page.evaluate("window.__cspViolations") == []


def shot(b, name: str) -> None:
    """The whole page, and what fits the screen (the part a person sees first)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    b.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True, animations="disabled")
    b.page.screenshot(path=str(SHOTS / f"{name}-screen.png"), animations="disabled")


def overflow(page) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def priced_acme_catalog() -> None:
    """Provider 'acme-ai' with two priced models (a third, 'mystery-model', stays unpriced)."""
    provider = Provider.objects.create(name="Acme AI", kind=ProviderKind.OPENAI_COMPATIBLE,
                                       base_url="https://acme.example/v1", genai_prices_id="acme-ai")
    for name, (inp, out) in {"acme-large": ("2.5", "10"), "acme-small": ("0.15", "0.6")}.items():
        Price.objects.create(model=Model.objects.create(provider=provider, name=name), input_mtok=Decimal(inp),
                             output_mtok=Decimal(out), cache_read_mtok=Decimal(inp) / 4,
                             valid_from=timezone.now() - timedelta(days=365), source=Price.Source.GENAI_PRICES)
