"""Admission: rate limits and hard budgets, decided in one atomic step in Redis.

    budgets = covering_budgets(project, token_id=..., models=[...], tags={...})
    admission = await admit(r, project=project, token_id=..., estimated_tokens=...,
                            budgets=budgets, max_cost_micro_usd=..., request_id=...)
    ... forward the call ...
    charges = settle(admission, actual_tokens=..., actual_cost_micro_usd=..., pipeline=pipe)
    ... the consumer, after committing the batch:  mark_ingested([(request_id, charges), ...])

One Lua script (`ADMIT`) checks every applicable limit (RPM, TPM, RPD, TPD of the token and of
the project) and every covering hard budget, and only if all of them have room counts the
request everywhere: all or nothing, so two gateway processes can never both take the last slot.

Rate limits: a leaky bucket per limit ("generic cell rate" style, continuous refill), so the
per-day limits are a rolling 24 hours, not a UTC day. A bucket (one string key) holds a
level (requests or tokens still counting) and the time it was measured; it drains at
limit / window. A request
fits if level + cost <= limit. Tokens are counted at admission with the caller's estimate
(prompt estimate + max output) and corrected by `settle` with the real count. OpenAI's
headers follow from the bucket: remaining = limit - level, reset = time until the bucket is
empty again (OpenAI's "time until the rate limit resets to its initial state"), and the 429's
retry-after = time until this request fits. The clock is Redis's (`TIME`), one for every
gateway process. A bucket key expires when it would be empty.

Hard budgets: per budget and period, a ledger hash `key("budget", id, period_start)`:

    base      DB spend of the period (micro-USD) as of the last refresh
    unbased   gateway spend settled in Redis that `base` does not include yet
    reserved  the maximum cost of requests admitted and not settled yet

A request is admitted only if base + unbased + reserved + its max cost <= amount (and the
budget is not already used up), and then its max cost is added to `reserved` (with a deadline
in a sorted set, so a gateway process that dies mid-request gives its reservation back after
RESERVATION_TTL_S). `settle` moves the reservation to `unbased` at the real cost and records
the request in the budget's entries hash (request id -> "period|cost|p"). So spend can exceed
the amount only by what concurrent requests cost above their reservations, never by a race.

Spend from outside the gateway (API/SDK ingestion) and the consumer's ingestion of gateway
calls reach the ledger through `refresh_budget_ledger`, run by the state builder
(`budget_state_spent`) and by `mark_ingested` at most every REFRESH_INTERVAL_S per budget.
It replaces `base` with the DB spend and takes out of `unbased` exactly the entries that DB
value includes, so nothing is lost or counted twice:

    1. read the entries (Redis); those already marked ingested were committed before now
    2. DB: the spend (a REPEATABLE READ snapshot taken after step 1)
    3. read the entries again; check which unmarked ones have their event in that snapshot
    4. atomically (only while holding the refresh lock): base = spend; drop the entries of
       steps 1 and 3 (and of earlier periods) and subtract their cost from `unbased`.

Entries marked ingested before step 1 were committed before the snapshot, so they are in it;
the others are looked up in the same snapshot; entries settled after step 3 were committed
after it. Inside a caller's transaction (no snapshot of our own) step 3's lookup is skipped:
the unmarked entries stay in `unbased` until a later refresh (counted twice for a moment if
their batch was committed in between, never less than once). `mark_ingested` flips an entry
from pending to ingested (idempotent per request id) and so keeps step 3 small.

Amounts are integers in micro-USD; Lua computes in doubles, exact up to 2**53 micro-USD (about
$9 billion per budget and period).

A request under a hard budget whose maximum cost cannot be priced (an upstream without a
price) is refused: an unpriced call would be recorded at $0 and re-priced later, so the budget
could not be held.
"""

from __future__ import annotations

import math
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.db import connection, transaction

from accounts.models import Project
from alerts.budgets import BudgetPeriod, spend_usd
from alerts.models import Budget
from costs.currency import Rates
from costs.models import CostEvent

