"""What the sender does when Pulse goes away, loses an answer, fails or throttles: every event the
client accepted is stored exactly once, or counted and logged as not delivered."""

from __future__ import annotations

import logging
import threading
import time

from pulse_sdk import Client, Stats
from pulse_sdk import delivery as delivery_module

from tests.gateway.conftest import free_port

from .conftest import DROP_ANSWER, SLOW, assert_accounted, pulse_messages, wait_until


def stored_keys(pulse) -> list[str]:
    return list(pulse.events().values_list("idempotency_key", flat=True))


def test_pulse_killed_and_restarted_mid_flush_every_event_arrives_once(pulse, pulse_process):
    total = 10_000
    client = Client(api_key=pulse.ingest_key, base_url=pulse_process.base_url, batch_size=200, flush_interval=60)
    keys = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(total)]
    assert None not in keys
    # Batches are on their way (two at a time): kill -9 once some are stored, before all are.
    assert wait_until(lambda: pulse.events().count() >= 1000, timeout=60)
    pulse_process.kill()
    stored_at_kill = pulse.events().count()
    assert stored_at_kill < total
    assert wait_until(lambda: client.stats().retried >= 1, timeout=10)  # the sender saw it go
    assert client.flush(timeout=0.5) is False  # nothing answers meanwhile
    pulse_process.start()  # the same port
    assert client.flush(timeout=60) is True

    stored = stored_keys(pulse)
    assert len(stored) == total and set(stored) == set(keys)
    stats = client.stats()
    print("stored at kill", stored_at_kill, stats)
    assert stats.sent + stats.duplicates == total  # a batch stored just before the kill comes back as duplicates
    assert (stats.tracked, stats.queued, stats.rejected, stats.failed, stats.dropped) == (total, 0, 0, 0, 0)
    assert_accounted(stats)
    client.close()


def test_while_pulse_is_down_the_queue_keeps_what_fits_and_drops_the_rest(pulse, pulse_process, sdk_logs, monkeypatch):
    monkeypatch.setattr(delivery_module, "DROP_WARNING_INTERVAL_S", 0.2)
    pulse_process.kill()
    client = Client(api_key=pulse.ingest_key, base_url=pulse_process.base_url, batch_size=50, max_queue_size=100,
                    flush_interval=60, max_in_flight=1)
    keys = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(300)]
    assert wait_until(lambda: client.stats().retried >= 1)  # the sender holds a batch it cannot send
    keys += [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(100)]
    kept = [key for key in keys if key is not None]
    # The batch being retried, and behind it a full queue; the rest was dropped.
    assert len(kept) == 50 + 100
    assert client.stats() == Stats(tracked=400, queued=150, dropped=250, retried=client.stats().retried)
    drops = [m for m in pulse_messages(sdk_logs) if "queue is full" in m]
    assert len(drops) == 1 and "1 so far" in drops[0]  # once per interval, with the running count
    time.sleep(0.25)  # the warning interval (shortened above) passes
    assert client.track(provider="openai", model="gpt-4o-mini") is None
    drops = [m for m in pulse_messages(sdk_logs) if "queue is full" in m]
    assert len(drops) == 2 and "251 so far" in drops[1]

    pulse_process.start()
    assert client.flush(timeout=30)
    stored = stored_keys(pulse)
    assert len(stored) == 150 and set(stored) == set(kept)
    stats = client.stats()
    assert (stats.sent, stats.dropped, stats.queued, stats.batches) == (150, 251, 0, 3)
    assert_accounted(stats)
    client.close()


def test_an_answer_lost_after_pulse_stored_the_batch_is_retried_and_counted_once(pulse, fault_proxy):
    fault_proxy.inject(DROP_ANSWER)  # Pulse commits the batch; the client never hears back
    client = Client(api_key=pulse.ingest_key, base_url=fault_proxy.url, flush_interval=60)
    keys = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(50)]
    assert client.flush(timeout=10)
    assert [what for _, what in fault_proxy.seen] == [DROP_ANSWER, "forward"]  # the same batch, twice
    stored = stored_keys(pulse)
    assert len(stored) == 50 and set(stored) == set(keys)
    # The retry carried the same keys, so Pulse recognised every event of it.
    assert client.stats() == Stats(tracked=50, duplicates=50, retried=1, batches=1)
    client.close()


