"""The provider adapters measure real streams from the simulated provider correctly, in all
three wire formats: TTFT against the server's own send stamps, token counts from usage (or an
estimate, recorded as such), TPS, chunking, and every fault as a result rather than a crash."""

from __future__ import annotations

import asyncio
import socket
import statistics
from dataclasses import replace

import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from benchmarks.providers import (
    ErrorKind,
    Measurement,
    StreamRequest,
    TokenCountSource,
    adapter_for,
)
from benchmarks.providers.transport import benchmark_client, translate
from benchmarks.simulator import DEFAULT_PROFILES, ModelProfile, SimulatedProvider

KINDS = ["openai_compatible", "anthropic", "gemini"]


@pytest.fixture(scope="module")
def simulator():
    with SimulatedProvider() as provider:
        yield provider


def measure(
    simulator: SimulatedProvider, kind: str, model: str, *, api_key: str = "sk-sim", **options
) -> Measurement:
    request = StreamRequest(
        base_url=simulator.base_url_for(kind),
        api_key=api_key,
        model=model,
        prompt="Say something about latency",
        max_tokens=512,
        **options,
    )

    async def run() -> Measurement:
        async with benchmark_client(1, allow_private=True) as client:  # the client runs use; the simulator is local
            return await adapter_for(kind).stream(client, request)

    return asyncio.run(run())


def truth_for(simulator: SimulatedProvider, measurement: Measurement) -> dict:
    """The simulator's log entry for this request (the most recent one for its model)."""
    entries = [entry for entry in simulator.requests() if entry["model"] == measurement.model]
    return entries[-1]


@pytest.mark.parametrize("kind", KINDS)
def test_a_healthy_stream_is_measured_against_the_servers_truth(simulator, kind):
    profile = DEFAULT_PROFILES[
        "sim-fast"
    ]  # 50 ms TTFT, 5 ms per token, 64 tokens, role chunk first
    errors_ms = []
    for _ in range(3):
        m = measure(simulator, kind, "sim-fast")
        truth = truth_for(simulator, m)
        errors_ms.append(m.ttft_ms - (truth["first_content_sent_ns"] - m.request_sent_ns) / 1e6)

        assert m.success and m.error_kind is None and m.status_code == 200
        assert m.output_tokens == profile.output_tokens
        assert m.token_count_source == TokenCountSource.USAGE
        assert m.chunk_count == profile.output_tokens
        assert m.input_tokens == truth["prompt_tokens"]
        # The role-only first chunk (sent at once) must not count: TTFT is the configured 50 ms.
        assert profile.ttft_ms - 1 <= m.ttft_ms <= profile.ttft_ms + 40
        assert m.tps == pytest.approx(1000 / profile.inter_token_ms, rel=0.25)
        assert m.total_latency_ms >= m.ttft_ms
        assert m.response_text.split()[:1] and len(m.response_text.split()) == profile.output_tokens
    # Measured minus true TTFT is what the client adds on top of the wire: small and never negative.
    assert -0.5 <= statistics.median(errors_ms) < 5


@pytest.mark.parametrize("kind", KINDS)
def test_bundled_chunks_still_give_true_token_counts_and_tps(simulator, kind):
    m = measure(simulator, kind, "sim-bundled")  # four tokens per chunk
    assert m.success
    assert m.output_tokens == 64
    assert m.chunk_count == 16
    # Counting chunks as tokens would report a quarter of the real speed.
    assert m.tps == pytest.approx(1000 / DEFAULT_PROFILES["sim-bundled"].inter_token_ms, rel=0.25)


@pytest.mark.parametrize("kind", KINDS)
def test_without_usage_tokens_are_estimated_over_the_whole_text_and_say_so(simulator, kind):
    m = measure(simulator, kind, "sim-no-usage")
    assert m.success
    assert m.token_count_source == TokenCountSource.ESTIMATE
    assert m.output_tokens == 64  # the simulator's tokens are words


@pytest.mark.parametrize("kind", KINDS)
def test_reasoning_counts_as_the_first_token_and_as_output(simulator, kind):
    m = measure(simulator, kind, "sim-reasoning")
    assert m.success
    assert m.reasoning_tokens == 16
    assert m.output_tokens == 64 + 16
    assert m.ttft_ms < DEFAULT_PROFILES["sim-reasoning"].ttft_ms + 40