from .lua import registered_script
from .redis import key, sync_client
from .state import BudgetState, LimitSpec, ProjectState, UpstreamState

MICRO = Decimal(1_000_000)
# A reservation whose request never settled (its gateway process died) is given back after this.
RESERVATION_TTL_S = 3600
# A period's ledger outlives the period by this: late settles and ingestion still find it.
LEDGER_GRACE_S = 2 * 86400
# `mark_ingested` refreshes a budget's ledger from the DB at most this often.
REFRESH_INTERVAL_S = 5
REFRESH_LOCK_MS = 30_000
# Unmarked entries looked up in the DB per refresh; beyond this they wait for a later one.
REFRESH_LOOKUP_CAP = 10_000
# Float slack when comparing bucket levels (a millionth of a request or token).
EPSILON = 1e-6

# kind -> (unit, window in ms, the period's word in messages)
LIMIT_KINDS: dict[str, tuple[str, int, str]] = {
    "rpm": ("requests", 60_000, "minute"),
    "tpm": ("tokens", 60_000, "minute"),
    "rpd": ("requests", 86_400_000, "day"),
    "tpd": ("tokens", 86_400_000, "day"),
}


# --------------------------------------------------------------------------------- Lua
_LUA_HELPERS = """
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function f(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end
-- a bucket is one string "<level> <ms when measured>"
local function drained(key, limit, window, now)
  local state = redis.call('GET', key)
  if not state then return 0, false end
  local level, ts = string.match(state, '^(%S+) (%S+)$')
  local elapsed = now - tonumber(ts)
  if elapsed < 0 then elapsed = 0 end
  level = tonumber(level) - elapsed * limit / window
  if level < 0 then level = 0 end
  return level, true
end
local function keep_bucket(key, level, limit, window, now)
  redis.call('SET', key, f(level) .. ' ' .. f(now), 'PX', math.ceil(level * window / limit) + 1000)
end
"""

# KEYS: the limit buckets, then (ledger, reservations) per budget.
# ARGV: now_ms|'', n_limits, (limit, window_ms, cost) per limit, n_budgets,
#       (amount, base_init, max_cost, ttl_ms, member, deadline_ms) per budget.
# Returns {allowed, now_ms, level of each limit before this request, used of each budget}.
ADMIT = _LUA_HELPERS + """
local now = clock(ARGV[1])
local nl = tonumber(ARGV[2])
local a = 3
local ok = 1
local levels = {}
for i = 1, nl do
  local limit, window, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local level = drained(KEYS[i], limit, window, now)
  levels[i] = level
  if level + cost > limit + 1e-6 then ok = 0 end
  a = a + 3
end
local nb = tonumber(ARGV[a])
a = a + 1
local used = {}
for j = 1, nb do
  local ledger, res = KEYS[nl + 2 * j - 1], KEYS[nl + 2 * j]
  local amount, max_cost = tonumber(ARGV[a]), tonumber(ARGV[a + 2])
  -- reservations of requests that never settled (their process died) are given back
  local expired = redis.call('ZRANGEBYSCORE', res, '-inf', now)
  if #expired > 0 then
    local freed = 0
    for _, member in ipairs(expired) do freed = freed + tonumber(string.match(member, '|(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', res, '-inf', now)
    redis.call('HINCRBY', ledger, 'reserved', int(-freed))
  end
  redis.call('HSETNX', ledger, 'base', ARGV[a + 1])
  local v = redis.call('HMGET', ledger, 'base', 'unbased', 'reserved')
  local u = tonumber(v[1]) + (tonumber(v[2]) or 0) + (tonumber(v[3]) or 0)
  used[j] = u
  if u >= amount or u + max_cost > amount then ok = 0 end
  a = a + 6
end
local out = {ok, f(now)}
for i = 1, nl do out[#out + 1] = f(levels[i]) end
for j = 1, nb do out[#out + 1] = int(used[j]) end
if ok == 0 then return out end
a = 3
for i = 1, nl do
  local limit, window, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  keep_bucket(KEYS[i], levels[i] + cost, limit, window, now)
  a = a + 3
end
a = a + 1
for j = 1, nb do
  local ledger, res = KEYS[nl + 2 * j - 1], KEYS[nl + 2 * j]
  redis.call('HINCRBY', ledger, 'reserved', ARGV[a + 2])
  redis.call('ZADD', res, ARGV[a + 5], ARGV[a + 4])
  redis.call('PEXPIRE', ledger, ARGV[a + 3])
  redis.call('PEXPIRE', res, ARGV[a + 3])
  a = a + 6
end
return out
"""

