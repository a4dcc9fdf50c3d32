"""Pulse's simulated LLM provider: one aiohttp server that speaks three streaming wire formats.

Tests, the demo (`make run`) and bench scripts point Pulse's client adapters here instead of at a
real provider, so no test ever spends money or depends on the internet. The server imitates:

* OpenAI-compatible chat completions (`POST /openai/v1/chat/completions`, SSE `data:` chunks,
  `stream_options.include_usage`, `data: [DONE]`);
* Anthropic Messages (`POST /anthropic/v1/messages`, named SSE events from `message_start` to
  `message_stop`, thinking blocks, `event: error`);
* Gemini (`POST /gemini/v1beta/models/{model}:streamGenerateContent?alt=sse`, `usageMetadata`,
  `thought: true` parts);
* OpenAI embeddings (`POST /openai/v1/embeddings`: deterministic unit vectors, `dimensions`,
  `encoding_format` float or base64, usage), and the OpenAI-compatible endpoints Anthropic and
  Gemini also serve (`/anthropic/v1/chat/completions`, `/gemini/v1beta/openai/chat/completions`
  and `…/embeddings`), which the gateway calls for OpenAI-format requests routed there.

Each model name maps to a `ModelProfile` (timing, chunking, usage quirks, one optional fault). The
server also tells the truth about itself, so a benchmark's measurements can be checked: every
streamed JSON event carries `"pulse_sim": {"sent_ns": <time.time_ns() at send>, "seq": i}`, every
response has `x-pulse-sim-received-ns` and `x-pulse-sim-request-id` headers, and
`GET /_sim/requests` lists what was actually sent for each request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from aiohttp import web

from benchmarks.providers import adapter_for

# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------

FaultKind = Literal[
    "status", "disconnect_mid_stream", "malformed_chunk", "stall", "error_event", "empty_stream"
]
BAD_KEY = "bad-key"  # the one API key every format rejects, with that provider's real error body
MALFORMED_DATA = "{not json"
LOG_LIMIT = 10_000  # a long bench run must not grow the request log without bound


@dataclass(frozen=True)
class Fault:
    """One way a model misbehaves. Mid-stream kinds strike after `after_chunks` content chunks."""

    kind: FaultKind
    status_code: int = 500
    retry_after: int | None = None  # seconds: Retry-After header (and Gemini's RetryInfo)
    after_chunks: int = 3
    stall_seconds: float = 30.0
    every_nth: int = 1  # strike on every n-th request to the model; 1 means always
    first: int = 0  # strike only among the model's first n requests (0: no limit), e.g. a 429 once

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.every_nth < 1 or self.after_chunks < 0 or self.first < 0:
            raise ValueError("every_nth must be >= 1, after_chunks and first >= 0")

    def strikes(self, request_number: int) -> bool:
        within = self.first == 0 or request_number <= self.first
        return within and request_number % self.every_nth == 0


@dataclass(frozen=True)
class ModelProfile:
    """How one simulated model streams. A "token" is one pseudo-word followed by a space."""

    ttft_ms: float = 200.0
    inter_token_ms: float = 15.0
    output_tokens: int = 128  # visible text tokens; reasoning tokens come on top
    tokens_per_chunk: int = 1
    send_usage: bool = True
    usage_on_every_chunk: bool = False  # cumulative usage on each chunk (OpenAI, Gemini)
    usage_with_choices: bool = False  # final usage rides on a chunk that also has choices
    role_chunk_first: bool = True  # OpenAI: empty-content role chunk sent at once, before TTFT
    reasoning_tokens: int = 0
    cached_tokens: int = 0  # reported as cached prompt tokens (capped at the prompt's size)
    fault: Fault | None = None

    def __post_init__(self) -> None:
        if self.tokens_per_chunk < 1 or min(self.output_tokens, self.reasoning_tokens) < 0:
            raise ValueError("tokens_per_chunk must be >= 1 and token counts >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelProfile:
        values = dict(data)
        fault = values.pop("fault", None)
        return cls(**values, fault=Fault(**fault) if fault else None)


_FAST = ModelProfile(ttft_ms=50, inter_token_ms=5, output_tokens=64)


def _faulty(**fault: Any) -> ModelProfile:
    return replace(_FAST, output_tokens=16, fault=Fault(**fault))


DEFAULT_PROFILES: dict[str, ModelProfile] = {
    "sim-fast": _FAST,
    "sim-medium": ModelProfile(ttft_ms=200, inter_token_ms=15, output_tokens=128),
    "sim-slow": ModelProfile(ttft_ms=600, inter_token_ms=40, output_tokens=96),
    "sim-bundled": replace(_FAST, tokens_per_chunk=4),
    "sim-reasoning": replace(_FAST, reasoning_tokens=16),
    "sim-no-usage": replace(_FAST, send_usage=False),
    "sim-flaky": replace(_FAST, fault=Fault("status", status_code=503, every_nth=3)),
    "sim-401": _faulty(kind="status", status_code=401),
    "sim-404": _faulty(kind="status", status_code=404),
    "sim-429": _faulty(kind="status", status_code=429, retry_after=7),
    "sim-500": _faulty(kind="status", status_code=500),
    "sim-disconnect": _faulty(kind="disconnect_mid_stream"),
    "sim-malformed": _faulty(kind="malformed_chunk"),
    "sim-stall": _faulty(kind="stall"),
    "sim-error-event": _faulty(kind="error_event"),
    "sim-empty": _faulty(kind="empty_stream"),
    # Answers at once: what benches measure a proxy's own overhead against.
    "sim-instant": ModelProfile(ttft_ms=0, inter_token_ms=0, output_tokens=16),
    "sim-embed": ModelProfile(ttft_ms=5, inter_token_ms=0, output_tokens=0),
}


def load_profiles(path: Path | str) -> dict[str, ModelProfile]:
    """Profiles from a JSON object {name: {field: value, "fault": {...}}}; only the file's own."""
    raw = json.loads(Path(path).read_text())
    try:
        return {name: ModelProfile.from_dict(spec) for name, spec in raw.items()}
    except TypeError as exc:  # an unknown or missing field: say which file, not just "TypeError"
        raise ValueError(f"{path}: {exc}") from exc


