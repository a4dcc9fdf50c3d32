"""Ingestion: validate reported LLM calls, price them, store them and update their rollups.

    result = ingest(project, items, token=request.auth, batch_key=request.headers.get("Idempotency-Key"))
    result = ingest(project, records, token=token, trusted=True)   # the gateway's consumer (gateway/consumer.py)

One transaction per request, three statements whatever the batch size (up to 1,000 events):

1. one multi-row `INSERT … ON CONFLICT (project, idempotency_key) DO NOTHING RETURNING uuid`:
   a retried event (same idempotency key in the same project) is acknowledged as a duplicate
   and never counted twice, also when two retries race (the second waits for the first's row);
2. one `INSERT … ON CONFLICT DO UPDATE SET n = n + EXCLUDED.n` into `CostRollup` for the hourly
   and daily rows of the events actually inserted, in key order so that concurrent batches
   touching the same rows lock them in the same order (no deadlocks);
3. the price lookups (`PriceBook`, a query or two per distinct provider/model).

The guarantee: an event is acknowledged only after its transaction committed, so an accepted
event survives any crash of the web process or a worker after the response (nothing is queued
in memory or in the broker before it is durable). Rollups commit in the same transaction, so
they never disagree with the events.

Validation is hand-written rather than a DRF serializer per item: it is the hot path (a DRF
serializer costs ~10x more per event) and it reports every problem as (index, field, message).

Two doors. The public one (API, SDK) takes `FIELDS`; anything else is an "Unknown field.", and
`source` cannot be "gateway". The trusted one (`trusted=True`, only the gateway's stream
consumer calls it, never a view) also takes what only the gateway can vouch for (`GATEWAY_FIELDS`:
route, upstream, cache hit and its saving, failed attempts, overhead, and the request and
response `bodies` stored beside the event, in the same transaction, when it is new). A record
the gateway already served must not be lost over a detail, so on that door over-long text is cut
and unstorable characters replaced rather than refused.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import psycopg
from django.db import connection, transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import ApiToken, Project
from lib.dates import OutOfRange, check_moment
from lib.text import printable, storable, unstorable

from .models import CostEvent, CostEventBody, CostRollup, rollup_tag_keys
from .pricing import PriceBook, as_stored, cost_of, normalize_provider

logger = logging.getLogger(__name__)

MAX_BATCH = 1000
MAX_TOKENS = 10**9
MAX_COST_USD = Decimal(1_000_000)
MAX_LATENCY_MS = 3_600_000
MAX_TAGS = 20
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 128
FUTURE_TOLERANCE = timedelta(minutes=5)  # clients' clocks drift
MAX_AGE = timedelta(days=400)  # a year of backfill, with room for a leap year and a slow import
MAX_END_USER = 128
MAX_ROUTE = 128
MAX_UPSTREAM = 200
MAX_ATTEMPTS = 20  # the gateway bounds its retries far lower; anything beyond is not kept
MAX_ATTEMPT_ERROR = 500
# A defensive cap per body (the gateway already truncated to the project's body_max_bytes,
# at most 1 MB), and the longest retention a record may ask for.
MAX_BODY_BYTES = 1_000_000
MAX_BODY_RETENTION_DAYS = 365
DEFAULT_BODY_RETENTION_DAYS = 7
CALL_FIELDS = frozenset({"ttft_ms", "streamed", "endpoint", "end_user", "token_count_source"})
FIELDS = {
    "provider", "model", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens",
    "cost_usd", "latency_ms", "status_code", "success", "timestamp", "tags", "idempotency_key", "source",
    *CALL_FIELDS,
}
GATEWAY_FIELDS = {"route", "upstream", "cache_hit", "saved_usd", "attempts", "overhead_ms", "bodies"}
TRUSTED_FIELDS = FIELDS | GATEWAY_FIELDS
SOURCES = frozenset(CostEvent.Source.values)
PUBLIC_SOURCES = tuple(s for s in CostEvent.Source.values if s != CostEvent.Source.GATEWAY)
ENDPOINTS = frozenset(CostEvent.Endpoint.values)
TOKEN_COUNT_SOURCES = frozenset(CostEvent.TokenCountSource.values)
# The gateway's call record may name the provider's own count "provider" (design.md's word for
# benchmarks' "usage").
TOKEN_COUNT_ALIASES = {"provider": CostEvent.TokenCountSource.USAGE}
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")


@dataclass(frozen=True)
class ItemError:
    index: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"index": self.index, "field": self.field, "message": self.message}


@dataclass
class Accepted:
    index: int
    event_uuid: uuid.UUID
    duplicate: bool
    cost_usd: Decimal | None


@dataclass
class IngestResult:
    accepted: list[Accepted] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        return sum(1 for a in self.accepted if not a.duplicate)

    @property
    def duplicates(self) -> int:
        return sum(1 for a in self.accepted if a.duplicate)

    @property
    def rejected(self) -> int:
        return len({e.index for e in self.errors})


@dataclass(frozen=True)
class Bodies:
    """A gateway call's request and response as they will be stored."""

    request: str
    response: str
    truncated: bool
    retention_days: int


