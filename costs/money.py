"""Currencies Pulse shows money in. Kept free of model imports so `accounts` can use it for the
user's display-currency preference without an import cycle."""

from __future__ import annotations

from django.db import models


class Currency(models.TextChoices):
    USD = "USD", "US dollar ($)"
    GBP = "GBP", "Pound sterling (£)"
    EUR = "EUR", "Euro (€)"


SYMBOLS = {Currency.USD: "$", Currency.GBP: "£", Currency.EUR: "€"}
