"""What the adapters' `list_models` share: one GET that must answer a JSON object, and a bound
on pagination."""

from __future__ import annotations

import httpx

MAX_PAGES = 50  # a provider that keeps saying "more" must not loop forever


def get_json(client: httpx.Client, url: str, headers: dict[str, str], params: dict[str, str] | None = None) -> dict:
    response = client.get(url, headers=headers, params=params)
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"{url} returned {type(body).__name__}, expected a JSON object")
    return body
