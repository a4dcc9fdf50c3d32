"""pulse_sdk.usage: every answer shape read into Pulse's token conventions, the SDKs' own
objects and their dicts alike, and the same estimate the server makes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError

import pytest
from anthropic.types import Message, MessageDeltaUsage
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from pulse_sdk.instrument.providers import provider_for
from pulse_sdk.usage import (
    Usage,
    anthropic_reported,
    endpoint_of,
    estimate_tokens,
    from_anthropic,
    usage_of,
)

from benchmarks.providers.base import estimate_tokens as server_estimate
from gateway import wire

from .answers import ANTHROPIC_MESSAGE, COMPLETION, EMBEDDINGS_ANSWER, OPENAI_CHAT, RESPONSES_ANSWER


@pytest.mark.parametrize(("answer", "model_class", "expected", "endpoint"), [
    (OPENAI_CHAT, ChatCompletion, Usage(120, 30, 100, 10), "chat"),
    (COMPLETION, Completion, Usage(5, 2, 0, 0), "completions"),
    (EMBEDDINGS_ANSWER, CreateEmbeddingResponse, Usage(9, 0, 0, 0), "embeddings"),
    (RESPONSES_ANSWER, Response, Usage(50, 40, 10, 32), "responses"),
    (ANTHROPIC_MESSAGE, Message, Usage(125, 7, 100, 0), "messages"),
])
def test_objects_and_their_dicts_read_the_same(answer, model_class, expected, endpoint):
    as_object = model_class.construct(**answer) if model_class is Response else model_class.model_validate(answer)

    assert usage_of(answer) == usage_of(as_object) == expected
    assert endpoint_of(answer) == endpoint_of(as_object) == endpoint


def test_the_conventions_are_the_gateways():
    """The same answers, read by the gateway's own wire module, give the same counts."""
    chat = wire.openai_usage(OPENAI_CHAT)
    claude = wire.anthropic_usage(ANTHROPIC_MESSAGE["usage"])
    for mine, theirs in ((usage_of(OPENAI_CHAT), chat), (usage_of(ANTHROPIC_MESSAGE), claude)):
        assert (mine.input_tokens, mine.output_tokens, mine.cached_tokens) == (
            theirs.input_tokens, theirs.output_tokens, theirs.cached_tokens)


def test_anthropic_thinking_tokens_are_reasoning_tokens():
    usage = {"input_tokens": 10, "output_tokens": 300, "output_tokens_details": {"thinking_tokens": 250}}
    assert usage_of({"type": "message", "usage": usage}) == Usage(10, 300, 0, 250)


def test_a_stream_s_partial_anthropic_usage_keeps_what_message_start_said():
    reported = anthropic_reported({"input_tokens": 20, "cache_read_input_tokens": 100, "output_tokens": 1})
    reported.update(anthropic_reported(MessageDeltaUsage.construct(output_tokens=42, input_tokens=None)))
    assert from_anthropic(reported) == {"input_tokens": 120, "cached_tokens": 100, "output_tokens": 42}


@pytest.mark.parametrize("answer", [None, "text", 42, [], {}, {"usage": None}, {"usage": {"total_tokens": 3}},
                                    {"usage": {"prompt_tokens": -1}}, {"usage": {"prompt_tokens": True}}])
def test_no_usage_is_none(answer):
    assert usage_of(answer) is None


def test_counts_that_cannot_be_are_clamped():
    assert Usage(input_tokens=5, output_tokens=3, cached_tokens=9, reasoning_tokens=4) == Usage(5, 3, 5, 3)
    with pytest.raises(FrozenInstanceError):
        Usage().input_tokens = 3


@pytest.mark.parametrize("text", ["", "hello", "Hello, world!", "kalo mire  suta\n", "naïve café — ünïcode", "a+b=c; d"])
def test_the_estimate_is_the_servers(text):
    assert estimate_tokens(text) == server_estimate(text)


@pytest.mark.parametrize(("url", "default", "expected"), [
    ("https://api.anthropic.com", "anthropic", "anthropic"),
    ("https://eu.api.openai.com/v1", "openai", "openai"),
    ("https://API.GROQ.COM/openai/v1", "openai", "groq"),
    ("https://evilgroq.com/v1", "openai", "openai"),
    ("not a url", "anthropic", "anthropic"),
    ("", "openai", "openai"),
])
def test_provider_names_by_host(url, default, expected):
    assert provider_for(url, default) == expected


def test_instrument_is_callable_however_the_package_was_imported():
    """`pulse_sdk.instrument` is both a function and the package that defines it: importing the
    package (here through the decorator's module) must not take the function's place."""
    code = (
        "import openai, pulse_sdk, pulse_sdk.decorators, pulse_sdk.instrument.providers\n"
        "client = openai.OpenAI(api_key='sk', base_url='http://127.0.0.1:9/v1')\n"
        "assert pulse_sdk.instrument(client) is client\n"
        "from pulse_sdk import instrument, uninstrument\n"
        "assert instrument(client, tags={'a': 1}) is client and uninstrument(client) is client\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
