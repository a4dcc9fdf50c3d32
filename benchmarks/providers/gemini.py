"""Google Gemini `streamGenerateContent` over server-sent events."""

from __future__ import annotations

import re

import httpx

from .base import Delta, ErrorKind, ProviderAdapter, StreamRequest, Usage
from .listing import MAX_PAGES, get_json
from .registry import register

_SECONDS = re.compile(r"^([\d.]+)s$")


class GeminiAdapter(ProviderAdapter):
    kind = "gemini"
    label = "Gemini"
    # "google-gla" is the Generative Language API as Pydantic AI (and so some clients) names it.
    pricing_provider_ids = ("google", "google-gla")
    simulator_prefix = "/gemini"

    def api_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

    def list_models(self, client: httpx.Client, base_url: str, api_key: str) -> list[str]:
        # GET {base}/v1beta/models -> models[].name without "models/", paged by nextPageToken
        names: list[str] = []
        params: dict[str, str] = {"pageSize": "1000"}
        for _ in range(MAX_PAGES):
            body = get_json(client, f"{base_url.rstrip('/')}/v1beta/models", self.api_headers(api_key), params)
            names += [item["name"].removeprefix("models/") for item in body.get("models", [])]
            if not body.get("nextPageToken"):
                break
            params = {"pageSize": "1000", "pageToken": body["nextPageToken"]}
        return names

    def url(self, request: StreamRequest) -> str:
        return f"{request.base_url.rstrip('/')}/v1beta/models/{request.model}:streamGenerateContent?alt=sse"

    def body(self, request: StreamRequest, prompt: str) -> dict:
        return {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "generationConfig": {"maxOutputTokens": request.max_tokens},
        }

    def parse_event(self, event: str, payload: dict) -> Delta:
        error = payload.get("error")
        if error:
            return Delta(error=str(error.get("message") if isinstance(error, dict) else error))
        delta = Delta()
        for candidate in payload.get("candidates") or []:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if part.get("thought"):
                    delta.reasoning += part.get("text") or ""
                else:
                    delta.text += part.get("text") or ""
        usage = payload.get("usageMetadata")
        if isinstance(usage, dict):
            text_tokens = usage.get("candidatesTokenCount")
            thoughts = usage.get("thoughtsTokenCount")
            output = None if text_tokens is None and thoughts is None else (text_tokens or 0) + (thoughts or 0)
            delta.usage = Usage(
                input_tokens=usage.get("promptTokenCount"),
                output_tokens=output,  # candidates exclude thoughts; Pulse counts both as output
                cached_tokens=usage.get("cachedContentTokenCount"),
                reasoning_tokens=thoughts,
            )
        return delta

    def classify_status(self, status: int, body: object) -> ErrorKind:
        # Gemini answers a wrong key with 400 INVALID_ARGUMENT + reason API_KEY_INVALID.
        error = body.get("error") if isinstance(body, dict) else None
        if status == 400 and isinstance(error, dict):
            reasons = {detail.get("reason") for detail in error.get("details") or [] if isinstance(detail, dict)}
            if "API_KEY_INVALID" in reasons:
                return ErrorKind.AUTH
        return super().classify_status(status, body)

    def retry_after_from_body(self, body: object) -> float | None:
        # Gemini puts the wait in the body (google.rpc.RetryInfo, retryDelay "7s"), not a header.
        error = body.get("error") if isinstance(body, dict) else None
        details = error.get("details") if isinstance(error, dict) else None
        for detail in details or []:
            match = _SECONDS.match(str(detail.get("retryDelay", ""))) if isinstance(detail, dict) else None
            if match:
                return float(match.group(1))
        return None


register(GeminiAdapter())
