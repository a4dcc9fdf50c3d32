"""The ingestion guarantee: an event acknowledged with 202 is already committed, so killing the
web process right after the response (or any worker afterwards) cannot lose it.

A real gunicorn process serves the request against the test database; it is killed with
SIGKILL (no clean shutdown) the moment the response arrives."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings

from accounts.models import ApiToken
from costs.models import CostEvent, CostRollup
from tests.conftest import PROJECT_ROOT, database_url_of_test_database

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_acknowledged_batch_survives_killing_the_web_process(personas):
    _, raw = ApiToken.issue(project=personas.project, name="exporter", scopes=["ingest"], by=personas.owner)
    port = free_port()
    env = {**os.environ, "PULSE_ENV": "test", "DATABASE_URL": database_url_of_test_database(),
           "REDIS_URL": settings.REDIS_URL}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=PROJECT_ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        events = [{"provider": "acme", "model": "m", "input_tokens": 10, "output_tokens": 5, "idempotency_key": f"d-{i}"}
                  for i in range(500)]
        response = httpx.post(f"http://127.0.0.1:{port}/api/v1/events/batch", json={"events": events},
                              headers={"Authorization": f"Bearer {raw}"}, timeout=30)
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # no graceful shutdown: nothing gets to flush
        server.wait(timeout=10)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 500
    assert CostEvent.objects.dangerously_unscoped().filter(project=personas.project).count() == 500
    hourly = CostRollup.objects.dangerously_unscoped().filter(project=personas.project, granularity="h", tag_key="")
    assert sum(row.requests for row in hourly) == 500
