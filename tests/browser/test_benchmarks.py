"""The benchmark pages in Chromium: charts drawn with data (by Chart.js, not just a canvas), the
range filter changing the numbers, the table sortable on a phone, no console errors or CSP
violations; and a private target added through the form, its key never shown again.

Screenshots land in test-artifacts/screenshots/benchmarks-*.png for review."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from benchmarks.models import BenchmarkResult, Model, Provider, ProviderKind, Run, Target

from .conftest import DESKTOP, MOBILE
from .helpers import assert_clean, open_signed_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECRET = "sk-browser-typed-5e7d"
# Results per model: (how many days ago, how many). 24h, 7d and 30d each see a different count.
SPREAD = [(0.1, 2), (0.5, 1), (3, 3), (6, 1), (12, 2), (25, 3)]
EXPECTED_SAMPLES = {"24h": 3, "7d": 7, "30d": 12}
CHARTS = ["ttft-chart", "latency-chart", "tps-chart", "errors-chart"]
def seed(run: Run, model_name: str, provider_name: str, *, ttft: float, model: Model | None = None) -> None:
    now = timezone.now()
    results = []
    for days, count in SPREAD:
        for i in range(count):
            results.append(BenchmarkResult(
                run=run, organization=run.organization, target=run.target, model=model,
                provider=model.provider if model else None, model_name=model_name, provider_name=provider_name,
                success=True, ttft_ms=ttft + 10 * i + days, tps=90.0 - days, total_latency_ms=800 + 20 * i + days,
                output_tokens=64, status_code=200, created_at=now - timedelta(days=days, minutes=i),
            ))
    BenchmarkResult.objects.bulk_create(results)


@pytest.fixture
def private_results(personas) -> Target:
    target = Target.objects.create(organization=personas.org, name="Our gateway", kind=ProviderKind.OPENAI_COMPATIBLE,
                                   base_url="https://gw.example/v1", model_names=["acme-small", "acme-large"])
    run = Run.objects.create(name="history", triggered_by=Run.Trigger.SCHEDULE, organization=personas.org,
                             target=target, status=Run.Status.FINISHED)
    seed(run, "acme-small", target.name, ttft=120)
    seed(run, "acme-large", target.name, ttft=340)
    return target


@pytest.fixture
def public_results() -> None:
    run = Run.objects.create(name="public", triggered_by=Run.Trigger.SCHEDULE, status=Run.Status.FINISHED)
    names = ["gpt-4o-mini", "claude-3-5-haiku-latest", "llama-3.1-70b-versatile", "gemini-2.0-flash",
             "mistral-small-latest", "deepseek-chat"]  # long names, to show every bar keeps its label
    for i, name in enumerate(names):
        provider = Provider.objects.create(name=f"Provider {i}", kind=ProviderKind.OPENAI_COMPATIBLE,
                                           base_url=f"https://p{i}.example/v1")
        model = Model.objects.create(provider=provider, name=name, is_active=True)
        seed(run, name, provider.name, ttft=100 + 60 * i, model=model)


def drawn_charts(page) -> dict[str, list[int]]:
    """Per chart canvas: how many points each dataset holds, as Chart.js itself reports."""
    return page.evaluate(
        """(ids) => Object.fromEntries(ids.map((id) => {
            const chart = Chart.getChart(document.getElementById(id));
            return [id, chart ? chart.data.datasets.map((d) => d.data.filter((v) => v !== null).length) : null];
        }))""",
        CHARTS,
    )


def samples_by_model(page) -> dict[str, int]:
    rows = page.locator("[data-testid=model-row]")
    return {
        rows.nth(i).locator("td").nth(0).locator("strong").inner_text(): int(rows.nth(i).locator("td").nth(1).inner_text())
        for i in range(rows.count())
    }


def choose_range(b, key: str) -> None:
    b.page.locator("[data-testid=filters]").get_by_role("link", name=key, exact=True).click()
    b.page.wait_for_url(f"**range={key}*")
    b.page.wait_for_load_state("networkidle")


def test_the_organization_page_draws_its_charts_and_the_range_changes_the_data(open_browser, personas, private_results):
    b = open_signed_in(open_browser, personas.viewer)
    b.page.goto(b.url(f"/orgs/{personas.org.uuid}/benchmarks/"))
    b.page.wait_for_load_state("networkidle")

    charts = drawn_charts(b.page)
    assert all(charts[name] for name in CHARTS), charts
    assert charts["ttft-chart"] == [2]  # one bar per model
    assert len(charts["latency-chart"]) == 2 and all(n > 0 for n in charts["latency-chart"])
    assert samples_by_model(b.page) == {"acme-small": 3, "acme-large": 3}
    b.shot("benchmarks-org-24h")

    for key in ("7d", "30d"):
        choose_range(b, key)
        expected = EXPECTED_SAMPLES[key]
        assert samples_by_model(b.page) == {"acme-small": expected, "acme-large": expected}
        assert f"last {'7 days' if key == '7d' else '30 days'}" in b.page.locator("main").inner_text()
        assert all(drawn_charts(b.page)[name] for name in CHARTS)
    b.shot("benchmarks-org-30d")
    assert_clean(b)


def test_the_leaderboard_labels_every_bar_and_its_range_filter_works(open_browser, public_results):
    b = open_signed_in(open_browser, None)
    b.page.goto(b.url("/leaderboard/"))
    b.page.wait_for_load_state("networkidle")

    ttft = b.page.evaluate("""() => {
        const chart = Chart.getChart(document.getElementById('ttft-chart'));
        return {bars: chart.data.labels.length, ticks: chart.scales.y.ticks.length, axis: chart.options.indexAxis};
    }""")
    assert ttft == {"bars": 6, "ticks": 6, "axis": "y"}
    assert all(drawn_charts(b.page)[name] for name in CHARTS)
    assert set(samples_by_model(b.page).values()) == {3}
    b.shot("benchmarks-leaderboard-24h")

    choose_range(b, "30d")
    assert set(samples_by_model(b.page).values()) == {12}
    assert_clean(b)


def test_the_model_table_sorts_on_a_phone(open_browser, public_results):
    b = open_signed_in(open_browser, None, viewport=MOBILE)
    b.page.goto(b.url("/leaderboard/"))
    b.page.wait_for_load_state("networkidle")
    page = b.page
    select = page.get_by_test_id("sort-select")
    assert select.is_visible() and not page.locator("#model-stats thead").is_visible()
    # The TTFT bar chart keeps one label per bar even at phone width.
    assert page.evaluate("Chart.getChart(document.getElementById('ttft-chart')).scales.y.ticks.length") == 6

    select.select_option(label="TTFT p50 / p95 (high to low)")
    names = page.locator("[data-testid=model-row] td:first-child strong").all_inner_texts()
    assert names[0] == "deepseek-chat" and names[-1] == "gpt-4o-mini"
    select.select_option(label="Model (A–Z)")
    names = page.locator("[data-testid=model-row] td:first-child strong").all_inner_texts()
    assert names == sorted(names)
    b.shot("benchmarks-leaderboard-mobile")
    assert_clean(b)

    wide = open_signed_in(open_browser, None)
    wide.page.goto(wide.url("/leaderboard/"))
    assert not wide.page.get_by_test_id("sort-select").is_visible()  # the header sorts on wide screens


def test_a_target_is_added_in_the_browser_and_its_key_never_shown(open_browser, personas):
    b = open_signed_in(open_browser, personas.admin)
    page = b.page
    page.goto(b.url(f"/orgs/{personas.org.uuid}/benchmarks/"))
    page.get_by_test_id("add-target").click()
    page.wait_for_url("**/benchmarks/targets/new/")
    page.get_by_label("Name", exact=True).fill("Our vLLM")
    page.get_by_label("Kind").select_option("openai_compatible")
    page.get_by_label("Base URL").fill("https://vllm.acme.example/v1")
    page.get_by_label("API key").fill(SECRET)
    page.get_by_label("Model names").fill("llama-3-8b\nqwen-2-7b")
    page.get_by_label("Run every (minutes)").fill("30")
    b.shot("benchmarks-target-form")
    page.get_by_role("button", name="Add target").click()
    page.wait_for_url(f"**/orgs/{personas.org.uuid}/benchmarks/")

    row = page.get_by_test_id("target-row").filter(has_text="Our vLLM")
    assert row.is_visible() and "llama-3-8b, qwen-2-7b" in row.inner_text() and "every 30 min" in row.inner_text()
    assert "Target “Our vLLM” added" in page.locator(".messages").inner_text()
    assert SECRET not in page.content()
    b.shot("benchmarks-targets-list")

    target = Target.objects.get(name="Our vLLM")
    assert target.api_key.reveal() == SECRET
    row.get_by_role("link", name="Edit").click()
    page.wait_for_url(f"**/targets/{target.uuid}/edit/")
    assert page.get_by_test_id("key-status").inner_text().startswith("a key is set")
    assert page.get_by_label("API key").input_value() == "" and SECRET not in page.content()
    b.shot("benchmarks-target-edit")
    assert_clean(b)


@pytest.mark.parametrize("viewport", [DESKTOP, MOBILE], ids=["desktop", "mobile"])
def test_the_targets_list_fits_the_screen(open_browser, personas, private_results, viewport):
    b = open_signed_in(open_browser, personas.owner, viewport=viewport)
    b.page.goto(b.url(f"/orgs/{personas.org.uuid}/benchmarks/"))
    b.page.wait_for_load_state("networkidle")
    overflow = b.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    assert b.page.get_by_role("button", name="Pause").is_visible()
    b.shot(f"benchmarks-org-{'desktop' if viewport == DESKTOP else 'mobile'}")
    assert_clean(b)
