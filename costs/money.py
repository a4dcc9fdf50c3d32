"""Currencies Pulse shows money in. Kept free of model imports so `accounts` can use it for the
user's display-currency preference without an import cycle."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class Currency(models.TextChoices):
    USD = "USD", "US dollar ($)"
    GBP = "GBP", "Pound sterling (£)"
    EUR = "EUR", "Euro (€)"


SYMBOLS = {Currency.USD: "$", Currency.GBP: "£", Currency.EUR: "€"}


def decimal_string(amount: Decimal) -> str:
    """An exact decimal as a plain string: "0.0000000000", never "0E-10" as str() writes small
    amounts (the API schema promises digits and a point; parsers of "1E-8" vary)."""
    return format(amount, "f")
