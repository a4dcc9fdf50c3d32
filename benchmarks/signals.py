"""Keep each target's beat schedule in step with the target.

Signals rather than overriding Target.save()/delete(): post_delete also fires for the targets an
organization's deletion cascades to (and for queryset deletes), which an overridden delete() never
sees. A queryset `.update()` fires nothing, so code that changes a target's schedule fields saves
the instance instead (see views.target_set_enabled). Both receivers run inside the caller's
transaction: a rolled-back save leaves the schedule as it was.
"""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import schedules
from .models import Target


@receiver(post_save, sender=Target, dispatch_uid="benchmarks.target_schedule_sync")
def sync_target_schedule(sender: type[Target], instance: Target, raw: bool = False, **kwargs: object) -> None:
    if raw:  # loaddata: fixtures bring their own PeriodicTasks, if any
        return
    instance.sync_schedule()


@receiver(post_delete, sender=Target, dispatch_uid="benchmarks.target_schedule_remove")
def remove_target_schedule(sender: type[Target], instance: Target, **kwargs: object) -> None:
    schedules.remove(instance.uuid)
