"""The exact-match cache: complete answers in Redis, replayed as JSON or as SSE.

    entry = cache_key(project_id, "chat", body)          # the entry's Redis key
    answer = await lookup(r, entry)                      # CachedAnswer | None
    await store(r, entry, answer, ttl_s)                 # after a complete, successful miss
    await count(r, project_id, "hit", saved_micro_usd=answer.cost_micro_usd)
    events = as_sse_events(answer, include_usage=True)    # a hit for a `stream: true` request

The entry's Redis key ends in a SHA-256 of the project, the endpoint ("chat", "embeddings",
"messages") and the canonical request body: keys sorted,
integral floats written as integers (`temperature: 1.0` == `1`), and without the fields that do
not change the answer:

    stream, stream_options   how the answer is delivered (a hit is replayed in either shape)
    user, metadata (Anthropic's user_id), store, safety_identifier, service_tier,
    prompt_cache_key, prompt_cache_retention
                             who asks, what is logged or billed, which provider-side cache or
                             tier serves it; not what the model writes

Everything else is in the key, including `model` exactly as the caller sent it (the route
name, so an alias never shares answers with another route), `n`, `seed`, `temperature`,
`top_p`, tools, response_format, max tokens and embeddings' `encoding_format`/`dimensions`.
Defaults are not filled in: leaving out `temperature` and sending its default are two keys, a
miss rather than a wrong answer. A nondeterministic request (`temperature > 0`, `n > 1`) is
cached like any other once the project opted in, as other gateways do: the point is to pay
once for the same question.

Entries expire with the project's TTL. Answers whose JSON is larger than MAX_ANSWER_BYTES (1 MiB)
are not stored (a 2,000-input embeddings batch would otherwise take tens of MB per entry). Each
project keeps a sorted set of its entries (digest -> expiry) and their sizes, so the pages can
show the count and the bytes stored without scanning Redis, and counters of hits, misses,
bypasses and the micro-USD hits saved, in total and per UTC hour (kept HOURLY_TTL_S).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import orjson

from .lua import registered_script
from .redis import key

ENDPOINTS = ("chat", "embeddings", "messages")
OUTCOMES = ("hit", "miss", "bypass")
IGNORED_FIELDS = frozenset({
    "stream", "stream_options", "user", "metadata", "store", "safety_identifier", "service_tier",
    "prompt_cache_key", "prompt_cache_retention",
})
MAX_ANSWER_BYTES = 1_048_576
HOURLY_TTL_S = 35 * 86400
TOTALS_TTL_S = 400 * 86400  # a project that stops using the gateway loses its counters after this
# A replayed text is cut into about this many chunks (a client's streaming code still runs its loop).
REPLAY_CHUNKS = 4


@dataclass
class CachedAnswer:
    endpoint: str  # "chat" | "embeddings" | "messages"
    body: dict  # the complete non-streamed response JSON
    upstream: str  # "connection/model" that answered originally
    provider: str
    model: str  # the upstream model
    usage: dict = field(default_factory=dict)
    cost_micro_usd: int = 0  # what the original call cost: what each hit saves


# --------------------------------------------------------------------------------- the key
def _canonical(value: object) -> object:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    # 1.0 and 1 ask the same; only within the exact range of floats, which also keeps the int
    # inside what orjson can write (a body may say 1e300).
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def cache_key(project_id: int, endpoint: str, body: Mapping) -> str:
    """The entry's Redis key: `…:cache:<project id>:<SHA-256 hex of the canonical request>`,
    equal for requests that must get the same answer."""
    kept = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    canonical = orjson.dumps(
        {"project": project_id, "endpoint": endpoint, "body": _canonical(kept)}, option=orjson.OPT_SORT_KEYS
    )
    return key("cache", str(project_id), hashlib.sha256(canonical).hexdigest())


def _project_and_digest(entry: str) -> tuple[int, str]:
    project_id, digest = entry.rsplit(":", 2)[1:]
    return int(project_id), digest


def index_key(project_id: int) -> str:
    """Sorted set: digest -> expiry (epoch ms)."""
    return key("cache", str(project_id), "index")


def sizes_key(project_id: int) -> str:
    return key("cache", str(project_id), "sizes")


def bytes_key(project_id: int) -> str:
    """The bytes of the indexed entries' JSON (expired ones leave it as the index forgets them)."""
    return key("cache", str(project_id), "bytes")


def totals_key(project_id: int) -> str:
    return key("cache", str(project_id), "totals")


def hourly_key(project_id: int, hour: datetime) -> str:
    return key("cache", str(project_id), "hourly", hour.strftime("%Y%m%d%H"))


# --------------------------------------------------------------------------------- store and read
async def lookup(r, entry: str) -> CachedAnswer | None:
    raw = await r.get(entry)
    if raw is None:
        return None
    try:
        return CachedAnswer(**orjson.loads(raw))
    except (orjson.JSONDecodeError, TypeError):
        return None  # written by an incompatible version: a miss, replaced by the next store


