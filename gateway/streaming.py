"""A committed upstream stream, forwarded to the caller event by event.

Every event is sent as it arrives; the event that ends the stream waits until the call is
recorded (`calls.finish`), so a caller never sees the end of a call that is not recorded. A
broken stream ends with an `error` event the caller's SDK raises on (bytes were sent: nothing is
retried). The caller leaving cancels the forwarding and closes the upstream request; the call
is still recorded, with the tokens known so far."""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

import aiohttp
from django.conf import settings
from starlette.responses import Response

from . import wire
from .calls import Attempt, Call, finish, touch
from .wire import SSEReader

logger = logging.getLogger(__name__)


class ProxyStream(Response):
    """Forwards a committed upstream stream event by event, and notices the caller leaving."""

    def __init__(self, call: Call, upstream: aiohttp.ClientResponse, reader: SSEReader, first: bytes,
                 headers: dict[str, str]) -> None:
        self.call, self.upstream, self.reader, self.first = call, upstream, reader, first
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope, receive, send) -> None:
        call, task = self.call, asyncio.current_task()
        watching = True

        def caller_gone(watch: asyncio.Task) -> None:
            # The caller went away while we forward: stop forwarding (cancel this task).
            if watching and not watch.cancelled():
                call.status, call.success = 499, False  # nginx's "client closed request"
                task.cancel()

        watch = asyncio.ensure_future(caller_left(receive))
        watch.add_done_callback(caller_gone)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self.pump(send)
        except asyncio.CancelledError:
            if call.status != 499:
                raise  # the server's own cancellation (shutdown): not ours to swallow
            task.uncancel()
        except Exception:
            logger.exception("Gateway stream %s failed", call.request_id)
            call.status, call.success = 502, False
        finally:
            watching = False
            watch.cancel()
            self.upstream.close()  # stops the upstream's generation if it is still going
            await finish(call)  # (already done when the stream ended normally)
            await touch(call)

    async def pump(self, send) -> None:
        """Forward events as they come; the one that ends the stream waits until the call is
        recorded (`finish`), so a caller never sees the end of a call that is not."""
        call, stream = self.call, self.call.stream
        keep = call.project.store_bodies
        sent, broken, held = [], None, b""
        if stream.done:
            held = self.first  # the whole stream came before its content was committed
        else:
            sent = [self.first] if keep else []
            await send({"type": "http.response.body", "body": self.first, "more_body": True})
        while True:
            waited_from = perf_counter()
            try:
                async with asyncio.timeout(settings.GATEWAY_READ_TIMEOUT_S):
                    chunk = await self.upstream.content.readany()
            except TimeoutError:
                broken = "the upstream stopped sending (read timeout)"
            except aiohttp.ClientError as error:
                broken = f"the upstream broke off the stream: {error or type(error).__name__}"
            finally:
                call.upstream_wait += perf_counter() - waited_from
            if broken or not chunk:
                break
            started = stream.content_started
            data = b"".join([stream.take(event) for event in self.reader.feed(chunk)])
            if not started and stream.content_started:
                call.ttft_ms = (perf_counter() - call.started) * 1000
            if stream.done:
                held += data  # the end: it goes out once the call is recorded
            elif data:
                if keep:
                    sent.append(data)
                await send({"type": "http.response.body", "body": data, "more_body": True})
        rest = self.reader.rest()
        tail = held + (stream.take(rest) if rest is not None else b"")
        if broken is None and not stream.ended:
            broken = "the upstream ended the stream before its end"
        if broken is not None or stream.error is not None:
            call.status, call.success = 502, False
            call.attempts.append(Attempt(call.upstream.label, 200, broken or f"error event: {stream.error}"))
            if broken is not None:
                tail += wire.mid_stream_error(call.endpoint, f"Upstream {call.upstream.label}: {broken}.")
        else:
            call.success, call.complete = True, True
        if keep:
            call.response_body = b"".join(sent) + tail
        await finish(call)
        await send({"type": "http.response.body", "body": tail, "more_body": False})


async def caller_left(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
