"""A streamed answer, followed in place: the caller keeps the SDK's own Stream object (its
iteration, `with`, `close()`, `response`, and the helpers built on it: MessageStream's
text_stream and get_final_message(), ChatCompletionStream...), with two things swapped in:

- its item iterator (`stream._iterator`, which both SDKs' Stream classes iterate) for one that
  reads each item on its way to the caller, and holds back the usage chunk Pulse asked for;
- its HTTP response's close()/aclose(), which every way of finishing a stream goes through:
  the end of the items, Stream.close() and `with`, and the helpers' close().

The call is recorded once, by whichever comes first: the end of the items (with the provider's
usage), an error mid-stream, a close before the end (estimated counts), or the garbage collector
taking a stream nobody finished or closed (a weakref finalizer on the Stream). Nothing here
refers to the Stream object itself, so a dropped stream is still collected.
"""

from __future__ import annotations

import inspect
import json
import logging
import weakref
from collections.abc import AsyncIterator, Generator, Iterator
from time import perf_counter
from typing import Any, Callable

from ..usage import usage_of
from .calls import Call
from .endpoints import Endpoint

logger = logging.getLogger("pulse_sdk")

# Exceptions that end a stream without saying anything about the call: the caller left.
_LEFT = (GeneratorExit, KeyboardInterrupt)


def _left(error: BaseException) -> bool:
    return isinstance(error, _LEFT) or type(error).__name__ == "CancelledError"


def watch(call: Call, endpoint: Endpoint, stream: Any, *, is_async: bool) -> Any:
    """Follow `stream` (an SDK's Stream or AsyncStream) for `call`; returns the same object."""
    iterator = stream._iterator  # Anthropic makes it on first use (a cached_property)
    response = stream.response
    call.last_activity = perf_counter()  # its headers came
    if is_async:
        stream._iterator = _aiterate(call, endpoint.observe, iterator)
        _wrap_aclose(call, response)
    else:
        stream._iterator = items = _iterate(call, endpoint.observe, iterator)
        _wrap_close(call, response, weakref.ref(items))
    if call.usage_injected:
        _skip_usage_event(call, stream, is_async)
    finalizer = weakref.finalize(stream, _dropped, call)
    finalizer.atexit = False  # type: ignore[misc]  # at exit the client may be gone: a stream still open then is lost
    call.finalizer = finalizer
    return stream


def _skip_usage_event(call: Call, stream: Any, is_async: bool) -> None:
    """The usage chunk Pulse asked for is read from its raw event and never handed to the SDK:
    parsing it into a chunk object costs the SDK more than all of Pulse's own work on a stream.
    (OpenAI's Stream reads its events through `_iter_events()`; without it the chunk is parsed
    and then held back by the endpoint's observe(), as for any other SDK.)"""
    events = getattr(stream, "_iter_events", None)
    if events is None or type(stream).__module__.split(".", 1)[0] != "openai":
        return
    if is_async:
        async def events_without_usage() -> AsyncIterator[Any]:
            async for event in events():
                if not _usage_event(call, event):
                    yield event

        stream._iter_events = events_without_usage
    else:
        def events_without_usage() -> Iterator[Any]:  # type: ignore[misc]
            for event in events():
                if not _usage_event(call, event):
                    yield event

        stream._iter_events = events_without_usage


def _usage_event(call: Call, event: Any) -> bool:
    """Whether `event` is the usage-only chunk (no choices), whose counts are then the call's.
    Every other chunk carries `"usage":null` once usage is asked for: a substring test passes
    them on without parsing them twice."""
    data = event.data
    if '"usage"' not in data or '"usage":null' in data or '"usage": null' in data:
        return False
    try:
        payload = json.loads(data)
    except ValueError:
        return False
    if not isinstance(payload, dict) or payload.get("choices") or not isinstance(payload.get("usage"), dict):
        return False
    usage = usage_of(payload)
    if usage is None:
        return False
    call.counts = usage.as_dict()
    call.ended = True
    if call.response_model is None and isinstance(payload.get("model"), str):
        call.response_model = payload["model"]
    return True


def _iterate(call: Call, observe: Callable[[Call, Any], bool], items: Iterator[Any]) -> Generator[Any, None, None]:
    try:
        for item in items:
            call.last_activity = perf_counter()
            try:
                keep = observe(call, item)
            except Exception:  # an item Pulse cannot read is still the caller's
                logger.debug("Pulse could not read a streamed item", exc_info=True)
                keep = True
            if keep:
                yield item
    except BaseException as error:
        _ended_by(call, error)
        raise
    call.ended = True
    call.succeeded()


async def _aiterate(call: Call, observe: Callable[[Call, Any], bool], items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    # An async generator is not "running" while it awaits, so the SDK's aclose() at the end of
    # its iterator is told apart by a flag instead.
    following = items.__anext__
    try:
        while True:
            call.iterating = True
            try:
                item = await following()
            except StopAsyncIteration:
                break
            finally:
                call.iterating = False
            call.last_activity = perf_counter()
            try:
                keep = observe(call, item)
            except Exception:
                logger.debug("Pulse could not read a streamed item", exc_info=True)
                keep = True
            if keep:
                yield item
    except BaseException as error:
        _ended_by(call, error)
        raise
    call.ended = True
    call.succeeded()


def _ended_by(call: Call, error: BaseException) -> None:
    if isinstance(error, GeneratorExit):
        # Closed (the SDK's close() ended it first) or dropped: ended when its last item came.
        call.succeeded(at=call.last_activity)
    elif _left(error):
        call.succeeded()  # the caller stopped it midway: what was received is counted
    else:
        call.failed(error, mid_stream=True)


def _wrap_close(call: Call, response: Any, following: weakref.ref[Generator[Any, None, None]]) -> None:
    close = response.close

    def close_and_record() -> None:
        try:
            close()
        finally:
            # Closed by the stream's own end, inside the SDK's iterator, which _iterate is
            # running: _iterate records it, knowing whether the end was an error. (A weak
            # reference: a dropped stream's generators must not be kept in a cycle with it.)
            items = following()
            if items is None or inspect.getgeneratorstate(items) != inspect.GEN_RUNNING:
                call.succeeded()

    response.close = close_and_record


def _wrap_aclose(call: Call, response: Any) -> None:
    aclose = response.aclose

    async def aclose_and_record() -> None:
        try:
            await aclose()
        finally:
            if not call.iterating:
                call.succeeded()

    response.aclose = aclose_and_record


def _dropped(call: Call) -> None:
    """The Stream was garbage-collected unfinished (never iterated, or left midway): its time
    is until its last item, not until the collector came."""
    call.succeeded(at=call.last_activity)
