"""The hot path: a caller's request in, the upstream's answer out, the call recorded after.

    response = await handle(request, wire.CHAT)     # the endpoints in gateway/asgi.py

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
import itertools
import logging
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from time import perf_counter
from urllib.parse import quote

import aiohttp
import orjson
from django.conf import settings
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from benchmarks.providers.base import estimate_tokens, parse_retry_after
from costs.ingestion import _tags as validated_tags
from lib.egress import EgressRefused, guarded_connector

from . import admission as gateway_admission
from . import breaker, recorder, routing, wire
from . import cache as gateway_cache
from . import redis as gateway_redis
from .auth import LastUsed, authenticate
from .breaker import Breaker, Scripts
from .errors import (
    ANTHROPIC,
    OPENAI,
    GatewayError,
    bad_request,
    body_too_large,
    budget_exceeded,
    internal_error,
    model_not_found,
    no_upstream_answered,
    rate_limited,
)
from .state import ProjectState, RouteState, StateStore, TokenState, UpstreamState
from .wire import MESSAGES, ClientRequest, SSEReader, StreamState, Usage

logger = logging.getLogger(__name__)

USER_AGENT = "Pulse-Gateway/1"
STARTED = "pulse.started"  # the scope key gateway.asgi stamps with the request's arrival (perf_counter)
MAX_TAGS_HEADER = 4096
MAX_ERROR_BODY = 256 * 1024  # an upstream error body passed through; larger is cut
HELD_EVENTS_LIMIT = 64  # a stream whose content has not started after this many events is committed anyway
PASSED_HEADERS = ("content-type", "retry-after", "x-request-id", "request-id")
MICRO = Decimal(1_000_000)


# -- the process's resources ----------------------------------------------------------------------


class PipelineBatch:
    """The Redis commands of the calls that finish in one turn of the event loop go out in one
    pipeline: one round trip for all of them (64 concurrent callers, one write instead of 64).
    A call waits for its batch, so its record is in Redis when its `after` returns."""

    def __init__(self) -> None:
        self._pipe = self._sent = self._client = None
        self._sending: set[asyncio.Task] = set()

    def join(self, r) -> tuple[object, asyncio.Future]:
        if self._pipe is None or self._client is not r:
            loop = asyncio.get_running_loop()
            self._pipe, self._sent, self._client = r.pipeline(transaction=False), loop.create_future(), r
            loop.call_soon(self._send)
        return self._pipe, self._sent

    def _send(self) -> None:
        pipe, sent = self._pipe, self._sent
        self._pipe = self._sent = self._client = None
        task = asyncio.ensure_future(self._execute(pipe, sent))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    @staticmethod
    async def _execute(pipe, sent: asyncio.Future) -> None:
        try:
            await pipe.execute(raise_on_error=False)  # one call's failed command spoils no other's
        except Exception as error:
            sent.set_exception(error)
        else:
            sent.set_result(None)


class Gateway:
    """What one gateway process keeps: the state store, one pooled aiohttp session per egress
    policy (keep-alive; opened in the lifespan or on first use, per event loop), the breaker's
    scripts per Redis client, the last-used clock."""

    def __init__(self) -> None:
        self.store = StateStore()
        self.last_used = LastUsed()
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: tuple[object, Scripts] | None = None
        # Breakers and live TTFT samples read from Redis, trusted for GATEWAY_STATE_LOCAL_TTL_S
        # like the configuration snapshots; this process's own writes drop its copy at once.
        self.breakers: dict[routing.UpstreamId, tuple[float, Breaker, list[float] | None]] = {}
        self.batch = PipelineBatch()
        self._background: set[asyncio.Task] = set()

    def in_background(self, coroutine) -> None:
        """Run `coroutine` without awaiting it, keeping it referenced until it ends."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def forget_breaker(self, upstream: UpstreamState) -> None:
        self.breakers.pop(routing.upstream_id(upstream), None)

    def redis(self):
        return gateway_redis.async_client()

    def scripts(self, r) -> Scripts:
        if self._scripts is None or self._scripts[0] is not r:
            self._scripts = (r, Scripts(r))
        return self._scripts[1]

    def session(self, allow_private: bool) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._sessions, self._loop = {}, loop  # sessions belong to the loop that made them
        session = self._sessions.get(allow_private)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=guarded_connector(allow_private=allow_private, limit=0, keepalive_timeout=60,
                                            ttl_dns_cache=60),
                timeout=aiohttp.ClientTimeout(total=None, connect=settings.GATEWAY_CONNECT_TIMEOUT_S,
                                              sock_read=settings.GATEWAY_READ_TIMEOUT_S),
                headers={"user-agent": USER_AGENT}, skip_auto_headers=("User-Agent",),
            )
            self._sessions[allow_private] = session
        return session

    async def start(self) -> None:
        for allow_private in (False, True):
            self.session(allow_private)

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions = {}
        r = gateway_redis.async_client()
        await r.aclose()


gateway = Gateway()


# -- one call -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Attempt:
    upstream: str
    status_code: int | None
    error: str


@dataclass(slots=True)
class Failure:
    """An attempt that did not answer: what to count, and what to pass through if it was the last."""

    error: str
    status: int | None = None
    timeout: bool = False
    retry_after: float | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


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


