"""A real Celery round trip: a worker process on the Redis broker runs a task whose effect we
then see in PostgreSQL. No eager mode, no mocks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Invitation
from accounts.tasks import expire_invitations

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

def test_worker_runs_task_and_its_effect_lands_in_postgresql(personas, worker):
    long_expired = Invitation.issue(personas.org, "old@x.example", 20, by=personas.owner)[0]
    Invitation.objects.filter(pk=long_expired.pk).update(expires_at=timezone.now() - timedelta(days=31))
    recent = Invitation.issue(personas.org, "new@x.example", 20, by=personas.owner)[0]

    result = expire_invitations.apply_async(queue=worker)
    deleted = result.get(timeout=90)  # waits on the Redis result backend, not a sleep

    assert deleted == 1
    assert not Invitation.objects.filter(pk=long_expired.pk).exists()
    assert Invitation.objects.filter(pk=recent.pk).exists()