def base_url_for(root: str, kind: str) -> str:
    """The base URL a client of `kind` is configured with, given the server root (the prefix is
    the adapter's, in the provider registry)."""
    return root.rstrip("/") + adapter_for(kind).simulator_prefix


# --------------------------------------------------------------------------------------------
# Text, chunks and usage
# --------------------------------------------------------------------------------------------

_SYLLABLES = ("ka", "lo", "mi", "ren", "su", "ta", "vo", "ni", "pel", "zu", "dor", "ax")


def pseudo_word(i: int) -> str:
    """Deterministic, space-free, so a word-count tokenizer fallback counts tokens exactly."""
    n = len(_SYLLABLES)
    return _SYLLABLES[i % n] + _SYLLABLES[(i * 7 + i // n) % n]


def pseudo_text(start: int, count: int) -> str:
    return "".join(f"{pseudo_word(i)} " for i in range(start, start + count))


def count_words(node: Any) -> int:
    """Words in the text of messages/contents/system, whatever the format's nesting."""
    if isinstance(node, str):
        return len(node.split())
    if isinstance(node, list):
        return sum(count_words(item) for item in node)
    if isinstance(node, dict):
        return sum(count_words(node[key]) for key in ("text", "content", "parts") if key in node)
    return 0


@dataclass(frozen=True)
class Chunk:
    """One content-bearing event: reasoning or text, never both."""

    kind: Literal["reasoning", "text"]
    text: str
    tokens: int
    offset: int  # tokens generated before this chunk; fixes its send time
    first_of_kind: bool
    last_of_kind: bool
    reasoning_done: int  # cumulative counts once this chunk is out (for cumulative usage)
    text_done: int


def plan_chunks(reasoning: int, text: int, per_chunk: int) -> tuple[Chunk, ...]:
    reasoning_part = _segment("reasoning", reasoning, 0, per_chunk, reasoning)
    return reasoning_part + _segment("text", text, reasoning, per_chunk, reasoning)


def _segment(
    kind: Literal["reasoning", "text"], count: int, base: int, per_chunk: int, reasoning: int
) -> tuple[Chunk, ...]:
    chunks = []
    for start in range(0, count, per_chunk):
        size = min(per_chunk, count - start)
        done = start + size
        chunks.append(
            Chunk(
                kind=kind, text=pseudo_text(base + start, size), tokens=size, offset=base + start,
                first_of_kind=start == 0, last_of_kind=done == count,
                reasoning_done=done if kind == "reasoning" else reasoning,
                text_done=done if kind == "text" else 0,
            )
        )
    return tuple(chunks)


@dataclass(frozen=True)
class Usage:
    prompt: int
    cached: int
    text: int
    reasoning: int

    @property
    def output(self) -> int:  # OpenAI completion_tokens and Anthropic output_tokens count both
        return self.text + self.reasoning


# --------------------------------------------------------------------------------------------
# Requests, failures and the exchange being simulated
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestSpec:
    model: str
    stream: bool
    prompt_tokens: int
    include_usage: bool = True  # only OpenAI makes usage opt-in (stream_options.include_usage)
    max_tokens: int | None = None


@dataclass(frozen=True)
class Failure:
    """An error response to render in the caller's wire format."""

    status: int
    model: str = ""
    reason: Literal["status", "missing_key", "bad_key", "bad_request"] = "status"
    detail: str = ""
    retry_after: int | None = None


class SimFailure(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.detail or str(failure.status))
        self.failure = failure


def bad_request(detail: str) -> SimFailure:
    return SimFailure(Failure(400, reason="bad_request", detail=detail))


@dataclass(frozen=True)
class Exchange:
    """Everything decided about one request before its first byte is sent."""

    model: str
    profile: ModelProfile
    fault: Fault | None
    stream: bool
    include_usage: bool
    prompt_tokens: int
    text_tokens: int
    truncated: bool  # max tokens cut the text short: finish reason "length"/"max_tokens"
    start_ns: int  # time.monotonic_ns() at receipt: every send is scheduled against it
    response_id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def reasoning_tokens(self) -> int:
        return self.profile.reasoning_tokens

    @cached_property
    def chunks(self) -> tuple[Chunk, ...]:
        return plan_chunks(self.reasoning_tokens, self.text_tokens, self.profile.tokens_per_chunk)

    def due_ns(self, token_offset: int) -> int:
        """Deadline of the chunk starting at `token_offset`: start + ttft + offset * gap."""
        delay_ms = self.profile.ttft_ms + token_offset * self.profile.inter_token_ms
        return self.start_ns + int(delay_ms * 1_000_000)

    def usage(self, text: int, reasoning: int) -> Usage | None:
        if not self.profile.send_usage:
            return None
        cached = min(self.profile.cached_tokens, self.prompt_tokens)
        return Usage(self.prompt_tokens, cached, text, reasoning)

    def usage_at(self, chunk: Chunk) -> Usage | None:
        return self.usage(chunk.text_done, chunk.reasoning_done)

    @property
    def final_usage(self) -> Usage | None:
        return self.usage(self.text_tokens, self.reasoning_tokens)

    @property
    def text(self) -> str:
        return pseudo_text(self.reasoning_tokens, self.text_tokens)

    @property
    def reasoning_text(self) -> str:
        return pseudo_text(0, self.reasoning_tokens)


def build_exchange(
    spec: RequestSpec, profile: ModelProfile, fault: Fault | None, start_ns: int
) -> Exchange:
    limit = spec.max_tokens if isinstance(spec.max_tokens, int) else profile.output_tokens
    limit = max(limit, 0)
    return Exchange(
        model=spec.model, profile=profile, fault=fault, stream=spec.stream,
        include_usage=spec.include_usage and profile.send_usage, prompt_tokens=spec.prompt_tokens,
        text_tokens=min(profile.output_tokens, limit), truncated=limit < profile.output_tokens,
        start_ns=start_ns,
    )


@dataclass
class RequestRecord:
    """What the server received and actually sent for one request (GET /_sim/requests)."""

    id: int
    kind: str
    received_ns: int
    model: str = ""
    stream: bool = False
    status: int = 200
    fault: str | None = None
    prompt_tokens: int = 0
    first_content_sent_ns: int | None = None  # first reasoning or text token, never a role chunk
    first_text_sent_ns: int | None = None
    last_content_sent_ns: int | None = None
    output_tokens: int = 0  # visible text tokens sent
    reasoning_tokens: int = 0
    chunks: int = 0  # content-bearing events sent
    completed: bool = False  # the stream reached its normal end
    client_left: bool = False  # the client closed the connection before the stream's end

    def note(self, kind: str, tokens: int, sent_ns: int) -> None:
        if self.first_content_sent_ns is None:
            self.first_content_sent_ns = sent_ns
        if kind == "text" and self.first_text_sent_ns is None:
            self.first_text_sent_ns = sent_ns
        self.last_content_sent_ns = sent_ns
        self.chunks += 1
        if kind == "text":
            self.output_tokens += tokens
        else:
            self.reasoning_tokens += tokens

    def note_full(self, text_tokens: int, reasoning_tokens: int, sent_ns: int) -> None:
        """A non-streaming answer: all content in one body."""
        self.first_content_sent_ns = self.first_text_sent_ns = self.last_content_sent_ns = sent_ns
        self.output_tokens, self.reasoning_tokens = text_tokens, reasoning_tokens
        self.chunks, self.completed = 1, True


# --------------------------------------------------------------------------------------------
# Wire formats
# --------------------------------------------------------------------------------------------

JSON = dict[str, Any]


@dataclass(frozen=True)
class Event:
    data: JSON | str  # a str is sent verbatim and unstamped ("[DONE]", the malformed line)
    name: str | None = None  # the SSE `event:` line (Anthropic)
    chunk: Chunk | None = None  # the content this event carries, if any


class WireFormat(Protocol):
    kind: str  # a kind in the provider registry, whose simulator_prefix the paths sit below
    generate_path: str
    models_path: str
    line_end: str
    stream_content_type: str

    def authenticate(self, request: web.Request) -> None: ...
    def parse(self, body: JSON, request: web.Request) -> RequestSpec: ...
    def error(self, failure: Failure) -> tuple[int, JSON]: ...
    def opening(self, ex: Exchange) -> list[Event]: ...
    def content(self, ex: Exchange, chunk: Chunk) -> list[Event]: ...
    def closing(self, ex: Exchange) -> list[Event]: ...
    def stream_error(self, ex: Exchange) -> list[Event]: ...
    def full(self, ex: Exchange) -> JSON: ...
    def models(self, names: list[str]) -> JSON: ...


def _require_key(key: str | None, missing: Failure, bad: Failure) -> None:
    if not key:
        raise SimFailure(missing)
    if key == BAD_KEY:
        raise SimFailure(bad)


class OpenAIFormat:
    kind = "openai_compatible"
    generate_path = "/chat/completions"
    models_path = "/models"
    line_end = "\n"
    stream_content_type = "text/event-stream; charset=utf-8"

    _ERRORS: dict[int, tuple[str, str | None, str]] = {
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."),
        403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"),
        404: ("invalid_request_error", "model_not_found", "The model `{model}` does not exist or you do not have access to it."),
        429: ("requests", "rate_limit_exceeded", "Rate limit reached for {model} in organization org-pulsesim on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in {retry}s. Visit https://platform.openai.com/account/rate-limits to learn more."),
        500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
        503: ("server_error", None, "The server is overloaded or not ready yet."),
    }
    _MISSING_KEY = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from https://platform.openai.com/account/api-keys."

    def authenticate(self, request: web.Request) -> None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        missing = Failure(401, reason="missing_key", detail=self._MISSING_KEY)
        _require_key(key.strip() if scheme.lower() == "bearer" else None, missing, Failure(401))

    def parse(self, body: JSON, request: web.Request) -> RequestSpec:
        if not body.get("model") or not isinstance(body.get("messages"), list):
            raise bad_request("you must provide a model parameter and a messages array")
        options = body.get("stream_options") or {}
        return RequestSpec(
            model=body["model"], stream=bool(body.get("stream")),
            prompt_tokens=count_words(body["messages"]),
            include_usage=not body.get("stream") or bool(options.get("include_usage")),
            max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        )

    def error(self, failure: Failure) -> tuple[int, JSON]:
        fallback = ("invalid_request_error" if failure.status < 500 else "server_error", None, "")
        kind, code, message = self._ERRORS.get(failure.status, fallback)
        if failure.reason in ("missing_key", "bad_request"):
            kind, code, message = "invalid_request_error", None, failure.detail
        message = message.format(model=failure.model, retry=failure.retry_after or 1)
        body = {"message": message, "type": kind, "param": None, "code": code}
        return failure.status, {"error": body}

    def _chunk(self, ex: Exchange, choices: list[JSON], usage: Usage | None = None) -> JSON:
        payload: JSON = {
            "id": f"chatcmpl-{ex.response_id}", "object": "chat.completion.chunk",
            "created": ex.created, "model": ex.model, "system_fingerprint": "fp_pulsesim",
            "choices": choices,
        }
        if ex.include_usage:  # as OpenAI does: "usage": null on every chunk but the usage one
            payload["usage"] = self._usage(usage)
        return payload

    @staticmethod
    def _choice(delta: JSON, finish: str | None = None) -> JSON:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    @staticmethod
    def _usage(usage: Usage | None) -> JSON | None:
        if usage is None:
            return None
        return {
            "prompt_tokens": usage.prompt, "completion_tokens": usage.output,
            "total_tokens": usage.prompt + usage.output,
            "prompt_tokens_details": {"cached_tokens": usage.cached},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
        }

    def opening(self, ex: Exchange) -> list[Event]:
        if not ex.profile.role_chunk_first:
            return []
        delta = {"role": "assistant", "content": "", "refusal": None}
        return [Event(self._chunk(ex, [self._choice(delta)]))]

    def content(self, ex: Exchange, chunk: Chunk) -> list[Event]:
        delta: JSON = {"content": chunk.text}
        if chunk.kind == "reasoning":  # DeepSeek-style reasoning_content, content stays null
            delta = {"content": None, "reasoning_content": chunk.text}
        if chunk.offset == 0 and not ex.profile.role_chunk_first:
            delta = {"role": "assistant", **delta}
        usage = ex.usage_at(chunk) if ex.profile.usage_on_every_chunk else None
        return [Event(self._chunk(ex, [self._choice(delta)], usage), chunk=chunk)]

    def closing(self, ex: Exchange) -> list[Event]:
        profile, final = ex.profile, ex.final_usage
        on_finish = final if profile.usage_with_choices or profile.usage_on_every_chunk else None
        finish = self._choice({}, "length" if ex.truncated else "stop")
        events = [Event(self._chunk(ex, [finish], on_finish))]
        if ex.include_usage and not profile.usage_with_choices:
            events.append(Event(self._chunk(ex, [], final)))
        return [*events, Event("[DONE]")]

    def stream_error(self, ex: Exchange) -> list[Event]:
        return [Event(self.error(Failure(500, ex.model))[1])]

    def full(self, ex: Exchange) -> JSON:
        message: JSON = {"role": "assistant", "content": ex.text, "refusal": None}
        if ex.reasoning_tokens:
            message["reasoning_content"] = ex.reasoning_text
        choice = {"index": 0, "message": message, "logprobs": None,
                  "finish_reason": "length" if ex.truncated else "stop"}
        payload: JSON = {
            "id": f"chatcmpl-{ex.response_id}", "object": "chat.completion", "created": ex.created,
            "model": ex.model, "system_fingerprint": "fp_pulsesim", "choices": [choice],
        }
        if ex.final_usage is not None:
            payload["usage"] = self._usage(ex.final_usage)
        return payload

    def models(self, names: list[str]) -> JSON:
        data = [{"id": n, "object": "model", "created": 1_700_000_000, "owned_by": "pulse-sim"}
                for n in names]
        return {"object": "list", "data": data}


class AnthropicFormat:
    kind = "anthropic"
    generate_path = "/v1/messages"
    models_path = "/v1/models"
    line_end = "\n"
    stream_content_type = "text/event-stream; charset=utf-8"

    _ERRORS: dict[int, tuple[str, str]] = {
        401: ("authentication_error", "invalid x-api-key"),
        403: ("permission_error", "Your API key does not have permission to use the specified resource."),
        404: ("not_found_error", "model: {model}"),
        413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429: ("rate_limit_error", "This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."),
        500: ("api_error", "Internal server error"),
        503: ("overloaded_error", "Overloaded"),
        529: ("overloaded_error", "Overloaded"),
    }
    _SIGNATURE = "EqQBCkYIBRgCIkBQdWxzZVNpbXVsYXRlZFNpZ25hdHVyZQ=="  # opaque, like the real one

    def authenticate(self, request: web.Request) -> None:
        missing = Failure(401, reason="missing_key", detail="x-api-key header is required")
        _require_key(request.headers.get("x-api-key"), missing, Failure(401))
        if not request.headers.get("anthropic-version"):  # the real API refuses without it too
            raise bad_request("anthropic-version: header is required")

    def parse(self, body: JSON, request: web.Request) -> RequestSpec:
        if not body.get("model") or not isinstance(body.get("messages"), list):
            raise bad_request("model: Field required")
        if not isinstance(body.get("max_tokens"), int):
            raise bad_request("max_tokens: Field required")
        prompt = count_words(body.get("system", "")) + count_words(body["messages"])
        return RequestSpec(model=body["model"], stream=bool(body.get("stream")),
                           prompt_tokens=prompt, max_tokens=body["max_tokens"])

    def error(self, failure: Failure) -> tuple[int, JSON]:
        fallback = ("invalid_request_error", "") if failure.status < 500 else ("api_error", "")
        kind, message = self._ERRORS.get(failure.status, fallback)
        if failure.reason == "missing_key":
            kind, message = "authentication_error", failure.detail
        elif failure.reason == "bad_request":
            kind, message = "invalid_request_error", failure.detail
        body = {"type": kind, "message": message.format(model=failure.model)}
        return failure.status, {"type": "error", "error": body, "request_id": _request_id()}

    @staticmethod
    def _event(payload: JSON, chunk: Chunk | None = None) -> Event:
        return Event(payload, name=payload["type"], chunk=chunk)

    def _usage(self, ex: Exchange) -> JSON:
        usage = ex.usage(0, 0)
        if usage is None:
            return {}
        # Anthropic's input_tokens exclude cache reads, unlike OpenAI's and Gemini's counts.
        return {"usage": {"input_tokens": usage.prompt - usage.cached,
                          "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": usage.cached, "output_tokens": 1}}

    def opening(self, ex: Exchange) -> list[Event]:
        message = {"id": f"msg_01{ex.response_id}", "type": "message", "role": "assistant",
                   "model": ex.model, "content": [], "stop_reason": None, "stop_sequence": None,
                   **self._usage(ex)}
        return [self._event({"type": "message_start", "message": message}),
                self._event({"type": "ping"})]

    def _index(self, ex: Exchange, chunk: Chunk) -> int:
        return 1 if chunk.kind == "text" and ex.reasoning_tokens else 0

    def content(self, ex: Exchange, chunk: Chunk) -> list[Event]:
        index, thinking = self._index(ex, chunk), chunk.kind == "reasoning"
        events = []
        if chunk.first_of_kind:
            block: JSON = {"type": "text", "text": ""}
            if thinking:
                block = {"type": "thinking", "thinking": "", "signature": ""}
            start = {"type": "content_block_start", "index": index, "content_block": block}
            events.append(self._event(start))
        delta: JSON = {"type": "text_delta", "text": chunk.text}
        if thinking:
            delta = {"type": "thinking_delta", "thinking": chunk.text}
        payload = {"type": "content_block_delta", "index": index, "delta": delta}
        events.append(self._event(payload, chunk))
        if chunk.last_of_kind:
            events.extend(self._block_end(index, thinking))
        return events

    def _block_end(self, index: int, thinking: bool) -> list[Event]:
        events = []
        if thinking:  # a thinking block always closes with its signature
            delta = {"type": "signature_delta", "signature": self._SIGNATURE}
            events.append(self._event({"type": "content_block_delta", "index": index, "delta": delta}))
        return [*events, self._event({"type": "content_block_stop", "index": index})]

    def closing(self, ex: Exchange) -> list[Event]:
        delta: JSON = {"type": "message_delta",
                       "delta": {"stop_reason": "max_tokens" if ex.truncated else "end_turn",
                                 "stop_sequence": None}}
        if ex.final_usage is not None:
            delta["usage"] = {"output_tokens": ex.final_usage.output}
        return [self._event(delta), self._event({"type": "message_stop"})]

    def stream_error(self, ex: Exchange) -> list[Event]:
        error = {"type": "overloaded_error", "message": "Overloaded"}
        return [self._event({"type": "error", "error": error})]

    def full(self, ex: Exchange) -> JSON:
        content: list[JSON] = [{"type": "text", "text": ex.text}]
        if ex.reasoning_tokens:
            content.insert(0, {"type": "thinking", "thinking": ex.reasoning_text,
                               "signature": self._SIGNATURE})
        usage = self._usage(ex)
        if usage:
            usage["usage"]["output_tokens"] = ex.text_tokens + ex.reasoning_tokens
        return {"id": f"msg_01{ex.response_id}", "type": "message", "role": "assistant",
                "model": ex.model, "content": content,
                "stop_reason": "max_tokens" if ex.truncated else "end_turn",
                "stop_sequence": None, **usage}

    def models(self, names: list[str]) -> JSON:
        data = [{"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"}
                for n in names]
        return {"data": data, "has_more": False, "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None}


class GeminiFormat:
    kind = "gemini"
    generate_path = "/v1beta/models/{target}"  # {model}:streamGenerateContent or :generateContent
    models_path = "/v1beta/models"
    line_end = "\r\n"  # Gemini frames its SSE with CRLF; client parsers must cope
    stream_content_type = "text/event-stream"

    _STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
               503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
    _MESSAGES = {
        401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        403: "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        404: "models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.",
        429: "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        503: "The model is overloaded. Please try again later.",
    }
    _ACTIONS = {"streamGenerateContent": True, "generateContent": False}

    def authenticate(self, request: web.Request) -> None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        # A wrong key is a 400 INVALID_ARGUMENT with reason API_KEY_INVALID on the real API, and
        # a missing one a 403: adapters must classify those as auth errors, so we mimic them.
        _require_key(key, Failure(403, reason="missing_key"), Failure(400, reason="bad_key"))

    def parse(self, body: JSON, request: web.Request) -> RequestSpec:
        model, _, action = request.match_info["target"].partition(":")
        if action not in self._ACTIONS:
            raise SimFailure(Failure(404, model=model))
        if self._ACTIONS[action] and request.query.get("alt") != "sse":
            raise bad_request("the simulator streams only as server-sent events: add ?alt=sse")
        if not isinstance(body.get("contents"), list):
            raise bad_request("* GenerateContentRequest.contents: contents is not specified")
        prompt = count_words(body["contents"]) + count_words(body.get("systemInstruction", ""))
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
        return RequestSpec(model=model, stream=self._ACTIONS[action], prompt_tokens=prompt,
                           max_tokens=limit)

    def error(self, failure: Failure) -> tuple[int, JSON]:
        status = failure.status
        body: JSON = {"code": status, "message": self._message(failure),
                      "status": self._STATUS.get(status, "UNKNOWN")}
        if failure.reason == "bad_key":
            body["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                                "metadata": {"service": "generativelanguage.googleapis.com"}}]
        elif failure.retry_after is not None:
            body["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                "retryDelay": f"{failure.retry_after}s"}]
        return status, {"error": body}

    def _message(self, failure: Failure) -> str:
        if failure.reason == "bad_key":
            return "API key not valid. Please pass a valid API key."
        if failure.reason == "bad_request":
            return failure.detail
        return self._MESSAGES.get(failure.status, "").format(model=failure.model)

    @staticmethod
    def _usage(usage: Usage | None) -> JSON:
        if usage is None:
            return {}
        meta = {"promptTokenCount": usage.prompt, "candidatesTokenCount": usage.text,
                "totalTokenCount": usage.prompt + usage.output}
        if usage.reasoning:  # like the real API, zero counts are left out
            meta["thoughtsTokenCount"] = usage.reasoning
        if usage.cached:
            meta["cachedContentTokenCount"] = usage.cached
        return {"usageMetadata": meta}

    def _response(self, ex: Exchange, parts: list[JSON], finish: bool, usage: Usage | None) -> JSON:
        candidate: JSON = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = "MAX_TOKENS" if ex.truncated else "STOP"
        return {"candidates": [candidate], **self._usage(usage), "modelVersion": ex.model,
                "responseId": ex.response_id}

    def _folds_finish(self, ex: Exchange, chunk: Chunk) -> bool:
        return ex.profile.usage_with_choices and chunk.kind == "text" and chunk.last_of_kind

    def opening(self, ex: Exchange) -> list[Event]:
        return []

    def content(self, ex: Exchange, chunk: Chunk) -> list[Event]:
        part: JSON = {"text": chunk.text}
        if chunk.kind == "reasoning":
            part["thought"] = True
        finish = self._folds_finish(ex, chunk)
        usage = ex.usage_at(chunk) if finish or ex.profile.usage_on_every_chunk else None
        return [Event(self._response(ex, [part], finish, usage), chunk=chunk)]

    def closing(self, ex: Exchange) -> list[Event]:
        chunks = ex.chunks
        if chunks and self._folds_finish(ex, chunks[-1]):
            return []  # the last text chunk already carried finishReason and usage
        return [Event(self._response(ex, [{"text": ""}], True, ex.final_usage))]

    def stream_error(self, ex: Exchange) -> list[Event]:
        return [Event(self.error(Failure(500, ex.model))[1])]

    def full(self, ex: Exchange) -> JSON:
        parts: list[JSON] = [{"text": ex.text}]
        if ex.reasoning_tokens:
            parts.insert(0, {"text": ex.reasoning_text, "thought": True})
        return self._response(ex, parts, True, ex.final_usage)

    def models(self, names: list[str]) -> JSON:
        methods = ["generateContent", "countTokens", "streamGenerateContent"]
        return {"models": [{"name": f"models/{n}", "version": "001", "displayName": n,
                            "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536,
                            "supportedGenerationMethods": methods} for n in names]}


FORMATS: dict[str, WireFormat] = {
    f.kind: f for f in (OpenAIFormat(), AnthropicFormat(), GeminiFormat())
}
KINDS = tuple(FORMATS)  # the registry's kinds this simulator can stand in for


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


def sse_frame(event: Event, line_end: str, stamp: JSON) -> bytes:
    """One SSE event; JSON payloads get the pulse_sim truth stamp (real clients ignore it)."""
    data = event.data
    if not isinstance(data, str):
        data = json.dumps({**data, "pulse_sim": stamp}, separators=(",", ":"))
    lines = [f"event: {event.name}"] if event.name else []
    return (line_end.join([*lines, f"data: {data}"]) + line_end * 2).encode()


# --------------------------------------------------------------------------------------------
# Server state and handlers
# --------------------------------------------------------------------------------------------


class SimState:
    """Profiles, per-model request counters (for every_nth faults) and the request log.

    Handlers run on the server's event loop; SimulatedProvider.set_profile writes the profiles
    dict from the test thread, which is safe because a single dict assignment is atomic.
    """

    def __init__(self, profiles: dict[str, ModelProfile]) -> None:
        self.profiles = dict(profiles)
        self.log: deque[RequestRecord] = deque(maxlen=LOG_LIMIT)
        self._calls: Counter[str] = Counter()
        self._ids = itertools.count(1)

    def open_record(self, kind: str, received_ns: int) -> RequestRecord:
        record = RequestRecord(id=next(self._ids), kind=kind, received_ns=received_ns)
        self.log.append(record)
        return record

    def reset_counters(self) -> None:
        self._calls.clear()

    def fault_for(self, model: str, profile: ModelProfile) -> Fault | None:
        self._calls[model] += 1
        fault = profile.fault
        return fault if fault is not None and fault.strikes(self._calls[model]) else None


STATE = web.AppKey("pulse_sim_state", SimState)


def _sim_headers(record: RequestRecord) -> dict[str, str]:
    return {"x-pulse-sim-request-id": str(record.id),
            "x-pulse-sim-received-ns": str(record.received_ns)}


def _error_response(fmt: WireFormat, failure: Failure, record: RequestRecord) -> web.Response:
    status, body = fmt.error(failure)
    record.status = status
    headers = _sim_headers(record)
    if failure.retry_after is not None:
        headers["retry-after"] = str(failure.retry_after)
    return web.json_response(body, status=status, headers=headers)


async def _read_json(request: web.Request) -> JSON:
    try:
        body = await request.json()
    except ValueError as exc:
        raise bad_request("We could not parse the JSON body of your request.") from exc
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


async def _prepare_exchange(
    request: web.Request, fmt: WireFormat, record: RequestRecord, start_ns: int
) -> Exchange:
    """Authenticate, parse, pick the profile and decide a status fault; raises SimFailure."""
    fmt.authenticate(request)
    spec = fmt.parse(await _read_json(request), request)
    record.model, record.stream, record.prompt_tokens = spec.model, spec.stream, spec.prompt_tokens
    state = request.app[STATE]
    profile = state.profiles.get(spec.model)
    if profile is None:
        raise SimFailure(Failure(404, model=spec.model))
    fault = state.fault_for(spec.model, profile)
    record.fault = fault.kind if fault else None
    if fault is not None and fault.kind == "status":
        raise SimFailure(Failure(fault.status_code, spec.model, retry_after=fault.retry_after))
    return build_exchange(spec, profile, fault, start_ns)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def generate_handler(fmt: WireFormat) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        # Receipt is stamped first thing, on both clocks: wall for the log, monotonic to schedule.
        received_ns, start_ns = time.time_ns(), time.monotonic_ns()
        record = request.app[STATE].open_record(fmt.kind, received_ns)
        try:
            ex = await _prepare_exchange(request, fmt, record, start_ns)
        except SimFailure as exc:
            return _error_response(fmt, exc.failure, record)
        if ex.stream:
            return await _Streamer(request, fmt, ex, record).run()
        return await _complete(request, fmt, ex, record)

    return handle


def models_handler(fmt: WireFormat) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        record = RequestRecord(id=0, kind=fmt.kind, received_ns=time.time_ns())  # not logged
        try:
            fmt.authenticate(request)
        except SimFailure as exc:
            return _error_response(fmt, exc.failure, record)
        return web.json_response(fmt.models(sorted(request.app[STATE].profiles)))

    return handle


async def _sleep_until(due_ns: int) -> None:
    """Sleep to an absolute monotonic deadline, so per-chunk overshoot never accumulates.

    The loop's timers wake up to ~1 ms late (epoll rounds timeouts up to whole ms). Spinning
    the last stretch was tried and dropped: in-process, it starves the client thread of the
    GIL. The pulse_sim stamps record the real send times anyway, so they remain the truth.
    """
    delay = (due_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


class _Streamer:
    """Sends one exchange as SSE, each chunk at its deadline, with the profile's fault."""

    def __init__(self, request: web.Request, fmt: WireFormat, ex: Exchange, record: RequestRecord):
        self.request, self.fmt, self.ex, self.record = request, fmt, ex, record
        self.response = web.StreamResponse(headers={
            "Content-Type": fmt.stream_content_type, "Cache-Control": "no-cache",
            "x-request-id": _request_id(), **_sim_headers(record)})
        self.seq = 0
        self.shift_ns = 0  # a stall pushes every later deadline back by its length

    async def run(self) -> web.StreamResponse:
        try:
            await self._stream()
        except ConnectionError:
            self.record.client_left = True  # its record shows how far the stream got
        except asyncio.CancelledError:  # the client left while we waited (handler_cancellation)
            self.record.client_left = True
            raise
        return self.response

    async def _stream(self) -> None:
        await self.response.prepare(self.request)  # headers go out at once, as providers do
        fault = self.ex.fault
        if fault is not None and fault.kind == "empty_stream":
            await self.response.write_eof()
            return
        await self._send_all(self.fmt.opening(self.ex))
        chunks = self.ex.chunks
        for position, chunk in enumerate(chunks):
            if await self._fault_ends_stream(position, len(chunks)):
                return
            await _sleep_until(self.ex.due_ns(chunk.offset) + self.shift_ns)
            await self._send_all(self.fmt.content(self.ex, chunk))
        if not await self._fault_ends_stream(len(chunks), len(chunks)):
            await self._finish()

    async def _finish(self) -> None:
        self.record.completed = True  # before the last write: a client may read the log at EOF
        await self._send_all(self.fmt.closing(self.ex))
        await self.response.write_eof()

    async def _send_all(self, events: list[Event]) -> None:
        for event in events:
            await self._send(event)

    async def _send(self, event: Event) -> None:
        sent_ns = time.time_ns()
        if event.chunk is not None:
            self.record.note(event.chunk.kind, event.chunk.tokens, sent_ns)
        stamp = {"sent_ns": sent_ns, "seq": self.seq}
        self.seq += 1
        # StreamResponse.write hands each frame to the transport right away: no buffering.
        await self.response.write(sse_frame(event, self.fmt.line_end, stamp))

    async def _fault_ends_stream(self, position: int, total: int) -> bool:
        """Apply a mid-stream fault when its chunk position comes; True if the stream is over."""
        fault = self.ex.fault
        if fault is None or position != min(fault.after_chunks, total):
            return False
        if fault.kind == "disconnect_mid_stream":
            self._abort()
            return True
        if fault.kind == "error_event":
            await self._send_all(self.fmt.stream_error(self.ex))
            await self.response.write_eof()
            return True
        if fault.kind == "malformed_chunk":
            await self._send(Event(MALFORMED_DATA))
        elif fault.kind == "stall":
            await self._stall(fault.stall_seconds)
        return False

    async def _stall(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.shift_ns += int(seconds * 1e9)

    def _abort(self) -> None:
        # Abort, not close: drop the connection mid chunked body, as a crashed upstream would.
        transport = self.request.transport
        if transport is not None:
            transport.abort()


async def _complete(
    request: web.Request, fmt: WireFormat, ex: Exchange, record: RequestRecord
) -> web.StreamResponse:
    """A non-streaming request: answer once every token is "generated", faults adapted."""
    fault = ex.fault
    if fault is not None and fault.kind == "stall":
        await asyncio.sleep(fault.stall_seconds)
    chunks = ex.chunks
    await _sleep_until(ex.due_ns(chunks[-1].offset if chunks else 0))
    if fault is not None and fault.kind != "stall":
        return _complete_with_fault(request, fmt, ex, record, fault)
    sent_ns = time.time_ns()
    record.note_full(ex.text_tokens, ex.reasoning_tokens, sent_ns)
    body = {**fmt.full(ex), "pulse_sim": {"sent_ns": sent_ns, "seq": 0}}
    return web.json_response(body, headers=_sim_headers(record))


def _complete_with_fault(
    request: web.Request, fmt: WireFormat, ex: Exchange, record: RequestRecord, fault: Fault
) -> web.StreamResponse:
    if fault.kind == "error_event":
        return _error_response(fmt, Failure(500, ex.model), record)
    if fault.kind == "disconnect_mid_stream" and request.transport is not None:
        request.transport.abort()  # aiohttp then fails to write the reply, which it tolerates
    body = MALFORMED_DATA if fault.kind == "malformed_chunk" else ""
    return web.Response(text=body, content_type="application/json", headers=_sim_headers(record))


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response([asdict(record) for record in request.app[STATE].log])


async def clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].log.clear()
    return web.Response(status=204)


# --------------------------------------------------------------------------------------------
# Embeddings (OpenAI's format) and the OpenAI-compatible endpoints of the other providers
# --------------------------------------------------------------------------------------------

EMBEDDING_DIMENSIONS = 1536  # text-embedding-3-small's default
MAX_EMBEDDING_DIMENSIONS = 8192
# Where Anthropic and Gemini serve their OpenAI-compatible API, below their simulator prefix
# (as the real ones do: api.anthropic.com/v1/chat/completions,
# generativelanguage.googleapis.com/v1beta/openai/chat/completions).
OPENAI_COMPATIBLE_BASES = {"openai_compatible": "", "anthropic": "/v1", "gemini": "/v1beta/openai"}


def embedding_vector(model: str, text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for (model, text): the same input always embeds the same."""
    seed = int.from_bytes(hashlib.sha256(f"{model}\x00{text}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


def _embedding_inputs(value: Any) -> list[str]:
    """OpenAI's `input`: a string, a list of strings, a list of token ids or a list of such lists
    (token ids are embedded as their decimal text)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return value
        if all(isinstance(item, int) for item in value):
            return [" ".join(map(str, value))]
        if all(isinstance(item, list) and all(isinstance(t, int) for t in item) for item in value):
            return [" ".join(map(str, item)) for item in value]
    raise bad_request("'input' must be a non-empty string, array of strings or array of token arrays")


def _embedding(model: str, text: str, index: int, dimensions: int, encoding: str) -> JSON:
    vector = embedding_vector(model, text, dimensions)
    data: Any = vector
    if encoding == "base64":  # little-endian float32, as OpenAI sends it
        data = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
    return {"object": "embedding", "index": index, "embedding": data}


def _parse_embeddings(body: JSON) -> tuple[str, list[str], int, str]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter")
    dimensions = body.get("dimensions", EMBEDDING_DIMENSIONS)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
        raise bad_request(f"'dimensions' must be an integer from 1 to {MAX_EMBEDDING_DIMENSIONS}")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise bad_request("'encoding_format' must be 'float' or 'base64'")
    return model, _embedding_inputs(body.get("input")), dimensions, encoding


async def embeddings(request: web.Request) -> web.StreamResponse:
    """POST …/embeddings: the model's profile gives the latency (ttft_ms) and any status fault."""
    received_ns, start_ns = time.time_ns(), time.monotonic_ns()
    fmt = FORMATS["openai_compatible"]
    state = request.app[STATE]
    record = state.open_record(fmt.kind, received_ns)
    try:
        fmt.authenticate(request)
        model, texts, dimensions, encoding = _parse_embeddings(await _read_json(request))
        record.model = model
        record.prompt_tokens = sum(count_words(text) for text in texts)
        profile = state.profiles.get(model)
        if profile is None:
            raise SimFailure(Failure(404, model=model))
        fault = state.fault_for(model, profile)
        record.fault = fault.kind if fault else None
        if fault is not None and fault.kind == "status":
            raise SimFailure(Failure(fault.status_code, model, retry_after=fault.retry_after))
    except SimFailure as exc:
        return _error_response(fmt, exc.failure, record)
    await _sleep_until(start_ns + int(profile.ttft_ms * 1_000_000))
    data = [_embedding(model, text, i, dimensions, encoding) for i, text in enumerate(texts)]
    record.note_full(0, 0, time.time_ns())
    usage = {"prompt_tokens": record.prompt_tokens, "total_tokens": record.prompt_tokens}
    body = {"object": "list", "data": data, "model": model, "usage": usage}
    return web.json_response(body, headers=_sim_headers(record))


def build_app(profiles: dict[str, ModelProfile] | None = None) -> web.Application:
    """The simulator as an aiohttp application; `profiles` replaces DEFAULT_PROFILES if given."""
    app = web.Application()
    app[STATE] = SimState(DEFAULT_PROFILES if profiles is None else profiles)
    for kind, fmt in FORMATS.items():
        prefix = base_url_for("", kind)
        app.router.add_post(prefix + fmt.generate_path, generate_handler(fmt))
        app.router.add_get(prefix + fmt.models_path, models_handler(fmt))
    openai_format = FORMATS["openai_compatible"]
    for kind, below in OPENAI_COMPATIBLE_BASES.items():
        base = base_url_for("", kind) + below
        if kind != openai_format.kind:
            app.router.add_post(base + openai_format.generate_path, generate_handler(openai_format))
        app.router.add_post(base + "/embeddings", embeddings)
    app.router.add_get("/_sim/requests", list_requests)
    app.router.add_delete("/_sim/requests", clear_requests)
    return app


# --------------------------------------------------------------------------------------------
# In-process server for tests and bench scripts
# --------------------------------------------------------------------------------------------

# A client that leaves mid-stream (e.g. after a read timeout on sim-stall) cancels its handler,
# so no stalled handler outlives its client; and stopping cuts in-flight streams almost at once,
# since draining a simulated stream is worth nothing.
SERVER_OPTIONS: dict[str, Any] = {
    "handler_cancellation": True, "access_log": None, "shutdown_timeout": 0.25,
}


class SimulatedProvider:
    """Runs the simulator on 127.0.0.1, on a free port, in a background thread with its own loop.

        with SimulatedProvider() as sim:
            base = sim.base_url_for("anthropic")   # http://127.0.0.1:PORT/anthropic
    """

    def __init__(self, profiles: dict[str, ModelProfile] | None = None) -> None:
        self.app = build_app(profiles)
        self._state = self.app[STATE]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def start(self) -> str:
        """Start serving; returns the root URL, e.g. http://127.0.0.1:54321."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # the OS picks a free port, with no race to find one
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pulse-sim", daemon=True)
        self._thread.start()
        self._call(self._serve(sock))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.base_url

    async def _serve(self, sock: socket.socket) -> None:
        self._runner = web.AppRunner(self.app, **SERVER_OPTIONS)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = self._runner = None

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None, "SimulatedProvider is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def __enter__(self) -> SimulatedProvider:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def base_url_for(self, kind: str) -> str:
        return base_url_for(self.base_url, kind)

    def set_profile(self, name: str, profile: ModelProfile) -> None:
        self._state.profiles[name] = profile

    def requests(self) -> list[JSON]:
        """The request log, as GET /_sim/requests returns it (read on the server's loop)."""
        return self._call(self._snapshot())

    async def _snapshot(self) -> list[JSON]:
        return [asdict(record) for record in self._state.log]

    def clear_requests(self) -> None:
        self._call(self._clear())

    def reset(self, profiles: dict[str, ModelProfile] | None = None) -> None:
        """Back to a fresh state between tests: these profiles (or the current ones), an empty
        request log and every-nth fault counters from zero."""
        self._call(self._reset(dict(profiles) if profiles is not None else None))

    async def _reset(self, profiles: dict[str, ModelProfile] | None) -> None:
        if profiles is not None:
            self._state.profiles = profiles
        self._state.log.clear()
        self._state.reset_counters()

    async def _clear(self) -> None:
        self._state.log.clear()
