"""Helpers for the alerts tests: spend through the real ingestion path, budgets, recorded task
queueing (for tests whose `on_commit` callbacks run for real and must not leave messages for
nobody on the shared Redis broker's default queue)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts import tasks
from alerts.models import Budget
from costs.ingestion import ingest


def spend(project, amount: str | Decimal, at: datetime | None = None, *, token=None, model: str = "gpt-test",
          tags: dict | None = None, provider: str = "openai") -> None:
    """One event costing `amount` USD (client-sent cost), stored through `ingest()`."""
    item = {"provider": provider, "model": model, "input_tokens": 10, "output_tokens": 10,
            "cost_usd": str(amount), "timestamp": (at or timezone.now()).isoformat()}
    if tags:
        item["tags"] = tags
    result = ingest(project, [item], token=token)
    assert result.inserted == 1, result.errors


def make_budget(personas, *, members=(), **fields) -> Budget:
    fields.setdefault("name", "Prod")
    fields.setdefault("amount", Decimal("10"))
    fields.setdefault("organization", personas.org)
    budget = Budget.objects.create(**fields)
    if members:
        budget.notify_members.add(*members)
    return Budget.objects.select_related("organization", "project", "api_token").get(pk=budget.pk)


def past_november_year(now: datetime | None = None) -> int:
    """The latest year whose November and December 1-3 are already past (ingestion rejects
    future events). Until then, the year before: its November 1 is then under 400 days old
    (ingestion's MAX_AGE), leap years included."""
    now = now or timezone.now()
    return now.year if now >= datetime(now.year, 12, 4, tzinfo=UTC) else now.year - 1


@dataclass
class Queued:
    """Task calls recorded instead of being sent to the broker."""

    calls: list[tuple[str, tuple]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str):
        def _record(*args, **kwargs):
            with self.lock:
                self.calls.append((name, args[0] if args and isinstance(args[0], tuple) else args))

        return _record

    def of(self, name: str) -> list[tuple]:
        return [args for called, args in self.calls if called == name]


@pytest.fixture
def queued(monkeypatch) -> Queued:
    recorded = Queued()
    monkeypatch.setattr(tasks.deliver, "delay", recorded.record("deliver"))
    monkeypatch.setattr(tasks.reevaluate_budget, "delay", recorded.record("reevaluate_budget"))
    monkeypatch.setattr(tasks.evaluate_rules, "delay", recorded.record("evaluate_rules"))
    monkeypatch.setattr(tasks.evaluate_project_budgets, "apply_async", recorded.record("evaluate_project_budgets"))
    return recorded


def drop_default_queue_messages_from(pids: list[int]) -> None:
    """Worker processes queue follow-up tasks (deliveries) on the default queue, which no test
    worker consumes; remove the ones our workers produced so they do not pile up in Redis."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    origins = {f"gen{pid}@" for pid in pids}
    for raw in client.lrange("celery", 0, -1):
        try:
            origin = json.loads(raw)["headers"].get("origin") or ""
        except (ValueError, KeyError):
            continue
        if any(origin.startswith(o) for o in origins):
            client.lrem("celery", 1, raw)


HOUR = timedelta(hours=1)


def make_target(personas, name: str = "Our gateway", model_names=("our-model",)):
    from benchmarks.models import ProviderKind, Target

    return Target.objects.create(organization=personas.org, name=name, kind=ProviderKind.OPENAI_COMPATIBLE,
                                 base_url="https://llm.a.example/v1", model_names=list(model_names))


def add_results(*, target=None, catalog_model=None, count: int = 1, ttft_ms: float = 100.0, tps: float = 50.0,
                latency_ms: float = 1000.0, success: bool = True, at: datetime | None = None, model_name: str = ""):
    """`count` benchmark results of one new finished run: a private target's, or public ones of a
    catalog model (organization NULL). Saved with `bulk_create`: no run signal."""
    from benchmarks.models import BenchmarkResult, Run

    at = at or timezone.now()
    organization = target.organization if target else None
    run = Run.objects.create(organization=organization, target=target, name="run",
                             triggered_by=Run.Trigger.SCHEDULE, status=Run.Status.RUNNING)
    BenchmarkResult.objects.bulk_create([
        BenchmarkResult(
            run=run, organization=organization, target=target,
            model=catalog_model, provider=catalog_model.provider if catalog_model else None,
            provider_name=catalog_model.provider.name if catalog_model else "own",
            model_name=model_name or (catalog_model.name if catalog_model else target.model_names[0]),
            ttft_ms=ttft_ms if success else None, tps=tps if success else None,
            total_latency_ms=latency_ms if success else None, success=success,
            status_code=200 if success else 500, created_at=at + timedelta(milliseconds=i),
        )
        for i in range(count)
    ])
    return run
