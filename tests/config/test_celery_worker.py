"""A real Celery round trip: a worker process on the Redis broker runs a task whose effect we
then see in PostgreSQL. No eager mode, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Invitation
from accounts.tasks import expire_invitations

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def database_url_of_test_database() -> str:
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(settings):
    """A worker listening on a queue of its own, so no other worker can take our task."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PULSE_ENV": "test",
        "DATABASE_URL": database_url_of_test_database(),
        "REDIS_URL": settings.REDIS_URL,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--queues", queue,
         "--without-gossip", "--without-mingle", "--loglevel=INFO"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    yield queue
    process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    print(output[-4000:])  # shown by pytest only when the test fails


def test_worker_runs_task_and_its_effect_lands_in_postgresql(personas, worker):
    long_expired = Invitation.issue(personas.org, "old@x.example", 20, by=personas.owner)[0]
    Invitation.objects.filter(pk=long_expired.pk).update(expires_at=timezone.now() - timedelta(days=31))
    recent = Invitation.issue(personas.org, "new@x.example", 20, by=personas.owner)[0]

    result = expire_invitations.apply_async(queue=worker)
    deleted = result.get(timeout=90)  # waits on the Redis result backend, not a sleep

    assert deleted == 1
    assert not Invitation.objects.filter(pk=long_expired.pk).exists()
    assert Invitation.objects.filter(pk=recent.pk).exists()
