"""`manage.py seed_costs_demo`: demo calls in the demo project, through ingestion (priced,
rolled up), with an unpriced model, failures, cached tokens and tags; once unless --force."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from accounts.models import ApiToken, Project
from costs.models import CostEvent, CostRollup

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_costs_demo", *args, stdout=out)
    return out.getvalue()


def test_it_needs_the_demo_project():
    with pytest.raises(CommandError, match="seed_demo"):
        seed("--events", "10")


def test_it_seeds_realistic_calls_once(settings):
    call_command("seed_demo", stdout=StringIO())
    project = Project.objects.get(organization__name="Demo Inc.", name="Production")

    assert "Added 600 demo LLM calls" in seed("--events", "600", "--days", "14")

    events = CostEvent.objects.dangerously_unscoped().filter(project=project)
    assert events.count() == 600
    assert events.values("model").distinct().count() >= 8
    assert events.filter(model="acme-finetune-v2", cost_usd__isnull=True).exists()  # the unpriced one
    assert events.filter(model="gpt-4o-mini", cost_usd__gt=0).exists()  # genai-prices priced it
    assert events.filter(success=False, status_code__in=[429, 500]).exists()
    assert events.filter(cached_tokens__gt=0).exists()
    assert set(events.values_list("tags__feature", flat=True)) >= {"chat", "support-bot"}
    names = set(ApiToken.objects.filter(project=project, prefix__in=events.values("token_prefix")).values_list("name", flat=True))
    assert names == {"Backend (production)", "Batch jobs", "Support bot"}
    rollups = CostRollup.objects.dangerously_unscoped().filter(project=project, granularity="d", tag_key="")
    assert rollups.aggregate(n=Sum("requests"))["n"] == 600  # through ingest(): rolled up

    assert "skipping" in seed("--events", "600")
    assert events.count() == 600
    seed("--events", "50", "--force")
    assert events.count() == 650
    assert ApiToken.objects.filter(project=project, name="Batch jobs").count() == 1  # tokens reused
