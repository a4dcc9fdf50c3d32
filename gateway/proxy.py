"""The hot path: a caller's request in, the upstream's answer out, the call recorded.

    response = await handle(request, wire.CHAT)     # the endpoints in gateway/asgi.py

Beside it: gateway/process.py (what a process keeps: pools, caches, the Redis batch),
gateway/calls.py (one call, its counts and its record), gateway/streaming.py (a stream
forwarded), gateway/wire.py (the formats), gateway/routing.py and breaker.py (which upstream).

In order: authenticate (snapshot, no SQL when warm), read and validate the body, resolve the
route, look up the cache (gateway/cache.py), admit (limits and budget reservation in one Redis
step, gateway/admission.py, together with the breaker and TTFT reads), then forward:

- Candidates in the route's strategy order without open breakers (gateway/routing.py).
- An attempt that fails before anything reached the caller (connection error, timeout, 429,
  5xx, a stream that ends or errs before its first content) moves on to the next candidate,
  wrapping around to the first, at most GATEWAY_MAX_ATTEMPTS times and within
  GATEWAY_RETRY_BUDGET_S of the request's start. A `Retry-After` holds back that upstream
  until then (the call waits for it only if nothing else can be tried and it fits the budget).
  Other 4xx are the caller's to see at once. When nothing answered, the last upstream error is
  passed through as it was (status and body), or 502/504 when none answered at all.
- Streams are committed at their first content: events before it (a role-only chunk, Anthropic's
  message_start and ping) are held, so an upstream that fails before content can still be
  replaced; every event after is forwarded as it arrives. Once bytes were sent nothing is
  retried: a broken stream ends with an `error` event the caller's SDK raises on.
- The caller leaving mid-stream cancels the upstream request; the call is still recorded with
  the tokens known so far (estimated from the text when the upstream sent no usage).

Before the response ends (`finish`): the budget settle and the call record go to Redis in one
pipeline (shared by the calls finishing in the same turn of the event loop), with the breaker's
and live TTFT's updates, and a cacheable miss goes to the cache. A non-streamed answer is sent
once they are in; a stream holds back only its last event. So once the caller has seen its
response complete, its call is in the durable stream: killing the gateway (even SIGKILL) cannot
lose a call whose caller got its answer, and a repeated request finds the cache filled. The
cost is one Redis round trip at the end of each call (amortized across concurrent calls by the
shared pipeline); the first byte of a stream is not delayed. After the response:
last_used_at (a Starlette BackgroundTask).

x-pulse-overhead-ms is the time spent in Pulse up to the response's headers: the time since
the request arrived minus the time spent waiting for upstreams (their headers and body bytes,
and Retry-After waits). For a stream, the recorded event's overhead_ms also counts the time
spent forwarding its chunks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter

import aiohttp
import orjson
from django.conf import settings
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from benchmarks.providers.base import parse_retry_after
from costs.ingestion import _tags as validated_tags
from lib.egress import EgressRefused

from . import admission as gateway_admission
from . import breaker, routing, wire
from . import cache as gateway_cache
from .auth import authenticate
from .breaker import Breaker, Scripts
from .calls import STARTED, Attempt, Call, finish, touch
from .errors import (
    GatewayError,
    bad_request,
    body_too_large,
    budget_exceeded,
    internal_error,
    model_not_found,
    no_upstream_answered,
    rate_limited,
)
from .process import gateway, request_ids
from .state import ProjectState, RouteState, TokenState, UpstreamState
from .streaming import ProxyStream
from .wire import MESSAGES, SSEReader, StreamState, Usage

logger = logging.getLogger(__name__)

MAX_TAGS_HEADER = 4096
MAX_ERROR_BODY = 256 * 1024  # an upstream error body passed through; larger is cut
HELD_EVENTS_LIMIT = 64  # a stream whose content has not started after this many events is committed anyway
PASSED_HEADERS = ("content-type", "retry-after", "x-request-id", "request-id")


@dataclass(slots=True)
class Failure:
    """An attempt that did not answer: what to count, and what to pass through if it was the last."""

    error: str
    status: int | None = None
    timeout: bool = False
    retry_after: float | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


# -- the entry point ------------------------------------------------------------------------------


async def handle(request: Request, endpoint: str) -> Response:
    started = request.scope.get(STARTED, perf_counter())
    call = Call(request_id=request_ids.next(), endpoint=endpoint, started=started, started_wall=time.time(),
                caller_headers=request.headers)
    r = gateway.redis()
    try:
        call.token = await authenticate(gateway.store, r, request.headers)
        call.project = await project_of(r, call.token)
        call.request_body = await read_body(request)
        call.request = wire.validate(endpoint, call.request_body)
        call.tags = tags_from(request.headers)
        call.route = resolve(call.project, call.request.model)
        candidates = serving(call.route, endpoint)
        hit = await look_up_cache(call, r, request.headers)
        if hit is not None:
            return await replay(call, hit)
        live = await prepare(call, r, candidates)
        return await forward(call, r, candidates, live)
    except GatewayError as error:
        return await error_response(call, error)
    except Exception:
        logger.exception("Gateway request %s failed", call.request_id)
        return await error_response(call, internal_error())
    except BaseException:  # cancelled: no response to send, but a reservation to release
        if call.admission is not None and not call.finished:
            gateway.in_background(finish(call))
        raise


async def project_of(r, token: TokenState) -> ProjectState:
    project = await gateway.store.project(r, token.project_id)
    if project is None:  # the project was deleted and its tokens with it, a moment ago
        raise GatewayError(401, "This API token's project no longer exists.", code="invalid_api_key")
    return project


async def read_body(request: Request) -> bytes:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def tags_from(headers: Mapping[str, str]) -> dict[str, str]:
    """`x-pulse-tags: feature=search,env=prod`, validated like ingested tags."""
    value = headers.get("x-pulse-tags")
    if not value:
        return {}
    problem = "x-pulse-tags: expected key=value pairs separated by commas, e.g. feature=search,env=prod."
    try:
        value = value.encode("latin-1").decode("utf-8")  # HTTP headers arrive as latin-1
    except UnicodeError:
        raise bad_request("x-pulse-tags: the header is not valid UTF-8.", param="x-pulse-tags") from None
    if len(value) > MAX_TAGS_HEADER:
        raise bad_request(f"x-pulse-tags: at most {MAX_TAGS_HEADER} characters.", param="x-pulse-tags")
    tags = {}
    for pair in value.split(","):
        if not pair.strip():
            continue
        key, separator, tag = pair.partition("=")
        if not separator or not key.strip():
            raise bad_request(problem, param="x-pulse-tags")
        tags[key.strip()] = tag.strip()
    errors: list = []
    tags = validated_tags({"tags": tags}, errors)
    if errors:
        raise bad_request(f"x-pulse-tags: {errors[0][1]}", param="x-pulse-tags")
    return tags


def resolve(project: ProjectState, model: str) -> RouteState:
    route = project.routes.get(model)
    if route is None:
        raise model_not_found(model)
    return route


def serving(route: RouteState, endpoint: str) -> list[UpstreamState]:
    """The route's upstreams that serve this endpoint, in the route's order."""
    if not route.upstreams:
        raise GatewayError(503, f"The route `{route.name}` has no enabled upstream.", type="server_error",
                           code="no_upstream")
    candidates = [u for u in route.upstreams if wire.upstream_url(u.kind, u.base_url, endpoint) is not None]
    if not candidates:
        what = {wire.CHAT: "chat completions", wire.EMBEDDINGS: "embeddings", MESSAGES: "the Messages API"}[endpoint]
        raise bad_request(f"The route `{route.name}` has no upstream that serves {what}"
                          + (" (it needs an Anthropic connection)." if endpoint == MESSAGES else "."), param="model")
    return candidates


# -- cache ------------------------------------------------------------------------------------------


def cache_wanted(project: ProjectState, headers: Mapping[str, str]) -> bool:
    override = headers.get("x-pulse-cache")
    if override is None:
        return project.cache_enabled
    choice = override.strip().lower()
    if choice not in ("on", "off"):
        raise bad_request("x-pulse-cache: send on or off.", param="x-pulse-cache")
    return choice == "on"


async def look_up_cache(call: Call, r, headers: Mapping[str, str]) -> gateway_cache.CachedAnswer | None:
    if not cache_wanted(call.project, headers):
        return None
    call.cache_key = gateway_cache.cache_key(call.project.project_id, call.endpoint, call.request.body)
    hit = await gateway_cache.lookup(r, call.cache_key)
    call.cache_outcome = "HIT" if hit is not None else "MISS"
    call.cache_hit = hit
    return hit


async def replay(call: Call, hit: gateway_cache.CachedAnswer) -> Response:
    """A cached answer in the shape asked for: JSON, or SSE events when `stream: true`."""
    call.status, call.success, call.complete = 200, True, True
    counts = hit.usage or {}
    call.usage = Usage(counts.get("input_tokens"), counts.get("output_tokens"), counts.get("cached_tokens"),
                       counts.get("reasoning_tokens"))
    if call.request.stream:
        events = gateway_cache.as_sse_events(hit, include_usage=call.request.include_usage)
        body, media = b"".join(events), "text/event-stream; charset=utf-8"
    else:
        body, media = orjson.dumps(hit.body), "application/json"
    call.response_body = body
    return await answer(call, body, 200, {"content-type": media})


# -- admission --------------------------------------------------------------------------------------


def max_output_tokens(call: Call) -> int:
    return call.request.max_output_tokens or settings.GATEWAY_RESERVE_OUTPUT_TOKENS


def admission_needed(call: Call, candidates: Sequence[UpstreamState]) -> bool:
    project, token_id = call.project, call.token.token_id
    if project.project_limits is not None or token_id in project.token_limits:
        return True
    return bool(project.hard_budgets) and bool(covering(call, candidates))


def covering(call: Call, candidates: Sequence[UpstreamState]) -> list:
    return gateway_admission.covering_budgets(call.project, token_id=call.token.token_id,
                                              models={u.model for u in candidates}, tags=call.tags)


async def admit(call: Call, r, candidates: Sequence[UpstreamState]) -> None:
    project, token_id = call.project, call.token.token_id
    budgets = covering(call, candidates)
    prompt = call.prompt_tokens_estimate()
    max_cost: int | None = 0
    if budgets:
        # Only priced upstreams may serve a call under a hard budget (priced_only_under_budget);
        # with none, admission refuses the call (max cost None: it cannot be held).
        most = call.request.max_prompt_tokens()  # a bound, not a guess: the reservation must cover the call
        costs = [u.cost_micro_usd(input_tokens=most, output_tokens=max_output_tokens(call)) for u in candidates]
        max_cost = max((cost for cost in costs if cost is not None), default=None)
    estimated_tokens = prompt + (call.request.max_output_tokens or 0)
    call.budgeted = bool(budgets)
    result = await gateway_admission.admit(
        r, project=project, token_id=token_id, estimated_tokens=estimated_tokens, budgets=budgets,
        max_cost_micro_usd=max_cost, request_id=call.request_id, token_prefix=call.token.prefix,
    )
    if result.allowed:
        call.admission = result
        return
    call.admission = None
    if result.reason == "budget":
        raise budget_exceeded(result.message, result.retry_after_s, result.headers)
    raise rate_limited(result.message, result.retry_after_s, result.headers)


def priced_only_under_budget(call: Call, candidates: list[UpstreamState]) -> list[UpstreamState]:
    """Under a hard budget, only upstreams whose cost was reserved may be called."""
    if not call.budgeted:
        return candidates
    return [u for u in candidates if u.priced]


# -- forwarding -------------------------------------------------------------------------------------


async def read_breakers(call: Call, r, candidates: Sequence[UpstreamState]) -> dict[routing.UpstreamId, list[float]]:
    """Every candidate's breaker (and, for `fastest`, live TTFT samples): from this process's
    recent copy, else from Redis in one round trip."""
    with_ttft = call.route.strategy == routing.FASTEST
    cached, now = gateway.breakers, time.monotonic()
    missing = []
    for upstream in candidates:
        entry = cached.get(routing.upstream_id(upstream))
        if entry is None or entry[0] <= now or (with_ttft and entry[2] is None):
            missing.append(upstream)
    if missing:
        pipe = r.pipeline(transaction=False)
        for upstream in missing:
            breaker.queue_read(pipe, upstream.connection_id, upstream.model, with_ttft=with_ttft)
        results = iter(await pipe.execute())
        expires = now + settings.GATEWAY_STATE_LOCAL_TTL_S
        for upstream in missing:
            state = Breaker.from_fields(next(results))
            samples = [float(sample) for sample in next(results)] if with_ttft else None
            cached[routing.upstream_id(upstream)] = (expires, state, samples)
    live: dict[routing.UpstreamId, list[float]] = {}
    for upstream in candidates:
        uid = routing.upstream_id(upstream)
        _, call.breakers[uid], samples = cached[uid]
        if with_ttft:
            live[uid] = samples or []
    return live


async def prepare(call: Call, r, candidates: list[UpstreamState]) -> dict[routing.UpstreamId, list[float]]:
    """Admission and the breaker reads, concurrently: one round trip's wait, not two."""
    if not admission_needed(call, candidates):
        return await read_breakers(call, r, candidates)
    # Both finish before either's error is raised: an admission still in flight when the call
    # ends would hold its reservation until the lease expires.
    admitted, live = await asyncio.gather(admit(call, r, candidates), read_breakers(call, r, candidates),
                                          return_exceptions=True)
    for outcome in (admitted, live):
        if isinstance(outcome, BaseException):
            raise outcome
    return live


