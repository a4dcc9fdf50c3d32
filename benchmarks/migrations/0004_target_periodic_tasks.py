"""Give every existing target its beat schedule (new and edited targets get theirs from the
post_save signal, benchmarks/signals.py). Self-contained on purpose: a migration must not depend on
app code that may change later, so this repeats the few lines of benchmarks/schedules.sync()."""

import json

from django.db import migrations
from django.utils import timezone

NAME_PREFIX = "benchmarks.target:"


def create_periodic_tasks(apps, schema_editor):
    Target = apps.get_model("benchmarks", "Target")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    created = 0
    for target in Target.objects.all().iterator():
        interval = IntervalSchedule.objects.filter(every=target.interval_minutes, period="minutes").order_by("id").first()
        if interval is None:
            interval = IntervalSchedule.objects.create(every=target.interval_minutes, period="minutes")
        PeriodicTask.objects.update_or_create(
            name=f"{NAME_PREFIX}{target.uuid}",
            defaults={
                "task": "benchmarks.tasks.run_target",
                "interval": interval, "crontab": None, "solar": None, "clocked": None,
                "kwargs": json.dumps({"target_uuid": str(target.uuid)}), "args": "[]",
                "enabled": target.is_enabled, "one_off": False,
                "expires": None, "expire_seconds": target.interval_minutes * 60,
                "description": "Managed by Pulse from the benchmark target: saving the target overwrites "
                "changes made here. Edit the target's interval to change this schedule for good.",
            },
        )
        created += 1
    if created:
        # Historical models skip PeriodicTask.save()'s own "schedule changed" bump; a running beat
        # reloads when this timestamp moves.
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_periodic_tasks(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__startswith=NAME_PREFIX).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("benchmarks", "0003_target_validation_rules"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_periodic_tasks, remove_periodic_tasks)]
