"""Which provider a client talks to, named as Pulse prices it.

Pulse looks prices up by provider and model (costs/pricing.py), with providers named by their
genai-prices ids ("openai", "groq", "x-ai"...). An OpenAI client is often pointed at another
provider's OpenAI-compatible API, so the name comes from the host of its base URL; a host not
listed here keeps the SDK's own name ("openai" or "anthropic"): a self-hosted server or a proxy
serving OpenAI's models under their usual names is then still priced. `instrument(provider=...)`
overrides it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

# Host (or the parent domain of hosts) -> genai-prices provider id.
HOSTS: dict[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.groq.com": "groq",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.mistral.ai": "mistral",
    "api.deepseek.com": "deepseek",
    "openrouter.ai": "openrouter",
    "api.fireworks.ai": "fireworks",
    "api.x.ai": "x-ai",
    "api.cerebras.ai": "cerebras",
    "api.perplexity.ai": "perplexity",
    "generativelanguage.googleapis.com": "google",
    "api.novita.ai": "novita",
    "api.moonshot.ai": "moonshotai",
    "api.moonshot.cn": "moonshotai",
    "api.z.ai": "zai",
    "open.bigmodel.cn": "zhipuai",
    "api.cohere.ai": "cohere",
    "api.cohere.com": "cohere",
    "api.minimax.io": "minimax",
    "api.minimaxi.com": "minimax",
    "openai.azure.com": "azure",
    "cognitiveservices.azure.com": "azure",
    "services.ai.azure.com": "azure",
}


def host_of(base_url: object) -> str:
    try:
        return (urlsplit(str(base_url)).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def provider_for_host(host: str) -> str | None:
    """The provider serving `host` or a parent domain of it (eu.api.openai.com, myres.openai.azure.com)."""
    while host:
        name = HOSTS.get(host)
        if name is not None:
            return name
        _, _, host = host.partition(".")
    return None


def provider_for(base_url: object, default: str) -> str:
    return provider_for_host(host_of(base_url)) or default
