"""The runner measures every target of a run at once against the simulated provider: one result
per target in input order, faults kept to their own target, a unique prompt per request, live
progress through on_result, and a run that takes about as long as its slowest target."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import time
from collections import Counter

import pytest
from aiohttp import web

from benchmarks import providers
from benchmarks.providers import ErrorKind, Measurement, ProviderAdapter, StreamRequest
from benchmarks.runner import RunTarget, run_targets, run_targets_sync
from benchmarks.simulator import DEFAULT_PROFILES, ModelProfile, SimulatedProvider

KINDS = ("openai_compatible", "anthropic", "gemini")
PROMPT = "Say something about latency"
NONCE = re.compile(r"\[run ([0-9a-f]+-\d+)\] ")


class Simulator(SimulatedProvider):
    """The simulated provider, plus the raw body of every generation request it received (its
    own log keeps only a prompt's size, and uniqueness has to be checked on the wire)."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[str] = []
        self.peers: list[tuple[str, int]] = []  # the client's address and port, per request

        @web.middleware
        async def keep_body(request: web.Request, handler):
            if request.method == "POST":
                self.bodies.append(await request.text())  # aiohttp caches it for the handler
                self.peers.append(request.transport.get_extra_info("peername"))
            return await handler(request)

        self.app.middlewares.append(keep_body)

    def nonces(self) -> list[str]:
        return [match.group(1) for body in self.bodies if (match := NONCE.search(body))]


@pytest.fixture(scope="module")
def simulator():
    with Simulator() as sim:
        sim.set_profile("sim-300", ModelProfile(ttft_ms=300, inter_token_ms=1, output_tokens=5))
        sim.set_profile("sim-quick", ModelProfile(ttft_ms=20, inter_token_ms=1, output_tokens=5))
        sim.set_profile("sim-late", ModelProfile(ttft_ms=400, inter_token_ms=1, output_tokens=5))
        yield sim


def target(sim: SimulatedProvider, kind: str, model: str, *, key: str | None = None, unique_prompt: bool = True, **options) -> RunTarget:
    request = StreamRequest(base_url=sim.base_url_for(kind), api_key="sk-sim", model=model, prompt=PROMPT, **options)
    return RunTarget(
        key=key or f"{kind}/{model}", kind=kind, request=request, unique_prompt=unique_prompt, allow_private=True
    )  # the simulator listens on 127.0.0.1


def closed_port_target() -> tuple[RunTarget, socket.socket]:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))  # bound but never listening: connections are refused
    request = StreamRequest(base_url=f"http://127.0.0.1:{probe.getsockname()[1]}/v1", api_key="k", model="m", prompt=PROMPT)
    return RunTarget(key="closed-port", kind="openai_compatible", request=request, allow_private=True), probe


def test_a_run_of_three_kinds_and_several_models_gives_one_result_per_target_in_order(simulator):
    expected_tokens = {"sim-fast": 64, "sim-bundled": 64, "sim-reasoning": 80, "sim-no-usage": 64}
    targets = [target(simulator, kind, model) for model in expected_tokens for kind in KINDS]

    results = run_targets_sync(targets)

    assert [t for t, _ in results] == targets
    for t, m in results:
        assert m.success, (t.key, m.error_kind, m.error_message)
        assert m.model == t.request.model
        assert m.output_tokens == expected_tokens[t.request.model]
        assert m.ttft_ms >= DEFAULT_PROFILES[t.request.model].ttft_ms - 1


class ExplodingAdapter(ProviderAdapter):
    """An adapter with a bug: it raises something the shared stream() does not expect."""

    kind = "exploding"

    async def stream(self, client, request, *, prompt=None) -> Measurement:
        await asyncio.sleep(0.02)  # fail while the other targets are mid-stream
        raise RuntimeError("adapter bug")


