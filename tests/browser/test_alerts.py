"""Budgets and alerts in Chromium, end to end: the owner creates a budget through the form, spend
passes 80 %, the test plays the worker (evaluate the budget, send each delivery), and the pages
show it: the history, the progress bar, the bell's badge, the dashboard card, the email with its
unsubscribe link (followed in the browser); a webhook added with its secret shown once; light,
dark and a 390 px phone, no console errors, no CSP violations, nothing sideways.

Screenshots land in /tmp/shots/alerts-*.png for review."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone

from alerts import tasks
from alerts.budgets import evaluate_budget
from alerts.models import Alert, AlertRule, Budget, Delivery, Webhook
from alerts.notify import send_delivery
from benchmarks.models import ProviderKind, Target
from costs.ingestion import ingest

from .conftest import MOBILE
from .helpers import assert_clean, open_signed_in, overflow, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SUBJECT = "Project Production: 80 % of the $10 monthly budget used"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch) -> list:
    """The live server queues Celery tasks when a budget is saved and when spend or deliveries
    commit. This test is the worker, so nothing goes to the broker (other checkouts share it)."""
    queued: list = []
    monkeypatch.setattr(tasks.reevaluate_budget, "delay", lambda *args: queued.append(("reevaluate", args)))
    monkeypatch.setattr(tasks.deliver, "delay", lambda *args: queued.append(("deliver", args)))
    monkeypatch.setattr(
        tasks.evaluate_project_budgets, "apply_async", lambda *args, **kwargs: queued.append(("evaluate", args))
    )
    return queued


def visit(b, path: str) -> None:
    """Open a page and check it: no console errors or CSP violations, nothing sideways."""
    b.page.goto(b.url(path))
    b.page.wait_for_load_state("networkidle")
    assert_clean(b)
    assert overflow(b.page) <= 0, f"{path} scrolls sideways by {overflow(b.page)}px"


def play_the_worker(budget: Budget) -> list[Alert]:
    """What the Celery tasks do after ingestion: evaluate the budget, then send each delivery."""
    raised = evaluate_budget(budget)
    for delivery_id in Delivery.objects.filter(status=Delivery.Status.PENDING).values_list("id", flat=True):
        send_delivery(delivery_id)
    return raised


def test_a_budget_from_the_form_to_the_80_percent_alert(open_browser, personas, no_broker):
    org, project, owner = personas.org, personas.project, personas.owner
    b = open_signed_in(open_browser, owner)
    page = b.page

    # The bell leads to the organization's (empty) history.
    visit(b, "/alerts/")
    assert page.url.endswith(f"/orgs/{org.uuid}/alerts/")
    assert page.get_by_role("heading", name="Alerts").is_visible()
    assert page.get_by_text("No alerts yet").is_visible()
    assert page.get_by_test_id("bell-count").count() == 0

    # --- A budget through the form ---------------------------------------------------------------
    page.get_by_test_id("alert-tabs").get_by_role("link", name="Budgets").click()
    page.wait_for_load_state("networkidle")
    assert page.get_by_text("No budgets yet").is_visible()
    page.get_by_test_id("add-budget").click()
    page.wait_for_load_state("networkidle")
    assert_clean(b)
    page.get_by_label("Name", exact=True).fill("Production monthly")
    page.get_by_label("Spending of").select_option(f"project:{project.uuid}")
    page.get_by_label("Amount", exact=True).fill("10")
    page.get_by_label("Currency", exact=True).select_option("USD")
    page.get_by_label("Period", exact=True).select_option("month")
    assert page.get_by_label("Alert at (% of the amount)").input_value() == "50, 80, 100"
    assert page.get_by_label("owner@a.example").is_checked()  # the creator hears about it
    shot(b, "alerts-budget-form")
    page.get_by_role("button", name="Create budget").click()
    page.wait_for_url(re.compile(rf"/orgs/{org.uuid}/alerts/budgets/$"))
    assert page.get_by_text("Budget “Production monthly” created.").is_visible()
    assert_clean(b)

    budget = Budget.objects.get(name="Production monthly")
    assert (budget.project, budget.amount, budget.thresholds, budget.period) == (project, 10, [50, 80, 100], "month")
    assert list(budget.notify_members.all()) == [owner]
    assert ("reevaluate", (budget.id,)) in no_broker  # saving queued its evaluation

    # --- Spend past 80 %, and the worker's part ----------------------------------------------------
    result = ingest(project, [
        {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 200,
         "cost_usd": cost, "timestamp": timezone.now().isoformat()}
        for cost in ("3.00", "5.50")
    ])
    assert not result.errors
    raised = play_the_worker(budget)
    assert sorted(a.threshold for a in raised) == [50, 80]

    [email] = mail.outbox  # only the highest threshold crossed in one step is sent
    assert email.subject == SUBJECT and email.to == ["owner@a.example"]
    unsubscribe = email.extra_headers["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith(f"{settings.SITE_URL}/alerts/unsubscribe/")
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # The budgets page: the bar at 85 %, two of three ticks passed; the bell says 2.
    visit(b, f"/orgs/{org.uuid}/alerts/budgets/")
    bar = page.get_by_test_id("budget-bar")
    assert bar.get_attribute("data-percent") == "85.0"
    assert bar.get_attribute("class") == "meter warn"
    assert page.locator("[data-testid=budget-bar] .meter-tick.crossed").count() == 2
    fill = page.get_by_test_id("budget-bar-fill").bounding_box()
    track = bar.bounding_box()
    assert fill["width"] == pytest.approx(track["width"] * 0.85, abs=2)
    assert page.get_by_test_id("budget-spent").inner_text() == "$8.50"
    bell = page.get_by_test_id("bell")
    assert bell.get_attribute("aria-label") == "Alerts, 2 unread"
    assert page.get_by_test_id("bell-count").inner_text() == "2"
    shot(b, "alerts-budgets")

    # The history shows the 80 % alert; opening it resets the badge.
    bell.click()
    page.wait_for_load_state("networkidle")
    assert_clean(b)
    rows = page.get_by_test_id("alert-row")
    assert rows.count() == 2
    assert SUBJECT in rows.first.inner_text() and "1 sent" in rows.first.inner_text()
    assert "sent with the 80 % alert" in rows.nth(1).inner_text()
    assert "Warning" in rows.first.inner_text()
    assert page.get_by_test_id("bell-count").count() == 0
    shot(b, "alerts-history")

    rows.first.get_by_role("link", name=SUBJECT).click()
    page.wait_for_load_state("networkidle")
    assert_clean(b)
    log = page.get_by_test_id("delivery-row")
    assert log.count() == 1 and "owner@a.example" in log.inner_text() and "sent" in log.inner_text()
    shot(b, "alerts-detail")

    # The project dashboard's card.
    visit(b, f"/projects/{project.uuid}/")
    card = page.get_by_test_id("budgets")
    assert "Production monthly" in card.inner_text() and "85.0 %" in card.inner_text()
    card.screenshot(path="/tmp/shots/alerts-dashboard-card.png", animations="disabled")

    # --- A webhook: its secret once; its URL never ----------------------------------------------
    visit(b, f"/orgs/{org.uuid}/alerts/channels/")
    page.get_by_test_id("add-webhook").click()
    page.wait_for_load_state("networkidle")
    page.get_by_label("Name", exact=True).fill("Ops Slack")
    page.get_by_label("URL", exact=True).fill("https://hooks.slack.com/services/T0/B0/verysecretpath1234")
    page.get_by_label("Slack-compatible").check()
    page.get_by_role("button", name="Add webhook").click()
    page.get_by_test_id("new-secret").wait_for()  # in the POST's own response, like a new API token
    assert_clean(b)
    secret = page.get_by_test_id("new-secret").locator("code#new-secret-value").inner_text()
    assert secret.startswith("whsec_") and Webhook.objects.get(name="Ops Slack").secret.reveal() == secret
    assert "verysecretpath" not in page.content() and "https://hooks.slack.com/…1234" in page.content()
    shot(b, "alerts-channels-secret")
    visit(b, f"/orgs/{org.uuid}/alerts/channels/")
    assert page.get_by_test_id("new-secret").count() == 0 and secret not in page.content()

    # --- Dark mode ------------------------------------------------------------------------------
    visit(b, f"/orgs/{org.uuid}/alerts/budgets/")
    page.click("#theme-toggle")
    shot(b, "alerts-budgets-dark")
    visit(b, f"/orgs/{org.uuid}/alerts/")
    shot(b, "alerts-history-dark")
    visit(b, f"/orgs/{org.uuid}/alerts/channels/")
    shot(b, "alerts-channels-dark")
    visit(b, f"/projects/{project.uuid}/")
    page.get_by_test_id("budgets").screenshot(path="/tmp/shots/alerts-dashboard-card-dark.png", animations="disabled")

    # --- The email's unsubscribe link, followed (signed out) ----------------------------------------
    anonymous = open_signed_in(open_browser, None)
    visit(anonymous, unsubscribe.removeprefix(settings.SITE_URL))
    anonymous.page.get_by_role("button", name="Unsubscribe").click()
    anonymous.page.wait_for_load_state("networkidle")
    assert_clean(anonymous)
    assert anonymous.page.get_by_text("You will get no more alert emails at owner@a.example").is_visible()
    shot(anonymous, "alerts-unsubscribed")
    visit(b, "/settings/")
    assert not page.get_by_label("Email me alerts").is_checked()


def test_the_alerts_pages_fit_a_phone(open_browser, personas, no_broker):
    org, project = personas.org, personas.project
    budget = Budget.objects.create(organization=org, project=project, name="Production monthly", amount=Decimal("10"),
                                   enforcement=Budget.Enforcement.HARD, extra_emails=["finance-team@a.example"])
    budget.notify_members.add(personas.owner)
    webhook = Webhook(organization=org, name="Ops Slack", url="https://hooks.slack.com/services/T0/B0/xyz", format="slack")
    webhook.rotate_secret()
    webhook.save()
    ingest(project, [{"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 10,
                      "cost_usd": "10.40", "timestamp": timezone.now().isoformat()}])
    play_the_worker(budget)
    alert = Alert.objects.filter(threshold=100).get()
    # A webhook delivery that kept failing (made by hand: the test posts nowhere).
    Delivery.objects.create(alert=alert, channel=Delivery.Channel.WEBHOOK, webhook=webhook, status=Delivery.Status.FAILED,
                            attempts=8, last_status_code=502, last_error="HTTP 502: <html><body>Bad gateway from the upstream proxy</body></html>")

    target = Target.objects.create(organization=org, name="Our vLLM", kind=ProviderKind.OPENAI_COMPATIBLE,
                                   base_url="https://vllm.example/v1", model_names=["llama-3-8b"])
    AlertRule.objects.create(organization=org, name="Slow first token", target=target, model_name="llama-3-8b",
                             metric=AlertRule.Metric.TTFT_P95, threshold=800, window_results=20, state="firing",
                             last_value=1234.5, last_sample_size=20, last_evaluated_at=timezone.now(), incident_count=2)
    AlertRule.objects.create(organization=org, name="Error rate", target=target, metric=AlertRule.Metric.ERROR_RATE,
                             threshold=5, window_minutes=60)

    desktop = open_signed_in(open_browser, personas.owner)
    for name, path in {"rules": f"/orgs/{org.uuid}/alerts/rules/", "budget": f"/orgs/{org.uuid}/alerts/budgets/{budget.uuid}/",
                       "channels-log": f"/orgs/{org.uuid}/alerts/channels/"}.items():
        visit(desktop, path)
        if name == "channels-log":
            desktop.page.get_by_test_id("webhook-log").locator("summary").click()
        shot(desktop, f"alerts-desktop-{name}")

    b = open_signed_in(open_browser, personas.owner, viewport=MOBILE)
    pages = {
        "history": f"/orgs/{org.uuid}/alerts/",
        "detail": f"/orgs/{org.uuid}/alerts/history/{alert.uuid}/",
        "budgets": f"/orgs/{org.uuid}/alerts/budgets/",
        "budget": f"/orgs/{org.uuid}/alerts/budgets/{budget.uuid}/",
        "budget-form": f"/orgs/{org.uuid}/alerts/budgets/{budget.uuid}/edit/",
        "rules": f"/orgs/{org.uuid}/alerts/rules/",
        "rule-form": f"/orgs/{org.uuid}/alerts/rules/new/",
        "channels": f"/orgs/{org.uuid}/alerts/channels/",
        "dashboard": f"/projects/{project.uuid}/",
    }
    for name, path in pages.items():
        visit(b, path)
        shot(b, f"alerts-mobile-{name}")
    b.page.get_by_test_id("budgets").screenshot(path="/tmp/shots/alerts-mobile-dashboard-card.png", animations="disabled")
    visit(b, pages["budgets"])
    assert b.page.get_by_test_id("blocked").is_visible()
    b.page.click("#theme-toggle")
    for name in ("budgets", "detail", "channels", "rules"):
        visit(b, pages[name])
        shot(b, f"alerts-mobile-dark-{name}")
