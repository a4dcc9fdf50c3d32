"""The activity log in Chromium: events listed, filtered by model through the form, one opened
in detail with its cost arithmetic, in GBP for a person who picked it; desktop and phone-sized,
no console errors, no CSP violations, nothing fetched from elsewhere.

Screenshots land in /tmp/shots/costs-*.png for review."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiToken
from costs.ingestion import ingest
from costs.models import ExchangeRate

from .conftest import MOBILE
from .helpers import SHOTS, assert_clean, open_signed_in, overflow, priced_acme_catalog, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MODELS = ["acme-large", "acme-small", "mystery-model"]  # the last has no price


@pytest.fixture
def seeded(personas):
    priced_acme_catalog()
    token, _ = ApiToken.issue(project=personas.project, name="production backend", scopes=["ingest"], by=personas.owner)
    now = timezone.now()
    items = []
    for i in range(90):
        failed = i % 17 == 5
        items.append({
            "provider": "acme-ai", "model": MODELS[i % 3], "input_tokens": 1200 + 37 * i,
            "cached_tokens": 600 if i % 4 == 0 else 0, "output_tokens": 0 if failed else 180 + 11 * i,
            "latency_ms": 400 + 13 * i, "status_code": 429 if failed else 200,
            "timestamp": (now - timedelta(hours=3 * i)).isoformat(),
            "tags": {"feature": ["chat", "search", "summarize"][i % 3], "environment": "production",
                     "end_user": f"user-{i % 7:03d}"},
        })
    assert not ingest(personas.project, items, token=token).errors
    ExchangeRate.objects.create(currency="GBP", date=date(2026, 11, 20), per_usd=Decimal("0.75"))


def test_the_activity_log_filters_by_model_and_opens_an_event(open_browser, personas, seeded):
    personas.viewer.display_currency = "GBP"
    personas.viewer.save()
    b = open_signed_in(open_browser, personas.viewer)
    page = b.page
    page.goto(b.url(f"/projects/{personas.project.uuid}/"))
    page.get_by_role("link", name="Activity", exact=True).click()
    page.wait_for_url(f"**/projects/{personas.project.uuid}/activity/")
    rows = page.get_by_test_id("event-row")
    assert rows.count() == 50
    assert "Page 1 of 2" in page.get_by_test_id("pager").inner_text()
    assert page.get_by_test_id("unpriced-warning").is_visible()
    assert "acme-ai/mystery-model" in page.get_by_test_id("unpriced-warning").inner_text()
    assert "£" in page.locator("main").inner_text() and "$" not in rows.first.inner_text()
    assert "GBP rates as of 20 Nov 2026" in page.locator("main").inner_text()
    shot(b, "costs-activity-desktop")

    page.get_by_label("Model").select_option("acme-small")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**model=acme-small*")
    assert rows.count() == 30
    assert all("acme-small" in text for text in rows.locator("td:nth-child(2)").all_inner_texts())
    assert page.get_by_label("Model").input_value() == "acme-small"  # the form keeps the filter

    rows.first.locator("td").first.get_by_role("link").click()
    page.wait_for_url(f"**/projects/{personas.project.uuid}/activity/*-*/")
    breakdown = page.get_by_test_id("breakdown")
    assert breakdown.is_visible()
    assert "Uncached input" in breakdown.inner_text() and "£" in breakdown.inner_text()
    assert "Acme AI / acme-small" in page.get_by_test_id("price-used").inner_text()
    shot(b, "costs-detail-desktop")
    assert_clean(b)


def test_bad_filters_show_a_message_not_an_error_page(open_browser, personas, seeded):
    b = open_signed_in(open_browser, personas.owner)
    b.page.goto(b.url(f"/projects/{personas.project.uuid}/activity/?tag=oops&start=2026-02-30"))
    errors = b.page.get_by_test_id("filter-errors").inner_text()
    assert "Tag:" in errors and "From:" in errors
    assert b.page.get_by_test_id("event-row").count() == 50
    shot(b, "costs-activity-bad-filters")
    assert_clean(b)


def test_the_cost_pages_fit_a_phone(open_browser, personas, seeded):
    b = open_signed_in(open_browser, personas.owner, viewport=MOBILE)
    page = b.page
    page.goto(b.url(f"/projects/{personas.project.uuid}/activity/?unpriced=on"))
    assert page.get_by_test_id("event-row").count() == 30
    assert overflow(page) <= 0
    shot(b, "costs-activity-mobile")
    page.locator("[data-testid=activity-filters] button[type=submit]").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "costs-activity-mobile-rows.png"), animations="disabled")
    page.get_by_test_id("event-row").first.locator("td").first.get_by_role("link").click()
    page.wait_for_load_state("networkidle")
    assert "unknown (not $0)" in page.locator("main").inner_text()
    assert overflow(page) <= 0
    shot(b, "costs-detail-mobile-unpriced")
    page.goto(b.url(f"/projects/{personas.project.uuid}/activity/?model=acme-large"))
    page.get_by_test_id("event-row").first.locator("td").first.get_by_role("link").click()
    page.wait_for_load_state("networkidle")
    assert overflow(page) <= 0
    shot(b, "costs-detail-mobile")
    page.goto(b.url(f"/projects/{personas.project.uuid}/tokens/"))
    assert overflow(page) <= 0
    shot(b, "costs-tokens-mobile")
    page.goto(b.url("/settings/"))
    shot(b, "costs-settings-mobile")
    assert_clean(b)


def test_the_api_tokens_page_shows_usage(open_browser, personas, seeded):
    b = open_signed_in(open_browser, personas.owner)
    b.page.goto(b.url(f"/projects/{personas.project.uuid}/tokens/"))
    assert "req" in b.page.get_by_test_id("token-requests").first.inner_text()
    shot(b, "costs-tokens-desktop")
    assert_clean(b)
