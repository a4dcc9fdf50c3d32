"""The consumer: gateway call records in the Redis stream become cost events exactly once.

Against the real Redis and PostgreSQL of the test run: a round trip with every gateway field,
records delivered again (after a crash between the commit and the acknowledgement, or before
the commit), poison records dead-lettered without blocking their batch, budgets hearing of the
spend, and real `manage.py gateway_consumer` processes killed with SIGKILL in the middle of a
batch (caught there deterministically: the test holds a lock the batch's transaction waits on),
stopped with SIGTERM (the batch in hand finishes), and idling politely without a shared Redis.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError, connection
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone

from accounts.models import ApiToken, Project
from alerts import tasks as alert_tasks
from alerts.models import Alert, Budget
from benchmarks.models import Model, Price, Provider, ProviderKind
from costs import ingestion
from costs.models import CostEvent, CostEventBody, CostRollup
from gateway import consumer as consumer_module
from gateway import recorder
from gateway import redis as gateway_redis
from gateway.consumer import GROUP, Consumer
from gateway.recorder import CallRecord, add_to_pipeline
from tests.conftest import PROJECT_ROOT, database_url_of_test_database

pytestmark = pytest.mark.django_db

STREAM = settings.GATEWAY_CALL_STREAM
DEAD = STREAM + consumer_module.DEAD_LETTER_SUFFIX


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def r():
    """The shared Redis, with this checkout's gateway keys (the stream, its dead letters) cleared."""
    client = gateway_redis.sync_client()
    keys = list(client.scan_iter(match=f"{settings.GATEWAY_KEY_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)
    yield client


@pytest.fixture
def catalog(db) -> Price:
    """acme-ai/acme-large at $2 in, $8 out per Mtok: 1,000 in + 200 out cost $0.0036."""
    provider = Provider.objects.create(
        name="Acme AI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://acme.example/v1", genai_prices_id="acme-ai",
    )
    model = Model.objects.create(provider=provider, name="acme-large")
    return Price.objects.create(model=model, input_mtok=Decimal("2"), output_mtok=Decimal("8"),
                                valid_from=timezone.now() - timedelta(days=365), source=Price.Source.ADMIN)


COST = Decimal("0.0036")


def call(project: Project, n: int, *, token: ApiToken | None = None, bodies: dict | None = None,
         charges: dict[int, int] | None = None, **event: object) -> CallRecord:
    """What the proxy records for one chat call through the gateway."""
    return CallRecord(
        project_id=project.id, token_id=token.id if token else None,
        event={
            "provider": "acme-ai", "model": "acme-large", "input_tokens": 1000, "output_tokens": 200,
            "cached_tokens": 0, "reasoning_tokens": 0, "latency_ms": 412.5, "ttft_ms": 95.25, "status_code": 200,
            "success": True, "timestamp": (timezone.now() - timedelta(seconds=n % 600)).isoformat(),
            "tags": {"feature": "search"}, "source": "gateway", "streamed": True, "endpoint": "chat",
            "end_user": "user-7", "route": "fast-chat", "upstream": "simulator/acme-large",
            "token_count_source": "usage", "cache_hit": False, "saved_usd": None, "attempts": [], "overhead_ms": 0.42,
            **event,
        },
        bodies=bodies, request_id=f"req-{n}", budget_charges=charges or {},
    )


def feed(r, records: list[CallRecord]) -> None:
    # One MULTI: a consumer blocked on the stream wakes up to all of them, not to the first.
    pipe = r.pipeline(transaction=True)
    for record in records:
        add_to_pipeline(pipe, record)
    pipe.execute()


def events_of(project: Project):
    return CostEvent.objects.dangerously_unscoped().filter(project=project)


def pending(r) -> int:
    try:
        return r.xpending(STREAM, GROUP)["pending"]
    except Exception:  # no group yet
        return 0


class Marked(list):
    """admission.mark_ingested, recorded."""

    def __call__(self, charges) -> None:
        self.append(list(charges))


# ----------------------------------------------------------------------------- round trip


def test_records_become_events_with_every_gateway_field(r, personas, catalog):
    token, _ = ApiToken.issue(project=personas.project, name="gateway app", scopes=["gateway"], by=personas.owner)
    feed(r, [
        call(personas.project, 1, token=token, attempts=[{"upstream": "primary/acme-large", "status_code": 503, "error": "upstream 503"}]),
        call(personas.project, 2, token=token, cache_hit=True, cost_usd="0", saved_usd="0.0036", streamed=False, ttft_ms=None),
        call(personas.other_project, 3, bodies={"request": '{"model": "fast-chat"}', "response": '{"id": "x"}',
                                               "truncated": False, "retention_days": 3}),
    ])
    marked = Marked()
    outcome = Consumer(mark_ingested=marked).drain()

    assert (outcome.read, outcome.inserted, outcome.duplicates, outcome.dead) == (3, 3, 0, 0)
    first = events_of(personas.project).get(idempotency_key="gw-req-1")
    assert (first.source, first.route, first.upstream, first.endpoint, first.end_user) == (
        "gateway", "fast-chat", "simulator/acme-large", "chat", "user-7")
    assert (first.streamed, first.ttft_ms, first.token_count_source, first.cache_hit) == (True, 95.25, "usage", False)
    assert first.cost_usd == COST and first.cost_source == "computed"
    assert first.attempts == [{"upstream": "primary/acme-large", "status_code": 503, "error": "upstream 503"}]
    assert first.overhead_ms == 0.42 and first.token_prefix == token.prefix
    hit = events_of(personas.project).get(idempotency_key="gw-req-2")
    assert (hit.cache_hit, hit.cost_usd, hit.saved_usd) == (True, Decimal(0), COST)
    other = events_of(personas.other_project).get()
    assert other.body.request == '{"model": "fast-chat"}' and other.body.response == '{"id": "x"}'
    assert other.body.expires_at == other.occurred_at + timedelta(days=3)

    rolled = CostRollup.objects.dangerously_unscoped().filter(project=personas.project, granularity="d", tag_key="")
    assert rolled.aggregate(requests=Sum("requests"), hits=Sum("cache_hits"), saved=Sum("saved_usd"), cost=Sum("cost_usd")) == {
        "requests": 2, "hits": 1, "saved": COST, "cost": COST}
    assert sorted(request_id for batch in marked for request_id, _ in batch) == ["req-1", "req-2", "req-3"]
    assert r.xlen(STREAM) == 0 and pending(r) == 0  # acknowledged and deleted: the stream is the backlog only


def test_budget_charges_are_handed_to_admission_after_the_commit(r, personas, catalog, monkeypatch):
    seen_in_database = []

    def mark_ingested(charges):
        # Called after the commit: the events it speaks of are in the database already.
        seen_in_database.append(events_of(personas.project).filter(idempotency_key__in=[f"gw-{rid}" for rid, _ in charges]).count())
        marked(charges)

    marked = Marked()
    monkeypatch.setattr(consumer_module.admission, "mark_ingested", mark_ingested)
    feed(r, [call(personas.project, 1, charges={7: 3600}), call(personas.project, 2)])
    Consumer().drain()
    assert marked == [[("req-1", {7: 3600}), ("req-2", {})]]
    assert seen_in_database == [2]


def test_records_of_many_tokens_and_projects_share_one_batch(r, personas, catalog):
    tokens = [ApiToken.issue(project=personas.project, name=f"t{i}", scopes=["gateway"], by=personas.owner)[0] for i in range(3)]
    feed(r, [call(personas.project, n, token=tokens[n % 3]) for n in range(30)]
         + [call(personas.other_project, 100 + n) for n in range(5)])
    outcome = Consumer(batch=500, mark_ingested=Marked()).drain()
    assert outcome.read == 35 and outcome.inserted == 35
    prefixes = events_of(personas.project).values("token_prefix").annotate(n=Sum("input_tokens"))
    assert {row["token_prefix"]: row["n"] for row in prefixes} == {t.prefix: 10_000 for t in tokens}
    assert events_of(personas.other_project).count() == 5


def test_a_deleted_token_keeps_its_calls_without_it(r, personas, catalog):
    token, _ = ApiToken.issue(project=personas.project, name="gone", scopes=["gateway"], by=personas.owner)
    feed(r, [call(personas.project, 1, token=token)])
    token.delete()
    Consumer(mark_ingested=Marked()).drain()
    assert events_of(personas.project).get().token_prefix == ""


# ----------------------------------------------------------------------------- exactly once


def test_a_crash_after_the_commit_is_redelivered_as_duplicates_never_counted_twice(r, personas, catalog, monkeypatch):
    feed(r, [call(personas.project, n, bodies={"request": "q", "response": "a", "truncated": False, "retention_days": 7})
             for n in range(20)])
    marked = Marked()
    crashed = Consumer(mark_ingested=marked)

    def die(*args, **kwargs):
        raise SystemExit("killed between the commit and XACK")

    monkeypatch.setattr(crashed, "_acknowledge", die)
    with pytest.raises(SystemExit):
        crashed.step()
    assert events_of(personas.project).count() == 20 and pending(r) == 20

    survivor = Consumer(claim_idle_s=0, mark_ingested=marked)
    outcome = survivor.step()
    assert (outcome.claimed, outcome.inserted, outcome.duplicates) == (20, 0, 20)
    assert events_of(personas.project).count() == 20
    assert CostEventBody.objects.dangerously_unscoped().count() == 20
    rolled = CostRollup.objects.dangerously_unscoped().filter(project=personas.project, granularity="h", tag_key="")
    assert rolled.aggregate(n=Sum("requests"))["n"] == 20
    # admission heard of every record both times (it is idempotent per request id).
    assert [len(batch) for batch in marked] == [20, 20]
    assert r.xlen(STREAM) == 0 and pending(r) == 0


def test_a_failure_before_the_commit_leaves_the_batch_pending_and_it_is_retried(r, personas, catalog, monkeypatch):
    feed(r, [call(personas.project, n) for n in range(10)])
    real_ingest = ingestion.ingest
    failures = [OperationalError("the database went away")]

    def flaky(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real_ingest(*args, **kwargs)

    monkeypatch.setattr(consumer_module.ingestion, "ingest", flaky)
    worker = Consumer(mark_ingested=Marked())
    with pytest.raises(OperationalError):
        worker.step()
    assert events_of(personas.project).count() == 0 and pending(r) == 10  # nothing dead-lettered either
    outcome = worker.step()  # its own unacknowledged records first, not after the claim delay
    assert (outcome.read, outcome.inserted) == (10, 10)
    assert pending(r) == 0 and r.xlen(DEAD) == 0


@pytest.mark.django_db(transaction=True)  # the consumer's thread has its own connection
def test_a_running_consumer_survives_a_failing_admission_and_retries_its_batch(r, personas, caplog):
    calls = []

    def mark_ingested(charges) -> None:
        calls.append([request_id for request_id, _ in charges])
        if len(calls) == 1:
            raise ConnectionError("admission's Redis is restarting")

    worker = Consumer(mark_ingested=mark_ingested)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: (worker.run(stop, block_ms=100), connection.close()))
    thread.start()
    try:
        feed(r, [call(personas.project, n) for n in range(5)])
        wait_until(lambda: pending(r) == 0 and r.xlen(STREAM) == 0 and len(calls) >= 2, "the batch is retried and acknowledged")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert events_of(personas.project).count() == 5
    assert calls[0] == calls[1] == [f"req-{n}" for n in range(5)]  # told again, after the duplicates
    assert "batch failed; retrying" in caplog.text


@pytest.mark.django_db(transaction=True)  # threads need their own connections, hence committed data
def test_two_consumers_draining_one_stream_record_each_call_once(personas, catalog, r):
    feed(r, [call(personas.project, n) for n in range(600)])
    _run_in_threads([Consumer(batch=40, mark_ingested=Marked()) for _ in range(2)])
    assert events_of(personas.project).count() == 600
    assert r.xlen(STREAM) == 0



def _run_in_threads(consumers: list[Consumer]) -> None:
    errors = []

    def drain(worker: Consumer) -> None:
        try:
            while worker.step().read:
                pass
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=drain, args=(worker,)) for worker in consumers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


# ----------------------------------------------------------------------------- poison


def test_poison_records_are_dead_lettered_without_blocking_their_batch(r, personas, catalog):
    doomed = Project.objects.create(organization=personas.org, name="Doomed")
    doomed_record = call(doomed, 3)
    doomed.delete()
    feed(r, [call(personas.project, 1), call(personas.project, 2, model=None), doomed_record,
             call(personas.project, 4, endpoint="telepathy"), call(personas.project, 5)])
    r.xadd(STREAM, {recorder.FIELD: b"{not json"})
    r.xadd(STREAM, {"something": "else"})

    outcome = Consumer(mark_ingested=Marked()).drain()

    assert (outcome.read, outcome.inserted, outcome.dead) == (7, 2, 5)
    assert set(events_of(personas.project).values_list("idempotency_key", flat=True)) == {"gw-req-1", "gw-req-5"}
    reasons = [fields[b"reason"].decode() for _, fields in r.xrange(DEAD)]
    assert any("model: This field is required." in reason for reason in reasons)
    assert any("endpoint: Must be one of" in reason for reason in reasons)
    assert any("project no longer exists" in reason for reason in reasons)
    assert sum("unreadable record" in reason for reason in reasons) == 2
    assert r.xlen(STREAM) == 0 and pending(r) == 0  # acknowledged: never retried forever


def test_dead_letters_keep_the_record_and_can_be_replayed(r, personas, catalog):
    feed(r, [call(personas.project, 1, provider=None)])
    worker = Consumer(mark_ingested=Marked())
    assert worker.drain().dead == 1
    (_, fields), = r.xrange(DEAD)
    assert CallRecord.from_json(fields[recorder.FIELD.encode()]).request_id == "req-1"

    assert worker.replay_dead_letters() == 1
    assert r.xlen(DEAD) == 0 and r.xlen(STREAM) == 1
    assert worker.drain().dead == 1  # still refused: back among the dead letters, not in a loop


def test_a_record_that_keeps_killing_its_consumer_is_eventually_dead_lettered(r, personas, catalog, monkeypatch):
    monkeypatch.setattr(consumer_module, "MAX_DELIVERIES", 2)
    feed(r, [call(personas.project, 1)])
    Consumer()._read(">", None)  # delivered once, never acknowledged
    for _ in range(2):  # claimed by consumers that die before acknowledging
        Consumer(claim_idle_s=0)._claim_stale()
    outcome = Consumer(claim_idle_s=0, mark_ingested=Marked()).step()
    assert (outcome.claimed, outcome.dead, outcome.inserted) == (1, 1, 0)
    assert "never acknowledged" in r.xrange(DEAD)[0][1][b"reason"].decode()


def test_the_group_is_recreated_when_the_stream_disappears(r, personas, catalog):
    worker = Consumer(mark_ingested=Marked())
    worker.ensure_group()
    r.delete(STREAM)  # say, an operator flushed it
    feed(r, [call(personas.project, 1)])
    assert worker.step().inserted == 1


# ----------------------------------------------------------------------------- budgets


def test_gateway_spend_raises_budget_alerts_like_api_spend(r, personas, catalog, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr(alert_tasks.evaluate_project_budgets, "apply_async", lambda args, **kw: queued.append(args))
    monkeypatch.setattr(alert_tasks.deliver, "delay", lambda *args, **kwargs: None)  # no channel to reach
    Budget.objects.create(organization=personas.org, project=personas.project, name="Gateway", amount=Decimal("0.01"))
    feed(r, [call(personas.project, n) for n in range(2)])  # 2 x $0.0036 = 72 % of $0.01

    with django_capture_on_commit_callbacks(execute=True):
        Consumer(mark_ingested=Marked()).drain()

    assert queued == [(personas.project.id,)]
    assert alert_tasks.evaluate_project_budgets(personas.project.id) == 1
    assert list(Alert.objects.values_list("threshold", flat=True)) == [50]


# ----------------------------------------------------------------------------- without a shared Redis


@pytest.fixture
def in_process_redis():
    """The in-process stand-in (fakeredis) instead of the shared server, as under `make run`."""
    with override_settings(GATEWAY_REDIS_URL=""):
        gateway_redis.reset_for_fork()
        yield
    gateway_redis.reset_for_fork()


@pytest.mark.django_db(transaction=True)
def test_in_process_the_gateway_drains_its_own_stream_and_a_clean_stop_loses_nothing(personas, catalog, in_process_redis):
    assert not gateway_redis.is_shared()
    count = sync_to_async(lambda: events_of(personas.project).count())

    async def gateway_process() -> None:
        stream = gateway_redis.async_client()
        stop = asyncio.Event()
        task = asyncio.create_task(consumer_module.run_in_process(stop))
        for n in range(5):
            await recorder.record(stream, call(personas.project, n))
        deadline = time.monotonic() + 60
        while await count() < 5:
            assert time.monotonic() < deadline, "the in-process consumer never ingested"
            await asyncio.sleep(0.05)
        for n in range(5, 50):  # recorded just before shutdown: drained on the way out
            await recorder.record(stream, call(personas.project, n))
        stop.set()
        await task
        await sync_to_async(lambda: connection.close())()  # the helper thread's own connection

    asyncio.run(gateway_process())
    assert events_of(personas.project).count() == 50
    assert gateway_redis.sync_client().xlen(STREAM) == 0


# ----------------------------------------------------------------------------- real processes


def consumer_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ, "PULSE_ENV": "test", "DATABASE_URL": database_url_of_test_database(),
        "REDIS_URL": settings.REDIS_URL, "GATEWAY_KEY_PREFIX": settings.GATEWAY_KEY_PREFIX,
        "GATEWAY_CALL_STREAM": STREAM, "PYTHONUNBUFFERED": "1", **extra,
    }


def stop(process: subprocess.Popen) -> str:
    """SIGTERM (if still running); its output."""
    if process.poll() is None:
        process.terminate()
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output or ""


@pytest.fixture
def start_consumer():
    """start_consumer(**env) -> a `manage.py gateway_consumer` process; all are stopped after."""
    started: list[subprocess.Popen] = []

    def _start(**extra: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "gateway_consumer"], cwd=PROJECT_ROOT, env=consumer_env(**extra),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        started.append(process)
        return process

    yield _start
    for process in started:
        if process.returncode is None:
            print(stop(process)[-4000:])  # shown by pytest only when the test fails


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting until {what}"
        time.sleep(0.05)


class RollupLock:
    """Holds a lock on the rollups table from another connection: a consumer's batch inserts its
    events, then waits at its rollup upsert, inside its open transaction — mid-batch, for sure."""

    def __init__(self) -> None:
        self.connection = psycopg.connect(database_url_of_test_database())

    def __enter__(self) -> RollupLock:
        # SHARE ROW EXCLUSIVE conflicts with the ROW EXCLUSIVE lock every INSERT/UPDATE takes.
        self.connection.execute("LOCK TABLE costs_costrollup IN SHARE ROW EXCLUSIVE MODE")
        return self

    def someone_waits(self) -> bool:
        with psycopg.connect(database_url_of_test_database(), autocommit=True) as probe:
            return probe.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'costs_costrollup' AND NOT l.granted "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()[0] > 0

    def __exit__(self, *exc: object) -> None:
        self.connection.rollback()
        self.connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_consumer_killed_mid_batch_loses_nothing_and_doubles_nothing(r, personas, catalog, start_consumer):
    committed = events_of(personas.project)
    batch = 50
    fast_takeover = {"GATEWAY_CONSUMER_BATCH": str(batch), "GATEWAY_CONSUMER_CLAIM_IDLE_S": "1"}
    first = start_consumer(**fast_takeover)
    feed(r, [call(personas.project, n) for n in range(200)])
    wait_until(lambda: committed.count() == 200 and pending(r) == 0, "the first wave is ingested")

    with RollupLock() as lock:
        feed(r, [call(personas.project, n) for n in range(200, 600)])
        wait_until(lock.someone_waits, "the consumer is inside its next batch")
        assert pending(r) == batch  # read, its events inserted but not committed, not acknowledged
        first.kill()  # SIGKILL: no clean shutdown, no rollback sent
        first.wait(timeout=30)
    assert committed.count() == 200

    second = start_consumer(**fast_takeover)  # takes over the dead one's batch after 1 s, and reads the rest
    wait_until(lambda: committed.count() >= 600 and pending(r) == 0 and r.xlen(STREAM) == 0, "all 600 are ingested")
    assert f"took over {batch} records another consumer left unacknowledged" in stop(second)
    assert committed.count() == 600
    assert committed.values("idempotency_key").distinct().count() == 600
    for granularity in ("h", "d"):
        rolled = CostRollup.objects.dangerously_unscoped().filter(project=personas.project, granularity=granularity, tag_key="")
        assert rolled.aggregate(n=Sum("requests"), cost=Sum("cost_usd")) == {"n": 600, "cost": 600 * COST}


@pytest.mark.django_db(transaction=True)
def test_sigterm_finishes_the_batch_in_hand_then_exits(r, personas, catalog, start_consumer):
    committed = events_of(personas.project)
    process = start_consumer(GATEWAY_CONSUMER_BATCH="25")
    with RollupLock() as lock:
        feed(r, [call(personas.project, n) for n in range(100)])
        wait_until(lock.someone_waits, "the consumer is inside a batch")
        process.terminate()  # SIGTERM while the batch waits on the lock
    assert process.wait(timeout=60) == 0
    assert committed.count() == 25  # the batch in hand was committed…
    assert pending(r) == 0  # …and acknowledged; the rest waits in the stream for the next consumer
    assert r.xlen(STREAM) == 75


def test_without_a_shared_redis_the_command_idles_until_stopped(start_consumer):
    process = start_consumer(GATEWAY_REDIS_URL="")
    lines = []
    while not any("GATEWAY_REDIS_URL is unset" in line for line in lines):
        lines.append(process.stdout.readline())
        assert lines[-1], f"the command ended: {lines}"
    assert process.poll() is None  # still there: honcho would stop every process if it exited
    process.terminate()
    assert process.wait(timeout=30) == 0
