"""`pulse costs` and `pulse recommendations` on known spend: four calls recorded through the
server's own ingestion, two API tokens, tags. The table's numbers, its totals, its breakdowns
and its money in the currency the server answered with; --json as the server's; --csv."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from costs.ingestion import ingest
from costs.models import ExchangeRate
from costs.recommendations import recommend


@pytest.fixture
def spend(pulse):
    """gpt-4o-mini twice ($0.50 + $1.00), claude-haiku once ($12.345678), gpt-4o once ($0.000123)."""
    other, _raw = pulse.issue_token(["ingest"])
    other.name = "batch jobs"
    other.save(update_fields=["name"])
    calls = [
        (pulse.ingest_token, {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 500,
                              "cost_usd": "0.5", "tags": {"feature": "search"}}),
        (pulse.ingest_token, {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 2000, "output_tokens": 1000,
                              "cost_usd": "1.0", "tags": {"feature": "chat"}}),
        (other, {"provider": "anthropic", "model": "claude-haiku", "input_tokens": 1_200_000, "output_tokens": 34_567,
                 "cost_usd": "12.345678", "tags": {"feature": "search"}}),
        (other, {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 5, "cost_usd": "0.000123"}),
    ]
    for token, item in calls:
        assert ingest(pulse.project, [item], token=token).inserted == 1
    return other


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def days_before(count: int) -> list[str]:
    """The `count` days before today, oldest first."""
    now = datetime.now(UTC).date()
    return [(now - timedelta(days=back)).isoformat() for back in range(count, 0, -1)]


def body(result) -> list[str]:
    return result.stdout.splitlines()[1:]


def test_costs_by_model_is_an_aligned_table_with_a_totals_row(cli, spend):
    result = cli("costs")

    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(rf"Costs by model, last 30 days, \d{{4}}-\d\d-\d\d to {today()} \(UTC\), in USD", result.stdout.splitlines()[0])
    assert body(result) == [
        "Provider   Model         Requests     Tokens      Cost   Share",
        "─────────  ────────────  ────────  ─────────  ────────  ──────",
        "anthropic  claude-haiku         1  1,234,567    $12.35   89.2%",
        "openai     gpt-4o-mini          2      4,500     $1.50   10.8%",
        "openai     gpt-4o               1         15  $0.00012    0.0%",
        "─────────  ────────────  ────────  ─────────  ────────  ──────",
        "Total                           4  1,239,082    $13.85  100.0%",
    ]


def test_costs_by_provider_token_and_tag(cli, spend, pulse):
    assert body(cli("costs", "--by", "provider"))[2:] == [
        "anthropic         1  1,234,567  $12.35   89.2%",
        "openai            3      4,515   $1.50   10.8%",
        "─────────  ────────  ─────────  ──────  ──────",
        "Total             4  1,239,082  $13.85  100.0%",
    ]
    by_token = body(cli("costs", "--by", "token"))
    assert by_token[2:4] == [
        f"batch jobs  {spend.prefix}         2  1,234,582  $12.35   89.2%",
        f"sdk         {pulse.ingest_token.prefix}         2      4,500   $1.50   10.8%",
    ]
    assert body(cli("costs", "--by", "tag:feature"))[2:] == [
        "search           2  1,236,067    $12.85   92.8%",
        "chat             1      3,000     $1.00    7.2%",
        "(no tag)         1         15  $0.00012    0.0%",
        "────────  ────────  ─────────  ────────  ──────",
        "Total            4  1,239,082    $13.85  100.0%",
    ]


def test_costs_by_day_lists_every_day_zero_filled(cli, spend):
    lines = body(cli("costs", "--range", "7d", "--by", "day"))
    assert len(lines) == 2 + 7 + 2
    assert lines[2 + 6] == f"{today()}         4  1,239,082  $13.85  100.0%"
    assert lines[2:8] == [f"{day}         0          0   $0.00    0.0%" for day in days_before(6)]


def test_money_is_in_the_currency_the_server_answered_with(cli, spend):
    ExchangeRate.objects.create(date=datetime.now(UTC).date(), currency="EUR", per_usd=Decimal("0.5"))
    result = cli("costs", "--currency", "eur", "--by", "provider")

    assert result.stdout.splitlines()[0].endswith("in EUR")
    assert body(result)[2] == "anthropic         1  1,234,567  €6.17   89.2%"
    assert body(result)[-1] == "Total             4  1,239,082  €6.92  100.0%"


def test_json_prints_the_servers_summary(cli, spend, pulse):
    result = cli("costs", "--json", "--range", "7d", "--by", "tag:feature")

    served = httpx.get(f"{pulse.url}/api/v1/costs/summary", params={"range": "7d", "tag": "feature"},
                       headers={"Authorization": f"Bearer {pulse.ingest_key}"}).json()
    printed = json.loads(result.stdout)
    assert set(printed) == set(served)
    # Not the period, its daily averages, comparison and forecast: they end "now", milliseconds apart.
    stable = ("projects", "range", "currency", "totals", "by_model", "by_provider", "by_day", "by_token", "by_tag",
              "tag_key", "unpriced_models")
    assert {k: printed[k] for k in stable} == {k: served[k] for k in stable}
    assert printed["totals"]["cost"] == "13.845801" and printed["totals"]["requests"] == 4
    assert [row["value"] for row in printed["by_tag"]] == ["search", "chat"]


def test_csv_is_the_shown_breakdown(cli, spend):
    result = cli("costs", "--csv")

    assert result.exit_code == 0 and result.stderr == ""
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["provider", "model", "requests", "tokens", "cost", "currency"],
        ["anthropic", "claude-haiku", "1", "1234567", "12.345678", "USD"],
        ["openai", "gpt-4o-mini", "2", "4500", "1.500000", "USD"],
        ["openai", "gpt-4o", "1", "15", "0.000123", "USD"],
    ]
    assert cli("costs", "--csv", "--json").exit_code == 2


def test_an_explicit_period(cli, spend):
    result = cli("costs", "--from", "2020-01-01", "--to", "2020-01-31")
    assert result.exit_code == 0
    assert result.stdout == "Costs by model, from/to, 2020-01-01 to 2020-01-31 (UTC), in USD\nNo usage in this period.\n"


def test_recommendations(cli, spend, pulse):
    expected = recommend(pulse.project)
    result = cli("recommendations")

    assert result.exit_code == 0, result.stderr
    assert expected, "the spend above is concentrated enough for at least one recommendation"
    for index, item in enumerate(expected, 1):
        assert f"{index}. {item.title}" in result.stdout
        assert item.detail in result.stdout
    assert json.loads(cli("recommendations", "--json").stdout)["results"] == [r.as_dict() for r in expected]


def test_a_model_without_a_price_shows_no_cost_rather_than_zero(cli, spend, pulse):
    item = {"provider": "acme-labs", "model": "acme-finetune-v2", "input_tokens": 100, "output_tokens": 50}
    assert ingest(pulse.project, [item], token=pulse.ingest_token).inserted == 1

    result = cli("costs")

    assert result.exit_code == 0, result.stderr
    row = next(line for line in body(result) if "acme-finetune-v2" in line)
    assert row.split()[-2:] == ["–", "–"]
    assert "1 request has no known price and no cost here: acme-labs/acme-finetune-v2." in result.stderr + result.stdout
