"""Token counts out of a provider's answer, in Pulse's conventions, whatever its shape.

    usage_of(client.chat.completions.create(...))   # Usage(input_tokens=12, output_tokens=40, ...)
    usage_of({"usage": {"input_tokens": 3, "cache_read_input_tokens": 100, ...}})  # Anthropic dict

Pulse counts tokens the way OpenAI reports them, and the gateway maps every format to that
(gateway/wire.py): `input_tokens` is every prompt token, the cached ones included; `cached_tokens`
is the part read from the prompt cache; `reasoning_tokens` are part of `output_tokens`. Anthropic
leaves cache reads and writes out of its `input_tokens`, so they are added back here; the
Responses API and Anthropic both say `input_tokens`, told apart by their detail fields.

Answers are read duck-typed (attributes of the SDKs' pydantic objects, or keys of a dict), so
this module imports neither SDK and accepts what `response.model_dump()` or a JSON body gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Usage",
    "endpoint_of",
    "estimate_tokens",
    "field",
    "model_of",
    "provider_of",
    "text_of",
    "usage_of",
]

# Pulse's endpoint names (costs.models.CostEvent.Endpoint).
CHAT = "chat"
EMBEDDINGS = "embeddings"
MESSAGES = "messages"
RESPONSES = "responses"
COMPLETIONS = "completions"
OTHER = "other"
# How an event's counts were had (its token_count_source): the provider reported them, or they
# were counted from the text (a stream cut short, an answer without usage).
REPORTED = "usage"
ESTIMATED = "estimate"

_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)  # the server's estimate (benchmarks.providers.base)


@dataclass(frozen=True)
class Usage:
    """Token counts of one call. Cached never exceeds input, nor reasoning output (the server
    refuses an event that says otherwise)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cached_tokens", min(self.cached_tokens, self.input_tokens))
        object.__setattr__(self, "reasoning_tokens", min(self.reasoning_tokens, self.output_tokens))

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens, "reasoning_tokens": self.reasoning_tokens,
        }


def field(node: Any, name: str) -> Any:
    """`node[name]` of a dict, `node.name` of an object; None when absent."""
    if node is None:
        return None
    if isinstance(node, dict):
        return node.get(name)
    return getattr(node, name, None)


