"""One call through the gateway, and what becomes of it once answered: its token counts (the
provider's, or estimates), its record for the call stream, the budget settle, the cache store.

`finish(call)` runs once per call before its response ends (gateway/proxy.py and
gateway/streaming.py hold back the end for it): the cache store and, in one pipeline shared by
the calls finishing in the same turn of the event loop, the budget settle, the record's XADD,
and the breaker's and live TTFT's updates. `touch(call)` runs after the response."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from time import perf_counter
from urllib.parse import quote

from benchmarks.providers.base import estimate_tokens

from . import admission as gateway_admission
from . import breaker, recorder, routing
from . import cache as gateway_cache
from .breaker import Breaker
from .errors import ANTHROPIC, OPENAI
from .process import gateway
from .state import ProjectState, RouteState, TokenState, UpstreamState
from .wire import MESSAGES, ClientRequest, StreamState, Usage

logger = logging.getLogger(__name__)

STARTED = "pulse.started"  # the scope key gateway.asgi stamps with the request's arrival (perf_counter)
MICRO = Decimal(1_000_000)


@dataclass(slots=True)
class Attempt:
    upstream: str
    status_code: int | None
    error: str


@dataclass(slots=True)
class Call:
    """Everything known about one request, from arrival to its record."""

    request_id: str
    endpoint: str
    started: float  # perf_counter
    started_wall: float  # time.time
    token: TokenState | None = None
    project: ProjectState | None = None
    request: ClientRequest | None = None
    route: RouteState | None = None
    tags: dict[str, str] = field(default_factory=dict)
    admission: gateway_admission.Admission | None = None
    budgeted: bool = False  # a hard budget covers the call: only priced upstreams may serve it
    cache_key: str | None = None
    cache_outcome: str = "BYPASS"
    cache_hit: gateway_cache.CachedAnswer | None = None
    upstream: UpstreamState | None = None
    attempts: list[Attempt] = field(default_factory=list)
    breakers: dict[routing.UpstreamId, Breaker] = field(default_factory=dict)
    upstream_wait: float = 0.0  # seconds spent waiting on upstreams
    status: int = 0
    success: bool = False
    ttft_ms: float | None = None
    usage: Usage = field(default_factory=Usage)
    text: str = ""
    stream: StreamState | None = None
    complete: bool = False  # the upstream's answer arrived whole
    answer: dict | None = None  # the non-streamed answer, kept when it will be cached
    response_body: bytes = b""  # kept when the project stores bodies
    request_body: bytes = b""
    caller_headers: Mapping[str, str] | None = None
    finished: bool = False
    _prompt_tokens: int | None = None

    @property
    def flavor(self) -> str:
        return ANTHROPIC if self.endpoint == MESSAGES else OPENAI

    def overhead_ms(self) -> float:
        return max((perf_counter() - self.started - self.upstream_wait) * 1000, 0.0)

    def prompt_tokens_estimate(self) -> int:
        if self._prompt_tokens is None:
            self._prompt_tokens = self.request.estimated_prompt_tokens() if self.request else 0
        return self._prompt_tokens

    def headers(self) -> dict[str, str]:
        headers = {
            "x-pulse-request-id": self.request_id,
            "x-pulse-overhead-ms": f"{self.overhead_ms():.3f}",
            "x-pulse-cache": self.cache_outcome,
        }
        if self.upstream is not None:
            headers["x-pulse-upstream"] = header_safe(self.upstream.label)
        elif self.cache_hit is not None:
            headers["x-pulse-upstream"] = header_safe(self.cache_hit.upstream)
        if self.admission is not None:
            headers.update(self.admission.headers)
        return headers


def header_safe(text: str) -> str:
    return quote(text, safe="/ -_.:@()+,;=")


@dataclass(frozen=True, slots=True)
class Counts:
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    source: str  # "provider" | "estimate"


def final_counts(call: Call) -> Counts:
    """The provider's counts when it sent them for the whole answer; else estimates (over the
    prompt, and over the text received: a stream cut short reports no final usage)."""
    usage = call.usage
    text = call.stream.joined_text if call.stream is not None else call.text
    cut_short = call.stream is not None and not call.stream.ended
    estimated = False
    input_tokens = usage.input_tokens
    if input_tokens is None:
        input_tokens, estimated = call.prompt_tokens_estimate(), True
    output_tokens = usage.output_tokens
    if output_tokens is None or cut_short:
        guess = estimate_tokens(text)
        output_tokens, estimated = max(output_tokens or 0, guess), True
    cached = min(usage.cached_tokens or 0, input_tokens)
    reasoning = min(usage.reasoning_tokens or 0, output_tokens)
    return Counts(input_tokens, output_tokens, cached, reasoning, "estimate" if estimated else "provider")


def _nothing_generated(call: Call) -> bool:
    """An answer the upstream never produced (failed attempts, refusals): no tokens to count."""
    return call.cache_hit is None and (call.status >= 400 and call.status != 499) and call.stream is None


def build_event(call: Call, counts: Counts, *, upstream_label: str, provider: str, model: str) -> dict:
    hit = call.cache_hit
    saved = None
    if hit is not None:
        saved = str((Decimal(hit.cost_micro_usd) / MICRO).normalize()) if hit.cost_micro_usd is not None else None
    event = {
        "provider": provider, "model": model,
        "input_tokens": counts.input_tokens, "output_tokens": counts.output_tokens,
        "cached_tokens": counts.cached_tokens, "reasoning_tokens": counts.reasoning_tokens,
        "latency_ms": round((perf_counter() - call.started) * 1000, 3),
        "status_code": call.status, "success": call.success,
        "timestamp": datetime.fromtimestamp(call.started_wall, UTC).isoformat(),
        "tags": call.tags, "idempotency_key": f"gw-{call.request_id}", "source": "gateway",
        "ttft_ms": round(call.ttft_ms, 3) if call.ttft_ms is not None else None,
        "streamed": bool(call.request and call.request.stream), "endpoint": call.endpoint,
        "end_user": call.request.end_user if call.request else "", "route": call.route.name if call.route else "",
        "upstream": upstream_label, "cache_hit": hit is not None, "saved_usd": saved,
        "token_count_source": counts.source,
        "attempts": [{"upstream": a.upstream, "status_code": a.status_code, "error": a.error} for a in call.attempts],
        "overhead_ms": round(call.overhead_ms(), 3),
    }
    if hit is not None:
        event["cost_usd"] = "0"
    return event


def _truncated(data: bytes, limit: int) -> tuple[str, bool]:
    return data[:limit].decode("utf-8", "replace"), len(data) > limit


def bodies_of(call: Call) -> dict | None:
    project = call.project
    if not project.store_bodies:
        return None
    request, cut_request = _truncated(call.request_body, project.body_max_bytes)
    response, cut_response = _truncated(call.response_body, project.body_max_bytes)
    return {"request": request, "response": response, "truncated": cut_request or cut_response,
            "retention_days": project.body_retention_days}


async def finish(call: Call) -> None:
    """Settle and record the call, and cache a cacheable miss: once per call, before its
    response ends, never raising (a failure here must not cost the caller its answer)."""
    if call.finished:
        return
    call.finished = True
    r = gateway.redis()
    cached, recorded = await asyncio.gather(store_in_cache(call, r), settle_and_record(call, r), return_exceptions=True)
    for outcome, what in ((cached, "Caching the answer of"), (recorded, "Recording")):
        if isinstance(outcome, BaseException):
            logger.error("%s gateway call %s failed", what, call.request_id, exc_info=outcome)


async def touch(call: Call) -> None:
    """After the response: the token's last_used_at (at most once a minute per token)."""
    try:
        await gateway.last_used.touch(gateway.redis(), call.token.token_id)
    except Exception:
        logger.exception("Touching the token of gateway call %s failed", call.request_id)