# KEYS: the token buckets to correct, then (ledger, reservations, entries) per budget.
# ARGV: now_ms|'', n_limits, (limit, window_ms, delta) per limit, n_budgets,
#       (member, reserved, cost, request_id, entry, ttl_ms) per budget.
SETTLE = _LUA_HELPERS + """
local now = clock(ARGV[1])
local nl = tonumber(ARGV[2])
local a = 3
for i = 1, nl do
  local limit, window, delta = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local level, exists = drained(KEYS[i], limit, window, now)
  if exists or delta > 0 then
    level = level + delta
    if level < 0 then level = 0 end
    keep_bucket(KEYS[i], level, limit, window, now)
  end
  a = a + 3
end
local nb = tonumber(ARGV[a])
a = a + 1
for j = 1, nb do
  local ledger, res, entries = KEYS[nl + 3 * j - 2], KEYS[nl + 3 * j - 1], KEYS[nl + 3 * j]
  local ttl = tonumber(ARGV[a + 5])
  if redis.call('ZREM', res, ARGV[a]) == 1 then
    redis.call('HINCRBY', ledger, 'reserved', int(-tonumber(ARGV[a + 1])))
  end
  -- once per request id, so a repeated settle cannot count the spend twice
  if tonumber(ARGV[a + 2]) > 0 and redis.call('HSETNX', entries, ARGV[a + 3], ARGV[a + 4]) == 1 then
    redis.call('HINCRBY', ledger, 'unbased', ARGV[a + 2])
    if redis.call('PTTL', entries) < ttl then redis.call('PEXPIRE', entries, ttl) end
  end
  redis.call('PEXPIRE', ledger, ttl)
  a = a + 6
end
return 1
"""

# KEYS[1]: a budget's entries. ARGV: request ids whose events the DB now holds.
MARK = """
local marked = 0
for i = 1, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and string.sub(v, -2) == '|p' then
    redis.call('HSET', KEYS[1], ARGV[i], string.sub(v, 1, -2) .. 'i')
    marked = marked + 1
  end
end
return marked
"""

# KEYS: ledger, entries, lock. ARGV: lock token, period tag, DB spend, ttl_ms, request ids the
# DB spend includes (or of earlier periods): dropped, their cost taken out of `unbased`.
REFRESH = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
local included = 0
for i = 5, #ARGV do
  local v = redis.call('HGET', KEYS[2], ARGV[i])
  if v then
    local period, cost = string.match(v, '^(%d+)|(%d+)|')
    if period == ARGV[2] then included = included + tonumber(cost) end
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
redis.call('HSET', KEYS[1], 'base', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'unbased', string.format('%d', -included))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[3])
return included
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# --------------------------------------------------------------------------------- limits
@dataclass(frozen=True, slots=True)
class _Limit:
    kind: str  # rpm | tpm | rpd | tpd
    limit: int
    token_id: int | None  # None: the project's limit
    key: str  # its bucket
    unit: str  # requests | tokens
    window_ms: int

    def ms_per_unit(self) -> float:
        return self.window_ms / self.limit


def limit_key(is_project: bool, owner_id: int, kind: str) -> str:
    return key("rl", "p" if is_project else "t", str(owner_id), kind)


def _limits_of(spec: LimitSpec | None, *, token_id: int | None, owner_id: int) -> list[_Limit]:
    if spec is None:
        return []
    return [
        _Limit(kind, value, token_id, limit_key(token_id is None, owner_id, kind), unit, window_ms)
        for kind, (unit, window_ms, _) in LIMIT_KINDS.items() if (value := getattr(spec, kind)) is not None
    ]