def test_faults_in_some_targets_do_not_affect_the_others(simulator, monkeypatch, caplog):
    monkeypatch.setitem(providers.ADAPTERS, "exploding", ExplodingAdapter())
    closed, probe = closed_port_target()
    healthy = [target(simulator, kind, "sim-fast") for kind in KINDS]
    faulty = [
        target(simulator, "openai_compatible", "sim-500"),
        target(simulator, "anthropic", "sim-disconnect"),
        target(simulator, "gemini", "sim-stall", read_timeout_s=0.5),  # stalls for 30 s
        target(simulator, "openai_compatible", "sim-slow", total_timeout_s=0.8),  # needs ~4.4 s
        closed,
        RunTarget(key="exploding", kind="exploding", request=healthy[0].request, allow_private=True),
        RunTarget(key="unknown-kind", kind="carrier-pigeon", request=healthy[0].request, allow_private=True),
    ]
    targets = [x for pair in itertools.zip_longest(faulty, healthy) for x in pair if x is not None]

    with probe:
        results = dict((t.key, m) for t, m in run_targets_sync(targets))

    assert len(results) == len(targets)
    for t in healthy:  # unaffected: complete, with the profile's TTFT
        m = results[t.key]
        assert m.success and m.output_tokens == 64, (t.key, m.error_message)
        assert m.ttft_ms >= 49
    expected = {
        "openai_compatible/sim-500": (ErrorKind.SERVER_ERROR, 500),
        "anthropic/sim-disconnect": (ErrorKind.DISCONNECTED, 200),
        "gemini/sim-stall": (ErrorKind.READ_TIMEOUT, 200),
        "openai_compatible/sim-slow": (ErrorKind.TOTAL_TIMEOUT, 200),
        "closed-port": (ErrorKind.CONNECT_ERROR, None),
        "exploding": (ErrorKind.CONNECT_ERROR, None),
        "unknown-kind": (ErrorKind.CONNECT_ERROR, None),
    }
    for key, (kind, status) in expected.items():
        m = results[key]
        assert (m.success, m.error_kind, m.status_code) == (False, kind, status), (key, m.error_message)
        assert m.error_message
    assert "RuntimeError: adapter bug" in results["exploding"].error_message
    assert "carrier-pigeon" in results["unknown-kind"].error_message
    assert "exploding" in caplog.text  # the unexpected ones are logged, with their target


def test_every_request_sends_a_unique_prompt_with_the_original_text(simulator):
    simulator.bodies.clear()
    targets = [target(simulator, kind, "sim-quick", key=f"{kind}-{i}") for i in range(8) for kind in KINDS]

    run_targets_sync(targets)
    run_targets_sync(targets)  # a second run must not repeat the first run's prompts

    nonces = simulator.nonces()
    assert len(nonces) == len(simulator.bodies) == 2 * len(targets)
    assert len(set(nonces)) == len(nonces)
    assert all(f"] {PROMPT}" in body for body in simulator.bodies)


def test_unique_prompt_can_be_turned_off(simulator):
    simulator.bodies.clear()
    targets = [target(simulator, kind, "sim-quick", unique_prompt=False) for kind in KINDS]

    assert all(m.success for _, m in run_targets_sync(targets))
    assert simulator.nonces() == []
    assert all(PROMPT in body for body in simulator.bodies)


def test_prompt_for_puts_the_nonce_in_front():
    request = StreamRequest(base_url="http://x", api_key="k", model="m", prompt="Hello")
    assert RunTarget("a", "openai_compatible", request).prompt_for("3f9a2c-0") == "[run 3f9a2c-0] Hello"
    assert RunTarget("a", "openai_compatible", request, unique_prompt=False).prompt_for("3f9a2c-0") == "Hello"


@pytest.mark.parametrize("asynchronous", [False, True])
def test_on_result_is_called_once_per_target_as_each_finishes(simulator, asynchronous):
    targets = [target(simulator, "anthropic", "sim-late", key="late")]
    targets += [target(simulator, kind, "sim-quick", key=f"quick-{kind}") for kind in KINDS]
    calls: list[tuple[str, Measurement]] = []

    if asynchronous:
        async def on_result(t: RunTarget, m: Measurement) -> None:
            await asyncio.sleep(0)
            calls.append((t.key, m))
    else:
        def on_result(t: RunTarget, m: Measurement) -> None:
            calls.append((t.key, m))

    results = run_targets_sync(targets, on_result=on_result)

    assert Counter(key for key, _ in calls) == Counter(t.key for t in targets)
    assert calls[-1][0] == "late"  # first in the input, last to finish: reported when done
    assert {key: m for key, m in calls} == {t.key: m for t, m in results}


