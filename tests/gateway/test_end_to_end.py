"""A call through the gateway ends as one priced CostEvent: through the call stream and the
consumer on the shared Redis, and inside the one gateway process when there is no Redis (make run)."""

from __future__ import annotations

import time
from decimal import Decimal

import openai

from costs.models import CostEvent, CostRollup
from gateway.consumer import Consumer

from .conftest import SIM_PRICES

HELLO = [{"role": "user", "content": "say hello to the gateway"}]

FAST_INPUT, FAST_OUTPUT = (Decimal(price) for price in SIM_PRICES["sim-fast"])


def expected_cost(event: CostEvent) -> Decimal:
    return (event.input_tokens * FAST_INPUT + event.output_tokens * FAST_OUTPUT) / 1_000_000


def wait_for_events(project, count: int, deadline_s: float = 20.0) -> list[CostEvent]:
    deadline = time.monotonic() + deadline_s
    while True:
        events = list(CostEvent.objects.filter(project=project).order_by("occurred_at"))
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_calls_through_the_gateway_become_priced_events_and_rollups(gateway_world, openai_client):
    plain = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, extra_headers={"x-pulse-tags": "feature=search"})
    streamed = list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
    assert streamed[-1].choices[0].finish_reason == "stop"

    Consumer().drain()
    Consumer().drain()  # a second drain finds nothing new: nothing is counted twice

    events = list(CostEvent.objects.filter(project=gateway_world.project).order_by("occurred_at"))
    assert len(events) == 2
    first, second = events
    assert first.idempotency_key == "gw-" + plain.headers["x-pulse-request-id"]
    assert (first.source, first.provider, first.model, first.route) == ("gateway", "pulse-sim", "sim-fast", "gpt-4o-mini")
    assert (first.streamed, second.streamed) == (False, True)
    assert second.ttft_ms is not None and second.ttft_ms > 0
    assert first.api_token_id == gateway_world.token.id
    assert first.tags == {"feature": "search"}
    for event in events:
        assert event.cost_source == CostEvent.CostSource.COMPUTED
        assert event.cost_usd == expected_cost(event)
    hourly = CostRollup.objects.filter(project=gateway_world.project, granularity=CostRollup.Granularity.HOUR, tag_key="")
    assert sum(row.requests for row in hourly) == 2


def test_without_redis_the_gateway_process_records_its_own_calls(gateway_world, start_gateway):
    """make run: no REDIS_URL, so the stream is in the gateway's own process and its lifespan
    runs the consumer there."""
    gateway = start_gateway(GATEWAY_REDIS_URL="")
    with openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=gateway_world.raw_token, max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))

    events = wait_for_events(gateway_world.project, 2)

    assert [event.streamed for event in events] == [False, True]
    assert all(event.source == "gateway" and event.cost_usd == expected_cost(event) for event in events)
