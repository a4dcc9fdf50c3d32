"""Getting tracked events to Pulse: a bounded queue, background senders, retries, flush at exit.

The caller's thread only appends to the queue (`Delivery.put`, a few hundred nanoseconds under a
lock nobody holds for long). Sender threads, started on the first event, take up to `batch_size`
events at a time, when a full batch is waiting, when the oldest waiting event is
`flush_interval` old, or at once when someone calls `flush()`, and POST them to
`/api/v1/events/batch`.

What the guarantees rest on:
- Every event carries an idempotency key fixed when it was tracked, and a batch is retried with
  the very same body, so when the server stored a batch but its answer was lost (a timeout, a
  restart, a dropped connection) the retry comes back as duplicates: nothing counts twice.
- Transport errors, 408, 429, and 502/503/504 (a proxy saying Pulse is away, e.g. being
  redeployed) are retried until they succeed (with backoff and the server's Retry-After),
  because the server is away or busy and the events are still good; the queue is bounded, so a
  long outage costs the newest events (dropped and counted), never unbounded memory. Another 5xx
  answer is retried `max_retries` times and then the batch is given up: a batch the server
  keeps failing on must not block everything behind it forever.
- What the server refuses is never retried: a bad event is refused alone (logged with the
  server's reason), a bad token or scope fails its batch (logged once in a while, not per batch).
- Each event ends in exactly one of sent, duplicates, rejected, failed or dropped, so
  `tracked == queued + sent + duplicates + rejected + failed + dropped` at every moment.
- After fork() the child starts empty, with its own lock, threads and connections: the parent's
  waiting events are the parent's to send, so none is sent twice.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx

from . import retry
from .config import USER_AGENT
from .events import Event, describe, encode_batch

logger = logging.getLogger("pulse_sdk")

BATCH_PATH = "/api/v1/events/batch"
MAX_BATCH_SIZE = 1000  # the batch API's limit
DROP_WARNING_INTERVAL_S = 10.0
REJECTION_LOG_BURST = 10  # refused events logged per interval; the rest are counted, then summed up
REJECTION_LOG_INTERVAL_S = 10.0
FAILURE_LOG_INTERVAL_S = 60.0  # a revoked token fails every batch: say so once a minute, not per batch
RETRY_LOG_INTERVAL_S = 30.0
# What a proxy in front of Pulse answers while Pulse is down or restarting: retried as long as a
# refused connection is, not given up after max_retries like a 500 from Pulse itself.
AWAY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Stats:
    """What a client did with the events it was given, counted in events (but `retried` and
    `batches`, which count requests). Every tracked event is in exactly one of queued, sent,
    duplicates, rejected, failed and dropped:

    - tracked: track() calls on an enabled client;
    - queued: waiting in memory or in a request not answered yet;
    - sent: stored by Pulse;
    - duplicates: Pulse had them already (a retry of a batch whose answer was lost);
    - rejected: refused by Pulse one by one, with a reason in the log (never retried);
    - failed: in batches Pulse refused as a whole (bad token, missing scope, repeated 5xx);
    - dropped: never sent because the queue was full, the client was closed, or the process
      exited before they could be delivered;
    - retried: requests sent again after an error; batches: requests answered for good.
    """

    tracked: int = 0
    queued: int = 0
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    dropped: int = 0
    failed: int = 0
    retried: int = 0
    batches: int = 0


class LogLimiter:
    """Lets `burst` messages through per `interval` seconds and counts the others, so that a
    flood of the same problem gives a few lines saying how many there were, not a line each."""

    def __init__(self, interval: float, burst: int = 1) -> None:
        self.interval = interval
        self.burst = burst
        self._window = float("-inf")
        self._used = 0
        self.suppressed = 0

    def allow(self) -> int | None:
        """None: stay quiet. Else go ahead; the number is how many were held back since."""
        now = time.monotonic()
        if now - self._window >= self.interval:
            self._window, self._used = now, 0
        if self._used < self.burst:
            self._used += 1
            suppressed, self.suppressed = self.suppressed, 0
            return suppressed
        self.suppressed += 1
        return None


@dataclass
class _Tally:
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    dropped: int = 0
    batches: int = 0


def _server_message(response: httpx.Response) -> str:
    """The server's explanation from a JSON error body ({"detail": …} or {field: [messages]})."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] if text else response.reason_phrase
    if isinstance(data, dict):
        detail = data.get("detail")
        if isinstance(detail, str):
            return detail
        parts = []
        for name, messages in data.items():
            if isinstance(messages, list):
                messages = " ".join(str(message) for message in messages)
            parts.append(f"{name}: {messages}")
        if parts:
            return "; ".join(parts)[:500]
    return str(data)[:500]


