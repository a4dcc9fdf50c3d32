"""Fixtures for automatic capture: the official `openai` and `anthropic` clients pointed at the
simulated provider (with the Responses and legacy completions endpoints added, upstream.py),
instrumented to record into the live Pulse of tests/sdk/conftest.py.

    def test_chat(sdk, openai_client, pulse):
        openai_client.chat.completions.create(model="sim-fast", messages=HELLO)
        [event] = sdk.events(1)          # flushed, then read back from the database

`sdk` holds a `pulse_sdk.Client` on the live server, which the instrumented clients record
with; `sdk.events(n)` flushes it and reads the project's events back.
The gateway fixtures (`gateway_world`: a live gateway process routed to this simulator) come
from tests/gateway/conftest.py.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pulse_sdk
import pytest

from benchmarks.simulator import SimulatedProvider
from costs.models import CostEvent
from tests.gateway.conftest import SIM_KEY, gateway, gateway_server, gateway_world, simulator  # noqa: F401
from tests.sdk.conftest import LivePulse

from .upstream import with_more_endpoints

HELLO = [{"role": "user", "content": "say hello to pulse"}]  # 4 words: the simulator's prompt_tokens


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[SimulatedProvider]:
    """The session's simulator, serving …/responses and …/completions as well (for every test
    under this directory, the gateway's included)."""
    with with_more_endpoints(SimulatedProvider()) as sim:
        yield sim


# -- what records ---------------------------------------------------------------------------------


class Recorder:
    """The SDK client the instrumented calls record with, and what it stored."""

    def __init__(self, pulse: LivePulse) -> None:
        self.pulse = pulse
        self.client = pulse_sdk.Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=0.05)

    def events(self, count: int, *, deadline_s: float = 10.0) -> list[CostEvent]:
        """Flush, then the project's events, oldest first; waits (up to a deadline) for `count`
        of them (records that come from a background task), then collects garbage (streams
        dropped unfinished are recorded then) and flushes again, so an extra record shows."""
        deadline = time.monotonic() + deadline_s
        while True:
            self.client.flush()
            events = list(self.pulse.events().order_by("occurred_at", "id"))
            if len(events) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        gc.collect()
        assert self.client.flush(10.0)
        stats = self.client.stats()
        assert (stats.rejected, stats.failed, stats.dropped) == (0, 0, 0), stats  # every event stored
        return list(self.pulse.events().order_by("occurred_at", "id"))

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def sdk(pulse: LivePulse) -> Iterator[Recorder]:
    recorder = Recorder(pulse)
    yield recorder
    recorder.close()


# -- the provider clients -------------------------------------------------------------------------


@pytest.fixture
def sim(simulator: SimulatedProvider) -> SimulatedProvider:  # noqa: F811
    return simulator


def sim_openai(sim: SimulatedProvider, *, is_async: bool = False, **options: Any) -> Any:
    """The official client on the simulator, no retries of its own (a test sees each answer)."""
    options = {"base_url": sim.base_url_for("openai_compatible"), "api_key": SIM_KEY, "max_retries": 0,
               "timeout": 30.0, **options}
    return (openai.AsyncOpenAI if is_async else openai.OpenAI)(**options)


def sim_anthropic(sim: SimulatedProvider, *, is_async: bool = False, **options: Any) -> Any:
    # anthropic 2.x sends its key as a Bearer token; the simulator checks x-api-key as the real API does.
    options = {"base_url": sim.base_url_for("anthropic"), "api_key": SIM_KEY, "max_retries": 0, "timeout": 30.0,
               "default_headers": {"x-api-key": SIM_KEY}, **options}
    return (anthropic.AsyncAnthropic if is_async else anthropic.Anthropic)(**options)


@pytest.fixture
def openai_client(sim: SimulatedProvider, sdk: Recorder) -> Iterator[openai.OpenAI]:
    with sim_openai(sim) as client:
        yield pulse_sdk.instrument(client, pulse=sdk.client)


@pytest.fixture
def async_openai_client(sim: SimulatedProvider, sdk: Recorder) -> openai.AsyncOpenAI:
    return pulse_sdk.instrument(sim_openai(sim, is_async=True), pulse=sdk.client)


@pytest.fixture
def anthropic_client(sim: SimulatedProvider, sdk: Recorder) -> Iterator[anthropic.Anthropic]:
    with sim_anthropic(sim) as client:
        yield pulse_sdk.instrument(client, pulse=sdk.client)


@pytest.fixture
def async_anthropic_client(sim: SimulatedProvider, sdk: Recorder) -> anthropic.AsyncAnthropic:
    return pulse_sdk.instrument(sim_anthropic(sim, is_async=True), pulse=sdk.client)


# -- without a server -----------------------------------------------------------------------------


class Tracked:
    """A `pulse=` that keeps what it is given: for tests about the fields themselves."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def track(self, **fields: Any) -> str:
        self.events.append(fields)
        return uuid.uuid4().hex


@pytest.fixture
def tracked() -> Tracked:
    return Tracked()