@dataclass(slots=True)  # attribute reads in the rollup loop, 10 per event and row
class _Event:
    """A validated item, ready to insert."""

    index: int
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    client_cost: Decimal | None
    latency_ms: float | None
    status_code: int | None
    success: bool
    occurred_at: datetime
    tags: dict[str, str]
    idempotency_key: str | None
    source: str
    ttft_ms: float | None = None
    streamed: bool = False
    endpoint: str = ""
    end_user: str = ""
    token_count_source: str = ""
    route: str = ""
    upstream: str = ""
    cache_hit: bool = False
    saved_usd: Decimal | None = None
    gateway: dict = field(default_factory=dict)
    bodies: Bodies | None = None
    uuid: uuid.UUID = field(default_factory=uuid.uuid4)
    cost_usd: Decimal | None = None
    cost_source: str = CostEvent.CostSource.UNPRICED
    price_id: int | None = None


# ----------------------------------------------------------------------------- validation


def _text(item: Mapping, name: str, errors: list[str | tuple[str, str]], *, limit: int, required: bool) -> str | None:
    value = item.get(name)
    if value is None:
        if required:
            errors.append((name, "This field is required."))
        return None
    if not isinstance(value, str) or not value.strip():
        errors.append((name, "Must be a non-empty string."))
        return None
    value = value.strip()
    if len(value) > limit:
        errors.append((name, f"At most {limit} characters."))
        return None
    problem = unstorable(value)
    if problem:
        errors.append((name, problem))
        return None
    return value


def _count(item: Mapping, name: str, errors: list) -> int:
    value = item.get(name, 0)
    if value is None:
        return 0
    # A float is accepted when whole (12.0); 1e400 parses as infinity, which is not.
    if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(value, float) and not value.is_integer()):
        errors.append((name, "Must be a whole number."))
        return 0
    if not 0 <= value <= MAX_TOKENS:
        errors.append((name, f"Must be between 0 and {MAX_TOKENS:,}."))
        return 0
    return int(value)


def _timestamp(item: Mapping, now: datetime, errors: list) -> datetime:
    value = item.get("timestamp")
    if value is None:
        return now
    parsed = None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            parsed = datetime.fromtimestamp(value, tz=UTC)  # seconds since the epoch
        except (OverflowError, OSError, ValueError):
            parsed = None
    if parsed is None:
        errors.append(("timestamp", "Must be an ISO 8601 date-time (e.g. 2026-11-23T14:05:00Z) or Unix seconds."))
        return now
    try:
        parsed = check_moment(parsed)  # documented: a time without an offset is UTC
    except OutOfRange as error:
        errors.append(("timestamp", str(error)))
        return now
    if parsed > now + FUTURE_TOLERANCE:
        errors.append(("timestamp", "Is in the future (more than 5 minutes ahead of the server's clock)."))
    elif parsed < now - MAX_AGE:
        errors.append(("timestamp", f"Is more than {MAX_AGE.days} days old."))
    return parsed


def _tags(item: Mapping, errors: list) -> dict[str, str]:
    value = item.get("tags")
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(("tags", "Must be an object of key → value, e.g. {\"feature\": \"search\"}."))
        return {}
    if len(value) > MAX_TAGS:
        errors.append(("tags", f"At most {MAX_TAGS} tags."))
        return {}
    tags = {}
    for key, raw in value.items():
        if not key or len(key) > MAX_TAG_KEY:
            errors.append(("tags", f"Tag keys must have 1 to {MAX_TAG_KEY} characters."))
            return {}
        problem = unstorable(key)
        if problem:
            errors.append(("tags", f"Tag key '{printable(key)}': {problem}"))
            return {}
        if isinstance(raw, str):
            text = raw
        elif isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, int) or (isinstance(raw, float) and math.isfinite(raw)):
            text = str(raw)
        else:
            errors.append(("tags", f"Tag {key!r} must be a string, a finite number or a boolean."))
            return {}
        if len(text) > MAX_TAG_VALUE:
            errors.append(("tags", f"Tag {key!r} is longer than {MAX_TAG_VALUE} characters."))
            return {}
        problem = unstorable(text)
        if problem:
            errors.append(("tags", f"Tag {key!r}: {problem}"))
            return {}
        tags[key] = text
    return tags