def count(value: Any) -> int | None:
    """A token count, or None for anything that is not one (None, a bool, a negative)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def usage_of(response: Any) -> Usage | None:
    """The usage of an OpenAI (chat, completions, embeddings, Responses) or Anthropic answer,
    object or dict; also of a bare usage block. None when it reports none."""
    usage = field(response, "usage")
    if usage is None:
        usage = response  # perhaps a usage block itself
    if isinstance(usage, (str, bytes, int, float, list)):
        return None
    prompt = count(field(usage, "prompt_tokens"))
    if prompt is not None:
        return _openai_chat_usage(usage, prompt)
    input_tokens = count(field(usage, "input_tokens"))
    output_tokens = count(field(usage, "output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    if _is_responses_usage(usage):
        return _responses_usage(usage, input_tokens or 0, output_tokens or 0)
    return _anthropic_usage(usage, input_tokens, output_tokens or 0)


def _is_responses_usage(usage: Any) -> bool:
    """The Responses API and Anthropic both say input_tokens/output_tokens; only their details
    differ. With no details at all the two conventions agree, so either reading is right."""
    if field(usage, "input_tokens_details") is not None:
        return True
    if field(usage, "cache_read_input_tokens") is not None or field(usage, "cache_creation_input_tokens") is not None:
        return False
    return count(field(field(usage, "output_tokens_details"), "reasoning_tokens")) is not None


def _openai_chat_usage(usage: Any, prompt: int) -> Usage:
    """Chat completions, legacy completions and embeddings (which have no completion tokens)."""
    return Usage(
        input_tokens=prompt,
        output_tokens=count(field(usage, "completion_tokens")) or 0,
        cached_tokens=count(field(field(usage, "prompt_tokens_details"), "cached_tokens")) or 0,
        reasoning_tokens=count(field(field(usage, "completion_tokens_details"), "reasoning_tokens")) or 0,
    )


def _responses_usage(usage: Any, input_tokens: int, output_tokens: int) -> Usage:
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=count(field(field(usage, "input_tokens_details"), "cached_tokens")) or 0,
        reasoning_tokens=count(field(field(usage, "output_tokens_details"), "reasoning_tokens")) or 0,
    )


def _anthropic_usage(usage: Any, input_tokens: int | None, output_tokens: int) -> Usage:
    """Anthropic's input_tokens leaves out cache reads and cache writes: Pulse's input counts
    every prompt token, with the part read from the cache beside it."""
    read = count(field(usage, "cache_read_input_tokens")) or 0
    written = count(field(usage, "cache_creation_input_tokens")) or 0
    return Usage(
        input_tokens=(input_tokens or 0) + read + written,
        output_tokens=output_tokens,
        cached_tokens=read,
        reasoning_tokens=count(field(field(usage, "output_tokens_details"), "thinking_tokens")) or 0,
    )


ANTHROPIC_COUNTS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens")


def anthropic_reported(usage: Any) -> dict[str, int]:
    """The counts an Anthropic usage block states, in Anthropic's own terms, leaving out those it
    does not state: a stream's message_delta may repeat some of message_start's and not others."""
    reported = {}
    for name in ANTHROPIC_COUNTS:
        value = count(field(usage, name))
        if value is not None:
            reported[name] = value
    thinking = count(field(field(usage, "output_tokens_details"), "thinking_tokens"))
    if thinking is not None:
        reported["thinking_tokens"] = thinking
    return reported


def from_anthropic(reported: dict[str, int]) -> dict[str, int]:
    """Pulse's counts from Anthropic's (as `anthropic_reported` gives them), for those known."""
    counts = {}
    if "input_tokens" in reported:
        counts["input_tokens"] = (reported["input_tokens"] + reported.get("cache_read_input_tokens", 0)
                                  + reported.get("cache_creation_input_tokens", 0))
        counts["cached_tokens"] = reported.get("cache_read_input_tokens", 0)
    if "output_tokens" in reported:
        counts["output_tokens"] = reported["output_tokens"]
    if "thinking_tokens" in reported:
        counts["reasoning_tokens"] = reported["thinking_tokens"]
    return counts


def model_of(response: Any) -> str | None:
    model = field(response, "model")
    return model if isinstance(model, str) and model else None


def provider_of(response: Any) -> str | None:
    """"anthropic" for an Anthropic answer, "openai" for an OpenAI-format one, else None.
    Said by the object's package, or a dict's shape."""
    module = type(response).__module__
    if module.startswith("anthropic"):
        return "anthropic"
    if module.startswith("openai"):
        return "openai"
    kind = field(response, "type")
    if kind == "message" or field(field(response, "usage"), "cache_read_input_tokens") is not None:
        return "anthropic"
    if field(response, "object") is not None or field(response, "choices") is not None:
        return "openai"
    return None


_ENDPOINTS = {
    "chat.completion": CHAT,
    "list": EMBEDDINGS,  # an embeddings answer is a list of embeddings
    "text_completion": COMPLETIONS,
    "response": RESPONSES,
}


def endpoint_of(response: Any) -> str | None:
    """Pulse's endpoint name for an answer's shape (costs.models.CostEvent.Endpoint)."""
    if field(response, "type") == "message":
        return MESSAGES
    kind = field(response, "object")
    return _ENDPOINTS.get(kind) if isinstance(kind, str) else None


def estimate_tokens(text: str) -> int:
    """Words and punctuation marks: the server's own estimate, for answers that report no
    usage. Rough on purpose (no tokenizer is bundled); events say when they were counted so."""
    return len(_WORDS.findall(text)) if text else 0


def texts(node: Any, depth: int = 0) -> list[str]:
    """Every string under a prompt's message contents, whatever their nesting (parts, blocks,
    tools), as the gateway reads them for its estimates."""
    found: list[str] = []
    _collect(node, found, depth)
    return found


_TEXT_KEYS = ("content", "text", "input", "arguments", "instructions", "system", "prompt", "messages")


def _collect(node: Any, found: list[str], depth: int) -> None:
    if depth > 32:
        return
    if isinstance(node, str):
        found.append(node)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _collect(item, found, depth + 1)
    elif isinstance(node, dict):
        for key in _TEXT_KEYS:
            if key in node:
                _collect(node[key], found, depth + 1)


def text_of(response: Any) -> str:
    """The generated text of a whole answer (for an estimate when it reports no usage)."""
    parts: list[str] = []
    for choice in field(response, "choices") or ():
        message = field(choice, "message")
        if message is not None:
            for name in ("content", "reasoning_content", "reasoning", "refusal"):
                value = field(message, name)
                if isinstance(value, str):
                    parts.append(value)
            for call in field(message, "tool_calls") or ():
                arguments = field(field(call, "function"), "arguments")
                if isinstance(arguments, str):
                    parts.append(arguments)
        text = field(choice, "text")  # legacy completions
        if isinstance(text, str):
            parts.append(text)
    for block in field(response, "content") or ():  # Anthropic
        for name in ("text", "thinking"):
            value = field(block, name)
            if isinstance(value, str):
                parts.append(value)
    for item in field(response, "output") or ():  # the Responses API
        for block in field(item, "content") or field(item, "summary") or ():
            value = field(block, "text")
            if isinstance(value, str):
                parts.append(value)
        arguments = field(item, "arguments")
        if isinstance(arguments, str):
            parts.append(arguments)
    return " ".join(parts)
