"""Rate limits and hard-budget reservations, in one atomic Redis step. PLACEHOLDER on the proxy's
branch: part B2 owns this module; this version implements design.md's interface, small but
exact (one Lua script, fixed minute/day windows), so the proxy's tests run end to end.

Budget rule: a request is admitted only if baseline + pending + reserved + max_cost <= amount,
where baseline is the DB spend in the project snapshot, pending the gateway spend settled but
not yet ingested, reserved the in-flight maxima. settle() moves a reservation to pending with
the real cost; mark_ingested() takes ingested spend out of pending (the DB has it now) and
retires the snapshots so their baselines are re-read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from . import redis as gateway_redis
from . import state as gateway_state
from .state import BudgetState, LimitSpec, ProjectState

_WINDOWS = (("rpm", 60, True), ("tpm", 60, False), ("rpd", 86400, True), ("tpd", 86400, False))

_ADMIT = """
local nl, nb = tonumber(ARGV[1]), tonumber(ARGV[2])
local a = 3
for i = 1, nl do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used + tonumber(ARGV[a + 1]) > tonumber(ARGV[a]) then return {'rate_limit', i, used} end
  a = a + 3
end
local b = a
for j = 1, nb do
  local reserved = tonumber(redis.call('GET', KEYS[nl + 2 * j - 1]) or '0')
  local pending = tonumber(redis.call('GET', KEYS[nl + 2 * j]) or '0')
  if tonumber(ARGV[b + 1]) + pending + reserved + tonumber(ARGV[b + 2]) > tonumber(ARGV[b]) then
    return {'budget', j, 0}
  end
  b = b + 4
