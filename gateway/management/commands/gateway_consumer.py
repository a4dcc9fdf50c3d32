"""`manage.py gateway_consumer`: drain the gateway's call stream into cost events.

Run one or more (each joins the same consumer group; records a dead one left behind are taken
over after GATEWAY_CONSUMER_CLAIM_IDLE_S). SIGTERM or Ctrl-C finishes the batch in hand
(committed and acknowledged) and exits. Without a shared Redis (GATEWAY_REDIS_URL unset, as in
`make run`) the stream lives inside the gateway process, which drains it itself: this command
then only idles, since honcho stops every process as soon as one exits.

    manage.py gateway_consumer                      # run until stopped
    manage.py gateway_consumer --drain              # everything now in the stream, then exit
    manage.py gateway_consumer --replay-dead-letters  # put refused records back, then exit
"""

from __future__ import annotations

import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandParser

from gateway import consumer
from gateway import redis as gateway_redis

logger = logging.getLogger("gateway.consumer")


class Command(BaseCommand):
    help = "Drain the gateway's call stream (Redis) into cost events, exactly once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, help="Records per batch (default GATEWAY_CONSUMER_BATCH).")
        parser.add_argument("--drain", action="store_true", help="Ingest what is in the stream now, then exit.")
        parser.add_argument(
            "--replay-dead-letters", action="store_true",
            help="Move every dead-lettered record back onto the stream (ingestion is idempotent), then exit.",
        )

    def handle(self, *args: object, **options: object) -> None:
        stop = threading.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: stop.set())
        if not gateway_redis.is_shared():
            self.stdout.write(
                "GATEWAY_REDIS_URL is unset: the gateway process drains its own in-process call stream. "
                "This consumer has nothing to do and idles until stopped."
            )
            consumer.idle_until(stop)
            return
        worker = consumer.Consumer(batch=options["batch"])
        if options["replay_dead_letters"]:
            worker.ensure_group()
            self.stdout.write(f"Replayed {worker.replay_dead_letters()} dead-lettered records onto {worker.stream}.")
            return
        if options["drain"]:
            worker.ensure_group()
            outcome = worker.drain()
            self.stdout.write(
                f"Read {outcome.read} records: {outcome.inserted} new events, {outcome.duplicates} already "
                f"recorded, {outcome.dead} dead-lettered."
            )
            return
        worker.run(stop)
