"""The simulated provider speaks each wire format, keeps time, tells the truth and fails on cue.

The client side is plain httpx plus a small spec-following SSE parser, i.e. what Pulse's adapters
will do, so a format slip here would also break them.
"""

from __future__ import annotations

import json
import math
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.simulator import (
    DEFAULT_PROFILES,
    ModelProfile,
    SimulatedProvider,
    load_profiles,
    pseudo_text,
)

KINDS = ("openai_compatible", "anthropic", "gemini")
PROMPT = "say something about latency please"  # 5 words, so 5 prompt tokens
QUICK = ModelProfile(ttft_ms=5, inter_token_ms=1, output_tokens=12)
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- client helpers


@dataclass
class SSE:
    event: str
    data: str
    arrived_ns: int = 0

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(lines: Iterable[str]) -> Iterator[SSE]:
    """Server-sent events by the WHATWG rules every SSE client follows (one `data:` line each)."""
    event, data = "", []
    for line in lines:
        if not line:
            if data:
                yield SSE(event or "message", "\n".join(data))
            event, data = "", []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def request_for(
    sim: SimulatedProvider, kind: str, model: str, *, stream: bool = True, key: str = "test-key",
    **extra: Any,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and body the way each provider's client sends them (no auth if key="")."""
    url, headers, body = _request_parts(sim.base_url_for(kind), kind, model, stream, key)
    if not key:
        headers = {name: value for name, value in headers.items() if name == "anthropic-version"}
    return url, headers, body | extra


def _request_parts(
    base: str, kind: str, model: str, stream: bool, key: str
) -> tuple[str, dict[str, str], dict[str, Any]]:
    messages = [{"role": "user", "content": PROMPT}]
    if kind == "openai_compatible":
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return f"{base}/chat/completions", {"Authorization": f"Bearer {key}"}, body
    if kind == "anthropic":
        body = {"model": model, "max_tokens": 1024, "messages": messages, "stream": stream}
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        return f"{base}/v1/messages", headers, body
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    return f"{base}/v1beta/models/{model}:{action}", {"x-goog-api-key": key}, body


@dataclass
class Streamed:
    response: httpx.Response
    events: list[SSE]
    record: dict[str, Any]


def record_of(sim: SimulatedProvider, response: httpx.Response) -> dict[str, Any]:
    request_id = int(response.headers["x-pulse-sim-request-id"])
    return next(r for r in sim.requests() if r["id"] == request_id)


def drain(response: httpx.Response, into: list[SSE]) -> None:
    """Collect events as they arrive (kept even if the stream then breaks)."""
    for event in parse_sse(response.iter_lines()):
        event.arrived_ns = time.time_ns()
        into.append(event)


def stream(client: httpx.Client, sim: SimulatedProvider, kind: str, model: str, **extra: Any) -> Streamed:
    url, headers, body = request_for(sim, kind, model, **extra)
    events: list[SSE] = []
    with client.stream("POST", url, headers=headers, json=body) as response:
        drain(response, events)
    return Streamed(response, events, record_of(sim, response))


def post(client: httpx.Client, sim: SimulatedProvider, kind: str, model: str, **extra: Any) -> httpx.Response:
    url, headers, body = request_for(sim, kind, model, **extra)
    return client.post(url, headers=headers, json=body)


def deltas(kind: str, event: SSE) -> tuple[str, str]:
    """(text, reasoning) carried by one event, read the way each provider's SDK reads it."""
    if event.data == "[DONE]" or event.event == "error":
        return "", ""
    payload = event.json()
    if kind == "openai_compatible":
        delta = payload["choices"][0]["delta"] if payload.get("choices") else {}
        return delta.get("content") or "", delta.get("reasoning_content") or ""
    if kind == "anthropic":
        delta = payload.get("delta", {}) if payload["type"] == "content_block_delta" else {}
        return delta.get("text", ""), delta.get("thinking", "")
    if "error" in payload:
        return "", ""
    parts = payload["candidates"][0]["content"]["parts"]
    text = "".join(p["text"] for p in parts if not p.get("thought"))
    return text, "".join(p["text"] for p in parts if p.get("thought"))


def content_events(kind: str, events: list[SSE]) -> list[SSE]:
    return [e for e in events if e.data != MALFORMED and any(deltas(kind, e))]


def text_of(kind: str, events: list[SSE]) -> str:
    return "".join(deltas(kind, e)[0] for e in content_events(kind, events))


def reasoning_of(kind: str, events: list[SSE]) -> str:
    return "".join(deltas(kind, e)[1] for e in content_events(kind, events))


def sent_ns(event: SSE) -> int:
    return event.json()["pulse_sim"]["sent_ns"]


MALFORMED = "{not json"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as provider:
        yield provider


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


# ------------------------------------------------------------------------- wire formats


def test_openai_stream_is_a_valid_chat_completion_stream(sim, client):
    result = stream(client, sim, "openai_compatible", "sim-fast")
    assert result.response.status_code == 200
    assert result.response.headers["content-type"].startswith("text/event-stream")
    assert result.events[-1].data == "[DONE]"
    chunks = [e.json() for e in result.events[:-1]]
    assert {(c["object"], c["id"]) for c in chunks} == {("chat.completion.chunk", chunks[0]["id"])}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert text_of("openai_compatible", result.events) == pseudo_text(0, 64)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert [c["usage"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)  # null until the end
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 5, "completion_tokens": 64, "total_tokens": 69,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_anthropic_stream_follows_the_messages_event_flow(sim, client):
    result = stream(client, sim, "anthropic", "sim-fast")
    names = [e.event for e in result.events]
    assert all(e.event == e.json()["type"] for e in result.events)
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[3:-3] == ["content_block_delta"] * 64
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start, delta = result.events[0].json(), result.events[-2].json()
    assert start["message"]["content"] == [] and start["message"]["usage"]["input_tokens"] == 5
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"] == {"output_tokens": 64}
    assert text_of("anthropic", result.events) == pseudo_text(0, 64)


def test_gemini_stream_is_crlf_framed_with_usage_on_the_last_chunk(sim, client):
    url, headers, body = request_for(sim, "gemini", "sim-fast")
    raw = client.post(url, headers=headers, json=body).text
    result = stream(client, sim, "gemini", "sim-fast")
    assert raw.count("\r\n\r\n") == len(result.events)
    payloads = [e.json() for e in result.events]
    assert all("usageMetadata" not in p for p in payloads[:-1])
    last = payloads[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == {"promptTokenCount": 5, "candidatesTokenCount": 64, "totalTokenCount": 69}
    assert text_of("gemini", result.events) == pseudo_text(0, 64)


@pytest.mark.parametrize("kind", KINDS)
def test_every_json_event_carries_an_ordered_truth_stamp(sim, client, kind):
    result = stream(client, sim, kind, "sim-fast")
    stamps = [e.json()["pulse_sim"] for e in result.events if e.data != "[DONE]"]
    assert [s["seq"] for s in stamps] == list(range(len(stamps)))
    assert [s["sent_ns"] for s in stamps] == sorted(s["sent_ns"] for s in stamps)
    assert int(result.response.headers["x-pulse-sim-received-ns"]) == result.record["received_ns"]
    assert result.record["received_ns"] < stamps[0]["sent_ns"]


@pytest.mark.parametrize("kind", KINDS)
def test_non_streaming_requests_get_the_whole_answer(sim, client, kind):
    response = post(client, sim, kind, "sim-reasoning", stream=False)
    body = response.json()
    if kind == "openai_compatible":
        message = body["choices"][0]["message"]
        text, reasoning, output = message["content"], message["reasoning_content"], body["usage"]["completion_tokens"]
    elif kind == "anthropic":
        (thinking, answer), output = body["content"], body["usage"]["output_tokens"]
        text, reasoning = answer["text"], thinking["thinking"]
    else:
        thought, answer = body["candidates"][0]["content"]["parts"]
        meta = body["usageMetadata"]
        text, reasoning = answer["text"], thought["text"]
        output = meta["candidatesTokenCount"] + meta["thoughtsTokenCount"]
    assert (text, reasoning, output) == (pseudo_text(16, 64), pseudo_text(0, 16), 80)
    record = record_of(sim, response)
    assert (record["stream"], record["chunks"], record["output_tokens"], record["completed"]) == (False, 1, 64, True)


@pytest.mark.parametrize("kind", KINDS)
def test_models_endpoint_lists_the_profiles(sim, client, kind):
    base = sim.base_url_for(kind)
    _, headers, _ = request_for(sim, kind, "sim-fast")
    path = {"openai_compatible": "/models", "anthropic": "/v1/models", "gemini": "/v1beta/models"}[kind]
    body = client.get(base + path, headers=headers).json()
    names = [m["name"] for m in body["models"]] if kind == "gemini" else [m["id"] for m in body["data"]]
    expected = [f"models/{n}" for n in sorted(DEFAULT_PROFILES)] if kind == "gemini" else sorted(DEFAULT_PROFILES)
    assert names == expected


# ------------------------------------------------------------------------------ timing


@pytest.mark.parametrize("kind", KINDS)
def test_ttft_and_pacing_are_true_to_the_profile(sim, client, kind):
    """Medians of five runs, so one scheduler hiccup on a busy 2-core box can't fail it."""
    sim.set_profile("t-timing", ModelProfile(ttft_ms=40, inter_token_ms=4, output_tokens=20))
    ttft_errors, end_errors, delivery = [], [], []
    for _ in range(5):
        result = stream(client, sim, kind, "t-timing")
        record, first = result.record, content_events(kind, result.events)[0]
        assert sent_ns(first) == record["first_content_sent_ns"]
        ttft_errors.append((record["first_content_sent_ns"] - record["received_ns"]) / 1e6 - 40)
        end_errors.append((record["last_content_sent_ns"] - record["received_ns"]) / 1e6 - (40 + 19 * 4))
        delivery.append((first.arrived_ns - sent_ns(first)) / 1e6)
    assert min(ttft_errors) >= -0.5  # never early (a little slack: wall vs monotonic clock)
    assert statistics.median(ttft_errors) <= 3
    assert statistics.median(end_errors) <= 3  # absolute deadlines: no drift over 20 chunks
    assert statistics.median(delivery) <= 5  # flushed at once, not buffered


def test_openai_role_chunk_goes_out_early_and_is_not_the_first_token(sim, client):
    result = stream(client, sim, "openai_compatible", "sim-fast")
    role, first = result.events[0], content_events("openai_compatible", result.events)[0]
    assert deltas("openai_compatible", role) == ("", "")
    assert sent_ns(role) < sent_ns(first) == result.record["first_content_sent_ns"]


def test_openai_without_role_chunk_puts_the_role_on_the_first_token(sim, client):
    sim.set_profile("t-no-role", replace(QUICK, role_chunk_first=False))
    result = stream(client, sim, "openai_compatible", "t-no-role")
    assert result.events[0].json()["choices"][0]["delta"] == {"role": "assistant", "content": pseudo_text(0, 1)}


# ---------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("name", "tokens", "per_chunk"), [("sim-bundled", 64, 4), ("t-bundle-10", 10, 4)])
def test_bundling_sends_ceil_n_over_k_chunks(sim, client, kind, name, tokens, per_chunk):
    sim.set_profile("t-bundle-10", replace(QUICK, output_tokens=10, tokens_per_chunk=4))
    result = stream(client, sim, kind, name)
    sizes = [len(deltas(kind, e)[0].split()) for e in content_events(kind, result.events)]
    assert len(sizes) == math.ceil(tokens / per_chunk) == result.record["chunks"]
    assert sizes[:-1] == [per_chunk] * (len(sizes) - 1) and sum(sizes) == tokens
    assert text_of(kind, result.events) == pseudo_text(0, tokens)
    assert result.record["output_tokens"] == tokens


@pytest.mark.parametrize("kind", KINDS)
def test_max_tokens_truncates_with_the_formats_finish_reason(sim, client, kind):
    limit = {"openai_compatible": {"max_tokens": 3}, "anthropic": {"max_tokens": 3},
             "gemini": {"generationConfig": {"maxOutputTokens": 3}}}[kind]
    result = stream(client, sim, kind, "sim-fast", **limit)
    assert text_of(kind, result.events) == pseudo_text(0, 3)
    payloads = [e.json() for e in result.events if e.data != "[DONE]"]
    reasons = {"openai_compatible": lambda p: p["choices"][0]["finish_reason"] if p["choices"] else None,
               "anthropic": lambda p: p.get("delta", {}).get("stop_reason"),
               "gemini": lambda p: p["candidates"][0].get("finishReason")}[kind]
    assert {"length", "max_tokens", "MAX_TOKENS"} & {reasons(p) for p in payloads}


# ------------------------------------------------------------------------------- usage


def test_openai_sends_no_usage_unless_include_usage(sim, client):
    result = stream(client, sim, "openai_compatible", "sim-fast", stream_options=None)
    assert not any("usage" in e.json() for e in result.events[:-1])


def test_openai_cumulative_usage_on_every_chunk(sim, client):
    sim.set_profile("t-usage-every", replace(QUICK, usage_on_every_chunk=True))
    result = stream(client, sim, "openai_compatible", "t-usage-every")
    content = content_events("openai_compatible", result.events)
    assert [e.json()["usage"]["completion_tokens"] for e in content] == list(range(1, 13))
    assert result.events[-2].json()["usage"]["completion_tokens"] == 12  # the last one wins


def test_openai_usage_with_choices_rides_on_the_finish_chunk(sim, client):
    sim.set_profile("t-usage-choices", replace(QUICK, usage_with_choices=True))
    result = stream(client, sim, "openai_compatible", "t-usage-choices")
    chunks = [e.json() for e in result.events[:-1]]
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 12


def test_gemini_usage_with_choices_folds_into_the_last_text_chunk(sim, client):
    sim.set_profile("t-usage-choices", replace(QUICK, usage_with_choices=True))
    result = stream(client, sim, "gemini", "t-usage-choices")
    last = result.events[-1].json()
    assert len(result.events) == 12 and last["candidates"][0]["finishReason"] == "STOP"
    assert last["candidates"][0]["content"]["parts"][0]["text"] == pseudo_text(11, 1)
    assert last["usageMetadata"]["candidatesTokenCount"] == 12


@pytest.mark.parametrize("kind", KINDS)
def test_no_usage_profile_sends_no_usage(sim, client, kind):
    result = stream(client, sim, kind, "sim-no-usage")
    payloads = [e.json() for e in result.events if e.data != "[DONE]"]
    if kind == "anthropic":
        assert "usage" not in payloads[0]["message"] and "usage" not in payloads[-2]
    else:
        assert not any(p.get("usage") or p.get("usageMetadata") for p in payloads)
    assert len(text_of(kind, result.events).split()) == 64  # a tokenizer fallback counts words


USAGE_READERS = {
    "openai_compatible": lambda events: events[-2].json()["usage"],
    "anthropic": lambda events: {"start": events[0].json()["message"]["usage"], "end": events[-2].json()["usage"]},
    "gemini": lambda events: events[-1].json()["usageMetadata"],
}


@pytest.mark.parametrize("kind", KINDS)
def test_reasoning_comes_first_and_is_counted(sim, client, kind):
    result = stream(client, sim, kind, "sim-reasoning")
    assert reasoning_of(kind, result.events) == pseudo_text(0, 16)
    assert text_of(kind, result.events) == pseudo_text(16, 64)
    kinds = ["text" if deltas(kind, e)[0] else "reasoning" for e in content_events(kind, result.events)]
    assert kinds == ["reasoning"] * 16 + ["text"] * 64
    usage = USAGE_READERS[kind](result.events)
    if kind == "openai_compatible":
        assert (usage["completion_tokens"], usage["completion_tokens_details"]["reasoning_tokens"]) == (80, 16)
    elif kind == "anthropic":
        assert usage["end"] == {"output_tokens": 80}
    else:
        assert (usage["candidatesTokenCount"], usage["thoughtsTokenCount"], usage["totalTokenCount"]) == (64, 16, 85)
    record = result.record
    assert (record["reasoning_tokens"], record["output_tokens"]) == (16, 64)
    assert record["first_content_sent_ns"] < record["first_text_sent_ns"]


def test_anthropic_thinking_block_closes_with_a_signature_before_the_text_block(sim, client):
    result = stream(client, sim, "anthropic", "sim-reasoning")
    blocks = [(e.event, e.json().get("index"), e.json().get("delta", {}).get("type")) for e in result.events]
    stop_thinking = blocks.index(("content_block_stop", 0, None))
    assert blocks[stop_thinking - 1] == ("content_block_delta", 0, "signature_delta")
    assert blocks[stop_thinking + 1] == ("content_block_start", 1, None)
    assert result.events[2].json()["content_block"]["type"] == "thinking"


@pytest.mark.parametrize("kind", KINDS)
def test_cached_prompt_tokens_are_reported_the_formats_way(sim, client, kind):
    sim.set_profile("t-cached", replace(QUICK, cached_tokens=3))
    usage = USAGE_READERS[kind](stream(client, sim, kind, "t-cached").events)
    if kind == "openai_compatible":
        assert (usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]) == (5, 3)
    elif kind == "anthropic":  # Anthropic's input_tokens leave cache reads out
        assert (usage["start"]["input_tokens"], usage["start"]["cache_read_input_tokens"]) == (2, 3)
    else:
        assert (usage["promptTokenCount"], usage["cachedContentTokenCount"]) == (5, 3)


# ------------------------------------------------------------------------------ faults

ERROR_LABELS = {
    "openai_compatible": lambda body: body["error"]["code"] or body["error"]["type"],
    "anthropic": lambda body: body["error"]["type"],
    "gemini": lambda body: body["error"]["status"],
}
STATUS_FAULTS = {
    "sim-401": (401, ("invalid_api_key", "authentication_error", "UNAUTHENTICATED")),
    "sim-404": (404, ("model_not_found", "not_found_error", "NOT_FOUND")),
    "sim-429": (429, ("rate_limit_exceeded", "rate_limit_error", "RESOURCE_EXHAUSTED")),
    "sim-500": (500, ("server_error", "api_error", "INTERNAL")),
    "no-such-model": (404, ("model_not_found", "not_found_error", "NOT_FOUND")),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model", STATUS_FAULTS)
def test_status_faults_return_the_providers_error_body(sim, client, kind, model):
    response = post(client, sim, kind, model)
    status, labels = STATUS_FAULTS[model]
    assert response.status_code == status
    assert ERROR_LABELS[kind](response.json()) == labels[KINDS.index(kind)]
    assert response.headers.get("retry-after") == ("7" if status == 429 else None)
    if status == 404:
        assert model in response.text


def test_gemini_429_also_carries_retry_info(sim, client):
    details = post(client, sim, "gemini", "sim-429").json()["error"]["details"]
    assert details == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]


@pytest.mark.parametrize(
    ("kind", "bad_status", "bad_label", "missing_status"),
    [("openai_compatible", 401, "invalid_api_key", 401),
     ("anthropic", 401, "authentication_error", 401),
     ("gemini", 400, "INVALID_ARGUMENT", 403)],  # the real Gemini API: 400 API_KEY_INVALID
)
def test_bad_and_missing_keys_fail_like_the_real_provider(sim, client, kind, bad_status, bad_label, missing_status):
    bad = post(client, sim, kind, "sim-fast", key="bad-key")
    assert (bad.status_code, ERROR_LABELS[kind](bad.json())) == (bad_status, bad_label)
    assert post(client, sim, kind, "sim-fast", key="").status_code == missing_status


def test_anthropic_requires_the_version_header(sim, client):
    url, headers, body = request_for(sim, "anthropic", "sim-fast")
    del headers["anthropic-version"]
    response = client.post(url, headers=headers, json=body)
    assert response.status_code == 400 and "anthropic-version" in response.json()["error"]["message"]


@pytest.mark.parametrize("kind", KINDS)
def test_flaky_fails_every_third_request_to_the_model(client, kind):
    with SimulatedProvider() as fresh:  # its own per-model counter
        fresh.set_profile("sim-flaky", replace(DEFAULT_PROFILES["sim-flaky"], output_tokens=2))
        statuses = [post(client, fresh, kind, "sim-flaky", stream=False).status_code for _ in range(6)]
    assert statuses == [200, 200, 503, 200, 200, 503]


@pytest.mark.parametrize("kind", KINDS)
def test_disconnect_breaks_the_stream_after_three_chunks(sim, client, kind):
    url, headers, body = request_for(sim, kind, "sim-disconnect")
    events: list[SSE] = []
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with client.stream("POST", url, headers=headers, json=body) as response:
            drain(response, events)
    assert len(content_events(kind, events)) == 3
    record = record_of(sim, response)
    assert (record["fault"], record["chunks"], record["output_tokens"], record["completed"]) == (
        "disconnect_mid_stream", 3, 3, False)


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_chunk_appears_after_three_chunks(sim, client, kind):
    result = stream(client, sim, kind, "sim-malformed")
    position = next(i for i, e in enumerate(result.events) if e.data == MALFORMED)
    with pytest.raises(json.JSONDecodeError):
        result.events[position].json()
    assert len(content_events(kind, result.events[:position])) == 3
    assert len(text_of(kind, result.events).split()) == 16  # the stream then goes on
    assert result.record["fault"] == "malformed_chunk"


@pytest.mark.parametrize("kind", KINDS)
def test_stall_outlasts_a_short_read_timeout(sim, kind):
    url, headers, body = request_for(sim, kind, "sim-stall")
    events: list[SSE] = []
    with httpx.Client(timeout=httpx.Timeout(10, read=0.3)) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            with impatient.stream("POST", url, headers=headers, json=body) as response:
                drain(response, events)
    assert len(content_events(kind, events)) == 3
    assert record_of(sim, response)["completed"] is False


@pytest.mark.parametrize("kind", KINDS)
def test_error_event_ends_the_stream_in_the_formats_way(sim, client, kind):
    result = stream(client, sim, kind, "sim-error-event")
    last = result.events[-1]
    assert len(content_events(kind, result.events)) == 3
    if kind == "anthropic":
        assert last.event == "error" and last.json()["error"]["type"] == "overloaded_error"
    elif kind == "openai_compatible":
        assert last.json()["error"]["type"] == "server_error"  # and no [DONE]
    else:
        assert (last.json()["error"]["code"], last.json()["error"]["status"]) == (500, "INTERNAL")
    assert result.record["completed"] is False


@pytest.mark.parametrize("kind", KINDS)
def test_empty_stream_is_200_with_no_events(sim, client, kind):
    response = post(client, sim, kind, "sim-empty")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"].startswith("text/event-stream")


# --------------------------------------------------------------------- log and profiles


def test_request_log_over_http_records_what_was_sent(sim, client):
    log_url = f"{sim.base_url}/_sim/requests"
    assert client.delete(log_url).status_code == 204
    stream(client, sim, "anthropic", "sim-bundled")
    (entry,) = client.get(log_url).json()
    assert {k: entry[k] for k in ("kind", "model", "status", "prompt_tokens", "output_tokens", "reasoning_tokens", "chunks")} == {
        "kind": "anthropic", "model": "sim-bundled", "status": 200, "prompt_tokens": 5,
        "output_tokens": 64, "reasoning_tokens": 0, "chunks": 16,
    }
    assert entry["received_ns"] < entry["first_content_sent_ns"] < entry["last_content_sent_ns"]
    client.delete(log_url)
    assert client.get(log_url).json() == []


def test_profiles_load_from_a_json_file(tmp_path, client):
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps({"house-model": {"ttft_ms": 1, "inter_token_ms": 1, "output_tokens": 3,
                                                "fault": {"kind": "status", "status_code": 429, "retry_after": 2}}}))
    profiles = load_profiles(path)
    assert profiles["house-model"].fault.retry_after == 2
    with SimulatedProvider(profiles) as custom:
        response = post(client, custom, "openai_compatible", "house-model")
        assert (response.status_code, response.headers["retry-after"]) == (429, "2")
        assert post(client, custom, "openai_compatible", "sim-fast").status_code == 404


def test_simulate_provider_command_serves_until_stopped(tmp_path):
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps({"house-model": {"output_tokens": 3}}))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-u", "manage.py", "simulate_provider", "--port", str(port), "--profiles", str(path)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner: list[str] = []
        for line in process.stdout:  # printed once the server listens: this is the readiness wait
            banner.append(line)
            if line.startswith("models:"):
                break
        assert f"anthropic          http://127.0.0.1:{port}/anthropic\n" in banner
        assert "house-model" in banner[-1] and "sim-fast" in banner[-1]
        models = httpx.get(f"http://127.0.0.1:{port}/openai/v1/models", headers={"Authorization": "Bearer k"})
        assert "house-model" in [m["id"] for m in models.json()["data"]]
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
