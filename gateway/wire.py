"""The wire formats the gateway speaks: validating callers' requests, building upstream requests,
reading usage from answers, and reading and rewriting server-sent events without buffering them.

Three endpoints, two formats:

    chat        POST /v1/chat/completions   OpenAI chat completions (stream or not)
    embeddings  POST /v1/embeddings         OpenAI embeddings
    messages    POST /v1/messages           Anthropic Messages (stream or not)

Where a call goes upstream (`upstream_url`): an OpenAI-compatible connection serves chat and
embeddings at `{base_url}/chat/completions` and `{base_url}/embeddings` (its base URL ends in
`/v1`, as the OpenAI SDK's does). An Anthropic connection serves `messages` natively at
`{base_url}/v1/messages` (a base URL already ending in `/v1` is not doubled), and `chat` through
Anthropic's OpenAI-compatible endpoint `{base_url}/v1/chat/completions`; it has no embeddings.
A Gemini connection serves chat and embeddings through Google's OpenAI-compatible endpoint
`{base_url}/v1beta/openai/…` (unless the base URL already ends in `/openai`). The request body is
passed on as the caller sent it, with `model` replaced by the upstream's model name.

Validation checks only what the gateway itself relies on (model, messages, stream, token limits,
the end user); every other parameter is the upstream's to judge, and its 400 is passed through.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from benchmarks.providers.base import estimate_tokens

from .errors import bad_request

CHAT = "chat"
EMBEDDINGS = "embeddings"
MESSAGES = "messages"
ENDPOINTS = (CHAT, EMBEDDINGS, MESSAGES)

OPENAI_COMPATIBLE = "openai_compatible"
ANTHROPIC = "anthropic"
GEMINI = "gemini"

MAX_OUTPUT_TOKENS = 2**31 - 1  # larger is nobody's real limit, only a way to overflow estimates
MAX_END_USER = 256
MAX_DEPTH = 64  # nesting of arrays and objects in a request body (real requests: under 10)
MESSAGE_FRAMING_TOKENS = 8  # role and separator tokens per message, generously
# An image costs tokens out of proportion to its bytes (a URL of 40 bytes can be 1,445 tokens:
# OpenAI's 2048x4096 high-detail tiling; Anthropic caps an image near 1,600): reserve this each.
IMAGE_TOKENS = 2_000


# -- the caller's request -------------------------------------------------------------------------


@dataclass(slots=True)
class ClientRequest:
    """A validated request: the parsed body and what the gateway reads from it."""

    endpoint: str
    body: dict
    model: str
    stream: bool = False
    include_usage: bool = False  # the caller asked for the usage chunk (OpenAI streams only)
    max_output_tokens: int | None = None
    end_user: str = ""
    raw_size: int = 0  # bytes of the body as received

    def prompt_text(self) -> str:
        """The text the prompt is made of (for token estimates when an upstream reports none)."""
        body = self.body
        if self.endpoint == EMBEDDINGS:
            return " ".join(_texts(body.get("input")))
        parts = list(_texts(body.get("messages")))
        if self.endpoint == MESSAGES:
            parts.extend(_texts(body.get("system")))
        return " ".join(parts)

    def estimated_prompt_tokens(self) -> int:
        """A guess (words and punctuation), for rate limits and for usage an upstream did not send."""
        return estimate_tokens(self.prompt_text())

    def max_prompt_tokens(self) -> int:
        """At least the prompt's tokens, for budget reservations. Bounded by the whole body's
        bytes, not by the text Pulse recognises in it: tools, tool-call arguments, token-id arrays
        and any field a provider adds count too (a byte-level BPE token covers at least one byte of
        text; a token id takes at least two bytes of JSON), plus framing per message and a fixed
        allowance per image, whose tokens do not follow its bytes."""
        messages = self.body.get("messages")
        framing = MESSAGE_FRAMING_TOKENS * (len(messages) + 1 if isinstance(messages, list) else 1)
        size = self.raw_size or len(orjson.dumps(self.body))
        return size + framing + IMAGE_TOKENS * count_images(self.body)


def _texts(node: Any) -> Iterator[str]:
    """Every string under the message contents, whatever their nesting (parts, blocks, tools)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)
    elif isinstance(node, dict):
        for key in ("content", "text", "input", "arguments"):
            if key in node:
                yield from _texts(node[key])