async def settle_and_record(call: Call, r) -> None:
    recorded = call.upstream is not None or call.cache_hit is not None
    if not recorded and call.admission is None:
        return
    upstream = call.upstream
    counts = Counts(0, 0, 0, 0, "provider") if _nothing_generated(call) else final_counts(call)
    cost = 0
    if upstream is not None and call.cache_hit is None:
        cost = upstream.cost_micro_usd(input_tokens=counts.input_tokens, output_tokens=counts.output_tokens,
                                       cached_tokens=counts.cached_tokens) or 0
    # From here to the await, nothing yields: every command lands in the same batch.
    pipe, sent = gateway.batch.join(r)
    charges = {}
    if call.admission is not None:
        charges = gateway_admission.settle(call.admission, actual_tokens=counts.input_tokens + counts.output_tokens,
                                           actual_cost_micro_usd=cost, pipeline=pipe)
    if recorded:
        recorder.add_to_pipeline(pipe, record_of(call, counts, charges))
    if upstream is not None and call.success and call.cache_hit is None:
        if not call.breakers.get(routing.upstream_id(upstream), Breaker()).healthy:
            gateway.forget_breaker(upstream)
            breaker.queue_success(pipe, upstream.connection_id, upstream.model, time.time())
        if call.stream is not None and call.ttft_ms is not None:
            breaker.queue_ttft(pipe, upstream.connection_id, upstream.model, call.ttft_ms)
    await sent  # settled and recorded first: a caller leaving now cancels only what follows
    if upstream is not None and call.stream is not None and call.status == 502:
        gateway.forget_breaker(upstream)
        await breaker.record_failure(gateway.scripts(r), upstream.connection_id, upstream.model,
                                     "the stream broke after it started", time.time())
    if call.cache_key is not None:
        outcome = "hit" if call.cache_hit is not None else "miss"
        saved = call.cache_hit.cost_micro_usd if call.cache_hit is not None else 0
        await gateway_cache.count(r, call.project.project_id, outcome, saved or 0)


