"""The gateway process on its own, as `make run` has it: no shared Redis, so its call stream lives
in the process's in-process stand-in and the process drains it into cost events itself (the
consumer is part C's gateway/consumer.py, started by the gateway's lifespan)."""

from __future__ import annotations

import time

import openai
import pytest

pytest.importorskip("gateway.consumer", reason="the call stream's consumer (part C) is not on this branch")

from costs.models import CostEvent  # noqa: E402


def test_without_a_shared_redis_the_gateway_process_records_its_calls_into_the_database(gateway_world, start_gateway):
    alone = start_gateway(GATEWAY_REDIS_URL="")
    client = openai.OpenAI(base_url=f"{alone.base_url}/v1", api_key=gateway_world.raw_token, max_retries=0)

    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    key = "gw-" + raw.headers["x-pulse-request-id"]
    deadline = time.monotonic() + 30
    while not CostEvent.objects.filter(idempotency_key=key).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    event = CostEvent.objects.get(idempotency_key=key)
    assert (event.project_id, event.model, event.output_tokens) == (gateway_world.project.id, "sim-fast", 64)
