"""Pulse's Python SDK: record every LLM call's tokens, cost and latency with one line.

    import openai, pulse_sdk
    pulse_sdk.init()                                  # PULSE_API_KEY / PULSE_BASE_URL
    client = pulse_sdk.instrument(openai.OpenAI())    # every call is now recorded
    with pulse_sdk.tags(feature="search"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

Names are imported on first use, so `import pulse_sdk` costs almost nothing in an application
that only uses part of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .context import current_tags, tags

if TYPE_CHECKING:
    from .api import PulseAPI  # noqa: F401
    from .client import Client, Stats, flush, get_client, init, track  # noqa: F401
    from .decorators import track_cost  # noqa: F401
    from .instrument import instrument, uninstrument  # noqa: F401

_LAZY = {
    "PulseAPI": "api",
    "Client": "client",
    "Stats": "client",
    "init": "client",
    "get_client": "client",
    "track": "client",
    "flush": "client",
    "instrument": "instrument",
    "uninstrument": "instrument",
    "track_cost": "decorators",
}

__all__ = ["__version__", "current_tags", "tags", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pulse_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
