"""Client.track → the background sender → Pulse: what arrives, exactly once, and what the client
counts; the module-level API; disabled and closed clients."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pulse_sdk
import pytest
from pulse_sdk import Client, Stats
from pulse_sdk import client as client_module

from accounts.models import ApiToken
from costs.models import CostEvent

from .conftest import assert_accounted, pulse_messages, wait_until


def test_track_then_flush_stores_exactly_the_events_with_their_fields(pulse):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    moment = datetime(2026, 11, 20, 9, 30, 15, 250000, tzinfo=UTC)
    before = datetime.now(UTC)
    with pulse_sdk.tags(feature="search", team="core"):
        full = client.track(
            provider="openai", model="gpt-4o-mini", input_tokens=812, output_tokens=96, cached_tokens=512,
            reasoning_tokens=32, cost_usd=Decimal("0.00123456"), latency_ms=640.5, ttft_ms=120.25,
            status_code=200, success=True, timestamp=moment, tags={"team": "search-team", "attempt": 2},
            endpoint="chat", streamed=True, end_user="u-42", token_count_source="usage",
            idempotency_key="order-7-call-1",
        )
        plain = client.track(provider="anthropic", model="claude-3-5-haiku", input_tokens=10, output_tokens=2)
    bare = client.track(provider="openai", model="text-embedding-3-small", input_tokens=7, timestamp=1_795_000_000.5)
    assert full == "order-7-call-1"
    assert plain.startswith("sdk-") and len(plain) == 28 and bare.startswith("sdk-") and plain != bare
    assert client.stats() == Stats(tracked=3, queued=3)  # nothing sent before the interval or a flush

    assert client.flush(timeout=10) is True
    events = {event.idempotency_key: event for event in pulse.events()}
    assert set(events) == {full, plain, bare}

    one = events[full]
    assert (one.provider, one.model, one.input_tokens, one.output_tokens) == ("openai", "gpt-4o-mini", 812, 96)
    assert (one.cached_tokens, one.reasoning_tokens) == (512, 32)
    assert one.cost_usd == Decimal("0.00123456") and one.cost_source == CostEvent.CostSource.CLIENT
    assert (one.latency_ms, one.ttft_ms, one.status_code, one.success) == (640.5, 120.25, 200, True)
    assert one.occurred_at == moment
    # The block's tags, with the explicit ones winning on the same key; values as text.
    assert one.tags == {"feature": "search", "team": "search-team", "attempt": "2"}
    assert (one.endpoint, one.streamed, one.end_user, one.token_count_source) == ("chat", True, "u-42", "usage")
    assert one.source == CostEvent.Source.SDK

    two = events[plain]
    assert two.tags == {"feature": "search", "team": "core"}
    assert before <= two.occurred_at <= datetime.now(UTC)  # stamped when tracked
    assert (two.source, two.latency_ms, two.status_code, two.success, two.streamed) == ("sdk", None, None, True, False)
    assert events[bare].tags == {} and events[bare].occurred_at == datetime.fromtimestamp(1_795_000_000.5, UTC)

    assert client.stats() == Stats(tracked=3, sent=3, batches=1)
    client.close()


def test_events_wait_at_most_the_flush_interval(pulse):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=0.2)
    client.track(provider="openai", model="gpt-4o-mini", input_tokens=1)
    # No flush(): the sender sends a partial batch once it is flush_interval old.
    assert wait_until(lambda: pulse.events().count() == 1, timeout=10)
    assert wait_until(lambda: client.stats().sent == 1, timeout=5)
    client.close()


def test_full_batches_go_without_waiting_for_the_interval(pulse):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=3600, batch_size=50)
    for number in range(120):
        client.track(provider="openai", model="gpt-4o-mini", input_tokens=number)
    assert wait_until(lambda: client.stats().sent == 100, timeout=10)  # two full batches; 20 wait
    assert client.stats().queued == 20 and pulse.events().count() == 100
    assert client.flush(10)
    assert pulse.events().count() == 120
    client.close()


def test_ten_thousand_events_from_eight_threads_each_arrive_once(pulse):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url)
    keys: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(number: int) -> None:
        start.wait()
        with pulse_sdk.tags(thread=number):
            for index in range(1250):
                keys[number].append(client.track(provider="openai", model="gpt-4o-mini", input_tokens=index))

    threads = [threading.Thread(target=work, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(timeout=60)
    tracked = [key for per_thread in keys for key in per_thread]
    assert len(tracked) == len(set(tracked)) == 10_000 and None not in tracked
    stored = list(pulse.events().values_list("idempotency_key", flat=True))
    assert len(stored) == 10_000 and set(stored) == set(tracked)
    # Each thread's events carry its own tags (contextvars are per thread).
    for number in range(8):
        assert pulse.events().filter(tags__thread=str(number)).count() == 1250
    stats = client.stats()
    assert (stats.tracked, stats.sent, stats.queued, stats.dropped, stats.retried) == (10_000, 10_000, 0, 0, 0)
    assert stats.batches >= 10
    client.close()


def test_refused_events_are_logged_with_reasons_and_the_good_ones_stored(pulse, sdk_logs):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    good = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(3)]
    too_many_tags = client.track(provider="openai", model="tagged", tags={f"k{n}": n for n in range(25)})
    negative = client.track(provider="openai", model="negative", input_tokens=-5)
    reserved = client.track(provider="openai", model="reserved", idempotency_key="gw-not-mine")
    not_json = client.track(provider="openai", model="nan-latency", latency_ms=float("nan"))
    assert client.flush(10)

    assert set(pulse.events().values_list("idempotency_key", flat=True)) == set(good)
    stats = client.stats()
    assert (stats.sent, stats.rejected, stats.failed, stats.retried, stats.batches) == (3, 4, 0, 0, 1)
    assert_accounted(stats)
    messages = pulse_messages(sdk_logs)
    assert len(messages) == 4
    by_model = {model: [m for m in messages if f"model '{model}'" in m] for model in ("tagged", "negative", "reserved", "nan-latency")}
    assert all(len(found) == 1 for found in by_model.values()), messages
    assert f"idempotency_key '{too_many_tags}'" in by_model["tagged"][0] and "tags: At most 20 tags" in by_model["tagged"][0]
    assert f"'{negative}'" in by_model["negative"][0] and "input_tokens: Must be between 0" in by_model["negative"][0]
    assert reserved == "gw-not-mine" and "'gw-not-mine'" in by_model["reserved"][0]
    assert "idempotency_key: Keys starting with" in by_model["reserved"][0]
    assert f"'{not_json}'" in by_model["nan-latency"][0] and "cannot be written as JSON" in by_model["nan-latency"][0]
    client.close()


def test_a_batch_of_only_bad_events_is_rejected_not_retried(pulse, sdk_logs):
    # Pulse answers 400 when nothing in a batch could be stored; that is per-event refusal too.
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    for _ in range(2):
        client.track(provider="openai", model="bad", output_tokens=1, reasoning_tokens=5)
    assert client.flush(10)
    stats = client.stats()
    assert (stats.rejected, stats.failed, stats.retried, stats.sent) == (2, 0, 0, 0)
    assert pulse.events().count() == 0
    assert len([m for m in pulse_messages(sdk_logs) if "reasoning_tokens: Cannot exceed output_tokens" in m]) == 2
    client.close()


def test_a_flood_of_refused_events_is_logged_a_few_times_with_a_count(pulse, sdk_logs):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    for _ in range(50):
        client.track(provider="openai", model="flood", input_tokens=-1)
    client.track(provider="openai", model="fine")
    assert client.flush(10)
    assert client.stats().rejected == 50 and pulse.events().count() == 1
    refused = [m for m in pulse_messages(sdk_logs) if "model 'flood'" in m]
    assert len(refused) == 10  # REJECTION_LOG_BURST per interval; the rest are counted
    client.track(provider="openai", model="flood", input_tokens=-1)
    client.flush(10)
    assert len([m for m in pulse_messages(sdk_logs) if "model 'flood'" in m]) == 10  # still within the interval
    client.close()


def test_large_batches_are_split_when_the_server_says_413(pulse, settings, sdk_logs):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 20_000  # the live server runs in this process
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60, batch_size=300)
    keys = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n, tags={"pad": "x" * 100})
            for n in range(300)]
    huge = client.track(provider="openai", model="m" * 30_000)  # too large even alone
    assert client.flush(30)
    assert set(pulse.events().values_list("idempotency_key", flat=True)) == set(keys)
    stats = client.stats()
    assert (stats.sent, stats.rejected, stats.failed, stats.retried) == (300, 1, 0, 0)
    assert stats.batches >= 4
    assert_accounted(stats)
    assert any(f"'{huge}'" in m and "too large" in m for m in pulse_messages(sdk_logs))
    client.close()


def test_a_revoked_token_fails_its_batches_logged_once_never_retried(pulse, sdk_logs):
    pulse.ingest_token.revoke(by=pulse.personas.owner)
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60, batch_size=5)
    for n in range(15):
        client.track(provider="openai", model="gpt-4o-mini", input_tokens=n)
    assert client.flush(10)  # settled: as failed
    stats = client.stats()
    assert (stats.failed, stats.sent, stats.retried, stats.batches, stats.queued) == (15, 0, 0, 3, 0)
    errors = pulse_messages(sdk_logs, logging.ERROR)
    assert len(errors) == 1 and "HTTP 401" in errors[0] and "revoked" in errors[0]
    assert pulse.events().count() == 0
    client.close()


def test_a_token_without_the_ingest_scope_fails_with_the_servers_message(pulse, sdk_logs):
    _, read_only = pulse.issue_token(["read"])
    client = Client(api_key=read_only, base_url=pulse.url, flush_interval=60, batch_size=2)
    for n in range(4):
        client.track(provider="openai", model="gpt-4o-mini", input_tokens=n)
    assert client.flush(10)
    stats = client.stats()
    assert (stats.failed, stats.retried, stats.batches) == (4, 0, 2)
    errors = pulse_messages(sdk_logs, logging.ERROR)
    assert len(errors) == 1 and "HTTP 403" in errors[0] and "ingest" in errors[0]
    client.close()


def test_retry_after_on_429_is_honoured(pulse, monkeypatch, sdk_logs):
    from costs.api import IngestRateThrottle

    # One request per second for this token: the second batch is throttled, told to wait 1 s.
    monkeypatch.setattr(IngestRateThrottle, "THROTTLE_RATES", {"ingest": "1/s"})
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60, batch_size=10, max_in_flight=1)
    keys = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(20)]
    assert client.flush(20)
    assert set(pulse.events().values_list("idempotency_key", flat=True)) == set(keys)
    stats = client.stats()
    # Waiting as told means one retry is enough; backoff alone (a quarter second) would hit 429 again.
    assert (stats.sent, stats.retried, stats.batches) == (20, 1, 2)
    retries = [m for m in pulse_messages(sdk_logs, logging.DEBUG) if m.startswith("Pulse: retry")]
    assert retries == ["Pulse: retry 1 in 1.00 s after HTTP 429"]
    client.close()


def test_an_organization_wide_token_names_its_project(pulse, sdk_logs):
    token, raw = pulse.issue_token(["ingest"])
    ApiToken.objects.filter(pk=token.pk).update(project=None)
    named = Client(api_key=raw, base_url=pulse.url, project=str(pulse.project.uuid), flush_interval=60)
    key = named.track(provider="openai", model="gpt-4o-mini", input_tokens=1)
    assert named.flush(10) and named.stats().sent == 1
    assert list(pulse.events().values_list("idempotency_key", flat=True)) == [key]

    unnamed = Client(api_key=raw, base_url=pulse.url, flush_interval=60)
    unnamed.track(provider="openai", model="gpt-4o-mini", input_tokens=1)
    assert unnamed.flush(10) and unnamed.stats().failed == 1
    errors = pulse_messages(sdk_logs, logging.ERROR)
    assert len(errors) == 1 and "Name the project" in errors[0]
    named.close()
    unnamed.close()


def test_the_project_comes_from_pulse_project(pulse, monkeypatch):
    token, raw = pulse.issue_token(["ingest"])
    ApiToken.objects.filter(pk=token.pk).update(project=None)
    monkeypatch.setenv("PULSE_PROJECT", str(pulse.project.uuid))
    with Client(api_key=raw, base_url=pulse.url) as client:
        client.track(provider="openai", model="gpt-4o-mini")
    assert client.stats().sent == 1 and pulse.events().count() == 1


def test_close_flushes_and_later_tracks_are_dropped_counted_logged_once(pulse, sdk_logs):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    client.track(provider="openai", model="gpt-4o-mini")
    client.close()
    assert pulse.events().count() == 1
    assert client.track(provider="openai", model="late") is None
    assert client.track(provider="openai", model="later") is None
    client.close()  # idempotent
    assert client.stats() == Stats(tracked=3, sent=1, dropped=2, batches=1)
    warnings = pulse_messages(sdk_logs)
    assert len(warnings) == 1 and "closed client" in warnings[0]
    assert not any(thread.is_alive() for thread in client._delivery._threads)  # the senders ended


def test_with_block_closes_the_client(pulse):
    with Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60) as client:
        client.track(provider="openai", model="gpt-4o-mini")
    assert pulse.events().count() == 1 and client.stats().sent == 1


def test_without_a_key_the_client_is_a_silent_no_op_after_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(client_module, "_no_key_warned", False)
    caplog.set_level(logging.WARNING, logger="pulse_sdk")
    first, second = Client(), Client(base_url="http://127.0.0.1:9")
    assert not first.enabled and not second.enabled
    assert first.track(provider="openai", model="gpt-4o-mini") is None
    assert first.flush() is True and first.stats() == Stats()
    first.close()
    messages = pulse_messages(caplog)
    assert len(messages) == 1 and "no API key" in messages[0] and "PULSE_API_KEY" in messages[0]
    disabled = Client(api_key="pk_live_anything", enabled=False)
    assert disabled.track(provider="openai", model="x") is None and len(pulse_messages(caplog)) == 1


def test_track_never_raises_into_the_caller(pulse, sdk_logs):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    with pulse_sdk.tags(feature="x"):
        assert client.track(provider="openai", model="odd-tags", tags=[("a", "b"), "zz"]) is None  # not a mapping

    class Count:  # an integer type of another library (numpy's, say)
        def __index__(self) -> int:
            return 3

    key = client.track(provider="openai", model="objects", input_tokens=Count(), tags={"when": datetime(2026, 1, 2)})
    assert client.flush(10)
    assert any("model 'odd-tags'" in m and "dropped" in m for m in pulse_messages(sdk_logs))
    # Values JSON has no type for are written as the server reads them, not refused by the SDK.
    event = pulse.events().get()
    assert event.idempotency_key == key and event.input_tokens == 3
    assert event.tags == {"when": "2026-01-02T00:00:00"}
    client.close()


def test_the_module_level_api_uses_one_default_client(pulse, monkeypatch):
    monkeypatch.setattr(client_module, "_default", None)
    monkeypatch.setenv("PULSE_API_KEY", pulse.ingest_key)
    monkeypatch.setenv("PULSE_BASE_URL", pulse.url + "/api/v1/")
    assert pulse_sdk.flush() is True  # no default client yet: nothing to wait for
    key = pulse_sdk.track(provider="openai", model="gpt-4o-mini", input_tokens=5)
    default = pulse_sdk.get_client()
    assert default is pulse_sdk.get_client() and default.base_url == pulse.url
    assert pulse_sdk.flush(10) and pulse.events().get().idempotency_key == key

    replacement = pulse_sdk.init(flush_interval=60)
    assert pulse_sdk.get_client() is replacement
    assert default.track(provider="openai", model="late") is None  # init() closed the old one
    pulse_sdk.track(provider="openai", model="via-init")
    assert pulse_sdk.flush(10) and pulse.events().count() == 2
    replacement.close()


def test_timestamps_of_naive_datetimes_are_local_time(pulse):
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    naive = datetime.now() - timedelta(hours=1)  # the point of the test
    client.track(provider="openai", model="gpt-4o-mini", timestamp=naive)
    assert client.flush(10)
    assert pulse.events().get().occurred_at == naive.astimezone(UTC)
    client.close()


def test_bad_options_are_refused_when_the_client_is_made():
    with pytest.raises(ValueError, match="batch_size"):
        Client(api_key="k", batch_size=1001)
    with pytest.raises(ValueError, match="flush_interval"):
        Client(api_key="k", flush_interval=0)


def test_a_key_or_url_that_can_never_work_disables_the_client_with_one_clear_error(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="pulse_sdk")
    monkeypatch.setenv("PULSE_BASE_URL", "localhost:8000")
    no_scheme = Client(api_key="pk_live_fine")
    pasted = Client(api_key="pk_live_with a space", base_url="http://127.0.0.1:8000")
    assert not no_scheme.enabled and not pasted.enabled
    assert no_scheme.track(provider="openai", model="gpt-4o-mini") is None
    first, second = pulse_messages(caplog, logging.ERROR)
    assert "'localhost:8000' must start with http:// or https://" in first and "(from the environment)" in first
    assert "API key contains spaces" in second and "(from the argument)" in second


def test_a_client_dropped_without_close_still_sends_what_it_holds(pulse):
    import gc

    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    keys = [client.track(provider="openai", model="gpt-4o-mini", input_tokens=n) for n in range(5)]
    senders = list(client._delivery._threads)
    del client
    gc.collect()
    assert wait_until(lambda: not any(thread.is_alive() for thread in senders), timeout=10)  # sent, then ended
    assert set(pulse.events().values_list("idempotency_key", flat=True)) == set(keys)


def test_in_asyncio_each_task_tracks_with_its_own_tags(pulse):
    import asyncio

    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)

    async def handle(user: str) -> None:
        with pulse_sdk.tags(user=user):
            for _ in range(3):
                await asyncio.sleep(0)  # the other task runs in between
                client.track(provider="openai", model="gpt-4o-mini")

    async def main() -> bool:
        await asyncio.gather(handle("u-1"), handle("u-2"))
        return await asyncio.to_thread(client.flush, 10)  # flush() blocks: not on the loop

    assert asyncio.run(main())
    assert sorted(pulse.events().values_list("tags__user", flat=True)) == ["u-1"] * 3 + ["u-2"] * 3
    client.close()


def test_tracking_from_code_that_interrupts_the_client_does_not_deadlock(pulse):
    # A signal handler that tracks can run in the middle of track() in the same thread; the
    # garbage collector can finalize a dropped client inside a sender's critical section.
    client = Client(api_key=pulse.ingest_key, base_url=pulse.url, flush_interval=60)
    with client._delivery._lock:  # where the interrupted call was
        key = client.track(provider="openai", model="gpt-4o-mini")
        client._delivery.close_soon()
    assert key is not None and client.flush(10)
    assert pulse.events().get().idempotency_key == key
