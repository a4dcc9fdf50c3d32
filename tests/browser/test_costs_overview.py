"""The costs overview on the project dashboard in Chromium: both charts drawn with the page's
numbers, the range buttons change the data, money in GBP for a person who picked it, the empty
state for a project without events, desktop and phone-sized; no console errors, no CSP
violations, nothing fetched from elsewhere.

Screenshots land in /tmp/shots/overview-*.png for review."""

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
    """Calls every 9 hours over 60 days (so 7, 30 and 90 days hold different data)."""
    priced_acme_catalog()
    token, _ = ApiToken.issue(project=personas.project, name="production backend", scopes=["ingest"], by=personas.owner)
    now = timezone.now()
    items = [{
        "provider": "acme-ai", "model": MODELS[i % 3], "input_tokens": 1200 + 37 * (i % 40),
        "output_tokens": 180 + 11 * (i % 30), "latency_ms": 400 + 13 * (i % 50),
        "status_code": 500 if i % 23 == 7 else 200, "success": i % 23 != 7,
        "timestamp": (now - timedelta(hours=9 * i)).isoformat(), "tags": {"feature": ["chat", "search"][i % 2]},
    } for i in range(160)]
    assert not ingest(personas.project, items, token=token).errors
    ExchangeRate.objects.create(currency="GBP", date=date(2026, 11, 20), per_usd=Decimal("0.75"))


def charts(page) -> dict:
    """What Chart.js itself holds for each chart: labels and the datasets' values."""
    return page.evaluate(
        """() => Object.fromEntries(["spend-chart", "model-chart"].map((id) => {
            const canvas = document.getElementById(id);
            const chart = canvas && Chart.getChart(canvas);
            return [id, chart ? {labels: chart.data.labels, data: chart.data.datasets.map((d) => d.data),
                                 axes: Object.keys(chart.scales)} : null];
        }))"""
    )


def test_the_overview_draws_its_charts_and_the_range_changes_them(open_browser, personas, seeded):
    personas.viewer.display_currency = "GBP"
    personas.viewer.save()
    b = open_signed_in(open_browser, personas.viewer)
    page = b.page
    page.goto(b.url(f"/projects/{personas.project.uuid}/"))
    page.wait_for_load_state("networkidle")

    drawn = charts(page)
    spend, models = drawn["spend-chart"], drawn["model-chart"]
    assert len(spend["labels"]) == 30 and {"tokens", "cost"} <= set(spend["axes"])
    tokens, cost = spend["data"]
    assert sum(tokens) > 0 and sum(cost) > 0
    assert models["labels"] == ["acme-ai/acme-large", "acme-ai/acme-small"]  # no $0 slice for the unpriced one
    assert "mystery-model" in page.get_by_test_id("unpriced-models").inner_text()
    kpis = page.get_by_test_id("kpis").inner_text()
    assert "£" in kpis and "$" not in kpis
    assert page.get_by_test_id("recent-day").count() == 5
    assert page.get_by_test_id("trend-row").count() == 3
    shot(b, "overview-desktop")

    page.get_by_test_id("ranges").get_by_role("link", name="7d", exact=True).click()
    page.wait_for_url("**range=7d")
    page.wait_for_load_state("networkidle")
    week = charts(page)["spend-chart"]
    assert len(week["labels"]) == 7 and sum(week["data"][0]) < sum(tokens)

    page.get_by_test_id("ranges").get_by_role("link", name="90d", exact=True).click()
    page.wait_for_url("**range=90d")
    page.wait_for_load_state("networkidle")
    quarter = charts(page)["spend-chart"]
    assert len(quarter["labels"]) == 90 and sum(quarter["data"][0]) > sum(tokens)
    assert_clean(b)


def test_the_overview_fits_a_phone_and_dark_mode(open_browser, personas, seeded):
    b = open_signed_in(open_browser, personas.owner, viewport=MOBILE)
    page = b.page
    page.goto(b.url(f"/projects/{personas.project.uuid}/"))
    page.wait_for_load_state("networkidle")
    assert charts(page)["spend-chart"] is not None
    shot(b, "overview-mobile")
    assert overflow(page) <= 0
    for n, testid in enumerate(["models-card", "recent-activity", "recommendations"]):
        page.get_by_test_id(testid).screenshot(path=str(SHOTS / f"overview-mobile-part{n}.png"), animations="disabled")
    page.click("#theme-toggle")
    assert charts(page)["model-chart"] is not None  # redrawn in the dark palette
    shot(b, "overview-mobile-dark")
    assert_clean(b)


def test_a_project_without_events_shows_how_to_send_them(open_browser, personas):
    b = open_signed_in(open_browser, personas.owner)
    page = b.page
    page.goto(b.url(f"/projects/{personas.project.uuid}/"))
    page.wait_for_load_state("networkidle")
    curl = page.get_by_test_id("curl-example").inner_text()
    assert f"/api/v1/events?project={personas.project.uuid}" in curl and "$PULSE_INGEST_TOKEN" in curl
    sdk = page.get_by_test_id("sdk-example").inner_text()
    assert "pulse_sdk.instrument(openai.OpenAI())" in sdk and f'base_url="{b.base_url}"' in sdk
    assert page.locator("canvas").count() == 0
    shot(b, "overview-empty-desktop")
    b2 = open_signed_in(open_browser, personas.owner, viewport=MOBILE)
    b2.page.goto(b2.url(f"/projects/{personas.project.uuid}/"))
    assert overflow(b2.page) <= 0
    shot(b2, "overview-empty-mobile")
    assert_clean(b)
    assert_clean(b2)
