"""Automatic capture: `instrument(client)` records every generation call an OpenAI or Anthropic
client makes, with no change to the calls themselves.

    client = pulse_sdk.instrument(openai.OpenAI())
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])   # recorded

What is patched is that client object only, never the SDK's classes (other clients, and the
caller's other code, are untouched): its `post()` (which its resources call to send a request,
and take a reference to when they are made) and the `_post` of the resources it already made,
so every method that posts to a generation path (endpoints.py) is recorded, helpers included
(`chat.completions.stream`, `responses.stream`, `messages.stream`, `.parse`, `with_raw_response`).
Copies (`with_options()`, `copy()`) are instrumented alike, each call recorded once.

The `openai` and `anthropic` packages are never imported here: a client is recognised by its
class's name and package, so neither needs to be installed for the other.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

from ..context import TagValue
from . import calls, endpoints
from .calls import Call, Settings, in_flight
from .providers import provider_for
from .streams import watch

__all__ = ["instrument", "uninstrument"]

logger = logging.getLogger("pulse_sdk")

ClientT = TypeVar("ClientT")

_STATE = "_pulse_instrumentation"  # where a client keeps its instrumentation (in its __dict__)

# Class name -> (SDK, async): subclasses (AzureOpenAI...) are recognised through their bases.
_CLIENTS = {
    ("openai", "OpenAI"): ("openai", False),
    ("openai", "AsyncOpenAI"): ("openai", True),
    ("anthropic", "Anthropic"): ("anthropic", False),
    ("anthropic", "AsyncAnthropic"): ("anthropic", True),
}
_ENDPOINTS = {"openai": endpoints.OPENAI, "anthropic": endpoints.ANTHROPIC}


def instrument(client: ClientT, *, pulse: Any = None, provider: str | None = None,
               tags: Mapping[str, TagValue] | None = None) -> ClientT:
    """Record every call `client` makes (openai.OpenAI/AsyncOpenAI, anthropic.Anthropic/
    AsyncAnthropic), and return it.

    pulse: the `pulse_sdk.Client` to record with; by default the process's own (`get_client()`,
        looked up at each call, so a later `pulse_sdk.init()` applies).
    provider: the provider name events are priced under; by default said by the client's base
        URL ("groq" for api.groq.com...), else "openai" or "anthropic".
    tags: added to every call's tags; a `with pulse_sdk.tags(...)` block around a call wins over
        them for the same key.

    Instrumenting a client twice changes its settings and records each call once. Never raises:
    a client it cannot instrument is returned as it was, with the reason logged.
    """
    try:
        kind = _kind_of(client)
        if kind is None:
            logger.warning("pulse_sdk.instrument() takes an openai.OpenAI, openai.AsyncOpenAI, anthropic.Anthropic "
                           "or anthropic.AsyncAnthropic client, not %s: its calls are not recorded.",
                           type(client).__qualname__)
            return client
        sdk, is_async = kind
        settings = Settings(provider or provider_for(getattr(client, "base_url", ""), sdk), pulse, tags)
        state = vars(client).get(_STATE)
        if state is not None:
            state.settings, state.provider = settings, provider
            return client
        _Instrumentation(client, sdk, is_async, settings, provider).install()
    except Exception:
        logger.exception("Pulse could not instrument %s; its calls are not recorded.", type(client).__qualname__)
    return client


def uninstrument(client: ClientT) -> ClientT:
    """Stop recording `client`'s calls (streams already open finish as they started)."""
    try:
        state = vars(client).get(_STATE)
        if state is not None:
            state.uninstall()
    except Exception:
        logger.exception("Pulse could not uninstrument %s.", type(client).__qualname__)
    return client


def _kind_of(client: object) -> tuple[str, bool] | None:
    for cls in type(client).__mro__:
        kind = _CLIENTS.get((cls.__module__.split(".", 1)[0], cls.__name__))
        if kind is not None:
            return kind
    return None