def test_a_failing_on_result_costs_no_result(simulator, caplog):
    targets = [target(simulator, kind, "sim-quick") for kind in KINDS]

    def on_result(t: RunTarget, m: Measurement) -> None:
        raise ValueError("progress bar broke")

    results = run_targets_sync(targets, on_result=on_result)

    assert [t for t, _ in results] == targets and all(m.success for _, m in results)
    assert "progress bar broke" in caplog.text


def test_targets_run_concurrently(simulator):
    """A correctness check with a generous bound, not a speed benchmark (see bench/)."""
    single = target(simulator, "openai_compatible", "sim-300")
    run_targets_sync([single])  # warm up imports and the simulator

    started = time.perf_counter()
    [(_, alone)] = run_targets_sync([single])
    single_s = time.perf_counter() - started
    targets = [target(simulator, KINDS[i % 3], "sim-300", key=str(i)) for i in range(30)]
    simulator.clear_requests()
    started = time.perf_counter()
    results = run_targets_sync(targets)
    run_s = time.perf_counter() - started

    assert alone.success and all(m.success for _, m in results)
    assert run_s < 3 * single_s, (run_s, single_s)  # sequential would be 30 x
    # All 30 were in flight together: the server had every request before any stream ended
    # (a target queued for a connection could only start once another one had finished).
    log = simulator.requests()
    assert len(log) == 30
    assert max(r["received_ns"] for r in log) < min(r["last_content_sent_ns"] for r in log)


def test_max_concurrency_bounds_the_run(simulator):
    names = [f"sim-300-{i}" for i in range(4)]
    for name in names:
        simulator.set_profile(name, ModelProfile(ttft_ms=300, inter_token_ms=1, output_tokens=5))
    targets = [target(simulator, "gemini", name) for name in names]
    simulator.clear_requests()

    results = run_targets_sync(targets, max_concurrency=2)

    assert all(m.success for _, m in results)
    log = {r["model"]: r for r in simulator.requests()}
    spans = [(log[n]["received_ns"], log[n]["last_content_sent_ns"]) for n in names]
    for start, _ in spans:  # never more than two streams open at once
        assert sum(1 for s, e in spans if s <= start <= e) <= 2
    # Waiting for a slot is not the provider's fault: a target's clock starts when it may go,
    # so its request reaches the server right after (not a whole wave, >= 300 ms, later).
    for _, m in results:
        assert (log[m.model]["received_ns"] - m.request_sent_ns) / 1e6 < 250

    with pytest.raises(ValueError, match="max_concurrency"):
        run_targets_sync(targets, max_concurrency=0)


def test_every_target_pays_for_its_own_connection_even_in_later_waves(simulator):
    """So no target's TTFT looks better for skipping a connection setup its peers paid for."""
    simulator.peers.clear()
    targets = [target(simulator, "openai_compatible", "sim-quick", key=str(i)) for i in range(3)]

    results = run_targets_sync(targets, max_concurrency=1)  # three waves of one

    assert all(m.success for _, m in results)
    assert len(set(simulator.peers)) == 3


def test_an_empty_run_returns_nothing():
    assert run_targets_sync([]) == []


def test_run_targets_can_be_awaited_inside_a_running_loop(simulator):
    async def main() -> list[tuple[RunTarget, Measurement]]:
        return await run_targets([target(simulator, "openai_compatible", "sim-quick")])

    [(_, m)] = asyncio.run(main())
    assert m.success


def test_no_repr_of_a_request_or_target_shows_its_api_key():
    """Tracebacks, logs and Sentry's captured locals print these dataclasses."""
    secret = "sk-live-never-in-a-repr-123"
    request = StreamRequest(base_url="https://llm.example.com/v1", api_key=secret, model="m", prompt=PROMPT)
    run_target = RunTarget(key="k", kind="openai_compatible", request=request)

    for shown in (repr(request), str(request), repr(run_target), str(run_target), repr([run_target])):
        assert secret not in shown
        assert "llm.example.com" in shown  # the rest is still there to debug with
    assert request.api_key == secret
    assert request == StreamRequest(base_url="https://llm.example.com/v1", api_key=secret, model="m", prompt=PROMPT)