def _usd(item: Mapping, name: str, errors: list) -> Decimal | None:
    raw = item.get(name)
    if raw is None:
        return None
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise InvalidOperation
        amount = Decimal(str(raw))
        if not amount.is_finite() or not 0 <= amount <= MAX_COST_USD:
            raise InvalidOperation
        return as_stored(amount)
    except InvalidOperation:
        errors.append((name, f"Must be a number of US dollars between 0 and {MAX_COST_USD:,}."))
        return None


def _milliseconds(item: Mapping, name: str, errors: list, *, clamp: bool = False) -> float | None:
    """`clamp` (the trusted door): a duration out of bounds (a stream longer than an hour) is
    kept at the bound instead of refusing the call."""
    value = item.get(name)
    if value is None:
        return None
    if clamp and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(min(max(value, 0), MAX_LATENCY_MS))
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_LATENCY_MS:
        errors.append((name, f"Must be a number of milliseconds between 0 and {MAX_LATENCY_MS:,}."))
        return None
    return float(value)


def _flag(item: Mapping, name: str, errors: list) -> bool:
    value = item.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        errors.append((name, "Must be true or false."))
        return False
    return value


def _choice(item: Mapping, name: str, choices: frozenset[str], errors: list, aliases: Mapping[str, str] | None = None) -> str:
    value = item.get(name)
    if value is None:
        return ""
    if isinstance(value, str) and aliases and value in aliases:
        return aliases[value]
    if not isinstance(value, str) or value not in choices:
        errors.append((name, f"Must be one of {', '.join(sorted(choices))}."))
        return ""
    return value


def _end_user(item: Mapping, errors: list) -> str:
    """Optional: absent, null or "" is none. Checked before stripping, like the schema says."""
    value = item.get("end_user")
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.append(("end_user", "Must be a string."))
        return ""
    if len(value) > MAX_END_USER:
        errors.append(("end_user", f"At most {MAX_END_USER} characters."))
        return ""
    problem = unstorable(value)
    if problem:
        errors.append(("end_user", problem))
        return ""
    return value.strip()


def _lenient_text(item: Mapping, name: str, limit: int) -> str:
    """Trusted text: made storable and cut to `limit` rather than refused (a number, say
    OpenAI's `user` sent as 42, is written out; anything else is dropped)."""
    value = item.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return ""
    return storable(value).strip()[:limit]


def _attempts(item: Mapping) -> list[dict]:
    """Diagnostics only: what does not fit the shape is left out, never a reason to refuse."""
    value = item.get("attempts")
    if not isinstance(value, list):
        return []
    attempts = []
    for attempt in value[:MAX_ATTEMPTS]:
        if not isinstance(attempt, dict):
            continue
        status = attempt.get("status_code")
        if isinstance(status, bool) or not (isinstance(status, int) and 100 <= status <= 599):
            status = None  # e.g. a connection that never got an answer
        attempts.append({
            "upstream": _lenient_text(attempt, "upstream", MAX_UPSTREAM),
            "status_code": status,
            "error": _lenient_text(attempt, "error", MAX_ATTEMPT_ERROR),
        })
    return attempts


def _capped(text: str) -> tuple[str, bool]:
    """At most MAX_BODY_BYTES of UTF-8, never cutting a character in two."""
    if len(text) * 4 <= MAX_BODY_BYTES:  # cannot be over: skip the encoding
        return text, False
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_BODY_BYTES:
        return text, False
    return encoded[:MAX_BODY_BYTES].decode("utf-8", "ignore"), True


def _bodies(item: Mapping, errors: list) -> Bodies | None:
    value = item.get("bodies")
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(("bodies", "Must be an object {request, response, truncated, retention_days}."))
        return None
    texts = {}
    for name in ("request", "response"):
        text = value.get(name)
        if text is None:
            text = ""
        if not isinstance(text, str):
            errors.append(("bodies", f"{name} must be a string."))
            return None
        texts[name] = _capped(storable(text))
    truncated = value.get("truncated", False)
    days = value.get("retention_days", DEFAULT_BODY_RETENTION_DAYS)
    if not isinstance(truncated, bool):
        errors.append(("bodies", "truncated must be true or false."))
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_BODY_RETENTION_DAYS:
        errors.append(("bodies", f"retention_days must be a whole number of days from 1 to {MAX_BODY_RETENTION_DAYS}."))
        return None
    (request, cut_request), (response, cut_response) = texts["request"], texts["response"]
    return Bodies(request, response, truncated or cut_request or cut_response, days)