async def forward(call: Call, r, candidates: list[UpstreamState], live: dict[routing.UpstreamId, list[float]]) -> Response:
    candidates = priced_only_under_budget(call, candidates)
    ordered = routing.order(call.route, candidates, live_ttft=live)
    tryable, probes = routing.healthy(ordered, call.breakers, time.time(), settings.GATEWAY_BREAKER_COOLDOWN_S)
    scripts = gateway.scripts(r)
    deadline = call.started + settings.GATEWAY_RETRY_BUDGET_S
    not_before: dict[routing.UpstreamId, float] = {}
    last: Failure | None = None
    position = 0
    for _ in range(settings.GATEWAY_MAX_ATTEMPTS):
        upstream = await next_upstream(call, tryable, probes, not_before, deadline, position, scripts)
        if upstream is None:
            break
        position = tryable.index(upstream) + 1
        call.upstream = upstream
        outcome = await attempt(call, upstream)
        if isinstance(outcome, Response):
            return outcome
        last = outcome
        call.attempts.append(Attempt(upstream.label, outcome.status, outcome.error))
        gateway.forget_breaker(upstream)
        await breaker.record_failure(scripts, upstream.connection_id, upstream.model, outcome.error, time.time())
        if outcome.retry_after is not None:
            not_before[routing.upstream_id(upstream)] = perf_counter() + outcome.retry_after
    return await exhausted(call, last)


