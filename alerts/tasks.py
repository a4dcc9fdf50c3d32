"""Celery tasks: evaluating budgets and rules, and delivering alerts (see alerts/notify.py)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from . import budgets, notify, rules
from .models import AlertRule, Budget, Delivery

logger = logging.getLogger(__name__)

# At most one queued evaluation per project: ingestion sets the key when it queues one, the task
# clears it before reading spend, so events committed while it waits are still seen by it.
PENDING_KEY = "alerts:budget-evaluation-pending:{}"
PENDING_TTL = 60  # a lost task only delays evaluation until then (or the beat safety net)
DEBOUNCE_SECONDS = 1


def queue_budget_evaluation(project_ids: list[int]) -> None:
    """After ingestion committed: evaluate the budgets covering these projects, soon. Projects
    with a queued evaluation are skipped (it will see the new spend)."""
    for project_id in project_ids:
        key = PENDING_KEY.format(project_id)
        if cache.add(key, 1, timeout=PENDING_TTL):
            try:
                evaluate_project_budgets.apply_async((project_id,), countdown=DEBOUNCE_SECONDS)
            except Exception:  # the broker is down: nothing is queued, so the next ingestion must try
                cache.delete(key)
                logger.exception("Could not queue the budget evaluation of project %s; beat will", project_id)


@shared_task(name="alerts.tasks.evaluate_project_budgets")
def evaluate_project_budgets(project_id: int) -> int:
    cache.delete(PENDING_KEY.format(project_id))
    return budgets.evaluate_budgets(budgets.budgets_covering([project_id]))


@shared_task(name="alerts.tasks.reevaluate_budget")
def reevaluate_budget(budget_id: int) -> int:
    """After a budget was created or changed: re-arm this period's alerts that are no longer
    crossed (say, the amount went up), then raise what is due."""
    budget = Budget.objects.dangerously_unscoped().select_related("organization", "project", "api_token").filter(
        id=budget_id, is_enabled=True,
    ).first()
    if budget is None:
        return 0
    budgets.rearm_uncrossed(budget)
    return len(budgets.evaluate_budget(budget))


@shared_task(name="alerts.tasks.evaluate_all_budgets")
def evaluate_all_budgets() -> int:
    """Beat safety net (every 5 minutes): an evaluation queued after ingestion may have been lost,
    and forecasts move with time alone."""
    raised = 0
    for budget in Budget.objects.dangerously_unscoped().enabled().select_related("organization", "project", "api_token"):
        try:
            raised += len(budgets.evaluate_budget(budget))
        except Exception:  # one broken budget must not stop the others
            logger.exception("Evaluating budget %s failed", budget.uuid)
    return raised


@shared_task(name="alerts.tasks.evaluate_rules")
def evaluate_rules(rule_ids: list[int] | None = None) -> int:
    """After a benchmark run (the rules watching it), and from beat (all rules: time windows
    move with time alone)."""
    if rule_ids is None:
        rule_ids = list(AlertRule.objects.dangerously_unscoped().enabled().values_list("id", flat=True))
    return rules.evaluate_rules(rule_ids)


@shared_task(name="alerts.tasks.deliver")
def deliver(delivery_id: int) -> str | None:
    delivery = notify.send_delivery(delivery_id)
    if delivery is None:
        return None
    if delivery.status == Delivery.Status.PENDING:  # failed this time: try again later
        delay = max((delivery.next_attempt_at - timezone.now()).total_seconds(), 0)
        try:
            deliver.apply_async((delivery_id,), countdown=delay)
        except Exception:
            logger.exception("Could not queue the retry of delivery %s; the retry beat task will", delivery_id)
    return delivery.status


@shared_task(name="alerts.tasks.retry_deliveries")
def retry_deliveries() -> int:
    """Every minute: deliveries due but not queued (lost retries, workers that died mid-send)."""
    due = notify.due_deliveries()
    for delivery_id in due:
        deliver.delay(delivery_id)
    return len(due)
