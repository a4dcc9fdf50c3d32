"""`pulse benchmarks` (the leaderboard of stored results) and `pulse benchmarks run TARGET`: a
private target on the simulated provider, run by a real Celery worker, followed until it ends
with each result printed as it lands; a run already going (409) is followed instead; a failed
run exits non-zero."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from benchmarks import tasks
from benchmarks.models import BenchmarkResult, ProviderKind, Run, Target
from benchmarks.simulator import SimulatedProvider

from .conftest import one_line_error

MODELS = ["sim-401", "sim-fast", "sim-medium"]


@pytest.fixture(scope="module")
def simulator():
    with SimulatedProvider() as provider:
        yield provider


@pytest.fixture
def target(pulse, simulator) -> Target:
    target = Target.objects.create(
        organization=pulse.personas.org, name="Our gateway", kind=ProviderKind.OPENAI_COMPATIBLE,
        base_url=simulator.base_url_for(ProviderKind.OPENAI_COMPATIBLE), model_names=MODELS,
    )
    target.api_key = "sk-sim"
    target.save()
    return target


@pytest.fixture
def writer(pulse) -> str:
    _token, raw = pulse.issue_token(["read", "write"])
    return raw


def result(run: Run, model: str, *, ttft: float, tps: float, latency: float, success: bool = True, minutes: int = 5) -> None:
    BenchmarkResult.objects.create(
        run=run, organization=run.organization, target=run.target, provider_name="Our gateway", model_name=model,
        ttft_ms=ttft, tps=tps, total_latency_ms=latency, success=success, status_code=200 if success else 500,
        error_kind="" if success else "server_error", created_at=timezone.now() - timedelta(minutes=minutes),
    )


def test_the_leaderboard_is_a_table_fastest_first(cli, target):
    run = Run.objects.create(name="earlier", triggered_by=Run.Trigger.API, organization=target.organization,
                             target=target, status=Run.Status.FINISHED)
    result(run, "sim-medium", ttft=200, tps=60, latency=2100)
    result(run, "sim-medium", ttft=220, tps=64, latency=2200)
    result(run, "sim-fast", ttft=50, tps=190, latency=380)
    result(run, "sim-fast", ttft=70, tps=210, latency=420, success=False)
    result(run, "sim-slow", ttft=600, tps=25, latency=4400, minutes=60 * 48)  # not in the last 24h

    output = cli("benchmarks")

    assert output.exit_code == 0, output.stderr
    assert output.stdout.splitlines() == [
        "Your targets' benchmarks, last 24h",
        "#  Provider     Model       Samples  TTFT p50  tok/s p50  Latency p50  Errors  $/Mtok",
        "─  ───────────  ──────────  ───────  ────────  ─────────  ───────────  ──────  ──────",
        "1  Our gateway  sim-fast          2     50 ms      190.0       380 ms   50.0%       –",
        "2  Our gateway  sim-medium        2    210 ms       62.0     2,150 ms    0.0%       –",
    ]
    week = cli("benchmarks", "--range", "7d")
    assert "sim-slow" in week.stdout
    assert "No results in this window." in cli("benchmarks", "--public").stdout


@pytest.mark.worker
def test_run_starts_a_run_and_prints_each_result_as_it_lands(cli, pulse, target, writer, worker, monkeypatch):
    # The live server runs in this process: its "run now" is queued to our own worker's queue.
    monkeypatch.setattr(tasks.execute_run, "delay", lambda run_uuid: tasks.execute_run.apply_async((run_uuid,), queue=worker))

    output = cli("benchmarks", "run", "our gateway", "--interval", "0.2", "--timeout", "120", key=writer)

    assert output.exit_code == 0, (output.stdout, output.stderr)
    run = Run.objects.get()
    assert run.status == Run.Status.FINISHED and run.target == target
    assert output.stderr.startswith(f"Run {run.uuid}: Our gateway, 3 models.")
    lines = output.stdout.splitlines()
    assert len(lines) == 4 and lines[-1] == "Run finished: 2/3 succeeded."
    by_model = {line.split(" / ")[1].split()[0]: line for line in lines[:3]}
    assert by_model["sim-401"].startswith("✗ Our gateway / sim-401  auth 401: ")
    for model in ("sim-fast", "sim-medium"):
        assert by_model[model].startswith(f"✓ Our gateway / {model}  TTFT ")
        assert by_model[model].endswith("tokens  unpriced  200")
    # Printed as they landed: the slow model's result came last.
    stored = list(BenchmarkResult.objects.filter(run=run).order_by("created_at", "id").values_list("model_name", flat=True))
    assert lines[2].split(" / ")[1].startswith("sim-medium") and stored[-1] == "sim-medium"


def end_later(run: Run, status: str, delay: float = 1.0) -> threading.Thread:
    def finish() -> None:
        time.sleep(delay)
        Run.objects.filter(pk=run.pk).update(status=status, finished_at=timezone.now())

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_a_run_already_going_is_followed_instead(cli, target, writer):
    going = Run.objects.create(name="scheduled", triggered_by=Run.Trigger.SCHEDULE, organization=target.organization,
                               target=target, status=Run.Status.RUNNING, schedule_key=target.schedule_key)
    result(going, "sim-fast", ttft=50, tps=200, latency=400, minutes=0)
    thread = end_later(going, Run.Status.FINISHED)

    output = cli("benchmarks", "run", str(target.uuid), "--interval", "0.1", key=writer)
    thread.join()

    assert output.exit_code == 0, output.stderr
    assert Run.objects.count() == 1  # no second run
    assert output.stderr.splitlines()[:2] == [
        f"A run of Our gateway is already pending or running ({going.uuid}).", "Following that run instead.",
    ]
    assert output.stdout.splitlines()[-1] == "Run finished: 1/1 succeeded."


def test_a_failed_run_exits_non_zero(cli, target, writer):
    going = Run.objects.create(name="scheduled", triggered_by=Run.Trigger.SCHEDULE, organization=target.organization,
                               target=target, status=Run.Status.RUNNING, schedule_key=target.schedule_key)
    thread = end_later(going, Run.Status.FAILED, delay=0.3)

    output = cli("benchmarks", "run", "Our gateway", "--interval", "0.1", key=writer)
    thread.join()

    assert output.exit_code == 1
    assert output.stdout.splitlines()[-1] == "Run failed: 0/0 succeeded."
    assert output.stderr.splitlines()[-1] == f"Error: The run failed on the server ({going.uuid})."


def test_an_unknown_target_names_the_known_ones(cli, target, writer):
    line = one_line_error(cli("benchmarks", "run", "Nope", key=writer))
    assert line == "Error: No benchmark target named 'Nope'. Your targets: Our gateway."
    line = one_line_error(cli("benchmarks", "run", str(uuid.uuid4()), key=writer))
    assert line.startswith("Error: Not found: ")


def test_starting_a_run_needs_the_write_scope(cli, target):
    line = one_line_error(cli("benchmarks", "run", "Our gateway"))
    assert line == "Error: Not allowed: This API token lacks the 'write' scope."
    assert not Run.objects.exists()