async def next_upstream(call: Call, tryable: list[UpstreamState], probes: set, not_before: dict, deadline: float,
                        position: int, scripts: Scripts) -> UpstreamState | None:
    """The next candidate from `position` on (wrapping around): the first one free to call
    now, else the one free soonest if that fits the retry budget (waiting for it). A candidate
    that needs a half-open probe is tried only if this caller wins the probe."""
    while tryable:
        ring = tryable[position % len(tryable):] + tryable[:position % len(tryable)]
        now = perf_counter()
        ready = [u for u in ring if not_before.get(routing.upstream_id(u), 0.0) <= now]
        if ready:
            upstream = ready[0]
        else:
            upstream = min(ring, key=lambda u: not_before[routing.upstream_id(u)])
            wait = not_before[routing.upstream_id(upstream)] - now
            if now + wait > deadline:
                return None
            await asyncio.sleep(wait)
            call.upstream_wait += wait
        uid = routing.upstream_id(upstream)
        if uid in probes:
            probes.discard(uid)
            gateway.forget_breaker(upstream)
            if not await breaker.claim_probe(scripts, upstream.connection_id, upstream.model, time.time()):
                tryable.remove(upstream)
                continue
        return upstream
    return None


async def attempt(call: Call, upstream: UpstreamState) -> Response | Failure:
    """One try: a Response to send (the answer, or a client error passed through), or a Failure."""
    url = wire.upstream_url(upstream.kind, upstream.base_url, call.endpoint)
    headers = wire.upstream_headers(upstream.kind, call.endpoint, upstream.api_key, call.caller_headers)
    body = wire.upstream_body(call.request, upstream.model)
    session = gateway.session(upstream.allow_private)
    waited_from = perf_counter()
    try:
        async with asyncio.timeout(settings.GATEWAY_FIRST_BYTE_TIMEOUT_S):
            response = await session.post(url, data=body, headers=headers, allow_redirects=False)
    except TimeoutError:
        return Failure("timed out waiting for the upstream's answer", timeout=True)
    except (aiohttp.ClientError, OSError, EgressRefused) as error:
        return Failure(f"could not reach the upstream: {error or type(error).__name__}")
    finally:
        call.upstream_wait += perf_counter() - waited_from
    status = response.status
    if status == 429 or status >= 500 or status < 200 or 300 <= status < 400:
        return await failed_answer(call, response)
    if status >= 400:
        return await passed_through(call, response)
    if call.request.stream:
        return await open_stream(call, upstream, response)
    return await complete(call, upstream, response)


