"""What sets evaluations off: `usage_recorded` after ingestion commits (debounced per project in
Redis, only for projects some enabled budget covers, never failing ingestion) and a finished
benchmark run (the rules watching it)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache

from accounts.models import ApiToken, Project
from alerts import tasks
from alerts.models import Alert, AlertRule
from benchmarks.models import Model, Provider, ProviderKind, Run
from costs.ingestion import ingest
from costs.models import CostEvent

from .conftest import add_results, make_budget, make_target

pytestmark = pytest.mark.django_db

EVENT = {"provider": "openai", "model": "gpt-test", "cost_usd": "1"}


@pytest.fixture
def staging(personas) -> Project:
    return Project.objects.create(organization=personas.org, name="Staging")


def ingest_committed(capture, project, count: int = 1, **kwargs) -> None:
    with capture(execute=True):
        assert ingest(project, [dict(EVENT) for _ in range(count)], **kwargs).inserted == count


def pending(project) -> bool:
    return cache.get(tasks.PENDING_KEY.format(project.id)) is not None


def test_usage_queues_one_evaluation_per_project_until_it_runs(personas, queued, django_capture_on_commit_callbacks):
    make_budget(personas, project=personas.project)
    ingest_committed(django_capture_on_commit_callbacks, personas.project)
    assert queued.of("evaluate_project_budgets") == [(personas.project.id,)]
    assert pending(personas.project)
    ingest_committed(django_capture_on_commit_callbacks, personas.project, count=3)
    assert len(queued.of("evaluate_project_budgets")) == 1  # debounced: the queued task will see them

    assert tasks.evaluate_project_budgets(personas.project.id) == 0  # $4 of $10: nothing due yet
    assert not pending(personas.project)
    ingest_committed(django_capture_on_commit_callbacks, personas.project, count=2)
    assert queued.of("evaluate_project_budgets") == [(personas.project.id,)] * 2
    assert tasks.evaluate_project_budgets(personas.project.id) == 1  # $6: the 50 % alert
    assert list(Alert.objects.values_list("threshold", flat=True)) == [50]


def test_only_projects_covered_by_an_enabled_budget_are_queued(personas, staging, queued,
                                                                django_capture_on_commit_callbacks):
    make_budget(personas, project=personas.project)
    make_budget(personas, name="Off", is_enabled=False)  # organization-wide, but disabled
    ingest_committed(django_capture_on_commit_callbacks, staging)
    ingest_committed(django_capture_on_commit_callbacks, personas.other_project)
    assert queued.of("evaluate_project_budgets") == []
    assert not pending(staging)
    ingest_committed(django_capture_on_commit_callbacks, personas.project)
    assert queued.of("evaluate_project_budgets") == [(personas.project.id,)]


def test_organization_and_token_budgets_cover_their_projects(personas, staging, queued,
                                                              django_capture_on_commit_callbacks):
    token, _ = ApiToken.issue(project=staging, name="ci", scopes=["ingest"], by=personas.owner)
    make_budget(personas, api_token=token)
    ingest_committed(django_capture_on_commit_callbacks, personas.project)
    ingest_committed(django_capture_on_commit_callbacks, staging, token=token)
    assert queued.of("evaluate_project_budgets") == [(staging.id,)]
    make_budget(personas, name="Everything")
    ingest_committed(django_capture_on_commit_callbacks, personas.project)
    assert queued.of("evaluate_project_budgets") == [(staging.id,), (personas.project.id,)]


def test_a_failing_broker_never_fails_ingestion(personas, monkeypatch, django_capture_on_commit_callbacks, caplog):
    make_budget(personas, project=personas.project)

    def broker_down(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(tasks.evaluate_project_budgets, "apply_async", broker_down)
    ingest_committed(django_capture_on_commit_callbacks, personas.project, count=5)
    assert CostEvent.objects.filter(project=personas.project).count() == 5
    assert "Could not queue the budget evaluation" in caplog.text
    # Nothing was queued, so nothing may hold the debounce slot: the next ingestion tries again.
    assert not pending(personas.project)


def test_the_evaluation_task_evaluates_every_budget_covering_the_project(personas, staging):
    make_budget(personas, name="Org")
    make_budget(personas, name="Prod", project=personas.project)
    make_budget(personas, name="Staging", project=staging)
    assert ingest(personas.project, [dict(EVENT, cost_usd="6")]).inserted == 1
    assert tasks.evaluate_project_budgets(personas.project.id) == 2
    assert sorted(Alert.objects.values_list("budget__name", flat=True)) == ["Org", "Prod"]
    assert tasks.evaluate_all_budgets() == 0


# ----------------------------------------------------------------------------- benchmark runs


def test_a_finished_run_of_a_target_queues_the_rules_watching_it(personas, queued, django_capture_on_commit_callbacks):
    target = make_target(personas)
    other = make_target(personas, name="Other")
    rule = AlertRule.objects.create(organization=personas.org, name="Slow", target=target,
                                    metric=AlertRule.Metric.TTFT_P95, threshold=500, window_results=5)
    AlertRule.objects.create(organization=personas.org, name="Other", target=other,
                             metric=AlertRule.Metric.TTFT_P95, threshold=500, window_results=5)
    AlertRule.objects.create(organization=personas.org, name="Off", target=target, is_enabled=False,
                             metric=AlertRule.Metric.TTFT_P95, threshold=500, window_results=5)
    run = add_results(target=target, count=5, ttft_ms=900)
    with django_capture_on_commit_callbacks(execute=True):
        run.save()  # still running: nothing
    assert queued.of("evaluate_rules") == []
    run.status = Run.Status.FINISHED
    with django_capture_on_commit_callbacks(execute=True):
        run.save()
    assert queued.of("evaluate_rules") == [([rule.id],)]
    # What the queued task does with them:
    assert tasks.evaluate_rules(*queued.of("evaluate_rules")[0]) == 1
    assert Alert.objects.get().kind == Alert.Kind.RULE_FIRING


def test_a_finished_public_run_queues_the_rules_on_the_models_it_measured(personas, queued,
                                                                          django_capture_on_commit_callbacks):
    provider = Provider.objects.create(name="Acme AI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://acme.example/v1")
    measured = Model.objects.create(provider=provider, name="acme-large")
    not_measured = Model.objects.create(provider=provider, name="acme-small")
    rule = AlertRule.objects.create(organization=personas.org, name="Public slow", catalog_model=measured,
                                    metric=AlertRule.Metric.TTFT_P95, threshold=500, window_results=3)
    AlertRule.objects.create(organization=personas.other_org, name="Small", catalog_model=not_measured,
                             metric=AlertRule.Metric.TTFT_P95, threshold=500, window_results=3)
    run = add_results(catalog_model=measured, count=3, ttft_ms=100)
    run.status = Run.Status.FAILED  # a run with some failures still has results to judge
    with django_capture_on_commit_callbacks(execute=True):
        run.save()
    assert queued.of("evaluate_rules") == [([rule.id],)]


def test_saving_a_budget_queues_its_reevaluation(personas, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        budget = make_budget(personas, amount=Decimal("5"))
    assert queued.of("reevaluate_budget") == [(budget.id,)]
    budget.is_enabled = False
    with django_capture_on_commit_callbacks(execute=True):
        budget.save()
    assert queued.of("reevaluate_budget") == [(budget.id,)]