def applicable_limits(project: ProjectState, token_id: int) -> list[_Limit]:
    return _limits_of(project.token_limits.get(token_id), token_id=token_id, owner_id=token_id) + _limits_of(
        project.project_limits, token_id=None, owner_id=project.project_id
    )


def openai_duration(seconds: float) -> str:
    """OpenAI's reset format (Go's duration): "20ms", "1s", "59.972s", "6m0s", "1h2m3.5s"."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}.{rest % 1000:03d}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _ratelimit_headers(limits: Sequence[_Limit], levels: Sequence[float]) -> dict[str, str]:
    """The tightest request limit and the tightest token limit (least remaining; then the one
    that takes longest to reset), in OpenAI's `x-ratelimit-*` headers."""
    headers: dict[str, str] = {}
    for unit in ("requests", "tokens"):
        rows = [
            (max(0, math.floor(limit.limit - level + EPSILON)), level * limit.ms_per_unit() / 1000, limit)
            for limit, level in zip(limits, levels, strict=True) if limit.unit == unit
        ]
        if not rows:
            continue
        remaining, reset_s, limit = min(rows, key=lambda row: (row[0], -row[1]))
        headers[f"x-ratelimit-limit-{unit}"] = str(limit.limit)
        headers[f"x-ratelimit-remaining-{unit}"] = str(remaining)
        headers[f"x-ratelimit-reset-{unit}"] = openai_duration(reset_s)
    return headers


# --------------------------------------------------------------------------------- admission
@dataclass(frozen=True)
class BudgetHold:
    """One hard budget's part of a reservation."""

    budget_id: int
    period_tag: str  # the period's start, epoch seconds: names the ledger
    reserved_micro_usd: int
    member: str  # in the reservations sorted set
    ttl_ms: int


@dataclass(frozen=True)
class Reservation:
    """What `settle` needs: the request, its token limits and its budget holds."""

    request_id: str
    estimated_tokens: int
    token_limits: tuple[tuple[str, int, int], ...]  # (bucket key, limit, window_ms)
    budgets: tuple[BudgetHold, ...]
    clock_ms: float | None  # the caller's clock (tests); None: Redis's


@dataclass(frozen=True)
class Admission:
    allowed: bool
    reason: str | None  # None | "rate_limit" | "budget"
    retry_after_s: float | None  # rate_limit: when the request fits; budget: seconds to period end
    headers: dict[str, str]  # x-ratelimit-limit-requests, -remaining-requests, -reset-requests, same for -tokens
    reservation: Reservation | None  # what settle() needs
    message: str  # human message for the error body


def ledger_key(budget_id: int, period_tag: str) -> str:
    return key("budget", str(budget_id), period_tag)


def reservations_key(budget_id: int, period_tag: str) -> str:
    return key("budget", str(budget_id), period_tag, "reserved")


def entries_key(budget_id: int) -> str:
    return key("budget", str(budget_id), "entries")


def _current_period(budget: BudgetState, now: float) -> tuple[float, float, int]:
    """(start, end, base to initialise the ledger with). A state built before its period ended
    (it lives at most GATEWAY_STATE_REDIS_TTL_S) counts in the next period, from zero, until
    the state is rebuilt with that period's DB spend."""
    if now < budget.period_end:
        return budget.period_start, budget.period_end, budget.spent_micro_usd
    return budget.period_end, budget.period_end + (budget.period_end - budget.period_start), 0


def usd(micro_usd: int) -> str:
    return f"${Decimal(micro_usd) / MICRO:,.2f}"


def _who(limit: _Limit, token_prefix: str) -> str:
    if limit.token_id is None:
        return "this project"
    return f"token {token_prefix}…" if token_prefix else "this API token"


