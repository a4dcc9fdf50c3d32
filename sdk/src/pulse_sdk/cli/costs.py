"""`pulse costs` (spend by model, provider, day, API token or tag) and `pulse recommendations`.

Everything comes from `GET /api/v1/costs/summary` (the same numbers as the dashboard, read from
rollups) in the currency the server answered with. `--json` prints the server's own answer,
whose shape the API schema documents, so scripts never depend on the table's layout.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import click

from .output import decimal, money, note, number, out, paint, table
from .session import CliError, Session

RANGES = ("7d", "30d", "90d")
BREAKDOWNS = ("model", "provider", "day", "token")
NO_TAG = "(no tag)"


class Breakdown(click.ParamType):
    """model | provider | day | token | tag:KEY"""

    name = "breakdown"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if text in BREAKDOWNS or (text.startswith("tag:") and len(text) > 4):
            return text
        self.fail(f"{text!r} is not one of model, provider, day, token or tag:KEY (e.g. tag:feature).", param, ctx)


class Day(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a date like 2026-01-31.", param, ctx)


def _columns(by: str) -> tuple[list[str], Any]:
    """The label headers of a breakdown and a function giving a row's labels."""
    if by == "model":
        return ["Provider", "Model"], lambda row: [row["provider"], row["model"]]
    if by == "provider":
        return ["Provider"], lambda row: [row["provider"]]
    if by == "day":
        return ["Day"], lambda row: [row["date"]]
    if by == "token":
        return ["API token", "Prefix"], lambda row: [row["name"] + (" (deleted)" if row.get("deleted") else ""), row["prefix"] or "–"]
    return [by.split(":", 1)[1]], lambda row: [row["value"]]


def breakdown_rows(summary: dict, by: str) -> list[dict]:
    """The rows of the breakdown; a tag breakdown gets a NO_TAG row for the untagged remainder,
    so that its rows add up to the totals like the others do."""
    if not by.startswith("tag:"):
        return list(summary[f"by_{by}"])
    rows = list(summary.get("by_tag") or [])
    totals = summary["totals"]
    rest = {
        "value": NO_TAG,
        "requests": totals["requests"] - sum(r["requests"] for r in rows),
        "tokens": totals["tokens"] - sum(r["tokens"] for r in rows),
        "cost": str(Decimal(totals["cost"]) - sum((Decimal(r["cost"]) for r in rows), Decimal(0))),
    }
    if rest["requests"] > 0:
        rows.append(rest)
    return rows


def _share(cost: Any, total: Decimal) -> str:
    amount = decimal(cost)
    if amount is None or not total:
        return "–"
    return f"{amount * 100 / total:.1f}%"


def _cost_cells(row: dict, symbol: str, total: Decimal) -> list[str]:
    """Cost and share; a row none of whose requests had a price shows no cost rather than
    $0.00, because its cost is unknown, not zero (the footnote names those models)."""
    if row.get("requests") and row.get("unpriced_requests") == row["requests"]:
        return ["–", "–"]
    return [money(row["cost"], symbol), _share(row["cost"], total)]


def _period_text(summary: dict) -> str:
    period = summary["period"]
    label = f"last {summary['range'][:-1]} days" if summary.get("range") else "from/to"
    return f"{label}, {period['first_day']} to {period['last_day']} (UTC)"


def _write_csv(labels: Sequence[str], label_of: Any, rows: Sequence[dict], currency: str) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([*(h.lower().replace(" ", "_") for h in labels), "requests", "tokens", "cost", "currency"])
    for row in rows:
        writer.writerow([*label_of(row), row["requests"], row["tokens"], row["cost"], currency])