def test_usage_repeated_on_every_chunk_keeps_the_last_report(simulator):
    simulator.set_profile(
        "sim-cumulative", replace(DEFAULT_PROFILES["sim-fast"], usage_on_every_chunk=True)
    )
    m = measure(simulator, "openai_compatible", "sim-cumulative")
    assert m.output_tokens == 64 and m.token_count_source == TokenCountSource.USAGE


def test_usage_on_a_chunk_that_also_has_choices_is_read(simulator):
    simulator.set_profile(
        "sim-usage-with-choices", replace(DEFAULT_PROFILES["sim-fast"], usage_with_choices=True)
    )
    m = measure(simulator, "openai_compatible", "sim-usage-with-choices")
    assert m.output_tokens == 64 and m.token_count_source == TokenCountSource.USAGE


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("model", "kind_expected", "status"),
    [
        ("sim-401", ErrorKind.AUTH, 401),
        ("sim-404", ErrorKind.NOT_FOUND, 404),
        ("sim-no-such-model", ErrorKind.NOT_FOUND, 404),
        ("sim-429", ErrorKind.RATE_LIMITED, 429),
        ("sim-500", ErrorKind.SERVER_ERROR, 500),
        ("sim-disconnect", ErrorKind.DISCONNECTED, 200),
        ("sim-malformed", ErrorKind.MALFORMED, 200),
        ("sim-error-event", ErrorKind.STREAM_ERROR, 200),
        ("sim-empty", ErrorKind.EMPTY, 200),
    ],
)
def test_every_fault_is_a_result_with_its_kind_status_and_message(
    simulator, kind, model, kind_expected, status
):
    m = measure(simulator, kind, model)
    assert not m.success
    assert m.error_kind == kind_expected
    assert m.status_code == status
    assert m.error_message
    assert m.tps is None
    if kind_expected == ErrorKind.RATE_LIMITED:
        assert m.retry_after_s == 7


@pytest.mark.parametrize("kind", KINDS)
def test_a_stall_between_chunks_is_a_read_timeout(simulator, kind):
    m = measure(simulator, kind, "sim-stall", read_timeout_s=0.3)
    assert (m.success, m.error_kind, m.status_code) == (False, ErrorKind.READ_TIMEOUT, 200)
    assert m.ttft_ms is not None  # content arrived before the stall


@pytest.mark.parametrize("kind", KINDS)
def test_a_slow_response_hits_the_total_timeout(simulator, kind):
    m = measure(simulator, kind, "sim-slow", total_timeout_s=0.3)
    assert (m.success, m.error_kind) == (False, ErrorKind.TOTAL_TIMEOUT)


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_key_is_an_auth_error_in_every_format(simulator, kind):
    m = measure(simulator, kind, "sim-fast", api_key="bad-key")
    assert (m.success, m.error_kind) == (False, ErrorKind.AUTH)


@pytest.mark.parametrize(
    "client_for", [lambda: benchmark_client(1, allow_private=True), httpx.AsyncClient], ids=["aiohttp", "httpcore"]
)
def test_a_closed_port_is_a_connect_error(client_for):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but never listening: connections are refused
        request = StreamRequest(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="k", model="m", prompt="p"
        )

        async def run() -> Measurement:
            async with client_for() as client:
                return await adapter_for("openai_compatible").stream(client, request)

        m = asyncio.run(run())
    assert (m.success, m.error_kind, m.status_code) == (False, ErrorKind.CONNECT_ERROR, None)


def test_an_unknown_provider_kind_is_refused():
    with pytest.raises(ValueError, match="Unknown provider kind"):
        adapter_for("carrier-pigeon")


def test_profiles_are_configurable_per_model(simulator):
    simulator.set_profile(
        "sim-custom", ModelProfile(ttft_ms=120, inter_token_ms=2, output_tokens=10)
    )
    m = measure(simulator, "anthropic", "sim-custom")
    assert m.output_tokens == 10
    assert 119 <= m.ttft_ms <= 160


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
        (
            aiohttp.ClientConnectorError(
                ConnectionKey("h", 1, False, True, None, None, None),
                ConnectionRefusedError(111, "refused"),
            ),
            httpx.ConnectError,
        ),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (aiohttp.ClientPayloadError("truncated"), httpx.ReadError),
    ],
)
def test_aiohttp_errors_become_the_httpx_errors_the_adapters_classify(error, expected):
    """httpx-aiohttp's own table turns a refused connection and a mid-stream disconnect into
    ConnectTimeout; ours keeps the three error kinds apart."""
    assert type(translate(error)) is expected
    assert translate(ValueError("not aiohttp")) is None