# KEYS: entry, index, sizes, bytes. ARGV: value, ttl_ms, digest, now_ms, size.
# Also forgets up to 100 expired entries of the index, so it stays the size of the live cache.
_STORE = """
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[2])
local replaced = tonumber(redis.call('HGET', KEYS[3], ARGV[3]) or '0')
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
redis.call('INCRBY', KEYS[4], tonumber(ARGV[5]) - replaced)
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
for _, digest in ipairs(gone) do
  local size = redis.call('HGET', KEYS[3], digest)
  if size then redis.call('DECRBY', KEYS[4], size) end
  redis.call('ZREM', KEYS[2], digest)
  redis.call('HDEL', KEYS[3], digest)
end
if redis.call('PTTL', KEYS[2]) < ttl then
  for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return #gone
"""


async def store(r, entry: str, answer: CachedAnswer, ttl_s: int) -> bool:
    """Keep the answer under `entry` (from `cache_key`) for `ttl_s` seconds. False (not stored)
    when its JSON is larger than MAX_ANSWER_BYTES."""
    if answer.endpoint not in ENDPOINTS or ttl_s <= 0:
        return False
    value = orjson.dumps(asdict(answer))
    if len(value) > MAX_ANSWER_BYTES:
        return False
    project_id, digest = _project_and_digest(entry)
    await registered_script(r, _STORE)(
        keys=[entry, index_key(project_id), sizes_key(project_id), bytes_key(project_id)],
        args=[value, int(ttl_s * 1000), digest, int(time.time() * 1000), len(value)],
    )
    return True