async def read_error_body(call: Call, response: aiohttp.ClientResponse) -> bytes:
    waited_from = perf_counter()
    try:
        async with asyncio.timeout(settings.GATEWAY_CONNECT_TIMEOUT_S):
            return await response.content.read(MAX_ERROR_BODY)
    except (TimeoutError, aiohttp.ClientError):
        return b""
    finally:
        response.release()
        call.upstream_wait += perf_counter() - waited_from


def passed_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {name: response.headers[name] for name in PASSED_HEADERS if name in response.headers}


async def failed_answer(call: Call, response: aiohttp.ClientResponse) -> Failure:
    body = await read_error_body(call, response)
    message = f"HTTP {response.status}"
    payload = _json(body)
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        message += f": {payload['error'].get('message') or payload['error'].get('type') or ''}".rstrip(": ")
    return Failure(message, status=response.status, retry_after=parse_retry_after(response.headers.get("retry-after")),
                   body=body, headers=passed_headers(response))


async def passed_through(call: Call, response: aiohttp.ClientResponse) -> Response:
    """A 4xx that is the caller's to see (bad parameters for this model, the upstream's key
    refused…): as the upstream sent it, no retry."""
    body = await read_error_body(call, response)
    call.status, call.success, call.complete = response.status, False, True
    call.response_body = body
    return await answer(call, body, response.status, passed_headers(response))


