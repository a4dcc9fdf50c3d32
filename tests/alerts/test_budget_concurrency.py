"""Exactly once under concurrency, against PostgreSQL: many threads evaluating one budget, events
arriving from several threads each followed by an evaluation, deliveries attempted at once, and
two real Celery worker processes racing on the same tasks."""

from __future__ import annotations

import os
import select
import threading
import time
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection

from accounts.models import Project
from alerts import tasks
from alerts.budgets import evaluate_budget
from alerts.models import Alert, Budget, Delivery
from alerts.notify import send_delivery
from costs.ingestion import ingest
from costs.models import CostEvent

from .conftest import drop_default_queue_messages_from, make_budget, spend

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8


def in_threads(work, count: int = THREADS) -> list:
    """Run `work(i)` in `count` threads released at once; returns results, raises the first error."""
    barrier, results, errors = threading.Barrier(count), [None] * count, []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def fresh(budget: Budget) -> Budget:
    return Budget.objects.select_related("organization", "project", "api_token").get(pk=budget.pk)


def test_threads_evaluating_one_budget_raise_each_alert_and_send_each_email_once(personas, queued):
    budget = make_budget(personas, members=[personas.owner, personas.member], extra_emails=["finance@a.example"])
    spend(personas.project, "8.50")
    raised = in_threads(lambda i: evaluate_budget(fresh(budget)))
    assert sorted(a.threshold for alerts in raised for a in alerts) == [50, 80]
    assert sum(1 for alerts in raised if alerts) == 1  # one evaluator won both claims
    assert sorted(Alert.objects.filter(budget=budget).values_list("threshold", flat=True)) == [50, 80]
    deliveries = list(Delivery.objects.filter(alert__budget=budget).order_by("address"))
    assert [(d.alert.threshold, d.address) for d in deliveries] == [
        (80, "finance@a.example"), (80, "member@a.example"), (80, "owner@a.example"),
    ]
    assert sorted(queued.of("deliver")) == sorted((d.id,) for d in deliveries)  # each queued once

    # Every delivery attempted by eight threads at once (a retry racing the original): sent once.
    for delivery in deliveries:
        outcomes = in_threads(lambda i, d=delivery: send_delivery(d.id))
        assert sum(1 for o in outcomes if o is not None) == 1
    assert sorted(m.to[0] for m in mail.outbox) == ["finance@a.example", "member@a.example", "owner@a.example"]
    assert set(Delivery.objects.filter(alert__budget=budget).values_list("status", "attempts")) == {("sent", 1)}


def test_events_from_several_threads_each_followed_by_an_evaluation_alert_each_threshold_once(personas, queued):
    budget = make_budget(personas, project=personas.project, thresholds=[25, 50, 80, 100], members=[personas.owner],
                         forecast_alerts=False)

    def ingest_and_evaluate(i: int) -> int:
        raised = 0
        for n in range(3):
            result = ingest(personas.project, [{"provider": "openai", "model": "gpt-test", "cost_usd": "0.5",
                                                "idempotency_key": f"t{i}-{n}"}])
            assert result.inserted == 1
            raised += len(evaluate_budget(fresh(budget)))
        return raised

    raised = in_threads(ingest_and_evaluate)
    assert CostEvent.objects.filter(project=personas.project).count() == 3 * THREADS  # $12 of $10
    assert sum(raised) == 4
    thresholds = list(Alert.objects.filter(budget=budget).values_list("threshold", flat=True))
    assert sorted(thresholds) == [25, 50, 80, 100]
    assert evaluate_budget(fresh(budget)) == []
    # The owner heard about each step once: never two emails for one threshold.
    per_alert = Delivery.objects.filter(alert__budget=budget).values_list("alert__threshold", flat=True)
    assert len(per_alert) == len(set(per_alert)) >= 1
    assert 100 in per_alert  # the last step is always sent (nothing supersedes it)


# ----------------------------------------------------------------------------- real workers