def _rate_refusal(limits: Sequence[_Limit], costs: Sequence[int], levels: Sequence[float], token_prefix: str):
    """(retry_after_s, message) for the limit the request waits longest for."""
    worst: tuple[float, _Limit, float, int] | None = None
    for limit, cost, level in zip(limits, costs, levels, strict=True):
        if level + cost <= limit.limit + EPSILON:
            continue
        wait = math.inf if cost > limit.limit else (level + cost - limit.limit) * limit.ms_per_unit() / 1000
        if worst is None or wait > worst[0]:
            worst = (wait, limit, level, cost)
    if worst is None:  # only a budget refused; not reached (the caller checks budgets first)
        return None, "Rate limit reached."
    wait, limit, level, cost = worst
    period = LIMIT_KINDS[limit.kind][2]
    what = f"{limit.limit:,} {limit.unit} per {period} for {_who(limit, token_prefix)}"
    if math.isinf(wait):
        return None, (
            f"Request too large: its estimated {cost:,} tokens exceed the rate limit of {what}. "
            "Send fewer tokens or a lower max_tokens."
        )
    wait = math.ceil(wait * 1000) / 1000
    return wait, (
        f"Rate limit of {what} reached (used {math.ceil(level - EPSILON):,}, requested {cost:,}). "
        f"Try again in {openai_duration(wait)}."
    )


def _budget_refusal(budget: BudgetState, used: int, max_cost: int, now: float) -> tuple[float, str]:
    name = getattr(budget, "name", "") or f"#{budget.budget_id}"
    _, end, _ = _current_period(budget, now)
    if used >= budget.amount_micro_usd:
        text = (
            f"Hard budget {name} is used up: {usd(used)} of {usd(budget.amount_micro_usd)} spent or reserved "
            "this period."
        )
    else:
        text = (
            f"Hard budget {name} has no room for this request: {usd(used)} of "
            f"{usd(budget.amount_micro_usd)} spent or reserved this period, and the request may cost up to "
            f"{usd(max_cost)}. Lower max_tokens or wait for the next period."
        )
    return max(0.0, end - now), text


async def admit(
    r, *, project: ProjectState, token_id: int, estimated_tokens: int, budgets: Sequence[BudgetState],
    max_cost_micro_usd: int | None, now: float | None = None, request_id: str | None = None,
    token_prefix: str = "",
) -> Admission:
    """Check and count the request against every applicable limit and reserve its maximum cost
    in every covering hard budget: one EVALSHA, all or nothing.

    `estimated_tokens` = estimated prompt tokens + max output tokens; `max_cost_micro_usd` =
    the request's maximum cost (`max_cost_micro_usd()`), None when unpriced; `request_id` =
    the gateway's request id (what `mark_ingested` is later called with); `token_prefix` names
    the token in messages; `now` (epoch seconds) replaces Redis's clock, for tests."""
    limits = applicable_limits(project, token_id)
    if not limits and not budgets:
        return Admission(True, None, None, {}, None, "")
    if budgets and not request_id:
        # the consumer reports ingested calls by request id: without it, settled spend could never
        # be matched with its event and would stay counted on top of the DB's figure
        raise ValueError("admit() needs the gateway's request_id when a hard budget covers the request")
    request_id = request_id or uuid.uuid4().hex
    if budgets and max_cost_micro_usd is None:
        return Admission(
            False, "budget", None, {}, None,
            "This request's cost cannot be priced (its model has no price), so the hard budget that "
            "covers it cannot be enforced; it is refused. Add a price for the model or route to a priced one.",
        )
    max_cost = max(0, int(max_cost_micro_usd or 0))
    clock_s = now if now is not None else time.time()
    costs = [1 if limit.unit == "requests" else max(0, int(estimated_tokens)) for limit in limits]
    keys = [limit.key for limit in limits]
    args: list = ["" if now is None else repr(now * 1000), len(limits)]
    for limit, cost in zip(limits, costs, strict=True):
        args += [limit.limit, limit.window_ms, cost]
    args.append(len(budgets))
    holds: list[BudgetHold] = []
    for budget in budgets:
        start, end, base = _current_period(budget, clock_s)
        tag = str(int(start))
        ttl_ms = int((end + LEDGER_GRACE_S - clock_s) * 1000)
        member = f"{request_id}|{max_cost}"
        holds.append(BudgetHold(budget.budget_id, tag, max_cost, member, ttl_ms))
        keys += [ledger_key(budget.budget_id, tag), reservations_key(budget.budget_id, tag)]
        args += [budget.amount_micro_usd, base, max_cost, ttl_ms, member, int((clock_s + RESERVATION_TTL_S) * 1000)]
    out = await registered_script(r, ADMIT)(keys=keys, args=args, client=r)
    allowed, clock_ms = int(out[0]) == 1, float(out[1])
    levels = [float(x) for x in out[2:2 + len(limits)]]
    used = [int(x) for x in out[2 + len(limits):]]
    if allowed:
        after = [level + cost for level, cost in zip(levels, costs, strict=True)]
        token_limits = tuple((lim.key, lim.limit, lim.window_ms) for lim in limits if lim.unit == "tokens")
        reservation = Reservation(request_id, int(estimated_tokens), token_limits, tuple(holds), None if now is None else clock_ms)
        return Admission(True, None, None, _ratelimit_headers(limits, after), reservation, "")
    headers = _ratelimit_headers(limits, levels)
    now_s = clock_ms / 1000
    for budget, spent in zip(budgets, used, strict=True):
        if spent >= budget.amount_micro_usd or spent + max_cost > budget.amount_micro_usd:
            retry, message = _budget_refusal(budget, spent, max_cost, now_s)
            return Admission(False, "budget", retry, headers, None, message)
    retry, message = _rate_refusal(limits, costs, levels, token_prefix)
    return Admission(False, "rate_limit", retry, headers, None, message)


