"""The generation endpoints Pulse records, one class each: how to read their request, what to
ask of it (OpenAI streams: the usage chunk), and what their answer and each streamed item say.

Keyed by the path the SDKs post to, which is the same for every method that generates: OpenAI's
`chat.completions.create/parse/stream` all post "/chat/completions", `responses.create/parse/
stream` "/responses", Anthropic's `messages.create/stream/parse` (and `beta.messages`)
"/v1/messages". Other paths under them ("/responses/{id}/cancel", "/v1/messages/count_tokens")
generate nothing and are not recorded.

`observe(call, item)` runs for every streamed item, and `read(call, answer)` for every whole
answer, in the caller's thread: they read the SDKs' objects by attribute (what they are), and
whatever does not fit (an SDK that changed, a server that sends less) raises, to be read the
slow, forgiving way (`pulse_sdk.usage`) or skipped by the caller.
"""

from __future__ import annotations

from typing import Any

from ..usage import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    MESSAGES,
    OTHER,
    RESPONSES,
    anthropic_reported,
    field,
    from_anthropic,
    model_of,
    text_of,
    usage_of,
)
from .calls import Call


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

    def read(self, call: Call, answer: Any) -> None:
        """A whole answer: its model, and its usage, or else its text to estimate from."""
        try:
            call.response_model = answer.model
            call.counts = self.counts_of(answer.usage)
        except Exception:
            call.response_model = model_of(answer)
            usage = usage_of(answer)
            if usage is not None:
                call.counts = usage.as_dict()
        if not call.counts:
            call.text.append(text_of(answer))
        call.ended = True

    def counts_of(self, usage: Any) -> dict[str, int]:
        """A usage block in Pulse's conventions (`usage_of` reads OpenAI's chat, completions,
        embeddings and Responses blocks alike; Messages reads Anthropic's its own way)."""
        counted = usage_of(usage)
        return counted.as_dict() if counted is not None else {}

    def observe(self, call: Call, item: Any) -> bool:
        """Learn from one streamed item; False hides it from the caller (an item Pulse asked for)."""
        return True


