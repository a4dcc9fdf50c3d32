"""Runs end to end: planned from the catalog or a private target, measured against the simulated
provider, stored and priced; schedules never overlap; beat's task works through a real worker."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from benchmarks import execution
from benchmarks.models import BenchmarkResult, Model, Price, Provider, ProviderKind, Run, Target
from benchmarks.simulator import SimulatedProvider
from benchmarks.tasks import run_public_benchmarks

# Results are stored from the runner's thread, on its own database connection: the rows must be
# committed for it to see them.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def simulator():
    with SimulatedProvider() as provider:
        yield provider


@pytest.fixture
def catalog(simulator) -> dict[str, Model]:
    provider = Provider.objects.create(
        name="Simulated", kind=ProviderKind.OPENAI_COMPATIBLE, base_url=simulator.base_url_for("openai_compatible")
    )
    provider.api_key = "sk-sim"
    provider.save()
    models = {name: Model.objects.create(provider=provider, name=name, is_active=True)
              for name in ("sim-fast", "sim-500", "sim-bundled")}
    Model.objects.create(provider=provider, name="sim-slow", is_active=False)  # not benchmarked
    for name in ("sim-fast", "sim-500"):
        Price.objects.create(model=models[name], input_mtok=Decimal("1"), output_mtok=Decimal("2"),
                             valid_from=timezone.now() - timedelta(days=1))
    return models


def test_a_public_run_measures_every_active_model_and_prices_what_it_can(catalog):
    run = execution.start_run(name="manual", triggered_by=Run.Trigger.MANUAL)
    execution.execute_run(run)

    run.refresh_from_db()
    assert run.status == Run.Status.FINISHED and run.finished_at >= run.started_at
    results = {r.model_name: r for r in BenchmarkResult.objects.filter(run=run)}
    assert set(results) == {"sim-fast", "sim-500", "sim-bundled"}

    fast = results["sim-fast"]
    assert fast.success and fast.output_tokens == 64 and fast.ttft_ms >= 50 and fast.tps > 0
    assert fast.is_priced and fast.cost_usd == Decimal(fast.input_tokens * 1 + 64 * 2) / 1_000_000
    assert fast.organization is None and fast.model == catalog["sim-fast"]

    failed = results["sim-500"]
    assert (failed.success, failed.status_code, failed.error_kind) == (False, 500, "server_error")
    assert failed.cost_usd is None and not failed.is_priced

    unpriced = results["sim-bundled"]
    assert unpriced.success and unpriced.cost_usd is None and not unpriced.is_priced


def test_a_private_target_run_belongs_to_its_organization_only(personas, simulator):
    target = Target.objects.create(
        organization=personas.org, name="Our gateway", kind=ProviderKind.ANTHROPIC,
        base_url=simulator.base_url_for("anthropic"), model_names=["sim-fast", "sim-401"],
    )
    target.api_key = "sk-ant-sim"
    target.save()
    run = execution.start_run(name="private", triggered_by=Run.Trigger.MANUAL,
                               organization=personas.org, target=target)
    execution.execute_run(run)

    results = BenchmarkResult.objects.visible_to(personas.viewer).filter(run=run)
    assert {(r.model_name, r.success) for r in results} == {("sim-fast", True), ("sim-401", False)}
    assert not BenchmarkResult.objects.visible_to(personas.outsider).exists()
    assert not BenchmarkResult.objects.public().exists()


def test_two_runs_of_one_schedule_never_overlap(db):
    first = execution.start_run(name="a", triggered_by=Run.Trigger.SCHEDULE, schedule_key="public")
    with pytest.raises(execution.RunAlreadyActive):
        execution.start_run(name="b", triggered_by=Run.Trigger.SCHEDULE, schedule_key="public")

    Run.objects.filter(pk=first.pk).update(status=Run.Status.FINISHED)
    execution.start_run(name="c", triggered_by=Run.Trigger.SCHEDULE, schedule_key="public")


def test_a_run_that_lost_its_worker_stops_blocking_its_schedule(db):
    stuck = execution.start_run(name="stuck", triggered_by=Run.Trigger.SCHEDULE, schedule_key="public")
    Run.objects.filter(pk=stuck.pk).update(status=Run.Status.RUNNING, created_at=timezone.now() - timedelta(hours=2))

    execution.start_run(name="next", triggered_by=Run.Trigger.SCHEDULE, schedule_key="public")
    stuck.refresh_from_db()
    assert stuck.status == Run.Status.FAILED


@pytest.mark.worker
def test_the_scheduled_task_runs_through_a_real_worker_into_postgresql(catalog, worker):
    run_uuid = run_public_benchmarks.apply_async(queue=worker).get(timeout=120)

    run = Run.objects.get(uuid=run_uuid)
    assert run.triggered_by == Run.Trigger.SCHEDULE and run.status == Run.Status.FINISHED
    assert run.results.count() == 3
    assert run.results.filter(success=True, model_name="sim-fast").exists()
