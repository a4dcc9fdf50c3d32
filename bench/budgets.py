"""How fast is a budget's status (spend this period, percent, forecast) at 1 M events, and is it
right? Side by side with the naive way: summing the raw events.

    .venv/bin/python bench/budgets.py --events 1000000     # ~1.5 minutes

1. A throwaway PostgreSQL database (`pulse_bench_budgets`, dropped at the end unless --keep),
   the same data as bench/summary.py (N events over 90 days in one project, 20 models, 10 keys,
   tags), its rollups built in bulk. The organization's time zone is America/New_York, so
   period bounds are not UTC midnights and the ragged-edge hours are exercised.
2. For budgets of each scope (project monthly, organization monthly, one API token weekly, one
   model monthly, one tag value daily): checks that the rollup-based spend equals the raw
   events' `SUM(cost_usd)` over the same period, then times p50/p95 of
   (a) `BudgetStatus.of()` (spend + run-rate window: 2 queries, plus the exchange rates),
   (b) `evaluate_budget()` when nothing new is due (what runs after every ingestion batch),
   (c) the raw-events `SUM` the rollups replace.

Target (issue 5, the gateway's hard-budget check reads this): status p95 well under 50 ms.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from summary import (  # noqa: E402 (the sibling script, after the path is set)
    build_rollups,
    check_rollups,
    copy_events,
    drop_database,
    make_tenant,
    recreate_database,
    setup_django,
    timed,
)


def budgets_for(project: object, keys: list) -> list[tuple[str, object]]:
    from alerts.models import Budget

    organization = project.organization
    organization.time_zone = "America/New_York"
    organization.save(update_fields=["time_zone"])
    common = {"organization": organization, "amount": Decimal(100_000), "thresholds": [50, 80, 100]}
    return [
        ("project, monthly", Budget.objects.create(name="project", project=project, **common)),
        ("organization, monthly", Budget.objects.create(name="organization", **common)),
        ("one API token, weekly", Budget.objects.create(name="token", api_token=keys[0], period="week", **common)),
        ("one model, monthly", Budget.objects.create(name="model", project=project, model="gpt-4o", **common)),
        ("one tag value, daily", Budget.objects.create(
            name="tag", project=project, tag_key="feature", tag_value="search", period="day", **common)),
    ]


def raw_spend(budget: object, start: datetime, end: datetime) -> Decimal:
    from django.db.models import Sum

    from costs.models import CostEvent

    events = CostEvent.objects.filter(project__organization_id=budget.organization_id, occurred_at__gte=start,
                                      occurred_at__lt=end)
    if budget.project_id:
        events = events.filter(project_id=budget.project_id)
    if budget.api_token_id:
        events = events.filter(token_prefix=budget.api_token.prefix)
    if budget.model:
        events = events.filter(model=budget.model)
    if budget.tag_key:
        events = events.filter(**{f"tags__{budget.tag_key}": budget.tag_value})
    return events.aggregate(cost=Sum("cost_usd"))["cost"] or Decimal(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--database", default="pulse_bench_budgets")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    recreate_database(args.database)
    try:
        setup_django(args.database)
        from django.core.management import call_command
        from django.db import connection

        from alerts.budgets import BudgetStatus, evaluate_budget
        from costs.currency import Rates

        call_command("migrate", verbosity=0)
        project, keys, _raw = make_tenant()
        now = datetime.now(UTC)
        copy_seconds = copy_events(project.id, keys, args.events, now)
        print(f"COPY {args.events:,} events: {copy_seconds:.1f} s")
        rollup_seconds, rollup_rows = build_rollups(project.id)
        print(f"rollups: {rollup_rows:,} rows in {rollup_seconds:.1f} s")
        check_rollups(project.id, args.events)

        rows = []
        for label, budget in budgets_for(project, keys):
            status = BudgetStatus.of(budget, now)
            # Events up to `now` only exist: the rollups' current hour holds exactly them.
            expected = raw_spend(budget, status.period.start, now)
            assert abs(status.spent_usd - expected) < Decimal("0.000001"), (label, status.spent_usd, expected)
            evaluate_budget(budget, now)  # nothing is due at $100,000; this warms the path
            rates = Rates.latest()
            status_p50, status_p95, status_q = timed(lambda b=budget, r=rates: BudgetStatus.of(b, now, r), args.requests)
            eval_p50, eval_p95, eval_q = timed(lambda b=budget: evaluate_budget(b, now), args.requests)
            raw_p50, raw_p95, _ = timed(
                lambda b=budget, s=status: raw_spend(b, s.period.start, now), max(5, args.requests // 5), warmup=1)
            rows.append((label, status.spent_usd, status_p50, status_p95, status_q, eval_p50, eval_p95, eval_q,
                         raw_p50, raw_p95))

        print(f"\n{args.events:,} events, organization in America/New_York; spend matched the raw events for every budget")
        print(f"{'budget':<24} {'spent $':>12} {'status p50/p95 ms':>18} {'q':>3} {'evaluate p50/p95':>17} {'q':>3}"
              f" {'raw SUM p50/p95 ms':>19} {'raw/status':>10}")
        for label, spent, sp50, sp95, sq, ep50, ep95, eq, rp50, rp95 in rows:
            print(f"{label:<24} {spent:>12,.2f} {sp50:>8.1f} / {sp95:>6.1f} {sq:>3} {ep50:>7.1f} / {ep95:>6.1f} {eq:>3}"
                  f" {rp50:>9.1f} / {rp95:>6.1f} {rp50 / sp50:>9.1f}×")
        worst = max(r[3] for r in rows)
        print(f"\ntarget: status p95 < 50 ms -> worst {worst:.1f} ms: {'met' if worst < 50 else 'MISSED'}")
        connection.close()
    finally:
        if not args.keep:
            drop_database(args.database)


if __name__ == "__main__":
    main()