def test_5xx_answers_are_retried_with_the_same_batch(pulse, fault_proxy):
    fault_proxy.inject(503, 502, 500)
    client = Client(api_key=pulse.ingest_key, base_url=fault_proxy.url, flush_interval=60)
    keys = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(20)]
    assert client.flush(timeout=20)
    assert [what for _, what in fault_proxy.seen] == [503, 502, 500, "forward"]
    assert set(stored_keys(pulse)) == set(keys) and pulse.events().count() == 20
    assert client.stats() == Stats(tracked=20, sent=20, retried=3, batches=1)
    client.close()


def test_a_server_that_keeps_failing_is_given_up_after_max_retries_and_the_rest_goes_on(pulse, fault_proxy, sdk_logs):
    fault_proxy.inject(500, 500, 500)
    client = Client(api_key=pulse.ingest_key, base_url=fault_proxy.url, flush_interval=60, max_retries=2)
    for n in range(10):
        client.track(provider="openai", model="gpt-4o-mini", input_tokens=n)
    assert client.flush(timeout=20)
    assert client.stats() == Stats(tracked=10, failed=10, retried=2, batches=1)
    errors = pulse_messages(sdk_logs, logging.ERROR)
    assert len(errors) == 1 and "kept failing" in errors[0] and "3 attempts" in errors[0]
    later = client.track(provider="openai", model="gpt-4o-mini")  # a failing batch blocks nothing behind it
    assert client.flush(timeout=10) and stored_keys(pulse) == [later]
    client.close()


def test_retry_after_from_any_retryable_answer_is_honoured(pulse, fault_proxy, sdk_logs):
    fault_proxy.inject(503, headers={"Retry-After": "0.6"})
    client = Client(api_key=pulse.ingest_key, base_url=fault_proxy.url, flush_interval=60)
    client.track(provider="openai", model="gpt-4o-mini")
    assert client.flush(timeout=10)
    (refused_at, _), (retried_at, _) = fault_proxy.seen
    assert retried_at - refused_at >= 0.6
    assert [m for m in pulse_messages(sdk_logs, logging.DEBUG) if m.startswith("Pulse: retry")] == [
        "Pulse: retry 1 in 0.60 s after HTTP 503",
    ]
    client.close()


def test_close_gives_up_after_its_timeout_when_pulse_is_unreachable(sdk_logs):
    client = Client(api_key="pk_live_whatever", base_url=f"http://127.0.0.1:{free_port()}", flush_interval=60)
    for n in range(10):
        client.track(provider="openai", model="gpt-4o-mini", input_tokens=n)
    started = time.monotonic()
    client.close(timeout=0.3)
    assert time.monotonic() - started < 2.0
    stats = client.stats()
    assert (stats.dropped, stats.queued, stats.sent) == (10, 0, 0)
    assert stats.retried >= 1
    assert_accounted(stats)
    lost = [m for m in pulse_messages(sdk_logs) if "not delivered" in m]
    assert len(lost) == 1 and lost[0].startswith("Pulse: 10 events were not delivered before close() returned")


def test_flush_waits_for_an_earlier_batch_even_when_later_ones_settle_first(pulse, fault_proxy):
    fault_proxy.slow_s = 1.5
    fault_proxy.inject(SLOW)  # the first request takes 1.5 s; the other sender carries on meanwhile
    client = Client(api_key=pulse.ingest_key, base_url=fault_proxy.url, batch_size=10, flush_interval=60)
    first = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(10)]
    assert wait_until(lambda: len(fault_proxy.seen) == 1)  # a sender holds them, in the slow request
    before_flush = first + [client.track(provider="openai", model="gpt-4o-mini") for _ in range(5)]
    outcome: dict[str, object] = {}

    def flush_and_look() -> None:
        outcome["flushed"] = client.flush(timeout=10)
        outcome["stored"] = set(stored_keys(pulse))

    flusher = threading.Thread(target=flush_and_look)
    flusher.start()
    assert wait_until(lambda: client._delivery._urgent == 1)  # flush() has counted what it waits for
    # Tracked after flush() began: the free sender sends these (and the 5) while the first batch is slow.
    for _ in range(10):
        client.track(provider="openai", model="gpt-4o-mini")
    flusher.join(timeout=15)
    assert outcome["flushed"] is True
    assert set(before_flush) <= outcome["stored"]  # flush() returned only once all 15 were stored
    assert client.flush(10) and pulse.events().count() == 25
    client.close()
