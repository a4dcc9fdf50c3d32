"""The exact-match answer cache. PLACEHOLDER on the proxy's branch: part B2 owns this module;
this version implements design.md's interface (plus `include_usage` on `as_sse_events`) so the
proxy's tests run end to end.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import orjson

from . import redis as gateway_redis

# Fields that never change the answer: how it is delivered and who asked.
_IGNORED = frozenset({"stream", "stream_options", "user", "metadata"})


@dataclass
class CachedAnswer:
    endpoint: str
    body: dict  # the complete non-streamed response JSON
    upstream: str
    provider: str
    model: str
    usage: dict
    cost_micro_usd: int


def cache_key(project_id: int, endpoint: str, body: Mapping) -> str:
    canonical = {name: value for name, value in body.items() if name not in _IGNORED}
    digest = hashlib.sha256(orjson.dumps([endpoint, canonical], option=orjson.OPT_SORT_KEYS)).hexdigest()
    return gateway_redis.key("cache", str(project_id), digest)


async def lookup(r, key: str) -> CachedAnswer | None:
    raw = await r.get(key)
    return CachedAnswer(**orjson.loads(raw)) if raw is not None else None


async def store(r, key: str, answer: CachedAnswer, ttl_s: int) -> None:
    await r.set(key, orjson.dumps(asdict(answer)), ex=max(1, ttl_s))


async def count(r, project_id: int, outcome: str, saved_micro_usd: int = 0) -> None:
    stats = gateway_redis.key("cache-stats", str(project_id))
    pipe = r.pipeline(transaction=False)
    pipe.hincrby(stats, outcome, 1)
    if saved_micro_usd:
        pipe.hincrby(stats, "saved_micro_usd", saved_micro_usd)
    await pipe.execute()


def _sse(payload: dict, name: str | None = None) -> bytes:
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def as_sse_events(answer: CachedAnswer, *, include_usage: bool = False) -> list[bytes]:
    """Replay a cached answer as the stream the endpoint would have sent."""
    body = answer.body
    if answer.endpoint == "messages":
        message = {**body, "content": [], "stop_reason": None}
        events = [_sse({"type": "message_start", "message": message}, "message_start")]
        for index, block in enumerate(body.get("content") or []):
            kind = block.get("type", "text")
            start = {"type": "content_block_start", "index": index, "content_block": {**block, kind: ""}}
            delta_type = "thinking_delta" if kind == "thinking" else "text_delta"
            delta = {"type": "content_block_delta", "index": index, "delta": {"type": delta_type, kind: block.get(kind, "")}}
            events += [_sse(start, "content_block_start"), _sse(delta, "content_block_delta"),
                       _sse({"type": "content_block_stop", "index": index}, "content_block_stop")]
        usage = {"output_tokens": (body.get("usage") or {}).get("output_tokens", 0)}
        end = {"type": "message_delta", "delta": {"stop_reason": body.get("stop_reason"), "stop_sequence": None}, "usage": usage}
        return [*events, _sse(end, "message_delta"), _sse({"type": "message_stop"}, "message_stop")]
    base = {"id": body.get("id"), "object": "chat.completion.chunk", "created": body.get("created", int(time.time())),
            "model": body.get("model")}
    events = []
    for choice in body.get("choices") or []:
        message = choice.get("message") or {}
        delta = {key: value for key, value in message.items() if value is not None}
        events.append(_sse({**base, "choices": [{"index": choice.get("index", 0), "delta": delta, "finish_reason": None}]}))
        events.append(_sse({**base, "choices": [{"index": choice.get("index", 0), "delta": {},
                                                   "finish_reason": choice.get("finish_reason")}]}))
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": body.get("usage")}))
    return [*events, b"data: [DONE]\n\n"]


def assemble_openai_stream(chunks: list[dict]) -> dict:
    """Streamed chat chunks -> the chat.completion they add up to."""
    choices: dict[int, dict] = {}
    first = chunks[0] if chunks else {}
    usage = None
    for chunk in chunks:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            entry = choices.setdefault(index, {"index": index, "message": {"role": "assistant", "content": ""},
                                               "finish_reason": None})
            delta = choice.get("delta") or {}
            for key, value in delta.items():
                if isinstance(value, str) and key != "role":
                    entry["message"][key] = (entry["message"].get(key) or "") + value
            if choice.get("finish_reason"):
                entry["finish_reason"] = choice["finish_reason"]
    answer = {"id": first.get("id"), "object": "chat.completion", "created": first.get("created"),
              "model": first.get("model"), "choices": [choices[i] for i in sorted(choices)]}
    if usage is not None:
        answer["usage"] = usage
    return answer


def assemble_anthropic_stream(events: list[tuple[str, dict]]) -> dict:
    """Streamed Messages events -> the message they add up to."""
    message: dict = {}
    blocks: dict[int, dict] = {}
    for kind, payload in events:
        if kind == "message_start":
            message = dict(payload.get("message") or {})
        elif kind == "content_block_start":
            blocks[payload["index"]] = dict(payload.get("content_block") or {})
        elif kind == "content_block_delta":
            block = blocks.setdefault(payload["index"], {"type": "text", "text": ""})
            delta = payload.get("delta") or {}
            for key in ("text", "thinking", "partial_json", "signature"):
                if key in delta:
                    block[key] = (block.get(key) or "") + delta[key]
        elif kind == "message_delta":
            message.update(payload.get("delta") or {})
            message["usage"] = {**(message.get("usage") or {}), **(payload.get("usage") or {})}
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message
