"""The circuit breaker per upstream, shared in Redis: it opens after consecutive failures, skips
the upstream while open, lets one probe through after the cool-down (half-open), closes on the
probe's success and reopens on its failure. No test sleeps: a cool-down is made to have passed by
moving the breaker's opening time back."""

from __future__ import annotations

import time
from dataclasses import replace

import openai
import pytest
from django.conf import settings

from benchmarks.simulator import DEFAULT_PROFILES, Fault
from gateway import breaker
from gateway.redis import sync_client

HELLO = [{"role": "user", "content": "hello"}]
FAST = DEFAULT_PROFILES["sim-fast"]
BROKEN = replace(FAST, fault=Fault("status", status_code=500))


@pytest.fixture
def flaky_route(gateway_world, simulator):
    """Route `resilient`: sim-broken first (failing until a test heals it), sim-fast second."""
    simulator.set_profile("sim-broken", BROKEN)
    conn = gateway_world.openai_connection
    gateway_world.route("resilient", [(conn, "sim-broken"), (conn, "sim-fast")])
    return conn


def calls(client: openai.OpenAI, count: int) -> list[str]:
    upstreams = []
    for _ in range(count):
        raw = client.chat.completions.with_raw_response.create(model="resilient", messages=HELLO)
        upstreams.append(raw.headers["x-pulse-upstream"])
    return upstreams


def called(simulator) -> list[str]:
    return [request["model"] for request in simulator.requests()]


def cool_down_passed(connection, model: str) -> None:
    """Move the breaker's opening back past the cool-down, as if the time had passed."""
    past = time.time() - settings.GATEWAY_BREAKER_COOLDOWN_S - 1
    sync_client().hset(breaker.breaker_key(connection.id, model), "opened_at", repr(past))


def test_the_breaker_opens_after_consecutive_failures_and_the_upstream_is_skipped(flaky_route, openai_client, simulator):
    failures = settings.GATEWAY_BREAKER_FAILURES

    assert calls(openai_client, failures) == ["sim-openai/sim-fast"] * failures
    assert breaker.state_of(flaky_route.id, "sim-broken").state == breaker.OPEN
    simulator.clear_requests()

    calls(openai_client, 3)

    assert called(simulator) == ["sim-fast"] * 3  # the open upstream is not even tried
    [opened] = breaker.transitions(flaky_route.id, "sim-broken")
    assert (opened["from"], opened["to"]) == ("closed", "open") and "HTTP 500" in opened["reason"]


def test_a_success_in_between_resets_the_count(flaky_route, openai_client, simulator):
    calls(openai_client, settings.GATEWAY_BREAKER_FAILURES - 1)
    simulator.set_profile("sim-broken", FAST)
    calls(openai_client, 1)
    simulator.set_profile("sim-broken", BROKEN)
    calls(openai_client, settings.GATEWAY_BREAKER_FAILURES - 1)

    assert breaker.state_of(flaky_route.id, "sim-broken") == breaker.Breaker(
        breaker.CLOSED, settings.GATEWAY_BREAKER_FAILURES - 1)


def test_after_the_cool_down_one_probe_goes_through_and_a_failed_probe_reopens(flaky_route, openai_client, simulator):
    calls(openai_client, settings.GATEWAY_BREAKER_FAILURES)
    cool_down_passed(flaky_route, "sim-broken")
    simulator.clear_requests()

    calls(openai_client, 2)

    assert called(simulator) == ["sim-broken", "sim-fast", "sim-fast"]  # one probe, then open again
    assert [(t["from"], t["to"]) for t in breaker.transitions(flaky_route.id, "sim-broken")] == [
        ("half_open", "open"), ("open", "half_open"), ("closed", "open")]


def test_a_successful_probe_closes_the_breaker(flaky_route, openai_client, simulator):
    calls(openai_client, settings.GATEWAY_BREAKER_FAILURES)
    simulator.set_profile("sim-broken", FAST)  # it recovered
    cool_down_passed(flaky_route, "sim-broken")

    assert calls(openai_client, 2) == ["sim-openai/sim-broken"] * 2

    state = breaker.state_of(flaky_route.id, "sim-broken")
    assert (state.state, state.failures) == (breaker.CLOSED, 0)
    assert [(t["from"], t["to"]) for t in breaker.transitions(flaky_route.id, "sim-broken")][:2] == [
        ("half_open", "closed"), ("open", "half_open")]


def test_while_a_probe_is_out_other_calls_skip_the_upstream(flaky_route, openai_client, simulator):
    key = breaker.breaker_key(flaky_route.id, "sim-broken")
    sync_client().hset(key, mapping={"state": "half_open", "probe_until": repr(time.time() + 600)})

    calls(openai_client, 2)

    assert called(simulator) == ["sim-fast", "sim-fast"]


def test_when_every_upstream_is_open_the_one_open_longest_is_tried(gateway_world, openai_client, simulator):
    conn = gateway_world.openai_connection
    gateway_world.route("resilient", [(conn, "sim-medium"), (conn, "sim-fast")])
    now = time.time()
    client = sync_client()
    client.hset(breaker.breaker_key(conn.id, "sim-medium"), mapping={"state": "open", "opened_at": repr(now - 1)})
    client.hset(breaker.breaker_key(conn.id, "sim-fast"), mapping={"state": "open", "opened_at": repr(now - 5)})

    assert calls(openai_client, 1) == ["sim-openai/sim-fast"]
    assert called(simulator) == ["sim-fast"]


def test_the_breaker_is_shared_by_every_gateway_process(flaky_route, gateway_world, openai_client, start_gateway,
                                                         simulator):
    other = start_gateway()
    calls(openai_client, settings.GATEWAY_BREAKER_FAILURES)
    simulator.clear_requests()

    client = openai.OpenAI(base_url=f"{other.base_url}/v1", api_key=gateway_world.raw_token, max_retries=0)
    calls(client, 2)

    assert called(simulator) == ["sim-fast", "sim-fast"]
