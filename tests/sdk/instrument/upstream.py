"""Two more OpenAI endpoints for the simulated provider: the Responses API (`POST …/responses`)
and legacy completions (`POST …/completions`), plain and streamed, in OpenAI's wire format.

benchmarks/simulator.py serves chat completions, embeddings and Anthropic's messages; the SDK
records these two as well, so the tests add them to a SimulatedProvider before it starts
(`with_more_endpoints`). They are WireFormats like the simulator's own, served by its own handler
(`generate_handler`): profiles, timing, faults (a `sim-429` is a 429 here too) and the request log
all work the same.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from benchmarks.simulator import (
    JSON,
    Chunk,
    Event,
    Exchange,
    Failure,
    OpenAIFormat,
    RequestSpec,
    SimulatedProvider,
    bad_request,
    base_url_for,
    count_words,
    generate_handler,
)


class ResponsesFormat(OpenAIFormat):
    """POST /responses: `response.*` events, usage on response.completed (always sent)."""

    generate_path = "/responses"

    def parse(self, body: JSON, request: web.Request) -> RequestSpec:
        if not body.get("model") or body.get("input") in (None, "", []):
            raise bad_request("Missing required parameter: 'input'.")
        prompt = count_words(body.get("input")) + count_words(body.get("instructions") or "")
        return RequestSpec(model=body["model"], stream=bool(body.get("stream")), prompt_tokens=prompt,
                           max_tokens=body.get("max_output_tokens"))

    def _response(self, ex: Exchange, status: str, output: list[JSON], usage: JSON | None) -> JSON:
        return {
            "id": f"resp_{ex.response_id}", "object": "response", "created_at": ex.created, "model": ex.model,
            "status": status, "output": output, "usage": usage, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "error": None, "incomplete_details": None,
            "instructions": None, "metadata": {}, "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}},
        }

    def _message(self, ex: Exchange, text: str, status: str) -> JSON:
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" else []
        return {"id": f"msg_{ex.response_id}", "type": "message", "status": status, "role": "assistant", "content": content}

    def _usage_of(self, ex: Exchange) -> JSON | None:
        usage = ex.final_usage
        if usage is None:
            return None
        return {
            "input_tokens": usage.prompt, "input_tokens_details": {"cached_tokens": usage.cached},
            "output_tokens": usage.output, "output_tokens_details": {"reasoning_tokens": usage.reasoning},
            "total_tokens": usage.prompt + usage.output,
        }

    def _event(self, kind: str, ex: Exchange, chunk: Chunk | None = None, **payload: Any) -> Event:
        return Event({"type": kind, **payload}, chunk=chunk)

    def opening(self, ex: Exchange) -> list[Event]:
        started = self._response(ex, "in_progress", [], None)
        item = self._message(ex, "", "in_progress")
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            self._event("response.created", ex, response=started, sequence_number=0),
            self._event("response.in_progress", ex, response=started, sequence_number=1),
            self._event("response.output_item.added", ex, output_index=0, item=item, sequence_number=2),
            self._event("response.content_part.added", ex, item_id=item["id"], output_index=0, content_index=0,
                        part=part, sequence_number=3),
        ]

    def content(self, ex: Exchange, chunk: Chunk) -> list[Event]:
        return [self._event("response.output_text.delta", ex, chunk, item_id=f"msg_{ex.response_id}", output_index=0,
                            content_index=0, delta=chunk.text, logprobs=[], sequence_number=4 + chunk.offset)]

    def closing(self, ex: Exchange) -> list[Event]:
        text = ex.reasoning_text + ex.text
        item = self._message(ex, text, "completed")
        status = "incomplete" if ex.truncated else "completed"
        done = self._response(ex, status, [item], self._usage_of(ex))
        part = item["content"][0]
        return [
            self._event("response.output_text.done", ex, item_id=item["id"], output_index=0, content_index=0,
                        text=text, logprobs=[], sequence_number=10_000),
            self._event("response.content_part.done", ex, item_id=item["id"], output_index=0, content_index=0,
                        part=part, sequence_number=10_001),
            self._event("response.output_item.done", ex, output_index=0, item=item, sequence_number=10_002),
            self._event(f"response.{status}", ex, response=done, sequence_number=10_003),
        ]

    def stream_error(self, ex: Exchange) -> list[Event]:
        return [self._event("error", ex, code="server_error", message="The server had an error.", param=None,
                            sequence_number=9_999)]

    def full(self, ex: Exchange) -> JSON:
        item = self._message(ex, ex.reasoning_text + ex.text, "completed")
        return self._response(ex, "incomplete" if ex.truncated else "completed", [item], self._usage_of(ex))


class CompletionsFormat(OpenAIFormat):
    """POST /completions (legacy): a prompt in, `text_completion` choices out."""

    generate_path = "/completions"

    def parse(self, body: JSON, request: web.Request) -> RequestSpec:
        if not body.get("model") or body.get("prompt") is None:
            raise bad_request("you must provide a model parameter and a prompt")
        options = body.get("stream_options") or {}
        return RequestSpec(
            model=body["model"], stream=bool(body.get("stream")), prompt_tokens=count_words(body["prompt"]),
            include_usage=not body.get("stream") or bool(options.get("include_usage")), max_tokens=body.get("max_tokens"),
        )

    def _chunk(self, ex: Exchange, choices: list[JSON], usage: Any = None) -> JSON:
        payload: JSON = {"id": f"cmpl-{ex.response_id}", "object": "text_completion", "created": ex.created,
                         "model": ex.model, "choices": choices}
        if ex.include_usage:
            payload["usage"] = self._usage(usage)
        return payload

    @staticmethod
    def _text_choice(text: str, finish: str | None = None) -> JSON:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

    def opening(self, ex: Exchange) -> list[Event]:
        return []

    def content(self, ex: Exchange, chunk: Chunk) -> list[Event]:
        return [Event(self._chunk(ex, [self._text_choice(chunk.text)]), chunk=chunk)]

    def closing(self, ex: Exchange) -> list[Event]:
        events = [Event(self._chunk(ex, [self._text_choice("", "length" if ex.truncated else "stop")]))]
        if ex.include_usage:
            events.append(Event(self._chunk(ex, [], ex.final_usage)))
        return [*events, Event("[DONE]")]

    def full(self, ex: Exchange) -> JSON:
        choice = self._text_choice(ex.reasoning_text + ex.text, "length" if ex.truncated else "stop")
        payload: JSON = {"id": f"cmpl-{ex.response_id}", "object": "text_completion", "created": ex.created,
                         "model": ex.model, "choices": [choice]}
        if ex.final_usage is not None:
            usage = self._usage(ex.final_usage)
            usage.pop("prompt_tokens_details", None)
            payload["usage"] = usage
        return payload


def with_more_endpoints(sim: SimulatedProvider) -> SimulatedProvider:
    """Adds …/responses and …/completions below the OpenAI-compatible base (before start())."""
    base = base_url_for("", "openai_compatible")
    for fmt in (ResponsesFormat(), CompletionsFormat()):
        sim.app.router.add_post(base + fmt.generate_path, generate_handler(fmt))
    return sim


__all__ = ["CompletionsFormat", "Failure", "ResponsesFormat", "with_more_endpoints"]