def settle(admission: Admission, *, actual_tokens: int, actual_cost_micro_usd: int, pipeline) -> dict[int, int]:
    """Queue the settlement on `pipeline` (sync or asyncio; the caller executes it together with
    the call record's XADD): correct the token buckets by (actual - estimated) tokens, give back
    each budget's reservation and count the real cost as this request's entry.

    Returns the budget charges {budget_id: micro-USD} for the call record; the consumer hands
    them back to `mark_ingested` once the event is committed."""
    reservation = admission.reservation
    if reservation is None:
        return {}
    cost = max(0, int(actual_cost_micro_usd))
    delta = int(actual_tokens) - reservation.estimated_tokens
    keys: list[str] = []
    args: list = ["" if reservation.clock_ms is None else repr(reservation.clock_ms), 0]
    if delta:
        for bucket, limit, window_ms in reservation.token_limits:
            keys.append(bucket)
            args += [limit, window_ms, delta]
        args[1] = len(reservation.token_limits)
    args.append(len(reservation.budgets))
    for hold in reservation.budgets:
        keys += [ledger_key(hold.budget_id, hold.period_tag), reservations_key(hold.budget_id, hold.period_tag),
                 entries_key(hold.budget_id)]
        args += [hold.member, hold.reserved_micro_usd, cost, reservation.request_id,
                 f"{hold.period_tag}|{cost}|p", hold.ttl_ms]
    if not keys:
        return {}
    script = registered_script(pipeline, SETTLE)
    pipeline.scripts.add(script)  # the pipeline loads it (SCRIPT EXISTS/LOAD) before executing
    pipeline.evalsha(script.sha, len(keys), *keys, *args)
    return {hold.budget_id: cost for hold in reservation.budgets}


def covering_budgets(
    project: ProjectState, *, token_id: int, models: Iterable[str], tags: Mapping[str, str],
) -> list[BudgetState]:
    """The project's hard budgets this request counts against: the token's (or no token
    filter), a model filter matching any model the request may be served by (the upstream
    models of its route), a tag filter matching the request's tags."""
    models = set(models)
    return [
        budget for budget in project.hard_budgets
        if budget.token_id in (None, token_id)
        and (not budget.model or budget.model in models)
        and (not budget.tag_key or tags.get(budget.tag_key) == budget.tag_value)
    ]


