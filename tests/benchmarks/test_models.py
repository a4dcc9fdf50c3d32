"""The benchmarks data model: price history and cost, unpriced results, encrypted credentials,
what survives deletions, and tenant scoping of private targets and runs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from benchmarks.models import BenchmarkResult, Model, Price, Provider, ProviderKind, Run, Target
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def gpt(db) -> Model:
    provider = Provider.objects.create(name="OpenAI", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://api.openai.com/v1")
    return Model.objects.create(provider=provider, name="gpt-4o")


def price(model: Model, input_mtok: str, output_mtok: str, *, days_ago: int, source=Price.Source.GENAI_PRICES, cache_read=None) -> Price:
    return Price.objects.create(
        model=model, input_mtok=Decimal(input_mtok), output_mtok=Decimal(output_mtok),
        cache_read_mtok=Decimal(cache_read) if cache_read else None,
        valid_from=timezone.now() - timedelta(days=days_ago), source=source,
    )


def test_cached_input_is_charged_at_the_cache_read_price_instead_of_on_top(gpt):
    p = price(gpt, "2.5", "10", cache_read="1.25", days_ago=1)
    # 1,000 prompt tokens of which 400 cached, 500 output tokens:
    # 600 x 2.5 + 400 x 1.25 + 500 x 10 = 1,500 + 500 + 5,000 = 7,000 per million -> $0.007
    assert p.cost(input_tokens=1000, cached_tokens=400, output_tokens=500) == Decimal("0.007")


def test_a_result_is_priced_with_the_price_valid_at_its_own_time(gpt):
    old = price(gpt, "5", "15", days_ago=30)
    new = price(gpt, "2.5", "10", days_ago=10)
    assert Price.objects.valid_at(gpt, timezone.now() - timedelta(days=20)) == old
    assert Price.objects.valid_at(gpt, timezone.now()) == new
    assert Price.objects.valid_at(gpt, timezone.now() - timedelta(days=40)) is None


def test_an_operator_override_beats_the_bundled_price(gpt):
    price(gpt, "2.5", "10", days_ago=1)
    override = price(gpt, "2", "8", days_ago=5, source=Price.Source.ADMIN)
    assert gpt.price_at(timezone.now()) == override


def test_no_price_means_unknown_cost_never_zero(gpt):
    run = Run.objects.create(name="r", triggered_by=Run.Trigger.MANUAL)
    result = BenchmarkResult(run=run, model=gpt, provider_name="OpenAI", model_name="gpt-4o", success=True,
                             input_tokens=10, output_tokens=20)
    result.price(gpt.price_at(result.created_at))
    assert (result.cost_usd, result.is_priced) == (None, False)

    result.price(price(gpt, "1", "2", days_ago=1))
    assert result.is_priced and result.cost_usd == Decimal("0.00005")


def test_deleting_a_provider_keeps_results_and_deleting_a_run_removes_them(gpt):
    run = Run.objects.create(name="r", triggered_by=Run.Trigger.SCHEDULE)
    result = BenchmarkResult.objects.create(run=run, model=gpt, provider=gpt.provider, provider_name="OpenAI", model_name="gpt-4o")
    gpt.provider.delete()
    result.refresh_from_db()
    assert (result.model, result.provider, result.model_name) == (None, None, "gpt-4o")
    run.delete()
    assert not BenchmarkResult.objects.filter(pk=result.pk).exists()


def test_api_keys_are_encrypted_at_rest_and_never_shown(gpt):
    provider = gpt.provider
    provider.api_key = "sk-live-secret-123"
    provider.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM benchmarks_provider WHERE id = %s", [provider.pk])
        stored = cursor.fetchone()[0]
    assert "sk-live-secret-123" not in stored
    provider.refresh_from_db()
    assert provider.api_key_value() == "sk-live-secret-123"
    assert "sk-live" not in repr(provider.api_key)


def test_the_environment_variable_is_the_fallback_key(gpt, monkeypatch):
    gpt.provider.api_key_env = "PULSE_TEST_OPENAI_KEY"
    monkeypatch.setenv("PULSE_TEST_OPENAI_KEY", "sk-from-env")
    assert gpt.provider.api_key_value() == "sk-from-env"


def test_private_targets_and_runs_are_visible_only_inside_their_organization(personas):
    target = Target.objects.create(organization=personas.org, name="our vLLM", kind=ProviderKind.OPENAI_COMPATIBLE,
                                   base_url="http://vllm.internal/v1", model_names=["llama"])
    private_run = Run.objects.create(name="private", organization=personas.org, target=target, triggered_by=Run.Trigger.MANUAL)
    public_run = Run.objects.create(name="public", triggered_by=Run.Trigger.SCHEDULE)

    assert list(Target.objects.visible_to(personas.viewer)) == [target]
    assert not Target.objects.visible_to(personas.outsider).exists()
    assert list(Run.objects.visible_to(personas.owner)) == [private_run]
    assert list(Run.objects.public()) == [public_run]


def test_the_admin_takes_a_new_key_write_only(client, gpt):
    client.force_login(make_user("ops@pulse.example", is_staff=True, is_superuser=True))
    url = reverse("admin:benchmarks_provider_change", args=[gpt.provider.pk])
    form = {"name": "OpenAI", "kind": "openai_compatible", "base_url": "https://api.openai.com/v1",
            "api_key_env": "", "genai_prices_id": "openai", "is_active": "on", "new_api_key": "sk-admin-typed",
            "models-TOTAL_FORMS": "0", "models-INITIAL_FORMS": "0"}
    assert client.post(url, form).status_code == 302
    gpt.provider.refresh_from_db()
    assert gpt.provider.api_key_value() == "sk-admin-typed"
    page = client.get(url).content.decode()
    assert "sk-admin-typed" not in page and str(gpt.provider.api_key) not in page
