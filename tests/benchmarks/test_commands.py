"""Management commands against the simulated provider: `run_benchmark` measures synchronously and
prints live progress; `sync_models` lists each provider's models (all three wire formats) and
marks new and vanished ones, skipping a provider that fails."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from benchmarks import execution
from benchmarks.models import BenchmarkResult, Model, Price, Provider, ProviderKind, Run, Target
from benchmarks.simulator import DEFAULT_PROFILES, SimulatedProvider

# Results are stored from the runner's thread, on its own database connection.
pytestmark = pytest.mark.django_db(transaction=True)

SIM_MODELS = set(DEFAULT_PROFILES)


@pytest.fixture(scope="module")
def simulator():
    with SimulatedProvider() as provider:
        yield provider


def run_command(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, no_color=True)
    return out.getvalue()


def make_provider(simulator, kind: str, name: str, key: str = "sk-sim") -> Provider:
    provider = Provider.objects.create(name=name, kind=kind, base_url=simulator.base_url_for(kind))
    provider.api_key = key
    provider.save()
    return provider


# ---------------------------------------------------------------------------------------------
# run_benchmark
# ---------------------------------------------------------------------------------------------
def test_run_benchmark_prints_a_line_per_model_and_a_progress_bar_and_stores_results(simulator):
    provider = make_provider(simulator, ProviderKind.OPENAI_COMPATIBLE, "Simulated")
    fast = Model.objects.create(provider=provider, name="sim-fast", is_active=True)
    Model.objects.create(provider=provider, name="sim-500", is_active=True)
    Model.objects.create(provider=provider, name="sim-bundled", is_active=True)
    Price.objects.create(model=fast, input_mtok=Decimal("1"), output_mtok=Decimal("2"),
                         valid_from=timezone.now() - timedelta(days=1))

    out = run_command("run_benchmark", "--public")

    assert re.search(
        r"^✓ Simulated / sim-fast  latency \d+ ms  TTFT \d+ ms  TPS [\d.]+  tokens \d+→64  \$0\.\d{6}  200$", out, re.M
    ), out
    assert re.search(r"^✓ Simulated / sim-bundled  latency .*  unpriced  200$", out, re.M), out
    assert re.search(r"^✗ Simulated / sim-500  server_error 500: .+$", out, re.M), out
    bars = re.findall(r"^\[([#.]{10})\] (\d)/3$", out, re.M)
    assert [done for _bar, done in bars] == ["1", "2", "3"] and bars[-1][0] == "##########"
    assert "Run finished: 2/3 succeeded." in out

    run = Run.objects.get()
    assert run.status == Run.Status.FINISHED and run.organization is None
    assert run.schedule_key == execution.PUBLIC_SCHEDULE
    assert BenchmarkResult.objects.filter(run=run).count() == 3


def test_run_benchmark_of_a_private_target(simulator, personas):
    target = Target.objects.create(
        organization=personas.org, name="Our gateway", kind=ProviderKind.GEMINI,
        base_url=simulator.base_url_for("gemini"), model_names=["sim-fast", "sim-401"],
    )
    target.api_key = "sim-key"
    target.save()

    out = run_command("run_benchmark", "--target", str(target.uuid))

    assert re.search(r"^✓ Our gateway / sim-fast  latency .*  unpriced  200$", out, re.M), out
    assert re.search(r"^✗ Our gateway / sim-401  auth 401: ", out, re.M), out
    assert "[##########] 2/2" in out
    results = BenchmarkResult.objects.visible_to(personas.viewer)
    assert {(r.model_name, r.success) for r in results} == {("sim-fast", True), ("sim-401", False)}
    assert Run.objects.get().schedule_key == f"target:{target.uuid}"


def test_run_benchmark_refuses_unknown_targets_overlaps_and_both_flags(db):
    with pytest.raises(CommandError, match="No target"):
        run_command("run_benchmark", "--target", "00000000-0000-0000-0000-000000000000")
    with pytest.raises(CommandError, match="not both"):
        run_command("run_benchmark", "--target", "00000000-0000-0000-0000-000000000000", "--public")
    execution.start_run(name="busy", triggered_by=Run.Trigger.SCHEDULE, schedule_key=execution.PUBLIC_SCHEDULE)
    with pytest.raises(CommandError, match="already pending or running"):
        run_command("run_benchmark")


# ---------------------------------------------------------------------------------------------
# sync_models
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [ProviderKind.OPENAI_COMPATIBLE, ProviderKind.ANTHROPIC, ProviderKind.GEMINI])
def test_sync_models_adds_new_models_inactive_and_marks_vanished_ones(simulator, kind):
    provider = make_provider(simulator, kind, f"Sim {kind}")
    long_ago = timezone.now() - timedelta(days=30)
    known = Model.objects.create(provider=provider, name="sim-fast", is_active=True, is_available=False,
                                 first_seen_at=long_ago, last_seen_at=long_ago)
    gone = Model.objects.create(provider=provider, name="sim-retired", is_active=True,
                                first_seen_at=long_ago, last_seen_at=long_ago)

    out = run_command("sync_models")

    models = {m.name: m for m in Model.objects.filter(provider=provider)}
    assert set(models) == SIM_MODELS | {"sim-retired"}
    new = SIM_MODELS - {"sim-fast"}
    assert all(not models[name].is_active and models[name].is_available for name in new)
    assert all(models[name].first_seen_at > long_ago for name in new)
    known.refresh_from_db()
    assert known.is_available and known.is_active and known.last_seen_at > long_ago and known.first_seen_at == long_ago
    gone.refresh_from_db()
    assert not gone.is_available and gone.last_seen_at == long_ago
    assert f"Sim {kind}: {len(SIM_MODELS)} listed, {len(new)} new, 1 vanished" in out
    assert "vanished: sim-retired" in out and "new: sim-medium" in out

    again = run_command("sync_models")  # nothing changes the second time
    assert f"{len(SIM_MODELS)} listed, 0 new, 0 vanished" in again


def test_a_failing_provider_is_reported_and_skipped(simulator):
    good = make_provider(simulator, ProviderKind.OPENAI_COMPATIBLE, "Good")
    bad_key = make_provider(simulator, ProviderKind.ANTHROPIC, "Bad key", key="bad-key")
    Model.objects.create(provider=bad_key, name="sim-fast")
    down = Provider.objects.create(name="Down", kind=ProviderKind.GEMINI, base_url="http://127.0.0.1:9")
    Provider.objects.create(name="Inactive", kind=ProviderKind.GEMINI, base_url="http://127.0.0.1:9", is_active=False)

    out = run_command("sync_models")

    assert "✗ Bad key: skipped (HTTP 401" in out
    assert "✗ Down: skipped (" in out
    assert "Inactive" not in out
    assert "3 providers: " in out and "2 failed" in out
    assert Model.objects.filter(provider=good).count() == len(SIM_MODELS)
    assert Model.objects.get(provider=bad_key).is_available  # a failure never marks models vanished
    assert not Model.objects.filter(provider=down).exists()