def _gateway_fields(item: Mapping, errors: list) -> dict:
    """What only the gateway reports (the trusted door)."""
    overhead = _milliseconds(item, "overhead_ms", errors, clamp=True)
    diagnostics: dict = {}
    attempts = _attempts(item)
    if attempts:
        diagnostics["attempts"] = attempts
    if overhead is not None:
        diagnostics["overhead_ms"] = round(overhead, 3)
    return {
        "route": _lenient_text(item, "route", MAX_ROUTE),
        "upstream": _lenient_text(item, "upstream", MAX_UPSTREAM),
        "cache_hit": _flag(item, "cache_hit", errors),
        "saved_usd": _usd(item, "saved_usd", errors),
        "gateway": diagnostics,
        "bodies": _bodies(item, errors),
    }


GATEWAY_KEY_PREFIX = "gw-"


def validate(index: int, item: object, now: datetime, *, trusted: bool = False) -> tuple[_Event | None, list[ItemError]]:
    if not isinstance(item, dict):
        return None, [ItemError(index, "non_field_errors", "Each event must be a JSON object.")]
    errors: list[tuple[str, str]] = []
    for unknown in sorted(set(item) - (TRUSTED_FIELDS if trusted else FIELDS)):
        errors.append((printable(unknown), "Unknown field."))
    provider = _text(item, "provider", errors, limit=64, required=True)
    if provider is not None:
        # Lower-casing can lengthen text ("İ" becomes two characters): check what is stored.
        provider = normalize_provider(provider)
        if len(provider) > 64:
            errors.append(("provider", "At most 64 characters."))
    model = _text(item, "model", errors, limit=128, required=True)
    counts = {name: _count(item, name, errors) for name in TOKEN_FIELDS}
    if counts["cached_tokens"] > counts["input_tokens"]:
        errors.append(("cached_tokens", "Cannot exceed input_tokens (cached tokens are part of the input)."))
    if counts["reasoning_tokens"] > counts["output_tokens"]:
        errors.append(("reasoning_tokens", "Cannot exceed output_tokens (reasoning tokens are part of the output)."))

    # Most events send neither: no call for them (this runs 1,000 times a batch).
    client_cost = None if item.get("cost_usd") is None else _usd(item, "cost_usd", errors)
    latency = None if item.get("latency_ms") is None else _milliseconds(item, "latency_ms", errors, clamp=trusted)

    status = item.get("status_code")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599):
        errors.append(("status_code", "Must be an HTTP status code (100-599)."))
        status = None
    success = item.get("success")
    if success is None:
        success = status is None or status < 400
    elif not isinstance(success, bool):
        errors.append(("success", "Must be true or false."))
        success = True

    occurred_at = _timestamp(item, now, errors)
    tags = _tags(item, errors)
    key = _text(item, "idempotency_key", errors, limit=128, required=False)
    if not trusted and key is not None and key.startswith(GATEWAY_KEY_PREFIX):
        # The gateway's own keys ("gw-" + request id): an event sent first under one would make
        # the gateway's record of that call a duplicate, and its spend would vanish.
        errors.append(("idempotency_key", f"Keys starting with “{GATEWAY_KEY_PREFIX}” are reserved for the gateway."))
    if trusted:
        source = item.get("source", CostEvent.Source.GATEWAY)
        if not isinstance(source, str) or source not in SOURCES:
            errors.append(("source", f"Must be one of {', '.join(CostEvent.Source.values)}."))
    else:
        source = item.get("source", CostEvent.Source.API)
        if not isinstance(source, str) or source not in PUBLIC_SOURCES:
            errors.append(("source", f"Must be one of {', '.join(PUBLIC_SOURCES)}."))
    reported = {}
    if trusted or not CALL_FIELDS.isdisjoint(item):  # most API events report none of them: skip the calls
        reported = {
            "ttft_ms": _milliseconds(item, "ttft_ms", errors, clamp=trusted),
            "streamed": _flag(item, "streamed", errors),
            "endpoint": _choice(item, "endpoint", ENDPOINTS, errors),
            "end_user": _lenient_text(item, "end_user", MAX_END_USER) if trusted else _end_user(item, errors),
            "token_count_source": _choice(
                item, "token_count_source", TOKEN_COUNT_SOURCES, errors, aliases=TOKEN_COUNT_ALIASES if trusted else None,
            ),
        }
    if trusted:
        reported |= _gateway_fields(item, errors)

    if errors:
        return None, [ItemError(index, name, message) for name, message in errors]
    return _Event(
        index=index, provider=provider, model=model, **counts, client_cost=client_cost,
        latency_ms=latency, status_code=status, success=success, occurred_at=occurred_at, tags=tags,
        idempotency_key=key, source=source, **reported,
    ), []