def _json(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


async def complete(call: Call, upstream: UpstreamState, response: aiohttp.ClientResponse) -> Response | Failure:
    waited_from = perf_counter()
    try:
        async with asyncio.timeout(settings.GATEWAY_READ_TIMEOUT_S):
            raw = await response.read()
    except TimeoutError:
        response.close()
        return Failure("timed out reading the upstream's answer", timeout=True)
    except aiohttp.ClientError as error:
        response.close()
        return Failure(f"the upstream broke off its answer: {error or type(error).__name__}")
    finally:
        call.upstream_wait += perf_counter() - waited_from
    response.release()
    payload = _json(raw)
    if not isinstance(payload, dict):
        return Failure("the upstream's answer is not a JSON object", status=None)
    call.status, call.success, call.complete = 200, True, True
    call.ttft_ms = (perf_counter() - call.started) * 1000
    call.usage.update(wire.usage_of_answer(call.endpoint, payload))
    if not call.usage.reported:
        call.text = wire.text_of_answer(call.endpoint, payload)
    if call.cache_key is not None:
        call.answer = payload
    call.response_body = raw
    headers = passed_headers(response)
    headers.setdefault("content-type", "application/json")
    return await answer(call, raw, 200, headers)


async def open_stream(call: Call, upstream: UpstreamState, response: aiohttp.ClientResponse) -> Response | Failure:
    """Read up to the first content event, holding what comes before it; commit then."""
    reader = SSEReader()
    stream = StreamState(call.endpoint, include_usage=call.request.include_usage, keep_chunks=call.cache_key is not None)
    held: list[bytes] = []
    events = 0
    waited_from = perf_counter()
    try:
        while not stream.content_started and stream.error is None and not stream.done and events < HELD_EVENTS_LIMIT:
            async with asyncio.timeout(settings.GATEWAY_READ_TIMEOUT_S):
                chunk = await response.content.readany()
            if not chunk:
                break
            for event in reader.feed(chunk):
                events += 1
                held.append(stream.take(event))
    except TimeoutError:
        response.close()
        return Failure("timed out waiting for the stream's first content", timeout=True)
    except aiohttp.ClientError as error:
        response.close()
        return Failure(f"the stream broke before its first content: {error or type(error).__name__}")
    finally:
        call.upstream_wait += perf_counter() - waited_from
    if stream.error is not None and not stream.content_started:
        response.close()
        return Failure(f"the stream began with an error: {stream.error}")
    if not stream.content_started and not stream.done and events < HELD_EVENTS_LIMIT:
        response.close()
        return Failure("the stream ended before any content")
    call.status, call.stream, call.usage = 200, stream, stream.usage  # this attempt's counts only
    if stream.content_started:
        call.ttft_ms = (perf_counter() - call.started) * 1000
    headers = {**passed_headers(response), **call.headers(), "cache-control": "no-cache"}
    headers.setdefault("content-type", "text/event-stream; charset=utf-8")
    return ProxyStream(call, response, reader, b"".join(held), headers)


async def exhausted(call: Call, last: Failure | None) -> Response:
    """Nothing answered: the last upstream error as it was, or 502/504."""
    call.success, call.complete = False, True
    if last is not None and last.status is not None and last.body:
        call.status = last.status
        call.response_body = last.body
        return await answer(call, last.body, last.status, last.headers)
    if last is None:
        call.upstream = None
        error = no_upstream_answered(f"No upstream of the route `{call.route.name}` could be tried (all are "
                                     "cooling down after failures, or waiting out their Retry-After).")
    else:
        tried = "; ".join(f"{a.upstream}: {a.error}" for a in call.attempts)
        error = no_upstream_answered(f"No upstream answered: {tried}.", timeout=last.timeout)
    return await error_response(call, error)


async def error_response(call: Call, error: GatewayError) -> Response:
    call.status = error.status
    body = error.body(call.flavor)
    if call.request_body and not call.response_body:
        call.response_body = body
    return await answer(call, body, error.status, {**error.headers, "content-type": "application/json"})


async def answer(call: Call, body: bytes, status: int, headers: Mapping[str, str]) -> Response:
    """The response to a call, once the call is settled and recorded (`finish`)."""
    await finish(call)
    background = BackgroundTask(touch, call) if call.token is not None else None
    return Response(body, status, headers={**headers, **call.headers()}, background=background)


