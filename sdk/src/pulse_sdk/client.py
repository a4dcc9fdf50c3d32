"""`Client`: record LLM calls in Pulse from the application's own threads, without waiting.

    client = pulse_sdk.Client()                 # PULSE_API_KEY / PULSE_BASE_URL, or `pulse login`
    client.track(provider="openai", model="gpt-4o-mini", input_tokens=812, output_tokens=96,
                 latency_ms=640, tags={"feature": "search"})
    client.flush()                              # optional: before a short script ends

`track()` only builds the event and queues it; delivery (batches, retries, flush at exit, fork)
is `delivery.Delivery`'s. The module-level `track()`/`flush()` use one default client per
process, made from the environment on first use or by `init()`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Union

import httpx

from . import config
from .context import current_tags
from .delivery import MAX_BATCH_SIZE, Delivery, Stats
from .events import new_idempotency_key

__all__ = ["Client", "Stats", "init", "get_client", "track", "flush"]

logger = logging.getLogger("pulse_sdk")

PROJECT_ENV = "PULSE_PROJECT"
TagValue = Union[str, int, float, bool]

_no_key_warned = False


def _warn_no_key() -> None:
    global _no_key_warned
    if not _no_key_warned:
        _no_key_warned = True
        logger.warning("Pulse is disabled: no API key (pass api_key=, set %s, or run `pulse login`). "
                       "Calls are not recorded.", config.API_KEY_ENV)


def _unusable(api_key: str, base_url: str) -> str | None:
    """Why requests with this key or URL could never be sent (None: they can). Checked once,
    here, rather than failing every batch the same way."""
    if not api_key.isascii() or not api_key.isprintable() or " " in api_key:
        return "the API key contains spaces or characters no Pulse token has; copy it again"
    try:
        url = httpx.URL(base_url)
        host = url.host  # decoded here: an invalid IDNA name (xn--…) raises only now
    except (httpx.InvalidURL, ValueError) as error:
        return f"the base URL {base_url!r} is not a URL ({error})"
    if url.scheme not in ("http", "https") or not host:
        return f"the base URL {base_url!r} must start with http:// or https:// and name a host"
    return None


def _project(explicit: str | None, credentials: config.Credentials) -> str | None:
    """The project to name on each batch (for an organization-wide token): the argument, then
    PULSE_PROJECT, then the file `pulse login` wrote, when the token came from there too (a
    project stored for one token says nothing about another)."""
    if explicit:
        return explicit
    from_env = os.environ.get(PROJECT_ENV)
    if from_env:
        return from_env
    if credentials.api_key_from == "config file":
        try:
            stored = config.load_file().get("project")
        except config.ConfigError:
            return None
        return stored if isinstance(stored, str) and stored else None
    return None


class Client:
    """Records LLM calls in Pulse: `track()` queues an event and returns at once; background
    threads send the queue in batches. Thread-safe, fork-safe; one per process is enough (the
    module-level `track()` uses a shared one).

    Without an API key anywhere (argument, PULSE_API_KEY, `pulse login`'s file), or with
    `enabled=False`, the client records nothing and `track()` costs next to nothing, so an
    application can ship the calls before it has a token.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        project: str | None = None,
        flush_interval: float = 0.5,
        batch_size: int = MAX_BATCH_SIZE,
        max_queue_size: int = 100_000,
        timeout: float = 10.0,
        enabled: bool = True,
        max_in_flight: int = 2,
        max_retries: int = 10,
        shutdown_timeout: float = 5.0,
    ) -> None:
        """`api_key` and `base_url` default to PULSE_API_KEY / PULSE_BASE_URL, then to the file
        `pulse login` wrote. Bad option values raise ValueError here, once; nothing after does.

        project: a project's UUID, needed with an organization-wide token (else PULSE_PROJECT).
        flush_interval: seconds an event may wait for its batch to fill before it is sent anyway.
        batch_size: events per request (1 to 1,000, the batch API's limit).
        max_queue_size: events held in memory while Pulse is slow or away; beyond it, new
            events are dropped (counted in `stats().dropped` and logged).
        timeout: seconds to wait for each request.
        max_in_flight: requests sent at the same time.
        max_retries: attempts after a 5xx answer before a batch is given up (connection errors,
            408, 429 and a proxy's 502/503/504 are retried until they succeed or the client is closed).
        shutdown_timeout: seconds the interpreter's exit waits for queued events to be sent.
        """
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size!r}")
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be a positive number of seconds, not {flush_interval!r}")
        if max_queue_size < 1 or max_in_flight < 1 or max_retries < 0:
            raise ValueError("max_queue_size and max_in_flight must be at least 1, max_retries at least 0")
        credentials = config.resolve(api_key, base_url)
        self.base_url = credentials.base_url
        self.project = _project(project, credentials)
        self._delivery: Delivery | None = None
        if not enabled:
            return
        api_key = (credentials.api_key or "").strip()  # a pasted token often brings a newline along
        if not api_key:
            _warn_no_key()
            return
        problem = _unusable(api_key, self.base_url)
        if problem:
            logger.error("Pulse is disabled: %s (from the %s). Calls are not recorded.", problem,
                         credentials.api_key_from if "API key" in problem else credentials.base_url_from)
            return
        self._delivery = Delivery(
            base_url=self.base_url, api_key=api_key, project=self.project,
            batch_size=batch_size, max_queue_size=max_queue_size, flush_interval=flush_interval,
            timeout=timeout, max_in_flight=max_in_flight, max_retries=max_retries,
            shutdown_timeout=shutdown_timeout,
        )
        # A client dropped without close() still sends what it holds, then its threads end.
        finalizer = weakref.finalize(self, self._delivery.close_soon)
        finalizer.atexit = False  # type: ignore[misc]  # (writable, documented; typeshed says otherwise)

    @property
    def enabled(self) -> bool:
        return self._delivery is not None

    def track(
        self,
        *,
        provider: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        cost_usd: Decimal | float | str | None = None,
        latency_ms: float | None = None,
        ttft_ms: float | None = None,
        status_code: int | None = None,
        success: bool | None = None,
        timestamp: datetime | float | None = None,
        tags: Mapping[str, TagValue] | None = None,
        endpoint: str | None = None,
        streamed: bool | None = None,
        end_user: str | None = None,
        token_count_source: str | None = None,
        idempotency_key: str | None = None,
    ) -> str | None:
        """Queues one LLM call and returns its idempotency key, or None when it was not queued
        (disabled client, full queue, closed client). Never raises, never waits for the network.

        `tags` are added to those of enclosing `pulse_sdk.tags()` blocks (these win on the same
        key). `timestamp` defaults to now; a naive datetime is local time, as Python's
        `datetime.timestamp()` reads it. The server checks every field: an event it refuses is
        logged with the reason (logger "pulse_sdk") and counted in `stats().rejected`.
        """
        delivery = self._delivery
        if delivery is None:
            return None
        try:
            key = idempotency_key or new_idempotency_key()
            if timestamp is None:
                timestamp = time.time()
            elif isinstance(timestamp, datetime):
                timestamp = timestamp.timestamp()
            event: dict[str, Any] = {
                "provider": provider, "model": model, "input_tokens": input_tokens,
                "output_tokens": output_tokens, "timestamp": timestamp, "idempotency_key": key, "source": "sdk",
            }
            if cached_tokens:
                event["cached_tokens"] = cached_tokens
            if reasoning_tokens:
                event["reasoning_tokens"] = reasoning_tokens
            if cost_usd is not None:
                event["cost_usd"] = cost_usd
            if latency_ms is not None:
                event["latency_ms"] = latency_ms
            if ttft_ms is not None:
                event["ttft_ms"] = ttft_ms
            if status_code is not None:
                event["status_code"] = status_code
            if success is not None:
                event["success"] = success
            if endpoint is not None:
                event["endpoint"] = endpoint
            if streamed is not None:
                event["streamed"] = streamed
            if end_user is not None:
                event["end_user"] = end_user
            if token_count_source is not None:
                event["token_count_source"] = token_count_source
            inherited = current_tags()
            if tags:
                event["tags"] = {**inherited, **tags} if inherited else dict(tags)
            elif inherited:
                event["tags"] = dict(inherited)
            return key if delivery.put(event) else None
        except Exception:  # e.g. tags that are not a mapping: the call being tracked goes on
            logger.warning("Pulse: track() could not record an event (model %r); it is dropped.", model, exc_info=True)
            return None

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Waits until every event tracked before this call is settled (stored, or refused and
        logged), at most `timeout` seconds (None: no limit). True when all were settled."""
        delivery = self._delivery
        return True if delivery is None else delivery.flush(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Flushes (up to `timeout` seconds), then stops the background threads. Events still
        waiting after that are dropped and logged; later `track()` calls drop theirs. Idempotent."""
        if self._delivery is not None:
            self._delivery.close(timeout)

    def stats(self) -> Stats:
        """Counters since the client was made (in a child process: since the fork)."""
        return Stats() if self._delivery is None else self._delivery.stats()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"<pulse_sdk.Client {self.base_url} {state}>"


