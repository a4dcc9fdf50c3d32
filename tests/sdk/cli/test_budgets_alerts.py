"""`pulse budgets` and `pulse alerts` on budgets and alerts made with the server's models: each
budget's bar, spent / amount, percent, forecast and BLOCKED for a hard budget that is spent (the
numbers of `BudgetStatus`, which the gateway enforces), and the recent alerts newest first.
Another organization's budgets and alerts never show."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from pulse_sdk.cli.output import money

from alerts.budgets import BudgetStatus
from alerts.models import Alert, Budget
from costs.ingestion import ingest


@pytest.fixture
def budgets(pulse):
    personas = pulse.personas
    calls = [
        {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1000, "cost_usd": "1.5"},
        {"provider": "anthropic", "model": "claude-haiku", "input_tokens": 5000, "cost_usd": "12.345678"},
    ]
    assert ingest(pulse.project, calls, token=pulse.ingest_token).inserted == 2
    monthly = Budget.objects.create(
        organization=personas.org, name="Production monthly", project=pulse.project, amount=Decimal("100"),
        period=Budget.Period.MONTH,
    )
    hard = Budget.objects.create(
        organization=personas.org, name="Haiku hard cap", model="claude-haiku", amount=Decimal("10"),
        period=Budget.Period.MONTH, enforcement=Budget.Enforcement.HARD,
    )
    Budget.objects.create(organization=personas.other_org, name="Bravo's", amount=Decimal("5"))
    return monthly, hard


def test_budgets_show_a_bar_spent_percent_forecast_and_blocked(cli, budgets):
    monthly, hard = budgets
    result = cli("budgets")

    assert result.exit_code == 0, result.stderr
    forecast = {b.name: money(BudgetStatus.of(b).forecast.quantize(Decimal("0.01"))) for b in budgets}
    lines = result.stdout.splitlines()
    header, rows = lines[0], lines[2:]
    assert header.split() == ["Budget", "Scope", "Period", "Spent", "Spent", "/", "amount", "%", "Forecast", "Status"]
    assert len(rows) == 2  # ordered by name; Bravo's is another organization's
    hard_row, monthly_row = rows
    assert hard_row.split() == [
        "Haiku", "hard", "cap", "organization,", "model", "claude-haiku", "month", "█" * 20, "$12.35", "/", "$10.00",
        "123.5%", forecast["Haiku hard cap"], "BLOCKED",
    ]
    assert monthly_row.split() == [
        "Production", "monthly", "project", "month", "███" + "░" * 17, "$13.85", "/", "$100.00", "13.8%",
        forecast["Production monthly"], "ok",
    ]


def test_budgets_json_has_each_budget_with_its_status(cli, budgets):
    printed = json.loads(cli("budgets", "--json").stdout)
    assert [(b["name"], b["status"]["blocked"], b["status"]["spent"]) for b in printed] == [
        ("Haiku hard cap", True, "12.35"), ("Production monthly", False, "13.85"),
    ]


def test_no_budgets(cli, pulse):
    assert cli("budgets").stdout == "No budgets. Add one on the Budgets page (or POST /api/v1/budgets).\n"


@pytest.fixture
def alerts(pulse, budgets):
    _monthly, hard = budgets
    personas = pulse.personas
    now = timezone.now().replace(microsecond=0)
    made = []
    for minutes, severity, title in [(50, "warning", "Haiku hard cap at 80%"), (10, "critical", "Haiku hard cap spent")]:
        made.append(Alert.objects.create(
            organization=personas.org, kind=Alert.Kind.BUDGET_THRESHOLD, severity=severity, budget=hard,
            title=title, message="…", created_at=now - timedelta(minutes=minutes),
        ))
    Alert.objects.create(organization=personas.other_org, kind=Alert.Kind.TEST, title="Bravo's test", message="…")
    return made


def test_alerts_newest_first(cli, alerts):
    result = cli("alerts")

    assert result.exit_code == 0, result.stderr
    when = [a.created_at.strftime("%Y-%m-%d %H:%M") for a in alerts]
    assert result.stdout.splitlines() == [
        "Time (UTC)        Severity  Kind              Alert",
        "────────────────  ────────  ────────────────  ─────────────────────",
        f"{when[1]}  critical  budget.threshold  Haiku hard cap spent",
        f"{when[0]}  warning   budget.threshold  Haiku hard cap at 80%",
    ]


def test_alerts_limit(cli, alerts):
    result = cli("alerts", "--limit", "1")
    assert len(result.stdout.splitlines()) == 3 and "Haiku hard cap spent" in result.stdout
    assert "(the 1 most recent; --limit N for more)" in result.stderr
    assert [a["title"] for a in json.loads(cli("alerts", "--json").stdout)] == ["Haiku hard cap spent", "Haiku hard cap at 80%"]