# ----------------------------------------------------------------------------- pricing


def price_events(events: Sequence[_Event]) -> None:
    """Client-sent costs are kept as sent; the rest are computed, or left unknown (never $0).
    A cache hit's saving, when the gateway did not send it, is what its tokens would have cost."""
    # A cache hit costs what the gateway says ($0); what it saved is priced here unless sent.
    to_price = [e for e in events if e.client_cost is None or (e.cache_hit and e.saved_usd is None)]
    book = PriceBook.for_pairs({(e.provider, e.model) for e in to_price}) if to_price else None
    for event in events:
        if event.client_cost is not None:
            event.cost_usd, event.cost_source = event.client_cost, CostEvent.CostSource.CLIENT
            if not (event.cache_hit and event.saved_usd is None):
                continue
        price = book.price_for(event.provider, event.model, event.occurred_at)
        if price is None:
            continue
        cost = cost_of(
            price, input_tokens=event.input_tokens, output_tokens=event.output_tokens,
            cached_tokens=event.cached_tokens,
        )
        if event.client_cost is not None:  # a cache hit: its would-be cost is the saving
            event.saved_usd = cost
            continue
        event.price_id = price.id
        event.cost_source = CostEvent.CostSource.COMPUTED
        event.cost_usd = cost


# ----------------------------------------------------------------------------- storage

# Column -> PostgreSQL type, in insert order. The call and gateway columns are sent only when a
# batch has a value other than their default for them (the database fills in the rest: every
# one has a database default): a plain API batch costs what it did before they existed.
_EVENT_COLUMNS = {
    "uuid": "uuid", "project_id": "bigint", "api_token_id": "bigint", "token_prefix": "text", "provider": "text",
    "model": "text", "input_tokens": "bigint", "output_tokens": "bigint", "cached_tokens": "bigint",
    "reasoning_tokens": "bigint", "cost_usd": "numeric", "cost_source": "text", "price_id": "bigint",
    "latency_ms": "float8", "status_code": "integer", "success": "boolean", "occurred_at": "timestamptz",
    "received_at": "timestamptz", "tags": "jsonb", "idempotency_key": "text", "source": "text",
}
_CALL_COLUMNS = {
    "ttft_ms": "float8", "streamed": "boolean", "endpoint": "text", "end_user": "text", "token_count_source": "text",
}
_GATEWAY_COLUMNS = {
    "route": "text", "upstream": "text", "cache_hit": "boolean", "saved_usd": "numeric", "gateway": "jsonb",
}
_ROLLUP_COLUMNS = {
    "project_id": "bigint", "granularity": "text", "bucket": "timestamptz", "provider": "text", "model": "text",
    "token_prefix": "text", "tag_key": "text", "tag_value": "text", "requests": "bigint", "failures": "bigint",
    "input_tokens": "bigint", "output_tokens": "bigint", "cached_tokens": "bigint", "reasoning_tokens": "bigint",
    "cost_usd": "numeric", "unpriced_requests": "bigint", "latency_ms_sum": "float8", "latency_count": "bigint",
}
_CACHE_ROLLUP_COLUMNS = {"cache_hits": "bigint", "saved_usd": "numeric"}


class _Adapt:
    """Values as this database wants them (UUIDs, JSON and datetimes differ between backends)."""

    def __init__(self) -> None:
        fields = {f.attname: f for f in CostEvent._meta.concrete_fields}
        self._uuid, self._datetime = fields["uuid"], fields["occurred_at"]
        self.postgres = connection.vendor == "postgresql"

    def uuid(self, value: uuid.UUID) -> object:
        return value if self.postgres else self._uuid.get_db_prep_value(value, connection)

    def json(self, value: dict) -> str:
        return json.dumps(value, separators=(",", ":")) if value else "{}"

    def datetime(self, value: datetime) -> object:
        return value if self.postgres else self._datetime.get_db_prep_value(value, connection)

    def decimal(self, value: Decimal | None) -> object:
        return value if self.postgres or value is None else str(value)


