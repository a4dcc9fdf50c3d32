"""`@track_cost`: record the provider call a function makes, from the answer it returns.

    @pulse_sdk.track_cost(feature="search")
    def answer(question: str) -> ChatCompletion:
        return client.chat.completions.create(model="gpt-4o-mini", messages=[...])

For code whose client cannot be instrumented (it is made elsewhere, or is a plain HTTP call
returning the provider's JSON): the function's return value, an OpenAI or Anthropic answer object
or a dict of either shape, is read for its model and usage, and recorded with the decorator's tags
and the latency of the whole function. The value is returned unchanged; an exception goes
through unchanged, recorded as a failed call when it is the provider's (an API error).

The tags also apply to everything recorded inside the function (they are a `pulse_sdk.tags()`
block around it), and a call an instrumented client made inside is left to that client's own
record: decorating a function that uses an instrumented client counts its call once.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import time
from typing import Any, Callable, TypeVar, overload

from . import context
from .context import TagValue
from .instrument import calls
from .instrument.providers import provider_for
from .usage import (
    CHAT,
    EMBEDDINGS,
    MESSAGES,
    OTHER,
    REPORTED,
    endpoint_of,
    model_of,
    provider_of,
    usage_of,
)

__all__ = ["track_cost"]

logger = logging.getLogger("pulse_sdk")

F = TypeVar("F", bound=Callable[..., Any])


@overload
def track_cost(feature: F) -> F: ...


@overload
def track_cost(feature: str | None = None, *, provider: str | None = None, pulse: Any = None,
               **tags: TagValue) -> Callable[[F], F]: ...


def track_cost(feature: Any = None, *, provider: str | None = None, pulse: Any = None, **tags: TagValue) -> Any:
    """Decorate a function (sync or async) that returns a provider's answer: its usage is
    recorded with `feature` and `tags` as tags.

    provider: the name the call is priced under; by default "openai" or "anthropic", said by
        the answer's shape (name it for an OpenAI-compatible provider: "groq", "mistral"...).
    pulse: the `pulse_sdk.Client` to record with; by default the process's own.
    """
    if callable(feature):  # used bare: @track_cost
        return track_cost()(feature)
    own_tags: dict[str, TagValue] = calls.checked_tags(
        {**({"feature": feature} if feature is not None else {}), **tags}, "@pulse_sdk.track_cost")
    tracker = _Tracker(own_tags, provider, pulse)

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def tracked_async(*args: Any, **kwargs: Any) -> Any:
                with context.tags(**own_tags):
                    started, marks, token = tracker.begin()
                    try:
                        result = await func(*args, **kwargs)
                    except BaseException as error:
                        tracker.failed(func, error, started, marks)
                        raise
                    finally:
                        calls.capture.reset(token)
                    tracker.returned(func, result, started, marks)
                return result

            return tracked_async  # type: ignore[return-value]

        @functools.wraps(func)
        def tracked(*args: Any, **kwargs: Any) -> Any:
            with context.tags(**own_tags):
                started, marks, token = tracker.begin()
                try:
                    result = func(*args, **kwargs)
                except BaseException as error:
                    tracker.failed(func, error, started, marks)
                    raise
                finally:
                    calls.capture.reset(token)
                tracker.returned(func, result, started, marks)
            return result

        return tracked  # type: ignore[return-value]

    return decorate


class _Tracker:
    """What one decorator records, and how. Every method is called with the function's tags in
    force, and none raises."""

    def __init__(self, tags: dict[str, TagValue], provider: str | None, pulse: Any) -> None:
        self.tags = tags
        self.provider = provider
        self.pulse = pulse
        self.warned: set[str] = set()

    def begin(self) -> tuple[tuple[float, float], list[bool], Any]:
        marks: list[bool] = []  # instrumented calls that begin inside the function mark it
        token = calls.capture.set(marks)
        return (time.time(), time.perf_counter()), marks, token

    def returned(self, func: Callable[..., Any], result: Any, started: tuple[float, float], marks: list[bool]) -> None:
        if marks:
            return  # an instrumented client recorded the call(s) itself
        try:
            usage = usage_of(result)
            if usage is None:
                self._warn_once(func, f"returned {type(result).__qualname__}, which reports no usage")
                return
            provider = self.provider or provider_of(result) or "openai"
            fields = self._event(started, provider, model_of(result) or "unknown", success=True)
            fields.update(usage.as_dict(), token_count_source=REPORTED, endpoint=endpoint_of(result) or OTHER)
        except Exception:
            logger.exception("@track_cost could not read what %s returned; nothing is recorded.", _name(func))
            return
        calls.send(self.pulse, fields)

    def failed(self, func: Callable[..., Any], error: BaseException, started: tuple[float, float], marks: list[bool]) -> None:
        if marks or not calls.is_api_error(error):
            return
        try:
            response = getattr(error, "response", None)
            if response is not None and calls.GATEWAY_HEADER in getattr(response, "headers", ()):
                return  # the gateway recorded it
            request = getattr(error, "request", None)
            sdk = type(error).__module__.split(".", 1)[0]
            provider = self.provider or provider_for(getattr(request, "url", ""), sdk)
            status = getattr(error, "status_code", None)
            fields = self._event(started, provider, _model_of_request(request), success=False)
            fields.update(status_code=status if isinstance(status, int) else None, endpoint=_endpoint_of_request(request))
        except Exception:
            logger.exception("@track_cost could not read the error %s raised; nothing is recorded.", _name(func))
            return
        calls.send(self.pulse, fields)

    def _event(self, started: tuple[float, float], provider: str, model: str, *, success: bool) -> dict[str, Any]:
        wall, perf = started
        tags = dict(context.current_tags())  # the caller's block's and the decorator's
        fields: dict[str, Any] = {
            "provider": provider[:calls.MAX_PROVIDER], "model": model[:calls.MAX_MODEL], "success": success,
            "timestamp": wall, "streamed": False,
            "latency_ms": min(round((time.perf_counter() - perf) * 1000, 3), calls.MAX_MILLISECONDS),
        }
        if tags:
            fields["tags"] = tags
        return fields

    def _warn_once(self, func: Callable[..., Any], problem: str) -> None:
        name = _name(func)
        if name not in self.warned:
            self.warned.add(name)
            logger.warning("@track_cost: %s %s: nothing is recorded. Return the provider's answer (an OpenAI "
                           "or Anthropic response, or its dict), or use pulse_sdk.instrument(client) for streams.",
                           name, problem)


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", repr(func))


def _model_of_request(request: Any) -> str:
    """The model a failed request asked for (its JSON body), when it can be read."""
    try:
        model = json.loads(request.content).get("model")
    except Exception:
        return "unknown"
    return model if isinstance(model, str) and model else "unknown"


_PATHS = (("/chat/completions", CHAT), ("/embeddings", EMBEDDINGS), ("/messages", MESSAGES))


def _endpoint_of_request(request: Any) -> str:
    path = str(getattr(getattr(request, "url", None), "path", ""))
    for suffix, name in _PATHS:
        if path.endswith(suffix):
            return name
    return OTHER
