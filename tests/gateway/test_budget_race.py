"""Hard budgets are held exactly: concurrent admissions never take more than the budget has
room for (in one event loop, in two, in two processes), and the Redis ledger follows the DB
(spend from the API, the consumer's ingestion of gateway calls) without losing or double
counting what the gateway settled."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import uuid
from dataclasses import asdict
from decimal import Decimal

import pytest
from django.db import connection

from alerts.models import Budget
from costs.currency import Rates
from costs.ingestion import ingest
from gateway import admission
from gateway.admission import (
    admit,
    budget_state,
    ledger_view,
    mark_ingested,
    refresh_budget_ledger,
    settle,
)
from gateway.redis import async_client, key, sync_client
from tests.conftest import PROJECT_ROOT

from . import backends
from .backends import budget_state as make_budget_state
from .backends import project_state, run

gw_backend = backends.gw_backend

MAX_COST = 50_000  # micro-USD: $0.05 a request at most
ROOM_FOR_TEN = 10 * MAX_COST


async def admit_many(r, budget, count: int, *, token_id: int = 1):
    project = project_state(budgets=(budget,))
    return await asyncio.gather(*(
        admit(r, project=project, token_id=token_id, estimated_tokens=100, budgets=[budget],
              max_cost_micro_usd=MAX_COST, request_id=uuid.uuid4().hex)
        for _ in range(count)
    ))


def test_50_concurrent_admissions_against_room_for_10_admit_exactly_10(gw_backend):
    budget = make_budget_state(amount=ROOM_FOR_TEN)
    decisions = run(lambda r: admit_many(r, budget, 50))
    admitted = [d for d in decisions if d.allowed]
    assert len(admitted) == 10
    assert {d.reason for d in decisions if not d.allowed} == {"budget"}
    assert ledger_view(budget.budget_id, budget.period_start).reserved == ROOM_FOR_TEN

    async def settle_all(r):
        pipe = r.pipeline(transaction=False)
        for decision in admitted:
            settle(decision, actual_tokens=100, actual_cost_micro_usd=MAX_COST, pipeline=pipe)
        await pipe.execute()

    run(settle_all)
    view = ledger_view(budget.budget_id, budget.period_start)
    assert (view.reserved, view.unbased) == (0, ROOM_FOR_TEN)
    assert not run(lambda r: admit_many(r, budget, 1))[0].allowed


def test_admissions_and_settlements_interleaved_never_overspend(gw_backend):
    """Requests admitted, answered and settled concurrently, each costing less than it
    reserved: the room a settlement gives back is used by later requests, and the spend stays
    within the amount (the guarantee is amount + one request's max cost)."""
    budget = make_budget_state(amount=ROOM_FOR_TEN)
    project = project_state(budgets=(budget,))
    costs = random.Random(11)

    async def one(r) -> int:
        decision = await admit(r, project=project, token_id=1, estimated_tokens=100, budgets=[budget],
                               max_cost_micro_usd=MAX_COST, request_id=uuid.uuid4().hex)
        if not decision.allowed:
            return 0
        await asyncio.sleep(0)  # the upstream answers; others are admitted meanwhile
        cost = costs.randint(MAX_COST // 4, MAX_COST)
        pipe = r.pipeline(transaction=False)
        settle(decision, actual_tokens=100, actual_cost_micro_usd=cost, pipeline=pipe)
        await pipe.execute()
        return cost

    async def waves(r):
        spent = []
        for _ in range(6):
            spent += await asyncio.gather(*(one(r) for _ in range(50)))
        return spent

    spent = run(waves)
    view = ledger_view(budget.budget_id, budget.period_start)
    assert view.reserved == 0
    assert view.unbased == sum(spent) <= ROOM_FOR_TEN
    assert sum(1 for cost in spent if cost) > 10  # what settlements gave back was used
    assert ROOM_FOR_TEN - view.unbased < MAX_COST  # and the budget ends (nearly) spent


def test_two_event_loops_share_one_budget(gw_backend):
    budget = make_budget_state(amount=ROOM_FOR_TEN)
    start = threading.Barrier(2)
    results: list[list] = [[], []]

    def loop(index: int) -> None:
        async def main():
            r = async_client()
            try:
                await r.ping()
                start.wait(timeout=60)
                results[index] = await admit_many(r, budget, 25)
            finally:
                await r.aclose()

        asyncio.run(main())

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results[0]) == len(results[1]) == 25
    assert sum(d.allowed for d in results[0] + results[1]) == 10


CHILD = """
import asyncio, json, os, sys, uuid
import django
django.setup()
from gateway.admission import admit
from gateway.redis import async_client, key, sync_client
from gateway.state import BudgetState
from tests.gateway.backends import project_state

budget = BudgetState(**json.loads(sys.argv[1]))
gate = key("test", "go", sys.argv[2])
sync_client().rpush(key("test", "ready", sys.argv[2]), os.getpid())
assert sync_client().blpop([gate], timeout=60), "never released"

async def main():
    r = async_client()
    project = project_state(budgets=(budget,))
    decisions = await asyncio.gather(*(
        admit(r, project=project, token_id=1, estimated_tokens=100, budgets=[budget],
              max_cost_micro_usd=int(sys.argv[3]), request_id=uuid.uuid4().hex)
        for _ in range(25)
    ))
    await r.aclose()
    return sum(d.allowed for d in decisions)

print(json.dumps({"admitted": asyncio.run(main())}))
"""


def test_two_processes_share_one_budget_on_the_real_redis():
    budget = make_budget_state(amount=ROOM_FOR_TEN)
    run_id = uuid.uuid4().hex
    env = {**os.environ, "PULSE_ENV": "test", "DJANGO_SETTINGS_MODULE": "config.settings"}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(asdict(budget)), run_id, str(MAX_COST)],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    client = sync_client()
    try:
        for _ in children:  # both are connected and waiting: release them together
            assert client.blpop([key("test", "ready", run_id)], timeout=120), "a child did not start"
        client.rpush(key("test", "go", run_id), 1, 1)
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    for child, (_, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr[-3000:]
    admitted = [json.loads(out.strip().splitlines()[-1])["admitted"] for out, _ in outputs]
    assert sum(admitted) == 10
    assert ledger_view(budget.budget_id, budget.period_start).reserved == ROOM_FOR_TEN


# ------------------------------------------------------------------------------ the DB side


@pytest.fixture
def hard_budget(personas) -> Budget:
    return Budget.objects.create(
        organization=personas.org, project=personas.project, name="Hard cap", amount=Decimal("10"),
        currency="USD", period=Budget.Period.MONTH, enforcement=Budget.Enforcement.HARD,
    )


def spend_from_api(project, usd: str) -> None:
    result = ingest(project, [{"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 10,
                               "cost_usd": usd, "source": "api"}])
    assert not result.errors


def ingest_gateway_call(project, request_id: str, usd: str) -> None:
    """What the consumer commits for one gateway call."""
    result = ingest(project, [{"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 10,
                               "cost_usd": usd, "source": "gateway", "idempotency_key": f"gw-{request_id}"}], trusted=True)
    assert not result.errors


def gateway_call(state, request_id: str, cost: int, now: float | None = None) -> dict[int, int]:
    """Admit and settle one gateway call of `cost` micro-USD; its budget charges."""

    async def go(r):
        decision = await admit(r, project=project_state(budgets=(state,)), token_id=1, estimated_tokens=10,
                               budgets=[state], max_cost_micro_usd=cost, request_id=request_id, now=now)
        assert decision.allowed, decision.message
        pipe = r.pipeline(transaction=False)
        charges = settle(decision, actual_tokens=10, actual_cost_micro_usd=cost, pipeline=pipe)
        await pipe.execute()
        return charges

    return run(go)


def used(state) -> int:
    return ledger_view(state.budget_id, state.period_start).used


def test_budget_state_converts_the_amount_and_reads_the_period_spend(hard_budget, personas):
    spend_from_api(personas.project, "1.5")
    state = budget_state(hard_budget)
    assert (state.amount_micro_usd, state.spent_micro_usd) == (10_000_000, 1_500_000)
    assert state.period_start < state.period_end and state.token_id is None and state.model == ""
    hard_budget.currency = "GBP"
    rates = Rates({"USD": Decimal(1), "GBP": Decimal("0.8")}, {})
    assert budget_state(hard_budget, rates=rates).amount_micro_usd == 12_500_000  # £10 = $12.50


def test_spend_from_the_api_is_picked_up_without_losing_pending_gateway_spend(hard_budget, personas):
    state = budget_state(hard_budget)
    gateway_call(state, "a", 300_000)
    spend_from_api(personas.project, "2")
    assert used(state) == 300_000
    refresh_budget_ledger(hard_budget)
    assert used(state) == 2_300_000  # the DB's $2 + the gateway's $0.30 not ingested yet


def test_ingested_gateway_spend_is_counted_once_after_it_is_marked(hard_budget, personas):
    state = budget_state(hard_budget)
    charges = gateway_call(state, "b", 400_000)
    assert charges == {hard_budget.id: 400_000}
    ingest_gateway_call(personas.project, "b", "0.4")
    # Inside the caller's transaction the refresh cannot check the DB for unmarked entries: the
    # call may be counted twice until it is marked, never less than once.
    refresh_budget_ledger(hard_budget)
    assert 400_000 <= used(state) <= 800_000
    mark_ingested([("b", charges)])  # the consumer, after committing
    refresh_budget_ledger(hard_budget)
    view = ledger_view(state.budget_id, state.period_start)
    assert (view.base, view.unbased, view.entries) == (400_000, 0, {})


def test_mark_ingested_is_idempotent_and_refreshes_when_due(hard_budget, personas):
    state = budget_state(hard_budget)
    charges = gateway_call(state, "c", 250_000)
    ingest_gateway_call(personas.project, "c", "0.25")
    mark_ingested([("c", charges)])  # due: flips the entry and refreshes at once
    view = ledger_view(state.budget_id, state.period_start)
    assert (view.base, view.unbased, view.entries) == (250_000, 0, {})
    mark_ingested([("c", charges), ("unknown", {hard_budget.id: 5})])  # redelivered, and a stranger
    assert used(state) == 250_000
    # not due again within REFRESH_INTERVAL_S: marked, folded in by a later refresh
    charges = gateway_call(state, "d", 100_000)
    ingest_gateway_call(personas.project, "d", "0.1")
    mark_ingested([("d", charges)])
    view = ledger_view(state.budget_id, state.period_start)
    assert view.entries["d"][2] == "i" and view.used == 350_000
    sync_client().delete(key("budget", str(hard_budget.id), "due"))
    mark_ingested([("d", charges)])
    view = ledger_view(state.budget_id, state.period_start)
    assert (view.base, view.unbased, view.entries) == (350_000, 0, {})


def test_a_refresh_holding_no_lock_only_reads(hard_budget, personas):
    state = budget_state(hard_budget)
    gateway_call(state, "e", 100_000)
    spend_from_api(personas.project, "1")
    sync_client().set(key("budget", str(hard_budget.id), "refreshing"), "someone else")
    assert refresh_budget_ledger(hard_budget) == 1_000_000
    assert ledger_view(state.budget_id, state.period_start).base == 0  # untouched


def test_entries_of_an_earlier_period_are_dropped(hard_budget, personas):
    state = budget_state(hard_budget)
    earlier = make_budget_state(hard_budget.id, amount=ROOM_FOR_TEN, start=state.period_start - 31 * 86400,
                                length=31 * 86400)
    gateway_call(earlier, "old", 1000, now=earlier.period_start + 60)  # last month's
    gateway_call(state, "new", 2000)
    refresh_budget_ledger(hard_budget)
    view = ledger_view(state.budget_id, state.period_start)
    assert set(view.entries) == {"new"} and view.used == 2000


@pytest.mark.django_db(transaction=True)
def test_the_exact_refresh_checks_unmarked_calls_in_its_own_snapshot(personas, monkeypatch):
    """Outside a transaction the refresh reads the spend and looks the unmarked calls up in one
    REPEATABLE READ snapshot: a call committed before it counts once at once (no need to wait
    for its mark), and one committed while it runs stays counted in Redis."""
    budget = Budget.objects.create(
        organization=personas.org, project=personas.project, name="Hard cap", amount=Decimal("10"),
        currency="USD", period=Budget.Period.MONTH, enforcement=Budget.Enforcement.HARD,
    )
    budget = Budget.objects.select_related("organization", "api_token").get(id=budget.id)
    state = budget_state(budget)
    gateway_call(state, "committed", 100_000)
    ingest_gateway_call(personas.project, "committed", "0.1")  # committed, not marked yet
    gateway_call(state, "in-flight", 200_000)

    read_spend = admission._db_spend_micro_usd

    def spend_then_commit_another(*args):
        spent = read_spend(*args)

        # the consumer commits "in-flight" after the snapshot was taken, on its own connection
        def consumer():
            try:
                ingest_gateway_call(personas.project, "in-flight", "0.2")
            finally:
                connection.close()

        worker = threading.Thread(target=consumer)
        worker.start()
        worker.join(timeout=60)
        return spent

    assert not connection.in_atomic_block
    monkeypatch.setattr(admission, "_db_spend_micro_usd", spend_then_commit_another)
    assert refresh_budget_ledger(budget) == 100_000
    monkeypatch.undo()
    view = ledger_view(state.budget_id, state.period_start)
    assert (view.base, view.unbased) == (100_000, 200_000)
    assert set(view.entries) == {"in-flight"}
    refresh_budget_ledger(budget)  # the next refresh finds it in the DB
    view = ledger_view(state.budget_id, state.period_start)
    assert (view.base, view.unbased, view.entries) == (300_000, 0, {})