def _execute_bulk_insert(table: str, columns: Mapping[str, str], rows: list[tuple], suffix: str) -> list[tuple]:
    """`INSERT INTO table (columns) <rows> suffix`, in a statement whose text does not depend on
    the number of rows on PostgreSQL (`unnest` of one array per column: the driver parses and
    caches it once; a 1,000-row VALUES list of 21,000 placeholders cost more to parse than to
    execute), and as a VALUES list elsewhere (SQLite, for `make run`)."""
    names = ", ".join(columns)
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%b::{'text' if kind == 'jsonb' else kind}[]" for kind in columns.values())
        select = ", ".join(f"u.{name}::jsonb" if kind == "jsonb" else f"u.{name}" for name, kind in columns.items())
        sql = f"INSERT INTO {table} ({names}) SELECT {select} FROM unnest({arrays}) AS u({names}) {suffix}"  # noqa: S608 (names are ours)
        params: list[object] = [list(column) for column in zip(*rows, strict=True)]
        # A server-side-binding cursor on Django's own connection (so, its transaction): Django
        # binds client-side, quoting every array element in Python, which cost more than the
        # insert itself; here psycopg sends the arrays as binary parameters.
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if "RETURNING" in suffix else []
    else:
        row = "(" + ", ".join(["%s"] * len(columns)) + ")"
        sql = f"INSERT INTO {table} ({names}) VALUES {', '.join([row] * len(rows))} {suffix}"  # noqa: S608 (names are ours)
        params = [value for row_values in rows for value in row_values]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if "RETURNING" in suffix else []


def _insert_events(
    project: Project, token: ApiToken | None, events: Sequence[_Event], received_at: datetime,
) -> dict[uuid.UUID, int | None]:
    """Insert; returns uuid -> id of the events actually inserted (the others were duplicates);
    the id is only read back when some event has bodies to store with it (else None)."""
    adapt = _Adapt()
    token_id = token.id if token is not None else None
    prefix = token.prefix if token is not None else ""
    received = adapt.datetime(received_at)
    rows = [
        (
            adapt.uuid(e.uuid), project.id, token_id, prefix, e.provider, e.model, e.input_tokens, e.output_tokens,
            e.cached_tokens, e.reasoning_tokens, adapt.decimal(e.cost_usd), e.cost_source, e.price_id, e.latency_ms,
            e.status_code, e.success, adapt.datetime(e.occurred_at), received, adapt.json(e.tags), e.idempotency_key,
            e.source,
        )
        for e in events
    ]
    columns = dict(_EVENT_COLUMNS)
    if any(e.ttft_ms is not None or e.streamed or e.endpoint or e.end_user or e.token_count_source for e in events):
        columns |= _CALL_COLUMNS
        rows = [
            (*row, e.ttft_ms, e.streamed, e.endpoint, e.end_user, e.token_count_source)
            for row, e in zip(rows, events, strict=True)
        ]
    if any(e.route or e.upstream or e.cache_hit or e.saved_usd is not None or e.gateway for e in events):
        columns |= _GATEWAY_COLUMNS
        rows = [
            (*row, e.route, e.upstream, e.cache_hit, adapt.decimal(e.saved_usd), adapt.json(e.gateway))
            for row, e in zip(rows, events, strict=True)
        ]
    returning = "uuid, id" if any(e.bodies is not None for e in events) else "uuid, NULL"
    returned = _execute_bulk_insert(
        CostEvent._meta.db_table, columns, rows,
        f"ON CONFLICT (project_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING {returning}",
    )
    return {(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))): id_ for value, id_ in returned}


def _store_bodies(events: Iterable[_Event], ids: Mapping[uuid.UUID, int | None]) -> None:
    """The bodies of newly inserted events (a duplicate's were stored with it, or not at all).
    Kept for their retention period from the call."""
    rows = [
        CostEventBody(
            event_id=ids[e.uuid], request=e.bodies.request, response=e.bodies.response, truncated=e.bodies.truncated,
            expires_at=e.occurred_at + timedelta(days=e.bodies.retention_days),
        )
        for e in events if e.bodies is not None
    ]
    if rows:
        CostEventBody.objects.bulk_create(rows, batch_size=200)


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class RollupDelta:
    """Counter changes for one rollup row (negative when re-pricing takes an event out of
    `unpriced_requests`)."""

    requests: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced_requests: int = 0
    latency_ms_sum: float = 0.0
    latency_count: int = 0
    cache_hits: int = 0
    saved_usd: Decimal = Decimal(0)


RollupKey = tuple[str, datetime, str, str, str, str, str]  # granularity, bucket, provider, model, token, tag key, value


