"""When to try a request again, and how long to wait: shared by the background sender and the
CLI's importer, so both treat a busy or restarting server the same way."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

# 408 and 429 are "later"; 5xx is the server's problem. Any other 4xx will fail the same way
# again (a bad token, a missing scope, a bad request), so it is never retried.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Connect/read/write errors, timeouts and a connection the server dropped. Not the rest of
# httpx.TransportError: an unsupported scheme or a request httpx cannot write fails again.
RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or 500 <= status < 600


def backoff(attempt: int, *, base: float = 0.25, cap: float = 30.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, …): exponential with full jitter."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt - 1, 20))))


def retry_after(response: httpx.Response, *, cap: float = 300.0) -> float | None:
    """The server's Retry-After in seconds (either form), capped; None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(cap, seconds))


def delay_for(attempt: int, response: httpx.Response | None = None, *, base: float = 0.25, cap: float = 30.0) -> float:
    """The wait before the next attempt: the server's Retry-After when it gave one, else backoff."""
    if response is not None:
        told = retry_after(response)
        if told is not None:
            return told
    return backoff(attempt, base=base, cap=cap)