end
a = 3
local used = {}
for i = 1, nl do
  used[i] = redis.call('INCRBY', KEYS[i], ARGV[a + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[a + 2])
  a = a + 3
end
for j = 1, nb do
  redis.call('INCRBY', KEYS[nl + 2 * j - 1], ARGV[a + 2])
  redis.call('EXPIRE', KEYS[nl + 2 * j - 1], ARGV[a + 3])
  redis.call('EXPIRE', KEYS[nl + 2 * j], ARGV[a + 3])
  a = a + 4
end
return {'ok', 0, 0, unpack(used)}
"""


@dataclass(frozen=True)
class Reservation:
    budget_keys: tuple[tuple[int, str, str], ...]  # (budget id, reserved key, pending key)
    reserved_micro_usd: int
    estimated_tokens: int
    token_keys: tuple[str, ...]  # token counters to correct at settle


@dataclass(frozen=True)
class Admission:
    allowed: bool
    reason: str | None
    retry_after_s: float | None
    headers: dict[str, str]
    reservation: Reservation | None
    message: str


@dataclass
class _Check:
    key: str
    limit: int
    amount: int
    ttl: int
    scope: str
    metric: str
    window_end: float
    tokens: bool


@dataclass
class _Plan:
    checks: list[_Check] = field(default_factory=list)


def _checks(project: ProjectState, token_id: int, estimated_tokens: int, now: float) -> list[_Check]:
    checks = []
    for scope, ident, spec in (("token", token_id, project.token_limits.get(token_id)),
                               ("project", project.project_id, project.project_limits)):
        if spec is None:
            continue
        for metric, seconds, requests in _WINDOWS:
            limit = getattr(spec, metric)
            if limit is None:
                continue
            window = int(now // seconds)
            key = gateway_redis.key("limit", scope, str(ident), metric, str(window))
            checks.append(_Check(key, limit, 1 if requests else max(estimated_tokens, 0), seconds + 5, scope,
                                 metric, (window + 1) * seconds, not requests))
    return checks


def _headers(checks: list[_Check], used: Sequence[int], now: float) -> dict[str, str]:
    headers: dict[str, str] = {}
    for check, value in zip(checks, used, strict=False):
        if check.metric not in ("rpm", "tpm"):
            continue
        kind = "tokens" if check.tokens else "requests"
        remaining = max(check.limit - int(value), 0)
        current = headers.get(f"x-ratelimit-remaining-{kind}")
        if current is None or remaining < int(current):
            headers[f"x-ratelimit-limit-{kind}"] = str(check.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            headers[f"x-ratelimit-reset-{kind}"] = f"{max(check.window_end - now, 0):.3f}s"
    return headers


def _budget_keys(budget: BudgetState) -> tuple[str, str]:
    period = str(int(budget.period_start))
    return (gateway_redis.key("budget", str(budget.budget_id), period, "reserved"),
            gateway_redis.key("budget", str(budget.budget_id), period, "pending"))


async def admit(r, *, project: ProjectState, token_id: int, estimated_tokens: int,
                budgets: Sequence[BudgetState], max_cost_micro_usd: int | None, now: float | None = None,
                request_id: str | None = None, token_prefix: str = "") -> Admission:
    """`max_cost_micro_usd` None: unpriced (refused under a hard budget); `request_id` names the
    call for mark_ingested (B2's ledger needs it); `token_prefix` names the token in messages."""
    now = time.time() if now is None else now
    if budgets and max_cost_micro_usd is None:
        return Admission(False, "budget", None, {}, None, "This request's cost cannot be priced, so the hard "
                         "budget that covers it cannot be enforced; it is refused.")
    checks = _checks(project, token_id, estimated_tokens, now)
    if not checks and not budgets:
        return Admission(True, None, None, {}, None, "")
    keys = [c.key for c in checks]
    args: list = [len(checks), len(budgets)]
    for check in checks:
        args += [check.limit, check.amount, check.ttl]
    budget_keys = []
    for budget in budgets:
        reserved, pending = _budget_keys(budget)
        keys += [reserved, pending]
        budget_keys.append((budget.budget_id, reserved, pending))
        args += [budget.amount_micro_usd, budget.spent_micro_usd, max_cost_micro_usd,
                 int(max(budget.period_end - now, 60)) + 86400]
    outcome, index, used, *counts = await r.eval(_ADMIT, len(keys), *keys, *args)
    outcome = outcome.decode() if isinstance(outcome, bytes) else outcome
    if outcome == "rate_limit":
        check = checks[int(index) - 1]
        headers = _headers(checks, [check.limit if c is check else 0 for c in checks], now)
        return Admission(False, "rate_limit", max(check.window_end - now, 0.001), headers, None,
                         f"Rate limit reached for this {check.scope} on {check.metric.upper()}: limit {check.limit}, "
                         f"used {int(used)}. Try again in {max(check.window_end - now, 0):.0f}s.")
    if outcome == "budget":
        budget = budgets[int(index) - 1]
        return Admission(False, "budget", max(budget.period_end - now, 0), {}, None,
                         "A hard budget covering this request is used up for the current period; "
                         "requests are refused until the period ends.")
    reservation = Reservation(tuple(budget_keys), max_cost_micro_usd if budgets else 0, estimated_tokens,
                              tuple(c.key for c in checks if c.tokens))
    return Admission(True, None, None, _headers(checks, counts, now), reservation, "")


def settle(admission: Admission, *, actual_tokens: int, actual_cost_micro_usd: int, pipeline) -> dict[int, int]:
    reservation = admission.reservation
    if reservation is None:
        return {}
    for key in reservation.token_keys:
        pipeline.incrby(key, actual_tokens - reservation.estimated_tokens)
    charges = {}
    for budget_id, reserved, pending in reservation.budget_keys:
        pipeline.decrby(reserved, reservation.reserved_micro_usd)
        if actual_cost_micro_usd:
            pipeline.incrby(pending, actual_cost_micro_usd)
        charges[budget_id] = actual_cost_micro_usd
    return charges


def mark_ingested(charges: Sequence[tuple[str, Mapping[int, int]]]) -> None:
    client = gateway_redis.sync_client()
    changed = False
    for request_id, budget_charges in charges:
        if not budget_charges or not client.set(gateway_redis.key("ingested", request_id), 1, nx=True, ex=7 * 86400):
            continue
        for budget_id, charge in budget_charges.items():
            for key in client.scan_iter(match=gateway_redis.key("budget", str(budget_id), "*", "pending")):
                client.decrby(key, charge)
                break
        changed = True
    if changed:
        gateway_state.invalidate(everything=True)


def budget_state(budget, *, now=None, rates=None) -> BudgetState:
    """The BudgetState of one hard budget, for the state builder."""
    from django.utils import timezone

    from alerts.budgets import BudgetPeriod, spend_usd
    from costs.currency import Rates

    now = now or timezone.now()
    rates = rates or Rates.latest()
    period = BudgetPeriod.containing(budget.period, budget.organization.time_zone, now)
    amount = budget.amount / rates.per_usd[budget.currency] * 1_000_000
    spent = spend_usd(budget, period.start, now) * 1_000_000
    return BudgetState(
        budget_id=budget.id, period_start=period.start.timestamp(), period_end=period.end.timestamp(),
        amount_micro_usd=int(amount), spent_micro_usd=int(spent.to_integral_value(rounding="ROUND_CEILING")),
        token_id=budget.api_token_id, model=budget.model, tag_key=budget.tag_key, tag_value=budget.tag_value,
    )


def covering_budgets(project: ProjectState, *, token_id: int, models: Iterable[str],
                     tags: Mapping[str, str]) -> list[BudgetState]:
    models = set(models)
    return [
        budget for budget in project.hard_budgets
        if (budget.token_id is None or budget.token_id == token_id)
        and (not budget.model or budget.model in models)
        and (not budget.tag_key or tags.get(budget.tag_key) == budget.tag_value)
    ]


__all__ = ["Admission", "LimitSpec", "Reservation", "admit", "budget_state", "covering_budgets", "mark_ingested", "settle"]
