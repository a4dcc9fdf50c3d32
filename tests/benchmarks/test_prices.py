"""Prices come from genai-prices' bundled data as an append-only history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from benchmarks.models import Model, Price, Provider, ProviderKind
from benchmarks.prices import ALWAYS, sync_prices

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(db) -> dict[str, Model]:
    openai = Provider.objects.create(name="OpenAI", kind=ProviderKind.OPENAI_COMPATIBLE,
                                     base_url="https://api.openai.com/v1", genai_prices_id="openai")
    anthropic = Provider.objects.create(name="Anthropic", kind=ProviderKind.ANTHROPIC,
                                        base_url="https://api.anthropic.com", genai_prices_id="anthropic")
    return {
        "gpt-4o": Model.objects.create(provider=openai, name="gpt-4o"),
        "sonnet": Model.objects.create(provider=anthropic, name="claude-sonnet-4-6"),
        "mystery": Model.objects.create(provider=openai, name="gpt-does-not-exist"),
    }


def test_bundled_prices_are_stored_with_their_periods(catalog):
    report = sync_prices()

    gpt = Price.objects.get(model=catalog["gpt-4o"])
    assert (gpt.input_mtok, gpt.output_mtok, gpt.cache_read_mtok) == (Decimal("2.5"), Decimal("10"), Decimal("1.25"))
    assert gpt.valid_from == ALWAYS and gpt.source == Price.Source.GENAI_PRICES
    # Sonnet 4.6 has a base period and a second one from 2026-03-13 (tiered: the base tier is kept).
    sonnet = list(Price.objects.filter(model=catalog["sonnet"]).order_by("valid_from"))
    assert [p.valid_from for p in sonnet] == [ALWAYS, datetime(2026, 3, 13, tzinfo=UTC)]
    assert sonnet[-1].input_mtok == Decimal("3") and sonnet[-1].cache_write_mtok == Decimal("3.75")
    assert report.unpriced == ["OpenAI / gpt-does-not-exist"]


def test_syncing_again_changes_nothing(catalog):
    first = sync_prices()
    second = sync_prices()
    assert first.created > 0 and second.created == 0
    assert Price.objects.count() == first.created


def test_a_changed_bundled_price_starts_a_new_row_and_keeps_history(catalog):
    sync_prices()
    stored = Price.objects.get(model=catalog["gpt-4o"])
    Price.objects.filter(pk=stored.pk).update(input_mtok=Decimal("5"))  # as if the data had said 5 before

    before = timezone.now()
    report = sync_prices()

    rows = list(Price.objects.filter(model=catalog["gpt-4o"]).order_by("valid_from"))
    assert [row.input_mtok for row in rows] == [Decimal("5"), Decimal("2.5")]
    assert rows[-1].valid_from >= before and report.created == 1
    assert catalog["gpt-4o"].price_at(before - timedelta(seconds=1)).input_mtok == Decimal("5")
    assert sync_prices().created == 0


def test_operator_overrides_are_left_alone(catalog):
    override = Price.objects.create(model=catalog["gpt-4o"], input_mtok=1, output_mtok=2, source=Price.Source.ADMIN,
                                    valid_from=timezone.now() - timedelta(days=1))
    sync_prices()
    override.refresh_from_db()
    assert override.input_mtok == 1
    assert catalog["gpt-4o"].price_at(timezone.now()) == override


def test_the_command_reports_unpriced_models(catalog, capsys):
    call_command("sync_prices")
    out = capsys.readouterr().out
    assert "price(s) added" in out and "unpriced: OpenAI / gpt-does-not-exist" in out
