"""Per-target schedules: every Target has one django-celery-beat PeriodicTask, kept in step on
save and removed on delete (also when its organization is deleted); the scheduled task runs the
target, skips while a run is active, and works through a real worker into PostgreSQL."""

from __future__ import annotations

import json

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from benchmarks import execution, schedules
from benchmarks.models import BenchmarkResult, ProviderKind, Run, Target
from benchmarks.simulator import SimulatedProvider
from benchmarks.tasks import run_target


def make_target(personas, **fields) -> Target:
    values = {
        "organization": personas.org, "name": "Our gateway", "kind": ProviderKind.OPENAI_COMPATIBLE,
        "base_url": "https://gw.example/v1", "model_names": ["m1"],
    } | fields
    return Target.objects.create(**values)


def periodic_task_of(target: Target) -> PeriodicTask:
    return PeriodicTask.objects.select_related("interval").get(name=f"benchmarks.target:{target.uuid}")


@pytest.mark.django_db
def test_saving_a_target_creates_its_periodic_task(personas):
    target = make_target(personas, interval_minutes=30)

    task = periodic_task_of(target)
    assert task.task == "benchmarks.tasks.run_target" == schedules.TASK
    assert (task.interval.every, task.interval.period) == (30, IntervalSchedule.MINUTES)
    assert json.loads(task.kwargs) == {"target_uuid": str(target.uuid)}
    assert task.enabled and task.expire_seconds == 30 * 60 and task.expires is None


@pytest.mark.django_db
def test_editing_a_target_updates_or_pauses_its_periodic_task_and_the_target_wins(personas):
    target = make_target(personas, interval_minutes=15)
    # An operator edits the schedule in the admin: beat would honour it…
    task = periodic_task_of(target)
    task.interval = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.HOURS)
    task.save()

    # …until the target is saved again, which rewrites it from the target.
    target.interval_minutes, target.is_enabled = 60, False
    target.save()

    task = periodic_task_of(target)
    assert (task.interval.every, task.interval.period) == (60, IntervalSchedule.MINUTES)
    assert not task.enabled and task.expire_seconds == 3600
    assert PeriodicTask.objects.filter(name__startswith="benchmarks.target:").count() == 1


@pytest.mark.django_db
def test_equal_intervals_are_shared_even_when_the_admin_made_duplicates(personas):
    IntervalSchedule.objects.create(every=15, period=IntervalSchedule.MINUTES)
    IntervalSchedule.objects.create(every=15, period=IntervalSchedule.MINUTES)
    first = make_target(personas, name="a")
    second = make_target(personas, name="b")
    assert periodic_task_of(first).interval_id == periodic_task_of(second).interval_id


@pytest.mark.django_db
def test_deleting_a_target_or_its_organization_removes_the_periodic_task(personas):
    deleted = make_target(personas, name="deleted")
    kept = make_target(personas, name="kept")
    theirs = make_target(personas, name="theirs", organization=personas.other_org)

    deleted.delete()
    assert not PeriodicTask.objects.filter(name=f"benchmarks.target:{deleted.uuid}").exists()
    assert periodic_task_of(kept) and periodic_task_of(theirs)

    personas.org.delete()  # cascades to its targets
    names = set(PeriodicTask.objects.filter(name__startswith="benchmarks.target:").values_list("name", flat=True))
    assert names == {f"benchmarks.target:{theirs.uuid}"}


@pytest.mark.django_db
def test_the_task_skips_while_a_run_is_active_and_for_paused_or_deleted_targets(personas):
    target = make_target(personas)
    active = execution.start_run(name="run now", triggered_by=Run.Trigger.MANUAL, organization=personas.org,
                                 target=target, schedule_key=target.schedule_key)

    assert run_target(str(target.uuid)) is None
    assert list(Run.objects.filter(target=target)) == [active]

    Run.objects.filter(pk=active.pk).update(status=Run.Status.FINISHED)
    target.is_enabled = False
    target.save()
    assert run_target(str(target.uuid)) is None
    uuid = str(target.uuid)
    target.delete()
    assert run_target(uuid) is None
    assert Run.objects.count() == 1


@pytest.fixture(scope="module")
def simulator():
    with SimulatedProvider() as provider:
        yield provider


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_scheduled_task_runs_a_target_through_a_real_worker_into_postgresql(personas, simulator, worker):
    target = make_target(
        personas, kind=ProviderKind.ANTHROPIC, base_url=simulator.base_url_for("anthropic"),
        model_names=["sim-fast", "sim-500"],
    )
    target.api_key = "sk-ant-sim"
    target.save()
    task = periodic_task_of(target)

    # Sent as beat sends it: the PeriodicTask's task name and kwargs.
    run_uuid = run_target.apply_async(kwargs=json.loads(task.kwargs), queue=worker).get(timeout=120)

    run = Run.objects.get(uuid=run_uuid)
    assert (run.triggered_by, run.status, run.organization, run.target) == (
        Run.Trigger.SCHEDULE, Run.Status.FINISHED, personas.org, target)
    assert run.schedule_key == target.schedule_key
    results = {r.model_name: r for r in BenchmarkResult.objects.filter(run=run)}
    assert set(results) == {"sim-fast", "sim-500"}
    assert results["sim-fast"].success and results["sim-fast"].organization == personas.org
    assert not results["sim-500"].success and results["sim-500"].status_code == 500
    assert task.task == run_target.name


@pytest.mark.django_db
def test_the_data_migration_schedules_targets_that_existed_before(personas):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("benchmarks.migrations.0004_target_periodic_tasks")
    paused = make_target(personas, name="paused", is_enabled=False, interval_minutes=45)
    PeriodicTask.objects.all().delete()  # as before the migration

    migration.create_periodic_tasks(apps, None)
    task = periodic_task_of(paused)
    assert (task.task, task.enabled, task.interval.every, task.expire_seconds) == (schedules.TASK, False, 45, 2700)
    assert json.loads(task.kwargs) == {"target_uuid": str(paused.uuid)}

    migration.remove_periodic_tasks(apps, None)
    assert not PeriodicTask.objects.filter(name__startswith="benchmarks.target:").exists()
