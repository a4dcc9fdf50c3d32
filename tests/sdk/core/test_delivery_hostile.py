"""One odd value never costs the events batched with it; a server that is away behind a proxy
(502/503/504 while it restarts) is waited for like one that does not answer at all."""

from __future__ import annotations

import logging
from fractions import Fraction

from pulse_sdk import Client, Stats

from .conftest import pulse_messages


class Unwritable:
    """A value whose conversions fail with something other than TypeError/ValueError."""

    def __float__(self) -> float:
        raise ArithmeticError("no float for this one")


def test_a_value_json_cannot_write_costs_only_its_own_event(pulse, sdk_logs):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    good = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(5)]
    client.track(provider="openai", model="huge-fraction", tags={"ratio": Fraction(10**400, 3)})
    client.track(provider="openai", model="odd-object", latency_ms=Unwritable())
    good.append(client.track(provider="openai", model="gpt-4o-mini", input_tokens=9))

    assert client.flush(10)
    assert sorted(pulse.events().values_list("idempotency_key", flat=True)) == sorted(good)
    assert client.stats() == Stats(tracked=8, sent=6, rejected=2, batches=1)
    messages = pulse_messages(sdk_logs)
    assert any("'huge-fraction'" in m and "cannot be written as JSON" in m for m in messages)
    assert any("'odd-object'" in m and "cannot be written as JSON" in m for m in messages)
    assert not pulse_messages(sdk_logs, logging.ERROR)
    client.close()


def test_a_proxy_answering_502_503_504_while_pulse_restarts_is_waited_for_past_max_retries(pulse, fault_proxy, sdk_logs):
    """nginx in front of a Pulse being redeployed says 502/503/504 for as long as it takes: that is
    Pulse away, as a refused connection is, not a batch Pulse cannot take."""
    fault_proxy.inject(503, 502, 504, 503, 502)
    client = Client(api_key=pulse.ingest_key, base_url=fault_proxy.url, flush_interval=60, max_retries=1)
    keys = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(10)]

    assert client.flush(timeout=30)
    assert [what for _, what in fault_proxy.seen] == [503, 502, 504, 503, 502, "forward"]
    assert sorted(pulse.events().values_list("idempotency_key", flat=True)) == sorted(keys)
    assert client.stats() == Stats(tracked=10, sent=10, retried=5, batches=1)
    assert not pulse_messages(sdk_logs, logging.ERROR)
    client.close()
