"""Provider adapters, one per wire format, behind one interface (`ProviderAdapter.stream`)."""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .base import ErrorKind, Measurement, ProviderAdapter, StreamRequest, TokenCountSource
from .gemini import GeminiAdapter
from .openai import OpenAICompatibleAdapter

ADAPTERS: dict[str, ProviderAdapter] = {
    adapter.kind: adapter for adapter in (OpenAICompatibleAdapter(), AnthropicAdapter(), GeminiAdapter())
}


def adapter_for(kind: str) -> ProviderAdapter:
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"Unknown provider kind {kind!r}; expected one of {sorted(ADAPTERS)}") from None


__all__ = [
    "ADAPTERS", "AnthropicAdapter", "ErrorKind", "GeminiAdapter", "Measurement", "OpenAICompatibleAdapter",
    "ProviderAdapter", "StreamRequest", "TokenCountSource", "adapter_for",
]