class _Instrumentation:
    """One client's patches, and the settings its calls are recorded with."""

    def __init__(self, client: Any, sdk: str, is_async: bool, settings: Settings, provider: str | None) -> None:
        self.client = client
        self.sdk = sdk
        self.is_async = is_async
        self.settings = settings
        self.provider = provider  # as given (None: each copy names it by its own base URL)
        self.active = True
        self.original_post = client.post
        self.post = self._async_post() if is_async else self._sync_post()

    def install(self) -> None:
        client = self.client
        _add_response_hook(client, self.is_async)
        client.post = self.post
        for resource in _resources(client):
            if resource._post == self.original_post:
                resource._post = self.post
        client.copy = client.with_options = self._copy()
        vars(client)[_STATE] = self

    def uninstall(self) -> None:
        client = self.client
        self.active = False  # resources made meanwhile keep self.post, which now only passes through
        for name in ("post", "copy", "with_options"):
            vars(client).pop(name, None)
        for resource in _resources(client):
            if resource._post == self.post:
                resource._post = self.original_post
        vars(client).pop(_STATE, None)

    def _sync_post(self) -> Callable[..., Any]:
        paths = _ENDPOINTS[self.sdk]
        original = self.original_post

        def post(path: str, *args: Any, **kwargs: Any) -> Any:
            endpoint = paths.get(path)
            if endpoint is None or not self.active:
                return original(path, *args, **kwargs)
            call, kwargs = _begin(endpoint, self.settings, kwargs)
            if call is None:
                return original(path, *args, **kwargs)
            token = in_flight.set(call)
            try:
                result = original(path, *args, **kwargs)
            except BaseException as error:
                call.failed(error)
                raise
            finally:
                in_flight.reset(token)
            return _answered(call, endpoint, result, is_async=False)

        return post

    def _async_post(self) -> Callable[..., Any]:
        paths = _ENDPOINTS[self.sdk]
        original = self.original_post

        async def post(path: str, *args: Any, **kwargs: Any) -> Any:
            endpoint = paths.get(path)
            if endpoint is None or not self.active:
                return await original(path, *args, **kwargs)
            call, kwargs = _begin(endpoint, self.settings, kwargs)
            if call is None:
                return await original(path, *args, **kwargs)
            token = in_flight.set(call)
            try:
                result = await original(path, *args, **kwargs)
            except BaseException as error:
                call.failed(error)
                raise
            finally:
                in_flight.reset(token)
            return _answered(call, endpoint, result, is_async=True)

        return post

    def _copy(self) -> Callable[..., Any]:
        """copy()/with_options(): the new client is a new object, with resources of its own; it
        is instrumented with the same settings, so its calls are recorded, once."""
        copy = type(self.client).copy
        client = self.client

        def copy_instrumented(*args: Any, **kwargs: Any) -> Any:
            copied = copy(client, *args, **kwargs)
            if self.active:
                settings = self.settings
                instrument(copied, pulse=settings.pulse, provider=self.provider, tags=settings.tags)
            return copied

        return copy_instrumented


def _begin(endpoint: endpoints.Endpoint, settings: Settings, kwargs: dict[str, Any]) -> tuple[Call | None, dict[str, Any]]:
    call = calls.begin(endpoint, settings, kwargs.get("body"), kwargs.get("stream") is True)
    if call is not None:
        try:
            kwargs = endpoint.prepare(call, kwargs)
        except Exception:
            logger.exception("Pulse could not prepare a %s call; it is sent as it was.", settings.provider)
    return call, kwargs


def _answered(call: Call, endpoint: endpoints.Endpoint, result: Any, *, is_async: bool) -> Any:
    """The SDK's answer, followed (a stream) or read (a whole answer); returned as it came."""
    try:
        kind = type(result).__name__
        if kind == "LegacyAPIResponse":  # with_raw_response: parsed once here, cached for the caller
            _answered(call, endpoint, result.parse(), is_async=is_async)
        elif kind in ("APIResponse", "AsyncAPIResponse"):
            # with_streaming_response: the body is the caller's to read (maybe as raw lines,
            # maybe never), and reading it here would change what they get.
            call.forget()
            logger.debug("Pulse does not record calls made with with_streaming_response.")
        elif call.streamed:
            if not call.via_gateway:  # the hook saw it, or (a client without event hooks) it is said here
                call.via_gateway = calls.GATEWAY_HEADER in result.response.headers
            if not call.via_gateway or call.usage_injected:  # through the gateway: only hide the usage chunk
                watch(call, endpoint, result, is_async=is_async)
        else:
            endpoint.read(call, result)
            call.succeeded()
    except Exception:
        logger.exception("Pulse could not read a %s answer; the call is not recorded.", call.provider)
    return result


def _resources(client: Any) -> list[Any]:
    """The API resources `client` made so far (client.chat, client.chat.completions...),
    without making the others (they are made on first use, from client.post)."""
    found: list[Any] = []
    _find_resources(client, client, found, 0)
    return found


def _find_resources(node: Any, client: Any, found: list[Any], depth: int) -> None:
    for value in list(vars(node).values()):
        if value is node or getattr(value, "_client", None) is not client:
            continue
        if "_post" in getattr(value, "__dict__", {}) and value not in found:
            found.append(value)
            if depth < 3:
                _find_resources(value, client, found, depth + 1)


def _add_response_hook(client: Any, is_async: bool) -> None:
    """Our event hook on the SDK's HTTP client (shared by the client's copies, maybe by other
    clients: the hook does nothing outside an instrumented call), added once."""
    http: Any = getattr(client, "_client", None)
    hooks = getattr(http, "event_hooks", None)
    if http is None or not isinstance(hooks, dict):
        logger.debug("Pulse cannot see the responses of %r: calls through the gateway may be recorded twice.", http)
        return
    hook = calls.async_response_hook if is_async else calls.response_hook
    current = list(hooks.get("response", []))
    if hook not in current:
        http.event_hooks = {**hooks, "response": [*current, hook]}


class _CallableModule(types.ModuleType):
    """This package is named like the function it exports, and importing it (directly, or by
    importing pulse_sdk.decorators, which uses it) binds `pulse_sdk.instrument` to the package
    rather than to the function. The package is made callable as the function, so that
    `pulse_sdk.instrument(client)` works whichever of the two the name holds."""

    __call__ = staticmethod(instrument)


sys.modules[__name__].__class__ = _CallableModule
