"""One interface for streaming a prompt to any provider and measuring it.

Each wire format (OpenAI-compatible, Anthropic, Gemini) is a `ProviderAdapter` that only knows
how to build its request and read its events; `ProviderAdapter.stream()` does the timing once,
for all of them, following the measurement rules in DESIGN.md:

- durations from a monotonic clock (`perf_counter_ns`); wall clock only for timestamps;
- TTFT = request sent -> first event that carries content (text or reasoning), never a
  role-only or empty chunk;
- output tokens from the provider's usage (the last report wins), else counted over the whole
  joined text, with the source recorded;
- TPS = (output_tokens - 1) / (t_last_content - t_first_content);
- faults are results, not exceptions.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import httpx
from httpx_sse import EventSource, SSEError

from lib.egress import EgressRefused

MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_RESPONSE_TEXT_CHARS = 20_000


class ErrorKind(StrEnum):
    AUTH = "auth"  # 401/403, or a provider's "invalid key" 400
    NOT_FOUND = "not_found"  # unknown model or endpoint
    RATE_LIMITED = "rate_limited"  # 429 (Retry-After kept)
    BAD_REQUEST = "bad_request"  # other 4xx
    SERVER_ERROR = "server_error"  # 5xx
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_ERROR = "connect_error"  # refused, DNS, TLS
    EGRESS_REFUSED = "egress_refused"  # Pulse refused: a private, local or metadata address (lib/egress.py)
    READ_TIMEOUT = "read_timeout"  # no bytes between chunks for too long
    TOTAL_TIMEOUT = "total_timeout"  # the whole request took too long
    DISCONNECTED = "disconnected"  # connection reset or closed mid-stream
    MALFORMED = "malformed"  # an event that is not valid JSON or SSE
    STREAM_ERROR = "stream_error"  # the provider sent an error event inside the stream
    EMPTY = "empty_stream"  # 200 but no content at all


class TokenCountSource(StrEnum):
    USAGE = "usage"  # reported by the provider
    ESTIMATE = "estimate"  # counted by Pulse over the joined response text


@dataclass(frozen=True)
class StreamRequest:
    base_url: str
    # Out of every repr (tracebacks, logs, Sentry's captured locals show the dataclass and any
    # RunTarget holding it); compared and hashed as usual.
    api_key: str = field(repr=False)
    model: str
    prompt: str
    max_tokens: int = 256
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 120.0


@dataclass
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None  # text + reasoning
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    def update(self, other: Usage) -> None:
        """Later reports win field by field (usage may come on every chunk, or in parts)."""
        for name in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)


@dataclass
class Delta:
    """What one event contributed."""

    text: str = ""
    reasoning: str = ""
    usage: Usage | None = None
    error: str | None = None
    done: bool = False

    @property
    def has_content(self) -> bool:
        return bool(self.text or self.reasoning)


@dataclass
class Measurement:
    model: str
    started_at: datetime
    request_sent_ns: int  # wall clock, to compare with a server's own send stamps
    success: bool = False
    status_code: int | None = None
    error_kind: ErrorKind | None = None
    error_message: str = ""
    retry_after_s: float | None = None
    ttft_ms: float | None = None
    total_latency_ms: float | None = None
    tps: float | None = None
    mean_inter_chunk_ms: float | None = None
    chunk_count: int = 0  # events that carried content
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    token_count_source: TokenCountSource | None = None
    response_text: str = ""
    content_times_ns: list[int] = field(default_factory=list, repr=False)


class StreamFault(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def estimate_tokens(text: str) -> int:
    """Words and punctuation marks over the whole text. A fallback only, used when a provider
    reports no usage; never applied per chunk, since chunks split words."""
    return len(_WORDS.findall(text))


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, (parsed - datetime.now(UTC)).total_seconds()) if parsed else None


class ProviderAdapter:
    """Everything Pulse knows about one wire format, in one place: its kind, its auth headers,
    how to stream a prompt and list models, its genai-prices ids and where the simulator
    serves it. Subclasses describe the format; `stream()` is shared. Registered in
    `benchmarks/providers/__init__.py`."""

    kind: str = ""  # stored in Provider.kind and Target.kind: never rename one that rows use
    label: str = ""  # what forms and the API docs call it
    # genai-prices provider ids whose API speaks this format (costs/pricing.py adopts their
    # models into the catalog with this kind).
    pricing_provider_ids: tuple[str, ...] = ()
    simulator_prefix: str = ""  # where benchmarks/simulator.py serves this format, below its root

    # -- what subclasses provide -----------------------------------------------------------
    def api_headers(self, api_key: str) -> dict[str, str]:
        """Auth and API-version headers, the same for streaming and for listing models."""
        raise NotImplementedError

    def list_models(self, client: httpx.Client, base_url: str, api_key: str) -> list[str]:
        """Model names as this API expects them in a request (model discovery)."""
        raise NotImplementedError

    def url(self, request: StreamRequest) -> str:
        raise NotImplementedError

    def headers(self, request: StreamRequest) -> dict[str, str]:
        return {**self.api_headers(request.api_key), "Accept": "text/event-stream"}

    def body(self, request: StreamRequest, prompt: str) -> dict:
        raise NotImplementedError

    def parse_event(self, event: str, payload: dict) -> Delta:
        raise NotImplementedError

    def classify_status(self, status: int, body: object) -> ErrorKind:
        if status in (401, 403):
            return ErrorKind.AUTH
        if status == 404:
            return ErrorKind.NOT_FOUND
        if status == 429:
            return ErrorKind.RATE_LIMITED
        if status >= 500:
            return ErrorKind.SERVER_ERROR
        return ErrorKind.BAD_REQUEST

    def retry_after_from_body(self, body: object) -> float | None:
        return None

    # -- shared --------------------------------------------------------------------------
    @staticmethod
    def error_message(status: int, body: object, raw: bytes) -> str:
        """All three formats put a readable message at error.message."""
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"])[:1000]
            if isinstance(error, str):
                return error[:1000]
        text = raw.decode("utf-8", "replace").strip()
        return f"HTTP {status}: {text[:500]}" if text else f"HTTP {status}"

    async def stream(
        self, client: httpx.AsyncClient, request: StreamRequest, *, prompt: str | None = None
    ) -> Measurement:
        """Send one streaming request and measure it. Never raises for provider faults."""
        measurement = Measurement(
            model=request.model, started_at=datetime.now(UTC), request_sent_ns=time.time_ns()
        )
        started = time.perf_counter_ns()
        try:
            async with asyncio.timeout(request.total_timeout_s):
                await self._stream_into(client, request, prompt or request.prompt, measurement, started)
        except TimeoutError:
            self._fail(measurement, ErrorKind.TOTAL_TIMEOUT, f"No complete response within {request.total_timeout_s:g} s.")
        except EgressRefused as refused:  # before ConnectError, its parent; the message has no response in it
            self._fail(measurement, ErrorKind.EGRESS_REFUSED, str(refused))
        except httpx.ConnectTimeout:
            self._fail(measurement, ErrorKind.CONNECT_TIMEOUT, f"Could not connect within {request.connect_timeout_s:g} s.")
        except httpx.ReadTimeout:
            self._fail(measurement, ErrorKind.READ_TIMEOUT, f"No data for {request.read_timeout_s:g} s in the middle of the response.")
        except httpx.ConnectError as error:
            self._fail(measurement, ErrorKind.CONNECT_ERROR, f"Could not connect: {error}" or "Could not connect.")
        except (httpx.RemoteProtocolError, httpx.ReadError) as error:
            self._fail(measurement, ErrorKind.DISCONNECTED, f"The connection closed mid-response: {error}".rstrip(": "))
        except StreamFault as fault:
            self._fail(measurement, fault.kind, str(fault))
        except httpx.HTTPError as error:  # anything else on the wire (e.g. a write error)
            self._fail(measurement, ErrorKind.CONNECT_ERROR, f"{type(error).__name__}: {error}")
        measurement.total_latency_ms = (time.perf_counter_ns() - started) / 1e6
        self._finish(measurement, started)
        return measurement

    async def _stream_into(
        self, client: httpx.AsyncClient, request: StreamRequest, prompt: str, m: Measurement, started: int
    ) -> None:
        timeout = httpx.Timeout(request.read_timeout_s, connect=request.connect_timeout_s)
        async with client.stream(
            "POST", self.url(request), headers=self.headers(request), json=self.body(request, prompt), timeout=timeout
        ) as response:
            m.status_code = response.status_code
            if response.status_code >= 400:
                await self._record_http_error(response, m)
                return
            await self._read_events(response, m)

    async def _record_http_error(self, response: httpx.Response, m: Measurement) -> None:
        raw = b""
        async for piece in response.aiter_bytes():
            raw += piece
            if len(raw) > MAX_ERROR_BODY_BYTES:
                break
        try:
            body: object = json.loads(raw)
        except ValueError:
            body = None
        m.error_kind = self.classify_status(response.status_code, body)
        m.error_message = self.error_message(response.status_code, body, raw)
        m.retry_after_s = parse_retry_after(response.headers.get("retry-after")) or self.retry_after_from_body(body)

    async def _read_events(self, response: httpx.Response, m: Measurement) -> None:
        usage = Usage()
        saw_usage = False
        text: list[str] = []
        reasoning: list[str] = []
        try:
            async for sse in EventSource(response).aiter_sse():
                received = time.perf_counter_ns()
                if not sse.data or sse.data == "[DONE]":
                    continue
                try:
                    payload = json.loads(sse.data)
                except ValueError as error:
                    raise StreamFault(ErrorKind.MALFORMED, f"Event is not valid JSON: {sse.data[:200]!r}") from error
                if not isinstance(payload, dict):
                    raise StreamFault(ErrorKind.MALFORMED, f"Event is not a JSON object: {sse.data[:200]!r}")
                delta = self.parse_event(sse.event, payload)
                if delta.error:
                    raise StreamFault(ErrorKind.STREAM_ERROR, delta.error)
                if delta.has_content:
                    m.content_times_ns.append(received)
                    text.append(delta.text)
                    reasoning.append(delta.reasoning)
                if delta.usage is not None:
                    usage.update(delta.usage)
                    saw_usage = True
        except SSEError as error:
            raise StreamFault(ErrorKind.MALFORMED, f"Not an event stream: {error}") from error
        finally:
            m.response_text = "".join(text)[:MAX_RESPONSE_TEXT_CHARS]
            if saw_usage:
                m.input_tokens, m.cached_tokens = usage.input_tokens, usage.cached_tokens
                m.reasoning_tokens = usage.reasoning_tokens
                m.output_tokens = usage.output_tokens
                m.token_count_source = TokenCountSource.USAGE if usage.output_tokens is not None else None
            if m.reasoning_tokens is None and any(reasoning):
                # Anthropic folds thinking into output_tokens without a separate count.
                m.reasoning_tokens = estimate_tokens("".join(reasoning))
        if not m.content_times_ns:
            raise StreamFault(ErrorKind.EMPTY, "The stream ended without any content.")
        m.success = True

    @staticmethod
    def _fail(m: Measurement, kind: ErrorKind, message: str) -> None:
        m.success = False
        m.error_kind = kind
        m.error_message = message

    @staticmethod
    def _finish(m: Measurement, started: int) -> None:
        times = m.content_times_ns
        m.chunk_count = len(times)
        if times:
            m.ttft_ms = (times[0] - started) / 1e6
        if len(times) > 1:
            m.mean_inter_chunk_ms = (times[-1] - times[0]) / (len(times) - 1) / 1e6
        if m.output_tokens is None and m.response_text:
            m.output_tokens = estimate_tokens(m.response_text) + (m.reasoning_tokens or 0)
            m.token_count_source = TokenCountSource.ESTIMATE
        span_s = (times[-1] - times[0]) / 1e9 if len(times) > 1 else 0
        if m.success and m.output_tokens and m.output_tokens > 1 and span_s > 0:
            m.tps = (m.output_tokens - 1) / span_s