def wait_until_ready(worker, timeout: float = 60) -> None:
    """Read the worker's log until it says it is ready (consuming its queue). Raw reads of the
    pipe (select and a buffered readline disagree about what is left to read)."""
    deadline, log = time.monotonic() + timeout, b""
    fd = worker.process.stdout.fileno()
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, "the worker exited:\n" + log.decode(errors="replace")[-3000:]
            log += chunk
            if b" ready." in log:
                return
    raise AssertionError("the worker never became ready:\n" + log.decode(errors="replace")[-3000:])


@pytest.mark.worker
def test_two_worker_processes_racing_on_the_same_evaluations_alert_and_deliver_once(personas, start_worker, monkeypatch):
    # The budget's own re-evaluation (queued on save) would go to the default queue: not ours.
    monkeypatch.setattr(tasks.reevaluate_budget, "delay", lambda *args: None)
    spend(personas.project, "8.50")
    budget = make_budget(personas, project=personas.project, members=[personas.owner, personas.member],
                         extra_emails=["finance@a.example"], amount=Decimal("10"))
    env = {"EMAIL_URL": "memorymail://"}  # each worker sends into its own locmem outbox
    first = start_worker(extra_env=env)
    second = start_worker(queue=first.queue, extra_env=env)
    try:
        wait_until_ready(first)
        wait_until_ready(second)
        queue = first.queue
        sent = [tasks.evaluate_project_budgets.apply_async((personas.project.id,), queue=queue, ignore_result=False)
                for _ in range(10)]
        sent += [tasks.reevaluate_budget.apply_async((budget.id,), queue=queue, ignore_result=False) for _ in range(10)]
        assert sum(result.get(timeout=120) for result in sent) == 2  # the 50 % and 80 % alerts, once

        assert sorted(Alert.objects.filter(budget=budget).values_list("threshold", flat=True)) == [50, 80]
        deliveries = list(Delivery.objects.filter(alert__budget=budget).order_by("address"))
        assert [(d.alert.threshold, d.address, d.status) for d in deliveries] == [
            (80, "finance@a.example", "pending"), (80, "member@a.example", "pending"), (80, "owner@a.example", "pending"),
        ]
        # The workers queued each delivery on the default queue, which no test worker reads; send
        # each to ours twice over (a retry racing the original), for both workers to take.
        sends = [tasks.deliver.apply_async((d.id,), queue=queue, ignore_result=False) for d in deliveries for _ in range(2)]
        outcomes = [result.get(timeout=120) for result in sends]
        assert sorted(o for o in outcomes if o) == ["sent"] * 3
        assert set(Delivery.objects.filter(alert__budget=budget).values_list("status", "attempts")) == {("sent", 1)}
        assert Alert.objects.count() == 2
    finally:
        drop_default_queue_messages_from([first.process.pid, second.process.pid])


@pytest.mark.worker
def test_two_workers_evaluating_two_projects_of_one_organization_budget_alert_once(personas, start_worker, monkeypatch):
    """Both projects' evaluations cover the organization's budget: one alert, one delivery, sent
    by a worker (into the locmem outbox of its own process)."""
    monkeypatch.setattr(tasks.reevaluate_budget, "delay", lambda *args: None)
    staging = Project.objects.create(organization=personas.org, name="Staging")
    spend(personas.project, "3")
    spend(staging, "3")  # together 60 % of the organization's $10
    budget = make_budget(personas, members=[personas.owner])
    env = {"EMAIL_URL": "memorymail://"}
    first = start_worker(extra_env=env)
    second = start_worker(queue=first.queue, extra_env=env)
    try:
        wait_until_ready(first)
        wait_until_ready(second)
        results = [tasks.evaluate_project_budgets.apply_async((project.id,), queue=first.queue, ignore_result=False)
                   for project in (personas.project, staging) for _ in range(5)]
        assert sum(r.get(timeout=120) for r in results) == 1
        (alert,) = Alert.objects.filter(budget=budget)
        (delivery,) = alert.deliveries.all()
        assert tasks.deliver.apply_async((delivery.id,), queue=first.queue, ignore_result=False).get(timeout=120) == "sent"
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, alert.threshold) == ("sent", 1, 50)
    finally:
        drop_default_queue_messages_from([first.process.pid, second.process.pid])
