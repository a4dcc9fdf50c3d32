"""The gateway's Redis: the shared server when `GATEWAY_REDIS_URL` is set, otherwise one
in-process stand-in (fakeredis, with Lua through lupa) shared by every client of this process.

    r = async_client()          # redis.asyncio.Redis for the event loop that is running
    s = sync_client()           # redis.Redis, for Django code (signals, pages, the consumer)
    key("cache", str(project_id), digest)   # "<GATEWAY_KEY_PREFIX>:cache:<id>:<digest>"

Every piece of the gateway's shared state (cache, limits, budget reservations, the circuit
breaker, cached configuration, the call stream) goes through these, so the same code is exact
across processes on a real Redis and still correct inside the one process of `make run`.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import fakeredis
import redis
import redis.asyncio as aioredis
from django.conf import settings

ASYNC_MAX_CONNECTIONS = 256
ASYNC_POOL_TIMEOUT_S = 10.0

_lock = threading.Lock()
_fake_server: fakeredis.FakeServer | None = None
_sync: redis.Redis | None = None
# One async client per event loop: redis.asyncio connections belong to the loop that opened them.
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def is_shared() -> bool:
    """True on a real Redis (state shared across processes), False on the in-process stand-in."""
    return bool(settings.GATEWAY_REDIS_URL)


def _server() -> fakeredis.FakeServer:
    global _fake_server
    with _lock:
        if _fake_server is None:
            _fake_server = fakeredis.FakeServer()
        return _fake_server


def sync_client() -> redis.Redis:
    global _sync
    if _sync is None:
        if is_shared():
            client = redis.Redis.from_url(settings.GATEWAY_REDIS_URL, health_check_interval=30)
        else:
            client = fakeredis.FakeRedis(server=_server())
        with _lock:
            _sync = _sync or client
    return _sync


def async_client() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _async.get(loop)
    if client is None:
        if is_shared():
            # Under load a request waits for a free connection instead of failing with "Too many
            # connections" (the default pool refuses past 100: 64 concurrent callers each holding
            # one for admission and one for the breaker reads are past it).
            pool = aioredis.BlockingConnectionPool.from_url(
                settings.GATEWAY_REDIS_URL, max_connections=ASYNC_MAX_CONNECTIONS, timeout=ASYNC_POOL_TIMEOUT_S,
                health_check_interval=30,
            )
            client = aioredis.Redis(connection_pool=pool)
        else:
            client = fakeredis.FakeAsyncRedis(server=_server())
        _async[loop] = client
    return client


def key(*parts: str) -> str:
    return ":".join((settings.GATEWAY_KEY_PREFIX, *parts))


def reset_for_fork() -> None:
    """In a forked child: connections (and the stand-in's data) belong to the parent."""
    global _sync, _fake_server
    _sync = None
    _fake_server = None
    _async.clear()
