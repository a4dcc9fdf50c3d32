"""Provider adapters, one module per wire format, behind one interface (`ProviderAdapter`) and
one registry (`registry.ADAPTERS`). Each module registers its adapter on import; to add a
provider, add its module and its name to the import line below."""

from __future__ import annotations

from . import anthropic, gemini, openai  # noqa: F401  (importing registers each adapter)
from .anthropic import AnthropicAdapter
from .base import ErrorKind, Measurement, ProviderAdapter, StreamRequest, TokenCountSource
from .gemini import GeminiAdapter
from .openai import OpenAICompatibleAdapter
from .registry import (
    ADAPTERS,
    DEFAULT_PRICING_KIND,
    KIND_MAX_LENGTH,
    adapter_for,
    kind_choices,
    kind_for_pricing_provider,
    register,
)

__all__ = [
    "ADAPTERS", "AnthropicAdapter", "DEFAULT_PRICING_KIND", "ErrorKind", "GeminiAdapter", "KIND_MAX_LENGTH",
    "Measurement", "OpenAICompatibleAdapter", "ProviderAdapter", "StreamRequest", "TokenCountSource",
    "adapter_for", "kind_choices", "kind_for_pricing_provider", "register",
]