async def count(r, project_id: int, outcome: str, saved_micro_usd: int = 0) -> None:
    """One lookup's outcome ("hit" | "miss" | "bypass") and what a hit saved, in the project's
    totals and in this UTC hour's counters (one pipelined round trip)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}")
    hour = hourly_key(project_id, datetime.now(UTC))
    pipe = r.pipeline(transaction=False)
    for counters, ttl in ((totals_key(project_id), TOTALS_TTL_S), (hour, HOURLY_TTL_S)):
        pipe.hincrby(counters, outcome, 1)
        if saved_micro_usd:
            pipe.hincrby(counters, "saved_micro_usd", int(saved_micro_usd))
        pipe.expire(counters, ttl)
    await pipe.execute()


# --------------------------------------------------------------------------------- replay
def _pieces(text: str, parts: int = REPLAY_CHUNKS) -> list[str]:
    """`text` cut into about `parts` pieces, after a space where one is near (joined they give
    the text back exactly)."""
    size = max(1, -(-len(text) // parts))
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        space = text.find(" ", end, end + size)
        if end < len(text) and space != -1:
            end = space + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def _sse(data: object) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _named(event: str, data: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _openai_chunks(body: dict, include_usage: bool) -> list[dict]:
    base = {"id": body.get("id", ""), "object": "chat.completion.chunk", "created": body.get("created", 0),
            "model": body.get("model", "")}
    for extra in ("system_fingerprint", "service_tier"):
        if body.get(extra) is not None:
            base[extra] = body[extra]
    if include_usage:
        base["usage"] = None  # as OpenAI: null on every chunk but the last

    def chunk(index: int, delta: dict, finish_reason: str | None = None, logprobs: dict | None = None) -> dict:
        return {**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]}

    chunks: list[dict] = []
    for choice in body.get("choices", []):
        index, message = choice.get("index", 0), choice.get("message") or {}
        chunks.append(chunk(index, {"role": message.get("role", "assistant"), "content": "", "refusal": None}))
        for piece in _pieces(message.get("content") or ""):
            chunks.append(chunk(index, {"content": piece}))
        if message.get("refusal"):
            chunks.append(chunk(index, {"refusal": message["refusal"]}))
        for position, call in enumerate(message.get("tool_calls") or []):
            function = call.get("function") or {}
            chunks.append(chunk(index, {"tool_calls": [{
                "index": position, "id": call.get("id"), "type": call.get("type", "function"),
                "function": {"name": function.get("name", ""), "arguments": function.get("arguments", "")},
            }]}))
        logprobs = choice.get("logprobs")
        chunks.append(chunk(index, {}, choice.get("finish_reason") or "stop", logprobs))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": body.get("usage")})
    return chunks


def _anthropic_events(body: dict) -> list[tuple[str, dict]]:
    usage = dict(body.get("usage") or {})
    start_usage = {**usage, "output_tokens": min(1, usage.get("output_tokens", 0))}
    message = {**{k: v for k, v in body.items() if k not in ("content", "stop_reason", "stop_sequence", "usage")},
               "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    events: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": message})]
    for index, block in enumerate(body.get("content") or []):
        kind = block.get("type")
        if kind == "text":
            start, deltas = {"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        elif kind == "tool_use":
            start = {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": orjson.dumps(block.get("input", {})).decode()}]
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block.get("thinking", ""))]
            deltas.append({"type": "signature_delta", "signature": block.get("signature", "")})
        else:  # redacted thinking and blocks without deltas arrive whole in their start event
            start, deltas = block, []
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": body.get("stop_reason"), "stop_sequence": body.get("stop_sequence")},
        "usage": {**usage, "output_tokens": usage.get("output_tokens", 0)},
    }))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def as_sse_events(answer: CachedAnswer, *, include_usage: bool = False) -> list[bytes]:
    """The answer as the SSE a streaming upstream would have sent: OpenAI chat chunks (role,
    content in a few pieces, tool calls, finish_reason, the usage chunk only when the replaying
    request asked with `stream_options.include_usage`, `data: [DONE]`) or Anthropic's named
    events (message_start … message_stop). Embeddings are never streamed."""
    if answer.endpoint == "chat":
        return [_sse(chunk) for chunk in _openai_chunks(answer.body, include_usage)] + [b"data: [DONE]\n\n"]
    if answer.endpoint == "messages":
        return [_named(event, data) for event, data in _anthropic_events(answer.body)]
    raise ValueError(f"{answer.endpoint} answers are not streamed")


# --------------------------------------------------------------------------------- assembly
def assemble_openai_stream(chunks: list[dict]) -> dict:
    """OpenAI chat completion chunks (parsed `data:` payloads, without [DONE]) → the complete
    `chat.completion` a non-streamed call would have returned."""
    completion: dict = {"id": "", "object": "chat.completion", "created": 0, "model": "", "choices": []}
    choices: dict[int, dict] = {}
    for chunk in chunks:
        for name in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(name) is not None:
                completion[name] = chunk[name]
        if chunk.get("usage"):
            completion["usage"] = chunk["usage"]
        for part in chunk.get("choices") or []:
            choice = choices.setdefault(part.get("index", 0), {
                "index": part.get("index", 0), "role": "assistant", "content": [], "refusal": [],
                "tool_calls": {}, "logprobs": None, "finish_reason": None,
            })
            delta = part.get("delta") or {}
            if delta.get("role"):
                choice["role"] = delta["role"]
            if delta.get("content"):
                choice["content"].append(delta["content"])
            if delta.get("refusal"):
                choice["refusal"].append(delta["refusal"])
            for call in delta.get("tool_calls") or []:
                slot = choice["tool_calls"].setdefault(call.get("index", 0), {
                    "id": None, "type": "function", "function": {"name": "", "arguments": ""},
                })
                if call.get("id"):
                    slot["id"] = call["id"]
                if call.get("type"):
                    slot["type"] = call["type"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""
            if part.get("logprobs"):
                merged = choice["logprobs"] or {"content": None, "refusal": None}
                for name in ("content", "refusal"):
                    if part["logprobs"].get(name):
                        merged[name] = (merged[name] or []) + part["logprobs"][name]
                choice["logprobs"] = merged
            if part.get("finish_reason"):
                choice["finish_reason"] = part["finish_reason"]
    for index in sorted(choices):
        choice = choices[index]
        refusal = "".join(choice["refusal"]) or None
        message: dict = {
            "role": choice["role"],
            "content": "".join(choice["content"]) if choice["content"] or not (choice["tool_calls"] or refusal) else None,
            "refusal": refusal,
        }
        if choice["tool_calls"]:
            message["tool_calls"] = [choice["tool_calls"][i] for i in sorted(choice["tool_calls"])]
        completion["choices"].append({
            "index": index, "message": message, "logprobs": choice["logprobs"],
            "finish_reason": choice["finish_reason"] or "stop",
        })
    return completion


def assemble_anthropic_stream(events: list[tuple[str, dict]]) -> dict:
    """Anthropic Messages stream events (name, parsed data) → the complete `message`."""
    message: dict = {}
    blocks: dict[int, dict] = {}
    partial_json: dict[int, list[str]] = {}
    for name, data in events:
        if name == "message_start":
            message = dict(data.get("message") or {})
            message["usage"] = dict(message.get("usage") or {})
        elif name == "content_block_start":
            blocks[data["index"]] = dict(data.get("content_block") or {})
        elif name == "content_block_delta":
            block, delta = blocks.setdefault(data["index"], {}), data.get("delta") or {}
            kind = delta.get("type")
            if kind == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif kind == "input_json_delta":
                partial_json.setdefault(data["index"], []).append(delta.get("partial_json", ""))
            elif kind == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            elif kind == "signature_delta":
                block["signature"] = block.get("signature", "") + delta.get("signature", "")
            elif kind == "citations_delta":
                block.setdefault("citations", []).append(delta.get("citation"))
        elif name == "message_delta":
            delta = data.get("delta") or {}
            for field_name in ("stop_reason", "stop_sequence"):
                if field_name in delta:
                    message[field_name] = delta[field_name]
            for usage_name, value in (data.get("usage") or {}).items():
                if value is not None:
                    message.setdefault("usage", {})[usage_name] = value
    for index, parts in partial_json.items():
        text = "".join(parts)
        blocks[index]["input"] = orjson.loads(text) if text else {}
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message
