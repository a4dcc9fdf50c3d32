"""A circuit breaker per upstream (connection + model), shared by every gateway process in Redis.

    closed ──(GATEWAY_BREAKER_FAILURES consecutive failures)──► open
    open ──(GATEWAY_BREAKER_COOLDOWN_S later, one caller claims the probe)──► half_open
    half_open ──(the probe succeeds)──► closed      half_open ──(it fails)──► open again

Failures are what make the gateway try another upstream: connection errors, timeouts, 429, 5xx,
a stream that breaks. The hot path reads every candidate's breaker in the same pipeline as the
live TTFT samples (`queue_read`), decides locally (`Breaker.verdict`), and writes only when
something happens: a failure, a success after failures, a probe claim. Each change of state is
kept in a capped list per upstream (`transitions`), for the routing page.

Live TTFT: the recent time-to-first-token samples of streamed calls per upstream
(`ttft_key`), which the `fastest` strategy blends with the benchmark p50 (gateway/routing.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from django.conf import settings

from . import redis as gateway_redis

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
LOG_LENGTH = 100
TTFT_SAMPLES = 50
KEY_TTL_S = 7 * 86400  # an upstream nobody calls any more does not keep its keys forever
FIELDS = ("state", "failures", "opened_at", "probe_until")

# Verdicts for one candidate.
USE = "use"  # closed: call it
PROBE = "probe"  # cooled down: call it if this caller wins the probe (claim_probe)
SKIP = "skip"  # open, or half-open with a probe in flight


def breaker_key(connection_id: int, model: str) -> str:
    return gateway_redis.key("breaker", str(connection_id), model)


def log_key(connection_id: int, model: str) -> str:
    return gateway_redis.key("breaker", str(connection_id), model, "log")


def ttft_key(connection_id: int, model: str) -> str:
    return gateway_redis.key("ttft", str(connection_id), model)


@dataclass(frozen=True)
class Breaker:
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probe_until: float = 0.0

    @classmethod
    def from_fields(cls, values: list[bytes | None]) -> Breaker:
        state, failures, opened_at, probe_until = values
        return cls(
            state=state.decode() if state else CLOSED, failures=int(failures or 0),
            opened_at=float(opened_at or 0), probe_until=float(probe_until or 0),
        )

    def verdict(self, now: float, cooldown_s: float) -> str:
        if self.state == CLOSED:
            return USE
        if self.state == OPEN:
            return PROBE if now >= self.opened_at + cooldown_s else SKIP
        return PROBE if now >= self.probe_until else SKIP

    @property
    def healthy(self) -> bool:
        """Nothing to write after a success."""
        return self.state == CLOSED and self.failures == 0


# Every transition is logged as {"at", "from", "to", "reason"}; the reason comes JSON-encoded.
_LOG = """
local function log(from, to, reason)
  redis.call('LPUSH', KEYS[2], '{"at":' .. ARGV[1] .. ',"from":"' .. from .. '","to":"' .. to .. '","reason":' .. reason .. '}')
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
end
"""

# KEYS: hash, log. ARGV: now, threshold, reason (JSON), log length, ttl
_FAILURE = _LOG + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local new = state
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then new = 'open' end
if new == 'open' then redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[1]) end
if new ~= state then log(state, new, ARGV[3]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return new
"""

# KEYS: hash, log. ARGV: now, (unused), reason (JSON), log length, ttl
_SUCCESS = _LOG + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
if state ~= 'closed' then log(state, 'closed', ARGV[3]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return 'closed'
"""

# KEYS: hash, log. ARGV: now, cooldown, reason (JSON), log length, ttl, probe lease
_PROBE = _LOG + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return 1 end
local now = tonumber(ARGV[1])
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  if now < opened + tonumber(ARGV[2]) then return 0 end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[6]))
  log('open', 'half_open', ARGV[3])
  return 1
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now < probe_until then return 0 end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[6]))
return 1
"""


class Scripts:
    """The breaker's Lua scripts registered on one client (one set per event loop's client)."""

    def __init__(self, r) -> None:
        self.failure = r.register_script(_FAILURE)
        self.probe = r.register_script(_PROBE)


def _args(now: float, second: float | int, reason: str, *extra: float) -> list:
    return [repr(float(now)), second, orjson.dumps(reason).decode(), LOG_LENGTH, KEY_TTL_S, *extra]


def queue_read(pipe, connection_id: int, model: str, *, with_ttft: bool) -> None:
    """Queue the reads for one candidate: its breaker and, for `fastest`, its TTFT samples."""
    pipe.hmget(breaker_key(connection_id, model), *FIELDS)
    if with_ttft:
        pipe.lrange(ttft_key(connection_id, model), 0, TTFT_SAMPLES - 1)


async def record_failure(scripts: Scripts, connection_id: int, model: str, reason: str, now: float) -> str:
    keys = [breaker_key(connection_id, model), log_key(connection_id, model)]
    state = await scripts.failure(keys=keys, args=_args(now, settings.GATEWAY_BREAKER_FAILURES, reason))
    return state.decode() if isinstance(state, bytes) else state


def queue_success(pipe, connection_id: int, model: str, now: float) -> None:
    """Close the breaker (and reset its count) in `pipe`: only after a success that followed
    failures, so the script's text going with it costs little."""
    keys = [breaker_key(connection_id, model), log_key(connection_id, model)]
    pipe.eval(_SUCCESS, len(keys), *keys, *_args(now, 0, "a call succeeded"))


async def claim_probe(scripts: Scripts, connection_id: int, model: str, now: float) -> bool:
    """True if this caller may send the half-open probe (only one caller per lease)."""
    keys = [breaker_key(connection_id, model), log_key(connection_id, model)]
    lease = settings.GATEWAY_CONNECT_TIMEOUT_S + settings.GATEWAY_FIRST_BYTE_TIMEOUT_S
    args = _args(now, settings.GATEWAY_BREAKER_COOLDOWN_S, "cool-down over: one probe call", lease)
    return bool(await scripts.probe(keys=keys, args=args))


def queue_ttft(pipe, connection_id: int, model: str, ttft_ms: float) -> None:
    key = ttft_key(connection_id, model)
    pipe.lpush(key, f"{ttft_ms:.3f}")
    pipe.ltrim(key, 0, TTFT_SAMPLES - 1)
    pipe.expire(key, KEY_TTL_S)


# -- for pages (sync) -----------------------------------------------------------------------------


def state_of(connection_id: int, model: str) -> Breaker:
    return Breaker.from_fields(gateway_redis.sync_client().hmget(breaker_key(connection_id, model), *FIELDS))


def transitions(connection_id: int, model: str, limit: int = LOG_LENGTH) -> list[dict]:
    """The breaker's recent changes of state, newest first: {"at" (epoch s), "from", "to", "reason"}."""
    raw = gateway_redis.sync_client().lrange(log_key(connection_id, model), 0, limit - 1)
    return [orjson.loads(item) for item in raw]
