"""What one gateway process keeps across calls: the configuration store, one pooled aiohttp
session per egress policy, the breaker's scripts and recently read breakers, the batch of Redis
commands of calls finishing together, background work, and request ids."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets

import aiohttp
from django.conf import settings

from lib.egress import guarded_connector

from . import redis as gateway_redis
from . import routing
from .auth import LastUsed
from .breaker import Breaker, Scripts
from .state import StateStore, UpstreamState

USER_AGENT = "Pulse-Gateway/1"


class PipelineBatch:
    """The Redis commands of the calls that finish in one turn of the event loop go out in one
    pipeline: one round trip for all of them (64 concurrent callers, one write instead of 64).
    A call waits for its batch, so its record is in Redis when its `after` returns."""

    def __init__(self) -> None:
        self._pipe = self._sent = self._client = None
        self._sending: set[asyncio.Task] = set()

    def join(self, r) -> tuple[object, asyncio.Future]:
        if self._pipe is None or self._client is not r:
            loop = asyncio.get_running_loop()
            self._pipe, self._sent, self._client = r.pipeline(transaction=False), loop.create_future(), r
            loop.call_soon(self._send)
        return self._pipe, self._sent

    def _send(self) -> None:
        pipe, sent = self._pipe, self._sent
        self._pipe = self._sent = self._client = None
        task = asyncio.ensure_future(self._execute(pipe, sent))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    @staticmethod
    async def _execute(pipe, sent: asyncio.Future) -> None:
        try:
            await pipe.execute(raise_on_error=False)  # one call's failed command spoils no other's
        except Exception as error:
            sent.set_exception(error)
        else:
            sent.set_result(None)


class Gateway:
    """What one gateway process keeps: the state store, one pooled aiohttp session per egress
    policy (keep-alive; opened in the lifespan or on first use, per event loop), the breaker's
    scripts per Redis client, the last-used clock."""

    def __init__(self) -> None:
        self.store = StateStore()
        self.last_used = LastUsed()
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: tuple[object, Scripts] | None = None
        # Breakers and live TTFT samples read from Redis, trusted for GATEWAY_STATE_LOCAL_TTL_S
        # like the configuration snapshots; this process's own writes drop its copy at once.
        self.breakers: dict[routing.UpstreamId, tuple[float, Breaker, list[float] | None]] = {}
        self.batch = PipelineBatch()
        self._background: set[asyncio.Task] = set()

    def in_background(self, coroutine) -> None:
        """Run `coroutine` without awaiting it, keeping it referenced until it ends."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def forget_breaker(self, upstream: UpstreamState) -> None:
        self.breakers.pop(routing.upstream_id(upstream), None)

    def redis(self):
        return gateway_redis.async_client()

    def scripts(self, r) -> Scripts:
        if self._scripts is None or self._scripts[0] is not r:
            self._scripts = (r, Scripts(r))
        return self._scripts[1]

    def session(self, allow_private: bool) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._sessions, self._loop = {}, loop  # sessions belong to the loop that made them
        session = self._sessions.get(allow_private)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=guarded_connector(allow_private=allow_private, limit=0, keepalive_timeout=60,
                                            ttl_dns_cache=60),
                timeout=aiohttp.ClientTimeout(total=None, connect=settings.GATEWAY_CONNECT_TIMEOUT_S,
                                              sock_read=settings.GATEWAY_READ_TIMEOUT_S),
                headers={"user-agent": USER_AGENT}, skip_auto_headers=("User-Agent",),
            )
            self._sessions[allow_private] = session
        return session

    async def start(self) -> None:
        for allow_private in (False, True):
            self.session(allow_private)

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions = {}
        r = gateway_redis.async_client()
        await r.aclose()


gateway = Gateway()


class RequestIds:
    """32 hex characters per request, unique across processes: a random per-process prefix (new
    after a fork) and a counter. Cheaper than uuid4, which asks the kernel for randomness on
    every call."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


request_ids = RequestIds()