def _is_item_result(data: Any) -> bool:
    """A batch answer ({accepted, duplicates, rejected, errors}) rather than a refused request."""
    return isinstance(data, dict) and isinstance(data.get("errors"), list) and "accepted" in data


class Delivery:
    """The queue and the senders of one Client (see the module's docstring)."""

    def __init__(self, *, base_url: str, api_key: str, project: str | None, batch_size: int,
                 max_queue_size: int, flush_interval: float, timeout: float, max_in_flight: int,
                 max_retries: int, shutdown_timeout: float) -> None:
        self.url = base_url + BATCH_PATH
        self.params: dict[str, str] | None = {"project": project} if project else None
        self.headers = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
        }
        self.batch_size = batch_size
        self.max_queue_size = max_queue_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.shutdown_timeout = shutdown_timeout
        self._closed = False
        self._reset()
        _register(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a child process after fork()."""
        # Reentrant: code that runs in the middle of other code in the same thread can come back
        # here holding it, e.g. a signal handler that tracks, or the garbage collector running a
        # dropped Client's finalizer (close_soon) inside a sender's critical section.
        self._lock = threading.RLock()
        self._work = threading.Condition(self._lock)  # senders wait here for events
        self._settled_cv = threading.Condition(self._lock)  # flush() waits here
        self._stop = threading.Event()  # close() gave up waiting: stop retrying
        self._queue: deque[Event] = deque()
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._http: httpx.Client | None = None
        self._accepting = not self._closed
        self._stopping = self._closed
        self._urgent = 0  # flush() calls waiting: send partial batches now
        self._idle = 0  # senders waiting for work
        self._due: float | None = None  # when the oldest waiting event must go
        # Events are numbered in the order they are queued and taken in that order, so "every
        # event queued before" is "every number below": flush() waits until the lowest number
        # not yet settled (the first of a batch in a request, else the next to take) is past
        # its target. A count of settled events would not do: with two requests in flight a
        # later batch can settle before an earlier one.
        self._enqueued = self._taken = self._settled = 0
        self._in_flight: set[int] = set()  # the first number of each batch being sent
        self._refused_at_put = self._lost = 0
        self._sent = self._duplicates = self._rejected = self._failed = 0
        self._retried = self._batches = 0
        self._closed_noted = False
        self._drop_log = LogLimiter(DROP_WARNING_INTERVAL_S)
        self._rejection_log = LogLimiter(REJECTION_LOG_INTERVAL_S, REJECTION_LOG_BURST)
        self._failure_logs: dict[Any, LogLimiter] = {}
        self._retry_log = LogLimiter(RETRY_LOG_INTERVAL_S)

    # -- the caller's side ----------------------------------------------------------------------

    def put(self, event: Event) -> bool:
        """Queues `event`; False when it was dropped instead (queue full, or closed)."""
        with self._lock:
            queue = self._queue
            if self._accepting and len(queue) < self.max_queue_size:
                queue.append(event)
                self._enqueued += 1
                if self._idle and (len(queue) == 1 or len(queue) >= self.batch_size):
                    self._work.notify()
                accepted = True
            else:
                self._refused_at_put += 1
                accepted = False
        if accepted:
            if not self._threads:
                self._start()
            return True
        self._note_drop()
        return False

    def _note_drop(self) -> None:
        if self._closed:
            if not self._closed_noted:
                self._closed_noted = True
                logger.warning("Pulse: track() was called on a closed client; the event was dropped "
                               "(and later ones will be, silently). Track with a client that is open.")
            return
        if self._drop_log.allow() is not None:
            logger.warning(
                "Pulse: the event queue is full (%d events waiting to be sent), so new events are being "
                "dropped: %d so far. Pulse is unreachable or slower than events arrive; see the log for "
                "why, or raise max_queue_size.", self.max_queue_size, self._refused_at_put,
            )

    def flush(self, timeout: float | None) -> bool:
        """Blocks until every event queued before the call is settled, or `timeout` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._enqueued
            if self._unsettled_from() >= target:
                return True
            if threading.current_thread() in self._threads:
                return False  # a sender waiting for itself would wait forever
            self._urgent += 1
            self._work.notify_all()
        try:
            if not any(thread.is_alive() for thread in self._threads):
                self._send_inline(deadline)  # no sender (it could not be started): do its job here
            with self._lock:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                return self._settled_cv.wait_for(lambda: self._unsettled_from() >= target, remaining)
        finally:
            with self._lock:
                self._urgent -= 1

    def close(self, timeout: float | None, *, when: str = "close() returned") -> None:
        """Flushes for up to `timeout` seconds, then stops the senders; what is left is dropped
        (counted, and logged). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._accepting = False
        started = time.monotonic()
        self.flush(timeout)
        with self._lock:
            self._stopping = True
            left = len(self._queue)
            if left:
                self._queue.clear()
                self._taken += left
                self._lost += left
                self._settle_locked(left)
            self._work.notify_all()
            threads = list(self._threads)
        self._stop.set()  # a sender waiting to retry gives its batch up
        remaining = 0.0 if timeout is None else max(0.0, started + timeout - time.monotonic())
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(remaining, 0.5))
        with self._lock:
            lost, in_flight = self._lost, self._enqueued - self._settled
        if lost or in_flight:
            logger.warning(
                "Pulse: %d events were not delivered before %s%s. See earlier messages for why "
                "(usually Pulse unreachable); flush(timeout) earlier or a longer timeout gives them more time.",
                lost + in_flight, when, f" ({in_flight} still in a request)" if in_flight else "",
            )
        _unregister(self)

    def close_soon(self) -> None:
        """Stop accepting, send what is queued, then let the senders end (without waiting): what
        a Client that was garbage-collected without close() gets."""
        with self._lock:
            self._accepting = False
            self._stopping = True
            self._work.notify_all()

    def stats(self) -> Stats:
        with self._lock:
            return Stats(
                tracked=self._enqueued + self._refused_at_put, queued=self._enqueued - self._settled,
                sent=self._sent, duplicates=self._duplicates, rejected=self._rejected,
                dropped=self._refused_at_put + self._lost, failed=self._failed,
                retried=self._retried, batches=self._batches,
            )

    # -- the senders ----------------------------------------------------------------------------

    def _start(self) -> None:
        _hook_multiprocessing_exit()
        with self._lock:
            if self._threads or self._stopping:
                return
            self._threads = [
                threading.Thread(target=self._run, name=f"pulse-sdk-sender-{number}", daemon=True)
                for number in range(self.max_in_flight)
            ]
            threads = self._threads
        for thread in threads:
            try:
                thread.start()
            except RuntimeError as error:  # e.g. "can't create new thread at interpreter shutdown"
                logger.warning("Pulse: cannot start the sender thread (%s); flush() will send instead.", error)
                return

    def _run(self) -> None:
        with self._lock:
            self._running += 1
        try:
            while True:
                taken = self._next_batch()
                if taken is None:
                    return
                self._deliver(*taken)
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0 and self._stopping
                http, self._http = (self._http, None) if last else (None, self._http)
            if http is not None:
                http.close()

    def _next_batch(self) -> tuple[int, list[Event]] | None:
        """The next batch to send, once one is due; None when the senders should end."""
        with self._lock:
            while True:
                queue = self._queue
                waiting = len(queue)
                now = time.monotonic()
                if waiting:
                    if self._due is None:
                        self._due = now + self.flush_interval
                    if waiting >= self.batch_size or self._urgent or self._stopping or now >= self._due:
                        return self._take_locked(waiting)
                    timeout: float | None = self._due - now
                elif self._stopping:
                    return None
                else:
                    timeout = None  # put() wakes a sender on the first event
                self._idle += 1
                try:
                    self._work.wait(timeout)
                finally:
                    self._idle -= 1

    def _take_locked(self, waiting: int) -> tuple[int, list[Event]]:
        """The next batch and the number of its first event, now in flight."""
        queue = self._queue
        if waiting <= self.batch_size:
            batch = list(queue)
            queue.clear()
            self._due = None  # nothing left waiting: the next event starts the clock
        else:
            popleft = queue.popleft
            batch = [popleft() for _ in range(self.batch_size)]
        first = self._taken
        self._taken += len(batch)
        self._in_flight.add(first)
        return first, batch

    def _unsettled_from(self) -> int:
        """The number of the first event not settled yet (all before it are)."""
        return min(self._in_flight) if self._in_flight else self._taken

    def _send_inline(self, deadline: float | None) -> None:
        while deadline is None or time.monotonic() < deadline:
            with self._lock:
                waiting = len(self._queue)
                if not waiting:
                    return
                taken = self._take_locked(waiting)
            self._deliver(*taken)

    def _deliver(self, first: int, batch: list[Event]) -> None:
        tally = _Tally()
        try:
            self._send(batch, tally)
        except Exception:  # a defect here must not end delivery for everything behind this batch
            logger.exception("Pulse: unexpected error while sending %d events; they are counted as failed. "
                             "Please report this.", len(batch))
            tally = _Tally(failed=len(batch))
        with self._lock:
            self._sent += tally.sent
            self._duplicates += tally.duplicates
            self._rejected += tally.rejected
            self._failed += tally.failed
            self._lost += tally.dropped
            self._batches += tally.batches
            self._in_flight.discard(first)
            self._settle_locked(len(batch))

    def _settle_locked(self, count: int) -> None:
        self._settled += count
        self._settled_cv.notify_all()

    def _client(self) -> httpx.Client:
        http = self._http
        if http is None:
            # Made outside the lock: building its TLS context takes milliseconds, which track()
            # must never wait for.
            fresh = httpx.Client(
                headers=self.headers, timeout=self.timeout, follow_redirects=False,
                limits=httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight),
            )
            with self._lock:
                if self._http is None:
                    self._http = fresh
                else:
                    fresh.close()  # another sender made one meanwhile (nothing sent on it)
                http = self._http
        return http

    def _send(self, events: list[Event], tally: _Tally) -> None:
        """POSTs `events` until the server settles them, splitting the batch on 413."""
        body, events, unencodable = encode_batch(events)
        for event, reason in unencodable:
            tally.rejected += 1
            self._log_rejection(event, reason)
        if not events:
            return
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            problem = ""
            try:
                response = self._client().post(self.url, content=body, params=self.params)
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as error:
                # The request cannot be made at all (Client checks the URL and key first, so
                # this is a defence): no retry makes it possible.
                self._log_failure(type(error), "Pulse: cannot send events to %s (%s); %d events are dropped. "
                                  "Check PULSE_BASE_URL and the API key.", self.url, error, len(events))
                tally.failed += len(events)
                tally.batches += 1
                return
            except retry.RETRYABLE_ERRORS as error:
                problem = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            if response is not None:
                status = response.status_code
                if status == 413 and len(events) > 1:
                    half = len(events) // 2
                    self._send(events[:half], tally)
                    self._send(events[half:], tally)
                    return
                if not retry.is_retryable_status(status):
                    tally.batches += 1
                    self._settle_answer(events, response, tally)
                    return
                problem = f"HTTP {status}"
                if 500 <= status < 600 and status not in AWAY_STATUSES and attempt > self.max_retries:
                    self._log_failure(status, "Pulse: the server kept failing (%s, %d attempts); %d events are given up. "
                                      "%s", problem, attempt, len(events), _server_message(response))
                    tally.failed += len(events)
                    tally.batches += 1
                    return
            delay = retry.delay_for(attempt, response)
            if self._retry_log.allow() is not None:
                logger.warning("Pulse: sending %d events to %s failed (%s); retrying in %.1f s, then as needed. "
                               "Nothing is lost while the queue has room.", len(events), self.url, problem, delay)
            logger.debug("Pulse: retry %d in %.2f s after %s", attempt, delay, problem)
            with self._lock:
                self._retried += 1
            if self._stop.wait(delay):
                tally.dropped += len(events)  # close() stopped waiting for them
                return

    def _settle_answer(self, events: list[Event], response: httpx.Response, tally: _Tally) -> None:
        status = response.status_code
        if status in (200, 201, 202) or status == 400:
            try:
                data = response.json()
            except ValueError:
                data = None
            if _is_item_result(data):
                self._count_items(events, data, tally)
                return
            if status != 400:  # stored (2xx), though the answer is not what this SDK knows
                tally.sent += len(events)
                return
        tally.failed += len(events)
        if status == 401:
            self._log_failure(401, "Pulse refused the API key (HTTP 401: %s): it is revoked, expired or "
                              "mistyped. %d events are dropped, and every batch will be until the "
                              "application gets a valid token (PULSE_API_KEY or `pulse login`).",
                              _server_message(response), len(events))
        elif status == 403:
            self._log_failure(403, "Pulse refused the events (HTTP 403: %s). %d events are dropped; use a "
                              "token with the ingest scope.", _server_message(response), len(events))
        elif status == 404:
            self._log_failure(404, "Pulse answered 404 for %s (%s): check PULSE_BASE_URL (Pulse's root URL) "
                              "and the project. %d events are dropped.", self.url,
                              _server_message(response), len(events))
        elif status == 413:  # a single event, over the server's size limit on its own
            tally.failed -= len(events)
            tally.rejected += len(events)
            self._log_rejection(events[0], "too large for the server (HTTP 413)")
        elif 300 <= status < 400:
            self._log_failure(status, "Pulse answered HTTP %d (a redirect to %s) for %s: set PULSE_BASE_URL to "
                              "the address it points to. %d events are dropped.", status,
                              response.headers.get("location"), self.url, len(events))
        else:
            self._log_failure(status, "Pulse refused a batch (HTTP %d: %s); %d events are dropped.",
                              status, _server_message(response), len(events))

    def _count_items(self, events: list[Event], data: dict[str, Any], tally: _Tally) -> None:
        try:
            accepted, duplicates = int(data.get("accepted") or 0), int(data.get("duplicates") or 0)
        except (TypeError, ValueError):
            accepted, duplicates = len(events), 0
        reasons: dict[int, list[str]] = {}
        for error in data["errors"]:
            if isinstance(error, dict) and isinstance(error.get("index"), int):
                reasons.setdefault(error["index"], []).append(f"{error.get('field')}: {error.get('message')}")
        for index, messages in sorted(reasons.items()):
            event = events[index] if 0 <= index < len(events) else {}
            self._log_rejection(event, "; ".join(messages))
        tally.sent += accepted
        tally.duplicates += duplicates
        tally.rejected += max(0, len(events) - accepted - duplicates)

    def _log_rejection(self, event: Event, reason: str) -> None:
        suppressed = self._rejection_log.allow()
        if suppressed is None:
            return
        more = f" ({suppressed} more refused events were not logged.)" if suppressed else ""
        reason = reason if reason.endswith(".") else reason + "."
        logger.warning("Pulse refused an event (%s): %s It is not retried; fix what tracks it.%s",
                       describe(event), reason, more)

    def _log_failure(self, kind: Any, message: str, *args: Any) -> None:
        limiter = self._failure_logs.setdefault(kind, LogLimiter(FAILURE_LOG_INTERVAL_S))
        suppressed = limiter.allow()
        if suppressed is None:
            return
        if suppressed:
            message += " (The same happened to %d more batches since the last message.)"
            args = (*args, suppressed)
        logger.error(message, *args)

    # -- fork -----------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # The parent's events stay the parent's; its threads do not exist here, and its
        # connections must not be shared (nor closed: that would be the parent's socket too).
        self._reset()


# Every Delivery not closed yet: flushed at exit, reset in a child after fork. Weak, so that a
# client nobody references can go away; one with events still waiting is kept alive by its
# sender threads until they are sent.
_live: weakref.WeakSet[Delivery] = weakref.WeakSet()
_live_lock = threading.Lock()
_hooks_installed = False


def _register(delivery: Delivery) -> None:
    global _hooks_installed
    with _live_lock:
        _live.add(delivery)
        if not _hooks_installed:
            _hooks_installed = True
            atexit.register(_flush_at_exit)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_after_fork_in_child)


def _unregister(delivery: Delivery) -> None:
    with _live_lock:
        _live.discard(delivery)


_exit_hooked_in: int | None = None  # the process (pid) whose multiprocessing exit flushes


def _hook_multiprocessing_exit() -> None:
    """A multiprocessing child (and a Celery prefork worker: billiard shares multiprocessing's
    registry) ends with os._exit(), which skips atexit, after running the finalizers registered
    with multiprocessing.util. The child clears that registry when it starts, so the hook is
    set here, when the process starts sending, once per process."""
    global _exit_hooked_in
    util = sys.modules.get("multiprocessing.util")
    if util is None or _exit_hooked_in == os.getpid():
        return
    _exit_hooked_in = os.getpid()
    util.Finalize(None, _flush_at_exit, exitpriority=100)


def _after_fork_in_child() -> None:
    global _live_lock
    _live_lock = threading.Lock()  # another thread may have held it at the fork
    for delivery in list(_live):
        delivery._after_fork_in_child()


def _flush_at_exit() -> None:
    """Sends what every open client still holds, each waiting its `shutdown_timeout` at most,
    all at once (not one after the other)."""
    deliveries = list(_live)
    for delivery in deliveries:
        with delivery._lock:
            delivery._urgent += 1
            delivery._work.notify_all()
    started = time.monotonic()
    for delivery in deliveries:
        remaining = max(0.0, started + delivery.shutdown_timeout - time.monotonic())
        delivery.close(remaining, when=f"the interpreter exited (waited up to {delivery.shutdown_timeout:g} s)")
