"""The provider registry: kind -> adapter. Each adapter module registers its own adapter when
imported (`benchmarks/providers/__init__.py` imports them all), so adding a provider is one file
plus its name on that import line. The kind choices are a callable over this registry, so a new
kind needs no migration either."""

from __future__ import annotations

from .base import ProviderAdapter

KIND_MAX_LENGTH = 32  # Provider.kind and Target.kind columns

ADAPTERS: dict[str, ProviderAdapter] = {}

# A genai-prices provider no adapter claims is taken to speak the OpenAI wire format: nearly
# every hosted API does (Groq, Together, DeepSeek, Mistral, Fireworks, OpenRouter…).
DEFAULT_PRICING_KIND = "openai_compatible"


def register(adapter: ProviderAdapter) -> ProviderAdapter:
    """Add an adapter. Refuses a kind the database cannot store, or one already taken: a
    stored kind must keep meaning one format."""
    kind = adapter.kind
    if not kind or len(kind) > KIND_MAX_LENGTH or not adapter.label:
        raise ValueError(f"An adapter needs a kind of 1-{KIND_MAX_LENGTH} characters and a label, got {kind!r}.")
    if kind in ADAPTERS:
        raise ValueError(f"Provider kind {kind!r} is already registered by {type(ADAPTERS[kind]).__name__}.")
    ADAPTERS[kind] = adapter
    return adapter


def adapter_for(kind: str) -> ProviderAdapter:
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"Unknown provider kind {kind!r}; expected one of {sorted(ADAPTERS)}") from None


def kind_choices() -> list[tuple[str, str]]:
    """The `choices` of Provider.kind and Target.kind (passed as the callable itself, so the
    fields, their forms and the API follow the registry). By label, so the order does not
    depend on import order."""
    return sorted(((kind, adapter.label) for kind, adapter in ADAPTERS.items()), key=lambda choice: choice[1].lower())


def kind_for_pricing_provider(provider_id: str) -> str:
    """The kind a provider that genai-prices knows as `provider_id` is called with."""
    for adapter in ADAPTERS.values():
        if provider_id in adapter.pricing_provider_ids:
            return adapter.kind
    return DEFAULT_PRICING_KIND
