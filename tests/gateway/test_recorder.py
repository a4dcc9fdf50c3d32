"""The recorder: a gateway call record goes to the Redis stream in one XADD (alone or in the
proxy's pipeline), is read back as it was written, is never trimmed while unconsumed, and once
XADD has returned it survives the gateway process being SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from django.conf import settings

from costs.models import CostEvent
from gateway import recorder
from gateway import redis as gateway_redis
from gateway.consumer import Consumer
from gateway.recorder import CallRecord, add_to_pipeline
from tests.conftest import PROJECT_ROOT

STREAM = settings.GATEWAY_CALL_STREAM


@pytest.fixture(autouse=True)
def r():
    client = gateway_redis.sync_client()
    keys = list(client.scan_iter(match=f"{settings.GATEWAY_KEY_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)
    yield client


def a_record(n: int = 1, **overrides: object) -> CallRecord:
    fields = {
        "project_id": 42, "token_id": 7, "request_id": f"req-{n}", "budget_charges": {3: 1200, 11: 0},
        "event": {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 12, "output_tokens": 3,
                  "route": "fast-chat", "upstream": "openai/gpt-4o-mini", "cache_hit": False, "attempts": []},
        "bodies": {"request": '{"messages": []}', "response": "{}", "truncated": True, "retention_days": 7},
    } | overrides
    return CallRecord(**fields)


def stored(r) -> list[CallRecord]:
    return [recorder.decode(fields) for _, fields in r.xrange(STREAM)]


def test_a_record_reads_back_as_written_from_a_pipeline_or_on_its_own(r):
    pipe = r.pipeline(transaction=False)
    pipe.incrby("some-settlement", 5)  # the proxy's settle() commands share the round trip
    add_to_pipeline(pipe, a_record(1))
    pipe.execute()

    async def on_its_own() -> None:
        await recorder.record(gateway_redis.async_client(), a_record(2, token_id=None, bodies=None, budget_charges={}))

    asyncio.run(on_its_own())
    first, second = stored(r)
    assert first == a_record(1)
    assert first.budget_charges == {3: 1200, 11: 0}  # budget ids are integers again
    assert second == a_record(2, token_id=None, bodies=None, budget_charges={})
    r.delete("some-settlement")


def test_the_ingestion_item_is_keyed_by_the_request_id_and_carries_the_bodies():
    item = a_record(9).as_item()
    assert item["idempotency_key"] == "gw-req-9"
    assert item["bodies"]["truncated"] is True and item["route"] == "fast-chat"
    assert "bodies" not in a_record(9, bodies=None).as_item()


def test_the_stream_keeps_every_unconsumed_record(r):
    """No MAXLEN: a capped stream would drop the oldest calls while the consumers lag."""
    for start in range(0, 20_000, 2_000):
        pipe = r.pipeline(transaction=False)
        for n in range(start, start + 2_000):
            add_to_pipeline(pipe, a_record(n, bodies=None))
        pipe.execute()
    assert r.xlen(STREAM) == 20_000


def test_text_orjson_cannot_encode_is_replaced_rather_than_losing_the_call(r):
    record = a_record(event={"provider": "openai", "model": "m", "end_user": "bad \ud800 user"},
                      bodies={"request": "caf\udce9", "response": "", "truncated": False, "retention_days": 7})
    pipe = r.pipeline(transaction=False)
    add_to_pipeline(pipe, record)
    pipe.execute()
    (back,) = stored(r)
    assert back.event["end_user"] == "bad \ufffd user" and back.bodies["request"] == "caf\ufffd"


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"[]", b'{"project_id": "42", "request_id": "r", "event": {}}',
     b'{"project_id": 42, "request_id": "", "event": {}}', b'{"project_id": 42, "request_id": "r", "event": []}',
     b'{"project_id": 42, "token_id": true, "request_id": "r", "event": {}}',
     b'{"project_id": 42, "request_id": "r", "event": {}, "budget_charges": {"x": 1}}'],
)
def test_what_is_not_a_record_is_refused_with_a_reason(data):
    with pytest.raises(ValueError):
        CallRecord.from_json(data)


GATEWAY = """
import asyncio, sys
import django
django.setup()
from gateway import recorder, redis as gateway_redis
from gateway.recorder import CallRecord

async def serve():
    r = gateway_redis.async_client()
    n = 0
    while True:  # a gateway recording calls until it is killed
        await recorder.record(r, CallRecord(int(sys.argv[1]), None, {
            "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 2}, None, f"req-{n}", {}))
        print(f"recorded req-{n}", flush=True)  # the XADD has returned
        n += 1

asyncio.run(serve())
"""


@pytest.mark.django_db
def test_a_gateway_killed_with_sigkill_loses_no_call_it_already_recorded(r, personas):
    env = {**os.environ, "PULSE_ENV": "test", "DJANGO_SETTINGS_MODULE": "config.settings", "REDIS_URL": settings.REDIS_URL,
           "GATEWAY_KEY_PREFIX": settings.GATEWAY_KEY_PREFIX, "GATEWAY_CALL_STREAM": STREAM}
    gateway = subprocess.Popen([sys.executable, "-c", GATEWAY, str(personas.project.id)], cwd=PROJECT_ROOT, env=env,
                               stdout=subprocess.PIPE, text=True)
    acknowledged = []
    try:
        while len(acknowledged) < 300:
            line = gateway.stdout.readline()
            assert line, "the gateway script ended early"
            acknowledged.append(line.split()[-1])
    finally:
        os.kill(gateway.pid, signal.SIGKILL)  # mid-stride: it was still recording
        gateway.wait(timeout=30)
    assert gateway.returncode == -signal.SIGKILL

    in_stream = {record.request_id for record in stored(r)}
    assert set(acknowledged) <= in_stream
    Consumer(mark_ingested=lambda charges: None).drain()
    keys = set(CostEvent.objects.dangerously_unscoped().filter(project=personas.project).values_list("idempotency_key", flat=True))
    assert keys == {f"gw-{request_id}" for request_id in in_stream}