# -- the process's default client ------------------------------------------------------------------

_default: Client | None = None
_default_lock = threading.Lock()


def _new_default_lock() -> None:
    # A thread of the parent inside get_client() at the fork held this lock, and does not exist
    # in the child: without a new one, the child's first track() would wait for it forever.
    global _default_lock
    _default_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_default_lock)


def get_client() -> Client:
    """The process's default client: the one `init()` made, else one from the environment or
    `pulse login`'s file, made on first use."""
    client = _default
    if client is None:
        with _default_lock:
            client = _default
            if client is None:
                client = _set_default(Client())
    return client


def _set_default(client: Client) -> Client:
    global _default
    _default = client
    return client


def init(api_key: str | None = None, base_url: str | None = None, **options: Any) -> Client:
    """Makes the default client (options as for `Client`); a previous one is flushed and closed."""
    client = Client(api_key, base_url, **options)
    with _default_lock:
        previous = _default
        _set_default(client)
    if previous is not None:
        previous.close()
    return client


def track(
    *,
    provider: str,
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    cost_usd: Decimal | float | str | None = None,
    latency_ms: float | None = None,
    ttft_ms: float | None = None,
    status_code: int | None = None,
    success: bool | None = None,
    timestamp: datetime | float | None = None,
    tags: Mapping[str, TagValue] | None = None,
    endpoint: str | None = None,
    streamed: bool | None = None,
    end_user: str | None = None,
    token_count_source: str | None = None,
    idempotency_key: str | None = None,
) -> str | None:
    """`Client.track` on the default client (see `get_client`)."""
    return get_client().track(
        provider=provider, model=model, input_tokens=input_tokens, output_tokens=output_tokens,
        cached_tokens=cached_tokens, reasoning_tokens=reasoning_tokens, cost_usd=cost_usd,
        latency_ms=latency_ms, ttft_ms=ttft_ms, status_code=status_code, success=success,
        timestamp=timestamp, tags=tags, endpoint=endpoint, streamed=streamed, end_user=end_user,
        token_count_source=token_count_source, idempotency_key=idempotency_key,
    )


def flush(timeout: float | None = 10.0) -> bool:
    """`Client.flush` on the default client; True at once when there is none yet."""
    client = _default
    return True if client is None else client.flush(timeout)