def record_of(call: Call, counts: Counts, charges: dict[int, int]) -> recorder.CallRecord:
    hit, upstream = call.cache_hit, call.upstream
    if hit is not None:
        label, provider, model = hit.upstream, hit.provider, hit.model
    else:
        label, provider, model = upstream.label, upstream.provider, upstream.model
    return recorder.CallRecord(
        project_id=call.project.project_id, token_id=call.token.token_id,
        event=build_event(call, counts, upstream_label=label, provider=provider, model=model),
        bodies=bodies_of(call), request_id=call.request_id, budget_charges=charges,
    )


async def store_in_cache(call: Call, r) -> None:
    if call.cache_key is None or call.cache_hit is not None or not call.success or not call.complete:
        return
    upstream = call.upstream
    if call.stream is not None:
        if call.endpoint == MESSAGES:
            answer = gateway_cache.assemble_anthropic_stream(call.stream.chunks)
        else:
            answer = gateway_cache.assemble_openai_stream(call.stream.chunks)
    else:
        answer = call.answer
    if answer is None:
        return
    counts = final_counts(call)
    cost = upstream.cost_micro_usd(input_tokens=counts.input_tokens, output_tokens=counts.output_tokens,
                                   cached_tokens=counts.cached_tokens)
    usage = {"input_tokens": counts.input_tokens, "output_tokens": counts.output_tokens,
             "cached_tokens": counts.cached_tokens, "reasoning_tokens": counts.reasoning_tokens}
    await gateway_cache.store(r, call.cache_key, gateway_cache.CachedAnswer(
        endpoint=call.endpoint, body=answer, upstream=upstream.label, provider=upstream.provider,
        model=upstream.model, usage=usage, cost_micro_usd=cost or 0,
    ), call.project.cache_ttl_seconds)