class RequestIds:
    """32 hex characters per request, unique across processes: a random per-process prefix (new
    after a fork) and a counter. Cheaper than uuid4, which asks the kernel for randomness on
    every call."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


request_ids = RequestIds()


def header_safe(text: str) -> str:
    return quote(text, safe="/ -_.:@()+,;=")


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
    max_cost = 0
    if budgets:
        most = call.request.max_prompt_tokens()  # a bound, not a guess: the reservation must cover the call
        costs = [u.cost_micro_usd(input_tokens=most, output_tokens=max_output_tokens(call)) for u in candidates]
        if all(cost is None for cost in costs):
            raise GatewayError(
                403, "A hard budget covers this request but none of the route's upstreams has a price, so its "
                "cost cannot be reserved; add a price for the model in the admin, or route it to a priced one.",
                type="insufficient_quota", code="unpriced_under_budget",
            )
        max_cost = max(cost for cost in costs if cost is not None)
    estimated_tokens = prompt + (call.request.max_output_tokens or 0)
    result = await gateway_admission.admit(r, project=project, token_id=token_id, estimated_tokens=estimated_tokens,
                                           budgets=budgets, max_cost_micro_usd=max_cost,
                                           request_id=call.request_id, token_prefix=call.token.prefix)
    if result.allowed:
        call.admission = result
        return
    call.admission = None
    if result.reason == "budget":
        raise budget_exceeded(result.message, result.retry_after_s, result.headers)
    raise rate_limited(result.message, result.retry_after_s, result.headers)


def priced_only_under_budget(call: Call, candidates: list[UpstreamState]) -> list[UpstreamState]:
    """Under a hard budget, only upstreams whose cost was reserved may be called."""
    reservation = call.admission.reservation if call.admission is not None else None
    if reservation is None or not reservation.budgets:
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
    _, live = await asyncio.gather(admit(call, r, candidates), read_breakers(call, r, candidates))
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


# -- streaming --------------------------------------------------------------------------------------


class ProxyStream(Response):
    """Forwards a committed upstream stream event by event, and notices the caller leaving."""

    def __init__(self, call: Call, upstream: aiohttp.ClientResponse, reader: SSEReader, first: bytes,
                 headers: dict[str, str]) -> None:
        self.call, self.upstream, self.reader, self.first = call, upstream, reader, first
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope, receive, send) -> None:
        call, task = self.call, asyncio.current_task()
        watching = True

        def caller_gone(watch: asyncio.Task) -> None:
            # The caller went away while we forward: stop forwarding (cancel this task).
            if watching and not watch.cancelled():
                call.status, call.success = 499, False  # nginx's "client closed request"
                task.cancel()

        watch = asyncio.ensure_future(caller_left(receive))
        watch.add_done_callback(caller_gone)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self.pump(send)
        except asyncio.CancelledError:
            if call.status != 499:
                raise  # the server's own cancellation (shutdown): not ours to swallow
            task.uncancel()
        except Exception:
            logger.exception("Gateway stream %s failed", call.request_id)
            call.status, call.success = 502, False
        finally:
            watching = False
            watch.cancel()
            self.upstream.close()  # stops the upstream's generation if it is still going
            await finish(call)  # (already done when the stream ended normally)
            await touch(call)

    async def pump(self, send) -> None:
        """Forward events as they come; the one that ends the stream waits until the call is
        recorded (`finish`), so a caller never sees the end of a call that is not."""
        call, stream = self.call, self.call.stream
        keep = call.project.store_bodies
        sent, broken, held = [], None, b""
        if stream.done:
            held = self.first  # the whole stream came before its content was committed
        else:
            sent = [self.first] if keep else []
            await send({"type": "http.response.body", "body": self.first, "more_body": True})
        while True:
            waited_from = perf_counter()
            try:
                async with asyncio.timeout(settings.GATEWAY_READ_TIMEOUT_S):
                    chunk = await self.upstream.content.readany()
            except TimeoutError:
                broken = "the upstream stopped sending (read timeout)"
            except aiohttp.ClientError as error:
                broken = f"the upstream broke off the stream: {error or type(error).__name__}"
            finally:
                call.upstream_wait += perf_counter() - waited_from
            if broken or not chunk:
                break
            started = stream.content_started
            data = b"".join([stream.take(event) for event in self.reader.feed(chunk)])
            if not started and stream.content_started:
                call.ttft_ms = (perf_counter() - call.started) * 1000
            if stream.done:
                held += data  # the end: it goes out once the call is recorded
            elif data:
                if keep:
                    sent.append(data)
                await send({"type": "http.response.body", "body": data, "more_body": True})
        rest = self.reader.rest()
        tail = held + (stream.take(rest) if rest is not None else b"")
        if broken is None and not stream.ended:
            broken = "the upstream ended the stream before its end"
        if broken is not None or stream.error is not None:
            call.status, call.success = 502, False
            call.attempts.append(Attempt(call.upstream.label, 200, broken or f"error event: {stream.error}"))
            if broken is not None:
                tail += wire.mid_stream_error(call.endpoint, f"Upstream {call.upstream.label}: {broken}.")
        else:
            call.success, call.complete = True, True
        if keep:
            call.response_body = b"".join(sent) + tail
        await finish(call)
        await send({"type": "http.response.body", "body": tail, "more_body": False})


async def caller_left(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


# -- after the response -----------------------------------------------------------------------------


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
    if upstream is not None and call.stream is not None and call.status == 502:
        gateway.forget_breaker(upstream)
        await breaker.record_failure(gateway.scripts(r), upstream.connection_id, upstream.model,
                                     "the stream broke after it started", time.time())
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
    await sent
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
