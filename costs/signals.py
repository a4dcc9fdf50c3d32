"""Keeping cost pricing in step with the price catalog: every change to it invalidates the
processes' memo of resolved prices, and a new price may price events that had none (re-priced
in the background)."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from benchmarks.models import Model, Price, Provider

from . import tasks
from .pricing import catalog_changed


@receiver(post_save, sender=Price, dispatch_uid="costs.catalog_changed.price.save")
@receiver(post_delete, sender=Price, dispatch_uid="costs.catalog_changed.price.delete")
@receiver(post_save, sender=Model, dispatch_uid="costs.catalog_changed.model.save")
@receiver(post_delete, sender=Model, dispatch_uid="costs.catalog_changed.model.delete")
@receiver(post_save, sender=Provider, dispatch_uid="costs.catalog_changed.provider.save")
@receiver(post_delete, sender=Provider, dispatch_uid="costs.catalog_changed.provider.delete")
def invalidate_price_memo(sender: type, **kwargs: object) -> None:
    catalog_changed()  # now, for this process's own transaction
    transaction.on_commit(catalog_changed)  # and once committed, so no process memoizes the old rows


@receiver(post_save, sender=Price, dispatch_uid="costs.reprice_on_new_price")
def reprice_on_new_price(sender: type[Price], instance: Price, created: bool, **kwargs: object) -> None:
    if created and not kwargs.get("raw"):
        transaction.on_commit(tasks.reprice_unpriced.delay)
