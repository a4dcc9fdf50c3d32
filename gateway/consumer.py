"""Drains the gateway's call stream into cost events: exactly once, in batches, off the hot path.

    manage.py gateway_consumer                 # with a shared Redis: as many processes as you like
    await consumer.run_in_process(stop)        # without one (make run): inside the gateway process

One consumer group (`GROUP`) on `settings.GATEWAY_CALL_STREAM`; each consumer process:

1. takes over records another consumer read but never acknowledged (it died): XAUTOCLAIM of
   entries idle for GATEWAY_CONSUMER_CLAIM_IDLE_S, else reads new ones (XREADGROUP, up to
   GATEWAY_CONSUMER_BATCH);
2. ingests them in ONE database transaction, per (project, token): `costs.ingestion.ingest(
   project, items, token=…, trusted=True)`, the item's idempotency key being "gw-" + the request
   id, so a record delivered again after a crash is a duplicate, never a second event; bodies
   are stored in the same transaction; budgets hear of the new spend as after any ingestion
   (costs' `usage_recorded` signal, on commit);
3. after the commit, tells admission which budget charges are now in the database
   (`gateway.admission.mark_ingested`, for new and duplicate records alike: it is idempotent);
4. only then acknowledges and deletes the records (XACK + XDEL in one MULTI).

Killed anywhere (SIGKILL included): before the commit nothing was written and the records are
claimed again; after it they are ingested again as duplicates. Nothing is lost, nothing doubles.

A poison record — unreadable, refused by ingestion, of a deleted project, or delivered
MAX_DELIVERIES times without ever being acknowledged (it kills its consumer) — is logged,
copied to the dead-letter stream (`<stream>:dead`, with the reason) and acknowledged in the
same MULTI, so it neither blocks its batch nor comes back forever. `manage.py gateway_consumer
--replay-dead-letters` puts them back once the cause is fixed (ingestion is idempotent).

A database outage is not a poison: the batch stays unacknowledged, the consumer backs off and
does not read more until the database answers (so records do not pile up deliveries).

Deleting acknowledged records assumes this group is the stream's only reader (a second group
would lose them). A batch holds its records' bodies in memory: with projects keeping large
bodies, lower GATEWAY_CONSUMER_BATCH (500 records x 2 x body_max_bytes at most).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    close_old_connections,
    connection,
    transaction,
)
from django.utils import timezone

from accounts.models import ApiToken, Project
from costs import ingestion

from . import admission
from . import redis as gateway_redis
from .recorder import FIELD, CallRecord

logger = logging.getLogger(__name__)

GROUP = "ingest"
DEAD_LETTER_SUFFIX = ":dead"
# Dead letters are kept for an operator; past this many the oldest go (approximate trim).
DEAD_LETTER_MAXLEN = 100_000
# A record delivered this often without an acknowledgement takes its consumer down with it.
MAX_DELIVERIES = 10
BLOCK_MS = 1000  # how long a read waits for new records (and so how soon SIGTERM is noticed)
IN_PROCESS_POLL_S = 0.2
RETRY_BACKOFF_S = (0.5, 1, 2, 5, 10)
# Consumers that left (no pending records) and have not read for this long are forgotten.
FORGET_CONSUMER_AFTER_MS = 3600 * 1000
# Errors of the database itself, not of one record: retry the batch later, dead-letter nothing.
INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError, ProgrammingError)

Entry = tuple[bytes, dict]


@dataclass
class Poison:
    entry_id: bytes
    fields: dict
    reason: str


@dataclass
class BatchOutcome:
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead: int = 0
    claimed: int = 0


@dataclass
class _Batch:
    fields_of: dict[bytes, dict] = field(default_factory=dict)  # each entry as read, for dead letters
    records: list[tuple[bytes, CallRecord]] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    done: list[tuple[bytes, CallRecord]] = field(default_factory=list)  # ingested (new or duplicate)
    inserted: int = 0
    duplicates: int = 0


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Consumer:
    """One member of the consumer group. Not thread-safe: one thread drives it."""

    def __init__(
        self, r: redis.Redis | None = None, *, name: str | None = None, stream: str | None = None,
        batch: int | None = None, claim_idle_s: float | None = None,
        mark_ingested: Callable[[Sequence[tuple[str, dict[int, int]]]], None] | None = None,
    ) -> None:
        self.r = r if r is not None else gateway_redis.sync_client()
        self.name = name or consumer_name()
        self.stream = stream or settings.GATEWAY_CALL_STREAM
        self.dead_letters = self.stream + DEAD_LETTER_SUFFIX
        self.batch = max(1, batch or settings.GATEWAY_CONSUMER_BATCH)
        self.claim_idle_ms = int(1000 * (settings.GATEWAY_CONSUMER_CLAIM_IDLE_S if claim_idle_s is None else claim_idle_s))
        self._mark_ingested = admission.mark_ingested if mark_ingested is None else mark_ingested
        self._claim_from = b"0-0"
        # After a failed batch, our own unacknowledged records are retried first (rather than
        # waiting to be claimed back after the idle time).
        self._retry_own = False

    # ------------------------------------------------------------------ the group

    def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; forget long-gone consumers."""
        try:
            self.r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._forget_departed()

    def _forget_departed(self) -> None:
        try:
            consumers = self.r.xinfo_consumers(self.stream, GROUP)
        except redis.ResponseError:
            return
        for info in consumers:
            name = info.get("name")
            if info.get("pending") == 0 and (info.get("idle") or 0) > FORGET_CONSUMER_AFTER_MS:
                self.r.xgroup_delconsumer(self.stream, GROUP, name)

    def _group_call(self, call: Callable[[], object]) -> object:
        """`call`, recreating the group once if it vanished (NOGROUP: the stream was deleted)."""
        try:
            return call()
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            logger.warning("The consumer group of %s was missing; recreating it", self.stream)
            self.ensure_group()
            return call()

    # ------------------------------------------------------------------ one batch

    def step(self, *, block_ms: int | None = None) -> BatchOutcome:
        """Handle one batch: our own records of a failed batch first, then records a dead
        consumer left pending, else new ones."""
        entries, redelivered = [], True
        if self._retry_own:
            entries = self._read(b"0", None)
            self._retry_own = bool(entries)
        if not entries:
            entries = self._claim_stale()
        claimed = len(entries)
        if not entries:
            entries, redelivered, claimed = self._read(">", block_ms), False, 0
        if not entries:
            return BatchOutcome()
        try:
            outcome = self.handle(entries, redelivered=redelivered)
        except Exception:
            self._retry_own = True
            raise
        outcome.claimed = claimed
        if claimed:
            logger.info("Gateway consumer %s took over %s records another consumer left unacknowledged", self.name, claimed)
        return outcome

    def _read(self, from_id: bytes | str, block_ms: int | None) -> list[Entry]:
        """New records (`>`), or our own still unacknowledged ones (`0`)."""
        response = self._group_call(
            lambda: self.r.xreadgroup(GROUP, self.name, {self.stream: from_id}, count=self.batch, block=block_ms)
        )
        if not response:
            return []
        if isinstance(response, dict):  # RESP3: {stream: [[(id, fields), …]]}
            return [entry for messages in response.values() for entry in messages[0]]
        return [(entry_id, fields) for _stream, messages in response for entry_id, fields in messages if fields]

    def _claim_stale(self) -> list[Entry]:
        response = self._group_call(
            lambda: self.r.xautoclaim(
                self.stream, GROUP, self.name, min_idle_time=self.claim_idle_ms, start_id=self._claim_from, count=self.batch,
            )
        )
        next_start, entries = response[0], response[1]
        # Walk the pending list page by page; back to its start once through it.
        self._claim_from = next_start if next_start not in (b"0-0", "0-0") else b"0-0"
        return [(entry_id, fields) for entry_id, fields in entries if fields is not None]

    def handle(self, entries: Sequence[Entry], *, redelivered: bool = False) -> BatchOutcome:
        """Ingest `entries` in one transaction, then acknowledge them (see the module's doc)."""
        batch = _Batch()
        deliveries = self._deliveries(entries) if redelivered else {}
        for entry_id, fields in entries:
            batch.fields_of[entry_id] = fields
            if deliveries.get(entry_id, 0) > MAX_DELIVERIES:
                batch.poison.append(Poison(entry_id, fields, f"delivered {deliveries[entry_id]} times, never acknowledged"))
                continue
            try:
                batch.records.append((entry_id, CallRecord.from_entry(fields)))
            except ValueError as error:
                batch.poison.append(Poison(entry_id, fields, f"unreadable record: {error}"))
        if batch.records:
            self._ingest(batch)  # raises on a database outage: nothing is acknowledged
        if batch.done:
            # Raises when admission cannot be told: the records stay pending and are ingested
            # again later as duplicates, which tells admission then.
            self._mark_ingested([(record.request_id, record.budget_charges) for _, record in batch.done])
        self._acknowledge([entry_id for entry_id, _ in batch.done], batch.poison)
        return BatchOutcome(read=len(entries), inserted=batch.inserted, duplicates=batch.duplicates, dead=len(batch.poison))

    def _deliveries(self, entries: Sequence[Entry]) -> dict[bytes, int]:
        ids = [entry_id for entry_id, _ in entries]
        pending = self.r.xpending_range(self.stream, GROUP, min=min(ids), max=max(ids), count=len(ids) * 2 + 10, consumername=self.name)
        return {row["message_id"]: row["times_delivered"] for row in pending}

    # ------------------------------------------------------------------ the database

    def _ingest(self, batch: _Batch) -> None:
        if not connection.in_atomic_block:
            # As at the start of a request: a connection the database dropped (or one past
            # CONN_MAX_AGE) is replaced rather than failing the batch.
            close_old_connections()
        groups: dict[tuple[int, int | None], list[tuple[bytes, CallRecord]]] = {}
        for entry_id, record in batch.records:
            groups.setdefault((record.project_id, record.token_id), []).append((entry_id, record))
        projects = Project.objects.in_bulk({project_id for project_id, _ in groups})
        tokens = ApiToken.objects.in_bulk({token_id for _, token_id in groups if token_id is not None})
        with transaction.atomic():
            for (project_id, token_id), group in groups.items():
                project = projects.get(project_id)
                if project is None:
                    batch.poison.extend(Poison(e, batch.fields_of[e], "the project no longer exists") for e, _ in group)
                    continue
                # A token deleted since the call: the event is kept, without its token.
                token = tokens.get(token_id) if token_id is not None else None
                for start in range(0, len(group), ingestion.MAX_BATCH):
                    self._ingest_group(batch, project, token, group[start:start + ingestion.MAX_BATCH])

    def _ingest_group(self, batch: _Batch, project: Project, token: ApiToken | None, group: list[tuple[bytes, CallRecord]]) -> None:
        try:
            with transaction.atomic():  # a savepoint: a failure here leaves the other groups' work
                result = ingestion.ingest(project, [record.as_item() for _, record in group], token=token, trusted=True)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception:  # one record the database (or ingestion) chokes on: find it alone
            if len(group) == 1:
                entry_id, record = group[0]
                logger.exception("Gateway record %s could not be ingested", record.request_id)
                batch.poison.append(Poison(entry_id, batch.fields_of[entry_id], "ingestion failed (see the consumer's log)"))
                return
            for one in group:
                self._ingest_group(batch, project, token, [one])
            return
        refused: dict[int, list[str]] = {}
        for error in result.errors:
            refused.setdefault(error.index, []).append(f"{error.field}: {error.message}")
        for index, (entry_id, record) in enumerate(group):
            if index in refused:
                batch.poison.append(Poison(entry_id, batch.fields_of[entry_id], "refused by ingestion: " + "; ".join(refused[index])))
            else:
                batch.done.append((entry_id, record))
        batch.inserted += result.inserted
        batch.duplicates += result.duplicates

    # ------------------------------------------------------------------ acknowledging

    def _acknowledge(self, done: Iterable[bytes], poison: Sequence[Poison]) -> None:
        """One MULTI: dead letters written, every handled record acknowledged and deleted."""
        ids = [*done, *(p.entry_id for p in poison)]
        if not ids:
            return
        pipe = self.r.pipeline(transaction=True)
        for p in poison:
            logger.error("Dead-lettering gateway record %s: %s", _text(p.entry_id), p.reason)
            pipe.xadd(self.dead_letters, {
                FIELD: p.fields.get(FIELD.encode(), p.fields.get(FIELD, b"")) or b"",
                "reason": p.reason, "entry_id": p.entry_id, "consumer": self.name, "at": timezone.now().isoformat(),
            }, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
        pipe.xack(self.stream, GROUP, *ids)
        # Acknowledged records are deleted: the stream holds the backlog only, never trimmed.
        pipe.xdel(self.stream, *ids)
        pipe.execute()

    def replay_dead_letters(self) -> int:
        """Put every dead letter back on the call stream (after fixing what refused them)."""
        replayed = 0
        while True:
            entries = self.r.xrange(self.dead_letters, count=500)
            if not entries:
                return replayed
            pipe = self.r.pipeline(transaction=True)
            for entry_id, fields in entries:
                data = fields.get(FIELD.encode(), fields.get(FIELD))
                if data:
                    pipe.xadd(self.stream, {FIELD: data})
                    replayed += 1
                pipe.xdel(self.dead_letters, entry_id)
            pipe.execute()

    # ------------------------------------------------------------------ running

    def run(self, stop: threading.Event, *, block_ms: int = BLOCK_MS) -> None:
        """Batches until `stop` is set; the batch in hand is finished (committed and
        acknowledged) first. A failing database or Redis is retried with a growing pause."""
        logger.info("Gateway consumer %s reading %s (batches of %s)", self.name, self.stream, self.batch)
        failures, ready = 0, False
        while not stop.is_set():
            try:
                if not ready:  # Redis may not be up yet: retried like any failure
                    self.ensure_group()
                    ready = True
                if failures:
                    connection.ensure_connection()  # read nothing more until the database answers
                self.step(block_ms=block_ms)
                failures = 0
            except Exception:  # the database, Redis, or admission: never let the consumer die
                pause = RETRY_BACKOFF_S[min(failures, len(RETRY_BACKOFF_S) - 1)]
                failures += 1
                logger.exception("Gateway consumer %s: batch failed; retrying in %ss", self.name, pause)
                _close_connection()
                stop.wait(pause)
        logger.info("Gateway consumer %s stopped", self.name)

    def drain(self, *, max_batches: int = 10_000) -> BatchOutcome:
        """Every record now in the stream (tests, shutdown); claims pending ones regardless of idle time."""
        total = BatchOutcome()
        idle, self.claim_idle_ms = self.claim_idle_ms, 0
        try:
            for _ in range(max_batches):
                outcome = self.step(block_ms=None)
                if not outcome.read:
                    break
                for name in ("read", "inserted", "duplicates", "dead", "claimed"):
                    setattr(total, name, getattr(total, name) + getattr(outcome, name))
        finally:
            self.claim_idle_ms = idle
        return total


def _close_connection() -> None:
    try:
        connection.close()
    except DatabaseError:
        pass


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# ---------------------------------------------------------------------------------------------
# Without a shared Redis: inside the gateway process
# ---------------------------------------------------------------------------------------------


async def run_in_process(stop: asyncio.Event) -> None:
    """The consumer as an asyncio task of the gateway process, for when the stream lives in its
    in-process stand-in (`not gateway.redis.is_shared()`, e.g. make run): no other process can
    see it. Database work runs on one dedicated thread (one connection, closed at the end).
    When `stop` is set it drains what is left before returning, so a clean shutdown loses
    nothing."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-consumer")

    def in_thread(func: Callable, *args: object, **kwargs: object):  # noqa: ANN202
        return sync_to_async(func, thread_sensitive=False, executor=executor)(*args, **kwargs)

    consumer = Consumer()
    failures = 0
    try:
        await in_thread(consumer.ensure_group)
        while not stop.is_set():
            try:
                outcome = await in_thread(consumer.step, block_ms=None)
                failures = 0
            except Exception:
                logger.exception("In-process gateway consumer: batch failed; retrying")
                await in_thread(_close_connection)
                outcome = BatchOutcome()
                failures += 1
            if not outcome.read:
                pause = IN_PROCESS_POLL_S if not failures else RETRY_BACKOFF_S[min(failures, len(RETRY_BACKOFF_S)) - 1]
                try:
                    await asyncio.wait_for(stop.wait(), pause)
                except TimeoutError:
                    pass
        try:
            await in_thread(consumer.drain)
        except Exception:  # the database is down at shutdown: what is left goes with the process
            logger.exception("In-process gateway consumer: could not drain the call stream before stopping")
    finally:
        await in_thread(_close_connection)
        executor.shutdown(wait=False)


def idle_until(stop: threading.Event, *, log_every_s: float = 3600) -> None:
    """What the management command does without a shared Redis: nothing, politely (honcho stops
    every process when one exits)."""
    while not stop.wait(log_every_s):
        logger.info("GATEWAY_REDIS_URL is unset: the gateway process drains its own calls; nothing to do here")