def max_cost_micro_usd(upstreams: Iterable[UpstreamState], *, prompt_tokens: int, max_output_tokens: int) -> int | None:
    """The most the request can cost on any of these upstreams (cached tokens at the full input
    price, so an upper bound), or None if one of them has no price."""
    most = 0
    for upstream in upstreams:
        if upstream.input_micro_per_mtok is None or upstream.output_micro_per_mtok is None:
            return None
        cost = prompt_tokens * upstream.input_micro_per_mtok + max_output_tokens * upstream.output_micro_per_mtok
        most = max(most, -(-cost // 1_000_000))
    return most


# --------------------------------------------------------------------------------- the DB side
def mark_ingested(charges: Sequence[tuple[str, Mapping[int, int]]]) -> None:
    """After the consumer committed a batch: (request_id, budget_charges) per call record.
    Flips each request's entry from pending to ingested (idempotent: a redelivered record finds
    it ingested or already folded into the base) and refreshes the touched budgets' ledgers
    from the DB when due (at most every REFRESH_INTERVAL_S per budget)."""
    by_budget: dict[int, list[str]] = {}
    for request_id, budget_charges in charges:
        for budget_id in budget_charges:
            by_budget.setdefault(int(budget_id), []).append(request_id)
    if not by_budget:
        return
    client = sync_client()
    script = registered_script(client, MARK)
    for budget_id, request_ids in by_budget.items():
        script(keys=[entries_key(budget_id)], args=request_ids)
    due = [budget_id for budget_id in by_budget
           if client.set(key("budget", str(budget_id), "due"), 1, nx=True, ex=REFRESH_INTERVAL_S)]
    if due:
        for budget in Budget.objects.dangerously_unscoped().select_related("organization", "api_token").filter(
            id__in=due, enforcement=Budget.Enforcement.HARD, is_enabled=True,
        ):
            refresh_budget_ledger(budget)


def _period_of(budget: Budget, now: datetime) -> BudgetPeriod:
    return BudgetPeriod.containing(budget.period, budget.organization.time_zone, now)


def _db_spend_micro_usd(budget: Budget, period: BudgetPeriod) -> int:
    spent = spend_usd(budget, period.start, period.end)
    return int((spent * MICRO).to_integral_value(rounding=ROUND_CEILING))


def _scope_project_ids(budget: Budget) -> list[int]:
    """The projects whose events the budget's spend can include (as alerts.budgets.scoped_rollups)."""
    if budget.project_id:
        return [budget.project_id]
    if budget.api_token_id and budget.api_token.project_id:
        return [budget.api_token.project_id]
    return list(Project.objects.filter(organization_id=budget.organization_id).values_list("id", flat=True))


def _in_db(budget: Budget, request_ids: Sequence[str]) -> set[str]:
    """Which of these gateway requests have their event in the DB (idempotency key "gw-<id>")."""
    project_ids = _scope_project_ids(budget)
    found: set[str] = set()
    for start in range(0, len(request_ids), 1000):
        chunk = {f"gw-{rid}": rid for rid in request_ids[start:start + 1000]}
        keys = CostEvent.objects.filter(project_id__in=project_ids, idempotency_key__in=list(chunk)).values_list(
            "idempotency_key", flat=True
        )
        found.update(chunk[k] for k in keys)
    return found


def _own_snapshot_possible() -> bool:
    return not connection.in_atomic_block


def _read_committed() -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite: one writer at a time, a statement never sees half a batch
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('transaction_isolation')")
        return cursor.fetchone()[0] == "read committed"


def refresh_budget_ledger(budget: Budget, *, now: datetime | None = None) -> int:
    """Bring the ledger of the budget's current period up to the DB (see the module docstring)
    and return the period's DB spend in micro-USD. When another process is refreshing the same
    budget, only the spend is read."""
    now = now or datetime.now(UTC)
    period = _period_of(budget, now)
    tag = str(int(period.start.timestamp()))
    client = sync_client()
    lock = key("budget", str(budget.id), "refreshing")
    token = secrets.token_hex(8)
    if not client.set(lock, token, nx=True, px=REFRESH_LOCK_MS):
        return _db_spend_micro_usd(budget, period)
    try:
        before = _entries(client, budget.id)
        ingested = [rid for rid, (p, _, state) in before.items() if state == "i" and p == tag]
        own = _own_snapshot_possible()
        if not own and not _read_committed():
            return _db_spend_micro_usd(budget, period)  # the caller's snapshot may predate `before`
        with transaction.atomic():
            if own and connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            spent = _db_spend_micro_usd(budget, period)
            after = _entries(client, budget.id)
            unmarked = [rid for rid, (p, _, _) in after.items() if p == tag and rid not in set(ingested)]
            found = _in_db(budget, unmarked[:REFRESH_LOOKUP_CAP]) if own and unmarked else set()
        older = [rid for rid, (p, _, _) in after.items() if int(p) < int(tag)]
        ttl_ms = int((period.end.timestamp() + LEDGER_GRACE_S - now.timestamp()) * 1000)
        registered_script(client, REFRESH)(
            keys=[ledger_key(budget.id, tag), entries_key(budget.id), lock],
            args=[token, tag, spent, max(ttl_ms, 1000), *ingested, *found, *older],
        )
        return spent
    finally:
        registered_script(client, _UNLOCK)(keys=[lock], args=[token])


def _entries(client, budget_id: int) -> dict[str, tuple[str, int, str]]:
    entries = {}
    for rid, value in client.hgetall(entries_key(budget_id)).items():
        period, cost, state = value.decode().split("|")
        entries[rid.decode()] = (period, int(cost), state)
    return entries


def budget_state_spent(budget: Budget, *, now: datetime | None = None) -> int:
    """Micro-USD the budget has spent this period according to the DB, for
    `BudgetState.spent_micro_usd`; refreshes the budget's Redis ledger on the way, so the state
    builder keeps it current."""
    return refresh_budget_ledger(budget, now=now)


def budget_amount_micro_usd(budget: Budget, rates: Rates | None = None) -> int:
    """The budget's amount in micro-USD at the latest exchange rate (rounded down: never more
    room than the budget gives)."""
    rates = rates or Rates.latest()
    amount = budget.amount / rates.per_usd[budget.currency] * MICRO
    return int(amount.to_integral_value(rounding=ROUND_FLOOR))


def budget_state(budget: Budget, *, now: datetime | None = None, rates: Rates | None = None) -> BudgetState:
    """The BudgetState of one hard budget, for the state builder."""
    now = now or datetime.now(UTC)
    period = _period_of(budget, now)
    return BudgetState(
        budget_id=budget.id, period_start=period.start.timestamp(), period_end=period.end.timestamp(),
        amount_micro_usd=budget_amount_micro_usd(budget, rates), spent_micro_usd=budget_state_spent(budget, now=now),
        token_id=budget.api_token_id, model=budget.model, tag_key=budget.tag_key, tag_value=budget.tag_value,
    )


@dataclass(frozen=True)
class LedgerView:
    """One budget period's ledger as Redis holds it (pages, tests)."""

    base: int
    unbased: int
    reserved: int
    entries: dict[str, tuple[str, int, str]] = field(default_factory=dict)

    @property
    def used(self) -> int:
        return self.base + self.unbased + self.reserved


def ledger_view(budget_id: int, period_start: float) -> LedgerView | None:
    client = sync_client()
    values = client.hmget(ledger_key(budget_id, str(int(period_start))), "base", "unbased", "reserved")
    if values[0] is None and values[1] is None:
        return None
    base, unbased, reserved = (int(v) if v is not None else 0 for v in values)
    tag = str(int(period_start))
    entries = {rid: e for rid, e in _entries(client, budget_id).items() if e[0] == tag}
    return LedgerView(base, unbased, reserved, entries)
