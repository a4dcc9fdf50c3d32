"""A new price may price events that had none: re-price them in the background."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from benchmarks.models import Price

from . import tasks


@receiver(post_save, sender=Price, dispatch_uid="costs.reprice_on_new_price")
def reprice_on_new_price(sender: type[Price], instance: Price, created: bool, **kwargs: object) -> None:
    if created and not kwargs.get("raw"):
        transaction.on_commit(tasks.reprice_unpriced.delay)
