"""Tags that apply to everything recorded inside a block: `with pulse_sdk.tags(feature="search"):`.

Kept in a ContextVar, so they follow the code that set them across threads started inside the
block only when the caller copies the context, and across `await` in asyncio tasks (each task
gets a copy of its creator's context), and never leak from one request to another.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Union

TagValue = Union[str, int, float, bool]

_NO_TAGS: Mapping[str, TagValue] = MappingProxyType({})
_tags: ContextVar[Mapping[str, TagValue]] = ContextVar("pulse_sdk_tags", default=_NO_TAGS)  # noqa: B039 (read-only)


def current_tags() -> Mapping[str, TagValue]:
    """The tags in force here (read-only; empty outside any `tags()` block)."""
    return _tags.get()


@contextmanager
def tags(**values: TagValue) -> Iterator[Mapping[str, TagValue]]:
    """Adds `values` to the tags in force; inner blocks win over outer ones for the same key."""
    merged = {**_tags.get(), **values}
    token = _tags.set(merged)
    try:
        yield merged
    finally:
        _tags.reset(token)
