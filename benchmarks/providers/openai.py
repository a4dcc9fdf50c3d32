"""OpenAI-compatible chat completions (OpenAI, Groq, Together, OpenRouter, DeepSeek, Mistral,
Fireworks, vLLM, Ollama… differ only in base URL)."""

from __future__ import annotations

import httpx

from .base import Delta, ProviderAdapter, StreamRequest, Usage
from .listing import get_json
from .registry import register


class OpenAICompatibleAdapter(ProviderAdapter):
    kind = "openai_compatible"
    label = "OpenAI-compatible"
    # Only OpenAI itself by name: every genai-prices provider no adapter claims is taken to
    # speak this format too (see providers.kind_for_pricing_provider).
    pricing_provider_ids = ("openai",)
    simulator_prefix = "/openai/v1"

    def api_headers(self, api_key: str) -> dict[str, str]:
        # Self-hosted servers (vLLM, Ollama) often need no key: then send no Authorization at all.
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def list_models(self, client: httpx.Client, base_url: str, api_key: str) -> list[str]:
        # GET {base}/models (the base URL already ends in /v1) -> data[].id
        body = get_json(client, f"{base_url.rstrip('/')}/models", self.api_headers(api_key))
        return [item["id"] for item in body["data"]]

    def url(self, request: StreamRequest) -> str:
        return f"{request.base_url.rstrip('/')}/chat/completions"

    def body(self, request: StreamRequest, prompt: str) -> dict:
        return {
            "model": request.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": request.max_tokens,
            "stream": True,
            # Without this most servers send no token counts at all when streaming.
            "stream_options": {"include_usage": True},
        }

    def parse_event(self, event: str, payload: dict) -> Delta:
        error = payload.get("error")
        if error:
            return Delta(error=str(error.get("message") if isinstance(error, dict) else error))
        delta = Delta()
        for choice in payload.get("choices") or []:
            message = choice.get("delta") or {}
            delta.text += message.get("content") or ""
            # DeepSeek/vLLM say reasoning_content, OpenRouter says reasoning.
            delta.reasoning += message.get("reasoning_content") or message.get("reasoning") or ""
        # Usage may ride on a chunk that also has choices, and some servers repeat it on every
        # chunk (cumulatively): the caller keeps the last report.
        usage = payload.get("usage")
        if isinstance(usage, dict):
            delta.usage = Usage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
                reasoning_tokens=(usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
            )
        return delta


register(OpenAICompatibleAdapter())