def rollup_keys(*, occurred_at: datetime, provider: str, model: str, token_prefix: str, tags: Mapping[str, str]) -> Iterable[RollupKey]:
    """Every rollup row one event counts in: untagged and per rolled-up tag key, hourly and daily,
    and per day over all providers, models and tokens (totals, and per tag value)."""
    tagged = [(key, tags[key][:MAX_TAG_VALUE]) for key in rollup_tag_keys() if key in tags]
    dims = [("", ""), *tagged]
    day = _day(occurred_at)
    for granularity, bucket in ((CostRollup.Granularity.HOUR, _hour(occurred_at)), (CostRollup.Granularity.DAY, day)):
        for tag_key, tag_value in dims:
            yield (granularity, bucket, provider, model, token_prefix, tag_key, tag_value)
    for tag_key, tag_value in dims:
        yield (CostRollup.Granularity.DAY_TOTALS, day, "", "", "", tag_key, tag_value)


def _deltas_for(events: Iterable[_Event], token_prefix: str) -> dict[RollupKey, RollupDelta]:
    deltas: dict[RollupKey, RollupDelta] = {}
    for e in events:
        for key in rollup_keys(occurred_at=e.occurred_at, provider=e.provider, model=e.model, token_prefix=token_prefix, tags=e.tags):
            d = deltas.get(key)
            if d is None:
                d = deltas[key] = RollupDelta()
            d.requests += 1
            d.failures += not e.success
            d.input_tokens += e.input_tokens
            d.output_tokens += e.output_tokens
            d.cached_tokens += e.cached_tokens
            d.reasoning_tokens += e.reasoning_tokens
            if e.cost_usd is None:
                d.unpriced_requests += 1
            else:
                d.cost_usd += e.cost_usd
            if e.latency_ms is not None:
                d.latency_ms_sum += e.latency_ms
                d.latency_count += 1
            if e.cache_hit:
                d.cache_hits += 1
                if e.saved_usd is not None:
                    d.saved_usd += e.saved_usd
    return deltas


def apply_rollup_deltas(project_id: int, deltas: Mapping[RollupKey, RollupDelta]) -> None:
    """One upsert adding `deltas` to their rows, in key order (a consistent lock order)."""
    if not deltas:
        return
    adapt = _Adapt()
    # Cache counters only when some delta has them (else the columns keep adding nothing).
    cached = any(d.cache_hits or d.saved_usd for d in deltas.values())
    columns = _ROLLUP_COLUMNS | _CACHE_ROLLUP_COLUMNS if cached else _ROLLUP_COLUMNS
    rows = []
    for key in sorted(deltas):
        granularity, bucket, provider, model, token_prefix, tag_key, tag_value = key
        d = deltas[key]
        row = (
            project_id, granularity, adapt.datetime(bucket), provider, model, token_prefix, tag_key, tag_value,
            d.requests, d.failures, d.input_tokens, d.output_tokens, d.cached_tokens, d.reasoning_tokens,
            adapt.decimal(d.cost_usd), d.unpriced_requests, d.latency_ms_sum, d.latency_count,
        )
        rows.append((*row, d.cache_hits, adapt.decimal(d.saved_usd)) if cached else row)
    table = CostRollup._meta.db_table
    counters = [c for c in CostRollup.COUNTERS if c in columns]
    updates = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in counters)
    _execute_bulk_insert(table, columns, rows, f"ON CONFLICT ({', '.join(CostRollup.ROLLUP_KEY)}) DO UPDATE SET {updates}")


# ----------------------------------------------------------------------------- entry point


def _with_batch_keys(items: Sequence[object], batch_key: str | None) -> None:
    """A batch sent with an `Idempotency-Key` header gives each event without its own key a
    derived one, so retrying the whole batch is idempotent too."""
    if not batch_key:
        return
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("idempotency_key") is None:
            item["idempotency_key"] = f"{batch_key[:100]}:{index}"


# Sent once a transaction that changed projects' spend has committed (new events, re-priced
# ones), with `project_ids`. Budgets listen (alerts/signals.py). Sent robustly: a failing
# receiver (say, the broker is down) is logged and never fails the ingestion that already
# committed; the periodic budget evaluation catches up.
usage_recorded = Signal()


def _announce_usage(project_ids: Iterable[int]) -> None:
    ids = sorted(set(project_ids))

    def send() -> None:
        for receiver, response in usage_recorded.send_robust(sender=CostEvent, project_ids=ids):
            if isinstance(response, Exception):
                logger.error("usage_recorded receiver %r failed", receiver, exc_info=response)

    if ids:
        transaction.on_commit(send)


