"""A worker killed in the middle of re-pricing: the task is delivered again to another worker,
which finishes the job; every event is priced once and the rollups equal the raw events."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from benchmarks.models import Model, Price, Provider, ProviderKind
from costs import ingestion
from costs.models import CostEvent, CostRollup
from costs.tasks import reprice_unpriced

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

EVENTS = 6000


def test_a_reprice_interrupted_by_a_killed_worker_is_finished_by_the_next_one(personas, start_worker):
    now = timezone.now()
    for start in range(0, EVENTS, 1000):
        ingestion.ingest(personas.project, [
            {"provider": "acme-ai", "model": "later-priced", "input_tokens": 1_000_000, "output_tokens": 0,
             "timestamp": (now - timedelta(minutes=i % 600)).isoformat()}
            for i in range(start, start + 1000)
        ])
    unpriced = CostEvent.objects.dangerously_unscoped().filter(cost_usd__isnull=True)
    assert unpriced.count() == EVENTS
    provider = Provider.objects.create(name="Acme AI", kind=ProviderKind.OPENAI_COMPATIBLE,
                                       base_url="https://acme.example/v1", genai_prices_id="acme-ai")
    model = Model.objects.create(provider=provider, name="later-priced")
    Price.objects.create(model=model, input_mtok=Decimal("1"), output_mtok=Decimal("1"))

    fast_redelivery = {"CELERY_VISIBILITY_TIMEOUT": "2"}
    first = start_worker(extra_env=fast_redelivery)
    reprice_unpriced.apply_async(kwargs={"chunk": 25}, queue=first.queue)
    deadline = time.monotonic() + 60
    while unpriced.count() == EVENTS:  # wait until the first worker is part-way through
        assert time.monotonic() < deadline, "the first worker never started"
        time.sleep(0.05)
    first.kill()
    left = unpriced.count()
    assert 0 < left < EVENTS, "the worker must be killed mid-task for this test to mean anything"

    start_worker(queue=first.queue, extra_env=fast_redelivery)  # same queue: it takes the redelivery
    deadline = time.monotonic() + 90
    while unpriced.count():
        assert time.monotonic() < deadline, f"{unpriced.count()} events still unpriced after redelivery"
        time.sleep(0.2)

    events = CostEvent.objects.dangerously_unscoped().filter(project=personas.project)
    assert events.aggregate(total=Sum("cost_usd"))["total"] == Decimal(EVENTS)
    for granularity in ("h", "d"):
        rolled = CostRollup.objects.dangerously_unscoped().filter(project=personas.project, granularity=granularity, tag_key="")
        totals = rolled.aggregate(cost=Sum("cost_usd"), unpriced=Sum("unpriced_requests"), requests=Sum("requests"))
        assert totals == {"cost": Decimal(EVENTS), "unpriced": 0, "requests": EVENTS}