@click.command()
@click.option("--range", "range_", type=click.Choice(RANGES), help="The last 7, 30 or 90 days (default 30d).")
@click.option("--from", "first", type=Day(), help="First day (UTC), with --to.")
@click.option("--to", "last", type=Day(), help="Last day (UTC, included), with --from.")
@click.option("--by", "by", type=Breakdown(), default="model", show_default=True, help="model, provider, day, token or tag:KEY.")
@click.option("--currency", type=click.Choice(["USD", "GBP", "EUR"], case_sensitive=False), help="Default: the server's (USD for tokens).")
@click.option("--json", "as_json", is_flag=True, help="Print the server's summary as JSON (stable for scripts).")
@click.option("--csv", "as_csv", is_flag=True, help="Print the breakdown as CSV.")
@click.pass_obj
def costs(
    session: Session, range_: str | None, first: date | None, last: date | None, by: str,
    currency: str | None, as_json: bool, as_csv: bool,
) -> None:
    """What the project spent, broken down, with totals.

    \b
    pulse costs                      the last 30 days by model
    pulse costs --range 7d --by day
    pulse costs --from 2026-01-01 --to 2026-01-31 --by tag:feature --currency EUR
    """
    if as_json and as_csv:
        raise click.UsageError("Choose one of --json and --csv.")
    if (first is None) != (last is None):
        raise click.UsageError("Give both --from and --to.")
    if first is not None and range_ is not None:
        raise click.UsageError("Give either --range or --from/--to, not both.")
    if first is not None and last is not None and last < first:
        raise click.UsageError("--to must not be before --from.")
    params: dict[str, Any] = {}
    if first is not None and last is not None:
        params.update({"from": first.isoformat(), "to": last.isoformat()})
    else:
        params["range"] = range_ or "30d"
    if currency:
        params["currency"] = currency.upper()
    if by.startswith("tag:"):
        params["tag"] = by.split(":", 1)[1]
    api = session.api()
    summary = api.get("/api/v1/costs/summary", api.project_params(params))
    if as_json:
        out(json.dumps(summary, indent=2))
        return
    code, symbol = summary["currency"]["currency"], summary["currency"]["symbol"]
    labels, label_of = _columns(by)
    rows = breakdown_rows(summary, by)
    if as_csv:
        _write_csv(labels, label_of, rows, code)
        return
    totals = summary["totals"]
    total_cost = decimal(totals["cost"]) or Decimal(0)
    body = [
        [*label_of(row), number(row["requests"]), number(row["tokens"]), *_cost_cells(row, symbol, total_cost)]
        for row in rows
    ]
    blanks = [""] * (len(labels) - 1)
    total = ["Total", *blanks, number(totals["requests"]), number(totals["tokens"]), money(totals["cost"], symbol), "100.0%" if total_cost else "–"]
    out(paint(f"Costs by {by}, {_period_text(summary)}, in {code}", bold=True))
    if not rows:
        out("No usage in this period.")
        return
    for line in table([*labels, "Requests", "Tokens", "Cost", "Share"], body, right=[False] * len(labels) + [True] * 4, total=total):
        out(line)
    _footnotes(summary, by, symbol)


def _footnotes(summary: dict, by: str, symbol: str) -> None:
    forecast = summary.get("forecast") or {}
    if forecast.get("forecast") is not None:
        note(f"Month-end forecast: {money(forecast['forecast'], symbol)} ({money(forecast.get('month_to_date'), symbol)} so far this month).")
    unpriced = summary["totals"].get("unpriced_requests") or 0
    if unpriced:
        models = ", ".join(f"{m['provider']}/{m['model']}" for m in summary.get("unpriced_models") or [])
        has = "request has" if unpriced == 1 else "requests have"
        note(f"{number(unpriced)} {has} no known price and no cost here: {models}.")
    if by.startswith("tag:") and not summary.get("by_tag") and summary["totals"]["requests"]:
        note(f"No spend is tagged {by[4:]!r} in this period (only rolled-up tag keys have data).")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the server's recommendations as JSON.")
@click.pass_obj
def recommendations(session: Session, as_json: bool) -> None:
    """Ways to spend less, from the project's last 30 days (cheaper models, caching, …)."""
    api = session.api()
    data = api.get("/api/v1/costs/recommendations", api.project_params())
    results = data.get("results") if isinstance(data, dict) else None
    if results is None:
        raise CliError("The server's recommendations were not a list.")
    if as_json:
        out(json.dumps(data, indent=2))
        return
    if not results:
        out("No recommendations: nothing to change in the last 30 days' traffic.")
        return
    saving = sum((decimal(r.get("monthly_saving_usd")) or Decimal(0) for r in results), Decimal(0))
    for index, item in enumerate(results, 1):
        amount = decimal(item.get("monthly_saving_usd"))
        # The title often says the saving already ("…: save $5.31/month").
        gain = f"  saves ~{money(amount)}/month" if amount is not None and "save" not in item["title"].lower() else ""
        out(paint(f"{index}. {item['title']}", bold=True) + paint(gain, fg="green"))
        out(f"   {item['detail']}")
        for assumption in item.get("assumptions") or []:
            out(f"   · {assumption}")
    if saving:
        out(f"\nIn all: ~{money(saving)} a month (USD).")
