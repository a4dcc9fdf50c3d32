"""CSV export of a cost summary: its day and model breakdowns, streamed.

    response = summary_csv_response(summary, rates, "GBP")

Money is written like the JSON API writes it: in the chosen currency, 6 decimal places.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

from django.http import StreamingHttpResponse
from django.utils.text import slugify

from .currency import Rates
from .summary import Summary, Usage

# Six places: a cost per 1K tokens or a single cheap request is a fraction of a cent.
MONEY_PLACES = 6
_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)

COLUMNS = (
    "breakdown", "date", "provider", "model", "requests", "failures", "input_tokens", "output_tokens",
    "cached_tokens", "reasoning_tokens", "unpriced_requests", "cost",
)


def money_text(amount_usd: Decimal | None, rates: Rates, currency: str) -> str:
    converted = rates.convert(amount_usd, currency)
    return "" if converted is None else str(converted.quantize(_QUANTUM, rounding=ROUND_HALF_UP))


def _cell(text: str) -> str:
    """Provider and model names come from clients: a leading = + - @ would be run as a formula
    by spreadsheet apps (CSV injection), so such cells are quoted with an apostrophe."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    """csv.writer wants a file; each row's text is handed straight to the response instead."""

    def write(self, value: str) -> str:
        return value


def summary_rows(summary: Summary, rates: Rates, currency: str) -> Iterator[list[str]]:
    def counters(usage: Usage) -> list[object]:
        return [
            usage.requests, usage.failures, usage.input_tokens, usage.output_tokens, usage.cached_tokens,
            usage.reasoning_tokens, usage.unpriced_requests, money_text(usage.cost_usd, rates, currency),
        ]

    yield [*COLUMNS[:-1], f"cost_{currency.lower()}"]
    for day in summary.by_day:
        yield ["day", day.day.isoformat(), "", "", *counters(day)]
    for model in summary.by_model:
        yield ["model", "", _cell(model.provider), _cell(model.model), *counters(model)]


def filename_for(summary: Summary) -> str:
    names = "-".join(slugify(p.name) for p in summary.projects) or "projects"
    period = summary.period
    return f"pulse-costs-{names}-{period.first_day.isoformat()}-to-{period.last_day.isoformat()}.csv"


def summary_csv_response(summary: Summary, rates: Rates, currency: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in summary_rows(summary, rates, currency)), content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename_for(summary)}"'
    return response
