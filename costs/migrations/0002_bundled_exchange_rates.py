"""Bundled exchange rates, so GBP and EUR work on a fresh install without a rates provider key
(the pages show the rate's date, so an old bundled rate is visible as old)."""

from datetime import date
from decimal import Decimal

from django.db import migrations

BUNDLED = [
    ("GBP", date(2026, 11, 2), Decimal("0.7600")),
    ("EUR", date(2026, 11, 2), Decimal("0.8700")),
]


def add_rates(apps, schema_editor):
    ExchangeRate = apps.get_model("costs", "ExchangeRate")
    for currency, day, per_usd in BUNDLED:
        ExchangeRate.objects.get_or_create(
            currency=currency, date=day, defaults={"per_usd": per_usd, "source": "bundled"}
        )


class Migration(migrations.Migration):
    dependencies = [("costs", "0001_initial")]
    operations = [migrations.RunPython(add_rates, migrations.RunPython.noop)]
