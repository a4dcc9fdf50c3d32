"""CSV export of events, streamed: rows are written as the database cursor yields them, so an
export of millions of events needs neither memory nor a long wait for the first byte."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from .display import MoneyDisplay
from .models import CostEventQuerySet
from .pricing import as_stored

CHUNK_SIZE = 2000
# Spreadsheets run a cell that starts with one of these as a formula; model names and tags come
# from API clients, so such cells are quoted with a leading apostrophe (OWASP's advice).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = (
    "occurred_at", "event_id", "provider", "model", "input_tokens", "cached_tokens", "output_tokens",
    "reasoning_tokens", "cost_usd", "cost_source", "latency_ms", "status_code", "success",
    "api_token_prefix", "api_token_name", "tags", "source", "idempotency_key",
)
_FIELDS = (
    "occurred_at", "uuid", "provider", "model", "input_tokens", "cached_tokens", "output_tokens",
    "reasoning_tokens", "cost_usd", "cost_source", "latency_ms", "status_code", "success",
    "token_prefix", "tags", "source", "idempotency_key",
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
         cost_usd, cost_source, latency_ms, status_code, success, prefix, tags, source, key) = values
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
        ]
        yield writer.writerow(line)
