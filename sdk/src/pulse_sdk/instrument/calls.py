"""One instrumented call, from the request to its record: what it asked, what came back, and
the event `Client.track()` is given for it, once.

A `Call` is begun before the SDK sends the request and finished exactly once: when a whole
answer came back, when an API error was raised, or when its stream ended, was closed, or was
dropped (streams.py). Every method here runs in the caller's thread, so each is small and none
may raise: a failure to record is logged (logger `pulse_sdk`) and the caller's call goes on.

Calls through Pulse's gateway are not recorded: the gateway records them itself and marks its
responses with `x-pulse-request-id`, which `response_hook` (an event hook on the SDK's HTTP
client) notes on the call in progress.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from time import perf_counter, time
from typing import TYPE_CHECKING, Any, Callable

from ..context import current_tags
from ..usage import ESTIMATED, REPORTED, estimate_tokens, field, texts

if TYPE_CHECKING:
    from .endpoints import Endpoint

logger = logging.getLogger("pulse_sdk")

GATEWAY_HEADER = "x-pulse-request-id"

# The call whose request is on its way in this thread or task (for the HTTP response hook).
in_flight: contextvars.ContextVar[Call | None] = contextvars.ContextVar("pulse_sdk_call", default=None)
# Set by @track_cost around its function: instrumented calls inside mark it, and the decorator
# then leaves the recording to them instead of counting the same call twice.
capture: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("pulse_sdk_capture", default=None)


# What the server stores (costs.ingestion): an event breaking one of these is refused whole.
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 20, 64, 128
MAX_MILLISECONDS = 3_600_000
MAX_MODEL, MAX_PROVIDER = 128, 64


def checked_tags(tags: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """`tags` without those the server would refuse every event for (said once, here, rather
    than by every call's event being rejected)."""
    kept: dict[str, Any] = {}
    for key, value in (tags or {}).items():
        problem = None
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_TAG_KEY:
            problem = f"keys must be strings of 1 to {MAX_TAG_KEY} characters"
        elif isinstance(value, str):
            if len(value) > MAX_TAG_VALUE:
                problem = f"values must have at most {MAX_TAG_VALUE} characters"
        elif not isinstance(value, (bool, int, float)) or value != value or value in (float("inf"), float("-inf")):
            problem = "values must be strings, finite numbers or booleans"
        elif len(kept) >= MAX_TAGS:
            problem = f"at most {MAX_TAGS} tags are kept"
        if problem:
            logger.warning("%s: the tag %r is left out (%s).", where, key, problem)
        else:
            kept[key] = value
    return kept


class Settings:
    """What instrument() was told for one client."""

    __slots__ = ("provider", "pulse", "tags")

    def __init__(self, provider: str, pulse: Any, tags: Mapping[str, Any] | None) -> None:
        self.provider = provider[:MAX_PROVIDER]
        self.pulse = pulse
        self.tags = checked_tags(tags, "pulse_sdk.instrument()")


class Call:
    __slots__ = (
        "_once", "context_tags", "counts", "end_user", "endpoint", "ended", "failed_in_stream", "finalizer",
        "iterating", "last_activity", "model", "prompt", "provider", "pulse", "reported", "response_model",
        "started", "started_wall", "status_code", "streamed", "tags", "text", "ttft_ms", "usage_injected",
        "via_gateway",
    )

    def __init__(self, endpoint: Endpoint, settings: Settings, body: Any, streamed: bool) -> None:
        self.endpoint = endpoint
        self.provider = settings.provider
        self.pulse = settings.pulse
        self.context_tags = context_tags = current_tags()
        self.tags = {**settings.tags, **context_tags}  # the context's win: it is closer to the call
        self.model = field(body, "model")
        self.end_user = endpoint.end_user(body)
        self.prompt = body  # read only if an estimate is needed
        self.streamed = streamed
        self.usage_injected = False  # Pulse asked for the usage chunk (OpenAI streams)
        self.via_gateway = False
        self.status_code: int | None = None
        self.response_model: str | None = None
        self.counts: dict[str, int] = {}  # what the provider reported so far (Pulse's conventions)
        self.reported: dict[str, int] = {}  # the same in the provider's terms, where they differ (Anthropic)
        self.text: list[str] = []  # text streamed so far, for an estimate
        self.ttft_ms: float | None = None
        self.ended = False  # the answer came whole: its stream reached its end
        self.failed_in_stream = False  # the stream said the call failed (Responses' response.failed)
        self.iterating = False  # inside the SDK's stream iterator (whose end closes the response)
        self.last_activity = 0.0  # when the stream's headers or its last item came (perf_counter)
        self.finalizer: Any = None  # records a stream dropped unfinished (streams.py)
        self._once = [True]
        marks = capture.get()
        if marks is not None:
            marks.append(True)
        self.started_wall = time()
        self.started = perf_counter()

    def first_content(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (perf_counter() - self.started) * 1000

    # -- the record ---------------------------------------------------------------------------

    def succeeded(self, *, at: float | None = None) -> None:
        self.finish(success=not self.failed_in_stream, status_code=self.status_code or 200, at=at)

    def failed(self, error: BaseException, *, mid_stream: bool = False) -> None:
        """An exception out of the SDK. Before any answer it is recorded when it is the
        provider's (an API, connection or timeout error); anything else (a cancelled task, a bad
        argument) says nothing about the call. Mid-stream every error is the call's: it was
        answered, and broke."""
        try:
            if not (mid_stream or is_api_error(error)):
                self.forget()
                return
            status = getattr(error, "status_code", None)
            response = getattr(error, "response", None)
            if response is not None and GATEWAY_HEADER in getattr(response, "headers", ()):
                self.via_gateway = True
            status = status if isinstance(status, int) and status >= 400 else None
        except Exception:  # the caller's exception must go on unchanged, whatever happens here
            logger.exception("Pulse could not read a %s error; the call is not recorded.", self.provider)
            return
        self.finish(success=False, status_code=status)

    def forget(self) -> None:
        """Never record this call."""
        self._once.clear()
        if self.finalizer is not None:
            self.finalizer.detach()

    def finish(self, *, success: bool, status_code: int | None, at: float | None = None) -> None:
        """Record the call, once (later calls do nothing); `at`: when it ended (perf_counter),
        if not now. Never raises."""
        try:
            self._once.pop()
        except IndexError:
            return  # recorded already
        try:
            if self.finalizer is not None:
                self.finalizer.detach()
                self.finalizer = None
            if self.via_gateway:
                return
            fields = self.event(success=success, status_code=status_code, at=at)
        except Exception:
            logger.exception("Pulse could not read the %s call's answer; it is not recorded. "
                             "Please report this with your %s package's version.", self.provider, self.provider)
            return
        send(self.pulse, fields, self.context_tags)

    def event(self, *, success: bool, status_code: int | None, at: float | None = None) -> dict[str, Any]:
        model = self.response_model or self.model
        fields: dict[str, Any] = {
            "provider": self.provider,
            "model": model[:MAX_MODEL] if isinstance(model, str) and model else "unknown",
            "latency_ms": min(round(((at or perf_counter()) - self.started) * 1000, 3), MAX_MILLISECONDS),
            "status_code": status_code,
            "success": success,
            "timestamp": self.started_wall,
            "endpoint": self.endpoint.name,
            "streamed": self.streamed,
            "tags": self.tags,
        }
        if self.end_user:
            fields["end_user"] = self.end_user
        if self.ttft_ms is not None:
            fields["ttft_ms"] = min(round(self.ttft_ms, 3), MAX_MILLISECONDS)
        if success or self.counts or self.text:
            self.add_token_counts(fields)
        return fields

    def add_token_counts(self, fields: dict[str, Any]) -> None:
        """The provider's counts when it sent them for the whole answer; else estimates, over the
        prompt and over the text received (a stream cut short has no final usage). As the
        gateway counts (gateway/calls.py final_counts). Cached never exceeds input, nor
        reasoning output (the server refuses an event that says otherwise)."""
        counts = self.counts
        estimated = False
        input_tokens = counts.get("input_tokens")
        if input_tokens is None:
            input_tokens, estimated = self.estimated_prompt_tokens(), True
        output_tokens = counts.get("output_tokens")
        if output_tokens is None or not self.ended:
            guess = estimate_tokens("".join(self.text))
            output_tokens, estimated = max(output_tokens or 0, guess), True
        fields["input_tokens"] = input_tokens
        fields["output_tokens"] = output_tokens
        fields["cached_tokens"] = min(counts.get("cached_tokens", 0), input_tokens)
        fields["reasoning_tokens"] = min(counts.get("reasoning_tokens", 0), output_tokens)
        fields["token_count_source"] = ESTIMATED if estimated else REPORTED

    def estimated_prompt_tokens(self) -> int:
        return estimate_tokens(" ".join(texts(self.endpoint.prompt_of(self.prompt))))


def is_api_error(error: BaseException) -> bool:
    """The SDKs' own APIError family (status, connection and timeout errors), by name, so
    neither package has to be imported to tell."""
    for cls in type(error).__mro__:
        if cls.__name__ == "APIError" and cls.__module__.split(".", 1)[0] in ("openai", "anthropic"):
            return True
    return False


_get_client: Callable[[], Any] | None = None


def send(pulse: Any, fields: dict[str, Any], context_tags: Mapping[str, Any] | None = None) -> None:
    """Hands the event to `pulse.track()` (the default client when none was given). `fields`
    carries the tags of the context the call began in (`context_tags`): if this is another one
    (a stream may end in another request's context), track() runs in an empty context, so that
    the tags it adds from its own context are not another call's."""
    global _get_client
    try:
        if pulse is None:
            if _get_client is None:
                from ..client import get_client

                _get_client = get_client
            pulse = _get_client()
        if current_tags() is context_tags:
            pulse.track(**fields)
        else:
            contextvars.Context().run(pulse.track, **fields)
    except Exception as error:
        # Said in full once per kind of failure (a missing API key would otherwise fill the
        # log with one traceback per call), then briefly.
        kind = (type(error), fields.get("provider"))
        if kind in _failures_logged:
            logger.debug("Pulse could not record a %s call (%s): %s", fields.get("provider"), fields.get("model"), error)
            return
        _failures_logged.add(kind)
        logger.exception("Pulse could not record a %s call (%s); the call itself went on. Later failures like "
                         "this one are logged at DEBUG level.", fields.get("provider"), fields.get("model"))


_failures_logged: set[tuple[type, Any]] = set()


def begin(endpoint: Endpoint, settings: Settings, body: Any, streamed: bool) -> Call | None:
    try:
        return Call(endpoint, settings, body, streamed)
    except Exception:
        logger.exception("Pulse could not follow a %s call; it is not recorded.", settings.provider)
        return None


def note_response(response: Any) -> None:
    call = in_flight.get()
    if call is None:
        return
    try:
        call.via_gateway = GATEWAY_HEADER in response.headers
        call.status_code = response.status_code
    except Exception:  # an event hook must not fail the request
        logger.debug("Pulse could not read a response's headers", exc_info=True)


def response_hook(response: Any) -> None:
    """httpx event hook (sync clients): note on the call in flight where its answer came from."""
    note_response(response)


async def async_response_hook(response: Any) -> None:
    """httpx event hook (async clients)."""
    note_response(response)
