"""Anthropic Messages API streaming."""

from __future__ import annotations

import httpx

from .base import Delta, ProviderAdapter, StreamRequest, Usage
from .listing import MAX_PAGES, get_json
from .registry import register

API_VERSION = "2023-06-01"  # the API refuses requests without an anthropic-version header


class AnthropicAdapter(ProviderAdapter):
    kind = "anthropic"
    label = "Anthropic"
    pricing_provider_ids = ("anthropic",)
    simulator_prefix = "/anthropic"

    def api_headers(self, api_key: str) -> dict[str, str]:
        auth = {"x-api-key": api_key} if api_key else {}
        return {**auth, "anthropic-version": API_VERSION}

    def list_models(self, client: httpx.Client, base_url: str, api_key: str) -> list[str]:
        # GET {base}/v1/models -> data[].id, paged by after_id while has_more
        names: list[str] = []
        params: dict[str, str] = {"limit": "1000"}
        for _ in range(MAX_PAGES):
            body = get_json(client, f"{base_url.rstrip('/')}/v1/models", self.api_headers(api_key), params)
            names += [item["id"] for item in body["data"]]
            if not body.get("has_more") or not body.get("last_id"):
                break
            params = {"limit": "1000", "after_id": body["last_id"]}
        return names

    def url(self, request: StreamRequest) -> str:
        return f"{request.base_url.rstrip('/')}/v1/messages"

    def body(self, request: StreamRequest, prompt: str) -> dict:
        return {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
        }

    def parse_event(self, event: str, payload: dict) -> Delta:
        kind = payload.get("type") or event
        if kind == "error":
            error = payload.get("error") or {}
            return Delta(error=str(error.get("message") or error.get("type") or "error event"))
        if kind == "content_block_delta":
            block = payload.get("delta") or {}
            return Delta(text=block.get("text") or "", reasoning=block.get("thinking") or "")
        if kind == "message_start":
            return Delta(usage=self._usage((payload.get("message") or {}).get("usage")))
        if kind == "message_delta":
            return Delta(usage=self._usage(payload.get("usage")))
        return Delta()

    @staticmethod
    def _usage(usage: dict | None) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        cached = usage.get("cache_read_input_tokens")
        written = usage.get("cache_creation_input_tokens")
        input_tokens = usage.get("input_tokens")
        if input_tokens is not None:
            # Anthropic's input_tokens excludes cache reads and writes; Pulse's input counts all
            # prompt tokens (as OpenAI's prompt_tokens does) with the cached part beside it.
            input_tokens += (cached or 0) + (written or 0)
        return Usage(input_tokens=input_tokens, output_tokens=usage.get("output_tokens"), cached_tokens=cached)


register(AnthropicAdapter())
