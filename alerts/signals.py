"""What sets alerts off: new spend (after ingestion or re-pricing commits), a finished benchmark
run, a budget created or changed."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.models import Project
from benchmarks.models import BenchmarkResult, Run
from costs.ingestion import usage_recorded

from . import tasks
from .models import Budget
from .rules import rules_watching

logger = logging.getLogger(__name__)


@receiver(usage_recorded, dispatch_uid="alerts.evaluate_budgets_on_usage")
def evaluate_budgets_on_usage(sender: type, project_ids: list[int], **kwargs: object) -> None:
    # The projects some enabled budget covers (`covering`: its organization's, its own, its
    # tokens'), not every project of an organization that has a budget somewhere.
    budgets = Budget.objects.dangerously_unscoped().enabled()
    watched = [project.id for project in Project.objects.filter(id__in=project_ids) if budgets.covering(project).exists()]
    if watched:
        tasks.queue_budget_evaluation(sorted(watched))


@receiver(post_save, sender=Run, dispatch_uid="alerts.evaluate_rules_on_run")
def evaluate_rules_on_run(sender: type[Run], instance: Run, **kwargs: object) -> None:
    if kwargs.get("raw") or instance.status not in (Run.Status.FINISHED, Run.Status.FAILED):
        return
    model_ids = []
    if instance.target_id is None:
        model_ids = list(
            BenchmarkResult.objects.filter(run=instance, model__isnull=False).values_list("model_id", flat=True).distinct()
        )
    rule_ids = rules_watching(instance.organization_id, instance.target_id, model_ids)
    if rule_ids:
        def queue() -> None:
            try:
                tasks.evaluate_rules.delay(rule_ids)
            except Exception:
                logger.exception("Could not queue the evaluation of rules %s; beat will", rule_ids)

        transaction.on_commit(queue)


@receiver(post_save, sender=Budget, dispatch_uid="alerts.evaluate_saved_budget")
def evaluate_saved_budget(sender: type[Budget], instance: Budget, **kwargs: object) -> None:
    if kwargs.get("raw") or not instance.is_enabled:
        return

    def queue() -> None:
        try:
            tasks.reevaluate_budget.delay(instance.id)
        except Exception:
            logger.exception("Could not queue the evaluation of budget %s; beat will", instance.uuid)

    transaction.on_commit(queue)
