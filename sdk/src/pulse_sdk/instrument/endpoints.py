"""The generation endpoints Pulse records, one class each: how to read their request, what to
ask of it (OpenAI streams: the usage chunk), and what each streamed item teaches.

Keyed by the path the SDKs post to, which is the same for every method that generates: OpenAI's
`chat.completions.create/parse/stream` all post "/chat/completions", `responses.create/parse/
stream` "/responses", Anthropic's `messages.create/stream/parse` (and `beta.messages`)
"/v1/messages". Other paths under them ("/responses/{id}/cancel", "/v1/messages/count_tokens")
generate nothing and are not recorded.

`observe(call, item)` runs for every streamed item in the caller's thread: it touches a few
attributes and never parses anything again.
"""

from __future__ import annotations

import logging
from typing import Any

from ..usage import (
    CHAT,
    EMBEDDINGS,
    MESSAGES,
    OTHER,
    anthropic_reported,
    field,
    from_anthropic,
    usage_of,
)
from .calls import Call

logger = logging.getLogger("pulse_sdk")


class Endpoint:
    name = OTHER  # Pulse's endpoint name (costs.models.CostEvent.Endpoint)

    def end_user(self, body: Any) -> str | None:
        """OpenAI's `user`: who the call was made for."""
        user = field(body, "user")
        return user[:128] if isinstance(user, str) and user else None

    def prompt_of(self, body: Any) -> Any:
        return field(body, "messages")

    def prepare(self, call: Call, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The post() arguments to send (the caller's, unless something must be asked for)."""
        return kwargs

    def observe(self, call: Call, item: Any) -> bool:
        """Learn from one streamed item; False hides it from the caller (an item Pulse asked for)."""
        return True


class _UsageChunks(Endpoint):
    """OpenAI streams report usage only when asked (stream_options.include_usage): it is asked
    for, and the extra usage-only chunk is then kept from the caller, who sees the stream they
    would have had without Pulse."""

    def prepare(self, call: Call, kwargs: dict[str, Any]) -> dict[str, Any]:
        body = kwargs.get("body")
        if kwargs.get("stream") is not True or not isinstance(body, dict):
            return kwargs
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return kwargs  # the caller asked: they see the usage chunk, as without Pulse
        options = {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        call.usage_injected = True
        return {**kwargs, "body": {**body, "stream_options": options}}

    def observe(self, call: Call, item: Any) -> bool:
        if call.response_model is None:
            model = getattr(item, "model", None)
            if isinstance(model, str) and model:
                call.response_model = model
        choices = getattr(item, "choices", None)
        if choices:
            for choice in choices:
                self.observe_choice(call, choice)
        usage = getattr(item, "usage", None)
        if usage is not None:
            call.take_usage(usage_of(usage))
            if not choices:
                call.ended = True  # the usage chunk comes last
                if call.usage_injected:
                    return False
            if call.usage_injected:
                _unset_usage(item)
        elif call.usage_injected:
            _unset_usage(item)
        return True

    def observe_choice(self, call: Call, choice: Any) -> None:
        raise NotImplementedError


def _unset_usage(chunk: Any) -> None:
    """Once usage is asked for, OpenAI puts `"usage": null` on every chunk; the caller who did
    not ask gets chunks without the key, as before (`chunk.to_dict()` shows no usage)."""
    fields_set = getattr(chunk, "__pydantic_fields_set__", None)
    if fields_set is None:  # not a pydantic object: nothing to hide
        return
    if chunk.usage is not None:
        chunk.usage = None
    fields_set.discard("usage")


class ChatCompletions(_UsageChunks):
    name = CHAT

    def observe_choice(self, call: Call, choice: Any) -> None:
        delta = getattr(choice, "delta", None)
        if delta is not None:
            content = getattr(delta, "content", None)
            if content:
                call.text.append(content)
                call.first_content()
            else:
                # Reasoning (DeepSeek and vLLM say reasoning_content, OpenRouter reasoning), a
                # refusal, tool call arguments: content too, for TTFT and for an estimate.
                for name in ("reasoning_content", "reasoning", "refusal"):
                    value = getattr(delta, name, None)
                    if isinstance(value, str) and value:
                        call.text.append(value)
                        call.first_content()
                for tool_call in getattr(delta, "tool_calls", None) or ():
                    arguments = field(field(tool_call, "function"), "arguments")
                    call.first_content()
                    if isinstance(arguments, str):
                        call.text.append(arguments)
        if getattr(choice, "finish_reason", None):
            call.first_content()  # an answer with no content at all still arrived


class Completions(_UsageChunks):
    """The legacy completions API (`completions.create`): a prompt, choices with text."""

    def prompt_of(self, body: Any) -> Any:
        return field(body, "prompt")

    def observe_choice(self, call: Call, choice: Any) -> None:
        text = getattr(choice, "text", None)
        if text:
            call.text.append(text)
            call.first_content()
        elif getattr(choice, "finish_reason", None):
            call.first_content()


class Embeddings(Endpoint):
    name = EMBEDDINGS

    def prompt_of(self, body: Any) -> Any:
        return field(body, "input")


_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


class Responses(Endpoint):
    """The Responses API. A stream reports usage on its last event (response.completed, or
    response.incomplete / response.failed) without being asked."""

    def prompt_of(self, body: Any) -> Any:
        return [field(body, "instructions"), field(body, "input")]

    def observe(self, call: Call, item: Any) -> bool:
        kind = getattr(item, "type", None)
        if not isinstance(kind, str):
            return True
        if kind.endswith(".delta"):
            delta = getattr(item, "delta", None)
            if isinstance(delta, str) and delta:
                call.text.append(delta)
            call.first_content()
        elif kind in _RESPONSE_ENDS or kind == "response.created":
            response = getattr(item, "response", None)
            model = getattr(response, "model", None)
            if isinstance(model, str) and model:
                call.response_model = model
            if kind != "response.created":
                call.take_usage(usage_of(response))
                call.ended = True
                call.failed_in_stream = kind == "response.failed"
        return True


class Messages(Endpoint):
    """Anthropic's Messages API: usage on message_start (input, cache) and message_delta
    (output, and on newer servers the input counts again)."""

    name = MESSAGES

    def end_user(self, body: Any) -> str | None:
        user = field(field(body, "metadata"), "user_id")
        return user[:128] if isinstance(user, str) and user else None

    def prompt_of(self, body: Any) -> Any:
        return [field(body, "system"), field(body, "messages")]

    def observe(self, call: Call, item: Any) -> bool:
        kind = getattr(item, "type", None)
        if kind == "content_block_delta":
            delta = getattr(item, "delta", None)
            for name in ("text", "thinking", "partial_json"):
                value = getattr(delta, name, None)
                if isinstance(value, str):
                    call.text.append(value)
                    break
            call.first_content()
        elif kind == "message_start":
            message = getattr(item, "message", None)
            model = getattr(message, "model", None)
            if isinstance(model, str) and model:
                call.response_model = model
            self._take(call, getattr(message, "usage", None))
        elif kind == "message_delta":
            self._take(call, getattr(item, "usage", None))
        elif kind == "message_stop":
            call.ended = True
        return True

    @staticmethod
    def _take(call: Call, usage: Any) -> None:
        if usage is None:
            return
        call.reported.update(anthropic_reported(usage))
        call.counts = from_anthropic(call.reported)


OPENAI: dict[str, Endpoint] = {
    "/chat/completions": ChatCompletions(),
    "/completions": Completions(),
    "/embeddings": Embeddings(),
    "/responses": Responses(),
}
ANTHROPIC: dict[str, Endpoint] = {
    "/v1/messages": Messages(),
}
