"""CSV exports, streamed:

- events (`rows()`): written as the database cursor yields them, so an export of millions of
  events needs neither memory nor a long wait for the first byte;
- a cost summary (`summary_csv_response()`): its day and model breakdowns, money written like
  the JSON API writes it (in the chosen currency, 6 decimal places).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.http import StreamingHttpResponse
from django.utils.text import slugify

from .currency import Rates
from .display import MoneyDisplay
from .models import CostEventQuerySet
from .pricing import as_stored
from .summary import Summary, Usage

CHUNK_SIZE = 2000
# Spreadsheets run a cell that starts with one of these as a formula; model names and tags come
# from API clients, so such cells are quoted with a leading apostrophe (OWASP's advice).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = (
    "occurred_at", "event_id", "provider", "model", "input_tokens", "cached_tokens", "output_tokens",
    "reasoning_tokens", "cost_usd", "cost_source", "latency_ms", "status_code", "success",
    "api_token_prefix", "api_token_name", "tags", "source", "idempotency_key",
    # Added with the gateway, at the end so existing spreadsheets keep their columns.
    "ttft_ms", "streamed", "endpoint", "end_user", "token_count_source", "route", "upstream", "cache_hit", "saved_usd",
)
_FIELDS = (
    "occurred_at", "uuid", "provider", "model", "input_tokens", "cached_tokens", "output_tokens",
    "reasoning_tokens", "cost_usd", "cost_source", "latency_ms", "status_code", "success",
    "token_prefix", "tags", "source", "idempotency_key",
    "ttft_ms", "streamed", "endpoint", "end_user", "token_count_source", "route", "upstream", "cache_hit", "saved_usd",
)


class _Echo:
    """csv.writer wants a file; this one hands each line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


def _text(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def header(shown: MoneyDisplay) -> list[str]:
    """`cost_usd` always; the person's own currency next to it when it is not USD."""
    columns = list(COLUMNS)
    if shown.currency != "USD":
        columns.insert(columns.index("cost_usd") + 1, f"cost_{shown.currency.lower()}")
    return columns


def rows(events: CostEventQuerySet, *, shown: MoneyDisplay, token_names: dict[str, str], time_zone: str) -> Iterator[str]:
    """The CSV lines for `events`: times in the organization's zone with their offset, an
    unpriced cost as an empty cell (unknown, not 0)."""
    writer = csv.writer(_Echo())
    zone = ZoneInfo(time_zone)
    converted = shown.currency != "USD"
    yield writer.writerow(header(shown))
    for values in events.values_list(*_FIELDS).iterator(chunk_size=CHUNK_SIZE):
        (occurred_at, uuid, provider, model, input_tokens, cached_tokens, output_tokens, reasoning_tokens,
         cost_usd, cost_source, latency_ms, status_code, success, prefix, tags, source, key,
         ttft_ms, streamed, endpoint, end_user, token_count_source, route, upstream, cache_hit, saved_usd) = values
        line = [
            occurred_at.astimezone(zone).isoformat(), uuid, _text(provider), _text(model), input_tokens,
            cached_tokens, output_tokens, reasoning_tokens, "" if cost_usd is None else cost_usd,
        ]
        if converted:
            line.append("" if cost_usd is None else as_stored(shown.convert(cost_usd)))
        line += [
            cost_source, "" if latency_ms is None else round(latency_ms, 1), "" if status_code is None else status_code,
            "true" if success else "false", prefix, _text(token_names.get(prefix, "")),
            _text(json.dumps(tags, sort_keys=True, ensure_ascii=False) if tags else ""), source, _text(key),
            "" if ttft_ms is None else round(ttft_ms, 1), "true" if streamed else "false", endpoint, _text(end_user),
            token_count_source, _text(route), _text(upstream), "true" if cache_hit else "false",
            "" if saved_usd is None else saved_usd,
        ]
        yield writer.writerow(line)


# ----------------------------------------------------------------------------- summaries

# Six places: a cost per 1K tokens or a single cheap request is a fraction of a cent.
MONEY_PLACES = 6
_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)

SUMMARY_COLUMNS = (
    "breakdown", "date", "provider", "model", "requests", "failures", "input_tokens", "output_tokens",
    "cached_tokens", "reasoning_tokens", "unpriced_requests", "cost",
)


def money_text(amount_usd: Decimal | None, rates: Rates, currency: str) -> str:
    converted = rates.convert(amount_usd, currency)
    return "" if converted is None else str(converted.quantize(_QUANTUM, rounding=ROUND_HALF_UP))


def summary_rows(summary: Summary, rates: Rates, currency: str) -> Iterator[list[str]]:
    def counters(usage: Usage) -> list[object]:
        return [
            usage.requests, usage.failures, usage.input_tokens, usage.output_tokens, usage.cached_tokens,
            usage.reasoning_tokens, usage.unpriced_requests, money_text(usage.cost_usd, rates, currency),
        ]

    yield [*SUMMARY_COLUMNS[:-1], f"cost_{currency.lower()}"]
    for day in summary.by_day:
        yield ["day", day.day.isoformat(), "", "", *counters(day)]
    for model in summary.by_model:
        yield ["model", "", _text(model.provider), _text(model.model), *counters(model)]


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