class _UsageChunks(Endpoint):
    """OpenAI streams report usage only when asked (stream_options.include_usage): it is asked
    for, and the extra usage-only chunk is then kept from the caller, who sees the stream they
    would have had without Pulse (`"usage": null` on the other chunks is unset again)."""

    def prepare(self, call: Call, kwargs: dict[str, Any]) -> dict[str, Any]:
        body = kwargs.get("body")
        if kwargs.get("stream") is not True or not isinstance(body, dict):
            return kwargs
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return kwargs  # the caller asked: they see the usage chunk, as without Pulse
        options = {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        call.usage_injected = True
        kwargs["body"] = {**body, "stream_options": options}  # kwargs is post()'s own; the body, the SDK's
        return kwargs

    def observe(self, call: Call, item: Any) -> bool:
        if call.response_model is None:
            call.response_model = item.model
        choices = item.choices
        for choice in choices:
            self.observe_choice(call, choice)
        usage = item.usage
        if usage is None:
            if call.usage_injected:
                item.__pydantic_fields_set__.discard("usage")
            return True
        return self.observe_usage(call, item, choices, usage)

    def observe_usage(self, call: Call, item: Any, choices: Any, usage: Any) -> bool:
        call.counts = self.counts_of(usage)
        if not choices:
            call.ended = True  # the usage chunk comes last
            return not call.usage_injected
        if call.usage_injected:  # usage riding on a chunk with choices (some servers do)
            item.usage = None
            item.__pydantic_fields_set__.discard("usage")
        return True

    def observe_choice(self, call: Call, choice: Any) -> None:
        raise NotImplementedError


class ChatCompletions(_UsageChunks):
    name = CHAT

    def observe(self, call: Call, item: Any) -> bool:
        """The common chunk (one choice, some text) read inline: this runs for every chunk."""
        if call.response_model is None:
            call.response_model = item.model
        choices = item.choices
        for choice in choices:
            delta = choice.delta
            content = delta.content if delta is not None else None
            if content:
                call.text.append(content)
                if call.ttft_ms is None:
                    call.first_content()
            else:
                self.observe_choice(call, choice)
        usage = item.usage
        if usage is None:
            if call.usage_injected:
                item.__pydantic_fields_set__.discard("usage")
            return True
        return self.observe_usage(call, item, choices, usage)

    def observe_choice(self, call: Call, choice: Any) -> None:
        delta = choice.delta
        content = delta.content if delta is not None else None
        if content:
            call.text.append(content)
            if call.ttft_ms is None:
                call.first_content()
            return
        # No text: the role chunk, the finish chunk, or content of another kind: reasoning
        # (DeepSeek and vLLM say reasoning_content, OpenRouter reasoning: extra fields), a
        # refusal, tool call arguments. Content too, for TTFT and for an estimate.
        if delta is not None:
            extra = delta.__pydantic_extra__ or {}
            for value in (extra.get("reasoning_content"), extra.get("reasoning"), delta.refusal):
                if isinstance(value, str) and value:
                    call.text.append(value)
                    call.first_content()
            for tool_call in delta.tool_calls or ():
                call.first_content()
                arguments = field(field(tool_call, "function"), "arguments")
                if isinstance(arguments, str):
                    call.text.append(arguments)
        if choice.finish_reason:
            call.first_content()  # an answer with no content at all still arrived


class Completions(_UsageChunks):
    """The legacy completions API (`completions.create`): a prompt, choices with text."""

    name = COMPLETIONS

    def prompt_of(self, body: Any) -> Any:
        return field(body, "prompt")

    def observe_choice(self, call: Call, choice: Any) -> None:
        text = choice.text
        if text:
            call.text.append(text)
            call.first_content()
        elif choice.finish_reason:
            call.first_content()


class Embeddings(Endpoint):
    name = EMBEDDINGS

    def prompt_of(self, body: Any) -> Any:
        return field(body, "input")


_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


class Responses(Endpoint):
    """The Responses API. A stream reports usage on its last event (response.completed, or
    response.incomplete / response.failed) without being asked."""

    name = RESPONSES

    def prompt_of(self, body: Any) -> Any:
        return [field(body, "instructions"), field(body, "input")]

    def observe(self, call: Call, item: Any) -> bool:
        kind = item.type
        if kind.endswith(".delta"):
            delta = getattr(item, "delta", None)
            if isinstance(delta, str) and delta:
                call.text.append(delta)
            if call.ttft_ms is None:
                call.first_content()
        elif kind in _RESPONSE_ENDS or kind == "response.created":
            response = item.response
            call.response_model = response.model
            if kind != "response.created":
                call.ended = True
                call.failed_in_stream = kind == "response.failed"
                if response.usage is not None:
                    call.counts = self.counts_of(response.usage)
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

    def counts_of(self, usage: Any) -> dict[str, int]:
        return from_anthropic(anthropic_reported(usage))

    def observe(self, call: Call, item: Any) -> bool:
        kind = item.type
        if kind == "content_block_delta":
            delta = item.delta
            text = getattr(delta, "text", None) or getattr(delta, "thinking", None) or getattr(delta, "partial_json", None)
            if isinstance(text, str):
                call.text.append(text)
            if call.ttft_ms is None:
                call.first_content()
        elif kind == "message_start":
            message = item.message
            call.response_model = message.model
            self._take(call, message.usage)
        elif kind == "message_delta":
            self._take(call, item.usage)
        elif kind == "message_stop":
            call.ended = True
        return True

    @staticmethod
    def _take(call: Call, usage: Any) -> None:
        """A stream's usage comes in parts: message_delta may repeat some of message_start's
        counts and not others."""
        if usage is not None:
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