def ingest(
    project: Project, items: Sequence[object], *, token: ApiToken | None = None, batch_key: str | None = None,
    trusted: bool = False,
) -> IngestResult:
    """Validate, price and store `items`; the valid ones are stored even if others are not.
    `trusted`: the gateway's door (GATEWAY_FIELDS accepted; see the module's docstring)."""
    if len(items) > MAX_BATCH:
        raise ValueError(f"At most {MAX_BATCH} events per batch.")
    now = timezone.now()
    _with_batch_keys(items, batch_key)
    result = IngestResult()
    events: list[_Event] = []
    first_with_key: dict[str, _Event] = {}
    repeats: list[tuple[_Event, _Event]] = []  # (repeat, first) with the same key in one batch
    for index, item in enumerate(items):
        event, errors = validate(index, item, now, trusted=trusted)
        if errors:
            result.errors.extend(errors)
        elif event.idempotency_key is not None and event.idempotency_key in first_with_key:
            repeats.append((event, first_with_key[event.idempotency_key]))
        else:
            if event.idempotency_key is not None:
                first_with_key[event.idempotency_key] = event
            events.append(event)
    if not events:
        return result

    price_events(events)
    with transaction.atomic():
        inserted = _insert_events(project, token, events, now)
        new = [e for e in events if e.uuid in inserted]
        _store_bodies(new, inserted)
        apply_rollup_deltas(project.id, _deltas_for(new, token.prefix if token else ""))
        if new:
            _announce_usage([project.id])
        stored: dict[str, tuple[uuid.UUID, Decimal | None]] = {}
        if len(new) < len(events):  # duplicates: answer with the stored event, not the resent one
            keys = [e.idempotency_key for e in events if e.uuid not in inserted]
            rows = CostEvent.objects.filter(project=project, idempotency_key__in=keys)
            stored = {key: (uuid_, cost) for key, uuid_, cost in rows.values_list("idempotency_key", "uuid", "cost_usd")}
    for event in events:
        if event.uuid in inserted:
            result.accepted.append(Accepted(event.index, event.uuid, False, event.cost_usd))
        else:
            event_uuid, cost = stored[event.idempotency_key]
            result.accepted.append(Accepted(event.index, event_uuid, True, cost))
    accepted_by_key = {a.index: a for a in result.accepted}
    for repeat, first in repeats:
        original = accepted_by_key[first.index]
        result.accepted.append(Accepted(repeat.index, original.event_uuid, True, original.cost_usd))
    result.accepted.sort(key=lambda a: a.index)
    return result


# ----------------------------------------------------------------------------- re-pricing

REPRICE_CHUNK = 2000


def reprice_unpriced(*, chunk: int = REPRICE_CHUNK) -> int:
    """Price the events that had no price when they arrived, now that their model may have one;
    their rollups gain the cost and lose them from `unpriced_requests`. Safe to run anywhere and
    concurrently: each chunk is claimed with `SELECT … FOR UPDATE SKIP LOCKED` and re-checked.
    Returns how many events were priced."""
    priced = 0
    seen: set[int] = set()
    while True:
        with transaction.atomic():
            rows = list(
                CostEvent.objects.dangerously_unscoped()
                .filter(cost_usd__isnull=True, cost_source=CostEvent.CostSource.UNPRICED)
                .exclude(id__in=seen)
                .order_by("id")
                .select_for_update(skip_locked=True)
                .only("id", "project_id", "provider", "model", "occurred_at", "input_tokens", "output_tokens",
                      "cached_tokens", "token_prefix", "tags")[:chunk]
            )
            if not rows:
                return priced
            seen.update(row.id for row in rows)
            book = PriceBook.for_pairs({(row.provider, row.model) for row in rows})
            changed = []
            deltas: dict[int, dict[RollupKey, RollupDelta]] = {}
            for row in rows:
                price = book.price_for(row.provider, row.model, row.occurred_at)
                if price is None:
                    continue
                row.cost_usd = cost_of(price, input_tokens=row.input_tokens, output_tokens=row.output_tokens, cached_tokens=row.cached_tokens)
                row.cost_source, row.price_id = CostEvent.CostSource.COMPUTED, price.id
                changed.append(row)
                project_deltas = deltas.setdefault(row.project_id, {})
                for key in rollup_keys(occurred_at=row.occurred_at, provider=row.provider, model=row.model, token_prefix=row.token_prefix, tags=row.tags):
                    d = project_deltas.setdefault(key, RollupDelta())
                    d.cost_usd += row.cost_usd
                    d.unpriced_requests -= 1
            CostEvent.objects.bulk_update(changed, ["cost_usd", "cost_source", "price_id"], batch_size=500)
            for project_id in sorted(deltas):
                apply_rollup_deltas(project_id, deltas[project_id])
            _announce_usage(deltas)
            priced += len(changed)
