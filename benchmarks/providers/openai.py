"""OpenAI-compatible chat completions (OpenAI, Groq, Together, OpenRouter, DeepSeek, Mistral,
Fireworks, vLLM, Ollama… differ only in base URL)."""

from __future__ import annotations

from .base import Delta, ProviderAdapter, StreamRequest, Usage


class OpenAICompatibleAdapter(ProviderAdapter):
    kind = "openai_compatible"

    def url(self, request: StreamRequest) -> str:
        return f"{request.base_url.rstrip('/')}/chat/completions"

    def headers(self, request: StreamRequest) -> dict[str, str]:
        return {"Authorization": f"Bearer {request.api_key}", "Accept": "text/event-stream"}

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
