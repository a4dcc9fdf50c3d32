"""Recommendations come with their numbers, and the numbers add up."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from benchmarks.models import Model, Price, Provider, ProviderKind
from costs import ingestion
from costs.recommendations import recommend

pytestmark = pytest.mark.django_db


def send(project, n: int, **event) -> None:
    now = timezone.now()
    items = [{**event, "timestamp": (now - timedelta(hours=i * 3)).isoformat()} for i in range(n)]
    ingestion.ingest(project, items)


def test_heavy_uncached_input_on_gpt_4o_gets_cheaper_models_caching_and_concentration(personas):
    send(personas.project, 200, provider="openai", model="gpt-4o", input_tokens=6000, output_tokens=300)
    recs = recommend(personas.project, share=Decimal("0.5"))
    kinds = {r.kind for r in recs}
    assert {"prompt_caching", "concentration"} <= kinds

    caching = next(r for r in recs if r.kind == "prompt_caching")
    # 200 requests over the window scaled to 30 days; half of 6000 input tokens cached.
    assert caching.monthly_saving_usd > 0 and caching.assumptions

    cheaper = [r for r in recs if r.kind == "cheaper_model"]
    assert cheaper, "gpt-4o has cheaper models in its price band"
    for rec in cheaper:
        current = Decimal(rec.numbers["current_cost_per_request_usd"])
        candidate = Decimal(rec.numbers["candidate_cost_per_request_usd"])
        assert candidate <= current * Decimal("0.9")
        expected = (current - candidate) * rec.numbers["monthly_requests"] * Decimal("0.5")
        assert abs(rec.monthly_saving_usd - expected) <= max(Decimal("0.05"), expected * Decimal("0.001"))
        assert rec.numbers["candidate_model"] != "gpt-4o"
    savings = [r.monthly_saving_usd or 0 for r in recs]
    assert savings == sorted(savings, reverse=True)

    concentration = next(r for r in recs if r.kind == "concentration")
    assert concentration.numbers["share"] == "1.000"


def test_a_recent_price_rise_is_flagged_with_its_monthly_cost(personas):
    provider = Provider.objects.create(name="Acme AI", kind=ProviderKind.OPENAI_COMPATIBLE,
                                       base_url="https://acme.example/v1", genai_prices_id="acme-ai")
    model = Model.objects.create(provider=provider, name="acme-large")
    now = timezone.now()
    Price.objects.create(model=model, input_mtok=Decimal("1"), output_mtok=Decimal("2"), valid_from=now - timedelta(days=400))
    Price.objects.create(model=model, input_mtok=Decimal("2"), output_mtok=Decimal("4"), valid_from=now - timedelta(days=5))
    send(personas.project, 10, provider="acme-ai", model="acme-large", input_tokens=1000, output_tokens=1000)
    rise = next(r for r in recommend(personas.project) if r.kind == "price_rise")
    assert rise.model == "acme-large" and Decimal(rise.numbers["monthly_extra_usd"]) > 0


def test_no_traffic_no_recommendations(personas):
    assert recommend(personas.project) == []


REC_URL = "/api/v1/costs/recommendations"


def test_the_api_lists_recommendations_for_a_visible_project_only(personas, api_as, token_client):
    send(personas.project, 50, provider="openai", model="gpt-4o", input_tokens=6000, output_tokens=300)
    url = f"{REC_URL}?project={personas.project.uuid}"
    viewer = api_as("viewer").get(url)
    assert viewer.status_code == 200
    first = viewer.json()["results"][0]
    assert first["assumptions"] and first["title"] and "numbers" in first
    assert api_as("outsider").get(url).status_code == 404
    reader, _ = token_client(["read"])
    assert reader.get(REC_URL).status_code == 200  # a project token needs no ?project=
    ingest_only, _ = token_client(["ingest"])
    assert ingest_only.get(REC_URL).status_code == 403
    assert api_as("viewer").get(REC_URL).status_code == 400
    assert "share" in api_as("viewer").get(f"{url}&share=2").json()
    assert "share" in api_as("viewer").get(f"{url}&share=abc").json()