def count_images(node: Any, depth: int = 0) -> int:
    """Image parts anywhere in a request (OpenAI `image_url`/`input_image`, Anthropic `image`)."""
    if depth > MAX_DEPTH:
        return 0
    if isinstance(node, list):
        return sum(count_images(item, depth + 1) for item in node)
    if isinstance(node, dict):
        kind = node.get("type")
        own = 1 if isinstance(kind, str) and kind in ("image_url", "input_image", "image") else 0
        return own + sum(count_images(value, depth + 1) for value in node.values() if isinstance(value, list | dict))
    return 0


def parse_json_object(raw: bytes) -> dict:
    """The request body as a JSON object, or a 400 saying what is wrong with it. orjson refuses
    bytes that are not UTF-8, lone surrogates and nesting past 1024 levels; deeper than
    MAX_DEPTH is refused here, so no code after this (which may walk the body recursively)
    meets Python's recursion limit."""
    if not raw:
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"The request body is not valid JSON in UTF-8: {error}.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and nested_deeper_than(body, MAX_DEPTH):
        raise bad_request(f"The request body is nested more than {MAX_DEPTH} levels deep.")
    return body


def nested_deeper_than(value: object, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("You must provide a model parameter (a string).", param="model")
    if len(model) > 256:
        raise bad_request("The model name is longer than 256 characters.", param="model")
    return model


def _optional_bool(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false.", param=name)
    return value


def _optional_token_limit(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise bad_request(f"'{name}' must be an integer from 1 to {MAX_OUTPUT_TOKENS}.", param=name)
    return value


def _end_user(value: object, param: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_END_USER:
        raise bad_request(f"'{param}' must be a string of at most {MAX_END_USER} characters.", param=param)
    return value


def _messages(body: dict) -> list:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array of message objects.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"'messages[{index}]' must be an object with a role and content.",
                              param=f"messages[{index}]")
    return messages


def validate_chat(body: dict) -> ClientRequest:
    model = _model(body)
    _messages(body)
    stream = _optional_bool(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request("'stream_options' must be an object.", param="stream_options")
        include_usage = options.get("include_usage") is True
    limit = _optional_token_limit(body, "max_completion_tokens") or _optional_token_limit(body, "max_tokens")
    return ClientRequest(CHAT, body, model, stream=stream, include_usage=stream and include_usage,
                         max_output_tokens=limit, end_user=_end_user(body.get("user"), "user"))


def validate_embeddings(body: dict) -> ClientRequest:
    model = _model(body)
    value = body.get("input")
    if isinstance(value, str):
        ok = True
    elif isinstance(value, list) and value:
        ok = all(isinstance(item, str) for item in value) or all(_is_int(item) for item in value) or all(
            isinstance(item, list) and all(_is_int(t) for t in item) for item in value
        )
    else:
        ok = False
    if not ok:
        raise bad_request("'input' must be a string, an array of strings, or an array of token arrays.",
                          param="input")
    if "stream" in body and body["stream"] not in (None, False):
        raise bad_request("Embeddings cannot be streamed.", param="stream")
    return ClientRequest(EMBEDDINGS, body, model, end_user=_end_user(body.get("user"), "user"))


def validate_messages(body: dict) -> ClientRequest:
    model = _model(body)
    _messages(body)
    stream = _optional_bool(body, "stream")
    limit = body.get("max_tokens")
    if not _is_int(limit) or not 1 <= limit <= MAX_OUTPUT_TOKENS:
        raise bad_request(f"max_tokens: an integer from 1 to {MAX_OUTPUT_TOKENS} is required.", param="max_tokens")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise bad_request("'metadata' must be an object.", param="metadata")
    user = _end_user((metadata or {}).get("user_id"), "metadata.user_id")
    return ClientRequest(MESSAGES, body, model, stream=stream, max_output_tokens=limit, end_user=user)


VALIDATORS = {CHAT: validate_chat, EMBEDDINGS: validate_embeddings, MESSAGES: validate_messages}


def validate(endpoint: str, raw: bytes) -> ClientRequest:
    request = VALIDATORS[endpoint](parse_json_object(raw))
    request.raw_size = len(raw)
    return request


# -- the upstream request -------------------------------------------------------------------------


def _below(base_url: str, suffix: str) -> str:
    """`base_url` + `suffix`, where `suffix`'s first segment is left out if the base ends with it
    (an Anthropic base URL given as https://api.anthropic.com or https://api.anthropic.com/v1)."""
    base = base_url.rstrip("/")
    first, _, rest = suffix.lstrip("/").partition("/")
    if base.endswith("/" + first):
        return f"{base}/{rest}"
    return f"{base}/{first}/{rest}"


_OPENAI_PATHS = {CHAT: "/chat/completions", EMBEDDINGS: "/embeddings"}


def upstream_url(kind: str, base_url: str, endpoint: str) -> str | None:
    """Where an upstream of this kind serves `endpoint`, or None when it does not serve it."""
    if kind == ANTHROPIC:
        if endpoint == MESSAGES:
            return _below(base_url, "/v1/messages")
        if endpoint == CHAT:
            return _below(base_url, "/v1/chat/completions")
        return None
    if endpoint == MESSAGES:
        return None
    path = _OPENAI_PATHS[endpoint]
    if kind == GEMINI:
        base = base_url.rstrip("/")
        return f"{base}{path}" if base.endswith("/openai") else f"{base}/v1beta/openai{path}"
    return base_url.rstrip("/") + path  # OpenAI-compatible: the base URL ends in /v1


# The caller's headers that change what the upstream does (beta features, the API version a
# client such as Claude Code was written for); nothing else of the caller's is passed on, least
# of all its Pulse token.
PASSED_REQUEST_HEADERS = {MESSAGES: ("anthropic-version", "anthropic-beta"), CHAT: ("openai-beta",),
                          EMBEDDINGS: ()}


def upstream_headers(kind: str, endpoint: str, api_key: str, caller: Mapping[str, str] | None = None) -> dict[str, str]:
    """Auth (and version) headers: the provider registry's for a native Anthropic call, a Bearer
    key for every OpenAI-format call (Anthropic's and Gemini's compatible endpoints take it too),
    and the caller's feature headers."""
    headers = {"content-type": "application/json"}
    if endpoint == MESSAGES:
        from benchmarks.providers import adapter_for

        headers.update(adapter_for(ANTHROPIC).api_headers(api_key))
    elif api_key:
        headers["authorization"] = f"Bearer {api_key}"
    for name in PASSED_REQUEST_HEADERS[endpoint] if caller else ():
        value = caller.get(name)
        if value:
            headers[name] = value
    return headers


def upstream_body(request: ClientRequest, model: str) -> bytes:
    """The caller's body for this upstream: its model name, and for OpenAI-format streams the
    usage chunk asked for (the gateway needs the counts even when the caller does not)."""
    body = dict(request.body)
    body["model"] = model
    if request.endpoint == CHAT and request.stream:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return orjson.dumps(body)


# -- usage ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    """Token counts, OpenAI's conventions: input counts every prompt token (cached included),
    output counts reasoning too. None: not reported."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    def update(self, other: Usage | None) -> None:
        """Later reports win field by field (Anthropic splits them over message_start/delta)."""
        if other is None:
            return
        for name in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)

    @property
    def reported(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None


def _count(value: object) -> int | None:
    return value if _is_int(value) and value >= 0 else None


def openai_usage(payload: object) -> Usage | None:
    """`usage` of a chat completion, a chunk or an embeddings answer."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    return Usage(
        input_tokens=_count(usage.get("prompt_tokens")),
        output_tokens=_count(usage.get("completion_tokens")) if "completion_tokens" in usage else 0,
        cached_tokens=_count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else None,
        reasoning_tokens=(
            _count(completion_details.get("reasoning_tokens")) if isinstance(completion_details, dict) else None
        ),
    )


def anthropic_usage(usage: object) -> Usage | None:
    """Anthropic's usage block. Its input_tokens leaves out cache reads and writes; Pulse's input
    counts every prompt token, with the cached part beside it (as benchmarks' adapter does)."""
    if not isinstance(usage, dict):
        return None
    cached = _count(usage.get("cache_read_input_tokens"))
    written = _count(usage.get("cache_creation_input_tokens"))
    input_tokens = _count(usage.get("input_tokens"))
    if input_tokens is not None:
        input_tokens += (cached or 0) + (written or 0)
    return Usage(input_tokens=input_tokens, output_tokens=_count(usage.get("output_tokens")), cached_tokens=cached)


def usage_of_answer(endpoint: str, payload: object) -> Usage | None:
    if endpoint == MESSAGES:
        return anthropic_usage(payload.get("usage") if isinstance(payload, dict) else None)
    return openai_usage(payload)


def text_of_answer(endpoint: str, payload: object) -> str:
    """The generated text of a non-streamed answer (for estimates when usage is missing)."""
    if not isinstance(payload, dict):
        return ""
    if endpoint == MESSAGES:
        return "".join(_block_text(block) for block in payload.get("content") or [] if isinstance(block, dict))
    parts = []
    for choice in payload.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            parts.extend(_message_text(message))
    return "".join(parts)


def _block_text(block: dict) -> str:
    value = block.get("text") or block.get("thinking") or block.get("partial_json") or ""
    return value if isinstance(value, str) else ""


def _message_text(message: dict) -> Iterator[str]:
    for _, text in _message_parts(message):
        yield text


def _message_parts(message: dict) -> Iterator[tuple[str, str]]:
    """(key, text) of every generated text in a message or a delta: content, reasoning (DeepSeek
    and vLLM say reasoning_content, OpenRouter reasoning), a refusal, tool call arguments."""
    for key in ("content", "reasoning_content", "reasoning", "refusal"):
        value = message.get(key)
        if isinstance(value, str):
            yield key, value
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            yield "tool_calls", function["arguments"]


# -- server-sent events ---------------------------------------------------------------------------


@dataclass(slots=True)
class SSEEvent:
    raw: bytes  # exactly as received, blank line included: forwarded untouched when possible
    name: str = ""
    data: bytes = b""

    def json(self) -> object:
        try:
            return orjson.loads(self.data)
        except orjson.JSONDecodeError:
            return None


class SSEReader:
    """Splits a byte stream into whole events as they complete; a partial event waits for the
    rest of its bytes (and only that: every complete event is returned at once)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._carriage_returns = False  # CRLF or CR framing seen: the slower, general split

    def feed(self, data: bytes) -> list[SSEEvent]:
        buffer = self._buffer + data if self._buffer else data
        if not self._carriage_returns and b"\r" in data:
            self._carriage_returns = True
        events = []
        start = 0
        while True:
            end = _event_end(buffer, start, self._carriage_returns)
            if end < 0:
                break
            events.append(parse_event(buffer[start:end]))
            start = end
        self._buffer = buffer[start:] if start else buffer
        return events

    def rest(self) -> SSEEvent | None:
        """An event the stream ended in the middle of (no blank line after it), if any."""
        raw, self._buffer = self._buffer, b""
        return parse_event(raw) if raw.strip() else None


def _event_end(buffer: bytes, start: int, carriage_returns: bool) -> int:
    """Where the event starting at `start` ends (after its blank line), or -1."""
    at = buffer.find(b"\n\n", start)
    best = at + 2 if at >= 0 else -1
    if carriage_returns:
        for separator in (b"\r\n\r\n", b"\r\r"):
            at = buffer.find(separator, start)
            if at >= 0 and (best < 0 or at + len(separator) < best):
                best = at + len(separator)
    return best


def parse_event(raw: bytes) -> SSEEvent:
    if raw.startswith(b"data: ") and raw.find(b"\n", 6) == len(raw) - 2 and b"\r" not in raw:
        return SSEEvent(raw=raw, data=raw[6:-2])  # one data line, LF-framed: nearly every event
    name, data = "", []
    for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        key, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if key == b"data":
            data.append(value)
        elif key == b"event":
            name = value.decode("utf-8", "replace")
    return SSEEvent(raw=raw, name=name, data=b"\n".join(data))


_NULL_USAGE = b'"usage":null'


def _without_usage(raw: bytes, payload: dict, usage: object) -> bytes:
    """The event without its `usage` key. OpenAI-compatible servers send `"usage":null` on
    every chunk once usage is asked for; cutting those bytes out (the pattern cannot occur
    inside a JSON string, where quotes are escaped) spares re-serializing each chunk."""
    if usage is None and raw.count(_NULL_USAGE) == 1:
        for pattern in (b',"usage":null', b'"usage":null,'):
            if pattern in raw:
                return raw.replace(pattern, b"", 1)
    del payload["usage"]
    return sse_data(payload)


def sse_data(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_named(name: str, payload: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


@dataclass(slots=True)
class StreamState:
    """What a stream taught the gateway as it passed: usage, text, whether content started,
    an error event, the parsed chunks (kept only when the answer will be cached)."""

    endpoint: str
    include_usage: bool  # the caller's choice (OpenAI): otherwise the injected usage is stripped
    keep_chunks: bool = False
    usage: Usage = field(default_factory=Usage)
    text: list[str] = field(default_factory=list)
    content_started: bool = False
    done: bool = False  # the format's end event came: [DONE], message_stop
    finish_seen: bool = False  # a choice said why it finished (OpenAI)
    error: str | None = None
    chunks: list = field(default_factory=list)

    def take(self, event: SSEEvent) -> bytes:
        """Learn from one event and return the bytes the caller gets for it (b"" to drop it)."""
        if self.endpoint == MESSAGES:
            return self._take_anthropic(event)
        return self._take_openai(event)

    def _take_openai(self, event: SSEEvent) -> bytes:
        data = event.data
        if data == b"[DONE]":
            self.done = True
            return event.raw
        payload = event.json()
        if type(payload) is not dict:
            return event.raw  # not ours to judge: the caller's SDK sees what the upstream sent
        choices = payload.get("choices")
        if not choices and "error" in payload:
            error = payload["error"]
            self.error = str(error.get("message") if isinstance(error, dict) else error)
            return event.raw
        if self.keep_chunks:
            self.chunks.append(payload)
        if choices and type(choices) is list:
            for choice in choices:
                if type(choice) is dict:
                    self._take_choice(choice)
        usage = payload.get("usage")
        if usage is not None:
            self.usage.update(openai_usage(payload))
        if self.include_usage or "usage" not in payload:
            return event.raw
        if not choices:
            return b""  # the usage-only chunk the gateway asked for on its own behalf
        return _without_usage(event.raw, payload, usage)

    def _take_choice(self, choice: dict) -> None:
        if choice.get("finish_reason"):
            self.content_started = self.finish_seen = True
        delta = choice.get("delta")
        if type(delta) is not dict:
            return
        content = delta.get("content")
        if content and type(content) is str:
            self.text.append(content)
            self.content_started = True
        if len(delta) > ("role" in delta) + ("content" in delta):  # more than role and content
            texts = [text for key, text in _message_parts(delta) if key != "content"]
            if any(texts) or delta.get("tool_calls") or delta.get("function_call"):
                self.text.extend(texts)
                self.content_started = True

    def _take_anthropic(self, event: SSEEvent) -> bytes:
        payload = event.json()
        if not isinstance(payload, dict):
            return event.raw
        kind = payload.get("type") or event.name
        if self.keep_chunks:
            self.chunks.append((kind, payload))
        if kind == "message_start":
            message = payload.get("message")
            self.usage.update(anthropic_usage(message.get("usage") if isinstance(message, dict) else None))
        elif kind == "message_delta":
            self.usage.update(anthropic_usage(payload.get("usage")))
        elif kind == "content_block_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict):
                self.text.append(_block_text(delta))
            self.content_started = True
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            error = payload.get("error")
            self.error = str(error.get("message") if isinstance(error, dict) else error)
        elif kind not in ("ping", "content_block_start"):
            self.content_started = True
        return event.raw

    @property
    def ended(self) -> bool:
        """The stream reached its end: its end event, or (some OpenAI-compatible servers send
        no [DONE]) the end of the body after every choice finished."""
        return self.done or (self.endpoint != MESSAGES and self.finish_seen and self.error is None)

    @property
    def joined_text(self) -> str:
        return "".join(self.text)


def mid_stream_error(endpoint: str, message: str) -> bytes:
    """The event that tells a caller's SDK its stream broke (OpenAI's SDK raises on an `error`
    chunk; Anthropic's on an `error` event)."""
    if endpoint == MESSAGES:
        return sse_named("error", {"type": "error", "error": {"type": "api_error", "message": message}})
    return sse_data({"error": {"message": message, "type": "server_error", "param": None, "code": "upstream_error"}})
