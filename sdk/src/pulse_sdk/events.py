"""An event as the batch API takes it: its key, and its encoding into a request body.

`Client.track()` builds the event dict in the caller's thread, so it does as little as possible:
no validation (the server checks every field and refuses a bad event alone, with a reason the
sender logs) and no conversion that can wait. What cannot wait happens there: the timestamp and
the idempotency key are fixed when the call is tracked, so a retry an hour later still names the
same moment and the same event, and the tags are copied, because the caller may change its dict
after the call. Everything else (a Decimal cost, a numpy integer, a datetime in a tag) is turned
into JSON here, when the background thread encodes the batch.
"""

from __future__ import annotations

import json
import math
import os
from datetime import date, datetime
from decimal import Decimal
from typing import Any

KEY_PREFIX = "sdk-"  # the server reserves "gw-" for the gateway's own records

Event = dict[str, Any]


def new_idempotency_key() -> str:
    """96 random bits: unique without coordination, also in a child process after fork()
    (os.urandom is not a seeded generator the child would share with its parent)."""
    return KEY_PREFIX + os.urandom(12).hex()


def describe(event: Event) -> str:
    """How a log line names an event: what the caller would recognise, and the key to find it."""
    return f"model {event.get('model')!r}, idempotency_key {event.get('idempotency_key')!r}"


def _jsonable(value: Any) -> Any:
    """json's fallback for what it cannot write: the types an application plausibly passes.

    Anything else becomes its text, which the server then refuses for that event alone (with
    the field's name) rather than the whole batch failing to encode."""
    if isinstance(value, Decimal):
        return str(value)  # exact: the server reads cost_usd as a decimal string
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "__index__"):  # numpy and other integer types
        return int(value.__index__())
    if hasattr(value, "__float__"):  # numpy floats, fractions
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{number} is not a number JSON can carry")
        return number
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _dumps(value: Any) -> str:
    # allow_nan=False: NaN is not JSON, and the server refuses a body containing it as a whole,
    # which would lose every event of the batch for one bad latency. ASCII out: a lone surrogate
    # is written as an escape (the server refuses that one event) instead of failing to encode.
    return json.dumps(value, default=_jsonable, allow_nan=False, separators=(",", ":"))


def encode_batch(events: list[Event]) -> tuple[bytes, list[Event], list[tuple[Event, str]]]:
    """The request body for `events`, the events it holds (in order: the server's error
    indices refer to them), and those that cannot be sent at all with the reason.

    Encoded in slices of 100 rather than in one call: the C encoder lets no other thread run
    during a call, about 4 ms for a thousand events, which the application's threads would wait
    out; a slice takes about 0.3 ms. A slice that cannot be encoded is retried event by event,
    so one bad event costs only itself."""
    parts: list[str] = []
    kept: list[Event] = []
    refused: list[tuple[Event, str]] = []
    for start in range(0, len(events), 100):
        chunk = events[start:start + 100]
        try:
            text = _dumps(chunk)
        except Exception:  # noqa: BLE001 (an application's value may fail in any way: OverflowError, its own)
            # Rare: find the culprits one by one, send the rest.
            for event in chunk:
                try:
                    parts.append(_dumps(event))
                    kept.append(event)
                except Exception as error:  # noqa: BLE001 (as above: one bad value costs its event only)
                    refused.append((event, f"cannot be written as JSON ({type(error).__name__}: {error})"))
            continue
        parts.append(text[1:-1])  # the chunk's items without its brackets
        kept.extend(chunk)
    body = '{"events":[' + ",".join(part for part in parts if part) + "]}"
    return body.encode("utf-8"), kept, refused
