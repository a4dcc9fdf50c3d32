"""Each private target's beat schedule: one django-celery-beat PeriodicTask per Target, named
`benchmarks.target:<uuid>`, running `benchmarks.tasks.run_target` every `interval_minutes`.

Which side wins: the Target. Saving a target (page form, API or admin) rewrites its PeriodicTask
from the target's fields. An operator may still edit the PeriodicTask in the admin (say, to slow a
noisy target down) and beat honours that at once, but only until the target is next saved; to
change a schedule for good, edit the target's interval.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from uuid import UUID

from django_celery_beat.models import IntervalSchedule, PeriodicTask

if TYPE_CHECKING:
    from .models import Target

TASK = "benchmarks.tasks.run_target"
NAME_PREFIX = "benchmarks.target:"
DESCRIPTION = (
    "Managed by Pulse from the benchmark target: saving the target overwrites changes made here. "
    "Edit the target's interval to change this schedule for good."
)


def task_name(target_uuid: UUID | str) -> str:
    return f"{NAME_PREFIX}{target_uuid}"


def _interval(minutes: int) -> IntervalSchedule:
    # Not get_or_create: the admin lets operators create duplicate intervals, which would make it
    # raise MultipleObjectsReturned. Any one of equal intervals will do.
    interval = IntervalSchedule.objects.filter(every=minutes, period=IntervalSchedule.MINUTES).order_by("id").first()
    return interval or IntervalSchedule.objects.create(every=minutes, period=IntervalSchedule.MINUTES)


def sync(target: Target) -> PeriodicTask:
    """Create or rewrite the target's PeriodicTask from the target."""
    task = PeriodicTask.objects.filter(name=task_name(target.uuid)).first() or PeriodicTask(name=task_name(target.uuid))
    task.task = TASK
    task.interval = _interval(target.interval_minutes)
    task.crontab = task.solar = task.clocked = None  # exactly one kind of schedule (validate_unique)
    task.kwargs = json.dumps({"target_uuid": str(target.uuid)})
    task.args = "[]"
    task.enabled = target.is_enabled
    task.one_off = False
    # A tick not picked up within one interval is dropped: by then the next one is queued, so a
    # stalled beat or a stopped worker cannot pile up a backlog of runs of the same target.
    task.expires = None
    task.expire_seconds = target.interval_minutes * 60
    task.description = DESCRIPTION
    task.save()  # PeriodicTask.save() also tells a running beat that its schedule changed
    return task


def remove(target_uuid: UUID | str) -> None:
    # A queryset delete still sends PeriodicTask's pre_delete signal per row, which is how
    # django-celery-beat tells a running beat to reload.
    PeriodicTask.objects.filter(name=task_name(target_uuid)).delete()
