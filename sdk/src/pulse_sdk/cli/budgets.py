"""`pulse budgets` (where each budget stands, as a bar) and `pulse alerts` (the recent ones).

A budget's standing is its `/budgets/{uuid}/status` (spent, percent, forecast, blocked), read
per budget: an organization has a handful, and the status is the same computation the gateway
checks before forwarding, so what is shown here is what is enforced.
"""

from __future__ import annotations

import json
import sys

import click

from .output import bar, decimal, money, out, paint, percent, table
from .session import Session

SYMBOLS = {"USD": "$", "GBP": "£", "EUR": "€"}
SCOPE_WORDS = {"organization": "organization", "project": "project", "token": "API token"}
SEVERITY_COLORS = {"critical": "red", "warning": "yellow", "info": "cyan"}


def _scope(budget: dict) -> str:
    words = [SCOPE_WORDS.get(budget.get("scope") or "", budget.get("scope") or "?")]
    if budget.get("model"):
        words.append(f"model {budget['model']}")
    if budget.get("tag_key"):
        words.append(f"{budget['tag_key']}={budget.get('tag_value', '')}")
    return ", ".join(words)


def _state(status: dict, enabled: bool) -> tuple[str, str | None]:
    if status.get("blocked"):
        return "BLOCKED", "red"
    if not enabled:
        return "disabled", None
    if status.get("exceeded"):
        return "over", "red"
    forecast = decimal(status.get("forecast_percent"))
    if forecast is not None and forecast >= 100:
        return "forecast over", "yellow"
    return "ok", "green"


def _bar(status: dict) -> str:
    fraction = float(decimal(status.get("percent")) or 0) / 100
    color = "red" if fraction >= 1 else "yellow" if fraction >= 0.8 else "green"
    return paint(bar(fraction), fg=color)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print each budget with its status as JSON.")
@click.pass_obj
def budgets(session: Session, as_json: bool) -> None:
    """Each budget: a bar of what is spent, spent / amount, %, the forecast, and BLOCKED for a
    hard budget that is spent (the gateway refuses its requests until the period ends)."""
    api = session.api()
    items = [(budget, api.get(f"/api/v1/budgets/{budget['uuid']}/status")) for budget in api.pages("/api/v1/budgets")]
    if as_json:
        out(json.dumps([{**budget, "status": status} for budget, status in items], indent=2))
        return
    if not items:
        out("No budgets. Add one on the Budgets page (or POST /api/v1/budgets).")
        return
    rows = []
    for budget, status in items:
        symbol = SYMBOLS.get(status.get("currency", ""), status.get("currency", "") + " ")
        state, color = _state(status, budget.get("is_enabled", True))
        rows.append([
            budget["name"], _scope(budget), budget.get("period", ""), _bar(status),
            f"{money(status['spent'], symbol)} / {money(status['amount'], symbol)}",
            percent(status.get("percent")), money(status.get("forecast"), symbol),
            paint(state, fg=color, bold=state == "BLOCKED") if color else state,
        ])
    headers = ["Budget", "Scope", "Period", "Spent", "Spent / amount", "%", "Forecast", "Status"]
    for line in table(headers, rows, right=[False, False, False, False, True, True, True, False]):
        out(line)


def _when(value: str) -> str:
    """"2026-01-31T12:34:56.789Z" -> "2026-01-31 12:34" (UTC, as stored)."""
    return value.replace("T", " ")[:16] if value else ""


@click.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the alerts as JSON.")
@click.pass_obj
def alerts(session: Session, limit: int, as_json: bool) -> None:
    """The most recent alerts (budgets crossed or forecast over, performance rules firing)."""
    api = session.api()
    items = list(api.pages("/api/v1/alerts", limit=limit))
    if as_json:
        out(json.dumps(items, indent=2))
        return
    if not items:
        out("No alerts.")
        return
    rows = []
    for alert in items:
        severity = alert.get("severity", "")
        rows.append([_when(alert.get("created_at", "")), paint(severity, fg=SEVERITY_COLORS.get(severity)), alert.get("kind", ""), alert.get("title", "")])
    for line in table(["Time (UTC)", "Severity", "Kind", "Alert"], rows):
        out(line)
    if len(items) == limit:
        click.echo(paint(f"(the {limit} most recent; --limit N for more)", sys.stderr, dim=True), err=True)
